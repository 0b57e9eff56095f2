//! `type = "rancher"` configuration, its checks and its conventional variables.

use crate::config::{ClientTls, Collector, Common, Component, Secret};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Which address of a Rancher service to register.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndpointKind {
    /// Each `publicEndpoints` entry: host IP and published port.
    #[default]
    Public,
    /// Each running container's managed-network IP and private port.
    Internal,
}

/// `type = "rancher"`: services from a Rancher 1.6 server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RancherSourceConfig {
    /// API URL: a root (`http://rancher:8080/v2-beta`, `/v1`) for every project the key sees,
    /// or one project (`.../v2-beta/projects/1a5`). Env fallback: `RANCHER_URL`, then `CATTLE_URL`
    /// (which Rancher injects into a service with agent labels).
    #[serde(default)]
    #[schemars(url, pattern(crate::config::schema::HTTP_URL_PATTERN))]
    pub url: String,
    /// API access key (HTTP basic user). Env fallback: `RANCHER_ACCESS_KEY`, then
    /// `CATTLE_ACCESS_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    /// API secret key (HTTP basic password). Env fallback: `RANCHER_SECRET_KEY`, then
    /// `CATTLE_SECRET_KEY` (from the same family as an access key taken from the environment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<Secret>,
    /// File holding the secret key (wins over `secret_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_file: Option<PathBuf>,
    /// Timeout of each request.
    #[serde(default = "crate::config::default_timeout", with = "humantime_serde")]
    #[schemars(with = "crate::config::schema::HumanDuration")]
    pub timeout: Duration,
    /// TLS for https URLs.
    #[serde(default)]
    pub tls: ClientTls,
    /// `public` (published host ports) or `internal` (container IPs and private ports).
    #[serde(default)]
    pub endpoints: EndpointKind,
    /// Only stacks whose name matches one of these globs (empty: all).
    #[serde(default)]
    pub include_stacks: Vec<String>,
    /// Skip stacks whose name matches one of these globs.
    #[serde(default)]
    pub exclude_stacks: Vec<String>,
    /// Only environments (projects) whose name matches one of these globs (empty: all).
    #[serde(default)]
    pub include_environments: Vec<String>,
    /// Skip environments (projects) whose name matches one of these globs.
    #[serde(default)]
    pub exclude_environments: Vec<String>,
    /// Overrides the global `label_prefix` for this source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_prefix: Option<String>,
    /// Overrides the global `name` template for this source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Subscribe to the server's change events (one WebSocket per project) so a change is
    /// registered within about a second instead of at the next `interval`; `interval` stays
    /// the period of the full listing that keeps the registry right. A server that refuses the
    /// subscription (no WebSocket, an old server or a proxy) is polled as if this were false.
    #[serde(default = "yes")]
    pub watch: bool,
    /// How long a subscription may stay silent before it is taken as dead and reconnected.
    /// Rancher sends a ping every 5 s (`api.sub.ping.interval.millis`): the default allows
    /// three to go missing.
    #[serde(default = "default_watch_timeout", with = "humantime_serde")]
    #[schemars(with = "crate::config::schema::HumanDuration")]
    pub watch_timeout: Duration,
}

fn yes() -> bool {
    true
}

fn default_watch_timeout() -> Duration {
    Duration::from_secs(15)
}

impl Component for RancherSourceConfig {
    fn validate(&self, key: &str, _: &Common, c: &mut Collector<'_>) {
        if self.url.is_empty() {
            c.add(format!("{key}.url"), "missing: set it or RANCHER_URL");
        } else {
            c.http_url(format!("{key}.url"), &self.url);
        }
        if self.timeout.is_zero() {
            c.add(format!("{key}.timeout"), "must be more than 0s");
        }
        if self.watch_timeout.is_zero() {
            c.add(format!("{key}.watch_timeout"), "must be more than 0s");
        }
        if let Some(p) = &self.label_prefix {
            c.label_prefix(format!("{key}.label_prefix"), p);
        }
        let has_secret = self.secret_key.is_some() || self.secret_key_file.is_some();
        if self.access_key.is_some() != has_secret {
            c.add(
                format!("{key}.access_key"),
                "access_key and secret_key (or secret_key_file) go together",
            );
        }
        if let Some(f) = &self.secret_key_file {
            c.file(format!("{key}.secret_key_file"), f);
        }
        self.tls.validate(&format!("{key}.tls"), c);
        for (field, globs) in [
            ("include_stacks", &self.include_stacks),
            ("exclude_stacks", &self.exclude_stacks),
            ("include_environments", &self.include_environments),
            ("exclude_environments", &self.exclude_environments),
        ] {
            for (i, g) in globs.iter().enumerate() {
                if let Err(e) = globset::Glob::new(g) {
                    c.add(format!("{key}.{field}.{i}"), format!("bad glob {g:?}: {e}"));
                }
            }
        }
        if let Some(t) = &self.name {
            c.template(format!("{key}.name"), t);
        }
    }

