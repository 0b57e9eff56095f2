//! Config errors that name the key and where its value came from.

use figment::{Figment, Metadata, Profile, Source};
use std::fmt;

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `backends.web.default_rule`.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// Where the value came from: a file, an environment variable or a CLI flag.
    pub origin: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = if self.key.is_empty() {
            "<top level>"
        } else {
            &self.key
        };
        write!(f, "{key}: {}", self.message)?;
        if let Some(o) = &self.origin {
            write!(f, " (from {o})")?;
        }
        Ok(())
    }
}

/// Every problem found, reported together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The problems, in the order found.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "invalid configuration ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// Describes where a value came from, e.g. `file config/x.toml` or `env RANCON_INTERVAL`.
pub fn origin(meta: &Metadata, profile: &Profile, path: &[String]) -> String {
    match &meta.source {
        Some(Source::File(p)) => format!("file {}", p.display()),
        Some(Source::Custom(c)) => c.clone(),
        // figment's Env interpolates without the prefix; operators set the full name.
        _ if meta.name.contains("RANCON_") => {
            format!(
                "env RANCON_{}",
                meta.interpolate(profile, path).replace('.', "__")
            )
        }
        _ => meta.interpolate(profile, path),
    }
}

/// The origin of the value at `key` in `figment`, if any provider supplied it.
pub fn origin_of(figment: &Figment, key: &str) -> Option<String> {
    let meta = figment.find_metadata(key)?;
    let path: Vec<String> = key.split('.').map(str::to_string).collect();
    Some(origin(meta, &figment.profile().clone(), &path))
}

impl From<figment::Error> for ConfigError {
    fn from(err: figment::Error) -> Self {
        let problems = err
            .into_iter()
            .map(|e| {
                let path = e.path.clone();
                let profile = e.profile.clone().unwrap_or_default();
                Problem {
                    key: path.join("."),
                    message: without_source_lines(&e.kind.to_string()),
                    origin: e.metadata.as_ref().map(|m| origin(m, &profile, &path)),
                }
            })
            .collect();
        ConfigError { problems }
    }
}

/// A parser's message without the source lines it quotes (`3 | token = "s3cr…`): the line
/// may hold a secret. Line and column stay.
fn without_source_lines(message: &str) -> String {
    message
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            let quoted = t
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start();
            !quoted.starts_with('|')
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn parser_messages_lose_their_quoted_lines() {
        let m = "TOML parse error at line 3, column 9\n  |\n3 | token = \"s3cret\n  |         ^\ninvalid basic string";
        let out = super::without_source_lines(m);
        assert!(!out.contains("s3cret"), "{out}");
        assert!(out.contains("line 3, column 9") && out.contains("invalid basic string"));
    }
}
