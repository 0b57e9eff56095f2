//! How long a container's start takes to reach Consul, and its stop to leave it: the real
//! `rancon` binary watching a real `dockerd` (started here, as the tests do) and writing to the
//! in-repo Consul double, with the full interval set to an hour so only events act.
//!
//! Each round: `docker start` of a labelled container, then the Consul registration is
//! awaited (polled every millisecond); `docker stop`, then its deregistration. Times are taken
//! from just before the docker CLI is invoked, so they include the CLI and the Engine's own
//! work (the CLI's share is printed beside them). Goal: under 1 s.
//!
//!     cargo bench --bench docker_latency            # 40 rounds
//!     DOCKER_LATENCY_ROUNDS=200 cargo bench --bench docker_latency

#[allow(dead_code)]
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};
use support::consul::Consul;
use support::docker::{Dockerd, IMAGE, NETWORK};
use support::process::free_port;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn line(what: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what:<44} p50 {:>7.1} ms   p99 {:>7.1} ms   max {:>7.1} ms   (n = {})",
        ms(percentile(&v, 0.5)),
        ms(percentile(&v, 0.99)),
        ms(*v.last().unwrap()),
        v.len()
    );
}

/// Polls until `done` holds; the time from `t0`.
fn wait(t0: Instant, what: &str, done: impl Fn() -> bool) -> Duration {
    while !done() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "gave up waiting: {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    t0.elapsed()
}

fn main() {
    let rounds: usize = std::env::var("DOCKER_LATENCY_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let consul = rt.block_on(Consul::start(1));
    let d = Dockerd::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rancon.toml");
    std::fs::write(
        &cfg,
        format!(
            "owner = \"bench\"\ninterval = \"1h\"\nmax_deregister_fraction = 1.0\n\
             [sources.docker]\ntype = \"docker\"\nurl = {:?}\nhost_address = \"127.0.0.1\"\n\
             [backends.consul]\ntype = \"consul\"\nurl = {:?}\n",
            d.url(),
            consul.url(0)
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("rancon.log")).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rancon"))
        .args(["--config", &cfg.display().to_string()])
        .env_remove("RANCON_CONFIG")
        .env("RANCON_LOG", "warn")
        .stderr(log)
        .spawn()
        .unwrap();
    let name = "latency";
    let port = free_port();
    d.docker(&[
        "create",
        "--init",
        "--network",
        NETWORK,
        "--name",
        name,
        "-l",
        "rancon",
        "-p",
        &format!("127.0.0.1:{port}:80"),
        IMAGE,
        "/bin/httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    let registered = || consul.agent_services(0).values().any(|s| s.name == name);
    // rancon is up (its first round ran) once a container started before it counts is seen.
    let t = Instant::now();
    d.docker(&["start", name]);
    wait(t, "rancon's first registration", registered);
    d.docker(&["stop", name]);
    wait(t, "rancon's first deregistration", || !registered());

    let (mut start, mut stop, mut start_cli, mut stop_cli) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let t0 = Instant::now();
        d.docker(&["start", name]);
        start_cli.push(t0.elapsed());
        start.push(wait(t0, "registration", registered));
        let t1 = Instant::now();
        d.docker(&["stop", name]);
        stop_cli.push(t1.elapsed());
        stop.push(wait(t1, "deregistration", || !registered()));
    }
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "docker start/stop -> Consul, rancon watching dockerd {} ({rounds} rounds)",
        d.docker(&[
            "version",
            "--format",
            "{{.Server.Version}} (API {{.Server.APIVersion}})"
        ])
    );
    line("docker start -> registered in Consul", start);
    line("  of which the docker CLI (start returned)", start_cli);
    line("docker stop -> deregistered from Consul", stop);
    line("  of which the docker CLI (stop returned)", stop_cli);
}
