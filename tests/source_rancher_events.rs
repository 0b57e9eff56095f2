//! The rancher source's event subscription against the Rancher double's WebSocket
//! (tests/support/rancher_events.rs): events keep `current()` up to date without listings,
//! every (re)connect asks for a full listing, and nothing a server sends can break the view.

#[allow(dead_code)]
mod support;

use rancon::build::Config;
use rancon::source::Source;
use rancon::source::rancher::{RancherSource, RancherSourceConfig};
use rancon::watch::{Wake, WakeRx};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::rancher::{Project, Rancher, service};

const KEY: (&str, &str) = ("ak", "sk-secret");

fn cfg(url: String, secret: &str) -> RancherSourceConfig {
    toml::from_str::<RancherSourceConfig>(&format!(
        "url = {url:?}\naccess_key = \"ak\"\nsecret_key = {secret:?}\ntimeout = \"2s\"\nwatch_timeout = \"1s\""
    ))
    .unwrap()
}

fn project(n: usize) -> Project {
    Project {
        id: "1a5".into(),
        name: "Default".into(),
        stacks: vec![("1st5".into(), "teststack".into())],
        services: (0..n)
            .map(|i| {
                service(
                    &format!("1s{i}"),
                    &format!("svc{i}"),
                    "1st5",
                    &[("rancon", "")],
                    &[("10.1.0.1", 10000 + i as u16)],
                )
            })
            .collect(),
        containers: vec![],
    }
}

/// A double with pings every 200 ms and a flush every 50 ms, and a watching source.
async fn setup(n: usize) -> (Rancher, RancherSource, WakeRx) {
    let r = Rancher::start(vec![project(n)], Some(KEY)).await;
    r.events()
        .set_periods(Duration::from_millis(200), Duration::from_millis(50));
    let src = RancherSource::new(
        "rancher",
        &cfg(r.url("/v2-beta/projects/1a5"), KEY.1),
        &Config::default().common(),
    )
    .unwrap();
    let (tx, rx) = rancon::watch::channel();
    std::mem::forget(src.watch(tx).expect("watch is on by default"));
    (r, src, rx)
}

/// The next wake-up `want` accepts, within 10 s.
async fn next(rx: &mut WakeRx, want: impl Fn(&Wake) -> bool) -> Wake {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let w = rx.recv().await.expect("the watch ended");
            if want(&w) {
                return w;
            }
        }
    })
    .await
    .expect("no such wake-up within 10 s")
}

fn resync(w: &Wake) -> bool {
    matches!(w, Wake::Resync { component } if component == "rancher")
}

fn event(w: &Wake) -> bool {
    matches!(w, Wake::Source { source, .. } if source == "rancher")
}

/// Connected and listed, as the daemon does after a `Resync`.
async fn synced(src: &RancherSource, rx: &mut WakeRx) {
    next(rx, resync).await;
    src.fetch().await.unwrap();
    assert!(
        src.current().is_some(),
        "a listing after connecting is a view"
    );
}

fn names(view: Option<(Vec<rancon::model::Endpoint>, Vec<rancon::error::Skip>)>) -> Vec<String> {
    let (eps, skipped) = view.expect("a current view");
    assert!(skipped.is_empty(), "{skipped:?}");
    let mut v: Vec<String> = eps
        .iter()
        .map(|e| format!("{}@{}", e.prop("name"), e.prop("port")))
        .collect();
    v.sort();
    v
}

async fn until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never: {what}");
}

#[tokio::test]
async fn events_update_the_view_without_a_listing() {
    let (r, src, mut rx) = setup(3).await;
    synced(&src, &mut rx).await;
    let listed = names(src.fetch().await.ok());
    assert_eq!(names(src.current()), listed);
    let requests = r.requests();

    r.edit_service("1a5", "1s0", |s| {
        s["launchConfig"]["labels"]["rancon.name"] = json!("renamed")
    });
    let w = next(&mut rx, event).await;
    assert!(
        matches!(&w, Wake::Source { kind, .. } if kind == "service"),
        "{w:?}"
    );
    assert_eq!(
        names(src.current()),
        ["renamed@10000", "svc1@10001", "svc2@10002"]
    );

    // A removal arrives as a state that says gone.
    r.edit_service("1a5", "1s1", |s| s["state"] = json!("removed"));
    next(&mut rx, event).await;
    assert_eq!(names(src.current()), ["renamed@10000", "svc2@10002"]);

    // A new service (its stack's fan-out event changes nothing).
    r.add_service(
        "1a5",
        service("1s7", "new", "1st5", &[("rancon", "")], &[("10.1.0.2", 7)]),
    );
    next(&mut rx, event).await;
    assert_eq!(
        names(src.current()),
        ["new@7", "renamed@10000", "svc2@10002"]
    );
    assert_eq!(r.requests(), requests, "events cost no listing");
}

