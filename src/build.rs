//! The concrete configuration (the top level over the closed source and backend enums), and
//! the step that turns a validated one into a running `Pipeline`.

use crate::backend::{self, BackendConfig};
use crate::config::{self, ConfigError, Problem};
use crate::engine::Pipeline;
use crate::source::{self, SourceConfig};

/// rancon's resolved configuration.
pub type Config = config::Config<SourceConfig, BackendConfig>;

/// A loaded configuration with the figment it came from.
pub type Loaded = config::Loaded<SourceConfig, BackendConfig>;

/// Builds the pipeline from a validated configuration.
pub fn build(cfg: &Config) -> Result<Pipeline, ConfigError> {
    let common = cfg.common();
    let mut problems = Vec::new();
    let mut sources = Vec::new();
    for (name, c) in &cfg.sources {
        match source::build(name, c, &common) {
            Ok(s) => sources.push(s),
            Err(e) => problems.push(problem(format!("sources.{name}"), e)),
        }
    }
    let mut backends = Vec::new();
    for (name, c) in &cfg.backends {
        match backend::build(name, c, &common) {
            Ok(b) => backends.push(b),
            Err(e) => problems.push(problem(format!("backends.{name}"), e)),
        }
    }
    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }
    Ok(Pipeline {
        sources,
        backends,
        max_deregister_fraction: cfg.max_deregister_fraction,
        write_gate: None,
    })
}

fn problem(key: String, e: crate::error::BuildError) -> Problem {
    Problem {
        key,
        message: e.to_string(),
        origin: None,
    }
}
