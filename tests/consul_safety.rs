//! Issue 11, the Consul parts, met where a user meets them: a `Pipeline` built from TOML
//! against the Consul double (tests/support/consul.rs, whose rules follow Consul's source).
//! Ownership (ids held by others are never written over), agents that could not be listed,
//! addresses that could steer a request (and its token) elsewhere, Consul's meta limits and
//! older agents' answers, and what discovery costs.

#[allow(dead_code)]
mod support;

use rancon::engine::{Pipeline, RoundOptions, RoundReport};
use rancon::error::SkipKind;
use std::sync::atomic::Ordering;
use support::consul::{Consul, Svc};

use support::consul_setup::{Service, Setup};

async fn round(p: &Pipeline) -> RoundReport {
    p.round(RoundOptions::default()).await
}

fn skips(r: &RoundReport, kind: SkipKind) -> Vec<String> {
    r.backends[0]
        .skipped
        .iter()
        .filter(|s| s.kind == kind)
        .map(|s| s.to_string())
        .collect()
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

/// A registration made by hand (or another tool) with the given id and tags.
fn by_hand(id: &str, tags: &[&str], meta: &[(&str, &str)]) -> Svc {
    Svc {
        id: id.into(),
        name: "hand-made".into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        meta: meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        address: "10.9.9.9".into(),
        port: 1,
    }
}

// ---- item 1: ids held by others are never written over ----

#[tokio::test]
async fn a_hand_made_registration_with_our_id_is_skipped_not_overwritten() {
    let c = Consul::start(1).await;
    let node = format!("node-{}", c.ips[0]);
    let theirs = by_hand("web-127-0-0-2-8080", &["web"], &[]);
    c.insert(&node, theirs.clone());
    let s = Setup::new();
    s.services(&[
        ("web", "127.0.0.2", 8080, &[]),
        ("api", "127.0.0.2", 9000, &[]),
    ]);
    let p = s.pipeline("", &format!("url = {:?}", c.url(0)));
    let r = round(&p).await;
    assert!(
        !r.failed(),
        "a conflict alone does not fail the round: {r:?}"
    );
    assert_eq!(c.agent_services(0)["web-127-0-0-2-8080"], theirs);
    assert!(c.agent_services(0).contains_key("api-127-0-0-2-9000"));
    let conflicts = skips(&r, SkipKind::Conflict);
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert!(
        conflicts[0].contains("web-127-0-0-2-8080") && conflicts[0].contains("nobody (unowned)"),
        "{conflicts:?}"
    );
    assert!(
        !c.writes_log().iter().any(|w| w.contains("8080")),
        "{:?}",
        c.writes_log()
    );
    // Steady while the conflict lasts: one read, no write, still reported.
    for _ in 0..2 {
        let before = c.requests();
        let r = round(&p).await;
        assert_eq!(skips(&r, SkipKind::Conflict).len(), 1);
        let after = c.requests();
        assert_eq!((after.0 - before.0, after.1 - before.1), (1, 0));
    }
    // The holder lets go: the id is ours from the next round on.
    c.cluster
        .nodes
        .lock()
        .unwrap()
        .get_mut(&node)
        .unwrap()
        .services
        .remove("web-127-0-0-2-8080");
    let r = round(&p).await;
    assert!(skips(&r, SkipKind::Conflict).is_empty());
    assert_eq!(
        c.agent_services(0)["web-127-0-0-2-8080"].meta["rancon-owner"],
        "default"
    );
}

#[tokio::test]
async fn a_registration_added_by_hand_after_the_first_round_is_found_too() {
    let c = Consul::start(1).await;
    let node = format!("node-{}", c.ips[0]);
    let s = Setup::new();
    s.services(&[("api", "127.0.0.2", 9000, &[])]);
    let p = s.pipeline("", &format!("url = {:?}", c.url(0)));
    round(&p).await;
    // Later rounds read only this owner's registrations; a new endpoint whose id someone
    // else took meanwhile is looked up by id.
    let theirs = by_hand("web-127-0-0-2-8080", &[], &[("rancon-owner", "green")]);
    c.insert(&node, theirs.clone());
    s.services(&[
        ("api", "127.0.0.2", 9000, &[]),
        ("web", "127.0.0.2", 8080, &[]),
    ]);
    let before = c.requests();
    let r = round(&p).await;
    let after = c.requests();
    assert_eq!(c.agent_services(0)["web-127-0-0-2-8080"], theirs);
    let conflicts = skips(&r, SkipKind::Conflict);
    assert!(conflicts[0].contains("owner green"), "{conflicts:?}");
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (2, 0),
        "ours, then the one missing id"
    );
}

