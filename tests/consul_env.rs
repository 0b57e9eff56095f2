//! Consul's own variables, honoured as its CLI honours them (api/api.go `defaultConfig` and
//! `NewClient` in hashicorp/consul): `CONSUL_HTTP_ADDR=unix://…`, `CONSUL_CAPATH`,
//! `CONSUL_HTTP_AUTH`, `CONSUL_NAMESPACE`; and the warning about `%HOST%` with internal
//! endpoints. Through the real binary, against the Consul and Rancher doubles.

#[allow(dead_code)]
mod support;

use std::process::Output;
use std::sync::atomic::Ordering;
use support::consul::{Consul, TlsFiles};
use support::rancher::{Project, Rancher};

async fn rancon(args: &[&str], env: &[(&str, &str)]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("rancon"));
        for (k, _) in std::env::vars() {
            if k.starts_with("CONSUL_") || k.starts_with("RANCON_") || k.starts_with("RANCHER_") {
                cmd.env_remove(k);
            }
        }
        cmd.args(&args)
            .envs(env)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    })
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

/// A config with one static service and a consul backend without a url (the variables
/// supply it), plus `extra` in the backend's table.
fn config(dir: &std::path::Path, extra: &str) -> String {
    let p = dir.join("rancon.toml");
    std::fs::write(
        &p,
        format!(
            r#"
owner = "t"
[sources.s]
type = "static"
services = [{{ name = "web", host = "127.0.0.9", port = 8080 }}]
[backends.c]
type = "consul"
{extra}
"#
        ),
    )
    .unwrap();
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_unix_socket_address_reaches_the_agent_on_the_socket() {
    let c = Consul::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("consul.sock");
    c.serve_unix(&sock).await;
    let cfg = config(dir.path(), "");
    let addr = format!("unix://{}", sock.display());
    let out = rancon(
        &["--config", &cfg, "--once"],
        &[("CONSUL_HTTP_ADDR", &addr)],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let names: Vec<String> = c
        .agent_services(0)
        .values()
        .map(|s| s.name.clone())
        .collect();
    assert_eq!(names, ["web"], "{}", text(&out));
    // `check` accepts the form too and shows it as given.
    let out = rancon(&["check", "--config", &cfg], &[("CONSUL_HTTP_ADDR", &addr)]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains(&addr), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_unix_socket_url_cannot_hold_placeholders() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "url = \"unix:///run/%HOST%.sock\"");
    let out = rancon(&["check", "--config", &cfg], &[]).await;
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("backends.c.url"), "{}", text(&out));
}

/// `CONSUL_HTTP_AUTH=user:pass` (split at the first `:`) is sent as basic auth to a proxy in
/// front of the agent; without it the proxy answers 401. The password is never shown.
#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_from_the_environment_passes_the_proxy_and_stays_secret() {
    let c = Consul::start(1).await;
    *c.cluster.basic_auth.lock().unwrap() = Some("ops:pa:ss-w0rd".into());
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let url = c.url(0);
    let out = rancon(&["--config", &cfg, "--once"], &[("CONSUL_HTTP_ADDR", &url)]).await;
    assert_ne!(out.status.code(), Some(0), "401 without the variable");
    assert!(c.agent_services(0).is_empty());
    let env = [
        ("CONSUL_HTTP_ADDR", url.as_str()),
        ("CONSUL_HTTP_AUTH", "ops:pa:ss-w0rd"),
    ];
    let out = rancon(&["--config", &cfg, "--once", "-v"], &env).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(c.agent_services(0).len(), 1);
    let out2 = rancon(&["check", "--config", &cfg], &env).await;
    assert_eq!(out2.status.code(), Some(0), "{}", text(&out2));
    for o in [&out, &out2] {
        assert!(!text(o).contains("pa:ss-w0rd"), "{}", text(o));
    }
    assert!(
        text(&out2).contains("http_auth = \"***\""),
        "{}",
        text(&out2)
    );
}

