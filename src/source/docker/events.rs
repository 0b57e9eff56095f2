//! The watch: the Engine's event stream applied to the view, reconnected with backoff and
//! jitter, and declared dead when the daemon stops answering.
//!
//! The daemon keeps its last 256 events and skips a listener that has not taken an event
//! within 100 ms (moby `daemon/events/events.go`: `eventsLimit`, the publisher's timeout), so
//! events can be lost without the stream ending: the full listing after every (re)connect and
//! every interval repairs that. An event says only which container to look at: the watch
//! inspects it and applies what it is now, so events replayed, repeated (Podman's
//! `health_status` after every check) or out of order do no harm.

use super::Inner;
use super::container;
use super::state::{self, After, Change};
use crate::watch::{Wake, WakeTx};
use bollard::models::{EventMessage, EventMessageTypeEnum};
use futures::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Between reconnects after a failure: 100 ms doubling up to 30 s, with jitter.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// A stream silent this long is checked: the daemon is asked for `/_ping`; no answer, and the
/// stream is taken for dead (a hung daemon, a half-open connection).
const SILENCE: Duration = Duration::from_secs(30);
/// Events read but not yet applied; more means the watch cannot keep up: it reconnects and
/// the listing repairs what it missed.
const QUEUE: usize = 4096;

/// Why following the stream ended.
enum End {
    /// The daemon loop is gone.
    Stop,
    /// The stream ended, failed, stalled, or the view cannot be kept.
    Lost(String),
}

fn backoff() -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(RETRY_MIN)
        .with_max_delay(RETRY_MAX)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Marks the stream down when following it ends, however it ends (an abort included).
struct Up<'a>(&'a Inner);

impl Drop for Up<'_> {
    fn drop(&mut self) {
        self.0.shared.disconnected(state::STREAM);
    }
}

/// Follows the daemon's events until aborted.
pub(super) async fn run(inner: Arc<Inner>, wake: WakeTx) {
    let source = inner.rules.source.clone();
    let url = inner.client.events_url();
    let mut delays = backoff();
    let mut failing = false;
    loop {
        match connect(&inner).await {
            Ok(stream) => {
                let up = Instant::now();
                let guard = Up(&inner);
                inner.shared.connected(state::STREAM);
                tracing::info!(
                    source,
                    url,
                    "following the daemon's events; listing in full"
                );
                if failing {
                    tracing::info!(source, url, "the daemon answers again");
                }
                failing = false;
                if wake
                    .send(Wake::Resync {
                        component: source.clone(),
                    })
                    .is_err()
                {
                    return;
                }
                let end = follow(&inner, stream, &wake).await;
                drop(guard);
                match end {
                    End::Stop => return,
                    End::Lost(why) => {
                        tracing::warn!(source, url, "event stream lost ({why}); reconnecting")
                    }
                }
                // A stream that lived ends any failure streak: reconnect soon.
                if up.elapsed() > SILENCE {
                    delays = backoff();
                }
            }
            Err(e) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(source, error = %e, "cannot follow the daemon's events; retrying");
                } else {
                    tracing::debug!(source, error = %e, "cannot follow the daemon's events");
                }
            }
        }
        tokio::time::sleep(delays.next().unwrap_or(RETRY_MAX)).await;
    }
}

type Events = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<EventMessage, bollard::errors::Error>> + Send>,
>;

/// Negotiates the version, learns the daemon's name and clock, and subscribes from that
/// instant: the listing that follows the `Resync` starts later, so no change between the two
/// is lost even though the daemon subscribes a listener only after sending the answer's
/// headers (moby `api/server/router/system/system_routes.go` `getEvents`).
async fn connect(inner: &Inner) -> Result<Events, crate::error::SourceError> {
    inner.client.negotiate(true).await?;
    let (host_id, since) = inner.client.info().await?;
    inner.set_host_id(host_id);
    Ok(Box::pin(inner.client.events(since)?))
}

