//! Label selection: `<prefix>` or `<prefix>.*` selects a service; `<prefix>.X` becomes property `X`.

use crate::template::Props;
use std::collections::BTreeMap;

/// Labels by key, iterated in key order: a `BTreeMap` as sources decode them, or the sorted
/// list (`Meta`) a view keeps.
pub trait LabelMap {
    /// The labels in key order.
    fn pairs(&self) -> impl Iterator<Item = (&String, &String)>;
}

impl LabelMap for BTreeMap<String, String> {
    fn pairs(&self) -> impl Iterator<Item = (&String, &String)> {
        self.iter()
    }
}

impl LabelMap for crate::model::Meta {
    fn pairs(&self) -> impl Iterator<Item = (&String, &String)> {
        self.iter()
    }
}

/// Returns the properties carried by `labels` under `prefix`, or `None` when the service is
/// not selected (no such label, or `<prefix>.enable=false`).
///
/// `<prefix>.a.b` becomes property `a_b` (lower-case), so it can be used as `%A_B%`.
pub fn select(labels: &impl LabelMap, prefix: &str) -> Option<Props> {
    let mut selected = false;
    let mut props = Props::new();
    let dotted = format!("{prefix}.");
    for (key, value) in labels.pairs() {
        if key == prefix {
            selected = true;
        } else if let Some(rest) = key.strip_prefix(&dotted) {
            selected = true;
            if !rest.is_empty() {
                props.insert(rest.replace('.', "_").to_ascii_lowercase(), value.clone());
            }
        }
    }
    let disabled = props.get("enable").is_some_and(|v| is_false(v));
    (selected && !disabled).then_some(props)
}

/// Whether `labels` carry `<prefix>.enable=false` (or `0`, `no`).
pub fn opted_out(labels: &impl LabelMap, prefix: &str) -> bool {
    // Case-insensitive, as selection turns `rancon.Enable` into property `enable`.
    let key = format!("{prefix}.enable");
    labels
        .pairs()
        .any(|(k, v)| k.eq_ignore_ascii_case(&key) && is_false(v))
}

/// Whether a label value says no (`false`, `0`, `no`; any case).
pub fn is_false(v: &str) -> bool {
    matches!(v.trim().to_ascii_lowercase().as_str(), "false" | "0" | "no")
}

/// Whether a label value says yes (`true`, `1`, `yes`; any case).
pub fn is_true(v: &str) -> bool {
    matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes")
}

/// The properties of the address on `port`: per-port properties (`port_<P>_<x>`, from labels
/// `<prefix>.port.<P>.<x>`) of that port replace the service's `x`; those of other ports are
/// dropped. `tag` and `tags` go together: a port that sets either replaces both.
pub fn for_port(props: Props, port: &str) -> Props {
    let mut out = Props::new();
    let mut own = Props::new();
    for (key, value) in props {
        match per_port(&key) {
            Some((p, rest)) if p == port && !rest.is_empty() => {
                own.insert(rest.to_string(), value);
            }
            Some(_) => {}
            None => {
                out.insert(key, value);
            }
        }
    }
    if own.contains_key("tag") || own.contains_key("tags") {
        out.remove("tag");
        out.remove("tags");
    }
    out.extend(own);
    out
}

/// `port_<digits>[_<rest>]` → (digits, rest); `None` for any other property.
fn per_port(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("port_")?;
    let end = rest.find('_').unwrap_or(rest.len());
    let (digits, tail) = rest.split_at(end);
    let ok = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| (digits, tail.strip_prefix('_').unwrap_or("")))
}

/// Meta key naming the owning rancon deployment.
pub const OWNER_META: &str = "rancon-owner";
/// Meta key holding a record of the checks rancon attached (Consul).
pub const CHECKS_META: &str = "rancon-checks";
/// Meta keys rancon sets itself; config and labels cannot override them.
pub const RESERVED_META: &[&str] = &[OWNER_META, "external-source", CHECKS_META];

/// Whether a tag is an ownership marker (`rancon-<owner>`): only rancon sets those, so a
/// label cannot claim a registration for another owner.
pub fn is_reserved_tag(tag: &str) -> bool {
    tag.starts_with("rancon-")
}