    /// The variables other Rancher tools read (`RANCHER_*`, the rancher CLI's), then those
    /// Rancher injects into a service labelled `io.rancher.container.create_agent` (`CATTLE_*`).
    /// A key pair is taken from one family, so an access key never meets another's secret.
    fn conventional_env(&mut self, var: &dyn Fn(&str) -> Option<String>) {
        const FAMILIES: [&str; 2] = ["RANCHER", "CATTLE"];
        if self.url.is_empty() {
            self.url = FAMILIES
                .iter()
                .find_map(|f| var(&format!("{f}_URL")))
                .unwrap_or_default();
        }
        let mut family = None;
        if self.access_key.is_none() {
            (family, self.access_key) = FAMILIES
                .iter()
                .find_map(|f| var(&format!("{f}_ACCESS_KEY")).map(|k| (Some(*f), Some(k))))
                .unwrap_or_default();
        }
        if self.secret_key.is_none() && self.secret_key_file.is_none() {
            let families = family.as_ref().map_or(&FAMILIES[..], std::slice::from_ref);
            self.secret_key = families
                .iter()
                .find_map(|f| var(&format!("{f}_SECRET_KEY")))
                .map(Secret::new);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RancherSourceConfig;
    use crate::config::Component;

    fn filled(vars: &[(&str, &str)]) -> RancherSourceConfig {
        let mut c: RancherSourceConfig = serde_json::from_str("{}").unwrap();
        c.conventional_env(&|k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        });
        c
    }

    #[test]
    fn cattle_variables_fill_what_rancher_variables_leave_unset() {
        let c = filled(&[
            ("CATTLE_URL", "http://rancher:8080/v1"),
            ("CATTLE_ACCESS_KEY", "AKC"),
            ("CATTLE_SECRET_KEY", "skc"),
        ]);
        assert_eq!(c.url, "http://rancher:8080/v1");
        assert_eq!(c.access_key.as_deref(), Some("AKC"));
        assert_eq!(c.secret_key.as_ref().map(|s| s.expose()), Some("skc"));
        // RANCHER_* wins over CATTLE_*.
        let c = filled(&[
            ("RANCHER_URL", "http://r/v2-beta"),
            ("CATTLE_URL", "http://c/v1"),
            ("RANCHER_ACCESS_KEY", "AKR"),
            ("RANCHER_SECRET_KEY", "skr"),
            ("CATTLE_ACCESS_KEY", "AKC"),
            ("CATTLE_SECRET_KEY", "skc"),
        ]);
        assert_eq!(c.url, "http://r/v2-beta");
        assert_eq!(c.access_key.as_deref(), Some("AKR"));
        assert_eq!(c.secret_key.as_ref().map(|s| s.expose()), Some("skr"));
    }

    #[test]
    fn a_key_pair_comes_from_one_family() {
        // An access key from CATTLE_* never pairs with RANCHER_SECRET_KEY.
        let c = filled(&[
            ("CATTLE_ACCESS_KEY", "AKC"),
            ("CATTLE_SECRET_KEY", "skc"),
            ("RANCHER_SECRET_KEY", "skr"),
        ]);
        assert_eq!(c.access_key.as_deref(), Some("AKC"));
        assert_eq!(c.secret_key.as_ref().map(|s| s.expose()), Some("skc"));
    }
}
