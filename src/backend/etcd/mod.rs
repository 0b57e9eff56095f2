//! `type = "etcd"`: registrations as etcd keys through the v3 JSON gateway (plain HTTP/JSON over
//! reqwest: no protoc or gRPC build step on a fresh machine), every key under one lease that
//! each round keeps alive, so the entries expire by themselves when rancon stops.
//!
//! Ownership: layout `rancon` keeps this owner's keys under `<prefix>/<owner>/`; layout
//! `skydns` records carry `"rancon": {"owner": …}` beside CoreDNS's fields; layout `traefik`
//! writes only the names listed in its index `rancon/index/<root>/<owner>/<name>`. Only such
//! keys are ever rewritten or deleted.

mod config;
mod traefik;

pub use config::{EtcdBackendConfig, EtcdLayout};

use super::{ApplyReport, Backend, Listing, WriteFailure, port_of};
use crate::config::Common;
use crate::config::secret::SecretSource;
use crate::error::{BackendError, BuildError, Skip};
use crate::labels::service_id;
use crate::model::{Endpoint, Meta, Private, Registration, RegistrationMap};
use crate::plan::Plan;
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
/// etcd's gateway carries keys and values as base64.
const B64: base64::engine::GeneralPurpose = STANDARD;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::sync::Mutex;

/// An etcd backend.
pub struct Etcd {
    name: String,
    sources: Option<Vec<String>>,
    owner: String,
    layout: EtcdLayout,
    /// Layout `traefik`: Traefik's root key.
    root: String,
    /// `<prefix>/<owner>` or `<prefix>/<reversed domain>`: everything rancon writes is below.
    base: String,
    ttl: Duration,
    http: reqwest::Client,
    endpoints: Vec<String>,
    username: Option<String>,
    password: SecretSource,
    max_body: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    token: Option<String>,
    lease: Option<String>,
}

/// What rancon stores (layout `rancon`), or keeps under `"rancon"` (layout `skydns`).
#[derive(Serialize, Deserialize)]
struct Stored {
    owner: String,
    name: String,
    id: String,
    address: String,
    port: u16,
    #[serde(default)]
    tags: BTreeSet<String>,
    #[serde(default)]
    meta: Meta,
    /// Layout `traefik`: the router rule written beside the servers.
    #[serde(default, skip_serializing_if = "Meta::is_empty")]
    attrs: Meta,
}

impl Etcd {
    /// Builds the backend from its config.
    pub fn new(name: &str, cfg: &EtcdBackendConfig, global: &Common) -> Result<Self, BuildError> {
        let prefix = cfg
            .prefix
            .clone()
            .unwrap_or_else(|| match cfg.layout {
                EtcdLayout::Rancon => "/rancon".into(),
                EtcdLayout::Skydns => "/skydns".into(),
                EtcdLayout::Traefik => "traefik".into(),
            })
            .trim_end_matches('/')
            .to_string();
        let base = match cfg.layout {
            EtcdLayout::Rancon => format!("{prefix}/{}", global.owner),
            EtcdLayout::Skydns => {
                let reversed: Vec<&str> = cfg.domain.trim_matches('.').split('.').rev().collect();
                format!("{prefix}/{}", reversed.join("/"))
            }
            EtcdLayout::Traefik => format!("rancon/index/{prefix}/{}", global.owner),
        };
        Ok(Self {
            name: name.to_string(),
            sources: cfg.sources.clone(),
            owner: global.owner.clone(),
            layout: cfg.layout,
            root: prefix.clone(),
            base,
            ttl: cfg.ttl.unwrap_or(global.interval.saturating_mul(3)),
            http: crate::http::client(cfg.timeout, &cfg.tls)?,
            endpoints: cfg
                .endpoints
                .iter()
                .map(|e| e.trim_end_matches('/').to_string())
                .collect(),
            username: cfg.username.clone(),
            password: SecretSource::new(cfg.password.clone(), cfg.password_file.clone()),
            max_body: global.max_response_size,
            state: Mutex::new(State::default()),
        })
    }

    fn err(&self, op: &'static str, url: &str, message: String) -> BackendError {
        BackendError::Transport {
            backend: self.name.clone(),
            op,
            url: url.to_string(),
            message,
        }
    }

