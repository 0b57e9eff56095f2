//! What the environment adds to a configuration: the zero-config start (a `rancher` source into
//! a `consul` backend from `RANCHER_URL` and `CONSUL_HTTP_ADDR`), and which fields the variables
//! other tools read (`RANCHER_*`, `CATTLE_*`, `CONSUL_*`) filled — for `rancon check`.

use crate::backend::BackendConfig;
use crate::build::{Config, Loaded};
use crate::config::Component;
use crate::source::SourceConfig;

/// Reads a variable as configuration loading does: unset and empty are alike.
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A component the environment added, and the variables that asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImpliedComponent {
    /// Its key, e.g. `sources.rancher`.
    pub key: String,
    /// Its type.
    pub kind: &'static str,
    /// The variables whose presence implied it.
    pub because: Vec<String>,
}

/// The variables that name a Rancher server, in the order the rancher source reads them.
const RANCHER_URL_VARS: [&str; 2] = ["RANCHER_URL", "CATTLE_URL"];

/// The zero-config start: a configuration with no source and no backend, in an environment
/// naming a Rancher server and a Consul agent, runs a `rancher` source (`sources.rancher`) into
/// a `consul` backend (`backends.consul`), both filled from those variables — so
/// `docker run -e RANCHER_URL=… -e CONSUL_HTTP_ADDR=… rancon` works as written. A
/// configuration with any component is left alone: the environment never adds to it.
pub fn zero_config(
    config: &mut Config,
    var: &dyn Fn(&str) -> Option<String>,
) -> Vec<ImpliedComponent> {
    if !config.sources.is_empty() || !config.backends.is_empty() {
        return Vec::new();
    }
    let Some(rancher) = RANCHER_URL_VARS.into_iter().find(|v| var(v).is_some()) else {
        return Vec::new();
    };
    if var("CONSUL_HTTP_ADDR").is_none() {
        return Vec::new();
    }
    let mut source: SourceConfig = serde_json::from_value(serde_json::json!({"type": "rancher"}))
        .expect("a rancher source has a default for every field");
    let mut backend: BackendConfig = serde_json::from_value(serde_json::json!({"type": "consul"}))
        .expect("a consul backend has a default for every field");
    source.conventional_env(var);
    backend.conventional_env(var);
    config.sources.insert("rancher".into(), source);
    config.backends.insert("consul".into(), backend);
    vec![
        ImpliedComponent {
            key: "sources.rancher".into(),
            kind: "rancher",
            because: vec![rancher.into()],
        },
        ImpliedComponent {
            key: "backends.consul".into(),
            kind: "consul",
            because: vec!["CONSUL_HTTP_ADDR".into()],
        },
    ]
}

/// What the conventional variables gave one component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filled {
    /// The component's key, e.g. `sources.rancher`.
    pub key: String,
    /// Its fields that no file, `RANCON_*` variable or `--set` set, and that are now set.
    pub fields: Vec<String>,
    /// The variables read to fill them (present and not empty).
    pub vars: Vec<String>,
}

/// For each component, the fields the conventional variables filled and the variables used:
/// the configuration as the layers left it (re-extracted from the figment) is filled again
/// with a `var` that records what it was asked and answered.
pub fn conventional_origins(loaded: &Loaded, var: &dyn Fn(&str) -> Option<String>) -> Vec<Filled> {
    let bare: Config = loaded.figment.extract().unwrap_or_default();
    // Implied components were not in the layers: they start from their type's defaults.
    let sources = loaded.config.sources.iter().map(|(name, c)| {
        let before = bare
            .sources
            .get(name)
            .cloned()
            .unwrap_or_else(|| bare_of(c));
        filled(format!("sources.{name}"), before, var)
    });
    let backends = loaded.config.backends.iter().map(|(name, c)| {
        let before = bare
            .backends
            .get(name)
            .cloned()
            .unwrap_or_else(|| bare_of(c));
        filled(format!("backends.{name}"), before, var)
    });
    sources.chain(backends).flatten().collect()
}

