//! `type = "consul"` backend configuration, its checks and Consul's conventional variables.

use crate::config::{ClientTls, Collector, Common, Component, Secret};
use crate::template::Template;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Where registrations are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsulMode {
    /// Through the agent API (`/v1/agent/service/register`) of the agent `url` names; the agent
    /// keeps them in its anti-entropy and runs their checks.
    #[default]
    Agent,
    /// Straight into the catalog on a synthetic `node` (like consul-k8s catalog sync); no agent
    /// runs checks there, so health is recorded as a check status.
    Catalog,
}

/// Health checks rancon attaches to each registration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckMode {
    /// No check besides those asked for by `rancon.check.*` labels.
    #[default]
    None,
    /// A TTL check mirroring the source's health (Rancher `healthState`), refreshed every round;
    /// it turns critical by itself when rancon stops.
    Source,
}

/// `type = "consul"`: registrations in a Consul agent or catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsulBackendConfig {
    /// Agent URL, e.g. `http://127.0.0.1:8500`, or `unix:///path/to/consul.sock` for an agent
    /// listening on a Unix socket. May hold placeholders: `http://%HOST%:8500` registers each
    /// endpoint with the agent on its own host. Env fallback: `CONSUL_HTTP_ADDR` (`https://`
    /// with `CONSUL_HTTP_SSL=true`); default `http://127.0.0.1:8500`.
    #[serde(default)]
    #[schemars(pattern(crate::config::schema::HTTP_URL_PATTERN))]
    pub url: String,
    /// ACL token sent as `X-Consul-Token`. Env fallback: `CONSUL_HTTP_TOKEN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// File holding the ACL token (wins over `token`). Env fallback: `CONSUL_HTTP_TOKEN_FILE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// HTTP basic auth `user:password` (or `user`) for an agent behind an authenticating
    /// proxy; split at the first `:`. Env fallback: `CONSUL_HTTP_AUTH`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_auth: Option<Secret>,
    /// Consul Enterprise namespace (`?ns=` on every request); Consul CE refuses any. Env
    /// fallback: `CONSUL_NAMESPACE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Datacenter (`?dc=`); default: the agent's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
    /// `agent` (default) or `catalog`.
    #[serde(default)]
    pub mode: ConsulMode,
    /// Catalog mode: the synthetic node registrations are placed on.
    #[serde(default = "default_node")]
    pub node: String,
    /// Catalog mode: the synthetic node's address.
    #[serde(default = "default_node_address")]
    pub address: String,
    /// Service ID template; rendered, lower-cased, and every character outside `[a-z0-9-]`
    /// becomes `-`. `%NAME%` is the final service name.
    #[serde(default = "default_id")]
    pub id: String,
    /// Tag templates added to every registration (besides labels `rancon.tag` / `rancon.tags`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Lower-case every tag (from labels and from `tags`), as the original rancon 0.x did;
    /// the original command line sets it, so an upgrade rewrites no registration.
    #[serde(default)]
    pub lowercase_tags: bool,
    /// Also mark registrations with meta `rancon-owner` and `external-source = "rancon"`
    /// (Consul's UI shows the latter). Ownership is the tag `rancon-<owner>` either way. The
    /// original command line turns this off: the old tool wrote no meta, so an upgrade
    /// rewrites nothing.
    #[serde(default = "yes")]
    pub marker_meta: bool,
    /// Service meta templates (besides labels `rancon.meta.K`); keys are sanitised to Consul's
    /// allowed characters.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    /// `none` (default) or `source`: a TTL check that mirrors the source's health.
    #[serde(default)]
    pub check: CheckMode,
    /// TTL of the `source` check; default 3 × `interval`.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<crate::config::schema::HumanDuration>")]
    pub check_ttl: Option<Duration>,
    /// Let Consul deregister a service whose checks stayed critical this long (minimum 1m),
    /// e.g. after rancon stopped refreshing its TTL check.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<crate::config::schema::HumanDuration>")]
    pub check_deregister_after: Option<Duration>,
    /// TLS for https URLs: custom CA, client certificate (mTLS), server name, insecure.
    #[serde(default)]
    pub tls: ClientTls,
    /// How many writes run at once.
    #[serde(default = "default_concurrency")]
    #[schemars(range(min = 1, max = 1024))]
    pub concurrency: usize,
    /// Timeout of each request.
    #[serde(default = "crate::config::default_timeout", with = "humantime_serde")]
    #[schemars(with = "crate::config::schema::HumanDuration")]
    pub timeout: Duration,
    /// When `url` has placeholders: an agent (no placeholders) whose catalog tells which agents
    /// hold this owner's registrations. Default: ask the agents of this round's endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(url, pattern(crate::config::schema::HTTP_URL_PATTERN))]
    pub discovery_url: Option<String>,
    /// Names of the sources this backend reads (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<String>>,
    /// In the daemon, watch the catalog nodes holding this owner's registrations (blocking
    /// queries on `/v1/catalog/node-services/<node>`) and repair a registration deleted or
    /// edited by hand at once instead of at the next `interval`. Needs `node:read` and
    /// `service:read`, and in agent mode `agent:read` (`/v1/agent/self` names the node).
    #[serde(default = "default_watch")]
    pub watch: bool,
}

