//! `type = "consul"`: registrations in Consul agents (or the catalog), written only on change.
//!
//! Ownership: every registration carries tag `rancon-<owner>` (the original tool's cleanup tag)
//! and (unless `marker_meta = false`) meta `rancon-owner` / `external-source=rancon`; listings
//! keep only the owner's tag, so
//! nothing else is ever modified or deregistered.

mod build;
mod config;
mod digest;
mod found;
mod listing;
mod watch;
mod wire;

pub mod render;

pub use config::{CheckMode, ConsulBackendConfig, ConsulMode, DEFAULT_URL};
pub use render::{RESERVED_META, meta_key};

use self::render::{CHECKS_ATTR, CHECKS_META, CheckKind, CheckSpec, OWNER_META};
use super::{ApplyReport, Backend, Listing, WriteFailure, address_of, check_address, port_of};
use crate::consul::{Api, is_not_found, is_unknown_check};
use crate::error::{BackendError, Skip, SkipKind};
use crate::model::{Endpoint, Health, Registration, RegistrationMap};
use crate::plan::Plan;
use crate::template::Template;
use async_trait::async_trait;
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A Consul backend.
pub struct Consul {
    name: String,
    sources: Option<Vec<String>>,
    owner: String,
    owner_tag: String,
    url: Template,
    discovery_url: Option<String>,
    mode: ConsulMode,
    node: String,
    node_address: String,
    id: Template,
    tags: Vec<Template>,
    lowercase_tags: bool,
    marker_meta: bool,
    meta: Vec<(String, Template)>,
    check: CheckMode,
    ttl: Duration,
    deregister_after: Option<Duration>,
    concurrency: usize,
    timeout: Duration,
    api: Arc<Api>,
    agents: Arc<Mutex<Agents>>,
    /// Start a drift-repair watch in the daemon (`watch`).
    watch: bool,
    /// What each place holds as far as this backend knows: its watch ignores its own writes.
    expected: Arc<watch::Expected>,
}

/// What this process has learnt about agents (`known`, `discovered`: only used when `url` has
/// placeholders).
#[derive(Default)]
struct Agents {
    /// Agents that held owned registrations at the last listing, were written to since, or
    /// whose last listing failed (they are listed again until a listing succeeds).
    known: BTreeSet<String>,
    /// Whether the catalog was asked once for the agents holding this owner's registrations.
    discovered: bool,
    /// Agents whose listing failed this round: their writes fail at once, without a request.
    failed: BTreeMap<String, BackendError>,
    /// Agents (in catalog mode: the node) this process listed successfully at least once.
    /// The first listing of one reads everything it holds, so ids held by others are seen
    /// in the same request; later ones read only this owner's registrations.
    listed: BTreeSet<String>,
    /// Per agent (or node): the desired ids someone else held there at its last listing.
    /// The next listing asks for them beside this owner's registrations, so a lasting
    /// conflict costs no extra request, and a released id is taken at once.
    held: BTreeMap<String, BTreeSet<String>>,
}

