//! The `rancon` binary against the Rancher and Consul doubles: the original tool's command
//! line, the config-file form, and `purge`.

#[allow(dead_code)]
mod support;

use std::process::Output;
use support::consul::Consul;
use support::rancher::{Project, Rancher, service};

/// 150 labelled services (more than one default page of 100) plus `myservice` named by
/// `%NAME%-%STACK%`, all on host 127.0.0.2.
async fn rancher() -> Rancher {
    let mut services: Vec<_> = (0..150)
        .map(|i| {
            service(
                &format!("1s{}", i + 10),
                &format!("svc{i}"),
                "1st5",
                &[("rancon", "")],
                &[("127.0.0.2", 20000 + i as u16)],
            )
        })
        .collect();
    services.push(service(
        "1s1",
        "myservice",
        "1st5",
        &[("rancon.name", "%NAME%-%STACK%")],
        &[("127.0.0.2", 8080)],
    ));
    let p = Project {
        id: "1a5".into(),
        name: "prod".into(),
        stacks: vec![("1st5".into(), "teststack".into())],
        services,
        containers: vec![],
    };
    let r = Rancher::start(vec![p], Some(("ak", "sk-secret"))).await;
    r.state
        .max_limit
        .store(100, std::sync::atomic::Ordering::SeqCst);
    r
}

