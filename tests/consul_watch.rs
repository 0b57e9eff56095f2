//! The consul backend's drift-repair watch against the Consul double's blocking queries: it
//! wakes on a hand deletion or edit of an owned registration, not on foreign churn or its own
//! writes; its query loop is rate-limited, resets a backwards index, never sends index 0 after
//! an answer, backs off on errors and survives hostile answers.

#[allow(dead_code)]
mod support;

use rancon::engine::{Pipeline, RoundOptions};
use rancon::watch::{Wake, WakeRx};
use std::time::{Duration, Instant};
use support::consul::{Consul, Svc};
use support::consul_setup::Setup;

/// Waits until `f` holds, for at most 15 s.
async fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The watch's queries of `node` so far.
fn queries(c: &Consul, node: &str) -> Vec<String> {
    c.reads_matching(&format!("/v1/catalog/node-services/{node}?"))
}

/// Waits until the watch of `node` has a blocking query in flight (one that carries an index).
async fn blocking(c: &Consul, node: &str) {
    let seen = queries(c, node).len();
    until("a blocking query", || {
        queries(c, node)
            .iter()
            .skip(seen.saturating_sub(1))
            .any(|q| q.contains("index="))
    })
    .await;
}

/// The next wake-up within 10 s.
async fn wake(rx: &mut WakeRx) -> Wake {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no wake-up within 10 s")
        .expect("channel open")
}

/// Wake-ups already sent.
fn drain(rx: &mut WakeRx) -> usize {
    let mut n = 0;
    while rx.try_recv().is_ok() {
        n += 1;
    }
    n
}

/// One agent, two services registered by a first round, and the backend's watch running.
struct Fixture {
    c: Consul,
    _s: Setup,
    p: Pipeline,
    rx: WakeRx,
    task: tokio::task::JoinHandle<()>,
    node: String,
}

async fn fixture(extra_backend: &str) -> Fixture {
    let c = Consul::start(1).await;
    let s = Setup::new();
    s.services(&[
        ("web", "127.0.0.2", 8080, &[("rancon.tag", "v1")]),
        ("db", "127.0.0.2", 5432, &[]),
    ]);
    let p = s.pipeline("", &format!("url = {:?}\n{extra_backend}", c.url(0)));
    let r = p.round(RoundOptions::default()).await;
    assert!(!r.failed(), "{r:?}");
    let (tx, rx) = rancon::watch::channel();
    let task = p.backends[0].watch(tx).expect("watch is on by default");
    let node = format!("node-{}", c.ips[0]);
    blocking(&c, &node).await;
    Fixture {
        c,
        _s: s,
        p,
        rx,
        task,
        node,
    }
}

fn client() -> reqwest::Client {
    rancon::http::client(Duration::from_secs(10), &Default::default()).unwrap()
}

async fn agent_put(c: &Consul, path: &str, body: Option<serde_json::Value>) {
    let mut req = client().put(format!("{}{path}", c.url(0)));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
}

#[tokio::test]
async fn a_hand_deletion_through_the_agent_api_wakes_the_watch_and_the_round_repairs_it() {
    let mut f = fixture("").await;
    let id = "web-127-0-0-2-8080";
    agent_put(&f.c, &format!("/v1/agent/service/deregister/{id}"), None).await;
    let w = wake(&mut f.rx).await;
    assert!(
        matches!(&w, Wake::Backend { backend, .. } if backend == "consul"),
        "{w:?}"
    );
    assert!(!f.c.agent_services(0).contains_key(id));
    let before = f.c.requests().1;
    let r = f.p.round(RoundOptions::default()).await;
    assert!(!r.failed(), "{r:?}");
    assert!(f.c.agent_services(0).contains_key(id), "re-registered");
    assert_eq!(f.c.requests().1 - before, 1, "one write: the repair");
    // The repair is rancon's own write: no further wake-up for it.
    blocking(&f.c, &f.node).await;
    assert_eq!(drain(&mut f.rx), 0);
}

#[tokio::test]
async fn a_hand_edit_of_an_owned_registration_wakes_the_watch_and_the_round_repairs_it() {
    let mut f = fixture("").await;
    let id = "web-127-0-0-2-8080";
    let mut edited = f.c.agent_services(0)[id].clone();
    edited.tags.retain(|t| t != "v1");
    edited.tags.push("hand-made".into());
    agent_put(
        &f.c,
        "/v1/agent/service/register",
        Some(
            serde_json::json!({"ID": id, "Name": edited.name, "Tags": edited.tags,
            "Address": edited.address, "Port": edited.port, "Meta": edited.meta}),
        ),
    )
    .await;
    wake(&mut f.rx).await;
    let r = f.p.round(RoundOptions::default()).await;
    assert!(!r.failed(), "{r:?}");
    let tags = &f.c.agent_services(0)[id].tags;
    assert!(tags.contains(&"v1".to_string()) && !tags.contains(&"hand-made".to_string()));
}

