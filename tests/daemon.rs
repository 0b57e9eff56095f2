//! Continuous mode over real HTTP: `/health`, `/ready`, `/metrics`; the deregistration guard at
//! 100 registrations; retries of transient Consul failures.

#[allow(dead_code)]
mod support;

use std::time::{Duration, Instant};
use support::consul::Consul;
use support::process::{Child, free_port};
use support::rancher::{Fault, Project, Rancher, service};

async fn get(client: &reqwest::Client, url: &str) -> Option<(u16, String)> {
    let resp = client.get(url).send().await.ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.text().await.ok()?))
}

/// Polls `url` until `want` holds for its (status, body), for at most 20 s.
async fn until(
    client: &reqwest::Client,
    url: &str,
    want: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((s, b)) = get(client, url).await
            && (want(s, &b) || Instant::now() > deadline)
        {
            return (s, b);
        }
        assert!(Instant::now() < deadline, "{url} never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of one sample line (`name{labels} value`) in OpenMetrics text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.split([' ', '{']).next() == Some(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn pipeline(cfg: std::path::PathBuf) -> rancon::engine::Pipeline {
    let loaded = rancon::config::load(&rancon::config::LoadOptions {
        file: Some(cfg),
        sets: vec![],
        legacy: false,
    })
    .unwrap();
    rancon::app::build(&loaded.config).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn health_ready_and_metrics_follow_the_rounds() {
    let mut p = Project {
        id: "1a5".into(),
        name: "prod".into(),
        stacks: vec![("1st5".into(), "teststack".into())],
        ..Default::default()
    };
    p.services.push(service(
        "1s1",
        "web",
        "1st5",
        &[("rancon", "")],
        &[("127.0.0.2", 8080)],
    ));
    let r = Rancher::start(vec![p], None).await;
    // The first rounds fail: the process is alive (health) but not ready.
    r.set_fault(Fault::ErrorBody(401));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("rancon.toml");
    std::fs::write(
        &cfg,
        format!(
            "interval = \"300ms\"\n[http]\nlisten = \"127.0.0.1:{port}\"\nhangup_after = \"2s\"\n\
             [sources.rancher]\ntype = \"rancher\"\nurl = {:?}\ntimeout = \"60s\"\n\
             [backends.t]\ntype = \"traefik_file\"\npath = {:?}\n",
            r.url("/v2-beta"),
            dir.path().join("out.toml")
        ),
    )
    .unwrap();
    let _child = Child(
        std::process::Command::new(assert_cmd::cargo::cargo_bin("rancon"))
            .args(["--config", &cfg.display().to_string(), "-q"])
            .env_remove("RANCON_CONFIG")
            .spawn()
            .unwrap(),
    );
    let client = rancon::http::client(Duration::from_secs(5), &Default::default()).unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let (_, m) = until(&client, &format!("{base}/metrics"), |s, b| {
        s == 200 && sample(b, "rancon_rounds_failed_total").is_some_and(|v| v >= 1.0)
    })
    .await;
    assert!(m.ends_with("# EOF\n"), "OpenMetrics text ends with # EOF");
    for line in m.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "not a sample line: {line}");
    }
    assert_eq!(
        get(&client, &format!("{base}/health")).await.unwrap().0,
        200
    );
    assert_eq!(get(&client, &format!("{base}/ready")).await.unwrap().0, 503);
    let (s, body) = get(&client, &base).await.unwrap();
    assert_eq!(s, 200);
    assert!(body.starts_with("rancon "));

    // Rounds succeed: ready, and the counters move.
    r.set_fault(Fault::None);
    until(&client, &format!("{base}/ready"), |s, _| s == 200).await;
    let (_, m) = until(&client, &format!("{base}/metrics"), |_, b| {
        sample(b, "rancon_last_success_timestamp_seconds").is_some_and(|v| v > 0.0)
    })
    .await;
    let rounds = sample(&m, "rancon_rounds_total").unwrap();
    assert!(
        m.contains("rancon_source_services{source=\"rancher\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("rancon_registrations_total{backend=\"t\"} 1"),
        "{m}"
    );
    assert!(m.contains("rancon_build_info{version="), "{m}");
    let (_, m) = until(&client, &format!("{base}/metrics"), |_, b| {
        sample(b, "rancon_rounds_total").is_some_and(|v| v > rounds)
    })
    .await;
    assert!(sample(&m, "rancon_rounds_total").unwrap() > rounds);

    // Rounds stop (the source hangs): /health turns 503 after hangup_after.
    r.set_fault(Fault::Hang);
    let (s, body) = until(&client, &format!("{base}/health"), |s, _| s == 503).await;
    assert_eq!(s, 503);
    assert!(body.contains("no round completed"), "{body}");
}

#[tokio::test]
async fn an_empty_source_answer_never_empties_consul_unless_forced() {
    use rancon::engine::RoundOptions;
    let c = Consul::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let services = dir.path().join("services.toml");
    let mut s = String::new();
    for i in 0..100 {
        s += &format!(
            "[[services]]\nname = \"svc{i}\"\nhost = \"127.0.0.2\"\nport = {}\n",
            1000 + i
        );
    }
    std::fs::write(&services, s).unwrap();
    let cfg = dir.path().join("rancon.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sources.s]\ntype = \"static\"\nfile = {:?}\n[backends.consul]\ntype = \"consul\"\nurl = {:?}\n",
            services,
            c.url(0)
        ),
    )
    .unwrap();
    let p = pipeline(cfg);
    assert!(!p.round(RoundOptions::default()).await.failed());
    assert_eq!(c.agent_services(0).len(), 100);
    // The source now answers "nothing" (not an error): the guard holds everything back.
    std::fs::write(&services, "services = []\n").unwrap();
    let r = p.round(RoundOptions::default()).await;
    assert!(r.failed());
    let b = &r.backends[0];
    assert!(b.guard_tripped);
    assert_eq!(b.held_back, 100);
    let why = b.error_text().unwrap();
    assert!(
        why.contains("would deregister 100 of 100") && why.contains("--force"),
        "{why}"
    );
    assert_eq!(c.agent_services(0).len(), 100);
    // --force: the operator means it.
    let r = p
        .round(RoundOptions {
            force: true,
            ..Default::default()
        })
        .await;
    assert!(!r.failed(), "{r:?}");
    assert!(c.agent_services(0).is_empty());
}

