//! The daemon with a watched Rancher source, against the Rancher double's subscription and the
//! Consul double: with `interval` at ten minutes, only events can bring a change in time; an
//! event never deregisters on its own word.

#[allow(dead_code)]
mod support;

use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::consul::Consul;
use support::process::{Child, free_port, rounds, rounds_reach};
use support::rancher::{Project, Rancher, service};

fn project() -> Project {
    Project {
        id: "1a5".into(),
        name: "prod".into(),
        stacks: vec![("1st5".into(), "shop".into())],
        services: (0..3)
            .map(|i| {
                service(
                    &format!("1s{i}"),
                    &format!("svc{i}"),
                    "1st5",
                    &[("rancon.tags", "web")],
                    &[("127.0.0.2", 8000 + i as u16)],
                )
            })
            .collect(),
        containers: vec![],
    }
}

/// A daemon reading `r` (its API root: the projects are listed, then subscribed to) into `c`,
/// with a full listing only every ten minutes. cattle's own ping and flush periods. Returns
/// its `/metrics` port too.
async fn daemon(r: &Rancher, c: &Consul, dir: &tempfile::TempDir) -> (Child, u16) {
    let port = free_port();
    let cfg = dir.path().join("rancon.toml");
    std::fs::write(
        &cfg,
        format!(
            "interval = \"10m\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
             [sources.rancher]\ntype = \"rancher\"\nurl = {:?}\n\
             [backends.consul]\ntype = \"consul\"\nurl = {:?}\n",
            r.url("/v2-beta"),
            c.url(0)
        ),
    )
    .unwrap();
    let child = Child(
        std::process::Command::new(assert_cmd::cargo::cargo_bin("rancon"))
            .args(["--config", &cfg.display().to_string(), "-q"])
            .env_remove("RANCON_CONFIG")
            .spawn()
            .unwrap(),
    );
    until("the first round and the subscription", || {
        c.agent_services(0).len() == 3 && r.events().open() == 1
    })
    .await;
    (child, port)
}

/// The subscription's connect asks for a full listing (a `Resync`): once the first round and
/// that one have ended, the daemon lists nothing until an event or the interval. Returns the
/// rounds so far.
async fn synced(port: u16) -> f64 {
    rounds_reach(port, 2.0).await;
    rounds(port).await
}

async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn tags(c: &Consul, name: &str) -> Option<Vec<String>> {
    c.agent_services(0)
        .into_values()
        .find(|s| s.name == name)
        .map(|s| s.tags)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_label_edit_reaches_consul_without_waiting_for_the_interval() {
    let r = Rancher::start(vec![project()], None).await;
    let c = Consul::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let (_d, _) = daemon(&r, &c, &dir).await;
    let t = Instant::now();
    r.edit_service("1a5", "1s1", |s| {
        s["launchConfig"]["labels"]["rancon.tags"] = json!("web,edited")
    });
    until("the edit registered", || {
        tags(&c, "svc1").is_some_and(|t| t.contains(&"edited".to_string()))
    })
    .await;
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "well within interval"
    );
    assert!(
        !tags(&c, "svc0").unwrap().contains(&"edited".to_string()),
        "only the edited service changed"
    );

    // A service Rancher removed leaves Consul too (confirmed by listings, as every removal).
    r.edit_service("1a5", "1s2", |s| s["state"] = json!("removed"));
    until("the removed service deregistered", || {
        tags(&c, "svc2").is_none()
    })
    .await;
    assert_eq!(c.agent_services(0).len(), 2);
}

/// A frame claiming a live service was removed makes the daemon list, and the listing keeps
/// the service: nothing is deregistered on an event's word.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_that_lies_about_a_removal_deregisters_nothing() {
    let r = Rancher::start(vec![project()], None).await;
    let c = Consul::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let (_d, port) = daemon(&r, &c, &dir).await;
    // Let the listing that follows the subscription finish.
    let before = synced(port).await;
    let listed = r.requests();
    let mut gone = service(
        "1s0",
        "svc0",
        "1st5",
        &[("rancon.tags", "web")],
        &[("127.0.0.2", 8000)],
    );
    gone["state"] = json!("removed");
    let frame = json!({"name": "resource.change", "resourceType": "service", "resourceId": "1s0",
                       "data": {"resource": gone}});
    r.events().inject("1a5", &frame.to_string());
    // The round planned from the view confirms the absence with two listings, which disagree.
    rounds_reach(port, before + 1.0).await;
    assert!(
        r.requests() >= listed + 2 * 3,
        "the confirming listings: {} requests after {listed}",
        r.requests()
    );
    assert!(tags(&c, "svc0").is_some(), "svc0 is still registered");
    assert_eq!(c.agent_services(0).len(), 3);
    assert_eq!(r.events().backpressure_closes.load(Ordering::SeqCst), 0);
}

/// The subscription's upgrade request carries Rancher's keys in `Authorization`, and its frames
/// a container's environment; the WebSocket library logs both at trace. No filter, however
/// verbose, shows them.
#[tokio::test(flavor = "multi_thread")]
async fn the_most_verbose_log_shows_no_rancher_secret() {
    use base64::Engine;
    let secret = "s3cr3t-rancher-key";
    let r = Rancher::start(vec![project()], Some(("access1", secret))).await;
    let c = Consul::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("rancon.toml");
    std::fs::write(
        &cfg,
        format!(
            "interval = \"10m\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
             [sources.rancher]\ntype = \"rancher\"\nurl = {:?}\n\
             access_key = \"access1\"\nsecret_key = {secret:?}\n\
             [backends.consul]\ntype = \"consul\"\nurl = {:?}\n",
            r.url("/v2-beta"),
            c.url(0)
        ),
    )
    .unwrap();
    let log = dir.path().join("rancon.log");
    let child = Child(
        std::process::Command::new(assert_cmd::cargo::cargo_bin("rancon"))
            .args(["--config", &cfg.display().to_string()])
            .env_remove("RANCON_CONFIG")
            .env("RANCON_LOG", "trace")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    until("the first round and the subscription", || {
        c.agent_services(0).len() == 3 && r.events().open() == 1
    })
    .await;
    // Once the listing after the subscription is done, a change whose frame carries the
    // service's environment (and a label, so its arrival shows).
    synced(port).await;
    let listed = r.requests();
    r.edit_service("1a5", "1s0", |s| {
        s["launchConfig"]["labels"]["rancon.tags"] = json!("web,edited");
        s["launchConfig"]["environment"] = json!({"DB_PASSWORD": "env-hunter2"});
    });
    until("the frame applied", || {
        tags(&c, "svc0").is_some_and(|t| t.contains(&"edited".to_string()))
    })
    .await;
    assert_eq!(r.requests(), listed, "the change came as a frame");
    drop(child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("TRACE"), "the log is at trace");
    assert!(
        !text.contains("env-hunter2"),
        "a frame's environment is in the log"
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("access1:{secret}"));
    assert!(!text.contains(secret), "the secret is in the log");
    assert!(
        !text.contains(&basic),
        "the Authorization header is in the log"
    );
}
