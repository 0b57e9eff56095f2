//! Hostile input met where a user meets it (the binary): secrets never echoed, no panic on a
//! closed stdout or absurd values, data cannot forge log lines, `--force` lasts one round,
//! opting out works in any case. (Ownership, listings that end early and the doubles' real
//! rules are in the backend and source tests and in `simulation.rs`.)

#[allow(dead_code)]
mod support;

use assert_cmd::Command;
use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::process::{Child, free_port};

fn rancon() -> Command {
    let mut c = Command::cargo_bin("rancon").unwrap();
    c.env_remove("RANCON_CONFIG").env_remove("RANCON_LOG");
    c
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    fs::write(&p, body).unwrap();
    p.display().to_string()
}

/// A static source reading `services.toml` into a Traefik file, as TOML.
fn static_config(dir: &Path, extra: &str) -> String {
    let services = dir.join("services.toml").display().to_string();
    let out = dir.join("traefik.toml").display().to_string();
    write(
        dir,
        "rancon.toml",
        &format!(
            "{extra}\n[sources.s]\ntype = \"static\"\nfile = \"{services}\"\n[backends.t]\ntype = \"traefik_file\"\npath = \"{out}\"\n"
        ),
    )
}

fn services(dir: &Path, names: &[&str], labels: &str) {
    let mut body = String::new();
    for (i, n) in names.iter().enumerate() {
        body.push_str(&format!(
            "[[services]]\nname = \"{n}\"\nhost = \"10.0.0.{}\"\nport = 80\nlabels = {{ {labels} }}\n",
            i + 1
        ));
    }
    write(dir, "services.toml", &body);
}

#[test]
fn credentials_in_a_url_are_refused_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "r.toml",
        "[sources.r]\ntype = \"rancher\"\nurl = \"http://AKEY:s3cretPASS@127.0.0.1:1/v2-beta\"\n[backends.t]\ntype = \"traefik_file\"\npath = \"out.toml\"\n",
    );
    let out = rancon().args(["check", "--config", &cfg]).output().unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("sources.r.url"), "{}", text(&out));
    assert!(!text(&out).contains("s3cretPASS"), "{}", text(&out));
}

#[test]
fn a_toml_syntax_error_does_not_quote_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "bad.toml",
        "[backends.c]\ntype = \"consul\"\ntoken = \"s3cretTOKEN\n",
    );
    let out = rancon().args(["check", "--config", &cfg]).output().unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("line 3"), "{}", text(&out));
    assert!(!text(&out).contains("s3cretTOKEN"), "{}", text(&out));
}

#[test]
fn a_malformed_set_is_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    services(dir.path(), &["web"], "rancon = \"\"");
    let cfg = static_config(dir.path(), "");
    let out = rancon()
        .args([
            "check",
            "--config",
            &cfg,
            "--set",
            "backends.c.token:s3cretSET",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(!text(&out).contains("s3cretSET"), "{}", text(&out));
}

#[test]
fn a_closed_stdout_ends_quietly() {
    for args in [vec!["schema"], vec!["man"]] {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("rancon"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader goes away before anything is written
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(141), "{args:?}: {err}");
    }
}

#[test]
fn absurd_values_are_config_errors_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    services(dir.path(), &["web"], "rancon = \"\"");
    let cfg = static_config(dir.path(), "");
    let deep = "[".repeat(100_000);
    let out = rancon()
        .args(["check", "--config", &cfg])
        .env("RANCON_OWNER", &deep)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("RANCON_OWNER"), "{}", text(&out));
    let out = rancon()
        .args(["check", "--config", &cfg, "--set", "interval=100000000y"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("interval"), "{}", text(&out));
}

#[test]
fn data_cannot_forge_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "services.toml",
        "[[services]]\nname = \"web\"\nhost = \"10.0.0.1\\nINFO fake: deregistered everything\"\nport = 80\nlabels = { rancon = \"\" }\n",
    );
    let cfg = static_config(dir.path(), "");
    let out = rancon()
        .args(["--config", &cfg, "--once"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("registered"), "{err}");
    assert!(
        !err.lines().any(|l| l.starts_with("INFO fake")),
        "a forged line: {err}"
    );
    assert!(err.contains("\\nINFO fake"), "escaped: {err}");
    let out = rancon()
        .args(["--config", &cfg, "--dry-run"])
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(!plan.lines().any(|l| l.starts_with("INFO fake")), "{plan}");
}