#[tokio::test]
async fn transient_consul_failures_are_retried_within_the_round() {
    let c = Consul::start(1).await;
    c.cluster
        .fail_next_writes
        .store(2, std::sync::atomic::Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rancon.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sources.s]\ntype = \"static\"\nservices = [{{ name = \"web\", host = \"127.0.0.2\", port = 80 }}]\n\
             [backends.consul]\ntype = \"consul\"\nurl = {:?}\n",
            c.url(0)
        ),
    )
    .unwrap();
    let p = pipeline(cfg);
    let r = p.round(Default::default()).await;
    assert!(!r.failed(), "{r:?}");
    assert_eq!(c.agent_services(0).len(), 1);
    assert_eq!(c.requests().1, 3, "two 503s, then the write that worked");
}

/// `rancon health` asks the running instance: 0 while /health is 200, 1 when nothing answers.
#[tokio::test(flavor = "multi_thread")]
async fn the_health_command_asks_the_running_instance() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/health");
    let health = || {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("rancon"))
            .args(["health", "--url", &url])
            .output()
            .unwrap()
    };
    assert_eq!(health().status.code(), Some(1), "nothing listens yet");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "interval = \"200ms\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n[sources.s]\ntype = \"static\"\nservices = [{{ name = \"a\", host = \"10.0.0.1\", port = 80 }}]\n[backends.t]\ntype = \"traefik_file\"\npath = {:?}\n",
            dir.path().join("out.toml").display().to_string()
        ),
    )
    .unwrap();
    let daemon = Child(
        std::process::Command::new(assert_cmd::cargo::cargo_bin("rancon"))
            .arg("--config")
            .arg(&cfg)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = rancon::http::client(Duration::from_secs(5), &Default::default()).unwrap();
    until(&client, &url, |s, _| s == 200).await;
    assert_eq!(health().status.code(), Some(0));
    // Without --url it finds the address in the configuration.
    let by_config = std::process::Command::new(assert_cmd::cargo::cargo_bin("rancon"))
        .args(["health", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(by_config.status.code(), Some(0));
    drop(daemon);
}
