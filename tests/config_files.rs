//! The shipped files in config/: each loads, validates and builds; each passes the JSON Schema
//! (a real validator), which refuses what `check` refuses; the example shows every key of the
//! schema. (Own process: it needs the repo as cwd.)

use assert_cmd::Command;
use rancon::cli::ConfigArgs;
use serde_json::Value as Json;
use std::path::{Path, PathBuf};

/// The configurations in config/ (TOML files directly in it) and the data files in
/// config/data/.
fn files() -> (Vec<PathBuf>, Vec<PathBuf>) {
    let toml = |dir: &str| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "toml"))
            .collect();
        v.sort();
        v
    };
    (toml("config"), toml("config/data"))
}

#[test]
fn every_file_in_config_loads_and_validates() {
    // The demo writes under target/; make sure it exists for a fresh clone's test run.
    std::fs::create_dir_all("target").unwrap();
    let (configs, data) = files();
    for path in &configs {
        let args = ConfigArgs {
            config: Some(path.clone()),
            sets: vec![],
            legacy: false,
        };
        let loaded =
            rancon::app::load_valid(&args).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        rancon::app::build(&loaded.config).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    assert!(
        configs.len() >= 4,
        "expected demo, minimal, rancher-consul and example configs, found {configs:?}"
    );
    // Service lists for the static source.
    for path in &data {
        rancon::source::static_file::read_services_file(path).unwrap();
    }
    assert!(
        !data.is_empty(),
        "the demo's services file is in config/data/"
    );
}

fn schema() -> Json {
    serde_json::from_str(&rancon::app::schema()).unwrap()
}

fn validator() -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema())
        .unwrap()
}

fn as_json(path: &Path) -> Json {
    let text = std::fs::read_to_string(path).unwrap();
    let value: toml::Value = toml::from_str(&text).unwrap();
    serde_json::to_value(value).unwrap()
}

