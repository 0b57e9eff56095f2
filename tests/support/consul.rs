//! A Consul double (wire-formats.md section C): several agents on 127.0.0.2, .3, … sharing one
//! port and one catalog; PascalCase JSON; empty-body 200s for agent writes; plain-text errors;
//! `X-Consul-Token` ACLs (403 `Permission denied` / `ACL not found`); the `"x" in Tags` and
//! `ID == "x"` filters; optional TLS with client-certificate verification. Every request is
//! counted per agent.
//!
//! Where Consul refuses something, the double refuses it the same way, and the rule names the
//! Consul source it follows: service meta (`structs.ValidateServiceMetadata`), "any" addresses
//! (`ipaddr.IsAny`), TTL updates of unknown checks (404 today, 500 on older agents), the
//! discovery endpoints (`/v1/catalog/nodes`, `/v1/catalog/node-services/:node`).

#![allow(dead_code)]
// Handlers return the error response itself; its size does not matter in a test double.
#![allow(clippy::result_large_err)]

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub mod blocking;

/// A registered service as the catalog keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct Svc {
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    pub meta: BTreeMap<String, String>,
    pub address: String,
    pub port: u16,
}

/// A check.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub id: String,
    pub name: String,
    pub service_id: String,
    pub status: String,
    pub output: String,
    /// `ttl`, `http`, `tcp`, or `catalog`.
    pub kind: String,
    pub ttl: Option<String>,
    pub target: Option<String>,
    pub deregister_after: Option<String>,
}

#[derive(Default, Clone, Debug)]
pub struct Node {
    pub address: String,
    pub services: BTreeMap<String, Svc>,
    pub checks: BTreeMap<String, Check>,
}

/// Counters of one agent.
#[derive(Default)]
pub struct Counters {
    pub reads: AtomicUsize,
    pub writes: AtomicUsize,
}

/// State shared by every agent of the cluster.
#[derive(Default)]
pub struct Cluster {
    pub nodes: Mutex<BTreeMap<String, Node>>,
    /// The token every request must carry (ACLs with default deny), when set.
    pub acl_token: Option<String>,
    pub counters: Mutex<HashMap<String, Arc<Counters>>>,
    /// Write requests, in order: `"<METHOD> <path> @<node>"`.
    pub writes_log: Mutex<Vec<String>>,
    /// Read requests, in order: `"GET <path>?<query> @<node>"`.
    pub reads_log: Mutex<Vec<String>>,
    /// Raft-like indexes and blocking queries of the catalog endpoints.
    pub raft: blocking::Raft,
    /// When each write request was answered, in order (for latency benches).
    pub writes_done: Mutex<Vec<std::time::Instant>>,
    /// Registrations whose ID contains this text fail with a 500.
    pub fail_register: Mutex<Option<String>>,
    /// Nodes (`node-127.0.0.3`) whose agent answers every read with a 500.
    pub fail_reads: Mutex<std::collections::BTreeSet<String>>,
    /// The next this-many write requests fail with 503 (a transient failure).
    pub fail_next_writes: AtomicUsize,
    /// Answer a TTL update of an unknown check as agents did before they vetted the id
    /// (`agent/acl.go` `vetCheckUpdateWithAuthorizer`, 404): `agent/agent.go` `updateTTLCheck`
    /// returns a plain error, which the HTTP layer answers with 500.
    pub legacy_check_update: std::sync::atomic::AtomicBool,
    /// Consul Enterprise: `?ns=` is accepted (and recorded in `namespaces`). Consul CE answers
    /// any non-empty `ns` with 400 (`agent/http_ce.go` `parseEntMeta`). The double keeps one
    /// catalog whatever the namespace.
    pub enterprise: std::sync::atomic::AtomicBool,
    /// The `ns` of every request, in order (`None`: none sent).
    pub namespaces: Mutex<Vec<Option<String>>>,
    /// An authenticating reverse proxy in front of the agents (what `CONSUL_HTTP_AUTH` is
    /// for; Consul itself ignores basic auth): requests without `Authorization: Basic
    /// base64(<this>)` get 401 with `WWW-Authenticate: Basic` (RFC 7617).
    pub basic_auth: Mutex<Option<String>>,
    /// Sessions by ID.
    pub sessions: Mutex<BTreeMap<String, Session>>,
    /// KV entries by key.
    pub kv: Mutex<BTreeMap<String, Kv>>,
    next_session: AtomicUsize,
}

/// A session (wire-formats.md C.6).
#[derive(Clone, Debug)]
pub struct Session {
    pub name: String,
    pub ttl: std::time::Duration,
    pub lock_delay: std::time::Duration,
    pub behavior: String,
    pub renewed: std::time::Instant,
}

/// A KV entry; `session` is set while a lock holds it.
#[derive(Clone, Debug, Default)]
pub struct Kv {
    pub value: Vec<u8>,
    pub session: Option<String>,
    pub lock_index: u64,
    pub modify_index: u64,
    /// No session may acquire before this (lock-delay after an invalidation).
    pub delay_until: Option<std::time::Instant>,
}

/// A running double: agent `i` is node `node-<i>` listening on `ips[i]:port`.
pub struct Consul {
    pub cluster: Arc<Cluster>,
    pub ips: Vec<String>,
    pub port: u16,
    tls: bool,
}

pub struct TlsFiles {
    pub cert_pem: String,
    pub key_pem: String,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca_pem: Option<String>,
}

impl Consul {
    /// `agents` agents on 127.0.0.2, .3, …, one port, no ACLs.
    pub async fn start(agents: usize) -> Self {
        Self::start_with(agents, None, None).await
    }

