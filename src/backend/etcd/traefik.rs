//! Layout `traefik`: Traefik KV provider keys, one router and one service per name; rancon's
//! index of each name it wrote sits beside them (`rancon/index/<root>/<owner>/<name>`).
//! The labels of `traefik_route` (scheme, entry points, middlewares, TLS) become the KV
//! provider's keys; TCP routers are the file backend's only (those endpoints are skipped).
//!
//! Ownership is by name. A name in this owner's index is ours; any other name whose router or
//! service keys exist is someone else's (hand-written, or another owner's), and every desired
//! registration of it is reported foreign. Within a name rancon writes and deletes exact keys
//! only: `routers/<name>/rule`, `routers/<name>/service`,
//! `services/<name>/loadbalancer/servers/<i>/url`, and from labels
//! `routers/<name>/entrypoints/<i>`, `routers/<name>/middlewares/<i>`, `routers/<name>/tls`
//! and `routers/<name>/tls/certresolver`. Anything else under the name (TLS options) is never
//! touched, a key of those shapes is deleted only when it is on this owner's lease (a
//! hand-added middleware stays), and a key rancon would write that is not on one of this
//! owner's leases is not written over.

use super::traefik_keys::Keys;
use super::wire::{
    B64, Kv, absent, delete_op, expect, kvs, put_op, range_end, range_op, shown, too_many_ops,
    txn_kvs, unchanged,
};
use super::{Etcd, Stored};
use crate::backend::traefik_route::Route;
use crate::backend::{ApplyReport, Listing, WriteFailure};
use crate::error::BackendError;
use crate::model::{Registration, RegistrationMap, bracket};
use crate::plan::{Plan, applied, by_name};
use base64::Engine;
use futures::StreamExt;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Private attribute holding the router rule.
pub const RULE: &str = crate::backend::traefik_route::RULE;

/// What a listing learned, for the writes that follow it.
#[derive(Clone, Default)]
pub struct Seen {
    /// This owner's index keys → `mod_revision`.
    index: HashMap<String, i64>,
    /// The leases this owner's keys are on (ours, and those of the listed index keys, an
    /// earlier process's): a Traefik key on one of them is this owner's.
    leases: HashSet<String>,
    /// New names that had no router or service key at all: their writes need no read first.
    free: HashSet<String>,
}

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

/// Whether a key is on one of this owner's leases (never on none).
fn ours(leases: &HashSet<String>, kv: &Kv) -> bool {
    kv.lease != "0" && leases.contains(&kv.lease)
}

/// Lists this owner's index; reports the desired names someone else holds.
pub async fn list(
    etcd: &Etcd,
    index: Vec<Kv>,
    desired: &RegistrationMap,
    token: Option<&str>,
    lease: &str,
) -> Result<Listing, BackendError> {
    let mut listing = Listing::default();
    let mut listed = HashMap::new();
    let mut leases = HashSet::new();
    if lease != "0" {
        leases.insert(lease.to_string());
    }
    // Index keys under our owner that do not decode as ours (garbage, hand-written).
    let mut unreadable = BTreeSet::new();
    let base = format!("{}/", etcd.base);
    for kv in index {
        let regs = decode_index(etcd, &kv.key, &kv.value);
        if regs.is_empty() {
            if let Some(name) = kv.key.strip_prefix(&base) {
                unreadable.insert(name.to_string());
            }
            continue;
        }
        listed.insert(kv.key.clone(), kv.mod_revision);
        if kv.lease != "0" {
            leases.insert(kv.lease.clone());
        }
        for mut reg in regs {
            // A key on another lease (an earlier process's) would expire: rewrite it on ours.
            if kv.lease != lease {
                reg.private.stale = true;
            }
            listing.regs.insert(reg.id.clone(), reg);
        }
    }
    let wanted = by_name(desired);
    let mut held: BTreeMap<&str, String> = BTreeMap::new();
    let mut fresh = Vec::new();
    for name in wanted.keys() {
        if unreadable.contains(*name) {
            held.insert(name, "nobody (unowned)".into());
        } else if !listed.contains_key(&format!("{base}{name}")) {
            fresh.push(*name);
        }
    }
    let mut scanned = false;
    let (taken, free) = taken(etcd, &fresh, &leases, token).await?;
    for (name, lease) in taken {
        held.insert(name, holder(etcd, &lease, &mut scanned, token).await);
    }
    for (name, holder) in held {
        for r in &wanted[name] {
            listing.foreign.insert(r.id.clone(), holder.clone());
        }
    }
    etcd.state.lock().await.seen = Seen {
        index: listed,
        leases,
        free,
    };
    Ok(listing)
}

