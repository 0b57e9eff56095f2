//! The consul backend against the in-repo Consul double (tests/support/consul.rs), driven by
//! the real pipeline with a `static` source whose file each test rewrites between rounds.

#[allow(dead_code)]
mod support;

use rancon::engine::{Pipeline, RoundOptions, RoundReport};
use support::consul::{Consul, Svc, TlsFiles};

use support::consul_setup::Setup;

async fn round(p: &Pipeline) -> RoundReport {
    p.round(RoundOptions::default()).await
}

fn backend_error(r: &RoundReport) -> String {
    let b = &r.backends[0];
    format!(
        "{} {}",
        b.error_text().unwrap_or_default(),
        b.failed
            .iter()
            .map(|f| f.error.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    )
}

fn foreign(id: &str, tags: &[&str]) -> Svc {
    Svc {
        id: id.into(),
        name: id.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        meta: Default::default(),
        address: "127.0.0.2".into(),
        port: 1,
    }
}

#[tokio::test]
async fn registers_then_a_steady_round_makes_one_read_and_no_write() {
    let c = Consul::start(1).await;
    let s = Setup::new();
    s.services(&[
        ("web", "127.0.0.2", 8080, &[("rancon.tags", "http,public")]),
        ("web", "127.0.0.2", 8081, &[]),
        ("db", "127.0.0.2", 5432, &[("rancon.meta.team", "core")]),
    ]);
    let p = s.pipeline("", &format!("url = {:?}", c.url(0)));
    let r = round(&p).await;
    assert!(!r.failed(), "{r:?}");
    let svcs = c.agent_services(0);
    assert_eq!(svcs.len(), 3);
    let web = &svcs["web-127-0-0-2-8080"];
    assert_eq!(web.name, "web");
    assert_eq!((web.address.as_str(), web.port), ("127.0.0.2", 8080));
    let mut tags = web.tags.clone();
    tags.sort();
    assert_eq!(tags, ["http", "public", "rancon-default"]);
    assert_eq!(web.meta["rancon-owner"], "default");
    assert_eq!(web.meta["external-source"], "rancon");
    assert!(!web.meta.keys().any(|k| k.starts_with('@')));
    assert_eq!(svcs["db-127-0-0-2-5432"].meta["team"], "core");
    assert_eq!(c.requests(), (1, 3));

    let r = round(&p).await;
    assert!(!r.failed());
    assert_eq!(r.backends[0].plan.as_ref().unwrap().unchanged, 3);
    assert_eq!(c.requests(), (2, 3), "steady state: one list, no write");
}

#[tokio::test]
async fn a_changed_tag_updates_only_that_service() {
    let c = Consul::start(1).await;
    let s = Setup::new();
    s.services(&[
        ("web", "127.0.0.2", 8080, &[("rancon.tag", "v1")]),
        ("api", "127.0.0.2", 9000, &[]),
    ]);
    let p = s.pipeline("", &format!("url = {:?}", c.url(0)));
    round(&p).await;
    s.services(&[
        ("web", "127.0.0.2", 8080, &[("rancon.tag", "v2")]),
        ("api", "127.0.0.2", 9000, &[]),
    ]);
    let before = c.requests().1;
    let r = round(&p).await;
    assert!(!r.failed());
    assert_eq!(c.requests().1 - before, 1);
    assert!(
        c.agent_services(0)["web-127-0-0-2-8080"]
            .tags
            .contains(&"v2".to_string())
    );
    assert!(
        !c.agent_services(0)["web-127-0-0-2-8080"]
            .tags
            .contains(&"v1".to_string())
    );
}

#[tokio::test]
async fn vanished_services_are_deregistered_and_foreign_ones_untouched() {
    let c = Consul::start(1).await;
    let node = format!("node-{}", c.ips[0]);
    c.insert(&node, foreign("hand-made", &["web"]));
    c.insert(&node, foreign("other-owner", &["rancon-blue"]));
    let s = Setup::new();
    s.services(&[
        ("web", "127.0.0.2", 8080, &[]),
        ("api", "127.0.0.2", 9000, &[]),
        ("old", "127.0.0.2", 7000, &[]),
    ]);
    let p = s.pipeline("", &format!("url = {:?}", c.url(0)));
    round(&p).await;
    s.services(&[
        ("web", "127.0.0.2", 8080, &[]),
        ("api", "127.0.0.2", 9000, &[]),
    ]);
    let r = round(&p).await;
    assert!(!r.failed(), "{r:?}");
    let svcs = c.agent_services(0);
    assert!(!svcs.contains_key("old-127-0-0-2-7000"));
    assert!(svcs.contains_key("web-127-0-0-2-8080"));
    assert_eq!(svcs["hand-made"], foreign("hand-made", &["web"]));
    assert_eq!(
        svcs["other-owner"],
        foreign("other-owner", &["rancon-blue"])
    );
}

#[tokio::test]
async fn two_owners_share_an_agent_without_touching_each_other() {
    let c = Consul::start(1).await;
    let (a, b) = (Setup::new(), Setup::new());
    a.services(&[("alpha", "127.0.0.2", 1000, &[])]);
    b.services(&[("beta", "127.0.0.2", 2000, &[])]);
    let pa = a.pipeline("owner = \"a\"", &format!("url = {:?}", c.url(0)));
    let pb = b.pipeline(
        "owner = \"b\"\nmax_deregister_fraction = 1.0",
        &format!("url = {:?}", c.url(0)),
    );
    round(&pa).await;
    round(&pb).await;
    assert_eq!(c.agent_services(0).len(), 2);
    // b's services all vanish: only b's registration goes.
    b.services(&[]);
    let r = round(&pb).await;
    assert!(!r.failed(), "{r:?}");
    let svcs = c.agent_services(0);
    assert_eq!(svcs.keys().collect::<Vec<_>>(), ["alpha-127-0-0-2-1000"]);
    assert_eq!(svcs["alpha-127-0-0-2-1000"].meta["rancon-owner"], "a");
    let r = round(&pa).await;
    assert_eq!(r.backends[0].plan.as_ref().unwrap().unchanged, 1);
}

#[tokio::test]
async fn host_placeholder_targets_each_hosts_agent_and_a_fresh_process_cleans_a_vanished_host() {
    let c = Consul::start(2).await;
    let url = format!("url = \"http://%HOST%:{}\"", c.port);
    let s = Setup::new();
    s.services(&[
        ("web", "127.0.0.2", 8080, &[]),
        ("web", "127.0.0.3", 8080, &[]),
        ("api", "127.0.0.3", 9000, &[]),
    ]);
    let p = s.pipeline("max_deregister_fraction = 1.0", &url);
    let r = round(&p).await;
    assert!(!r.failed(), "{r:?}");
    assert_eq!(c.agent_services(0).len(), 1);
    assert_eq!(c.agent_services(1).len(), 2);
    drop(p);
    // rancon restarts after every service of host .3 vanished: the first round finds agent
    // .3 through the catalog and cleans it.
    s.services(&[("web", "127.0.0.2", 8080, &[])]);
    let fresh = s.pipeline("max_deregister_fraction = 1.0", &url);
    let r = round(&fresh).await;
    assert!(!r.failed(), "{r:?}");
    assert_eq!(c.agent_services(0).len(), 1);
    assert!(c.agent_services(1).is_empty());
    // Steady afterwards: one list per agent still holding registrations, no write.
    let before = c.requests();
    round(&fresh).await;
    let after = c.requests();
    assert_eq!(after.1, before.1);
    assert_eq!(after.0 - before.0, 1);
}

#[tokio::test]
async fn an_unreachable_agent_fails_only_its_own_work() {
    let c = Consul::start(1).await;
    let s = Setup::new();
    // Nothing listens on 127.0.0.9 at the double's port.
    s.services(&[
        ("web", "127.0.0.2", 8080, &[]),
        ("web", "127.0.0.9", 8080, &[]),
    ]);
    let p = s.pipeline(
        "",
        &format!("url = \"http://%HOST%:{}\"\ntimeout = \"2s\"", c.port),
    );
    let r = round(&p).await;
    assert!(r.failed());
    assert!(c.agent_services(0).contains_key("web-127-0-0-2-8080"));
    let err = backend_error(&r);
    assert!(err.contains("127.0.0.9"), "{err}");
    assert_eq!(r.backends[0].failed.len(), 1);
    assert_eq!(r.backends[0].failed[0].id, "web-127-0-0-9-8080");
}

#[tokio::test]
async fn acl_denials_name_backend_and_operation_and_never_the_token() {
    let c = Consul::start_with(1, Some("s3cr3t-token"), None).await;
    let s = Setup::new();
    s.services(&[("web", "127.0.0.2", 8080, &[])]);
    // No token: the anonymous listing is empty (filtered), the write is denied.
    let p = s.pipeline("", &format!("url = {:?}", c.url(0)));
    let r = round(&p).await;
    let err = backend_error(&r);
    assert!(
        err.contains("consul: ACL token rejected on register"),
        "{err}"
    );
    assert!(err.contains("Permission denied"), "{err}");
    // A wrong token: even the listing is refused.
    let p = s.pipeline("", &format!("url = {:?}\ntoken = \"wrong-one\"", c.url(0)));
    let r = round(&p).await;
    let err = backend_error(&r);
    assert!(err.contains("ACL token rejected on list services"), "{err}");
    assert!(err.contains("ACL not found"), "{err}");
    assert!(!err.contains("wrong-one"));
    assert!(c.agent_services(0).is_empty());
    // The right token from a file.
    std::fs::write(s.path("token"), "s3cr3t-token\n").unwrap();
    let p = s.pipeline(
        "",
        &format!("url = {:?}\ntoken_file = {:?}", c.url(0), s.path("token")),
    );
    let r = round(&p).await;
    assert!(!r.failed(), "{r:?}");
    assert_eq!(c.agent_services(0).len(), 1);
}

#[tokio::test]
async fn a_failed_write_is_retried_next_round_and_does_not_stop_the_others() {
    let c = Consul::start(1).await;
    *c.cluster.fail_register.lock().unwrap() = Some("bad".into());
    let s = Setup::new();
    s.services(&[("good", "127.0.0.2", 1, &[]), ("bad", "127.0.0.2", 2, &[])]);
    let p = s.pipeline("", &format!("url = {:?}", c.url(0)));
    let r = round(&p).await;
    assert!(r.failed());
    assert!(backend_error(&r).contains("HTTP 500: injected failure"));
    assert!(c.agent_services(0).contains_key("good-127-0-0-2-1"));
    *c.cluster.fail_register.lock().unwrap() = None;
    let r = round(&p).await;
    assert!(!r.failed());
    assert!(c.agent_services(0).contains_key("bad-127-0-0-2-2"));
}

#[tokio::test]
async fn deregistering_what_the_agent_no_longer_has_counts_as_done() {
    let c = Consul::start(1).await;
    let s = Setup::new();
    s.services(&[("web", "127.0.0.2", 8080, &[])]);
    let p = s.pipeline(
        "max_deregister_fraction = 1.0",
        &format!("url = {:?}", c.url(0)),
    );
    round(&p).await;
    let be = &p.backends[0];
    let empty = Default::default();
    let actual = be.list(&empty).await.unwrap().regs;
    let plan = rancon::plan::plan(&empty, &actual);
    // Someone removed it between the listing and the write: the agent answers 404.
    c.cluster
        .nodes
        .lock()
        .unwrap()
        .get_mut(&format!("node-{}", c.ips[0]))
        .unwrap()
        .services
        .clear();
    let report = be.apply(&empty, &actual, &plan).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.done, 1);
}

