//! The one Consul HTTP client (the consul backend's calls and leader election's): ACL token,
//! TLS, retries, and Consul's error conventions — plain-text bodies, 403 for ACL denials,
//! empty-body 200s.

use crate::config::Secret;
use crate::config::secret::SecretSource;
use crate::error::BackendError;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// One HTTP client (keep-alive, TLS) shared by every agent a component talks to.
pub struct Api {
    /// The component name, for errors.
    pub backend: String,
    /// The client.
    pub http: reqwest::Client,
    /// `?dc=` for catalog calls.
    pub datacenter: Option<String>,
    token: SecretSource,
    max_body: u64,
    /// HTTP basic auth `user[:password]` (`CONSUL_HTTP_AUTH`), for an agent behind a proxy.
    auth: Option<Secret>,
    /// `?ns=` on every request (`CONSUL_NAMESPACE`; Consul Enterprise).
    namespace: Option<String>,
}

impl Api {
    /// A client for `backend` with its token (inline, or a file re-read by `refresh_token`).
    pub fn new(
        backend: &str,
        http: reqwest::Client,
        datacenter: Option<String>,
        token: SecretSource,
        max_body: u64,
    ) -> Self {
        Self {
            backend: backend.to_string(),
            http,
            datacenter,
            token,
            max_body,
            auth: None,
            namespace: None,
        }
    }

    /// Sends HTTP basic auth on every request: `user:password`, split at the first `:`; no
    /// `:` is a user with an empty password (api/api.go `defaultConfig`, `CONSUL_HTTP_AUTH`).
    pub fn with_auth(mut self, auth: Option<Secret>) -> Self {
        self.auth = auth.filter(|a| !a.expose().is_empty());
        self
    }

    /// Sends `?ns=<namespace>` on every request, as api/api.go `newRequest` does with
    /// `CONSUL_NAMESPACE`. Consul CE answers 400 to any `ns` (agent/http_ce.go
    /// `parseEntMeta`): set it against Enterprise only.
    pub fn with_namespace(mut self, namespace: Option<String>) -> Self {
        self.namespace = namespace.filter(|n| !n.is_empty());
        self
    }

    /// Re-reads the token file (once a round), so a rotated token needs no restart.
    pub async fn refresh_token(&self) {
        self.token.refresh(&self.backend).await;
    }