#[tokio::test]
async fn two_owners_with_colliding_ids_settle_the_holder_keeps_it() {
    let c = Consul::start(1).await;
    let (a, b) = (Setup::new(), Setup::new());
    // Both render web-127-0-0-2-8080; each also has one of its own.
    a.services(&[
        ("web", "127.0.0.2", 8080, &[]),
        ("alpha", "127.0.0.2", 1, &[]),
    ]);
    b.services(&[
        ("web", "127.0.0.2", 8080, &[]),
        ("beta", "127.0.0.2", 2, &[]),
    ]);
    let url = format!("url = {:?}", c.url(0));
    let pa = a.pipeline("owner = \"a\"", &url);
    let pb = b.pipeline("owner = \"b\"", &url);
    let ra = round(&pa).await;
    let rb = round(&pb).await;
    assert!(!ra.failed() && !rb.failed(), "{ra:?} {rb:?}");
    assert!(skips(&ra, SkipKind::Conflict).is_empty());
    let conflict = skips(&rb, SkipKind::Conflict);
    assert!(conflict[0].contains("owner a"), "{conflict:?}");
    let svcs = c.agent_services(0);
    assert_eq!(svcs["web-127-0-0-2-8080"].meta["rancon-owner"], "a");
    assert!(svcs["web-127-0-0-2-8080"].tags.contains(&"rancon-a".into()));
    assert!(!svcs["web-127-0-0-2-8080"].tags.contains(&"rancon-b".into()));
    assert_eq!(svcs["beta-127-0-0-2-2"].meta["rancon-owner"], "b");
    // After the first round neither writes, whatever the order; each reads once a round.
    for _ in 0..3 {
        let before = c.requests();
        round(&pb).await;
        round(&pa).await;
        let after = c.requests();
        assert_eq!((after.0 - before.0, after.1 - before.1), (2, 0));
    }
    assert_eq!(
        c.agent_services(0)["web-127-0-0-2-8080"].meta["rancon-owner"],
        "a"
    );
}

#[tokio::test]
async fn a_dry_run_shows_the_conflict() {
    let c = Consul::start(1).await;
    c.insert(
        &format!("node-{}", c.ips[0]),
        by_hand("web-127-0-0-2-8080", &["rancon-blue"], &[]),
    );
    let s = Setup::new();
    s.services(&[("web", "127.0.0.2", 8080, &[])]);
    let p = s.pipeline("", &format!("url = {:?}", c.url(0)));
    let r = p
        .round(RoundOptions {
            dry_run: true,
            ..Default::default()
        })
        .await;
    let conflicts = skips(&r, SkipKind::Conflict);
    assert!(conflicts[0].contains("owner blue"), "{conflicts:?}");
    assert_eq!(r.backends[0].plan.as_ref().unwrap().register.len(), 0);
}

#[tokio::test]
async fn catalog_mode_owners_sharing_the_synthetic_node_do_not_overwrite_each_other() {
    let c = Consul::start(1).await;
    let (a, b) = (Setup::new(), Setup::new());
    a.services(&[("web", "10.0.0.5", 80, &[])]);
    b.services(&[("web", "10.0.0.5", 80, &[])]);
    // Both on the default node `rancon-sync`.
    let cfg = format!("url = {:?}\nmode = \"catalog\"", c.url(0));
    let pa = a.pipeline("owner = \"a\"", &cfg);
    let pb = b.pipeline("owner = \"b\"", &cfg);
    round(&pa).await;
    let r = round(&pb).await;
    assert!(skips(&r, SkipKind::Conflict)[0].contains("owner a"));
    assert_eq!(
        c.services("rancon-sync")["web-10-0-0-5-80"].meta["rancon-owner"],
        "a"
    );
    let before = c.requests();
    round(&pb).await;
    round(&pa).await;
    let after = c.requests();
    assert_eq!((after.0 - before.0, after.1 - before.1), (2, 0));
}