#[tokio::test]
async fn names_are_lowercased_and_id_placeholders_see_the_final_name() {
    let c = Consul::start(1).await;
    let s = Setup::new();
    s.services(&[(
        "MyService",
        "127.0.0.2",
        8080,
        &[("rancon.name", "%NAME%-teststack")],
    )]);
    let p = s.pipeline(
        "",
        &format!("url = {:?}\ntags = [\"svc-%NAME%\"]", c.url(0)),
    );
    round(&p).await;
    let svcs = c.agent_services(0);
    let reg = &svcs["myservice-teststack-127-0-0-2-8080"];
    assert_eq!(reg.name, "myservice-teststack");
    assert!(reg.tags.contains(&"svc-myservice-teststack".to_string()));
}

#[tokio::test]
async fn source_health_is_mirrored_into_a_ttl_check_refreshed_every_round() {
    let c = Consul::start(1).await;
    let node = format!("node-{}", c.ips[0]);
    let s = Setup::new();
    s.services(&[
        ("web", "127.0.0.2", 1, &[("rancon.health", "healthy")]),
        ("api", "127.0.0.2", 2, &[("rancon.health", "unhealthy")]),
    ]);
    let p = s.pipeline(
        "interval = \"10s\"",
        &format!(
            "url = {:?}\ncheck = \"source\"\ncheck_deregister_after = \"5m\"",
            c.url(0)
        ),
    );
    round(&p).await;
    let checks = c.checks(&node);
    let web = &checks["service:web-127-0-0-2-1:source"];
    assert_eq!(web.status, "passing");
    assert_eq!(web.ttl.as_deref(), Some("30s"), "3 × interval");
    assert_eq!(web.deregister_after.as_deref(), Some("300s"));
    assert_eq!(checks["service:api-127-0-0-2-2:source"].status, "critical");

    // Steady: one TTL refresh per service, no registration.
    let before = c.writes_log().len();
    s.services(&[
        ("web", "127.0.0.2", 1, &[("rancon.health", "degraded")]),
        ("api", "127.0.0.2", 2, &[("rancon.health", "healthy")]),
    ]);
    let r = round(&p).await;
    assert!(!r.failed(), "{r:?}");
    let writes: Vec<String> = c.writes_log()[before..].to_vec();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert!(
        writes.iter().all(|w| w.contains("/v1/agent/check/update/")),
        "{writes:?}"
    );
    let checks = c.checks(&node);
    assert_eq!(checks["service:web-127-0-0-2-1:source"].status, "warning");
    assert_eq!(checks["service:api-127-0-0-2-2:source"].status, "passing");

    // The agent lost the check (restart): the refresh gets 404 and the service is re-registered.
    c.remove_check(&node, "service:web-127-0-0-2-1:source");
    let r = round(&p).await;
    assert!(!r.failed(), "{r:?}");
    assert_eq!(
        c.checks(&node)["service:web-127-0-0-2-1:source"].status,
        "warning"
    );
}

