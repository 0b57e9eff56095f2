//! The view a watch keeps: the last complete listing with the events received since applied,
//! and whether it can stand in for a listing.

use super::container::Container;
use super::endpoints::Rules;
use crate::error::Skip;
use crate::model::Endpoint;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// How many containers events may add between two listings, and how many changes a listing
/// in flight may collect: a daemon (or anyone between) sending endless new ids must not take
/// all the memory. Past it the view is dropped and the next round lists.
pub(super) const MAX_ADDED: usize = 10_000;

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

/// What applying one change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Applied {
    Changed,
    Unchanged,
    Overflow,
}

impl View {
    pub fn new(host_id: String, containers: BTreeMap<String, Container>) -> Self {
        Self {
            host_id,
            containers,
            added: 0,
        }
    }

    /// Every endpoint, and what could not be used.
    pub fn endpoints(&self, rules: &Rules) -> (Vec<Endpoint>, Vec<Skip>) {
        let (mut eps, mut skipped) = (Vec::new(), Vec::new());
        for c in self.containers.values() {
            rules.endpoints(c, &self.host_id, &mut eps, &mut skipped);
        }
        (eps, skipped)
    }

    fn derive(&self, rules: &Rules, id: &str) -> (Vec<Endpoint>, Vec<Skip>) {
        let (mut eps, mut skipped) = (Vec::new(), Vec::new());
        if let Some(c) = self.containers.get(id) {
            rules.endpoints(c, &self.host_id, &mut eps, &mut skipped);
        }
        (eps, skipped)
    }

    /// Applies one change: the container as it is now replaces what the view held.
    pub fn apply(&mut self, rules: &Rules, change: &Change) -> Applied {
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
}

/// Shared by the source (listings, `current`) and its watch.
#[derive(Default)]
pub(super) struct Shared {
    state: Mutex<State>,
    /// Set once `watch` started: listings keep a view only then.
    pub watching: AtomicBool,
}

#[derive(Default)]
struct State {
    view: Option<View>,
    /// The view is a complete listing made while the event stream was up, with every change
    /// received since applied.
    valid: bool,
    /// Bumped by every connect and disconnect: a listing that saw one is not trusted.
    epoch: u64,
    connected: bool,
    /// Listings in flight.
    fetching: usize,
    /// Changes received while a listing was in flight, re-applied to its result (it may
    /// have read a container before the change).
    journal: Vec<Change>,
    journal_full: bool,
}

/// What the watch should do after a change.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum After {
    /// Tell the daemon: what the source yields changed.
    Wake,
    /// Nothing the source yields changed.
    Quiet,
    /// The view cannot be kept: the next round must list.
    Resync,
}

/// A listing in flight; dropped unfinished (a failed or cancelled listing), the view stays.
pub(super) struct Fetch<'a> {
    shared: &'a Shared,
    epoch: u64,
    done: bool,
}

impl Fetch<'_> {
    /// The listing completed: it becomes the view, with the changes received meanwhile
    /// re-applied. It is trusted only when the stream stayed up throughout.
    pub fn complete(mut self, rules: &Rules, mut view: View) {
        self.done = true;
        let mut st = self.shared.lock();
        for change in &st.journal {
            view.apply(rules, change);
        }
        st.valid = st.epoch == self.epoch && st.connected && !st.journal_full;
        st.view = Some(view);
        st.end_fetch();
    }
}

impl Drop for Fetch<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.shared.lock().end_fetch();
        }
    }
}

impl State {
    fn end_fetch(&mut self) {
        self.fetching -= 1;
        if self.fetching == 0 {
            self.journal = Vec::new();
            self.journal_full = false;
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn watching(&self) -> bool {
        self.watching.load(Ordering::Relaxed)
    }

    /// A listing starts (before its first request).
    pub fn begin_fetch(&self) -> Fetch<'_> {
        let mut st = self.lock();
        st.fetching += 1;
        Fetch {
            shared: self,
            epoch: st.epoch,
            done: false,
        }
    }

    /// The view's endpoints, while it can stand in for a listing.
    pub fn current(&self, rules: &Rules) -> Option<(Vec<Endpoint>, Vec<Skip>)> {
        let st = self.lock();
        let view = st.view.as_ref().filter(|_| st.valid)?;
        Some(view.endpoints(rules))
    }

    /// The health the view holds for a container (`None`: not in the view, or no view).
    pub fn health(&self, id: &str) -> Option<String> {
        let st = self.lock();
        let c = st.view.as_ref()?.containers.get(id)?;
        Some(c.health.clone())
    }

    /// The stream is up (or down): what happened meanwhile is unknown until a listing.
    pub fn set_connected(&self, up: bool) {
        let mut st = self.lock();
        st.epoch += 1;
        st.valid = false;
        st.connected = up;
    }

    /// Applies a change the watch learnt.
    pub fn apply(&self, rules: &Rules, change: Change) -> After {
        let mut st = self.lock();
        let mut resync = false;
        let mut journaled = false;
        if st.fetching > 0 {
            if st.journal.len() < MAX_ADDED {
                st.journal.push(change.clone());
                journaled = true;
            } else if !st.journal_full {
                st.journal_full = true;
                resync = true;
            }
        }
        let after = match st.view.as_mut().map(|v| v.apply(rules, &change)) {
            Some(Applied::Changed) => After::Wake,
            Some(Applied::Overflow) => {
                st.valid = false;
                After::Resync
            }
            // The listing in flight will hold it; whether it changes anything is unknown.
            None if journaled => After::Wake,
            Some(Applied::Unchanged) | None => After::Quiet,
        };
        if resync { After::Resync } else { after }
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
        shared.set_connected(true);
        shared
            .begin_fetch()
            .complete(&rules, View::new("h".into(), BTreeMap::new()));
        let apply = |c: Change| shared.apply(&rules, c);
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
        shared.set_connected(false);
        assert!(shared.current(&rules).is_none());
    }
}