#[tokio::test]
async fn an_endpoint_moved_onto_a_host_where_its_id_is_taken_leaves_its_old_copy_cleaned() {
    let c = Consul::start(2).await;
    let s = Setup::new();
    // The id does not name the host, so the service keeps its id when it moves.
    let cfg = format!("url = \"http://%HOST%:{}\"\nid = \"%NAME%\"", c.port);
    s.services(&[("web", "127.0.0.2", 8080, &[])]);
    let p = s.pipeline("max_deregister_fraction = 1.0", &cfg);
    round(&p).await;
    assert!(c.agent_services(0).contains_key("web"));
    let theirs = by_hand("web", &["team-x"], &[]);
    c.insert(&format!("node-{}", c.ips[1]), theirs.clone());
    s.services(&[("web", "127.0.0.3", 8080, &[])]);
    let r = round(&p).await;
    assert!(skips(&r, SkipKind::Conflict)[0].contains("nobody"), "{r:?}");
    assert_eq!(c.agent_services(1)["web"], theirs, "not overwritten");
    assert!(
        c.agent_services(0).is_empty(),
        "the copy on the old host is cleaned: {:?}",
        c.agent_services(0)
    );
}

// ---- item 6: an agent whose listing failed stays known ----

#[tokio::test]
async fn an_agent_whose_listing_failed_is_listed_again_until_it_succeeds() {
    let c = Consul::start(2).await;
    let s = Setup::new();
    s.services(&[
        ("web", "127.0.0.2", 8080, &[]),
        ("api", "127.0.0.3", 9000, &[]),
    ]);
    let p = s.pipeline(
        "max_deregister_fraction = 1.0",
        &format!("url = \"http://%HOST%:{}\"", c.port),
    );
    assert!(!round(&p).await.failed());
    assert_eq!(c.agent_services(1).len(), 1);
    // Agent .3 cannot be listed this round, and its service vanished from the source.
    let node3 = format!("node-{}", c.ips[1]);
    c.cluster.fail_reads.lock().unwrap().insert(node3.clone());
    s.services(&[("web", "127.0.0.2", 8080, &[])]);
    let r = round(&p).await;
    assert!(r.failed());
    assert_eq!(c.agent_services(1).len(), 1, "unknown is not empty");
    // A later round lists it again, and cleans it.
    c.cluster.fail_reads.lock().unwrap().clear();
    let r = round(&p).await;
    assert!(!r.failed(), "{r:?}");
    assert!(
        c.agent_services(1).is_empty(),
        "leaked: {:?}",
        c.agent_services(1)
    );
}

// ---- items 9 and 16: addresses ----

/// A listener standing for another host: counts the connections it gets.
async fn elsewhere(ip: &str) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let l = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((_conn, _)) = l.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, hits)
}

#[tokio::test]
async fn an_address_that_would_steer_the_agent_url_elsewhere_is_skipped_and_never_contacted() {
    let c = Consul::start_with(1, Some("s3cr3t-token"), None).await;
    let (port, hits) = elsewhere("127.0.0.5").await;
    let s = Setup::new();
    let steal = format!("127.0.0.5:{port}/steal?x=");
    s.services(&[
        ("web", "127.0.0.2", 8080, &[]),
        ("evil", steal.as_str(), 80, &[]),
        ("evil", "evil@127.0.0.5", 81, &[]),
    ]);
    let p = s.pipeline(
        "",
        &format!(
            "url = \"http://%HOST%:{}\"\ntoken = \"s3cr3t-token\"",
            c.port
        ),
    );
    let r = round(&p).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the token went elsewhere");
    let bad = skips(&r, SkipKind::Address);
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(bad.iter().any(|b| b.contains("/steal")), "{bad:?}");
    assert!(c.agent_services(0).contains_key("web-127-0-0-2-8080"));
    assert!(!backend_error(&r).contains("s3cr3t"));

    // Any placeholder in the URL, not only %HOST%: a label naming the agent.
    s.services(&[
        ("web", "127.0.0.2", 8080, &[("rancon.agent", "127.0.0.2")]),
        ("evil", "127.0.0.2", 82, &[("rancon.agent", steal.as_str())]),
    ]);
    let p = s.pipeline(
        "",
        &format!(
            "url = \"http://%AGENT%:{}\"\ntoken = \"s3cr3t-token\"",
            c.port
        ),
    );
    let r = round(&p).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the token went elsewhere");
    let bad = skips(&r, SkipKind::Address);
    assert!(bad.len() == 1 && bad[0].contains("%AGENT%"), "{bad:?}");
}

