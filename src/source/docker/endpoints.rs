//! A container's endpoints: which addresses it offers, with which properties and names.

use super::config::EndpointKind;
use super::container::{Container, image_name};
use super::registrator;
use crate::error::{Skip, SkipKind};
use crate::labels;
use crate::model::Endpoint;
use crate::source::Naming;
use crate::template::Props;
use std::collections::BTreeSet;

/// The labels docker compose puts on the containers it creates.
const COMPOSE_SERVICE: &str = "com.docker.compose.service";
const COMPOSE_PROJECT: &str = "com.docker.compose.project";

/// The rules that turn a container into endpoints.
pub(super) struct Rules {
    pub source: String,
    pub endpoints: EndpointKind,
    pub host_address: Option<String>,
    pub host_address_v6: Option<String>,
    pub network: Option<String>,
    pub registrator: bool,
    pub naming: Naming,
}

/// One address of one port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Addr {
    private: u16,
    protocol: String,
    /// IPv6 after IPv4, so the first address of a port is the IPv4 one when there is one.
    v6: bool,
    host: String,
    port: u16,
}

impl Rules {
    /// Whether the container is selected at all: a `<prefix>` label, or registrator's
    /// conventions (everything not opted out). An unselected container is never skipped.
    fn selected(&self, c: &Container) -> bool {
        let prefix = &self.naming.prefix;
        labels::select(&c.labels, prefix).is_some()
            || (self.registrator && !labels::opted_out(&c.labels, prefix))
    }

    /// The endpoints of one container, or why it cannot be registered. `host_id` is the
    /// Docker host's name (the daemon's `Name`).
    pub fn endpoints(
        &self,
        c: &Container,
        host_id: &str,
        out: &mut Vec<Endpoint>,
        skipped: &mut Vec<Skip>,
    ) {
        if !self.selected(c) {
            return;
        }
        let skip = |kind: SkipKind, reason: String| Skip {
            endpoint: format!("{}/{}", self.source, crate::output::clean(&c.name)),
            kind,
            reason,
        };
        let compose = |k: &str| c.labels.get(k).filter(|v| !v.is_empty());
        let name = compose(COMPOSE_SERVICE).unwrap_or(&c.name);
        let fields = [
            ("container name", c.name.as_str()),
            ("image", c.image.as_str()),
            (COMPOSE_SERVICE, name.as_str()),
            (
                COMPOSE_PROJECT,
                compose(COMPOSE_PROJECT).map_or("", |s| s.as_str()),
            ),
            ("daemon name", host_id),
        ];
        // Values that become names, ids and tags: a control character there would forge log
        // lines or registry entries.
        if let Some((what, _)) = fields.iter().find(|(_, v)| v.chars().any(char::is_control)) {
            skipped.push(skip(
                SkipKind::Shape,
                format!("its {what} holds control characters"),
            ));
            return;
        }
        let addrs = match self.addresses(c) {
            Ok(a) => a,
            Err(why) => return skipped.push(skip(SkipKind::Address, why)),
        };
        let ports: BTreeSet<(u16, &str)> = addrs
            .iter()
            .map(|a| (a.private, a.protocol.as_str()))
            .collect();
        let group = ports.len() > 1;
        let mut previous: Option<(u16, &str)> = None;
        for a in &addrs {
            let mut base = Props::new();
            base.insert("name".into(), name.clone());
            if let Some(s) = compose(COMPOSE_SERVICE) {
                base.insert("service".into(), s.clone());
            }
            if let Some(p) = compose(COMPOSE_PROJECT) {
                base.insert("stack".into(), p.clone());
            }
            base.insert("container_name".into(), c.name.clone());
            base.insert("container_id".into(), c.id.clone());
            base.insert("image".into(), image_name(&c.image).to_string());
            base.insert("host".into(), a.host.clone());
            base.insert("port".into(), a.port.to_string());
            base.insert("protocol".into(), a.protocol.clone());
            base.insert("private_port".into(), a.private.to_string());
            base.insert("host_id".into(), host_id.to_string());
            base.insert("health".into(), c.health.clone());
            // registrator's id, `<host>:<container>:<exposed port>[:udp]`; a port's further
            // addresses (IPv6, several bindings) add theirs so every id is distinct.
            let mut id = format!("{host_id}:{}:{}", c.name, a.private);
            if a.protocol != "tcp" {
                id = format!("{id}:{}", a.protocol);
            }
            let this = (a.private, a.protocol.as_str());
            if previous == Some(this) {
                id = format!("{id}:{}:{}", a.host, a.port);
            }
            previous = Some(this);
            base.insert("id".into(), id);
            let mut labels = c.labels.clone();
            if self.registrator {
                let md = registrator::metadata(&c.details.env, &c.labels, a.private);
                let at = registrator::At {
                    image: &c.image,
                    private: a.private,
                    protocol: &a.protocol,
                    group,
                    host: &a.host,
                    port: a.port,
                };
                let Some(svc) = registrator::service(&md, &at, &self.naming.prefix) else {
                    continue;
                };
                if svc.name.chars().any(char::is_control) || svc.name.is_empty() {
                    skipped.push(skip(
                        SkipKind::Label,
                        "SERVICE_NAME is empty or holds control characters".into(),
                    ));
                    continue;
                }
                base.insert("name".into(), svc.name);
                // The container's own `<prefix>.*` labels win over registrator's.
                for (k, v) in svc.labels {
                    labels.entry(k).or_insert(v);
                }
            }
            match self
                .naming
                .endpoint(&self.source, base, &labels, self.registrator)
            {
                Ok(Some(ep)) => out.push(ep),
                Ok(None) => {}
                Err(s) => skipped.push(s),
            }
        }
    }

