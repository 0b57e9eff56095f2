//! The docker source against a real Docker Engine (Debian's `docker.io`, started by the tests:
//! `tests/support/docker.rs`): registration through the whole daemon into the Consul double,
//! events, reconnects, a daemon restart, health, registrator's conventions; and the source's
//! contract (`fetch`, `watch`, `current`) driven directly.
//!
//! Containers are registered, never contacted: every published port is on 127.0.0.1 or ::1.

#[allow(dead_code)]
mod support;

use rancon::source::{Source, SourceConfig};
use rancon::watch::Wake;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::consul::{Consul, Svc};
use support::docker::{self, Dockerd, NETWORK, Proxy, unique};
use support::process::free_port;

/// How long anything may take before a test gives up (a deadline, not a measurement).
const PATIENCE: Duration = Duration::from_secs(60);

/// A running `rancon run` whose log is shown when a test fails.
struct Rancon {
    child: std::process::Child,
    dir: tempfile::TempDir,
    metrics: String,
}

impl Drop for Rancon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("rancon.log")).unwrap_or_default();
            eprintln!("--- rancon log ---\n{log}");
        }
    }
}

impl Rancon {
    /// `rancon run` with a docker source on `url` (published ports on 127.0.0.1) and a Consul
    /// backend on agent 0 of `consul`; `source` and `backend` add TOML lines to each.
    fn start(url: &str, consul: &Consul, interval: &str, source: &str, backend: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let cfg = dir.path().join("rancon.toml");
        std::fs::write(
            &cfg,
            format!(
                "owner = \"t\"\ninterval = {interval:?}\nmax_deregister_fraction = 1.0\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
                 [sources.docker]\ntype = \"docker\"\nurl = {url:?}\nhost_address = \"127.0.0.1\"\n{source}\n\
                 [backends.consul]\ntype = \"consul\"\nurl = {:?}\n{backend}\n",
                consul.url(0)
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("rancon.log")).unwrap();
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("rancon"))
            .args(["--config", &cfg.display().to_string()])
            .env_remove("RANCON_CONFIG")
            .env("RANCON_LOG", "rancon=debug")
            .env_remove("DOCKER_HOST")
            .env("NO_COLOR", "1")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Self {
            child,
            dir,
            metrics: format!("http://127.0.0.1:{port}/metrics"),
        }
    }