    pub async fn start_with(agents: usize, acl_token: Option<&str>, tls: Option<TlsFiles>) -> Self {
        let cluster = Arc::new(Cluster {
            acl_token: acl_token.map(str::to_string),
            ..Default::default()
        });
        let ips: Vec<String> = (0..agents).map(|i| format!("127.0.0.{}", i + 2)).collect();
        let tls_config = tls.as_ref().map(server_tls);
        // Every agent on the same port; retry when another test holds it on a later address.
        'attempt: for _ in 0..50 {
            let first = std::net::TcpListener::bind((ips[0].as_str(), 0)).unwrap();
            let port = first.local_addr().unwrap().port();
            let mut listeners = vec![first];
            for ip in &ips[1..] {
                match std::net::TcpListener::bind((ip.as_str(), port)) {
                    Ok(l) => listeners.push(l),
                    Err(_) => continue 'attempt,
                }
            }
            for (i, l) in listeners.into_iter().enumerate() {
                let node = format!("node-{}", ips[i]);
                {
                    let mut nodes = cluster.nodes.lock().unwrap();
                    nodes.entry(node.clone()).or_default().address = ips[i].clone();
                    cluster.raft.commit(Some(&node), &[]);
                }
                let counters = Arc::new(Counters::default());
                cluster
                    .counters
                    .lock()
                    .unwrap()
                    .insert(ips[i].clone(), counters.clone());
                let app = router(Agent {
                    cluster: cluster.clone(),
                    node,
                    counters,
                });
                l.set_nonblocking(true).unwrap();
                match &tls_config {
                    None => {
                        let l = tokio::net::TcpListener::from_std(l).unwrap();
                        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
                    }
                    Some(cfg) => {
                        let server = axum_server::from_tcp_rustls(l, cfg.clone()).unwrap();
                        tokio::spawn(async move {
                            server.serve(app.into_make_service()).await.unwrap()
                        });
                    }
                }
            }
            return Self {
                cluster,
                ips,
                port,
                tls: tls.is_some(),
            };
        }
        panic!("no common free port on {ips:?}");
    }

    /// Base URL of agent `i`.
    pub fn url(&self, i: usize) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.ips[i], self.port)
    }

    /// (reads, writes) summed over all agents.
    pub fn requests(&self) -> (usize, usize) {
        self.cluster
            .counters
            .lock()
            .unwrap()
            .values()
            .fold((0, 0), |(r, w), c| {
                (
                    r + c.reads.load(Ordering::SeqCst),
                    w + c.writes.load(Ordering::SeqCst),
                )
            })
    }

    /// (reads, writes) of agent `i`.
    pub fn agent_requests(&self, i: usize) -> (usize, usize) {
        let c = self.cluster.counters.lock().unwrap()[&self.ips[i]].clone();
        (
            c.reads.load(Ordering::SeqCst),
            c.writes.load(Ordering::SeqCst),
        )
    }

    /// Services of a node (`node-127.0.0.2` for agent 0, or a catalog node name).
    pub fn services(&self, node: &str) -> BTreeMap<String, Svc> {
        self.cluster
            .nodes
            .lock()
            .unwrap()
            .get(node)
            .map(|n| n.services.clone())
            .unwrap_or_default()
    }

    /// Whether node `node` holds service `id` (cheap: nothing is copied).
    pub fn has_service(&self, node: &str, id: &str) -> bool {
        let nodes = self.cluster.nodes.lock().unwrap();
        nodes.get(node).is_some_and(|n| n.services.contains_key(id))
    }

    pub fn agent_services(&self, i: usize) -> BTreeMap<String, Svc> {
        self.services(&format!("node-{}", self.ips[i]))
    }

    pub fn checks(&self, node: &str) -> BTreeMap<String, Check> {
        self.cluster
            .nodes
            .lock()
            .unwrap()
            .get(node)
            .map(|n| n.checks.clone())
            .unwrap_or_default()
    }

    /// Puts a service straight into a node, as another tool would have.
    pub fn insert(&self, node: &str, svc: Svc) {
        let mut nodes = self.cluster.nodes.lock().unwrap();
        let n = nodes.entry(node.to_string()).or_default();
        let old = n.services.insert(svc.id.clone(), svc.clone());
        if old.as_ref() != Some(&svc) {
            let mut names = vec![svc.name.as_str()];
            names.extend(old.as_ref().map(|o| o.name.as_str()));
            self.cluster.raft.commit(Some(node), &names);
        }
    }

    /// Read requests whose line contains `part` (`"node-services/node-127.0.0.2"`).
    pub fn reads_matching(&self, part: &str) -> Vec<String> {
        let log = self.cluster.reads_log.lock().unwrap();
        log.iter().filter(|l| l.contains(part)).cloned().collect()
    }

    pub fn set_check_status(&self, node: &str, check: &str, status: &str) {
        let mut nodes = self.cluster.nodes.lock().unwrap();
        if let Some(n) = nodes.get_mut(node)
            && let Some(c) = n.checks.get_mut(check)
            && c.status != status
        {
            c.status = status.into();
            let sid = c.service_id.clone();
            let name = n.services.get(&sid).map(|s| s.name.clone());
            self.cluster
                .raft
                .commit(None, &name.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }

    pub fn remove_check(&self, node: &str, check: &str) {
        let mut nodes = self.cluster.nodes.lock().unwrap();
        if let Some(n) = nodes.get_mut(node) {
            n.checks.remove(check);
        }
    }

    pub fn writes_log(&self) -> Vec<String> {
        self.cluster.writes_log.lock().unwrap().clone()
    }

    /// Serves agent 0 on a Unix socket at `path` as well (Consul's `addresses.http =
    /// "unix://…"`): the same node, catalog and counters.
    pub async fn serve_unix(&self, path: &std::path::Path) {
        let node = format!("node-{}", self.ips[0]);
        let counters = self.cluster.counters.lock().unwrap()[&self.ips[0]].clone();
        let app = router(Agent {
            cluster: self.cluster.clone(),
            node,
            counters,
        });
        let l = tokio::net::UnixListener::bind(path).unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    }
}

fn server_tls(t: &TlsFiles) -> axum_server::tls_rustls::RustlsConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(t.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(t.key_pem.as_bytes()).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let config = match &t.client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    }
    .with_single_cert(certs, key)
    .unwrap();
    axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config))
}

