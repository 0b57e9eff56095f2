//! What one project holds (stacks, services, containers), the endpoints derived from it, and
//! the changes events make to it. A listing and an event decode into the same types and go
//! through the same derivation, so an event can never yield what a listing would not.

use super::config::EndpointKind;
use super::{Filter, Naming};
use crate::error::{Skip, SkipKind, SourceError};
use crate::model::{Endpoint, Meta, shrunk};
use crate::template::Props;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

pub(super) use crate::source::watched::{Applied, MAX_ADDED};

/// States that say a resource is gone. A removal reaches rancon only this way (or not at all,
/// when cattle purged the row before the event was sent: `ResourceChangeEventProcessor` drops
/// events whose resource cannot be read).
const GONE: [&str; 2] = ["removed", "purged"];

/// A stack (`environment` in v1) or a project: an id and a name.
#[derive(Deserialize, Clone)]
pub(super) struct Named {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub links: HashMap<String, Option<String>>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub(super) struct Service {
    pub id: String,
    name: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    health_state: Option<String>,
    #[serde(default)]
    stack_id: Option<String>,
    #[serde(default)]
    environment_id: Option<String>,
    #[serde(default)]
    launch_config: Option<LaunchConfig>,
    #[serde(default)]
    secondary_launch_configs: Option<Vec<LaunchConfig>>,
    #[serde(default)]
    public_endpoints: Option<Vec<PublicEndpoint>>,
    #[serde(default)]
    instance_ids: Option<Vec<String>>,
}

#[derive(Deserialize, Default, Clone)]
struct LaunchConfig {
    /// A sidekick's name (secondary launch configs only).
    #[serde(default)]
    name: Option<String>,
    #[serde(default, deserialize_with = "labels")]
    labels: Option<Meta>,
    #[serde(default)]
    ports: Option<Vec<String>>,
    /// Ports open to the managed network without being published.
    #[serde(default)]
    expose: Option<Vec<String>>,
}

impl LaunchConfig {
    /// The private ports of `ports` and `expose`, each once.
    fn private_ports(&self) -> Vec<u16> {
        let mut out: Vec<u16> = self
            .ports
            .iter()
            .chain(&self.expose)
            .flatten()
            .filter_map(|p| private_port(p))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl Service {
    /// Drops what the derivation never reads, so the view holds less than the listing: labels
    /// outside the prefix (Rancher's own `io.rancher.*` are most of them), and the addresses of
    /// the other endpoint kind.
    pub(super) fn trim(&mut self, rules: &Trim) {
        let prefix = &rules.prefix;
        let ours = |k: &String| {
            let k = k.to_ascii_lowercase();
            *k == *prefix
                || k.strip_prefix(prefix.as_str())
                    .is_some_and(|r| r.starts_with('.'))
        };
        let configs = self
            .launch_config
            .iter_mut()
            .chain(self.secondary_launch_configs.iter_mut().flatten());
        for lc in configs {
            if let Some(labels) = &mut lc.labels {
                labels.retain(|k, _| ours(k));
                *labels = shrunk(std::mem::take(labels));
            }
            if rules.endpoints == EndpointKind::Public {
                lc.ports = None;
                lc.expose = None;
            }
        }
        match rules.endpoints {
            EndpointKind::Public => {
                self.instance_ids = None;
                self.secondary_launch_configs = None;
            }
            EndpointKind::Internal => self.public_endpoints = None,
        }
    }
}

/// What `Service::trim` keeps: the labels under the prefix and one kind of address. Owned, so
/// a listing's decoder thread can trim items as they arrive.
#[derive(Clone)]
pub(super) struct Trim {
    /// The label prefix, lower-case.
    prefix: String,
    endpoints: EndpointKind,
}

impl Trim {
    pub(super) fn of(rules: &Rules) -> Self {
        Self {
            prefix: rules.naming.prefix.to_ascii_lowercase(),
            endpoints: rules.endpoints,
        }
    }
}

/// Labels as a view keeps them: decoded into a `BTreeMap` (any order and size, no quadratic
/// insert), kept as a sorted list (a `BTreeMap` node is 540 bytes for a single label).
fn labels<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Meta>, D::Error> {
    Ok(Option::<BTreeMap<String, String>>::deserialize(d)?.map(|m| m.into_iter().collect()))
}

/// The label cattle puts on a container naming the launch config it runs: the primary's
/// marker below, or a sidekick's name.
const LAUNCH_CONFIG_LABEL: &str = "io.rancher.service.launch.config";
const PRIMARY_LAUNCH_CONFIG: &str = "io.rancher.service.primary.launch.config";

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct PublicEndpoint {
    ip_address: String,
    port: u16,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub(super) struct Container {
    pub id: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    primary_ip_address: Option<String>,
    #[serde(default, deserialize_with = "labels")]
    labels: Option<Meta>,
}

impl Container {
    /// Drops the labels the derivation never reads: all but the launch config's.
    pub(super) fn trim(&mut self) {
        if let Some(labels) = &mut self.labels {
            labels.retain(|k, _| k == LAUNCH_CONFIG_LABEL);
            *labels = shrunk(std::mem::take(labels));
        }
    }
}

/// A listed service that did not decode: (its name or id, the decoder's message). It stays in
/// the view as a skip, so the source stays incomplete (nothing it fed is deregistered).
pub(super) type Undecoded = (String, String);

/// One decoded resource of a change event.
#[derive(Clone)]
pub(super) enum Resource {
    Stack(Named),
    Service(Box<Service>),
    Container(Container),
}

impl Resource {
    /// The kind, for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Resource::Stack(_) => "stack",
            Resource::Service(_) => "service",
            Resource::Container(_) => "container",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Resource::Stack(s) => &s.id,
            Resource::Service(s) => &s.id,
            Resource::Container(c) => &c.id,
        }
    }

    fn gone(&self) -> bool {
        let state = match self {
            Resource::Stack(s) => &s.state,
            Resource::Service(s) => &s.state,
            Resource::Container(c) => &c.state,
        };
        GONE.contains(&state.as_str())
    }
}

/// The rules that turn a project's resources into endpoints.
pub(super) struct Rules {
    pub source: String,
    pub v1: bool,
    pub endpoints: EndpointKind,
    pub stacks: Filter,
    pub naming: Naming,
}

/// A service's place in the view: cattle lists by numeric id (`1s9` before `1s10`), and so
/// does the view, so endpoints come in the listing's order (the first of two duplicates wins).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key(usize, String);

impl Key {
    fn new(id: &str) -> Self {
        Self(id.len(), id.to_string())
    }
}

/// One project as last listed, with the events received since applied.
pub(super) struct ProjectView {
    /// The project's API URL (its `links.self`).
    pub url: String,
    /// The project's name (`%ENVIRONMENT%`).
    pub environment: String,
    stacks: HashMap<String, String>,
    services: BTreeMap<Key, Result<Service, Undecoded>>,
    containers: HashMap<String, Container>,
    /// Items events added since the listing.
    added: usize,
}

impl ProjectView {
    /// A project's view from its three listings. A stack or container that does not decode
    /// would silently rename or drop services (stack "" fails include_stacks and changes
    /// %STACK%): the listing fails instead. A service that does not decode stays as a skip.
    pub fn from_listing(
        rules: &Rules,
        url: String,
        environment: String,
        stacks_coll: &str,
        stacks: Vec<Result<Named, Undecoded>>,
        services: Vec<Result<Service, Undecoded>>,
        containers: Vec<Result<Container, Undecoded>>,
    ) -> Result<Self, SourceError> {
        let undecoded = |what: &str, (label, e): Undecoded| SourceError::Decode {
            what: format!("{url}/{what} ({label})"),
            message: e,
        };
        let stacks = stacks
            .into_iter()
            .map(|s| {
                let s = s.map_err(|e| undecoded(stacks_coll, e))?;
                Ok((s.id.clone(), s.name.unwrap_or(s.id)))
            })
            .collect::<Result<_, SourceError>>()?;
        let containers = containers
            .into_iter()
            .map(|c| {
                let mut c = c.map_err(|e| undecoded("containers", e))?;
                c.trim();
                Ok((c.id.clone(), c))
            })
            .collect::<Result<_, SourceError>>()?;
        let trim = Trim::of(rules);
        let services = services
            .into_iter()
            .enumerate()
            .map(|(i, s)| match s {
                Ok(mut s) => {
                    s.trim(&trim);
                    (Key::new(&s.id), Ok(s))
                }
                // Not an id a service can have: never replaced by an event.
                Err(e) => (Key(0, i.to_string()), Err(e)),
            })
            .collect();
        Ok(Self {
            url,
            environment,
            stacks,
            services,
            containers,
            added: 0,
        })
    }

