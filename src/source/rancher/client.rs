//! The Rancher API over HTTP: authenticated GETs, paginated collections, the projects in scope.

use super::Inner;
use super::page;
use super::view::Named;
use crate::error::SourceError;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::HashSet;

/// Page size asked for: the largest Rancher 1.6 serves (3000), so most projects fit in one
/// page. cattle pages by offset (`processPaginationResult`: `next` = marker `m<offset+limit>`),
/// so fewer pages also means fewer chances for a row removed mid-listing to shift another out.
const PAGE_LIMIT: u32 = 3000;
/// Upper bound on pages of one listing, against servers that keep sending new `next` links.
const MAX_PAGES: usize = 10_000;

/// Whether a failed GET is worth another attempt.
fn retryable(e: &SourceError) -> bool {
    match e {
        SourceError::Transport { .. } => true,
        SourceError::Http { status, .. } => crate::http::transient_status(*status),
        _ => false,
    }
}

impl Inner {
    /// GET with retries of transient failures (see `http::with_retry`).
    async fn get<T: DeserializeOwned>(&self, url: &str) -> Result<T, SourceError> {
        crate::http::with_retry(|| self.get_once(url), retryable).await
    }

    async fn get_once<T: DeserializeOwned>(&self, url: &str) -> Result<T, SourceError> {
        let body = self.body(url).await?;
        serde_json::from_slice(&body).map_err(|e| self.undecoded(url, &e))
    }

    /// The body of a 200 answer to a GET of `url`, at most `max_response_size` bytes.
    async fn body(&self, url: &str) -> Result<Vec<u8>, SourceError> {
        let mut resp = self.respond(url).await?;
        crate::http::read_body(&mut resp, self.max_body, false)
            .await
            .map_err(|e| SourceError::Transport {
                url: url.to_string(),
                message: e.to_string(),
            })
    }

    /// A body that did not decode. serde_json quotes a mistyped string value whole, so a
    /// server echoing the credentials in a 200 would put them in the message: scrubbed.
    fn undecoded(&self, url: &str, e: &serde_json::Error) -> SourceError {
        SourceError::Decode {
            what: url.to_string(),
            message: self.scrub(&e.to_string()),
        }
    }

    /// One authenticated GET: the answer, its body unread, when it is a 200, else the error.
    async fn respond(&self, url: &str) -> Result<reqwest::Response, SourceError> {
        let mut req = self.client.get(url).header("Accept", "application/json");
        if !self.access_key.is_empty() {
            let secret = self.secret.get().unwrap_or_default();
            req = req.basic_auth(&self.access_key, Some(secret.expose()));
        }
        let transport = |e: reqwest::Error| SourceError::Transport {
            url: url.to_string(),
            message: crate::http::describe(&e),
        };
        let mut resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            return Err(SourceError::Unauthorized {
                url: url.to_string(),
                status,
                access_key: self.access_key.clone(),
            });
        }
        if status == 200 {
            return Ok(resp);
        }
        let body = crate::http::read_body(&mut resp, self.max_body, false)
            .await
            .map_err(|e| SourceError::Transport {
                url: url.to_string(),
                message: e.to_string(),
            })?;
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| {
                let code = v.get("code")?.as_str()?.to_string();
                let msg = v.get("message").and_then(Value::as_str).unwrap_or("");
                Some(format!("{code} {msg}").trim().to_string())
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
        Err(SourceError::Http {
            url: url.to_string(),
            status,
            message: self.scrub(&message),
        })
    }

    /// One page of a collection, with retries of transient failures: its items decoded and
    /// trimmed one by one straight from the body (`page::PageSeed`), never copied out as raw
    /// text first, so a page costs its body and what its items keep.
    async fn page<T, F>(&self, url: &str, trim: &F) -> Result<page::Page<T>, SourceError>
    where
        T: DeserializeOwned,
        F: Fn(&mut T),
    {
        let once = || async {
            let body = self.body(url).await?;
            use serde::de::DeserializeSeed;
            let mut d = serde_json::Deserializer::from_slice(&body);
            page::PageSeed::new(trim)
                .deserialize(&mut d)
                .and_then(|page| d.end().map(|()| page))
                .map_err(|e| self.undecoded(url, &e))
        };
        crate::http::with_retry(once, retryable).await
    }

