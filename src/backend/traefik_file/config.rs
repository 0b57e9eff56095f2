//! `type = "traefik_file"` configuration and its checks.

use crate::config::{Collector, Common, Component};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `type = "traefik_file"`: writes Traefik's dynamic configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TraefikFileConfig {
    /// Output file; `.toml`, `.yaml` or `.yml` picks the format. Written atomically, and only
    /// when its content changes.
    #[schemars(pattern(r"\.(?:toml|ya?ml)$"))]
    pub path: PathBuf,
    /// Router rule template used when a service has no `rule` property (label `rancon.rule`).
    #[serde(default = "default_rule")]
    pub default_rule: String,
    /// Rule template of TCP routers (label `rancon.protocol=tcp`) without a `rule` property.
    /// ``HostSNI(`*`)`` matches every connection on the entry point; a host name needs TLS
    /// (label `rancon.tls` or `rancon.tls.passthrough`).
    #[serde(default = "default_tcp_rule")]
    pub default_tcp_rule: String,
    /// Entry points the routers attach to unless label `rancon.entrypoints` names others
    /// (empty: Traefik's default, all entry points).
    #[serde(default)]
    pub entry_points: Vec<String>,
    /// Names of the sources this backend reads (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<String>>,
}

fn default_rule() -> String {
    "Host(`%NAME%`)".into()
}

fn default_tcp_rule() -> String {
    "HostSNI(`*`)".into()
}

impl Component for TraefikFileConfig {
    fn validate(&self, key: &str, _: &Common, c: &mut Collector<'_>) {
        c.template(format!("{key}.default_rule"), &self.default_rule);
        c.template(format!("{key}.default_tcp_rule"), &self.default_tcp_rule);
        let ext = self.path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !matches!(ext, "toml" | "yaml" | "yml") {
            c.add(
                format!("{key}.path"),
                format!("{} must end in .toml, .yaml or .yml", self.path.display()),
            );
        }
        let parent = self.path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(dir) = parent
            && !dir.is_dir()
        {
            c.add(
                format!("{key}.path"),
                format!("directory {} does not exist", dir.display()),
            );
        }
    }

    fn sources(&self) -> Option<&[String]> {
        self.sources.as_deref()
    }
}
