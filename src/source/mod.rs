//! Sources list services; they only read.

pub mod rancher;
pub mod static_file;

use crate::config::{RawConfig, SourceConfig};
use crate::error::{Skip, SourceError};
use crate::labels;
use crate::model::Endpoint;
use crate::template::{Props, Template, TemplateError};
use async_trait::async_trait;
use std::collections::BTreeMap;

/// A place services come from.
#[async_trait]
pub trait Source: Send + Sync {
    /// The component name (`[sources.<name>]`).
    fn name(&self) -> &str;
    /// Lists every selected endpoint. An error means "unknown", never "empty".
    /// Endpoints that cannot be used are returned in the second list, each with its reason.
    async fn fetch(&self) -> Result<(Vec<Endpoint>, Vec<Skip>), SourceError>;
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
        global: &RawConfig,
        prefix: Option<&str>,
        name: Option<&str>,
    ) -> Result<Self, TemplateError> {
        Ok(Self {
            prefix: prefix.unwrap_or(&global.label_prefix).to_string(),
            name: Template::parse(name.unwrap_or(&global.name))?,
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
            kind: "template",
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

/// Builds one source from its config. The config was validated; errors here are rare.
pub fn build(
    name: &str,
    cfg: &SourceConfig,
    global: &RawConfig,
) -> Result<Box<dyn Source>, String> {
    Ok(match cfg {
        SourceConfig::Static(c) => {
            Box::new(static_file::StaticSource::new(name, c, global).map_err(|e| e.to_string())?)
        }
        SourceConfig::Rancher(c) => {
            Box::new(rancher::RancherSource::new(name, c, global).map_err(|e| e.to_string())?)
        }
    })
}
