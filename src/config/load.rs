//! figment layering: defaults < conventional env < TOML file < `RANCON_*` env < CLI `--set`;
//! loading reads what it can (`load_partial`) so meaning checks still run on the rest.

use super::raw::{self, Layer};
use super::report::{ConfigError, Problem};
use super::schema::{self, Keys};
use super::{Component, Config, extract};
use figment::Figment;
use figment::providers::{Format, Toml};
use figment::value::{Dict, Value};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// What the command line says about where configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--config FILE` (or `RANCON_CONFIG`); a named file that is missing is an error.
    pub file: Option<PathBuf>,
    /// `--set key.path=value` overrides, in order.
    pub sets: Vec<String>,
    /// Loading for the original command line: its variables (`LEGACY_ENV`) are expected.
    pub legacy: bool,
}

/// The original tool's environment variables: never configuration keys, and an error with the
/// new form (so `RANCON_WAIT=10` is not silently ignored, nor read as a key `wait`).
pub const LEGACY_ENV: &[(&str, &str)] = &[
    ("RANCON_SOURCE", "sources.<name>.type"),
    ("RANCON_REGISTRY", "backends.<name>.type"),
    ("RANCON_FRONTEND_OPTIONS", "[sources.<name>] keys"),
    ("RANCON_BACKEND_OPTIONS", "[backends.<name>] keys"),
    ("RANCON_FOREGROUND", "`rancon run` without --once"),
    ("RANCON_WAIT", "interval (RANCON_INTERVAL)"),
    (
        "RANCON_HANGUP_SECONDS",
        "http.hangup_after (RANCON_HTTP__HANGUP_AFTER)",
    ),
    ("RANCON_VERBOSE", "-v / RANCON_LOG"),
];

/// A loaded (shape-checked) configuration plus the figment it came from, for origins.
#[derive(Debug)]
pub struct Loaded<S, B> {
    /// The extracted configuration.
    pub config: Config<S, B>,
    /// The layered providers, to find where any value came from.
    pub figment: Figment,
    /// Keys whose values could not be read (`interval`, `sources.s`): their defaults stand in
    /// (a component is left out), and checks that would only repeat the problem skip them.
    pub unloaded: BTreeSet<String>,
}

/// Environment variables under `RANCON_` that are not config keys.
const NOT_KEYS: &[&str] = &["config", "log", "log_format"];

/// Builds the layered figment without extracting it.
pub fn figment<S: Component, B: Component>(opts: &LoadOptions) -> Result<Figment, ConfigError> {
    if !opts.legacy {
        let problems: Vec<Problem> = LEGACY_ENV
            .iter()
            .filter(|(k, _)| std::env::var_os(k).is_some())
            .map(|(k, instead)| Problem {
                key: String::new(),
                message: format!(
                    "{k} belongs to the original command line (`rancon rancher consul …`); with this form use {instead}"
                ),
                origin: Some(format!("env {k}")),
            })
            .collect();
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
    }
    let defaults = Value::serialize(Config::<S, B>::default())
        .ok()
        .and_then(Value::into_dict)
        .unwrap_or_default();
    let mut fig = Figment::from(Layer::new("default", defaults));
    if let Some(path) = &opts.file {
        fig = fig.merge(Toml::file_exact(path));
    }
    let skip = |k: &str| {
        NOT_KEYS.iter().any(|n| k.eq_ignore_ascii_case(n))
            || LEGACY_ENV
                .iter()
                .any(|(n, _)| n[7..].eq_ignore_ascii_case(k))
    };
    let (env, mut problems) = raw::from_env(&skip);
    let (sets, more) = raw::from_sets(&opts.sets);
    problems.extend(more);
    problems.extend(raw::too_deep(&env));
    problems.extend(raw::too_deep(&sets));
    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }
    let texts: Vec<raw::Text> = env.into_iter().chain(sets).collect();
    if !texts.is_empty() {
        let keys = Keys::new(&schema::schema_for::<Config<S, B>>());
        for layer in raw::layers(&texts, &keys, &fig) {
            fig = fig.merge(layer);
        }
    }
    Ok(fig)
}

