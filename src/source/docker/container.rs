//! A running container in one shape, whether a listing or an inspect described it.
//!
//! Both paths end here so an event can never yield what a listing would not: a listing's
//! summary and an inspect of the same container give equal `Container`s (ports sorted,
//! networks by name).

use bollard::models::{
    ContainerInspectResponse, ContainerSummary, ContainerSummaryHealthStatusEnum,
    ContainerSummaryStateEnum, EndpointSettings, HealthStatusEnum,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What never changes in a container's life and only an inspect tells: read once per id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Details {
    /// The `SERVICE_*` entries of `Config.Env`, `KEY=value` each (registrator's conventions
    /// read them). The rest is never kept: it is where containers hold their passwords, and
    /// it would cost memory for every container seen.
    pub env: Vec<String>,
    /// `Config.ExposedPorts` as (port, protocol): what a `--network host` container offers.
    pub exposed: Vec<(u16, String)>,
    /// It has a `HEALTHCHECK` (not `NONE`): a listing that does not say its health is asked.
    pub healthcheck: bool,
}

/// One port of a container: a binding on the host, or an exposed port without one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Port {
    /// The port inside the container.
    pub private: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// The host address it is published on (`0.0.0.0`, `::`, or one address).
    pub host_ip: Option<String>,
    /// The host port, when published.
    pub host_port: Option<u16>,
}

/// A container's addresses on one network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Addrs {
    pub v4: Option<String>,
    pub v6: Option<String>,
}

/// A running container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Container {
    pub id: String,
    /// Without Docker's leading `/`.
    pub name: String,
    /// The image as the container was created from it (`nginx:1.27`, `reg:5000/a/b:1`).
    pub image: String,
    pub labels: BTreeMap<String, String>,
    /// `bridge`, `host`, `none`, a network name, `container:<id>`.
    pub network_mode: String,
    /// Docker's health: `""` (no HEALTHCHECK), `starting`, `healthy`, `unhealthy`.
    pub health: String,
    /// Sorted.
    pub ports: Vec<Port>,
    pub networks: BTreeMap<String, Addrs>,
    pub details: Arc<Details>,
}

/// Why a summary or inspect cannot be used.
pub(super) type Shape = String;

/// Whether a summary's container may be running: it says `running`, or it does not say
/// (`State` came with API 1.23, moby `docs/api/version-history.md`; an older daemon's summary
/// has none, and a container it does not call stopped must be inspected, not dropped).
pub(super) fn may_run(s: &ContainerSummary) -> bool {
    matches!(s.state, None | Some(ContainerSummaryStateEnum::RUNNING))
}

/// A listing's summary, or `None` when it is not running (paused, restarting), with whether
/// the summary tells all an inspect would: not when it does not say the health (see
/// `health_of_summary`) or whether it runs.
pub(super) fn from_summary(
    s: ContainerSummary,
    details: Arc<Details>,
) -> Result<Option<(Container, bool)>, Shape> {
    if !may_run(&s) {
        return Ok(None);
    }
    let id =
        s.id.filter(|i| !i.is_empty())
            .ok_or("a container without Id")?;
    let health = health_of_summary(s.health.and_then(|h| h.status), s.status.as_deref());
    let told = (health.is_some() || !details.healthcheck) && s.state.is_some();
    let mut ports: Vec<Port> = s
        .ports
        .unwrap_or_default()
        .into_iter()
        .map(|p| Port {
            private: p.private_port,
            protocol: p
                .typ
                .map(|t| t.to_string())
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "tcp".into()),
            host_ip: p.ip.filter(|i| !i.is_empty()),
            host_port: p.public_port.filter(|p| *p != 0),
        })
        .collect();
    ports.sort();
    ports.dedup();
    let c = Container {
        name: canonical_name(s.names.as_deref().unwrap_or_default(), &id),
        id,
        image: s.image.unwrap_or_default(),
        labels: sorted(s.labels),
        network_mode: s
            .host_config
            .and_then(|h| h.network_mode)
            .unwrap_or_default(),
        health: health.unwrap_or_default().to_string(),
        ports,
        networks: networks(s.network_settings.and_then(|n| n.networks)),
        details,
    };
    Ok(Some((c, told)))
}

