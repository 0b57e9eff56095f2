//! The rancher source against the in-repo Rancher double (tests/support/rancher.rs).

#[allow(dead_code)]
mod support;

use rancon::build::Config;
use rancon::error::SourceError;
use rancon::source::Source;
use rancon::source::rancher::RancherSource;
use rancon::source::rancher::RancherSourceConfig;
use serde_json::json;
use std::sync::atomic::Ordering;
use support::rancher::{Fault, Project, Rancher, service};

fn cfg(url: String) -> RancherSourceConfig {
    toml::from_str::<RancherSourceConfig>(&format!(
        "url = {url:?}\naccess_key = \"ak\"\nsecret_key = \"sk-secret\"\ntimeout = \"2s\""
    ))
    .unwrap()
}

fn source(c: &RancherSourceConfig) -> RancherSource {
    RancherSource::new("rancher", c, &Config::default().common()).unwrap()
}

fn project(id: &str, name: &str, n: usize) -> Project {
    Project {
        id: id.into(),
        name: name.into(),
        stacks: vec![
            ("1st5".into(), "teststack".into()),
            ("1st6".into(), "other".into()),
        ],
        services: (0..n)
            .map(|i| {
                let stack = if i % 2 == 0 { "1st5" } else { "1st6" };
                service(
                    &format!("1s{i}"),
                    &format!("svc{i}"),
                    stack,
                    &[("rancon", "")],
                    &[("10.1.0.1", 10000 + i as u16)],
                )
            })
            .collect(),
        containers: vec![],
    }
}

async fn names(src: &RancherSource) -> Vec<String> {
    let (eps, _) = src.fetch().await.unwrap();
    let mut v: Vec<String> = eps
        .iter()
        .map(|e| format!("{}@{}:{}", e.prop("name"), e.prop("host"), e.prop("port")))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn pagination_finds_all_250_services_once() {
    let r = Rancher::start(
        vec![project("1a5", "Default", 250)],
        Some(("ak", "sk-secret")),
    )
    .await;
    r.state.max_limit.store(100, Ordering::SeqCst);
    let src = source(&cfg(r.url("/v2-beta/projects/1a5")));
    let found = names(&src).await;
    assert_eq!(found.len(), 250);
    let unique: std::collections::BTreeSet<_> = found.iter().collect();
    assert_eq!(unique.len(), 250);
    // project + 1 stacks page + 3 service pages; never one request per service.
    assert_eq!(r.requests(), 5);
}

/// A listing that ends early is a failure (unknown), never a shorter list.
#[tokio::test]
async fn a_listing_that_ends_early_fails() {
    let r = Rancher::start(
        vec![project("1a5", "Default", 3)],
        Some(("ak", "sk-secret")),
    )
    .await;
    let src = source(&cfg(r.url("/v2-beta/projects/1a5")));
    for (fault, why) in [
        (Fault::RepeatNext, "repeats a page"),
        (Fault::PartialNoNext, "partial"),
    ] {
        r.set_fault(fault);
        let err = src
            .fetch()
            .await
            .expect_err("an incomplete listing must fail");
        assert!(err.to_string().contains(why), "{err}");
    }
}

/// `pagination.next` and `links.self` are followed only on the configured server: the other
/// server gets no request (so never the keys), and the listing fails.
#[tokio::test]
async fn links_to_another_server_are_not_followed() {
    let other = Rancher::start(vec![project("1a5", "Default", 3)], None).await;
    let r = Rancher::start(
        vec![project("1a5", "Default", 3)],
        Some(("ak", "sk-secret")),
    )
    .await;
    r.set_fault(Fault::ForeignNext(
        other.url("/v2-beta/projects/1a5/services"),
    ));
    let err = source(&cfg(r.url("/v2-beta/projects/1a5")))
        .fetch()
        .await
        .expect_err("a foreign next link must fail the listing");
    assert!(
        err.to_string().contains("outside the configured server"),
        "{err}"
    );
    r.set_fault(Fault::ForeignSelf(other.url("")));
    let err = source(&cfg(r.url("/v2-beta")))
        .fetch()
        .await
        .expect_err("a foreign self link must fail the listing");
    assert!(
        err.to_string().contains("outside the configured server"),
        "{err}"
    );
    assert_eq!(other.requests(), 0, "the other server was contacted");
}

/// A service whose stack is not in the listing is skipped (its registrations kept), not
/// renamed with an empty `%STACK%`.
#[tokio::test]
async fn a_service_of_an_unlisted_stack_is_skipped_not_renamed() {
    let mut p = project("1a5", "prod", 0);
    p.stacks = vec![];
    p.services.push(service(
        "1s1",
        "web",
        "1st9",
        &[("rancon", ""), ("rancon.name", "%NAME%-%STACK%")],
        &[("10.0.0.1", 80)],
    ));
    let r = Rancher::start(vec![p], None).await;
    let (eps, skipped) = source(&cfg(r.url("/v2-beta/projects/1a5")))
        .fetch()
        .await
        .unwrap();
    assert!(eps.is_empty(), "{eps:?}");
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].reason.contains("1st9"), "{:?}", skipped[0]);
}

