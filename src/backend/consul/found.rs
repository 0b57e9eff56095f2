//! What one listing of a place found, sorted out entry by entry as the answer is decoded.
//!
//! An agent's `/v1/agent/services` at 20,000 services is read straight into this owner's
//! registrations (a map) and the asked-for ids others hold; every other entry is dropped as
//! soon as it is read. Neither the answer nor a list of all its entries is ever held beside
//! the result (before, a list of the entries and a list of registrations were each 2.7 MiB).

use super::wire::{ListedService, printable};
use crate::model::RegistrationMap;
use serde::de::{self, DeserializeSeed, MapAccess};
use std::collections::{BTreeSet, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;

/// What one listing of a place found.
#[derive(Default)]
pub(super) struct Found {
    /// This owner's registrations there.
    pub regs: RegistrationMap,
    /// Asked-for ids held there by someone else, with who holds them.
    pub foreign: Vec<(String, String)>,
}

/// What a listing of a place keeps: cheap to copy, so each attempt of a read (a retry
/// decodes again from the start) sorts into a fresh `Sorter`.
#[derive(Clone)]
pub(super) struct Keep {
    pub owner_tag: String,
    /// The agent listed (`None`: the catalog).
    pub location: Option<String>,
    /// Ids whose foreign holder is wanted (desired there).
    pub asked: Arc<BTreeSet<String>>,
    /// Keep only entries whose id is in `asked` (a read by id, which a server may answer
    /// with more).
    pub only_asked: bool,
}

/// Sorts a place's entries into a `Found`.
pub(super) struct Sorter {
    keep: Keep,
    /// Every id seen, hashed with a per-process key: Consul holds one service per id on a
    /// node (agent and catalog key them by id), so an answer naming one twice contradicts
    /// itself. Were one copy ours and one foreign, the foreign one would be deregistered as a
    /// moved copy of ours; the place is unknown instead. 8 bytes an entry instead of its id.
    seen: HashSet<u64>,
    hasher: std::collections::hash_map::RandomState,
    found: Found,
}

impl Sorter {
    pub(super) fn new(keep: Keep) -> Self {
        Self {
            keep,
            seen: HashSet::new(),
            hasher: Default::default(),
            found: Found::default(),
        }
    }

    /// Takes one entry; `key` is the id the answer files it under (agent answers).
    pub(super) fn add(&mut self, key: Option<&str>, s: ListedService) -> Result<(), String> {
        // Consul keys each entry by its ID (`AgentServices` in agent/agent_endpoint.go:
        // `agentSvcs[id.ID]`): an answer that does not is not Consul's, and which of the
        // two names a write would reach is unknown.
        if let Some(key) = key.filter(|k| *k != s.id()) {
            return Err(format!(
                "entry {} holds ID {}",
                printable(key),
                printable(s.id())
            ));
        }
        if !self.seen.insert(self.hasher.hash_one(s.id())) {
            return Err(format!("the answer lists ID {} twice", printable(s.id())));
        }
        let k = &self.keep;
        let asked = k.asked.contains(s.id());
        if k.only_asked && !asked {
            return Ok(());
        }
        if s.has_tag(&k.owner_tag) {
            if let Some(reg) = s.into_registration(&k.owner_tag, k.location.as_deref()) {
                self.found.regs.insert(reg.id.clone(), reg);
            }
        } else if asked {
            self.found.foreign.push((s.id().to_string(), s.holder()));
        }
        Ok(())
    }

    /// Sorts every entry of a list (a catalog node's services).
    pub(super) fn all(mut self, list: Vec<ListedService>) -> Result<Found, String> {
        for s in list {
            self.add(None, s)?;
        }
        Ok(self.found)
    }
}

/// Decodes `GET /v1/agent/services` (an object of services by id) from its body as it
/// arrives, sorting each entry at once.
pub(super) fn agent_answer(
    body: &mut dyn std::io::Read,
    sorter: Sorter,
) -> serde_json::Result<Found> {
    let mut d = serde_json::Deserializer::from_reader(body);
    let found = sorter.deserialize(&mut d)?;
    d.end().map(|()| found)
}

impl<'de> DeserializeSeed<'de> for Sorter {
    type Value = Found;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Found, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> de::Visitor<'de> for Sorter {
    type Value = Found;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object of services by id")
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Found, A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            let s: ListedService = map.next_value()?;
            self.add(Some(&key), s).map_err(de::Error::custom)?;
        }
        Ok(self.found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorter(asked: &[&str], only: bool) -> Sorter {
        Sorter::new(Keep {
            owner_tag: "rancon-x".into(),
            location: Some("http://a:8500".into()),
            asked: Arc::new(asked.iter().map(|s| s.to_string()).collect()),
            only_asked: only,
        })
    }

    fn read(text: &str, s: Sorter) -> serde_json::Result<Found> {
        agent_answer(&mut text.as_bytes(), s)
    }

    const ANSWER: &str = r#"{
        "a": {"ID": "a", "Service": "web", "Tags": ["rancon-x"], "Port": 80, "Address": "10.0.0.1"},
        "b": {"ID": "b", "Service": "db", "Tags": ["v1"], "Meta": {"rancon-owner": "y"}},
        "c": {"ID": "c", "Service": "other", "Extra": [1]}}"#;

    #[test]
    fn ours_become_registrations_asked_foreign_are_named_the_rest_dropped() {
        let f = read(ANSWER, sorter(&["b"], false)).unwrap();
        assert_eq!(f.regs.keys().collect::<Vec<_>>(), ["a"]);
        let a = &f.regs["a"];
        assert_eq!((a.name.as_str(), a.port), ("web", 80));
        assert_eq!(a.private.location.as_deref(), Some("http://a:8500"));
        assert_eq!(f.foreign.len(), 1, "c was not asked for");
        assert_eq!(f.foreign[0].0, "b");
        assert!(f.foreign[0].1.contains('y'), "{}", f.foreign[0].1);
    }

    #[test]
    fn a_read_by_id_keeps_only_the_ids_asked_for() {
        let f = read(ANSWER, sorter(&["b", "c"], true)).unwrap();
        assert!(f.regs.is_empty(), "a was not asked for");
        let ids: Vec<&str> = f.foreign.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["b", "c"]);
    }

    #[test]
    fn contradicting_or_foreign_shaped_answers_are_refused() {
        assert!(read("{}", sorter(&[], false)).unwrap().regs.is_empty());
        for bad in [
            "null",
            "[]",
            r#"{"a": 1}"#,
            r#"{"a": {"ID": "a", "Service": "s"}} x"#,
            // Filed under another id.
            r#"{"a": {"ID": "b", "Service": "s", "Tags": ["rancon-x"]}}"#,
            // One id twice: once ours, once someone else's.
            r#"{"a": {"ID": "a", "Service": "s", "Tags": ["rancon-x"]},
                "a": {"ID": "a", "Service": "s"}}"#,
        ] {
            assert!(read(bad, sorter(&["a"], false)).is_err(), "{bad}");
        }
        // A list (catalog) naming an id twice, even when neither copy is asked for.
        let s: ListedService = serde_json::from_str(r#"{"ID": "z", "Service": "s"}"#).unwrap();
        let t: ListedService = serde_json::from_str(r#"{"ID": "z", "Service": "s"}"#).unwrap();
        assert!(sorter(&[], false).all(vec![s, t]).is_err());
    }
}
