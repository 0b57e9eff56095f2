//! figment layering: defaults < conventional env < TOML file < `RANCON_*` env < CLI `--set`.

use super::report::{ConfigError, Problem};
use super::{Component, Config};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
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
}

/// Environment variables under `RANCON_` that are not config keys.
const NOT_KEYS: &[&str] = &["config", "log", "log_format"];

/// Builds the layered figment without extracting it.
pub fn figment<S: Component, B: Component>(opts: &LoadOptions) -> Result<Figment, ConfigError> {
    too_deep_env()?;
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
    let mut fig = Figment::from(Serialized::defaults(Config::<S, B>::default()));
    if let Some(path) = &opts.file {
        fig = fig.merge(Toml::file_exact(path));
    }
    fig = fig.merge(
        Env::prefixed("RANCON_")
            .split("__")
            .filter(|k| !NOT_KEYS.iter().any(|n| k.as_str().eq_ignore_ascii_case(n)))
            .filter(|k| {
                !LEGACY_ENV
                    .iter()
                    .any(|(n, _)| n[7..].eq_ignore_ascii_case(k.as_str()))
            }),
    );
    Ok(fig.merge(CliSets::parse(&opts.sets)?))
}

/// Loads and shape-checks the configuration (types, unknown keys); see `validate` for meaning.
pub fn load<S: Component, B: Component>(opts: &LoadOptions) -> Result<Loaded<S, B>, ConfigError> {
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
    let figment = figment::<S, B>(opts)?;
    let mut config = match figment.extract::<Config<S, B>>() {
        Ok(c) => c,
        Err(first) => return Err(every_shape_error::<S, B>(&figment, first)),
    };
    // The lowest layer above defaults: the variables other tools read fill fields that no
    // file, `RANCON_*` variable or `--set` has set.
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    for c in config.sources.values_mut() {
        c.conventional_env(&var);
    }
    for c in config.backends.values_mut() {
        c.conventional_env(&var);
    }
    Ok(Loaded { config, figment })
}

/// figment parses `RANCON_*` values recursively: `RANCON_OWNER="[[[[…"` would overflow the
/// stack. No configuration value needs more than a few levels.
const MAX_ENV_DEPTH: usize = 32;

fn too_deep_env() -> Result<(), ConfigError> {
    let problems: Vec<Problem> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let k = k.to_str()?.to_string();
            let deep = k.starts_with("RANCON_") && nesting(&v.to_string_lossy()) > MAX_ENV_DEPTH;
            deep.then(|| Problem {
                key: k.trim_start_matches("RANCON_").to_ascii_lowercase(),
                message: format!("value nests deeper than {MAX_ENV_DEPTH} levels"),
                origin: Some(format!("env {k}")),
            })
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError { problems })
    }
}

