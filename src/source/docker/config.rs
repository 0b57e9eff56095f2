//! `type = "docker"` configuration, its checks and the docker CLI's variables.

use crate::config::{Collector, Common, Component};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// The Engine's socket when neither the config nor `DOCKER_HOST` names one (the CLI's default).
pub const DEFAULT_URL: &str = "unix:///var/run/docker.sock";

/// Which address of a container's port to register.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndpointKind {
    /// Each published binding: its host address (or `host_address` for `0.0.0.0` / `::`) and
    /// host port, as registrator does by default.
    #[default]
    Published,
    /// The container's IP on `network` and the port it exposes, as registrator's `-internal`.
    Internal,
}

/// A naming convention of another tool, read from containers on top of rancon's labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Convention {
    /// gliderlabs/registrator's `SERVICE_*` variables and labels: every container with a
    /// port is registered unless `SERVICE_IGNORE` is set, under registrator's names.
    Registrator,
}

/// `type = "docker"`: the running containers of one Docker Engine (or Podman's
/// Docker-compatible API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DockerSourceConfig {
    /// The Engine API: `unix:///var/run/docker.sock` or `tcp://host:2376`. Env fallback:
    /// `DOCKER_HOST`; empty means `unix:///var/run/docker.sock`, as for the docker CLI.
    #[serde(default)]
    pub url: String,
    /// Verify the daemon's certificate and present ours (`tcp://` only), with `ca.pem`,
    /// `cert.pem` and `key.pem` from `cert_path`. Env fallback: `DOCKER_TLS_VERIFY` (any
    /// non-empty value turns it on, as for the docker CLI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_verify: Option<bool>,
    /// Directory holding `ca.pem`, `cert.pem` and `key.pem`. Env fallback: `DOCKER_CERT_PATH`;
    /// default `~/.docker`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_path: Option<PathBuf>,
    /// Timeout of each request (the event stream is not cut by it).
    #[serde(default = "crate::config::default_timeout", with = "humantime_serde")]
    #[schemars(with = "crate::config::schema::HumanDuration")]
    pub timeout: Duration,
    /// `published` (host address and host port of each published binding) or `internal`
    /// (container IP on `network` and the exposed port).
    #[serde(default)]
    pub endpoints: EndpointKind,
    /// The address registered for ports published on every interface (`0.0.0.0`, and `::`
    /// unless `host_address_v6` is set): this host's address as clients reach it
    /// (registrator's `-ip`). Required with `endpoints = "published"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_address: Option<String>,
    /// The address registered for ports published on `::`, so a dual-stack host gets an
    /// IPv4 and an IPv6 registration; unset, `::` bindings use `host_address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_address_v6: Option<String>,
    /// With `endpoints = "internal"`: the network whose container IP is registered. Unset, a
    /// container's only network is used; one on several networks is skipped, naming them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Other tools' conventions to honour: `["registrator"]` reads `SERVICE_*` variables and
    /// labels as gliderlabs/registrator did.
    #[serde(default)]
    pub conventions: Vec<Convention>,
    /// Follow the Engine's event stream, so a start, stop or health change reaches the
    /// registry at once instead of at the next interval.
    #[serde(default = "yes")]
    pub watch: bool,
    /// Overrides the global `label_prefix` for this source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_prefix: Option<String>,
    /// Overrides the global `name` template for this source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

fn yes() -> bool {
    true
}

impl DockerSourceConfig {
    /// The URL in use: the configured one or the default socket.
    pub fn effective_url(&self) -> &str {
        if self.url.is_empty() {
            DEFAULT_URL
        } else {
            &self.url
        }
    }

    /// The TLS files (`ca.pem`, `cert.pem`, `key.pem`) when TLS is on.
    pub fn tls_files(&self) -> Option<[PathBuf; 3]> {
        if self.tls_verify != Some(true) {
            return None;
        }
        let dir = self.cert_path.clone().unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default()
                .join(".docker")
        });
        Some(["ca.pem", "cert.pem", "key.pem"].map(|f| dir.join(f)))
    }
}

/// The parts of a `unix://` or `tcp://` URL; anything else says why not.
pub(super) enum Target {
    /// A socket path.
    Unix(String),
    /// `host:port` (the port filled in as the CLI does: 2375, or 2376 with TLS).
    Tcp(String),
}

impl Target {
    pub fn parse(url: &str, tls: bool) -> Result<Self, String> {
        if let Some(path) = url.strip_prefix("unix://") {
            if path.is_empty() || !path.starts_with('/') {
                return Err(format!("{url:?}: a unix URL names an absolute socket path"));
            }
            return Ok(Target::Unix(path.to_string()));
        }
        let Some(rest) = url.strip_prefix("tcp://") else {
            return Err(format!(
                "{:?} must be unix:///path/to/socket or tcp://host:port (ssh:// and npipe:// are not supported)",
                crate::config::validate::redact_userinfo(url)
            ));
        };
        let authority = rest.trim_end_matches('/');
        if authority.contains(['@', '/', '?', '#']) || authority.is_empty() {
            return Err(format!(
                "{:?}: expected tcp://host:port, without credentials or a path",
                crate::config::validate::redact_userinfo(url)
            ));
        }
        let default_port = if tls { 2376 } else { 2375 };
        let has_port = match authority.rsplit_once(':') {
            // `[::1]:2376` or `host:2376`; a bare IPv6 address in brackets has no port.
            Some((host, port)) => {
                !host.is_empty()
                    && !port.contains(']')
                    && (authority.starts_with('[') || !host.contains(':'))
            }
            None => false,
        };
        if has_port {
            let port = authority.rsplit_once(':').map(|(_, p)| p).unwrap_or("");
            if port.parse::<u16>().ok().filter(|p| *p != 0).is_none() {
                return Err(format!("{url:?}: port {port:?} is not 1–65535"));
            }
            Ok(Target::Tcp(authority.to_string()))
        } else {
            Ok(Target::Tcp(format!("{authority}:{default_port}")))
        }
    }
}

