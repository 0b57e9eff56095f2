//! The event subscription: one WebSocket per project, its frames applied to the view,
//! reconnected with backoff and jitter.
//!
//! cattle (branch v1.6) sends a `ping` at once and every `api.sub.ping.interval.millis` (5 s),
//! coalesces changes per resource and flushes them once a second, each `resource.change`
//! carrying the resource as it is when sent; it closes a subscription on logout, after 8640
//! pings (12 h) and when more than 100 messages queue. There is no replay: after every
//! (re)connect the daemon is told to list in full.

use super::Inner;
use super::state::After;
use super::view::{Container, Named, Resource, Service};
use crate::watch::{Wake, WakeTx};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest};

/// Between reconnects after a failure: 100 ms doubling up to 30 s, with jitter.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// Between attempts at a subscription the server refused (an old server, a proxy without
/// WebSocket): it is polled meanwhile, so asking again is rarely worth a request.
const REFUSED_MAX: Duration = Duration::from_secs(300);

/// What the subscriptions need beyond the listing's settings.
pub(super) struct WatchSettings {
    /// The rustls settings of the source's `tls` (the HTTP client's own).
    pub tls: Arc<rustls::ClientConfig>,
    /// Connect and upgrade timeout (the source's `timeout`).
    pub timeout: Duration,
    /// A subscription silent this long is dead (`watch_timeout`).
    pub silence: Duration,
}

/// Runs the subscriptions of the projects the last listing found, until aborted.
pub(super) async fn supervise(inner: Arc<Inner>, wake: WakeTx) {
    let mut projects = inner.shared.projects.subscribe();
    let mut tasks: HashMap<String, Task> = HashMap::new();
    loop {
        let want = projects.borrow_and_update().clone();
        tasks.retain(|p, _| want.contains(p));
        for p in want {
            tasks.entry(p.clone()).or_insert_with(|| {
                Task(tokio::spawn(subscription(
                    inner.clone(),
                    p.clone(),
                    wake.clone(),
                )))
            });
        }
        if projects.changed().await.is_err() {
            return;
        }
    }
}

/// A subscription task, aborted when dropped (the supervisor is aborted by a reload).
struct Task(tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Marks a project's subscription up while it lives.
struct Up<'a>(&'a Inner, &'a str);

impl Drop for Up<'_> {
    fn drop(&mut self) {
        self.0.shared.watched.disconnected(self.1);
    }
}

/// Why a connection attempt failed.
enum Failure {
    /// 401/403 on the upgrade.
    Unauthorized(u16),
    /// Any other answer than an upgrade: no WebSocket here.
    Refused(String),
    /// Connection, TLS or timeout.
    Transport(String),
}

/// Why a subscription ended.
enum End {
    /// The daemon loop is gone.
    Stop,
    /// The connection closed, failed or went silent.
    Lost(String),
}

fn backoff(min: Duration, max: Duration) -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
        .build()
}

/// `ws(s)://…/projects/<id>/subscribe?eventNames=resource.change` for a project's API URL.
pub(super) fn subscribe_url(project: &str) -> Option<String> {
    let mut url = reqwest::Url::parse(project).ok()?;
    let scheme = match url.scheme() {
        "http" => "ws",
        "https" => "wss",
        _ => return None,
    };
    url.set_scheme(scheme).ok()?;
    url.path_segments_mut()
        .ok()?
        .pop_if_empty()
        .push("subscribe");
    url.set_query(Some("eventNames=resource.change"));
    Some(url.to_string())
}

