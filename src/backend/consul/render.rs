//! Pure helpers that turn endpoint properties into Consul's names, ids, tags, meta and checks.

use serde::{Deserialize, Serialize};

/// Meta keys rancon sets itself; config and labels cannot override them.
pub const RESERVED_META: &[&str] = &[OWNER_META, "external-source", CHECKS_META];
/// Meta key naming the owning rancon deployment.
pub const OWNER_META: &str = "rancon-owner";
/// Meta key holding the checks rancon attached (compact JSON), so a listing alone tells
/// whether they changed.
pub const CHECKS_META: &str = "rancon-checks";
/// Keys starting with `@` never reach Consul: the agent a registration lives on, and the
/// real service id of a duplicate found on a second agent.
pub const AGENT_KEY: &str = "@agent";
pub const ID_KEY: &str = "@id";

/// Whether a meta key is one of rancon's internal `@` keys.
pub fn is_reserved_internal(key: &str) -> bool {
    key.starts_with('@')
}

/// Lower-cases and maps every character outside `[a-z0-9-]` to `-` (the service id rule).
pub fn service_id(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Consul's allowed meta key characters are `[A-Za-z0-9_-]` (at most 128).
pub fn meta_key(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect()
}

/// Whether `name` is a valid DNS label (what Consul's DNS interface can serve).
pub fn is_dns_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Splits a `rancon.tags` value on commas; `\,` keeps a comma (Traefik rules need them).
pub fn split_tags(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&',') => {
                cur.push(',');
                chars.next();
            }
            ',' => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// One check rancon attaches, as recorded in the `rancon-checks` meta value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSpec {
    /// `source` (TTL mirroring the source's health), `http` or `tcp`.
    pub kind: String,
    /// URL (http) or `host:port` (tcp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// How often Consul runs an http/tcp check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// TTL of the `source` check (agent mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// Catalog mode: the status recorded for the `source` check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// `DeregisterCriticalServiceAfter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deregister: Option<String>,
}

impl CheckSpec {
    /// The check id: `service:<service id>:<kind>`.
    pub fn id(&self, service_id: &str) -> String {
        format!("service:{service_id}:{}", self.kind)
    }
}

/// Go duration text for a std duration (`90s`, `1500ms`).
pub fn go_duration(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_lowercased_and_dashed() {
        assert_eq!(
            service_id("MyService-teststack_127.0.0.2_8080"),
            "myservice-teststack-127-0-0-2-8080"
        );
    }

    #[test]
    fn tags_split_on_unescaped_commas() {
        assert_eq!(
            split_tags(r"a, b ,traefik.frontend.rule=Host:x.org\,y.org,,"),
            vec!["a", "b", "traefik.frontend.rule=Host:x.org,y.org"]
        );
    }

    #[test]
    fn meta_keys_and_dns_labels() {
        assert_eq!(meta_key("team.name/x"), "team_name_x");
        assert!(is_dns_label("web-1"));
        assert!(!is_dns_label("web_1"));
        assert!(!is_dns_label("-web"));
        assert!(!is_dns_label(""));
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(std::time::Duration::from_secs(90)), "90s");
        assert_eq!(
            go_duration(std::time::Duration::from_millis(1500)),
            "1500ms"
        );
    }
}
