//! Plain data that flows between sources, the planner and backends.

use crate::template::Props;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One address of one selected service, as a source saw it.
///
/// `props` always holds `name` (the final, rendered service name), `service` (the source's own
/// name for it), `host` and `port`, plus one entry per `<prefix>.X` label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// Name of the source component that produced it.
    pub source: String,
    /// Properties for templates (lower-case keys).
    pub props: Props,
}

impl Endpoint {
    /// A property, or `""` when absent.
    pub fn prop(&self, key: &str) -> &str {
        self.props.get(key).map(String::as_str).unwrap_or("")
    }

    /// Human label used in warnings: `source/service@host:port`.
    pub fn describe(&self) -> String {
        describe(&self.source, &self.props)
    }
}

/// `source/service@host:port` from a source name and endpoint properties.
pub fn describe(source: &str, props: &Props) -> String {
    let prop = |k: &str| props.get(k).map_or("", String::as_str);
    format!(
        "{source}/{}@{}:{}",
        prop("service"),
        prop("host"),
        prop("port")
    )
}

/// What a backend holds (or should hold) for one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// Backend-unique id.
    pub id: String,
    /// Service name.
    pub name: String,
    /// Address clients connect to.
    pub address: String,
    /// Port clients connect to.
    pub port: u16,
    /// Tags, compared as a set.
    pub tags: Tags,
    /// What goes into the registry as metadata (Consul service meta). A flat sorted map: a
    /// handful of entries per registration, 10,000s of registrations.
    #[serde(serialize_with = "meta_as_map")]
    pub meta: Meta,
    /// What the backend keeps for itself; never written as meta.
    #[serde(default, skip_serializing_if = "Boxed::is_empty")]
    pub private: Boxed<Private>,
    /// The source's view of the service's health, for backends that mirror it (a Consul TTL
    /// check). It is state, not content: the planner ignores it, so a health change never
    /// re-registers anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
}

impl Registration {
    /// Whether two registrations have the same content: everything but `health`, and of the
    /// private part what `Private` says is compared.
    pub fn same(&self, other: &Registration) -> bool {
        self.id == other.id
            && self.name == other.name
            && self.address == other.address
            && self.port == other.port
            && self.tags == other.tags
            && self.meta == other.meta
            && self.private.location == other.private.location
            && self.private.attrs == other.private.attrs
            && !self.private.stale
            && !other.private.stale
    }
}

/// What a backend keeps about a registration for itself. The planner compares `location`
/// and `attrs` (a change means a rewrite), treats a `stale` copy as never the same, and
/// ignores `registry_id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Private {
    /// Where it lives: a Consul agent's URL, an etcd key. A new place is a move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The id the registry knows it by, when the map's key differs (the same id found on a
    /// second agent is keyed apart so it is cleaned up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_id: Option<String>,
    /// Content written beside the registration that is not meta (a Traefik router's rule
    /// and entry points).
    #[serde(
        default,
        skip_serializing_if = "Meta::is_empty",
        serialize_with = "meta_as_map"
    )]
    pub attrs: Meta,
    /// The listed copy must be rewritten even though it matches (an etcd key on an earlier
    /// process's lease, which would expire).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
}

/// An optional boxed part that reads as its default when absent: `Registration` is moved
/// 10,000s of times a round, and a pointer moves cheaper than the part itself.
#[derive(Debug, Clone, Default)]
pub struct Boxed<T>(Option<Box<T>>);

impl<T: Default + PartialEq + 'static> Boxed<T> {
    /// True when absent or equal to the default.
    pub fn is_empty(&self) -> bool {
        self.0.as_deref().is_none_or(|t| t == &T::default())
    }
}

impl<T: Default + PartialEq> From<T> for Boxed<T> {
    fn from(t: T) -> Self {
        Boxed((t != T::default()).then(|| Box::new(t)))
    }
}

impl std::ops::Deref for Boxed<Private> {
    type Target = Private;
    fn deref(&self) -> &Private {
        static EMPTY: std::sync::LazyLock<Private> = std::sync::LazyLock::new(Private::default);
        self.0.as_deref().unwrap_or(&EMPTY)
    }
}

impl std::ops::DerefMut for Boxed<Private> {
    fn deref_mut(&mut self) -> &mut Private {
        self.0.get_or_insert_with(Default::default)
    }
}

impl PartialEq for Boxed<Private> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Boxed<Private> {}

impl Serialize for Boxed<Private> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Boxed<Private> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Private::deserialize(d).map(Into::into)
    }
}

/// `host` as it stands before `:port` in a URL or address: IPv6 addresses in brackets.
pub fn bracket(host: &str) -> std::borrow::Cow<'_, str> {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]").into()
    } else {
        host.into()
    }
}

/// Health as Consul's check statuses name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Healthy, or the source has no health check.
    Passing,
    /// Starting, degraded or updating.
    Warning,
    /// Unhealthy.
    Critical,
}

