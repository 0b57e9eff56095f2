//! Typed errors the engine branches on.

use std::path::PathBuf;

/// A source could not list its services; the round deregisters nothing it feeds.
#[derive(Debug, thiserror::Error)]
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
        /// The cause.
        source: std::io::Error,
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
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Local I/O failed (the Traefik file).
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
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
}

/// An endpoint that cannot be registered; only that endpoint is skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("skipping {endpoint}: {reason}")]
pub struct Skip {
    /// Which endpoint (`source/service@host:port`).
    pub endpoint: String,
    /// A short class for metrics: `template`, `port`, `label`, `shape`, `limit`.
    pub kind: &'static str,
    /// Why.
    pub reason: String,
}
