//! gliderlabs/registrator's conventions: `SERVICE_*` variables and labels, read as
//! registrator reads them (gliderlabs/registrator `bridge/util.go` `serviceMetaData`,
//! `bridge/bridge.go` `newService`), and turned into rancon labels.

use std::collections::{BTreeMap, BTreeSet};

/// Registrator's metadata of one exposed port: lower-case keys without `SERVICE_`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Metadata {
    pub values: BTreeMap<String, String>,
    /// Keys set by a `SERVICE_<port>_<key>` of this port.
    pub from_port: BTreeSet<String>,
}

/// `serviceMetaData`: the environment first, then the labels, so a label wins over a variable
/// of the same key; `SERVICE_<port>_<key>` applies to that exposed port only and, once set,
/// no generic `SERVICE_<key>` replaces it, whatever the order. A `SERVICE_<n>_<key>` of
/// another port is ignored. The port is compared as text, as registrator does (`080` is not
/// port 80).
pub(super) fn metadata(env: &[String], labels: &BTreeMap<String, String>, port: u16) -> Metadata {
    let port = port.to_string();
    let mut m = Metadata::default();
    let pairs = env
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .chain(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    for (k, v) in pairs {
        let Some(key) = k.strip_prefix("SERVICE_") else {
            continue;
        };
        let key = key.to_lowercase();
        if m.from_port.contains(&key) {
            continue;
        }
        match key.split_once('_') {
            // Go's `strconv.Atoi` accepts a sign: `SERVICE_+80_NAME` is a port key too.
            Some((p, rest)) if p.parse::<i64>().is_ok() => {
                if p != port {
                    continue;
                }
                m.values.insert(rest.to_string(), v.to_string());
                m.from_port.insert(rest.to_string());
            }
            _ => {
                m.values.insert(key, v.to_string());
            }
        }
    }
    m
}

/// What registrator makes of one port: the service name, and rancon labels for the rest.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Service {
    /// `SERVICE_NAME` (or the port's), else the image's base name without tag; with several
    /// ports and no port-specific name, `-<exposed port>` appended.
    pub name: String,
    /// `<prefix>.tags`, `<prefix>.id`, `<prefix>.check.*`, `<prefix>.meta.*`, values escaped
    /// for templates.
    pub labels: BTreeMap<String, String>,
}

/// Where the endpoint is, for checks that name it.
pub(super) struct At<'a> {
    pub image: &'a str,
    pub private: u16,
    pub protocol: &'a str,
    /// The container has more than one registered port (registrator's `isGroup`).
    pub group: bool,
    pub host: &'a str,
    pub port: u16,
}

