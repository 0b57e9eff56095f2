//! Sources list services; they only read. The closed enum of their configs, and `build`.

pub mod docker;
mod naming;
pub mod rancher;
pub mod static_file;
pub mod watched;

pub use naming::Naming;

use crate::config::{Collector, Common, Component};
use crate::error::{BuildError, Skip, SourceError};
use crate::model::Endpoint;
use crate::watch::WakeTx;
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a source hands its endpoints, one at a time.
pub type Sink<'a> = dyn FnMut(Endpoint) + Send + 'a;

/// A place services come from.
#[async_trait]
pub trait Source: Send + Sync {
    /// The component name (`[sources.<name>]`).
    fn name(&self) -> &str;
    /// Lists every selected endpoint. An error means "unknown", never "empty".
    /// Endpoints that cannot be used are returned in the second list, each with its reason.
    async fn fetch(&self) -> Result<(Vec<Endpoint>, Vec<Skip>), SourceError>;
    /// `fetch`, handing each endpoint to `sink` as soon as it is made instead of collecting
    /// them, so a round renders each and lets it go (at 20,000 services a listing's endpoints
    /// are 11 MiB held together). Returns how many there were, and the skipped items. On an
    /// error, what `sink` was given is not the whole listing.
    async fn fetch_each(&self, sink: &mut Sink<'_>) -> Result<(usize, Vec<Skip>), SourceError> {
        let (endpoints, skipped) = self.fetch().await?;
        let n = endpoints.len();
        endpoints.into_iter().for_each(sink);
        Ok((n, skipped))
    }
    /// Starts watching the orchestrator for changes, if this source can (`None`: it cannot or
    /// is not configured to). The task keeps the view `current` returns up to date and sends a
    /// `Wake::Source` per applied event, and a `Wake::Resync` after every (re)connect: events
    /// are lost while disconnected, so a full listing (`fetch`) must follow. It subscribes
    /// before that listing, so a change made in between is not lost. `fetch` refreshes the
    /// view too.
    fn watch(&self, _wake: WakeTx) -> Option<tokio::task::JoinHandle<()>> {
        None
    }
    /// The view kept current by the watch: the last complete listing with the events received
    /// since applied, built without asking the server. `None` while there is no such view (no
    /// watch, disconnected, or no complete listing since the last reconnect): the engine
    /// calls `fetch` then.
    fn current(&self) -> Option<(Vec<Endpoint>, Vec<Skip>)> {
        None
    }
}

/// A source of services, selected by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceConfig {
    /// Services declared in the configuration or in a file: external services, and the demo.
    Static(static_file::StaticSourceConfig),
    /// A Rancher 1.6 server (API `v2-beta` or `v1`).
    Rancher(Box<rancher::RancherSourceConfig>),
    /// A Docker Engine (or Podman's Docker-compatible API): its running containers.
    Docker(Box<docker::DockerSourceConfig>),
}

impl Component for SourceConfig {
    fn from_value(value: &figment::value::Value) -> Result<Self, Box<figment::Error>> {
        use crate::config::{tagged, variant};
        let (kind, body) = tagged::<Self>(value)?;
        match kind.as_str() {
            "static" => variant(&body).map(SourceConfig::Static),
            "rancher" => variant(&body).map(SourceConfig::Rancher),
            "docker" => variant(&body).map(SourceConfig::Docker),
            // A kind without an arm here still reads, through serde (errors less precise).
            _ => variant(value),
        }
    }

    fn validate(&self, key: &str, common: &Common, c: &mut Collector<'_>) {
        match self {
            SourceConfig::Static(s) => s.validate(key, common, c),
            SourceConfig::Rancher(r) => r.validate(key, common, c),
            SourceConfig::Docker(d) => d.validate(key, common, c),
        }
    }

    fn conventional_env(&mut self, var: &dyn Fn(&str) -> Option<String>) {
        match self {
            SourceConfig::Static(s) => s.conventional_env(var),
            SourceConfig::Rancher(r) => r.conventional_env(var),
            SourceConfig::Docker(d) => d.conventional_env(var),
        }
    }
}

/// Builds one source from its validated config.
pub fn build(
    name: &str,
    cfg: &SourceConfig,
    common: &Common,
) -> Result<Box<dyn Source>, BuildError> {
    Ok(match cfg {
        SourceConfig::Static(c) => Box::new(static_file::StaticSource::new(name, c, common)?),
        SourceConfig::Rancher(c) => Box::new(rancher::RancherSource::new(name, c, common)?),
        SourceConfig::Docker(c) => Box::new(docker::DockerSource::new(name, c, common)?),
    })
}
