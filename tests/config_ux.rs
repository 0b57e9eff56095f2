//! What a user sees of the configuration at the binary: options anywhere on the command line,
//! values read by their key's type, and error reports (each problem once, at its full path,
//! with its origin, a did-you-mean, and the README's example true).

use assert_cmd::Command;
use std::fs;

/// The binary with an empty environment (no stray `RANCON_*`, `CONSUL_*` or `RANCHER_*`).
fn rancon() -> Command {
    let mut c = Command::cargo_bin("rancon").unwrap();
    c.env_clear();
    c
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// A valid file: a static source into a Traefik file and a Consul backend.
fn good(dir: &tempfile::TempDir) -> String {
    let out = dir.path().join("out.toml").display().to_string();
    write(
        dir,
        "good.toml",
        &format!(
            r#"
[sources.s]
type = "static"
services = [{{ name = "web", host = "10.0.0.5", port = 8080 }}]
[backends.t]
type = "traefik_file"
path = "{out}"
[backends.c]
type = "consul"
"#
        ),
    )
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// The problem lines of a report (`  - key: message (from origin)`).
fn problems(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("  - "))
        .collect()
}

#[test]
fn options_are_global_before_or_after_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let g = good(&dir);
    for args in [
        vec!["--config", &g, "check"],
        vec!["check", "--config", &g],
        vec!["-v", "check", "--config", &g],
        vec!["--config", &g, "-q", "check", "-v"],
        vec!["--set", "owner=shop", "--config", &g, "check"],
    ] {
        let r = run(rancon().args(&args));
        assert_eq!(r.code, Some(0), "{args:?}: {}", r.stderr);
        assert!(r.stdout.contains("✓ validated"), "{args:?}: {}", r.stdout);
    }
    let r = run(rancon().args(["--set", "owner=shop", "--config", &g, "check"]));
    assert!(r.stdout.contains("owner = \"shop\""), "{}", r.stdout);
    // `run` and the default command take them too.
    let out = dir.path().join("run-out.toml");
    let only_file = write(
        &dir,
        "run.toml",
        &format!(
            "[sources.s]\ntype = \"static\"\nservices = [{{ name = \"web\", host = \"10.0.0.5\", port = 8080 }}]\n[backends.t]\ntype = \"traefik_file\"\npath = {:?}\n",
            out.display().to_string()
        ),
    );
    for args in [
        vec![
            "--set",
            "owner=shop",
            "--config",
            &only_file,
            "run",
            "--once",
        ],
        vec!["--once", "--config", &only_file, "--set", "owner=shop"],
    ] {
        let _ = fs::remove_file(&out);
        let r = run(rancon().args(&args));
        assert_eq!(r.code, Some(0), "{args:?}: {}", r.stderr);
        assert!(out.exists(), "{args:?}: the round wrote its file");
    }
    // `run`'s own options before another command: a usage error, not ignored.
    let r = run(rancon().args(["--once", "--config", &g, "check"]));
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("belong to `run`"), "{}", r.stderr);
    // The original form is still recognised before clap.
    let r = run(rancon().args(["-w10", "rancher", "consul", "-s", "url=ftp://rancher"]));
    assert_eq!(r.code, Some(78), "{}", r.stderr);
    assert!(
        r.stderr.contains("- sources.rancher.url:")
            && r.stderr.contains("--set sources.rancher.url"),
        "{}",
        r.stderr
    );
}

#[test]
fn text_values_are_read_by_the_type_of_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let g = good(&dir);
    let r = run(rancon()
        .args(["check", "--config", &g])
        // Text keys take the text as it is.
        .env("RANCON_OWNER", "2024")
        .env("RANCON_BACKENDS__C__DATACENTER", "1")
        .env("RANCON_BACKENDS__C__TOKEN", "true")
        .env("RANCON_NAME", "007")
        // Map keys keep their case; component names are lowered.
        .env("RANCON_BACKENDS__C__META__Team", "core")
        // Other keys read TOML.
        .env("RANCON_MAX_DEREGISTER_FRACTION", "1")
        .env("RANCON_HTTP__ENABLED", "true")
        .env("RANCON_BACKENDS__C__TAGS", "[\"a\", \"b\"]")
        .env("RANCON_BACKENDS__C__CONCURRENCY", "4")
        .env("RANCON_INTERVAL", "45s"));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for line in [
        "owner = \"2024\"",
        "datacenter = \"1\"",
        "token = \"***\"",
        "name = \"007\"",
        "Team = \"core\"",
        "max_deregister_fraction = 1.0",
        "enabled = true",
        "tags = [\"a\", \"b\"]",
        "concurrency = 4",
        "interval = \"45s\"",
    ] {
        assert!(r.stdout.contains(line), "{line} missing:\n{}", r.stdout);
    }
    // The same through --set; a quoted TOML string is its content (the old workaround).
    let r = run(rancon().args([
        "check",
        "--config",
        &g,
        "--set",
        "owner=2024",
        "--set",
        "backends.c.datacenter=\"1\"",
        "--set",
        "backends.c.meta.Team=core",
    ]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for line in ["owner = \"2024\"", "datacenter = \"1\"", "Team = \"core\""] {
        assert!(r.stdout.contains(line), "{line} missing:\n{}", r.stdout);
    }
    let r = run(rancon()
        .args(["check", "--config", &g])
        .env("RANCON_OWNER", "\"2024\""));
    assert!(r.stdout.contains("owner = \"2024\""), "{}", r.stdout);
    // The variables of other tools are text too.
    let r = run(rancon()
        .args(["check", "--config", &g])
        .args(["--set", "sources.r.type=rancher"])
        .env("RANCHER_URL", "http://rancher:8080/v2-beta")
        .env("RANCHER_ACCESS_KEY", "true")
        .env("RANCHER_SECRET_KEY", "1234")
        .env("CONSUL_HTTP_TOKEN", "5678"));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("access_key = \"true\""), "{}", r.stdout);
    assert!(!r.stdout.contains("1234") && !r.stdout.contains("5678"));
}