impl Default for ConsulBackendConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            token: None,
            token_file: None,
            http_auth: None,
            namespace: None,
            datacenter: None,
            mode: ConsulMode::Agent,
            node: default_node(),
            address: default_node_address(),
            id: default_id(),
            tags: vec![],
            lowercase_tags: false,
            marker_meta: true,
            meta: BTreeMap::new(),
            check: CheckMode::None,
            check_ttl: None,
            check_deregister_after: None,
            tls: ClientTls::default(),
            concurrency: default_concurrency(),
            timeout: crate::config::default_timeout(),
            discovery_url: None,
            sources: None,
            watch: default_watch(),
        }
    }
}

/// The longest owner a consul backend accepts: `rancon-` + owner is one DNS label (63).
pub const MAX_OWNER: usize = 63 - "rancon-".len();

/// The URL used when neither the config nor `CONSUL_HTTP_ADDR` names one (Consul's default).
pub const DEFAULT_URL: &str = "http://127.0.0.1:8500";

fn default_node() -> String {
    "rancon-sync".into()
}

fn default_node_address() -> String {
    "127.0.0.1".into()
}

fn yes() -> bool {
    true
}

fn default_id() -> String {
    "%NAME%_%HOST%_%PORT%".into()
}

fn default_watch() -> bool {
    true
}

fn default_concurrency() -> usize {
    16
}

