//! `type = "etcd"`: registrations as etcd keys through the v3 JSON gateway (plain HTTP/JSON over
//! reqwest: no protoc or gRPC build step on a fresh machine), every key under one lease that
//! each round keeps alive, so the entries expire by themselves when rancon stops.
//!
//! Ownership: layout `rancon` keeps this owner's keys under `<prefix>/<owner>/`; layout
//! `skydns` records carry `"rancon": {"owner": …}` beside CoreDNS's fields; layout `traefik`
//! writes only the names listed in its index `rancon/index/<root>/<owner>/<name>`. Only such
//! keys are ever rewritten or deleted.
//!
//! A key at a place rancon wants to write that is not its own (hand-written, garbage, another
//! owner's) is reported in `Listing::foreign` and never written. Every write is a transaction
//! whose compares hold only while the key is absent or still what the listing saw (its
//! `mod_revision`), so a writer racing the round makes that write fail instead of losing its
//! key; every delete names one exact key rancon listed as its own, under the same compare.

mod config;
mod traefik;
mod traefik_keys;
mod wire;

pub use config::{EtcdBackendConfig, EtcdLayout};

use super::traefik_route::{Defaults, Protocol, Route};
use super::{ApplyReport, Backend, Listing, WriteFailure, port_of};
use crate::config::Common;
use crate::config::secret::SecretSource;
use crate::error::{BackendError, BuildError, Skip, SkipKind};
use crate::labels::service_id;
use crate::model::{Endpoint, Meta, Private, Registration, RegistrationMap};
use crate::plan::Plan;
use crate::template::Template;
use async_trait::async_trait;
use base64::Engine;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;
use wire::*;

