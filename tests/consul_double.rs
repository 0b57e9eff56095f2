//! The Consul double answers as Consul does where rancon depends on it: each rule here is one
//! the double cites from Consul's source (tests/support/consul.rs). A double that shared our
//! assumptions could not catch a bug; these pin it to the server.

#[allow(dead_code)]
mod support;

use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use support::consul::Consul;

fn client() -> reqwest::Client {
    rancon::http::client(std::time::Duration::from_secs(5), &Default::default()).unwrap()
}

async fn put(url: &str, body: Value) -> (u16, String) {
    let r = client().put(url).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn get(url: &str) -> (u16, String) {
    let r = client().get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn service(meta: Value) -> Value {
    json!({"ID": "web-1", "Name": "web", "Address": "10.0.0.1", "Port": 80, "Meta": meta})
}

#[tokio::test]
async fn agent_registrations_follow_validate_service_metadata() {
    let c = Consul::start(1).await;
    let url = format!("{}/v1/agent/service/register", c.url(0));
    let cases = [
        (
            json!({"consul-x": "1"}),
            "Invalid Service Meta: Couldn't load metadata pair ('consul-x', '1'): Key prefix 'consul-' is reserved for internal use",
        ),
        (
            json!({"a.b": "1"}),
            "Invalid Service Meta: Couldn't load metadata pair ('a.b', '1'): Key contains invalid characters",
        ),
        (
            json!({"": "1"}),
            "Invalid Service Meta: Couldn't load metadata pair ('', '1'): Key cannot be blank",
        ),
        (
            json!({"k".repeat(129): "1"}),
            "Key is too long (limit: 128 characters)",
        ),
        (
            json!({"k": "v".repeat(513)}),
            "Value is too long (limit: 512 characters)",
        ),
        (
            Value::Object((0..65).map(|i| (format!("k{i}"), json!("v"))).collect()),
            "Invalid Service Meta: Node metadata cannot contain more than 64 key/value pairs",
        ),
    ];
    for (meta, message) in cases {
        let (status, body) = put(&url, service(meta)).await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains(message), "{body:?} lacks {message:?}");
    }
    assert!(c.agent_services(0).is_empty());
    // At the limits: accepted.
    let at_limits = json!({"k".repeat(128): "v".repeat(512), "consul_x": "1"});
    assert_eq!(put(&url, service(at_limits)).await.0, 200);
}

#[tokio::test]
async fn any_addresses_are_refused_by_both_register_paths() {
    let c = Consul::start(1).await;
    for any in ["0.0.0.0", "::", "[::]"] {
        let mut svc = service(json!({}));
        svc["Address"] = json!(any);
        let agent = put(&format!("{}/v1/agent/service/register", c.url(0)), svc).await;
        assert_eq!(agent, (400, "Invalid service address".to_string()));
        let body = json!({"Node": "n", "Address": "10.0.0.9",
            "Service": {"ID": "w", "Service": "w", "Address": any}});
        let catalog = put(&format!("{}/v1/catalog/register", c.url(0)), body).await;
        assert_eq!(catalog, (500, "Invalid service address".to_string()));
    }
}

#[tokio::test]
async fn the_catalog_register_path_does_not_check_meta() {
    // servicePreApply runs service.Validate(), which does not look at meta.
    let c = Consul::start(1).await;
    let body = json!({"Node": "n", "Address": "10.0.0.9",
        "Service": {"ID": "w", "Service": "w", "Meta": {"consul-x": "1"}}});
    let (status, _) = put(&format!("{}/v1/catalog/register", c.url(0)), body).await;
    assert_eq!(status, 200);
    assert_eq!(c.services("n")["w"].meta["consul-x"], "1");
}

#[tokio::test]
async fn ttl_updates_of_unknown_checks_404_today_and_500_on_older_agents() {
    let c = Consul::start(1).await;
    let url = format!("{}/v1/agent/check/update/service:x:source", c.url(0));
    let body = json!({"Status": "passing", "Output": ""});
    let (status, text) = put(&url, body.clone()).await;
    assert_eq!(status, 404);
    assert!(
        text.starts_with("Unknown check ID \"service:x:source\""),
        "{text}"
    );
    c.cluster.legacy_check_update.store(true, Ordering::SeqCst);
    assert_eq!(
        put(&url, body).await,
        (
            500,
            "CheckID \"service:x:source\" does not have associated TTL".to_string()
        )
    );
}

#[tokio::test]
async fn discovery_endpoints_nodes_and_node_services() {
    let c = Consul::start(2).await;
    let (status, body) = get(&format!("{}/v1/catalog/nodes", c.url(0))).await;
    assert_eq!(status, 200);
    let nodes: Vec<Value> = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n["Node"].as_str().unwrap()).collect();
    assert_eq!(names, ["node-127.0.0.2", "node-127.0.0.3"]);
    assert_eq!(nodes[1]["Address"], "127.0.0.3");
    // An unknown node: the zero value of the reply, not a bare null.
    let (status, body) = get(&format!("{}/v1/catalog/node-services/nope", c.url(0))).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"Node": null, "Services": null})
    );
    // Filters: a tag, ids, both; anything else is a 400.
    let url = format!("{}/v1/agent/service/register", c.url(0));
    for (id, tags) in [
        ("a", json!(["rancon-x"])),
        ("b", json!([])),
        ("c", json!([])),
    ] {
        let svc = json!({"ID": id, "Name": id, "Tags": tags});
        assert_eq!(put(&url, svc).await.0, 200);
    }
    let ids = |filter: &str| {
        let url = format!("{}/v1/agent/services", c.url(0));
        let filter = filter.to_string();
        async move {
            let r = client()
                .get(url)
                .query(&[("filter", filter)])
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null);
            let keys: Vec<String> = v
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            (status, keys)
        }
    };
    assert_eq!(ids("\"rancon-x\" in Tags").await, (200, vec!["a".into()]));
    assert_eq!(
        ids("ID == \"b\" or ID == \"c\"").await,
        (200, vec!["b".into(), "c".into()])
    );
    assert_eq!(
        ids("\"rancon-x\" in Tags or ID == \"c\"").await,
        (200, vec!["a".into(), "c".into()])
    );
    assert_eq!(ids("Service matches \".*\"").await.0, 400);
}

