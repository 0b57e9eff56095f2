//! `type = "traefik_file"`: Traefik's file-provider dynamic configuration.
//!
//! The file at `path` belongs to rancon alone (point Traefik's `directory` option at a folder
//! to keep hand-written files beside it): every router and service in it is this owner's.

mod config;

pub use config::TraefikFileConfig;

use super::{ApplyReport, Backend, Listing, WriteFailure, port_of};
use crate::error::{BackendError, BuildError, Skip, SkipKind};
use crate::model::{Endpoint, Meta, Private, Registration, RegistrationMap, bracket};
use crate::plan::{Plan, applied, by_name};
use crate::template::Template;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Writes one router and one load-balanced service per registered name.
pub struct TraefikFile {
    name: String,
    path: PathBuf,
    yaml: bool,
    default_rule: Template,
    entry_points: Vec<String>,
    sources: Option<Vec<String>>,
}

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct Dynamic {
    #[serde(default)]
    http: Http,
}

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct Http {
    #[serde(default)]
    routers: BTreeMap<String, Router>,
    #[serde(default)]
    services: BTreeMap<String, Service>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Router {
    rule: String,
    service: String,
    #[serde(rename = "entryPoints", default, skip_serializing_if = "Vec::is_empty")]
    entry_points: Vec<String>,
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

const RULE: &str = "rule";
const ENTRY_POINTS: &str = "entry_points";

impl TraefikFile {
    /// Builds the backend from its config.
    pub fn new(name: &str, cfg: &TraefikFileConfig) -> Result<Self, BuildError> {
        let ext = cfg.path.extension().and_then(|e| e.to_str()).unwrap_or("");
        Ok(Self {
            name: name.to_string(),
            path: cfg.path.clone(),
            yaml: matches!(ext, "yaml" | "yml"),
            default_rule: BuildError::template("default_rule", &cfg.default_rule)?,
            entry_points: cfg.entry_points.clone(),
            sources: cfg.sources.clone(),
        })
    }

    fn encode(&self, regs: &RegistrationMap) -> Result<String, String> {
        let mut dynamic = Dynamic::default();
        for (name, group) in by_name(regs) {
            let first = group[0];
            let entry_points = first
                .private
                .attrs
                .get(ENTRY_POINTS)
                .map(|s| {
                    s.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            dynamic.http.routers.insert(
                name.to_string(),
                Router {
                    rule: first.private.attrs.get(RULE).cloned().unwrap_or_default(),
                    service: name.to_string(),
                    entry_points,
                },
            );
            let servers = group
                .iter()
                .map(|r| Server {
                    url: format!("http://{}:{}", bracket(&r.address), r.port),
                })
                .collect();
            dynamic.http.services.insert(
                name.to_string(),
                Service {
                    load_balancer: LoadBalancer { servers },
                },
            );
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
            let mut attrs = Meta::new();
            attrs.insert(
                RULE.into(),
                router.map(|r| r.rule.clone()).unwrap_or_default(),
            );
            attrs.insert(
                ENTRY_POINTS.into(),
                router.map(|r| r.entry_points.join(",")).unwrap_or_default(),
            );
            for server in svc.load_balancer.servers {
                let (address, port) = split_url(&server.url)
                    .ok_or_else(|| format!("server url {:?} of service {name:?}", server.url))?;
                let reg = Registration {
                    id: format!("{name}@{}:{port}", bracket(&address)),
                    name: name.clone(),
                    address,
                    port,
                    tags: BTreeSet::new(),
                    meta: Meta::new(),
                    private: Private {
                        attrs: attrs.clone(),
                        ..Default::default()
                    }
                    .into(),
                    health: None,
                };
                out.insert(reg.id.clone(), reg);
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

fn split_url(url: &str) -> Option<(String, u16)> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest.rsplit_once(':')?;
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
        let name = sanitize(ep.prop("name"));
        let rule = match ep.props.get("rule") {
            Some(rule) => rule.clone(),
            None => self.default_rule.render(&ep.props).map_err(|e| Skip {
                endpoint: ep.describe(),
                kind: SkipKind::Template,
                reason: format!("default_rule: {e}"),
            })?,
        };
        let address = ep.prop("host").to_string();
        let mut attrs = Meta::new();
        attrs.insert(RULE.to_string(), rule);
        attrs.insert(ENTRY_POINTS.to_string(), self.entry_points.join(","));
        Ok(Registration {
            id: format!("{name}@{}:{port}", bracket(&address)),
            name,
            address,
            port,
            tags: BTreeSet::new(),
            meta: Meta::new(),
            private: Private {
                attrs,
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
