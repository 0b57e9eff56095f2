//! The round engine: fetch sources → render per backend → list owned → plan → guards → apply.
//! The only room that drives sources and backends.

mod report;

pub use report::{BackendFailure, BackendOutcome, RoundReport, SourceOutcome, Totals};

use crate::backend::Backend;
use crate::error::{Skip, SkipKind};
use crate::model::{Endpoint, RegistrationMap};
use crate::plan::plan_owned_keeping;
use crate::source::Source;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tracing::Instrument;

/// May this replica write? Open while leader election holds the lock *and* the last
/// confirmation is younger than the session TTL, so a leader whose Consul hangs stops writing
/// by `last confirmation + ttl` even while its election step is still waiting for an answer.
#[derive(Debug, Default)]
pub struct WriteGate {
    until: Mutex<Option<Instant>>,
}

impl WriteGate {
    /// Opens the gate until `deadline`; `None` closes it.
    pub fn hold_until(&self, deadline: Option<Instant>) {
        *self.until.lock().unwrap_or_else(|p| p.into_inner()) = deadline;
    }

    /// Whether writes are allowed now.
    pub fn open(&self) -> bool {
        self.until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| Instant::now() < t)
    }
}

/// The components of a running rancon, built once from the config.
pub struct Pipeline {
    /// Sources, in config order.
    pub sources: Vec<Box<dyn Source>>,
    /// Backends, in config order.
    pub backends: Vec<Box<dyn Backend>>,
    /// The deregistration guard (see `Config::max_deregister_fraction`).
    pub max_deregister_fraction: f64,
    /// With leader election: true while this replica holds the lock. Rounds run without it
    /// plan but do not write.
    pub write_gate: Option<Arc<WriteGate>>,
}

/// How to run a round.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundOptions {
    /// Compute and report the plans, write nothing.
    pub dry_run: bool,
    /// Apply deregistrations even when the guard would stop them.
    pub force: bool,
}

/// What a round looks at. The default is a full round: every source listed, every backend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Take a source's watched view (`Source::current`) where it has one instead of listing
    /// it: a round woken by an event costs no listing. Absence is still confirmed by a full
    /// listing before anything is deregistered.
    pub cached: bool,
    /// Only these backends (`None`: all), and only the sources they read.
    pub backends: Option<BTreeSet<String>>,
}

impl Scope {
    /// A full round.
    pub fn full() -> Self {
        Self::default()
    }

    /// Whether backend `be` takes part.
    fn has(&self, be: &dyn Backend) -> bool {
        self.backends.as_ref().is_none_or(|b| b.contains(be.name()))
    }
}

/// Whether backend `be` reads source `src`.
pub fn feeds(be: &dyn Backend, src: &str) -> bool {
    be.sources().is_none_or(|s| s.iter().any(|x| x == src))
}

/// What `be` should hold for these endpoints (only those of the sources it reads), and the
/// endpoints it could not render.
pub fn desired(be: &dyn Backend, endpoints: &[Endpoint]) -> (RegistrationMap, Vec<Skip>) {
    let mut desired = RegistrationMap::new();
    let mut skipped = Vec::new();
    for ep in endpoints.iter().filter(|ep| feeds(be, &ep.source)) {
        render_into(be, ep, &mut desired, &mut skipped);
    }
    (desired, skipped)
}

/// Takes the desired registrations whose id someone else holds out of `desired`: the
/// foreign holder keeps it. Returns them with their holders.
fn listing_foreign(
    desired: &mut RegistrationMap,
    actual: &RegistrationMap,
    foreign: std::collections::BTreeMap<String, String>,
) -> Vec<(String, String)> {
    foreign
        .into_iter()
        .filter(|(id, _)| !actual.contains_key(id) && desired.remove(id).is_some())
        .collect()
}

/// What the sources gave this round, rendered for each backend in scope.
#[derive(Default)]
struct Fetched {
    outcomes: Vec<SourceOutcome>,
    /// Per backend (in the order given to `fetch`): its desired registrations and the
    /// endpoints it could not render.
    wanted: Vec<(RegistrationMap, Vec<Skip>)>,
    /// Sources whose listing is not the whole truth: failed, or with items they could not
    /// read (a malformed service, a bad label). What they held is unknown, never empty.
    incomplete: BTreeSet<String>,
}

