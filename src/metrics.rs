//! Prometheus metrics (`rancon_*`), fed from each round's report.

use crate::engine::{BackendFailure, RoundReport};
use crate::error::SkipKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabel {
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

/// Every metric rancon exports.
pub struct Metrics {
    registry: Registry,
    rounds: Counter,
    rounds_failed: Counter,
    round_duration: Histogram,
    source_services: Family<SourceLabel, Gauge>,
    source_failures: Family<SourceLabel, Counter>,
    registrations: Family<BackendLabel, Counter>,
    updates: Family<BackendLabel, Counter>,
    deregistrations: Family<BackendLabel, Counter>,
    write_failures: Family<BackendLabel, Counter>,
    guard_trips: Family<BackendLabel, Counter>,
    list_failures: Family<BackendLabel, Counter>,
    owned: Family<BackendLabel, Gauge>,
    skipped: Family<ReasonLabel, Counter>,
    last_success: Gauge<f64, AtomicU64>,
    leader: Gauge,
    /// Events, watches and full resyncs.
    pub events: EventMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric: rancon's under the `rancon_` prefix, plus the standard
    /// `process_*` ones.
    pub fn new() -> Self {
        let mut root = Registry::default();
        root.register_collector(Box::new(crate::process_metrics::ProcessCollector));
        let registry = root.sub_registry_with_prefix("rancon");
        let m = Self {
            rounds: Counter::default(),
            rounds_failed: Counter::default(),
            round_duration: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            source_services: Family::default(),
            source_failures: Family::default(),
            registrations: Family::default(),
            updates: Family::default(),
            deregistrations: Family::default(),
            write_failures: Family::default(),
            guard_trips: Family::default(),
            list_failures: Family::default(),
            owned: Family::default(),
            skipped: Family::default(),
            last_success: Gauge::default(),
            leader: Gauge::default(),
            events: EventMetrics::default(),
            registry: Registry::default(),
        };
        m.events.register(registry);
        registry.register("rounds", "Rounds run", m.rounds.clone());
        registry.register(
            "rounds_failed",
            "Rounds with a failure (source, listing, write or guard)",
            m.rounds_failed.clone(),
        );
        registry.register(
            "round_duration_seconds",
            "Wall time of a round",
            m.round_duration.clone(),
        );
        registry.register(
            "source_services",
            "Endpoints a source selected in the last round",
            m.source_services.clone(),
        );
        registry.register(
            "source_failures",
            "Rounds in which a source failed to list",
            m.source_failures.clone(),
        );
        registry.register(
            "registrations",
            "New registrations written",
            m.registrations.clone(),
        );
        registry.register(
            "updates",
            "Changed registrations rewritten",
            m.updates.clone(),
        );
        registry.register(
            "deregistrations",
            "Registrations removed",
            m.deregistrations.clone(),
        );
        registry.register(
            "write_failures",
            "Writes that failed (retried next round)",
            m.write_failures.clone(),
        );
        registry.register(
            "guard_trips",
            "Rounds in which max_deregister_fraction stopped deregistrations",
            m.guard_trips.clone(),
        );
        registry.register(
            "backend_list_failures",
            "Rounds in which a backend (or part of it) could not be listed; nothing was deregistered there",
            m.list_failures.clone(),
        );
        registry.register(
            "owned_registrations",
            "Registrations this owner holds in a backend after the last round that listed it in full",
            m.owned.clone(),
        );
        registry.register("skipped", "Endpoints skipped, by reason", m.skipped.clone());
        for kind in SkipKind::ALL {
            m.skipped
                .get_or_create(&ReasonLabel {
                    reason: kind.as_str().into(),
                })
                .inc_by(0);
        }
        registry.register(
            "last_success_timestamp_seconds",
            "Unix time of the last round without failures",
            m.last_success.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica may write (always 1 without leader election)",
            m.leader.clone(),
        );
        let build = Family::<VersionLabel, Gauge>::default();
        build
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        registry.register("build_info", "rancon's version", build);
        Self {
            registry: root,
            ..m
        }
    }

    /// Creates every per-component counter at 0, so a series exists from start (a rate or an
    /// alert on it needs no first event) for each configured source and backend.
    pub fn declare<'a>(
        &self,
        sources: impl IntoIterator<Item = &'a String>,
        backends: impl IntoIterator<Item = &'a String>,
    ) {
        for s in sources {
            self.source_failures
                .get_or_create(&SourceLabel { source: s.clone() })
                .inc_by(0);
        }
        for b in backends {
            let l = BackendLabel { backend: b.clone() };
            for family in [
                &self.registrations,
                &self.updates,
                &self.deregistrations,
                &self.write_failures,
                &self.guard_trips,
                &self.list_failures,
            ] {
                family.get_or_create(&l).inc_by(0);
            }
        }
    }

    /// Records one round.
    pub fn record(&self, report: &RoundReport, took: Duration) {
        self.rounds.inc();
        self.round_duration.observe(took.as_secs_f64());
        let failed = report.failed();
        if failed {
            self.rounds_failed.inc();
        } else {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            self.last_success.set(now.as_secs_f64());
        }
        self.leader.set(i64::from(!report.standby));
        for s in &report.sources {
            let l = SourceLabel {
                source: s.source.clone(),
            };
            if s.error.is_some() {
                self.source_failures.get_or_create(&l).inc();
            } else {
                self.source_services
                    .get_or_create(&l)
                    .set(s.endpoints as i64);
            }
            for skip in &s.skipped {
                self.skip(skip.kind.as_str());
            }
        }
        for b in &report.backends {
            let l = BackendLabel {
                backend: b.backend.clone(),
            };
            for skip in &b.skipped {
                self.skip(skip.kind.as_str());
            }
            if b.guard_tripped {
                self.guard_trips.get_or_create(&l).inc();
            }
            self.write_failures
                .get_or_create(&l)
                .inc_by(b.failed.len() as u64);
            let unlisted = b
                .failures
                .iter()
                .any(|f| matches!(f, BackendFailure::List(_) | BackendFailure::Partial(_)));
            if unlisted {
                // Unknown is not zero: the owned gauge keeps its last known value.
                self.list_failures.get_or_create(&l).inc();
            } else if let Some(owned) = owned_after(b, report.dry_run || report.standby) {
                self.owned.get_or_create(&l).set(owned as i64);
            }
            let Some(p) = b
                .plan
                .as_ref()
                .filter(|_| !report.dry_run && !report.standby)
            else {
                continue;
            };
            let failed = b.failed_ids();
            let ok = |id: &String| !failed.contains(id.as_str());
            let count = |it: &mut dyn Iterator<Item = &String>| it.filter(|id| ok(id)).count();
            self.registrations
                .get_or_create(&l)
                .inc_by(count(&mut p.register.keys()) as u64);
            self.updates
                .get_or_create(&l)
                .inc_by(count(&mut p.update.keys()) as u64);
            self.deregistrations
                .get_or_create(&l)
                .inc_by(count(&mut p.deregister.iter()) as u64);
        }
    }

    fn skip(&self, kind: &str) {
        self.skipped
            .get_or_create(&ReasonLabel {
                reason: kind.to_string(),
            })
            .inc();
    }

    /// The OpenMetrics text exposition (which Prometheus reads).
    pub fn encode(&self) -> String {
        self.events.refresh();
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// What a backend holds for this owner after a round that listed it in full: what it held
/// (unchanged, updated, deregistrations held back or planned) plus what was written.
fn owned_after(b: &crate::engine::BackendOutcome, wrote_nothing: bool) -> Option<usize> {
    let p = b.plan.as_ref()?;
    let held = p.unchanged + p.update.len() + b.held_back;
    if wrote_nothing {
        return Some(held + p.deregister.len());
    }
    let failed = b.failed_ids();
    let registered = p
        .register
        .keys()
        .filter(|id| !failed.contains(id.as_str()))
        .count();
    let kept = p
        .deregister
        .iter()
        .filter(|id| failed.contains(id.as_str()))
        .count();
    Some(held + registered + kept)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    source: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComponentLabel {
    component: String,
}

/// What the watches report: events, reconnects, lag, and how old the last full listing is.
#[derive(Debug)]
pub struct EventMetrics {
    events: Family<EventLabel, Counter>,
    reconnects: Family<ComponentLabel, Counter>,
    lag: Histogram,
    resync_age: Gauge<f64, AtomicU64>,
    last_resync: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Default for EventMetrics {
    fn default() -> Self {
        Self {
            events: Family::default(),
            reconnects: Family::default(),
            // 1 ms … ~16 s: an event round is tens of milliseconds, a confirming listing more.
            lag: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            resync_age: Gauge::default(),
            last_resync: std::sync::Mutex::new(None),
        }
    }
}

impl EventMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "events",
            "Events applied from a watched source, by kind",
            self.events.clone(),
        );
        registry.register(
            "watch_reconnects",
            "Times a watch reconnected (events may have been lost; a full listing followed)",
            self.reconnects.clone(),
        );
        registry.register(
            "event_lag_seconds",
            "From an event's arrival to the end of the round that applied it",
            self.lag.clone(),
        );
        registry.register(
            "last_full_resync_age_seconds",
            "Seconds since the last round that listed every source in full (-1: none yet)",
            self.resync_age.clone(),
        );
        self.resync_age.set(-1.0);
    }

    /// Counts one event of `kind` from `source`.
    pub fn event(&self, source: &str, kind: &str) {
        self.events
            .get_or_create(&EventLabel {
                source: source.to_string(),
                kind: kind.to_string(),
            })
            .inc();
    }

    /// Counts one reconnect of `component`'s watch.
    pub fn reconnect(&self, component: &str) {
        self.reconnects
            .get_or_create(&ComponentLabel {
                component: component.to_string(),
            })
            .inc();
    }

    /// Records the lag of an applied event.
    pub fn lag(&self, took: Duration) {
        self.lag.observe(took.as_secs_f64());
    }

    /// A full round has just listed every source.
    pub fn full_resync(&self) {
        *self.last_resync.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(std::time::Instant::now());
        self.refresh();
    }

    fn refresh(&self) {
        if let Some(t) = *self.last_resync.lock().unwrap_or_else(|p| p.into_inner()) {
            self.resync_age.set(t.elapsed().as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::owned_after;
    use crate::backend::WriteFailure;
    use crate::engine::BackendOutcome;
    use crate::error::BackendError;
    use crate::model::Registration;
    use crate::plan::Plan;

    fn reg(id: &str) -> (String, Registration) {
        let r = Registration {
            id: id.into(),
            name: id.into(),
            address: "10.0.0.1".into(),
            port: 80,
            tags: Default::default(),
            meta: Default::default(),
            private: Default::default(),
            health: None,
        };
        (id.into(), r)
    }

    fn failed(id: &str) -> WriteFailure {
        WriteFailure {
            id: id.into(),
            error: BackendError::Refused {
                backend: "c".into(),
                op: "write",
                key: id.into(),
                message: "test".into(),
            },
        }
    }

    /// Held: 5 unchanged + 1 updated + 2 held back + 2 to deregister = 10 listed.
    fn outcome() -> BackendOutcome {
        BackendOutcome {
            plan: Some(Plan {
                register: [reg("new1"), reg("new2")].into_iter().collect(),
                update: [reg("upd")].into_iter().collect(),
                deregister: ["gone1".to_string(), "gone2".to_string()].into(),
                unchanged: 5,
                previous: Default::default(),
            }),
            held_back: 2,
            ..Default::default()
        }
    }

    #[test]
    fn owned_counts_what_the_backend_holds_after_the_writes() {
        let mut b = outcome();
        // All written: 10 listed + 2 registered - 2 deregistered.
        assert_eq!(owned_after(&b, false), Some(10));
        // A failed registration is not held; a failed deregistration still is.
        b.failed = vec![failed("new1"), failed("gone1")];
        assert_eq!(owned_after(&b, false), Some(10 - 2 + 1 + 1));
        // Nothing written (dry run, standby): what was listed.
        assert_eq!(owned_after(&b, true), Some(10));
        // Not listed: unknown.
        b.plan = None;
        assert_eq!(owned_after(&b, false), None);
    }
}