#[derive(Clone)]
struct Agent {
    cluster: Arc<Cluster>,
    node: String,
    counters: Arc<Counters>,
}

fn router(agent: Agent) -> Router {
    Router::new()
        .route("/v1/agent/services", get(agent_services))
        .route("/v1/agent/self", get(agent_self))
        .route("/v1/agent/service/register", put(agent_register))
        .route("/v1/agent/service/deregister/{id}", put(agent_deregister))
        .route("/v1/agent/check/update/{id}", put(check_update))
        .route("/v1/agent/checks", get(agent_checks))
        .route("/v1/catalog/register", put(catalog_register))
        .route("/v1/catalog/deregister", put(catalog_deregister))
        .route("/v1/catalog/services", get(catalog_services))
        .route("/v1/catalog/service/{name}", get(catalog_service))
        .route("/v1/catalog/nodes", get(catalog_nodes))
        .route("/v1/catalog/node-services/{node}", get(node_services))
        .route("/v1/session/create", put(session_create))
        .route("/v1/session/renew/{id}", put(session_renew))
        .route("/v1/session/destroy/{id}", put(session_destroy))
        .route("/v1/kv/{*key}", put(kv_put).get(kv_get))
        .fallback(|| async {
            text(
                StatusCode::NOT_FOUND,
                "Invalid URL path: not a recognized HTTP API endpoint",
            )
        })
        .layer(axum::middleware::from_fn_with_state(agent.clone(), count))
        .with_state(agent)
}

async fn count(
    State(a): State<Agent>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let want = a.cluster.basic_auth.lock().unwrap().clone();
    if let Some(want) = want {
        use base64::Engine;
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(want)
        );
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&expected) {
            return (
                StatusCode::UNAUTHORIZED,
                [("www-authenticate", "Basic realm=\"consul\"")],
                "401 Unauthorized",
            )
                .into_response();
        }
    }
    let ns = q.get("ns").filter(|n| !n.is_empty()).cloned();
    a.cluster.namespaces.lock().unwrap().push(ns.clone());
    if ns.is_some() && !a.cluster.enterprise.load(Ordering::SeqCst) {
        return text(
            StatusCode::BAD_REQUEST,
            "Invalid query parameter: \"ns\" - Namespaces are a Consul Enterprise feature",
        );
    }
    if method == Method::GET {
        a.counters.reads.fetch_add(1, Ordering::SeqCst);
        let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        a.cluster
            .reads_log
            .lock()
            .unwrap()
            .push(format!("GET {}{query} @{}", uri.path(), a.node));
        if a.cluster.fail_reads.lock().unwrap().contains(&a.node) {
            return text(StatusCode::INTERNAL_SERVER_ERROR, "injected read failure");
        }
    } else {
        a.counters.writes.fetch_add(1, Ordering::SeqCst);
        let left = &a.cluster.fail_next_writes;
        if left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return text(StatusCode::SERVICE_UNAVAILABLE, "No cluster leader");
        }
        a.cluster
            .writes_log
            .lock()
            .unwrap()
            .push(format!("{method} {} @{}", uri.path(), a.node));
        let resp = next.run(req).await;
        a.cluster
            .writes_done
            .lock()
            .unwrap()
            .push(std::time::Instant::now());
        return resp;
    }
    next.run(req).await
}