    /// Every address the container offers, sorted and each once.
    fn addresses(&self, c: &Container) -> Result<Vec<Addr>, String> {
        let host_mode = c.network_mode == "host";
        let mut out = Vec::new();
        let mut push = |private: u16, protocol: &str, host: &str, port: u16| {
            out.push(Addr {
                private,
                protocol: protocol.to_string(),
                v6: host.contains(':'),
                host: host.to_string(),
                port,
            });
        };
        match self.endpoints {
            EndpointKind::Published => {
                let any = || {
                    self.host_address.as_deref().ok_or_else(|| {
                        format!(
                            "a port is published on every interface: set sources.{}.host_address",
                            self.source
                        )
                    })
                };
                if host_mode {
                    // `--network host`: the exposed ports are the host's (registrator does
                    // the same).
                    for (port, protocol) in &c.details.exposed {
                        push(*port, protocol, any()?, *port);
                    }
                }
                for p in &c.ports {
                    let Some(port) = p.host_port else { continue };
                    let host = match p.host_ip.as_deref() {
                        None | Some("0.0.0.0") => any()?,
                        Some("::") => match self.host_address_v6.as_deref() {
                            Some(h) => h,
                            None => any()?,
                        },
                        Some(ip) => match ip.parse::<std::net::IpAddr>() {
                            Ok(_) => ip,
                            Err(_) => {
                                return Err(format!(
                                    "port {} is published on {:?}, not an IP address",
                                    p.private,
                                    crate::output::clean(ip)
                                ));
                            }
                        },
                    };
                    push(p.private, &p.protocol, host, port);
                }
            }
            EndpointKind::Internal => {
                if host_mode {
                    return Err(
                        "it runs on the host's network: it has no address of its own \
                                (use endpoints = \"published\")"
                            .into(),
                    );
                }
                let addrs = match &self.network {
                    Some(n) => c.networks.get(n).ok_or_else(|| {
                        format!("it is not on network {n:?} (it is on {})", names(c))
                    })?,
                    None if c.networks.len() == 1 => {
                        c.networks.values().next().unwrap_or_else(|| unreachable!())
                    }
                    None if c.networks.is_empty() => return Err("it is on no network".into()),
                    None => {
                        return Err(format!(
                            "it is on several networks ({}): choose one with sources.{}.network",
                            names(c),
                            self.source
                        ));
                    }
                };
                let mut ports: Vec<(u16, &str)> = c
                    .ports
                    .iter()
                    .map(|p| (p.private, p.protocol.as_str()))
                    .chain(c.details.exposed.iter().map(|(p, pr)| (*p, pr.as_str())))
                    .collect();
                ports.sort_unstable();
                ports.dedup();
                for ip in [&addrs.v4, &addrs.v6].into_iter().flatten() {
                    if ip.parse::<std::net::IpAddr>().is_err() {
                        return Err(format!(
                            "its address {:?} is not an IP address",
                            crate::output::clean(ip)
                        ));
                    }
                    for (port, protocol) in &ports {
                        push(*port, protocol, ip, *port);
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// The container's network names, for messages.
fn names(c: &Container) -> String {
    let n: Vec<String> = c
        .networks
        .keys()
        .map(|k| format!("{:?}", crate::output::clean(k)))
        .collect();
    if n.is_empty() {
        "none".into()
    } else {
        n.join(", ")
    }
}
