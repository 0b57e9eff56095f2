//! Drift repair: a blocking query per catalog node holding this owner's registrations; a change
//! there that rancon did not make itself wakes the daemon, which lists this backend again and
//! repairs through the API it registers with.
//!
//! Consul's rules this follows (website/content/api-docs/features/blocking.mdx unless said):
//! `/v1/agent/services` cannot block, so the agent's node is watched in the catalog
//! (`/v1/catalog/node-services/:node`, whose index is the node's own, `catalogNodeMaxIndex` in
//! agent/consul/state/catalog.go: writes on other nodes do not wake it). An identical
//! re-register does not move an index (`ensureServiceTxn`: `IsSameService`). The index is reset
//! to 0 when it goes backwards, kept at least 1, and the loop is paced by a token bucket.

use super::digest::{Digest, entry_hash};
use super::{Agents, ConsulMode, wire};
use crate::consul::Api;
use crate::error::BackendError;
use crate::model::Registration;
use crate::watch::{Wake, WakeTx};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one blocking query waits (Consul caps it at 10 minutes, default 5). One minute
/// keeps an idle connection under the idle timeouts of common proxies; a quiet minute costs
/// one renewal per watched node.
pub const WAIT: Duration = Duration::from_secs(60);
/// Token bucket of the query loop: a couple of quick answers pass at once, then at most one
/// request per `REFILL`, however fast the node churns (the docs' "burst of 2").
pub const BURST: f64 = 2.0;
/// One token per this long.
pub const REFILL: Duration = Duration::from_secs(1);
/// First pause after a failed query; doubles up to `BACKOFF_MAX`.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest pause between failed queries.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How often the set of agents to watch is re-read from memory (templated `url` only).
const RESCAN: Duration = Duration::from_secs(2);

/// What the backend believes each place holds (agent URL, or `url` in catalog mode): entry
/// hashes by Consul id, from its last listing and its own writes since (recorded before each
/// write is sent). `None`: unknown (a write failed). A watch answer equal to it is rancon's
/// own doing, not drift. Writes still in flight are counted per place: while a round writes
/// concurrently, Consul passes through partial states that match no expectation, so a watch
/// judges only once the place's writes are done.
#[derive(Default)]
pub struct Expected {
    places: Mutex<BTreeMap<String, Place>>,
    /// Woken when a place's last write in flight ends.
    settled: tokio::sync::Notify,
}

#[derive(Default)]
struct Place {
    regs: Option<BTreeMap<String, u64>>,
    in_flight: usize,
}

