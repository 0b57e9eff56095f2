//! The Rancher double's event subscription (wire-formats.md A.8): the
//! `/{ver}/projects/{pid}/subscribe?eventNames=resource.change` WebSocket, with cattle's rules
//! (rancher/cattle, branch v1.6), each cited where it is encoded:
//!
//! - a `ping` at once, then every `api.sub.ping.interval.millis` (5 s), at most
//!   `api.sub.max.pings` (8640, so 12 h) before the subscription ends;
//! - changes coalesced per resource and flushed once a second, each frame carrying the
//!   resource as it is at flush time (a purged one sends nothing);
//! - a service's change also emits its stack;
//! - `{"name":"logout"}` then close on a disconnect event;
//! - closed when more than `subscribe.max.queued.messages` (100) wait for a slow client.
//!
//! Switches for tests: refuse subscriptions, drop every connection, mute (send nothing, not
//! even pings), stall (a link that does not drain).

use super::rancher::{Inner, authorized, error, service_json, stack_json};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};

/// cattle `code/packaging/app-config/src/main/resources/META-INF/cattle/api-server/
/// defaults.properties`: `subscribe.max.queued.messages=100`, read by
/// `code/framework/api-pub-sub-jetty/…/jetty/WebSocketMessageWriter.java` `write`: when more
/// than this many messages wait (sent, not yet acknowledged by the write callback), the write
/// throws and `NonBlockingSubscriptionHandler` unsubscribes and closes the socket.
pub const MAX_QUEUED: usize = 100;

/// Subscriptions, their switches and counters.
pub struct Hub {
    /// Period between pings. cattle `api-server/defaults.properties`:
    /// `api.sub.ping.interval.millis=5000`.
    pub ping: Mutex<Duration>,
    /// Pings before the server ends a subscription. cattle `api-server/defaults.properties`:
    /// `api.sub.max.pings=8640` (12 h of pings; `NonBlockingSubscriptionHandler.schedulePing`
    /// retries that many times, then unsubscribes).
    pub max_pings: AtomicUsize,
    /// Period of the coalesced flush. cattle `iaas-api/defaults.properties`:
    /// `task.resource.change.publish.schedule=1` (seconds), the schedule of
    /// `ResourceChangeEventListenerImpl.run`.
    pub flush: Mutex<Duration>,
    /// Answer subscriptions with 404 (an old server, a proxy that does not route them).
    pub refuse: AtomicBool,
    /// Send nothing at all, not even pings, while keeping connections open.
    pub mute: AtomicBool,
    /// Write nothing to the sockets: messages queue as for a client that does not read.
    pub stall: AtomicBool,
    /// Subscription requests, refused ones too.
    pub attempts: AtomicUsize,
    /// Subscriptions upgraded.
    pub subscribes: AtomicUsize,
    /// Subscriptions closed because more than `MAX_QUEUED` messages waited.
    pub backpressure_closes: AtomicUsize,
    /// Frames written (pings included).
    pub frames: AtomicUsize,
    /// Pings written.
    pub pings: AtomicUsize,
    /// `(resourceId, when its frame was handed to the socket)` of every change sent.
    pub sent: Mutex<Vec<(String, Instant)>>,
    /// Changed resources waiting for the flush: (project, type, id), each once.
    pending: Mutex<BTreeSet<(String, String, String)>>,
    subs: Mutex<Vec<Arc<Sub>>>,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            ping: Mutex::new(Duration::from_secs(5)),
            max_pings: AtomicUsize::new(8640),
            flush: Mutex::new(Duration::from_secs(1)),
            refuse: AtomicBool::new(false),
            mute: AtomicBool::new(false),
            stall: AtomicBool::new(false),
            attempts: AtomicUsize::new(0),
            subscribes: AtomicUsize::new(0),
            backpressure_closes: AtomicUsize::new(0),
            frames: AtomicUsize::new(0),
            pings: AtomicUsize::new(0),
            sent: Mutex::new(Vec::new()),
            pending: Mutex::new(BTreeSet::new()),
            subs: Mutex::new(Vec::new()),
        }
    }
}

impl Hub {
    /// Sets the ping and flush periods.
    pub fn set_periods(&self, ping: Duration, flush: Duration) {
        *self.ping.lock().unwrap() = ping;
        *self.flush.lock().unwrap() = flush;
    }

    /// Subscriptions open now.
    pub fn open(&self) -> usize {
        self.subs.lock().unwrap().len()
    }

    /// Closes every subscription at once, without a close frame (a network failure).
    pub fn drop_connections(&self) {
        for s in self.subs.lock().unwrap().iter() {
            s.kill();
        }
    }

