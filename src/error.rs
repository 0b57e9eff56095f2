//! Typed errors that cross module boundaries, and the skip record of one endpoint.

use std::path::PathBuf;
use std::sync::Arc;

/// A source could not list its services; the round deregisters nothing it feeds.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// The server refused the credentials (401/403). Never names the secret.
    #[error("{url}: credentials rejected ({status}) for access key {access_key:?}")]
    Unauthorized {
        /// The URL requested.
        url: String,
        /// HTTP status.
        status: u16,
        /// The access key used (not secret).
        access_key: String,
    },
    /// Any other non-success HTTP status.
    #[error("{url}: HTTP {status}: {message}")]
    Http {
        /// The URL requested.
        url: String,
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// Connection refused, reset, timed out.
    #[error("{url}: {message}")]
    Transport {
        /// The URL requested.
        url: String,
        /// What failed.
        message: String,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause (shared, so reports can be cloned).
        source: Arc<std::io::Error>,
    },
    /// Content that does not have the expected shape.
    #[error("cannot parse {what}: {message}")]
    Decode {
        /// What was being decoded (a file, a URL).
        what: String,
        /// The decoder's message.
        message: String,
    },
}

/// A backend could not list or write.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// Local I/O failed (the Traefik file).
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause (shared, so reports can be cloned).
        source: Arc<std::io::Error>,
    },
    /// The registry refused the ACL token (HTTP 403).
    #[error("{backend}: ACL token rejected on {op} {url}: {message}")]
    Acl {
        /// The backend component.
        backend: String,
        /// What was being done (`register`, `list services`, …).
        op: &'static str,
        /// The URL requested (never carries the token).
        url: String,
        /// The server's text.
        message: String,
    },
    /// Any other non-success HTTP status; `message` is the server's text body.
    #[error("{backend}: {op} {url}: HTTP {status}: {message}")]
    Http {
        /// The backend component.
        backend: String,
        /// What was being done.
        op: &'static str,
        /// The URL requested.
        url: String,
        /// HTTP status.
        status: u16,
        /// The server's text.
        message: String,
    },
    /// Connection refused, reset, timed out; retried next round.
    #[error("{backend}: {op} {url}: {message}")]
    Transport {
        /// The backend component.
        backend: String,
        /// What was being done.
        op: &'static str,
        /// The URL requested.
        url: String,
        /// What failed.
        message: String,
    },
    /// What the backend holds does not have the expected shape.
    #[error("cannot parse {what}: {message}")]
    Decode {
        /// What was being decoded.
        what: String,
        /// The decoder's message.
        message: String,
    },
    /// What rancon would write cannot be encoded.
    #[error("cannot encode {what}: {message}")]
    Encode {
        /// What was being encoded.
        what: String,
        /// The encoder's message.
        message: String,
    },
    /// A guarded write the registry refused because the key is no longer what the listing
    /// saw (someone else wrote it since): not written, retried next round.
    #[error("{backend}: {op} {key}: not written: {message}")]
    Refused {
        /// The backend component.
        backend: String,
        /// What was being done.
        op: &'static str,
        /// The key or URL.
        key: String,
        /// Who holds it now, as far as known.
        message: String,
    },
    /// A write not tried because listing its server failed this round.
    #[error("not attempted: listing this agent failed ({cause})")]
    NotAttempted {
        /// The listing error.
        cause: Box<BackendError>,
    },
}

/// A component could not be built from its (validated) configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A template that does not compile.
    #[error("{what} {text:?}: {source}")]
    Template {
        /// Which template (`id`, `tag`, `default_rule`, …).
        what: &'static str,
        /// Its text.
        text: String,
        /// The parser's message.
        source: crate::template::TemplateError,
    },
    /// The HTTP client (TLS files, settings).
    #[error(transparent)]
    Http(#[from] crate::http::HttpSetupError),
    /// Anything else the component refuses (a bad glob).
    #[error("{0}")]
    Invalid(String),
}

impl BuildError {
    /// Compiles a template, naming it on failure.
    pub fn template(what: &'static str, text: &str) -> Result<crate::template::Template, Self> {
        crate::template::Template::parse(text).map_err(|source| BuildError::Template {
            what,
            text: text.to_string(),
            source,
        })
    }
}

/// Why an endpoint was skipped, as counted in metrics (`reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipKind {
    /// A template or label value that does not render.
    Template,
    /// A port that is not 1–65535.
    Port,
    /// A label with a bad value (a check duration).
    Label,
    /// An item of unexpected shape.
    Shape,
    /// Beyond a registry's limits (Consul meta).
    Limit,
    /// The id or key is held by another owner or by nobody: rancon does not write over it.
    Conflict,
    /// An address that cannot be registered (unspecified, or not an IP or DNS name).
    Address,
}

impl SkipKind {
    /// Every kind, so each `reason` series exists (at 0) before the first skip.
    pub const ALL: [SkipKind; 7] = [
        SkipKind::Template,
        SkipKind::Port,
        SkipKind::Label,
        SkipKind::Shape,
        SkipKind::Limit,
        SkipKind::Conflict,
        SkipKind::Address,
    ];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipKind::Template => "template",
            SkipKind::Port => "port",
            SkipKind::Label => "label",
            SkipKind::Shape => "shape",
            SkipKind::Limit => "limit",
            SkipKind::Conflict => "conflict",
            SkipKind::Address => "address",
        }
    }
}

/// An endpoint that cannot be registered; only that endpoint is skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("skipping {endpoint}: {reason}")]
pub struct Skip {
    /// Which endpoint (`source/service@host:port`).
    pub endpoint: String,
    /// A short class for metrics.
    pub kind: SkipKind,
    /// Why.
    pub reason: String,
}

/// Serializes an error as its message, for JSON reports.
pub fn as_text<S: serde::Serializer>(e: &impl std::fmt::Display, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&e.to_string())
}

/// Serializes an optional error as its message or `null`.
pub fn opt_as_text<S: serde::Serializer>(
    e: &Option<impl std::fmt::Display>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match e {
        Some(e) => s.serialize_str(&e.to_string()),
        None => s.serialize_none(),
    }
}

/// Messages joined with `; `.
pub fn joined<E: std::fmt::Display>(errors: &[E]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