/// The most operations etcd accepts in one transaction by default: it refuses a transaction
/// whose compare, success or failure list is longer than `--max-txn-ops` (`DefaultMaxTxnOps =
/// uint(128)` in etcd's `embed/config.go`, v3.4; `server/embed/config.go` today), checked in
/// `checkTxnRequest` (`etcdserver/api/v3rpc/key.go`), which answers "etcdserver: too many
/// operations in txn request" (HTTP 400 through the gateway). A server started with a lower
/// limit is met by halving the batch on that answer (`Etcd::max_ops`).
pub(crate) const MAX_TXN_OPS: usize = 128;

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
    /// Operations per transaction: `MAX_TXN_OPS`, halved each time the server refuses a batch
    /// as too large.
    max_ops: AtomicUsize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    token: Option<String>,
    lease: Option<String>,
    /// Layouts `rancon`, `skydns`: the last listing's own records → `mod_revision`: a write or
    /// delete of such a key holds only while it is unchanged since.
    listed: HashMap<String, i64>,
    /// Layout `traefik`: what the last listing learned.
    seen: traefik::Seen,
    /// Layout `traefik`: the owner whose index keys sit on a lease, to name who holds a
    /// colliding router (learned from a keys-only read of every owner's index, when needed).
    owners: HashMap<String, String>,
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
    tags: crate::model::Tags,
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
            max_ops: AtomicUsize::new(MAX_TXN_OPS),
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
        self.call_at(op, path, body, token).await.map(|(_, v)| v)
    }

    /// `call`, also returning the URL that answered.
    async fn call_at(
        &self,
        op: &'static str,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> Result<(String, Value), BackendError> {
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
            return Ok((url, v));
        }
        Err(last.unwrap_or_else(|| self.err(op, "", "no endpoint configured".into())))
    }

    /// Authenticates (when a user is configured) and makes sure our lease is alive.
    async fn session(&self) -> Result<(Option<String>, String), BackendError> {
        let token = self.authenticate().await?;
        let mut st = self.state.lock().await;
        self.lease(&mut st, token).await
    }

    /// Authenticates when a user is configured; the token, if any.
    async fn authenticate(&self) -> Result<Option<String>, BackendError> {
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
        Ok(st.token.clone())
    }

    /// Keeps our lease alive, or grants one.
    async fn lease(
        &self,
        st: &mut State,
        token: Option<String>,
    ) -> Result<(Option<String>, String), BackendError> {
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
        // Ours: this owner's marker, and written where rancon writes that registration (a
        // record naming us at another key is someone else's doing).
        let at = match self.layout {
            EtcdLayout::Traefik => format!("{}/{}", self.base, stored.name),
            _ => format!("{}/{}/{}", self.base, stored.name, stored.id),
        };
        if stored.owner != self.owner || key != at {
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

    /// Layout `traefik`: the HTTP route `ep`'s labels ask for (default rule
    /// ``Host(`<name>`)``). TCP routers are not written to etcd: such an endpoint is skipped.
    fn route(&self, ep: &Endpoint, port: u16, name: &str) -> Result<Route, Skip> {
        let skip = |reason: String| Skip {
            endpoint: ep.describe(),
            kind: SkipKind::Label,
            reason,
        };
        // `name` is a service id (`[a-z0-9-]`): no `%` to mistake for a placeholder.
        let rule = Template::parse(&format!("Host(`{name}`)")).map_err(|e| skip(e.to_string()))?;
        let defaults = Defaults {
            rule: &rule,
            tcp_rule: &rule,
            entry_points: &[],
        };
        let route = Route::from_endpoint(ep, port, &defaults).map_err(skip)?;
        if route.protocol == Protocol::Tcp {
            return Err(skip(
                "label protocol=tcp: the etcd traefik layout writes HTTP routers only; use a \
                 traefik_file backend for TCP"
                    .into(),
            ));
        }
        Ok(route)
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

    /// One transaction. A failed compare is not an error here: `succeeded` says it.
    async fn txn(
        &self,
        op: &'static str,
        compare: Vec<Value>,
        success: Vec<Value>,
        failure: Vec<Value>,
        token: Option<&str>,
    ) -> Result<Txn, BackendError> {
        let body = json!({"compare": compare, "success": success, "failure": failure});
        let (url, v) = self.call_at(op, "kv/txn", &body, token).await?;
        Ok(Txn {
            url,
            // The gateway leaves out a false `succeeded`.
            succeeded: v.get("succeeded").and_then(Value::as_bool).unwrap_or(false),
            responses: v
                .get("responses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        })
    }

    /// A write refused because what etcd holds is not what rancon may write over: the server
    /// answered (HTTP 200), but the transaction's compare failed, or rancon did not send it.
    fn refused(&self, op: &'static str, url: &str, message: String) -> BackendError {
        BackendError::Refused {
            backend: self.name.clone(),
            op,
            key: url.to_string(),
            message,
        }
    }

    /// Operations per transaction (see `MAX_TXN_OPS`).
    fn max_ops(&self) -> usize {
        self.max_ops.load(Ordering::Relaxed).max(2)
    }

    /// After etcd refused a batch as too large: halves it, or says it cannot (false).
    fn shrink_ops(&self, tried: usize) -> bool {
        if tried <= 2 {
            return false;
        }
        let half = (tried / 2).max(2);
        self.max_ops.fetch_min(half, Ordering::Relaxed);
        tracing::warn!(backend = %self.name, ops = half, "etcd refused a transaction as too large (--max-txn-ops); using {half} operations per transaction");
        true
    }

    /// Who holds a record (layouts `rancon`, `skydns`) that is not this owner's at `key`.
    fn holder(&self, key: &str, value: &[u8]) -> String {
        let v: Option<Value> = serde_json::from_slice(value).ok();
        let owner = v.as_ref().and_then(|v| match self.layout {
            EtcdLayout::Skydns => v.pointer("/rancon/owner"),
            _ => v.get("owner"),
        });
        match owner.and_then(Value::as_str) {
            Some(o) if o != self.owner => format!("owner {}", shown(o)),
            Some(_) if self.decode(key, value).is_some() => {
                format!("owner {} (this owner)", shown(&self.owner))
            }
            Some(_) => "nobody (a record naming this owner for another key)".into(),
            None => "nobody (unowned)".into(),
        }
    }

    /// Puts or deletes one record (layouts `rancon`, `skydns`) in a transaction that holds
    /// only while its key is absent (a put of a key not listed) or unchanged since the
    /// listing (`listed`, its `mod_revision` then).
    async fn write_record(
        &self,
        reg: &Registration,
        delete: bool,
        listed: Option<i64>,
        token: Option<&str>,
        lease: &str,
    ) -> Result<(), BackendError> {
        let key = reg.private.location.as_deref().unwrap_or("");
        let (op, success) = if delete {
            if listed.is_none() {
                // Only keys the listing found as ours are deleted; `actual` came from it.
                return Err(self.refused(
                    "delete",
                    key,
                    format!("{key} was not listed as this owner's"),
                ));
            }
            ("delete", delete_op(key))
        } else {
            ("put", put_op(key, &self.encode(reg), lease))
        };
        let t = self
            .txn(
                op,
                vec![expect(key, listed)],
                vec![success],
                // When the compare fails: who holds the key now, for the message.
                vec![range_op(key, false, false, 1)],
                token,
            )
            .await?;
        if t.succeeded {
            return Ok(());
        }
        let now = txn_kvs(&t, 0).ok().and_then(|k| k.into_iter().next());
        let why = match (listed, now) {
            (Some(_), None) => format!("{key} was deleted since it was listed"),
            (None, Some(kv)) => format!(
                "{key} was created since the listing; it is held by {}",
                self.holder(key, &kv.value)
            ),
            (Some(_), Some(kv)) => format!(
                "{key} was changed since it was listed; it is held by {}",
                self.holder(key, &kv.value)
            ),
            (None, None) => format!("{key} changed during the write"),
        };
        Err(self.refused(op, &t.url, why))
    }
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
        let address = if self.layout == EtcdLayout::Traefik {
            // It becomes a URL Traefik connects to: an IP or a DNS name, nothing else.
            crate::backend::address_of(ep)?.to_string()
        } else {
            ep.prop("host").to_string()
        };
        let id = service_id(&format!("{name}-{address}-{port}"));
        let tags = crate::labels::label_tags(&ep.props);
        let meta = crate::labels::label_meta(&ep.props);
        let mut private = Private::default();
        if self.layout == EtcdLayout::Traefik {
            // One index key per name: the name's servers are written together.
            private.attrs = self.route(ep, port, &name)?.attrs();
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

    async fn list(&self, desired: &RegistrationMap) -> Result<Listing, BackendError> {
        let (token, lease) = self.session().await?;
        self.list_with(desired, token, &lease).await
    }

    /// `list` without granting or renewing a lease: `check --connect` only reads.
    async fn probe(&self, desired: &RegistrationMap) -> Result<Listing, BackendError> {
        let token = self.authenticate().await?;
        self.list_with(desired, token, "").await
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
        let st = self.state.lock().await;
        let (token, lease) = (st.token.clone(), st.lease.clone().unwrap_or_default());
        if self.layout == EtcdLayout::Traefik {
            let seen = st.seen.clone();
            drop(st);
            return traefik::apply(self, actual, plan, &seen, token.as_deref(), &lease).await;
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
        let listed = &st.listed;
        let (ops, token, lease) = (&ops, token.as_deref(), lease.as_str());
        let results = futures::stream::iter(0..ops.len())
            .map(|i| async move {
                let (reg, delete) = ops[i];
                let was = reg
                    .private
                    .location
                    .as_deref()
                    .and_then(|k| listed.get(k))
                    .copied();
                let r = self.write_record(reg, delete, was, token, lease).await;
                (reg.id.clone(), r)
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

impl Etcd {
    /// What this owner holds, with `lease` as ours (empty: none, a read-only look).
    async fn list_with(
        &self,
        desired: &RegistrationMap,
        token: Option<String>,
        lease: &str,
    ) -> Result<Listing, BackendError> {
        let prefix = format!("{}/", self.base);
        let v = self
            .call(
                "list keys",
                "kv/range",
                &json!({"key": B64.encode(&prefix), "range_end": B64.encode(range_end(&prefix))}),
                token.as_deref(),
            )
            .await?;
        let kvs = kvs(&v);
        if self.layout == EtcdLayout::Traefik {
            return traefik::list(self, kvs, desired, token.as_deref(), lease).await;
        }
        // The desired registrations by the key each would be written at.
        let wanted: HashMap<&str, &str> = desired
            .values()
            .filter_map(|r| Some((r.private.location.as_deref()?, r.id.as_str())))
            .collect();
        let mut listing = Listing::default();
        let mut listed = HashMap::new();
        for kv in kvs {
            match self.decode(&kv.key, &kv.value) {
                Some(mut reg) => {
                    // A key on another lease (an earlier process's) would expire: rewrite it
                    // on ours.
                    if kv.lease != lease {
                        reg.private.stale = true;
                    }
                    listed.insert(kv.key, kv.mod_revision);
                    listing.regs.insert(reg.id.clone(), reg);
                }
                // Not ours, where we would write: its holder keeps it.
                None => {
                    if let Some(id) = wanted.get(kv.key.as_str()) {
                        let holder = self.holder(&kv.key, &kv.value);
                        listing.foreign.insert(id.to_string(), holder);
                    }
                }
            }
        }
        self.state.lock().await.listed = listed;
        Ok(listing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvs_keeps_what_decodes_and_drops_the_rest() {
        let k = |s: &str| B64.encode(s);
        let v = json!({"kvs": [
            {"key": k("a"), "value": k("1"), "mod_revision": "7", "lease": "42"},
            {"key": k("b"), "mod_revision": 8},
            {"key": "%%% not base64", "value": k("x")},
            {"value": k("no key")},
            {"key": k("c"), "value": 5},
            {"key": 3},
            "not an object",
        ]});
        let got: Vec<(String, Vec<u8>, i64, String)> = kvs(&v)
            .into_iter()
            .map(|kv| (kv.key, kv.value, kv.mod_revision, kv.lease))
            .collect();
        assert_eq!(
            got,
            [
                ("a".into(), b"1".to_vec(), 7, "42".into()),
                ("b".into(), vec![], 8, "0".into()),
            ]
        );
        assert!(kvs(&json!({"kvs": "nope"})).is_empty());
        assert!(kvs(&json!(null)).is_empty());
    }

    #[test]
    fn a_missing_transaction_response_is_an_error_not_an_empty_range() {
        let t = Txn {
            url: "u".into(),
            succeeded: true,
            responses: vec![json!({"response_range": {}}), json!({})],
        };
        assert!(txn_kvs(&t, 0).unwrap().is_empty());
        assert!(txn_kvs(&t, 1).unwrap().is_empty());
        assert!(txn_kvs(&t, 2).is_err());
    }

    #[test]
    fn server_values_are_shown_escaped_and_cut() {
        assert_eq!(shown("team-a.prod_1"), "team-a.prod_1");
        assert_eq!(shown("a\nINFO x"), r#""a\nINFO x""#);
        assert_eq!(shown("\u{1b}[31m"), r#""\u{1b}[31m""#);
        assert_eq!(shown(""), r#""""#);
        assert_eq!(shown(&"x".repeat(500)).len(), 66);
    }

    #[test]
    fn only_the_txn_limit_answer_shrinks_batches() {
        let http = |status, message: &str| BackendError::Http {
            backend: "e".into(),
            op: "put",
            url: "u".into(),
            status,
            message: message.into(),
        };
        assert!(too_many_ops(&http(
            400,
            "etcdserver: too many operations in txn request"
        )));
        assert!(!too_many_ops(&http(
            400,
            "etcdserver: duplicate key given in txn request"
        )));
        assert!(!too_many_ops(&http(500, "too many operations")));
    }
}
