//! `Naming`: a service's labels and the source's own properties → one endpoint per address.
//!
//! Every source calls `Naming::endpoint` once per address it found, so what labels mean is
//! the same for all of them: selection, templates inside label values, the name template and
//! per-port labels live here and nowhere else.

use crate::config::Common;
use crate::error::{BuildError, Skip, SkipKind};
use crate::labels;
use crate::model::Endpoint;
use crate::template::{Props, Template};
use std::collections::BTreeMap;

/// How deep labels may refer to one another (`a` uses `%B%`, `b` uses `%C%`, …). Real labels
/// go two or three deep; the bound keeps a hostile chain of thousands from exhausting the
/// stack.
const MAX_DEPTH: usize = 16;

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

    /// Builds the endpoint for one address of a service.
    ///
    /// `base` holds the source's own properties: `name` (the source's name for the service),
    /// `host`, `port`, and whatever else the source knows (`stack`, `environment`, …). A
    /// source whose addresses are published ports may also set `private_port`, the port the
    /// container itself listens on; per-port labels then match that one (as registrator's
    /// `SERVICE_<port>_*` match the exposed port), else they match `port`.
    ///
    /// `labels` are the service's labels (or the launch config's, the container's): all of
    /// them, not only `<prefix>.*`. Returns `Ok(None)` when this address is not selected: no
    /// `<prefix>` label (unless `select_all`, where only `<prefix>.enable=false` opts out), or
    /// the address is ignored. A label that cannot be used skips the address with its reason
    /// (`Err`), which the caller reports; it never ends the listing.
    ///
    /// What labels mean:
    /// - `<prefix>.X=V` sets property `x` (`<prefix>.a.b` sets `a_b`); `host` and `port` are
    ///   the source's and cannot be set.
    /// - Placeholders in every value see the same properties: the source's, and the other
    ///   labels' rendered values, whatever the label (`rancon.tag=%STACK%`,
    ///   `rancon.meta.team=%STACK%-ops` and `rancon.name=%NAME%-%STACK%` all see a `stack`
    ///   set by label `rancon.stack`). A label that names itself (`rancon.stack=%STACK%-eu`)
    ///   sees the source's value; `%NAME%` is the source's name for the service everywhere
    ///   (the final name is `<prefix>.name` or the source's name template, rendered last). A
    ///   cycle, or a placeholder without a value, skips the address.
    /// - `<prefix>.port.<P>.X=V` applies to the address on port P only, and there replaces
    ///   `<prefix>.X` (a `tag`/`tags` label on the port replaces both of the service's).
    ///   `<prefix>.port.<P>.ignore=true` (or `.enable=false`) leaves that address out;
    ///   `<prefix>.ignore=true` leaves every address out except those whose port says
    ///   `ignore=false`. Per-port properties of other ports are dropped.
    pub fn endpoint(
        &self,
        source: &str,
        mut base: Props,
        labels: &impl labels::LabelMap,
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
        let port = base
            .get("private_port")
            .or_else(|| base.get("port"))
            .cloned()
            .unwrap_or_default();
        let label_props = labels::for_port(label_props, &port);
        if label_props
            .get("ignore")
            .is_some_and(|v| labels::is_true(v))
            || label_props
                .get("enable")
                .is_some_and(|v| labels::is_false(v))
        {
            tracing::debug!(endpoint = %crate::model::describe(source, &base), "ignored by its labels");
            return Ok(None);
        }
        let describe = crate::model::describe(source, &base);
        let skip = |reason: String| Skip {
            endpoint: describe.clone(),
            kind: SkipKind::Template,
            reason,
        };
        let mut name_tpl = None;
        let mut templates = BTreeMap::new();
        for (key, value) in label_props {
            let label = self.label(&key);
            if matches!(key.as_str(), "host" | "port") {
                tracing::warn!(endpoint = %describe, label, "label cannot override {key}; ignored");
                continue;
            }
            let tpl = Template::parse(&value)
                .map_err(|e| skip(format!("label {label}={value:?}: {e}")))?;
            if key == "name" {
                name_tpl = Some(tpl);
            } else {
                templates.insert(key, tpl);
            }
        }
        let mut resolver = Resolver {
            base: &base,
            templates: &templates,
            done: Props::new(),
            path: Vec::new(),
        };
        for key in templates.keys() {
            resolver
                .resolve(key)
                .map_err(|e| skip(e.message(&self.prefix)))?;
        }
        let mut props = base.clone();
        props.extend(resolver.done);
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

    /// The label a property came from, as operators write it (`rancon.meta_x` for `meta_x`:
    /// the dots are gone by then, so this is a hint, not a quote).
    fn label(&self, key: &str) -> String {
        format!("{}.{key}", self.prefix)
    }
}

