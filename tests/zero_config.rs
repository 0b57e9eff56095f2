//! The environment alone configures rancon: the zero-config start (`RANCHER_URL` +
//! `CONSUL_HTTP_ADDR`, as the Dockerfile's example runs it), the `CATTLE_*` variables Rancher
//! injects into services with agent labels, and what `rancon check` says of both.

#[allow(dead_code)]
mod support;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::consul::Consul;
use support::process::{Child, free_port};
use support::rancher::{Project, Rancher, service};

/// One project with two labelled services on host 127.0.0.2, behind HTTP basic auth.
async fn rancher() -> Rancher {
    let p = Project {
        id: "1a5".into(),
        name: "prod".into(),
        stacks: vec![("1st5".into(), "shop".into())],
        services: vec![
            service(
                "1s1",
                "web",
                "1st5",
                &[("rancon", "")],
                &[("127.0.0.2", 8080)],
            ),
            service(
                "1s2",
                "api",
                "1st5",
                &[("rancon", "")],
                &[("127.0.0.2", 9000)],
            ),
        ],
        containers: vec![],
    };
    Rancher::start(vec![p], Some(("AK1", "sk-zero-secret"))).await
}

/// The binary with exactly `env` (nothing inherited: no stray RANCHER_*, CONSUL_*, RANCON_*).
fn rancon(args: &[&str], env: &[(&str, String)]) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("rancon"));
    c.args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null());
    c
}