impl Health {
    /// Maps a source's health word (Rancher `healthState`, or label `rancon.health`).
    pub fn from_source(state: &str) -> Health {
        match state.trim().to_ascii_lowercase().as_str() {
            "" | "healthy" | "started-once" | "passing" => Health::Passing,
            "unhealthy" | "critical" => Health::Critical,
            _ => Health::Warning,
        }
    }

    /// Consul's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Passing => "passing",
            Health::Warning => "warning",
            Health::Critical => "critical",
        }
    }
}

/// Always a JSON object (LiteMap would write an empty map as `[]`).
fn meta_as_map<S: serde::Serializer>(meta: &Meta, s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(meta.iter())
}

/// Attributes of a registration, ordered by key.
pub type Meta = litemap::LiteMap<String, String>;

/// `meta` holding no spare room: a map kept for long (a view's labels, trimmed) costs only
/// its entries.
pub fn shrunk(meta: Meta) -> Meta {
    let mut v = meta.into_tuple_vec();
    v.shrink_to_fit();
    // Still sorted and without duplicates: it came from a map.
    Meta::from_sorted_store_unchecked(v)
}

/// Registrations keyed by id, ordered so plans and snapshots are stable.
pub type RegistrationMap = BTreeMap<String, Registration>;

/// `map` rebuilt with full B-tree nodes. A map filled one insert at a time keeps its nodes
/// half (ascending ids, as a listing comes) to two-thirds (random) full, since a full node is
/// split in the middle: at 20,000 registrations 2 MiB more than the entries. `append` into a
/// non-empty map builds the result in bulk from the two sorted sequences, freeing old nodes
/// as it goes, so nothing (no list of all entries, no sort buffer) is held beside the map.
pub fn packed(mut map: RegistrationMap) -> RegistrationMap {
    let Some((id, reg)) = map.pop_first() else {
        return map;
    };
    let mut out = RegistrationMap::new();
    out.insert(id, reg);
    out.append(&mut map);
    out
}

/// A set of tags kept as a sorted list without duplicates: a registration carries a handful,
/// and a `BTreeSet` allocates a 280-byte node for even one (at 20,000 registrations, 5 MiB
/// per map of them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Tags(Vec<String>);

impl Tags {
    /// No tags.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `tag`; false when it was there.
    pub fn insert(&mut self, tag: String) -> bool {
        match self.0.binary_search(&tag) {
            Ok(_) => false,
            Err(at) => {
                // Exactly one more: tags are kept for the round, and inserted one by one only
                // from config templates (a label's many tags come through `extend`).
                self.0.reserve_exact(1);
                self.0.insert(at, tag);
                true
            }
        }
    }

    /// Whether `tag` is one of them.
    pub fn contains(&self, tag: &str) -> bool {
        self.0.binary_search_by(|t| t.as_str().cmp(tag)).is_ok()
    }

    /// The tags in order.
    pub fn iter(&self) -> std::slice::Iter<'_, String> {
        self.0.iter()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<String> for Tags {
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> Self {
        let mut v: Vec<String> = iter.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        v.shrink_to_fit();
        Self(v)
    }
}

impl Extend<String> for Tags {
    fn extend<I: IntoIterator<Item = String>>(&mut self, iter: I) {
        let v = std::mem::take(&mut self.0);
        *self = v.into_iter().chain(iter).collect();
    }
}

impl<const N: usize> From<[String; N]> for Tags {
    fn from(tags: [String; N]) -> Self {
        tags.into_iter().collect()
    }
}

impl IntoIterator for Tags {
    type Item = String;
    type IntoIter = std::vec::IntoIter<String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Tags {
    type Item = &'a String;
    type IntoIter = std::slice::Iter<'a, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<String>::deserialize(d).map(Tags::from_iter)
    }
}

#[cfg(test)]
mod tests {
    use super::Tags;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        /// `Tags` is a set: built, extended or inserted into in any order and with any
        /// repeats, it holds, orders, finds and compares what a `BTreeSet` would.
        #[test]
        fn tags_behave_as_a_set(
            a in prop::collection::vec("[a-c]{0,2}", 0..8),
            b in prop::collection::vec("[a-c]{0,2}", 0..8),
            probe in "[a-c]{0,2}",
        ) {
            let set: BTreeSet<String> = a.iter().chain(&b).cloned().collect();
            let mut built: Tags = a.iter().cloned().collect();
            built.extend(b.iter().cloned());
            let mut inserted = Tags::new();
            for t in b.iter().chain(&a) {
                let was = inserted.iter().any(|x| x == t);
                prop_assert_eq!(inserted.contains(t), was);
                prop_assert_eq!(inserted.insert(t.clone()), !was);
            }
            prop_assert_eq!(built.iter().collect::<Vec<_>>(), set.iter().collect::<Vec<_>>());
            prop_assert_eq!(&built, &inserted);
            prop_assert_eq!(built.len(), set.len());
            prop_assert_eq!(built.contains(&probe), set.contains(&probe));
            let json = serde_json::to_string(&built).unwrap();
            let back: Tags = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, built);
        }
    }
}
