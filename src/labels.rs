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
    labels
        .get(&format!("{prefix}.enable"))
        .is_some_and(|v| is_false(v))
}

fn is_false(v: &str) -> bool {
    matches!(v.trim().to_ascii_lowercase().as_str(), "false" | "0" | "no")
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
