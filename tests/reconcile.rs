//! The pure planner: properties (proptest) and typical plans (insta snapshots).

use proptest::prelude::*;
use rancon::model::{Registration, RegistrationMap};
use rancon::plan::{applied, plan};
use std::collections::BTreeSet;

fn reg(id: &str, name: &str, port: u16, tags: &[&str]) -> Registration {
    Registration {
        id: id.into(),
        name: name.into(),
        address: "10.0.0.1".into(),
        port,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        meta: Default::default(),
        private: Default::default(),
        health: None,
    }
}

fn map(regs: Vec<Registration>) -> RegistrationMap {
    regs.into_iter().map(|r| (r.id.clone(), r)).collect()
}

fn arb_reg() -> impl Strategy<Value = (u8, Registration)> {
    // Small spaces so desired and actual overlap often; every field varies on its own.
    (
        0u8..12,
        0u8..3,
        0u8..2,
        1u16..4,
        prop::collection::btree_set("[ab]", 0..2),
        prop::collection::btree_map("[xy]", "[01]", 0..2),
        prop::option::of(0u8..2),
        prop::option::of(prop::sample::select(vec![
            rancon::model::Health::Passing,
            rancon::model::Health::Critical,
        ])),
        any::<bool>(),
    )
        .prop_map(
            |(i, name, address, port, tags, meta, location, health, stale)| {
                let r = Registration {
                    id: format!("svc-{i}"),
                    name: format!("svc{name}"),
                    address: format!("10.0.0.{address}"),
                    port,
                    tags: tags.into_iter().collect(),
                    meta: meta.into_iter().collect(),
                    private: rancon::model::Private {
                        location: location.map(|l| format!("agent-{l}")),
                        stale,
                        ..Default::default()
                    }
                    .into(),
                    health,
                };
                (i, r)
            },
        )
}

fn arb_map() -> impl Strategy<Value = RegistrationMap> {
    prop::collection::vec(arb_reg(), 0..12).prop_map(|v| {
        v.into_iter()
            .map(|(_, r)| {
                // What rancon desires is never stale; only listed copies can be.
                let mut r = r;
                r.private.stale = false;
                (r.id.clone(), r)
            })
            .collect()
    })
}

fn arb_listed() -> impl Strategy<Value = RegistrationMap> {
    prop::collection::vec(arb_reg(), 0..12)
        .prop_map(|v| v.into_iter().map(|(_, r)| (r.id.clone(), r)).collect())
}

proptest! {
    #[test]
    fn plan_of_equal_states_is_empty(d in arb_map()) {
        let p = plan(&d, &d);
        prop_assert!(p.is_empty());
        prop_assert_eq!(p.unchanged, d.len());
    }

    #[test]
    fn applying_the_plan_yields_desired(d in arb_map(), a in arb_listed()) {
        // Equal up to health (state, not content: the planner never writes for it alone).
        let strip = |m: RegistrationMap| -> RegistrationMap {
            m.into_iter().map(|(k, mut r)| { r.health = None; r.private.stale = false; (k, r) }).collect()
        };
        prop_assert_eq!(strip(applied(&a, &plan(&d, &a))), strip(d));
    }

    #[test]
    fn a_change_of_any_content_field_is_an_update(d in arb_map(), a in arb_listed()) {
        let p = plan(&d, &a);
        for (id, want) in &d {
            let Some(have) = a.get(id) else { continue };
            let differs = want.name != have.name
                || want.address != have.address
                || want.port != have.port
                || want.tags != have.tags
                || want.meta != have.meta
                || want.private.location != have.private.location
                || have.private.stale;
            prop_assert_eq!(p.update.contains_key(id), differs, "{:?} vs {:?}", want, have);
        }
    }

    #[test]
    fn plan_owned_equals_plan(d in arb_map(), a in arb_listed()) {
        let borrowed = plan(&d, &a);
        let (owned, unchanged) = rancon::plan::plan_owned(d.clone(), &a);
        prop_assert_eq!(&owned, &borrowed);
        // The unchanged ones are exactly the desired ids that needed no write.
        let expect: BTreeSet<_> = d.keys().filter(|id| a.contains_key(*id) && !borrowed.update.contains_key(*id)).collect();
        prop_assert_eq!(unchanged.keys().collect::<BTreeSet<_>>(), expect.clone());
        // Keeping only some of them (what a backend refreshes): the same plan, and of the
        // unchanged exactly those kept, whole.
        let keep = |r: &rancon::model::Registration| r.port % 2 == 0;
        let (kept_plan, kept) = rancon::plan::plan_owned_keeping(d.clone(), &a, keep);
        prop_assert_eq!(&kept_plan, &borrowed);
        let want: BTreeSet<_> = expect.into_iter().filter(|id| keep(&d[*id])).collect();
        prop_assert_eq!(kept.keys().collect::<BTreeSet<_>>(), want);
        for (id, r) in &kept {
            prop_assert_eq!(r, &d[id]);
        }
    }

    #[test]
    fn a_packed_map_holds_the_same_entries(d in arb_map()) {
        prop_assert_eq!(rancon::model::packed(d.clone()), d);
    }

    #[test]
    fn only_owned_and_undesired_ids_are_deregistered(d in arb_map(), a in arb_listed()) {
        let p = plan(&d, &a);
        for id in &p.deregister {
            prop_assert!(a.contains_key(id), "deregisters {id}, which is not owned");
            prop_assert!(!d.contains_key(id));
        }
        let touched: BTreeSet<_> = p.update.keys().chain(p.register.keys()).collect();
        prop_assert_eq!(touched.len(), p.update.len() + p.register.len());
    }
}

#[test]
fn typical_plan_snapshot() {
    let actual = map(vec![
        reg("web-1", "web", 80, &["rancon-default"]),
        reg("web-2", "web", 80, &["rancon-default"]),
        reg("old-1", "old", 81, &["rancon-default"]),
    ]);
    let desired = map(vec![
        reg("web-1", "web", 80, &["rancon-default"]),
        reg("web-2", "web", 80, &["rancon-default", "canary"]),
        reg("api-1", "api", 9000, &["rancon-default"]),
    ]);
    insta::assert_json_snapshot!(plan(&desired, &actual));
}

#[test]
fn empty_desired_plans_removal_of_everything_owned() {
    let actual = map(vec![reg("a", "a", 1, &[]), reg("b", "b", 2, &[])]);
    insta::assert_json_snapshot!(plan(&RegistrationMap::new(), &actual));
}