async fn rancon(args: Vec<String>) -> Output {
    rancon_env(args, vec![]).await
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_original_command_line_syncs_every_page_with_an_acl_token_once() {
    let r = rancher().await;
    let c = Consul::start_with(1, Some("tok-123"), None).await;
    let args = strings(&[
        "rancher",
        "consul",
        "-s",
        &format!("url={}", r.url("/v2-beta")),
        "-s",
        "accesskey=ak",
        "-s",
        "secretkey=sk-secret",
        "-b",
        &format!("url={}", c.url(0)),
        "-b",
        "cleanup_id=legacy",
        "-b",
        "token=tok-123",
    ]);
    let out = rancon(args.clone()).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let svcs = c.agent_services(0);
    assert_eq!(svcs.len(), 151, "every page, not just the first 100");
    let my = &svcs["myservice-teststack-127-0-0-2-8080"];
    assert_eq!(my.name, "myservice-teststack", "%NAME% inside rancon.name");
    assert!(my.tags.contains(&"rancon-legacy".to_string()));
    // The original form writes no meta of its own, as the old tool did not.
    assert!(!my.meta.contains_key("rancon-owner"));
    let writes = c.requests().1;
    assert_eq!(writes, 151);
    for secret in ["sk-secret", "tok-123"] {
        assert!(
            !text(&out).contains(secret),
            "{secret} leaked: {}",
            text(&out)
        );
    }
    // Second run: nothing changed, nothing written.
    let out = rancon(args).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(c.requests().1, writes);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_original_command_line_rejects_a_malformed_option_as_usage() {
    let out = rancon(strings(&["rancher", "consul", "-s", "no-equals-sign"])).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not KEY=VALUE"), "{}", text(&out));
    // The malformed text may be a secret typed with the wrong separator: never echoed.
    assert!(!text(&out).contains("no-equals-sign"), "{}", text(&out));
    let out = rancon(strings(&["rancher", "etcd", "-s", "url=http://x"])).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn config_form_syncs_then_purge_removes_only_this_owners_registrations() {
    let r = rancher().await;
    let c = Consul::start(2).await;
    // A registration of another owner on the same agent.
    c.insert(
        &format!("node-{}", c.ips[0]),
        support::consul::Svc {
            id: "theirs".into(),
            name: "theirs".into(),
            tags: vec!["rancon-other".into()],
            meta: Default::default(),
            address: "127.0.0.2".into(),
            port: 1,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rancon.toml");
    std::fs::write(
        &cfg,
        format!(
            "owner = \"blue\"\n[sources.rancher]\ntype = \"rancher\"\nurl = {:?}\naccess_key = \"ak\"\nsecret_key = \"sk-secret\"\n\
             [backends.consul]\ntype = \"consul\"\nurl = \"http://%HOST%:{}\"\nconcurrency = 8\n",
            r.url("/v2-beta"),
            c.port
        ),
    )
    .unwrap();
    let cfg = cfg.display().to_string();
    let out = rancon(strings(&["--config", &cfg, "--once"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(c.agent_services(0).len(), 152);

    // Without --yes and without a terminal: nothing happens, exit 2.
    let out = rancon(strings(&["purge", "--config", &cfg, "--backend", "consul"])).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(c.agent_services(0).len(), 152);

    let out = rancon(strings(&[
        "purge",
        "--config",
        &cfg,
        "--backend",
        "consul",
        "--yes",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("deregistered 151, failed 0"),
        "{}",
        text(&out)
    );
    let left: Vec<String> = c.agent_services(0).into_keys().collect();
    assert_eq!(left, ["theirs"]);

    // Purging another owner by name.
    let out = rancon(strings(&[
        "purge",
        "--config",
        &cfg,
        "--backend",
        "consul",
        "--owner",
        "other",
        "--yes",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(c.agent_services(0).is_empty());
    let out = rancon(strings(&[
        "purge",
        "--config",
        &cfg,
        "--backend",
        "nope",
        "--yes",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no backend named \"nope\""),
        "{}",
        text(&out)
    );
}

async fn rancon_env(args: Vec<String>, env: Vec<(String, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("rancon"))
            .args(&args)
            .envs(env)
            .env_remove("RANCON_CONFIG")
            .env_remove("CONSUL_HTTP_ADDR")
            .env_remove("CONSUL_HTTP_TOKEN")
            .env_remove("RANCHER_URL")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// argparse took options before the two words too (`rancon -v -w10 … rancher consul`), and
/// the original tool lower-cased the cleanup id.
#[tokio::test(flavor = "multi_thread")]
async fn the_original_form_takes_options_before_the_words() {
    let r = rancher().await;
    let c = Consul::start(1).await;
    let args = strings(&[
        "-v",
        "-w10",
        "-s",
        &format!("url={}", r.url("/v2-beta")),
        "-s",
        "accesskey=ak",
        "-ssecretkey=sk-secret",
        "-b",
        &format!("url={}", c.url(0)),
        "--backend-option=cleanup_id=Legacy",
        "rancher",
        "consul",
    ]);
    let out = rancon(args).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let svcs = c.agent_services(0);
    assert_eq!(svcs.len(), 151);
    let my = &svcs["myservice-teststack-127-0-0-2-8080"];
    assert!(
        my.tags.contains(&"rancon-legacy".to_string()),
        "{:?}",
        my.tags
    );
}

/// The original tool configured by environment alone still runs; with the new form its
/// variables are an error naming what to use instead, not a silent `wait` key.
#[tokio::test(flavor = "multi_thread")]
async fn the_original_environment_is_honoured_and_never_taken_for_new_keys() {
    let r = rancher().await;
    let c = Consul::start(1).await;
    let env = |pairs: &[(&str, String)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    };
    let out = rancon_env(
        vec![],
        env(&[
            ("RANCON_SOURCE", "rancher".into()),
            ("RANCON_REGISTRY", "consul".into()),
            (
                "RANCON_FRONTEND_OPTIONS",
                format!("url={},accesskey=ak,secretkey=sk-secret", r.url("/v2-beta")),
            ),
            ("RANCON_BACKEND_OPTIONS", format!("url={}", c.url(0))),
            ("RANCON_WAIT", "10".into()),
        ]),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(c.agent_services(0).len(), 151);
    assert!(!text(&out).contains("sk-secret"));

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[sources.s]\ntype = \"static\"\nservices = [{ name = \"a\", host = \"10.0.0.1\", port = 80 }]\n[backends.t]\ntype = \"traefik_file\"\npath = \"out.toml\"\n",
    )
    .unwrap();
    let out = rancon_env(
        strings(&["check", "--config", &cfg.display().to_string()]),
        env(&[("RANCON_WAIT", "10".into())]),
    )
    .await;
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(
        text(&out).contains("RANCON_WAIT") && text(&out).contains("interval"),
        "{}",
        text(&out)
    );
}
