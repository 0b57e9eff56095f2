//! The text layers — `RANCON_*` variables and `--set key=value` — as figment layers, each value
//! read by the type of its key: text where the key holds text (`RANCON_OWNER=2024` is the
//! string `"2024"`), TOML where it does not (`RANCON_INTERVAL=5s`, `--set http.enabled=true`).

use super::report::Problem;
use super::schema::Keys;
use figment::value::{Dict, Map, Value};
use figment::{Error, Figment, Metadata, Profile, Provider, Source};
use std::collections::BTreeMap;

/// One value given as text, with where it came from.
#[derive(Debug, Clone)]
pub struct Text {
    /// `env RANCON_X` or `--set x`.
    pub origin: String,
    /// The key path as given (any case).
    pub path: Vec<String>,
    /// The value as given.
    pub text: String,
    /// From a variable (not `--set`).
    pub env: bool,
}

/// A figment layer that names its one origin: a variable, a `--set`, the defaults, the
/// variables of another tool.
#[derive(Debug, Clone)]
pub struct Layer {
    origin: String,
    data: Dict,
}

impl Layer {
    /// A layer holding `data`, every value of which came from `origin`.
    pub fn new(origin: impl Into<String>, data: Dict) -> Self {
        Self {
            origin: origin.into(),
            data,
        }
    }

    /// Sets `value` at `path`, making the tables on the way.
    pub fn insert(&mut self, path: &[String], value: Value) {
        let Some((last, parents)) = path.split_last() else {
            return;
        };
        let mut table = &mut self.data;
        for p in parents {
            let entry = table
                .entry(p.clone())
                .or_insert_with(|| Value::from(Dict::new()));
            if entry.as_dict().is_none() {
                *entry = Value::from(Dict::new());
            }
            let Value::Dict(_, d) = entry else {
                unreachable!("just made a table")
            };
            table = d;
        }
        table.insert(last.clone(), value);
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::from(self.origin.clone(), Source::Custom(self.origin.clone()))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        Ok(Profile::Default.collect(self.data.clone()))
    }
}

/// figment-style values parse recursively: a value nesting deeper than this is refused
/// before parsing (`RANCON_OWNER="[[[[…"` must not overflow the stack).
const MAX_DEPTH: usize = 32;

/// The `RANCON_*` variables, sorted by name, but those `skip` (given the name after the
/// prefix) says are not keys.
pub fn from_env(skip: &dyn Fn(&str) -> bool) -> (Vec<Text>, Vec<Problem>) {
    let mut texts = Vec::new();
    let mut problems = Vec::new();
    for (k, v) in std::env::vars_os() {
        let Some(name) = k.to_str() else { continue };
        let Some(rest) = name
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("RANCON_"))
            .map(|_| &name[7..])
        else {
            continue;
        };
        if rest.is_empty() || skip(rest) {
            continue;
        }
        let origin = format!("env {name}");
        let path: Vec<String> = rest.split("__").map(str::to_string).collect();
        match v.into_string() {
            Ok(text) => texts.push(Text {
                origin,
                path,
                text,
                env: true,
            }),
            Err(_) => problems.push(Problem {
                key: rest.to_ascii_lowercase().replace("__", "."),
                message: "value is not UTF-8".into(),
                origin: Some(origin),
            }),
        }
    }
    texts.sort_by(|a, b| a.origin.cmp(&b.origin));
    (texts, problems)
}

/// The `--set key.path=value` overrides, in order.
pub fn from_sets(sets: &[String]) -> (Vec<Text>, Vec<Problem>) {
    let mut texts = Vec::new();
    let mut problems = Vec::new();
    for (i, s) in sets.iter().enumerate() {
        match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => texts.push(Text {
                origin: format!("--set {}", k.trim()),
                path: k.trim().split('.').map(str::to_string).collect(),
                text: v.to_string(),
                env: false,
            }),
            // Not echoed: a secret typed with the wrong separator would be printed.
            _ => problems.push(Problem {
                key: String::new(),
                message: format!(
                    "--set #{} is not KEY=VALUE (e.g. --set interval=10s); its text is not shown, it may hold a secret",
                    i + 1
                ),
                origin: Some("command line --set".into()),
            }),
        }
    }
    (texts, problems)
}

