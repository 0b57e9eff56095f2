//! static → traefik_file end to end, through the real binary.

use assert_cmd::Command;
use std::fs;
use std::path::Path;

fn config(dir: &Path, out: &str, services: &Path) -> String {
    let p = dir.join("rancon.toml");
    fs::write(
        &p,
        format!(
            r#"
owner = "e2e"
[sources.apps]
type = "static"
file = {services:?}
[sources.ext]
type = "static"
services = [{{ name = "db", host = "10.0.0.5", port = 5432 }}]
[backends.traefik]
type = "traefik_file"
path = {out:?}
default_rule = "Host(`%NAME%.example.com`)"
entry_points = ["web", "websecure"]
"#,
            out = dir.join(out).display().to_string(),
            services = services.display().to_string()
        ),
    )
    .unwrap();
    p.display().to_string()
}

const SERVICES: &str = r#"
[[services]]
name = "web"
host = "10.0.0.10"
port = 8080
labels = { "rancon.stack" = "shop", "rancon.name" = "%NAME%-%STACK%" }
[[services]]
name = "web"
host = "10.0.0.11"
port = 8080
labels = { "rancon.stack" = "shop", "rancon.name" = "%NAME%-%STACK%" }
[[services]]
name = "api"
host = "10.0.0.20"
port = 9000
labels = { "rancon.rule" = "PathPrefix(`/api`)" }
[[services]]
name = "broken"
host = "10.0.0.40"
port = 1
labels = { "rancon.name" = "%NAME%-%NOPE%" }
"#;

fn run_once(cfg: &str) {
    Command::cargo_bin("rancon")
        .unwrap()
        .args(["--config", cfg, "--once"])
        .assert()
        .code(0);
}

fn check_traefik_shape(v: &serde_json::Value) {
    let http = &v["http"];
    assert_eq!(
        http["routers"]["web-shop"]["rule"],
        "Host(`web-shop.example.com`)"
    );
    assert_eq!(http["routers"]["web-shop"]["service"], "web-shop");
    assert_eq!(
        http["routers"]["web-shop"]["entryPoints"],
        serde_json::json!(["web", "websecure"])
    );
    assert_eq!(http["routers"]["api"]["rule"], "PathPrefix(`/api`)");
    let servers: Vec<&str> = http["services"]["web-shop"]["loadBalancer"]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["url"].as_str().unwrap())
        .collect();
    assert_eq!(servers, ["http://10.0.0.10:8080", "http://10.0.0.11:8080"]);
    assert_eq!(
        http["services"]["db"]["loadBalancer"]["servers"][0]["url"],
        "http://10.0.0.5:5432"
    );
    // The service whose name template cannot render is skipped, the others are not.
    assert!(http["routers"].get("broken-").is_none());
    assert_eq!(http["routers"].as_object().unwrap().len(), 3);
}

#[test]
fn toml_output_parses_and_is_not_rewritten_when_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let services = dir.path().join("services.toml");
    fs::write(&services, SERVICES).unwrap();
    let cfg = config(dir.path(), "dynamic.toml", &services);
    let out = dir.path().join("dynamic.toml");
    run_once(&cfg);
    let text = fs::read_to_string(&out).unwrap();
    let parsed: toml::Value = toml::from_str(&text).unwrap();
    check_traefik_shape(&serde_json::to_value(parsed).unwrap());

    // Every write is a rename of a new file: an unchanged inode means no write at all
    // (mtimes can tie within the filesystem's granularity).
    use std::os::unix::fs::MetadataExt;
    let before = fs::metadata(&out).unwrap().ino();
    run_once(&cfg);
    assert_eq!(
        fs::metadata(&out).unwrap().ino(),
        before,
        "unchanged content was rewritten"
    );

    // A vanished service is removed; the rest stays.
    fs::write(
        &services,
        SERVICES
            .split("[[services]]\nname = \"api\"")
            .next()
            .unwrap(),
    )
    .unwrap();
    run_once(&cfg);
    let v: toml::Value = toml::from_str(&fs::read_to_string(&out).unwrap()).unwrap();
    assert!(v["http"]["routers"].get("api").is_none());
    assert!(v["http"]["routers"].get("web-shop").is_some());
    // No temp files left behind.
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn yaml_output_by_extension() {
    let dir = tempfile::tempdir().unwrap();
    let services = dir.path().join("services.toml");
    fs::write(&services, SERVICES).unwrap();
    let cfg = config(dir.path(), "dynamic.yaml", &services);
    run_once(&cfg);
    let text = fs::read_to_string(dir.path().join("dynamic.yaml")).unwrap();
    let v: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
    check_traefik_shape(&v);
}

/// A pipeline built from the test config, with its directory and services file.
fn pipeline() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    rancon::engine::Pipeline,
) {
    let dir = tempfile::tempdir().unwrap();
    let services = dir.path().join("services.toml");
    fs::write(&services, SERVICES).unwrap();
    let cfg = config(dir.path(), "dynamic.toml", &services);
    let args = rancon::cli::ConfigArgs {
        config: Some(cfg.into()),
        sets: vec![],
        legacy: false,
    };
    let loaded = rancon::app::load_valid(&args).unwrap();
    let pipeline = rancon::app::build(&loaded.config).unwrap();
    (dir, services, pipeline)
}