    fn request(&self, method: &reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method.clone(), url);
        if let Some(mut t) = self.token_header().ok().flatten() {
            t.set_sensitive(true);
            req = req.header("X-Consul-Token", t);
        }
        if let Some(a) = &self.auth {
            // reqwest marks the header sensitive.
            let (user, password) = a.expose().split_once(':').unwrap_or((a.expose(), ""));
            req = req.basic_auth(user, Some(password));
        }
        if let Some(ns) = &self.namespace {
            req = req.query(&[("ns", ns)]);
        }
        req
    }

    /// The token as a header value. A token (typically a rewritten `token_file`) that is not
    /// one — control characters, non-ASCII — fails the request before anything is sent, and
    /// the error never shows the token.
    fn token_header(&self) -> Result<Option<reqwest::header::HeaderValue>, BackendError> {
        let Some(t) = self.token.get() else {
            return Ok(None);
        };
        let printable = t.expose().bytes().all(|b| b.is_ascii_graphic());
        match reqwest::header::HeaderValue::from_str(t.expose()) {
            Ok(v) if printable => Ok(Some(v)),
            _ => Err(BackendError::Encode {
                what: format!("{}: the X-Consul-Token header", self.backend),
                message: "the token (token, token_file or CONSUL_HTTP_TOKEN) holds characters \
                          other than printable ASCII, so it cannot be sent"
                    .into(),
            }),
        }
    }

    /// Sends (retrying transient failures, see `http::with_retry`) and maps errors; returns the
    /// body of a 2xx answer. The request is built anew for each attempt.
    async fn send(
        &self,
        op: &'static str,
        url: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, BackendError> {
        // Not a transient failure: no retry.
        self.token_header()?;
        crate::http::with_retry(|| self.send_once(op, url, make()), |e| self.retryable(e)).await
    }

    /// Whether a failed request is worth another attempt.
    fn retryable(&self, e: &BackendError) -> bool {
        match e {
            BackendError::Transport { .. } => true,
            BackendError::Http { status, .. } => {
                crate::http::transient_status(*status) && !is_unknown_check(e)
            }
            _ => false,
        }
    }

    async fn send_once(
        &self,
        op: &'static str,
        url: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, BackendError> {
        self.exchange(op, url, req).await.map(|(_, body)| body)
    }

    fn transport(&self, op: &'static str, url: &str, message: String) -> BackendError {
        BackendError::Transport {
            backend: self.backend.clone(),
            op,
            url: url.to_string(),
            message,
        }
    }

    /// One request: its headers and body (at most `max_body` bytes) when it is a 2xx, else
    /// the error named as Consul's conventions say.
    async fn exchange(
        &self,
        op: &'static str,
        url: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<(reqwest::header::HeaderMap, Vec<u8>), BackendError> {
        let mut resp = self.respond(op, url, req).await?;
        let headers = std::mem::take(resp.headers_mut());
        let body = crate::http::read_body(&mut resp, self.max_body, false)
            .await
            .map_err(|e| self.transport(op, url, e.to_string()))?;
        Ok((headers, body))
    }

    /// One request: the answer, its body unread, when it is a 2xx, else the error named as
    /// Consul's conventions say.
    async fn respond(
        &self,
        op: &'static str,
        url: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, BackendError> {
        let mut resp = req
            .send()
            .await
            .map_err(|e| self.transport(op, url, crate::http::describe(&e.without_url())))?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let body = crate::http::read_body(&mut resp, self.max_body, false)
            .await
            .map_err(|e| self.transport(op, url, e.to_string()))?;
        // Consul answers errors with a plain-text reason; a proxy in front may echo headers.
        let message: String = String::from_utf8_lossy(&body)
            .trim()
            .chars()
            .take(300)
            .collect();
        let message = self.scrub(message);
        Err(if status == 403 {
            BackendError::Acl {
                backend: self.backend.clone(),
                op,
                url: url.to_string(),
                message,
            }
        } else {
            BackendError::Http {
                backend: self.backend.clone(),
                op,
                url: url.to_string(),
                status,
                message,
            }
        })
    }

    /// `message` (from the server) without the token or the basic-auth credentials it may
    /// echo.
    fn scrub(&self, mut message: String) -> String {
        if let Some(t) = self.token.get() {
            message = t.scrub(&message);
        }
        if let Some(a) = &self.auth {
            message = a.scrub(&message);
            if let Some((_, password)) = a.expose().split_once(':') {
                message = Secret::new(password).scrub(&message);
            }
        }
        message
    }

    /// A 2xx answer that did not decode. serde_json quotes a mistyped string value whole, so
    /// a server or proxy echoing the token in a 200 would put it in the message: scrubbed.
    fn undecoded(&self, op: &'static str, url: &str, e: &serde_json::Error) -> BackendError {
        BackendError::Decode {
            what: format!("{op} answer from {url}"),
            message: self.scrub(e.to_string()),
        }
    }

    /// Decodes a 2xx answer's body as it arrives (`http::decode_streamed`).
    async fn decoded<T: Send + 'static>(
        &self,
        op: &'static str,
        url: &str,
        resp: reqwest::Response,
        decode: impl FnOnce(&mut dyn std::io::Read) -> serde_json::Result<T> + Send + 'static,
    ) -> Result<T, BackendError> {
        use crate::http::StreamError;
        crate::http::decode_streamed(resp, self.max_body, decode)
            .await
            .map_err(|e| match e {
                StreamError::Body(e) => self.transport(op, url, e.to_string()),
                StreamError::Decode(e) => self.undecoded(op, url, &e),
            })
    }

    /// GET returning JSON.
    pub async fn get<T: DeserializeOwned>(
        &self,
        op: &'static str,
        url: &str,
        query: &[(&str, &str)],
    ) -> Result<T, BackendError> {
        self.get_with(op, url, query, |body| serde_json::from_slice(body))
            .await
    }

    /// `get`, with the body read by `decode`.
    pub async fn get_with<T>(
        &self,
        op: &'static str,
        url: &str,
        query: &[(&str, &str)],
        decode: impl FnOnce(&[u8]) -> serde_json::Result<T>,
    ) -> Result<T, BackendError> {
        let make = || self.request(&reqwest::Method::GET, url).query(query);
        let body = self.send(op, url, make).await?;
        decode(&body).map_err(|e| self.undecoded(op, url, &e))
    }

    /// `get_with` for the largest answers (listings): the body is decoded as it arrives,
    /// never held whole, by `decode` on a blocking thread (`http::decode_streamed`).
    pub async fn get_streamed<T, F>(
        &self,
        op: &'static str,
        url: &str,
        query: &[(&str, &str)],
        decode: F,
    ) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: Fn(&mut dyn std::io::Read) -> serde_json::Result<T> + Clone + Send + 'static,
    {
        self.token_header()?;
        let attempt = || {
            let (req, decode) = (
                self.request(&reqwest::Method::GET, url).query(query),
                decode.clone(),
            );
            async move {
                let resp = self.respond(op, url, req).await?;
                self.decoded(op, url, resp, decode).await
            }
        };
        crate::http::with_retry(attempt, |e| self.retryable(e)).await
    }

    /// One GET of a blocking query (`query` holds `index` and `wait`), not retried: the caller
    /// paces its loop. Returns the JSON answer and its `X-Consul-Index`. `wait` is added to the
    /// request's timeout with the up-to-`wait/16` the server adds to spread wake-ups
    /// (`RPCQueryTimeout` in agent/consul/rpc.go, `structs.JitterFraction` = 16;
    /// website/content/api-docs/features/blocking.mdx). An answer without a readable index is
    /// an error, as in Consul's own client (`parseQueryMeta` in api/api.go). `decode` reads
    /// the body (a watch folds it as it decodes, never holding the list).
    pub async fn get_indexed<T: Send + 'static>(
        &self,
        op: &'static str,
        url: &str,
        query: &[(&str, &str)],
        timeout: std::time::Duration,
        wait: std::time::Duration,
        decode: impl FnOnce(&mut dyn std::io::Read) -> serde_json::Result<T> + Send + 'static,
    ) -> Result<(T, u64), BackendError> {
        self.token_header()?;
        let req = self
            .request(&reqwest::Method::GET, url)
            .query(query)
            .timeout(timeout + wait + wait / 16);
        let resp = self.respond(op, url, req).await?;
        let index = resp
            .headers()
            .get("x-consul-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| BackendError::Decode {
                what: format!("{op} answer from {url}"),
                message: "no readable X-Consul-Index header".into(),
            })?;
        let value = self.decoded(op, url, resp, decode).await?;
        Ok((value, index))
    }

    /// PUT with an optional JSON body; the answer's body is ignored (empty or `true`).
    pub async fn put<B: Serialize + ?Sized>(
        &self,
        op: &'static str,
        url: &str,
        query: &[(&str, &str)],
        body: Option<&B>,
    ) -> Result<(), BackendError> {
        self.send(op, url, || self.put_request(url, query, body))
            .await
            .map(drop)
    }

    /// PUT with an optional JSON body, returning the JSON answer (`true`/`false`, an object).
    pub async fn put_for<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        op: &'static str,
        url: &str,
        query: &[(&str, &str)],
        body: Option<&B>,
    ) -> Result<T, BackendError> {
        let body = self
            .send(op, url, || self.put_request(url, query, body))
            .await?;
        serde_json::from_slice(&body).map_err(|e| self.undecoded(op, url, &e))
    }

    fn put_request<B: Serialize + ?Sized>(
        &self,
        url: &str,
        query: &[(&str, &str)],
        body: Option<&B>,
    ) -> reqwest::RequestBuilder {
        let req = self.request(&reqwest::Method::PUT, url).query(query);
        match body {
            Some(b) => req.json(b),
            None => req,
        }
    }

    /// `?dc=` for catalog calls, when a datacenter is configured.
    pub fn dc(&self) -> Vec<(&str, &str)> {
        self.datacenter
            .as_deref()
            .map(|d| vec![("dc", d)])
            .unwrap_or_default()
    }
}

