//! Builds a `Consul` backend from its validated config.

use super::{Agents, Consul, ConsulBackendConfig, meta_key};
use crate::config::Common;
use crate::config::secret::SecretSource;
use crate::consul::Api;
use crate::error::BuildError;
use std::sync::{Arc, Mutex};

impl Consul {
    /// Builds the backend: templates compiled, one HTTP client.
    pub fn new(name: &str, cfg: &ConsulBackendConfig, global: &Common) -> Result<Self, BuildError> {
        let tpl = BuildError::template;
        // `unix://<path>`: every request goes through the socket to `UNIX_BASE`.
        let (http, base) = crate::consul::client(&cfg.url, cfg.timeout, &cfg.tls)?;
        Ok(Self {
            name: name.to_string(),
            sources: cfg.sources.clone(),
            owner: global.owner.clone(),
            owner_tag: format!("rancon-{}", global.owner),
            url: tpl("url", &base)?,
            discovery_url: cfg
                .discovery_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_string()),
            mode: cfg.mode,
            node: cfg.node.clone(),
            node_address: cfg.address.clone(),
            id: tpl("id", &cfg.id)?,
            tags: cfg
                .tags
                .iter()
                .map(|t| tpl("tag", t))
                .collect::<Result<_, _>>()?,
            lowercase_tags: cfg.lowercase_tags,
            marker_meta: cfg.marker_meta,
            meta: cfg
                .meta
                .iter()
                .map(|(k, v)| Ok((meta_key(k), tpl("meta", v)?)))
                .collect::<Result<_, BuildError>>()?,
            check: cfg.check,
            // Three rounds may be missed before the service turns critical.
            ttl: cfg.check_ttl.unwrap_or(global.interval.saturating_mul(3)),
            deregister_after: cfg.check_deregister_after,
            concurrency: cfg.concurrency.max(1),
            timeout: cfg.timeout,
            api: Arc::new(
                Api::new(
                    name,
                    http,
                    cfg.datacenter.clone(),
                    SecretSource::new(cfg.token.clone(), cfg.token_file.clone()),
                    global.max_response_size,
                )
                .with_auth(cfg.http_auth.clone())
                .with_namespace(cfg.namespace.clone()),
            ),
            agents: Arc::new(Mutex::new(Agents::default())),
            watch: cfg.watch,
            expected: Arc::default(),
        })
    }

    /// The drift-repair watch of this backend, sending on `wake`.
    pub(super) fn watcher(&self, wake: crate::watch::WakeTx) -> super::watch::Watcher {
        super::watch::Watcher {
            backend: self.name.clone(),
            api: self.api.clone(),
            owner_tag: self.owner_tag.clone(),
            mode: self.mode,
            node: self.node.clone(),
            url: self.url.as_str().to_string(),
            literal: self.url.is_literal(),
            timeout: self.timeout,
            expected: self.expected.clone(),
            agents: self.agents.clone(),
            wake,
        }
    }
}
