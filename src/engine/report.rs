//! What a round did: per source, per backend, and the totals the summary line and metrics use.

use crate::backend::WriteFailure;
use crate::error::{BackendError, Skip, SourceError};
use crate::plan::Plan;
use serde::Serialize;
use std::collections::BTreeSet;

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
    #[serde(serialize_with = "crate::error::opt_as_text")]
    pub error: Option<SourceError>,
}

/// Why a backend's round failed as a whole (beyond single writes).
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendFailure {
    /// The backend could not be listed; nothing was planned.
    #[error("list: {0}")]
    List(BackendError),
    /// Parts of the backend (agents) could not be listed; nothing there is deregistered.
    #[error("list: {}", crate::error::joined(.0))]
    Partial(Vec<BackendError>),
    /// The deregistration guard stopped this round's deregistrations.
    #[error(
        "guard: would deregister {would} of {owned} owned registrations (more than max_deregister_fraction = {max}); deregistering none (use --force to override)"
    )]
    Guard {
        /// Deregistrations planned.
        would: usize,
        /// Owned registrations listed.
        owned: usize,
        /// The configured fraction.
        max: f64,
    },
}

/// What one backend did this round.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackendOutcome {
    /// Component name.
    pub backend: String,
    /// The plan (after guards), when listing succeeded.
    pub plan: Option<Plan>,
    /// Writes that failed; retried next round.
    pub failed: Vec<WriteFailure>,
    /// Why the backend's round failed as a whole (listing error, guard), `; `-joined in JSON.
    #[serde(rename = "error", serialize_with = "failures_text")]
    pub failures: Vec<BackendFailure>,
    /// Deregistrations held back because a source failed or the guard tripped.
    pub held_back: usize,
    /// Whether the deregistration guard stopped this backend's deregistrations.
    pub guard_tripped: bool,
    /// Endpoints this backend could not render (bad template, port, label), with reasons.
    pub skipped: Vec<Skip>,
    /// How long `apply` took (zero when nothing was applied): the write phase, timed inside
    /// rancon so benches measure it directly.
    #[serde(skip)]
    pub write_time: std::time::Duration,
}

fn failures_text<S: serde::Serializer>(f: &[BackendFailure], s: S) -> Result<S::Ok, S::Error> {
    if f.is_empty() {
        s.serialize_none()
    } else {
        s.serialize_str(&crate::error::joined(f))
    }
}

impl BackendOutcome {
    /// The ids whose write failed, built once for lookups.
    pub fn failed_ids(&self) -> BTreeSet<&str> {
        self.failed.iter().map(|f| f.id.as_str()).collect()
    }

    /// The failures as one line, when there are any.
    pub fn error_text(&self) -> Option<String> {
        (!self.failures.is_empty()).then(|| crate::error::joined(&self.failures))
    }
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

/// Writes done (or planned, in a dry run) over all backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// New registrations written.
    pub registered: usize,
    /// Changed registrations rewritten.
    pub updated: usize,
    /// Registrations removed.
    pub deregistered: usize,
    /// Registrations that needed no write.
    pub unchanged: usize,
    /// Writes that failed.
    pub failed: usize,
    /// The longest write phase of any backend, in milliseconds.
    pub write_ms: u64,
}

impl RoundReport {
    /// True when anything failed: a source, a listing, a write, or the guard.
    pub fn failed(&self) -> bool {
        self.sources.iter().any(|s| s.error.is_some())
            || self
                .backends
                .iter()
                .any(|b| !b.failures.is_empty() || !b.failed.is_empty())
    }

    /// Totals over all backends; failed writes are not counted as done.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for b in &self.backends {
            if let Some(p) = &b.plan {
                let failed = b.failed_ids();
                let ok = |id: &&String| !failed.contains(id.as_str());
                t.registered += p.register.keys().filter(ok).count();
                t.updated += p.update.keys().filter(ok).count();
                t.deregistered += p.deregister.iter().filter(ok).count();
                t.unchanged += p.unchanged;
            }
            t.failed += b.failed.len();
            t.write_ms = t.write_ms.max(b.write_time.as_millis() as u64);
        }
        t
    }
}