/// A plain-text error, as Consul's http.go writes them.
fn text(status: StatusCode, body: &str) -> Response {
    (
        status,
        [("content-type", "text/plain; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// An empty-body 200 without Content-Type (agent writes).
fn empty_ok() -> Response {
    StatusCode::OK.into_response()
}

/// A JSON answer of a blocking endpoint, with the resource's index.
fn json_indexed(a: &Agent, v: Value, idx: u64) -> Response {
    (
        StatusCode::OK,
        [
            ("content-type", "application/json".to_string()),
            ("x-consul-index", a.cluster.raft.header(idx)),
        ],
        v.to_string(),
    )
        .into_response()
}

fn json_ok(v: Value) -> Response {
    (
        StatusCode::OK,
        [
            ("content-type", "application/json"),
            ("x-consul-index", "1"),
        ],
        v.to_string(),
    )
        .into_response()
}

enum Auth {
    Ok,
    Anonymous,
}

/// ACL check: no ACLs → Ok; the right token → Ok; no token → anonymous (reads are filtered,
/// writes denied); a wrong token → 403 `ACL not found`.
fn auth(a: &Agent, headers: &HeaderMap) -> Result<Auth, Response> {
    let Some(want) = &a.cluster.acl_token else {
        return Ok(Auth::Ok);
    };
    let got = headers
        .get("x-consul-token")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        });
    match got {
        None => Ok(Auth::Anonymous),
        Some(t) if t == want => Ok(Auth::Ok),
        Some(_) => Err(text(StatusCode::FORBIDDEN, "ACL not found")),
    }
}

fn write_auth(a: &Agent, headers: &HeaderMap) -> Result<(), Response> {
    match auth(a, headers)? {
        Auth::Ok => Ok(()),
        Auth::Anonymous => Err(text(StatusCode::FORBIDDEN, "Permission denied")),
    }
}

/// Go's JSON decoding matches field names case-insensitively.
fn field<'v>(v: &'v Value, name: &str) -> Option<&'v Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn str_field(v: &Value, name: &str) -> String {
    field(v, name)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// What every listing handler starts with: the ACL check (anonymous callers see nothing)
/// and the `?filter=` expression.
fn read_prelude(
    a: &Agent,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    selector: &str,
) -> Result<(bool, Filter), Response> {
    let anonymous = matches!(auth(a, headers)?, Auth::Anonymous);
    Ok((anonymous, filter(q, selector)?))
}

/// The `?filter=` forms rancon sends (go-bexpr syntax): terms `"<tag>" in Tags` (`ServiceTags`
/// on catalog services) and `ID == "<id>"`, joined by ` or `. Anything else is refused as
/// Consul refuses an expression it cannot evaluate (400).
pub struct Filter(Option<Vec<Term>>);

enum Term {
    Tag(String),
    Id(String),
}

impl Filter {
    fn keeps(&self, s: &Svc) -> bool {
        self.0.as_ref().is_none_or(|terms| {
            terms.iter().any(|t| match t {
                Term::Tag(tag) => s.tags.contains(tag),
                Term::Id(id) => &s.id == id,
            })
        })
    }
}

fn filter(q: &HashMap<String, String>, selector: &str) -> Result<Filter, Response> {
    let Some(f) = q.get("filter") else {
        return Ok(Filter(None));
    };
    let quoted = |l: &str| {
        l.trim()
            .strip_prefix('"')
            .and_then(|l| l.strip_suffix('"'))
            .filter(|l| !l.contains('"'))
            .map(str::to_string)
    };
    let in_selector = format!(" in {selector}");
    let terms: Option<Vec<Term>> = f
        .split(" or ")
        .map(|term| {
            let term = term.trim();
            if let Some(tag) = term.strip_suffix(&in_selector) {
                quoted(tag).map(Term::Tag)
            } else {
                term.strip_prefix("ID ==").and_then(quoted).map(Term::Id)
            }
        })
        .collect();
    match terms {
        Some(terms) => Ok(Filter(Some(terms))),
        None => Err(text(
            StatusCode::BAD_REQUEST,
            &format!("Failed to create boolean expression evaluator: unsupported filter {f:?}"),
        )),
    }
}

/// `structs.ValidateServiceMetadata` (`agent/structs/structs.go`, `validateMetadata` and
/// `validateMetaPair`): at most 64 pairs (checked first, with the node wording Consul uses for
/// services too), then per pair: key not blank, `^[a-zA-Z0-9_-]+$`, at most 128 characters,
/// not prefixed `consul-`, value at most 512 characters. Consul iterates a Go map (random
/// order); the double reports the first failing key in sorted order.
fn validate_service_metadata(meta: &BTreeMap<String, String>) -> Result<(), String> {
    if meta.len() > 64 {
        return Err("Node metadata cannot contain more than 64 key/value pairs".into());
    }
    for (k, v) in meta {
        let pair = if k.is_empty() {
            Err("Key cannot be blank".to_string())
        } else if !k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            Err("Key contains invalid characters".into())
        } else if k.len() > 128 {
            Err("Key is too long (limit: 128 characters)".into())
        } else if k.starts_with("consul-") {
            Err("Key prefix 'consul-' is reserved for internal use".into())
        } else if v.len() > 512 {
            Err("Value is too long (limit: 512 characters)".into())
        } else {
            Ok(())
        };
        if let Err(e) = pair {
            return Err(format!("Couldn't load metadata pair ('{k}', '{v}'): {e}"));
        }
    }
    Ok(())
}

/// `ipaddr.IsAny`: the addresses meaning "every interface", which both register paths refuse.
fn is_any(address: &str) -> bool {
    matches!(address, "0.0.0.0" | "::" | "[::]")
}

