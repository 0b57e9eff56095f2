//! One round: fetch sources → render per backend → list owned → plan → guards → apply.

use super::{Plan, plan, plan_owned};
use crate::backend::Backend;
use crate::error::Skip;
use crate::model::{Endpoint, RegistrationMap};
use crate::source::Source;
use serde::Serialize;
use std::collections::BTreeSet;
use tracing::Instrument;

/// The components of a running rancon, built once from the config.
pub struct Pipeline {
    /// Sources, in config order.
    pub sources: Vec<Box<dyn Source>>,
    /// Backends, in config order.
    pub backends: Vec<Box<dyn Backend>>,
    /// The deregistration guard (see `RawConfig::max_deregister_fraction`).
    pub max_deregister_fraction: f64,
    /// With leader election: true while this replica holds the lock. Rounds run without it
    /// plan but do not write.
    pub write_gate: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// How to run a round.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundOptions {
    /// Compute and report the plans, write nothing.
    pub dry_run: bool,
    /// Apply deregistrations even when the guard would stop them.
    pub force: bool,
}

/// What one source produced this round.
#[derive(Debug, Clone, Serialize)]
pub struct SourceOutcome {
    /// Component name.
    pub source: String,
    /// Endpoints selected.
    pub endpoints: usize,
    /// Endpoints skipped, with reasons.
    pub skipped: Vec<Skip>,
    /// Set when the source failed to list; its backends then deregister nothing.
    pub error: Option<String>,
}

/// What one backend did this round.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackendOutcome {
    /// Component name.
    pub backend: String,
    /// The plan (after guards), when listing succeeded.
    pub plan: Option<Plan>,
    /// Writes that failed (id, error); retried next round.
    pub failed: Vec<(String, String)>,
    /// Why the backend's round failed as a whole (listing error, guard).
    pub error: Option<String>,
    /// Deregistrations held back because a source failed or the guard tripped.
    pub held_back: usize,
    /// Whether the deregistration guard stopped this backend's deregistrations.
    pub guard_tripped: bool,
    /// Endpoints this backend could not render (bad template, port, label), with reasons.
    pub skipped: Vec<Skip>,
}

/// The outcome of one round.
#[derive(Debug, Clone, Serialize)]
pub struct RoundReport {
    /// Per source.
    pub sources: Vec<SourceOutcome>,
    /// Per backend.
    pub backends: Vec<BackendOutcome>,
    /// Whether the round was a dry run.
    pub dry_run: bool,
    /// Whether this replica was a standby (leader election) and wrote nothing.
    pub standby: bool,
}

impl RoundReport {
    /// True when anything failed: a source, a listing, a write, or the guard.
    pub fn failed(&self) -> bool {
        self.sources.iter().any(|s| s.error.is_some())
            || self
                .backends
                .iter()
                .any(|b| b.error.is_some() || !b.failed.is_empty())
    }

    /// Totals over all backends: (registered, updated, deregistered, unchanged, failed).
    pub fn totals(&self) -> (usize, usize, usize, usize, usize) {
        let mut t = (0, 0, 0, 0, 0);
        for b in &self.backends {
            if let Some(p) = &b.plan {
                let failed: BTreeSet<&str> = b.failed.iter().map(|(id, _)| id.as_str()).collect();
                let ok = |id: &String| !failed.contains(id.as_str());
                t.0 += p.register.keys().filter(|id| ok(id)).count();
                t.1 += p.update.keys().filter(|id| ok(id)).count();
                t.2 += p.deregister.iter().filter(|id| ok(id)).count();
                t.3 += p.unchanged;
            }
            t.4 += b.failed.len();
        }
        t
    }
}

/// Whether backend `be` reads source `src`.
fn feeds(be: &dyn Backend, src: &str) -> bool {
    be.sources().is_none_or(|s| s.iter().any(|x| x == src))
}