    /// Applies one change: the resource as it is now replaces what the view held, or leaves
    /// it when its state says it is gone.
    pub fn apply(&mut self, rules: &Rules, change: &Resource) -> Applied {
        if matches!(change, Resource::Container(_)) && rules.endpoints == EndpointKind::Public {
            return Applied::Unchanged;
        }
        let affected = self.affected(change);
        let before = self.derive(rules, &affected);
        let id = change.id().to_string();
        let key = Key::new(&id);
        let exists = match change {
            Resource::Stack(_) => self.stacks.contains_key(&id),
            Resource::Service(_) => self.services.contains_key(&key),
            Resource::Container(_) => self.containers.contains_key(&id),
        };
        if change.gone() {
            match change {
                Resource::Stack(_) => drop(self.stacks.remove(&id)),
                Resource::Service(_) => drop(self.services.remove(&key)),
                Resource::Container(_) => drop(self.containers.remove(&id)),
            }
        } else {
            if !exists {
                if self.added >= MAX_ADDED {
                    return Applied::Overflow;
                }
                self.added += 1;
            }
            match change.clone() {
                Resource::Stack(s) => drop(self.stacks.insert(id, s.name.unwrap_or(s.id))),
                Resource::Service(mut s) => {
                    s.trim(&Trim::of(rules));
                    drop(self.services.insert(key, Ok(*s)))
                }
                Resource::Container(mut c) => {
                    c.trim();
                    drop(self.containers.insert(id, c))
                }
            }
        }
        if self.derive(rules, &affected) == before {
            Applied::Unchanged
        } else {
            Applied::Changed
        }
    }