/// A service from a register body. The agent endpoint (`AgentRegisterService` in
/// `agent/agent_endpoint.go`) answers 400 `Invalid service address` and 400
/// `Invalid Service Meta: <ValidateServiceMetadata error>`; the catalog endpoint checks no
/// meta (`servicePreApply` in `agent/consul/catalog_endpoint.go` runs `service.Validate()`,
/// which does not look at it) and its "Invalid service address" is an RPC error, so 500.
fn svc_from(v: &Value, name_field: &str) -> Result<Svc, Response> {
    let agent = name_field == "Name";
    let name = str_field(v, name_field);
    if name.is_empty() {
        return Err(text(StatusCode::BAD_REQUEST, "Missing service name"));
    }
    let address = str_field(v, "Address");
    if is_any(&address) {
        let status = if agent {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        return Err(text(status, "Invalid service address"));
    }
    let meta: BTreeMap<String, String> = field(v, "Meta")
        .and_then(|m| serde_json::from_value(m.clone()).ok())
        .unwrap_or_default();
    if agent && let Err(e) = validate_service_metadata(&meta) {
        return Err(text(
            StatusCode::BAD_REQUEST,
            &format!("Invalid Service Meta: {e}"),
        ));
    }
    let id = match str_field(v, "ID") {
        s if s.is_empty() => name.clone(),
        s => s,
    };
    Ok(Svc {
        id,
        name,
        tags: field(v, "Tags")
            .and_then(|t| serde_json::from_value(t.clone()).ok())
            .unwrap_or_default(),
        meta,
        address,
        port: field(v, "Port").and_then(Value::as_u64).unwrap_or(0) as u16,
    })
}

fn agent_check(c: &Value, svc: &Svc, n: usize, total: usize) -> Result<Check, Response> {
    let bad = |m: &str| {
        Err(text(
            StatusCode::BAD_REQUEST,
            &format!("Invalid check: {m}"),
        ))
    };
    let ttl = field(c, "TTL").and_then(Value::as_str).map(str::to_string);
    let interval = field(c, "Interval")
        .and_then(Value::as_str)
        .map(str::to_string);
    let http = field(c, "HTTP").and_then(Value::as_str).map(str::to_string);
    let tcp = field(c, "TCP").and_then(Value::as_str).map(str::to_string);
    if ttl.is_some() && interval.is_some() {
        return bad("Interval and TTL cannot both be specified");
    }
    let kind = if http.is_some() || tcp.is_some() {
        if interval.is_none() {
            return bad("Interval must be > 0 for Script, HTTP, or TCP checks");
        }
        if http.is_some() { "http" } else { "tcp" }
    } else if ttl.is_some() {
        "ttl"
    } else {
        return bad("TTL must be > 0 for TTL checks");
    };
    let status = match str_field(c, "Status") {
        s if s.is_empty() => "critical".to_string(),
        s if ["passing", "warning", "critical"].contains(&s.as_str()) => s,
        _ => {
            return Err(text(
                StatusCode::BAD_REQUEST,
                "Status for checks must 'passing', 'warning', 'critical'",
            ));
        }
    };
    let mut id = match str_field(c, "CheckID") {
        s if s.is_empty() => str_field(c, "ID"),
        s => s,
    };
    if id.is_empty() {
        id = if total > 1 {
            format!("service:{}:{}", svc.id, n + 1)
        } else {
            format!("service:{}", svc.id)
        };
    }
    let name = match str_field(c, "Name") {
        s if s.is_empty() => format!("Service '{}' check", svc.name),
        s => s,
    };
    Ok(Check {
        id,
        name,
        service_id: svc.id.clone(),
        status,
        output: String::new(),
        kind: kind.into(),
        ttl,
        target: http.or(tcp),
        deregister_after: field(c, "DeregisterCriticalServiceAfter")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

fn svc_json(s: &Svc) -> Value {
    json!({"ID": s.id, "Service": s.name, "Tags": s.tags, "Meta": s.meta, "Port": s.port,
           "Address": s.address, "TaggedAddresses": {}, "EnableTagOverride": false,
           "Datacenter": "dc1", "Weights": {"Passing": 1, "Warning": 1}})
}

async fn agent_services(
    State(a): State<Agent>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (anonymous, filter) = match read_prelude(&a, &headers, &q, "Tags") {
        Ok(x) => x,
        Err(r) => return r,
    };
    let nodes = a.cluster.nodes.lock().unwrap();
    let mut out = Map::new();
    // Default deny: the anonymous token sees nothing, and the answer is still 200.
    if !anonymous && let Some(n) = nodes.get(&a.node) {
        for s in n.services.values().filter(|s| filter.keeps(s)) {
            out.insert(s.id.clone(), svc_json(s));
        }
    }
    json_ok(Value::Object(out))
}

async fn agent_checks(State(a): State<Agent>, headers: HeaderMap) -> Response {
    if let Err(r) = auth(&a, &headers) {
        return r;
    }
    let nodes = a.cluster.nodes.lock().unwrap();
    let mut out = Map::new();
    if let Some(n) = nodes.get(&a.node) {
        for c in n.checks.values() {
            out.insert(
                c.id.clone(),
                json!({"Node": a.node, "CheckID": c.id, "Name": c.name, "Status": c.status,
                       "Output": c.output, "ServiceID": c.service_id, "Type": c.kind}),
            );
        }
    }
    json_ok(Value::Object(out))
}

async fn agent_register(
    State(a): State<Agent>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    if let Err(r) = write_auth(&a, &headers) {
        return r;
    }
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("Request decode failed: {e}"),
            );
        }
    };
    let svc = match svc_from(&v, "Name") {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(f) = a.cluster.fail_register.lock().unwrap().as_ref()
        && svc.id.contains(f.as_str())
    {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "injected failure");
    }
    let mut raw_checks: Vec<Value> = field(&v, "Checks")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(c) = field(&v, "Check").filter(|c| !c.is_null()) {
        raw_checks.push(c.clone());
    }
    let mut checks = Vec::new();
    for (i, c) in raw_checks.iter().enumerate() {
        match agent_check(c, &svc, i, raw_checks.len()) {
            Ok(c) => checks.push(c),
            Err(r) => return r,
        }
    }
    let replace = q
        .get("replace-existing-checks")
        .is_some_and(|v| v.is_empty() || v == "true");
    let mut nodes = a.cluster.nodes.lock().unwrap();
    let node = nodes.entry(a.node.clone()).or_default();
    let checks_before: Vec<Check> = node
        .checks
        .values()
        .filter(|c| c.service_id == svc.id)
        .cloned()
        .collect();
    if replace {
        node.checks.retain(|_, c| c.service_id != svc.id);
    }
    for c in checks {
        node.checks.insert(c.id.clone(), c);
    }
    let checks_after: Vec<&Check> = node
        .checks
        .values()
        .filter(|c| c.service_id == svc.id)
        .collect();
    let checks_same = checks_before.iter().eq(checks_after.iter().copied());
    let old = node.services.insert(svc.id.clone(), svc.clone());
    // Identical re-registers move no index (`ensureServiceTxn`: `IsSameService`; checks:
    // `IsSame`); a changed service moves its node's and its names' indexes, a changed check
    // only its service name's.
    if old.as_ref() != Some(&svc) {
        let mut names = vec![svc.name.as_str()];
        names.extend(old.as_ref().map(|o| o.name.as_str()));
        a.cluster.raft.commit(Some(&a.node), &names);
    } else if !checks_same {
        a.cluster.raft.commit(None, &[svc.name.as_str()]);
    }
    empty_ok()
}

async fn agent_deregister(
    State(a): State<Agent>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = write_auth(&a, &headers) {
        return r;
    }
    let mut nodes = a.cluster.nodes.lock().unwrap();
    let node = nodes.entry(a.node.clone()).or_default();
    let Some(gone) = node.services.remove(&id) else {
        return text(
            StatusCode::NOT_FOUND,
            &format!(
                "Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."
            ),
        );
    };
    node.checks.retain(|_, c| c.service_id != id);
    a.cluster.raft.commit(Some(&a.node), &[gone.name.as_str()]);
    empty_ok()
}

async fn check_update(
    State(a): State<Agent>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(r) = write_auth(&a, &headers) {
        return r;
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let status = str_field(&v, "Status");
    if !["passing", "warning", "critical"].contains(&status.as_str()) {
        return text(
            StatusCode::BAD_REQUEST,
            &format!("Invalid status {status:?}"),
        );
    }
    let mut nodes = a.cluster.nodes.lock().unwrap();
    let Some(check) = nodes.get_mut(&a.node).and_then(|n| n.checks.get_mut(&id)) else {
        if a.cluster.legacy_check_update.load(Ordering::SeqCst) {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("CheckID {id:?} does not have associated TTL"),
            );
        }
        return text(
            StatusCode::NOT_FOUND,
            &format!(
                "Unknown check ID {id:?}. Ensure that the check ID is passed, not the check name."
            ),
        );
    };
    // A known check that is not a TTL check: the id passes the vet, `updateTTLCheck` fails.
    if check.kind != "ttl" {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("CheckID {id:?} does not have associated TTL"),
        );
    }
    let output = str_field(&v, "Output");
    if check.status != status || check.output != output {
        check.status = status;
        check.output = output;
        let sid = check.service_id.clone();
        let node = &nodes[&a.node];
        let names: Vec<&str> = node
            .services
            .get(&sid)
            .map(|s| s.name.as_str())
            .into_iter()
            .collect();
        a.cluster.raft.commit(None, &names);
    }
    empty_ok()
}

