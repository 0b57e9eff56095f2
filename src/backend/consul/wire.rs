//! Consul's JSON shapes (PascalCase), as rancon sends and reads them.

use super::render::{CheckKind, CheckSpec, OWNER_META};
use crate::model::{Health, Registration};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use crate::consul::url;

/// The meta Consul stores.
fn consul_meta(reg: &Registration) -> BTreeMap<&str, &str> {
    reg.meta
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// The tags as Consul takes them (a list).
fn tags(reg: &Registration) -> Vec<&str> {
    reg.tags.iter().map(String::as_str).collect()
}

/// `PUT /v1/agent/service/register` body.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentService<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    name: &'a str,
    tags: Vec<&'a str>,
    address: &'a str,
    port: u16,
    meta: BTreeMap<&'a str, &'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    checks: Vec<AgentCheck>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AgentCheck {
    #[serde(rename = "CheckID")]
    check_id: String,
    name: String,
    #[serde(rename = "TTL", skip_serializing_if = "Option::is_none")]
    ttl: Option<String>,
    #[serde(rename = "HTTP", skip_serializing_if = "Option::is_none")]
    http: Option<String>,
    #[serde(rename = "TCP", skip_serializing_if = "Option::is_none")]
    tcp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deregister_critical_service_after: Option<String>,
}

impl<'a> AgentService<'a> {
    pub fn new(reg: &'a Registration, checks: &[CheckSpec]) -> Self {
        Self {
            id: &reg.id,
            name: &reg.name,
            tags: tags(reg),
            address: &reg.address,
            port: reg.port,
            meta: consul_meta(reg),
            checks: checks
                .iter()
                .map(|c| AgentCheck {
                    check_id: c.id(&reg.id),
                    name: format!("rancon {} check", c.kind.as_str()),
                    ttl: c.ttl.clone(),
                    http: (c.kind == CheckKind::Http)
                        .then(|| c.target.clone())
                        .flatten(),
                    tcp: (c.kind == CheckKind::Tcp)
                        .then(|| c.target.clone())
                        .flatten(),
                    interval: c.interval.clone(),
                    // A TTL check starts critical unless told otherwise: start it where the
                    // source says, so a healthy service is routable at once.
                    status: (c.kind == CheckKind::Source)
                        .then(|| reg.health.unwrap_or(Health::Passing).as_str()),
                    deregister_critical_service_after: c.deregister.clone(),
                })
                .collect(),
        }
    }
}

/// `PUT /v1/agent/check/update/:check_id` body.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CheckUpdate {
    pub status: &'static str,
    pub output: String,
}

/// `PUT /v1/catalog/register` body.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CatalogRegister<'a> {
    node: &'a str,
    address: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    datacenter: Option<&'a str>,
    skip_node_update: bool,
    service: CatalogService<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    checks: Vec<CatalogCheck<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CatalogService<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    /// The catalog calls the name `Service`, not `Name`.
    service: &'a str,
    tags: Vec<&'a str>,
    address: &'a str,
    port: u16,
    meta: BTreeMap<&'a str, &'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CatalogCheck<'a> {
    node: &'a str,
    #[serde(rename = "CheckID")]
    check_id: String,
    name: String,
    status: String,
    #[serde(rename = "ServiceID")]
    service_id: &'a str,
    output: String,
}

impl<'a> CatalogRegister<'a> {
    pub fn new(
        reg: &'a Registration,
        checks: &[CheckSpec],
        node: &'a str,
        address: &'a str,
        datacenter: Option<&'a str>,
    ) -> Self {
        Self {
            node,
            address,
            datacenter,
            // The synthetic node exists after the first registration; leave it alone after.
            skip_node_update: true,
            service: CatalogService {
                id: &reg.id,
                service: &reg.name,
                tags: tags(reg),
                address: &reg.address,
                port: reg.port,
                meta: consul_meta(reg),
            },
            checks: checks
                .iter()
                .filter(|c| c.kind == CheckKind::Source)
                .map(|c| {
                    let status = c.status.clone().unwrap_or_else(|| "passing".into());
                    CatalogCheck {
                        node,
                        check_id: c.id(&reg.id),
                        name: "rancon source check".into(),
                        output: format!("{status} (reported by rancon)"),
                        status,
                        service_id: &reg.id,
                    }
                })
                .collect(),
        }
    }
}

/// `PUT /v1/catalog/deregister` body.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CatalogDeregister<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<&'a str>,
    pub node: &'a str,
    #[serde(rename = "ServiceID")]
    pub service_id: &'a str,
}

/// One service of `GET /v1/agent/services` (name under `Service`) or of
/// `GET /v1/catalog/node-services/:node`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListedService {
    #[serde(rename = "ID")]
    id: String,
    service: String,
    #[serde(default)]
    tags: Option<crate::model::Tags>,
    #[serde(default, deserialize_with = "compact_meta")]
    meta: Option<crate::model::Meta>,
    #[serde(default)]
    address: String,
    #[serde(default)]
    port: u16,
}

/// Meta as listed, without spare room (it is kept for the round) and decoded through a
/// `BTreeMap`: a `LiteMap` decodes an unsorted map by insertion, quadratic for a hostile size.
fn compact_meta<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<crate::model::Meta>, D::Error> {
    Ok(
        Option::<std::collections::BTreeMap<String, String>>::deserialize(d)?
            .map(|m| crate::model::shrunk(m.into_iter().collect())),
    )
}