/// What one event asks for: look at this container again.
struct Look {
    id: String,
    /// The event's action without its detail (`health_status`), for metrics.
    kind: String,
    /// A health event's new health, when it says it.
    health: Option<String>,
    received: Instant,
}

/// An id as the daemon makes them: it goes into a URL path, so nothing else is used. It
/// starts with a letter or digit, as names must (moby `daemon/names/names.go`
/// `RestrictedNameChars`): `.` or `..` would be a path step, not a container.
pub(super) fn plausible_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

/// The container an event is about, or `None` for one the source does not follow.
fn look(ev: EventMessage, received: Instant) -> Option<Look> {
    let action = ev.action?;
    let actor = ev.actor?;
    let (kind, detail) = match action.split_once(':') {
        Some((k, d)) => (k.trim(), Some(d.trim())),
        None => (action.as_str(), None),
    };
    if !super::client::EVENTS.contains(&kind) {
        return None;
    }
    let attrs = actor.attributes.unwrap_or_default();
    let id = match ev.typ {
        Some(EventMessageTypeEnum::CONTAINER) => actor.id?,
        // A network event names the container in its attributes.
        Some(EventMessageTypeEnum::NETWORK) if matches!(kind, "connect" | "disconnect") => {
            attrs.get("container")?.clone()
        }
        _ => return None,
    };
    if !plausible_id(&id) {
        tracing::debug!(id = %crate::output::clean(&id), "event about an implausible id; ignored");
        return None;
    }
    // Docker: `health_status: healthy`; Podman: `health_status` with the state as attribute.
    let health = (kind == "health_status")
        .then(|| {
            detail
                .map(str::to_string)
                .or_else(|| attrs.get("health_status").cloned())
        })
        .flatten()
        .filter(|h| matches!(h.as_str(), "healthy" | "unhealthy" | "starting"));
    Some(Look {
        id,
        kind: kind.to_string(),
        health,
        received,
    })
}

/// Reads the stream into a queue, so the daemon never waits on rancon's inspects.
fn reader(mut stream: Events) -> (tokio::sync::mpsc::Receiver<Result<Look, String>>, Task) {
    let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
    let task = tokio::spawn(async move {
        while let Some(item) = stream.next().await {
            let msg = match item {
                Ok(ev) => match look(ev, Instant::now()) {
                    Some(l) => Ok(l),
                    None => continue,
                },
                Err(e) => Err(e.to_string()),
            };
            let last = msg.is_err();
            if tx.try_send(msg).is_err() {
                let _ = tx.try_send(Err(format!("more than {QUEUE} events waiting")));
                return;
            }
            if last {
                return;
            }
        }
        let _ = tx.send(Err("the daemon ended the stream".into())).await;
    });
    (rx, Task(task))
}