#[tokio::test]
async fn discovery_never_follows_an_address_from_the_catalog_elsewhere() {
    let c = Consul::start(1).await;
    let (port, hits) = elsewhere("127.0.0.5").await;
    // Someone registered a service carrying this owner's tag with a hostile address.
    let mut svc = by_hand("x", &["rancon-default"], &[]);
    svc.address = format!("127.0.0.5:{port}/steal?x=");
    c.insert(&format!("node-{}", c.ips[0]), svc);
    let s = Setup::new();
    s.services(&[("web", "127.0.0.2", 8080, &[])]);
    let p = s.pipeline("", &format!("url = \"http://%HOST%:{}\"", c.port));
    round(&p).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    assert!(c.agent_services(0).contains_key("web-127-0-0-2-8080"));
}

#[tokio::test]
async fn an_endpoint_on_an_unspecified_address_is_skipped_with_a_warning_not_sent_every_round() {
    let c = Consul::start(1).await;
    let s = Setup::new();
    s.services(&[
        ("web", "127.0.0.2", 8080, &[]),
        ("any", "0.0.0.0", 80, &[]),
        ("any6", "::", 81, &[]),
    ]);
    let p = s.pipeline("", &format!("url = {:?}", c.url(0)));
    for _ in 0..2 {
        let r = round(&p).await;
        let bad = skips(&r, SkipKind::Address);
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(bad[0].contains("unspecified"), "{bad:?}");
        assert!(r.backends[0].failed.is_empty(), "{r:?}");
    }
    assert_eq!(c.requests().1, 1, "one registration, nothing refused");
}

// ---- item 15: the checks digest ----

#[tokio::test]
async fn a_long_http_check_path_is_registered_and_meta_holds_a_short_digest() {
    let c = Consul::start(1).await;
    let node = format!("node-{}", c.ips[0]);
    let path = format!("/health/{}", "a".repeat(600));
    let s = Setup::new();
    s.services(&[(
        "web",
        "127.0.0.2",
        8080,
        &[("rancon.check.http", path.as_str())],
    )]);
    let p = s.pipeline("", &format!("url = {:?}", c.url(0)));
    let r = round(&p).await;
    assert!(skips(&r, SkipKind::Limit).is_empty(), "{r:?}");
    assert!(!r.failed(), "{r:?}");
    let svc = &c.agent_services(0)["web-127-0-0-2-8080"];
    assert_eq!(svc.meta["rancon-checks"].len(), 16, "{:?}", svc.meta);
    assert_eq!(
        c.checks(&node)["service:web-127-0-0-2-8080:http"]
            .target
            .as_deref(),
        Some(format!("http://127.0.0.2:8080{path}").as_str())
    );
    let before = c.requests();
    round(&p).await;
    let after = c.requests();
    assert_eq!((after.0 - before.0, after.1 - before.1), (1, 0), "steady");
}

#[tokio::test]
async fn a_registration_with_the_old_checks_meta_is_rewritten_once_after_the_upgrade() {
    let c = Consul::start(1).await;
    let node = format!("node-{}", c.ips[0]);
    // As the previous version wrote it: the check specs' JSON as the meta value.
    let old_json = r#"[{"kind":"tcp","target":"127.0.0.2:8080","interval":"10s"}]"#;
    let mut old = by_hand(
        "web-127-0-0-2-8080",
        &["rancon-default"],
        &[
            ("rancon-owner", "default"),
            ("external-source", "rancon"),
            ("rancon-checks", old_json),
        ],
    );
    (old.name, old.address, old.port) = ("web".into(), "127.0.0.2".into(), 8080);
    c.insert(&node, old);
    let s = Setup::new();
    s.services(&[("web", "127.0.0.2", 8080, &[("rancon.check.tcp", "true")])]);
    let p = s.pipeline("", &format!("url = {:?}", c.url(0)));
    round(&p).await;
    assert_eq!(c.requests().1, 1, "rewritten once");
    assert_eq!(
        c.agent_services(0)["web-127-0-0-2-8080"].meta["rancon-checks"].len(),
        16
    );
    round(&p).await;
    round(&p).await;
    assert_eq!(c.requests().1, 1, "then steady");
}

