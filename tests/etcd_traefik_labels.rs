//! The Traefik labels in etcd's `traefik` layout, against a real etcd: the KV provider's
//! router keys (Traefik's KV reference: `routers/<name>/entrypoints/<i>`, `middlewares/<i>`,
//! `tls`, `tls/certresolver`), https servers, keys removed when a label goes (only rancon's,
//! on its lease), and TCP endpoints skipped with a reason.

#[allow(dead_code)]
mod support;

use rancon::engine::{Pipeline, RoundOptions};
use std::path::Path;
use support::etcd::EtcdServer;

fn pipeline(dir: &Path, etcd: &EtcdServer) -> Pipeline {
    let cfg = dir.join("rancon.toml");
    std::fs::write(
        &cfg,
        format!(
            "max_deregister_fraction = 1.0\n[sources.s]\ntype = \"static\"\nfile = {:?}\n[backends.etcd]\ntype = \"etcd\"\nendpoints = [{:?}]\nlayout = \"traefik\"\n",
            dir.join("services.toml"),
            etcd.url
        ),
    )
    .unwrap();
    let loaded = rancon::config::load(&rancon::config::LoadOptions {
        file: Some(cfg),
        sets: vec![],
        legacy: false,
    })
    .unwrap();
    rancon::config::validate::validate(&loaded).unwrap_or_else(|e| panic!("{e}"));
    rancon::app::build(&loaded.config).unwrap()
}

