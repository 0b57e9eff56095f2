//! `type = "rancher"`: services of a Rancher 1.6 server, API `v2-beta` or `v1`.
//!
//! Per project it makes three paginated listings (stacks, services, and containers for
//! internal endpoints), never one request per service.

mod config;

pub use config::{EndpointKind, RancherSourceConfig};

use super::{Naming, Source};
use crate::config::Common;
use crate::config::secret::SecretSource;
use crate::error::{BuildError, Skip, SkipKind, SourceError};
use crate::model::Endpoint;
use crate::template::Props;
use async_trait::async_trait;
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::value::RawValue;

use std::collections::{BTreeMap, HashMap, HashSet};

/// One collection item, kept as raw JSON text until the page is done, then decoded into its
/// own type (and, for warnings, into `Ident`).
type Item = Box<RawValue>;

/// Page size asked for: the largest Rancher 1.6 serves (3000), so most projects fit in one
/// page. cattle pages by offset (`processPaginationResult`: `next` = marker `m<offset+limit>`),
/// so fewer pages also means fewer chances for a row removed mid-listing to shift another out.
const PAGE_LIMIT: u32 = 3000;
/// Upper bound on pages of one listing, against servers that keep sending new `next` links.
const MAX_PAGES: usize = 10_000;

/// Reads one Rancher server.
pub struct RancherSource {
    name: String,
    url: String,
    v1: bool,
    project_url: bool,
    client: reqwest::Client,
    access_key: String,
    secret: SecretSource,
    max_body: u64,
    endpoints: EndpointKind,
    stacks: Filter,
    environments: Filter,
    naming: Naming,
}

struct Filter {
    include: Option<GlobSet>,
    exclude: GlobSet,
}

impl Filter {
    fn new(include: &[String], exclude: &[String]) -> Result<Self, BuildError> {
        let set = |globs: &[String]| -> Result<GlobSet, BuildError> {
            let mut b = GlobSetBuilder::new();
            for g in globs {
                b.add(Glob::new(g).map_err(|e| BuildError::Invalid(format!("glob {g:?}: {e}")))?);
            }
            b.build().map_err(|e| BuildError::Invalid(e.to_string()))
        };
        Ok(Self {
            include: if include.is_empty() {
                None
            } else {
                Some(set(include)?)
            },
            exclude: set(exclude)?,
        })
    }

    fn allows(&self, name: &str) -> bool {
        self.include.as_ref().is_none_or(|i| i.is_match(name)) && !self.exclude.is_match(name)
    }
}

#[derive(Deserialize)]
struct Collection {
    #[serde(default)]
    data: Option<Vec<Item>>,
    #[serde(default)]
    pagination: Option<Pagination>,
}