impl Component for ConsulBackendConfig {
    fn validate(&self, key: &str, common: &Common, c: &mut Collector<'_>) {
        match Template::parse(&self.url) {
            Err(e) => c.add(format!("{key}.url"), format!("malformed template: {e}")),
            Ok(t) if crate::consul::unix_socket(&self.url).is_some() => {
                if !t.is_literal() {
                    c.add(
                        format!("{key}.url"),
                        "a unix:// socket is one local agent: it cannot hold placeholders",
                    );
                } else if self.url.len() == "unix://".len() {
                    c.add(format!("{key}.url"), "unix:// needs the socket's path");
                }
            }
            Ok(t) => {
                // Placeholders stand for host names; check the rest with a stand-in.
                let sample = t
                    .render_with(|_| Some("placeholder.invalid"))
                    .unwrap_or_default();
                c.http_url(format!("{key}.url"), &sample);
                if !t.is_literal() && self.mode == ConsulMode::Catalog {
                    c.add(
                        format!("{key}.url"),
                        "catalog mode writes through one agent: the URL cannot hold placeholders",
                    );
                }
            }
        }
        if let Some(u) = &self.discovery_url {
            c.http_url(format!("{key}.discovery_url"), u);
        }
        if let Some(f) = &self.token_file {
            c.file(format!("{key}.token_file"), f);
        }
        if let Some(t) = &self.token {
            // Sent as a header: anything else would fail every request (never echoed).
            if !t.expose().bytes().all(|b| b.is_ascii_graphic()) {
                c.add(
                    format!("{key}.token"),
                    "must be printable ASCII without spaces or control characters (it is sent \
                     as the X-Consul-Token header); the value is not shown",
                );
            }
        }
        if let Some(ns) = &self.namespace
            && !ns
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            // Consul's namespace names are DNS-like (`acl.ValidateNamespaceName` in Enterprise).
            c.add(
                format!("{key}.namespace"),
                "may hold only letters, digits, `-` and `_`",
            );
        }
        c.template(format!("{key}.id"), &self.id);
        if Template::parse(&self.id).is_ok_and(|t| t.is_literal()) {
            c.add(
                format!("{key}.id"),
                "has no placeholder: every endpoint would get the same id (e.g. %NAME%_%HOST%_%PORT%)",
            );
        }
        for (i, t) in self.tags.iter().enumerate() {
            c.template(format!("{key}.tags.{i}"), t);
            if t.to_ascii_lowercase().starts_with("rancon-") {
                c.add(
                    format!("{key}.tags.{i}"),
                    "tags starting with `rancon-` are ownership markers; only rancon sets them",
                );
            }
        }
        for (m, t) in &self.meta {
            c.template(format!("{key}.meta.{m}"), t);
            let clean = crate::labels::meta_key(m);
            let lower = clean.to_ascii_lowercase();
            if clean.is_empty() || crate::labels::RESERVED_META.contains(&clean.as_str()) {
                c.add(
                    format!("{key}.meta.{m}"),
                    "meta key is empty after sanitising or reserved for rancon's ownership marker",
                );
            } else if lower.starts_with("rancon-") {
                c.add(
                    format!("{key}.meta.{m}"),
                    "meta keys starting with `rancon-` are reserved for rancon",
                );
            } else if lower.starts_with("consul-") {
                // structs.ValidateServiceMetadata: "Key prefix 'consul-' is reserved for
                // internal use" — Consul would refuse every registration with 400.
                c.add(
                    format!("{key}.meta.{m}"),
                    "meta keys starting with `consul-` are reserved by Consul, which refuses them",
                );
            }
        }
        // The owner is the value of meta `rancon-owner` (512 characters at most) and part of
        // the tag `rancon-<owner>`, which Consul's DNS interface serves as one label (63).
        if common.owner.len() > MAX_OWNER {
            c.add(
                "owner",
                format!(
                    "at most {MAX_OWNER} characters with a consul backend (the tag \
                     `rancon-<owner>` must fit a 63-character DNS label)"
                ),
            );
        }
        if let Some(ttl) = self.check_ttl
            && ttl < common.interval
        {
            c.add(
                format!("{key}.check_ttl"),
                format!(
                    "is shorter than `interval` ({}): the check would turn critical between \
                     two rounds",
                    humantime::format_duration(common.interval)
                ),
            );
        }
        if !(1..=1024).contains(&self.concurrency) {
            c.add(format!("{key}.concurrency"), "must be from 1 to 1024");
        }
        if self.timeout.is_zero() {
            c.add(format!("{key}.timeout"), "must be more than 0s");
        }
        if self.node.trim().is_empty() {
            c.add(format!("{key}.node"), "must not be empty");
        }
        if self.check_ttl.is_some_and(|t| t.as_secs() < 1) {
            c.add(format!("{key}.check_ttl"), "must be at least 1s");
        }
        if self
            .check_deregister_after
            .is_some_and(|t| t.as_secs() < 60)
        {
            c.add(
                format!("{key}.check_deregister_after"),
                "Consul's minimum is 1m",
            );
        }
        self.tls.validate(&format!("{key}.tls"), c);
    }

    /// The variables of Consul's own CLI and API client (`api/api.go` `defaultConfig`).
    fn conventional_env(&mut self, var: &dyn Fn(&str) -> Option<String>) {
        // Go's strconv.ParseBool, which Consul uses for its boolean variables.
        let flag = |k: &str| match var(k).as_deref() {
            Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Some(true),
            Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Some(false),
            _ => None,
        };
        if self.url.is_empty() {
            self.url = match var("CONSUL_HTTP_ADDR") {
                Some(a) if a.contains("://") => a,
                Some(a) if flag("CONSUL_HTTP_SSL") == Some(true) => format!("https://{a}"),
                Some(a) => format!("http://{a}"),
                None => DEFAULT_URL.into(),
            };
        }
        if self.http_auth.is_none() {
            self.http_auth = var("CONSUL_HTTP_AUTH")
                .filter(|a| !a.is_empty())
                .map(Secret::new);
        }
        if self.namespace.is_none() {
            self.namespace = var("CONSUL_NAMESPACE").filter(|n| !n.is_empty());
        }
        if self.token.is_none() && self.token_file.is_none() {
            self.token_file = var("CONSUL_HTTP_TOKEN_FILE").map(PathBuf::from);
            if self.token_file.is_none() {
                self.token = var("CONSUL_HTTP_TOKEN").map(Secret::new);
            }
        }
        let tls = &mut self.tls;
        if tls.ca_file.is_none() {
            tls.ca_file = var("CONSUL_CACERT").map(PathBuf::from);
        }
        if tls.ca_path.is_none() {
            tls.ca_path = var("CONSUL_CAPATH").map(PathBuf::from);
        }
        if tls.cert_file.is_none() && tls.key_file.is_none() {
            tls.cert_file = var("CONSUL_CLIENT_CERT").map(PathBuf::from);
            tls.key_file = var("CONSUL_CLIENT_KEY").map(PathBuf::from);
        }
        if tls.server_name.is_none() {
            // Consul strips a `:port` from the name.
            tls.server_name = var("CONSUL_TLS_SERVER_NAME")
                .map(|n| n.rsplit_once(':').map_or(n.clone(), |(h, _)| h.to_string()));
        }
        if !tls.insecure && flag("CONSUL_HTTP_SSL_VERIFY") == Some(false) {
            tls.insecure = true;
        }
    }

    fn sources(&self) -> Option<&[String]> {
        self.sources.as_deref()
    }
}