/// Every message of the validator for `instance`, one per line.
fn schema_errors(v: &jsonschema::Validator, instance: &Json) -> String {
    v.iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_example_config_passes_the_json_schema() {
    let v = validator();
    for path in files().0 {
        let errors = schema_errors(&v, &as_json(&path));
        assert!(errors.is_empty(), "{}:\n{errors}", path.display());
    }
}

/// Each broken copy of the example is refused by the schema and by `check` alike.
#[test]
fn the_schema_refuses_what_check_refuses() {
    let v = validator();
    let example = as_json(Path::new("config/rancon.example.toml"));
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Json)> = vec![
        ("/owner", "Web Team".into()),
        ("/max_deregister_fraction", 1.5.into()),
        ("/interval", "5 parsecs".into()),
        ("/shutdown_timeout", "30".into()),
        ("/max_response_size", 1024.into()),
        ("/label_prefix", "rancon.".into()),
        ("/http/listen", "localhost:9090".into()),
        ("/leader/url", "consul:8500".into()),
        ("/sources/rancher/url", "ftp://rancher.example.com".into()),
        ("/sources/rancher/timeout", "10".into()),
        ("/backends/consul/url", "consul:8500".into()),
        ("/backends/consul/concurrency", 0.into()),
        ("/backends/consul/check_ttl", "1 fortnight".into()),
        (
            "/backends/etcd/endpoints",
            Json::Array(vec!["127.0.0.1:2379".into()]),
        ),
        ("/backends/traefik/path", "/tmp/out.json".into()),
        ("/sources/external/services/0/port", 0.into()),
    ];
    for (pointer, bad) in cases {
        let mut broken = example.clone();
        let (parent, field) = pointer.rsplit_once('/').unwrap();
        match broken.pointer_mut(parent).unwrap() {
            Json::Object(o) => {
                o.insert(field.to_string(), bad.clone());
            }
            Json::Array(a) => a[field.parse::<usize>().unwrap()] = bad.clone(),
            _ => panic!("{parent}"),
        }
        assert!(!v.is_valid(&broken), "the schema accepts {pointer} = {bad}");
        let file = dir.path().join("broken.toml");
        let toml_value: toml::Value = serde_json::from_value(broken).unwrap();
        std::fs::write(&file, toml::to_string(&toml_value).unwrap()).unwrap();
        let out = Command::cargo_bin("rancon")
            .unwrap()
            .env_clear()
            .args(["check", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(78),
            "check accepts {pointer} = {bad}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // A component name the schema's propertyNames refuses, as check does.
    let mut broken = example.clone();
    let consul = broken["backends"]["etcd"].clone();
    broken["backends"]["Etcd2"] = consul;
    assert!(!v.is_valid(&broken), "the schema accepts backends.Etcd2");
}

/// Formats a validator knows: schemars' own (`uint64`, `double`) are not JSON Schema's.
#[test]
fn the_schema_uses_standard_formats_only() {
    fn formats(v: &Json, out: &mut Vec<String>) {
        match v {
            Json::Object(o) => {
                if let Some(Json::String(f)) = o.get("format") {
                    out.push(f.clone());
                }
                // `default`, `const`, `enum` and `examples` hold values, not schemas: a
                // `format` key there is a config key (`log.format`), not a keyword.
                o.iter()
                    .filter(|(k, _)| {
                        !["default", "const", "enum", "examples"].contains(&k.as_str())
                    })
                    .for_each(|(_, v)| formats(v, out));
            }
            Json::Array(a) => a.iter().for_each(|v| formats(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    formats(&schema(), &mut found);
    assert!(found.contains(&"uri".to_string()), "{found:?}");
    for f in found {
        assert!(
            ["uri", "hostname", "ipv4", "ipv6", "date-time", "email"].contains(&f.as_str()),
            "non-standard format {f}"
        );
    }
}

/// The example with its commented-out keys (`# key = value`, `# [table]`) put back.
fn example_with_optional_keys() -> toml::Table {
    let text = std::fs::read_to_string("config/rancon.example.toml").unwrap();
    let key = regex::Regex::new(r"^#\s?((?:\[[a-z0-9_.]+\])|(?:[a-z][a-z0-9_]*\s*=.*))$").unwrap();
    let uncommented: Vec<String> = text
        .lines()
        .map(|l| match key.captures(l) {
            Some(c) => c[1].to_string(),
            None => l.to_string(),
        })
        .collect();
    toml::from_str(&uncommented.join("\n")).expect("the example, optional keys uncommented")
}

/// The keys of `schema` at `at` that none of `values` shows, as paths (`sources.<rancher>.url`).
fn missing(root: &Json, schema: &Json, values: &[&toml::Value], at: &str, out: &mut Vec<String>) {
    let nodes = concrete(root, schema);
    let tag = |n: &Json| {
        n.pointer("/properties/type/const")?
            .as_str()
            .map(str::to_string)
    };
    if nodes.iter().any(|n| tag(n).is_some()) {
        // A component: every kind appears, and each shows its own keys.
        for n in &nodes {
            let kind = tag(n).unwrap_or_default();
            let of_kind: Vec<&toml::Value> = values
                .iter()
                .copied()
                .filter(|v| v.get("type").and_then(toml::Value::as_str) == Some(&kind))
                .collect();
            if of_kind.is_empty() {
                out.push(format!("{at}.<{kind}> (no table of type \"{kind}\")"));
            } else {
                fields(root, n, &of_kind, &format!("{at}.<{kind}>"), out);
            }
        }
        return;
    }
    for n in nodes {
        fields(root, n, values, at, out);
    }
}

/// The keys of one concrete schema (its fields, map values, list items) none of `values` shows.
fn fields(root: &Json, n: &Json, values: &[&toml::Value], at: &str, out: &mut Vec<String>) {
    {
        if let Some(props) = n.get("properties").and_then(Json::as_object) {
            for (name, sub) in props {
                let inner: Vec<&toml::Value> = values.iter().filter_map(|v| v.get(name)).collect();
                let path = if at.is_empty() {
                    name.clone()
                } else {
                    format!("{at}.{name}")
                };
                if inner.is_empty() {
                    out.push(path);
                } else {
                    missing(root, sub, &inner, &path, out);
                }
            }
        }
        if let Some(sub) = n.get("additionalProperties").filter(|a| a.is_object()) {
            let inner: Vec<&toml::Value> = values
                .iter()
                .filter_map(|v| v.as_table())
                .flat_map(|t| t.values())
                .collect();
            missing(root, sub, &inner, &format!("{at}.<name>"), out);
        }
        if let Some(items) = n.get("items") {
            let inner: Vec<&toml::Value> = values
                .iter()
                .filter_map(|v| v.as_array())
                .flatten()
                .collect();
            missing(root, items, &inner, &format!("{at}[]"), out);
        }
    }
}

/// The concrete schemas a node stands for: references followed, alternatives listed.
fn concrete<'a>(root: &'a Json, node: &'a Json) -> Vec<&'a Json> {
    if let Some(r) = node.get("$ref").and_then(Json::as_str) {
        let name = r.trim_start_matches("#/$defs/");
        return concrete(root, &root["$defs"][name]);
    }
    if let Some(alts) = node
        .get("anyOf")
        .or(node.get("oneOf"))
        .and_then(Json::as_array)
    {
        return alts.iter().flat_map(|a| concrete(root, a)).collect();
    }
    if node.get("type").and_then(Json::as_str) == Some("null") {
        return vec![];
    }
    vec![node]
}

/// Every key of the schema appears in the example (set or commented out), each component
/// kind in a table of its own; a key added without an example fails here, named.
#[test]
fn the_example_shows_every_key_of_the_schema() {
    let schema = schema();
    let example = toml::Value::Table(example_with_optional_keys());
    let mut out = Vec::new();
    missing(&schema, &schema, &[&example], "", &mut out);
    assert!(
        out.is_empty(),
        "config/rancon.example.toml does not show (add them, commented out if optional):\n  {}",
        out.join("\n  ")
    );
}

/// The walk above sees what it must: without the rancher source and the leader, it says so.
#[test]
fn the_key_walk_names_what_is_missing() {
    let schema = schema();
    let mut example = example_with_optional_keys();
    example.remove("leader");
    example["sources"].as_table_mut().unwrap().remove("rancher");
    example["backends"]["consul"]
        .as_table_mut()
        .unwrap()
        .remove("discovery_url");
    let mut out = Vec::new();
    missing(
        &schema,
        &schema,
        &[&toml::Value::Table(example)],
        "",
        &mut out,
    );
    out.sort();
    assert_eq!(
        out,
        [
            "backends.<name>.<consul>.discovery_url",
            "leader",
            "sources.<name>.<rancher> (no table of type \"rancher\")",
        ]
    );
}

/// Every duration the example shows sits at a key the schema reads as a duration (a field
/// declared `#[schemars(with = "String")]` would take "5 parsecs" in an editor).
#[test]
fn every_duration_in_the_example_has_the_duration_schema() {
    fn walk(root: &Json, schema: &Json, value: &toml::Value, at: &str, out: &mut Vec<String>) {
        let nodes = concrete(root, schema);
        match value {
            toml::Value::Table(t) => {
                let kind = t.get("type").and_then(toml::Value::as_str);
                for (k, v) in t {
                    let sub = nodes
                        .iter()
                        .filter(|n| {
                            let tag = n.pointer("/properties/type/const").and_then(Json::as_str);
                            tag.is_none() || tag == kind
                        })
                        .find_map(|n| {
                            n.pointer(&format!("/properties/{k}"))
                                .or_else(|| n.get("additionalProperties").filter(|a| a.is_object()))
                        });
                    if let Some(sub) = sub {
                        walk(root, sub, v, &format!("{at}.{k}"), out);
                    }
                }
            }
            toml::Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    if let Some(items) = nodes.iter().find_map(|n| n.get("items")) {
                        walk(root, items, v, &format!("{at}[{i}]"), out);
                    }
                }
            }
            toml::Value::String(s)
                if s.contains(char::is_alphabetic) && humantime::parse_duration(s).is_ok() =>
            {
                let pattern = nodes.iter().find_map(|n| n.get("pattern"));
                if pattern != Some(&root["$defs"]["Duration"]["pattern"]) {
                    out.push(format!("{} = {s:?}", at.trim_start_matches('.')));
                }
            }
            _ => {}
        }
    }
    let schema = schema();
    assert!(schema["$defs"]["Duration"]["pattern"].is_string());
    let mut out = Vec::new();
    let example = toml::Value::Table(example_with_optional_keys());
    walk(&schema, &schema, &example, "", &mut out);
    assert!(
        out.is_empty(),
        "durations without the duration schema (use `#[schemars(with = \"crate::config::schema::HumanDuration\")]`):\n  {}",
        out.join("\n  ")
    );
}