async fn catalog_register(State(a): State<Agent>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = write_auth(&a, &headers) {
        return r;
    }
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("Request decode failed: {e}"),
            );
        }
    };
    let node_name = str_field(&v, "Node");
    let address = str_field(&v, "Address");
    if node_name.is_empty() {
        return text(StatusCode::BAD_REQUEST, "Must provide node");
    }
    if address.is_empty() {
        return text(StatusCode::BAD_REQUEST, "Must provide address");
    }
    let svc = match field(&v, "Service").filter(|s| !s.is_null()) {
        Some(s) => match svc_from(s, "Service") {
            Ok(s) => Some(s),
            Err(r) => return r,
        },
        None => None,
    };
    let mut nodes = a.cluster.nodes.lock().unwrap();
    let known = nodes.contains_key(&node_name);
    let node = nodes.entry(node_name.clone()).or_default();
    let mut node_changed = !known || node.address != address;
    let mut names: Vec<String> = Vec::new();
    node.address = address;
    if let Some(svc) = svc {
        let checks: Vec<Value> = field(&v, "Checks")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for c in checks {
            let id = str_field(&c, "CheckID");
            let before = node.checks.get(&id).cloned();
            node.checks.insert(
                id.clone(),
                Check {
                    id: id.clone(),
                    name: str_field(&c, "Name"),
                    service_id: str_field(&c, "ServiceID"),
                    status: str_field(&c, "Status"),
                    output: str_field(&c, "Output"),
                    kind: "catalog".into(),
                    ttl: None,
                    target: None,
                    deregister_after: None,
                },
            );
            if before.as_ref() != node.checks.get(&id) {
                names.push(svc.name.clone());
            }
        }
        let old = node.services.insert(svc.id.clone(), svc.clone());
        if old.as_ref() != Some(&svc) {
            node_changed = true;
            names.push(svc.name.clone());
            names.extend(old.map(|o| o.name));
        }
    }
    if node_changed || !names.is_empty() {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let node = node_changed.then_some(node_name.as_str());
        a.cluster.raft.commit(node, &names);
    }
    json_ok(json!(true))
}

