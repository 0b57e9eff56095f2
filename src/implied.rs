//! What the environment adds to a configuration: the zero-config start (a `rancher` source into
//! a `consul` backend from `RANCHER_URL` and `CONSUL_HTTP_ADDR`), and which fields the variables
//! other tools read (`RANCHER_*`, `CATTLE_*`, `CONSUL_*`) filled — for `rancon check`.

use crate::backend::BackendConfig;
use crate::build::Loaded;
use crate::config::load::conventional;
use crate::config::raw::Layer;
use crate::config::report::locate;
use crate::source::SourceConfig;
use figment::value::Value;

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
/// configuration with any component (even one that could not be read) is left alone: the
/// environment never adds to it. The implied values get origins like any other, so reports
/// name them (`type` from `zero-config start`, `url` from `env RANCHER_URL`).
pub fn zero_config(
    loaded: &mut Loaded,
    var: &dyn Fn(&str) -> Option<String>,
) -> Vec<ImpliedComponent> {
    let config = &mut loaded.config;
    let configured = |key: &str| {
        loaded
            .unloaded
            .iter()
            .any(|u| u.split('.').next() == Some(key))
    };
    if !config.sources.is_empty()
        || !config.backends.is_empty()
        || configured("sources")
        || configured("backends")
    {
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
    let origin = format!("zero-config start ({rancher} and CONSUL_HTTP_ADDR)");
    let mut implied = Layer::new(origin, Default::default());
    let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    implied.insert(&path(&["sources", "rancher", "type"]), "rancher".into());
    implied.insert(&path(&["backends", "consul", "type"]), "consul".into());
    let mut layers = vec![implied];
    layers.extend(conventional(&mut source, &["sources", "rancher"], var));
    layers.extend(conventional(&mut backend, &["backends", "consul"], var));
    config.sources.insert("rancher".into(), source);
    config.backends.insert("consul".into(), backend);
    for layer in layers {
        loaded.figment = std::mem::take(&mut loaded.figment).merge(layer);
    }
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

/// Every component field a variable other tools read (`RANCHER_*`, `CATTLE_*`, `CONSUL_*`)
/// set, with that origin (`env CATTLE_URL`), in key order: what `rancon check` names.
pub fn conventional_origins(loaded: &Loaded) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut visit = |table: &str, name: &str, value: Value| {
        let mut leaves = Vec::new();
        walk(value, &mut vec![table.into(), name.into()], &mut leaves);
        for path in leaves {
            let (key, origin) = locate(&loaded.figment, &path);
            if let Some(o) = origin
                && o.starts_with("env ")
                && !o.starts_with("env RANCON_")
            {
                out.push((key, o));
            }
        }
    };
    for (name, c) in &loaded.config.sources {
        if let Ok(v) = Value::serialize(c) {
            visit("sources", name, v);
        }
    }
    for (name, c) in &loaded.config.backends {
        if let Ok(v) = Value::serialize(c) {
            visit("backends", name, v);
        }
    }
    out
}

/// The paths of the leaves (values that are not tables) under `path`.
fn walk(value: Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match value {
        Value::Dict(_, d) => {
            for (k, v) in d {
                path.push(k);
                walk(v, path, out);
                path.pop();
            }
        }
        _ => out.push(path.clone()),
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

    fn empty() -> Loaded {
        Loaded {
            config: Default::default(),
            figment: figment::Figment::new(),
            unloaded: Default::default(),
        }
    }

    #[test]
    fn both_variables_imply_a_rancher_source_into_a_consul_backend() {
        let mut l = empty();
        let got = zero_config(
            &mut l,
            &vars(&[
                ("RANCHER_URL", "http://rancher:8080/v2-beta"),
                ("CONSUL_HTTP_ADDR", "consul:8500"),
            ]),
        );
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].because, ["RANCHER_URL"]);
        match &l.config.sources["rancher"] {
            SourceConfig::Rancher(r) => assert_eq!(r.url, "http://rancher:8080/v2-beta"),
            other => panic!("not a rancher source: {other:?}"),
        }
        assert!(matches!(
            l.config.backends["consul"],
            BackendConfig::Consul(_)
        ));
        let pair = |k: &str, o: &str| (k.to_string(), o.to_string());
        assert_eq!(
            conventional_origins(&l),
            [
                pair("sources.rancher.url", "env RANCHER_URL"),
                pair("backends.consul.url", "env CONSUL_HTTP_ADDR"),
            ]
        );
    }

    #[test]
    fn nothing_is_implied_from_one_variable_or_into_a_configured_one() {
        let mut l = empty();
        assert!(zero_config(&mut l, &vars(&[("RANCHER_URL", "http://r/v1")])).is_empty());
        assert!(zero_config(&mut l, &vars(&[("CONSUL_HTTP_ADDR", "c:8500")])).is_empty());
        assert!(l.config.sources.is_empty() && l.config.backends.is_empty());
        let both = vars(&[
            ("CATTLE_URL", "http://r/v1"),
            ("CONSUL_HTTP_ADDR", "c:8500"),
        ]);
        let mut l = empty();
        l.config.backends.insert(
            "t".into(),
            serde_json::from_value(serde_json::json!({"type": "traefik_file", "path": "/x"}))
                .unwrap(),
        );
        assert!(zero_config(&mut l, &both).is_empty());
        assert!(
            l.config.sources.is_empty(),
            "a configured backend is never joined by implied ones"
        );
        // A source that was configured but could not be read is configured all the same.
        let mut l = empty();
        l.unloaded.insert("sources.broken".into());
        assert!(zero_config(&mut l, &both).is_empty());
    }
}
