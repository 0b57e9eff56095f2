//! An upgrade from the original rancon 0.17.1 re-registers nothing: the original command line
//! run against the Rancher and Consul doubles writes exactly the registrations (id, name,
//! tags, address, port) the old tool wrote for the same services. The old tool's rules are
//! transcribed below from its source (PyPI `rancon==0.17.1`), each with the place it lives.

#[allow(dead_code)]
mod support;

use std::collections::BTreeSet;
use std::process::Output;
use support::consul::Consul;
use support::rancher::{Project, Rancher, service};

/// One registration as the old tool made it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Old {
    id: String,
    name: String,
    tags: BTreeSet<String>,
    address: String,
    port: u16,
}

/// The old tool's `%X%` replacement inside label values (`rancon/service.py`,
/// `Service.__init__`: `re.sub("%([^%]+)%", lambda x: self.get(x.group(1).lower(),
/// "UNDEFINED"), value)`) for the properties its Rancher source sets
/// (`rancon/sources/rancher.py`, `get_services`: host, port, service, stack, environment).
fn replace(value: &str, props: &[(&str, String)]) -> String {
    let mut out = value.to_string();
    for (k, v) in props {
        out = out.replace(&format!("%{}%", k.to_uppercase()), v);
    }
    out
}

/// What the old tool registered for one endpoint of a labelled service with cleanup id `cid`.
fn old(
    service_name: &str,
    stack: &str,
    labels: &[(&str, &str)],
    ip: &str,
    port: u16,
    cid: &str,
) -> Old {
    let props = [
        ("host", ip.to_string()),
        ("port", port.to_string()),
        ("service", service_name.to_string()),
        ("stack", stack.to_string()),
        ("environment", "prod".to_string()),
    ];
    let label = |k: &str| labels.iter().find(|(l, _)| *l == k).map(|(_, v)| *v);
    // get_services: `if 'name' not in meta: meta['name'] = service.name`.
    let name = label("rancon.name").map_or(service_name.to_string(), |t| replace(t, &props));
    // backends/consul.py `_get_service_id`: tag_replace(id_schema '%NAME%_%HOST%_%PORT%')
    // lower-cased, then `re.sub(r"[^a-z0-9-]", "-", …)`.
    let id: String = format!("{name}_{ip}_{port}")
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    // `_get_tags`: label `rancon.tag` split on ',', each replaced, stripped, lower-cased; then
    // the cleanup tag `rancon-<cleanup_id.lower()>`.
    let mut tags: BTreeSet<String> = label("rancon.tag")
        .map(|t| {
            t.split(',')
                .map(|x| replace(x, &props).trim().to_lowercase())
                .collect()
        })
        .unwrap_or_default();
    tags.insert(format!("rancon-{}", cid.to_lowercase()));
    Old {
        id,
        // `register`: `svc_name = service.name.lower()`.
        name: name.to_lowercase(),
        tags,
        address: ip.to_string(),
        port,
    }
}

/// A service of the double, and the labels it carries.
struct Spec {
    id: &'static str,
    name: &'static str,
    stack: (&'static str, &'static str),
    labels: &'static [(&'static str, &'static str)],
    endpoints: &'static [(&'static str, u16)],
}

const SPECS: &[Spec] = &[
    // Mixed case everywhere, a templated name and templated, spaced, mixed-case tags.
    Spec {
        id: "1s1",
        name: "MyService",
        stack: ("1st1", "TestStack"),
        labels: &[
            ("rancon.name", "%SERVICE%-%STACK%"),
            ("rancon.tag", "Web, %STACK%,API"),
        ],
        endpoints: &[("127.0.0.2", 8080), ("127.0.0.3", 8080)],
    },
    // The bare label: the service's own name.
    Spec {
        id: "1s2",
        name: "Billing_API",
        stack: ("1st2", "shop"),
        labels: &[("rancon", "")],
        endpoints: &[("127.0.0.2", 9000)],
    },
    // Not labelled: neither tool registers it.
    Spec {
        id: "1s3",
        name: "db",
        stack: ("1st2", "shop"),
        labels: &[("io.rancher.container.pull_image", "always")],
        endpoints: &[("127.0.0.2", 5432)],
    },
];

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

fn project() -> Project {
    Project {
        id: "1a5".into(),
        name: "prod".into(),
        stacks: SPECS
            .iter()
            .map(|s| (s.stack.0.to_string(), s.stack.1.to_string()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        services: SPECS
            .iter()
            .map(|s| service(s.id, s.name, s.stack.0, s.labels, s.endpoints))
            .collect(),
        containers: vec![],
    }
}

/// What the old tool registered for `SPECS` with cleanup id `Prod`.
fn expected() -> BTreeSet<Old> {
    SPECS
        .iter()
        .filter(|s| s.labels.iter().any(|(k, _)| k.starts_with("rancon")))
        .flat_map(|s| {
            s.endpoints
                .iter()
                .map(|(ip, port)| old(s.name, s.stack.1, s.labels, ip, *port, "Prod"))
        })
        .collect()
}

fn written(c: &Consul) -> BTreeSet<Old> {
    c.agent_services(0)
        .into_values()
        .map(|s| Old {
            id: s.id,
            name: s.name,
            tags: s.tags.into_iter().collect(),
            address: s.address,
            port: s.port,
        })
        .collect()
}

fn legacy_args(r: &Rancher, c: &Consul) -> Vec<String> {
    [
        "rancher",
        "consul",
        "-s",
        &format!("url={}", r.url("/v2-beta")),
        "-b",
        &format!("url={}", c.url(0)),
        "-b",
        "cleanup_id=Prod",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_original_form_writes_what_the_old_tool_wrote() {
    let r = Rancher::start(vec![project()], None).await;
    let c = Consul::start(1).await;
    let out = rancon(legacy_args(&r, &c)).await;
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(written(&c), expected());
    // Spelled out once, so a reader sees what "the same" means.
    let tags: BTreeSet<String> = ["api", "rancon-prod", "teststack", "web"]
        .map(String::from)
        .into();
    assert!(
        written(&c)
            .iter()
            .any(|o| o.id == "myservice-teststack-127-0-0-2-8080"
                && o.name == "myservice-teststack"
                && o.tags == tags),
        "{:?}",
        written(&c)
    );
    // Like the old tool, the original form writes no meta of its own.
    for s in c.agent_services(0).values() {
        assert!(s.meta.is_empty(), "{:?}", s.meta);
    }
}

/// The upgrade itself: the registrations the old tool left in Consul are adopted as they are.
#[tokio::test(flavor = "multi_thread")]
async fn upgrading_from_the_old_tool_writes_nothing() {
    let r = Rancher::start(vec![project()], None).await;
    let c = Consul::start(1).await;
    for o in expected() {
        c.insert(
            "node-127.0.0.2",
            support::consul::Svc {
                id: o.id,
                name: o.name,
                tags: o.tags.into_iter().collect(),
                meta: Default::default(),
                address: o.address,
                port: o.port,
            },
        );
    }
    let before = c.agent_services(0);
    let out = rancon(legacy_args(&r, &c)).await;
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(c.requests().1, 0, "an upgrade rewrites nothing: {text}");
    assert_eq!(c.agent_services(0), before);
}