#[tokio::test]
async fn identical_re_registers_and_rancons_own_writes_do_not_wake() {
    let mut f = fixture("").await;
    let id = "web-127-0-0-2-8080";
    let same = f.c.agent_services(0)[id].clone();
    let raft = f.c.cluster.raft.last();
    agent_put(
        &f.c,
        "/v1/agent/service/register",
        Some(
            serde_json::json!({"ID": id, "Name": same.name, "Tags": same.tags,
            "Address": same.address, "Port": same.port, "Meta": same.meta}),
        ),
    )
    .await;
    assert_eq!(
        f.c.cluster.raft.last(),
        raft,
        "an identical re-register is no change"
    );
    // rancon's own write (a new service) moves the node's index and answers the watch, which
    // finds what the backend expects.
    f._s.services(&[
        ("web", "127.0.0.2", 8080, &[("rancon.tag", "v1")]),
        ("db", "127.0.0.2", 5432, &[]),
        ("api", "127.0.0.2", 9000, &[]),
    ]);
    let seen = queries(&f.c, &f.node).len();
    let r = f.p.round(RoundOptions::default()).await;
    assert!(!r.failed(), "{r:?}");
    until("the watch saw the write", || {
        queries(&f.c, &f.node).len() > seen
    })
    .await;
    blocking(&f.c, &f.node).await;
    assert_eq!(drain(&mut f.rx), 0, "no wake-up for rancon's own write");
}

