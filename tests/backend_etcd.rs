//! The etcd backend against a real etcd (tests/support/etcd.rs starts Debian's etcd-server on
//! free loopback ports): register, update, cleanup, foreign keys, steady state, leases, auth,
//! and every layout read back through the gateway. Ownership (issue 11): a key rancon does not
//! own at a place it would write is skipped as a conflict and never written over or deleted, a
//! writer racing a round loses nothing (transaction compares), two owners settle; and a Traefik
//! name larger than etcd's transaction limit (`--max-txn-ops`) is written in several.

#[allow(dead_code)]
mod support;

use rancon::engine::{Pipeline, RoundOptions};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;
use support::etcd::EtcdServer;

fn services(path: &Path, list: &[(&str, &str, u16, &str)]) {
    let mut s = String::new();
    for (name, host, port, tags) in list {
        s += &format!(
            "[[services]]\nname = {name:?}\nhost = {host:?}\nport = {port}\nlabels = {{ \"rancon.tags\" = {tags:?} }}\n"
        );
    }
    if list.is_empty() {
        s = "services = []\n".into();
    }
    std::fs::write(path, s).unwrap();
}

fn config(dir: &Path, extra: &str, backend: &str) -> std::path::PathBuf {
    let cfg = dir.join("rancon.toml");
    std::fs::write(
        &cfg,
        format!(
            "{extra}\n[sources.s]\ntype = \"static\"\nfile = {:?}\n[backends.etcd]\ntype = \"etcd\"\n{backend}\n",
            dir.join("services.toml")
        ),
    )
    .unwrap();
    cfg
}