/// A change whose event arrives while a listing runs, after the listing read the service, is
/// re-applied to the listing's view.
#[tokio::test]
async fn an_event_received_during_a_listing_is_kept() {
    let (r, src, mut rx) = setup(2).await;
    synced(&src, &mut rx).await;
    // What one listing asks (the double reads a collection's rows when the request arrives).
    let asked = r.requests();
    src.fetch().await.unwrap();
    let per_listing = r.requests() - asked;
    *r.state.answer_delay.lock().unwrap() = Duration::from_millis(600);
    let asked = r.requests();
    let (listed, ()) = tokio::join!(src.fetch(), async {
        // Every request of the listing has arrived (its rows are read), and no answer is back.
        until("the listing's requests", || {
            r.requests() >= asked + per_listing
        })
        .await;
        r.edit_service("1a5", "1s0", |s| {
            s["launchConfig"]["labels"]["rancon.name"] = json!("during")
        });
    });
    assert_eq!(
        names(listed.ok()),
        ["svc0@10000", "svc1@10001"],
        "the listing read the rows before the change"
    );
    assert_eq!(names(src.current()), ["during@10000", "svc1@10001"]);
}

#[tokio::test]
async fn a_change_made_while_disconnected_is_applied_after_the_reconnect() {
    let (r, src, mut rx) = setup(2).await;
    synced(&src, &mut rx).await;
    let events = r.events();
    events.refuse.store(true, Ordering::SeqCst);
    events.drop_connections();
    until("the source sees the drop", || src.current().is_none()).await;
    r.edit_service("1a5", "1s0", |s| {
        s["launchConfig"]["labels"]["rancon.name"] = json!("while-down")
    });
    // The flush passes with nobody subscribed: that event is lost for good.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(src.current().is_none(), "no view while disconnected");
    events.refuse.store(false, Ordering::SeqCst);
    next(&mut rx, resync).await;
    assert!(
        src.current().is_none(),
        "after a reconnect the view waits for a listing"
    );
    src.fetch().await.unwrap();
    assert_eq!(names(src.current()), ["svc1@10001", "while-down@10000"]);
}

#[tokio::test]
async fn pings_keep_a_quiet_subscription_and_silence_ends_it() {
    let (r, src, mut rx) = setup(1).await;
    synced(&src, &mut rx).await;
    let events = r.events();
    // Pings every 200 ms, watch_timeout 1 s: nothing but pings for 2.5 s is alive. Counted
    // in pings, not only in time: a loaded machine may send fewer than the period says.
    let (pings, t) = (events.pings.load(Ordering::SeqCst), Instant::now());
    until("ten pings and 2.5 s", || {
        events.pings.load(Ordering::SeqCst) >= pings + 10
            && t.elapsed() >= Duration::from_millis(2500)
    })
    .await;
    assert_eq!(events.subscribes.load(Ordering::SeqCst), 1);
    assert!(src.current().is_some());
    // The server goes silent without closing: after watch_timeout the source reconnects.
    events.mute.store(true, Ordering::SeqCst);
    next(&mut rx, resync).await;
    assert!(events.subscribes.load(Ordering::SeqCst) >= 2);
    events.mute.store(false, Ordering::SeqCst);
}

#[tokio::test]
async fn a_backpressure_close_is_recovered_by_a_listing() {
    let (r, src, mut rx) = setup(150).await;
    synced(&src, &mut rx).await;
    let events = r.events();
    // A link that does not drain: cattle closes the subscription past 100 queued messages.
    events.stall.store(true, Ordering::SeqCst);
    for i in 0..150 {
        r.edit_service("1a5", &format!("1s{i}"), |s| {
            s["launchConfig"]["labels"]["rancon.name"] = json!(format!("edited{i}"))
        });
    }
    until("the double closes the subscription", || {
        events.backpressure_closes.load(Ordering::SeqCst) >= 1
    })
    .await;
    events.stall.store(false, Ordering::SeqCst);
    next(&mut rx, resync).await;
    src.fetch().await.unwrap();
    let view = names(src.current());
    assert_eq!(view.len(), 150);
    assert!(view.iter().all(|n| n.starts_with("edited")), "{view:?}");
}

/// Log lines written while `f` runs (this thread's tasks only).
fn capture() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    #[derive(Clone)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Arc::new(Mutex::new(Vec::new()));
    let writer = Buf(buf.clone());
    let sub = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    (buf, tracing::subscriber::set_default(sub))
}

fn text(buf: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
}

