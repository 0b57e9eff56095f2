//! The view a watch keeps: the last complete listing with the events received since applied,
//! and whether it can stand in for a listing.

use super::view::{Applied, MAX_ADDED, ProjectView, Resource, Rules};
use crate::error::Skip;
use crate::model::Endpoint;
use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Shared by the source (listings, `current`) and its subscriptions.
pub(super) struct Shared {
    state: Mutex<State>,
    /// The projects to subscribe to (their API URLs), as the last listing found them.
    pub projects: tokio::sync::watch::Sender<Vec<String>>,
    /// Event frames skipped: not JSON, an unexpected shape, a resource that does not match the
    /// frame, larger than `max_response_size`.
    pub skipped: AtomicU64,
    /// Set once `watch` started: listings keep a view only then (a `--once` run does not pay
    /// for it).
    pub watching: AtomicBool,
}

#[derive(Default)]
struct State {
    views: Option<Vec<ProjectView>>,
    /// The views are a complete listing made while every project's subscription was up, with
    /// every event received since applied.
    valid: bool,
    /// Bumped by every connect and disconnect: a listing that saw one is not trusted.
    epoch: u64,
    /// Projects whose subscription is up.
    connected: HashSet<String>,
    /// Listings in flight.
    fetching: usize,
    /// Changes received while a listing was in flight, re-applied to its result (the listing
    /// may have read a resource before the change).
    journal: Vec<(String, Resource)>,
    /// The journal hit its bound: the listing in flight cannot be completed by it.
    journal_full: bool,
}

/// What the subscription should do after a change.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum After {
    /// Tell the daemon: what the source yields changed.
    Wake,
    /// Nothing the source yields changed.
    Quiet,
    /// The view cannot be kept (too many new items): the next round must list.
    Resync,
}

/// A listing in flight; dropping it unfinished (a cancelled round) leaves the view as it was.
pub(super) struct Fetch<'a> {
    shared: &'a Shared,
    epoch: u64,
    done: bool,
}

impl Fetch<'_> {
    /// The listing completed: it becomes the view, with the changes received meanwhile
    /// re-applied. It is trusted only when no subscription connected or dropped meanwhile and
    /// every listed project's subscription is up.
    pub fn complete(mut self, rules: &Rules, mut views: Vec<ProjectView>) {
        self.done = true;
        let mut st = self.shared.lock();
        for (project, change) in &st.journal {
            if let Some(v) = views.iter_mut().find(|v| v.url == *project) {
                v.apply(rules, change);
            }
        }
        st.valid = st.epoch == self.epoch
            && !st.journal_full
            && views.iter().all(|v| st.connected.contains(&v.url));
        st.views = Some(views);
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

    fn moved(&mut self) {
        self.epoch += 1;
        self.valid = false;
    }
}

impl Shared {
    pub fn new(projects: Vec<String>) -> Self {
        Self {
            state: Mutex::default(),
            projects: tokio::sync::watch::Sender::new(projects),
            skipped: AtomicU64::new(0),
            watching: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether listings should keep a view.
    pub fn watching(&self) -> bool {
        self.watching.load(Ordering::Relaxed)
    }

    /// A listing starts (before its first request). The view it will replace goes now: two
    /// copies of a large project would double the peak memory, and rounds never overlap, so
    /// nothing asks for the view meanwhile (the changes received are journaled).
    pub fn begin_fetch(&self) -> Fetch<'_> {
        let mut st = self.lock();
        st.fetching += 1;
        st.views = None;
        st.valid = false;
        Fetch {
            shared: self,
            epoch: st.epoch,
            done: false,
        }
    }

    /// The view's endpoints, while it can stand in for a listing.
    pub fn current(&self, rules: &Rules) -> Option<(Vec<Endpoint>, Vec<Skip>)> {
        let st = self.lock();
        let views = st.views.as_ref().filter(|_| st.valid)?;
        let (mut eps, mut skipped) = (Vec::new(), Vec::new());
        for v in views {
            v.endpoints(rules, &mut eps, &mut skipped);
        }
        Some((eps, skipped))
    }

    /// A project's subscription is up: events flow from now on, but what happened before is
    /// unknown until the next listing.
    pub fn connected(&self, project: &str) {
        let mut st = self.lock();
        st.moved();
        st.connected.insert(project.to_string());
    }

    /// A project's subscription dropped: events are being lost.
    pub fn disconnected(&self, project: &str) {
        let mut st = self.lock();
        st.moved();
        st.connected.remove(project);
    }

    /// Applies a change a project's subscription received.
    pub fn apply(&self, rules: &Rules, project: &str, change: Resource) -> After {
        let mut st = self.lock();
        let mut resync = false;
        let mut journaled = false;
        if st.fetching > 0 {
            if st.journal.len() < MAX_ADDED {
                st.journal.push((project.to_string(), change.clone()));
                journaled = true;
            } else if !st.journal_full {
                // The listing in flight cannot be completed: list again.
                st.journal_full = true;
                resync = true;
            }
        }
        let view = st
            .views
            .as_mut()
            .and_then(|v| v.iter_mut().find(|v| v.url == project));
        let after = match view.map(|v| v.apply(rules, &change)) {
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