async fn output(mut c: Command) -> Output {
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `CONSUL_HTTP_ADDR` as Consul's CLI takes it: `host:port`, no scheme.
fn consul_addr(c: &Consul) -> String {
    c.url(0).trim_start_matches("http://").to_string()
}

/// `docker run -e RANCHER_URL=… -e CONSUL_HTTP_ADDR=… rancon` as the Dockerfile writes it: no
/// arguments, no file; the image's own `RANCON_HTTP__LISTEN` is the only other setting.
#[tokio::test(flavor = "multi_thread")]
async fn the_dockerfile_example_runs_a_rancher_source_into_consul() {
    let r = rancher().await;
    let c = Consul::start(1).await;
    let port = free_port();
    let mut cmd = rancon(
        &[],
        &[
            ("RANCHER_URL", r.url("/v2-beta")),
            ("RANCHER_ACCESS_KEY", "AK1".into()),
            ("RANCHER_SECRET_KEY", "sk-zero-secret".into()),
            ("CONSUL_HTTP_ADDR", consul_addr(&c)),
            ("RANCON_HTTP__LISTEN", format!("127.0.0.1:{port}")),
        ],
    );
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = Child(cmd.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.agent_services(0).len() < 2 {
        if let Ok(Some(status)) = child.0.try_wait() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("rancon exited ({status}) before registering: {err}");
        }
        assert!(Instant::now() < deadline, "nothing registered in 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let svcs = c.agent_services(0);
    let names: Vec<&str> = svcs.values().map(|s| s.name.as_str()).collect();
    assert!(
        names.contains(&"web") && names.contains(&"api"),
        "{names:?}"
    );
    let kill = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::task::spawn_blocking(move || {
        let s = child.0.wait().unwrap();
        drop(child);
        s
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn check_shows_what_was_implied_and_from_which_variables() {
    let env = [
        ("RANCHER_URL", "http://127.0.0.1:9/v2-beta".to_string()),
        ("RANCHER_ACCESS_KEY", "AK1".into()),
        ("RANCHER_SECRET_KEY", "sk-zero-secret".into()),
        ("CONSUL_HTTP_ADDR", "127.0.0.1:9".into()),
    ];
    let out = output(rancon(&["check"], &env)).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    for want in [
        "implied sources.rancher (type rancher) by RANCHER_URL",
        "implied backends.consul (type consul) by CONSUL_HTTP_ADDR",
        "· sources.rancher.access_key from env RANCHER_ACCESS_KEY",
        "· sources.rancher.secret_key from env RANCHER_SECRET_KEY",
        "· sources.rancher.url from env RANCHER_URL",
        "· backends.consul.url from env CONSUL_HTTP_ADDR",
        "[sources.rancher]",
        "[backends.consul]",
    ] {
        assert!(t.contains(want), "missing {want:?} in:\n{t}");
    }
    assert!(!t.contains("sk-zero-secret"), "a secret was printed:\n{t}");
}

/// One variable alone implies nothing: the usual error, which names the zero-config start.
#[tokio::test(flavor = "multi_thread")]
async fn one_variable_alone_implies_nothing_and_the_error_says_what_is_missing() {
    let env = [("RANCHER_URL", "http://127.0.0.1:9/v2-beta".to_string())];
    let out = output(rancon(&["check"], &env)).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(78), "{t}");
    assert!(t.contains("no backend configured"), "{t}");
    assert!(t.contains("CONSUL_HTTP_ADDR"), "{t}");
    assert!(!t.contains("implied"), "{t}");
}

/// A file with any component is never joined by implied ones.
#[tokio::test(flavor = "multi_thread")]
async fn a_configured_component_turns_the_zero_config_start_off() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[sources.s]\ntype = \"static\"\nservices = [{ name = \"a\", host = \"10.0.0.1\", port = 80 }]\n",
    )
    .unwrap();
    let env = [
        ("RANCHER_URL", "http://127.0.0.1:9/v2-beta".to_string()),
        ("CONSUL_HTTP_ADDR", "127.0.0.1:9".into()),
    ];
    let out = output(rancon(&["check", "--config", cfg.to_str().unwrap()], &env)).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(78), "{t}");
    assert!(t.contains("no backend configured"), "{t}");
}

/// Rancher injects CATTLE_URL, CATTLE_ACCESS_KEY and CATTLE_SECRET_KEY into a service with
/// agent labels: they configure the rancher source (and the zero-config start) by themselves.
#[tokio::test(flavor = "multi_thread")]
async fn cattle_variables_configure_the_rancher_source() {
    let r = rancher().await;
    let c = Consul::start(1).await;
    let env = [
        ("CATTLE_URL", r.url("/v2-beta")),
        ("CATTLE_ACCESS_KEY", "AK1".into()),
        ("CATTLE_SECRET_KEY", "sk-zero-secret".into()),
        ("CONSUL_HTTP_ADDR", consul_addr(&c)),
    ];
    let out = output(rancon(&["check"], &env)).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("implied sources.rancher (type rancher) by CATTLE_URL"),
        "{t}"
    );
    for want in [
        "· sources.rancher.access_key from env CATTLE_ACCESS_KEY",
        "· sources.rancher.secret_key from env CATTLE_SECRET_KEY",
        "· sources.rancher.url from env CATTLE_URL",
    ] {
        assert!(t.contains(want), "missing {want:?} in:\n{t}");
    }
    assert!(!t.contains("sk-zero-secret"), "{t}");
    let out = output(rancon(&["run", "--once"], &env)).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(c.agent_services(0).len(), 2);
}

/// RANCHER_* wins over CATTLE_* (a deliberate setting over an injected one): the injected
/// key pair is wrong here, and the round still succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn rancher_variables_win_over_cattle_ones() {
    let r = rancher().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sources.r]\ntype = \"rancher\"\n[backends.t]\ntype = \"traefik_file\"\npath = {:?}\n",
            dir.path().join("out.toml")
        ),
    )
    .unwrap();
    let env = [
        ("RANCHER_URL", r.url("/v2-beta")),
        ("RANCHER_ACCESS_KEY", "AK1".into()),
        ("RANCHER_SECRET_KEY", "sk-zero-secret".into()),
        ("CATTLE_URL", "http://127.0.0.1:9/v1".into()),
        ("CATTLE_ACCESS_KEY", "WRONG".into()),
        ("CATTLE_SECRET_KEY", "wrong".into()),
    ];
    let out = output(rancon(
        &["run", "--once", "--config", cfg.to_str().unwrap()],
        &env,
    ))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let written = std::fs::read_to_string(dir.path().join("out.toml")).unwrap();
    assert!(written.contains("8080"), "{written}");
}