#[tokio::test]
async fn label_checks_become_http_and_tcp_checks_consul_runs() {
    let c = Consul::start(1).await;
    let node = format!("node-{}", c.ips[0]);
    let s = Setup::new();
    s.services(&[(
        "web",
        "127.0.0.2",
        8080,
        &[
            ("rancon.check.http", "/healthz"),
            ("rancon.check.tcp", "true"),
            ("rancon.check.interval", "5s"),
        ],
    )]);
    let p = s.pipeline("", &format!("url = {:?}", c.url(0)));
    let r = round(&p).await;
    assert!(!r.failed(), "{r:?}");
    let checks = c.checks(&node);
    let http = &checks["service:web-127-0-0-2-8080:http"];
    assert_eq!(
        http.target.as_deref(),
        Some("http://127.0.0.2:8080/healthz")
    );
    assert_eq!(
        checks["service:web-127-0-0-2-8080:tcp"].target.as_deref(),
        Some("127.0.0.2:8080")
    );
    // Checks are part of the comparison: steady state still writes nothing.
    let before = c.requests().1;
    round(&p).await;
    assert_eq!(c.requests().1, before);
    // A changed check re-registers.
    s.services(&[("web", "127.0.0.2", 8080, &[("rancon.check.http", "/ready")])]);
    round(&p).await;
    let checks = c.checks(&node);
    assert!(!checks.contains_key("service:web-127-0-0-2-8080:tcp"));
    assert_eq!(
        checks["service:web-127-0-0-2-8080:http"].target.as_deref(),
        Some("http://127.0.0.2:8080/ready")
    );
}

