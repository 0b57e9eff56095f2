//! Label selection: `<prefix>` or `<prefix>.*` selects a service; `<prefix>.X` becomes property `X`.

use crate::template::Props;
use std::collections::BTreeMap;

/// Returns the properties carried by `labels` under `prefix`, or `None` when the service is
/// not selected (no such label, or `<prefix>.enable=false`).
///
/// `<prefix>.a.b` becomes property `a_b` (lower-case), so it can be used as `%A_B%`.
pub fn select(labels: &BTreeMap<String, String>, prefix: &str) -> Option<Props> {
    let mut selected = false;
    let mut props = Props::new();
    let dotted = format!("{prefix}.");
    for (key, value) in labels {
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
pub fn opted_out(labels: &BTreeMap<String, String>, prefix: &str) -> bool {
    // Case-insensitive, as selection turns `rancon.Enable` into property `enable`.
    let key = format!("{prefix}.enable");
    labels
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case(&key) && is_false(v))
}

fn is_false(v: &str) -> bool {
    matches!(v.trim().to_ascii_lowercase().as_str(), "false" | "0" | "no")
}

/// Meta key naming the owning rancon deployment.
pub const OWNER_META: &str = "rancon-owner";
/// Meta key holding a record of the checks rancon attached (Consul).
pub const CHECKS_META: &str = "rancon-checks";
/// Meta keys rancon sets itself; config and labels cannot override them.
pub const RESERVED_META: &[&str] = &[OWNER_META, "external-source", CHECKS_META];

/// Tags from labels `rancon.tag` / `rancon.tags` (comma-separated; `\,` keeps a comma).
pub fn label_tags(props: &Props) -> std::collections::BTreeSet<String> {
    ["tag", "tags"]
        .iter()
        .filter_map(|k| props.get(*k))
        .flat_map(|v| split_tags(v))
        .collect()
}

/// Meta from labels `rancon.meta.K=V`, keys sanitised, rancon's reserved keys left out.
pub fn label_meta(props: &Props) -> crate::model::Meta {
    props
        .iter()
        .filter_map(|(key, value)| {
            let k = meta_key(key.strip_prefix("meta_")?);
            (!k.is_empty() && !RESERVED_META.contains(&k.as_str())).then(|| (k, value.clone()))
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
}
