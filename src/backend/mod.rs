//! Backends hold registrations; they list what this owner holds and apply plans.

pub mod traefik_file;

use crate::config::{BackendConfig, RawConfig};
use crate::error::{BackendError, Skip};
use crate::model::{Endpoint, Registration, RegistrationMap};
use crate::reconcile::Plan;
use crate::template::TemplateError;
use async_trait::async_trait;

/// What applying a plan achieved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Writes that succeeded.
    pub done: usize,
    /// Writes that failed: (registration id, error). They are retried next round.
    pub failed: Vec<(String, String)>,
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
    /// The registrations this owner holds there, and nothing else.
    async fn list(&self) -> Result<RegistrationMap, BackendError>;
    /// Performs the plan's writes; `actual` is what `list` returned this round.
    async fn apply(&self, actual: &RegistrationMap, plan: &Plan) -> ApplyReport;
}

/// Builds one backend from its config.
pub fn build(
    name: &str,
    cfg: &BackendConfig,
    _global: &RawConfig,
) -> Result<Box<dyn Backend>, TemplateError> {
    Ok(match cfg {
        BackendConfig::TraefikFile(c) => Box::new(traefik_file::TraefikFile::new(name, c)?),
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
            reason: format!("port {:?} is not a number from 1 to 65535", ep.prop("port")),
        })
}