    /// The services whose endpoints a change can alter.
    fn affected(&self, change: &Resource) -> Vec<Key> {
        match change {
            Resource::Service(s) => vec![Key::new(&s.id)],
            Resource::Stack(st) => self
                .services
                .iter()
                .filter(|(_, s)| {
                    s.as_ref().is_ok_and(|s| {
                        s.stack_id.as_ref() == Some(&st.id)
                            || s.environment_id.as_ref() == Some(&st.id)
                    })
                })
                .map(|(k, _)| k.clone())
                .collect(),
            Resource::Container(c) => self
                .services
                .iter()
                .filter(|(_, s)| {
                    s.as_ref()
                        .is_ok_and(|s| s.instance_ids.iter().flatten().any(|i| *i == c.id))
                })
                .map(|(k, _)| k.clone())
                .collect(),
        }
    }

    fn derive(&self, rules: &Rules, keys: &[Key]) -> (Vec<Endpoint>, Vec<Skip>) {
        let (mut eps, mut skipped) = (Vec::new(), Vec::new());
        for k in keys {
            if let Some(s) = self.services.get(k) {
                self.service_endpoints(rules, s, &mut |ep| eps.push(ep), &mut skipped);
            }
        }
        (eps, skipped)
    }

    /// Every endpoint of the project, and what could not be used.
    pub fn endpoints(&self, rules: &Rules, out: &mut dyn FnMut(Endpoint), skipped: &mut Vec<Skip>) {
        for s in self.services.values() {
            self.service_endpoints(rules, s, out, skipped);
        }
    }

