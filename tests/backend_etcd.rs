//! The etcd backend against a real etcd (tests/support/etcd.rs starts Debian's etcd-server on
//! free loopback ports): register, update, cleanup, foreign keys, steady state, leases, auth,
//! and both layouts read back through the gateway.

#[allow(dead_code)]
mod support;

use rancon::engine::{Pipeline, RoundOptions};
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
