//! `type = "etcd"` backend configuration and its checks.

use crate::config::{ClientTls, Collector, Common, Component, Secret};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// How registrations are laid out as etcd keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EtcdLayout {
    /// `<prefix>/<owner>/<name>/<id>` → JSON {name, id, address, port, tags, meta}.
    #[default]
    Rancon,
    /// CoreDNS etcd plugin records: `/skydns/<reversed domain>/<name>/<id>` →
    /// {"host", "port", "ttl"}, so CoreDNS answers A and SRV queries.
    Skydns,
    /// Traefik KV provider keys under `rootKey` (`prefix`, default `traefik`): one router
    /// (`rule` from label `rancon.rule`, else ``Host(`<name>`)``) and one load-balanced service
    /// per name; rancon's own index of what it wrote sits under `rancon/index/`.
    Traefik,
}

/// `type = "etcd"`: registrations as etcd keys, all under one lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EtcdBackendConfig {
    /// Client URLs, tried in order, e.g. `["http://127.0.0.1:2379"]`.
    #[serde(default = "default_endpoints")]
    #[schemars(
        length(min = 1),
        inner(url, pattern(crate::config::schema::HTTP_URL_PATTERN))
    )]
    pub endpoints: Vec<String>,
    /// etcd user (auth enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password of `username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// File holding the password (wins over `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// TLS for https endpoints.
    #[serde(default)]
    pub tls: ClientTls,
    /// Key prefix; default `/rancon` (layout `rancon`), `/skydns` (layout `skydns`) or
    /// `traefik` (layout `traefik`: Traefik's `rootKey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// `rancon` (default), `skydns` or `traefik`.
    #[serde(default)]
    pub layout: EtcdLayout,
    /// Layout `skydns`: the DNS domain the records answer under, e.g. `rancon.local`.
    #[serde(default = "default_domain")]
    pub domain: String,
    /// Lease TTL of every key; default 3 × `interval`. Keys expire when rancon stops.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<crate::config::schema::HumanDuration>")]
    pub ttl: Option<Duration>,
    /// Timeout of each request.
    #[serde(default = "crate::config::default_timeout", with = "humantime_serde")]
    #[schemars(with = "crate::config::schema::HumanDuration")]
    pub timeout: Duration,
    /// Names of the sources this backend reads (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<String>>,
}

fn default_endpoints() -> Vec<String> {
    vec!["http://127.0.0.1:2379".into()]
}

fn default_domain() -> String {
    "rancon.local".into()
}

impl Component for EtcdBackendConfig {
    fn validate(&self, key: &str, _: &Common, c: &mut Collector<'_>) {
        if self.endpoints.is_empty() {
            c.add(format!("{key}.endpoints"), "needs at least one URL");
        }
        for (i, u) in self.endpoints.iter().enumerate() {
            c.http_url(format!("{key}.endpoints.{i}"), u);
        }
        let has_password = self.password.is_some() || self.password_file.is_some();
        if self.username.is_some() != has_password {
            c.add(
                format!("{key}.username"),
                "username and password (or password_file) go together",
            );
        }
        if let Some(f) = &self.password_file {
            c.file(format!("{key}.password_file"), f);
        }
        if self.ttl.is_some_and(|t| t.as_secs() < 2) {
            c.add(format!("{key}.ttl"), "must be at least 2s");
        }
        if self.timeout.is_zero() {
            c.add(format!("{key}.timeout"), "must be more than 0s");
        }
        if self.domain.split('.').any(|l| l.is_empty()) {
            c.add(
                format!("{key}.domain"),
                format!("{:?} is not a DNS domain", self.domain),
            );
        }
        self.tls.validate(&format!("{key}.tls"), c);
    }

    fn sources(&self) -> Option<&[String]> {
        self.sources.as_deref()
    }
}