#[tokio::test]
async fn foreign_churn_on_the_watched_node_wakes_nothing_and_the_query_loop_is_rate_limited() {
    let mut f = fixture("").await;
    let seen = queries(&f.c, &f.node).len();
    let t = Instant::now();
    for i in 0..200u16 {
        f.c.insert(
            &f.node,
            Svc {
                id: format!("theirs-{i}"),
                name: "theirs".into(),
                tags: vec!["other-tool".into()],
                meta: Default::default(),
                address: "127.0.0.2".into(),
                port: 10_000 + i,
            },
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = t.elapsed().as_secs_f64();
    let made = queries(&f.c, &f.node).len() - seen;
    // 200 index moves; the bucket lets through its burst of 2, then one per second.
    assert!(
        (made as f64) <= 3.0 + elapsed.ceil(),
        "{made} queries in {elapsed:.1}s of churn"
    );
    assert!(made >= 1, "the churn did answer the blocking query");
    assert_eq!(drain(&mut f.rx), 0, "foreign churn is not drift");

    // Someone editing one of ours over and over: woken, but not more than the bucket allows.
    let id = "web-127-0-0-2-8080";
    let t = Instant::now();
    for i in 0..100u16 {
        let mut edited = f.c.agent_services(0)[id].clone();
        edited.port = 20_000 + i;
        f.c.insert(&f.node, edited);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = t.elapsed().as_secs_f64();
    wake(&mut f.rx).await;
    let woken = 1 + drain(&mut f.rx);
    assert!(
        (woken as f64) <= 3.0 + elapsed.ceil(),
        "{woken} wake-ups in {elapsed:.1}s"
    );
    assert!(!f.task.is_finished());
}

#[tokio::test]
async fn the_index_starts_over_when_it_goes_backwards() {
    let mut f = fixture("").await;
    let seen = queries(&f.c, &f.node).len();
    // A snapshot restore: the blocked query returns with an index below the one it sent.
    f.c.cluster.raft.restore(2);
    // `seen` counts the query in flight: the next one is the first after the restore.
    until("a query after the restore", || {
        queries(&f.c, &f.node).len() > seen
    })
    .await;
    let after = &queries(&f.c, &f.node)[seen];
    assert!(
        !after.contains("index="),
        "a non-blocking read starts over: {after}"
    );
    blocking(&f.c, &f.node).await;
    // Changes after the restore carry small indexes, and still wake the watch.
    agent_put(&f.c, "/v1/agent/service/deregister/db-127-0-0-2-5432", None).await;
    assert!(f.c.cluster.raft.last() < 10);
    wake(&mut f.rx).await;
}

#[tokio::test]
async fn an_index_of_zero_is_never_sent_back() {
    // Catalog mode before anything is registered: the node does not exist, its index is the
    // node-extinction index, 0, which older servers sent as such.
    let c = Consul::start(1).await;
    c.cluster
        .raft
        .legacy_zero_index
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let s = Setup::new();
    s.services(&[]);
    let p = s.pipeline(
        "",
        &format!(
            "url = {:?}\nmode = \"catalog\"\nnode = \"sync-node\"",
            c.url(0)
        ),
    );
    let (tx, _rx) = rancon::watch::channel();
    let _task = p.backends[0].watch(tx).unwrap();
    until("two queries", || queries(&c, "sync-node").len() >= 2).await;
    let q = queries(&c, "sync-node");
    assert!(!q[0].contains("index="), "{q:?}");
    assert!(
        q[1].contains("index=1&") || q[1].ends_with("index=1"),
        "{q:?}"
    );
    // It blocks: no stream of non-blocking reads.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(queries(&c, "sync-node").len(), 2);
}

#[tokio::test]
async fn a_failing_agent_is_asked_again_with_growing_pauses_and_then_watched_again() {
    let mut f = fixture("").await;
    f.c.cluster
        .fail_reads
        .lock()
        .unwrap()
        .insert(f.node.clone());
    let seen = queries(&f.c, &f.node).len();
    // A change answers the query in flight; the ones after it fail.
    f.c.insert(
        &f.node,
        Svc {
            id: "theirs".into(),
            name: "theirs".into(),
            tags: vec![],
            meta: Default::default(),
            address: "127.0.0.2".into(),
            port: 1,
        },
    );
    until("a failed query", || queries(&f.c, &f.node).len() > seen).await;
    let first = queries(&f.c, &f.node).len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let failed = queries(&f.c, &f.node).len() - first;
    // Pauses of 1 s, 2 s, 4 s: two more in 5 s (the bucket alone would allow five).
    assert!(failed <= 3, "{failed} failed queries in 5 s");
    assert_eq!(drain(&mut f.rx), 0, "a failure is not drift");
    f.c.cluster.fail_reads.lock().unwrap().clear();
    // Back: the first answer after the failures shows what changed meanwhile.
    agent_put(&f.c, "/v1/agent/service/deregister/db-127-0-0-2-5432", None).await;
    tokio::time::timeout(Duration::from_secs(20), f.rx.recv())
        .await
        .expect("watched again after the failures")
        .unwrap();
}

#[tokio::test]
async fn with_acls_the_watch_sends_the_token_and_needs_nothing_else() {
    let c = Consul::start_with(1, Some("s3cr3t-token"), None).await;
    let s = Setup::new();
    s.services(&[("web", "127.0.0.2", 8080, &[])]);
    let p = s.pipeline(
        "",
        &format!("url = {:?}\ntoken = \"s3cr3t-token\"", c.url(0)),
    );
    assert!(!p.round(RoundOptions::default()).await.failed());
    let (tx, mut rx) = rancon::watch::channel();
    let _task = p.backends[0].watch(tx).unwrap();
    let node = format!("node-{}", c.ips[0]);
    blocking(&c, &node).await;
    agent_put_token(&c, "/v1/agent/service/deregister/web-127-0-0-2-8080").await;
    wake(&mut rx).await;
}

async fn agent_put_token(c: &Consul, path: &str) {
    let resp = client()
        .put(format!("{}{path}", c.url(0)))
        .header("X-Consul-Token", "s3cr3t-token")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
}

#[tokio::test]
async fn watch_false_starts_nothing() {
    let c = Consul::start(1).await;
    let s = Setup::new();
    s.services(&[]);
    let p = s.pipeline("", &format!("url = {:?}\nwatch = false", c.url(0)));
    let (tx, _rx) = rancon::watch::channel();
    assert!(p.backends[0].watch(tx).is_none());
}

#[tokio::test]
async fn hostile_answers_fail_the_query_never_the_task() {
    use axum::http::header::HeaderMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (selves, hits) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (s2, h2) = (selves.clone(), hits.clone());
    let app = axum::Router::new()
        .route(
            "/v1/agent/self",
            axum::routing::get(move || {
                // A node name with a newline first (it would end up in a path and in logs).
                let name = if s2.fetch_add(1, Ordering::SeqCst) == 0 {
                    "bad\nname"
                } else {
                    "n1"
                };
                async move { axum::Json(serde_json::json!({"Config": {"NodeName": name}})) }
            }),
        )
        .route(
            "/v1/catalog/node-services/{node}",
            axum::routing::get(move || {
                let n = h2.fetch_add(1, Ordering::SeqCst);
                async move {
                    let mut h = HeaderMap::new();
                    let body = match n % 3 {
                        // No X-Consul-Index at all.
                        0 => r#"{"Node": null, "Services": null}"#.to_string(),
                        // An index that is no number, and a body that is no JSON.
                        1 => {
                            h.insert("x-consul-index", "18446744073709551616".parse().unwrap());
                            "{\"Services\": [".to_string()
                        }
                        // Longer than max_response_size.
                        _ => {
                            h.insert("x-consul-index", "5".parse().unwrap());
                            format!("{{\"Services\": [], \"x\": \"{}\"}}", "a".repeat(200_000))
                        }
                    };
                    (h, body)
                }
            }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let s = Setup::new();
    s.services(&[]);
    let p = s.pipeline("max_response_size = 65536", &format!("url = {url:?}"));
    let (tx, mut rx) = rancon::watch::channel();
    let task = p.backends[0].watch(tx).unwrap();
    until("three hostile answers", || hits.load(Ordering::SeqCst) >= 3).await;
    assert!(
        selves.load(Ordering::SeqCst) >= 2,
        "a bad node name is asked again"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!task.is_finished(), "the watch task survives");
    assert_eq!(drain(&mut rx), 0);
}
