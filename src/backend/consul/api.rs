//! The Consul HTTP calls rancon makes (wire-formats.md section C), with Consul's error
//! conventions: plain-text bodies, 403 for ACL denials, empty-body 200s.

use crate::config::Secret;
use crate::error::BackendError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::sync::RwLock;

/// One HTTP client (keep-alive, TLS) shared by every agent this backend talks to.
pub struct Api {
    pub backend: String,
    pub http: reqwest::Client,
    pub datacenter: Option<String>,
    token: RwLock<Option<Secret>>,
    token_file: Option<PathBuf>,
}

impl Api {
    pub fn new(
        backend: &str,
        http: reqwest::Client,
        datacenter: Option<String>,
        token: Option<Secret>,
        token_file: Option<PathBuf>,
    ) -> Self {
        let api = Self {
            backend: backend.to_string(),
            http,
            datacenter,
            token: RwLock::new(token),
            token_file,
        };
        api.reload_token();
        api
    }

    /// Re-reads `token_file` (once a round), so a rotated token is picked up without a restart.
    /// A file that cannot be read keeps the previous token.
    pub fn reload_token(&self) {
        let Some(path) = &self.token_file else { return };
        match std::fs::read_to_string(path) {
            Ok(t) => {
                let t = t.trim();
                *self.token.write().expect("token lock") = (!t.is_empty()).then(|| Secret::new(t));
            }
            Err(e) => {
                tracing::warn!(backend = %self.backend, file = %path.display(), error = %e, "cannot read token_file; keeping the previous token")
            }
        }
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, url);
        if let Some(t) = self.token.read().expect("token lock").as_ref() {
            req = req.header("X-Consul-Token", t.expose());
        }
        req
    }

    /// Sends (retrying transient failures, see `http::retry_policy`) and maps errors; returns
    /// the body of a 2xx answer.
    async fn send(
        &self,
        op: &'static str,
        url: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, BackendError> {
        use backon::Retryable;
        let attempt = || async {
            // Bodies are buffered JSON, so the request can always be cloned.
            let req = req.try_clone().expect("buffered request body");
            self.send_once(op, url, req).await
        };
        attempt
            .retry(crate::http::retry_policy())
            .when(|e| match e {
                BackendError::Transport { .. } => true,
                BackendError::Http { status, .. } => crate::http::transient_status(*status),
                _ => false,
            })
            .notify(|e, after| tracing::debug!(error = %e, ?after, "retrying"))
            .await
    }

    async fn send_once(
        &self,
        op: &'static str,
        url: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, BackendError> {
        let transport = |e: reqwest::Error| BackendError::Transport {
            backend: self.backend.clone(),
            op,
            url: url.to_string(),
            message: crate::http::describe(&e.without_url()),
        };
        let mut resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        // Read into one buffer sized by Content-Length: a 10,000-service listing is ~4 MiB,
        // and collecting chunks first would hold it twice.
        let cap = resp.content_length().unwrap_or(0).min(64 << 20) as usize;
        let mut body = Vec::with_capacity(cap);
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            body.extend_from_slice(&chunk);
        }
        if (200..300).contains(&status) {
            return Ok(body);
        }
        // Consul answers errors with a plain-text reason.
        let message: String = String::from_utf8_lossy(&body)
            .trim()
            .chars()
            .take(300)
            .collect();
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

    /// GET returning JSON.
    pub async fn get<T: DeserializeOwned>(
        &self,
        op: &'static str,
        url: &str,
        query: &[(&str, &str)],
    ) -> Result<T, BackendError> {
        let req = self.request(reqwest::Method::GET, url).query(query);
        let body = self.send(op, url, req).await?;
        serde_json::from_slice(&body).map_err(|e| BackendError::Decode {
            what: format!("{op} answer from {url}"),
            message: e.to_string(),
        })
    }

    /// PUT with an optional JSON body; the answer's body is ignored (empty or `true`).
    pub async fn put<B: Serialize + ?Sized>(
        &self,
        op: &'static str,
        url: &str,
        query: &[(&str, &str)],
        body: Option<&B>,
    ) -> Result<(), BackendError> {
        let mut req = self.request(reqwest::Method::PUT, url).query(query);
        if let Some(b) = body {
            req = req.json(b);
        }
        self.send(op, url, req).await.map(drop)
    }

    /// PUT with an optional JSON body, returning the JSON answer (`true`/`false`, an object).
    pub async fn put_for<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        op: &'static str,
        url: &str,
        query: &[(&str, &str)],
        body: Option<&B>,
    ) -> Result<T, BackendError> {
        let mut req = self.request(reqwest::Method::PUT, url).query(query);
        if let Some(b) = body {
            req = req.json(b);
        }
        let body = self.send(op, url, req).await?;
        serde_json::from_slice(&body).map_err(|e| BackendError::Decode {
            what: format!("{op} answer from {url}"),
            message: e.to_string(),
        })
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
