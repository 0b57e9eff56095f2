//! The Engine API through bollard: a client made on first use (the socket may appear after
//! rancon starts), the API version negotiated per connection so older daemons answer, and the
//! few calls the source makes, each bounded by the timeout and mapped to `SourceError`.

use super::config::{DockerSourceConfig, Target};
use crate::error::{BuildError, SourceError};
use bollard::Docker;
use bollard::models::{ContainerInspectResponse, ContainerSummary, EventMessage};
use bollard::query_parameters::{EventsOptions, InspectContainerOptions, ListContainersOptions};
use futures::Stream;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};

/// The events the source follows. Containers: `start`, `die`, `stop`, `destroy` (Podman:
/// `remove`), `pause`, `unpause`, `rename` and `health_status` (moby filters the last by
/// prefix, `health_status: healthy` included: `daemon/events/filter.go` `matchEvent`).
/// Networks: `connect`, `disconnect` (a container's internal address).
pub(super) const EVENTS: [&str; 11] = [
    "start",
    "die",
    "stop",
    "destroy",
    "remove",
    "pause",
    "unpause",
    "rename",
    "health_status",
    "connect",
    "disconnect",
];

/// One Engine.
pub(super) struct Client {
    /// The configured URL, for messages.
    url: String,
    target: Target,
    tls: Option<[PathBuf; 3]>,
    timeout: Duration,
    docker: Mutex<Option<Docker>>,
    negotiated: AtomicBool,
}

impl Client {
    pub fn new(cfg: &DockerSourceConfig) -> Result<Self, BuildError> {
        let tls = cfg.tls_files();
        let target =
            Target::parse(cfg.effective_url(), tls.is_some()).map_err(BuildError::Invalid)?;
        if tls.is_some() {
            // bollard's client-certificate resolver asks for the process's provider; rustls
            // is built with ring alone. Already installed is fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        Ok(Self {
            url: cfg.effective_url().trim_end_matches('/').to_string(),
            target,
            tls,
            timeout: cfg.timeout,
            docker: Mutex::new(None),
            negotiated: AtomicBool::new(false),
        })
    }

    fn transport(&self, what: &str, message: String) -> SourceError {
        SourceError::Transport {
            url: format!("{}{what}", self.url),
            message,
        }
    }

    /// bollard's error as rancon's: the daemon's answer with its status, or the transport.
    fn error(&self, what: &str, e: bollard::errors::Error) -> SourceError {
        match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code,
                message,
            } => SourceError::Http {
                url: format!("{}{what}", self.url),
                status: status_code,
                message: crate::output::clean(&message.chars().take(300).collect::<String>())
                    .into_owned(),
            },
            other => self.transport(what, other.to_string()),
        }
    }

    /// The client, made on first use.
    fn docker(&self) -> Result<Docker, SourceError> {
        let mut slot = self.docker.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = slot.as_ref() {
            return Ok(d.clone());
        }
        let secs = self.timeout.as_secs().max(1);
        let version = bollard::API_DEFAULT_VERSION;
        let made = match (&self.target, &self.tls) {
            (Target::Unix(path), _) => Docker::connect_with_unix(path, secs, version),
            (Target::Tcp(addr), None) => Docker::connect_with_http(addr, secs, version),
            (Target::Tcp(addr), Some([ca, cert, key])) => {
                Docker::connect_with_ssl(addr, key, cert, ca, secs, version)
            }
        };
        let d = made.map_err(|e| self.transport("", e.to_string()))?;
        *slot = Some(d.clone());
        Ok(d)
    }

    /// Runs one call within the timeout (bollard's own bounds only the answer's headers).
    async fn bounded<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, SourceError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(r) => r.map_err(|e| self.error(what, e)),
            Err(_) => Err(self.transport(
                what,
                format!(
                    "no answer within {}",
                    humantime::format_duration(self.timeout)
                ),
            )),
        }
    }

    /// Asks the daemon for its API version and uses it when older than bollard's (an Engine
    /// refuses a newer client's requests with 400). Done once per connection of the watch,
    /// and before the first listing.
    pub async fn negotiate(&self, force: bool) -> Result<(), SourceError> {
        if !force && self.negotiated.load(Ordering::Relaxed) {
            return Ok(());
        }
        let d = self.docker()?;
        self.bounded("/version", d.negotiate_version()).await?;
        self.negotiated.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// The daemon's name (its host's name: the host identity in ids) and its clock as
    /// `<seconds>.<nanoseconds>` (what `/events?since=` takes), when it says.
    pub async fn info(&self) -> Result<(String, Option<String>), SourceError> {
        let d = self.docker()?;
        let info = self.bounded("/info", d.info()).await?;
        let name = info
            .name
            .filter(|n| !n.is_empty())
            .ok_or_else(|| SourceError::Decode {
                what: format!("{}/info", self.url),
                message: "the daemon gives no Name".into(),
            })?;
        let since = info
            .system_time
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| format!("{}.{:09}", d.as_secs(), d.subsec_nanos()));
        Ok((name, since))
    }

    /// The running containers (one request).
    pub async fn list(&self) -> Result<Vec<ContainerSummary>, SourceError> {
        let d = self.docker()?;
        let opts = ListContainersOptions {
            all: false,
            ..Default::default()
        };
        self.bounded("/containers/json", d.list_containers(Some(opts)))
            .await
    }

    /// One container, or `None` when the daemon no longer knows it.
    pub async fn inspect(&self, id: &str) -> Result<Option<ContainerInspectResponse>, SourceError> {
        let d = self.docker()?;
        let what = format!("/containers/{id}/json");
        match self
            .bounded(
                &what,
                d.inspect_container(id, None::<InspectContainerOptions>),
            )
            .await
        {
            Ok(c) => Ok(Some(c)),
            Err(SourceError::Http { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the daemon answers.
    pub async fn ping(&self) -> Result<(), SourceError> {
        let d = self.docker()?;
        self.bounded("/_ping", d.ping()).await.map(drop)
    }

    /// The event stream of the events the source follows, from `since` (the daemon replays
    /// the ones it still holds, so none between that instant and the subscription is lost).
    pub fn events(
        &self,
        since: Option<String>,
    ) -> Result<impl Stream<Item = Result<EventMessage, bollard::errors::Error>> + use<>, SourceError>
    {
        let d = self.docker()?;
        let mut filters = HashMap::new();
        filters.insert(
            "type".to_string(),
            vec!["container".to_string(), "network".to_string()],
        );
        filters.insert(
            "event".to_string(),
            EVENTS.iter().map(|e| e.to_string()).collect(),
        );
        let opts = EventsOptions {
            since,
            until: None,
            filters: Some(filters),
        };
        Ok(d.events(Some(opts)))
    }

    /// `<url>/events`, for messages.
    pub fn events_url(&self) -> String {
        format!("{}/events", self.url)
    }
}
