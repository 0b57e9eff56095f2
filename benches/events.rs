//! Event-driven changes at scale: the real `rancon` daemon with 5,000 Rancher services, one
//! Consul agent and `interval = "5m"`, against the in-repo doubles (cattle's 5 s pings and 1 s
//! flush). Measures, over single-service label edits, the latency from the Rancher double
//! handing the `resource.change` frame to its socket to the Consul double answering the write
//! (both timestamps taken inside the doubles), then every request made in a quiet minute.
//!
//!     cargo bench --bench events

#[allow(dead_code)]
#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::bench::project;
use support::consul::Consul;
use support::rancher::Rancher;

const SERVICES: usize = 5_000;
const EDITS: usize = 60;
const QUIET: Duration = Duration::from_secs(60);

async fn until(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < limit, "never: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// rancon's own /metrics.
struct Metrics(String);

impl Metrics {
    async fn get(&self) -> String {
        let client = rancon::http::client(Duration::from_secs(5), &Default::default()).unwrap();
        client
            .get(&self.0)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// A sample's value (`name value`, no labels) in OpenMetrics text.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let r = Rancher::start(vec![project(SERVICES, |_| "web")], None).await;
        let c = Consul::start(1).await;
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("rancon.toml");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(
            &cfg,
            format!(
                "interval = \"5m\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
                 [sources.rancher]\ntype = \"rancher\"\nurl = {:?}\n\
                 [backends.consul]\ntype = \"consul\"\nurl = {:?}\n",
                r.url("/v2-beta"),
                c.url(0)
            ),
        )
        .unwrap();
        let metrics = Metrics(format!("http://127.0.0.1:{port}/metrics"));
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rancon"))
            .args(["--config", &cfg.display().to_string(), "-q"])
            .env_remove("RANCON_CONFIG")
            .spawn()
            .unwrap();
        let t = Instant::now();
        until("convergence and a subscription", Duration::from_secs(300), || {
            c.agent_services(0).len() == SERVICES && r.events().open() == 1
        })
        .await;
        // The listing that follows the subscription: wait until the Rancher double is quiet.
        loop {
            let n = r.requests();
            tokio::time::sleep(Duration::from_secs(1)).await;
            if r.requests() == n {
                break;
            }
        }
        println!(
            "events: {SERVICES} services, converged and subscribed in {:.1} s",
            t.elapsed().as_secs_f64()
        );

        let m0 = metrics.get().await;
        let mut lat = Vec::new();
        for e in 0..EDITS {
            let k = (e * 83) % SERVICES;
            let (sid, name) = (format!("1s{k}"), format!("svc{k}-stack{}", k % 50));
            let tag = format!("e{e}");
            let writes = c.cluster.writes_done.lock().unwrap().len();
            let sent = r.events().sent.lock().unwrap().len();
            r.edit_service("1a5", &sid, |s| {
                s["launchConfig"]["labels"]["rancon.tags"] = json!(format!("web,{tag}"))
            });
            until("the edit's write", Duration::from_secs(30), || {
                c.agent_services(0)
                    .values()
                    .any(|s| s.name == name && s.tags.contains(&tag))
            })
            .await;
            let frame = r.events().sent.lock().unwrap()[sent..]
                .iter()
                .find(|(id, _)| *id == sid)
                .map(|(_, at)| *at)
                .expect("the service's frame");
            let done = c.cluster.writes_done.lock().unwrap()[writes..]
                .iter()
                .copied()
                .find(|at| *at >= frame)
                .expect("a write after the frame");
            lat.push(done - frame);
            // Apart, so each edit is a round of its own.
            tokio::time::sleep(Duration::from_millis(100 + fastrand::u64(..200))).await;
        }
        let m1 = metrics.get().await;
        lat.sort();
        let mean = |name: &str| {
            let d = |k: &str| sample(&m1, &format!("{name}_{k}")) - sample(&m0, &format!("{name}_{k}"));
            Duration::from_secs_f64(d("sum") / d("count"))
        };
        println!(
            "events: inside rancon, mean over the edits' rounds: round {}, event received → round done {}",
            ms(mean("rancon_round_duration_seconds")),
            ms(mean("rancon_event_lag_seconds"))
        );
        println!(
            "events: change-to-write latency over {EDITS} single-service label edits (frame sent → Consul write answered): p50 {}, p99 {}, max {}",
            ms(pct(&lat, 0.5)),
            ms(pct(&lat, 0.99)),
            ms(*lat.last().unwrap())
        );

        let ev = r.events();
        let before = (
            r.requests(),
            ev.attempts.load(Ordering::SeqCst),
            ev.frames.load(Ordering::SeqCst),
            ev.pings.load(Ordering::SeqCst),
            c.requests(),
        );
        tokio::time::sleep(QUIET).await;
        let (cr, cw) = c.requests();
        let pings = ev.pings.load(Ordering::SeqCst) - before.3;
        let frames = ev.frames.load(Ordering::SeqCst) - before.2;
        println!(
            "events: quiet minute: Rancher listing requests {}, subscribe requests {}, frames received {} ({} pings), Consul reads {}, Consul writes {}",
            r.requests() - before.0,
            ev.attempts.load(Ordering::SeqCst) - before.1,
            frames,
            pings,
            cr - before.4.0,
            cw - before.4.1
        );
        let _ = child.kill();
        let _ = child.wait();
    });
}
