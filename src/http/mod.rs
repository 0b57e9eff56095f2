//! The one place that builds HTTP clients: timeouts, TLS (rustls + ring), user agent.

mod stream;

pub use stream::{StreamError, decode_streamed};

use crate::config::ClientTls;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A client could not be set up (bad CA file, TLS setup).
#[derive(Debug, thiserror::Error)]
pub enum HttpSetupError {
    /// The CA file could not be read or holds no certificate.
    #[error("CA file {}: {message}", path.display())]
    Ca {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A client certificate or key file could not be read.
    #[error("{}: {message}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls or reqwest refused the settings.
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// Builds a client with keep-alive, the given per-request timeout and TLS settings.
pub fn client(timeout: Duration, tls: &ClientTls) -> Result<reqwest::Client, HttpSetupError> {
    client_on(timeout, tls, None)
}

/// `client`, connecting every request to the Unix socket `unix_socket` when set (the URL's
/// scheme still picks HTTP or HTTPS; its host only names the server).
pub fn client_on(
    timeout: Duration,
    tls: &ClientTls,
    unix_socket: Option<&Path>,
) -> Result<reqwest::Client, HttpSetupError> {
    let mut builder = reqwest::Client::builder();
    if let Some(path) = unix_socket {
        builder = builder.unix_socket(path);
    }
    builder
        .tls_backend_preconfigured(tls_config(tls)?)
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .pool_max_idle_per_host(64)
        // A 3xx is an answer, never followed: reqwest strips only `Authorization` on a
        // cross-host redirect, so `X-Consul-Token` (and a PUT's body) would go to whatever
        // host a hostile or misconfigured server names.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(USER_AGENT)
        .build()
        .map_err(|e| HttpSetupError::Tls(e.to_string()))
}

/// What rancon calls itself in requests.
pub const USER_AGENT: &str = concat!("rancon/", env!("CARGO_PKG_VERSION"));

/// The rustls settings of `tls` (CA, server name, mTLS, insecure): the one TLS setup of every
/// client, HTTP or WebSocket.
pub fn tls_config(tls: &ClientTls) -> Result<rustls::ClientConfig, HttpSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpSetupError::Tls(e.to_string()))?;
    let verifier: Arc<dyn ServerCertVerifier> = if tls.insecure {
        Arc::new(NoVerify(provider.clone()))
    } else {
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots(tls)?),
            provider,
        )
        .build()
        .map_err(|e| HttpSetupError::Tls(e.to_string()))?;
        match &tls.server_name {
            None => webpki,
            Some(n) => Arc::new(NamedVerify {
                inner: webpki,
                name: ServerName::try_from(n.clone())
                    .map_err(|e| HttpSetupError::Tls(format!("server_name {n:?}: {e}")))?,
            }),
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let pem_err = |path: &PathBuf, message: String| HttpSetupError::Pem {
                path: path.clone(),
                message,
            };
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| pem_err(cert, e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| pem_err(cert, e.to_string()))?;
            if chain.is_empty() {
                return Err(pem_err(cert, "no PEM certificate in it".into()));
            }
            let key_der =
                PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, e.to_string()))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| HttpSetupError::Tls(e.to_string()))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(config)
}

/// The retry policy for transient failures (connection errors, timeouts, 5xx, 429) within a
/// round: two more attempts, 100 ms then ~200 ms apart with jitter; after that the failure is
/// left for the next round.
pub fn retry_policy() -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(2)
        .with_jitter()
}

/// Runs `attempt`, retrying the failures `transient` accepts under `retry_policy`.
pub async fn with_retry<T, E, F, Fut>(attempt: F, transient: impl Fn(&E) -> bool) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    use backon::Retryable;
    attempt
        .retry(retry_policy())
        .when(transient)
        .notify(|e, after| tracing::debug!(error = %e, ?after, "retrying"))
        .await
}

/// A response body that could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The connection failed mid-body.
    #[error("{}", describe(.0))]
    Transport(#[from] reqwest::Error),
    /// The body stopped arriving (connection lost, timed out) while it was being decoded.
    #[error("{0}")]
    Broken(String),
    /// Longer than allowed: an endless or hostile answer must not take all the memory.
    #[error("response body larger than {limit} bytes (max_response_size)")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
}