/// Values nesting deeper than figment can safely read.
pub fn too_deep(texts: &[Text]) -> Vec<Problem> {
    texts
        .iter()
        .filter(|t| nesting(&t.text) > MAX_DEPTH)
        .map(|t| Problem {
            key: t.path.join(".").to_ascii_lowercase(),
            message: format!("value nests deeper than {MAX_DEPTH} levels"),
            origin: Some(t.origin.clone()),
        })
        .collect()
}

/// The deepest nesting of `[` and `{` in a value.
fn nesting(value: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for c in value.chars() {
        match c {
            '[' | '{' => {
                depth += 1;
                max = max.max(depth);
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// One layer per text, in order, each key spelled as the schema spells it and each value
/// read by its key's type. `lower` holds the layers below (for the `type` of components the
/// texts do not name). A key the schema does not know is lower-cased when it comes from a
/// variable (variables are upper case by custom).
pub fn layers(texts: &[Text], keys: &Keys, lower: &Figment) -> Vec<Layer> {
    // A component's `type` decides which fields it has: take it from the highest layer.
    let mut kinds: BTreeMap<Vec<String>, String> = BTreeMap::new();
    for t in texts.iter().filter(|t| t.path.len() == 3) {
        let parts: Vec<&str> = t.path.iter().map(String::as_str).collect();
        let key = keys.key(&parts, &|_| None);
        if key.path[2] == "type" {
            kinds.insert(key.path[..2].to_vec(), text_value(&t.text));
        }
    }
    let kind_of = |at: &[String]| {
        kinds.get(at).cloned().or_else(|| {
            let v = lower.find_value(&format!("{}.type", at.join("."))).ok()?;
            v.as_str().map(str::to_string)
        })
    };
    texts
        .iter()
        .map(|t| {
            let parts: Vec<&str> = t.path.iter().map(String::as_str).collect();
            let mut key = keys.key(&parts, &kind_of);
            if !key.known && t.env {
                key.path = key.path.iter().map(|p| p.to_lowercase()).collect();
            }
            let value = if key.text {
                Value::from(text_value(&t.text))
            } else {
                parse(&t.text).map_or_else(|| Value::from(t.text.clone()), from_toml)
            };
            let mut layer = Layer::new(t.origin.clone(), Dict::new());
            layer.insert(&key.path, value);
            layer
        })
        .collect()
}

/// Text for a key that holds text: as given, or the content of a quoted TOML string
/// (`"2024"`, the spelling that was needed before keys were typed).
fn text_value(text: &str) -> String {
    match parse(text) {
        Some(toml::Value::String(s)) if text.trim_start().starts_with(['"', '\'']) => s,
        _ => text.to_string(),
    }
}

/// `text` as one TOML value, if it is one.
fn parse(text: &str) -> Option<toml::Value> {
    let mut table = toml::from_str::<toml::Table>(&format!("v = {text}")).ok()?;
    (table.len() == 1).then(|| table.remove("v")).flatten()
}

fn from_toml(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => s.into(),
        toml::Value::Integer(i) => i.into(),
        toml::Value::Float(f) => f.into(),
        toml::Value::Boolean(b) => b.into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(a) => a.into_iter().map(from_toml).collect::<Vec<_>>().into(),
        toml::Value::Table(t) => t
            .into_iter()
            .map(|(k, v)| (k, from_toml(v)))
            .collect::<Dict>()
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_keeps_what_was_given_unless_quoted() {
        assert_eq!(text_value("2024"), "2024");
        assert_eq!(text_value("true"), "true");
        assert_eq!(text_value("\"2024\""), "2024");
        assert_eq!(text_value("'x'"), "x");
        assert_eq!(text_value("007"), "007");
        assert_eq!(text_value("a\nb = 1"), "a\nb = 1");
    }

    #[test]
    fn one_value_only() {
        assert!(parse("5\nother = 1").is_none());
        assert_eq!(parse("[1, 2]").map(|v| v.is_array()), Some(true));
    }
}
