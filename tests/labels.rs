//! What labels mean, through the real binary: templates in every label see the same
//! properties, and per-port labels (`rancon.port.<P>.*`) name, tag or leave out one port.

#[allow(dead_code)]
mod support;

use std::process::Output;
use support::consul::Consul;
use support::rancher::{Project, Rancher, service};

async fn rancon(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("rancon"))
            .args(&args)
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

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn write_config(dir: &std::path::Path, body: &str) -> String {
    let p = dir.join("rancon.toml");
    std::fs::write(&p, body).unwrap();
    p.display().to_string()
}

/// `rancon.tag=%STACK%` and `rancon.meta.x=%STACK%` see the `stack` label sets, as the name
/// template always did (they used to skip the service: label values saw only the source's
/// own properties).
#[tokio::test(flavor = "multi_thread")]
async fn tag_and_meta_labels_see_what_the_name_template_sees() {
    let c = Consul::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            r#"
owner = "t"
[sources.s]
type = "static"
services = [{{ name = "web", host = "127.0.0.9", port = 8080, labels = {{ "rancon.stack" = "shop", "rancon.name" = "%NAME%-%STACK%", "rancon.tag" = "%STACK%", "rancon.meta.team" = "%STACK%-ops" }} }}]
[backends.c]
type = "consul"
url = "{}"
"#,
            c.url(0)
        ),
    );
    let out = rancon(vec!["--config".into(), cfg, "--once".into()]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let svcs = c.agent_services(0);
    let web = svcs
        .values()
        .find(|s| s.name == "web-shop")
        .unwrap_or_else(|| panic!("web-shop not registered: {svcs:?}\n{}", text(&out)));
    assert!(web.tags.contains(&"shop".to_string()), "{:?}", web.tags);
    assert_eq!(web.meta["team"], "shop-ops");
}

/// A service with an app port and a metrics port (internal endpoints): the metrics port gets
/// its own name and tags, a debug port is left out, and the app keeps the service's.
#[tokio::test(flavor = "multi_thread")]
async fn per_port_labels_keep_a_metrics_port_out_of_the_apps_service() {
    let mut s = service(
        "1s1",
        "web",
        "1st5",
        &[
            ("rancon", ""),
            ("rancon.tags", "app"),
            ("rancon.port.9090.name", "%NAME%-metrics"),
            ("rancon.port.9090.tags", "prometheus"),
            ("rancon.port.6060.ignore", "true"),
        ],
        &[],
    );
    s["launchConfig"]["ports"] = serde_json::json!(["8080/tcp", "9090/tcp", "6060/tcp"]);
    s["instanceIds"] = serde_json::json!(["1i1"]);
    let p = Project {
        id: "1a5".into(),
        name: "prod".into(),
        stacks: vec![("1st5".into(), "shop".into())],
        services: vec![s],
        containers: vec![serde_json::json!({
            "id": "1i1", "type": "container", "state": "running",
            "primaryIpAddress": "10.42.0.7"
        })],
    };
    let r = Rancher::start(vec![p], None).await;
    let c = Consul::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            r#"
owner = "t"
[sources.r]
type = "rancher"
url = "{}"
endpoints = "internal"
[backends.c]
type = "consul"
url = "{}"
"#,
            r.url("/v2-beta/projects/1a5"),
            c.url(0)
        ),
    );
    let out = rancon(vec!["--config".into(), cfg, "--once".into()]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut got: Vec<String> = c
        .agent_services(0)
        .values()
        .map(|s| {
            let tags: Vec<&str> = s
                .tags
                .iter()
                .map(String::as_str)
                .filter(|t| !t.starts_with("rancon-"))
                .collect();
            format!("{} {}:{} [{}]", s.name, s.address, s.port, tags.join(","))
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "web 10.42.0.7:8080 [app]",
            "web-metrics 10.42.0.7:9090 [prometheus]"
        ],
        "{}",
        text(&out)
    );
}

/// A label that cannot render skips that service with its reason; the others register.
#[tokio::test(flavor = "multi_thread")]
async fn labels_that_refer_to_each_other_in_a_circle_skip_only_their_service() {
    let c = Consul::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            r#"
owner = "t"
[sources.s]
type = "static"
services = [
  {{ name = "loop", host = "127.0.0.9", port = 1, labels = {{ "rancon.a" = "%B%", "rancon.b" = "%A%" }} }},
  {{ name = "ok", host = "127.0.0.9", port = 2, labels = {{ "rancon.b" = "x", "rancon.tag" = "%B%" }} }},
]
[backends.c]
type = "consul"
url = "{}"
"#,
            c.url(0)
        ),
    );
    let out = rancon(vec!["--config".into(), cfg, "--once".into()]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let names: Vec<String> = c
        .agent_services(0)
        .values()
        .map(|s| s.name.clone())
        .collect();
    assert_eq!(names, ["ok"]);
    assert!(text(&out).contains("circle"), "{}", text(&out));
}