/// One project with the README's example: `myservice` in `teststack` named `%NAME%-%STACK%`.
async fn myservice_double() -> Rancher {
    let mut p = project("1a5", "prod", 0);
    p.services.push(service(
        "1s1",
        "myservice",
        "1st5",
        &[("rancon.name", "%NAME%-%STACK%")],
        &[("127.0.0.2", 8080)],
    ));
    Rancher::start(vec![p], Some(("ak", "sk-secret"))).await
}

#[tokio::test]
async fn v1_and_v2_beta_name_stacks_alike() {
    let r = myservice_double().await;
    for ver in ["v1", "v2-beta"] {
        let src = source(&cfg(r.url(&format!("/{ver}/projects/1a5"))));
        assert_eq!(
            names(&src).await,
            ["myservice-teststack@127.0.0.2:8080"],
            "{ver}"
        );
    }
}

#[tokio::test]
async fn root_url_covers_every_project_and_a_project_url_one() {
    let r = Rancher::start(
        vec![project("1a5", "prod", 2), project("1a7", "staging", 3)],
        Some(("ak", "sk-secret")),
    )
    .await;
    let (eps, _) = source(&cfg(r.url("/v2-beta"))).fetch().await.unwrap();
    assert_eq!(eps.len(), 5);
    let envs: std::collections::BTreeSet<_> = eps
        .iter()
        .map(|e| e.prop("environment").to_string())
        .collect();
    assert_eq!(envs, ["prod".to_string(), "staging".to_string()].into());
    assert_eq!(
        names(&source(&cfg(r.url("/v2-beta/projects/1a7"))))
            .await
            .len(),
        3
    );
}

#[tokio::test]
async fn stack_and_environment_filters() {
    let r = Rancher::start(
        vec![project("1a5", "prod", 4), project("1a7", "staging", 4)],
        Some(("ak", "sk-secret")),
    )
    .await;
    let mut c = cfg(r.url("/v2-beta"));
    c.include_environments = vec!["pr*".into()];
    c.exclude_stacks = vec!["oth*".into()];
    let (eps, _) = source(&c).fetch().await.unwrap();
    assert_eq!(eps.len(), 2);
    assert!(
        eps.iter()
            .all(|e| e.prop("environment") == "prod" && e.prop("stack") == "teststack")
    );
}