    /// Sends `{"name":"logout"}` on every subscription of `pid`, then closes them.
    /// cattle `NonBlockingSubscriptionHandler.write`: on the `disconnect` event it writes
    /// `LOGOUT_MESSAGE` and unsubscribes.
    pub fn logout(&self, pid: &str) {
        for s in self.subs.lock().unwrap().iter().filter(|s| s.pid == pid) {
            let _ = s.tx.send(Out::Logout);
        }
    }

    /// Sends `text` as one frame on every subscription of `pid` (what a hostile server or a
    /// broken proxy could send).
    pub fn inject(&self, pid: &str, text: &str) {
        for s in self.subs.lock().unwrap().iter().filter(|s| s.pid == pid) {
            s.deliver(
                self,
                Out::Frame {
                    text: text.to_string(),
                    change: None,
                    ping: false,
                },
            );
        }
    }

    /// Records a change of a resource for the next flush. cattle
    /// `code/iaas/api-logic/…/change/impl/ResourceChangeEventListenerImpl.java` `add`: the
    /// changed `(type, id)` pairs go into a map, so many changes before a flush are one event.
    pub fn changed(&self, pid: &str, kind: &str, id: &str) {
        self.pending
            .lock()
            .unwrap()
            .insert((pid.into(), kind.into(), id.into()));
    }
}

enum Out {
    /// `change`: the resource id of a `resource.change`.
    Frame {
        text: String,
        change: Option<String>,
        ping: bool,
    },
    Logout,
}

/// One subscription.
struct Sub {
    pid: String,
    v1: bool,
    /// Asked for `resource.change` (`eventNames`).
    changes: bool,
    tx: mpsc::UnboundedSender<Out>,
    queued: AtomicUsize,
    killed: AtomicBool,
    kill: Notify,
}

impl Sub {
    fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.kill.notify_one();
    }

    /// `WebSocketMessageWriter.write`: more than `MAX_QUEUED` unacknowledged messages →
    /// IOException → the subscription is closed.
    fn deliver(&self, hub: &Hub, out: Out) {
        if hub.mute.load(Ordering::SeqCst) || self.killed.load(Ordering::SeqCst) {
            return;
        }
        if self.queued.load(Ordering::SeqCst) > MAX_QUEUED {
            hub.backpressure_closes.fetch_add(1, Ordering::SeqCst);
            self.kill();
            return;
        }
        self.queued.fetch_add(1, Ordering::SeqCst);
        let _ = self.tx.send(out);
    }
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

fn uuid() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// An event as cattle's `EventVO` serializes (every field, nulls included).
fn event(name: &str, kind: Option<&str>, id: Option<&str>, data: Value) -> String {
    json!({"id": uuid(), "name": name, "previousIds": null, "previousNames": null, "replyTo": null,
           "resourceId": id, "resourceType": kind, "publisher": null, "transitioning": null,
           "transitioningMessage": null, "transitioningInternalMessage": null,
           "transitioningProgress": null, "data": data, "time": now_ms()})
    .to_string()
}

fn ping() -> Out {
    // cattle `code/framework/events/…/framework/event/Ping.java`: name `ping`, data PingData.
    Out::Frame {
        text: event("ping", None, None, json!({"options": {}})),
        change: None,
        ping: true,
    }
}

