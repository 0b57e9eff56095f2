//! One page of a Rancher collection, decoded item by item from its body.
//!
//! `{"data": [...], "pagination": {...}, ...}` (cattle's `CollectionImpl`; every other field is
//! ignored). Each item is borrowed from the body as raw JSON text (no copy) while it is
//! decoded: into `Ident` for de-duplication and warnings, and into `T`, trimmed at once. An item that does not decode is
//! kept as (its name or id, the error), so the caller can count the listing incomplete.

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess};
use serde_json::value::RawValue;
use std::fmt;
use std::marker::PhantomData;

/// Just enough of any resource to de-duplicate it and name it in warnings.
#[derive(Deserialize)]
struct Ident {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// `pagination` of a collection.
#[derive(Deserialize)]
pub(super) struct Pagination {
    #[serde(default)]
    pub next: Option<String>,
    /// The server cut the collection short (a limit it enforces): more rows exist.
    #[serde(default)]
    pub partial: bool,
}

/// One item: its id (when it has one), and it decoded or why not.
pub(super) type Item<T> = (Option<String>, Result<T, (String, String)>);

/// A decoded page. `data` is `None` when the answer has no `data` array.
pub(super) struct Page<T> {
    pub data: Option<Vec<Item<T>>>,
    pub pagination: Option<Pagination>,
}

/// Decodes a page into `Page<T>`, trimming each item with `trim`.
pub(super) struct PageSeed<T, F> {
    trim: F,
    item: PhantomData<fn() -> T>,
}

impl<T, F> PageSeed<T, F> {
    pub(super) fn new(trim: F) -> Self {
        Self {
            trim,
            item: PhantomData,
        }
    }
}

impl<'de, T: DeserializeOwned, F: Fn(&mut T)> DeserializeSeed<'de> for PageSeed<T, F> {
    type Value = Page<T>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Page<T>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T: DeserializeOwned, F: Fn(&mut T)> de::Visitor<'de> for PageSeed<T, F> {
    type Value = Page<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Rancher collection")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Page<T>, A::Error> {
        let mut page = Page {
            data: None,
            pagination: None,
        };
        let (mut data_seen, mut pagination_seen) = (false, false);
        while let Some(key) = map.next_key::<String>()? {
            // A field given twice is refused, as a derived decoder does: which one is the
            // page's is unknown.
            let twice = |seen: &mut bool| {
                if std::mem::replace(seen, true) {
                    Err(de::Error::custom(format!("duplicate field `{key}`")))
                } else {
                    Ok(())
                }
            };
            match key.as_str() {
                "data" => {
                    twice(&mut data_seen)?;
                    page.data = map.next_value_seed(Items {
                        trim: &self.trim,
                        item: PhantomData,
                    })?;
                }
                "pagination" => {
                    twice(&mut pagination_seen)?;
                    page.pagination = map.next_value()?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(page)
    }
}

/// `data`: `null` or an array of items.
struct Items<'a, T, F> {
    trim: &'a F,
    item: PhantomData<fn() -> T>,
}

impl<'de, T: DeserializeOwned, F: Fn(&mut T)> DeserializeSeed<'de> for Items<'_, T, F> {
    type Value = Option<Vec<Item<T>>>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, T: DeserializeOwned, F: Fn(&mut T)> de::Visitor<'de> for Items<'_, T, F> {
    type Value = Option<Vec<Item<T>>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of resources")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            out.push(item(raw.get(), self.trim));
        }
        Ok(Some(out))
    }
}

/// One item's id and decoded, trimmed form (or its name and why it did not decode).
fn item<T: DeserializeOwned>(text: &str, trim: &impl Fn(&mut T)) -> Item<T> {
    let ident = serde_json::from_str::<Ident>(text).ok();
    let id = ident.as_ref().and_then(|i| i.id.clone());
    let decoded = serde_json::from_str::<T>(text)
        .map(|mut t| {
            trim(&mut t);
            t
        })
        .map_err(|e| {
            let label = ident
                .and_then(|i| i.name.or(i.id))
                .unwrap_or_else(|| "?".into());
            (label, e.to_string())
        });
    (id, decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Thing {
        id: String,
        #[serde(default)]
        size: u32,
    }

    fn page(text: &str) -> serde_json::Result<Page<Thing>> {
        let mut d = serde_json::Deserializer::from_slice(text.as_bytes());
        let p = PageSeed::new(|t: &mut Thing| t.size = 0).deserialize(&mut d)?;
        d.end().map(|()| p)
    }

    #[test]
    fn items_decode_trimmed_with_their_ids_and_failures_named() {
        let p = page(
            r#"{"type": "collection", "data": [{"id": "1s1", "size": 7},
                {"id": "1s2", "name": "web", "size": "big"}, {"size": 1}],
                "pagination": {"next": "http://r/x?marker=m3", "partial": true}}"#,
        )
        .unwrap();
        let data = p.data.unwrap();
        assert_eq!(data.len(), 3);
        assert_eq!(data[0].0.as_deref(), Some("1s1"));
        assert_eq!(
            data[0].1.as_ref().unwrap(),
            &Thing {
                id: "1s1".into(),
                size: 0
            },
            "trimmed"
        );
        let (label, _) = data[1].1.as_ref().unwrap_err();
        assert_eq!(label, "web", "a failure is named by the item's name");
        assert_eq!(data[2].0, None);
        assert!(data[2].1.is_err(), "no id: does not decode");
        let pg = p.pagination.unwrap();
        assert_eq!(pg.next.as_deref(), Some("http://r/x?marker=m3"));
        assert!(pg.partial);
    }

    #[test]
    fn a_page_without_data_or_with_a_field_twice_is_not_a_page() {
        assert!(page(r#"{"data": null}"#).unwrap().data.is_none());
        assert!(page(r#"{"type": "collection"}"#).unwrap().data.is_none());
        for bad in [
            r#"{"data": [], "data": []}"#,
            r#"{"data": [], "pagination": null, "pagination": {}}"#,
            r#"{"data": {}}"#,
            r#"[]"#,
            r#"{"data": []} trailing"#,
        ] {
            assert!(page(bad).is_err(), "{bad}");
        }
    }
}