/// One project's subscription, reconnected until aborted.
async fn subscription(inner: Arc<Inner>, project: String, wake: WakeTx) {
    let source = inner.rules.source.clone();
    let Some(url) = subscribe_url(&project) else {
        tracing::warn!(source, project = %crate::output::clean(&project), "cannot subscribe to events at this URL; polling");
        return;
    };
    // Delays between attempts: short after a failure, long while the server refuses.
    let schedule = |refused: bool| {
        if refused {
            // The answer will not change in a second: 1 s doubling up to 5 min.
            backoff(Duration::from_secs(1), REFUSED_MAX)
        } else {
            backoff(RETRY_MIN, RETRY_MAX)
        }
    };
    let (mut refused, mut failing, mut refused_logged) = (false, false, false);
    let mut delays = schedule(false);
    loop {
        let outcome = connect(&inner, &url).await;
        let now_refused = matches!(outcome, Err(Failure::Refused(_)));
        if now_refused != refused {
            refused = now_refused;
            delays = schedule(refused);
        }
        match outcome {
            Ok(ws) => {
                let up = Instant::now();
                inner.shared.watched.connected(&project);
                let guard = Up(&inner, &project);
                tracing::info!(source, url, "subscribed to events; listing in full");
                failing = false;
                if wake
                    .send(Wake::Resync {
                        component: source.clone(),
                    })
                    .is_err()
                {
                    return;
                }
                let end = read(&inner, &project, ws, &wake).await;
                drop(guard);
                match end {
                    End::Stop => return,
                    End::Lost(why) => {
                        tracing::warn!(source, url, "event subscription lost ({why}); reconnecting")
                    }
                }
                // A connection that lived ends no failure streak: reconnect soon.
                if up.elapsed() > inner.watch.silence {
                    delays = schedule(false);
                }
            }
            Err(Failure::Refused(why)) => {
                if !std::mem::replace(&mut refused_logged, true) {
                    tracing::warn!(
                        source,
                        url,
                        "event subscription refused ({why}); changes are seen at each interval's listing"
                    );
                } else {
                    tracing::debug!(source, url, "event subscription refused again ({why})");
                }
            }
            Err(Failure::Unauthorized(status)) => {
                let e = crate::error::SourceError::Unauthorized {
                    url: url.clone(),
                    status,
                    access_key: inner.access_key.clone(),
                };
                if !std::mem::replace(&mut failing, true) {
                    tracing::error!(source, error = %e, "event subscription refused");
                } else {
                    tracing::debug!(source, error = %e, "event subscription refused");
                }
            }
            Err(Failure::Transport(why)) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(source, url, error = %why, "cannot subscribe to events; retrying");
                } else {
                    tracing::debug!(source, url, error = %why, "cannot subscribe to events");
                }
            }
        }
        tokio::time::sleep(delays.next().unwrap_or(RETRY_MAX)).await;
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the WebSocket: Basic auth on the upgrade, our TLS settings, frames bounded by
/// `max_response_size`.
async fn connect(inner: &Inner, url: &str) -> Result<Ws, Failure> {
    inner.secret.refresh(&inner.rules.source).await;
    let mut req = url
        .into_client_request()
        .map_err(|e| Failure::Transport(e.to_string()))?;
    if let Some(auth) = inner.basic_auth() {
        req.headers_mut().insert("authorization", auth);
    }
    req.headers_mut().insert(
        "user-agent",
        tungstenite::http::HeaderValue::from_static(crate::http::USER_AGENT),
    );
    let limit = usize::try_from(inner.max_body).unwrap_or(usize::MAX);
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    let connector = if url.starts_with("wss:") {
        tokio_tungstenite::Connector::Rustls(inner.watch.tls.clone())
    } else {
        tokio_tungstenite::Connector::Plain
    };
    let attempt =
        tokio_tungstenite::connect_async_tls_with_config(req, Some(config), true, Some(connector));
    match tokio::time::timeout(inner.watch.timeout, attempt).await {
        Err(_) => Err(Failure::Transport("timed out".into())),
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tungstenite::Error::Http(resp))) => match resp.status().as_u16() {
            s @ (401 | 403) => Err(Failure::Unauthorized(s)),
            s => Err(Failure::Refused(format!("HTTP {s}"))),
        },
        Ok(Err(e @ tungstenite::Error::Protocol(_))) => Err(Failure::Refused(e.to_string())),
        Ok(Err(e)) => Err(Failure::Transport(e.to_string())),
    }
}

/// Reads frames until the connection ends; every frame (a ping too) proves it alive.
async fn read(inner: &Inner, project: &str, mut ws: Ws, wake: &WakeTx) -> End {
    let source = &inner.rules.source;
    let mut warned = false;
    let mut skip = |why: &str| {
        inner.shared.skipped.fetch_add(1, Ordering::Relaxed);
        if !std::mem::replace(&mut warned, true) {
            tracing::warn!(source, "event skipped: {why}");
        } else {
            tracing::debug!(source, "event skipped: {why}");
        }
    };
    loop {
        let msg = match tokio::time::timeout(inner.watch.silence, ws.next()).await {
            Err(_) => {
                return End::Lost(format!(
                    "no frame for {}",
                    humantime::format_duration(inner.watch.silence)
                ));
            }
            Ok(None) => return End::Lost("closed".into()),
            Ok(Some(Err(e))) => {
                if matches!(e, tungstenite::Error::Capacity(_)) {
                    skip("larger than max_response_size");
                }
                return End::Lost(e.to_string());
            }
            Ok(Some(Ok(m))) => m,
        };
        let received = Instant::now();
        let text = match &msg {
            Message::Text(t) => t.as_str(),
            Message::Close(_) => return End::Lost("closed by the server".into()),
            Message::Binary(_) => {
                skip("a binary frame");
                continue;
            }
            _ => continue,
        };
        let change = match parse(text, inner.rules.v1) {
            Parsed::Ignore => continue,
            Parsed::Logout => return End::Lost("logout".into()),
            Parsed::Bad(why) => {
                skip(&why);
                continue;
            }
            Parsed::Change(c) => c,
        };
        let kind = change.kind();
        let wakeup = match inner.shared.watched.apply(&inner.rules, project, change) {
            After::Quiet => continue,
            After::Wake => Wake::Source {
                source: source.clone(),
                kind: kind.into(),
                received,
            },
            After::Resync => Wake::Resync {
                component: source.clone(),
            },
        };
        if wake.send(wakeup).is_err() {
            return End::Stop;
        }
    }
}