/// Reads a response body of at most `limit` bytes into one buffer (sized by Content-Length,
/// so a 4 MiB listing is not held twice). With `first_line`, stops after the first `\n` (a
/// streaming answer's first message).
pub async fn read_body(
    resp: &mut reqwest::Response,
    limit: u64,
    first_line: bool,
) -> Result<Vec<u8>, BodyError> {
    let announced = resp.content_length().unwrap_or(0);
    if announced > limit {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = Vec::with_capacity(announced as usize);
    while let Some(chunk) = resp.chunk().await? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
        if first_line && chunk.contains(&b'\n') {
            break;
        }
    }
    Ok(body)
}

/// Whether an HTTP status is worth retrying.
pub fn transient_status(status: u16) -> bool {
    status >= 500 || status == 429
}

/// A transport error with its causes (`connection refused`), without the URL reqwest adds.
pub fn describe(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() {
        "timed out".to_string()
    } else {
        e.to_string()
    };
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

fn roots(tls: &ClientTls) -> Result<rustls::RootCertStore, HttpSetupError> {
    let mut store = rustls::RootCertStore::empty();
    // `ca_file` wins over `ca_path`, as in Consul's clients (go-rootcerts `LoadCACerts`).
    match (&tls.ca_file, &tls.ca_path) {
        (Some(path), _) => add_pem(&mut store, path)?,
        (None, Some(dir)) => {
            let mut files = Vec::new();
            walk(dir, &mut files)?;
            for f in files {
                add_pem(&mut store, &f)?;
            }
        }
        (None, None) => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(store)
}

/// Adds the certificates of one PEM file; a file without any is an error.
fn add_pem(store: &mut rustls::RootCertStore, path: &Path) -> Result<(), HttpSetupError> {
    let err = |message: String| HttpSetupError::Ca {
        path: path.to_path_buf(),
        message,
    };
    let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in it".into()));
    }
    for c in certs {
        store.add(c).map_err(|e| err(e.to_string()))?;
    }
    Ok(())
}

/// Every file below `dir`, sorted, descending into directories but not into symbolic links
/// to them: go-rootcerts `LoadCAPath` walks the same way (`filepath.Walk`) and, as here, any
/// file that holds no PEM certificate fails the whole load.
fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), HttpSetupError> {
    let err = |e: std::io::Error| HttpSetupError::Ca {
        path: dir.to_path_buf(),
        message: e.to_string(),
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(err)?
        .collect::<Result<_, _>>()
        .map_err(err)?;
    entries.sort_by_key(|e| e.path());
    for e in entries {
        if e.file_type().map_err(err)?.is_dir() {
            walk(&e.path(), files)?;
        } else {
            files.push(e.path());
        }
    }
    Ok(())
}

/// Accepts any certificate (`insecure = true`), still checking handshake signatures.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Verifies the server certificate against a configured name instead of the URL's host.
#[derive(Debug)]
struct NamedVerify {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for NamedVerify {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server on 127.0.0.1 that redirects every request to `to`.
    async fn redirector(to: String) -> std::net::SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n"
                );
                let _ = c.write_all(answer.as_bytes()).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_redirect_to_another_host_is_not_followed_and_the_token_stays_home() {
        // The other host (127.0.0.2) records whatever reaches it.
        let other = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
        let other_addr = other.local_addr().unwrap();
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = other.accept().await {
                let mut buf = vec![0u8; 4096];
                let n = c.read(&mut buf).await.unwrap_or(0);
                let _ = seen_tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
                let _ = c
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]")
                    .await;
            }
        });
        let home = redirector(format!("http://{other_addr}/v1/agent/services")).await;
        let client = super::client(std::time::Duration::from_secs(5), &Default::default()).unwrap();
        let resp = client
            .put(format!("http://{home}/v1/agent/service/register"))
            .header("X-Consul-Token", "s3cretTOKEN")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 307, "the 3xx is the answer");
        assert!(
            seen.try_recv().is_err(),
            "nothing may reach the host a redirect names"
        );
    }
}
