//! Rancher's watched view: the projects of the last listing, one subscription (stream) per
//! project, and what the source and its subscriptions share.

use super::view::{ProjectView, Resource, Rules};
use crate::error::Skip;
use crate::model::Endpoint;
pub(super) use crate::source::watched::After;
use crate::source::watched::{Applied, View, Watched};
use std::sync::atomic::AtomicU64;

/// The projects of one listing; a project's subscription is the stream named by its URL.
pub(super) struct Projects(pub Vec<ProjectView>);

impl View for Projects {
    type Change = Resource;
    type Rules = Rules;

    fn apply(&mut self, rules: &Rules, project: &str, change: &Resource) -> Applied {
        match self.0.iter_mut().find(|v| v.url == project) {
            Some(v) => v.apply(rules, change),
            // A project this listing did not find: nothing of it is yielded.
            None => Applied::Unchanged,
        }
    }

    fn streams(&self) -> Vec<&str> {
        self.0.iter().map(|v| v.url.as_str()).collect()
    }

    fn endpoints(&self, rules: &Rules) -> (Vec<Endpoint>, Vec<Skip>) {
        let (mut eps, mut skipped) = (Vec::new(), Vec::new());
        for v in &self.0 {
            v.endpoints(rules, &mut |ep| eps.push(ep), &mut skipped);
        }
        (eps, skipped)
    }
}

/// Shared by the source (listings, `current`) and its subscriptions.
pub(super) struct Shared {
    /// The view and the rules of when it stands in for a listing.
    pub watched: Watched<Projects>,
    /// The projects to subscribe to (their API URLs), as the last listing found them.
    pub projects: tokio::sync::watch::Sender<Vec<String>>,
    /// Event frames skipped: not JSON, an unexpected shape, a resource that does not match the
    /// frame, larger than `max_response_size`.
    pub skipped: AtomicU64,
}

impl Shared {
    pub fn new(projects: Vec<String>) -> Self {
        Self {
            watched: Watched::default(),
            projects: tokio::sync::watch::Sender::new(projects),
            skipped: AtomicU64::new(0),
        }
    }
}
