//! Two rancon processes with `[leader]` against the Consul double: one writes, the other plans
//! without writing, and takes over after the first dies (session TTL, then lock-delay).

#[allow(dead_code)]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};
use support::consul::Consul;
use support::process::Child;

fn start(cfg: &Path, log: &Path) -> Child {
    Child(
        std::process::Command::new(assert_cmd::cargo::cargo_bin("rancon"))
            .args(["--config", &cfg.display().to_string()])
            .env_remove("RANCON_CONFIG")
            .env("RANCON_LOG", "rancon=info")
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

fn services(path: &Path, n: usize) {
    let mut s = String::new();
    for i in 0..n {
        s += &format!(
            "[[services]]\nname = \"svc{i}\"\nhost = \"127.0.0.2\"\nport = {}\n",
            1000 + i
        );
    }
    std::fs::write(path, s).unwrap();
}

fn registers(c: &Consul) -> usize {
    c.writes_log()
        .iter()
        .filter(|w| w.contains("/v1/agent/service/register"))
        .count()
}

async fn wait_for(what: &str, secs: u64, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_replica_writes_and_the_other_takes_over_when_it_dies() {
    let c = Consul::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let svc = dir.path().join("services.toml");
    services(&svc, 2);
    let cfg = dir.path().join("rancon.toml");
    std::fs::write(
        &cfg,
        format!(
            "interval = \"200ms\"\n[leader]\nbackend = \"consul\"\nttl = \"10s\"\nlock_delay = \"1s\"\n\
             [sources.s]\ntype = \"static\"\nfile = {svc:?}\n\
             [backends.consul]\ntype = \"consul\"\nurl = {:?}\n",
            c.url(0)
        ),
    )
    .unwrap();
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let mut a = start(&cfg, &log_a);
    wait_for("a's first registrations", 20, || {
        c.agent_services(0).len() == 2
    })
    .await;
    let b = start(&cfg, &log_b);
    // Both run several rounds; only the leader ever wrote.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(registers(&c), 2, "{:?}", c.writes_log());
    let lock = c.cluster.kv.lock().unwrap()["rancon/leader/default"].clone();
    assert!(lock.session.is_some(), "the lock is held");
    // A change is written once, by the leader.
    services(&svc, 3);
    wait_for("the third service", 20, || c.agent_services(0).len() == 3).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(registers(&c), 3);
    assert!(
        std::fs::read_to_string(&log_a)
            .unwrap()
            .contains("acquired leadership")
    );
    assert!(
        !std::fs::read_to_string(&log_b)
            .unwrap()
            .contains("acquired leadership")
    );

    // The leader dies without releasing: the session expires (10 s after its last renewal, up
    // to a renewal period before the death), lock-delay (1 s), then b.
    a.0.kill().unwrap();
    a.0.wait().unwrap();
    let renewed = {
        let id = c.cluster.kv.lock().unwrap()["rancon/leader/default"]
            .session
            .clone()
            .expect("a held the lock");
        c.cluster.sessions.lock().unwrap()[&id].renewed
    };
    services(&svc, 4);
    wait_for("b to take over and write", 60, || {
        c.agent_services(0).len() == 4
    })
    .await;
    assert!(
        renewed.elapsed() >= Duration::from_secs(10 + 1),
        "took over before the TTL and the lock-delay ran out"
    );
    assert!(
        std::fs::read_to_string(&log_b)
            .unwrap()
            .contains("acquired leadership")
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(registers(&c), 4, "each change written exactly once");

    // A graceful stop releases the lock at once.
    let pid = b.0.id().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    wait_for("the lock to be released", 20, || {
        c.cluster.kv.lock().unwrap()["rancon/leader/default"]
            .session
            .is_none()
    })
    .await;
    drop(b);
}