async fn catalog_deregister(State(a): State<Agent>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = write_auth(&a, &headers) {
        return r;
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let node_name = str_field(&v, "Node");
    let id = str_field(&v, "ServiceID");
    let mut nodes = a.cluster.nodes.lock().unwrap();
    if id.is_empty() {
        if let Some(n) = nodes.remove(&node_name) {
            let names: Vec<&str> = n.services.values().map(|s| s.name.as_str()).collect();
            a.cluster.raft.node_removed(&node_name, &names);
        }
    } else if let Some(n) = nodes.get_mut(&node_name)
        && let Some(gone) = n.services.remove(&id)
    {
        n.checks.retain(|_, c| c.service_id != id);
        a.cluster
            .raft
            .commit(Some(&node_name), &[gone.name.as_str()]);
    }
    json_ok(json!(true))
}

async fn catalog_services(
    State(a): State<Agent>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (anonymous, filter) = match read_prelude(&a, &headers, &q, "ServiceTags") {
        Ok(x) => x,
        Err(r) => return r,
    };
    let wait = match blocking::parse(&q) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let raft = &a.cluster.raft;
    raft.block(wait, || raft.services()).await;
    let nodes = a.cluster.nodes.lock().unwrap();
    let idx = raft.services();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in nodes.values().filter(|_| !anonymous) {
        for s in n.services.values() {
            if filter.keeps(s) {
                let tags = out.entry(s.name.clone()).or_default();
                for t in &s.tags {
                    if !tags.contains(t) {
                        tags.push(t.clone());
                    }
                }
            }
        }
    }
    json_indexed(&a, json!(out), idx)
}

async fn catalog_service(
    State(a): State<Agent>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (anonymous, filter) = match read_prelude(&a, &headers, &q, "ServiceTags") {
        Ok(x) => x,
        Err(r) => return r,
    };
    let wait = match blocking::parse(&q) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let raft = &a.cluster.raft;
    raft.block(wait, || raft.name(&name)).await;
    let nodes = a.cluster.nodes.lock().unwrap();
    let idx = raft.name(&name);
    let mut out = Vec::new();
    for (node_name, n) in nodes.iter().filter(|_| !anonymous) {
        for s in n.services.values().filter(|s| s.name == name) {
            if filter.keeps(s) {
                out.push(json!({"ID": "", "Node": node_name, "Address": n.address,
                    "Datacenter": "dc1", "TaggedAddresses": {}, "NodeMeta": {},
                    "ServiceKind": "", "ServiceID": s.id, "ServiceName": s.name,
                    "ServiceTags": s.tags, "ServiceAddress": s.address,
                    "ServicePort": s.port, "ServiceMeta": s.meta,
                    "CreateIndex": 10, "ModifyIndex": 10}));
            }
        }
    }
    json_indexed(&a, Value::Array(out), idx)
}

async fn node_services(
    State(a): State<Agent>,
    headers: HeaderMap,
    Path(node_name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (anonymous, filter) = match read_prelude(&a, &headers, &q, "Tags") {
        Ok(x) => x,
        Err(r) => return r,
    };
    let wait = match blocking::parse(&q) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let raft = &a.cluster.raft;
    let index = || {
        let exists = a.cluster.nodes.lock().unwrap().contains_key(&node_name);
        raft.node(&node_name, exists)
    };
    raft.block(wait, index).await;
    let nodes = a.cluster.nodes.lock().unwrap();
    let idx = raft.node(&node_name, nodes.contains_key(&node_name));
    // An unknown node leaves the reply's zero value (`Catalog.NodeServiceList` in
    // agent/consul/catalog_endpoint.go sets it only when the state store found the node), and
    // `CatalogNodeServiceList` returns a pointer to it: `{"Node": null, "Services": null}`.
    let Some(n) = nodes.get(&node_name).filter(|_| !anonymous) else {
        return json_indexed(&a, json!({"Node": null, "Services": null}), idx);
    };
    let services: Vec<Value> = n
        .services
        .values()
        .filter(|s| filter.keeps(s))
        .map(svc_json)
        .collect();
    json_indexed(
        &a,
        json!({"Node": {"ID": "", "Node": node_name, "Address": n.address,
        "Datacenter": "dc1", "TaggedAddresses": {}, "Meta": {}}, "Services": services}),
        idx,
    )
}

/// `GET /v1/agent/self` (`AgentSelf` in agent/agent_endpoint.go): needs `agent:read` on the
/// agent's node — the anonymous token of a default-deny ACL gets 403 `Permission denied`.
/// The double answers the fields rancon reads, in Consul's shape.
async fn agent_self(State(a): State<Agent>, headers: HeaderMap) -> Response {
    match auth(&a, &headers) {
        Err(r) => return r,
        Ok(Auth::Anonymous) => return text(StatusCode::FORBIDDEN, "Permission denied"),
        Ok(Auth::Ok) => {}
    }
    let address = a.cluster.nodes.lock().unwrap()[&a.node].address.clone();
    json_ok(json!({
        "Config": {"Datacenter": "dc1", "PrimaryDatacenter": "dc1", "NodeName": a.node,
                   "NodeID": "", "Revision": "double", "Server": false, "Version": "1.21.0"},
        "Member": {"Name": a.node, "Addr": address, "Port": 8301, "Tags": {}, "Status": 1},
        "Stats": {}, "Meta": {}
    }))
}

/// `GET /v1/catalog/nodes`: every node (`structs.Node`), sorted by name; anonymous callers
/// see none (default deny filters nodes by `node:read`).
async fn catalog_nodes(State(a): State<Agent>, headers: HeaderMap) -> Response {
    let anonymous = match auth(&a, &headers) {
        Ok(x) => matches!(x, Auth::Anonymous),
        Err(r) => return r,
    };
    let nodes = a.cluster.nodes.lock().unwrap();
    let out: Vec<Value> = nodes
        .iter()
        .filter(|_| !anonymous)
        .map(|(name, n)| {
            json!({"ID": "", "Node": name, "Address": n.address, "Datacenter": "dc1",
                   "TaggedAddresses": {"lan": n.address}, "Meta": {},
                   "CreateIndex": 5, "ModifyIndex": 5})
        })
        .collect();
    json_ok(Value::Array(out))
}

/// Invalidates sessions whose TTL ran out: their locks are released (Behavior=release) or
/// deleted, and the lock-delay starts.
fn expire(c: &Cluster) {
    let now = std::time::Instant::now();
    let mut sessions = c.sessions.lock().unwrap();
    let dead: Vec<(String, Session)> = sessions
        .iter()
        .filter(|(_, s)| now.duration_since(s.renewed) > s.ttl)
        .map(|(k, s)| (k.clone(), s.clone()))
        .collect();
    for (id, s) in dead {
        sessions.remove(&id);
        invalidate(c, &id, &s, now);
    }
}

fn invalidate(c: &Cluster, id: &str, s: &Session, now: std::time::Instant) {
    let mut kv = c.kv.lock().unwrap();
    let held: Vec<String> = kv
        .iter()
        .filter(|(_, e)| e.session.as_deref() == Some(id))
        .map(|(k, _)| k.clone())
        .collect();
    for k in held {
        if s.behavior == "delete" {
            kv.remove(&k);
        } else if let Some(e) = kv.get_mut(&k) {
            e.session = None;
            e.delay_until = Some(now + s.lock_delay);
        }
    }
}

fn go_duration(
    v: Option<&Value>,
    default: std::time::Duration,
) -> Result<std::time::Duration, String> {
    match v {
        None | Some(Value::Null) => Ok(default),
        // A number below 1000 is seconds, else nanoseconds.
        Some(Value::Number(n)) => {
            let n = n.as_u64().ok_or("bad number")?;
            Ok(if n < 1000 {
                std::time::Duration::from_secs(n)
            } else {
                std::time::Duration::from_nanos(n)
            })
        }
        Some(Value::String(s)) if s.is_empty() => Ok(default),
        Some(Value::String(s)) => humantime::parse_duration(s).map_err(|e| e.to_string()),
        Some(_) => Err("bad duration".into()),
    }
}

async fn session_create(State(a): State<Agent>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = write_auth(&a, &headers) {
        return r;
    }
    expire(&a.cluster);
    let v: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!("Request decode failed: {e}"),
                );
            }
        }
    };
    let ttl = match go_duration(field(&v, "TTL"), std::time::Duration::ZERO) {
        Ok(t) => t,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("Request decode failed: {e}"),
            );
        }
    };
    if !ttl.is_zero() && !(10..=86_400).contains(&ttl.as_secs()) {
        return text(
            StatusCode::BAD_REQUEST,
            &format!(
                "Invalid Session TTL '{}', must be between [10s=24h0m0s]",
                ttl.as_secs()
            ),
        );
    }
    let lock_delay = match go_duration(field(&v, "LockDelay"), std::time::Duration::from_secs(15)) {
        Ok(t) => t,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("Request decode failed: {e}"),
            );
        }
    };
    let n = a.cluster.next_session.fetch_add(1, Ordering::SeqCst) + 1;
    let id = format!("{n:08x}-0000-4000-8000-{n:012x}");
    let behavior = match str_field(&v, "Behavior") {
        b if b.is_empty() => "release".to_string(),
        b => b,
    };
    a.cluster.sessions.lock().unwrap().insert(
        id.clone(),
        Session {
            name: str_field(&v, "Name"),
            ttl: if ttl.is_zero() {
                std::time::Duration::MAX / 4
            } else {
                ttl
            },
            lock_delay,
            behavior,
            renewed: std::time::Instant::now(),
        },
    );
    json_ok(json!({"ID": id}))
}

