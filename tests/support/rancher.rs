//! A Rancher 1.6 API double (wire-formats.md section A): `v2-beta` and `v1`, absolute links
//! built from the request's Host, `limit`/`marker` pagination (default 100, max 3000: cattle's
//! `processPaginationResult` pages by offset, `next` carrying marker `m<offset+limit>`, so a
//! row removed between two page reads shifts the rest), equality filters, JSON error bodies
//! and HTTP basic auth. The event subscription (WebSocket) is in `rancher_events.rs`.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// One environment (project) with its stacks, services and containers (v2-beta shapes).
#[derive(Clone, Default)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub stacks: Vec<(String, String)>,
    pub services: Vec<Value>,
    pub containers: Vec<Value>,
}

/// Fault injection for bad-data tests.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    None,
    NotJson,
    ErrorBody(u16),
    Truncated,
    NoData,
    Hang,
    RepeatNext,
    /// `pagination.next` on another server (this URL).
    ForeignNext(String),
    /// `pagination.partial: true` with no `next`.
    PartialNoNext,
    /// Projects' `links.self` on another server (this base URL).
    ForeignSelf(String),
}

pub struct Inner {
    pub projects: Mutex<Vec<Arc<Project>>>,
    pub auth: Option<(String, String)>,
    pub fault: Mutex<Fault>,
    pub requests: AtomicUsize,
    /// Largest page the server hands out (Rancher 1.6: 3000).
    pub max_limit: AtomicUsize,
    /// Links use https when the double serves TLS.
    pub https: std::sync::atomic::AtomicBool,
    /// The event subscriptions and their switches.
    pub events: super::rancher_events::Hub,
    /// How long a collection page waits between reading its rows and answering.
    pub answer_delay: Mutex<std::time::Duration>,
}

/// A running double.
pub struct Rancher {
    pub addr: SocketAddr,
    pub state: Arc<Inner>,
    tls: bool,
}

impl Rancher {
    pub async fn start(projects: Vec<Project>, auth: Option<(&str, &str)>) -> Self {
        let (state, app) = Self::app(projects, auth);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            addr,
            state,
            tls: false,
        }
    }

    /// The same double over HTTPS with the given PEM certificate chain and key.
    pub async fn start_tls(projects: Vec<Project>, cert_pem: &str, key_pem: &str) -> Self {
        let (state, app) = Self::app(projects, None);
        state.https.store(true, Ordering::SeqCst);
        let config = axum_server::tls_rustls::RustlsConfig::from_pem(
            cert_pem.as_bytes().to_vec(),
            key_pem.as_bytes().to_vec(),
        )
        .await
        .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = axum_server::from_tcp_rustls(listener, config).unwrap();
        tokio::spawn(async move { server.serve(app.into_make_service()).await.unwrap() });
        Self {
            addr,
            state,
            tls: true,
        }
    }

    fn app(projects: Vec<Project>, auth: Option<(&str, &str)>) -> (Arc<Inner>, Router) {
        let state = Arc::new(Inner {
            projects: Mutex::new(projects.into_iter().map(Arc::new).collect()),
            auth: auth.map(|(a, s)| (a.to_string(), s.to_string())),
            fault: Mutex::new(Fault::None),
            requests: AtomicUsize::new(0),
            max_limit: AtomicUsize::new(3000),
            https: std::sync::atomic::AtomicBool::new(false),
            events: Default::default(),
            answer_delay: Mutex::default(),
        });
        let app = Router::new()
            .route("/{ver}/projects", get(projects_list))
            .route("/{ver}/projects/{pid}", get(project_one))
            .route(
                "/{ver}/projects/{pid}/subscribe",
                get(super::rancher_events::subscribe),
            )
            .route("/{ver}/projects/{pid}/{coll}", get(collection))
            .with_state(state.clone());
        tokio::spawn(super::rancher_events::flusher(Arc::downgrade(&state)));
        (state, app)
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    pub fn set_fault(&self, f: Fault) {
        *self.state.fault.lock().unwrap() = f;
    }

    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Changes service `sid` of project `pid` through `f` and publishes the change as cattle
    /// does: coalesced per resource until the next flush, fanned out to its stack.
    pub fn edit_service(&self, pid: &str, sid: &str, f: impl FnOnce(&mut Value)) {
        let stack = self.edit(pid, |p| {
            let s = p
                .services
                .iter_mut()
                .find(|s| s["id"] == sid)
                .expect("no such service");
            f(s);
            s["stackId"].as_str().map(str::to_string)
        });
        // cattle EventNotificationChangeMonitor.addData (code/iaas/logic-common/…/process/
        // monitor/EventNotificationChangeMonitor.java): a Service's change also sends its Stack.
        self.state.events.changed(pid, "service", sid);
        if let Some(stack) = stack {
            self.state.events.changed(pid, "stack", &stack);
        }
    }

    /// Adds a service (published like an edit).
    pub fn add_service(&self, pid: &str, svc: Value) {
        let id = svc["id"].as_str().unwrap().to_string();
        self.edit(pid, |p| p.services.push(svc));
        self.edit_service(pid, &id, |_| {});
    }

    /// Changes container `cid` through `f`; the change is published for the container and for
    /// every service listing it (its health and endpoints are the service's too).
    pub fn edit_container(&self, pid: &str, cid: &str, f: impl FnOnce(&mut Value)) {
        let services = self.edit(pid, |p| {
            let c = p
                .containers
                .iter_mut()
                .find(|c| c["id"] == cid)
                .expect("no such container");
            f(c);
            p.services
                .iter()
                .filter(|s| {
                    s["instanceIds"]
                        .as_array()
                        .is_some_and(|i| i.iter().any(|i| i == cid))
                })
                .filter_map(|s| s["id"].as_str().map(str::to_string))
                .collect::<Vec<_>>()
        });
        self.state.events.changed(pid, "container", cid);
        for s in services {
            self.state.events.changed(pid, "service", &s);
        }
    }

    /// Changes project `pid` without publishing anything (what a purge or a database edit does).
    pub fn edit<T>(&self, pid: &str, f: impl FnOnce(&mut Project) -> T) -> T {
        let mut projects = self.state.projects.lock().unwrap();
        let p = projects
            .iter_mut()
            .find(|p| p.id == pid)
            .expect("no such project");
        f(Arc::make_mut(p))
    }

    /// The event subscriptions' switches and counters.
    pub fn events(&self) -> &super::rancher_events::Hub {
        &self.state.events
    }
}