/// One source's endpoints rendered for every backend that reads it, as they arrive: an
/// endpoint is dropped once rendered, so a listing's endpoints are never all held.
struct Rendering<'a> {
    backends: &'a [&'a dyn Backend],
    wanted: Vec<(RegistrationMap, Vec<Skip>)>,
}

impl<'a> Rendering<'a> {
    fn new(backends: &'a [&'a dyn Backend]) -> Self {
        Self {
            backends,
            wanted: backends.iter().map(|_| Default::default()).collect(),
        }
    }

    fn add(&mut self, ep: Endpoint) {
        for (be, (desired, skipped)) in self.backends.iter().zip(&mut self.wanted) {
            if feeds(*be, &ep.source) {
                render_into(*be, &ep, desired, skipped);
            }
        }
    }
}

/// Renders one endpoint for `be` into `desired` (the first of two with one id wins), or
/// records why it cannot be.
fn render_into(
    be: &dyn Backend,
    ep: &Endpoint,
    desired: &mut RegistrationMap,
    skipped: &mut Vec<Skip>,
) {
    let name = be.name();
    match be.render(ep) {
        Ok(reg) => {
            if let Some(prev) = desired.get(&reg.id) {
                tracing::warn!(backend = name, id = %reg.id, endpoint = %ep.describe(), "duplicate id (also {}); keeping the first", prev.name);
                return;
            }
            desired.insert(reg.id.clone(), reg);
        }
        Err(skip) => {
            tracing::warn!(backend = name, "{skip}");
            skipped.push(skip);
        }
    }
}

/// A backend's round up to its writes.
#[derive(Default)]
struct Prepared {
    out: BackendOutcome,
    actual: RegistrationMap,
    unchanged: RegistrationMap,
    /// `None` when listing failed.
    plan: Option<crate::plan::Plan>,
}

impl Pipeline {
    /// True while leader election says another replica writes.
    fn standby(&self) -> bool {
        self.write_gate.as_ref().is_some_and(|g| !g.open())
    }