/// Four mistakes, each in a place serde used to report wrongly, twice, or not at all.
#[test]
fn each_problem_once_at_its_full_path_with_its_origin() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        &dir,
        "bad.toml",
        r#"
[sources.s]
type = "static"
services = [{ name = "a", host = "h", port = 1 }, { name = "b", host = "h", port = 2 }, { name = "c", host = "h", port = "x" }]
[backends.c]
type = "consul"
tls = { ca_file = 5 }
[http]
enabled = "yes"
[leader]
backend = "c"
ttl = 5
"#,
    );
    let r = run(rancon()
        .args(["check", "--config", &bad])
        .env("RANCON_HTTP__LISTEN", "nowhere"));
    assert_eq!(r.code, Some(78), "{}", r.stderr);
    let from = format!("(from file {bad})");
    let mut got = problems(&r.stderr);
    got.sort();
    let want = [
        format!(
            "backends.c.tls.ca_file: invalid type: found signed int `5`, expected path string {from}"
        ),
        format!("http.enabled: invalid type: found string \"yes\", expected a boolean {from}"),
        "http.listen: invalid socket address syntax (from env RANCON_HTTP__LISTEN)".to_string(),
        format!("leader.ttl: invalid type: found signed int `5`, expected a duration {from}"),
        format!(
            "sources.s.services[2].port: invalid type: found string \"x\", expected u16 {from}"
        ),
    ];
    assert_eq!(got, want, "{}", r.stderr);
}

#[test]
fn conventional_variables_are_named_as_origins() {
    let dir = tempfile::tempdir().unwrap();
    let g = good(&dir);
    let r = run(rancon()
        .args(["check", "--config", &g, "--set", "sources.r.type=rancher"])
        .env("RANCHER_URL", "ftp://rancher")
        .env("CONSUL_HTTP_ADDR", "consul.example.com:8501")
        .env("CONSUL_HTTP_SSL", "true")
        .env("CONSUL_CACERT", "/no/such/ca.pem")
        .env("CONSUL_CLIENT_CERT", "/no/such/cert.pem"));
    assert_eq!(r.code, Some(78), "{}", r.stderr);
    let got = problems(&r.stderr);
    for want in [
        "sources.r.url: \"ftp://rancher\" must be an http:// or https:// URL (from env RANCHER_URL)",
        "backends.c.tls.ca_file: /no/such/ca.pem does not exist (from env CONSUL_CACERT)",
        "backends.c.tls.cert_file: /no/such/cert.pem does not exist (from env CONSUL_CLIENT_CERT)",
    ] {
        assert!(got.contains(&want), "{want}\nnot in:\n{}", r.stderr);
    }
    // A value built from two variables names both, and a default says so.
    let r = run(rancon()
        .args(["check", "--config", &g, "--set", "backends.c.mode=catalog"])
        .env("CONSUL_HTTP_ADDR", "%HOST%:8501")
        .env("CONSUL_HTTP_SSL", "true"));
    assert!(
        r.stderr
            .contains("(from env CONSUL_HTTP_ADDR, CONSUL_HTTP_SSL)"),
        "{}",
        r.stderr
    );
    let r = run(rancon().args(["check", "--config", &g, "--set", "backends.c.node= "]));
    assert!(
        r.stderr
            .contains("- backends.c.node: must not be empty (from --set backends.c.node)"),
        "{}",
        r.stderr
    );
    let r = run(rancon().args(["check", "--config", &g, "--set", "backends.c.concurrency=0"]));
    assert!(
        r.stderr.contains("(from --set backends.c.concurrency)"),
        "{}",
        r.stderr
    );
    let empty = write(&dir, "empty.toml", "owner = \"x\"\n");
    let r = run(rancon().args(["check", "--config", &empty]));
    assert!(
        r.stderr.contains(
            "- sources: no source configured: add a [sources.<name>] table (or set RANCHER_URL \
             and CONSUL_HTTP_ADDR, with neither sources nor backends, for the zero-config \
             start) (from default)"
        ),
        "{}",
        r.stderr
    );
}