/// What `be` should hold for these endpoints (only those of the sources it reads), and the
/// endpoints it could not render.
fn desired(be: &dyn Backend, endpoints: &[Endpoint]) -> (RegistrationMap, Vec<Skip>) {
    let name = be.name();
    let mut desired = RegistrationMap::new();
    let mut skipped = Vec::new();
    for ep in endpoints.iter().filter(|ep| feeds(be, &ep.source)) {
        match be.render(ep) {
            Ok(reg) => {
                if let Some(prev) = desired.get(&reg.id) {
                    tracing::warn!(backend = name, id = %reg.id, endpoint = %ep.describe(), "duplicate id (also {}); keeping the first", prev.name);
                    continue;
                }
                desired.insert(reg.id.clone(), reg);
            }
            Err(skip) => {
                tracing::warn!(backend = name, "{skip}");
                skipped.push(skip);
            }
        }
    }
    (desired, skipped)
}

/// What `rancon purge` would remove from one backend.
pub struct PurgePlan {
    /// The owned registrations found.
    pub actual: RegistrationMap,
    /// Deregister every one of them.
    pub plan: Plan,
    /// Parts that could not be listed (they keep their registrations).
    pub partial: Vec<String>,
}

impl Pipeline {
    /// True while leader election says another replica writes.
    fn standby(&self) -> bool {
        self.write_gate
            .as_ref()
            .is_some_and(|g| !g.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// Lists everything this owner holds in backend `name` and plans its removal. The sources
    /// are read only to tell a backend with one agent per host where to look.
    pub async fn purge_plan(&self, name: &str) -> Result<PurgePlan, String> {
        let be = self
            .backends
            .iter()
            .find(|b| b.name() == name)
            .ok_or_else(|| format!("no backend named {name:?} is configured"))?;
        let mut endpoints = Vec::new();
        for s in &self.sources {
            match s.fetch().await {
                Ok((eps, _)) => endpoints.extend(eps),
                Err(e) => {
                    tracing::warn!(source = s.name(), error = %e, "source failed; purge looks only where the backend already knows")
                }
            }
        }
        let listing = be
            .list(&desired(be.as_ref(), &endpoints).0)
            .await
            .map_err(|e| e.to_string())?;
        let plan = plan(&RegistrationMap::new(), &listing.regs);
        Ok(PurgePlan {
            actual: listing.regs,
            plan,
            partial: listing.partial,
        })
    }

    /// Applies a purge plan to backend `name`.
    pub async fn purge(&self, name: &str, p: &PurgePlan) -> crate::backend::ApplyReport {
        match self.backends.iter().find(|b| b.name() == name) {
            Some(be) => be.apply(&RegistrationMap::new(), &p.actual, &p.plan).await,
            None => Default::default(),
        }
    }

    /// Runs one round.
    pub async fn round(&self, opts: RoundOptions) -> RoundReport {
        let fetched = futures::future::join_all(self.sources.iter().map(|s| {
            let span = tracing::info_span!("source", name = s.name());
            async move { (s.name().to_string(), s.fetch().await) }.instrument(span)
        }))
        .await;
        let mut sources = Vec::new();
        let mut endpoints: Vec<Endpoint> = Vec::new();
        let mut failed_sources = BTreeSet::new();
        for (name, result) in fetched {
            match result {
                Ok((eps, skipped)) => {
                    for s in &skipped {
                        tracing::warn!(source = %name, "{s}");
                    }
                    sources.push(SourceOutcome {
                        source: name,
                        endpoints: eps.len(),
                        skipped,
                        error: None,
                    });
                    endpoints.extend(eps);
                }
                Err(e) => {
                    tracing::error!(source = %name, error = %e, "source failed; its backends deregister nothing this round");
                    failed_sources.insert(name.clone());
                    sources.push(SourceOutcome {
                        source: name,
                        endpoints: 0,
                        skipped: vec![],
                        error: Some(e.to_string()),
                    });
                }
            }
        }
        // Render every backend's registrations first and let the endpoints go: at 10,000
        // services their property maps are a third of the round's peak memory.
        let wanted: Vec<(RegistrationMap, Vec<Skip>)> = self
            .backends
            .iter()
            .map(|be| desired(be.as_ref(), &endpoints))
            .collect();
        drop(endpoints);
        let mut backends = Vec::new();
        for (be, (desired, skipped)) in self.backends.iter().zip(wanted) {
            let span = tracing::info_span!("backend", name = be.name());
            let mut outcome = self
                .backend_round(be.as_ref(), desired, &failed_sources, opts)
                .instrument(span)
                .await;
            outcome.skipped = skipped;
            backends.push(outcome);
        }
        RoundReport {
            sources,
            backends,
            dry_run: opts.dry_run,
            standby: self.standby(),
        }
    }

    async fn backend_round(
        &self,
        be: &dyn Backend,
        desired: RegistrationMap,
        failed_sources: &BTreeSet<String>,
        opts: RoundOptions,
    ) -> BackendOutcome {
        let name = be.name();
        let mut out = BackendOutcome {
            backend: name.to_string(),
            ..Default::default()
        };
        let actual = match be.list(&desired).await {
            Ok(listing) => {
                if !listing.partial.is_empty() {
                    for e in &listing.partial {
                        tracing::error!(backend = name, error = %e, "cannot list part of the registrations; nothing there is deregistered this round");
                    }
                    out.error = Some(format!("list: {}", listing.partial.join("; ")));
                }
                listing.regs
            }
            Err(e) => {
                tracing::error!(backend = name, error = %e, "cannot list registrations");
                out.error = Some(format!("list: {e}"));
                return out;
            }
        };
        let (mut p, unchanged) = plan_owned(desired, &actual);
        let incomplete = failed_sources.iter().any(|s| feeds(be, s));
        if incomplete && !p.deregister.is_empty() {
            out.held_back = p.deregister.len();
            p.deregister.clear();
        }
        let limit = self.max_deregister_fraction * actual.len() as f64;
        if !opts.force && self.max_deregister_fraction < 1.0 && p.deregister.len() as f64 > limit {
            let msg = format!(
                "guard: would deregister {} of {} owned registrations (more than max_deregister_fraction = {}); deregistering none (use --force to override)",
                p.deregister.len(),
                actual.len(),
                self.max_deregister_fraction
            );
            tracing::error!(backend = name, "{msg}");
            out.held_back += p.deregister.len();
            out.guard_tripped = true;
            p.deregister.clear();
            out.error = Some(out.error.map_or(msg.clone(), |e| format!("{e}; {msg}")));
        }
        // A standby replica plans like the leader but never writes; the gate is looked at
        // right before writing, so a leadership lost during the round stops the writes.
        let standby = self.standby();
        if standby && !opts.dry_run {
            tracing::debug!(backend = name, writes = p.writes(), "standby: not writing");
        }
        if !opts.dry_run && !standby {
            let report = be.apply(&unchanged, &actual, &p).await;
            let ok = |id: &String| !report.failed.iter().any(|(f, _)| f == id);
            for (id, reg) in p.register.iter().filter(|(id, _)| ok(id)) {
                tracing::info!(backend = name, id = %id, name = %reg.name, address = %reg.address, port = reg.port, "registered");
            }
            for (id, reg) in p.update.iter().filter(|(id, _)| ok(id)) {
                tracing::info!(backend = name, id = %id, name = %reg.name, address = %reg.address, port = reg.port, "updated");
            }
            for id in p.deregister.iter().filter(|id| ok(id)) {
                let (n, a, port) = actual
                    .get(id)
                    .map(|r| (r.name.as_str(), r.address.as_str(), r.port))
                    .unwrap_or_default();
                tracing::info!(backend = name, id = %id, name = n, address = a, port, "deregistered");
            }
            for (id, e) in &report.failed {
                tracing::error!(backend = name, id = %id, error = %e, "write failed; retried next round");
            }
            out.failed = report.failed;
        }
        out.plan = Some(p);
        out
    }
}