/// A service in v2-beta shape, from the documented fixture.
pub fn service(
    id: &str,
    name: &str,
    stack_id: &str,
    labels: &[(&str, &str)],
    endpoints: &[(&str, u16)],
) -> Value {
    let mut s: Value =
        serde_json::from_str(include_str!("../fixtures/rancher/service.json")).unwrap();
    s["id"] = json!(id);
    s["name"] = json!(name);
    s["stackId"] = json!(stack_id);
    for (k, v) in labels {
        s["launchConfig"]["labels"][*k] = json!(v);
    }
    s["publicEndpoints"] = json!(
        endpoints
            .iter()
            .map(|(ip, port)| json!({"type": "publicEndpoint", "hostId": "1h1", "instanceId": "1i1", "ipAddress": ip, "port": port, "serviceId": id}))
            .collect::<Vec<_>>()
    );
    s
}

pub fn error(status: u16, code: &str) -> Response {
    let body = json!({"id": "b052db07", "type": "error", "links": {}, "actions": {}, "status": status, "code": code, "message": code, "detail": null});
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub fn authorized(st: &Inner, headers: &HeaderMap) -> bool {
    let Some((user, pass)) = &st.auth else {
        return true;
    };
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    );
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str())
}

async fn guard(st: &Inner, headers: &HeaderMap, ver: &str) -> Option<Response> {
    st.requests.fetch_add(1, Ordering::SeqCst);
    if ver != "v1" && ver != "v2-beta" {
        return Some(error(404, "NotFound"));
    }
    if !authorized(st, headers) {
        return Some(error(401, "Unauthorized"));
    }
    let fault = st.fault.lock().unwrap().clone();
    match fault {
        Fault::NotJson => Some((StatusCode::OK, "<html>not json</html>").into_response()),
        Fault::ErrorBody(code) => Some(error(code, "ServerError")),
        Fault::Truncated => Some(
            (
                StatusCode::OK,
                [("content-type", "application/json")],
                "{\"type\":\"collection\",\"data\":[{\"id\"",
            )
                .into_response(),
        ),
        Fault::NoData => Some(
            (
                StatusCode::OK,
                [("content-type", "application/json")],
                "{\"type\":\"collection\"}",
            )
                .into_response(),
        ),
        Fault::Hang => {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            None
        }
        _ => None,
    }
}

fn host(headers: &HeaderMap) -> String {
    headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string()
}

fn page(
    st: &Inner,
    headers: &HeaderMap,
    path: &str,
    items: &[Value],
    q: &HashMap<String, String>,
    rtype: &str,
    transform: impl Fn(&Value) -> Value,
) -> Response {
    let base = format!("{}://{}{path}", scheme(st), host(headers));
    // Filter by reference and copy only the page: the double must not be the bottleneck.
    let items: Vec<&Value> = items
        .iter()
        .filter(|item| {
            q.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "limit" | "marker" | "sort" | "order"))
                .all(|(k, v)| item.get(k).and_then(Value::as_str) == Some(v))
        })
        .collect();
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(1, st.max_limit.load(Ordering::SeqCst));
    let start = q
        .get("marker")
        .and_then(|m| m.strip_prefix('m'))
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(0);
    let end = (start + limit).min(items.len());
    let data: Vec<Value> = items
        .get(start..end)
        .unwrap_or_default()
        .iter()
        .map(|v| transform(v))
        .collect();
    let fault = st.fault.lock().unwrap().clone();
    let repeat = fault == Fault::RepeatNext;
    let mut next = if end < items.len() || repeat {
        let marker = if repeat { start } else { end };
        json!(format!("{base}?limit={limit}&marker=m{marker}"))
    } else {
        Value::Null
    };
    let mut partial = !next.is_null();
    match fault {
        Fault::ForeignNext(url) => next = json!(url),
        Fault::PartialNoNext => {
            next = Value::Null;
            partial = true;
        }
        _ => {}
    }
    let body = json!({
        "type": "collection", "resourceType": rtype,
        "links": {"self": base}, "createTypes": {}, "actions": {},
        "data": data, "sortLinks": {},
        "pagination": {"first": null, "previous": null, "next": next, "limit": limit, "total": null, "partial": partial},
        "sort": null, "filters": {}, "createDefaults": {}
    });
    (
        StatusCode::OK,
        [
            ("content-type", "application/json"),
            ("x-api-schemas", "/v2-beta/schemas"),
        ],
        body.to_string(),
    )
        .into_response()
}