#[test]
fn load_errors_do_not_hide_validation_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.toml").display().to_string();
    let bad = write(
        &dir,
        "bad.toml",
        &format!(
            r#"
interval = "5 parsecs"
owner = "Bad Owner"
[sources.s]
type = "static"
services = [{{ name = "a", host = "h", port = "x" }}]
[backends.t]
type = "traefik_file"
path = "{out}"
default_rule = "%oops"
sources = ["s", "gone"]
"#
        ),
    );
    let check = run(rancon().args(["check", "--config", &bad]));
    assert!(
        check.stdout.contains("✗ load") && check.stdout.contains("✗ validate"),
        "{}",
        check.stdout
    );
    // `check` and every other command (`run` loads the same way, and so does SIGHUP).
    for r in [
        check,
        run(rancon().args(["--config", &bad, "run", "--once"])),
    ] {
        assert_eq!(r.code, Some(78));
        let keys: Vec<&str> = problems(&r.stderr)
            .iter()
            .map(|p| p.split(':').next().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "interval",
                "sources.s.services[0].port",
                "owner",
                "backends.t.sources[1]",
                "backends.t.default_rule",
            ],
            "the unreadable source is not also reported as missing: {}",
            r.stderr
        );
    }
}

#[test]
fn unknown_keys_and_types_get_a_did_you_mean() {
    let dir = tempfile::tempdir().unwrap();
    let g = good(&dir);
    let r = run(rancon()
        .args(["check", "--config", &g])
        .args([
            "--set",
            "backends.t.pth=x.toml",
            "--set",
            "sources.s.type=statik",
        ])
        .env("RANCON_INTERVALL", "5s"));
    assert_eq!(r.code, Some(78));
    let got = problems(&r.stderr);
    for want in [
        "intervall: unknown key `intervall`; did you mean `interval`? (from env RANCON_INTERVALL)",
        "backends.t.pth: unknown key `pth`; did you mean `path`? (from --set backends.t.pth)",
        "sources.s.type: unknown type `statik`; did you mean `static`? (from --set sources.s.type)",
    ] {
        assert!(got.contains(&want), "{want}\nnot in:\n{}", r.stderr);
    }
    // Nothing close: the known keys are listed.
    let r = run(rancon().args(["check", "--config", &g, "--set", "zzz=1"]));
    assert!(
        r.stderr
            .contains("unknown key `zzz`; expected one of `label_prefix`"),
        "{}",
        r.stderr
    );
}

/// Every component kind the schema knows reads its own fields (a kind read through serde's
/// tagged enum would report `sources.x`, not `sources.x.bogus`).
#[test]
fn every_component_kind_reports_the_field_inside_it() {
    let schema: serde_json::Value = serde_json::from_str(&rancon::app::schema()).unwrap();
    for (table, def) in [("sources", "SourceConfig"), ("backends", "BackendConfig")] {
        let kinds: Vec<&str> = schema["$defs"][def]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["properties"]["type"]["const"].as_str().unwrap())
            .collect();
        assert!(kinds.len() >= 2, "{kinds:?}");
        for kind in kinds {
            let r = run(rancon().args([
                "check",
                "--set",
                &format!("{table}.x.type={kind}"),
                "--set",
                &format!("{table}.x.bogus=1"),
            ]));
            assert!(
                r.stderr
                    .contains(&format!("- {table}.x.bogus: unknown key `bogus`")),
                "{kind}: {}",
                r.stderr
            );
        }
    }
}

/// The README's error example, run as written.
#[test]
fn the_readme_error_example_is_true() {
    let readme = fs::read_to_string("README.md").unwrap();
    let block = readme
        .split("```console\n")
        .skip(1)
        .map(|b| b.split("\n```").next().unwrap())
        .find(|b| b.contains("error: invalid configuration"))
        .expect("README has a console block with an error report");
    let (mut command, mut expected) = (String::new(), Vec::new());
    let mut lines = block.lines();
    for l in lines.by_ref() {
        let l = l.strip_prefix("$ ").unwrap_or(l);
        match l.strip_suffix('\\') {
            Some(part) => command.push_str(part),
            None => {
                command.push_str(l);
                break;
            }
        }
    }
    expected.extend(lines);
    let bin = assert_cmd::cargo::cargo_bin("rancon");
    let path = format!("{}:/usr/bin:/bin", bin.parent().unwrap().display());
    let out = std::process::Command::new("sh")
        .args(["-c", &command])
        .env_clear()
        .env("PATH", path)
        .output()
        .unwrap();
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout)
            .split("\nresolved configuration")
            .next()
            .unwrap(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        shown.trim_end().lines().collect::<Vec<_>>(),
        expected,
        "{command}"
    );
}
