//! The binary as operators call it: exit codes, error text with key and origin, schema drift.

#[allow(dead_code)]
mod support;

use assert_cmd::Command;
use predicates::prelude::*;
use std::fs;
use std::time::{Duration, Instant};
use support::process::free_port;

/// Waits until `ok` holds, for at most 30 s (a deadline, not a measurement).
fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn rancon() -> Command {
    let mut c = Command::cargo_bin("rancon").unwrap();
    c.env_remove("RANCON_CONFIG").env_remove("RANCON_LOG");
    c
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    fs::write(&p, text).unwrap();
    p.display().to_string()
}

const GOOD: &str = r#"
[sources.ext]
type = "static"
services = [{ name = "db", host = "10.0.0.5", port = 5432 }]
[backends.traefik]
type = "traefik_file"
path = "OUT"
"#;

fn good(dir: &tempfile::TempDir) -> String {
    let out = dir.path().join("out.toml").display().to_string();
    write(dir, "good.toml", &GOOD.replace("OUT", &out))
}

#[test]
fn schema_output_matches_the_committed_schema() {
    let out = rancon().arg("schema").output().unwrap();
    assert!(out.status.success());
    let committed = fs::read_to_string("schemas/rancon.schema.json").unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        committed,
        "schemas/rancon.schema.json drifted: run `cargo run -- schema > schemas/rancon.schema.json`"
    );
}

#[test]
fn check_accepts_a_good_config() {
    let dir = tempfile::tempdir().unwrap();
    rancon()
        .args(["check", "--config", &good(&dir)])
        .assert()
        .code(0)
        .stdout(
            predicate::str::contains("✓ validated")
                .and(predicate::str::contains("resolved configuration")),
        );
}

/// (extra args, env vars, key named, origin named).
type Case = (
    Vec<String>,
    Vec<(&'static str, &'static str)>,
    &'static str,
    &'static str,
);

/// Each class of bad input exits 78 and names the key and where the value came from.
#[test]
fn bad_inputs_exit_78_naming_key_and_origin() {
    let dir = tempfile::tempdir().unwrap();
    let g = good(&dir);
    let cases: Vec<Case> = vec![
        // (args, env, key, origin)
        (
            vec!["--set".into(), "bogus=1".into()],
            vec![],
            "bogus",
            "--set bogus",
        ),
        (
            vec![],
            vec![("RANCON_INTERVAL", "5 parsecs")],
            "interval",
            "env RANCON_INTERVAL",
        ),
        (
            vec!["--set".into(), "max_deregister_fraction=most".into()],
            vec![],
            "max_deregister_fraction",
            "--set max_deregister_fraction",
        ),
        (
            vec![
                "--set".into(),
                "backends.traefik.default_rule=Host(%NAME)".into(),
            ],
            vec![],
            "backends.traefik.default_rule",
            "--set backends.traefik.default_rule",
        ),
        (
            vec![
                "--set".into(),
                r#"backends.traefik.sources=["nope"]"#.into(),
            ],
            vec![],
            "backends.traefik.sources[0]",
            "(from --set backends.traefik.sources",
        ),
        (
            vec![
                "--set".into(),
                "sources.ext.file=/no/such/services.toml".into(),
            ],
            vec![],
            "sources.ext.file",
            "--set sources.ext.file",
        ),
        (
            vec![
                "--set".into(),
                "backends.traefik.path=/no/such/dir/out.toml".into(),
            ],
            vec![],
            "backends.traefik.path",
            "(from --set backends.traefik.path)",
        ),
    ];
    for (args, env, key, origin) in cases {
        let mut cmd = rancon();
        cmd.args(["check", "--config", &g]).args(&args);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{args:?} {env:?}: {stderr}");
        assert!(
            stderr.contains(&format!("- {key}:")),
            "{key} not named: {stderr}"
        );
        assert!(stderr.contains(origin), "origin {origin} missing: {stderr}");
    }
}

#[test]
fn file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(&dir, "bad.toml", "interval = 5\n");
    rancon()
        .args(["check", "--config", &bad])
        .assert()
        .code(78)
        .stderr(predicate::str::contains("interval").and(predicate::str::contains(&bad)));
    rancon()
        .args(["check", "--config", "/no/such/rancon.toml"])
        .assert()
        .code(78)
        .stderr(predicate::str::contains("/no/such/rancon.toml"));
}

