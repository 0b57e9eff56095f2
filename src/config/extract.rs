//! Shape checks: the layered values read into `Config`, one top-level key and one component at
//! a time, so every independent mistake is reported once, keyed by its full path.

use super::report::{ConfigError, Problem, problems_at};
use super::{Component, Config};
use figment::Figment;
use figment::error::Kind;
use figment::value::{Dict, Tag, Value};
use schemars::JsonSchema;
use std::collections::BTreeSet;

/// What could be read, what could not, and why.
pub struct Extracted<S, B> {
    /// The configuration; a key that could not be read keeps its default, a component that
    /// could not be read is left out.
    pub config: Config<S, B>,
    /// Every shape problem.
    pub problems: Vec<Problem>,
    /// The keys that could not be read (`interval`, `sources.s`).
    pub unloaded: BTreeSet<String>,
}

/// Reads `figment` into a configuration. Fails only when there is nothing to read (a file
/// that does not parse).
pub fn extract<S: Component, B: Component>(
    figment: &Figment,
) -> Result<Extracted<S, B>, ConfigError> {
    let root = match figment.find_value("") {
        Ok(Value::Dict(_, d)) => d,
        Ok(_) => Dict::new(),
        Err(e) => return Err(ConfigError::from(e)),
    };
    let mut problems = Vec::new();
    let mut unloaded = BTreeSet::new();
    let mut rest = Dict::new();
    let mut components = [Dict::new(), Dict::new()];
    for (key, value) in root {
        let table = ["sources", "backends"].iter().position(|t| *t == key);
        match (table, value) {
            (Some(t), Value::Dict(_, d)) => components[t] = d,
            (_, value) => {
                // Alone, a key's mistakes are its own (the others keep their defaults).
                let alone = Value::Dict(Tag::Default, Dict::from([(key.clone(), value.clone())]));
                match alone.deserialize::<Config<S, B>>() {
                    Ok(_) => {
                        rest.insert(key, value);
                    }
                    Err(e) => {
                        problems.extend(problems_at(figment, &[], e));
                        unloaded.insert(key);
                    }
                }
            }
        }
    }
    let mut config: Config<S, B> =
        Value::Dict(Tag::Default, rest)
            .deserialize()
            .map_err(|e| ConfigError {
                problems: problems_at(figment, &[], e),
            })?;
    let [sources, backends] = components;
    config.sources = read_all("sources", sources, figment, &mut problems, &mut unloaded);
    config.backends = read_all("backends", backends, figment, &mut problems, &mut unloaded);
    Ok(Extracted {
        config,
        problems,
        unloaded,
    })
}

fn read_all<C: Component>(
    table: &str,
    entries: Dict,
    figment: &Figment,
    problems: &mut Vec<Problem>,
    unloaded: &mut BTreeSet<String>,
) -> std::collections::BTreeMap<String, C> {
    let mut out = std::collections::BTreeMap::new();
    for (name, value) in entries {
        match C::from_value(&value) {
            Ok(c) => {
                out.insert(name, c);
            }
            Err(e) => {
                problems.extend(problems_at(figment, &[table.into(), name.clone()], e));
                unloaded.insert(format!("{table}.{name}"));
            }
        }
    }
    out
}

/// A `type`-tagged component in two steps: its `type` (one of `T`'s), then the rest of its
/// table for the variant to read. serde reads a tagged enum through a buffer that forgets
/// where it is, so its errors would name only the component; the variant's own struct names
/// the field (`backends.c.tls.ca_file`).
pub fn tagged<T: JsonSchema>(value: &Value) -> Result<(String, Value), figment::Error> {
    let kinds = super::schema::kinds::<T>();
    let Value::Dict(tag, dict) = value else {
        return Err(Kind::InvalidType(value.to_actual(), "a table with a `type`".into()).into());
    };
    let at_type = |kind: Kind| figment::Error::from(kind).with_path("type");
    let kind = match dict.get("type") {
        None => {
            return Err(at_type(Kind::Message(format!(
                "missing: set it to one of {}",
                quoted(&kinds)
            ))));
        }
        Some(Value::String(_, k)) if kinds.contains(k) => k.clone(),
        Some(Value::String(_, k)) => {
            let expected: Vec<&str> = kinds.iter().map(String::as_str).collect();
            return Err(at_type(Kind::Message(super::report::unknown(
                "type",
                Some(k),
                &expected,
            ))));
        }
        Some(other) => {
            return Err(at_type(Kind::InvalidType(
                other.to_actual(),
                "a string".into(),
            )));
        }
    };
    let mut body = dict.clone();
    body.remove("type");
    Ok((kind, Value::Dict(*tag, body)))
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