    /// One gateway call, trying each endpoint in turn until one answers.
    async fn call(
        &self,
        op: &'static str,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> Result<Value, BackendError> {
        let mut last = None;
        for ep in &self.endpoints {
            let url = format!("{ep}/v3/{path}");
            let mut req = self.http.post(&url).json(body);
            if let Some(t) = token {
                // The gateway wants the raw token, without `Bearer`.
                req = req.header("Authorization", t);
            }
            let mut resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = Some(self.err(op, &url, crate::http::describe(&e.without_url())));
                    continue;
                }
            };
            let status = resp.status().as_u16();
            // Streaming calls (lease keep-alive) answer one JSON line per message: read one.
            let text = crate::http::read_body(&mut resp, self.max_body, path == "lease/keepalive")
                .await
                .map_err(|e| self.err(op, &url, e.to_string()))?;
            let v: Value = serde_json::from_slice(
                text.split(|b| *b == b'\n').next().unwrap_or(&[]),
            )
            .map_err(|e| BackendError::Decode {
                what: format!("{op} answer from {url}"),
                message: e.to_string(),
            })?;
            if status != 200 {
                let message = v
                    .get("message")
                    .or_else(|| v.get("error"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                return Err(if status == 401 || status == 403 {
                    BackendError::Acl {
                        backend: self.name.clone(),
                        op,
                        url,
                        message,
                    }
                } else {
                    BackendError::Http {
                        backend: self.name.clone(),
                        op,
                        url,
                        status,
                        message,
                    }
                });
            }
            return Ok(v);
        }
        Err(last.unwrap_or_else(|| self.err(op, "", "no endpoint configured".into())))
    }

    /// Authenticates (when a user is configured) and makes sure our lease is alive.
    async fn session(&self) -> Result<(Option<String>, String), BackendError> {
        // Read before taking the lock: no file I/O while holding it.
        self.password.refresh(&self.name).await;
        let mut st = self.state.lock().await;
        if let Some(user) = &self.username {
            let password = self.password.get().unwrap_or_default();
            // Simple tokens expire after minutes: authenticate once a round.
            let v = self
                .call(
                    "authenticate",
                    "auth/authenticate",
                    &json!({"name": user, "password": password.expose()}),
                    None,
                )
                .await?;
            st.token = v.get("token").and_then(Value::as_str).map(str::to_string);
        }
        let token = st.token.clone();
        if let Some(lease) = st.lease.clone() {
            let v = self
                .call(
                    "keep lease alive",
                    "lease/keepalive",
                    &json!({"ID": lease}),
                    token.as_deref(),
                )
                .await?;
            let ttl = v
                .pointer("/result/TTL")
                .and_then(|t| {
                    t.as_str()
                        .and_then(|s| s.parse::<i64>().ok())
                        .or(t.as_i64())
                })
                .unwrap_or(0);
            if ttl > 0 {
                return Ok((token, lease));
            }
            tracing::warn!(backend = %self.name, "lease expired; granting a new one (every key is rewritten)");
        }
        let v = self
            .call(
                "grant lease",
                "lease/grant",
                &json!({"TTL": self.ttl.as_secs().max(2)}),
                token.as_deref(),
            )
            .await?;
        let id = v
            .get("ID")
            .and_then(|i| {
                i.as_str()
                    .map(str::to_string)
                    .or(i.as_i64().map(|n| n.to_string()))
            })
            .ok_or_else(|| BackendError::Decode {
                what: "lease grant".into(),
                message: v.to_string(),
            })?;
        st.lease = Some(id.clone());
        Ok((token, id))
    }

    fn decode(&self, key: &str, value: &[u8]) -> Option<Registration> {
        let v: Value = serde_json::from_slice(value).ok()?;
        let stored: Stored = match self.layout {
            EtcdLayout::Rancon | EtcdLayout::Traefik => serde_json::from_value(v).ok()?,
            EtcdLayout::Skydns => serde_json::from_value(v.get("rancon")?.clone()).ok()?,
        };
        if stored.owner != self.owner {
            return None;
        }
        let (mut meta, mut attrs) = (stored.meta, stored.attrs);
        if self.layout == EtcdLayout::Traefik
            && attrs.is_empty()
            && let Some(rule) = meta.remove(traefik::RULE)
        {
            // An index written before the rule had a field of its own kept it in meta.
            attrs.insert(traefik::RULE.into(), rule);
        }
        Some(Registration {
            id: stored.id,
            name: stored.name,
            address: stored.address,
            port: stored.port,
            tags: stored.tags,
            meta,
            private: Private {
                location: Some(key.to_string()),
                attrs,
                ..Default::default()
            }
            .into(),
            health: None,
        })
    }

    fn stored(&self, reg: &Registration) -> Stored {
        let meta = reg.meta.clone();
        let attrs = reg.private.attrs.clone();
        Stored {
            owner: self.owner.clone(),
            name: reg.name.clone(),
            id: reg.id.clone(),
            address: reg.address.clone(),
            port: reg.port,
            tags: reg.tags.clone(),
            meta,
            attrs,
        }
    }

    fn encode(&self, reg: &Registration) -> String {
        let stored = self.stored(reg);
        match self.layout {
            EtcdLayout::Rancon | EtcdLayout::Traefik => serde_json::to_string(&stored),
            EtcdLayout::Skydns => serde_json::to_string(&json!({
                "host": reg.address,
                "port": reg.port,
                "ttl": self.ttl.as_secs().clamp(1, 300),
                "rancon": stored,
            })),
        }
        .unwrap_or_default()
    }

