//! The v3 JSON gateway's shapes: keys and values in base64, range answers, transaction
//! operations and compares. Everything here comes from or goes to the server as JSON.

use crate::error::BackendError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// etcd's gateway carries keys and values as base64.
pub(super) const B64: base64::engine::GeneralPurpose = STANDARD;

/// One key as the gateway lists it. Keys and values come from the server: nothing in them
/// is trusted before it is checked.
pub(super) struct Kv {
    pub(super) key: String,
    pub(super) value: Vec<u8>,
    pub(super) mod_revision: i64,
    /// `"0"`: no lease.
    pub(super) lease: String,
}

/// An integer the gateway sends as a string (int64 in JSON) or, from others, a number.
pub(super) fn int(v: Option<&Value>) -> Option<i64> {
    v.and_then(|t| t.as_str().and_then(|s| s.parse().ok()).or(t.as_i64()))
}

/// A lease id as text, `"0"` when absent.
pub(super) fn lease_of(v: Option<&Value>) -> String {
    v.and_then(|l| {
        l.as_str()
            .map(str::to_string)
            .or(l.as_i64().map(|n| n.to_string()))
    })
    .unwrap_or_else(|| "0".into())
}

/// The keys of a range answer (`kv/range`, or a transaction's `response_range`); entries that
/// do not decode are left out.
pub(super) fn kvs(v: &Value) -> Vec<Kv> {
    v.get("kvs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|kv| {
            let key = B64.decode(kv.get("key")?.as_str()?).ok()?;
            let value = match kv.get("value") {
                None => vec![],
                Some(s) => B64.decode(s.as_str()?).ok()?,
            };
            Some(Kv {
                key: String::from_utf8_lossy(&key).into_owned(),
                value,
                mod_revision: int(kv.get("mod_revision")).unwrap_or(0),
                lease: lease_of(kv.get("lease")),
            })
        })
        .collect()
}

/// A compare that holds while `key` does not exist.
pub(super) fn absent(key: &str) -> Value {
    json!({"key": B64.encode(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"})
}

/// A compare that holds while `key` is as it was at revision `rev` (absent keys fail it).
pub(super) fn unchanged(key: &str, rev: i64) -> Value {
    json!({"key": B64.encode(key), "target": "MOD", "result": "EQUAL", "mod_revision": rev.to_string()})
}

/// `absent`, or `unchanged` since the revision listed.
pub(super) fn expect(key: &str, listed: Option<i64>) -> Value {
    listed.map_or_else(|| absent(key), |rev| unchanged(key, rev))
}

pub(super) fn put_op(key: &str, value: &str, lease: &str) -> Value {
    json!({"request_put": {"key": B64.encode(key), "value": B64.encode(value), "lease": lease}})
}

/// Deletes one exact key (never a range).
pub(super) fn delete_op(key: &str) -> Value {
    json!({"request_delete_range": {"key": B64.encode(key)}})
}

/// Reads one key, or every key under `prefix` when `range` (keys only: leases and revisions).
pub(super) fn range_op(key: &str, range: bool, keys_only: bool, limit: i64) -> Value {
    let mut r = json!({"key": B64.encode(key), "keys_only": keys_only, "limit": limit});
    if range {
        r["range_end"] = Value::String(B64.encode(range_end(key)));
    }
    json!({ "request_range": r })
}

/// The keys of the `i`th response of a transaction, which must be a range.
pub(super) fn txn_kvs(t: &Txn, i: usize) -> Result<Vec<Kv>, BackendError> {
    match t.responses.get(i) {
        Some(r) => Ok(r.get("response_range").map(kvs).unwrap_or_default()),
        None => Err(BackendError::Decode {
            what: format!("transaction answer from {}", t.url),
            message: format!(
                "{} responses where at least {} were asked for",
                t.responses.len(),
                i + 1
            ),
        }),
    }
}

/// A value from a server shown in a message: plain when short and tame, else quoted, escaped
/// and cut.
pub(super) fn shown(s: &str) -> String {
    let tame = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
    if !s.is_empty() && s.len() <= 64 && s.chars().all(tame) {
        s.to_string()
    } else {
        format!("{:?}", s.chars().take(64).collect::<String>())
    }
}

/// Whether an error is etcd refusing a transaction as longer than `--max-txn-ops`.
pub(super) fn too_many_ops(e: &BackendError) -> bool {
    matches!(e, BackendError::Http { status: 400, message, .. } if message.contains("too many operations"))
}

/// The answer to a transaction.
pub(super) struct Txn {
    /// The endpoint that answered.
    pub(super) url: String,
    /// False when a compare failed: the success branch did not run, nothing of it was written.
    pub(super) succeeded: bool,
    /// The responses of the branch that ran.
    pub(super) responses: Vec<Value>,
}

/// The end of a prefix range: the prefix with its last byte incremented.
pub(super) fn range_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