#[tokio::test]
async fn wrong_keys_name_the_access_key_never_the_secret() {
    let r = Rancher::start(vec![project("1a5", "prod", 1)], Some(("ak", "right"))).await;
    let err = source(&cfg(r.url("/v2-beta"))).fetch().await.unwrap_err();
    assert!(
        matches!(err, SourceError::Unauthorized { status: 401, .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("\"ak\"") && msg.contains("/v2-beta"), "{msg}");
    assert!(!msg.contains("sk-secret"));
}

#[tokio::test]
async fn bad_data_is_a_typed_error() {
    let r = Rancher::start(vec![project("1a5", "prod", 1)], None).await;
    let mut c = cfg(r.url("/v2-beta/projects/1a5"));
    c.timeout = std::time::Duration::from_millis(500);
    let src = source(&c);
    for fault in [
        Fault::NotJson,
        Fault::ErrorBody(500),
        Fault::ErrorBody(404),
        Fault::Truncated,
        Fault::NoData,
        Fault::Hang,
    ] {
        r.set_fault(fault.clone());
        let err = src
            .fetch()
            .await
            .expect_err(&format!("{fault:?} must fail"));
        match fault {
            Fault::ErrorBody(s) => assert!(
                matches!(err, SourceError::Http { status, .. } if status == s),
                "{err}"
            ),
            Fault::Hang => assert!(err.to_string().contains("timed out"), "{err}"),
            _ => assert!(
                matches!(err, SourceError::Decode { .. }),
                "{fault:?}: {err}"
            ),
        }
    }
}

#[tokio::test]
async fn one_malformed_service_skips_only_itself() {
    let mut p = project("1a5", "prod", 2);
    let mut bad = service("1s99", "broken", "1st5", &[("rancon", "")], &[]);
    bad["publicEndpoints"] = json!([{"ipAddress": "10.0.0.1", "port": "eighty"}]);
    p.services.push(bad);
    p.services.push(service(
        "1s98",
        "tpl",
        "1st5",
        &[("rancon.name", "%NAME%-%NOPE%")],
        &[("10.0.0.2", 80)],
    ));
    let r = Rancher::start(vec![p], None).await;
    let (eps, skipped) = source(&cfg(r.url("/v2-beta/projects/1a5")))
        .fetch()
        .await
        .unwrap();
    assert_eq!(eps.len(), 2);
    assert_eq!(skipped.len(), 2);
    assert!(skipped.iter().any(|s| s.endpoint.contains("broken")));
    assert!(skipped.iter().any(|s| s.reason.contains("NOPE")));
}

#[tokio::test]
async fn inactive_and_unlabelled_services_are_not_selected() {
    let mut p = project("1a5", "prod", 0);
    let mut inactive = service("1s1", "off", "1st5", &[("rancon", "")], &[("10.0.0.1", 80)]);
    inactive["state"] = json!("inactive");
    p.services.push(inactive);
    p.services
        .push(service("1s2", "plain", "1st5", &[], &[("10.0.0.2", 80)]));
    let mut lb = service(
        "1s3",
        "lb",
        "1st5",
        &[("rancon.port", "1")],
        &[("10.0.0.3", 443)],
    );
    lb["type"] = json!("loadBalancerService");
    p.services.push(lb);
    let r = Rancher::start(vec![p], None).await;
    // The port label is ignored (with a warning), never applied.
    assert_eq!(
        names(&source(&cfg(r.url("/v2-beta/projects/1a5")))).await,
        ["lb@10.0.0.3:443"]
    );
}

#[tokio::test]
async fn internal_endpoints_use_container_ips_and_private_ports() {
    let mut p = project("1a5", "prod", 0);
    let mut s = service(
        "1s1",
        "web",
        "1st5",
        &[("rancon", "")],
        &[("192.168.1.10", 8080)],
    );
    s["instanceIds"] = json!(["1i1", "1i2", "1i3"]);
    p.services.push(s);
    p.containers = vec![
        json!({"id": "1i1", "type": "container", "state": "running", "primaryIpAddress": "10.42.0.1"}),
        json!({"id": "1i2", "type": "container", "state": "running", "primaryIpAddress": "10.42.0.2"}),
        json!({"id": "1i3", "type": "container", "state": "stopped", "primaryIpAddress": "10.42.0.3"}),
    ];
    let r = Rancher::start(vec![p], None).await;
    let mut c = cfg(r.url("/v2-beta/projects/1a5"));
    c.endpoints = rancon::source::rancher::EndpointKind::Internal;
    assert_eq!(
        names(&source(&c)).await,
        ["web@10.42.0.1:80", "web@10.42.0.2:80"]
    );
}

/// Sidekick containers run their own launch config: its ports (and `expose`d ports) and its
/// labels, never the primary's ports on the sidekick's IP.
#[tokio::test]
async fn sidekicks_pair_with_their_own_launch_config() {
    let mut p = project("1a5", "prod", 0);
    let mut s = service(
        "1s1",
        "web",
        "1st5",
        &[("rancon", "")],
        &[("192.168.1.10", 8080)],
    );
    s["launchConfig"]["expose"] = json!(["9100/tcp"]);
    s["secondaryLaunchConfigs"] = json!([
        {"name": "metrics", "ports": ["9200:9200/tcp"], "labels": {"rancon": "", "rancon.name": "web-metrics"}},
        {"name": "logger", "ports": ["5140/udp"], "labels": {}}
    ]);
    s["instanceIds"] = json!(["1i1", "1i2", "1i3"]);
    p.services.push(s);
    let lc = |name: &str| json!({"io.rancher.service.launch.config": name});
    p.containers = vec![
        json!({"id": "1i1", "type": "container", "state": "running", "primaryIpAddress": "10.42.0.1",
               "labels": lc("io.rancher.service.primary.launch.config")}),
        json!({"id": "1i2", "type": "container", "state": "running", "primaryIpAddress": "10.42.0.2",
               "labels": lc("metrics")}),
        json!({"id": "1i3", "type": "container", "state": "running", "primaryIpAddress": "10.42.0.3",
               "labels": lc("logger")}),
    ];
    let r = Rancher::start(vec![p], None).await;
    let mut c = cfg(r.url("/v2-beta/projects/1a5"));
    c.endpoints = rancon::source::rancher::EndpointKind::Internal;
    assert_eq!(
        names(&source(&c)).await,
        [
            "web-metrics@10.42.0.2:9200",
            "web@10.42.0.1:80",
            "web@10.42.0.1:9100"
        ]
    );
}

/// A body larger than `max_response_size` fails the listing (an endless answer must not take
/// all the memory), and says why.
#[tokio::test]
async fn a_body_over_max_response_size_fails_the_listing() {
    let r = Rancher::start(vec![project("1a5", "Default", 400)], None).await;
    let c = cfg(r.url("/v2-beta/projects/1a5"));
    let mut common = Config::default().common();
    assert!(source(&c).fetch().await.is_ok(), "fits the default");
    common.max_response_size = 64 << 10;
    let small = RancherSource::new("rancher", &c, &common).unwrap();
    let err = small.fetch().await.expect_err("over the cap");
    assert!(err.to_string().contains("max_response_size"), "{err}");
}

/// A CA and a server certificate for 127.0.0.1, made for the test.
fn test_pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn https_with_a_custom_ca_or_insecure() {
    let (ca, cert, key) = test_pki();
    let r = Rancher::start_tls(vec![project("1a5", "prod", 2)], &cert, &key).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();

    let mut c = cfg(r.url("/v2-beta/projects/1a5"));
    let err = source(&c).fetch().await.unwrap_err();
    assert!(
        matches!(err, SourceError::Transport { .. }),
        "untrusted certificate must fail: {err}"
    );

    c.tls.ca_file = Some(ca_file);
    assert_eq!(names(&source(&c)).await.len(), 2);

    let mut insecure = cfg(r.url("/v2-beta/projects/1a5"));
    insecure.tls.insecure = true;
    assert_eq!(names(&source(&insecure)).await.len(), 2);
}

/// A Rancher outage or bad answer never empties the registry: the backend keeps everything.
#[tokio::test]
async fn bad_data_never_causes_deregistration() {
    use rancon::engine::{Pipeline, RoundOptions};
    let r = Rancher::start(vec![project("1a5", "prod", 3)], Some(("ak", "sk-secret"))).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dyn.toml");
    let traefik: rancon::backend::traefik_file::TraefikFileConfig =
        toml::from_str(&format!("path = {:?}", out.display().to_string())).unwrap();
    let pipeline = Pipeline {
        sources: vec![Box::new(source(&cfg(r.url("/v2-beta/projects/1a5"))))],
        backends: vec![Box::new(
            rancon::backend::traefik_file::TraefikFile::new("t", &traefik).unwrap(),
        )],
        max_deregister_fraction: 1.0,
        write_gate: None,
    };
    let first = pipeline.round(RoundOptions::default()).await;
    assert!(!first.failed());
    assert_eq!(first.totals().registered, 3);
    let before = std::fs::read_to_string(&out).unwrap();
    for fault in [
        Fault::NotJson,
        Fault::ErrorBody(503),
        Fault::Truncated,
        Fault::NoData,
    ] {
        r.set_fault(fault.clone());
        let round = pipeline.round(RoundOptions::default()).await;
        assert!(round.failed(), "{fault:?}");
        assert_eq!(round.backends[0].held_back, 3, "{fault:?}");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), before, "{fault:?}");
    }
}

