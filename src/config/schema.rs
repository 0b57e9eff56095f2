//! The configuration's JSON Schema: generated from the types, as strict as `check` where a
//! schema can say it, and walked to learn what a key is (its spelling, whether it holds text).

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::Value as Json;
use std::any::TypeId;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

/// A duration as humantime reads it (`"30s"`, `"1h 30m"`, `"1.5s"`).
pub const DURATION_PATTERN: &str = r"^\s*(?:[0-9]+(?:\.[0-9]+)?\s*(?:nanos|nsec|ns|usec|us|µs|millis|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w|months|month|M|years|year|yrs|yr|y)\s*)+$";

/// An IP address and port, as `std::net::SocketAddr` reads it.
pub const SOCKET_ADDR_PATTERN: &str =
    r"^(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$";

/// An `http://` or `https://` URL (the only schemes any client here speaks).
pub const HTTP_URL_PATTERN: &str = r"^https?://[^/?#\s]+";

/// The `format` values JSON Schema (2020-12, §7.3) defines; validators reject or ignore others.
const STANDARD_FORMATS: &[&str] = &[
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

/// Schema stand-in for a `Duration` read by humantime (`#[schemars(with = "…HumanDuration")]`).
pub struct HumanDuration;

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: a number and a unit, repeated (`30s`, `2m`, `1h 30m`, `1.5s`).",
            "type": "string",
            "pattern": DURATION_PATTERN
        })
    }
}

/// Schema stand-in for a `SocketAddr` (`"0.0.0.0:9090"`, `"[::1]:9090"`).
pub struct SocketAddrText;

impl JsonSchema for SocketAddrText {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "SocketAddr".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "pattern": SOCKET_ADDR_PATTERN })
    }
}

/// The JSON Schema of `T` with only standard `format` values (schemars adds `uint64`,
/// `double`…, which validators do not know; the bounds they stand for stay as
/// `minimum`/`maximum`).
pub fn schema_for<T: JsonSchema>() -> Schema {
    schemars::generate::SchemaSettings::draft2020_12()
        .with_transform(standard_formats)
        .into_generator()
        .into_root_schema_for::<T>()
}

fn standard_formats(schema: &mut Schema) {
    let non_standard = schema
        .get("format")
        .and_then(Json::as_str)
        .is_some_and(|f| !STANDARD_FORMATS.contains(&f));
    if non_standard {
        schema.remove("format");
    }
    schemars::transform::transform_subschemas(&mut standard_formats, schema);
}

/// What a key is, from the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// The key's spelling in the configuration: fields as declared, map keys as given
    /// (lower-cased where the map's names must be lower case).
    pub path: Vec<String>,
    /// Whether the schema knows the key.
    pub known: bool,
    /// Whether it holds text (so a value given as text is taken as it is).
    pub text: bool,
}

/// Walks the schema along key paths.
pub struct Keys {
    root: Json,
}

impl Keys {
    /// Walks `schema` (a root schema with `$defs`).
    pub fn new(schema: &Schema) -> Self {
        Self {
            root: schema.as_value().clone(),
        }
    }

    /// The key at `path` as given (any case). `kind_of` tells the `type` of the component at
    /// a path (`["backends", "c"]`), so its own fields are found; unknown, all kinds count.
    pub fn key(&self, path: &[&str], kind_of: &dyn Fn(&[String]) -> Option<String>) -> Key {
        let mut out = Vec::with_capacity(path.len());
        let mut nodes = vec![&self.root];
        let mut known = true;
        for seg in path {
            nodes = self.expand(&nodes, &out, kind_of);
            let mut next = Vec::new();
            let mut canonical = None;
            for node in &nodes {
                let field = node
                    .get("properties")
                    .and_then(Json::as_object)
                    .and_then(|p| p.iter().find(|(k, _)| k.eq_ignore_ascii_case(seg)));
                if let Some((name, sub)) = field {
                    canonical.get_or_insert_with(|| name.clone());
                    next.push(sub);
                } else if let Some(sub) = node.get("additionalProperties").filter(|a| a.is_object())
                {
                    canonical.get_or_insert_with(|| map_key(node, seg));
                    next.push(sub);
                }
            }
            known &= !next.is_empty();
            out.push(canonical.unwrap_or_else(|| seg.to_string()));
            nodes = next;
        }
        let leaf = self.expand(&nodes, &out, kind_of);
        let text = !leaf.is_empty() && leaf.iter().all(|n| is_text(n));
        Key {
            path: out,
            known,
            text,
        }
    }