impl ListedService {
    /// The id Consul knows it by.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The address it was registered with (may be empty: the node's address then).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether it carries `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.as_ref().is_some_and(|t| t.contains(tag))
    }

    /// Who holds a registration that is not ours, for warnings: the owner its `rancon-owner`
    /// meta or a `rancon-*` tag names (another rancon), else nobody. Server data: quoted and
    /// cut when it is not a plain name.
    pub fn holder(&self) -> String {
        let meta_owner = self
            .meta
            .as_ref()
            .and_then(|m| m.get(OWNER_META))
            .map(String::as_str);
        let tag_owner = || {
            self.tags
                .iter()
                .flatten()
                .find_map(|t| t.strip_prefix("rancon-"))
        };
        match meta_owner.or_else(tag_owner) {
            Some(o) => format!("owner {}", printable(o)),
            None => "nobody (unowned)".into(),
        }
    }

    /// The registration, when it carries the owner tag (else `None`: not ours).
    pub fn into_registration(self, owner_tag: &str, agent: Option<&str>) -> Option<Registration> {
        let tags = self.tags?;
        if !tags.contains(owner_tag) {
            return None;
        }
        Some(Registration {
            id: self.id,
            name: self.service,
            address: self.address,
            port: self.port,
            tags,
            meta: self.meta.unwrap_or_default(),
            private: crate::model::Private {
                location: agent.map(str::to_string),
                ..Default::default()
            }
            .into(),
            health: None,
        })
    }
}

/// A name from a server as it may stand in a message: plain names as they are, anything else
/// quoted with escapes and cut to 64 characters.
pub(super) fn printable(s: &str) -> String {
    let plain = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("{:?}", s.chars().take(64).collect::<String>())
    }
}

/// Sorts `list` by id and refuses one that names an id twice. Consul holds one service per id
/// on a node (agent and catalog key them by id), so such an answer contradicts itself: were
/// one copy ours and one foreign, the foreign one would be deregistered as a moved copy of
/// ours (`moved_onto_foreign`), and two copies of ours would have one deregister the other.
/// The place is unknown instead.
fn unique(list: &mut [ListedService]) -> Result<(), String> {
    list.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    match list.windows(2).find(|w| w[0].id == w[1].id) {
        Some(w) => Err(format!("the answer lists ID {} twice", printable(&w[0].id))),
        None => Ok(()),
    }
}

/// `GET /v1/catalog/node-services/:node` (Consul 1.7+).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeServices {
    #[serde(default, deserialize_with = "unique_services")]
    pub services: Option<Vec<ListedService>>,
}

/// A node's services, each id once (`unique`).
fn unique_services<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<ListedService>>, D::Error> {
    let mut list = Option::<Vec<ListedService>>::deserialize(d)?;
    if let Some(l) = &mut list {
        unique(l).map_err(serde::de::Error::custom)?;
    }
    Ok(list)
}

/// One element of `GET /v1/catalog/nodes`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CatalogNode {
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub address: String,
}

#[cfg(test)]
mod tests {
    use super::ListedService;

    fn listed(json: serde_json::Value) -> ListedService {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_listed_service_keeps_its_tags_and_meta_sorted_without_spare_room() {
        let s = listed(serde_json::json!({"ID": "b", "Service": "db", "Extra": [1],
            "Tags": ["v2", "rancon-x", "v1"], "Meta": {"z": "1", "a": "2"}}));
        assert!(s.has_tag("rancon-x") && !s.has_tag("v3"));
        let meta = s.meta.as_ref().unwrap();
        assert_eq!(
            meta.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["a", "z"]
        );
    }

    #[test]
    fn a_node_answer_naming_an_id_twice_is_refused() {
        // Agent answers: `found::tests::contradicting_or_foreign_shaped_answers_are_refused`.
        let ours = r#"{"ID": "web-1", "Service": "web", "Tags": ["rancon-x"], "Port": 80}"#;
        let theirs = r#"{"ID": "web-1", "Service": "web", "Tags": ["other"], "Port": 80}"#;
        let node = format!(r#"{{"Services": [{ours}, {theirs}]}}"#);
        assert!(serde_json::from_str::<super::NodeServices>(&node).is_err());
        let fine = format!(r#"{{"Services": [{ours}]}}"#);
        assert!(serde_json::from_str::<super::NodeServices>(&fine).is_ok());
    }

    #[test]
    fn the_holder_of_a_foreign_registration_is_named_safely() {
        let by_meta = listed(serde_json::json!({"ID": "x", "Service": "x",
            "Tags": ["rancon-blue"], "Meta": {"rancon-owner": "green"}}));
        assert_eq!(by_meta.holder(), "owner green");
        let by_tag =
            listed(serde_json::json!({"ID": "x", "Service": "x", "Tags": ["rancon-blue"]}));
        assert_eq!(by_tag.holder(), "owner blue");
        let nobody = listed(serde_json::json!({"ID": "x", "Service": "x", "Tags": null}));
        assert_eq!(nobody.holder(), "nobody (unowned)");
        let hostile = listed(serde_json::json!({"ID": "x", "Service": "x",
            "Meta": {"rancon-owner": "a\nINFO deregistered\u{1b}[31m"}}));
        let h = hostile.holder();
        assert!(!h.contains('\n') && !h.contains('\u{1b}'), "{h}");
    }
}