/// A task aborted when dropped.
struct Task(tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why the reader stopped: the error it queued, or an overflow (it could not queue one).
fn closed(rx: &mut tokio::sync::mpsc::Receiver<Result<Look, String>>) -> String {
    while let Ok(msg) = rx.try_recv() {
        if let Err(why) = msg {
            return why;
        }
    }
    format!("more than {QUEUE} events waiting")
}

/// Applies events until the stream ends or stalls.
async fn follow(inner: &Inner, stream: Events, wake: &WakeTx) -> End {
    let (mut rx, _reader) = reader(stream);
    let source = &inner.rules.source;
    loop {
        let first = match tokio::time::timeout(SILENCE, rx.recv()).await {
            Ok(Some(Ok(l))) => l,
            Ok(Some(Err(why))) => return End::Lost(why),
            Ok(None) => return End::Lost("the stream reader ended".into()),
            Err(_) => match inner.client.ping().await {
                Ok(()) => continue,
                Err(e) => return End::Lost(format!("silent for {SILENCE:?} and {e}")),
            },
        };
        // Everything already waiting, each container once, in order of arrival.
        let mut batch = vec![first];
        let mut failed = None;
        while let Ok(msg) = rx.try_recv() {
            match msg {
                Ok(l) => match batch.iter_mut().find(|b| b.id == l.id) {
                    Some(b) => {
                        b.kind = l.kind;
                        b.health = l.health;
                    }
                    None => batch.push(l),
                },
                Err(why) => {
                    failed = Some(why);
                    break;
                }
            }
        }
        for l in batch {
            // The reader stopped (the stream ended, failed or overflowed): events are being
            // lost, so the view must go now, not after inspecting what is still queued.
            if rx.is_closed() {
                return End::Lost(failed.take().unwrap_or_else(|| closed(&mut rx)));
            }
            // A health event repeating what the view holds changes nothing (Podman sends one
            // after every check).
            if l.health.is_some() && inner.shared.read(|v| v.health(&l.id)).flatten() == l.health {
                continue;
            }
            let change = match inner.client.inspect(&l.id).await {
                Ok(Some(i)) => match container::from_inspect(i) {
                    Ok(Some(c)) => Change::Running(Box::new(c)),
                    Ok(None) => Change::Stopped(l.id.clone()),
                    Err(why) => {
                        return End::Lost(format!(
                            "container {} has an unexpected shape: {why}",
                            l.id
                        ));
                    }
                },
                Ok(None) => Change::Stopped(l.id.clone()),
                Err(e) => return End::Lost(e.to_string()),
            };
            if let Change::Running(c) = &change {
                inner.remember(c);
            } else {
                inner.forget(&l.id);
            }
            match inner.shared.apply(&inner.rules, state::STREAM, change) {
                After::Quiet => {}
                After::Wake => {
                    tracing::debug!(source, container = %l.id, event = %l.kind, "container changed");
                    let w = Wake::Source {
                        source: source.clone(),
                        kind: l.kind.clone(),
                        received: l.received,
                    };
                    if wake.send(w).is_err() {
                        return End::Stop;
                    }
                }
                After::Resync => return End::Lost("too many changes since the listing".into()),
            }
        }
        if let Some(why) = failed {
            return End::Lost(why);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;
    use std::collections::HashMap;

    fn event(
        typ: EventMessageTypeEnum,
        action: &str,
        id: &str,
        attrs: &[(&str, &str)],
    ) -> EventMessage {
        EventMessage {
            typ: Some(typ),
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some(id.into()),
                attributes: Some(
                    attrs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<HashMap<_, _>>(),
                ),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn events_name_the_container_to_look_at() {
        let now = Instant::now();
        let c = EventMessageTypeEnum::CONTAINER;
        let l = look(event(c, "health_status: unhealthy", "abc", &[]), now).unwrap();
        assert_eq!(
            (l.kind.as_str(), l.health.as_deref()),
            ("health_status", Some("unhealthy"))
        );
        // Podman: the state as an attribute.
        let l = look(
            event(c, "health_status", "abc", &[("health_status", "healthy")]),
            now,
        )
        .unwrap();
        assert_eq!(l.health.as_deref(), Some("healthy"));
        assert_eq!(
            look(event(c, "remove", "abc", &[]), now).unwrap().kind,
            "remove"
        );
        assert!(look(event(c, "exec_start: sh", "abc", &[]), now).is_none());
        assert!(
            look(event(c, "start", "../../x?y", &[]), now).is_none(),
            "ids go into URLs"
        );
        for step in ["..", ".", "-x", ".hidden"] {
            assert!(
                look(event(c, "destroy", step, &[]), now).is_none(),
                "{step}"
            );
        }
        let n = EventMessageTypeEnum::NETWORK;
        let l = look(event(n, "connect", "net1", &[("container", "abc")]), now).unwrap();
        assert_eq!(l.id, "abc");
        assert!(look(event(n, "destroy", "net1", &[]), now).is_none());
        assert!(
            look(
                event(EventMessageTypeEnum::IMAGE, "remove", "img", &[]),
                now
            )
            .is_none()
        );
    }
}