fn pipeline(cfg: &Path) -> Pipeline {
    let loaded = rancon::config::load(&rancon::config::LoadOptions {
        file: Some(cfg.to_path_buf()),
        sets: vec![],
        legacy: false,
    })
    .unwrap();
    rancon::config::validate::validate(&loaded).unwrap_or_else(|e| panic!("{e}"));
    rancon::app::build(&loaded.config).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn rancon_layout_registers_updates_cleans_and_is_quiet_when_steady() {
    let etcd = EtcdServer::start().await;
    etcd.put("/rancon/other-owner/web/x", "{}", None).await;
    etcd.put("/elsewhere/key", "keep", None).await;
    let dir = tempfile::tempdir().unwrap();
    services(
        &dir.path().join("services.toml"),
        &[("web", "10.0.0.1", 80, "a"), ("api", "10.0.0.2", 81, "")],
    );
    let cfg = config(
        dir.path(),
        "max_deregister_fraction = 1.0",
        &format!("endpoints = [{:?}]", etcd.url),
    );
    let p = pipeline(&cfg);
    let r = p.round(RoundOptions::default()).await;
    assert!(!r.failed(), "{r:?}");
    let (kvs, _) = etcd.range("/rancon/default/", None).await;
    assert_eq!(kvs.len(), 2);
    let (key, value, lease) = &kvs[1];
    assert_eq!(key, "/rancon/default/web/web-10-0-0-1-80");
    assert_eq!(value["address"], "10.0.0.1");
    assert_eq!(value["port"], 80);
    assert_eq!(value["tags"], serde_json::json!(["a"]));
    assert_ne!(lease, "0", "written under a lease");

    // Steady: no write (the store's revision does not move; the keep-alive is not a write).
    let (_, rev) = etcd.range("/", None).await;
    let r = p.round(RoundOptions::default()).await;
    assert!(!r.failed());
    assert_eq!(etcd.range("/", None).await.1, rev);

    // Update and cleanup.
    services(
        &dir.path().join("services.toml"),
        &[("web", "10.0.0.1", 80, "b")],
    );
    let r = p.round(RoundOptions::default()).await;
    assert!(!r.failed(), "{r:?}");
    let (kvs, _) = etcd.range("/rancon/default/", None).await;
    assert_eq!(kvs.len(), 1);
    assert_eq!(kvs[0].1["tags"], serde_json::json!(["b"]));
    // Foreign keys untouched.
    assert_eq!(etcd.range("/rancon/other-owner/", None).await.0.len(), 1);
    assert_eq!(etcd.range("/elsewhere/", None).await.0.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn skydns_layout_writes_coredns_records() {
    let etcd = EtcdServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    services(
        &dir.path().join("services.toml"),
        &[("Web", "10.0.0.7", 8080, "")],
    );
    let cfg = config(
        dir.path(),
        "interval = \"10s\"",
        &format!(
            "endpoints = [{:?}]\nlayout = \"skydns\"\ndomain = \"svc.example.org\"",
            etcd.url
        ),
    );
    let r = pipeline(&cfg).round(RoundOptions::default()).await;
    assert!(!r.failed(), "{r:?}");
    let (kvs, _) = etcd.range("/skydns/", None).await;
    assert_eq!(kvs.len(), 1);
    let (key, value, _) = &kvs[0];
    assert_eq!(key, "/skydns/org/example/svc/web/web-10-0-0-7-8080");
    assert_eq!(value["host"], "10.0.0.7");
    assert_eq!(value["port"], 8080);
    assert_eq!(value["ttl"], 30);
    assert_eq!(value["rancon"]["owner"], "default");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_expire_after_the_process_stops() {
    let etcd = EtcdServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    services(
        &dir.path().join("services.toml"),
        &[("web", "10.0.0.1", 80, "")],
    );
    let cfg = config(
        dir.path(),
        "",
        &format!("endpoints = [{:?}]\nttl = \"2s\"", etcd.url),
    );
    let cfg_s = cfg.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("rancon"))
            .args(["--config", &cfg_s, "--once"])
            .env_remove("RANCON_CONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(etcd.range("/rancon/", None).await.0.len(), 1);
    // Nobody keeps the lease alive any more.
    let mut gone = false;
    for _ in 0..80 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if etcd.range("/rancon/", None).await.0.is_empty() {
            gone = true;
            break;
        }
    }
    assert!(gone, "keys outlived their lease");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_process_moves_live_keys_to_its_own_lease() {
    let etcd = EtcdServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    services(
        &dir.path().join("services.toml"),
        &[("web", "10.0.0.1", 80, "")],
    );
    let cfg = config(dir.path(), "", &format!("endpoints = [{:?}]", etcd.url));
    pipeline(&cfg).round(RoundOptions::default()).await;
    let first = etcd.range("/rancon/", None).await.0[0].2.clone();
    let p = pipeline(&cfg);
    let r = p.round(RoundOptions::default()).await;
    assert_eq!(r.totals().updated, 1, "one rewrite onto the new lease");
    let second = etcd.range("/rancon/", None).await.0[0].2.clone();
    assert_ne!(first, second);
    let r = p.round(RoundOptions::default()).await;
    assert_eq!(r.totals().unchanged, 1, "then unchanged");
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_with_an_etcd_user() {
    let etcd = EtcdServer::start().await;
    etcd.enable_auth("/rancon/", "s3cret-pw").await;
    let dir = tempfile::tempdir().unwrap();
    services(
        &dir.path().join("services.toml"),
        &[("web", "10.0.0.1", 80, "")],
    );
    let wrong = config(
        dir.path(),
        "",
        &format!(
            "endpoints = [{:?}]\nusername = \"rancon\"\npassword = \"nope-nope\"",
            etcd.url
        ),
    );
    let r = pipeline(&wrong).round(RoundOptions::default()).await;
    assert!(r.failed());
    let err = r.backends[0].error_text().unwrap();
    assert!(err.contains("authenticate"), "{err}");
    assert!(!err.contains("nope-nope"), "{err}");
    std::fs::write(dir.path().join("pw"), "s3cret-pw\n").unwrap();
    let right = config(
        dir.path(),
        "",
        &format!(
            "endpoints = [{:?}]\nusername = \"rancon\"\npassword_file = {:?}",
            etcd.url,
            dir.path().join("pw")
        ),
    );
    let r = pipeline(&right).round(RoundOptions::default()).await;
    assert!(!r.failed(), "{r:?}");
    let token = etcd.token("root", "rootpw").await;
    assert_eq!(etcd.range("/rancon/", Some(&token)).await.0.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn traefik_layout_writes_kv_provider_keys_per_name() {
    let etcd = EtcdServer::start().await;
    etcd.put("traefik/http/routers/manual/rule", "Host(`manual`)", None)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let svc = dir.path().join("services.toml");
    std::fs::write(
        &svc,
        "[[services]]\nname = \"web\"\nhost = \"10.0.0.1\"\nport = 80\n\
         [[services]]\nname = \"web\"\nhost = \"10.0.0.2\"\nport = 80\n\
         [[services]]\nname = \"api\"\nhost = \"10.0.0.3\"\nport = 81\nlabels = { \"rancon.rule\" = \"PathPrefix(`/api`)\" }\n",
    )
    .unwrap();
    let cfg = config(
        dir.path(),
        "max_deregister_fraction = 1.0",
        &format!("endpoints = [{:?}]\nlayout = \"traefik\"", etcd.url),
    );
    let p = pipeline(&cfg);
    let r = p.round(RoundOptions::default()).await;
    assert!(!r.failed(), "{r:?}");
    let (kvs, rev) = etcd.range("traefik/", None).await;
    let get = |k: &str| {
        kvs.iter()
            .find(|(key, _, _)| key == k)
            .map(|(_, v, _)| v.clone())
    };
    let s = |v: &str| Some(serde_json::Value::String(v.into()));
    assert_eq!(get("traefik/http/routers/web/rule"), s("Host(`web`)"));
    assert_eq!(get("traefik/http/routers/web/service"), s("web"));
    assert_eq!(
        get("traefik/http/services/web/loadbalancer/servers/0/url"),
        s("http://10.0.0.1:80")
    );
    assert_eq!(
        get("traefik/http/services/web/loadbalancer/servers/1/url"),
        s("http://10.0.0.2:80")
    );
    assert_eq!(
        get("traefik/http/routers/api/rule"),
        s("PathPrefix(`/api`)")
    );
    // Steady: nothing written.
    let r = p.round(RoundOptions::default()).await;
    assert!(!r.failed());
    assert_eq!(
        etcd.range("traefik/", None).await.1,
        rev,
        "the revision did not move"
    );
    // One web endpoint and api vanish: web is rewritten with one server, api removed.
    std::fs::write(
        &svc,
        "[[services]]\nname = \"web\"\nhost = \"10.0.0.1\"\nport = 80\n",
    )
    .unwrap();
    let r = p.round(RoundOptions::default()).await;
    assert!(!r.failed(), "{r:?}");
    let keys: Vec<String> = etcd
        .range("traefik/", None)
        .await
        .0
        .into_iter()
        .map(|k| k.0)
        .collect();
    assert_eq!(
        keys,
        [
            "traefik/http/routers/manual/rule",
            "traefik/http/routers/web/rule",
            "traefik/http/routers/web/service",
            "traefik/http/services/web/loadbalancer/servers/0/url",
        ]
    );
}

/// The conflict skips of the round's first backend: (id, reason).
fn conflicts(r: &rancon::engine::RoundReport) -> Vec<(String, String)> {
    r.backends[0]
        .skipped
        .iter()
        .filter(|s| s.kind == rancon::error::SkipKind::Conflict)
        .map(|s| (s.endpoint.clone(), s.reason.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_rancon_does_not_own_at_a_desired_location_is_neither_overwritten_nor_deleted() {
    let etcd = EtcdServer::start().await;
    let hand = "/rancon/default/web/web-10-0-0-1-80";
    let other = "/rancon/default/api/api-10-0-0-2-81";
    let other_json =
        r#"{"owner":"other","name":"api","id":"api-10-0-0-2-81","address":"10.9.9.9","port":1}"#;
    etcd.put(hand, "hand-written", None).await;
    etcd.put(other, other_json, None).await;
    let dir = tempfile::tempdir().unwrap();
    let svc = dir.path().join("services.toml");
    services(
        &svc,
        &[
            ("web", "10.0.0.1", 80, ""),
            ("api", "10.0.0.2", 81, ""),
            ("db", "10.0.0.3", 82, ""),
        ],
    );
    let cfg = config(
        dir.path(),
        "max_deregister_fraction = 1.0",
        &format!("endpoints = [{:?}]", etcd.url),
    );
    let p = pipeline(&cfg);
    let r = p.round(RoundOptions::default()).await;
    assert!(
        !r.failed(),
        "a conflict alone does not fail the round: {r:?}"
    );
    let c = conflicts(&r);
    assert_eq!(c.len(), 2, "{c:?}");
    assert_eq!(c[0].0, "api-10-0-0-2-81");
    assert!(c[0].1.contains("owner other"), "{c:?}");
    assert_eq!(c[1].0, "web-10-0-0-1-80");
    assert!(c[1].1.contains("nobody (unowned)"), "{c:?}");
    assert_eq!(r.totals().registered, 1, "only db");
    assert_eq!(etcd.get(hand).await.as_deref(), Some("hand-written"));
    assert_eq!(etcd.get(other).await.as_deref(), Some(other_json));

    // Still held: skipped again, nothing written.
    let rev = etcd.revision().await;
    let r = p.round(RoundOptions::default()).await;
    assert!(!r.failed(), "{r:?}");
    assert_eq!(conflicts(&r).len(), 2);
    assert_eq!(etcd.revision().await, rev);

    // Every service gone: only rancon's own key is deleted.
    services(&svc, &[]);
    let r = p.round(RoundOptions::default()).await;
    assert!(!r.failed(), "{r:?}");
    assert_eq!(r.totals().deregistered, 1);
    assert_eq!(etcd.get("/rancon/default/db/db-10-0-0-3-82").await, None);
    assert_eq!(etcd.get(hand).await.as_deref(), Some("hand-written"));
    assert_eq!(etcd.get(other).await.as_deref(), Some(other_json));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_writer_racing_the_round_is_not_overwritten() {
    let etcd = EtcdServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let svc = dir.path().join("services.toml");
    services(&svc, &[("web", "10.0.0.1", 80, "")]);
    let cfg = config(
        dir.path(),
        "max_deregister_fraction = 1.0",
        &format!("endpoints = [{:?}]", etcd.url),
    );
    let p = pipeline(&cfg);
    let be = p.backends[0].as_ref();
    let key = "/rancon/default/web/web-10-0-0-1-80";
    // The listing sees the key absent; someone writes it before rancon does.
    let (eps, _) = p.sources[0].fetch().await.unwrap();
    let (desired, _) = rancon::engine::desired(be, &eps);
    let listing = be.list(&desired).await.unwrap();
    assert!(listing.regs.is_empty() && listing.foreign.is_empty());
    etcd.put(key, "raced", None).await;
    let plan = rancon::plan::plan(&desired, &listing.regs);
    let report = be.apply(&Default::default(), &listing.regs, &plan).await;
    assert_eq!(report.done, 0);
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let err = report.failed[0].error.to_string();
    assert!(err.contains("created since the listing"), "{err}");
    assert_eq!(etcd.get(key).await.as_deref(), Some("raced"));

    // The key is rancon's; the listing sees it; someone rewrites it before rancon deletes it.
    etcd.call(
        "kv/deleterange",
        serde_json::json!({"key": base64_of(key)}),
        None,
    )
    .await
    .unwrap();
    let r = p.round(RoundOptions::default()).await;
    assert!(!r.failed(), "{r:?}");
    services(&svc, &[]);
    let (eps, _) = p.sources[0].fetch().await.unwrap();
    let (desired, _) = rancon::engine::desired(be, &eps);
    let listing = be.list(&desired).await.unwrap();
    assert_eq!(listing.regs.len(), 1);
    etcd.put(key, "edited", None).await;
    let plan = rancon::plan::plan(&desired, &listing.regs);
    assert_eq!(plan.deregister.len(), 1);
    let report = be.apply(&Default::default(), &listing.regs, &plan).await;
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(etcd.get(key).await.as_deref(), Some("edited"));
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread")]
async fn another_owners_skydns_record_and_a_plain_coredns_record_are_left_as_is() {
    let etcd = EtcdServer::start().await;
    let theirs = "/skydns/local/rancon/web/web-10-0-0-7-8080";
    let theirs_json = r#"{"host":"10.9.9.9","port":1,"rancon":{"owner":"other","name":"web","id":"web-10-0-0-7-8080","address":"10.9.9.9","port":1}}"#;
    let plain = "/skydns/local/rancon/api/api-10-0-0-8-8081";
    let plain_json = r#"{"host":"10.1.1.1"}"#;
    let forged = "/skydns/local/rancon/db/db-10-0-0-9-8082";
    let forged_json = r#"{"host":"10.2.2.2","rancon":{"owner":"evil\nINFO deregistered"}}"#;
    for (k, v) in [
        (theirs, theirs_json),
        (plain, plain_json),
        (forged, forged_json),
    ] {
        etcd.put(k, v, None).await;
    }
    let dir = tempfile::tempdir().unwrap();
    services(
        &dir.path().join("services.toml"),
        &[
            ("web", "10.0.0.7", 8080, ""),
            ("api", "10.0.0.8", 8081, ""),
            ("db", "10.0.0.9", 8082, ""),
            ("cache", "10.0.0.10", 8083, ""),
        ],
    );
    let cfg = config(
        dir.path(),
        "",
        &format!("endpoints = [{:?}]\nlayout = \"skydns\"", etcd.url),
    );
    let p = pipeline(&cfg);
    let r = p.round(RoundOptions::default()).await;
    assert!(!r.failed(), "{r:?}");
    let c = conflicts(&r);
    assert_eq!(c.len(), 3, "{c:?}");
    assert!(c[0].0.starts_with("api-") && c[0].1.contains("nobody (unowned)"));
    assert!(c[1].0.starts_with("db-") && c[1].1.contains(r#"owner "evil\nINFO deregistered""#));
    assert!(c[2].0.starts_with("web-") && c[2].1.contains("owner other"));
    assert_eq!(r.totals().registered, 1, "only cache");
    assert_eq!(etcd.get(theirs).await.as_deref(), Some(theirs_json));
    assert_eq!(etcd.get(plain).await.as_deref(), Some(plain_json));
    assert_eq!(etcd.get(forged).await.as_deref(), Some(forged_json));
    let rev = etcd.revision().await;
    let r = p.round(RoundOptions::default()).await;
    assert!(!r.failed(), "{r:?}");
    assert_eq!(etcd.revision().await, rev, "a steady round writes nothing");
}

fn keys_under(kvs: &[(String, serde_json::Value, String)]) -> Vec<&str> {
    kvs.iter().map(|k| k.0.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hand_written_traefik_router_is_not_overwritten_and_hand_added_keys_survive_removal() {
    let etcd = EtcdServer::start().await;
    etcd.put("traefik/http/routers/web/rule", "Host(`hand`)", None)
        .await;
    etcd.put("traefik/http/routers/web/middlewares/0", "auth", None)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let svc = dir.path().join("services.toml");
    services(
        &svc,
        &[("web", "10.0.0.1", 80, ""), ("api", "10.0.0.2", 81, "")],
    );
    let cfg = config(
        dir.path(),
        "max_deregister_fraction = 1.0",
        &format!("endpoints = [{:?}]\nlayout = \"traefik\"", etcd.url),
    );
    let p = pipeline(&cfg);
    let r = p.round(RoundOptions::default()).await;
    assert!(!r.failed(), "{r:?}");
    let c = conflicts(&r);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].0, "web-10-0-0-1-80");
    assert!(c[0].1.contains("nobody (unowned)"), "{c:?}");
    assert_eq!(
        etcd.get("traefik/http/routers/web/rule").await.as_deref(),
        Some("Host(`hand`)")
    );
    assert_eq!(
        keys_under(&etcd.range("traefik/http/routers/web/", None).await.0),
        [
            "traefik/http/routers/web/middlewares/0",
            "traefik/http/routers/web/rule"
        ]
    );
    assert!(
        etcd.range("traefik/http/services/web/", None)
            .await
            .0
            .is_empty()
    );
    assert!(etcd.get("rancon/index/traefik/default/web").await.is_none());
    assert!(etcd.get("traefik/http/routers/api/rule").await.is_some());

    // An operator adds keys under rancon's router; rancon then removes its name.
    etcd.put("traefik/http/routers/api/middlewares/0", "auth", None)
        .await;
    etcd.put("traefik/http/routers/api/tls/certresolver", "le", None)
        .await;
    services(&svc, &[("web", "10.0.0.1", 80, "")]);
    let r = p.round(RoundOptions::default()).await;
    assert!(!r.failed(), "{r:?}");
    assert_eq!(r.totals().deregistered, 1);
    let (kvs, _) = etcd.range("traefik/", None).await;
    assert_eq!(
        keys_under(&kvs),
        [
            "traefik/http/routers/api/middlewares/0",
            "traefik/http/routers/api/tls/certresolver",
            "traefik/http/routers/web/middlewares/0",
            "traefik/http/routers/web/rule",
        ]
    );
    assert!(etcd.get("rancon/index/traefik/default/api").await.is_none());
}

/// Two owners over one etcd, each with its own services file.
fn owner_config(
    etcd: &EtcdServer,
    owner: &str,
    layout: &str,
    list: &[(&str, &str, u16, &str)],
) -> (tempfile::TempDir, Pipeline) {
    let dir = tempfile::tempdir().unwrap();
    services(&dir.path().join("services.toml"), list);
    let cfg = config(
        dir.path(),
        &format!("owner = {owner:?}"),
        &format!(
            "endpoints = [{:?}]\nlayout = {layout:?}\ndomain = \"svc.example.org\"",
            etcd.url
        ),
    );
    let p = pipeline(&cfg);
    (dir, p)
}

async fn two_owners_settle(layout: &str, shared_key: &str) {
    let etcd = EtcdServer::start().await;
    let (_a_dir, a) = owner_config(
        &etcd,
        "alpha",
        layout,
        &[("web", "10.0.0.1", 80, ""), ("aonly", "10.0.0.3", 80, "")],
    );
    let (_b_dir, b) = owner_config(
        &etcd,
        "beta",
        layout,
        // The same id as alpha's web (traefik: the same name; skydns: the same key).
        &[("web", "10.0.0.1", 80, ""), ("bonly", "10.0.0.4", 80, "")],
    );
    // Both start at once: each may find the shared key free; one write wins.
    let (ra, rb) = tokio::join!(
        a.round(RoundOptions::default()),
        b.round(RoundOptions::default())
    );
    let lost = [&ra, &rb]
        .iter()
        .filter(|r| !conflicts(r).is_empty() || !r.backends[0].failed.is_empty())
        .count();
    assert_eq!(lost, 1, "exactly one owner lost web: {ra:?} {rb:?}");
    // From the second round on, neither writes, and the loser skips as a conflict.
    let rev = etcd.revision().await;
    for _ in 0..2 {
        let (ra, rb) = tokio::join!(
            a.round(RoundOptions::default()),
            b.round(RoundOptions::default())
        );
        assert!(!ra.failed() && !rb.failed(), "{ra:?} {rb:?}");
        let (ca, cb) = (conflicts(&ra), conflicts(&rb));
        assert_eq!(ca.len() + cb.len(), 1, "{ca:?} {cb:?}");
        let (loser, winner) = if ca.is_empty() {
            (cb, "alpha")
        } else {
            (ca, "beta")
        };
        assert!(loser[0].1.contains(&format!("owner {winner}")), "{loser:?}");
    }
    assert_eq!(etcd.revision().await, rev, "settled: no writes");
    assert!(etcd.get(shared_key).await.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_skydns_owners_with_colliding_keys_settle() {
    two_owners_settle("skydns", "/skydns/org/example/svc/web/web-10-0-0-1-80").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_traefik_owners_with_one_name_settle() {
    two_owners_settle("traefik", "traefik/http/routers/web/rule").await;
}

fn big(svc: &Path, n: usize) {
    let mut s = String::new();
    for i in 0..n {
        s += &format!(
            "[[services]]\nname = \"big\"\nhost = \"10.1.{}.{}\"\nport = 80\n",
            i / 250,
            i % 250 + 1
        );
    }
    std::fs::write(svc, s).unwrap();
}

async fn big_name_round_trip(etcd: &EtcdServer, n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let svc = dir.path().join("services.toml");
    big(&svc, n);
    let cfg = config(
        dir.path(),
        "max_deregister_fraction = 1.0",
        &format!("endpoints = [{:?}]\nlayout = \"traefik\"", etcd.url),
    );
    let p = pipeline(&cfg);
    let r = p.round(RoundOptions::default()).await;
    assert!(!r.failed(), "{:?}", r.backends[0].failed.first());
    assert_eq!(r.totals().registered, n);
    let servers = || async {
        etcd.range("traefik/http/services/big/loadbalancer/servers/", None)
            .await
            .0
            .len()
    };
    assert_eq!(servers().await, n);
    assert!(etcd.get("rancon/index/traefik/default/big").await.is_some());
    let rev = etcd.revision().await;
    let r = p.round(RoundOptions::default()).await;
    assert!(!r.failed());
    assert_eq!(etcd.revision().await, rev, "steady");
    // Shrink: the surplus servers are deleted, in as many transactions as it takes.
    big(&svc, 3);
    let r = p.round(RoundOptions::default()).await;
    assert!(!r.failed(), "{:?}", r.backends[0].failed.first());
    assert_eq!(servers().await, 3);
    big(&svc, n);
    let r = p.round(RoundOptions::default()).await;
    assert!(!r.failed(), "{:?}", r.backends[0].failed.first());
    assert_eq!(servers().await, n);
    // Removed.
    services(&svc, &[]);
    let r = p.round(RoundOptions::default()).await;
    assert!(!r.failed(), "{:?}", r.backends[0].failed.first());
    assert!(etcd.range("traefik/", None).await.0.is_empty());
    assert!(etcd.range("rancon/", None).await.0.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_traefik_name_with_200_servers_is_written_within_the_txn_limit() {
    // etcd's default --max-txn-ops is 128: one transaction for 200 servers is refused.
    let etcd = EtcdServer::start().await;
    big_name_round_trip(&etcd, 200).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lower_max_txn_ops_is_met_by_smaller_transactions() {
    let etcd = EtcdServer::start_with(&["--max-txn-ops", "16"]).await;
    big_name_round_trip(&etcd, 40).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_half_written_traefik_name_is_finished_next_round_not_taken_for_foreign() {
    let etcd = EtcdServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    big(&dir.path().join("services.toml"), 2);
    let cfg = config(
        dir.path(),
        "",
        &format!("endpoints = [{:?}]\nlayout = \"traefik\"", etcd.url),
    );
    let p = pipeline(&cfg);
    let r = p.round(RoundOptions::default()).await;
    assert!(!r.failed(), "{r:?}");
    // As if the index transaction never ran: the name's keys are there, on rancon's lease.
    etcd.call(
        "kv/deleterange",
        serde_json::json!({"key": base64_of("rancon/index/traefik/default/big")}),
        None,
    )
    .await
    .unwrap();
    let r = p.round(RoundOptions::default()).await;
    assert!(!r.failed(), "{r:?}");
    assert!(conflicts(&r).is_empty(), "{:?}", conflicts(&r));
    assert_eq!(r.totals().registered, 2);
    assert!(etcd.get("rancon/index/traefik/default/big").await.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_process_moves_live_traefik_keys_to_its_own_lease() {
    let etcd = EtcdServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    big(&dir.path().join("services.toml"), 2);
    let cfg = config(
        dir.path(),
        "",
        &format!("endpoints = [{:?}]\nlayout = \"traefik\"", etcd.url),
    );
    let r = pipeline(&cfg).round(RoundOptions::default()).await;
    assert!(!r.failed(), "{r:?}");
    let lease = |kvs: &[(String, serde_json::Value, String)]| {
        kvs.iter().map(|k| k.2.clone()).collect::<BTreeSet<_>>()
    };
    let first = lease(&etcd.range("traefik/", None).await.0);
    assert_eq!(first.len(), 1);
    let p = pipeline(&cfg);
    let r = p.round(RoundOptions::default()).await;
    assert!(!r.failed(), "{r:?}");
    assert_eq!(r.totals().updated, 2, "rewritten onto the new lease");
    let second = lease(&etcd.range("traefik/", None).await.0);
    assert_eq!(second.len(), 1);
    assert_ne!(first, second);
    assert_eq!(lease(&etcd.range("rancon/", None).await.0), second);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_writer_racing_a_traefik_round_is_not_overwritten() {
    let etcd = EtcdServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let svc = dir.path().join("services.toml");
    services(&svc, &[("web", "10.0.0.1", 80, "")]);
    let cfg = config(
        dir.path(),
        "",
        &format!("endpoints = [{:?}]\nlayout = \"traefik\"", etcd.url),
    );
    let p = pipeline(&cfg);
    let be = p.backends[0].as_ref();
    let rule = "traefik/http/routers/web/rule";
    let plan_now = || async {
        let (eps, _) = p.sources[0].fetch().await.unwrap();
        let (desired, _) = rancon::engine::desired(be, &eps);
        let listing = be.list(&desired).await.unwrap();
        assert!(listing.foreign.is_empty(), "{:?}", listing.foreign);
        let plan = rancon::plan::plan(&desired, &listing.regs);
        (listing.regs, plan)
    };
    // A new name: free when listed, taken before rancon writes.
    let (actual, plan) = plan_now().await;
    etcd.put(rule, "Host(`raced`)", None).await;
    let report = be.apply(&Default::default(), &actual, &plan).await;
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(etcd.get(rule).await.as_deref(), Some("Host(`raced`)"));
    assert!(
        etcd.range("traefik/http/services/web/", None)
            .await
            .0
            .is_empty(),
        "none of the name's keys written"
    );
    assert!(etcd.get("rancon/index/traefik/default/web").await.is_none());

    // A name rancon holds: one of its keys is rewritten by hand before rancon updates it.
    etcd.call(
        "kv/deleterange",
        serde_json::json!({"key": base64_of(rule)}),
        None,
    )
    .await
    .unwrap();
    let r = p.round(RoundOptions::default()).await;
    assert!(!r.failed(), "{r:?}");
    services(&svc, &[("web", "10.0.0.2", 80, "")]);
    let (actual, plan) = plan_now().await;
    let server = "traefik/http/services/web/loadbalancer/servers/0/url";
    etcd.put(server, "http://10.6.6.6:80", None).await;
    let report = be.apply(&Default::default(), &actual, &plan).await;
    assert!(!report.failed.is_empty(), "{report:?}");
    assert_eq!(
        etcd.get(server).await.as_deref(),
        Some("http://10.6.6.6:80")
    );
}

/// `check --connect` only reads: it grants no lease and writes no key.
#[tokio::test(flavor = "multi_thread")]
async fn check_connect_reads_without_granting_a_lease() {
    let etcd = EtcdServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    services(
        &dir.path().join("services.toml"),
        &[("web", "10.0.0.1", 80, "")],
    );
    let cfg = config(dir.path(), "", &format!("endpoints = [{:?}]", etcd.url));
    let revision = etcd.revision().await;
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("rancon"))
        .args(["check", "--connect", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("✓ backend etcd"));
    let leases = etcd
        .call("lease/leases", serde_json::json!({}), None)
        .await
        .unwrap();
    assert!(
        leases
            .get("leases")
            .is_none_or(|l| l.as_array().is_some_and(Vec::is_empty)),
        "a lease was granted: {leases}"
    );
    assert_eq!(etcd.revision().await, revision, "check wrote");
}