    fn service_endpoints(
        &self,
        rules: &Rules,
        svc: &Result<Service, Undecoded>,
        endpoints: &mut dyn FnMut(Endpoint),
        skipped: &mut Vec<Skip>,
    ) {
        let environment = &self.environment;
        let svc = match svc {
            Ok(s) => s,
            Err((label, e)) => {
                skipped.push(Skip {
                    endpoint: format!("{}/{environment}/{label}", rules.source),
                    kind: SkipKind::Shape,
                    reason: format!("unexpected shape: {e}"),
                });
                return;
            }
        };
        if matches!(
            svc.state.as_str(),
            "inactive" | "removed" | "purged" | "removing" | "purging"
        ) {
            return;
        }
        let stack_id = if rules.v1 {
            &svc.environment_id
        } else {
            &svc.stack_id
        };
        let stack = match stack_id.as_ref().map(|id| (id, self.stacks.get(id))) {
            None => String::new(),
            Some((_, Some(name))) => name.clone(),
            // Its stack is not in this listing (created or removed in between): unknown,
            // so the service is skipped and nothing it held is deregistered.
            Some((id, None)) => {
                skipped.push(Skip {
                    endpoint: format!("{}/{environment}/{}", rules.source, svc.name),
                    kind: SkipKind::Shape,
                    reason: format!("its stack {id:?} is not in the listing"),
                });
                return;
            }
        };
        if !rules.stacks.allows(&stack) {
            return;
        }
        let primary = LaunchConfig::default();
        let lc = svc.launch_config.as_ref().unwrap_or(&primary);
        let mut base = Props::new();
        base.insert("name".into(), svc.name.clone());
        base.insert("service".into(), svc.name.clone());
        base.insert("stack".into(), stack);
        base.insert("environment".into(), environment.to_string());
        base.insert("service_id".into(), svc.id.clone());
        base.insert(
            "health".into(),
            svc.health_state.clone().unwrap_or_default(),
        );
        // Each address with the labels of the launch config it belongs to.
        let mut addrs: Vec<(String, u16, &LaunchConfig)> = Vec::new();
        match rules.endpoints {
            EndpointKind::Public => {
                for p in svc.public_endpoints.iter().flatten() {
                    addrs.push((p.ip_address.clone(), p.port, lc));
                }
            }
            EndpointKind::Internal => {
                let sidekicks = svc.secondary_launch_configs.as_deref().unwrap_or_default();
                for c in svc
                    .instance_ids
                    .iter()
                    .flatten()
                    .filter_map(|id| self.containers.get(id))
                    .filter(|c| c.state == "running")
                {
                    let Some(ip) = c.primary_ip_address.clone() else {
                        continue;
                    };
                    // A sidekick runs its own launch config: pairing it with the primary's
                    // ports would register `<sidekick IP>:<primary port>`.
                    let which = c
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(LAUNCH_CONFIG_LABEL))
                        .map(String::as_str)
                        .unwrap_or(PRIMARY_LAUNCH_CONFIG);
                    let config = if which == PRIMARY_LAUNCH_CONFIG {
                        Some(lc)
                    } else {
                        sidekicks.iter().find(|s| s.name.as_deref() == Some(which))
                    };
                    let Some(config) = config else {
                        skipped.push(Skip {
                            endpoint: format!("{}/{environment}/{}", rules.source, svc.name),
                            kind: SkipKind::Shape,
                            reason: format!(
                                "container {} runs launch config {:?}, which the service does not list",
                                c.id, which
                            ),
                        });
                        continue;
                    };
                    for port in config.private_ports() {
                        addrs.push((ip.clone(), port, config));
                    }
                }
            }
        }
        let empty = Meta::new();
        for (host, port, config) in addrs {
            let mut props = base.clone();
            props.insert("host".into(), host);
            props.insert("port".into(), port.to_string());
            let labels = config.labels.as_ref().unwrap_or(&empty);
            match rules.naming.endpoint(&rules.source, props, labels, false) {
                Ok(Some(ep)) => endpoints(ep),
                Ok(None) => {}
                Err(s) => skipped.push(s),
            }
        }
    }
}

/// The private (container) port of a docker-compose port spec: `8080:80/tcp`, `80/tcp`,
/// `10.0.0.5:53:53/udp` all give the last number before the protocol.
fn private_port(spec: &str) -> Option<u16> {
    let without_proto = spec.split('/').next()?;
    without_proto.rsplit(':').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        let common = crate::build::Config::default().common();
        Rules {
            source: "r".into(),
            v1: false,
            endpoints: EndpointKind::Public,
            stacks: Filter::new(&[], &[]).unwrap(),
            naming: Naming::new(&common, None, None).unwrap(),
        }
    }

    fn svc(id: &str, state: &str) -> Resource {
        let s = serde_json::json!({"id": id, "name": id, "state": state,
            "launchConfig": {"labels": {"rancon": ""}},
            "publicEndpoints": [{"ipAddress": "10.0.0.1", "port": 80}]});
        Resource::Service(Box::new(serde_json::from_value(s).unwrap()))
    }

    #[test]
    fn events_add_a_bounded_number_of_items_and_remove_only_what_says_gone() {
        let rules = rules();
        let mut v = ProjectView::from_listing(
            &rules,
            "p".into(),
            "e".into(),
            "stacks",
            vec![],
            vec![],
            vec![],
        )
        .unwrap();
        let count = |v: &ProjectView| {
            let (mut eps, mut sk) = (vec![], vec![]);
            v.endpoints(&rules, &mut |ep| eps.push(ep), &mut sk);
            eps.len()
        };
        for i in 0..MAX_ADDED {
            assert_eq!(
                v.apply(&rules, &svc(&format!("1s{i}"), "active")),
                Applied::Changed
            );
        }
        assert_eq!(
            v.apply(&rules, &svc("1s-extra", "active")),
            Applied::Overflow
        );
        assert_eq!(count(&v), MAX_ADDED);
        // The same again changes nothing; a known one may still change.
        assert_eq!(v.apply(&rules, &svc("1s0", "active")), Applied::Unchanged);
        assert_eq!(v.apply(&rules, &svc("1s0", "removed")), Applied::Changed);
        assert_eq!(count(&v), MAX_ADDED - 1);
    }

    #[test]
    fn private_ports_from_compose_specs() {
        assert_eq!(private_port("8080:80/tcp"), Some(80));
        assert_eq!(private_port("80/tcp"), Some(80));
        assert_eq!(private_port("10.0.0.5:53:53/udp"), Some(53));
        assert_eq!(private_port("x/tcp"), None);
    }
}