/// `CONSUL_NAMESPACE` is `?ns=` on every request (api/api.go `newRequest`); Consul CE refuses
/// it (400), and the round says so rather than deregistering anything.
#[tokio::test(flavor = "multi_thread")]
async fn the_namespace_goes_on_every_request_and_ce_refuses_it() {
    let c = Consul::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let url = c.url(0);
    let env = [
        ("CONSUL_HTTP_ADDR", url.as_str()),
        ("CONSUL_NAMESPACE", "team-a"),
    ];
    let out = rancon(&["--config", &cfg, "--once"], &env).await;
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("Namespaces are a Consul Enterprise feature"),
        "{}",
        text(&out)
    );
    c.cluster.enterprise.store(true, Ordering::SeqCst);
    c.cluster.namespaces.lock().unwrap().clear();
    let out = rancon(&["--config", &cfg, "--once"], &env).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(c.agent_services(0).len(), 1);
    let seen = c.cluster.namespaces.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|n| n.as_deref() == Some("team-a")),
        "{seen:?}"
    );
}

/// `CONSUL_CAPATH`: every PEM file below the directory is trusted (go-rootcerts
/// `LoadCAPath`); `CONSUL_CACERT` wins when both are set.
#[tokio::test(flavor = "multi_thread")]
async fn a_ca_directory_from_the_environment_is_trusted() {
    let ca = support::pki::Ca::new();
    let (cert, key) = ca.leaf(&["127.0.0.2"]);
    let c = Consul::start_with(
        1,
        None,
        Some(TlsFiles {
            cert_pem: cert,
            key_pem: key,
            client_ca_pem: None,
        }),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cas = dir.path().join("cas");
    std::fs::create_dir_all(cas.join("nested")).unwrap();
    std::fs::write(cas.join("nested/consul-ca.pem"), &ca.pem).unwrap();
    std::fs::write(cas.join("other.pem"), support::pki::Ca::new().pem).unwrap();
    let cfg = config(dir.path(), "");
    let url = c.url(0);
    let capath = cas.display().to_string();
    let out = rancon(&["--config", &cfg, "--once"], &[("CONSUL_HTTP_ADDR", &url)]).await;
    assert_ne!(out.status.code(), Some(0), "untrusted without the CA");
    let out = rancon(
        &["--config", &cfg, "--once"],
        &[("CONSUL_HTTP_ADDR", &url), ("CONSUL_CAPATH", &capath)],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(c.agent_services(0).len(), 1);
    // A file that is not PEM fails the load, as in Consul's clients.
    std::fs::write(cas.join("README"), "not a certificate").unwrap();
    let out = rancon(
        &["--config", &cfg, "--once"],
        &[("CONSUL_HTTP_ADDR", &url), ("CONSUL_CAPATH", &capath)],
    )
    .await;
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("README"), "{}", text(&out));
}

/// `%HOST%` in the Consul URL with a rancher source of internal endpoints would contact an
/// agent on every container's IP: `check` and the start warn; public endpoints do not.
#[tokio::test(flavor = "multi_thread")]
async fn host_placeholder_with_internal_endpoints_is_warned_about() {
    let r = Rancher::start(
        vec![Project {
            id: "1a5".into(),
            name: "prod".into(),
            ..Default::default()
        }],
        None,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let write = |endpoints: &str| {
        let p = dir.path().join(format!("{endpoints}.toml"));
        std::fs::write(
            &p,
            format!(
                r#"
owner = "t"
[sources.r]
type = "rancher"
url = "{}"
endpoints = "{endpoints}"
[backends.c]
type = "consul"
url = "http://%HOST%:8500"
"#,
                r.url("/v2-beta/projects/1a5")
            ),
        )
        .unwrap();
        p.display().to_string()
    };
    let internal = write("internal");
    for args in [
        vec!["check", "--config", &internal],
        vec!["--config", &internal, "--once"],
    ] {
        let out = rancon(&args, &[]).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let t = text(&out);
        assert!(t.contains("backends.c.url"), "{args:?}: {t}");
        assert!(t.contains("every container"), "{args:?}: {t}");
    }
    let public = write("public");
    let out = rancon(&["check", "--config", &public], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains("every container"), "{}", text(&out));
}
