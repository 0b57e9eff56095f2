//! Backends hold registrations; they list what this owner holds and apply plans. The closed
//! enum of their configs, and `build`.

pub mod consul;
pub mod etcd;
pub mod traefik_file;
pub mod traefik_route;

use crate::config::{Collector, Common, Component};
use crate::error::{BackendError, BuildError, Skip, SkipKind};
use crate::model::{Endpoint, Registration, RegistrationMap};
use crate::plan::Plan;
use crate::watch::WakeTx;
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What applying a plan achieved.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    /// Writes that succeeded.
    pub done: usize,
    /// Writes that failed. They are retried next round.
    pub failed: Vec<WriteFailure>,
}

/// One write that failed; retried next round.
#[derive(Debug, Clone, Serialize)]
pub struct WriteFailure {
    /// The registration id.
    pub id: String,
    /// Why.
    #[serde(serialize_with = "crate::error::as_text")]
    pub error: BackendError,
}

/// What a backend holds for this owner.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// The owned registrations that could be listed.
    pub regs: RegistrationMap,
    /// Parts that could not be listed (one agent of several): their registrations are absent
    /// from `regs`, so nothing there is deregistered, and the round counts as failed.
    pub partial: Vec<BackendError>,
    /// Desired ids the registry holds for someone else (another owner, or nobody), with who
    /// holds them: rancon never writes over them.
    pub foreign: BTreeMap<String, String>,
}

/// A registry rancon keeps in step.
#[async_trait]
pub trait Backend: Send + Sync {
    /// The component name (`[backends.<name>]`).
    fn name(&self) -> &str;
    /// The sources this backend reads (`None`: all).
    fn sources(&self) -> Option<&[String]>;
    /// The registration this backend wants for one endpoint.
    fn render(&self, ep: &Endpoint) -> Result<Registration, Skip>;
    /// The registrations this owner holds there, and nothing else. `desired` tells a backend
    /// with several servers (Consul agents per host) where to look.
    async fn list(&self, desired: &RegistrationMap) -> Result<Listing, BackendError>;
    /// `list` for `check --connect`: reads only, changes nothing (no lease, no session).
    async fn probe(&self, desired: &RegistrationMap) -> Result<Listing, BackendError> {
        self.list(desired).await
    }
    /// Whether `apply` refreshes `reg` every round even when it needs no write (a TTL check);
    /// only those are kept for it in `unchanged`.
    fn refreshes(&self, _reg: &Registration) -> bool {
        false
    }
    /// Performs the plan's writes, and per-round refreshes (TTL checks) of `unchanged`, the
    /// desired registrations that need no write and that `refreshes` asked for; `actual` is
    /// what `list` returned this round.
    /// Called every round that is not a dry run.
    async fn apply(
        &self,
        unchanged: &RegistrationMap,
        actual: &RegistrationMap,
        plan: &Plan,
    ) -> ApplyReport;
    /// Starts watching the registry for changes to what this owner holds, if this backend can
    /// (`None`: it cannot or is not configured to). The task sends `Wake::Backend` when
    /// something there may have changed (rate-limited by the task), so the engine lists this
    /// backend again and repairs a registration deleted or edited by hand.
    fn watch(&self, _wake: WakeTx) -> Option<tokio::task::JoinHandle<()>> {
        None
    }
}

/// A registry to keep in step, selected by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BackendConfig {
    /// Traefik's file provider: one router and one service per registered name.
    TraefikFile(traefik_file::TraefikFileConfig),
    /// A Consul agent or catalog.
    Consul(Box<consul::ConsulBackendConfig>),
    /// etcd keys (rancon's JSON layout or CoreDNS skydns records) under one lease.
    Etcd(Box<etcd::EtcdBackendConfig>),
}

impl Component for BackendConfig {
    fn from_value(value: &figment::value::Value) -> Result<Self, Box<figment::Error>> {
        use crate::config::{tagged, variant};
        let (kind, body) = tagged::<Self>(value)?;
        match kind.as_str() {
            "traefik_file" => variant(&body).map(BackendConfig::TraefikFile),
            "consul" => variant(&body).map(BackendConfig::Consul),
            "etcd" => variant(&body).map(BackendConfig::Etcd),
            // A kind without an arm here still reads, through serde (errors less precise).
            _ => variant(value),
        }
    }

