//! Sources list services; they only read. The closed enum of their configs, and `build`.

pub mod rancher;
pub mod static_file;

use crate::config::{Collector, Common, Component};
use crate::error::{BuildError, Skip, SkipKind, SourceError};
use crate::labels;
use crate::model::Endpoint;
use crate::template::{Props, Template};
use crate::watch::WakeTx;
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A place services come from.
#[async_trait]
pub trait Source: Send + Sync {
    /// The component name (`[sources.<name>]`).
    fn name(&self) -> &str;
    /// Lists every selected endpoint. An error means "unknown", never "empty".
    /// Endpoints that cannot be used are returned in the second list, each with its reason.
    async fn fetch(&self) -> Result<(Vec<Endpoint>, Vec<Skip>), SourceError>;
    /// Starts watching the orchestrator for changes, if this source can (`None`: it cannot or
    /// is not configured to). The task keeps the view `current` returns up to date and sends a
    /// `Wake::Source` per applied event, and a `Wake::Resync` after every (re)connect: events
    /// are lost while disconnected, so a full listing (`fetch`) must follow. It subscribes
    /// before that listing, so a change made in between is not lost. `fetch` refreshes the
    /// view too.
    fn watch(&self, _wake: WakeTx) -> Option<tokio::task::JoinHandle<()>> {
        None
    }
    /// The view kept current by the watch: the last complete listing with the events received
    /// since applied, built without asking the server. `None` while there is no such view (no
    /// watch, disconnected, or no complete listing since the last reconnect): the engine
    /// calls `fetch` then.
    fn current(&self) -> Option<(Vec<Endpoint>, Vec<Skip>)> {
        None
    }
}

/// How a source turns labels into properties and names.
#[derive(Debug, Clone)]
pub struct Naming {
    /// Label prefix (`rancon`).
    pub prefix: String,
    /// Name template used unless label `<prefix>.name` overrides it.
    pub name: Template,
}

impl Naming {
    /// The naming of a source, from its overrides or the global settings.
    pub fn new(
        global: &Common,
        prefix: Option<&str>,
        name: Option<&str>,
    ) -> Result<Self, BuildError> {
        Ok(Self {
            prefix: prefix.unwrap_or(&global.label_prefix).to_string(),
            name: BuildError::template("name", name.unwrap_or(&global.name))?,
        })
    }

    /// Builds the endpoint for one service address. `base` holds the source's own properties
    /// (`name` = the source's service name, `host`, `port`, …). Returns `Ok(None)` when the
    /// service is not selected. With `select_all`, every service not opted out is selected.
    pub fn endpoint(
        &self,
        source: &str,
        mut base: Props,
        labels: &BTreeMap<String, String>,
        select_all: bool,
    ) -> Result<Option<Endpoint>, Skip> {
        let label_props = match labels::select(labels, &self.prefix) {
            Some(p) => p,
            None if select_all && !labels::opted_out(labels, &self.prefix) => Props::new(),
            None => return Ok(None),
        };
        if !base.contains_key("service") {
            let service = base.get("name").cloned().unwrap_or_default();
            base.insert("service".into(), service);
        }
        let describe = crate::model::describe(source, &base);
        let skip = |reason: String| Skip {
            endpoint: describe.clone(),
            kind: SkipKind::Template,
            reason,
        };
        let mut name_tpl = None;
        let mut props = base.clone();
        for (key, value) in label_props {
            let label = format!("{}.{key}", self.prefix);
            if matches!(key.as_str(), "host" | "port") {
                tracing::warn!(endpoint = %describe, label, "label cannot override {key}; ignored");
                continue;
            }
            let tpl = Template::parse(&value)
                .map_err(|e| skip(format!("label {label}={value:?}: {e}")))?;
            if key == "name" {
                name_tpl = Some(tpl);
                continue;
            }
            // Placeholders inside label values see the source's own properties.
            let rendered = tpl
                .render(&base)
                .map_err(|e| skip(format!("label {label}: {e}")))?;
            props.insert(key, rendered);
        }
        let name = name_tpl
            .as_ref()
            .unwrap_or(&self.name)
            .render(&props)
            .map_err(|e| skip(format!("name template: {e}")))?;
        if name.is_empty() {
            return Err(skip("name renders empty".into()));
        }
        props.insert("name".into(), name);
        Ok(Some(Endpoint {
            source: source.to_string(),
            props,
        }))
    }
}

/// A source of services, selected by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceConfig {
    /// Services declared in the configuration or in a file: external services, and the demo.
    Static(static_file::StaticSourceConfig),
    /// A Rancher 1.6 server (API `v2-beta` or `v1`).
    Rancher(Box<rancher::RancherSourceConfig>),
}

impl Component for SourceConfig {
    fn from_value(value: &figment::value::Value) -> Result<Self, figment::Error> {
        let (kind, body) = crate::config::tagged::<Self>(value)?;
        match kind.as_str() {
            "static" => body.deserialize().map(SourceConfig::Static),
            "rancher" => body.deserialize().map(SourceConfig::Rancher),
            // A kind without an arm here still reads, through serde (errors less precise).
            _ => value.deserialize(),
        }
    }

    fn validate(&self, key: &str, common: &Common, c: &mut Collector<'_>) {
        match self {
            SourceConfig::Static(s) => s.validate(key, common, c),
            SourceConfig::Rancher(r) => r.validate(key, common, c),
        }
    }

    fn conventional_env(&mut self, var: &dyn Fn(&str) -> Option<String>) {
        match self {
            SourceConfig::Static(s) => s.conventional_env(var),
            SourceConfig::Rancher(r) => r.conventional_env(var),
        }
    }
}

/// Builds one source from its validated config.
pub fn build(
    name: &str,
    cfg: &SourceConfig,
    common: &Common,
) -> Result<Box<dyn Source>, BuildError> {
    Ok(match cfg {
        SourceConfig::Static(c) => Box::new(static_file::StaticSource::new(name, c, common)?),
        SourceConfig::Rancher(c) => Box::new(rancher::RancherSource::new(name, c, common)?),
    })
}