#[test]
fn several_problems_are_reported_together() {
    let dir = tempfile::tempdir().unwrap();
    let g = good(&dir);
    let out = rancon()
        .args([
            "check",
            "--config",
            &g,
            "--set",
            "owner=Bad Owner",
            "--set",
            "name=%oops",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr.contains("2 problems"), "{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    rancon().arg("--no-such-flag").assert().code(2);
}

#[test]
fn run_once_writes_and_dry_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let g = good(&dir);
    let out = dir.path().join("out.toml");
    rancon()
        .args(["--config", &g, "--dry-run", "--output", "json"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("\"db@10.0.0.5:5432\""));
    assert!(!out.exists(), "dry run wrote the file");
    rancon()
        .args(["run", "--config", &g, "--once"])
        .assert()
        .code(0);
    assert!(
        fs::read_to_string(&out)
            .unwrap()
            .contains("http://10.0.0.5:5432")
    );
}

#[test]
fn a_broken_services_file_is_a_config_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let services = write(&dir, "svc.toml", "not [valid toml");
    let g = good(&dir);
    rancon()
        .args([
            "--config",
            &g,
            "--once",
            "--set",
            &format!("sources.ext.file={services}"),
        ])
        .assert()
        .code(78)
        .stderr(predicate::str::contains("sources.ext.file"));
}

#[test]
fn check_masks_secrets_and_conventional_env_fills_unset_fields() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.toml").display().to_string();
    let cfg = write(
        &dir,
        "r.toml",
        &format!(
            "[sources.rancher]\ntype = \"rancher\"\n[backends.t]\ntype = \"traefik_file\"\npath = {out:?}\n"
        ),
    );
    let output = rancon()
        .args(["check", "--config", &cfg])
        .env("RANCHER_URL", "http://127.0.0.1:9/v2-beta")
        .env("RANCHER_ACCESS_KEY", "AK123")
        .env("RANCHER_SECRET_KEY", "sk-topsecret")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("http://127.0.0.1:9/v2-beta") && stdout.contains("AK123"),
        "{stdout}"
    );
    assert!(stdout.contains("secret_key = \"***\""), "{stdout}");
    assert!(!stdout.contains("sk-topsecret") && !stderr.contains("sk-topsecret"));

    // Without RANCHER_URL the missing url is named.
    rancon()
        .args(["check", "--config", &cfg])
        .env_remove("RANCHER_URL")
        .assert()
        .code(78)
        .stderr(predicate::str::contains("sources.rancher.url"));
}

#[test]
fn sigterm_in_continuous_mode_exits_0_after_the_round() {
    let dir = tempfile::tempdir().unwrap();
    let g = good(&dir);
    let out = dir.path().join("out.toml");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("rancon"))
        .args(["--config", &g, "--set", "interval=200ms"])
        .env_remove("RANCON_CONFIG")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait (bounded) for the first round to have written its file.
    wait_for("the first round's file", || out.exists());
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

/// SIGTERM while a round is in flight: the round finishes its writes, then rancon exits 0.
/// The services file is a FIFO, so the round provably waits inside the source's read when
/// the signal lands: opening a FIFO for writing returns only once the reader has opened it.
#[test]
fn sigterm_mid_round_lets_the_round_write_then_exits_0() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("services.toml");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let out = dir.path().join("out.toml");
    let cfg = write(
        &dir,
        "c.toml",
        &format!(
            "[sources.s]\ntype = \"static\"\nfile = {:?}\n[backends.t]\ntype = \"traefik_file\"\npath = {:?}\n",
            fifo.display().to_string(),
            out.display().to_string()
        ),
    );
    let services = "[[services]]\nname = \"web\"\nhost = \"10.0.0.1\"\nport = 80\n";
    let port = free_port();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("rancon"))
        .args(["--config", &cfg, "--set", "interval=1h"])
        .args(["--set", &format!("http.listen=127.0.0.1:{port}")])
        .env_remove("RANCON_CONFIG")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Start-up validation reads the file once.
    fs::File::options()
        .write(true)
        .open(&fifo)
        .unwrap()
        .write_all(services.as_bytes())
        .unwrap();
    // Validation has seen the end of the file (and closed it) once the endpoint listens: a
    // writer opening the FIFO before that would feed validation, not the round.
    wait_for("the endpoint, after start-up", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    // The first round opens it again: from here on the round is in flight.
    let mut round = fs::File::options().write(true).open(&fifo).unwrap();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!out.exists(), "the round had not written yet");
    round.write_all(services.as_bytes()).unwrap();
    drop(round);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let written = fs::read_to_string(&out).expect("the round in flight wrote its file");
    assert!(written.contains("10.0.0.1"), "{written}");
}

#[test]
fn independent_shape_errors_are_reported_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        &dir,
        "bad.toml",
        "interval = \"5 parsecs\"\nbogus = 1\nowner = 5\n[sources.a]\ntype = \"static\"\nservices = [{ name = \"a\", host = \"h\", port = \"x\" }]\n[backends.t]\ntype = \"traefik_file\"\npth = \"x.toml\"\n",
    );
    let out = rancon().args(["check", "--config", &bad]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78));
    for key in [
        "- interval:",
        "- bogus:",
        "- owner:",
        "- sources.a.services[0].port:",
        "- backends.t.pth:",
        "- backends.t.path:",
    ] {
        assert!(stderr.contains(key), "{key} missing: {stderr}");
    }
    assert_eq!(
        stderr.matches(&bad).count(),
        6,
        "every problem names the file: {stderr}"
    );
}
