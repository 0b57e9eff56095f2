//! Config errors that name the key and where its value came from.

use figment::error::Kind;
use figment::value::Value;
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
        _ => meta.interpolate(profile, path),
    }
}

/// The key `path` as reports spell it (`sources.s.services[2].port`: list positions in
/// brackets) and where its value came from: the layer that set it, the value that stands
/// where the path ends (a list given whole, a string where a table was expected), or
/// `default` when no layer set it.
pub fn locate(figment: &Figment, path: &[String]) -> (String, Option<String>) {
    let profile = figment.profile().clone();
    let origin_of = |v: &Value| {
        figment
            .get_metadata(v.tag())
            .map(|m| origin(m, &profile, path))
    };
    let mut node = figment.find_value("").ok();
    let mut found = node.as_ref().and_then(origin_of);
    let mut shown = String::new();
    let mut i = 0;
    while i < path.len() {
        let seg = &path[i];
        let (next, used, index) = match &node {
            Some(Value::Dict(_, d)) => match d.get(seg) {
                Some(v) => (Some(v.clone()), 1, false),
                // A key holding dots (`meta."a.b"`) reaches a collector as several segments.
                None => match d.get(&path[i..].join(".")) {
                    Some(v) => (Some(v.clone()), path.len() - i, false),
                    None => (None, 1, false),
                },
            },
            Some(Value::Array(_, a)) => (
                seg.parse().ok().and_then(|n: usize| a.get(n).cloned()),
                1,
                true,
            ),
            _ => (None, 1, seg.parse::<usize>().is_ok()),
        };
        if index {
            shown.push_str(&format!("[{seg}]"));
        } else {
            if !shown.is_empty() {
                shown.push('.');
            }
            shown.push_str(&path[i..i + used].join("."));
        }
        match (&node, next) {
            (_, Some(v)) => {
                found = origin_of(&v).or(found);
                node = Some(v);
            }
            // A table without the key: no layer set it.
            (Some(Value::Dict(..)), None) => {
                found = Some("default".into());
                node = None;
            }
            // Past the data, or inside a value given whole (a list, a string where a table
            // was expected): that value's origin stands.
            _ => node = None,
        }
        i += used;
    }
    (shown, found)
}

/// The problems in `err`, found while reading the value at `prefix`: each keyed by its full
/// path, with its origin and, for an unknown key or variant, the nearest known spelling.
pub fn problems_at(figment: &Figment, prefix: &[String], err: figment::Error) -> Vec<Problem> {
    err.into_iter()
        .map(|e| {
            let mut path = prefix.to_vec();
            path.extend(e.path.iter().cloned());
            let message = match &e.kind {
                Kind::UnknownField(_, expected) => unknown("key", path.last(), expected),
                Kind::UnknownVariant(v, expected) => unknown("value", Some(v), expected),
                Kind::MissingField(_) => "missing: this key is required".into(),
                k => without_source_lines(&k.to_string()),
            };
            let (mut key, mut origin) = locate(figment, &path);
            if let Kind::MissingField(field) = &e.kind {
                // Named at the key itself; its table tells where it should have been.
                key = if key.is_empty() {
                    field.to_string()
                } else {
                    format!("{key}.{field}")
                };
            }
            if path.is_empty() {
                // Errors of the layers themselves (a TOML syntax error) name their provider.
                origin = e
                    .metadata
                    .as_ref()
                    .map(|m| self::origin(m, &e.profile.clone().unwrap_or_default(), &[]));
            }
            Problem {
                key,
                message,
                origin,
            }
        })
        .collect()
}

/// `unknown key; did you mean `path`?` — or the list of what is known when nothing is close.
pub fn unknown(what: &str, given: Option<&String>, expected: &[&str]) -> String {
    let given = given.map(String::as_str).unwrap_or_default();
    let close = expected
        .iter()
        .map(|e| (strsim::jaro_winkler(&given.to_lowercase(), e), e))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match close {
        Some((_, e)) => format!("unknown {what} `{given}`; did you mean `{e}`?"),
        None if expected.is_empty() => format!("unknown {what} `{given}`"),
        None => format!(
            "unknown {what} `{given}`; expected one of {}",
            expected
                .iter()
                .map(|e| format!("`{e}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
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