    /// Lists the sources `backends` read (a watched view stands in for the listing when
    /// `scope.cached`), rendering each endpoint for them as it arrives. `loud` logs skipped
    /// items (the confirmation listing does not repeat the warnings).
    async fn fetch(&self, loud: bool, scope: &Scope, backends: &[&dyn Backend]) -> Fetched {
        let wanted = |s: &dyn Source| backends.iter().any(|be| feeds(*be, s.name()));
        let fetched = futures::future::join_all(
            self.sources
                .iter()
                .filter(|s| scope.backends.is_none() || wanted(s.as_ref()))
                .map(|s| {
                    let span = tracing::info_span!("source", name = s.name());
                    async move {
                        let mut rendering = Rendering::new(backends);
                        let view = if scope.cached { s.current() } else { None };
                        let got = match view {
                            Some((eps, skipped)) => {
                                let n = eps.len();
                                eps.into_iter().for_each(|ep| rendering.add(ep));
                                Ok((n, skipped))
                            }
                            None => s.fetch_each(&mut |ep| rendering.add(ep)).await,
                        };
                        (s.name().to_string(), got, rendering.wanted)
                    }
                    .instrument(span)
                }),
        )
        .await;
        let mut out = Fetched {
            wanted: backends.iter().map(|_| Default::default()).collect(),
            ..Default::default()
        };
        for (name, result, rendered) in fetched {
            match result {
                Ok((count, skipped)) => {
                    for s in skipped.iter().filter(|_| loud) {
                        tracing::warn!(source = %name, "{s}");
                    }
                    if !skipped.is_empty() {
                        out.incomplete.insert(name.clone());
                    }
                    out.outcomes.push(SourceOutcome {
                        source: name,
                        endpoints: count,
                        skipped,
                        error: None,
                    });
                    // Sources in config order: of two with one id, the first source's wins.
                    for (be, ((all, all_skipped), (mine, mine_skipped))) in
                        backends.iter().zip(out.wanted.iter_mut().zip(rendered))
                    {
                        all_skipped.extend(mine_skipped);
                        if all.is_empty() {
                            *all = mine;
                            continue;
                        }
                        for (id, reg) in mine {
                            match all.get(&id) {
                                Some(prev) => {
                                    tracing::warn!(backend = be.name(), id = %id, "duplicate id (also {}); keeping the first", prev.name);
                                }
                                None => drop(all.insert(id, reg)),
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(source = %name, error = %e, "source failed; its backends deregister nothing this round");
                    out.incomplete.insert(name.clone());
                    out.outcomes.push(SourceOutcome {
                        source: name,
                        endpoints: 0,
                        skipped: vec![],
                        error: Some(e),
                    });
                }
            }
        }
        for (desired, _) in &mut out.wanted {
            *desired = crate::model::packed(std::mem::take(desired));
        }
        out
    }

    /// Runs one full round.
    pub async fn round(&self, opts: RoundOptions) -> RoundReport {
        self.round_in(opts, &Scope::full()).await
    }

    /// Runs one round over `scope`: the backends it names (all by default), from listings or
    /// watched views.
    pub async fn round_in(&self, opts: RoundOptions, scope: &Scope) -> RoundReport {
        let backends: Vec<&dyn Backend> = self
            .backends
            .iter()
            .map(|b| b.as_ref())
            .filter(|b| scope.has(*b))
            .collect();
        let Fetched {
            outcomes: sources,
            wanted,
            incomplete,
        } = self.fetch(true, scope, &backends).await;
        // Backends are independent: one slow registry does not delay the others.
        let incomplete = &incomplete;
        let mut prepared = futures::future::join_all(backends.iter().zip(wanted).map(
            |(be, (desired, skipped))| {
                let span = tracing::info_span!("backend", name = be.name());
                self.prepare(*be, desired, skipped, incomplete)
                    .instrument(span)
            },
        ))
        .await;
        self.confirm_absence(&backends, &mut prepared, scope).await;
        let backends =
            futures::future::join_all(backends.iter().zip(prepared).map(|(be, prep)| {
                let span = tracing::info_span!("backend", name = be.name());
                self.finish(*be, prep, opts).instrument(span)
            }))
            .await;
        RoundReport {
            sources,
            backends,
            dry_run: opts.dry_run,
            standby: self.standby(),
        }
    }

    /// Lists what `be` holds and plans; deregistrations are held back when what this backend
    /// reads is incomplete.
    async fn prepare(
        &self,
        be: &dyn Backend,
        mut desired: RegistrationMap,
        skipped: Vec<Skip>,
        incomplete_sources: &BTreeSet<String>,
    ) -> Prepared {
        let name = be.name();
        // An endpoint this backend could not render held registrations we cannot name.
        let unrendered = !skipped.is_empty();
        let mut out = BackendOutcome {
            backend: name.to_string(),
            skipped,
            ..Default::default()
        };
        let (actual, foreign) = match be.list(&desired).await {
            Ok(listing) => {
                if !listing.partial.is_empty() {
                    for e in &listing.partial {
                        tracing::error!(backend = name, error = %e, "cannot list part of the registrations; nothing there is deregistered this round");
                    }
                    out.failures.push(BackendFailure::Partial(listing.partial));
                }
                (crate::model::packed(listing.regs), listing.foreign)
            }
            Err(e) => {
                tracing::error!(backend = name, error = %e, "cannot list registrations");
                out.failures.push(BackendFailure::List(e));
                return Prepared {
                    out,
                    ..Default::default()
                };
            }
        };
        for (id, holder) in &listing_foreign(&mut desired, &actual, foreign) {
            let reason = format!("id {id} is held by {holder}; rancon does not write over it");
            tracing::warn!(backend = name, "{reason}");
            out.skipped.push(Skip {
                endpoint: id.clone(),
                kind: SkipKind::Conflict,
                reason,
            });
        }
        let (mut p, unchanged) = plan_owned_keeping(desired, &actual, |r| be.refreshes(r));
        let incomplete = incomplete_sources.iter().any(|s| feeds(be, s)) || unrendered;
        if incomplete && !p.deregister.is_empty() {
            tracing::warn!(
                backend = name,
                held_back = p.deregister.len(),
                "a source failed or skipped items: deregistering nothing this round"
            );
            out.held_back = p.deregister.len();
            p.deregister.clear();
        }
        Prepared {
            out,
            actual,
            unchanged,
            plan: Some(p),
        }
    }

    /// A registration is deregistered only when its absence is confirmed by a second complete
    /// listing: Rancher pages by offset, so a row removed between two page reads hides a live
    /// one from that listing. The sources are listed again only in rounds that would
    /// deregister something, so a steady round costs one listing.
    /// The confirming listings are always real ones, never a watched view: an event saying a
    /// service is gone is a claim, and a stale view (events lost) can miss a live one. So a
    /// round planned from watched views is confirmed by two listings, as a full round is by
    /// its own listing and one more: a live service missing from one listing stays.
    async fn confirm_absence(
        &self,
        backends: &[&dyn Backend],
        prepared: &mut [Prepared],
        scope: &Scope,
    ) {
        let candidates = |p: &Prepared| p.plan.as_ref().is_some_and(|p| !p.deregister.is_empty());
        if !prepared.iter().any(candidates) {
            return;
        }
        let listed = Scope {
            cached: false,
            ..scope.clone()
        };
        let rounds = if scope.cached { 2 } else { 1 };
        for _ in 0..rounds {
            let again = self.fetch(false, &listed, backends).await;
            self.keep_listed(backends, prepared, again);
        }
    }

    /// Takes back every deregistration of an id `again` still lists (or all of a backend's,
    /// when `again` is incomplete for it).
    fn keep_listed(&self, backends: &[&dyn Backend], prepared: &mut [Prepared], again: Fetched) {
        for ((be, prep), (still, skipped)) in
            backends.iter().zip(prepared.iter_mut()).zip(again.wanted)
        {
            let Some(plan) = prep.plan.as_mut().filter(|p| !p.deregister.is_empty()) else {
                continue;
            };
            let name = be.name();
            if again.incomplete.iter().any(|s| feeds(*be, s)) || !skipped.is_empty() {
                tracing::warn!(
                    backend = name,
                    held_back = plan.deregister.len(),
                    "the confirming listing is incomplete: deregistering nothing this round"
                );
                prep.out.held_back += plan.deregister.len();
                plan.deregister.clear();
                continue;
            }
            let before = plan.deregister.len();
            plan.deregister.retain(|id| !still.contains_key(id));
            let back = before - plan.deregister.len();
            if back > 0 {
                tracing::warn!(
                    backend = name,
                    count = back,
                    "listed again, not deregistered: missing from one listing only"
                );
                prep.out.held_back += back;
            }
        }
    }

    /// Guards, then writes (unless a dry run or a standby replica).
    async fn finish(&self, be: &dyn Backend, prep: Prepared, opts: RoundOptions) -> BackendOutcome {
        let Prepared {
            mut out,
            actual,
            unchanged,
            plan,
        } = prep;
        let Some(mut p) = plan else { return out };
        let name = be.name();
        let limit = self.max_deregister_fraction * actual.len() as f64;
        if !opts.force && self.max_deregister_fraction < 1.0 && p.deregister.len() as f64 > limit {
            let guard = BackendFailure::Guard {
                would: p.deregister.len(),
                owned: actual.len(),
                max: self.max_deregister_fraction,
            };
            tracing::error!(backend = name, "{guard}");
            out.held_back += p.deregister.len();
            out.guard_tripped = true;
            p.deregister.clear();
            out.failures.push(guard);
        }
        // A standby replica plans like the leader but never writes; the gate is looked at
        // right before writing, so a leadership lost during the round stops the writes.
        let standby = self.standby();
        if standby && !opts.dry_run {
            tracing::debug!(backend = name, writes = p.writes(), "standby: not writing");
        }
        if !opts.dry_run && !standby {
            let writing = Instant::now();
            let report = be.apply(&unchanged, &actual, &p).await;
            out.write_time = writing.elapsed();
            let failed: BTreeSet<&str> = report.failed.iter().map(|f| f.id.as_str()).collect();
            let ok = |id: &String| !failed.contains(id.as_str());
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
            for f in &report.failed {
                tracing::error!(backend = name, id = %f.id, error = %f.error, "write failed; retried next round");
            }
            drop(failed);
            out.failed = report.failed;
        }
        out.plan = Some(p);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::WriteGate;
    use std::time::{Duration, Instant};

    #[test]
    fn the_write_gate_closes_at_its_deadline_without_being_told() {
        let gate = WriteGate::default();
        assert!(!gate.open(), "closed until election says otherwise");
        gate.hold_until(Some(Instant::now() + Duration::from_secs(3600)));
        assert!(gate.open());
        // A confirmation whose TTL has run out (Consul hung since): closed by itself.
        gate.hold_until(Some(Instant::now() - Duration::from_millis(1)));
        assert!(!gate.open());
        gate.hold_until(None);
        assert!(!gate.open());
    }
}
