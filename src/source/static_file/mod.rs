//! `type = "static"`: services declared in the config or in a TOML/JSON file.

mod config;

pub use config::{StaticService, StaticSourceConfig};

use super::{Naming, Source};
use crate::config::Common;
use crate::error::{BuildError, Skip, SourceError};
use crate::model::Endpoint;
use crate::template::Props;
use async_trait::async_trait;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Serves the declared services; the file, if any, is re-read every round.
pub struct StaticSource {
    name: String,
    services: Vec<StaticService>,
    file: Option<PathBuf>,
    naming: Naming,
}

impl StaticSource {
    /// Builds the source from its config.
    pub fn new(name: &str, cfg: &StaticSourceConfig, global: &Common) -> Result<Self, BuildError> {
        Ok(Self {
            name: name.to_string(),
            services: cfg.services.clone(),
            file: cfg.file.clone(),
            naming: Naming::new(global, cfg.label_prefix.as_deref(), cfg.name.as_deref())?,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServicesFile {
    #[serde(default)]
    services: Vec<StaticService>,
}

/// Reads a services file: JSON when it ends in `.json`, TOML otherwise (blocking: for
/// start-up and tests; rounds read it with `tokio::fs`).
pub fn read_services_file(path: &Path) -> Result<Vec<StaticService>, SourceError> {
    parse_services(path, std::fs::read_to_string(path))
}

/// Parses what reading a services file gave.
pub fn parse_services(
    path: &Path,
    read: std::io::Result<String>,
) -> Result<Vec<StaticService>, SourceError> {
    let text = read.map_err(|source| SourceError::Io {
        path: path.to_path_buf(),
        source: std::sync::Arc::new(source),
    })?;
    let decode = |message: String| SourceError::Decode {
        what: path.display().to_string(),
        message,
    };
    if text.trim().is_empty() {
        // A file being rewritten in place reads empty for a moment: unknown, not "no
        // services". Declaring none on purpose is `services = []`.
        return Err(decode(
            "the file is empty; write `services = []` to declare no services".into(),
        ));
    }
    let parsed: ServicesFile = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| decode(e.to_string()))?
    } else {
        toml::from_str(&text).map_err(|e| decode(e.to_string()))?
    };
    Ok(parsed.services)
}

#[async_trait]
impl Source for StaticSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn fetch(&self) -> Result<(Vec<Endpoint>, Vec<Skip>), SourceError> {
        let mut services = self.services.clone();
        if let Some(file) = &self.file {
            services.extend(parse_services(file, tokio::fs::read_to_string(file).await)?);
        }
        let mut endpoints = Vec::with_capacity(services.len());
        let mut skipped = Vec::new();
        for svc in services {
            let base: Props = [
                ("name".to_string(), svc.name.clone()),
                ("host".to_string(), svc.host.clone()),
                ("port".to_string(), svc.port.to_string()),
            ]
            .into_iter()
            .collect();
            match self.naming.endpoint(&self.name, base, &svc.labels, true) {
                Ok(Some(ep)) => endpoints.push(ep),
                Ok(None) => {}
                Err(skip) => skipped.push(skip),
            }
        }
        Ok((endpoints, skipped))
    }
}
