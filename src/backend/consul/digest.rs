//! The digest of the owned registrations in a watch answer, folded while the answer decodes.

use super::wire::ListedService;
use crate::model::Registration;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::hash::{Hash, Hasher};

/// A registration's content as Consul stores it (id, name, address, port, tags, meta).
pub fn entry_hash(r: &Registration) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    (&r.id, &r.name, &r.address, r.port).hash(&mut h);
    for t in &r.tags {
        t.hash(&mut h);
    }
    0xffu8.hash(&mut h);
    for (k, v) in r.meta.iter() {
        (k, v).hash(&mut h);
    }
    h.finish()
}

/// Decodes a `GET /v1/catalog/node-services/:node` answer (`null`, or an object whose
/// `Services` is `null` or a list) into the sum of the entry hashes of the services carrying
/// the owner tag (`.0`), one service at a time: at 20,000 registrations the decoded list
/// would add 4.5 MiB to the round it runs beside.
pub struct Digest<'a>(pub &'a str);

impl<'de> DeserializeSeed<'de> for Digest<'_> {
    type Value = u64;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_option(Answer(self.0))
    }
}

/// The answer object.
struct Answer<'a>(&'a str);

impl<'de> Visitor<'de> for Answer<'_> {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a node-services object or null")
    }
    fn visit_none<E>(self) -> Result<u64, E> {
        Ok(0)
    }
    fn visit_unit<E>(self) -> Result<u64, E> {
        Ok(0)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<u64, A::Error> {
        let mut digest = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "Services" {
                // Twice: which list is the node's is unknown (a derived decoder refuses it).
                if digest.is_some() {
                    return Err(serde::de::Error::duplicate_field("Services"));
                }
                digest = Some(map.next_value_seed(List(self.0))?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(digest.unwrap_or(0))
    }
}

/// The `Services` list.
struct List<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for List<'_> {
    type Value = u64;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for List<'_> {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of services or null")
    }
    fn visit_none<E>(self) -> Result<u64, E> {
        Ok(0)
    }
    fn visit_unit<E>(self) -> Result<u64, E> {
        Ok(0)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_seq(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
        let mut digest = 0u64;
        while let Some(s) = seq.next_element::<ListedService>()? {
            if let Some(r) = s.into_registration(self.0, None) {
                digest = digest.wrapping_add(entry_hash(&r));
            }
        }
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::de::DeserializeSeed;

    fn fold(json: &str) -> Result<u64, serde_json::Error> {
        Digest("rancon-x").deserialize(&mut serde_json::Deserializer::from_str(json))
    }

    /// What the digest was before it was folded while decoding: the whole answer decoded,
    /// then the owned registrations' hashes summed.
    fn reference(json: &str) -> Option<u64> {
        // The list as it decoded before listings refused an id named twice: the watch only
        // sums (a repeated id is drift, and the round it wakes refuses the listing).
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct NodeServices {
            services: Option<Vec<ListedService>>,
        }
        let a: Option<NodeServices> = serde_json::from_str(json).ok()?;
        Some(
            a.and_then(|a| a.services)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|s| s.into_registration("rancon-x", None))
                .fold(0u64, |a, r| a.wrapping_add(entry_hash(&r))),
        )
    }

    proptest! {
        /// Folding while decoding gives what decoding whole then folding gives, for any mix
        /// of owned and foreign services, extra fields and nulls.
        #[test]
        fn the_folded_digest_is_the_digest_of_the_decoded_answer(
            svcs in prop::collection::vec(
                ("[ab]", 0u16..3, prop::collection::vec(prop::sample::select(
                    vec!["rancon-x", "rancon-y", "web", "v1"]), 0..3), any::<bool>()),
                0..6),
            wrapped in any::<bool>(),
        ) {
            let list: Vec<serde_json::Value> = svcs.iter().map(|(id, port, tags, meta)| {
                let mut v = serde_json::json!({"ID": id, "Service": "s", "Port": port,
                    "Tags": tags, "Extra": {"nested": [1, 2]}});
                if *meta {
                    v["Meta"] = serde_json::json!({"k": "v"});
                }
                v
            }).collect();
            let json = if wrapped {
                serde_json::json!({"Node": {"Node": "n"}, "Services": list}).to_string()
            } else {
                serde_json::json!({"Services": list, "Other": null}).to_string()
            };
            prop_assert_eq!(fold(&json).ok(), reference(&json));
        }
    }

    #[test]
    fn empty_answers_fold_to_zero_and_wrong_shapes_are_errors() {
        for empty in ["null", "{}", r#"{"Services": null}"#, r#"{"Services": []}"#] {
            assert_eq!(fold(empty).unwrap(), 0, "{empty}");
        }
        let twice = r#"{"Services": [{"ID": "a", "Service": "s", "Tags": ["rancon-x"]}],
            "Services": []}"#;
        for bad in [
            "[]",
            r#"{"Services": {}}"#,
            r#"{"Services": [1]}"#,
            "7",
            twice,
        ] {
            assert!(fold(bad).is_err(), "{bad}");
        }
    }
}