/// Of the names not in our index, those someone else holds, with the lease of one of their
/// keys; and those with no key at all. One keys-only, limit-1 read of each name's router and
/// service prefix, many names to a transaction: the cost follows the new names, not all
/// names. A name whose keys are all on our leases was half-written by this owner (a
/// transaction of several failed) and is ours.
async fn taken<'a>(
    etcd: &Etcd,
    names: &[&'a str],
    leases: &HashSet<String>,
    token: Option<&str>,
) -> Result<(Vec<(&'a str, String)>, HashSet<String>), BackendError> {
    let root = &etcd.root;
    let mut out = Vec::new();
    let mut free = HashSet::new();
    let mut start = 0;
    while start < names.len() {
        let per = (etcd.max_ops() / 2).max(1);
        let chunk = &names[start..names.len().min(start + per)];
        let success: Vec<Value> = chunk
            .iter()
            .flat_map(|n| {
                [
                    range_op(&format!("{root}/http/routers/{n}/"), true, true, 1),
                    range_op(&format!("{root}/http/services/{n}/"), true, true, 1),
                ]
            })
            .collect();
        let t = match etcd
            .txn("check traefik names", vec![], success, vec![], token)
            .await
        {
            Err(e) if too_many_ops(&e) && etcd.shrink_ops(chunk.len() * 2) => continue,
            r => r?,
        };
        for (i, name) in chunk.iter().enumerate() {
            let mut found = txn_kvs(&t, 2 * i)?;
            found.extend(txn_kvs(&t, 2 * i + 1)?);
            if found.is_empty() {
                free.insert(name.to_string());
                continue;
            }
            if found.iter().all(|kv| ours(leases, kv)) {
                found = read(etcd, name, token).await?;
            }
            if let Some(kv) = found.into_iter().find(|kv| !ours(leases, kv)) {
                out.push((*name, kv.lease));
            }
        }
        start += chunk.len();
    }
    Ok((out, free))
}

/// Every key under a name's router and service prefixes (keys only).
async fn read(etcd: &Etcd, name: &str, token: Option<&str>) -> Result<Vec<Kv>, BackendError> {
    let root = &etcd.root;
    let t = etcd
        .txn(
            "read traefik keys",
            vec![],
            vec![
                range_op(&format!("{root}/http/routers/{name}/"), true, true, 0),
                range_op(&format!("{root}/http/services/{name}/"), true, true, 0),
            ],
            vec![],
            token,
        )
        .await?;
    let mut all = txn_kvs(&t, 0)?;
    all.extend(txn_kvs(&t, 1)?);
    Ok(all)
}

/// Who holds a key on `lease`: the owner whose index keys share that lease, or nobody. Reads
/// every owner's index (keys only) at most once per listing (`scanned`), and only for a lease
/// not seen before: a lease is one process's, so a lasting conflict costs no read.
async fn holder(etcd: &Etcd, lease: &str, scanned: &mut bool, token: Option<&str>) -> String {
    if lease == "0" {
        return "nobody (unowned)".into();
    }
    if let Some(owner) = etcd.state.lock().await.owners.get(lease) {
        return format!("owner {}", shown(owner));
    }
    if *scanned {
        return "nobody (unowned)".into();
    }
    *scanned = true;
    // Every owner's index, keys only: each key names its owner and carries its lease.
    let prefix = format!("rancon/index/{}/", etcd.root);
    let v = etcd
        .call(
            "list owners' indexes",
            "kv/range",
            &serde_json::json!({
                "key": B64.encode(&prefix),
                "range_end": B64.encode(range_end(&prefix)),
                "keys_only": true,
            }),
            token,
        )
        .await;
    let v = match v {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(backend = %etcd.name, error = %e, "cannot read other owners' indexes to name who holds a router");
            return format!("a writer on lease {}", shown(lease));
        }
    };
    let mut st = etcd.state.lock().await;
    if st.owners.len() > 4096 {
        st.owners.clear();
    }
    for kv in kvs(&v) {
        let owner = kv
            .key
            .strip_prefix(&prefix)
            .and_then(|rest| rest.rsplit_once('/'))
            .map(|(owner, _)| owner.to_string());
        if let Some(owner) = owner
            && kv.lease != "0"
        {
            st.owners.insert(kv.lease, owner);
        }
    }
    match st.owners.get(lease) {
        Some(owner) => format!("owner {}", shown(owner)),
        None => "nobody (unowned)".into(),
    }
}