/// One write of a round.
enum Op<'a> {
    Register {
        reg: &'a Registration,
        moved_from: Option<&'a str>,
    },
    Deregister(&'a Registration),
    Refresh(&'a Registration),
}

impl Consul {
    fn agent_of<'r>(&'r self, reg: &'r Registration) -> &'r str {
        reg.private.location.as_deref().unwrap_or(self.url.as_str())
    }

    /// Properties as templates see them: the final, lower-cased name as `%NAME%`.
    fn props(ep: &Endpoint, name: &str) -> crate::template::Props {
        let mut props = ep.props.clone();
        props.insert("name".into(), name.to_string());
        props
    }

    fn checks(&self, ep: &Endpoint, address: &str, port: u16) -> Result<Vec<CheckSpec>, String> {
        let label_duration = |key: &str, min: Duration| -> Result<Option<String>, String> {
            let Some(v) = ep.props.get(key) else {
                return Ok(None);
            };
            match humantime::parse_duration(v) {
                Ok(d) if d >= min => Ok(Some(render::go_duration(d))),
                _ => Err(format!(
                    "label {}={v:?} must be a duration of at least {}",
                    key.replacen('_', ".", 1),
                    humantime::format_duration(min)
                )),
            }
        };
        let deregister = label_duration("check_deregister_after", Duration::from_secs(60))?
            .or_else(|| self.deregister_after.map(render::go_duration));
        let mut out = Vec::new();
        if self.check == CheckMode::Source {
            let health = Health::from_source(ep.prop("health"));
            out.push(CheckSpec {
                kind: CheckKind::Source,
                target: None,
                interval: None,
                ttl: (self.mode == ConsulMode::Agent).then(|| render::go_duration(self.ttl)),
                // The catalog has no agent to refresh a TTL: the status itself is recorded.
                status: (self.mode == ConsulMode::Catalog).then(|| health.as_str().into()),
                deregister: deregister.clone(),
            });
        }
        if self.mode == ConsulMode::Catalog {
            // No agent runs HTTP/TCP checks registered in the catalog.
            return Ok(out);
        }
        let interval = label_duration("check_interval", Duration::from_secs(1))?
            .unwrap_or_else(|| "10s".into());
        let host = crate::model::bracket(address);
        if let Some(path) = ep.props.get("check_http") {
            let target = if path.starts_with("http://") || path.starts_with("https://") {
                path.clone()
            } else {
                format!("http://{host}:{port}/{}", path.trim_start_matches('/'))
            };
            out.push(CheckSpec {
                kind: CheckKind::Http,
                target: Some(target),
                interval: Some(interval.clone()),
                ttl: None,
                status: None,
                deregister: deregister.clone(),
            });
        }
        if let Some(v) = ep.props.get("check_tcp") {
            let target = match v.trim() {
                "" | "true" | "1" | "yes" => format!("{host}:{port}"),
                other => other.to_string(),
            };
            out.push(CheckSpec {
                kind: CheckKind::Tcp,
                target: Some(target),
                interval: Some(interval),
                ttl: None,
                status: None,
                deregister,
            });
        }
        Ok(out)
    }

    async fn run(&self, op: &Op<'_>) -> Result<(), BackendError> {
        match *op {
            Op::Register { reg, moved_from } => {
                if let Some(old) = moved_from {
                    self.deregister_at(old, reg).await?;
                }
                self.register(reg).await
            }
            Op::Deregister(reg) => match self.mode {
                ConsulMode::Agent => self.deregister_at(self.agent_of(reg), reg).await,
                ConsulMode::Catalog => {
                    let body = wire::CatalogDeregister {
                        datacenter: self.api.datacenter.as_deref(),
                        node: &self.node,
                        service_id: real_id(reg),
                    };
                    let url = wire::url(self.url.as_str(), &["v1", "catalog", "deregister"]);
                    self.api
                        .put("catalog deregister", &url, &[], Some(&body))
                        .await
                }
            },
            Op::Refresh(reg) => {
                let health = reg.health.unwrap_or(Health::Passing);
                let check_id = format!("service:{}:source", reg.id);
                let url = wire::url(
                    self.agent_of(reg),
                    &["v1", "agent", "check", "update", &check_id],
                );
                let body = wire::CheckUpdate {
                    status: health.as_str(),
                    output: format!("{} (reported by rancon)", health.as_str()),
                };
                match self.api.put("update check", &url, &[], Some(&body)).await {
                    // The agent lost the check (restart without persisted state): re-register.
                    // Current agents answer 404, older ones 500 "does not have associated TTL".
                    Err(e) if is_unknown_check(&e) => self.register(reg).await,
                    other => other,
                }
            }
        }
    }

    async fn register(&self, reg: &Registration) -> Result<(), BackendError> {
        let checks: Vec<CheckSpec> = match reg.private.attrs.get(CHECKS_ATTR) {
            Some(json) => serde_json::from_str(json).map_err(|e| BackendError::Encode {
                what: format!("the checks of {}", reg.id),
                message: e.to_string(),
            })?,
            None => Vec::new(),
        };
        match self.mode {
            ConsulMode::Agent => {
                let agent = self.agent_of(reg);
                let body = wire::AgentService::new(reg, &checks);
                let url = wire::url(agent, &["v1", "agent", "service", "register"]);
                self.api
                    .put(
                        "register",
                        &url,
                        &[("replace-existing-checks", "true")],
                        Some(&body),
                    )
                    .await
            }
            ConsulMode::Catalog => {
                let body = wire::CatalogRegister::new(
                    reg,
                    &checks,
                    &self.node,
                    &self.node_address,
                    self.api.datacenter.as_deref(),
                );
                let url = wire::url(self.url.as_str(), &["v1", "catalog", "register"]);
                self.api
                    .put("catalog register", &url, &[], Some(&body))
                    .await
            }
        }
    }

    /// The places (agents, or `url`) a write changes.
    fn places_of<'r>(&'r self, op: &'r Op<'_>) -> Vec<&'r str> {
        match op {
            Op::Register { reg, moved_from } => {
                let mut places = vec![self.agent_of(reg)];
                places.extend(moved_from.iter().copied());
                places
            }
            Op::Deregister(reg) | Op::Refresh(reg) => vec![self.agent_of(reg)],
        }
    }

    /// Records what a write does (or, when it failed, that its place is unknown now), for
    /// the watch.
    fn expect(&self, op: &Op<'_>, ok: bool) {
        let e = &self.expected;
        match (op, ok) {
            (Op::Register { reg, moved_from }, true) => {
                if let Some(old) = *moved_from {
                    e.written(old, real_id(reg), None);
                }
                e.written(self.agent_of(reg), real_id(reg), Some(reg));
            }
            (Op::Register { reg, moved_from }, false) => {
                moved_from.iter().for_each(|old| e.unknown(old));
                e.unknown(self.agent_of(reg));
            }
            (Op::Deregister(reg), true) => e.written(self.agent_of(reg), real_id(reg), None),
            (Op::Deregister(reg), false) => e.unknown(self.agent_of(reg)),
            // A refresh changes a check, which the watch does not see; a re-register it falls
            // back to writes the same content.
            (Op::Refresh(_), _) => {}
        }
    }

    async fn deregister_at(&self, agent: &str, reg: &Registration) -> Result<(), BackendError> {
        let url = wire::url(
            agent,
            &["v1", "agent", "service", "deregister", real_id(reg)],
        );
        match self.api.put::<()>("deregister", &url, &[], None).await {
            // Already gone (current agents answer 404 for unknown ids): that is what we wanted.
            Err(e) if is_not_found(&e) => Ok(()),
            other => other,
        }
    }
}