#[tokio::test]
async fn catalog_mode_registers_on_a_synthetic_node() {
    let c = Consul::start(1).await;
    let s = Setup::new();
    s.services(&[
        ("web", "10.0.0.5", 80, &[("rancon.health", "healthy")]),
        ("api", "10.0.0.6", 81, &[]),
    ]);
    let p = s.pipeline(
        "max_deregister_fraction = 1.0",
        &format!(
            "url = {:?}\nmode = \"catalog\"\nnode = \"rancher-sync\"\naddress = \"10.0.0.1\"\ncheck = \"source\"",
            c.url(0)
        ),
    );
    let r = round(&p).await;
    assert!(!r.failed(), "{r:?}");
    let svcs = c.services("rancher-sync");
    assert_eq!(svcs.len(), 2);
    assert_eq!(svcs["web-10-0-0-5-80"].address, "10.0.0.5");
    assert_eq!(
        c.checks("rancher-sync")["service:web-10-0-0-5-80:source"].status,
        "passing"
    );
    assert!(
        c.agent_services(0).is_empty(),
        "nothing on the agent's own node"
    );
    let before = c.requests().1;
    round(&p).await;
    assert_eq!(c.requests().1, before, "steady: no write");
    // A health change is recorded by re-registering that one service.
    s.services(&[("web", "10.0.0.5", 80, &[("rancon.health", "unhealthy")])]);
    let r = round(&p).await;
    assert!(!r.failed(), "{r:?}");
    assert_eq!(c.requests().1 - before, 2, "one update, one deregistration");
    assert_eq!(
        c.checks("rancher-sync")["service:web-10-0-0-5-80:source"].status,
        "critical"
    );
    assert!(!c.services("rancher-sync").contains_key("api-10-0-0-6-81"));
}

