//! The pure planner: what to write so that `actual` becomes `desired`.

use crate::model::{Registration, RegistrationMap};
use serde::Serialize;
use std::borrow::Borrow;
use std::collections::BTreeSet;

/// The writes one backend needs this round.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Desired ids the backend does not hold.
    pub register: RegistrationMap,
    /// Held ids whose content differs from the desired one (the new content).
    pub update: RegistrationMap,
    /// Held (owned) ids no longer desired.
    pub deregister: BTreeSet<String>,
    /// Held ids that already match (count only; no write).
    pub unchanged: usize,
    /// What the backend held for each id updated or deregistered, so a report can show what
    /// changed (old → new) and what goes; only changes are copied, so it grows with them.
    #[serde(skip)]
    pub previous: RegistrationMap,
}

impl Plan {
    /// True when the plan makes no write.
    pub fn is_empty(&self) -> bool {
        self.register.is_empty() && self.update.is_empty() && self.deregister.is_empty()
    }

    /// Number of writes the plan makes.
    pub fn writes(&self) -> usize {
        self.register.len() + self.update.len() + self.deregister.len()
    }
}

/// Computes the plan. `actual` must hold only registrations this rancon owns: a deregistration
/// is only ever drawn from it, so foreign registrations can never be removed.
pub fn plan(desired: &RegistrationMap, actual: &RegistrationMap) -> Plan {
    merge(
        desired.iter(),
        actual,
        |id, reg| (id.clone(), reg.clone()),
        |_, _| {},
    )
}

/// `plan`, moving the desired registrations into the plan instead of copying them (the round
/// engine's form: at 10,000 services a copy is a fifth of the round's memory). Also returns
/// the desired registrations that need no write, for backends that refresh them (TTL checks).
pub fn plan_owned(desired: RegistrationMap, actual: &RegistrationMap) -> (Plan, RegistrationMap) {
    plan_owned_keeping(desired, actual, |_| true)
}

/// `plan_owned`, returning only the unchanged registrations `keep` accepts (those the
/// backend refreshes); the others are dropped as the merge passes them, so a steady round
/// never holds a second copy of every registration to hand to a backend that ignores it.
pub fn plan_owned_keeping(
    desired: RegistrationMap,
    actual: &RegistrationMap,
    keep: impl Fn(&Registration) -> bool,
) -> (Plan, RegistrationMap) {
    // Inserted in id order, then packed: no list of all of them and no sort buffer beside.
    let mut unchanged = RegistrationMap::new();
    let p = merge(
        desired.into_iter(),
        actual,
        |id, reg| (id, reg),
        |id, reg| {
            if keep(&reg) {
                unchanged.insert(id, reg);
            }
        },
    );
    (p, crate::model::packed(unchanged))
}

/// The one merge pass behind both forms: `own` turns a desired entry into one the plan keeps,
/// `same` receives the entries that need no write.
fn merge<K, R>(
    desired: impl Iterator<Item = (K, R)>,
    actual: &RegistrationMap,
    own: impl Fn(K, R) -> (String, Registration),
    mut same: impl FnMut(K, R),
) -> Plan
where
    K: Borrow<String>,
    R: Borrow<Registration>,
{
    use std::cmp::Ordering::{Equal, Greater, Less};
    // Both maps are sorted by id: one merge pass, no per-id lookups (cache-friendly at 10k+).
    let mut p = Plan::default();
    let mut d = desired.peekable();
    let mut a = actual.iter().peekable();
    loop {
        let order = match (d.peek(), a.peek()) {
            (None, None) => break,
            (Some(_), None) => Less,
            (None, Some(_)) => Greater,
            (Some((dk, _)), Some((ak, _))) => dk.borrow().cmp(ak),
        };
        match order {
            Less => {
                let (id, want) = d.next().expect("peeked");
                let (id, want) = own(id, want);
                p.register.insert(id, want);
            }
            Greater => {
                let (id, have) = a.next().expect("peeked");
                p.deregister.insert(id.clone());
                p.previous.insert(id.clone(), have.clone());
            }
            Equal => {
                let ((id, want), (_, have)) =
                    (d.next().expect("peeked"), a.next().expect("peeked"));
                if want.borrow().same(have) {
                    p.unchanged += 1;
                    same(id, want);
                } else {
                    let (id, want) = own(id, want);
                    p.previous.insert(id.clone(), have.clone());
                    p.update.insert(id, want);
                }
            }
        }
    }
    p
}

/// The state a backend holds after `plan` was applied to `actual` without failures.
pub fn applied(actual: &RegistrationMap, plan: &Plan) -> RegistrationMap {
    let mut out = actual.clone();
    for id in &plan.deregister {
        out.remove(id);
    }
    for (id, reg) in plan.register.iter().chain(&plan.update) {
        out.insert(id.clone(), reg.clone());
    }
    out
}

/// Helper for backends that store names: all registrations grouped by service name.
pub fn by_name(regs: &RegistrationMap) -> std::collections::BTreeMap<&str, Vec<&Registration>> {
    let mut out: std::collections::BTreeMap<&str, Vec<&Registration>> = Default::default();
    for r in regs.values() {
        out.entry(r.name.as_str()).or_default().push(r);
    }
    out
}
