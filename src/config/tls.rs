//! TLS settings shared by every HTTPS client (Rancher, Consul, etcd), and their checks.

use super::Collector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// TLS settings of an HTTPS client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ClientTls {
    /// PEM file with the CA certificate(s) to trust instead of the bundled web roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Directory of PEM CA certificates (every file below it; each must hold one) to trust
    /// instead of the bundled web roots. `ca_file` wins when both are set, as in Consul's
    /// clients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_path: Option<PathBuf>,
    /// PEM client certificate (chain) presented to servers that require mTLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Name to verify the server certificate against instead of the URL's host (e.g. the
    /// `server.dc1.consul` name Consul's certificates carry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Skip certificate verification (self-signed labs only).
    pub insecure: bool,
}

impl ClientTls {
    /// Files exist, cert and key go together, the server name parses.
    pub fn validate(&self, key: &str, c: &mut Collector<'_>) {
        for (field, file) in [
            ("ca_file", &self.ca_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
        ] {
            if let Some(f) = file {
                c.file(format!("{key}.{field}"), f);
            }
        }
        if let Some(dir) = &self.ca_path
            && !dir.is_dir()
        {
            c.add(
                format!("{key}.ca_path"),
                format!("{} is not a directory", dir.display()),
            );
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            c.add(
                format!("{key}.cert_file"),
                "cert_file and key_file go together",
            );
        }
        if let Some(n) = &self.server_name
            && rustls_pki_types::ServerName::try_from(n.as_str()).is_err()
        {
            c.add(
                format!("{key}.server_name"),
                format!("{n:?} is not a DNS name or IP address"),
            );
        }
    }
}
