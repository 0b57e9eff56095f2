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

fn arb_map() -> impl Strategy<Value = RegistrationMap> {
    // Small id and port spaces so desired and actual overlap often.
    prop::collection::vec(
        (0u8..12, 1u16..4, prop::collection::btree_set("[ab]", 0..2)),
        0..12,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(i, port, tags)| {
                let id = format!("svc-{i}");
                let r = Registration {
                    id: id.clone(),
                    name: format!("svc{}", i % 3),
                    address: "10.0.0.1".into(),
                    port,
                    tags,
                    meta: Default::default(),
                    private: Default::default(),
                    health: None,
                };
                (id, r)
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn plan_of_equal_states_is_empty(d in arb_map()) {
        let p = plan(&d, &d);
        prop_assert!(p.is_empty());
        prop_assert_eq!(p.unchanged, d.len());
    }

    #[test]
    fn applying_the_plan_yields_desired(d in arb_map(), a in arb_map()) {
        prop_assert_eq!(applied(&a, &plan(&d, &a)), d);
    }

    #[test]
    fn only_owned_and_undesired_ids_are_deregistered(d in arb_map(), a in arb_map()) {
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
