//! The double's raft-like indexes and blocking queries, each rule from Consul's source:
//!
//! - One index counts every real change (the raft index); a resource remembers the index of
//!   its last change: a node (`catalogNodeMaxIndex`, bumped by its services' writes,
//!   agent/consul/state/catalog.go), a service name (`maxIndexForService`), the services table
//!   (`catalogServicesMaxIndex`). A write that changes nothing moves none of them
//!   (`ensureServiceTxn` returns early when `IsSameService`; `ensureCheckTxn` when the check
//!   `IsSame`). A check change moves its service name's index, not the node's.
//! - An unknown node answers the last node-extinction index (`nodeServices`, via
//!   `catalogNodeLastExtinctionIndex`), 0 when no node was ever removed.
//! - `?index=N&wait=D` (`parseWait` in agent/http.go: 400 `Invalid wait time` / `Invalid
//!   index`): N = 0 answers at once; otherwise the answer waits until the resource's index is
//!   above N or the wait ends (`blockingquery.Query`, agent/blockingquery/blockingquery.go).
//!   The wait is capped at 10 minutes (`max_query_time`), 5 minutes when absent or zero
//!   (`default_query_time`), plus up to wait/16 of jitter (`RPCQueryTimeout`,
//!   agent/consul/rpc.go, `structs.JitterFraction` = 16).
//! - A snapshot restore abandons the state store: every blocked query returns at once
//!   (`AbandonCh` in the same loop), with indexes that may be lower than before.
//! - `X-Consul-Index` is never 0 (`setIndex` in agent/http.go and the RPC layer's
//!   `SetIndex(1)`); older servers did send 0 (`legacy_zero_index`, blocking.mdx: "this has
//!   happened a few times").

use axum::http::StatusCode;
use axum::response::Response;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Indexes of the resources the double's blocking endpoints watch.
#[derive(Default)]
pub struct Indexes {
    /// The raft index of the last change.
    pub last: u64,
    nodes: BTreeMap<String, u64>,
    names: BTreeMap<String, u64>,
    services: u64,
    node_extinction: u64,
    /// Bumped by a restore: blocked queries return.
    epoch: u64,
}

/// The raft log, as far as blocking queries see it.
#[derive(Default)]
pub struct Raft {
    state: Mutex<Indexes>,
    changed: tokio::sync::Notify,
    /// Answer `X-Consul-Index: 0` where the state store has 0, as servers before the fix did.
    pub legacy_zero_index: AtomicBool,
}

impl Raft {
    /// A real change: a new raft index, set on the node (if any) and the service names.
    pub fn commit(&self, node: Option<&str>, names: &[&str]) -> u64 {
        let idx = {
            let mut s = self.state.lock().unwrap();
            s.last += 1;
            let idx = s.last;
            if let Some(n) = node {
                s.nodes.insert(n.to_string(), idx);
            }
            for n in names {
                s.names.insert(n.to_string(), idx);
            }
            if !names.is_empty() {
                s.services = idx;
            }
            idx
        };
        self.changed.notify_waiters();
        idx
    }

    /// A node was removed with its services.
    pub fn node_removed(&self, node: &str, names: &[&str]) {
        let idx = self.commit(None, names);
        let mut s = self.state.lock().unwrap();
        s.nodes.remove(node);
        s.node_extinction = idx;
    }

    /// A snapshot restore to raft index `to`: every index above it drops to it, and blocked
    /// queries return at once.
    pub fn restore(&self, to: u64) {
        {
            let mut s = self.state.lock().unwrap();
            s.last = to;
            let s = &mut *s;
            for v in s.nodes.values_mut().chain(s.names.values_mut()) {
                *v = (*v).min(to);
            }
            s.services = s.services.min(to);
            s.node_extinction = s.node_extinction.min(to);
            s.epoch += 1;
        }
        self.changed.notify_waiters();
    }

    /// The raft index of the last change.
    pub fn last(&self) -> u64 {
        self.state.lock().unwrap().last
    }

    /// `node-services/:node`: the node's index, or the node-extinction index when unknown.
    pub fn node(&self, node: &str, exists: bool) -> u64 {
        let s = self.state.lock().unwrap();
        match (exists, s.nodes.get(node)) {
            (true, Some(i)) => *i,
            (true, None) => s.last,
            (false, _) => s.node_extinction,
        }
    }

    /// `service/:name`.
    pub fn name(&self, name: &str) -> u64 {
        let s = self.state.lock().unwrap();
        s.names.get(name).copied().unwrap_or(0)
    }

    /// `services`.
    pub fn services(&self) -> u64 {
        self.state.lock().unwrap().services
    }

    fn epoch(&self) -> u64 {
        self.state.lock().unwrap().epoch
    }

    /// The header value for a state-store index.
    pub fn header(&self, idx: u64) -> String {
        if self.legacy_zero_index.load(Ordering::SeqCst) {
            idx.to_string()
        } else {
            idx.max(1).to_string()
        }
    }

    /// Waits as a blocking query with these parameters does; `index` reads the resource's
    /// index (taking the locks it needs). Returns when the query would answer.
    pub async fn block(&self, wait: Option<Wait>, index: impl Fn() -> u64) {
        let Some(w) = wait else { return };
        let epoch = self.epoch();
        let deadline = tokio::time::Instant::from_std(w.until);
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if index() > w.min || self.epoch() != epoch {
                return;
            }
            tokio::select! {
                _ = &mut changed => {}
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }
}

/// A blocking request's parameters: answer when the index passes `min`, or at `until`.
pub struct Wait {
    pub min: u64,
    pub until: Instant,
}

/// `?index` and `?wait` as `parseWait` reads them; `None` when the query does not block.
pub fn parse(q: &HashMap<String, String>) -> Result<Option<Wait>, Response> {
    let bad = |m: &str| super::text(StatusCode::BAD_REQUEST, m);
    let wait = match q.get("wait").filter(|w| !w.is_empty()) {
        None => Duration::ZERO,
        Some(w) => humantime::parse_duration(w).map_err(|_| bad("Invalid wait time"))?,
    };
    let min = match q.get("index").filter(|i| !i.is_empty()) {
        None => 0,
        Some(i) => i.parse::<u64>().map_err(|_| bad("Invalid index"))?,
    };
    if min == 0 {
        return Ok(None);
    }
    let wait = if wait.is_zero() {
        Duration::from_secs(300)
    } else {
        wait.min(Duration::from_secs(600))
    };
    let jitter = wait.mul_f64(fastrand::f64() / 16.0);
    Ok(Some(Wait {
        min,
        until: Instant::now() + wait + jitter,
    }))
}
