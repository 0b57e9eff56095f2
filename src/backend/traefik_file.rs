//! `type = "traefik_file"`: Traefik's file-provider dynamic configuration.
//!
//! The file at `path` belongs to rancon alone (point Traefik's `directory` option at a folder
//! to keep hand-written files beside it): every router and service in it is this owner's.

use super::{ApplyReport, Backend, Listing, port_of};
use crate::config::TraefikFileConfig;
use crate::error::{BackendError, Skip};
use crate::model::{Endpoint, Meta, Registration, RegistrationMap};
use crate::reconcile::{Plan, applied, by_name};
use crate::template::{Template, TemplateError};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

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
    pub fn new(name: &str, cfg: &TraefikFileConfig) -> Result<Self, TemplateError> {
        let ext = cfg.path.extension().and_then(|e| e.to_str()).unwrap_or("");
        Ok(Self {
            name: name.to_string(),
            path: cfg.path.clone(),
            yaml: matches!(ext, "yaml" | "yml"),
            default_rule: Template::parse(&cfg.default_rule)?,
            entry_points: cfg.entry_points.clone(),
            sources: cfg.sources.clone(),
        })
    }

    fn encode(&self, regs: &RegistrationMap) -> Result<String, String> {
        let mut dynamic = Dynamic::default();
        for (name, group) in by_name(regs) {
            let first = group[0];
            let entry_points = first
                .meta
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
                    rule: first.meta.get(RULE).cloned().unwrap_or_default(),
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
            let mut meta = Meta::new();
            meta.insert(
                RULE.into(),
                router.map(|r| r.rule.clone()).unwrap_or_default(),
            );
            meta.insert(
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
                    meta: meta.clone(),
                    health: None,
                };
                out.insert(reg.id.clone(), reg);
            }
        }
        Ok(out)
    }

    fn write_atomically(&self, content: &str) -> std::io::Result<()> {
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
        std::fs::write(&tmp, content)?;
        std::fs::rename(&tmp, &self.path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
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
                kind: "template",
                reason: format!("default_rule: {e}"),
            })?,
        };
        let address = ep.prop("host").to_string();
        let mut meta = Meta::new();
        meta.insert(RULE.to_string(), rule);
        meta.insert(ENTRY_POINTS.to_string(), self.entry_points.join(","));
        Ok(Registration {
            id: format!("{name}@{}:{port}", bracket(&address)),
            name,
            address,
            port,
            tags: BTreeSet::new(),
            meta,
            health: None,
        })
    }

    async fn list(&self, _desired: &RegistrationMap) -> Result<Listing, BackendError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Listing::default()),
            Err(source) => {
                return Err(BackendError::Io {
                    op: "read",
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let regs = self.decode(&text).map_err(|message| BackendError::Decode {
            what: self.path.display().to_string(),
            message,
        })?;
        Ok(Listing {
            regs,
            partial: vec![],
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
        let result = self.encode(&next).and_then(|content| {
            let current = std::fs::read_to_string(&self.path).ok();
            if current.as_deref() == Some(content.as_str()) {
                return Ok(());
            }
            self.write_atomically(&content)
                .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
        });
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
                    .map(|id| (id.clone(), e.clone()))
                    .collect(),
            },
        }
    }
}