/// GET /{ver}/projects/{pid}/subscribe: the upgrade.
pub async fn subscribe(
    State(st): State<Arc<Inner>>,
    Path((ver, pid)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let hub = &st.events;
    hub.attempts.fetch_add(1, Ordering::SeqCst);
    if ver != "v1" && ver != "v2-beta" {
        return error(404, "NotFound");
    }
    // The API's authentication runs before any handler: bad keys never reach the upgrade.
    if !authorized(&st, &headers) {
        return error(401, "Unauthorized");
    }
    if hub.refuse.load(Ordering::SeqCst) {
        return error(404, "NotFound");
    }
    if !st.projects.lock().unwrap().iter().any(|p| p.id == pid) {
        return error(404, "NotFound");
    }
    // cattle `SubscribeManager.getEventNames`: `eventNames` conditions, repeatable.
    let changes = q
        .unwrap_or_default()
        .split('&')
        .any(|kv| kv == "eventNames=resource.change");
    // cattle `JettyWebSocketSubcriptionHandler.getMessageWriter`: without `Upgrade: websocket`
    // no writer, so no subscription.
    let Ok(ws) = ws else {
        return error(404, "NotFound");
    };
    hub.subscribes.fetch_add(1, Ordering::SeqCst);
    let v1 = ver == "v1";
    ws.on_upgrade(move |socket| run(st, pid, v1, changes, socket))
        .into_response()
}

/// One subscription: a ping at once, then every period; the flusher's frames; closing rules.
async fn run(st: Arc<Inner>, pid: String, v1: bool, changes: bool, mut socket: WebSocket) {
    let hub = &st.events;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sub = Arc::new(Sub {
        pid,
        v1,
        changes,
        tx,
        queued: AtomicUsize::new(0),
        killed: AtomicBool::new(false),
        kill: Notify::new(),
    });
    hub.subs.lock().unwrap().push(sub.clone());
    // cattle `NonBlockingSubscriptionHandler.subscribe`: `write(new Ping(), …)` at once, then
    // `schedulePing`: one ping every `api.sub.ping.interval.millis`, `api.sub.max.pings` times.
    sub.deliver(hub, ping());
    let period = *hub.ping.lock().unwrap();
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut pings = 0;
    loop {
        let stalled = hub.stall.load(Ordering::SeqCst);
        tokio::select! {
            _ = sub.kill.notified() => break,
            _ = ticks.tick() => {
                pings += 1;
                if pings > hub.max_pings.load(Ordering::SeqCst) {
                    break;
                }
                sub.deliver(hub, ping());
            }
            _ = tokio::time::sleep(Duration::from_millis(10)), if stalled => {}
            out = rx.recv(), if !stalled => {
                let Some(out) = out else { break };
                let text = match out {
                    Out::Logout => {
                        let _ = socket.send(Message::Text(json!({"name": "logout"}).to_string().into())).await;
                        let _ = socket.send(Message::Close(None)).await;
                        break;
                    }
                    Out::Frame { text, change, ping } => {
                        if let Some(id) = change {
                            hub.sent.lock().unwrap().push((id, Instant::now()));
                        }
                        if ping {
                            hub.pings.fetch_add(1, Ordering::SeqCst);
                        }
                        text
                    }
                };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
                hub.frames.fetch_add(1, Ordering::SeqCst);
                // `WebSocketWriteCallback.writeSuccess`: one fewer waiting.
                sub.queued.fetch_sub(1, Ordering::SeqCst);
            }
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    hub.subs.lock().unwrap().retain(|s| !Arc::ptr_eq(s, &sub));
}

/// Publishes the pending changes every flush period, as cattle's `resource.change.publish`
/// task does; ends with the double.
pub async fn flusher(st: Weak<Inner>) {
    loop {
        let period = match st.upgrade() {
            Some(st) => *st.events.flush.lock().unwrap(),
            None => return,
        };
        tokio::time::sleep(period).await;
        let Some(st) = st.upgrade() else { return };
        let pending = std::mem::take(&mut *st.events.pending.lock().unwrap());
        let subs = st.events.subs.lock().unwrap().clone();
        for (pid, kind, id) in pending {
            for sub in subs.iter().filter(|s| s.pid == pid && s.changes) {
                // cattle `code/iaas/api-logic/…/change/impl/ResourceChangeEventProcessor.java`
                // `processEvent`: the resource is read again when the event is sent (the
                // state in between is lost), a missing one sends nothing, and the event's
                // `resourceType` becomes the resource's own type.
                let Some(resource) = resource(&st, &pid, &kind, &id, sub.v1) else {
                    continue;
                };
                let rtype = resource["type"].as_str().unwrap_or(&kind).to_string();
                let text = event(
                    "resource.change",
                    Some(&rtype),
                    Some(&id),
                    json!({"resource": resource}),
                );
                sub.deliver(
                    &st.events,
                    Out::Frame {
                        text,
                        change: Some(id.clone()),
                        ping: false,
                    },
                );
            }
        }
    }
}

/// A resource as the API shows it now, or `None` when it is gone.
fn resource(st: &Inner, pid: &str, kind: &str, id: &str, v1: bool) -> Option<Value> {
    let projects = st.projects.lock().unwrap();
    let p = projects.iter().find(|p| p.id == pid)?;
    match kind {
        "stack" => p
            .stacks
            .iter()
            .find(|(sid, _)| sid == id)
            .map(|(sid, name)| stack_json(v1, pid, sid, name)),
        "service" => p
            .services
            .iter()
            .find(|s| s["id"] == id)
            .map(|s| service_json(v1, s)),
        "container" => p.containers.iter().find(|c| c["id"] == id).cloned(),
        _ => None,
    }
}