/// `rancon check --connect` lists the source once; `--dry-run` plans it; no secret is printed.
#[tokio::test(flavor = "multi_thread")]
async fn check_connect_and_dry_run_through_the_binary() {
    let r = myservice_double().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("r.toml");
    let out = dir.path().join("dyn.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sources.rancher]\ntype = \"rancher\"\nurl = {:?}\naccess_key = \"ak\"\n[backends.t]\ntype = \"traefik_file\"\npath = {:?}\n",
            r.url("/v2-beta"),
            out.display().to_string()
        ),
    )
    .unwrap();
    let cfg = cfg.display().to_string();
    let (check, dry) = tokio::task::spawn_blocking(move || {
        let run = |args: &[&str]| {
            std::process::Command::new(assert_cmd::cargo::cargo_bin("rancon"))
                .args(args)
                .env("RANCON_SOURCES__RANCHER__SECRET_KEY", "sk-secret")
                .env_remove("RANCON_CONFIG")
                .output()
                .unwrap()
        };
        (
            run(&["check", "--connect", "--config", &cfg]),
            run(&["--config", &cfg, "--dry-run"]),
        )
    })
    .await
    .unwrap();
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    assert!(
        text(&check).contains("✓ source rancher: 1 endpoint(s)"),
        "{}",
        text(&check)
    );
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    assert!(
        text(&dry).contains("+ myservice-teststack@127.0.0.2:8080"),
        "{}",
        text(&dry)
    );
    assert!(!out.exists(), "dry run wrote");
    for o in [&check, &dry] {
        assert!(!text(o).contains("sk-secret"), "secret leaked: {}", text(o));
    }
}

