//! Shape checks: the layered values read into `Config`, one top-level key and one component at
//! a time, so every independent mistake is reported once, keyed by its full path.

// `figment::Error` is figment's own (large) type; these run once at start-up, so boxing it
// would only add noise.
#![allow(clippy::result_large_err)]

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
                let errors = every_error(alone, &|v| variant::<Config<S, B>>(v).map(drop));
                if errors.is_empty() {
                    rest.insert(key, value);
                } else {
                    for e in errors {
                        problems.extend(problems_at(figment, &[], e));
                    }
                    unloaded.insert(key);
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
            Err(_) => {
                let at = [table.to_string(), name.clone()];
                for e in every_error(value, &|v| C::from_value(v).map(drop)) {
                    problems.extend(problems_at(figment, &at, e));
                }
                unloaded.insert(format!("{table}.{name}"));
            }
        }
    }
    out
}

/// Every independent error of reading `value`: serde stops at the first, so the value it
/// names is taken out and the rest read again, until it reads or an error names no value
/// that can be taken out (the whole value, a list item, a required field already reported).
fn every_error(
    mut value: Value,
    read: &dyn Fn(&Value) -> Result<(), Box<figment::Error>>,
) -> Vec<figment::Error> {
    let mut errors = Vec::new();
    let mut removed: Vec<Vec<String>> = Vec::new();
    while let Err(e) = read(&value) {
        let e = *e;
        let again = |r: &Vec<String>| match &e.kind {
            Kind::MissingField(f) => r.starts_with(&e.path) && r[e.path.len()..] == [f.to_string()],
            _ => *r == e.path,
        };
        if removed.iter().any(again) {
            break;
        }
        let path = e.path.clone();
        errors.push(e);
        if errors.len() > 1000 || !take_out(&mut value, &path) {
            break;
        }
        removed.push(path);
    }
    errors
}

/// Removes the table entry at `path`; false when `path` names no entry (a list item is left:
/// taking it out would move the positions errors name).
fn take_out(value: &mut Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = value;
    for p in parents {
        node = match node {
            Value::Dict(_, d) => match d.get_mut(p) {
                Some(v) => v,
                None => return false,
            },
            Value::Array(_, a) => match p.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match node {
        Value::Dict(_, d) => d.remove(last).is_some(),
        _ => false,
    }
}

/// A `type`-tagged component in two steps: its `type` (one of `T`'s), then the rest of its
/// table for the variant to read. serde reads a tagged enum through a buffer that forgets
/// where it is, so its errors would name only the component; the variant's own struct names
/// the field (`backends.c.tls.ca_file`).
pub fn tagged<T: JsonSchema + 'static>(
    value: &Value,
) -> Result<(String, Value), Box<figment::Error>> {
    let kinds = super::schema::kinds::<T>();
    let Value::Dict(tag, dict) = value else {
        let kind = Kind::InvalidType(value.to_actual(), "a table with a `type`".into());
        return Err(Box::new(kind.into()));
    };
    let at_type = |kind: Kind| Box::new(figment::Error::from(kind).with_path("type"));
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

/// `value` read as `T` (a variant's own struct, or anything serde reads).
pub fn variant<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, Box<figment::Error>> {
    value.deserialize().map_err(Box::new)
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