/// Whether an error is an HTTP 404 (unknown service or check).
pub fn is_not_found(e: &BackendError) -> bool {
    matches!(e, BackendError::Http { status: 404, .. })
}

/// Whether a TTL check update failed because the agent does not know the check: current
/// agents answer 404 (`agent/acl.go` `vetCheckUpdateWithAuthorizer`: "Unknown check ID"),
/// older ones — and any agent when the id names a check that is not a TTL check — 500 with
/// `CheckID "…" does not have associated TTL` (`agent/agent.go` `updateTTLCheck` returns a
/// plain error, which the HTTP layer answers with 500). Either way the check must be
/// registered again; retrying the update cannot help.
pub fn is_unknown_check(e: &BackendError) -> bool {
    match e {
        BackendError::Http {
            status: 500,
            message,
            ..
        } => message.contains("does not have associated TTL"),
        other => is_not_found(other),
    }
}

/// The address Consul's clients use for a Unix socket: `unix://<path>` (api/api.go
/// `NewClient`: the `unix` scheme dials `<path>` and speaks HTTP over it). The path, or
/// `None` for an HTTP(S) URL.
pub fn unix_socket(url: &str) -> Option<&std::path::Path> {
    url.strip_prefix("unix://").map(std::path::Path::new)
}

/// The base URL requests name when they go through a Unix socket: the socket carries them,
/// the host is only the `Host` header.
pub const UNIX_BASE: &str = "http://localhost";

/// The HTTP client and base URL for a Consul address (`http(s)://…` or `unix://<path>`).
pub fn client(
    url: &str,
    timeout: std::time::Duration,
    tls: &crate::config::ClientTls,
) -> Result<(reqwest::Client, String), crate::http::HttpSetupError> {
    let socket = unix_socket(url);
    let http = crate::http::client_on(timeout, tls, socket)?;
    let base = match socket {
        Some(_) => UNIX_BASE.to_string(),
        None => url.trim_end_matches('/').to_string(),
    };
    Ok((http, base))
}

/// `base` plus escaped path segments (a base may carry a reverse-proxy path prefix).
pub fn url(base: &str, segments: &[&str]) -> String {
    match reqwest::Url::parse(base) {
        Ok(mut u) => {
            if let Ok(mut path) = u.path_segments_mut() {
                path.pop_if_empty().extend(segments);
            }
            u.to_string()
        }
        // Validated at load; keep a readable URL for the error message anyway.
        Err(_) => format!("{base}/{}", segments.join("/")),
    }
}

/// Go duration text for a std duration (`90s`, `1500ms`), as Consul parses them.
pub fn go_duration(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(std::time::Duration::from_secs(90)), "90s");
        assert_eq!(
            go_duration(std::time::Duration::from_millis(1500)),
            "1500ms"
        );
    }
}
