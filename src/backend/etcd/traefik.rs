//! Layout `traefik`: Traefik KV provider keys, one router and one service per name, rewritten
//! per name in one transaction; rancon's index of each name it wrote sits beside them.

use super::{B64, Etcd, Stored};
use crate::backend::{ApplyReport, WriteFailure};
use crate::model::{Registration, RegistrationMap, bracket};
use crate::plan::{Plan, applied, by_name};
use base64::Engine;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// Private attribute holding the router rule.
pub const RULE: &str = "rule";

/// The registrations an index key lists (a JSON array of stored registrations).
pub fn decode_index(etcd: &Etcd, key: &str, value: &[u8]) -> Vec<Registration> {
    let Ok(items) = serde_json::from_slice::<Vec<Value>>(value) else {
        return vec![];
    };
    items
        .into_iter()
        .filter_map(|v| serde_json::to_vec(&v).ok())
        .filter_map(|v| etcd.decode(key, &v))
        .collect()
}

fn prefix_range(prefix: &str) -> Value {
    json!({
        "key": B64.encode(prefix),
        "range_end": B64.encode(super::range_end(prefix)),
    })
}

fn put(key: &str, value: &str, lease: &str) -> Value {
    json!({"request_put": {"key": B64.encode(key), "value": B64.encode(value), "lease": lease}})
}

/// Rewrites every name the plan touches, one transaction per name.
pub async fn apply(
    etcd: &Etcd,
    actual: &RegistrationMap,
    plan: &Plan,
    token: Option<&str>,
    lease: &str,
) -> ApplyReport {
    let next = applied(actual, plan);
    let groups = by_name(&next);
    let mut touched: BTreeSet<&str> = plan
        .register
        .values()
        .chain(plan.update.values())
        .map(|r| r.name.as_str())
        .collect();
    touched.extend(
        plan.deregister
            .iter()
            .filter_map(|id| actual.get(id))
            .map(|r| r.name.as_str()),
    );
    let mut report = ApplyReport::default();
    for name in touched {
        let root = &etcd.root;
        let mut ops = Vec::new();
        let index_key = format!("{}/{name}", etcd.base);
        // etcd refuses a transaction that deletes and puts the same key: puts for what stays,
        // deletes only for the servers beyond the new count.
        let before = actual.values().filter(|r| r.name == name).count();
        match groups.get(name) {
            Some(regs) => {
                for i in regs.len()..before {
                    let key = format!("{root}/http/services/{name}/loadbalancer/servers/{i}/url");
                    ops.push(json!({"request_delete_range": {"key": B64.encode(key)}}));
                }
                let rule = regs[0].private.attrs.get(RULE).cloned().unwrap_or_default();
                ops.push(put(
                    &format!("{root}/http/routers/{name}/rule"),
                    &rule,
                    lease,
                ));
                ops.push(put(
                    &format!("{root}/http/routers/{name}/service"),
                    name,
                    lease,
                ));
                for (i, r) in regs.iter().enumerate() {
                    ops.push(put(
                        &format!("{root}/http/services/{name}/loadbalancer/servers/{i}/url"),
                        &format!("http://{}:{}", bracket(&r.address), r.port),
                        lease,
                    ));
                }
                let stored: Vec<Stored> = regs.iter().map(|r| etcd.stored(r)).collect();
                ops.push(put(
                    &index_key,
                    &serde_json::to_string(&stored).unwrap_or_default(),
                    lease,
                ));
            }
            None => {
                for prefix in [
                    format!("{root}/http/routers/{name}/"),
                    format!("{root}/http/services/{name}/"),
                ] {
                    ops.push(json!({"request_delete_range": prefix_range(&prefix)}));
                }
                ops.push(json!({"request_delete_range": {"key": B64.encode(&index_key)}}));
            }
        }
        let result = etcd
            .call(
                "write traefik keys",
                "kv/txn",
                &json!({"success": ops}),
                token,
            )
            .await;
        let ids = plan
            .register
            .values()
            .chain(plan.update.values())
            .filter(|r| r.name == name)
            .map(|r| r.id.clone())
            .chain(
                plan.deregister
                    .iter()
                    .filter(|id| actual.get(*id).is_some_and(|r| r.name == name))
                    .cloned(),
            );
        match result {
            Ok(_) => report.done += ids.count(),
            Err(error) => report.failed.extend(ids.map(|id| WriteFailure {
                id,
                error: error.clone(),
            })),
        }
    }
    report.failed.sort_by(|a, b| a.id.cmp(&b.id));
    report
}