/// What `conventional_env` fills in `component`, and the variables it read that are set.
fn filled<C: Component>(
    key: String,
    mut component: C,
    var: &dyn Fn(&str) -> Option<String>,
) -> Option<Filled> {
    let used = std::cell::RefCell::new(Vec::<String>::new());
    let recording = |k: &str| {
        let v = var(k);
        if v.is_some() && !used.borrow().iter().any(|u| u == k) {
            used.borrow_mut().push(k.to_string());
        }
        v
    };
    let as_toml = |c: &C| toml::Value::try_from(c).unwrap_or(toml::Value::Boolean(false));
    let before = as_toml(&component);
    component.conventional_env(&recording);
    let fields = changed(&before, &as_toml(&component), "");
    let vars = used.into_inner();
    (!fields.is_empty() || !vars.is_empty()).then_some(Filled { key, fields, vars })
}

/// A component of the same type with every field at its default (itself if that fails).
fn bare_of<T: Clone + serde::Serialize + serde::de::DeserializeOwned>(c: &T) -> T {
    let bare = || {
        let kind = serde_json::to_value(c).ok()?.get("type")?.clone();
        serde_json::from_value(serde_json::json!({ "type": kind })).ok()
    };
    bare().unwrap_or_else(|| c.clone())
}

/// The dotted paths of the leaves that differ between two values.
fn changed(before: &toml::Value, after: &toml::Value, path: &str) -> Vec<String> {
    match (before, after) {
        (toml::Value::Table(b), toml::Value::Table(a)) => {
            let keys: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            keys.into_iter()
                .flat_map(|k| {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    let empty = toml::Value::Table(Default::default());
                    changed(b.get(k).unwrap_or(&empty), a.get(k).unwrap_or(&empty), &p)
                })
                .collect()
        }
        (b, a) if b == a => Vec::new(),
        _ => vec![path.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            list.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn both_variables_imply_a_rancher_source_into_a_consul_backend() {
        let mut c = Config::default();
        let got = zero_config(
            &mut c,
            &vars(&[
                ("RANCHER_URL", "http://rancher:8080/v2-beta"),
                ("CONSUL_HTTP_ADDR", "consul:8500"),
            ]),
        );
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].because, ["RANCHER_URL"]);
        match &c.sources["rancher"] {
            SourceConfig::Rancher(r) => assert_eq!(r.url, "http://rancher:8080/v2-beta"),
            other => panic!("not a rancher source: {other:?}"),
        }
        assert!(matches!(c.backends["consul"], BackendConfig::Consul(_)));
    }

    #[test]
    fn nothing_is_implied_from_one_variable_or_into_a_configured_file() {
        let mut c = Config::default();
        assert!(zero_config(&mut c, &vars(&[("RANCHER_URL", "http://r/v1")])).is_empty());
        assert!(zero_config(&mut c, &vars(&[("CONSUL_HTTP_ADDR", "c:8500")])).is_empty());
        assert!(c.sources.is_empty() && c.backends.is_empty());
        let mut c = Config::default();
        c.backends.insert(
            "t".into(),
            serde_json::from_value(serde_json::json!({"type": "traefik_file", "path": "/x"}))
                .unwrap(),
        );
        let both = vars(&[
            ("CATTLE_URL", "http://r/v1"),
            ("CONSUL_HTTP_ADDR", "c:8500"),
        ]);
        assert!(zero_config(&mut c, &both).is_empty());
        assert!(
            c.sources.is_empty(),
            "a configured backend is never joined by implied ones"
        );
    }

    #[test]
    fn changed_names_the_leaves() {
        let b: toml::Value = toml::from_str("url = ''\n[tls]\nca = 'a'").unwrap();
        let a: toml::Value = toml::from_str("url = 'x'\nkey = 'k'\n[tls]\nca = 'a'").unwrap();
        assert_eq!(changed(&b, &a, ""), ["key", "url"]);
    }
}
