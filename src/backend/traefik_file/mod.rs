//! `type = "traefik_file"`: Traefik's file-provider dynamic configuration.
//!
//! The file at `path` belongs to rancon alone (point Traefik's `directory` option at a folder
//! to keep hand-written files beside it): every router and service in it is this owner's.

mod config;

pub use config::TraefikFileConfig;

use super::traefik_route::{Defaults, Protocol, Route, Tls};
use super::{ApplyReport, Backend, Listing, WriteFailure, address_of, port_of};
use crate::error::{BackendError, BuildError, Skip, SkipKind};
use crate::model::{Endpoint, Meta, Private, Registration, RegistrationMap, bracket};
use crate::plan::{Plan, applied, by_name};
use crate::template::Template;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Writes one router and one load-balanced service per registered name: an HTTP router, or
/// a TCP router when the name's endpoints ask for it (`rancon.protocol=tcp`).
pub struct TraefikFile {
    name: String,
    path: PathBuf,
    yaml: bool,
    default_rule: Template,
    default_tcp_rule: Template,
    entry_points: Vec<String>,
    sources: Option<Vec<String>>,
}

// The shapes of Traefik v3's dynamic configuration (pkg/config/dynamic/http_config.go,
// tcp_config.go in traefik/traefik): field names as its `toml`/`yaml` tags spell them.

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct Dynamic {
    #[serde(default)]
    http: Http,
    #[serde(default, skip_serializing_if = "Tcp::is_empty")]
    tcp: Tcp,
}

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct Http {
    #[serde(default)]
    routers: BTreeMap<String, Router>,
    #[serde(default)]
    services: BTreeMap<String, Service>,
}

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct Tcp {
    #[serde(default)]
    routers: BTreeMap<String, TcpRouter>,
    #[serde(default)]
    services: BTreeMap<String, TcpService>,
}