    /// The concrete schemas `nodes` stand for: references followed, alternatives (`anyOf`,
    /// `oneOf`) listed, `null` dropped, and tagged variants narrowed to the known `type`.
    fn expand<'a>(
        &'a self,
        nodes: &[&'a Json],
        at: &[String],
        kind_of: &dyn Fn(&[String]) -> Option<String>,
    ) -> Vec<&'a Json> {
        let mut out = Vec::new();
        let mut todo: Vec<&Json> = nodes.iter().rev().copied().collect();
        let mut steps = 0;
        while let Some(n) = todo.pop() {
            steps += 1;
            if steps > 1000 {
                break; // a reference cycle; the schema has none, but a walk must end.
            }
            if let Some(r) = n.get("$ref").and_then(Json::as_str) {
                let target = r
                    .strip_prefix("#/$defs/")
                    .and_then(|d| self.root.get("$defs")?.get(d));
                todo.extend(target);
            } else if let Some(alts) = n
                .get("anyOf")
                .or_else(|| n.get("oneOf"))
                .and_then(Json::as_array)
            {
                todo.extend(alts.iter().rev());
            } else if n.get("type").and_then(Json::as_str) != Some("null") {
                out.push(n);
            }
        }
        let tag = |n: &Json| {
            n.pointer("/properties/type/const")
                .and_then(Json::as_str)
                .map(str::to_string)
        };
        if let Some(kind) = kind_of(at)
            && out.iter().any(|n| tag(n).as_deref() == Some(kind.as_str()))
        {
            out.retain(|n| tag(n).is_none_or(|t| t == kind));
        }
        out
    }
}

/// The `type` values of a tagged enum's schema (`oneOf` variants with a `type` const),
/// computed once per type.
pub fn kinds<T: JsonSchema + 'static>() -> Vec<String> {
    static KINDS: LazyLock<Mutex<HashMap<TypeId, Vec<String>>>> = LazyLock::new(Default::default);
    let mut known = KINDS.lock().unwrap_or_else(|p| p.into_inner());
    known
        .entry(TypeId::of::<T>())
        .or_insert_with(|| {
            let schema = schema_for::<T>();
            let keys = Keys::new(&schema);
            keys.expand(&[&keys.root], &[], &|_| None)
                .iter()
                .filter_map(|n| n.pointer("/properties/type/const")?.as_str())
                .map(str::to_string)
                .collect()
        })
        .clone()
}

/// A map key as given, or lower-cased when the map's names must match a pattern that only the
/// lower-case spelling matches (component names: `RANCON_BACKENDS__WEB__…` is `web`).
fn map_key(map: &Json, key: &str) -> String {
    let lower = key.to_lowercase();
    let pattern = map
        .pointer("/propertyNames/pattern")
        .and_then(Json::as_str)
        .and_then(|p| regex::Regex::new(p).ok());
    match pattern {
        Some(re) if !re.is_match(key) && re.is_match(&lower) => lower,
        _ => key.to_string(),
    }
}

/// Whether a concrete schema holds only text (a string, a string `const`, a string `enum`).
fn is_text(node: &Json) -> bool {
    match node.get("type") {
        Some(Json::String(t)) => t == "string",
        Some(Json::Array(ts)) => {
            let ts: Vec<_> = ts.iter().filter(|t| *t != "null").collect();
            !ts.is_empty() && ts.iter().all(|t| *t == "string")
        }
        _ => {
            node.get("const").is_some_and(Json::is_string)
                || node
                    .get("enum")
                    .and_then(Json::as_array)
                    .is_some_and(|e| e.iter().all(Json::is_string))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_duration_pattern_agrees_with_humantime() {
        let re = regex::Regex::new(DURATION_PATTERN).unwrap();
        for s in [
            "30s", "2m", "1h 30m", "1h30m", "100ms", "1.5s", " 5 min ", "7days", "1M", "3µs", "0s",
            "2 weeks",
        ] {
            assert!(humantime::parse_duration(s).is_ok(), "humantime: {s}");
            assert!(re.is_match(s), "pattern: {s}");
        }
        for s in [
            "",
            "5",
            "5 parsecs",
            "s",
            "-1s",
            "1.s",
            "1h x",
            "30 S",
            "1e3s",
        ] {
            assert!(humantime::parse_duration(s).is_err(), "humantime: {s}");
            assert!(!re.is_match(s), "pattern: {s}");
        }
    }

    #[test]
    fn the_socket_address_pattern_agrees_with_std() {
        let re = regex::Regex::new(SOCKET_ADDR_PATTERN).unwrap();
        for s in ["0.0.0.0:9090", "127.0.0.1:8000", "[::1]:9090", "[::]:80"] {
            assert!(s.parse::<std::net::SocketAddr>().is_ok(), "{s}");
            assert!(re.is_match(s), "{s}");
        }
        for s in ["localhost:9090", "9090", "0.0.0.0", ":9090", "[::1]"] {
            assert!(s.parse::<std::net::SocketAddr>().is_err(), "{s}");
            assert!(!re.is_match(s), "{s}");
        }
    }
}