/// A frame, read.
enum Parsed {
    /// A ping, an event of no interest, a blank frame (cattle sends some).
    Ignore,
    /// The server ends the subscription.
    Logout,
    /// A resource that changed.
    Change(Resource),
    /// Not what cattle sends: skipped and counted.
    Bad(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    resource_type: Option<String>,
    #[serde(default)]
    resource_id: Option<String>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(default, borrow)]
    resource: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Ident {
    #[serde(default)]
    id: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    base_type: Option<String>,
}

/// Reads one text frame. A `resource.change` counts only when its resource is one a listing
/// reads (a service of any kind, a stack, a container), its `resourceType` and `resourceId`
/// name that resource (cattle sets both from it: `ResourceChangeEventProcessor`), and it
/// decodes as a listing's item would.
fn parse(text: &str, v1: bool) -> Parsed {
    if text.trim().is_empty() {
        return Parsed::Ignore;
    }
    let ev: Event = match serde_json::from_str(text) {
        Ok(e) => e,
        Err(e) => return Parsed::Bad(format!("not an event: {e}")),
    };
    match ev.name.as_deref() {
        Some("resource.change") => {}
        Some("logout") => return Parsed::Logout,
        _ => return Parsed::Ignore,
    }
    let Some(resource) = ev
        .data
        .and_then(|d| serde_json::from_str::<Data>(d.get()).ok())
        .and_then(|d| d.resource)
    else {
        return Parsed::Bad("resource.change without data.resource".into());
    };
    let ident: Ident = match serde_json::from_str(resource.get()) {
        Ok(i) => i,
        Err(e) => return Parsed::Bad(format!("data.resource: {e}")),
    };
    let kind = ident.kind.clone().unwrap_or_default();
    let base = ident.base_type.as_deref().unwrap_or(&kind);
    let stack = if v1 { "environment" } else { "stack" };
    let what = match (base, kind.as_str()) {
        ("service", _) => "service",
        (b, _) if b == stack => "stack",
        (_, "container") => "container",
        _ => return Parsed::Ignore,
    };
    if ev.resource_type.as_deref() != Some(kind.as_str()) {
        return Parsed::Bad(format!(
            "{what} event whose resourceType is not its resource's type"
        ));
    }
    if ident.id.is_none() || ev.resource_id != ident.id {
        return Parsed::Bad(format!(
            "{what} event whose resourceId is not its resource's id"
        ));
    }
    let decoded = match what {
        "service" => {
            serde_json::from_str::<Service>(resource.get()).map(|s| Resource::Service(Box::new(s)))
        }
        "stack" => serde_json::from_str::<Named>(resource.get()).map(Resource::Stack),
        _ => serde_json::from_str::<Container>(resource.get()).map(Resource::Container),
    };
    match decoded {
        Ok(r) => Parsed::Change(r),
        Err(e) => Parsed::Bad(format!("{what} {}: {e}", clean_id(ident.id.as_deref()))),
    }
}

fn clean_id(id: Option<&str>) -> String {
    crate::output::clean(&id.unwrap_or("?").chars().take(64).collect::<String>()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_urls() {
        assert_eq!(
            subscribe_url("http://r:8080/v2-beta/projects/1a5").as_deref(),
            Some("ws://r:8080/v2-beta/projects/1a5/subscribe?eventNames=resource.change")
        );
        assert_eq!(
            subscribe_url("https://r/v1/projects/1a5/").as_deref(),
            Some("wss://r/v1/projects/1a5/subscribe?eventNames=resource.change")
        );
        assert_eq!(subscribe_url("ftp://r/x"), None);
    }

    #[test]
    fn frames_that_are_not_what_cattle_sends_are_bad_never_a_change() {
        let svc =
            r#"{"id":"1s1","type":"service","baseType":"service","name":"web","state":"active"}"#;
        let ok = format!(
            r#"{{"name":"resource.change","resourceType":"service","resourceId":"1s1","data":{{"resource":{svc}}}}}"#
        );
        assert!(matches!(
            parse(&ok, false),
            Parsed::Change(Resource::Service(_))
        ));
        for bad in [
            "not json".to_string(),
            r#"{"name":"resource.change","resourceType":"service","resourceId":"1s1"}"#.into(),
            ok.replace(r#""resourceId":"1s1""#, r#""resourceId":"1s2""#),
            ok.replace(r#""resourceType":"service""#, r#""resourceType":"stack""#),
            ok.replace(r#""name":"web""#, r#""name":7"#),
        ] {
            assert!(matches!(parse(&bad, false), Parsed::Bad(_)), "{bad}");
        }
        assert!(matches!(parse(" \n", false), Parsed::Ignore));
        assert!(matches!(parse(r#"{"name":"ping"}"#, false), Parsed::Ignore));
        assert!(matches!(
            parse(r#"{"name":"logout"}"#, false),
            Parsed::Logout
        ));
    }
}