    async fn write(
        &self,
        reg: &Registration,
        delete: bool,
        token: Option<&str>,
        lease: &str,
    ) -> Result<(), BackendError> {
        let key = B64.encode(reg.private.location.as_deref().unwrap_or(""));
        if delete {
            self.call("delete", "kv/deleterange", &json!({"key": key}), token)
                .await
                .map(drop)
        } else {
            let value = B64.encode(self.encode(reg));
            self.call(
                "put",
                "kv/put",
                &json!({"key": key, "value": value, "lease": lease}),
                token,
            )
            .await
            .map(drop)
        }
    }
}

/// The end of a prefix range: the prefix with its last byte incremented.
fn range_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[async_trait]
impl Backend for Etcd {
    fn name(&self) -> &str {
        &self.name
    }

    fn sources(&self) -> Option<&[String]> {
        self.sources.as_deref()
    }

    fn render(&self, ep: &Endpoint) -> Result<Registration, Skip> {
        let port = port_of(ep)?;
        let name = service_id(ep.prop("name"));
        let address = ep.prop("host").to_string();
        let id = service_id(&format!("{name}-{address}-{port}"));
        let tags = crate::labels::label_tags(&ep.props);
        let meta = crate::labels::label_meta(&ep.props);
        let mut private = Private::default();
        if self.layout == EtcdLayout::Traefik {
            // One index key per name: the name's servers are written together.
            let rule = ep
                .props
                .get("rule")
                .cloned()
                .unwrap_or_else(|| format!("Host(`{name}`)"));
            private.attrs.insert(traefik::RULE.into(), rule);
            private.location = Some(format!("{}/{name}", self.base));
        } else {
            private.location = Some(format!("{}/{name}/{id}", self.base));
        }
        Ok(Registration {
            id,
            name,
            address,
            port,
            tags,
            meta,
            private: private.into(),
            health: None,
        })
    }

    async fn list(&self, _desired: &RegistrationMap) -> Result<Listing, BackendError> {
        let (token, lease) = self.session().await?;
        let prefix = format!("{}/", self.base);
        let v = self
            .call(
                "list keys",
                "kv/range",
                &json!({"key": B64.encode(&prefix), "range_end": B64.encode(range_end(&prefix))}),
                token.as_deref(),
            )
            .await?;
        let mut listing = Listing::default();
        for kv in v.get("kvs").and_then(Value::as_array).into_iter().flatten() {
            let field = |f: &str| kv.get(f).and_then(Value::as_str).unwrap_or("");
            let (Ok(key), Ok(value)) = (B64.decode(field("key")), B64.decode(field("value")))
            else {
                continue;
            };
            let key = String::from_utf8_lossy(&key).to_string();
            let regs = match self.layout {
                EtcdLayout::Traefik => traefik::decode_index(self, &key, &value),
                _ => self.decode(&key, &value).into_iter().collect(),
            };
            for mut reg in regs {
                // A key on another lease (an earlier process's) would expire: rewrite it on ours.
                if field("lease") != lease {
                    reg.private.stale = true;
                }
                listing.regs.insert(reg.id.clone(), reg);
            }
        }
        Ok(listing)
    }

    async fn apply(
        &self,
        _unchanged: &RegistrationMap,
        actual: &RegistrationMap,
        plan: &Plan,
    ) -> ApplyReport {
        let mut report = ApplyReport::default();
        if plan.is_empty() {
            return report;
        }
        let (token, lease) = {
            let st = self.state.lock().await;
            (st.token.clone(), st.lease.clone().unwrap_or_default())
        };
        if self.layout == EtcdLayout::Traefik {
            return traefik::apply(self, actual, plan, token.as_deref(), &lease).await;
        }
        let ops: Vec<(&Registration, bool)> = plan
            .register
            .values()
            .chain(plan.update.values())
            .map(|r| (r, false))
            .chain(
                plan.deregister
                    .iter()
                    .filter_map(|id| actual.get(id))
                    .map(|r| (r, true)),
            )
            .collect();
        let (ops, token, lease) = (&ops, token.as_deref(), lease.as_str());
        let results = futures::stream::iter(0..ops.len())
            .map(|i| async move {
                let (reg, delete) = ops[i];
                (reg.id.clone(), self.write(reg, delete, token, lease).await)
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
        for (id, r) in results {
            match r {
                Ok(()) => report.done += 1,
                Err(error) => report.failed.push(WriteFailure { id, error }),
            }
        }
        report.failed.sort_by(|a, b| a.id.cmp(&b.id));
        report
    }
}