/// GET returning (status, X-Consul-Index, body).
async fn get_indexed(url: &str) -> (u16, Option<u64>, String) {
    let r = client().get(url).send().await.unwrap();
    let idx = r
        .headers()
        .get("x-consul-index")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    (r.status().as_u16(), idx, r.text().await.unwrap())
}

#[tokio::test]
async fn blocking_queries_wait_for_a_real_change_of_their_resource() {
    let c = Consul::start(2).await;
    let node = format!("node-{}", c.ips[0]);
    let ns = format!("{}/v1/catalog/node-services/{node}", c.url(0));
    let (_, idx, _) = get_indexed(&ns).await;
    let idx = idx.unwrap();
    assert!(idx >= 1);
    // Nothing changes: the query answers when its wait ends, with the same index.
    let (s, same, _) = get_indexed(&format!("{ns}?index={idx}&wait=200ms")).await;
    assert_eq!((s, same), (200, Some(idx)));
    // A blocked query answers a write on its node with the write's index.
    let waiting = tokio::spawn({
        let url = format!("{ns}?index={idx}&wait=30s");
        async move { get_indexed(&url).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "blocks while nothing changed");
    // Writes elsewhere (another node) leave this node's index alone.
    let other = format!("{}/v1/agent/service/register", c.url(1));
    assert_eq!(put(&other, service(json!({}))).await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "a write on another node does not wake it"
    );
    let reg = format!("{}/v1/agent/service/register", c.url(0));
    assert_eq!(put(&reg, service(json!({}))).await.0, 200);
    let (_, after, body) = waiting.await.unwrap();
    let after = after.unwrap();
    assert!(after > idx && body.contains("web-1"), "{after} {body}");
    // An identical re-register is no change: the index stays.
    assert_eq!(put(&reg, service(json!({}))).await.0, 200);
    let (_, again, _) = get_indexed(&format!("{ns}?index={after}&wait=100ms")).await;
    assert_eq!(again, Some(after));
    // A service name's and the services table's indexes follow their writes too.
    let (_, name_idx, _) = get_indexed(&format!("{}/v1/catalog/service/web", c.url(0))).await;
    let (_, all_idx, _) = get_indexed(&format!("{}/v1/catalog/services", c.url(0))).await;
    assert_eq!(name_idx, Some(after));
    assert_eq!(all_idx, Some(after));
}

#[tokio::test]
async fn blocking_parameters_are_parsed_as_parse_wait_does() {
    let c = Consul::start(1).await;
    let ns = format!("{}/v1/catalog/node-services/node-{}", c.url(0), c.ips[0]);
    assert_eq!(
        get(&format!("{ns}?index=1&wait=soon")).await,
        (400, "Invalid wait time".into())
    );
    assert_eq!(
        get(&format!("{ns}?index=-1")).await,
        (400, "Invalid index".into())
    );
}

#[tokio::test]
async fn index_edge_cases_unknown_nodes_zero_indexes_and_restores() {
    let c = Consul::start(1).await;
    let gone = format!("{}/v1/catalog/node-services/nowhere", c.url(0));
    // An unknown node has the node-extinction index: 0 in the store, 1 on the wire.
    assert_eq!(get_indexed(&gone).await.1, Some(1));
    c.cluster
        .raft
        .legacy_zero_index
        .store(true, Ordering::SeqCst);
    assert_eq!(get_indexed(&gone).await.1, Some(0), "older servers sent 0");
    c.cluster
        .raft
        .legacy_zero_index
        .store(false, Ordering::SeqCst);
    // A restore answers blocked queries at once, with a lower index.
    let ns = format!("{}/v1/catalog/node-services/node-{}", c.url(0), c.ips[0]);
    let reg = format!("{}/v1/agent/service/register", c.url(0));
    assert_eq!(put(&reg, service(json!({}))).await.0, 200);
    let (_, idx, _) = get_indexed(&ns).await;
    let idx = idx.unwrap();
    let waiting = tokio::spawn({
        let url = format!("{ns}?index={idx}&wait=30s");
        async move { get_indexed(&url).await }
    });
    // Restored once the query blocks (it arrived: logged as it is read, then blocked in the
    // same poll); one arriving after the restore would wait its 30 s for an index above idx.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while c.reads_matching(&format!("index={idx}&")).is_empty() {
        assert!(std::time::Instant::now() < deadline, "the query never came");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    c.cluster.raft.restore(idx - 1);
    let (_, after, _) = waiting.await.unwrap();
    assert_eq!(after, Some(idx - 1));
}

#[tokio::test]
async fn agent_self_names_the_node_and_needs_agent_read() {
    let c = Consul::start_with(1, Some("tok"), None).await;
    let url = format!("{}/v1/agent/self", c.url(0));
    assert_eq!(get(&url).await, (403, "Permission denied".into()));
    let r = client()
        .get(&url)
        .header("X-Consul-Token", "tok")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["Config"]["NodeName"], format!("node-{}", c.ips[0]));
}