/// The id Consul knows a registration by (a duplicate on a second agent is keyed apart).
fn real_id(reg: &Registration) -> &str {
    reg.private.registry_id.as_deref().unwrap_or(&reg.id)
}

#[async_trait]
impl Backend for Consul {
    fn name(&self) -> &str {
        &self.name
    }

    fn sources(&self) -> Option<&[String]> {
        self.sources.as_deref()
    }

    fn render(&self, ep: &Endpoint) -> Result<Registration, Skip> {
        let skip = |kind: SkipKind, reason: String| Skip {
            endpoint: ep.describe(),
            kind,
            reason,
        };
        let name = ep.prop("name").to_ascii_lowercase();
        if !render::is_dns_label(&name) {
            tracing::warn!(backend = %self.name, endpoint = %ep.describe(), name, "service name is not a valid DNS label; Consul's DNS interface cannot serve it");
        }
        let port = port_of(ep)?;
        let address = address_of(ep)?.to_string();
        let props = Self::props(ep, &name);
        let id = render::service_id(
            &self
                .id
                .render(&props)
                .map_err(|e| skip(SkipKind::Template, format!("id template: {e}")))?,
        );
        if id.trim_matches('-').is_empty() {
            return Err(skip(SkipKind::Template, "id template renders empty".into()));
        }
        let mut tags = crate::model::Tags::new();
        for t in &self.tags {
            let tag = t
                .render(&props)
                .map_err(|e| skip(SkipKind::Template, format!("tag template {t}: {e}")))?;
            // An ownership marker can only come from a placeholder (config checks the
            // text): rancon sets its own, and never another owner's.
            if render::is_marker_tag(&tag) {
                tracing::warn!(backend = %self.name, endpoint = %ep.describe(), tag = %tag.escape_debug(), "tag template renders an ownership marker (rancon-*); dropped");
            } else if !tag.is_empty() {
                tags.insert(tag);
            }
        }
        tags.extend(crate::labels::label_tags(&ep.props));
        if self.lowercase_tags {
            tags = tags.into_iter().map(|t| t.to_lowercase()).collect();
        }
        tags.insert(self.owner_tag.clone());
        let mut meta = crate::labels::label_meta(&ep.props);
        for (k, t) in &self.meta {
            let v = t
                .render(&props)
                .map_err(|e| skip(SkipKind::Template, format!("meta template {k}: {e}")))?;
            meta.insert(k.clone(), v);
        }
        if self.marker_meta {
            meta.insert(OWNER_META.into(), self.owner.clone());
            meta.insert("external-source".into(), "rancon".into());
        }
        let checks = self
            .checks(ep, &address, port)
            .map_err(|e| skip(SkipKind::Label, e))?;
        let mut private = crate::model::Private::default();
        if !checks.is_empty() {
            let json =
                serde_json::to_string(&checks).map_err(|e| skip(SkipKind::Shape, e.to_string()))?;
            meta.insert(CHECKS_META.into(), render::checks_digest(&json));
            private.attrs.insert(CHECKS_ATTR.into(), json);
        }
        // Consul's limits (structs.ValidateServiceMetadata): refusing here keeps one bad
        // service from failing its write every round.
        if meta.len() > 64 {
            return Err(skip(
                SkipKind::Limit,
                format!("{} meta keys (Consul allows 64)", meta.len()),
            ));
        }
        if let Some((k, _)) = meta.iter().find(|(_, v)| v.len() > 512) {
            return Err(skip(
                SkipKind::Limit,
                format!("meta {k} is longer than Consul's 512 characters"),
            ));
        }
        let mut health = None;
        if self.mode == ConsulMode::Agent {
            let agent = if self.url.is_literal() {
                self.url.as_str().to_string()
            } else {
                self.agent_url(|k| props.get(k).map(String::as_str))
                    .map_err(|(kind, why)| skip(kind, why))?
            };
            private.location = Some(agent);
            if self.check == CheckMode::Source {
                health = Some(Health::from_source(ep.prop("health")));
            }
        }
        Ok(Registration {
            id,
            name,
            address,
            port,
            tags,
            // Kept for the round: no spare room (3.8 MiB less per 20,000 registrations).
            meta: crate::model::shrunk(meta),
            private: private.into(),
            health,
        })
    }

