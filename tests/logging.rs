//! Logs as a container platform reads them: the format and level as configuration keys, JSON
//! lines that are valid JSON with unique keys, fatal errors in the chosen format, `-v` showing
//! rancon's decisions before any dependency's, and a bad `RANCON_LOG` refused.

#[allow(dead_code)]
mod support;

use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::process::{Command, Output, Stdio};
use support::consul::Consul;
use support::consul_setup::Setup;

/// The binary with exactly `env` (nothing inherited).
fn rancon(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("rancon"));
    c.args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    c
}

async fn output(mut c: Command) -> Output {
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Environment variables of one case.
type Env<'a> = Vec<(&'a str, &'a str)>;

/// A JSON value that refuses an object holding one key twice (serde_json keeps the last).
struct Unique;

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Unique;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_unit<E>(self) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
        while seq.next_element::<Unique>()?.is_some() {}
        Ok(Unique)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(k) = map.next_key::<String>()? {
            if !seen.insert(k.clone()) {
                return Err(A::Error::custom(format!("duplicate key {k:?}")));
            }
            map.next_value::<Unique>()?;
        }
        Ok(Unique)
    }
}

/// Every stderr line as JSON, each checked for duplicate keys.
fn json_lines(o: &Output) -> Vec<Value> {
    let text = stderr(o);
    assert!(!text.trim().is_empty(), "no log lines");
    text.lines()
        .map(|l| {
            serde_json::from_str::<Unique>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            serde_json::from_str(l).unwrap()
        })
        .collect()
}

/// A Consul agent and a config registering two services in it.
async fn consul_setup() -> (Consul, Setup, String) {
    let c = Consul::start(1).await;
    let s = Setup::new();
    s.services(&[
        ("web", "10.0.0.5", 80, &[]),
        ("db", "10.0.0.6", 5432, &[("rancon.name", "%MISSING%")]),
    ]);
    let cfg = s
        .config("", &format!("url = {:?}", c.url(0)))
        .display()
        .to_string();
    (c, s, cfg)
}

#[tokio::test(flavor = "multi_thread")]
async fn json_lines_are_valid_json_with_unique_keys_and_name_their_spans() {
    let (c, _s, cfg) = consul_setup().await;
    let out = output(rancon(
        &["--once", "--log-format", "json", "-v", "--config", &cfg],
        &[],
    ))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(c.agent_services(0).len(), 1);
    let lines = json_lines(&out);
    // `registered` is logged inside the backend's span, which has a field `name` too.
    let registered = lines
        .iter()
        .find(|l| l["fields"]["message"] == "registered")
        .unwrap_or_else(|| panic!("no registered line: {lines:?}"));
    assert_eq!(registered["level"], "INFO");
    assert_eq!(registered["fields"]["name"], "web");
    assert_eq!(registered["spans"][0]["name"], "backend");
    assert_eq!(registered["spans"][0]["fields"]["name"], "consul");
}

/// `[log] format`, `RANCON_LOG__FORMAT`, `--set log.format` and `RANCON_LOG_FORMAT` all choose
/// JSON; `--log-format` wins over all of them.
#[tokio::test(flavor = "multi_thread")]
async fn the_format_is_a_configuration_key_and_the_flag_wins() {
    let (_c, s, cfg) = consul_setup().await;
    let with_log = s.path("with-log.toml");
    std::fs::write(
        &with_log,
        std::fs::read_to_string(&cfg).unwrap() + "\n[log]\nformat = \"json\"\n",
    )
    .unwrap();
    let with_log = with_log.display().to_string();
    let cases: Vec<(Vec<&str>, Env)> = vec![
        (vec!["--config", &with_log], vec![]),
        (vec!["--config", &cfg], vec![("RANCON_LOG__FORMAT", "json")]),
        (vec!["--config", &cfg, "--set", "log.format=json"], vec![]),
        (vec!["--config", &cfg], vec![("RANCON_LOG_FORMAT", "json")]),
    ];
    for (args, env) in cases {
        let args: Vec<&str> = args.into_iter().chain(["--dry-run"]).collect();
        let out = output(rancon(&args, &env)).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?} {env:?}: {}",
            stderr(&out)
        );
        let lines = json_lines(&out);
        assert!(
            lines.iter().any(|l| l["fields"]["message"] == "round done"),
            "{args:?} {env:?}: {lines:?}"
        );
    }
    let out = output(rancon(
        &["--config", &with_log, "--dry-run", "--log-format", "text"],
        &[("RANCON_LOG_FORMAT", "json")],
    ))
    .await;
    let err = stderr(&out);
    assert!(
        err.contains(" INFO ") && !err.lines().any(|l| l.starts_with('{')),
        "{err}"
    );
}

