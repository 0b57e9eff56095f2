//! A quiet daemon at scale: 20,000 Rancher services kept in one Consul agent, default
//! `interval` (30 s). After the first round converges, measures the daemon's CPU time over one
//! minute in which nothing changes, its peak RSS (VmHWM), and the requests it made.
//!
//!     cargo bench --bench steady

#[allow(dead_code)]
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};
use support::bench::{cpu_time, peak_rss_kib, project};
use support::consul::Consul;
use support::rancher::Rancher;

const SERVICES: usize = 20_000;
const QUIET: Duration = Duration::from_secs(60);

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let r = Rancher::start(vec![project(SERVICES, |_| "web")], None).await;
        let c = Consul::start(1).await;
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("rancon.toml");
        std::fs::write(
            &cfg,
            format!(
                "[sources.rancher]\ntype = \"rancher\"\nurl = {:?}\n[backends.consul]\ntype = \"consul\"\nurl = {:?}\n",
                r.url("/v2-beta"),
                c.url(0)
            ),
        )
        .unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rancon"))
            .args(["--config", &cfg.display().to_string(), "-q"])
            .env_remove("RANCON_CONFIG")
            .spawn()
            .unwrap();
        let pid = child.id();
        let t = Instant::now();
        while c.agent_services(0).len() < SERVICES {
            assert!(t.elapsed() < Duration::from_secs(300), "no convergence");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let converged = t.elapsed();
        // Let the first round's writes finish before the quiet minute starts.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (cpu0, rr0, (cr0, cw0)) = (cpu_time(pid).unwrap(), r.requests(), c.requests());
        tokio::time::sleep(QUIET).await;
        let cpu = cpu_time(pid).unwrap() - cpu0;
        let (cr, cw) = c.requests();
        let hwm = peak_rss_kib(pid).unwrap();
        // What the resident set is made of now: heap and stacks (anon) versus the mapped binary.
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let now: Vec<&str> = status
            .lines()
            .filter(|l| l.starts_with("RssAnon") || l.starts_with("RssFile") || l.starts_with("Threads"))
            .collect();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(cw - cw0, 0, "a quiet minute writes nothing");
        println!("steady: {SERVICES} services, first round converged in {:.1} s", converged.as_secs_f64());
        println!(
            "steady: quiet minute: CPU {:.2} s, Rancher reads {}, Consul reads {}, Consul writes {}; peak RSS {:.1} MiB",
            cpu.as_secs_f64(),
            r.requests() - rr0,
            cr - cr0,
            cw - cw0,
            hwm as f64 / 1024.0
        );
        println!("steady: after the minute: {}", now.join(", ").split_whitespace().collect::<Vec<_>>().join(" "));
    });
}