fn project_json(st: &Inner, headers: &HeaderMap, ver: &str, p: &Project) -> Value {
    let mut base = format!("{}://{}/{ver}/projects/{}", scheme(st), host(headers), p.id);
    if let Fault::ForeignSelf(other) = &*st.fault.lock().unwrap() {
        base = format!("{other}/{ver}/projects/{}", p.id);
    }
    json!({"id": p.id, "type": "project", "baseType": "account", "name": p.name, "state": "active", "orchestration": "cattle",
           "links": {"self": base, "services": format!("{base}/services")}, "actions": {}})
}

async fn projects_list(
    State(st): State<Arc<Inner>>,
    Path(ver): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = guard(&st, &headers, &ver).await {
        return r;
    }
    let items: Vec<Value> = st
        .projects
        .lock()
        .unwrap()
        .iter()
        .map(|p| project_json(&st, &headers, &ver, p))
        .collect();
    let path = format!("/{ver}/projects");
    page(&st, &headers, &path, &items, &q, "project", Value::clone)
}

async fn project_one(
    State(st): State<Arc<Inner>>,
    Path((ver, pid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = guard(&st, &headers, &ver).await {
        return r;
    }
    let found = st
        .projects
        .lock()
        .unwrap()
        .iter()
        .find(|p| p.id == pid)
        .cloned();
    match found {
        Some(p) => (
            StatusCode::OK,
            [("content-type", "application/json")],
            project_json(&st, &headers, &ver, &p).to_string(),
        )
            .into_response(),
        None => error(404, "NotFound"),
    }
}

async fn collection(
    State(st): State<Arc<Inner>>,
    Path((ver, pid, coll)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = guard(&st, &headers, &ver).await {
        return r;
    }
    let Some(p) = st
        .projects
        .lock()
        .unwrap()
        .iter()
        .find(|p| p.id == pid)
        .cloned()
    else {
        return error(404, "NotFound");
    };
    // The rows are read; the answer is late (a slow database or network): anything that
    // changes meanwhile is not in this page.
    let late = *st.answer_delay.lock().unwrap();
    tokio::time::sleep(late).await;
    let v1 = ver == "v1";
    let stacks_name = if v1 { "environments" } else { "stacks" };
    let path = format!("/{ver}/projects/{pid}/{coll}");
    match coll.as_str() {
        c if c == stacks_name => {
            let items: Vec<Value> = p
                .stacks
                .iter()
                .map(|(id, name)| stack_json(v1, &pid, id, name))
                .collect();
            page(
                &st,
                &headers,
                &path,
                &items,
                &q,
                if v1 { "environment" } else { "stack" },
                Value::clone,
            )
        }
        "services" => page(&st, &headers, &path, &p.services, &q, "service", |s| {
            service_json(v1, s)
        }),
        "containers" => page(
            &st,
            &headers,
            &path,
            &p.containers,
            &q,
            "container",
            Value::clone,
        ),
        _ => error(404, "NotFound"),
    }
}

/// A stack as the API shows it (v1 calls it an environment).
pub fn stack_json(v1: bool, pid: &str, id: &str, name: &str) -> Value {
    json!({"id": id, "type": if v1 {"environment"} else {"stack"}, "baseType": if v1 {"environment"} else {"stack"}, "name": name, "state": "active", "accountId": pid})
}

/// A service as the API version shows it.
pub fn service_json(v1: bool, s: &Value) -> Value {
    let mut s = s.clone();
    if v1 {
        // v1 calls a stack an environment.
        let stack = s
            .as_object_mut()
            .unwrap()
            .remove("stackId")
            .unwrap_or(Value::Null);
        s["environmentId"] = stack;
        let link = s["links"]
            .as_object_mut()
            .unwrap()
            .remove("stack")
            .unwrap_or(Value::Null);
        s["links"]["environment"] = link;
    }
    s
}

fn scheme(st: &Inner) -> &'static str {
    if st.https.load(Ordering::SeqCst) {
        "https"
    } else {
        "http"
    }
}
