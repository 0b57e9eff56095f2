//! What configuration shares: the top level (generic over the component types), figment
//! layering (`load`), meaning checks (`validate`), origins and error reports (`report`).
//! It imports no adapter: each component's config type validates itself (`Component`).

pub mod extract;
pub mod load;
pub mod log;
pub mod raw;
pub mod report;
pub mod schema;
pub mod secret;
pub mod tls;
pub mod validate;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::time::Duration;

pub use extract::{tagged, variant};
pub use load::{LoadOptions, Loaded, load, load_partial};
pub use log::LogConfig;
pub use report::{ConfigError, Problem};
pub use secret::Secret;
pub use tls::ClientTls;
pub use validate::Collector;

/// A component's configuration (`[sources.<n>]`, `[backends.<n>]`): its shape, and the checks
/// and defaults only it knows.
pub trait Component: Clone + Debug + PartialEq + Serialize + DeserializeOwned + JsonSchema {
    /// Reads the component from its table (default: serde). A `type`-tagged enum overrides it
    /// to read `type` first and then its variant's own struct (`tagged`), so an error names
    /// the field inside the component, not just the component.
    fn from_value(value: &figment::value::Value) -> Result<Self, Box<figment::Error>> {
        variant(value)
    }
    /// Meaning checks of its own fields; every problem goes to `c`, keyed under `key`.
    fn validate(&self, key: &str, common: &Common, c: &mut Collector<'_>);
    /// Fills fields no layer has set from the variables other tools read (`RANCHER_*`,
    /// `CONSUL_*`): the lowest layer above the defaults.
    fn conventional_env(&mut self, _var: &dyn Fn(&str) -> Option<String>) {}
    /// A backend's `sources` (`None`: all).
    fn sources(&self) -> Option<&[String]> {
        None
    }
}

/// What components read from the top level.
#[derive(Debug, Clone, PartialEq)]
pub struct Common {
    /// See `Config::label_prefix`.
    pub label_prefix: String,
    /// See `Config::owner`.
    pub owner: String,
    /// See `Config::interval`.
    pub interval: Duration,
    /// See `Config::name`.
    pub name: String,
    /// See `Config::max_response_size`.
    pub max_response_size: u64,
}

// Generic over the closed enums of source and backend configs, so this room imports no
// adapter (`build::Config` names the concrete type).
/// The whole configuration, as layered by figment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[schemars(title = "rancon configuration")]
pub struct Config<S, B> {
    /// Label prefix that selects services: a service carrying label `<prefix>` or `<prefix>.*`
    /// is registered; label `<prefix>.X` becomes template property `X`.
    #[schemars(pattern(r"^[^.\s](?:\S*[^.\s])?$"))]
    pub label_prefix: String,
    /// Identity of this rancon deployment. Only registrations carrying this owner's marker are
    /// ever updated or deregistered, so two deployments can share one registry.
    #[schemars(pattern(r"^[a-z0-9][a-z0-9_-]*$"))]
    pub owner: String,
    /// Time between two rounds in continuous mode, e.g. `"30s"` or `"2m"`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "schema::HumanDuration")]
    pub interval: Duration,
    /// Default service name template, e.g. `"%NAME%-%STACK%"`; label `<prefix>.name` overrides it.
    #[schemars(pattern(r"\S"))]
    pub name: String,
    /// A round that would deregister more than this share of a backend's owned registrations
    /// deregisters nothing there (unless `--force`); `1.0` disables the guard.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_deregister_fraction: f64,
    /// Largest response body rancon reads from any server, in bytes; a longer answer fails
    /// that listing (and so deregisters nothing) instead of taking all the memory.
    #[schemars(range(min = 65536))]
    pub max_response_size: u64,
    /// How long SIGINT/SIGTERM wait for the round in flight before exiting anyway.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "schema::HumanDuration")]
    pub shutdown_timeout: Duration,
    /// The health and metrics HTTP endpoint.
    pub http: HttpConfig,
    /// Optional leader election, so that several replicas can run and only one writes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<LeaderConfig>,
    /// Log line format and verbosity (the command line and `RANCON_LOG` win over them).
    pub log: LogConfig,
    /// Where services come from, keyed by a component name (`^[a-z][a-z0-9_]*$`).
    #[schemars(extend("default" = {}, "propertyNames" = {"pattern": "^[a-z][a-z0-9_]*$"}))]
    pub sources: BTreeMap<String, S>,
    /// Where registrations go, keyed by a component name (`^[a-z][a-z0-9_]*$`).
    #[schemars(extend("default" = {}, "propertyNames" = {"pattern": "^[a-z][a-z0-9_]*$"}))]
    pub backends: BTreeMap<String, B>,
}

impl<S, B> Config<S, B> {
    /// The top-level settings components read.
    pub fn common(&self) -> Common {
        Common {
            label_prefix: self.label_prefix.clone(),
            owner: self.owner.clone(),
            interval: self.interval,
            name: self.name.clone(),
            max_response_size: self.max_response_size,
        }
    }
}

impl<S, B> Default for Config<S, B> {
    fn default() -> Self {
        Self {
            label_prefix: "rancon".into(),
            owner: "default".into(),
            interval: Duration::from_secs(30),
            name: "%NAME%".into(),
            max_deregister_fraction: 0.5,
            max_response_size: 64 << 20,
            shutdown_timeout: Duration::from_secs(30),
            http: HttpConfig::default(),
            leader: None,
            log: LogConfig::default(),
            sources: BTreeMap::new(),
            backends: BTreeMap::new(),
        }
    }
}

/// The health and metrics HTTP endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Whether to serve `/health`, `/ready` and `/metrics` in continuous mode; default: on
    /// when `listen` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Address and port to listen on, e.g. `"0.0.0.0:9090"` (default `127.0.0.1:9090`).
    /// Setting it turns the endpoint on.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<schema::SocketAddrText>")]
    pub listen: Option<SocketAddr>,
    /// `/health` answers 503 when no round has completed for this long (a hung rancon);
    /// default 3 × `interval` + 1 minute.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<schema::HumanDuration>")]
    pub hangup_after: Option<Duration>,
}

impl HttpConfig {
    /// The address to serve on, when the endpoint is on.
    pub fn serve_on(&self) -> Option<SocketAddr> {
        let addr = self
            .listen
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9090)));
        self.enabled
            .unwrap_or(self.listen.is_some())
            .then_some(addr)
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
    #[schemars(url, pattern(schema::HTTP_URL_PATTERN))]
    pub url: Option<String>,
    /// KV key of the lock; default `rancon/leader/<owner>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Session TTL (Consul accepts 10s to 24h). A leader that dies is replaced after about
    /// this long plus `lock_delay`.
    #[serde(default = "default_leader_ttl", with = "humantime_serde")]
    #[schemars(with = "schema::HumanDuration")]
    pub ttl: Duration,
    /// After a leader's session is invalidated, nobody may take the lock for this long, so the
    /// writes it had in flight finish before another replica starts writing.
    #[serde(default = "default_lock_delay", with = "humantime_serde")]
    #[schemars(with = "schema::HumanDuration")]
    pub lock_delay: Duration,
}

fn default_leader_ttl() -> Duration {
    Duration::from_secs(15)
}

fn default_lock_delay() -> Duration {
    Duration::from_secs(15)
}

/// The default per-request timeout of a component's HTTP client.
pub fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
