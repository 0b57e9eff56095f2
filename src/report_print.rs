//! Printing a round's report: the dry-run plan (text, or JSON without internal keys), what an
//! update changes (field by field, old → new), and rancon's decisions at debug level.

use crate::cli::Output;
use crate::engine::{RoundReport, Totals};
use crate::error::Skip;
use crate::model::Registration;
use crate::output::clean;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Meta key of the digest of the checks rancon attached (Consul).
const CHECKS_META: &str = crate::labels::CHECKS_META;
/// Attribute holding the check definitions the digest is made from (Consul).
const CHECKS_ATTR: &str = crate::backend::consul::render::CHECKS_ATTR;

/// Prints the plan of a dry run to stdout.
pub fn print_plan(report: &RoundReport, output: Output) {
    if output == Output::Json {
        crate::say!(
            "{}",
            serde_json::to_string_pretty(&json_report(report)).unwrap_or_default()
        );
        return;
    }
    for b in &report.backends {
        crate::say!("backend {}:", b.backend);
        if let Some(e) = b.error_text() {
            crate::say!("  ! {}", clean(&e));
        }
        for s in &b.skipped {
            crate::say!(
                "  ? {} ({}): {}",
                clean(&s.endpoint),
                s.kind.as_str(),
                clean(&s.reason)
            );
        }
        let Some(p) = &b.plan else { continue };
        for r in p.register.values() {
            crate::say!("  + {}", describe(r));
        }
        for (id, r) in &p.update {
            crate::say!("  ~ {}", describe(r));
            if let Some(old) = p.previous.get(id) {
                for (field, c) in diff(old, r) {
                    crate::say!(
                        "      {}: {} → {}",
                        clean(&field),
                        clean(&shown(&c.old)),
                        clean(&shown(&c.new))
                    );
                }
            }
        }
        for id in &p.deregister {
            match p.previous.get(id) {
                Some(old) => crate::say!("  - {}", describe(old)),
                None => crate::say!("  - {}", clean(id)),
            }
        }
        crate::say!("  = {} unchanged", p.unchanged);
    }
}

/// `id name address:port`, printable whatever the data holds.
pub fn describe(r: &Registration) -> String {
    clean(&format!("{} {} {}:{}", r.id, r.name, r.address, r.port)).into_owned()
}

/// A value as one line of text: strings bare, anything else as JSON, absent as `(none)`.
fn shown(v: &Value) -> String {
    match v {
        Value::Null => "(none)".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One field an update changes: what the backend holds and what rancon writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    /// The held value (`null`: absent).
    pub old: Value,
    /// The value written (`null`: removed).
    pub new: Value,
}

/// What an update changes, keyed by field: `name`, `address`, `port`, `tags`, `meta.<key>`,
/// `check` (the checks rancon attaches), `attrs.<key>` (what a backend writes beside the
/// registration: a Traefik rule), `location` (a move to another agent or key) and `stale`
/// (the same content rewritten, e.g. an etcd key on an expired lease).
pub fn diff(old: &Registration, new: &Registration) -> BTreeMap<String, FieldChange> {
    let mut out = BTreeMap::new();
    let put = |out: &mut BTreeMap<String, FieldChange>, k: String, o: Value, n: Value| {
        if o != n {
            out.insert(k, FieldChange { old: o, new: n });
        }
    };
    put(&mut out, "name".into(), json!(old.name), json!(new.name));
    put(
        &mut out,
        "address".into(),
        json!(old.address),
        json!(new.address),
    );
    put(&mut out, "port".into(), json!(old.port), json!(new.port));
    put(&mut out, "tags".into(), json!(old.tags), json!(new.tags));
    let keys: std::collections::BTreeSet<&String> = old
        .meta
        .iter()
        .chain(new.meta.iter())
        .map(|(k, _)| k)
        .collect();
    for k in keys.into_iter().filter(|k| k.as_str() != CHECKS_META) {
        put(
            &mut out,
            format!("meta.{k}"),
            json!(old.meta.get(k)),
            json!(new.meta.get(k)),
        );
    }
    if old.meta.get(CHECKS_META) != new.meta.get(CHECKS_META) {
        // A listing holds only the digest of the checks; the new definition is known in full.
        let held =
            |r: &Registration| match (r.private.attrs.get(CHECKS_ATTR), r.meta.get(CHECKS_META)) {
                (Some(spec), _) => parsed(spec),
                (None, Some(digest)) => json!(format!("digest {digest}")),
                (None, None) => Value::Null,
            };
        out.insert(
            "check".into(),
            FieldChange {
                old: held(old),
                new: held(new),
            },
        );
    }
    let keys: std::collections::BTreeSet<&String> = old
        .private
        .attrs
        .iter()
        .chain(new.private.attrs.iter())
        .map(|(k, _)| k)
        .filter(|k| k.as_str() != CHECKS_ATTR)
        .collect();
    for k in keys {
        let (o, n) = (old.private.attrs.get(k), new.private.attrs.get(k));
        put(&mut out, format!("attrs.{k}"), json!(o), json!(n));
    }
    put(
        &mut out,
        "location".into(),
        json!(old.private.location.as_deref().map(redacted)),
        json!(new.private.location.as_deref().map(redacted)),
    );
    if out.is_empty() && (old.private.stale || new.private.stale) {
        out.insert(
            "stale".into(),
            FieldChange {
                old: json!(true),
                new: json!(false),
            },
        );
    }
    out
}

/// A location without credentials (an agent URL may carry `user:password@`).
fn redacted(location: &str) -> String {
    crate::config::validate::redact_userinfo(location)
}

/// A JSON value kept in a string (check definitions), parsed when it parses.
fn parsed(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.into()))
}