/// Why label values could not be rendered.
enum ResolveError {
    /// A placeholder without a value, in the label for `key`.
    Missing { key: String, placeholder: String },
    /// Labels that refer to one another in a circle (the path, first key repeated last).
    Cycle(Vec<String>),
    /// A chain of references deeper than `MAX_DEPTH`.
    TooDeep(String),
}

impl ResolveError {
    fn message(&self, prefix: &str) -> String {
        match self {
            ResolveError::Missing { key, placeholder } => {
                format!("label {prefix}.{key}: placeholder %{placeholder}% has no value")
            }
            ResolveError::Cycle(path) => format!(
                "labels refer to each other in a circle: {}",
                path.iter()
                    .map(|k| format!("{prefix}.{k}"))
                    .collect::<Vec<_>>()
                    .join(" → ")
            ),
            ResolveError::TooDeep(key) => format!(
                "label {prefix}.{key}: labels refer to each other more than {MAX_DEPTH} deep"
            ),
        }
    }
}

/// Renders label values in the order their references need.
struct Resolver<'a> {
    base: &'a Props,
    templates: &'a BTreeMap<String, Template>,
    /// Rendered values so far.
    done: Props,
    /// Keys being rendered, outermost first.
    path: Vec<String>,
}

impl Resolver<'_> {
    fn resolve(&mut self, key: &str) -> Result<(), ResolveError> {
        if self.done.contains_key(key) {
            return Ok(());
        }
        if let Some(at) = self.path.iter().position(|k| k == key) {
            let mut cycle = self.path[at..].to_vec();
            cycle.push(key.to_string());
            return Err(ResolveError::Cycle(cycle));
        }
        if self.path.len() >= MAX_DEPTH {
            return Err(ResolveError::TooDeep(key.to_string()));
        }
        let Some(tpl) = self.templates.get(key) else {
            return Ok(());
        };
        self.path.push(key.to_string());
        for var in tpl.placeholders() {
            // A label naming itself means the source's own value.
            if var != key && self.templates.contains_key(var) {
                self.resolve(var)?;
            }
        }
        self.path.pop();
        let (done, base) = (&self.done, self.base);
        let value = tpl
            .render_with(|v| {
                let label = if v == key { None } else { done.get(v) };
                label.or_else(|| base.get(v)).map(String::as_str)
            })
            .map_err(|m| ResolveError::Missing {
                key: key.to_string(),
                placeholder: m.placeholder,
            })?;
        self.done.insert(key.to_string(), value);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming() -> Naming {
        Naming {
            prefix: "rancon".into(),
            name: Template::parse("%NAME%").unwrap(),
        }
    }

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn base(port: &str) -> Props {
        map(&[("name", "web"), ("host", "10.0.0.1"), ("port", port)])
    }

    fn endpoint(port: &str, labels: &[(&str, &str)]) -> Result<Option<Endpoint>, Skip> {
        naming().endpoint("s", base(port), &map(labels), false)
    }

    #[test]
    fn every_label_sees_the_properties_labels_set() {
        let ep = endpoint(
            "80",
            &[
                ("rancon.stack", "shop"),
                ("rancon.name", "%NAME%-%STACK%"),
                ("rancon.tag", "%STACK%"),
                ("rancon.meta.team", "%STACK%-ops"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(ep.prop("name"), "web-shop");
        assert_eq!(ep.prop("tag"), "shop");
        assert_eq!(ep.prop("meta_team"), "shop-ops");
    }

    #[test]
    fn labels_render_in_the_order_their_references_need() {
        // `a` sorts before `b` and `c` but needs both.
        let ep = endpoint(
            "80",
            &[
                ("rancon.a", "%B%/%C%"),
                ("rancon.b", "%C%+1"),
                ("rancon.c", "%NAME%"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(ep.prop("a"), "web+1/web");
    }

    #[test]
    fn a_label_naming_itself_sees_the_sources_value() {
        let mut b = base("80");
        b.insert("stack".into(), "shop".into());
        let labels = map(&[("rancon.stack", "%STACK%-eu"), ("rancon.tag", "%STACK%")]);
        let ep = naming().endpoint("s", b, &labels, false).unwrap().unwrap();
        assert_eq!(ep.prop("stack"), "shop-eu");
        assert_eq!(ep.prop("tag"), "shop-eu");
    }

    #[test]
    fn cycles_and_missing_values_skip_with_a_reason() {
        let err = endpoint("80", &[("rancon.a", "%B%"), ("rancon.b", "%A%")]).unwrap_err();
        assert!(err.reason.contains("circle"), "{}", err.reason);
        assert!(err.reason.contains("rancon.a → rancon.b → rancon.a"));
        let err = endpoint("80", &[("rancon.tag", "%STACK%")]).unwrap_err();
        assert!(err.reason.contains("%STACK%"), "{}", err.reason);
    }

    #[test]
    fn a_long_chain_of_references_is_refused_not_a_stack_overflow() {
        let labels: Vec<(String, String)> = (0..10_000)
            .map(|i| (format!("rancon.l{i}"), format!("%L{}%", i + 1)))
            .collect();
        let labels: BTreeMap<String, String> = labels.into_iter().collect();
        let err = naming()
            .endpoint("s", base("80"), &labels, false)
            .unwrap_err();
        assert!(err.reason.contains("deep"), "{}", err.reason);
    }

    #[test]
    fn per_port_labels_name_tag_and_ignore_one_port() {
        let labels = [
            ("rancon.tags", "app"),
            ("rancon.port.9090.name", "%NAME%-metrics"),
            ("rancon.port.9090.tags", "metrics"),
            ("rancon.port.8081.ignore", "true"),
        ];
        let app = endpoint("8080", &labels).unwrap().unwrap();
        assert_eq!(app.prop("name"), "web");
        assert_eq!(app.prop("tags"), "app");
        assert!(!app.props.keys().any(|k| k.starts_with("port_")));
        let metrics = endpoint("9090", &labels).unwrap().unwrap();
        assert_eq!(metrics.prop("name"), "web-metrics");
        assert_eq!(metrics.prop("tags"), "metrics");
        assert_eq!(endpoint("8081", &labels).unwrap(), None);
    }

    #[test]
    fn ignoring_the_service_keeps_the_ports_that_say_otherwise() {
        let labels = [
            ("rancon.ignore", "true"),
            ("rancon.port.9090.ignore", "false"),
        ];
        assert_eq!(endpoint("8080", &labels).unwrap(), None);
        assert!(endpoint("9090", &labels).unwrap().is_some());
        let off = [("rancon", ""), ("rancon.port.9090.enable", "false")];
        assert!(endpoint("8080", &off).unwrap().is_some());
        assert_eq!(endpoint("9090", &off).unwrap(), None);
    }

    #[test]
    fn per_port_labels_match_the_private_port_when_the_source_knows_it() {
        let mut b = base("32768");
        b.insert("private_port".into(), "9090".into());
        let labels = map(&[("rancon.port.9090.name", "metrics")]);
        let ep = naming().endpoint("s", b, &labels, false).unwrap().unwrap();
        assert_eq!(ep.prop("name"), "metrics");
    }
}
