//! `type = "rancher"`: services of a Rancher 1.6 server, API `v2-beta` or `v1`.
//!
//! Per project it makes three paginated listings (stacks, services, and containers for
//! internal endpoints), never one request per service. With `watch`, it subscribes to each
//! project's change events and keeps the last listing current between listings.

mod client;
mod config;
mod events;
mod page;
mod state;
mod view;

pub use config::{EndpointKind, RancherSourceConfig};

use super::{Naming, Sink, Source};
use crate::config::Common;
use crate::config::secret::SecretSource;
use crate::error::{BuildError, Skip, SourceError};
use crate::model::Endpoint;
use crate::watch::WakeTx;
use async_trait::async_trait;
use events::WatchSettings;
use globset::{Glob, GlobSet, GlobSetBuilder};
use state::Shared;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use view::{Container, Named, ProjectView, Rules, Service};

/// Reads one Rancher server.
pub struct RancherSource(Arc<Inner>);

/// The source's settings and state, shared with its subscriptions.
struct Inner {
    url: String,
    project_url: bool,
    client: reqwest::Client,
    access_key: String,
    secret: SecretSource,
    max_body: u64,
    environments: Filter,
    rules: Rules,
    /// Whether to subscribe to events (`watch`).
    watching: bool,
    watch: WatchSettings,
    shared: Shared,
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

impl RancherSource {
    /// Builds the source; the config was validated.
    pub fn new(name: &str, cfg: &RancherSourceConfig, global: &Common) -> Result<Self, BuildError> {
        let (url, v1, project_url) = normalize(&cfg.url);
        let watch = WatchSettings {
            tls: Arc::new(crate::http::tls_config(&cfg.tls)?),
            timeout: cfg.timeout,
            silence: cfg.watch_timeout,
        };
        // A project URL is subscribed to at once; an API root's projects once listed.
        let projects = if project_url {
            vec![url.clone()]
        } else {
            vec![]
        };
        Ok(Self(Arc::new(Inner {
            url,
            project_url,
            client: crate::http::client(cfg.timeout, &cfg.tls)?,
            access_key: cfg.access_key.clone().unwrap_or_default(),
            secret: SecretSource::new(cfg.secret_key.clone(), cfg.secret_key_file.clone()),
            max_body: global.max_response_size,
            environments: Filter::new(&cfg.include_environments, &cfg.exclude_environments)?,
            rules: Rules {
                source: name.to_string(),
                v1,
                endpoints: cfg.endpoints,
                stacks: Filter::new(&cfg.include_stacks, &cfg.exclude_stacks)?,
                naming: Naming::new(global, cfg.label_prefix.as_deref(), cfg.name.as_deref())?,
            },
            watching: cfg.watch,
            watch,
            shared: Shared::new(projects),
        })))
    }

    /// Event frames skipped so far (not JSON, an unexpected shape, a resource that does not
    /// match its frame, larger than `max_response_size`).
    pub fn events_skipped(&self) -> u64 {
        self.0.shared.skipped.load(Ordering::Relaxed)
    }
}

impl Inner {
    /// One project's three listings.
    async fn project_view(
        &self,
        url: String,
        environment: String,
    ) -> Result<ProjectView, SourceError> {
        let stacks_coll = if self.rules.v1 {
            "environments"
        } else {
            "stacks"
        };
        let (stacks, services, containers) = futures::future::try_join3(
            self.list::<Named>(self.collection_url(&url, stacks_coll), |_| {}),
            self.list::<Service>(self.collection_url(&url, "services"), {
                let trim = view::Trim::of(&self.rules);
                move |s: &mut Service| s.trim(&trim)
            }),
            async {
                match self.rules.endpoints {
                    EndpointKind::Internal => {
                        self.list::<Container>(
                            self.collection_url(&url, "containers"),
                            Container::trim,
                        )
                        .await
                    }
                    EndpointKind::Public => Ok(Vec::new()),
                }
            },
        )
        .await?;
        ProjectView::from_listing(
            &self.rules,
            url,
            environment,
            stacks_coll,
            stacks,
            services,
            containers,
        )
    }
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
        &self.0.rules.source
    }

    async fn fetch(&self) -> Result<(Vec<Endpoint>, Vec<Skip>), SourceError> {
        let mut endpoints = Vec::new();
        let (_, skipped) = self.fetch_each(&mut |ep| endpoints.push(ep)).await?;
        Ok((endpoints, skipped))
    }

    async fn fetch_each(&self, sink: &mut Sink<'_>) -> Result<(usize, Vec<Skip>), SourceError> {
        let inner = &self.0;
        // Begun before the first request: a change received from here on is re-applied to
        // this listing's view.
        let fetch = inner.shared.watched.begin_fetch();
        inner.secret.refresh(&inner.rules.source).await;
        let mut views = Vec::new();
        for (project, environment) in inner.projects().await? {
            if inner.environments.allows(&environment) {
                views.push(inner.project_view(project, environment).await?);
            }
        }
        let (mut count, mut skipped) = (0, Vec::new());
        for v in &views {
            v.endpoints(
                &inner.rules,
                &mut |ep| {
                    count += 1;
                    sink(ep)
                },
                &mut skipped,
            );
        }
        if inner.shared.watched.watching() {
            let urls: Vec<String> = views.iter().map(|v| v.url.clone()).collect();
            inner.shared.projects.send_if_modified(|p| {
                let changed = *p != urls;
                if changed {
                    *p = urls;
                }
                changed
            });
            fetch.complete(&inner.rules, state::Projects(views));
        }
        Ok((count, skipped))
    }

    fn watch(&self, wake: WakeTx) -> Option<tokio::task::JoinHandle<()>> {
        if !self.0.watching {
            return None;
        }
        self.0
            .shared
            .watched
            .watching
            .store(true, Ordering::Relaxed);
        Some(tokio::spawn(events::supervise(self.0.clone(), wake)))
    }

    fn current(&self) -> Option<(Vec<Endpoint>, Vec<Skip>)> {
        self.0.shared.watched.current(&self.0.rules)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