#[test]
fn opting_out_works_in_any_case() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "services.toml",
        "[[services]]\nname = \"web\"\nhost = \"10.0.0.1\"\nport = 80\nlabels = { \"rancon.Enable\" = \"False\" }\n[[services]]\nname = \"api\"\nhost = \"10.0.0.2\"\nport = 80\n",
    );
    let cfg = static_config(dir.path(), "");
    let out = rancon()
        .args(["--config", &cfg, "--once"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let file = fs::read_to_string(dir.path().join("traefik.toml")).unwrap();
    assert!(file.contains("api"), "{file}");
    assert!(!file.contains("web"), "opted out, yet registered: {file}");
}

fn routers(dir: &Path) -> usize {
    fs::read_to_string(dir.join("traefik.toml"))
        .map(|f| f.matches("[http.routers.").count())
        .unwrap_or(0)
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn force_lifts_the_guard_for_one_round_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    services(d, &["a", "b", "c", "d"], "rancon = \"\"");
    let cfg = static_config(d, "interval = \"200ms\"");
    let out = rancon()
        .args(["--config", &cfg, "--once"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(routers(d), 4);
    // 3 of 4 gone: over the guard's 0.5, but --force lets the first round through.
    services(d, &["a"], "rancon = \"\"");
    let log = d.join("rancon.log");
    let daemon = Child(
        std::process::Command::new(assert_cmd::cargo::cargo_bin("rancon"))
            .args(["--config", &cfg, "--force"])
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for("the forced round", || routers(d) == 1);
    services(d, &["a", "b", "c", "d"], "rancon = \"\"");
    wait_for("the next registrations", || routers(d) == 4);
    // The same removal again: this time the guard holds. Wait for a round that read the
    // shorter list (it trips the guard, or with the bug deregisters), not for a fixed time a
    // slow machine may spend before any round runs.
    let trips = || {
        fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("would deregister 3 of 4")
            .count()
    };
    let before = trips();
    services(d, &["a"], "rancon = \"\"");
    wait_for("a round over the shorter list", || {
        routers(d) != 4 || trips() > before
    });
    let held = routers(d);
    drop(daemon);
    assert_eq!(held, 4, "--force outlived its round");
}

fn signal(child: &Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// A daemon over the static services in `d` with `top` config, once its first round is done.
fn static_daemon(d: &std::path::Path, top: &str) -> (Child, String) {
    services(d, &["a"], "rancon = \"\"");
    let cfg = static_config(d, top);
    let daemon = Child(
        std::process::Command::new(assert_cmd::cargo::cargo_bin("rancon"))
            .args(["--config", &cfg])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the first round", || routers(d) == 1);
    (daemon, cfg)
}

/// Gives the Traefik backend in `cfg` the default rule `Host(<host>)`, then sends SIGHUP.
fn reload_with_rule(daemon: &Child, cfg: &str, host: &str) {
    let body = fs::read_to_string(cfg).unwrap();
    fs::write(
        cfg,
        body.replace(
            "type = \"traefik_file\"",
            &format!("type = \"traefik_file\"\ndefault_rule = \"Host(`{host}`)\""),
        ),
    )
    .unwrap();
    signal(daemon, "HUP");
}

/// Waits until the Traefik file carries a router for `host` (a reloaded rule applied).
fn wait_for_rule(d: &Path, what: &str, host: &str) {
    let out = d.join("traefik.toml");
    wait_for(what, || {
        fs::read_to_string(&out).is_ok_and(|f| f.contains(host))
    });
}

/// SIGTERM, and the daemon exits 0.
fn stop_cleanly(daemon: &mut Child) {
    signal(daemon, "TERM");
    assert_eq!(daemon.0.wait().unwrap().code(), Some(0));
}

#[test]
fn sighup_reloads_a_valid_config_and_keeps_the_running_one_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (mut daemon, cfg) = static_daemon(d, "interval = \"200ms\"");
    // A new rule template in the file: applied after SIGHUP.
    reload_with_rule(&daemon, &cfg, "reloaded.example");
    wait_for_rule(d, "the reloaded rule", "reloaded.example");
    // A broken file: the running configuration stays, and rounds go on.
    fs::write(&cfg, "interval = \"5 parsecs\"\n").unwrap();
    signal(&daemon, "HUP");
    services(d, &["a", "b"], "rancon = \"\"");
    wait_for("rounds after a failed reload", || routers(d) == 2);
    assert!(
        daemon.0.try_wait().unwrap().is_none(),
        "SIGHUP killed the daemon"
    );
    stop_cleanly(&mut daemon);
}

/// A reload applies at once: with an interval of an hour, the reloaded configuration's round
/// runs right after SIGHUP, not at the next interval.
#[test]
fn a_reloaded_configuration_applies_at_once_not_an_interval_later() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (mut daemon, cfg) = static_daemon(d, "interval = \"1h\"");
    reload_with_rule(&daemon, &cfg, "now.example");
    wait_for_rule(d, "the reloaded rule, well before the hour", "now.example");
    stop_cleanly(&mut daemon);
}

/// `GET path` on 127.0.0.1:`port`: the answer's status line.
fn status_line(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: rancon\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    answer.lines().next().unwrap_or_default().to_string()
}

/// A reload that lengthens `interval` lengthens how long `/health` waits for a round (its
/// default follows `interval`): the status kept the first configuration's wait, so `/health`
/// answered 503 between two healthy rounds and an orchestrator would restart a healthy rancon.
#[test]
fn a_reload_that_lengthens_the_interval_keeps_health_passing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_port();
    let top =
        format!("interval = \"1s\"\n[http]\nlisten = \"127.0.0.1:{port}\"\nhangup_after = \"1s\"");
    let (mut daemon, cfg) = static_daemon(d, &top);
    // An hour between rounds, and /health's wait its default (3 h + 1 m).
    let body = fs::read_to_string(&cfg)
        .unwrap()
        .replace("interval = \"1s\"", "interval = \"1h\"")
        .replace("hangup_after = \"1s\"\n", "");
    fs::write(&cfg, body).unwrap();
    reload_with_rule(&daemon, &cfg, "long.example");
    wait_for_rule(d, "the reloaded configuration's round", "long.example");
    // No round for an hour now: past the first configuration's wait (1 s), well within the
    // reloaded one's. A slower machine only waits longer.
    std::thread::sleep(Duration::from_millis(2500));
    let health = status_line(port, "/health");
    signal(&daemon, "TERM");
    assert_eq!(daemon.0.wait().unwrap().code(), Some(0));
    assert!(health.contains(" 200 "), "{health}");
}

/// A second SIGTERM while the first waits for the round in flight exits at once (status 1),
/// without the round's writes. The services file is a FIFO: start-up reads it once (to check
/// it), then the first round opens it and never gets its content, so it stays inside its read.
#[test]
fn a_second_signal_exits_at_once() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fifo = d.join("services.toml");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let port = free_port();
    let cfg = static_config(
        d,
        &format!(
            "interval = \"1h\"\nshutdown_timeout = \"1h\"\n[http]\nlisten = \"127.0.0.1:{port}\""
        ),
    );
    let mut daemon = Child(
        std::process::Command::new(assert_cmd::cargo::cargo_bin("rancon"))
            .args(["--config", &cfg])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    fs::File::options()
        .write(true)
        .open(&fifo)
        .unwrap()
        .write_all(b"[[services]]\nname = \"a\"\nhost = \"10.0.0.1\"\nport = 80\n")
        .unwrap();
    // Start-up's read is over (and its end of the FIFO closed) once the endpoint listens:
    // a writer opening the FIFO before that would feed start-up, not the round.
    wait_for("the endpoint, after start-up", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let _round = fs::File::options().write(true).open(&fifo).unwrap();
    signal(&daemon, "TERM");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        daemon.0.try_wait().unwrap().is_none(),
        "the first signal waits for the round"
    );
    signal(&daemon, "TERM");
    wait_for("exit on the second signal", || {
        daemon.0.try_wait().unwrap().is_some()
    });
    assert_eq!(daemon.0.wait().unwrap().code(), Some(1));
    assert!(!d.join("traefik.toml").exists());
}

/// A label edited into a bad template skips that service — and keeps what it had registered.
#[test]
fn a_skipped_service_keeps_its_registration() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    services(d, &["a", "b"], "rancon = \"\"");
    let cfg = static_config(d, "max_deregister_fraction = 1.0");
    let once = || {
        rancon()
            .args(["--config", &cfg, "--once"])
            .output()
            .unwrap()
    };
    assert_eq!(once().status.code(), Some(0));
    assert_eq!(routers(d), 2);
    write(
        d,
        "services.toml",
        "[[services]]\nname = \"a\"\nhost = \"10.0.0.1\"\nport = 80\nlabels = { rancon = \"\" }\n[[services]]\nname = \"b\"\nhost = \"10.0.0.2\"\nport = 80\nlabels = { \"rancon.name\" = \"%NOPE%\" }\n",
    );
    let out = once();
    assert!(
        text(&out).contains("%NOPE%"),
        "the skip is warned: {}",
        text(&out)
    );
    let file = fs::read_to_string(d.join("traefik.toml")).unwrap();
    assert!(
        file.contains("10.0.0.2"),
        "b's registration was removed: {file}"
    );
}
