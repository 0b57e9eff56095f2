//! `/metrics` of the running daemon as a Prometheus server scrapes it: per-component counters
//! at 0 from start, the owned-registrations gauge (unknown is not zero), the listing-failure
//! counter, and the standard `process_*` metrics.

#[allow(dead_code)]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::consul::Consul;
use support::process::{Child, free_port};
use support::rancher::{Fault, Project, Rancher, service};

/// The value of the sample `series` (`name` or `name{labels}`), if exposed.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Starts the daemon on `cfg`, serving on `port`.
fn daemon(cfg: &Path) -> Child {
    Child(
        Command::new(assert_cmd::cargo::cargo_bin("rancon"))
            .args(["--config", cfg.to_str().unwrap(), "-q"])
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Scrapes `/metrics` until `want` holds (at most 20 s); returns the last scrape.
async fn until(port: u16, want: impl Fn(&str) -> bool) -> String {
    let client = rancon::http::client(Duration::from_secs(5), &Default::default()).unwrap();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(&url).send().await
            && let Ok(body) = r.text().await
            && want(&body)
        {
            return body;
        }
        assert!(Instant::now() < deadline, "{url}: condition never held");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Before any round completes (the source hangs), every per-component counter is exposed at
/// 0, every skip reason too, the owned gauge is absent (not yet known), and process metrics
/// describe this process.
#[tokio::test(flavor = "multi_thread")]
async fn counters_exist_at_zero_from_start_and_process_metrics_are_served() {
    let p = Project {
        id: "1a5".into(),
        name: "prod".into(),
        stacks: vec![("1st5".into(), "shop".into())],
        services: vec![service(
            "1s1",
            "web",
            "1st5",
            &[("rancon", "")],
            &[("127.0.0.2", 8080)],
        )],
        containers: vec![],
    };
    let r = Rancher::start(vec![p], None).await;
    r.set_fault(Fault::Hang);
    let c = Consul::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("rancon.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n\
             [sources.rancher]\ntype = \"rancher\"\nurl = {:?}\ntimeout = \"60s\"\n\
             [sources.extra]\ntype = \"static\"\nservices = [{{ name = \"db\", host = \"10.0.0.5\", port = 5432 }}]\n\
             [backends.c]\ntype = \"consul\"\nurl = {:?}\n",
            r.url("/v2-beta"),
            c.url(0)
        ),
    )
    .unwrap();
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let _child = daemon(&cfg);
    let m = until(port, |b| b.contains("rancon_build_info")).await;
    assert_eq!(sample(&m, "rancon_rounds_total"), Some(0.0), "{m}");
    for series in [
        "rancon_source_failures_total{source=\"rancher\"}",
        "rancon_source_failures_total{source=\"extra\"}",
        "rancon_registrations_total{backend=\"c\"}",
        "rancon_updates_total{backend=\"c\"}",
        "rancon_deregistrations_total{backend=\"c\"}",
        "rancon_write_failures_total{backend=\"c\"}",
        "rancon_guard_trips_total{backend=\"c\"}",
        "rancon_backend_list_failures_total{backend=\"c\"}",
        "rancon_skipped_total{reason=\"template\"}",
        "rancon_skipped_total{reason=\"conflict\"}",
    ] {
        assert_eq!(sample(&m, series), Some(0.0), "{series} in:\n{m}");
    }
    assert!(
        !m.contains("rancon_owned_registrations{"),
        "owned before any listing:\n{m}"
    );
    let cpu = sample(&m, "process_cpu_seconds_total").expect("process_cpu_seconds_total");
    assert!(cpu >= 0.0, "{m}");
    let rss = sample(&m, "process_resident_memory_bytes").unwrap();
    assert!(rss > 1_000_000.0, "rss {rss}");
    let start = sample(&m, "process_start_time_seconds").unwrap();
    assert!((start - started).abs() < 60.0, "start {start} vs {started}");
    assert!(sample(&m, "process_open_fds").unwrap() >= 3.0, "{m}");
    assert!(sample(&m, "process_max_fds").is_some(), "{m}");
    assert!(m.contains("# TYPE process_cpu_seconds counter"), "{m}");
}

/// Writes the services file atomically (a reader never sees it half-written).
fn services(dir: &Path, names: &[&str]) {
    let mut s = String::new();
    for (i, n) in names.iter().enumerate() {
        s += &format!(
            "[[services]]\nname = {n:?}\nhost = \"10.0.0.{}\"\nport = 80\n",
            i + 1
        );
    }
    let tmp = dir.join("services.tmp");
    std::fs::write(&tmp, s).unwrap();
    std::fs::rename(&tmp, dir.join("services.toml")).unwrap();
}

/// The owned gauge follows what the backend holds; when the backend cannot be listed the
/// listing-failure counter moves and the gauge keeps its last known value (an alert on a
/// sudden drop must not fire because a listing failed).
#[tokio::test(flavor = "multi_thread")]
async fn owned_registrations_follow_the_backend_and_a_failed_listing_is_counted_not_zeroed() {
    let c = Consul::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    services(dir.path(), &["web", "api"]);
    let port = free_port();
    let cfg = dir.path().join("rancon.toml");
    std::fs::write(
        &cfg,
        format!(
            "interval = \"200ms\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
             [sources.s]\ntype = \"static\"\nfile = {:?}\n\
             [backends.c]\ntype = \"consul\"\nurl = {:?}\n",
            dir.path().join("services.toml"),
            c.url(0)
        ),
    )
    .unwrap();
    let _child = daemon(&cfg);
    let owned = "rancon_owned_registrations{backend=\"c\"}";
    until(port, |m| sample(m, owned) == Some(2.0)).await;
    assert_eq!(c.agent_services(0).len(), 2);
    services(dir.path(), &["web"]);
    until(port, |m| sample(m, owned) == Some(1.0)).await;
    assert_eq!(c.agent_services(0).len(), 1);
    let failures = "rancon_backend_list_failures_total{backend=\"c\"}";
    let m = until(port, |m| sample(m, failures) == Some(0.0)).await;
    let rounds = sample(&m, "rancon_rounds_total").unwrap();
    c.cluster
        .fail_reads
        .lock()
        .unwrap()
        .insert(format!("node-{}", c.ips[0]));
    let m = until(port, |m| sample(m, failures).is_some_and(|v| v >= 1.0)).await;
    assert_eq!(
        sample(&m, owned),
        Some(1.0),
        "a failed listing moved the gauge:\n{m}"
    );
    assert!(sample(&m, "rancon_rounds_total").unwrap() > rounds);
    assert_eq!(c.agent_services(0).len(), 1);
}