    async fn list(&self, desired: &RegistrationMap) -> Result<Listing, BackendError> {
        self.api.refresh_token().await;
        match self.mode {
            ConsulMode::Agent => self.list_agents(desired).await,
            ConsulMode::Catalog => self.list_catalog(desired).await,
        }
        .map(|mut listing| {
            listing::same_checks(&mut listing, desired);
            listing
        })
    }

    fn refreshes(&self, reg: &Registration) -> bool {
        self.check == CheckMode::Source && self.mode == ConsulMode::Agent && reg.health.is_some()
    }

    async fn apply(
        &self,
        unchanged: &RegistrationMap,
        actual: &RegistrationMap,
        plan: &Plan,
    ) -> ApplyReport {
        let mut ops = Vec::new();
        for reg in plan.register.values() {
            ops.push(Op::Register {
                reg,
                moved_from: None,
            });
        }
        for (id, reg) in &plan.update {
            let old = actual.get(id).map(|a| self.agent_of(a));
            ops.push(Op::Register {
                reg,
                moved_from: old.filter(|o| *o != self.agent_of(reg)),
            });
        }
        for id in &plan.deregister {
            if let Some(reg) = actual.get(id) {
                ops.push(Op::Deregister(reg));
            }
        }
        if self.check == CheckMode::Source && self.mode == ConsulMode::Agent {
            // The TTL refresh: the one write a steady round makes, and the dead-man switch.
            for reg in unchanged.values().filter(|r| r.health.is_some()) {
                ops.push(Op::Refresh(reg));
            }
        }
        let failed_agents = self.agents.lock().expect("agents lock").failed.clone();
        // Futures are made as the stream pulls them (never 10,000 at once: each is several
        // KiB). The closure takes an index, not a borrowed op: a closure argument carrying a
        // lifetime trips the compiler's higher-ranked Send check under async_trait.
        let ops = &ops;
        let failed_agents = &failed_agents;
        let mut report = futures::stream::iter(0..ops.len())
            .map(|i| async move {
                let op = &ops[i];
                let reg = match op {
                    Op::Register { reg, .. } | Op::Refresh(reg) | Op::Deregister(reg) => *reg,
                };
                let r = match failed_agents.get(self.agent_of(reg)) {
                    Some(e) => Err(BackendError::NotAttempted {
                        cause: Box::new(e.clone()),
                    }),
                    None => {
                        // Expected before it is sent: the watch may see the write before
                        // this task sees its answer, and must not take it for drift; it
                        // judges a place once its writes in flight are answered.
                        let places = self.places_of(op);
                        places.iter().for_each(|p| self.expected.begin(p));
                        self.expect(op, true);
                        let r = self.run(op).await;
                        if r.is_err() {
                            self.expect(op, false);
                        }
                        places.iter().for_each(|p| self.expected.end(p));
                        r
                    }
                };
                r.map_err(|error| WriteFailure {
                    id: reg.id.clone(),
                    error,
                })
            })
            .buffer_unordered(self.concurrency)
            // Only failures are kept: a first round's 20,000 answers held as results were
            // 4 MiB at its peak.
            .fold(ApplyReport::default(), |mut report, r| async move {
                match r {
                    Ok(()) => report.done += 1,
                    Err(f) => report.failed.push(f),
                }
                report
            })
            .await;
        report.failed.sort_by(|a, b| a.id.cmp(&b.id));
        if !self.url.is_literal() {
            // Remember the agents that hold registrations now, so an agent emptied this round
            // is not listed again while one that still holds some always is.
            let failed: BTreeSet<&str> = report.failed.iter().map(|f| f.id.as_str()).collect();
            let gone = |id: &String| plan.deregister.contains(id) && !failed.contains(id.as_str());
            let holding: BTreeSet<String> = actual
                .iter()
                .filter(|(id, _)| !gone(id))
                .map(|(_, r)| self.agent_of(r).to_string())
                .chain(
                    plan.register
                        .values()
                        .chain(plan.update.values())
                        .map(|r| self.agent_of(r).to_string()),
                )
                .collect();
            let mut st = self.agents.lock().expect("agents lock");
            // Agents whose listing failed stay known: what they hold is unknown, not gone.
            let failed: Vec<String> = st.failed.keys().cloned().collect();
            st.known = holding;
            st.known.extend(failed);
        }
        report
    }

    fn watch(&self, wake: crate::watch::WakeTx) -> Option<tokio::task::JoinHandle<()>> {
        self.watch
            .then(|| tokio::spawn(Arc::new(self.watcher(wake)).run()))
    }
}