// ---- item 17: older agents answer 500 for an unknown TTL check ----

#[tokio::test]
async fn an_older_agents_500_for_an_unknown_ttl_check_re_registers_without_retrying() {
    let c = Consul::start(1).await;
    c.cluster.legacy_check_update.store(true, Ordering::SeqCst);
    let node = format!("node-{}", c.ips[0]);
    let s = Setup::new();
    s.services(&[("web", "127.0.0.2", 1, &[("rancon.health", "healthy")])]);
    let p = s.pipeline("", &format!("url = {:?}\ncheck = \"source\"", c.url(0)));
    round(&p).await;
    // The agent restarted without its state: the check is gone.
    c.remove_check(&node, "service:web-127-0-0-2-1:source");
    let before = c.writes_log().len();
    let r = round(&p).await;
    assert!(!r.failed(), "{}", backend_error(&r));
    let writes = c.writes_log()[before..].to_vec();
    assert_eq!(
        writes
            .iter()
            .filter(|w| w.contains("/check/update/"))
            .count(),
        1,
        "not retried as a transient failure: {writes:?}"
    );
    assert!(
        writes.iter().any(|w| w.contains("/service/register")),
        "{writes:?}"
    );
    assert_eq!(
        c.checks(&node)["service:web-127-0-0-2-1:source"].status,
        "passing"
    );
}

// ---- item 18: discovery costs O(nodes) ----

#[tokio::test]
async fn the_first_round_with_host_agents_reads_at_most_agents_plus_nodes_plus_a_constant() {
    let c = Consul::start(3).await;
    let s = Setup::new();
    // 300 services with 150 distinct names over three hosts.
    let names: Vec<String> = (0..150).map(|i| format!("svc-{i:03}")).collect();
    let mut list: Vec<Service> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        for h in 0..2 {
            let host = ["127.0.0.2", "127.0.0.3", "127.0.0.4"][(i + h) % 3];
            list.push((n.as_str(), host, 20_000 + h as u16, &[]));
        }
    }
    s.services(&list);
    let cfg = format!("url = \"http://%HOST%:{}\"", c.port);
    let extra = "max_deregister_fraction = 1.0";
    let nodes = c.cluster.nodes.lock().unwrap().len();
    let agents = 3;
    // Cold: nothing registered yet (every id is new, and looked for among others' ids).
    let r = round(&s.pipeline(extra, &cfg)).await;
    assert!(!r.failed(), "{r:?}");
    let reads = c.requests().0;
    assert!(
        reads <= agents + nodes + 1,
        "cold: {reads} reads for {agents} agents and {nodes} nodes"
    );
    // A fresh process (the old tool's --once mode) after host .4 lost all its services.
    list.retain(|(_, host, _, _)| *host != "127.0.0.4");
    s.services(&list);
    let before = c.requests().0;
    let r = round(&s.pipeline(extra, &cfg)).await;
    assert!(!r.failed(), "{r:?}");
    let reads = c.requests().0 - before;
    assert!(
        reads <= agents + nodes + 1,
        "{reads} reads for {agents} agents and {nodes} nodes"
    );
    assert!(
        c.agent_services(2).is_empty(),
        "the vanished host is cleaned"
    );
}

// ---- item 7 (and 2, 11, 12, 21): configuration ----

