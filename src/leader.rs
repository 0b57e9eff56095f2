//! Leader election with a Consul session lock (Consul's leader-election pattern): the replica
//! whose session holds `key` writes; the others plan without writing and keep trying.
//!
//! A session has a TTL and `Behavior = release`: if the leader dies its session expires, the
//! lock is released, and nobody may take it for `lock_delay`, so writes the old leader had in
//! flight end before another replica starts. A graceful stop releases the lock first (no delay).

use crate::backend::BackendConfig;
use crate::backend::consul::ConsulBackendConfig;
use crate::build::Config;
use crate::config::secret::SecretSource;
use crate::config::{Collector, LeaderConfig};
use crate::consul::{Api, go_duration, is_not_found, url as wire_url};
use crate::engine::WriteGate;
use crate::error::{BackendError, BuildError};
use crate::template::Template;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// The checks of `[leader]` that need the backends: it names a consul backend whose url is one
/// agent (or `leader.url` is set).
pub fn check(cfg: &Config, c: &mut Collector<'_>) {
    let Some(l) = &cfg.leader else { return };
    match cfg.backends.get(&l.backend) {
        Some(BackendConfig::Consul(_)) if l.url.is_some() => {}
        Some(BackendConfig::Consul(k)) if Template::parse(&k.url).is_ok_and(|t| t.is_literal()) => {
        }
        Some(BackendConfig::Consul(_)) => c.add(
            "leader.backend",
            format!(
                "backend {:?} has placeholders in its url; set leader.url to one agent",
                l.backend
            ),
        ),
        None if c.unloaded(&format!("backends.{}", l.backend)) => {}
        _ => c.add(
            "leader.backend",
            format!(
                "names {:?}, which is not a configured consul backend",
                l.backend
            ),
        ),
    }
}

/// One replica's side of the election.
pub struct Leader {
    api: Api,
    base: String,
    key: String,
    ttl: Duration,
    lock_delay: Duration,
    name: String,
    /// True while this replica holds the lock; the round engine writes only then.
    pub gate: Arc<WriteGate>,
    /// Whether the last step held the lock (for logging changes only).
    held: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    session: Option<String>,
    last_confirmed: Option<Instant>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SessionCreate<'a> {
    name: &'a str,
    #[serde(rename = "TTL")]
    ttl: String,
    behavior: &'a str,
    lock_delay: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Created {
    #[serde(rename = "ID")]
    id: String,
}

impl Leader {
    /// Builds the election from its config and the consul backend it names.
    pub fn new(
        cfg: &LeaderConfig,
        consul: &ConsulBackendConfig,
        owner: &str,
        max_body: u64,
    ) -> Result<Self, BuildError> {
        let url = cfg.url.as_deref().unwrap_or(&consul.url);
        let (http, base) = crate::consul::client(url, consul.timeout, &consul.tls)?;
        Ok(Self {
            api: Api::new(
                "leader",
                http,
                None,
                SecretSource::new(consul.token.clone(), consul.token_file.clone()),
                max_body,
            )
            .with_auth(consul.http_auth.clone())
            .with_namespace(consul.namespace.clone()),
            base,
            key: cfg
                .key
                .clone()
                .unwrap_or_else(|| format!("rancon/leader/{owner}"))
                .trim_matches('/')
                .to_string(),
            ttl: cfg.ttl,
            lock_delay: cfg.lock_delay,
            name: format!("rancon-{owner}"),
            gate: Arc::new(WriteGate::default()),
            held: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        })
    }

    fn url(&self, parts: &[&str]) -> String {
        let mut segs: Vec<&str> = vec!["v1"];
        segs.extend_from_slice(parts);
        wire_url(&self.base, &segs)
    }

    fn kv_url(&self) -> String {
        let mut segs = vec!["v1", "kv"];
        segs.extend(self.key.split('/'));
        wire_url(&self.base, &segs)
    }

    /// One election step: keep (or create) the session, then take or confirm the lock.
    pub async fn tick(&self) {
        self.api.refresh_token().await;
        let mut st = self.state.lock().await;
        // The session counts from before the request: the deadline never outlives it.
        let asked = Instant::now();
        match self.step(&mut st).await {
            Ok(held) => {
                if held {
                    st.last_confirmed = Some(asked);
                }
                self.set(held.then(|| asked + self.ttl));
            }
            Err(e) => {
                // Unconfirmed for a whole TTL: the session may be gone; stop writing.
                let stale = st.last_confirmed.is_none_or(|t| t.elapsed() >= self.ttl);
                tracing::warn!(error = %e, "leader election: cannot reach Consul");
                if stale {
                    self.set(None);
                }
            }
        }
    }

    async fn step(&self, st: &mut State) -> Result<bool, BackendError> {
        if let Some(id) = st.session.clone() {
            let renewed = self
                .api
                .put::<()>(
                    "renew session",
                    &self.url(&["session", "renew", &id]),
                    &[],
                    None,
                )
                .await;
            if let Err(e) = renewed {
                if is_not_found(&e) {
                    tracing::warn!("leader election: session expired; starting a new one");
                    st.session = None;
                    self.set(None);
                } else {
                    return Err(e);
                }
            }
        }
        let id = match st.session.clone() {
            Some(id) => id,
            None => {
                let body = SessionCreate {
                    name: &self.name,
                    ttl: go_duration(self.ttl),
                    behavior: "release",
                    lock_delay: go_duration(self.lock_delay),
                };
                let created: Created = self
                    .api
                    .put_for(
                        "create session",
                        &self.url(&["session", "create"]),
                        &[],
                        Some(&body),
                    )
                    .await?;
                st.session = Some(created.id.clone());
                created.id
            }
        };
        // Acquiring a lock the session already holds answers true: this also confirms it.
        self.api
            .put_for::<bool, ()>("acquire lock", &self.kv_url(), &[("acquire", &id)], None)
            .await
    }

    /// Opens the write gate until `deadline` (or closes it), logging changes of leadership.
    fn set(&self, deadline: Option<Instant>) {
        let was = self.held.swap(deadline.is_some(), Ordering::SeqCst);
        self.gate.hold_until(deadline);
        match (was, deadline.is_some()) {
            (false, true) => {
                tracing::info!(key = %self.key, "leader election: acquired leadership; writing")
            }
            (true, false) => {
                tracing::warn!(key = %self.key, "leader election: lost leadership; writes stopped")
            }
            _ => {}
        }
    }

    /// How often to tick: a third of the TTL, so a renewal is never late.
    pub fn period(&self) -> Duration {
        self.ttl / 3
    }

    /// Releases the lock (no lock delay for the next leader) and destroys the session.
    pub async fn release(&self) {
        let mut st = self.state.lock().await;
        self.set(None);
        if let Some(id) = st.session.take() {
            let _ = self
                .api
                .put_for::<bool, ()>("release lock", &self.kv_url(), &[("release", &id)], None)
                .await;
            let _ = self
                .api
                .put_for::<bool, ()>(
                    "destroy session",
                    &self.url(&["session", "destroy", &id]),
                    &[],
                    None,
                )
                .await;
            tracing::info!(key = %self.key, "leader election: released");
        }
    }
}
