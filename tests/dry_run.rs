//! `--dry-run` as an operator reads it: an update shows each changed field old → new, the JSON
//! plan holds what the registry holds and none of rancon's bookkeeping, and `--output` without
//! `--dry-run` is a usage error rather than silently ignored.

#[allow(dead_code)]
mod support;

use serde_json::Value;
use std::process::{Command, Output, Stdio};
use support::consul::Consul;
use support::consul_setup::Setup;

fn rancon(args: &[&str]) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("rancon"));
    c.args(args)
        .env_clear()
        .env("RANCON_LOG", "warn")
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

/// Every object key anywhere in a JSON value.
fn keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                out.push(k.clone());
                keys(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| keys(v, out)),
        _ => {}
    }
}

/// A Consul agent holding `web` (written by a first round), and a config whose next round
/// changes its port, tags, meta and check: the id is `%NAME%`, so it is one update.
async fn changed_web() -> (Consul, Setup, String) {
    let c = Consul::start(1).await;
    let s = Setup::new();
    let backend = format!("url = {:?}\nid = \"%NAME%\"", c.url(0));
    let cfg = s.config("owner = \"dry\"", &backend).display().to_string();
    s.services(&[(
        "web",
        "10.0.0.5",
        80,
        &[("rancon.tag", "blue"), ("rancon.meta.version", "1")],
    )]);
    let out = output(rancon(&["run", "--once", "--config", &cfg])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(c.agent_services(0).len(), 1);
    s.services(&[(
        "web",
        "10.0.0.5",
        81,
        &[
            ("rancon.tag", "green"),
            ("rancon.meta.version", "2"),
            ("rancon.check_http", "/health"),
        ],
    )]);
    (c, s, cfg)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_update_shows_each_changed_field_old_to_new() {
    let (c, _s, cfg) = changed_web().await;
    let writes = c.requests().1;
    let out = output(rancon(&["--dry-run", "--config", &cfg])).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert_eq!(c.requests().1, writes, "a dry run wrote");
    for want in [
        "  ~ web web 10.0.0.5:81",
        "      port: 80 → 81",
        r#"      tags: ["blue","rancon-dry"] → ["green","rancon-dry"]"#,
        "      meta.version: 1 → 2",
        "      check: (none) → [",
        "/health",
    ] {
        assert!(t.contains(want), "missing {want:?} in:\n{t}");
    }
    assert!(
        !t.contains("address:"),
        "an unchanged field is listed:\n{t}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_json_plan_has_the_changes_and_no_internal_keys() {
    let (_c, _s, cfg) = changed_web().await;
    let out = output(rancon(&["--dry-run", "--output", "json", "--config", &cfg])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let update = &v["backends"][0]["update"][0];
    assert_eq!(update["registration"]["port"], 81);
    assert_eq!(update["changes"]["port"]["old"], 80);
    assert_eq!(update["changes"]["port"]["new"], 81);
    assert_eq!(update["changes"]["meta.version"]["old"], "1");
    assert_eq!(update["changes"]["tags"]["new"][0], "green");
    assert!(update["changes"]["check"]["new"].is_array(), "{update}");
    assert_eq!(v["totals"]["updated"], 1);
    let mut all = Vec::new();
    keys(&v, &mut all);
    for internal in [
        "private",
        "location",
        "registry_id",
        "stale",
        "write_time",
        "write_ms",
    ] {
        assert!(
            !all.iter().any(|k| k == internal),
            "internal key {internal:?} in:\n{v:#}"
        );
    }
}

/// `--output` belongs to `--dry-run`: without it the command is refused (exit 2) before any
/// round, instead of writing with the option silently ignored.
#[tokio::test(flavor = "multi_thread")]
async fn output_without_dry_run_is_a_usage_error() {
    let (c, _s, cfg) = changed_web().await;
    let writes = c.requests().1;
    for args in [
        vec!["--output", "json", "--config", &cfg, "--once"],
        vec!["run", "--once", "--output", "json", "--config", &cfg],
    ] {
        let out = output(rancon(&args)).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains("--dry-run"), "{}", text(&out));
    }
    assert_eq!(c.requests().1, writes, "a refused command wrote");
}