    /// The value of a metric sample (`name{labels}` as written), once it is served.
    async fn metric(&self, sample: &str) -> Option<f64> {
        let client = rancon::http::client(Duration::from_secs(5), &Default::default()).ok()?;
        let text = client
            .get(&self.metrics)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find(|l| l.starts_with(sample) && l[sample.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }
}

/// Polls `check` until it returns `Some`, for at most `PATIENCE`.
async fn until<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Agent 0's registrations named `name`.
fn named(consul: &Consul, name: &str) -> Vec<Svc> {
    consul
        .agent_services(0)
        .into_values()
        .filter(|s| s.name == name)
        .collect()
}

/// Consul's id rule as rancon applies it: lower case, anything outside `[a-z0-9-]` → `-`.
fn service_id(raw: &str) -> String {
    rancon::labels::service_id(raw)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_labelled_container_is_registered_and_stop_and_remove_deregister_it() {
    let d = docker::shared();
    let consul = Consul::start(1).await;
    let web = unique("web");
    let plain = unique("plain");
    // Someone else's registration of the same service name, and one of its own.
    let foreign = Svc {
        id: format!("{web}-by-hand"),
        name: web.clone(),
        tags: vec!["manual".into()],
        meta: BTreeMap::new(),
        address: "127.0.0.9".into(),
        port: 1,
    };
    consul.insert("node-127.0.0.2", foreign.clone());
    let plain_port = free_port();
    d.run(&plain, &["-p", &format!("127.0.0.1:{plain_port}:80")], &[]);
    let r = Rancon::start(&d.url(), &consul, "1h", "", "");
    let (p4, p6, p2) = (free_port(), free_port(), free_port());
    let id = d.run(
        &web,
        &[
            "-l",
            "rancon",
            "-l",
            "rancon.meta.cid=%CONTAINER_ID%",
            "-l",
            "rancon.meta.image=%IMAGE%",
            "-p",
            &format!("127.0.0.1:{p4}:80"),
            "-p",
            &format!("[::1]:{p6}:80"),
            "-p",
            &format!("127.0.0.1:{p2}:80"),
        ],
        &[],
    );
    // The interval is an hour: only the event can have registered it.
    let regs = until(
        "three registrations of the labelled container",
        async || {
            let r = named(&consul, &web);
            (r.len() == 4).then_some(r)
        },
    )
    .await;
    let ours: Vec<&Svc> = regs.iter().filter(|s| s.id != foreign.id).collect();
    let mut addrs: Vec<(String, u16)> = ours.iter().map(|s| (s.address.clone(), s.port)).collect();
    addrs.sort();
    let mut want = vec![
        ("127.0.0.1".to_string(), p4),
        ("127.0.0.1".to_string(), p2),
        ("::1".to_string(), p6),
    ];
    want.sort();
    assert_eq!(addrs, want, "IPv4 and IPv6 bindings, several per port");
    let ids: std::collections::BTreeSet<&str> = ours.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids.len(), 3, "distinct ids: {ids:?}");
    for s in &ours {
        assert_eq!(s.meta.get("cid"), Some(&id), "container_id in templates");
        assert_eq!(
            s.meta.get("image").map(String::as_str),
            Some("rancon-busybox")
        );
        assert_eq!(s.meta.get("rancon-owner").map(String::as_str), Some("t"));
    }

    d.docker(&["stop", &web]);
    until("deregistration after stop", async || {
        (named(&consul, &web).len() == 1).then_some(())
    })
    .await;
    d.docker(&["start", &web]);
    until("registration after start", async || {
        (named(&consul, &web).len() == 4).then_some(())
    })
    .await;
    d.docker(&["rm", "-f", &web]);
    until("deregistration after remove", async || {
        (named(&consul, &web).len() == 1).then_some(())
    })
    .await;

    assert_eq!(
        named(&consul, &web),
        vec![foreign],
        "the foreign registration is untouched"
    );
    assert!(
        named(&consul, &plain).is_empty(),
        "an unlabelled container is ignored"
    );
    assert!(
        consul
            .agent_services(0)
            .values()
            .all(|s| s.port != plain_port),
        "nothing registered for the unlabelled container"
    );
    assert!(r.metric("rancon_rounds_total").await.is_some());
    d.docker(&["rm", "-f", &plain]);
}

/// A container's environment holds passwords; the Engine's client library logs every response
/// body at debug, an inspect's environment included. Even the most verbose `-v` shows none.
#[tokio::test(flavor = "multi_thread")]
async fn the_most_verbose_log_shows_no_container_environment() {
    let d = docker::shared();
    let consul = Consul::start(1).await;
    let web = unique("env");
    let secret = format!("hunter2-{}", std::process::id());
    d.run(
        &web,
        &[
            "-l",
            "rancon",
            "-e",
            &format!("DB_PASSWORD={secret}"),
            "-p",
            &format!("127.0.0.1:{}:80", free_port()),
        ],
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rancon.toml");
    std::fs::write(
        &cfg,
        format!(
            "owner = \"t\"\n[sources.docker]\ntype = \"docker\"\nurl = {:?}\nhost_address = \"127.0.0.1\"\n\
             [backends.consul]\ntype = \"consul\"\nurl = {:?}\n",
            d.url(),
            consul.url(0)
        ),
    )
    .unwrap();
    for verbose in ["-vvv", "-vvvvv"] {
        let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("rancon"))
            .args(["--once", verbose, "--config", &cfg.display().to_string()])
            .env_remove("RANCON_CONFIG")
            .env_remove("RANCON_LOG")
            .env_remove("DOCKER_HOST")
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{log}");
        assert_eq!(named(&consul, &web).len(), 1, "the container was read");
        assert!(
            log.contains("DEBUG"),
            "{verbose} logs at debug, so the test means something"
        );
        assert!(!log.contains(&secret), "{verbose} shows the environment");
    }
    d.docker(&["rm", "-f", &web]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_started_while_the_stream_is_down_is_found_on_reconnect() {
    let d = docker::shared();
    let consul = Consul::start(1).await;
    let proxy = Proxy::start(d);
    let _r = Rancon::start(&proxy.url(), &consul, "1h", "", "");
    let first = unique("first");
    d.run(
        &first,
        &[
            "-l",
            "rancon",
            "-p",
            &format!("127.0.0.1:{}:80", free_port()),
        ],
        &[],
    );
    until("the first container registered", async || {
        (!named(&consul, &first).is_empty()).then_some(())
    })
    .await;
    // Every connection closed, none accepted: the event stream is down.
    proxy.cut();
    let late = unique("late");
    d.run(
        &late,
        &[
            "-l",
            "rancon",
            "-p",
            &format!("127.0.0.1:{}:80", free_port()),
        ],
        &[],
    );
    proxy.open();
    // Its start event was sent while nobody listened, and no interval round comes for an
    // hour: only the listing after the reconnect finds it.
    until(
        "the container started during the outage registered",
        async || (!named(&consul, &late).is_empty()).then_some(()),
    )
    .await;
    assert_eq!(named(&consul, &first).len(), 1);
    d.docker(&["rm", "-f", &first, &late]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_restart_is_survived() {
    // Its own daemon: restarting the shared one would disturb the other tests.
    let d = Dockerd::start();
    let consul = Consul::start(1).await;
    let r = Rancon::start(&d.url(), &consul, "2s", "", "");
    let keep = unique("keep");
    d.run(
        &keep,
        &[
            "--restart",
            "always",
            "-l",
            "rancon",
            "-p",
            &format!("127.0.0.1:{}:80", free_port()),
        ],
        &[],
    );
    until("registered before the restart", async || {
        (named(&consul, &keep).len() == 1).then_some(())
    })
    .await;
    d.stop();
    // Rounds run and fail while the daemon is down: unknown is never empty.
    until("a failed listing while the daemon is down", async || {
        r.metric("rancon_source_failures_total{source=\"docker\"}")
            .await
            .filter(|v| *v >= 1.0)
    })
    .await;
    assert_eq!(
        named(&consul, &keep).len(),
        1,
        "kept while the daemon is down"
    );
    d.restart();
    until("the watch reconnected", async || {
        r.metric("rancon_watch_reconnects_total{component=\"docker\"}")
            .await
            .filter(|v| *v >= 1.0)
    })
    .await;
    let after = unique("after");
    d.run(
        &after,
        &[
            "-l",
            "rancon",
            "-p",
            &format!("127.0.0.1:{}:80", free_port()),
        ],
        &[],
    );
    until(
        "a container started after the restart registered",
        async || (named(&consul, &after).len() == 1).then_some(()),
    )
    .await;
    assert_eq!(
        named(&consul, &keep).len(),
        1,
        "the restarted container stays registered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_healthcheck_turns_the_consul_check_critical() {
    let d = docker::shared();
    let consul = Consul::start(1).await;
    let _r = Rancon::start(&d.url(), &consul, "1h", "", "check = \"source\"");
    let sick = unique("sick");
    d.run(
        &sick,
        &[
            "-l",
            "rancon",
            "-p",
            &format!("127.0.0.1:{}:80", free_port()),
            "--health-cmd",
            "test -f /tmp/ok",
            "--health-interval",
            "1s",
            "--health-retries",
            "1",
        ],
        &["sh", "-c", "touch /tmp/ok; exec httpd -f -p 80 -h /www"],
    );
    let status = |consul: &Consul| -> Option<String> {
        let svc = named(consul, &sick).into_iter().next()?;
        consul
            .checks("node-127.0.0.2")
            .into_values()
            .find(|c| c.service_id == svc.id && c.kind == "ttl")
            .map(|c| c.status)
    };
    until("the check passes once healthy", async || {
        (status(&consul).as_deref() == Some("passing")).then_some(())
    })
    .await;
    d.docker(&["exec", &sick, "rm", "/tmp/ok"]);
    until("the check turns critical once unhealthy", async || {
        (status(&consul).as_deref() == Some("critical")).then_some(())
    })
    .await;
    d.docker(&["exec", &sick, "touch", "/tmp/ok"]);
    until("the check passes again", async || {
        (status(&consul).as_deref() == Some("passing")).then_some(())
    })
    .await;
    d.docker(&["rm", "-f", &sick]);
}

#[tokio::test(flavor = "multi_thread")]
async fn registrator_conventions_register_under_registrators_names() {
    let d = docker::shared();
    let consul = Consul::start(1).await;
    let _r = Rancon::start(
        &d.url(),
        &consul,
        "1h",
        "conventions = [\"registrator\"]",
        "id = \"%ID%\"",
    );
    let host = d.host_id();
    let (shop, ignored, bare, dns) = (
        unique("shop"),
        unique("ignored"),
        unique("bare"),
        unique("dns"),
    );
    let (p80, p81, pdns) = (free_port(), free_port(), free_port());
    // No rancon label anywhere: registrator registered every container with a port.
    d.run(
        &shop,
        &[
            "-p",
            &format!("127.0.0.1:{p80}:80"),
            "-p",
            &format!("127.0.0.1:{p81}:81"),
            "-e",
            "SERVICE_NAME=from-env",
            "-l",
            "SERVICE_NAME=shop",
            "-e",
            "SERVICE_81_NAME=metrics",
            "-e",
            "SERVICE_TAGS=a,b",
            "-l",
            "SERVICE_REGION=eu",
            "-e",
            "SERVICE_CHECK_HTTP=/health",
        ],
        &[],
    );
    d.run(
        &ignored,
        &[
            "-p",
            &format!("127.0.0.1:{}:80", free_port()),
            "-e",
            "SERVICE_IGNORE=true",
        ],
        &[],
    );
    d.run(
        &bare,
        &["-p", &format!("127.0.0.1:{}:80", free_port())],
        &[],
    );
    d.run(
        &dns,
        &[
            "-p",
            &format!("127.0.0.1:{pdns}:53/udp"),
            "-e",
            "SERVICE_NAME=dns",
        ],
        &[],
    );
    // registrator's ids: `<host>:<container>:<exposed port>[:udp]`.
    let id = |c: &str, port: &str| service_id(&format!("{host}:{c}:{port}"));
    let want = [
        id(&shop, "80"),
        id(&shop, "81"),
        id(&bare, "80"),
        id(&dns, "53:udp"),
    ];
    let regs = until("registrator's four services", async || {
        let all = consul.agent_services(0);
        want.iter()
            .map(|i| all.get(i).cloned())
            .collect::<Option<Vec<Svc>>>()
    })
    .await;
    let (web, metrics, plain, udp) = (&regs[0], &regs[1], &regs[2], &regs[3]);
    assert_eq!(
        web.name, "shop-80",
        "labels win over env; several ports: -<port>"
    );
    assert_eq!((web.address.as_str(), web.port), ("127.0.0.1", p80));
    assert_eq!(metrics.name, "metrics", "a port's own name takes no suffix");
    assert_eq!(metrics.port, p81);
    assert_eq!(plain.name, "rancon-busybox", "the image's name without tag");
    assert_eq!(udp.name, "dns");
    assert_eq!(udp.port, pdns);
    assert!(udp.tags.contains(&"udp".to_string()), "{:?}", udp.tags);
    for s in [web, metrics] {
        assert!(
            s.tags.contains(&"a".to_string()) && s.tags.contains(&"b".to_string()),
            "{:?}",
            s.tags
        );
        assert_eq!(s.meta.get("region").map(String::as_str), Some("eu"));
        assert!(!s.meta.contains_key("check_http"), "checks are not meta");
    }
    let http = consul
        .checks("node-127.0.0.2")
        .into_values()
        .find(|c| c.service_id == web.id && c.kind == "http")
        .expect("SERVICE_CHECK_HTTP adds an HTTP check");
    assert_eq!(
        http.target.as_deref(),
        Some(format!("http://127.0.0.1:{p80}/health").as_str())
    );
    assert!(
        consul
            .agent_services(0)
            .keys()
            .all(|k| !k.contains(&ignored)),
        "SERVICE_IGNORE"
    );
    d.docker(&["rm", "-f", &shop, &ignored, &bare, &dns]);
}

/// A docker source built from TOML lines (url included), as the config would build it.
fn source(lines: &str) -> Box<dyn Source> {
    let cfg: SourceConfig = toml::from_str(&format!("type = \"docker\"\n{lines}")).unwrap();
    let common = rancon::build::Config::default().common();
    rancon::source::build("docker", &cfg, &common).unwrap()
}

/// The endpoints of one container in a listing's result.
fn of(eps: &[rancon::model::Endpoint], container: &str) -> Vec<BTreeMap<String, String>> {
    eps.iter()
        .filter(|e| e.prop("container_name") == container)
        .map(|e| e.props.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn internal_endpoints_and_compose_properties() {
    let d = docker::shared();
    let web = unique("web");
    let id = d.run(
        &web,
        &[
            "-l",
            "com.docker.compose.service=web",
            "-l",
            "com.docker.compose.project=shop",
            "-l",
            "rancon.name=%NAME%-%STACK%",
            "--expose",
            "8080",
            "--expose",
            "9090/udp",
        ],
        &[],
    );
    let ip = d.docker(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{NETWORK}\").IPAddress}}}}"),
        &web,
    ]);
    let src = source(&format!("url = {:?}\nendpoints = \"internal\"\n", d.url()));
    let (eps, skipped) = src.fetch().await.unwrap();
    assert!(
        skipped.iter().all(|s| !s.endpoint.contains(&web)),
        "{skipped:?}"
    );
    let mine = of(&eps, &web);
    let got: Vec<(String, String, String)> = mine
        .iter()
        .map(|p| (p["host"].clone(), p["port"].clone(), p["protocol"].clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (ip.clone(), "8080".into(), "tcp".into()),
            (ip.clone(), "9090".into(), "udp".into())
        ]
    );
    let p = &mine[0];
    assert_eq!(
        p["name"], "web-shop",
        "compose service and project as %NAME%-%STACK%"
    );
    assert_eq!(
        (p["service"].as_str(), p["stack"].as_str()),
        ("web", "shop")
    );
    assert_eq!(p["container_id"], id);
    assert_eq!(p["image"], "rancon-busybox");
    assert_eq!(p["health"], "", "no HEALTHCHECK: passing");

    // On two networks without `network`: skipped with both names, never guessed.
    let other = unique("net");
    let subnet = format!("10.199.{}.0/24", std::process::id() % 250);
    d.docker(&["network", "create", "--subnet", &subnet, &other]);
    d.docker(&["network", "connect", &other, &web]);
    let (eps, skipped) = src.fetch().await.unwrap();
    assert!(of(&eps, &web).is_empty());
    let s = skipped
        .iter()
        .find(|s| s.endpoint.contains(&web))
        .expect("a skip");
    assert!(
        s.reason.contains(NETWORK) && s.reason.contains(&other),
        "{}",
        s.reason
    );
    let chosen = source(&format!(
        "url = {:?}\nendpoints = \"internal\"\nnetwork = {other:?}\n",
        d.url()
    ));
    let (eps, _) = chosen.fetch().await.unwrap();
    assert!(
        of(&eps, &web)
            .iter()
            .all(|p| p["host"].starts_with("10.199."))
    );
    assert_eq!(of(&eps, &web).len(), 2);
    d.docker(&["rm", "-f", &web]);
    d.docker(&["network", "rm", &other]);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_label_values_skip_only_their_container() {
    let d = docker::shared();
    let (bad, good) = (unique("bad"), unique("good"));
    d.run(
        &bad,
        &[
            "-l",
            "rancon",
            "-l",
            "com.docker.compose.service=we\nb",
            "-p",
            &format!("127.0.0.1:{}:80", free_port()),
        ],
        &[],
    );
    d.run(
        &good,
        &[
            "-l",
            "rancon",
            "-p",
            &format!("127.0.0.1:{}:80", free_port()),
        ],
        &[],
    );
    let src = source(&format!(
        "url = {:?}\nhost_address = \"127.0.0.1\"\n",
        d.url()
    ));
    let (eps, skipped) = src.fetch().await.unwrap();
    assert!(of(&eps, &bad).is_empty());
    assert_eq!(of(&eps, &good).len(), 1);
    let s = skipped
        .iter()
        .find(|s| s.endpoint.contains(&bad))
        .expect("skipped, so the source is incomplete");
    assert!(s.reason.contains("control characters"), "{}", s.reason);
    d.docker(&["rm", "-f", &bad, &good]);
}

/// Waits for a wake matching `want` on `rx`.
async fn wake(rx: &mut rancon::watch::WakeRx, what: &str, want: impl Fn(&Wake) -> bool) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let w = rx.recv().await.expect("the watch ended");
            if want(&w) {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no wake: {what}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_watch_keeps_the_view_current_and_wakes_per_change() {
    let d = docker::shared();
    let src = source(&format!(
        "url = {:?}\nhost_address = \"127.0.0.1\"\n",
        d.url()
    ));
    let (tx, mut rx) = rancon::watch::channel();
    let task = src.watch(tx).expect("the docker source watches");
    wake(
        &mut rx,
        "resync after connecting",
        |w| matches!(w, Wake::Resync { component } if component == "docker"),
    )
    .await;
    assert!(src.current().is_none(), "no view before a listing");
    src.fetch().await.unwrap();
    assert!(
        src.current().is_some(),
        "a listing made while connected is the view"
    );
    let c = unique("watched");
    d.run(
        &c,
        &[
            "-l",
            "rancon",
            "-p",
            &format!("127.0.0.1:{}:80", free_port()),
        ],
        &[],
    );
    until("the view has the started container", async || {
        let _ = rx.try_recv();
        src.current()
            .filter(|(eps, _)| of(eps, &c).len() == 1)
            .map(drop)
    })
    .await;
    d.docker(&["stop", &c]);
    until("the view lost the stopped container", async || {
        let _ = rx.try_recv();
        src.current()
            .filter(|(eps, _)| of(eps, &c).is_empty())
            .map(drop)
    })
    .await;
    task.abort();
    let _ = task.await;
    assert!(src.current().is_none(), "no watch, no view");
    d.docker(&["rm", "-f", &c]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_during_a_listing_is_kept() {
    let d = docker::shared();
    let proxy = Proxy::start(d);
    let src = std::sync::Arc::new(source(&format!(
        "url = {:?}\nhost_address = \"127.0.0.1\"\n",
        proxy.url()
    )));
    let (tx, mut rx) = rancon::watch::channel();
    let task = src.watch(tx).unwrap();
    wake(&mut rx, "resync", |w| matches!(w, Wake::Resync { .. })).await;
    src.fetch().await.unwrap();
    // The next listing's answer is held: the daemon has answered, the source waits.
    proxy.hold_listings(true);
    let listing = tokio::spawn({
        let src = src.clone();
        async move { src.fetch().await }
    });
    until("the listing reached the daemon", async || {
        (proxy.held() >= 1).then_some(())
    })
    .await;
    while rx.try_recv().is_ok() {}
    let c = unique("during");
    d.run(
        &c,
        &[
            "-l",
            "rancon",
            "-p",
            &format!("127.0.0.1:{}:80", free_port()),
        ],
        &[],
    );
    // The view goes when a listing starts (one copy at a time); the change is journaled and
    // wakes the daemon. (Another test's container on the shared daemon may wake it first:
    // then the change lands after the listing instead, and the assertions below still hold.)
    wake(&mut rx, "the watch took the start", |w| {
        matches!(w, Wake::Source { .. })
    })
    .await;
    assert!(
        src.current().is_none(),
        "no view while a listing is in flight"
    );
    assert!(!listing.is_finished());
    proxy.hold_listings(false);
    let (eps, _) = listing.await.unwrap().unwrap();
    assert!(
        of(&eps, &c).is_empty(),
        "the listing predates the container"
    );
    let (view, _) = src.current().expect("a view");
    assert_eq!(
        of(&view, &c).len(),
        1,
        "the change received during the listing is kept"
    );
    task.abort();
    d.docker(&["rm", "-f", &c]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listing_that_fails_or_ends_early_is_an_error_never_empty() {
    // No daemon at all.
    let dir = tempfile::tempdir().unwrap();
    let gone = source(&format!(
        "url = \"unix://{}/none.sock\"\nhost_address = \"127.0.0.1\"\n",
        dir.path().display()
    ));
    assert!(gone.fetch().await.is_err());
    // A daemon whose listing is cut short.
    let sock = dir.path().join("fake.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = vec![0u8; 8192];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let body = if req.contains("/version") {
                r#"{"ApiVersion":"1.41","Version":"20.10.24"}"#.to_string()
            } else if req.contains("/info") {
                r#"{"Name":"fake","SystemTime":"2026-01-01T00:00:00.000000000Z"}"#.to_string()
            } else {
                r#"[{"Id":"abc","Names":["/x"],"State":"running","Labels":{"rancon":""}"#
                    .to_string()
            };
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        }
    });
    let short = source(&format!(
        "url = \"unix://{}\"\nhost_address = \"127.0.0.1\"\n",
        sock.display()
    ));
    let e = short
        .fetch()
        .await
        .expect_err("a truncated listing is not a listing");
    assert!(!e.to_string().is_empty());
}

#[test]
fn config_follows_the_docker_cli_and_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rancon.toml");
    std::fs::write(
        &cfg,
        "[sources.docker]\ntype = \"docker\"\n[backends.t]\ntype = \"traefik_file\"\npath = \"/tmp/x.toml\"\n",
    )
    .unwrap();
    let run = |envs: &[(&str, &str)]| {
        let mut c = assert_cmd::Command::cargo_bin("rancon").unwrap();
        c.args(["check", "--config", &cfg.display().to_string()])
            .env_remove("RANCON_CONFIG")
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH");
        for (k, v) in envs {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(78));
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sources.docker.host_address"), "{text}");
    let out = run(&[
        ("DOCKER_HOST", "tcp://docker.example:2376"),
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", "/nonexistent-certs"),
        ("RANCON_SOURCES__DOCKER__HOST_ADDRESS", "10.0.0.5"),
    ]);
    assert_eq!(out.status.code(), Some(78));
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("sources.docker.cert_path") && text.contains("/nonexistent-certs/ca.pem"),
        "{text}"
    );
    // A prefix that selects nothing would empty the source.
    let out = run(&[
        ("RANCON_SOURCES__DOCKER__HOST_ADDRESS", "10.0.0.5"),
        ("RANCON_SOURCES__DOCKER__LABEL_PREFIX", "my prefix"),
    ]);
    assert_eq!(out.status.code(), Some(78));
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("sources.docker.label_prefix")
            && text.contains("RANCON_SOURCES__DOCKER__LABEL_PREFIX"),
        "{text}"
    );
    let out = run(&[
        ("DOCKER_HOST", "ssh://me@docker.example"),
        ("RANCON_SOURCES__DOCKER__HOST_ADDRESS", "10.0.0.5"),
    ]);
    assert_eq!(out.status.code(), Some(78));
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("sources.docker.url") && !text.contains("me@"),
        "{text}"
    );
}