async fn session_renew(
    State(a): State<Agent>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = write_auth(&a, &headers) {
        return r;
    }
    expire(&a.cluster);
    let mut sessions = a.cluster.sessions.lock().unwrap();
    let Some(s) = sessions.get_mut(&id) else {
        return text(
            StatusCode::NOT_FOUND,
            &format!("Session id '{id}' not found"),
        );
    };
    s.renewed = std::time::Instant::now();
    json_ok(
        json!([{"ID": id, "Name": s.name, "Node": a.node, "LockDelay": s.lock_delay.as_nanos() as u64,
        "Behavior": s.behavior, "TTL": format!("{}s", s.ttl.as_secs()), "NodeChecks": ["serfHealth"],
        "ServiceChecks": null, "CreateIndex": 1, "ModifyIndex": 1}]),
    )
}

async fn session_destroy(
    State(a): State<Agent>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = write_auth(&a, &headers) {
        return r;
    }
    let removed = a.cluster.sessions.lock().unwrap().remove(&id);
    if let Some(s) = removed {
        invalidate(&a.cluster, &id, &s, std::time::Instant::now());
    }
    json_ok(json!(true))
}

async fn kv_put(
    State(a): State<Agent>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    if let Err(r) = write_auth(&a, &headers) {
        return r;
    }
    expire(&a.cluster);
    let now = std::time::Instant::now();
    let sessions = a.cluster.sessions.lock().unwrap().clone();
    let mut kv = a.cluster.kv.lock().unwrap();
    if let Some(id) = q.get("acquire") {
        if !sessions.contains_key(id) {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("invalid session \"{id}\""),
            );
        }
        let e = kv.entry(key).or_default();
        let held_by_other = e.session.as_ref().is_some_and(|s| s != id);
        let delayed = e.delay_until.is_some_and(|t| now < t);
        if held_by_other || (e.session.is_none() && delayed) {
            return json_ok(json!(false));
        }
        if e.session.is_none() {
            e.lock_index += 1;
        }
        e.session = Some(id.clone());
        e.value = body.to_vec();
        e.modify_index += 1;
        return json_ok(json!(true));
    }
    if let Some(id) = q.get("release") {
        let Some(e) = kv.get_mut(&key) else {
            return json_ok(json!(false));
        };
        if e.session.as_deref() != Some(id.as_str()) {
            return json_ok(json!(false));
        }
        e.session = None;
        e.modify_index += 1;
        return json_ok(json!(true));
    }
    let e = kv.entry(key).or_default();
    e.value = body.to_vec();
    e.modify_index += 1;
    json_ok(json!(true))
}

async fn kv_get(State(a): State<Agent>, headers: HeaderMap, Path(key): Path<String>) -> Response {
    if let Err(r) = auth(&a, &headers) {
        return r;
    }
    expire(&a.cluster);
    let kv = a.cluster.kv.lock().unwrap();
    let Some(e) = kv.get(&key) else {
        return (StatusCode::NOT_FOUND, [("x-consul-index", "1")]).into_response();
    };
    use base64::Engine;
    let mut entry = json!({"Key": key, "Flags": 0, "LockIndex": e.lock_index,
        "CreateIndex": 1, "ModifyIndex": e.modify_index,
        "Value": if e.value.is_empty() { Value::Null } else { json!(base64::engine::general_purpose::STANDARD.encode(&e.value)) }});
    if let Some(s) = &e.session {
        entry["Session"] = json!(s);
    }
    json_ok(json!([entry]))
}