/// Just enough of any resource to de-duplicate it and name it in warnings.
#[derive(Deserialize)]
struct Ident {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct Pagination {
    #[serde(default)]
    next: Option<String>,
    /// The server cut the collection short (a limit it enforces): more rows exist.
    #[serde(default)]
    partial: bool,
}

#[derive(Deserialize)]
struct Named {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    links: HashMap<String, Option<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Service {
    id: String,
    name: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    health_state: Option<String>,
    #[serde(default)]
    stack_id: Option<String>,
    #[serde(default)]
    environment_id: Option<String>,
    #[serde(default)]
    launch_config: Option<LaunchConfig>,
    #[serde(default)]
    secondary_launch_configs: Option<Vec<LaunchConfig>>,
    #[serde(default)]
    public_endpoints: Option<Vec<PublicEndpoint>>,
    #[serde(default)]
    instance_ids: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
struct LaunchConfig {
    /// A sidekick's name (secondary launch configs only).
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    ports: Option<Vec<String>>,
    /// Ports open to the managed network without being published.
    #[serde(default)]
    expose: Option<Vec<String>>,
}

impl LaunchConfig {
    /// The private ports of `ports` and `expose`, each once.
    fn private_ports(&self) -> Vec<u16> {
        let mut out: Vec<u16> = self
            .ports
            .iter()
            .chain(&self.expose)
            .flatten()
            .filter_map(|p| private_port(p))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The label cattle puts on a container naming the launch config it runs: the primary's
/// marker below, or a sidekick's name.
const LAUNCH_CONFIG_LABEL: &str = "io.rancher.service.launch.config";
const PRIMARY_LAUNCH_CONFIG: &str = "io.rancher.service.primary.launch.config";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublicEndpoint {
    ip_address: String,
    port: u16,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    id: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    primary_ip_address: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

impl RancherSource {
    /// Builds the source; the config was validated.
    pub fn new(name: &str, cfg: &RancherSourceConfig, global: &Common) -> Result<Self, BuildError> {
        let (url, v1, project_url) = normalize(&cfg.url);
        Ok(Self {
            name: name.to_string(),
            url,
            v1,
            project_url,
            client: crate::http::client(cfg.timeout, &cfg.tls)?,
            access_key: cfg.access_key.clone().unwrap_or_default(),
            secret: SecretSource::new(cfg.secret_key.clone(), cfg.secret_key_file.clone()),
            max_body: global.max_response_size,
            endpoints: cfg.endpoints,
            stacks: Filter::new(&cfg.include_stacks, &cfg.exclude_stacks)?,
            environments: Filter::new(&cfg.include_environments, &cfg.exclude_environments)?,
            naming: Naming::new(global, cfg.label_prefix.as_deref(), cfg.name.as_deref())?,
        })
    }

    /// GET with retries of transient failures (see `http::with_retry`).
    async fn get<T: DeserializeOwned>(&self, url: &str) -> Result<T, SourceError> {
        crate::http::with_retry(
            || self.get_once(url),
            |e| match e {
                SourceError::Transport { .. } => true,
                SourceError::Http { status, .. } => crate::http::transient_status(*status),
                _ => false,
            },
        )
        .await
    }

    async fn get_once<T: DeserializeOwned>(&self, url: &str) -> Result<T, SourceError> {
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
        let body = crate::http::read_body(&mut resp, self.max_body, false)
            .await
            .map_err(|e| SourceError::Transport {
                url: url.to_string(),
                message: e.to_string(),
            })?;
        if status == 401 || status == 403 {
            return Err(SourceError::Unauthorized {
                url: url.to_string(),
                status,
                access_key: self.access_key.clone(),
            });
        }
        if status != 200 {
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| {
                    let code = v.get("code")?.as_str()?.to_string();
                    let msg = v.get("message").and_then(Value::as_str).unwrap_or("");
                    Some(format!("{code} {msg}").trim().to_string())
                })
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
            let message = self.scrub(&message);
            return Err(SourceError::Http {
                url: url.to_string(),
                status,
                message,
            });
        }
        serde_json::from_slice(&body).map_err(|e| SourceError::Decode {
            what: url.to_string(),
            message: e.to_string(),
        })
    }

    /// Every item of a collection, following `pagination.next`; ids seen twice are dropped
    /// and a repeated `next` link ends the listing.
    /// Items are decoded page by page into `T`, so a page's raw JSON is dropped before the next
    /// one arrives (at 10,000 services this halves the peak memory). An item that does not
    /// decode comes back as (its name or id, the error).
    async fn list<T: DeserializeOwned>(
        &self,
        first: String,
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
            let page: Collection = self.get(&url).await?;
            let data = page.data.ok_or_else(|| SourceError::Decode {
                what: url.clone(),
                message: "collection has no `data` array".into(),
            })?;
            for item in data {
                let ident = serde_json::from_str::<Ident>(item.get()).ok();
                let id = ident.as_ref().and_then(|i| i.id.clone());
                if id.is_none_or(|id| ids.insert(id)) {
                    out.push(serde_json::from_str::<T>(item.get()).map_err(|e| {
                        let label = ident
                            .and_then(|i| i.name.or(i.id))
                            .unwrap_or_else(|| "?".into());
                        (label, e.to_string())
                    }));
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
    fn scrub(&self, text: &str) -> String {
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
    fn same_origin(&self, link: &str) -> Result<(), String> {
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

    fn collection_url(&self, project: &str, collection: &str) -> String {
        format!(
            "{}/{collection}?limit={PAGE_LIMIT}",
            project.trim_end_matches('/')
        )
    }

    /// (project URL, environment name) of every project in scope.
    async fn projects(&self) -> Result<Vec<(String, String)>, SourceError> {
        if self.project_url {
            let p: Named = self.get(&self.url).await?;
            return Ok(vec![(self.url.clone(), p.name.unwrap_or(p.id))]);
        }
        let items = self
            .list::<Named>(self.collection_url(&self.url, "projects"))
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

    async fn project_endpoints(
        &self,
        project: &str,
        environment: &str,
        endpoints: &mut Vec<Endpoint>,
        skipped: &mut Vec<Skip>,
    ) -> Result<(), SourceError> {
        let stacks_coll = if self.v1 { "environments" } else { "stacks" };
        let (stacks, services, containers) = futures::future::try_join3(
            self.list::<Named>(self.collection_url(project, stacks_coll)),
            self.list::<Service>(self.collection_url(project, "services")),
            async {
                match self.endpoints {
                    EndpointKind::Internal => {
                        self.list::<Container>(self.collection_url(project, "containers"))
                            .await
                    }
                    EndpointKind::Public => Ok(Vec::new()),
                }
            },
        )
        .await?;
        // A stack or container that does not decode would silently rename or drop services
        // (stack "" fails include_stacks and changes %STACK%): the listing fails instead.
        let undecoded = |what: &str, (label, e): (String, String)| SourceError::Decode {
            what: format!("{project}/{what} ({label})"),
            message: e,
        };
        let stack_names: HashMap<String, String> = stacks
            .into_iter()
            .map(|s| {
                let s = s.map_err(|e| undecoded(stacks_coll, e))?;
                Ok((s.id.clone(), s.name.unwrap_or(s.id)))
            })
            .collect::<Result<_, SourceError>>()?;
        let containers: HashMap<String, Container> = containers
            .into_iter()
            .map(|c| {
                let c = c.map_err(|e| undecoded("containers", e))?;
                Ok((c.id.clone(), c))
            })
            .collect::<Result<_, SourceError>>()?;
        for decoded in services {
            let svc: Service = match decoded {
                Ok(s) => s,
                Err((label, e)) => {
                    skipped.push(Skip {
                        endpoint: format!("{}/{environment}/{label}", self.name),
                        kind: SkipKind::Shape,
                        reason: format!("unexpected shape: {e}"),
                    });
                    continue;
                }
            };
            if matches!(
                svc.state.as_str(),
                "inactive" | "removed" | "purged" | "removing" | "purging"
            ) {
                continue;
            }
            let stack_id = if self.v1 {
                &svc.environment_id
            } else {
                &svc.stack_id
            };
            let stack = match stack_id.as_ref().map(|id| (id, stack_names.get(id))) {
                None => String::new(),
                Some((_, Some(name))) => name.clone(),
                // Its stack is not in this listing (created or removed in between): unknown,
                // so the service is skipped and nothing it held is deregistered.
                Some((id, None)) => {
                    skipped.push(Skip {
                        endpoint: format!("{}/{environment}/{}", self.name, svc.name),
                        kind: SkipKind::Shape,
                        reason: format!("its stack {id:?} is not in the listing"),
                    });
                    continue;
                }
            };
            if !self.stacks.allows(&stack) {
                continue;
            }
            let lc = svc.launch_config.unwrap_or_default();
            let mut base = Props::new();
            base.insert("name".into(), svc.name.clone());
            base.insert("service".into(), svc.name.clone());
            base.insert("stack".into(), stack.clone());
            base.insert("environment".into(), environment.to_string());
            base.insert("service_id".into(), svc.id.clone());
            base.insert(
                "health".into(),
                svc.health_state.clone().unwrap_or_default(),
            );
            // Each address with the labels of the launch config it belongs to.
            let mut addrs: Vec<(String, u16, &LaunchConfig)> = Vec::new();
            match self.endpoints {
                EndpointKind::Public => {
                    for p in svc.public_endpoints.unwrap_or_default() {
                        addrs.push((p.ip_address, p.port, &lc));
                    }
                }
                EndpointKind::Internal => {
                    let sidekicks = svc.secondary_launch_configs.as_deref().unwrap_or_default();
                    for c in svc
                        .instance_ids
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|id| containers.get(id))
                        .filter(|c| c.state == "running")
                    {
                        let Some(ip) = c.primary_ip_address.clone() else {
                            continue;
                        };
                        // A sidekick runs its own launch config: pairing it with the primary's
                        // ports would register `<sidekick IP>:<primary port>`.
                        let which = c
                            .labels
                            .as_ref()
                            .and_then(|l| l.get(LAUNCH_CONFIG_LABEL))
                            .map(String::as_str)
                            .unwrap_or(PRIMARY_LAUNCH_CONFIG);
                        let config = if which == PRIMARY_LAUNCH_CONFIG {
                            Some(&lc)
                        } else {
                            sidekicks.iter().find(|s| s.name.as_deref() == Some(which))
                        };
                        let Some(config) = config else {
                            skipped.push(Skip {
                                endpoint: format!("{}/{environment}/{}", self.name, svc.name),
                                kind: SkipKind::Shape,
                                reason: format!(
                                    "container {} runs launch config {:?}, which the service does not list",
                                    c.id, which
                                ),
                            });
                            continue;
                        };
                        for port in config.private_ports() {
                            addrs.push((ip.clone(), port, config));
                        }
                    }
                }
            }
            let empty = BTreeMap::new();
            for (host, port, config) in addrs {
                let mut props = base.clone();
                props.insert("host".into(), host);
                props.insert("port".into(), port.to_string());
                let labels = config.labels.as_ref().unwrap_or(&empty);
                match self.naming.endpoint(&self.name, props, labels, false) {
                    Ok(Some(ep)) => endpoints.push(ep),
                    Ok(None) => {}
                    Err(s) => skipped.push(s),
                }
            }
        }
        Ok(())
    }
}

/// The private (container) port of a docker-compose port spec: `8080:80/tcp`, `80/tcp`,
/// `10.0.0.5:53:53/udp` all give the last number before the protocol.
fn private_port(spec: &str) -> Option<u16> {
    let without_proto = spec.split('/').next()?;
    without_proto.rsplit(':').next()?.trim().parse().ok()
}

/// Returns (base URL, is v1, is a project URL). `/v1` stays `/v1`: Rancher 1.6 serves both.
fn normalize(url: &str) -> (String, bool, bool) {
    let url = url.trim_end_matches('/').to_string();
    let path = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    let path = path.split_once('/').map_or("", |(_, p)| p);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let v1 = segments.contains(&"v1");
    let project = segments
        .windows(2)
        .any(|w| w[0] == "projects" && !w[1].is_empty());
    if segments.is_empty() {
        return (format!("{url}/v2-beta"), false, false);
    }
    (url, v1, project)
}

#[async_trait]
impl Source for RancherSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn fetch(&self) -> Result<(Vec<Endpoint>, Vec<Skip>), SourceError> {
        self.secret.refresh(&self.name).await;
        let mut endpoints = Vec::new();
        let mut skipped = Vec::new();
        for (project, environment) in self.projects().await? {
            if self.environments.allows(&environment) {
                self.project_endpoints(&project, &environment, &mut endpoints, &mut skipped)
                    .await?;
            }
        }
        Ok((endpoints, skipped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ports_from_compose_specs() {
        assert_eq!(private_port("8080:80/tcp"), Some(80));
        assert_eq!(private_port("80/tcp"), Some(80));
        assert_eq!(private_port("10.0.0.5:53:53/udp"), Some(53));
        assert_eq!(private_port("x/tcp"), None);
    }

    #[test]
    fn url_forms() {
        assert_eq!(
            normalize("http://r:8080/v2-beta/"),
            ("http://r:8080/v2-beta".into(), false, false)
        );
        assert_eq!(
            normalize("http://r:8080/v1/projects/1a5"),
            ("http://r:8080/v1/projects/1a5".into(), true, true)
        );
        assert_eq!(
            normalize("http://r:8080"),
            ("http://r:8080/v2-beta".into(), false, false)
        );
    }
}