/// The deepest nesting of `[` and `{` in a value.
fn nesting(value: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for c in value.chars() {
        match c {
            '[' | '{' => {
                depth += 1;
                max = max.max(depth);
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// `--set key.path=value` overrides; values parse as TOML (`5`, `true`, `["a"]`), else string.
struct CliSets(Vec<(String, toml::Value)>);

impl CliSets {
    fn parse(sets: &[String]) -> Result<Self, ConfigError> {
        let mut out = Vec::new();
        let mut problems = Vec::new();
        for s in sets {
            match s.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    let value = toml::from_str::<toml::Table>(&format!("v = {v}"))
                        .ok()
                        .and_then(|mut t| t.remove("v"))
                        .unwrap_or_else(|| toml::Value::String(v.to_string()));
                    out.push((k.trim().to_string(), value));
                }
                // Not echoed: a secret typed with the wrong separator would be printed.
                _ => problems.push(Problem {
                    key: String::new(),
                    message: format!(
                        "--set #{} is not KEY=VALUE (e.g. --set interval=10s); its text is not shown, it may hold a secret",
                        problems.len() + out.len() + 1
                    ),
                    origin: Some("command line --set".into()),
                }),
            }
        }
        if problems.is_empty() {
            Ok(Self(out))
        } else {
            Err(ConfigError { problems })
        }
    }
}

impl Provider for CliSets {
    fn metadata(&self) -> Metadata {
        Metadata::named("command line").interpolater(|_, keys| format!("--set {}", keys.join(".")))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        // Built as one plain table so figment tags every value with this provider.
        let mut root = toml::Table::new();
        for (key, value) in &self.0 {
            let mut table = &mut root;
            let mut parts = key.split('.').peekable();
            while let Some(part) = parts.next() {
                if parts.peek().is_none() {
                    table.insert(part.to_string(), value.clone());
                    break;
                }
                let entry = table
                    .entry(part.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if !entry.is_table() {
                    *entry = toml::Value::Table(toml::Table::new());
                }
                table = entry.as_table_mut().expect("just made a table");
            }
        }
        Serialized::defaults(root).data()
    }
}

/// serde stops at the first error of one extraction; extracting each part on its own
/// finds the independent mistakes too, so one run reports them all.
fn every_shape_error<S: Component, B: Component>(
    figment: &Figment,
    first: figment::Error,
) -> ConfigError {
    use super::HttpConfig;
    #[derive(serde::Deserialize)]
    struct Dur(
        #[serde(with = "humantime_serde")]
        #[allow(dead_code)]
        std::time::Duration,
    );

    let mut problems = ConfigError::from(first).problems;
    // Optional sections serialize to nothing; give them a value so they count as known.
    let probe = Config::<S, B> {
        leader: Some(super::LeaderConfig {
            backend: String::new(),
            url: None,
            key: None,
            ttl: std::time::Duration::ZERO,
            lock_delay: std::time::Duration::ZERO,
        }),
        ..Config::default()
    };
    let known: Vec<String> = toml::Table::try_from(probe)
        .map(|t| t.into_iter().map(|(k, _)| k).collect())
        .unwrap_or_default();
    let top: std::collections::BTreeSet<String> = figment
        .data()
        .map(|m| m.into_values().flat_map(|d| d.into_keys()).collect())
        .unwrap_or_default();
    for key in top.into_iter().filter(|k| !known.contains(k)) {
        let origin = super::report::origin_of(figment, &key);
        let p = Problem {
            message: format!("unknown key; expected one of {}", known.join(", ")),
            key,
            origin,
        };
        if !problems.iter().any(|q| q.key == p.key) {
            problems.push(p);
        }
    }
    let mut more = |r: Result<(), figment::Error>| {
        if let Err(e) = r {
            for mut p in ConfigError::from(e).problems {
                // A tagged enum reports at the component; its table still has an origin.
                if p.origin.is_none() {
                    p.origin = super::report::origin_of(figment, &p.key);
                }
                if !problems
                    .iter()
                    .any(|q| q.key == p.key && q.message == p.message)
                {
                    problems.push(p);
                }
            }
        }
    };
    more(figment.extract_inner::<String>("label_prefix").map(drop));
    more(figment.extract_inner::<String>("owner").map(drop));
    more(figment.extract_inner::<Dur>("interval").map(drop));
    more(figment.extract_inner::<String>("name").map(drop));
    more(
        figment
            .extract_inner::<f64>("max_deregister_fraction")
            .map(drop),
    );
    more(figment.extract_inner::<HttpConfig>("http").map(drop));
    more(figment.extract_inner::<Dur>("shutdown_timeout").map(drop));
    more(figment.extract_inner::<u64>("max_response_size").map(drop));
    if figment.find_value("leader").is_ok() {
        more(
            figment
                .extract_inner::<super::LeaderConfig>("leader")
                .map(drop),
        );
    }
    for (table, is_source) in [("sources", true), ("backends", false)] {
        let names: Vec<String> = figment
            .find_value(table)
            .ok()
            .and_then(|v| v.into_dict())
            .map(|d| d.into_keys().collect())
            .unwrap_or_default();
        for name in names {
            let key = format!("{table}.{name}");
            more(if is_source {
                figment.extract_inner::<S>(&key).map(drop)
            } else {
                figment.extract_inner::<B>(&key).map(drop)
            });
        }
    }
    ConfigError { problems }
}
