//! Configuration: the serde/schemars model (`RawConfig`), figment layering (`load`),
//! meaning checks (`validate`) and error reports that name key and origin (`report`).

pub mod consul;
pub mod etcd;
pub mod load;
pub mod report;
pub mod secret;
pub mod validate;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use consul::{CheckMode, ConsulBackendConfig, ConsulMode};
pub use etcd::{EtcdBackendConfig, EtcdLayout};
pub use load::{LoadOptions, Loaded, load};
pub use report::{ConfigError, Problem};
pub use secret::Secret;

/// The whole configuration, as layered by figment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[schemars(title = "rancon configuration")]
pub struct RawConfig {
    /// Label prefix that selects services: a service carrying label `<prefix>` or `<prefix>.*`
    /// is registered; label `<prefix>.X` becomes template property `X`.
    pub label_prefix: String,
    /// Identity of this rancon deployment. Only registrations carrying this owner's marker are
    /// ever updated or deregistered, so two deployments can share one registry.
    pub owner: String,
    /// Time between two rounds in continuous mode, e.g. `"30s"` or `"2m"`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub interval: Duration,
    /// Default service name template, e.g. `"%NAME%-%STACK%"`; label `<prefix>.name` overrides it.
    pub name: String,
    /// A round that would deregister more than this share of a backend's owned registrations
    /// deregisters nothing there (unless `--force`); `1.0` disables the guard.
    pub max_deregister_fraction: f64,
    /// How long SIGINT/SIGTERM wait for the round in flight before exiting anyway.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub shutdown_timeout: Duration,
    /// The health and metrics HTTP endpoint.
    pub http: HttpConfig,
    /// Optional leader election, so that several replicas can run and only one writes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<LeaderConfig>,
    /// Where services come from, keyed by a component name (`^[a-z][a-z0-9_]*$`).
    pub sources: BTreeMap<String, SourceConfig>,
    /// Where registrations go, keyed by a component name (`^[a-z][a-z0-9_]*$`).
    pub backends: BTreeMap<String, BackendConfig>,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            label_prefix: "rancon".into(),
            owner: "default".into(),
            interval: Duration::from_secs(30),
            name: "%NAME%".into(),
            max_deregister_fraction: 0.5,
            shutdown_timeout: Duration::from_secs(30),
            http: HttpConfig::default(),
            leader: None,
            sources: BTreeMap::new(),
            backends: BTreeMap::new(),
        }
    }
}

/// The health and metrics HTTP endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Whether to serve `/health`, `/ready` and `/metrics` in continuous mode.
    pub enabled: bool,
    /// Address and port to listen on, e.g. `"0.0.0.0:9090"`.
    #[schemars(with = "String")]
    pub listen: SocketAddr,
    /// `/health` answers 503 when no round has completed for this long (a hung rancon);
    /// default 3 × `interval` + 1 minute.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub hangup_after: Option<Duration>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            hangup_after: None,
        }
    }
}

/// Leader election through a Consul session lock (Consul's leader-election pattern).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaderConfig {
    /// The consul backend (a `[backends.<name>]` of `type = "consul"`) whose agent, token and
    /// TLS settings hold the session and the lock.
    pub backend: String,
    /// Agent URL for the session and lock, instead of the backend's own (required when the
    /// backend's url has placeholders); token and TLS settings still come from the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// KV key of the lock; default `rancon/leader/<owner>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Session TTL (Consul accepts 10s to 24h). A leader that dies is replaced after about
    /// this long plus `lock_delay`.
    #[serde(default = "default_leader_ttl", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub ttl: Duration,
    /// After a leader's session is invalidated, nobody may take the lock for this long, so the
    /// writes it had in flight finish before another replica starts writing.
    #[serde(default = "default_lock_delay", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub lock_delay: Duration,
}

fn default_leader_ttl() -> Duration {
    Duration::from_secs(15)
}

fn default_lock_delay() -> Duration {
    Duration::from_secs(15)
}

/// A source of services, selected by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceConfig {
    /// Services declared in the configuration or in a file: external services, and the demo.
    Static(StaticSourceConfig),
    /// A Rancher 1.6 server (API `v2-beta` or `v1`).
    Rancher(Box<RancherSourceConfig>),
}

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

/// TLS settings of an HTTPS client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ClientTls {
    /// PEM file with the CA certificate(s) to trust instead of the bundled web roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) presented to servers that require mTLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Name to verify the server certificate against instead of the URL's host (e.g. the
    /// `server.dc1.consul` name Consul's certificates carry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Skip certificate verification (self-signed labs only).
    pub insecure: bool,
}

/// `type = "rancher"`: services from a Rancher 1.6 server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RancherSourceConfig {
    /// API URL: a root (`http://rancher:8080/v2-beta`, `/v1`) for every project the key sees,
    /// or one project (`.../v2-beta/projects/1a5`). Env fallback: `RANCHER_URL`.
    #[serde(default)]
    pub url: String,
    /// API access key (HTTP basic user). Env fallback: `RANCHER_ACCESS_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    /// API secret key (HTTP basic password). Env fallback: `RANCHER_SECRET_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<Secret>,
    /// File holding the secret key (wins over `secret_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_file: Option<PathBuf>,
    /// Timeout of each request.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
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
}

pub(crate) fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

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
    pub port: u16,
    /// Labels with the same meanings an orchestrator's labels have (`rancon.tag`, `rancon.name`, …).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A registry to keep in step, selected by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BackendConfig {
    /// Traefik's file provider: one router and one service per registered name.
    TraefikFile(TraefikFileConfig),
    /// A Consul agent or catalog.
    Consul(Box<ConsulBackendConfig>),
    /// etcd keys (rancon's JSON layout or CoreDNS skydns records) under one lease.
    Etcd(Box<EtcdBackendConfig>),
}

impl BackendConfig {
    /// The sources this backend reads (`None`: all).
    pub fn sources(&self) -> Option<&[String]> {
        match self {
            BackendConfig::TraefikFile(c) => c.sources.as_deref(),
            BackendConfig::Consul(c) => c.sources.as_deref(),
            BackendConfig::Etcd(c) => c.sources.as_deref(),
        }
    }
}

/// `type = "traefik_file"`: writes Traefik's dynamic configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TraefikFileConfig {
    /// Output file; `.toml`, `.yaml` or `.yml` picks the format. Written atomically, and only
    /// when its content changes.
    pub path: PathBuf,
    /// Router rule template used when a service has no `rule` property (label `rancon.rule`).
    #[serde(default = "default_rule")]
    pub default_rule: String,
    /// Entry points the routers attach to (empty: Traefik's default, all entry points).
    #[serde(default)]
    pub entry_points: Vec<String>,
    /// Names of the sources this backend reads (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<String>>,
}

fn default_rule() -> String {
    "Host(`%NAME%`)".into()
}