    /// Every item of a collection, following `pagination.next`; ids seen twice are dropped
    /// and a repeated `next` link ends the listing.
    /// Items are decoded page by page, straight from the page's body, and `trim` drops at once
    /// what the caller never reads (Rancher's own labels are most of a service), so the
    /// listing is never held whole. An item that does not decode comes back as (its
    /// name or id, the error).
    pub(super) async fn list<T: DeserializeOwned>(
        &self,
        first: String,
        trim: impl Fn(&mut T),
    ) -> Result<Vec<Result<T, (String, String)>>, SourceError> {
        let mut out = Vec::new();
        let mut ids = HashSet::new();
        let mut seen = HashSet::new();
        let mut next = Some(first);
        while let Some(url) = next.take() {
            // A listing that ends early is unknown, never complete: each of these fails it.
            let incomplete = |why: String| SourceError::Decode {
                what: url.clone(),
                message: format!("{why}; the listing is incomplete"),
            };
            if !seen.insert(url.clone()) {
                return Err(incomplete("pagination repeats a page".into()));
            }
            if seen.len() > MAX_PAGES {
                return Err(incomplete(format!("more than {MAX_PAGES} pages")));
            }
            let page = self.page(&url, &trim).await?;
            let data = page.data.ok_or_else(|| SourceError::Decode {
                what: url.clone(),
                message: "collection has no `data` array".into(),
            })?;
            for (id, item) in data {
                if id.is_none_or(|id| ids.insert(id)) {
                    // The item's name and the decoder's message are shown as a skip reason.
                    out.push(item.map_err(|(label, m)| (self.scrub(&label), self.scrub(&m))));
                }
            }
            let pagination = page.pagination;
            next = pagination
                .as_ref()
                .and_then(|p| p.next.clone())
                .filter(|n| !n.is_empty());
            if next.is_none() && pagination.is_some_and(|p| p.partial) {
                return Err(incomplete(
                    "the server says the page is partial but gives no next link".into(),
                ));
            }
            if let Some(n) = &next {
                self.same_origin(n)
                    .map_err(|why| incomplete(format!("pagination.next {why}")))?;
            }
        }
        Ok(out)
    }

    /// A server's text without the secret key or the Basic credentials it may echo.
    pub(super) fn scrub(&self, text: &str) -> String {
        use base64::Engine;
        let Some(secret) = self.secret.get() else {
            return text.to_string();
        };
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.access_key,
            secret.expose()
        ));
        secret.scrub(text).replace(&basic, "***")
    }

    /// Links from answers are followed only on the configured scheme, host and port: anywhere
    /// else would get the access and secret keys, and its data would be trusted.
    pub(super) fn same_origin(&self, link: &str) -> Result<(), String> {
        let origin = |u: &str| {
            reqwest::Url::parse(u).ok().map(|u| {
                (
                    u.scheme().to_string(),
                    u.host_str().map(str::to_string),
                    u.port_or_known_default(),
                )
            })
        };
        match (origin(link), origin(&self.url)) {
            (Some(l), Some(c)) if l == c => Ok(()),
            _ => Err(format!(
                "points outside the configured server ({}): not followed",
                crate::output::clean(&link.chars().take(200).collect::<String>())
            )),
        }
    }

    pub(super) fn collection_url(&self, project: &str, collection: &str) -> String {
        format!(
            "{}/{collection}?limit={PAGE_LIMIT}",
            project.trim_end_matches('/')
        )
    }

    /// (project URL, environment name) of every project in scope.
    pub(super) async fn projects(&self) -> Result<Vec<(String, String)>, SourceError> {
        if self.project_url {
            let p: Named = self.get(&self.url).await?;
            return Ok(vec![(self.url.clone(), p.name.unwrap_or(p.id))]);
        }
        let items = self
            .list::<Named>(self.collection_url(&self.url, "projects"), |_| {})
            .await?;
        let mut out = Vec::new();
        for item in items {
            let p = item.map_err(|(label, e)| SourceError::Decode {
                what: format!("{}/projects ({label})", self.url),
                message: e,
            })?;
            let url = p
                .links
                .get("self")
                .cloned()
                .flatten()
                .unwrap_or_else(|| format!("{}/projects/{}", self.url, p.id));
            self.same_origin(&url).map_err(|why| SourceError::Decode {
                what: format!("{}/projects ({})", self.url, p.id),
                message: format!("links.self {why}"),
            })?;
            out.push((url, p.name.unwrap_or(p.id)));
        }
        Ok(out)
    }
}

impl Inner {
    /// `Authorization: Basic …` for the configured keys (`None` without keys), marked
    /// sensitive so no debug output shows it.
    pub(super) fn basic_auth(&self) -> Option<reqwest::header::HeaderValue> {
        use base64::Engine;
        if self.access_key.is_empty() {
            return None;
        }
        let secret = self.secret.get().unwrap_or_default();
        let token = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.access_key,
            secret.expose()
        ));
        let mut v = reqwest::header::HeaderValue::from_str(&format!("Basic {token}")).ok()?;
        v.set_sensitive(true);
        Some(v)
    }
}
