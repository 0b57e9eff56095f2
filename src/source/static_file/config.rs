//! `type = "static"` configuration and its checks.

use crate::config::{Collector, Common, Component};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `type = "static"`: services declared inline or in a TOML/JSON file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StaticSourceConfig {
    /// Services declared inline.
    pub services: Vec<StaticService>,
    /// A TOML or JSON file holding `services = [...]` in the same shape, re-read every round.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Overrides the global `label_prefix` for this source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_prefix: Option<String>,
    /// Overrides the global `name` template for this source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// One statically declared service endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaticService {
    /// Service name (`%NAME%` in templates).
    pub name: String,
    /// Address clients connect to.
    pub host: String,
    /// Port clients connect to.
    #[schemars(range(min = 1))]
    pub port: u16,
    /// Labels with the same meanings an orchestrator's labels have (`rancon.tag`, `rancon.name`, …).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Component for StaticSourceConfig {
    fn validate(&self, key: &str, _: &Common, c: &mut Collector<'_>) {
        if let Some(t) = &self.name {
            c.template(format!("{key}.name"), t);
        }
        if let Some(p) = &self.label_prefix
            && p.is_empty()
        {
            c.add(format!("{key}.label_prefix"), "must not be empty");
        }
        for (i, svc) in self.services.iter().enumerate() {
            if svc.name.is_empty() || svc.host.is_empty() || svc.port == 0 {
                c.add(
                    format!("{key}.services.{i}"),
                    "needs a non-empty name and host and a non-zero port",
                );
            }
        }
        // Read once at load so a broken file is a config error, not a failing round.
        if let Some(file) = &self.file
            && let Err(e) = super::parse_services(file, std::fs::read_to_string(file))
        {
            c.add(format!("{key}.file"), e.to_string());
        }
        if self.services.is_empty() && self.file.is_none() {
            c.add(
                key.to_string(),
                "declares no services: set `services` or `file`",
            );
        }
    }
}
