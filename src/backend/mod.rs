//! Backends hold registrations; they list what this owner holds and apply plans.

pub mod consul;
pub mod etcd;
pub mod traefik_file;

use crate::config::{BackendConfig, RawConfig};
use crate::error::{BackendError, Skip};
use crate::model::{Endpoint, Registration, RegistrationMap};
use crate::reconcile::Plan;
use async_trait::async_trait;

/// What applying a plan achieved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Writes that succeeded.
    pub done: usize,
    /// Writes that failed: (registration id, error). They are retried next round.
    pub failed: Vec<(String, String)>,
}

/// What a backend holds for this owner.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// The owned registrations that could be listed.
    pub regs: RegistrationMap,
    /// Parts that could not be listed (one agent of several): their registrations are absent
    /// from `regs`, so nothing there is deregistered, and the round counts as failed.
    pub partial: Vec<String>,
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
    /// Performs the plan's writes, and per-round refreshes (TTL checks) of `unchanged`, the
    /// desired registrations that need no write; `actual` is what `list` returned this round.
    /// Called every round that is not a dry run.
    async fn apply(
        &self,
        unchanged: &RegistrationMap,
        actual: &RegistrationMap,
        plan: &Plan,
    ) -> ApplyReport;
}

/// Builds one backend from its config.
pub fn build(
    name: &str,
    cfg: &BackendConfig,
    global: &RawConfig,
) -> Result<Box<dyn Backend>, String> {
    Ok(match cfg {
        BackendConfig::TraefikFile(c) => {
            Box::new(traefik_file::TraefikFile::new(name, c).map_err(|e| e.to_string())?)
        }
        BackendConfig::Consul(c) => Box::new(consul::Consul::new(name, c, global)?),
        BackendConfig::Etcd(c) => Box::new(etcd::Etcd::new(name, c, global)?),
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
            kind: "port",
            reason: format!("port {:?} is not a number from 1 to 65535", ep.prop("port")),
        })
}

/// Tags from labels `rancon.tag` / `rancon.tags` (comma-separated; `\,` keeps a comma).
pub fn label_tags(ep: &Endpoint) -> std::collections::BTreeSet<String> {
    ["tag", "tags"]
        .iter()
        .filter_map(|k| ep.props.get(*k))
        .flat_map(|v| consul::render::split_tags(v))
        .collect()
}

/// Meta from labels `rancon.meta.K=V`, keys sanitised, rancon's reserved keys left out.
pub fn label_meta(ep: &Endpoint) -> crate::model::Meta {
    ep.props
        .iter()
        .filter_map(|(key, value)| {
            let k = consul::meta_key(key.strip_prefix("meta_")?);
            (!k.is_empty() && !consul::RESERVED_META.contains(&k.as_str()))
                .then(|| (k, value.clone()))
        })
        .collect()
}
