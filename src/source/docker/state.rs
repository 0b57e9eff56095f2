//! Docker's watched view: the running containers of the last listing, kept by one event
//! stream (the rules of when it stands in for a listing are `source::watched`'s).

use super::container::Container;
use super::endpoints::Rules;
use crate::error::Skip;
use crate::model::Endpoint;
pub(super) use crate::source::watched::After;
use crate::source::watched::{Applied, MAX_ADDED, Watched};
use std::collections::BTreeMap;

/// The one event stream of a daemon.
pub(super) const STREAM: &str = "events";

/// Shared by the source (listings, `current`) and its watch.
pub(super) type Shared = Watched<View>;

/// The running containers of one daemon.
#[derive(Clone)]
pub(super) struct View {
    /// The daemon's name (`%HOST_ID%`).
    pub host_id: String,
    pub containers: BTreeMap<String, Container>,
    /// Containers events added since the listing.
    added: usize,
}

/// What an event (through an inspect) says a container is now.
#[derive(Debug, Clone)]
pub(super) enum Change {
    /// Running, as described.
    Running(Box<Container>),
    /// Not running, or gone: no endpoints.
    Stopped(String),
}

impl Change {
    fn id(&self) -> &str {
        match self {
            Change::Running(c) => &c.id,
            Change::Stopped(id) => id,
        }
    }
}

impl View {
    pub fn new(host_id: String, containers: BTreeMap<String, Container>) -> Self {
        Self {
            host_id,
            containers,
            added: 0,
        }
    }

    fn derive(&self, rules: &Rules, id: &str) -> (Vec<Endpoint>, Vec<Skip>) {
        let (mut eps, mut skipped) = (Vec::new(), Vec::new());
        if let Some(c) = self.containers.get(id) {
            rules.endpoints(c, &self.host_id, &mut eps, &mut skipped);
        }
        (eps, skipped)
    }

    /// The health the view holds for a container (`None`: not in the view).
    pub fn health(&self, id: &str) -> Option<String> {
        self.containers.get(id).map(|c| c.health.clone())
    }
}

impl crate::source::watched::View for View {
    type Change = Change;
    type Rules = Rules;

    /// Applies one change: the container as it is now replaces what the view held.
    fn apply(&mut self, rules: &Rules, _stream: &str, change: &Change) -> Applied {
        let id = change.id();
        let before = self.derive(rules, id);
        match change {
            Change::Stopped(_) => drop(self.containers.remove(id)),
            Change::Running(c) => {
                if !self.containers.contains_key(id) {
                    if self.added >= MAX_ADDED {
                        return Applied::Overflow;
                    }
                    self.added += 1;
                }
                self.containers.insert(id.to_string(), (**c).clone());
            }
        }
        if self.derive(rules, id) == before {
            Applied::Unchanged
        } else {
            Applied::Changed
        }
    }

    fn streams(&self) -> Vec<&str> {
        vec![STREAM]
    }

    /// Every endpoint, and what could not be used.
    fn endpoints(&self, rules: &Rules) -> (Vec<Endpoint>, Vec<Skip>) {
        let (mut eps, mut skipped) = (Vec::new(), Vec::new());
        for c in self.containers.values() {
            rules.endpoints(c, &self.host_id, &mut eps, &mut skipped);
        }
        (eps, skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Naming;
    use crate::source::docker::config::EndpointKind;
    use crate::source::docker::container::{Details, Port};
    use std::sync::Arc;

    fn rules() -> Rules {
        let common = crate::build::Config::default().common();
        Rules {
            source: "docker".into(),
            endpoints: EndpointKind::Published,
            host_address: Some("10.0.0.5".into()),
            host_address_v6: None,
            network: None,
            registrator: false,
            naming: Naming::new(&common, None, None).unwrap(),
        }
    }

    fn web(health: &str) -> Container {
        Container {
            id: "c1".into(),
            name: "web".into(),
            image: "nginx:1".into(),
            labels: [("rancon".to_string(), String::new())]
                .into_iter()
                .collect(),
            network_mode: "bridge".into(),
            health: health.into(),
            ports: vec![Port {
                private: 80,
                protocol: "tcp".into(),
                host_ip: Some("0.0.0.0".into()),
                host_port: Some(8080),
            }],
            networks: BTreeMap::new(),
            details: Arc::new(Details::default()),
        }
    }

    #[test]
    fn only_changes_wake_so_repeated_health_events_are_quiet() {
        let (rules, shared) = (rules(), Shared::default());
        shared.connected(STREAM);
        shared
            .begin_fetch()
            .complete(&rules, View::new("h".into(), BTreeMap::new()));
        let apply = |c: Change| shared.apply(&rules, STREAM, c);
        assert_eq!(
            apply(Change::Running(Box::new(web("healthy")))),
            After::Wake
        );
        // Podman reports health after every check: the same state again changes nothing.
        assert_eq!(
            apply(Change::Running(Box::new(web("healthy")))),
            After::Quiet
        );
        assert_eq!(
            apply(Change::Running(Box::new(web("unhealthy")))),
            After::Wake
        );
        let (eps, _) = shared.current(&rules).unwrap();
        assert_eq!(eps[0].prop("health"), "unhealthy");
        assert_eq!(eps[0].prop("host"), "10.0.0.5");
        assert_eq!(apply(Change::Stopped("c1".into())), After::Wake);
        assert_eq!(apply(Change::Stopped("c1".into())), After::Quiet);
        assert!(shared.current(&rules).unwrap().0.is_empty());
        // A disconnect drops the view until the next listing.
        shared.disconnected(STREAM);
        assert!(shared.current(&rules).is_none());
    }
}