/// Loads and shape-checks the configuration (types, unknown keys); see `validate` for meaning.
pub fn load<S: Component, B: Component>(opts: &LoadOptions) -> Result<Loaded<S, B>, ConfigError> {
    let (loaded, problems) = load_partial(opts)?;
    if problems.is_empty() {
        Ok(loaded)
    } else {
        Err(ConfigError { problems })
    }
}

/// Loads what can be read, with the shape problems of what cannot (see `Loaded::unloaded`),
/// so the meaning checks can still run on the rest. Fails only when nothing can be read.
pub fn load_partial<S: Component, B: Component>(
    opts: &LoadOptions,
) -> Result<(Loaded<S, B>, Vec<Problem>), ConfigError> {
    if let Some(path) = &opts.file
        && !path.is_file()
    {
        return Err(ConfigError {
            problems: vec![Problem {
                key: String::new(),
                message: format!(
                    "config file {} does not exist or is not a file",
                    path.display()
                ),
                origin: Some("--config / RANCON_CONFIG".into()),
            }],
        });
    }
    let mut figment = figment::<S, B>(opts)?;
    let extracted = extract::extract::<S, B>(&figment)?;
    let mut config = extracted.config;
    // The lowest layer above defaults: the variables other tools read fill fields that no
    // file, `RANCON_*` variable or `--set` has set.
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut filled = Vec::new();
    for (name, c) in config.sources.iter_mut() {
        filled.extend(conventional(c, &["sources", name], &var));
    }
    for (name, c) in config.backends.iter_mut() {
        filled.extend(conventional(c, &["backends", name], &var));
    }
    for layer in filled {
        figment = figment.merge(layer);
    }
    let loaded = Loaded {
        config,
        figment,
        unloaded: extracted.unloaded,
    };
    Ok((loaded, extracted.problems))
}

/// Applies `c.conventional_env` and returns, as layers named after them, the variables each
/// filled value came from (`env CONSUL_CACERT`), so reports name them. A value's variables
/// are those without which it would differ; a filled value that depends on none is a default.
pub fn conventional<C: Component>(
    c: &mut C,
    at: &[&str],
    var: &dyn Fn(&str) -> Option<String>,
) -> Vec<Layer> {
    let read = RefCell::new(BTreeSet::new());
    let fill = |without: Option<&str>| {
        let mut filled = c.clone();
        filled.conventional_env(&|k: &str| {
            let v = var(k).filter(|_| without != Some(k));
            if v.is_some() {
                read.borrow_mut().insert(k.to_string());
            }
            v
        });
        filled
    };
    let all = fill(None);
    let (before, after) = (leaves(&*c), leaves(&all));
    let changed: Vec<&Vec<String>> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|(k, _)| k)
        .collect();
    let mut origins: BTreeMap<&Vec<String>, Vec<String>> = BTreeMap::new();
    let vars: Vec<String> = read.borrow().iter().cloned().collect();
    for v in &vars {
        let without = leaves(&fill(Some(v)));
        for k in &changed {
            if without.get(*k) != after.get(*k) {
                origins.entry(k).or_default().push(v.clone());
            }
        }
    }
    let mut layers: BTreeMap<String, Layer> = BTreeMap::new();
    for k in changed {
        let origin = match origins.get(k) {
            Some(vars) => format!("env {}", vars.join(", ")),
            None => "default".into(),
        };
        let mut path: Vec<String> = at.iter().map(|s| s.to_string()).collect();
        path.extend(k.iter().cloned());
        layers
            .entry(origin.clone())
            .or_insert_with(|| Layer::new(origin, Dict::new()))
            .insert(&path, after[k].clone());
    }
    *c = all;
    layers.into_values().collect()
}

/// Every leaf (a value that is not a table) of `c` serialized, by path.
fn leaves(c: &impl serde::Serialize) -> BTreeMap<Vec<String>, Value> {
    fn walk(v: Value, path: &mut Vec<String>, out: &mut BTreeMap<Vec<String>, Value>) {
        match v {
            Value::Dict(_, d) => {
                for (k, v) in d {
                    path.push(k);
                    walk(v, path, out);
                    path.pop();
                }
            }
            v => {
                out.insert(path.clone(), v);
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Ok(v) = Value::serialize(c) {
        walk(v, &mut Vec::new(), &mut out);
    }
    out
}