/// Why `host` cannot be registered as an address: it must be an IP address that names one
/// host (not `0.0.0.0` / `::`) or a DNS name.
pub(super) fn bad_address(host: &str) -> Option<&'static str> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return ip
            .is_unspecified()
            .then_some("is unspecified: it names every interface, not this host");
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let name = host.strip_suffix('.').unwrap_or(host);
    (name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok))
        .then_some("is neither an IP address nor a DNS name")
}

impl Component for DockerSourceConfig {
    fn validate(&self, key: &str, _: &Common, c: &mut Collector<'_>) {
        let tls = self.tls_verify == Some(true);
        match Target::parse(self.effective_url(), tls) {
            Err(why) => c.add(format!("{key}.url"), why),
            Ok(Target::Unix(_)) if tls => c.add(
                format!("{key}.tls_verify"),
                "TLS needs a tcp:// url (a unix socket is guarded by its file permissions)",
            ),
            Ok(_) => {}
        }
        if let Some(files) = self.tls_files() {
            let field = if self.cert_path.is_some() {
                "cert_path"
            } else {
                "tls_verify"
            };
            for f in files {
                if !f.is_file() {
                    c.add(
                        format!("{key}.{field}"),
                        format!(
                            "{} does not exist (TLS needs ca.pem, cert.pem and key.pem)",
                            f.display()
                        ),
                    );
                }
            }
        }
        if self.timeout.is_zero() {
            c.add(format!("{key}.timeout"), "must be more than 0s");
        }
        for (field, value) in [
            ("host_address", &self.host_address),
            ("host_address_v6", &self.host_address_v6),
        ] {
            if let Some(v) = value
                && let Some(why) = bad_address(v)
            {
                c.add(format!("{key}.{field}"), format!("{v:?} {why}"));
            }
        }
        if self.endpoints == EndpointKind::Published && self.host_address.is_none() {
            c.add(
                format!("{key}.host_address"),
                "missing: with endpoints = \"published\", ports published on 0.0.0.0 or :: \
                 need this host's address as clients reach it (registrator's -ip)",
            );
        }
        if self.network.as_deref().is_some_and(str::is_empty) {
            c.add(
                format!("{key}.network"),
                "is empty: name a network or leave it unset",
            );
        }
        if let Some(t) = &self.name {
            c.template(format!("{key}.name"), t);
        }
        if let Some(p) = &self.label_prefix {
            c.label_prefix(format!("{key}.label_prefix"), p);
        }
    }

    /// The variables the docker CLI reads.
    fn conventional_env(&mut self, var: &dyn Fn(&str) -> Option<String>) {
        if self.url.is_empty() {
            self.url = var("DOCKER_HOST").unwrap_or_default();
        }
        if self.tls_verify.is_none() && var("DOCKER_TLS_VERIFY").is_some() {
            self.tls_verify = Some(true);
        }
        if self.cert_path.is_none() {
            self.cert_path = var("DOCKER_CERT_PATH").map(PathBuf::from);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(url: &str, tls: bool) -> Result<String, String> {
        match Target::parse(url, tls)? {
            Target::Tcp(a) => Ok(a),
            Target::Unix(p) => Ok(format!("unix {p}")),
        }
    }

    #[test]
    fn urls_as_the_docker_cli_reads_them() {
        assert_eq!(tcp("tcp://h", false).unwrap(), "h:2375");
        assert_eq!(tcp("tcp://h", true).unwrap(), "h:2376");
        assert_eq!(tcp("tcp://h:1234/", true).unwrap(), "h:1234");
        assert_eq!(tcp("tcp://[::1]", false).unwrap(), "[::1]:2375");
        assert_eq!(tcp("tcp://[::1]:9", false).unwrap(), "[::1]:9");
        assert_eq!(
            tcp("unix:///run/d.sock", false).unwrap(),
            "unix /run/d.sock"
        );
        for bad in [
            "ssh://u@h",
            "http://h",
            "tcp://u:p@h:1",
            "tcp://h:0",
            "tcp://h:x",
            "unix://rel",
            "tcp://h/x",
        ] {
            let e = tcp(bad, false).unwrap_err();
            assert!(!e.contains(":p@"), "credentials shown: {e}");
        }
    }

    #[test]
    fn addresses_name_one_host() {
        assert!(bad_address("10.0.0.5").is_none());
        assert!(bad_address("2001:db8::5").is_none());
        assert!(bad_address("host-1.example.org").is_none());
        assert!(bad_address("0.0.0.0").is_some());
        assert!(bad_address("::").is_some());
        assert!(bad_address("a b").is_some());
        assert!(bad_address("h/x").is_some());
        assert!(bad_address("").is_some());
    }
}
