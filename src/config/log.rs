//! `[log]`: the log line format and verbosity, as configuration keys (a file,
//! `RANCON_LOG__FORMAT`, `--set log.level=debug`); the flags and `RANCON_LOG` win over them.

use super::Collector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Logging.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Line format on stderr: `text` for people, `json` (one object per line, unique keys) for
    /// log shippers. Fatal errors follow it too. `--log-format` and `RANCON_LOG_FORMAT` win.
    pub format: LogFormat,
    /// Verbosity: a level for rancon's own logs (`error`, `warn`, `info` — the default —,
    /// `debug` for every decision: unchanged, skipped and why; `trace`), dependencies staying
    /// at `warn`; or a full tracing filter (`info,rancon::engine=debug,reqwest=debug`).
    /// `-v`/`-q` and `RANCON_LOG` win.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The levels `level` takes as a word.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

impl LogConfig {
    /// The tracing filter `level` stands for, if set: a level word applies to rancon's own
    /// targets (dependencies stay at `warn`), anything else is a filter as written.
    pub fn filter(&self) -> Option<String> {
        self.level.as_deref().map(level_filter)
    }

    /// `level` must be a level word or a filter tracing accepts.
    pub fn validate(&self, c: &mut Collector<'_>) {
        if let Some(f) = self.filter()
            && let Err(e) = parse_filter(&f)
        {
            c.add(
                "log.level",
                format!(
                    "not a level ({}) nor a tracing filter: {e}",
                    LEVELS.join(", ")
                ),
            );
        }
    }
}

/// The filter a level word or filter text stands for.
pub fn level_filter(level: &str) -> String {
    let word = level.trim().to_ascii_lowercase();
    if LEVELS.contains(&word.as_str()) {
        format!("warn,rancon={word}")
    } else {
        level.to_string()
    }
}

/// Parses a tracing filter strictly (an invalid directive is an error, not skipped).
pub fn parse_filter(text: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(text)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_level_word_is_for_rancon_and_a_filter_is_kept() {
        assert_eq!(level_filter("DEBUG"), "warn,rancon=debug");
        assert_eq!(level_filter("info,hyper=debug"), "info,hyper=debug");
        assert!(parse_filter("warn,rancon=debug").is_ok());
        assert!(parse_filter("rancon=loud").is_err());
    }
}