/// `newService` for one port; `None` when `SERVICE_IGNORE` (or the port's) is set to any
/// non-empty value (registrator: `mapDefault(metadata, "ignore", "") != ""`, so even
/// `SERVICE_IGNORE=false` ignores).
pub(super) fn service(m: &Metadata, at: &At<'_>, prefix: &str) -> Option<Service> {
    let get = |k: &str| m.values.get(k).filter(|v| !v.is_empty());
    if get("ignore").is_some() {
        return None;
    }
    // `strings.Split(path.Base(container.Config.Image), ":")[0]`
    let base = at.image.rsplit('/').next().unwrap_or(at.image);
    let mut name = get("name")
        .cloned()
        .unwrap_or_else(|| base.split(':').next().unwrap_or(base).to_string());
    if at.group && !m.from_port.contains("name") {
        name = format!("{name}-{}", at.private);
    }
    let mut labels = BTreeMap::new();
    let mut put = |key: &str, value: String| {
        labels.insert(format!("{prefix}.{key}"), value.replace('%', "%%"));
    };
    // Tags split on commas not preceded by `\` (`recParseEscapedComma`), as rancon's own
    // `tags` label is; udp ports get tag `udp`.
    let mut tags = get("tags").cloned().unwrap_or_default();
    if at.protocol == "udp" {
        tags = if tags.is_empty() {
            "udp".into()
        } else {
            format!("{tags},udp")
        };
    }
    if !tags.is_empty() {
        put("tags", tags);
    }
    let host = crate::model::bracket(at.host);
    for (key, value) in &m.values {
        match key.as_str() {
            "name" | "tags" | "ignore" => {}
            "id" if !value.is_empty() => put("id", value.clone()),
            "id" => {}
            // consul/consul.go `buildCheck`: `http://<ip>:<port><path>`, https alike.
            "check_http" => put("check.http", format!("http://{host}:{}{value}", at.port)),
            "check_https" => put("check.http", format!("https://{host}:{}{value}", at.port)),
            // Any value turns the TCP check on, aimed at the service's own address.
            "check_tcp" if !value.is_empty() => put("check.tcp", "true".into()),
            "check_interval" | "check_timeout" | "check_deregister_after" => {
                put(&key.replacen('_', ".", 1), value.clone())
            }
            k if k.starts_with("check_") => {
                tracing::debug!(
                    key = %format!("SERVICE_{}", k.to_uppercase()).escape_debug(),
                    "registrator check kind not supported; ignored"
                );
            }
            other => put(&format!("meta.{other}"), value.clone()),
        }
    }
    Some(Service { name, labels })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(kv: &[&str]) -> Vec<String> {
        kv.iter().map(|s| s.to_string()).collect()
    }

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn at(private: u16, protocol: &'static str, group: bool) -> At<'static> {
        At {
            image: "registry:5000/team/redis:7",
            private,
            protocol,
            group,
            host: "10.0.0.5",
            port: 10000,
        }
    }

    #[test]
    fn labels_win_over_env_and_port_keys_over_generic_ones() {
        let m = metadata(
            &env(&[
                "SERVICE_NAME=a",
                "SERVICE_80_TAGS=x",
                "SERVICE_REGION=eu",
                "PATH=/bin",
            ]),
            &labels(&[
                ("SERVICE_NAME", "b"),
                ("SERVICE_TAGS", "y"),
                ("SERVICE_443_NAME", "c"),
            ]),
            80,
        );
        assert_eq!(m.values["name"], "b");
        assert_eq!(m.values["tags"], "x", "the port's tags stay");
        assert_eq!(m.values["region"], "eu");
        assert!(!m.values.contains_key("443_name") && m.values.len() == 3);
        assert!(m.from_port.contains("tags"));
        // Port keys compare as text, as in registrator.
        let m = metadata(&env(&["SERVICE_080_NAME=z"]), &labels(&[]), 80);
        assert!(m.values.is_empty());
    }

    #[test]
    fn names_follow_registrator() {
        let none = metadata(&[], &labels(&[]), 6379);
        assert_eq!(
            service(&none, &at(6379, "tcp", false), "rancon")
                .unwrap()
                .name,
            "redis"
        );
        assert_eq!(
            service(&none, &at(6379, "tcp", true), "rancon")
                .unwrap()
                .name,
            "redis-6379"
        );
        let named = metadata(&env(&["SERVICE_NAME=db"]), &labels(&[]), 6379);
        assert_eq!(
            service(&named, &at(6379, "tcp", true), "rancon")
                .unwrap()
                .name,
            "db-6379"
        );
        let port = metadata(&env(&["SERVICE_6379_NAME=cache"]), &labels(&[]), 6379);
        assert_eq!(
            service(&port, &at(6379, "tcp", true), "rancon")
                .unwrap()
                .name,
            "cache"
        );
    }

    #[test]
    fn ignore_is_any_non_empty_value() {
        for v in ["true", "false", "1"] {
            let m = metadata(&[format!("SERVICE_IGNORE={v}")], &labels(&[]), 80);
            assert_eq!(service(&m, &at(80, "tcp", false), "rancon"), None);
        }
        let m = metadata(&env(&["SERVICE_IGNORE="]), &labels(&[]), 80);
        assert!(service(&m, &at(80, "tcp", false), "rancon").is_some());
        let m = metadata(&env(&["SERVICE_81_IGNORE=1"]), &labels(&[]), 80);
        assert!(service(&m, &at(80, "tcp", false), "rancon").is_some());
    }

    #[test]
    fn the_rest_becomes_rancon_labels() {
        let m = metadata(
            &env(&[
                "SERVICE_TAGS=a,b\\,c",
                "SERVICE_ID=custom",
                "SERVICE_CHECK_HTTP=/health",
                "SERVICE_CHECK_INTERVAL=5s",
                "SERVICE_CHECK_TCP=yes",
                "SERVICE_CHECK_SCRIPT=x",
                "SERVICE_VERSION=100%",
            ]),
            &labels(&[]),
            53,
        );
        let s = service(&m, &at(53, "udp", false), "rc").unwrap();
        let got: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            got,
            [
                "rc.check.http=http://10.0.0.5:10000/health",
                "rc.check.interval=5s",
                "rc.check.tcp=true",
                "rc.id=custom",
                "rc.meta.version=100%%",
                "rc.tags=a,b\\,c,udp",
            ]
        );
    }
}