/// An inspect: `Ok(None)` when the container is not running; its details alongside.
pub(super) fn from_inspect(i: ContainerInspectResponse) -> Result<Option<Container>, Shape> {
    let id =
        i.id.filter(|i| !i.is_empty())
            .ok_or("a container without Id")?;
    let state = i.state.unwrap_or_default();
    let running =
        state.running == Some(true) && state.paused != Some(true) && state.restarting != Some(true);
    if !running {
        return Ok(None);
    }
    let config = i.config.unwrap_or_default();
    let healthcheck = config
        .healthcheck
        .as_ref()
        .and_then(|h| h.test.as_ref())
        .and_then(|t| t.first())
        .is_some_and(|t| t != "NONE");
    let mut exposed: Vec<(u16, String)> = config
        .exposed_ports
        .unwrap_or_default()
        .iter()
        .filter_map(|p| port_key(p))
        .collect();
    exposed.sort();
    let details = Details {
        env: config
            .env
            .unwrap_or_default()
            .into_iter()
            .filter(|kv| kv.starts_with("SERVICE_"))
            .collect(),
        exposed,
        healthcheck,
    };
    let net = i.network_settings.unwrap_or_default();
    let mut ports = Vec::new();
    for (key, bindings) in net.ports.unwrap_or_default() {
        let Some((private, protocol)) = port_key(&key) else {
            return Err(format!("port {key:?} is not <port>/<protocol>"));
        };
        let bindings = bindings.unwrap_or_default();
        if bindings.is_empty() {
            ports.push(Port {
                private,
                protocol: protocol.clone(),
                host_ip: None,
                host_port: None,
            });
        }
        for b in bindings {
            ports.push(Port {
                private,
                protocol: protocol.clone(),
                host_ip: b.host_ip.filter(|i| !i.is_empty()),
                host_port: b.host_port.and_then(|p| p.parse().ok()).filter(|p| *p != 0),
            });
        }
    }
    ports.sort();
    ports.dedup();
    let health = match state.health.and_then(|h| h.status) {
        Some(HealthStatusEnum::STARTING) => "starting",
        Some(HealthStatusEnum::HEALTHY) => "healthy",
        Some(HealthStatusEnum::UNHEALTHY) => "unhealthy",
        _ => "",
    };
    Ok(Some(Container {
        name: i
            .name
            .map(|n| n.trim_start_matches('/').to_string())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| short(&id)),
        id,
        image: config.image.unwrap_or_default(),
        labels: sorted(config.labels),
        network_mode: i
            .host_config
            .and_then(|h| h.network_mode)
            .unwrap_or_default(),
        health: health.into(),
        ports,
        networks: networks(net.networks),
        details: Arc::new(details),
    }))
}

/// Health from a listing: the `Health` field (API 1.52+), else the end of `Status`, which
/// moby writes as `Up 5 minutes (healthy)`, `(unhealthy)` or `(health: starting)`
/// (moby `container/health.go` `Health.String`, used by `container/state.go` `State.String`).
/// `None`: the listing does not say.
pub(super) fn health_of_summary(
    field: Option<ContainerSummaryHealthStatusEnum>,
    status: Option<&str>,
) -> Option<&'static str> {
    match field {
        Some(ContainerSummaryHealthStatusEnum::STARTING) => return Some("starting"),
        Some(ContainerSummaryHealthStatusEnum::HEALTHY) => return Some("healthy"),
        Some(ContainerSummaryHealthStatusEnum::UNHEALTHY) => return Some("unhealthy"),
        Some(ContainerSummaryHealthStatusEnum::NONE) => return Some(""),
        _ => {}
    }
    let status = status?.trim_end();
    [
        ("(healthy)", "healthy"),
        ("(unhealthy)", "unhealthy"),
        ("(health: starting)", "starting"),
    ]
    .into_iter()
    .find_map(|(suffix, h)| status.ends_with(suffix).then_some(h))
}

