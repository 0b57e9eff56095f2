//! Pure helpers that turn endpoint properties into Consul's names, ids, tags, meta and checks.

use serde::{Deserialize, Serialize};

pub use crate::consul::go_duration;
pub use crate::labels::{CHECKS_META, OWNER_META, RESERVED_META, meta_key, service_id};

/// Key in `Registration.private.attrs` of the check specs (JSON) the register body is made
/// from; meta `rancon-checks` holds only their digest.
pub const CHECKS_ATTR: &str = "checks";

/// What meta `rancon-checks` records of the checks rancon attached: the first 16 hex digits of
/// the SHA-256 of their JSON. The JSON itself grows with each check's target and passed Consul's
/// 512-character meta value limit with a long HTTP check path; a digest stays 16 characters.
/// Listings compare the digest only. Registrations written before the digest (full JSON in
/// the meta value) differ from it, so each is rewritten once after the upgrade.
pub fn checks_digest(json: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, json.as_bytes());
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}
/// Whether a tag is an ownership marker (`rancon-<owner>`), which only rancon sets.
pub fn is_marker_tag(tag: &str) -> bool {
    tag.starts_with("rancon-")
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

/// What a check rancon attaches does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// A TTL check mirroring the source's health.
    Source,
    /// Consul requests a URL.
    Http,
    /// Consul opens a TCP connection.
    Tcp,
}

impl CheckKind {
    /// The word in check ids and names.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Source => "source",
            CheckKind::Http => "http",
            CheckKind::Tcp => "tcp",
        }
    }
}

/// One check rancon attaches, as recorded in the `rancon-checks` meta value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSpec {
    /// What it does.
    pub kind: CheckKind,
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
        format!("service:{service_id}:{}", self.kind.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::split_tags;

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
    fn the_checks_digest_is_short_and_stable() {
        // SHA-256 of "[]" begins 4f53cda18c2baa0c.
        assert_eq!(checks_digest("[]"), "4f53cda18c2baa0c");
        let long = format!("[{{\"target\":\"http://h:1/{}\"}}]", "x".repeat(2000));
        assert_eq!(checks_digest(&long).len(), 16);
        assert_ne!(checks_digest(&long), checks_digest("[]"));
    }

    #[test]
    fn meta_keys_and_dns_labels() {
        assert_eq!(meta_key("team.name/x"), "team_name_x");
        assert!(is_dns_label("web-1"));
        assert!(!is_dns_label("web_1"));
        assert!(!is_dns_label("-web"));
        assert!(!is_dns_label(""));
    }
}