#[tokio::test]
async fn tls_with_custom_ca_client_certificates_and_server_name() {
    let ca = support::pki::Ca::new();
    let (cert, key) = ca.leaf(&["server.dc1.consul"]);
    let (client_cert, client_key) = ca.leaf(&["rancon-client"]);
    let c = Consul::start_with(
        1,
        None,
        Some(TlsFiles {
            cert_pem: cert,
            key_pem: key,
            client_ca_pem: Some(ca.pem.clone()),
        }),
    )
    .await;
    let s = Setup::new();
    s.services(&[("web", "127.0.0.2", 8080, &[])]);
    std::fs::write(s.path("ca.pem"), &ca.pem).unwrap();
    std::fs::write(s.path("client.pem"), &client_cert).unwrap();
    std::fs::write(s.path("client.key"), &client_key).unwrap();
    let base = format!(
        "url = {:?}\ntimeout = \"3s\"\n[backends.consul.tls]\nca_file = {:?}\n",
        c.url(0),
        s.path("ca.pem")
    );
    // The certificate names server.dc1.consul, not 127.0.0.2: refused without server_name.
    let r = round(&s.pipeline("", &base)).await;
    assert!(r.failed());
    assert!(
        backend_error(&r).to_lowercase().contains("certificate"),
        "{}",
        backend_error(&r)
    );
    // With server_name but no client certificate: the server's mTLS check refuses.
    let named = format!("{base}server_name = \"server.dc1.consul\"\n");
    let r = round(&s.pipeline("", &named)).await;
    assert!(r.failed());
    assert!(c.agent_services(0).is_empty());
    // Everything configured: registered.
    let full = format!(
        "{named}cert_file = {:?}\nkey_file = {:?}\n",
        s.path("client.pem"),
        s.path("client.key")
    );
    let r = round(&s.pipeline("", &full)).await;
    assert!(!r.failed(), "{r:?}");
    assert_eq!(c.agent_services(0).len(), 1);
    // insecure skips verification (but the client certificate is still needed).
    let insecure = format!(
        "url = {:?}\n[backends.consul.tls]\ninsecure = true\ncert_file = {:?}\nkey_file = {:?}\n",
        c.url(0),
        s.path("client.pem"),
        s.path("client.key")
    );
    let r = round(&s.pipeline("", &insecure)).await;
    assert!(!r.failed(), "{r:?}");
}

#[tokio::test]
async fn a_failed_source_deregisters_nothing_in_consul() {
    let c = Consul::start(1).await;
    let s = Setup::new();
    s.services(&[("web", "127.0.0.2", 8080, &[])]);
    let p = s.pipeline(
        "max_deregister_fraction = 1.0",
        &format!("url = {:?}", c.url(0)),
    );
    round(&p).await;
    std::fs::write(s.path("services.toml"), "not = [valid").unwrap();
    let r = round(&p).await;
    assert!(r.failed());
    assert_eq!(r.backends[0].held_back, 1);
    assert_eq!(c.agent_services(0).len(), 1);
}
