//! End-to-end rounds of the real `rancon` binary against the in-repo Rancher and Consul doubles:
//! cold (empty Consul), warm (nothing changed) and churn (1 % changed) rounds at 1,000 and
//! 10,000 services (Rancher pages of 100), with requests by kind, wall time and the child's
//! peak RSS, next to the doubles' own capacity measured in the same run by a plain client.
//!
//!     cargo bench --bench e2e

#[allow(dead_code)]
#[path = "../tests/support/mod.rs"]
mod support;

use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::bench::{peak_rss_kib, project};
use support::consul::Consul;
use support::rancher::Rancher;

struct Run {
    wall: Duration,
    rss_kib: i64,
    rancher_reads: usize,
    consul_reads: usize,
    consul_writes: usize,
    /// The write phase, as rancon timed it (`write_ms` of its round summary).
    write_ms: u64,
    ok: bool,
}

/// Runs `rancon --config cfg --once` and measures it. Peak RSS is the child's `VmHWM`, polled
/// until it exits: wait4's `ru_maxrss` would report the parent's size, because the spawned
/// child shares the parent's memory until it execs and Linux keeps that high-water mark.
async fn rancon(cfg: &str, r: &Rancher, c: &Consul) -> Run {
    let (r0, (cr0, cw0)) = (r.requests(), c.requests());
    let cfg = cfg.to_string();
    let (wall, rss_kib, ok, write_ms) = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rancon"))
            .args(["--config", &cfg, "--once", "--log-format", "json"])
            .env_remove("RANCON_CONFIG")
            .env("RANCON_LOG", "warn,rancon::app=info")
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let mut hwm = 0;
        loop {
            if let Some(kib) = peak_rss_kib(child.id()) {
                hwm = hwm.max(kib);
            }
            if let Some(status) = child.try_wait().unwrap() {
                let wall = t.elapsed();
                let logged = std::fs::read_to_string(log.path()).unwrap();
                return (wall, hwm, status.success(), write_ms_of(&logged));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    })
    .await
    .unwrap();
    let (cr, cw) = c.requests();
    Run {
        write_ms,
        wall,
        rss_kib,
        rancher_reads: r.requests() - r0,
        consul_reads: cr - cr0,
        consul_writes: cw - cw0,
        ok,
    }
}

/// `write_ms` of the round summary in a JSON log.
fn write_ms_of(log: &str) -> u64 {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v["fields"]["write_ms"].as_u64())
        .expect("the round summary carries write_ms")
}

/// The Consul double's write rate with a plain client (16 at once, keep-alive), on agent 1.
async fn consul_capacity(c: &Consul, n: usize) -> f64 {
    let client = rancon::http::client(Duration::from_secs(10), &Default::default()).unwrap();
    let base = c.url(1);
    let t = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            let url = format!("{base}/v1/agent/service/register");
            async move {
                let body = serde_json::json!({"ID": format!("cap-{i}"), "Name": "cap", "Tags": ["x"], "Address": "10.0.0.1", "Port": 1, "Meta": {"a": "b"}});
                let resp = client.put(url).json(&body).send().await.unwrap();
                assert!(resp.status().is_success());
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    n as f64 / t.elapsed().as_secs_f64()
}

/// The Rancher double's page rate (pages of 100) with a plain client.
async fn rancher_capacity(r: &Rancher, pages: usize) -> f64 {
    let client = rancon::http::client(Duration::from_secs(10), &Default::default()).unwrap();
    let url = r.url("/v2-beta/projects/1a5/services?limit=100");
    let t = Instant::now();
    futures::stream::iter(0..pages)
        .map(|_| {
            let client = client.clone();
            let url = url.clone();
            async move {
                let body = client.get(url).send().await.unwrap().bytes().await.unwrap();
                assert!(body.len() > 1000);
            }
        })
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await;
    pages as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        println!(
            "| services | round | wall | Rancher reads | Consul reads | Consul writes | writes/s | of double's rate | peak RSS |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        for n in [1_000usize, 10_000] {
            let r = Rancher::start(vec![project(n, |_| "web")], None).await;
            r.state.max_limit.store(100, Ordering::SeqCst);
            let c = Consul::start(2).await;
            let dir = tempfile::tempdir().unwrap();
            let cfg = dir.path().join("rancon.toml");
            std::fs::write(
                &cfg,
                format!(
                    "max_deregister_fraction = 1.0\n[sources.rancher]\ntype = \"rancher\"\nurl = {:?}\n[backends.consul]\ntype = \"consul\"\nurl = {:?}\n",
                    r.url("/v2-beta"),
                    c.url(0)
                ),
            )
            .unwrap();
            let cfg = cfg.display().to_string();
            let capacity = consul_capacity(&c, n).await;
            let pages = rancher_capacity(&r, 50).await;
            let mut rounds = Vec::new();
            rounds.push(("cold", rancon(&cfg, &r, &c).await));
            rounds.push(("warm", rancon(&cfg, &r, &c).await));
            // 1 % churn: a changed tag on every 100th service.
            let churned = project(n, |i| if i % 100 == 0 { "web,changed" } else { "web" });
            *r.state.projects.lock().unwrap() = vec![Arc::new(churned)];
            rounds.push(("churn", rancon(&cfg, &r, &c).await));
            for (name, run) in &rounds {
                assert!(run.ok, "{name} round failed");
                let rate = run.consul_writes as f64 / run.wall.as_secs_f64();
                println!(
                    "| {n} | {name} | {:.0} ms | {} | {} | {} | {:.0} | {:.0} % | {:.1} MiB |",
                    run.wall.as_secs_f64() * 1e3,
                    run.rancher_reads,
                    run.consul_reads,
                    run.consul_writes,
                    rate,
                    100.0 * rate / capacity,
                    run.rss_kib as f64 / 1024.0
                );
            }
            assert_eq!(rounds[0].1.consul_writes, n, "cold: one write per service");
            assert_eq!(rounds[1].1.consul_writes, 0, "warm: no write");
            assert_eq!(rounds[2].1.consul_writes, n / 100, "churn: exactly the changes");
            // The cold round's write phase, timed by rancon around the backend's apply.
            let phase = rounds[0].1.write_ms.max(1);
            let phase_rate = n as f64 * 1e3 / phase as f64;
            println!(
                "| {n} | cold write phase (timed inside rancon) | {phase} ms | | | {n} | {phase_rate:.0} | {:.0} % | |",
                100.0 * phase_rate / capacity
            );
            println!(
                "| {n} | double capacity (plain client, 16 at once) | | {pages:.0} pages/s | | {capacity:.0} writes/s | | | |"
            );
        }
    });
}