impl Expected {
    /// A successful listing of `place` found these owned registrations.
    pub fn listed<'a>(&self, place: &str, regs: impl IntoIterator<Item = &'a Registration>) {
        let map = regs
            .into_iter()
            .map(|r| (r.id.clone(), entry_hash(r)))
            .collect();
        self.lock().entry(place.to_string()).or_default().regs = Some(map);
    }

    /// A write to `place` is about to be sent: `id` will hold `reg` (`None`: deregistered).
    pub fn written(&self, place: &str, id: &str, reg: Option<&Registration>) {
        if let Some(map) = self.lock().get_mut(place).and_then(|p| p.regs.as_mut()) {
            match reg {
                Some(r) => map.insert(id.to_string(), entry_hash(r)),
                None => map.remove(id),
            };
        }
    }

    /// A write to `place` failed: what it holds is unknown until the next listing.
    pub fn unknown(&self, place: &str) {
        self.lock().entry(place.to_string()).or_default().regs = None;
    }

    /// A write to `place` is sent; `end` follows when its answer (or error) is in.
    pub fn begin(&self, place: &str) {
        self.lock().entry(place.to_string()).or_default().in_flight += 1;
    }

    /// A write to `place` has its answer.
    pub fn end(&self, place: &str) {
        let mut places = self.lock();
        if let Some(p) = places.get_mut(place) {
            p.in_flight = p.in_flight.saturating_sub(1);
            if p.in_flight == 0 {
                self.settled.notify_waiters();
            }
        }
    }

    fn in_flight(&self, place: &str) -> usize {
        self.lock().get(place).map_or(0, |p| p.in_flight)
    }

    /// Returns once no write to `place` is in flight.
    async fn settle(&self, place: &str) {
        loop {
            let woken = self.settled.notified();
            tokio::pin!(woken);
            // Registered before the check, so an `end` between the two is not missed.
            woken.as_mut().enable();
            if self.in_flight(place) == 0 {
                return;
            }
            woken.await;
        }
    }

    fn digest(&self, place: &str) -> Option<u64> {
        self.lock()
            .get(place)?
            .regs
            .as_ref()
            .map(|m| m.values().fold(0u64, |a, h| a.wrapping_add(*h)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Place>> {
        self.places.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The next `index` to send after an answer carrying `got`, when `sent` was sent: back to 0
/// (a non-blocking read) when it went backwards (a snapshot restore, a server that lost
/// state), else at least 1 (an index of 0 never blocks: a busy loop).
pub fn next_index(sent: u64, got: u64) -> u64 {
    if got < sent { 0 } else { got.max(1) }
}

/// What a watch last judged: the owned registrations' digest in an answer, and what the
/// backend expected then.
pub type Judged = (u64, Option<u64>);

/// Whether an answer (`now`, the digest of the owned registrations on the node) is drift to
/// repair: it is not what this backend wrote or listed (`expected`; its own writes are no
/// drift), and the answer and expectation are not the pair judged last (`prev`: foreign churn
/// on the node, which changes neither, wakes nothing twice). The pair, not the digest alone:
/// an answer can show a round's first write when the expectation holds only that write, then
/// the next answer the same digest after the round's second write and a hand deletion of it
/// (seen in a test run) — unchanged to the watch, yet no longer what is expected. With
/// expectations unknown, any change of the digest counts; the very first answer is only a
/// baseline unless expectations already exist.
pub fn is_drift(prev: Option<Judged>, now: u64, expected: Option<u64>) -> bool {
    if prev == Some((now, expected)) {
        return false;
    }
    match expected {
        Some(e) => e != now,
        None => prev.is_some_and(|(p, _)| p != now),
    }
}

/// A token bucket: `take` waits until a token is there.
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Default for Bucket {
    fn default() -> Self {
        Self {
            tokens: BURST,
            at: Instant::now(),
        }
    }
}

impl Bucket {
    /// How long until a token is there (zero: one is taken now).
    pub fn take_at(&mut self, now: Instant) -> Duration {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() / REFILL.as_secs_f64();
        self.tokens = (self.tokens + refill).min(BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Duration::ZERO;
        }
        let short = (1.0 - self.tokens) * REFILL.as_secs_f64();
        // The token that will be there is spoken for.
        self.tokens -= 1.0;
        Duration::from_secs_f64(short)
    }

    async fn take(&mut self) {
        let wait = self.take_at(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Exponential pauses after failures, with jitter; reset by a success.
#[derive(Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The pause after one more failure: `BACKOFF_MIN` doubled per failure before it, capped
    /// at `BACKOFF_MAX`, plus up to a tenth more so watches do not retry in step.
    pub fn next(&mut self) -> Duration {
        let base = BACKOFF_MIN
            .saturating_mul(1 << self.failures.min(16))
            .min(BACKOFF_MAX);
        self.failures += 1;
        base + base.mul_f64(fastrand::f64() / 10.0)
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// Everything a watch task needs, shared with the backend.
pub struct Watcher {
    pub backend: String,
    pub api: Arc<Api>,
    pub owner_tag: String,
    pub mode: ConsulMode,
    /// Catalog mode: the synthetic node.
    pub node: String,
    /// The `url` (one agent, or a template).
    pub url: String,
    pub literal: bool,
    pub timeout: Duration,
    pub expected: Arc<Expected>,
    pub agents: Arc<Mutex<Agents>>,
    pub wake: WakeTx,
}

/// Tasks aborted when dropped (the supervisor's per-place watches).
#[derive(Default)]
struct Tasks(BTreeMap<String, tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in self.0.values() {
            t.abort();
        }
    }
}

impl Watcher {
    /// Watches every place this owner holds registrations at: the one agent (or catalog node),
    /// or with a templated `url` the agents known to hold some, re-read every few seconds.
    pub async fn run(self: Arc<Self>) {
        let mut tasks = Tasks::default();
        loop {
            let want: BTreeSet<String> = if self.literal {
                BTreeSet::from([self.url.clone()])
            } else {
                let st = self.agents.lock().unwrap_or_else(|p| p.into_inner());
                st.known.clone()
            };
            tasks.0.retain(|place, t| {
                let keep = want.contains(place) && !t.is_finished();
                if !keep {
                    t.abort();
                }
                keep
            });
            for place in want {
                if let std::collections::btree_map::Entry::Vacant(slot) = tasks.0.entry(place) {
                    let w = self.clone();
                    let p = slot.key().clone();
                    slot.insert(tokio::spawn(async move { w.watch(p).await }));
                }
            }
            if self.wake.is_closed() {
                return;
            }
            tokio::time::sleep(RESCAN).await;
        }
    }

    /// Watches one place until the daemon stops listening.
    async fn watch(&self, place: String) {
        let mut backoff = Backoff::default();
        let node = match self.mode {
            ConsulMode::Catalog => self.node.clone(),
            ConsulMode::Agent => loop {
                match self.node_of(&place).await {
                    Ok(n) => break n,
                    Err(e) => self.failed(&mut backoff, &place, &e).await,
                }
                if self.wake.is_closed() {
                    return;
                }
            },
        };
        let mut bucket = Bucket::default();
        let (mut index, mut prev) = (0u64, None);
        loop {
            bucket.take().await;
            match self.query(&place, &node, index).await {
                Ok((digest, got)) => {
                    if backoff.failures() > 0 {
                        tracing::info!(backend = %self.backend, agent = %place, "watch answers again");
                        backoff = Backoff::default();
                    }
                    tracing::trace!(backend = %self.backend, agent = %place, sent = index, got, digest, ?prev, expected = ?self.expected.digest(&place), "watch answer");
                    index = next_index(index, got);
                    let mut digest = digest;
                    if is_drift(prev, digest, self.expected.digest(&place)) {
                        // Confirmed by a fresh read before it wakes anyone: the answer may
                        // show a round's writes half done (produced while they were in flight,
                        // read after), a state no plan describes. So wait until this place's
                        // writes are answered, then read it at once (not blocking).
                        self.expected.settle(&place).await;
                        match self.query(&place, &node, 0).await {
                            Ok((now, got)) => {
                                digest = now;
                                index = next_index(0, got);
                            }
                            Err(e) => {
                                index = 0;
                                self.failed(&mut backoff, &place, &e).await;
                                continue;
                            }
                        }
                    }
                    let expected = self.expected.digest(&place);
                    if is_drift(prev, digest, expected) {
                        tracing::debug!(backend = %self.backend, agent = %place, "registrations changed under rancon; listing again");
                        let w = Wake::Backend {
                            backend: self.backend.clone(),
                            received: Instant::now(),
                        };
                        if self.wake.send(w).is_err() {
                            return;
                        }
                    }
                    prev = Some((digest, expected));
                }
                Err(e) => {
                    // What changed while the server did not answer shows as a change in the
                    // first answer after it; the index starts over.
                    index = 0;
                    self.failed(&mut backoff, &place, &e).await;
                }
            }
            if self.wake.is_closed() {
                return;
            }
        }
    }

    /// Logs a failure (the first of a run loudly) and waits out the backoff.
    async fn failed(&self, backoff: &mut Backoff, place: &str, e: &BackendError) {
        let pause = backoff.next();
        if backoff.failures() == 1 {
            tracing::warn!(backend = %self.backend, agent = %place, error = %e, retry_in = ?pause, "watch failed; drift is repaired by the periodic round until it answers again");
        } else {
            tracing::debug!(backend = %self.backend, agent = %place, error = %e, retry_in = ?pause, "watch still failing");
        }
        tokio::time::sleep(pause).await;
    }

    /// The node name of the agent at `agent` (`GET /v1/agent/self`, ACL `agent:read`).
    async fn node_of(&self, agent: &str) -> Result<String, BackendError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct SelfConfig {
            node_name: String,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct AgentSelf {
            config: SelfConfig,
        }
        let url = wire::url(agent, &["v1", "agent", "self"]);
        let me: AgentSelf = self.api.get("agent self", &url, &[]).await?;
        let n = me.config.node_name;
        // Server data that becomes a path segment (escaped) and a log field.
        if n.is_empty() || n.len() > 256 || n.chars().any(char::is_control) {
            return Err(BackendError::Decode {
                what: format!("agent self answer from {url}"),
                message: "the node name is empty, too long or holds control characters".into(),
            });
        }
        Ok(n)
    }

    /// One blocking query of `node` at `place`: the digest of the owned registrations there
    /// and the answer's index.
    async fn query(&self, place: &str, node: &str, index: u64) -> Result<(u64, u64), BackendError> {
        let url = wire::url(place, &["v1", "catalog", "node-services", node]);
        let filter = format!("\"{}\" in Tags", self.owner_tag);
        let (index, wait) = (index.to_string(), crate::consul::go_duration(WAIT));
        let mut query = vec![("filter", filter.as_str())];
        if self.mode == ConsulMode::Catalog {
            query.extend(self.api.dc());
        }
        if index != "0" {
            query.push(("index", &index));
            query.push(("wait", &wait));
        }
        let (digest, got) = self
            .api
            .get_indexed("watch", &url, &query, self.timeout, WAIT, {
                let tag = self.owner_tag.clone();
                move |body| {
                    use serde::de::DeserializeSeed;
                    let mut d = serde_json::Deserializer::from_reader(body);
                    let digest = Digest(&tag).deserialize(&mut d)?;
                    d.end().map(|()| digest)
                }
            })
            .await?;
        Ok((digest, got))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_resets_when_it_goes_backwards_and_never_sends_zero_after_an_answer() {
        assert_eq!(next_index(0, 17), 17);
        assert_eq!(next_index(17, 17), 17, "a timeout: the same index");
        assert_eq!(next_index(17, 20), 20);
        assert_eq!(next_index(20, 5), 0, "backwards: start over");
        assert_eq!(next_index(0, 0), 1, "an index of 0 would never block");
    }

    #[test]
    fn only_unexpected_changes_are_drift() {
        assert!(!is_drift(None, 7, None), "first answer: a baseline");
        assert!(
            is_drift(None, 7, Some(8)),
            "first answer unlike the listing"
        );
        assert!(!is_drift(None, 7, Some(7)));
        assert!(
            !is_drift(Some((7, Some(8))), 7, Some(8)),
            "foreign churn after a wake: nothing of ours changed, no second wake"
        );
        assert!(is_drift(Some((7, Some(7))), 9, Some(7)), "a hand edit");
        assert!(
            !is_drift(Some((7, Some(7))), 9, Some(9)),
            "rancon's own write"
        );
        assert!(
            is_drift(Some((7, Some(7))), 7, Some(9)),
            "the same digest, but expected moved on: a write of ours undone unseen"
        );
        assert!(
            is_drift(Some((7, None)), 9, None),
            "unknown expectations: any change"
        );
        assert!(
            !is_drift(Some((7, None)), 7, None),
            "unknown expectations, nothing changed"
        );
    }

    #[test]
    fn the_bucket_passes_a_burst_then_one_per_refill() {
        let t0 = Instant::now();
        let mut b = Bucket {
            tokens: BURST,
            at: t0,
        };
        assert_eq!(b.take_at(t0), Duration::ZERO);
        assert_eq!(b.take_at(t0), Duration::ZERO);
        let w = b.take_at(t0);
        assert!(w > REFILL / 2 && w <= REFILL, "{w:?}");
        // A hundred takes at once are spread a refill apart each.
        let w = (0..100).map(|_| b.take_at(t0)).last().unwrap();
        assert!(w >= REFILL * 100, "{w:?}");
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        let mut b = Backoff::default();
        let p: Vec<Duration> = (0..10).map(|_| b.next()).collect();
        assert!(p[0] >= BACKOFF_MIN && p[0] < BACKOFF_MIN * 2);
        assert!(p[1] >= BACKOFF_MIN * 2 && p[2] >= BACKOFF_MIN * 4);
        assert!(p[9] >= BACKOFF_MAX && p[9] <= BACKOFF_MAX.mul_f64(1.1));
        assert_eq!(b.failures(), 10);
    }

    #[test]
    fn expectations_follow_listings_and_writes() {
        let reg = |id: &str, port: u16| Registration {
            id: id.into(),
            name: "web".into(),
            address: "10.0.0.1".into(),
            port,
            tags: ["rancon-x".to_string()].into(),
            meta: Default::default(),
            private: Default::default(),
            health: None,
        };
        let e = Expected::default();
        assert_eq!(e.digest("a"), None);
        e.listed("a", &[reg("w1", 1), reg("w2", 2)]);
        let both = e.digest("a").unwrap();
        e.written("a", "w2", None);
        assert_eq!(e.digest("a"), Some(entry_hash(&reg("w1", 1))));
        e.written("a", "w2", Some(&reg("w2", 2)));
        assert_eq!(e.digest("a"), Some(both));
        e.written("a", "w2", Some(&reg("w2", 3)));
        assert_ne!(e.digest("a"), Some(both), "an edit changes the digest");
        e.unknown("a");
        assert_eq!(e.digest("a"), None);
    }

    #[tokio::test]
    async fn a_place_settles_when_its_last_write_in_flight_ends() {
        let e = Arc::new(Expected::default());
        e.begin("a");
        e.begin("a");
        e.begin("b");
        let waiter = tokio::spawn({
            let e = e.clone();
            async move { e.settle("a").await }
        });
        e.end("a");
        e.end("b");
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "one write to a is still in flight");
        e.end("a");
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("settled")
            .unwrap();
        assert_eq!(e.in_flight("a"), 0);
        e.settle("never-written").await;
    }
}