/// A registration as a report shows it: what the registry holds, none of rancon's own
/// bookkeeping (where it lives, the id it is known by there, lease staleness).
#[derive(Serialize)]
struct JsonRegistration<'a> {
    id: &'a str,
    name: &'a str,
    address: &'a str,
    port: u16,
    tags: &'a crate::model::Tags,
    meta: BTreeMap<&'a str, &'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health: Option<&'static str>,
    /// What a backend writes beside it (a Traefik rule, Consul check definitions).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    attrs: BTreeMap<&'a str, Value>,
}

fn json_registration(r: &Registration) -> JsonRegistration<'_> {
    JsonRegistration {
        id: &r.id,
        name: &r.name,
        address: &r.address,
        port: r.port,
        tags: &r.tags,
        meta: r
            .meta
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
        health: r.health.map(|h| h.as_str()),
        attrs: r
            .private
            .attrs
            .iter()
            .map(|(k, v)| {
                let v = if k == CHECKS_ATTR {
                    parsed(v)
                } else {
                    json!(v)
                };
                (k.as_str(), v)
            })
            .collect(),
    }
}

/// The report as `--output json` prints it.
fn json_report(report: &RoundReport) -> Value {
    let sources: Vec<Value> = report
        .sources
        .iter()
        .map(|s| {
            json!({
                "source": s.source,
                "endpoints": s.endpoints,
                "skipped": s.skipped,
                "error": s.error.as_ref().map(ToString::to_string),
            })
        })
        .collect();
    let backends: Vec<Value> = report
        .backends
        .iter()
        .map(|b| {
            let plan = b.plan.as_ref();
            let register: Vec<_> = plan
                .map(|p| p.register.values().map(json_registration).collect())
                .unwrap_or_default();
            let update: Vec<Value> = plan
                .map(|p| {
                    p.update
                        .iter()
                        .map(|(id, r)| {
                            let changes = p.previous.get(id).map(|old| diff(old, r));
                            json!({ "registration": json_registration(r), "changes": changes })
                        })
                        .collect()
                })
                .unwrap_or_default();
            let deregister: Vec<Value> = plan
                .map(|p| {
                    p.deregister
                        .iter()
                        .map(|id| match p.previous.get(id) {
                            Some(r) => json!(json_registration(r)),
                            None => json!({ "id": id }),
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "backend": b.backend,
                "error": b.error_text(),
                "listed": plan.is_some(),
                "register": register,
                "update": update,
                "deregister": deregister,
                "unchanged": plan.map_or(0, |p| p.unchanged),
                "held_back": b.held_back,
                "guard_tripped": b.guard_tripped,
                "skipped": b.skipped,
                "failed": b.failed,
            })
        })
        .collect();
    json!({
        "dry_run": report.dry_run,
        "standby": report.standby,
        "failed": report.failed(),
        "totals": totals(report.totals()),
        "sources": sources,
        "backends": backends,
    })
}

/// The totals without the write timing (a dry run writes nothing; timings vary per run).
fn totals(t: Totals) -> Value {
    json!({
        "registered": t.registered,
        "updated": t.updated,
        "deregistered": t.deregistered,
        "unchanged": t.unchanged,
        "failed": t.failed,
    })
}

/// Logs rancon's decisions of a round at debug level (`-v`): per source what it listed and
/// skipped, per backend what needs no write, and what each update changes.
pub fn log_decisions(report: &RoundReport) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    for s in &report.sources {
        tracing::debug!(
            source = %s.source,
            endpoints = s.endpoints,
            skipped = s.skipped.len(),
            "listed"
        );
        skipped(&s.skipped, "source", &s.source);
    }
    for b in &report.backends {
        skipped(&b.skipped, "backend", &b.backend);
        let Some(p) = &b.plan else { continue };
        tracing::debug!(backend = %b.backend, unchanged = p.unchanged, "unchanged: no write needed");
        for (id, r) in &p.update {
            let changes = p
                .previous
                .get(id)
                .map(|old| {
                    diff(old, r)
                        .iter()
                        .map(|(f, c)| format!("{f}: {} → {}", shown(&c.old), shown(&c.new)))
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default();
            tracing::debug!(backend = %b.backend, id = %id, changes = %changes, "update: what changed");
        }
        if b.held_back > 0 {
            tracing::debug!(
                backend = %b.backend,
                held_back = b.held_back,
                "deregistrations held back (a source failed or skipped items, a listing disagreed, or the guard tripped)"
            );
        }
    }
}

fn skipped(list: &[Skip], what: &'static str, name: &str) {
    for s in list {
        tracing::debug!(
            component = what,
            name = %name,
            endpoint = %s.endpoint,
            reason = s.kind.as_str(),
            why = %s.reason,
            "skipped"
        );
    }
}