/// A source that fails mid-run (its file turned unreadable) deregisters nothing, and the round
/// reports failure so `--once` would exit 1.
#[tokio::test]
async fn a_failing_source_deregisters_nothing() {
    let (dir, services, mut pipeline) = pipeline();
    // Guard off: only the failed-source rule may keep the registrations.
    pipeline.max_deregister_fraction = 1.0;
    let opts = rancon::engine::RoundOptions::default();
    let first = pipeline.round(opts).await;
    assert!(!first.failed());
    let out = dir.path().join("dynamic.toml");
    let before = fs::read_to_string(&out).unwrap();

    fs::write(&services, "not [valid toml").unwrap();
    let second = pipeline.round(opts).await;
    assert!(second.failed());
    assert!(
        second
            .sources
            .iter()
            .any(|s| s.source == "apps" && s.error.is_some())
    );
    let b = &second.backends[0];
    assert_eq!(
        b.held_back, 3,
        "the three endpoints of the failed source are held back"
    );
    assert!(b.plan.as_ref().unwrap().deregister.is_empty());
    assert_eq!(fs::read_to_string(&out).unwrap(), before);
}

/// An empty services file is a file caught mid-write, not "no services": the source fails.
#[tokio::test]
async fn an_empty_services_file_is_a_failure_not_an_empty_list() {
    let (dir, services, mut pipeline) = pipeline();
    pipeline.max_deregister_fraction = 1.0;
    let opts = rancon::engine::RoundOptions::default();
    assert!(!pipeline.round(opts).await.failed());
    let out = dir.path().join("dynamic.toml");
    let before = fs::read_to_string(&out).unwrap();
    fs::write(&services, "").unwrap();
    let r = pipeline.round(opts).await;
    assert!(r.failed());
    assert!(
        r.sources
            .iter()
            .any(|s| s.source == "apps" && s.error.is_some())
    );
    assert_eq!(fs::read_to_string(&out).unwrap(), before);
}

/// The guard stops a round that would remove more than the configured share of registrations.
#[tokio::test]
async fn the_guard_stops_mass_deregistration_unless_forced() {
    let (dir, services, pipeline) = pipeline();
    let mut opts = rancon::engine::RoundOptions::default();
    assert!(!pipeline.round(opts).await.failed());

    // 3 of 4 registrations vanish (on purpose: `services = []`, not an empty file, which
    // reads as a file caught mid-write): over the 0.5 default.
    fs::write(&services, "services = []").unwrap();
    let guarded = pipeline.round(opts).await;
    assert!(guarded.failed());
    let b = &guarded.backends[0];
    assert!(b.error_text().unwrap().contains("max_deregister_fraction"));
    assert_eq!(b.held_back, 3);
    let text = fs::read_to_string(dir.path().join("dynamic.toml")).unwrap();
    assert!(text.contains("web-shop"));

    opts.force = true;
    let forced = pipeline.round(opts).await;
    assert!(!forced.failed());
    assert_eq!(forced.totals().deregistered, 3);
    let text = fs::read_to_string(dir.path().join("dynamic.toml")).unwrap();
    assert!(!text.contains("web-shop") && text.contains("db"));
}

/// Backends read only their `sources`, and only a failure of a source a backend reads holds
/// back that backend's deregistrations.
#[tokio::test]
async fn per_backend_sources_route_endpoints_and_hold_back_only_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let svc = |name: &str, host: &str| {
        format!("[[services]]\nname = \"{name}\"\nhost = \"{host}\"\nport = 80\n")
    };
    let (fa, fb) = (d.join("a.toml"), d.join("b.toml"));
    fs::write(&fa, svc("a1", "10.0.1.1") + &svc("a2", "10.0.1.2")).unwrap();
    fs::write(&fb, svc("b1", "10.0.2.1") + &svc("b2", "10.0.2.2")).unwrap();
    let (ox, oy) = (d.join("x.toml"), d.join("y.toml"));
    let cfg = d.join("rancon.toml");
    fs::write(
        &cfg,
        format!(
            "max_deregister_fraction = 1.0\n[sources.a]\ntype = \"static\"\nfile = {:?}\n[sources.b]\ntype = \"static\"\nfile = {:?}\n[backends.x]\ntype = \"traefik_file\"\npath = {:?}\nsources = [\"a\"]\n[backends.y]\ntype = \"traefik_file\"\npath = {:?}\n",
            fa.display().to_string(),
            fb.display().to_string(),
            ox.display().to_string(),
            oy.display().to_string()
        ),
    )
    .unwrap();
    let args = rancon::cli::ConfigArgs {
        config: Some(cfg),
        sets: vec![],
        legacy: false,
    };
    let loaded = rancon::app::load_valid(&args).unwrap();
    let pipeline = rancon::app::build(&loaded.config).unwrap();
    let opts = rancon::engine::RoundOptions::default();
    assert!(!pipeline.round(opts).await.failed());
    let x = fs::read_to_string(&ox).unwrap();
    assert!(
        x.contains("a1") && x.contains("a2") && !x.contains("b1"),
        "{x}"
    );
    let y = fs::read_to_string(&oy).unwrap();
    assert!(y.contains("a1") && y.contains("b1"), "{y}");

    // b fails and a2 goes away: x (reads a only) deregisters a2; y (reads both) keeps it.
    fs::write(&fb, "not [valid").unwrap();
    fs::write(&fa, svc("a1", "10.0.1.1")).unwrap();
    let r = pipeline.round(opts).await;
    assert!(r.failed());
    let x = fs::read_to_string(&ox).unwrap();
    assert!(x.contains("a1") && !x.contains("a2"), "{x}");
    let y = fs::read_to_string(&oy).unwrap();
    assert!(y.contains("a2") && y.contains("b2"), "held back: {y}");
    let by = |n: &str| r.backends.iter().find(|b| b.backend == n).unwrap();
    assert_eq!(by("x").held_back, 0);
    assert_eq!(by("y").held_back, 3);
}