impl Tcp {
    fn is_empty(&self) -> bool {
        self.routers.is_empty() && self.services.is_empty()
    }
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Router {
    rule: String,
    service: String,
    #[serde(rename = "entryPoints", default, skip_serializing_if = "Vec::is_empty")]
    entry_points: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    middlewares: Vec<String>,
    /// `tls: {}` turns TLS on with the default certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls: Option<RouterTls>,
}

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct RouterTls {
    #[serde(
        rename = "certResolver",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    cert_resolver: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct TcpRouter {
    rule: String,
    service: String,
    #[serde(rename = "entryPoints", default, skip_serializing_if = "Vec::is_empty")]
    entry_points: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    middlewares: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls: Option<TcpRouterTls>,
}

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct TcpRouterTls {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    passthrough: bool,
    #[serde(
        rename = "certResolver",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    cert_resolver: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Service {
    #[serde(rename = "loadBalancer")]
    load_balancer: LoadBalancer,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct LoadBalancer {
    servers: Vec<Server>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Server {
    url: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct TcpService {
    #[serde(rename = "loadBalancer")]
    load_balancer: TcpLoadBalancer,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct TcpLoadBalancer {
    servers: Vec<TcpServer>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct TcpServer {
    address: String,
}

impl TraefikFile {
    /// Builds the backend from its config.
    pub fn new(name: &str, cfg: &TraefikFileConfig) -> Result<Self, BuildError> {
        let ext = cfg.path.extension().and_then(|e| e.to_str()).unwrap_or("");
        Ok(Self {
            name: name.to_string(),
            path: cfg.path.clone(),
            yaml: matches!(ext, "yaml" | "yml"),
            default_rule: BuildError::template("default_rule", &cfg.default_rule)?,
            default_tcp_rule: BuildError::template("default_tcp_rule", &cfg.default_tcp_rule)?,
            entry_points: cfg.entry_points.clone(),
            sources: cfg.sources.clone(),
        })
    }

    /// The file's content for `regs`. A name's router comes from its first registration.
    fn encode(&self, regs: &RegistrationMap) -> Result<String, String> {
        let mut dynamic = Dynamic::default();
        for (name, group) in by_name(regs) {
            let route = Route::from_attrs(&group[0].private.attrs);
            let (name, service) = (name.to_string(), name.to_string());
            match route.protocol {
                Protocol::Http => {
                    let servers = group
                        .iter()
                        .map(|r| Server {
                            url: format!(
                                "{}://{}:{}",
                                Route::from_attrs(&r.private.attrs).scheme(),
                                bracket(&r.address),
                                r.port
                            ),
                        })
                        .collect();
                    let tls = route.tls.map(|t| RouterTls {
                        cert_resolver: t.cert_resolver,
                    });
                    dynamic.http.routers.insert(
                        name.clone(),
                        Router {
                            rule: route.rule,
                            service,
                            entry_points: route.entry_points,
                            middlewares: route.middlewares,
                            tls,
                        },
                    );
                    let load_balancer = LoadBalancer { servers };
                    dynamic
                        .http
                        .services
                        .insert(name, Service { load_balancer });
                }
                Protocol::Tcp => {
                    let servers = group
                        .iter()
                        .map(|r| TcpServer {
                            address: format!("{}:{}", bracket(&r.address), r.port),
                        })
                        .collect();
                    let tls = route.tls.map(|t| TcpRouterTls {
                        passthrough: t.passthrough,
                        cert_resolver: t.cert_resolver,
                    });
                    dynamic.tcp.routers.insert(
                        name.clone(),
                        TcpRouter {
                            rule: route.rule,
                            service,
                            entry_points: route.entry_points,
                            middlewares: route.middlewares,
                            tls,
                        },
                    );
                    let load_balancer = TcpLoadBalancer { servers };
                    dynamic
                        .tcp
                        .services
                        .insert(name, TcpService { load_balancer });
                }
            }
        }
        if self.yaml {
            serde_yaml_ng::to_string(&dynamic).map_err(|e| e.to_string())
        } else {
            toml::to_string(&dynamic).map_err(|e| e.to_string())
        }
    }

    fn decode(&self, text: &str) -> Result<RegistrationMap, String> {
        let dynamic: Dynamic = if self.yaml {
            serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?
        } else {
            toml::from_str(text).map_err(|e| e.to_string())?
        };
        let mut out = RegistrationMap::new();
        for (name, svc) in dynamic.http.services {
            let router = dynamic.http.routers.get(&name);
            let route = Route {
                protocol: Protocol::Http,
                https: false,
                rule: router.map(|r| r.rule.clone()).unwrap_or_default(),
                entry_points: router.map(|r| r.entry_points.clone()).unwrap_or_default(),
                middlewares: router.map(|r| r.middlewares.clone()).unwrap_or_default(),
                tls: router.and_then(|r| r.tls.as_ref()).map(|t| Tls {
                    cert_resolver: t.cert_resolver.clone(),
                    passthrough: false,
                }),
            };
            for server in svc.load_balancer.servers {
                let (https, address, port) = split_url(&server.url)
                    .ok_or_else(|| format!("server url {:?} of service {name:?}", server.url))?;
                let route = Route {
                    https,
                    ..route.clone()
                };
                insert(&mut out, &name, address, port, &route);
            }
        }
        for (name, svc) in dynamic.tcp.services {
            let router = dynamic.tcp.routers.get(&name);
            let route = Route {
                protocol: Protocol::Tcp,
                https: false,
                rule: router.map(|r| r.rule.clone()).unwrap_or_default(),
                entry_points: router.map(|r| r.entry_points.clone()).unwrap_or_default(),
                middlewares: router.map(|r| r.middlewares.clone()).unwrap_or_default(),
                tls: router.and_then(|r| r.tls.as_ref()).map(|t| Tls {
                    cert_resolver: t.cert_resolver.clone(),
                    passthrough: t.passthrough,
                }),
            };
            for server in svc.load_balancer.servers {
                let (address, port) = split_address(&server.address).ok_or_else(|| {
                    format!("server address {:?} of service {name:?}", server.address)
                })?;
                insert(&mut out, &name, address, port, &route);
            }
        }
        Ok(out)
    }

    async fn write_atomically(&self, content: &str) -> std::io::Result<()> {
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let file = self
            .path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or("traefik");
        // Same directory, so the rename is atomic and Traefik never reads a half-written file.
        let tmp = dir.join(format!(".{file}.rancon-{}.tmp", std::process::id()));
        tokio::fs::write(&tmp, content).await?;
        if let Err(e) = tokio::fs::rename(&tmp, &self.path).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        Ok(())
    }
}

/// A listed registration, keyed as `render` keys it.
fn insert(out: &mut RegistrationMap, name: &str, address: String, port: u16, route: &Route) {
    let reg = Registration {
        id: format!("{name}@{}:{port}", bracket(&address)),
        name: name.to_string(),
        address,
        port,
        tags: Default::default(),
        meta: Meta::new(),
        private: Private {
            attrs: route.attrs(),
            ..Default::default()
        }
        .into(),
        health: None,
    };
    out.insert(reg.id.clone(), reg);
}

/// (https, host, port) of a server URL rancon wrote.
fn split_url(url: &str) -> Option<(bool, String, u16)> {
    let (https, rest) = match url.strip_prefix("http://") {
        Some(rest) => (false, rest),
        None => (true, url.strip_prefix("https://")?),
    };
    let (host, port) = split_address(rest.trim_end_matches('/'))?;
    Some((https, host, port))
}

/// (host, port) of `host:port` or `[v6]:port`.
fn split_address(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_string(), port.parse().ok()?))
}

/// Traefik names allow letters, digits, `-`, `_` and `.`; anything else becomes `-`.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[async_trait]
impl Backend for TraefikFile {
    fn name(&self) -> &str {
        &self.name
    }

    fn sources(&self) -> Option<&[String]> {
        self.sources.as_deref()
    }

    fn render(&self, ep: &Endpoint) -> Result<Registration, Skip> {
        let port = port_of(ep)?;
        // The address goes into a URL Traefik connects to: an IP or a DNS name, nothing else.
        let address = address_of(ep)?.to_string();
        let name = sanitize(ep.prop("name"));
        let defaults = Defaults {
            rule: &self.default_rule,
            tcp_rule: &self.default_tcp_rule,
            entry_points: &self.entry_points,
        };
        let route = Route::from_endpoint(ep, port, &defaults).map_err(|reason| Skip {
            endpoint: ep.describe(),
            kind: SkipKind::Label,
            reason,
        })?;
        Ok(Registration {
            id: format!("{name}@{}:{port}", bracket(&address)),
            name,
            address,
            port,
            tags: Default::default(),
            meta: Meta::new(),
            private: Private {
                attrs: route.attrs(),
                ..Default::default()
            }
            .into(),
            health: None,
        })
    }

    async fn list(&self, _desired: &RegistrationMap) -> Result<Listing, BackendError> {
        let text = match tokio::fs::read_to_string(&self.path).await {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Listing::default()),
            Err(source) => {
                return Err(BackendError::Io {
                    op: "read",
                    path: self.path.clone(),
                    source: Arc::new(source),
                });
            }
        };
        let regs = self.decode(&text).map_err(|message| BackendError::Decode {
            what: self.path.display().to_string(),
            message,
        })?;
        Ok(Listing {
            regs,
            ..Default::default()
        })
    }

    async fn apply(
        &self,
        _unchanged: &RegistrationMap,
        actual: &RegistrationMap,
        plan: &Plan,
    ) -> ApplyReport {
        if plan.is_empty() {
            return ApplyReport::default();
        }
        let next = applied(actual, plan);
        let result = match self.encode(&next) {
            Err(message) => Err(BackendError::Encode {
                what: format!("the content for {}", self.path.display()),
                message,
            }),
            Ok(content) => {
                let current = tokio::fs::read_to_string(&self.path).await.ok();
                if current.as_deref() == Some(content.as_str()) {
                    Ok(())
                } else {
                    self.write_atomically(&content)
                        .await
                        .map_err(|e| BackendError::Io {
                            op: "write",
                            path: self.path.clone(),
                            source: Arc::new(e),
                        })
                }
            }
        };
        match result {
            Ok(()) => ApplyReport {
                done: plan.writes(),
                failed: vec![],
            },
            Err(e) => ApplyReport {
                done: 0,
                failed: plan
                    .register
                    .keys()
                    .chain(plan.update.keys())
                    .chain(plan.deregister.iter())
                    .map(|id| WriteFailure {
                        id: id.clone(),
                        error: e.clone(),
                    })
                    .collect(),
            },
        }
    }
}