/// Rewrites every name the plan touches, several names at a time.
pub async fn apply(
    etcd: &Etcd,
    actual: &RegistrationMap,
    plan: &Plan,
    seen: &Seen,
    token: Option<&str>,
    lease: &str,
) -> ApplyReport {
    let next = applied(actual, plan);
    let groups = by_name(&next);
    // The plan's ids by the name they touch.
    let mut touched: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in plan.register.values().chain(plan.update.values()) {
        touched.entry(&r.name).or_default().push(&r.id);
    }
    for r in plan.deregister.iter().filter_map(|id| actual.get(id)) {
        touched.entry(&r.name).or_default().push(&r.id);
    }
    // By index, not by item: the closure then borrows nothing of its own (the async-trait
    // future must be general over lifetimes).
    let touched: Vec<(&str, Vec<&str>)> = touched.into_iter().collect();
    let (touched, groups) = (&touched, &groups);
    let results = futures::stream::iter(0..touched.len())
        .map(|i| async move {
            let name = touched[i].0;
            let regs = groups.get(name).map(Vec::as_slice);
            (i, write_name(etcd, name, regs, seen, token, lease).await)
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let mut report = ApplyReport::default();
    for (i, result) in results {
        let ids = &touched[i].1;
        match result {
            Ok(()) => report.done += ids.len(),
            Err(error) => report.failed.extend(ids.iter().map(|id| WriteFailure {
                id: id.to_string(),
                error: error.clone(),
            })),
        }
    }
    report.failed.sort_by(|a, b| a.id.cmp(&b.id));
    report
}

/// Writes one name (`regs`: its servers; `None`: removes it), then its index key.
///
/// Each key op carries a compare: a put holds while the key is absent or unchanged since it was
/// read here (and only keys on this owner's leases are written over); a delete names one
/// exact key of ours, unchanged since read. Every transaction also holds only while the index
/// key is as listed (absent for a new name), so a name another writer took meanwhile gets no
/// further key.
async fn write_name(
    etcd: &Etcd,
    name: &str,
    regs: Option<&[&Registration]>,
    seen: &Seen,
    token: Option<&str>,
    lease: &str,
) -> Result<(), BackendError> {
    let keys = Keys::new(&etcd.root, name);
    let index_key = format!("{}/{name}", etcd.base);
    let was = seen.index.get(&index_key).copied();
    let leases = &seen.leases;
    // What the exact keys of this name hold now, and on which lease; a new name the listing
    // found without any key needs no read (its puts hold only while each key is absent).
    let mut now = BTreeMap::new();
    let mut url = String::new();
    if was.is_some() || !seen.free.contains(name) {
        let t = etcd
            .txn(
                "read traefik keys",
                vec![],
                vec![
                    range_op(&keys.router, true, true, 0),
                    range_op(&keys.servers, true, true, 0),
                ],
                vec![],
                token,
            )
            .await?;
        for i in 0..2 {
            for kv in txn_kvs(&t, i)? {
                now.insert(kv.key.clone(), kv);
            }
        }
        url = t.url;
    }
    let put = |key: &str, value: &str| match now.get(key) {
        None => Ok((absent(key), put_op(key, value, lease))),
        Some(kv) if ours(leases, kv) => {
            Ok((unchanged(key, kv.mod_revision), put_op(key, value, lease)))
        }
        Some(kv) => Err(etcd.refused(
            "write traefik keys",
            &url,
            format!(
                "{key} is not this owner's (it is on lease {}); rancon does not write over it",
                shown(&kv.lease)
            ),
        )),
    };
    let delete = |kv: &Kv| (unchanged(&kv.key, kv.mod_revision), delete_op(&kv.key));
    // Ours among what is there: the servers, in key order.
    let our_servers = || {
        now.values()
            .filter(|kv| ours(leases, kv))
            .filter_map(|kv| Some((keys.server_index(&kv.key)?, kv)))
    };
    // Order so that a reader between two transactions sees a working name: a new name's
    // router comes after all its servers, a removed name's router goes before its servers.
    // The router's own keys come before `rule`, so a new router never shows without its
    // middlewares (an auth middleware late by one transaction would expose the service).
    let our_extras = || {
        now.values()
            .filter(|kv| ours(leases, kv) && keys.is_extra(&kv.key))
    };
    let mut ops = Vec::new();
    let last = match regs {
        Some(regs) => {
            for (i, r) in regs.iter().enumerate() {
                let scheme = Route::from_attrs(&r.private.attrs).scheme();
                let url = format!("{scheme}://{}:{}", bracket(&r.address), r.port);
                ops.push(put(&keys.server(i), &url)?);
            }
            for (_, kv) in our_servers().filter(|(i, _)| *i >= regs.len()) {
                ops.push(delete(kv));
            }
            let route = regs
                .first()
                .map(|r| Route::from_attrs(&r.private.attrs))
                .unwrap_or_default();
            let extras = keys.extras(&route);
            for kv in our_extras().filter(|kv| !extras.iter().any(|(k, _)| *k == kv.key)) {
                ops.push(delete(kv));
            }
            for (k, v) in &extras {
                ops.push(put(k, v)?);
            }
            ops.push(put(&keys.rule, &route.rule)?);
            ops.push(put(&keys.service, name)?);
            let stored: Vec<Stored> = regs.iter().map(|r| etcd.stored(r)).collect();
            let index = serde_json::to_string(&stored).map_err(|e| BackendError::Encode {
                what: format!("index {index_key}"),
                message: e.to_string(),
            })?;
            put_op(&index_key, &index, lease)
        }
        None => {
            for key in [&keys.rule, &keys.service] {
                if let Some(kv) = now.get(key).filter(|kv| ours(leases, kv)) {
                    ops.push(delete(kv));
                }
            }
            for kv in our_extras() {
                ops.push(delete(kv));
            }
            for (_, kv) in our_servers() {
                ops.push(delete(kv));
            }
            delete_op(&index_key)
        }
    };
    run(etcd, name, expect(&index_key, was), ops, last, token).await
}

/// Sends `ops` (compare, operation) in as few transactions as etcd accepts, `last` (the
/// index write) in the last one. Each transaction also carries `index` (the index key is as
/// listed), so it takes one place of `max_ops`; the last one's index write takes the place
/// its missing key compare leaves.
///
/// Between two transactions a reader (Traefik) may see part of the change: some servers of a
/// name already new and others still old, or surplus servers not yet removed; a new name's
/// router only once all its servers are there, a removed name's servers only after its router
/// is gone. The index is written last, so a name whose writes stopped half-way is not
/// recorded as done: the next round finds its keys (on our lease) and writes it again.
async fn run(
    etcd: &Etcd,
    name: &str,
    index: Value,
    ops: Vec<(Value, Value)>,
    last: Value,
    token: Option<&str>,
) -> Result<(), BackendError> {
    let mut start = 0;
    let mut sent = 0;
    loop {
        let per = etcd.max_ops() - 1;
        let end = ops.len().min(start + per);
        let mut compare = vec![index.clone()];
        let mut success = Vec::with_capacity(end - start + 1);
        for (c, o) in &ops[start..end] {
            compare.push(c.clone());
            success.push(o.clone());
        }
        let done = end == ops.len();
        if done {
            success.push(last.clone());
        }
        let tried = compare.len().max(success.len());
        let t = match etcd
            .txn("write traefik keys", compare, success, vec![], token)
            .await
        {
            Err(e) if too_many_ops(&e) && etcd.shrink_ops(tried) => continue,
            r => r?,
        };
        if !t.succeeded {
            return Err(etcd.refused(
                "write traefik keys",
                &t.url,
                format!(
                    "a key of {name} or its index changed since it was read (transaction {} of \
                     the name's writes); retried next round",
                    sent + 1
                ),
            ));
        }
        sent += 1;
        if done {
            return Ok(());
        }
        start = end;
    }
}