#[test]
fn config_refuses_what_consul_or_ownership_cannot_take_naming_the_key() {
    let s = Setup::new();
    s.services(&[("web", "127.0.0.2", 8080, &[])]);
    let cases: &[(&str, &str, &str)] = &[
        (
            "",
            "tags = [\"ok\", \"rancon-other\"]",
            "backends.consul.tags[1]",
        ),
        (
            "",
            "meta = { consul-x = \"1\" }",
            "backends.consul.meta.consul-x",
        ),
        (
            "",
            "meta = { rancon-y = \"1\" }",
            "backends.consul.meta.rancon-y",
        ),
        ("", "token = \"abc\\u0001def\"", "backends.consul.token"),
        ("", "token = \"abc\\ndef\"", "backends.consul.token"),
        (
            "interval = \"60s\"",
            "check = \"source\"\ncheck_ttl = \"30s\"",
            "backends.consul.check_ttl",
        ),
        (
            "owner = \"a123456789b123456789c123456789d123456789e123456789f123456\"",
            "",
            "owner",
        ),
        ("", "id = \"static-id\"", "backends.consul.id"),
    ];
    for (extra, backend, key) in cases {
        let problems = s
            .problems(extra, backend)
            .unwrap_or_else(|| panic!("accepted: {extra} {backend}"));
        assert!(problems.contains(key), "{key} not named in {problems}");
        assert!(!problems.contains("abc"), "token echoed: {problems}");
    }
    // The limits themselves are fine.
    assert_eq!(
        s.problems("interval = \"30s\"", "check_ttl = \"30s\""),
        None
    );
    assert_eq!(
        s.problems(
            "owner = \"a123456789b123456789c123456789d123456789e123456789f12345\"",
            ""
        ),
        None
    );
}

#[test]
fn the_binary_exits_78_naming_the_field() {
    let s = Setup::new();
    s.services(&[("web", "127.0.0.2", 8080, &[])]);
    let cfg = s.config("", "tags = [\"rancon-other\"]\ntoken = \"s3cr3t\\u0007\"");
    let out = assert_cmd::Command::cargo_bin("rancon")
        .unwrap()
        .env_remove("RANCON_CONFIG")
        .args(["check", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(78), "{text}");
    assert!(text.contains("backends.consul.tags[0]"), "{text}");
    assert!(text.contains("backends.consul.token"), "{text}");
    assert!(!text.contains("s3cr3t"), "{text}");
}

#[tokio::test]
async fn a_token_file_rewritten_with_a_control_character_is_a_round_error_not_a_panic() {
    let c = Consul::start_with(1, Some("good-token"), None).await;
    let s = Setup::new();
    s.services(&[("web", "127.0.0.2", 8080, &[])]);
    std::fs::write(s.path("token"), "good-token\n").unwrap();
    let p = s.pipeline(
        "",
        &format!("url = {:?}\ntoken_file = {:?}", c.url(0), s.path("token")),
    );
    assert!(!round(&p).await.failed());
    std::fs::write(s.path("token"), "bad\u{1}s3cr3t\n").unwrap();
    let before = c.requests();
    let r = round(&p).await;
    assert!(r.failed());
    let err = backend_error(&r);
    assert!(err.contains("X-Consul-Token"), "{err}");
    assert!(!err.contains("s3cr3t"), "{err}");
    assert_eq!(c.requests(), before, "nothing sent, nothing retried");
    assert_eq!(c.agent_services(0).len(), 1, "nothing deregistered");
    // Fixed again: back to normal.
    std::fs::write(s.path("token"), "good-token\n").unwrap();
    assert!(!round(&p).await.failed());
}

/// Two sources naming the same registration id: the first source in the pipeline's order keeps
/// it, whichever of them lists faster, and the other's copy is dropped (never a write each,
/// fighting over the id).
#[tokio::test]
async fn of_two_sources_with_one_id_the_first_keeps_it() {
    let c = Consul::start(1).await;
    for other in ["aaa", "zzz"] {
        let s = Setup::new();
        s.services(&[("web", "127.0.0.2", 8080, &[("rancon.tags", "from-svc")])]);
        let extra = format!(
            "[sources.{other}]\ntype = \"static\"\n[[sources.{other}.services]]\nname = \"web\"\n\
             host = \"127.0.0.2\"\nport = 8080\nlabels = {{ rancon = \"\", \"rancon.tags\" = \"from-{other}\" }}\n"
        );
        let p = s.pipeline(&extra, &format!("url = {:?}", c.url(0)));
        let first = p.sources[0].name().to_string();
        let r = p
            .round(RoundOptions {
                dry_run: true,
                ..Default::default()
            })
            .await;
        let plan = r.backends[0].plan.as_ref().unwrap();
        assert_eq!(plan.register.len(), 1, "one id, one registration: {plan:?}");
        let reg = &plan.register["web-127-0-0-2-8080"];
        assert!(
            reg.tags.contains(&format!("from-{first}")),
            "{first} comes first and keeps the id: {:?}",
            reg.tags
        );
        assert_eq!(r.sources.iter().map(|s| s.endpoints).sum::<usize>(), 2);
    }
}