/// Whether a meta key is rancon's own (`rancon-*`, `external-source`) or one Consul refuses
/// (`consul-*`: `structs.ValidateServiceMetadata` answers 400 on every write).
pub fn is_reserved_meta(key: &str) -> bool {
    key.starts_with("rancon-") || key.starts_with("consul-") || RESERVED_META.contains(&key)
}

/// Tags from labels `rancon.tag` / `rancon.tags` (comma-separated; `\,` keeps a comma);
/// ownership markers are dropped with a warning.
pub fn label_tags(props: &Props) -> crate::model::Tags {
    ["tag", "tags"]
        .iter()
        .filter_map(|k| props.get(*k))
        .flat_map(|v| split_tags(v))
        .filter(|t| {
            let reserved = is_reserved_tag(t);
            if reserved {
                tracing::warn!(tag = %t, "label tag looks like an ownership marker; dropped");
            }
            !reserved
        })
        .collect()
}

/// Meta from labels `rancon.meta.K=V`, keys sanitised; reserved keys (`is_reserved_meta`)
/// are dropped with a warning.
pub fn label_meta(props: &Props) -> crate::model::Meta {
    props
        .iter()
        .filter_map(|(key, value)| {
            let k = meta_key(key.strip_prefix("meta_")?);
            if is_reserved_meta(&k) {
                tracing::warn!(key = %k, "label meta key is reserved (rancon-*, consul-*); dropped");
                return None;
            }
            (!k.is_empty()).then(|| (k, value.clone()))
        })
        .collect()
}

/// Splits a `rancon.tags` value on commas; `\,` keeps a comma (Traefik rules need them).
pub fn split_tags(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&',') => {
                cur.push(',');
                chars.next();
            }
            ',' => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Meta keys may hold `[A-Za-z0-9_-]` (Consul's rule, at most 128); anything else becomes `_`.
pub fn meta_key(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect()
}

/// Lower-cases and maps every character outside `[a-z0-9-]` to `-` (the service id rule).
pub fn service_id(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn bare_prefix_selects_without_properties() {
        assert_eq!(
            select(&labels(&[("rancon", "")]), "rancon"),
            Some(Props::new())
        );
    }

    #[test]
    fn nested_labels_become_underscored_properties() {
        let p = select(
            &labels(&[("rancon.check.http", "/h"), ("other", "x")]),
            "rancon",
        )
        .unwrap();
        assert_eq!(p.get("check_http").map(String::as_str), Some("/h"));
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn unrelated_or_lookalike_labels_do_not_select() {
        assert_eq!(select(&labels(&[("ranconx", "1")]), "rancon"), None);
        assert_eq!(select(&labels(&[]), "rancon"), None);
    }

    #[test]
    fn enable_false_opts_out() {
        assert_eq!(
            select(
                &labels(&[("rancon.enable", "False"), ("rancon.name", "x")]),
                "rancon"
            ),
            None
        );
        assert!(select(&labels(&[("rancon.enable", "true")]), "rancon").is_some());
    }

    #[test]
    fn per_port_properties_replace_the_services_for_their_port_only() {
        let props: Props = [
            ("tag", "a"),
            ("tags", "b,c"),
            ("meta_x", "1"),
            ("port_9090_tags", "metrics"),
            ("port_9090_meta_x", "2"),
            ("port_8080_name", "other"),
            ("port_9090", "bare"),
            ("port_http_name", "not a port"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let p = for_port(props.clone(), "9090");
        let keys: Vec<_> = p.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            keys,
            vec!["meta_x=2", "port_http_name=not a port", "tags=metrics"]
        );
        let p = for_port(props, "1");
        assert_eq!(p.get("tag").map(String::as_str), Some("a"));
        assert!(!p.contains_key("name"));
        assert!(
            !p.keys()
                .any(|k| k.starts_with("port_9") || k.starts_with("port_8"))
        );
    }

    #[test]
    fn labels_cannot_forge_ownership_or_reserved_meta() {
        let props: Props = [
            ("tags", "web,rancon-other, rancon-,ok"),
            ("meta_rancon-owner", "other"),
            ("meta_consul-x", "1"),
            ("meta_external-source", "x"),
            ("meta_team", "a"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let tags: Vec<_> = label_tags(&props).into_iter().collect();
        assert_eq!(tags, vec!["ok", "web"]);
        let meta: Vec<_> = label_meta(&props).into_iter().collect();
        assert_eq!(meta, vec![("team".to_string(), "a".to_string())]);
    }
}