/// A server whose error body echoes the request's credentials (a proxy's debug page, a
/// hostile server): the error names neither the secret nor the Basic header.
#[tokio::test]
async fn an_error_body_echoing_the_credentials_is_scrubbed() {
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("ak:sk-secret");
    let echo = format!("bad request; you sent secret sk-secret as Basic {basic}");
    let (addr, _) = support::raw::canned(format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\n\r\n{echo}",
        echo.len()
    ))
    .await;
    let err = source(&cfg(format!("http://{addr}/v2-beta")))
        .fetch()
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("bad request"), "{msg}");
    assert!(!msg.contains("sk-secret") && !msg.contains(&basic), "{msg}");
}

/// An answer that announces no length (read until the server closes) is capped too: the
/// limit holds while reading, not only against `Content-Length`.
#[tokio::test]
async fn an_unannounced_body_over_max_response_size_fails_the_listing() {
    let (addr, _) = support::raw::serve(|_| {
        let mut parts = vec![b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"data\":[".to_vec()];
        parts.extend(std::iter::repeat_n(vec![b' '; 16 << 10], 16));
        parts
    })
    .await;
    let mut common = Config::default().common();
    common.max_response_size = 64 << 10;
    let c = cfg(format!("http://{addr}/v2-beta/projects/1a5"));
    let err = RancherSource::new("rancher", &c, &common)
        .unwrap()
        .fetch()
        .await
        .expect_err("over the cap");
    assert!(err.to_string().contains("max_response_size"), "{err}");
}

/// A server answering 200 with the secret where a value of another type belongs: serde_json's
/// message quotes a mistyped string whole, so the page's error and an item's skip reason
/// must be scrubbed like an error body.
#[tokio::test]
async fn a_200_echoing_the_secret_in_a_mistyped_value_is_scrubbed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    async fn serve(items: &'static str) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                let mut buf = [0u8; 4096];
                let n = c.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                let path = req.split(' ').nth(1).unwrap_or("").to_string();
                let base = format!("http://{addr}/v2-beta/projects/1a5");
                let body = if path == "/v2-beta/projects/1a5" {
                    json!({"id": "1a5", "type": "project", "name": "Default", "state": "active",
                        "links": {"self": base, "services": format!("{base}/services")}})
                    .to_string()
                } else if path.contains("/services") {
                    items.to_string()
                } else {
                    r#"{"data": [], "pagination": {}}"#.to_string()
                };
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = c.write_all(answer.as_bytes()).await;
            }
        });
        format!("http://{addr}/v2-beta/projects/1a5")
    }
    // The page itself.
    let url = serve(r#"{"data": "sk-secret"}"#).await;
    let err = source(&cfg(url)).fetch().await.unwrap_err();
    let msg = format!("{err} {err:?}");
    assert!(matches!(err, SourceError::Decode { .. }), "{msg}");
    assert!(!msg.contains("sk-secret"), "{msg}");
    // One item: named by the secret, with the secret where an object belongs.
    let url = serve(
        r#"{"data": [{"id": "1s1", "name": "sk-secret", "type": "service", "launchConfig": "sk-secret"}], "pagination": {}}"#,
    )
    .await;
    let (_, skipped) = source(&cfg(url)).fetch().await.unwrap();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    let msg = format!("{} {:?}", skipped[0], skipped[0]);
    assert!(!msg.contains("sk-secret"), "{msg}");
}
