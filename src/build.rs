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

/// Builds the pipeline from a validated configuration. Its `warnings` are logged here, so
/// `check`, the start and every reload show them.
pub fn build(cfg: &Config) -> Result<Pipeline, ConfigError> {
    for w in warnings(cfg) {
        tracing::warn!(key = %w.key, "{}", w.message);
    }
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

/// A configuration that is valid but most likely not what was meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The key it is about.
    pub key: String,
    /// What is likely wrong, and what to do instead.
    pub message: String,
}

/// What in a valid configuration is most likely a mistake: a consul backend whose url holds
/// `%HOST%` reading a rancher source with `endpoints = "internal"`, whose hosts are container
/// IPs: rancon would contact a Consul agent on each container's IP.
pub fn warnings(cfg: &Config) -> Vec<Warning> {
    let mut out = Vec::new();
    for (name, b) in &cfg.backends {
        let BackendConfig::Consul(k) = b else {
            continue;
        };
        let host = crate::template::Template::parse(&k.url)
            .is_ok_and(|t| t.placeholders().any(|p| p == "host"));
        if !host {
            continue;
        }
        for (source, s) in &cfg.sources {
            let read = k.sources.as_ref().is_none_or(|l| l.contains(source));
            let SourceConfig::Rancher(r) = s else {
                continue;
            };
            if read && r.endpoints == source::rancher::EndpointKind::Internal {
                out.push(Warning {
                    key: format!("backends.{name}.url"),
                    message: format!(
                        "holds %HOST% and reads source {source:?}, whose endpoints are \
                         \"internal\": %HOST% is each container's IP, so rancon would contact a \
                         Consul agent on every container. Use the agent's address (e.g. \
                         http://127.0.0.1:8500 or CONSUL_HTTP_ADDR), or endpoints = \"public\" \
                         (host IPs)"
                    ),
                });
            }
        }
    }
    out
}
