//! figment layering: defaults < conventional env < TOML file < `RANCON_*` env < CLI `--set`.

use super::RawConfig;
use super::report::{ConfigError, Problem};
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
}

/// A loaded (shape-checked) configuration plus the figment it came from, for origins.
#[derive(Debug)]
pub struct Loaded {
    /// The extracted configuration.
    pub raw: RawConfig,
    /// The layered providers, to find where any value came from.
    pub figment: Figment,
}

/// Environment variables under `RANCON_` that are not config keys.
const NOT_KEYS: &[&str] = &["config", "log"];

/// Builds the layered figment without extracting it.
pub fn figment(opts: &LoadOptions) -> Result<Figment, ConfigError> {
    let mut fig = Figment::from(Serialized::defaults(RawConfig::default()));
    if let Some(path) = &opts.file {
        fig = fig.merge(Toml::file_exact(path));
    }
    fig = fig.merge(
        Env::prefixed("RANCON_")
            .split("__")
            .filter(|k| !NOT_KEYS.iter().any(|n| k.as_str().eq_ignore_ascii_case(n))),
    );
    Ok(fig.merge(CliSets::parse(&opts.sets)?))
}

/// Loads and shape-checks the configuration (types, unknown keys); see `validate` for meaning.
pub fn load(opts: &LoadOptions) -> Result<Loaded, ConfigError> {
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
    let figment = figment(opts)?;
    let mut raw = match figment.extract::<RawConfig>() {
        Ok(raw) => raw,
        Err(first) => return Err(every_shape_error(&figment, first)),
    };
    conventional_env(&mut raw, |k| {
        std::env::var(k).ok().filter(|v| !v.is_empty())
    });
    Ok(Loaded { raw, figment })
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
                _ => problems.push(Problem {
                    key: s.clone(),
                    message: "expected KEY=VALUE, e.g. --set interval=10s".into(),
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

/// The lowest layer above defaults: the variables other Rancher tools read fill fields that
/// no file, `RANCON_*` variable or `--set` has set.
fn conventional_env(raw: &mut RawConfig, var: impl Fn(&str) -> Option<String>) {
    for src in raw.sources.values_mut() {
        if let super::SourceConfig::Rancher(r) = src {
            if r.url.is_empty() {
                r.url = var("RANCHER_URL").unwrap_or_default();
            }
            if r.access_key.is_none() {
                r.access_key = var("RANCHER_ACCESS_KEY");
            }
            if r.secret_key.is_none() && r.secret_key_file.is_none() {
                r.secret_key = var("RANCHER_SECRET_KEY").map(super::Secret::new);
            }
        }
    }
    for be in raw.backends.values_mut() {
        if let super::BackendConfig::Consul(c) = be {
            consul_env(c, &var);
        }
    }
}

/// The variables of Consul's own CLI and API client (`api/api.go` `defaultConfig`).
fn consul_env(c: &mut super::ConsulBackendConfig, var: &impl Fn(&str) -> Option<String>) {
    // Go's strconv.ParseBool, which Consul uses for its boolean variables.
    let flag = |k: &str| match var(k).as_deref() {
        Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Some(true),
        Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Some(false),
        _ => None,
    };
    if c.url.is_empty() {
        c.url = match var("CONSUL_HTTP_ADDR") {
            Some(a) if a.contains("://") => a,
            Some(a) if flag("CONSUL_HTTP_SSL") == Some(true) => format!("https://{a}"),
            Some(a) => format!("http://{a}"),
            None => super::consul::DEFAULT_URL.into(),
        };
    }
    if c.token.is_none() && c.token_file.is_none() {
        c.token_file = var("CONSUL_HTTP_TOKEN_FILE").map(PathBuf::from);
        if c.token_file.is_none() {
            c.token = var("CONSUL_HTTP_TOKEN").map(super::Secret::new);
        }
    }
    let tls = &mut c.tls;
    if tls.ca_file.is_none() {
        tls.ca_file = var("CONSUL_CACERT").map(PathBuf::from);
    }
    if tls.cert_file.is_none() && tls.key_file.is_none() {
        tls.cert_file = var("CONSUL_CLIENT_CERT").map(PathBuf::from);
        tls.key_file = var("CONSUL_CLIENT_KEY").map(PathBuf::from);
    }
    if tls.server_name.is_none() {
        // Consul strips a `:port` from the name.
        tls.server_name = var("CONSUL_TLS_SERVER_NAME")
            .map(|n| n.rsplit_once(':').map_or(n.clone(), |(h, _)| h.to_string()));
    }
    if !tls.insecure && flag("CONSUL_HTTP_SSL_VERIFY") == Some(false) {
        tls.insecure = true;
    }
}

/// serde stops at the first error of one extraction; extracting each part on its own
/// finds the independent mistakes too, so one run reports them all.
fn every_shape_error(figment: &Figment, first: figment::Error) -> ConfigError {
    use super::{BackendConfig, HttpConfig, SourceConfig};
    #[derive(serde::Deserialize)]
    struct Dur(
        #[serde(with = "humantime_serde")]
        #[allow(dead_code)]
        std::time::Duration,
    );

    let mut problems = ConfigError::from(first).problems;
    // Optional sections serialize to nothing; give them a value so they count as known.
    let probe = RawConfig {
        leader: Some(super::LeaderConfig {
            backend: String::new(),
            url: None,
            key: None,
            ttl: std::time::Duration::ZERO,
            lock_delay: std::time::Duration::ZERO,
        }),
        ..RawConfig::default()
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
                figment.extract_inner::<SourceConfig>(&key).map(drop)
            } else {
                figment.extract_inner::<BackendConfig>(&key).map(drop)
            });
        }
    }
    ConfigError { problems }
}