/// A configuration error ends the command in the chosen format: one JSON line naming each
/// problem's key and origin; as text, the usual `error:` report.
#[tokio::test(flavor = "multi_thread")]
async fn fatal_configuration_errors_follow_the_chosen_format() {
    let (_c, _s, cfg) = consul_setup().await;
    let env = [
        ("RANCON_LOG__FORMAT", "json"),
        ("RANCON_INTERVAL", "5 parsecs"),
    ];
    let out = output(rancon(&["--once", "--config", &cfg], &env)).await;
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let lines = json_lines(&out);
    let last = lines.last().unwrap();
    assert_eq!(last["level"], "ERROR");
    let problems = last["fields"]["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["key"] == "interval" && p["origin"] == "env RANCON_INTERVAL"),
        "{last}"
    );
    // `check` too (its ✓/✗ report is on stdout; the error on stderr).
    let out = output(rancon(&["check", "--config", &cfg], &env)).await;
    assert_eq!(out.status.code(), Some(78));
    assert_eq!(json_lines(&out).last().unwrap()["level"], "ERROR");
    let out = output(rancon(
        &["--once", "--config", &cfg],
        &[("RANCON_INTERVAL", "5 parsecs")],
    ))
    .await;
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).starts_with("error: invalid configuration"),
        "{}",
        stderr(&out)
    );
}

/// `-v` adds rancon's own decisions at debug (what it listed and skipped and why, what needs
/// no write); every dependency stays at warn. Without `-v` there is no debug line at all.
#[tokio::test(flavor = "multi_thread")]
async fn verbose_shows_rancons_decisions_and_no_dependency_noise() {
    let (_c, _s, cfg) = consul_setup().await;
    let run = |extra: &'static [&'static str]| {
        let mut args = vec!["--once", "--log-format", "json", "--config", &cfg];
        args.extend_from_slice(extra);
        output(rancon(&args, &[]))
    };
    let quiet = json_lines(&run(&[]).await);
    assert!(!quiet.iter().any(|l| l["level"] == "DEBUG"), "{quiet:?}");
    let verbose = json_lines(&run(&["-v"]).await);
    let debug: Vec<&Value> = verbose.iter().filter(|l| l["level"] == "DEBUG").collect();
    for l in &debug {
        let target = l["target"].as_str().unwrap();
        assert!(target.starts_with("rancon"), "dependency noise at -v: {l}");
    }
    let says = |msg: &str| debug.iter().any(|l| l["fields"]["message"] == msg);
    assert!(says("listed"), "{debug:?}");
    assert!(says("unchanged: no write needed"), "{debug:?}");
    let skip = debug
        .iter()
        .find(|l| l["fields"]["message"] == "skipped")
        .unwrap_or_else(|| panic!("no skipped line: {debug:?}"));
    assert!(
        skip["fields"]["why"].as_str().unwrap().contains("MISSING"),
        "{skip}"
    );
}

/// `log.level` takes a level for rancon's logs; an invalid one is a configuration error.
#[tokio::test(flavor = "multi_thread")]
async fn the_level_is_a_configuration_key_and_is_checked() {
    let (_c, _s, cfg) = consul_setup().await;
    let out = output(rancon(
        &["--once", "--log-format", "json", "--config", &cfg],
        &[("RANCON_LOG__LEVEL", "debug")],
    ))
    .await;
    assert!(
        json_lines(&out)
            .iter()
            .any(|l| l["fields"]["message"] == "unchanged: no write needed"),
        "{}",
        stderr(&out)
    );
    let out = output(rancon(
        &["check", "--config", &cfg, "--set", "log.level=rancon=loud"],
        &[],
    ))
    .await;
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert!(
        err.contains("log.level") && err.contains("--set log.level"),
        "{err}"
    );
}

/// An invalid `RANCON_LOG` filter or `RANCON_LOG_FORMAT` value is refused (exit 78, naming
/// the variable), not silently replaced by the default.
#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_rancon_log_is_a_configuration_error() {
    let (_c, _s, cfg) = consul_setup().await;
    for (var, value) in [("RANCON_LOG", "rancon=loud"), ("RANCON_LOG_FORMAT", "xml")] {
        let out = output(rancon(&["check", "--config", &cfg], &[(var, value)])).await;
        assert_eq!(out.status.code(), Some(78), "{var}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("env {var}")),
            "{}",
            stderr(&out)
        );
    }
    // A valid filter is taken as written.
    let out = output(rancon(
        &["--once", "--config", &cfg],
        &[("RANCON_LOG", "rancon::report_print=debug")],
    ))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("DEBUG") && !err.contains("round done"),
        "{err}"
    );
}
