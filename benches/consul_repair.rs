//! Drift repair at 5,000 services (`interval = "5m"`, so only the watch repairs): latency from
//! a hand deletion through the agent API to the completed re-register, p50/p99 over 60
//! deletions measured in the Consul double, and the requests of a quiet minute (the goal: only
//! blocking-query renewals). Run with the Rancher source (a wake round lists it, as today) and
//! with a static source (the repair path alone).
//!
//!     cargo bench --bench consul_repair

#[allow(dead_code)]
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::bench::project;
use support::consul::Consul;
use support::rancher::Rancher;

const SERVICES: usize = 5_000;
const SAMPLES: usize = 60;
const QUIET: Duration = Duration::from_secs(60);

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(cfg: &str, dir: &tempfile::TempDir) -> Child {
    let file = dir.path().join("rancon.toml");
    std::fs::write(&file, cfg).unwrap();
    Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_rancon"))
            .args(["--config", &file.display().to_string(), "-q"])
            .env_remove("RANCON_CONFIG")
            .spawn()
            .unwrap(),
    )
}

/// Waits for convergence and for the watch's blocking query.
async fn ready(c: &Consul, node: &str) {
    let t = Instant::now();
    while c.agent_services(0).len() < SERVICES {
        assert!(t.elapsed() < Duration::from_secs(300), "no convergence");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let q = format!("/v1/catalog/node-services/{node}?");
    while !c
        .reads_matching(&q)
        .last()
        .is_some_and(|l| l.contains("index="))
    {
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "the watch never blocked"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The requests made since `from` (an index into the reads log), by path.
fn reads_by_path(c: &Consul, from: usize) -> BTreeMap<String, usize> {
    let log = c.cluster.reads_log.lock().unwrap();
    let mut by = BTreeMap::new();
    for l in &log[from..] {
        let path = l.split(['?', ' ']).nth(1).unwrap_or("").to_string();
        *by.entry(path).or_default() += 1;
    }
    by
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Deletes `SAMPLES` registrations one at a time through the agent API and times each repair
/// in the double: from the deregister's answer to the moment the service is there again.
async fn repairs(c: &Consul, node: &str, label: &str) {
    let client = rancon::http::client(Duration::from_secs(10), &Default::default()).unwrap();
    let ids: Vec<String> = c.agent_services(0).into_keys().collect();
    let (r0, (_, w0)) = (c.cluster.reads_log.lock().unwrap().len(), c.requests());
    let mut lat = Vec::new();
    for k in 0..SAMPLES {
        let id = &ids[k * ids.len() / SAMPLES];
        let url = format!("{}/v1/agent/service/deregister/{id}", c.url(0));
        assert!(client.put(&url).send().await.unwrap().status().is_success());
        let t0 = Instant::now();
        while !c.has_service(node, id) {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "{id} never came back"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        lat.push(t0.elapsed());
        // Single deletions, each with a full token bucket.
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    lat.sort();
    let writes = c.requests().1 - w0;
    let reads: usize = reads_by_path(c, r0).values().sum();
    println!(
        "consul_repair[{label}]: {SERVICES} services, {SAMPLES} hand deletions: repair p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; {:.1} writes and {:.1} Consul reads per repair",
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3,
        (writes - SAMPLES) as f64 / SAMPLES as f64 + 1.0,
        reads as f64 / SAMPLES as f64,
    );
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Rancher source: the deployment as it is; a wake round lists Rancher again.
        let r = Rancher::start(vec![project(SERVICES, |_| "web")], None).await;
        let c = Consul::start(1).await;
        let node = format!("node-{}", c.ips[0]);
        let dir = tempfile::tempdir().unwrap();
        let _d = start(
            &format!(
                "interval = \"5m\"\n[sources.rancher]\ntype = \"rancher\"\nurl = {:?}\n\
                 [backends.consul]\ntype = \"consul\"\nurl = {:?}\n",
                r.url("/v2-beta"),
                c.url(0)
            ),
            &dir,
        );
        ready(&c, &node).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (r0, (_, w0), rr0) = (c.cluster.reads_log.lock().unwrap().len(), c.requests(), r.requests());
        tokio::time::sleep(QUIET).await;
        let by = reads_by_path(&c, r0);
        println!(
            "consul_repair[rancher]: quiet minute: Consul reads {:?}, Consul writes {}, Rancher reads {}",
            by,
            c.requests().1 - w0,
            r.requests() - rr0
        );
        repairs(&c, &node, "rancher").await;
        drop(_d);

        // Static source: what the repair itself costs.
        let c = Consul::start(1).await;
        let node = format!("node-{}", c.ips[0]);
        let dir = tempfile::tempdir().unwrap();
        let mut file = String::new();
        for i in 0..SERVICES {
            file += &format!(
                "[[services]]\nname = \"web\"\nhost = \"10.{}.{}.{}\"\nport = 80\n[services.labels]\nrancon = \"\"\n",
                i / 65536,
                (i / 256) % 256,
                i % 256
            );
        }
        std::fs::write(dir.path().join("services.toml"), file).unwrap();
        let _d = start(
            &format!(
                "interval = \"5m\"\n[sources.svc]\ntype = \"static\"\nfile = {:?}\n\
                 [backends.consul]\ntype = \"consul\"\nurl = {:?}\n",
                dir.path().join("services.toml"),
                c.url(0)
            ),
            &dir,
        );
        ready(&c, &node).await;
        repairs(&c, &node, "static").await;
    });
}
