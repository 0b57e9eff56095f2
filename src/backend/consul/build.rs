//! Builds a `Consul` backend from its validated config.

use super::api::Api;
use super::{Agents, Consul, meta_key};
use crate::config::{ConsulBackendConfig, RawConfig};
use crate::template::Template;
use std::sync::Mutex;

impl Consul {
    /// Builds the backend: templates compiled, one HTTP client, the token read.
    pub fn new(name: &str, cfg: &ConsulBackendConfig, global: &RawConfig) -> Result<Self, String> {
        let tpl = |what: &str, src: &str| {
            Template::parse(src).map_err(|e| format!("{what} {src:?}: {e}"))
        };
        let http = crate::http::client(cfg.timeout, &cfg.tls).map_err(|e| e.to_string())?;
        Ok(Self {
            name: name.to_string(),
            sources: cfg.sources.clone(),
            owner: global.owner.clone(),
            owner_tag: format!("rancon-{}", global.owner),
            url: tpl("url", cfg.url.trim_end_matches('/'))?,
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
            meta: cfg
                .meta
                .iter()
                .map(|(k, v)| Ok((meta_key(k), tpl("meta", v)?)))
                .collect::<Result<_, String>>()?,
            check: cfg.check,
            // Three rounds may be missed before the service turns critical.
            ttl: cfg.check_ttl.unwrap_or(global.interval * 3),
            deregister_after: cfg.check_deregister_after,
            concurrency: cfg.concurrency.max(1),
            api: Api::new(
                name,
                http,
                cfg.datacenter.clone(),
                cfg.token.clone(),
                cfg.token_file.clone(),
            ),
            agents: Mutex::new(Agents::default()),
        })
    }
}