async fn keys(etcd: &EtcdServer, prefix: &str) -> Vec<String> {
    etcd.range(prefix, None)
        .await
        .0
        .into_iter()
        // The helper reads values as JSON where they parse (`true` is a boolean).
        .map(|(k, v, _)| match v.as_str() {
            Some(s) => format!("{k}={s}"),
            None => format!("{k}={v}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn labels_become_router_keys_and_go_when_the_labels_go() {
    let etcd = EtcdServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let svc = dir.path().join("services.toml");
    std::fs::write(
        &svc,
        r#"
[[services]]
name = "web"
host = "10.0.0.1"
port = 443
[services.labels]
"rancon.entrypoints" = "websecure,web"
"rancon.middlewares" = "auth@file"
"rancon.tls.certresolver" = "le"

[[services]]
name = "db"
host = "10.0.0.2"
port = 5432
[services.labels]
"rancon.protocol" = "tcp"
"#,
    )
    .unwrap();
    let p = pipeline(dir.path(), &etcd);
    let r = p.round(RoundOptions::default()).await;
    assert!(!r.failed(), "{r:?}");
    let skipped = &r.backends[0].skipped;
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(
        skipped[0].reason.contains("HTTP routers only"),
        "{skipped:?}"
    );
    assert_eq!(
        keys(&etcd, "traefik/").await,
        [
            "traefik/http/routers/web/entrypoints/0=websecure",
            "traefik/http/routers/web/entrypoints/1=web",
            "traefik/http/routers/web/middlewares/0=auth@file",
            "traefik/http/routers/web/rule=Host(`web`)",
            "traefik/http/routers/web/service=web",
            "traefik/http/routers/web/tls/certresolver=le",
            "traefik/http/services/web/loadbalancer/servers/0/url=https://10.0.0.1:443",
        ]
    );
    // Steady: nothing written.
    let rev = etcd.revision().await;
    assert!(!p.round(RoundOptions::default()).await.failed());
    assert_eq!(etcd.revision().await, rev);

    // An operator adds a middleware by hand at an index rancon does not use; the labels then
    // shrink to one entry point, no middleware, TLS without a resolver, plain http.
    etcd.put("traefik/http/routers/web/middlewares/5", "hand", None)
        .await;
    std::fs::write(
        &svc,
        r#"
[[services]]
name = "web"
host = "10.0.0.1"
port = 443
[services.labels]
"rancon.entrypoints" = "web"
"rancon.tls" = "true"
"rancon.scheme" = "http"
"#,
    )
    .unwrap();
    let r = p.round(RoundOptions::default()).await;
    assert!(!r.failed(), "{r:?}");
    assert_eq!(
        keys(&etcd, "traefik/").await,
        [
            "traefik/http/routers/web/entrypoints/0=web",
            "traefik/http/routers/web/middlewares/5=hand",
            "traefik/http/routers/web/rule=Host(`web`)",
            "traefik/http/routers/web/service=web",
            "traefik/http/routers/web/tls=true",
            "traefik/http/services/web/loadbalancer/servers/0/url=http://10.0.0.1:443",
        ]
    );
    // The name goes: rancon's keys go, the hand-added one stays.
    std::fs::write(&svc, "services = []\n").unwrap();
    let r = p.round(RoundOptions::default()).await;
    assert!(!r.failed(), "{r:?}");
    assert_eq!(
        keys(&etcd, "traefik/").await,
        ["traefik/http/routers/web/middlewares/5=hand"]
    );
}

/// A middleware key someone else holds at an index a label needs is not written over: the
/// name's write fails (and is retried) rather than dropping or replacing it.
#[tokio::test(flavor = "multi_thread")]
async fn a_hand_written_middleware_key_is_not_written_over() {
    let etcd = EtcdServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        "[[services]]\nname = \"web\"\nhost = \"10.0.0.1\"\nport = 80\n",
    )
    .unwrap();
    let p = pipeline(dir.path(), &etcd);
    assert!(!p.round(RoundOptions::default()).await.failed());
    etcd.put("traefik/http/routers/web/middlewares/0", "hand", None)
        .await;
    std::fs::write(
        dir.path().join("services.toml"),
        "[[services]]\nname = \"web\"\nhost = \"10.0.0.1\"\nport = 80\nlabels = { \"rancon.middlewares\" = \"auth\" }\n",
    )
    .unwrap();
    let r = p.round(RoundOptions::default()).await;
    assert!(r.failed(), "{r:?}");
    assert_eq!(
        etcd.get("traefik/http/routers/web/middlewares/0")
            .await
            .as_deref(),
        Some("hand")
    );
}

/// Written in several transactions (`--max-txn-ops 4`), a new router's middlewares are all in
/// place before its rule: Traefik never sees the router without its auth middleware.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_routers_middlewares_come_before_its_rule() {
    use base64::Engine;
    let etcd = EtcdServer::start_with(&["--max-txn-ops", "4"]).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        "[[services]]\nname = \"web\"\nhost = \"10.0.0.1\"\nport = 80\nlabels = { \"rancon.middlewares\" = \"a,b,c,d,e,f\" }\n",
    )
    .unwrap();
    let p = pipeline(dir.path(), &etcd);
    let r = p.round(RoundOptions::default()).await;
    assert!(!r.failed(), "{r:?}");
    let b64 = base64::engine::general_purpose::STANDARD;
    let prefix = "traefik/http/routers/web/";
    let v = etcd
        .call(
            "kv/range",
            serde_json::json!({"key": b64.encode(prefix), "range_end": b64.encode("traefik/http/routers/web0")}),
            None,
        )
        .await
        .unwrap();
    let created = |suffix: &str| -> i64 {
        v["kvs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|kv| {
                b64.decode(kv["key"].as_str().unwrap()).unwrap()
                    == format!("{prefix}{suffix}").as_bytes()
            })
            .unwrap_or_else(|| panic!("{suffix} missing: {v}"))["create_revision"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let rule = created("rule");
    let middlewares: Vec<i64> = (0..6)
        .map(|i| created(&format!("middlewares/{i}")))
        .collect();
    assert!(
        middlewares.iter().all(|m| *m <= rule),
        "rule at {rule}, middlewares at {middlewares:?}"
    );
    assert!(
        middlewares.iter().any(|m| *m < rule),
        "several transactions were needed"
    );
}