#[tokio::test]
async fn a_refused_subscription_is_logged_once_and_the_source_is_polled() {
    let (logs, _guard) = capture();
    let r = Rancher::start(vec![project(2)], Some(KEY)).await;
    r.events().refuse.store(true, Ordering::SeqCst);
    let src = RancherSource::new(
        "rancher",
        &cfg(r.url("/v2-beta/projects/1a5"), KEY.1),
        &Config::default().common(),
    )
    .unwrap();
    let (tx, mut rx) = rancon::watch::channel();
    let _task = src.watch(tx).unwrap();
    until("a second attempt", || {
        r.events().attempts.load(Ordering::SeqCst) >= 2
    })
    .await;
    let (eps, _) = src.fetch().await.unwrap();
    assert_eq!(eps.len(), 2, "listings work as before");
    assert!(
        src.current().is_none(),
        "without a subscription every round lists"
    );
    assert!(rx.try_recv().is_err(), "no wake-up without a subscription");
    let log = text(&logs);
    assert_eq!(
        log.matches("event subscription refused (HTTP 404)").count(),
        1,
        "{log}"
    );
}

#[tokio::test]
async fn bad_keys_on_the_upgrade_are_an_auth_error_without_the_secret() {
    let (logs, _guard) = capture();
    let r = Rancher::start(vec![project(1)], Some(KEY)).await;
    let src = RancherSource::new(
        "rancher",
        &cfg(r.url("/v2-beta/projects/1a5"), "wrong-secret"),
        &Config::default().common(),
    )
    .unwrap();
    let (tx, _rx) = rancon::watch::channel();
    let _task = src.watch(tx).unwrap();
    until("an attempt", || {
        r.events().attempts.load(Ordering::SeqCst) >= 1
    })
    .await;
    until("the log line", || {
        text(&logs).contains("credentials rejected")
    })
    .await;
    let log = text(&logs);
    assert!(
        log.contains(
            "subscribe?eventNames=resource.change: credentials rejected (401) for access key \"ak\""
        ),
        "{log}"
    );
    assert!(!log.contains("wrong-secret"), "{log}");
    assert_eq!(r.events().subscribes.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_hostile_frame_changes_nothing_and_is_counted() {
    let r = Rancher::start(vec![project(3)], Some(KEY)).await;
    r.events()
        .set_periods(Duration::from_millis(200), Duration::from_millis(50));
    let mut common = Config::default().common();
    common.max_response_size = 64 * 1024;
    let src = RancherSource::new(
        "rancher",
        &cfg(r.url("/v2-beta/projects/1a5"), KEY.1),
        &common,
    )
    .unwrap();
    let (tx, mut rx) = rancon::watch::channel();
    let _task = src.watch(tx).unwrap();
    synced(&src, &mut rx).await;
    let before = names(src.current());
    let svc = |id: &str, extra: serde_json::Value| {
        let mut s = service(
            id,
            "svc1",
            "1st5",
            &[("rancon", "")],
            &[("10.1.0.1", 10001)],
        );
        for (k, v) in extra.as_object().unwrap() {
            s[k] = v.clone();
        }
        s
    };
    let frame = |rtype: &str, rid: &str, resource: serde_json::Value| {
        json!({"name": "resource.change", "resourceType": rtype, "resourceId": rid,
               "data": {"resource": resource}})
        .to_string()
    };
    let hostile = [
        "not json \u{0}\u{1b}[31m".to_string(),
        "[".repeat(10_000),
        json!({"name": "resource.change", "resourceType": "service", "resourceId": "1s1"})
            .to_string(),
        // Another service's removal under 1s1's id.
        frame("service", "1s1", svc("1s2", json!({"state": "removed"}))),
        // A removal whose resourceType lies.
        frame("stack", "1s1", svc("1s1", json!({"state": "removed"}))),
        // A service that does not decode (a listing would skip it, not drop it).
        frame(
            "service",
            "1s1",
            svc("1s1", json!({"name": 7, "state": "removed"})),
        ),
        frame("service", "1s1", svc("1s1", json!({"launchConfig": "x"}))),
    ];
    for h in &hostile {
        r.events().inject("1a5", h);
    }
    until("every frame is counted", || {
        src.events_skipped() == hostile.len() as u64
    })
    .await;
    assert_eq!(names(src.current()), before, "the view is unchanged");
    while let Ok(w) = rx.try_recv() {
        assert!(!event(&w) && !resync(&w), "no wake-up: {w:?}");
    }
    assert_eq!(r.events().subscribes.load(Ordering::SeqCst), 1);
    // A frame over max_response_size ends the connection: counted, then a full listing.
    r.events()
        .inject("1a5", &format!("\"{}\"", "x".repeat(100 * 1024)));
    next(&mut rx, resync).await;
    assert_eq!(src.events_skipped(), hostile.len() as u64 + 1);
    src.fetch().await.unwrap();
    assert_eq!(names(src.current()), before);
}