/// `80/tcp` → (80, tcp); a port without protocol is tcp (moby `nat.ParsePort`).
fn port_key(key: &str) -> Option<(u16, String)> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
    let proto = proto.to_ascii_lowercase();
    matches!(proto.as_str(), "tcp" | "udp" | "sctp").then_some((port, proto))
}

/// The container's own name among `Names` (links add `/other/alias` entries).
fn canonical_name(names: &[String], id: &str) -> String {
    names
        .iter()
        .map(|n| n.trim_start_matches('/'))
        .find(|n| !n.is_empty() && !n.contains('/'))
        .map_or_else(|| short(id), str::to_string)
}

fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

fn sorted(labels: Option<HashMap<String, String>>) -> BTreeMap<String, String> {
    labels.unwrap_or_default().into_iter().collect()
}

fn networks(n: Option<HashMap<String, EndpointSettings>>) -> BTreeMap<String, Addrs> {
    let ip = |s: Option<String>| s.filter(|s| !s.is_empty());
    n.unwrap_or_default()
        .into_iter()
        .map(|(name, e)| {
            (
                name,
                Addrs {
                    v4: ip(e.ip_address),
                    v6: ip(e.global_ipv6_address),
                },
            )
        })
        .collect()
}

/// The image without tag or digest: `reg:5000/team/app:1.2@sha256:…` → `reg:5000/team/app`.
pub(super) fn image_name(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(i) if !image[i + 1..].contains('/') && !image.starts_with("sha256:") => &image[..i],
        _ => image,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_lose_tag_and_digest_only() {
        assert_eq!(image_name("nginx:1.27"), "nginx");
        assert_eq!(image_name("nginx"), "nginx");
        assert_eq!(
            image_name("reg:5000/team/app:1.2@sha256:ab"),
            "reg:5000/team/app"
        );
        assert_eq!(image_name("reg:5000/team/app"), "reg:5000/team/app");
        assert_eq!(image_name("sha256:0443684d2c72"), "sha256:0443684d2c72");
    }

    #[test]
    fn health_from_a_listing() {
        assert_eq!(
            health_of_summary(None, Some("Up 3 seconds (healthy)")),
            Some("healthy")
        );
        assert_eq!(
            health_of_summary(None, Some("Up 3 seconds (health: starting)")),
            Some("starting")
        );
        assert_eq!(
            health_of_summary(None, Some("Up 1 hour (unhealthy)")),
            Some("unhealthy")
        );
        assert_eq!(health_of_summary(None, Some("Up 3 seconds")), None);
        assert_eq!(
            health_of_summary(
                Some(ContainerSummaryHealthStatusEnum::UNHEALTHY),
                Some("Up")
            ),
            Some("unhealthy")
        );
    }

    #[test]
    fn only_registrators_variables_are_kept_from_the_environment() {
        let i: ContainerInspectResponse = serde_json::from_value(serde_json::json!({
            "Id": "abc",
            "State": {"Running": true},
            "Config": {"Env": ["DB_PASSWORD=hunter2", "SERVICE_NAME=db", "PATH=/bin"]},
        }))
        .unwrap();
        let c = from_inspect(i).unwrap().unwrap();
        assert_eq!(c.details.env, ["SERVICE_NAME=db"]);
    }

    #[test]
    fn the_name_is_the_one_without_a_link_path() {
        let names = vec!["/other/alias".to_string(), "/web".to_string()];
        assert_eq!(canonical_name(&names, "0123456789abcdef"), "web");
        assert_eq!(canonical_name(&[], "0123456789abcdef"), "0123456789ab");
    }
}
