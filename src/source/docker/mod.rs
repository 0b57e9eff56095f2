//! `type = "docker"`: the running containers of a Docker Engine (or Podman's compatible API),
//! listed in one request and followed through the daemon's event stream.
//!
//! A listing is `GET /containers/json` plus one inspect per container the source has not seen
//! yet (its environment, exposed ports and health check never change); an event makes one
//! inspect of the container it names.

mod client;
mod config;
mod container;
mod endpoints;
mod events;
mod registrator;
mod state;

pub use config::{Convention, DockerSourceConfig, EndpointKind};

use super::{Naming, Source};
use crate::config::Common;
use crate::error::{BuildError, Skip, SourceError};
use crate::model::Endpoint;
use crate::watch::WakeTx;
use async_trait::async_trait;
use container::{Container, Details};
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Inspects in flight at once during a listing.
const INSPECTS: usize = 8;

/// Reads one Engine.
pub struct DockerSource(Arc<Inner>);

struct Inner {
    client: client::Client,
    rules: endpoints::Rules,
    shared: state::Shared,
    /// What an inspect told of each container seen, by id.
    details: Mutex<HashMap<String, Arc<Details>>>,
    /// The daemon's name, once known.
    host_id: Mutex<Option<String>>,
    watch: bool,
}

impl Inner {
    fn host_id(&self) -> Option<String> {
        self.host_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_host_id(&self, id: String) {
        *self.host_id.lock().unwrap_or_else(|p| p.into_inner()) = Some(id);
    }

    fn remember(&self, c: &Container) {
        self.details
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(c.id.clone(), c.details.clone());
    }

    fn forget(&self, id: &str) {
        self.details
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// The running containers of a listing, completed by inspects where the listing does not
    /// say enough. A container that stopped between the listing and its inspect is left out:
    /// the daemon said so.
    async fn containers(
        &self,
        summaries: Vec<bollard::models::ContainerSummary>,
    ) -> Result<BTreeMap<String, Container>, SourceError> {
        let known = self
            .details
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let shape = |why: String| SourceError::Decode {
            what: "/containers/json".into(),
            message: format!("{why}; the listing is incomplete"),
        };
        let mut out = BTreeMap::new();
        let mut ask = Vec::new();
        let mut listed = Vec::new();
        for s in summaries {
            let Some(id) = s.id.clone() else {
                return Err(shape("a container without Id".into()));
            };
            // Ids go into inspect URLs.
            if !events::plausible_id(&id) {
                return Err(shape(format!(
                    "a container Id {:?}",
                    crate::output::clean(&id)
                )));
            }
            listed.push(id.clone());
            match known.get(&id) {
                Some(d) => match container::from_summary(s, d.clone()).map_err(shape)? {
                    Some((c, true)) => drop(out.insert(id, c)),
                    Some((_, false)) => ask.push(id),
                    None => {}
                },
                None => {
                    if container::may_run(&s) {
                        ask.push(id);
                    }
                }
            }
        }
        let mut inspected = futures::stream::iter(ask)
            .map(|id| async move { (self.client.inspect(&id).await, id) })
            .buffer_unordered(INSPECTS);
        while let Some((r, id)) = inspected.next().await {
            let Some(i) = r? else { continue };
            if let Some(c) =
                container::from_inspect(i).map_err(|why| shape(format!("{id}: {why}")))?
            {
                self.remember(&c);
                out.insert(c.id.clone(), c);
            }
        }
        drop(inspected);
        let mut details = self.details.lock().unwrap_or_else(|p| p.into_inner());
        let listed: std::collections::HashSet<String> = listed.into_iter().collect();
        details.retain(|id, _| listed.contains(id));
        Ok(out)
    }
}

impl DockerSource {
    /// Builds the source; the config was validated. Nothing is asked of the daemon yet.
    pub fn new(name: &str, cfg: &DockerSourceConfig, global: &Common) -> Result<Self, BuildError> {
        Ok(Self(Arc::new(Inner {
            client: client::Client::new(cfg)?,
            rules: endpoints::Rules {
                source: name.to_string(),
                endpoints: cfg.endpoints,
                host_address: cfg.host_address.clone(),
                host_address_v6: cfg.host_address_v6.clone(),
                network: cfg.network.clone(),
                registrator: cfg.conventions.contains(&Convention::Registrator),
                naming: Naming::new(global, cfg.label_prefix.as_deref(), cfg.name.as_deref())?,
            },
            shared: state::Shared::default(),
            details: Mutex::default(),
            host_id: Mutex::default(),
            watch: cfg.watch,
        })))
    }
}

#[async_trait]
impl Source for DockerSource {
    fn name(&self) -> &str {
        &self.0.rules.source
    }

    async fn fetch(&self) -> Result<(Vec<Endpoint>, Vec<Skip>), SourceError> {
        let inner = &self.0;
        // Begun before the first request: a change the watch applies from here on is
        // re-applied to this listing's view.
        let fetch = inner.shared.begin_fetch();
        inner.client.negotiate(false).await?;
        let host_id = match inner.host_id() {
            Some(h) => h,
            None => {
                let (h, _) = inner.client.info().await?;
                inner.set_host_id(h.clone());
                h
            }
        };
        let summaries = inner.client.list().await?;
        let view = state::View::new(host_id, inner.containers(summaries).await?);
        let out = crate::source::watched::View::endpoints(&view, &inner.rules);
        if inner.shared.watching() {
            fetch.complete(&inner.rules, view);
        }
        Ok(out)
    }

    fn watch(&self, wake: WakeTx) -> Option<tokio::task::JoinHandle<()>> {
        if !self.0.watch {
            return None;
        }
        self.0
            .shared
            .watching
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Some(tokio::spawn(events::run(self.0.clone(), wake)))
    }

    fn current(&self) -> Option<(Vec<Endpoint>, Vec<Skip>)> {
        self.0.shared.current(&self.0.rules)
    }
}
