//! The health and metrics endpoint: `/`, `/health`, `/ready`, `/metrics`.

use crate::metrics::Metrics;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the loop tells the endpoint.
pub struct Status {
    started: Instant,
    last_completed: Mutex<Option<Instant>>,
    ready: AtomicBool,
    /// Follows the running configuration (a reload can change `interval`).
    hangup_after: Mutex<Duration>,
    /// The metrics served at `/metrics`.
    pub metrics: Metrics,
}

impl Status {
    /// A fresh status; `/health` fails when no round completes for `hangup_after`.
    pub fn new(hangup_after: Duration) -> Self {
        Self {
            started: Instant::now(),
            last_completed: Mutex::new(None),
            ready: AtomicBool::new(false),
            hangup_after: Mutex::new(hangup_after),
            metrics: Metrics::new(),
        }
    }

    /// A round completed (failed or not); `ok` rounds make the process ready.
    pub fn round_completed(&self, ok: bool) {
        *self.last_completed.lock().expect("status lock") = Some(Instant::now());
        if ok {
            self.ready.store(true, Ordering::SeqCst);
        }
    }

    /// `/health` fails after this long without a completed round from now on.
    pub fn set_hangup_after(&self, d: Duration) {
        *self.hangup_after.lock().expect("status lock") = d;
    }

    /// How long `/health` waits for a completed round.
    pub fn hangup_after(&self) -> Duration {
        *self.hangup_after.lock().expect("status lock")
    }

    /// Time since the last completed round (or since start, before the first).
    fn silence(&self) -> Duration {
        self.last_completed
            .lock()
            .expect("status lock")
            .unwrap_or(self.started)
            .elapsed()
    }
}

/// Binds `listen` now (so a taken port is reported at start) and serves in the background.
pub async fn spawn(listen: SocketAddr, status: Arc<Status>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route(
            "/",
            get(|| async { concat!("rancon ", env!("CARGO_PKG_VERSION"), "\n") }),
        )
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(status);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "http endpoint stopped");
        }
    });
    tracing::info!(%addr, "serving /health, /ready and /metrics");
    Ok(addr)
}

async fn health(State(s): State<Arc<Status>>) -> impl IntoResponse {
    let (silence, hangup_after) = (s.silence(), s.hangup_after());
    if silence <= hangup_after {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no round completed for {}s (hangup_after {}s)\n",
                silence.as_secs(),
                hangup_after.as_secs()
            ),
        )
    }
}

async fn ready(State(s): State<Arc<Status>>) -> impl IntoResponse {
    if s.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no successful round yet\n")
    }
}

async fn metrics(State(s): State<Arc<Status>>) -> impl IntoResponse {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}