    fn validate(&self, key: &str, common: &Common, c: &mut Collector<'_>) {
        match self {
            BackendConfig::TraefikFile(t) => t.validate(key, common, c),
            BackendConfig::Consul(k) => k.validate(key, common, c),
            BackendConfig::Etcd(e) => e.validate(key, common, c),
        }
    }

    fn conventional_env(&mut self, var: &dyn Fn(&str) -> Option<String>) {
        match self {
            BackendConfig::TraefikFile(t) => t.conventional_env(var),
            BackendConfig::Consul(k) => k.conventional_env(var),
            BackendConfig::Etcd(e) => e.conventional_env(var),
        }
    }

    fn sources(&self) -> Option<&[String]> {
        match self {
            BackendConfig::TraefikFile(t) => t.sources(),
            BackendConfig::Consul(k) => k.sources(),
            BackendConfig::Etcd(e) => e.sources(),
        }
    }
}

/// Builds one backend from its validated config.
pub fn build(
    name: &str,
    cfg: &BackendConfig,
    common: &Common,
) -> Result<Box<dyn Backend>, BuildError> {
    Ok(match cfg {
        BackendConfig::TraefikFile(c) => Box::new(traefik_file::TraefikFile::new(name, c)?),
        BackendConfig::Consul(c) => Box::new(consul::Consul::new(name, c, common)?),
        BackendConfig::Etcd(c) => Box::new(etcd::Etcd::new(name, c, common)?),
    })
}

/// Parses the `port` property of an endpoint.
pub fn port_of(ep: &Endpoint) -> Result<u16, Skip> {
    ep.prop("port")
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| Skip {
            endpoint: ep.describe(),
            kind: SkipKind::Port,
            reason: format!("port {:?} is not a number from 1 to 65535", ep.prop("port")),
        })
}

/// The `host` property of an endpoint, when it can be registered and used as a URL's host: an
/// IP address that is not unspecified (`0.0.0.0`, `::`: registries refuse them), or a DNS
/// name. Nothing else: no `/`, `:port`, `@`, `%`, whitespace or control characters, which
/// could redirect a request (and its token) built from a `%HOST%` template.
pub fn address_of(ep: &Endpoint) -> Result<&str, Skip> {
    let host = ep.prop("host");
    check_address(host).map(|()| host).map_err(|why| Skip {
        endpoint: ep.describe(),
        kind: SkipKind::Address,
        reason: format!("address {:?} {why}", cut(host)),
    })
}

/// Why `host` is not an address `address_of` accepts.
pub fn check_address(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("is empty");
    }
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return if ip.is_unspecified() {
            Err("is unspecified (it names every interface, not one host)")
        } else {
            Ok(())
        };
    }
    // RFC 1123 host names; `_` is tolerated (container and Windows host names carry it).
    let name = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() > 253 || !name.split('.').all(label_ok) {
        return Err("is neither an IP address nor a DNS name");
    }
    // All-numeric last label: a mistyped IPv4 address (`10.0.0.256`), not a name.
    if name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("is neither an IP address nor a DNS name");
    }
    Ok(())
}

/// At most 80 characters of a value, for messages.
fn cut(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::check_address;

    #[test]
    fn addresses_are_bare_ips_or_dns_names() {
        for ok in [
            "127.0.0.2",
            "10.42.0.7",
            "::1",
            "fe80::1",
            "web-1.example.org",
            "host_1",
            "node.",
        ] {
            assert_eq!(check_address(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "0.0.0.0",
            "::",
            "127.0.0.5:8500/steal?x=",
            "127.0.0.5:8500",
            "user@host",
            "evil.org/x",
            "[::1]",
            "a b",
            "a\nb",
            "host%2f",
            "-web",
            "10.0.0.256",
            "a..b",
        ] {
            assert!(check_address(bad).is_err(), "{bad:?}");
        }
    }
}
