//! Deterministic simulation of the real round engine and planner with in-memory sources and
//! backends: proptest generates sequences of rounds in which the source succeeds, fails,
//! skews (a listing that silently misses a live item, as Rancher's offset paging does), or
//! carries malformed items; the backend's listing fails; writes fail; foreign writers create
//! registrations whose ids collide with ours; labels try to forge ownership tags; and rounds
//! woken by events plan from the source's watched view, which may be exact, stale (events
//! lost), or claim a live service is gone.
//!
//! After every round: nothing rancon does not own changed; nothing whose service is live was
//! deregistered; no registration of ours carries another owner's marker; a steady round wrote
//! nothing; and two rounds after the faults stop, the registry holds exactly the desired state.

use async_trait::async_trait;
use proptest::prelude::*;
use rancon::backend::{ApplyReport, Backend, Listing, WriteFailure};
use rancon::engine::{Pipeline, RoundOptions, Scope};
use rancon::error::{BackendError, Skip, SkipKind, SourceError};
use rancon::labels::{label_meta, label_tags, service_id};
use rancon::model::{Endpoint, Registration, RegistrationMap};
use rancon::plan::Plan;
use rancon::source::Source;
use rancon::template::Props;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

const OWNER_TAG: &str = "rancon-sim";
/// Services 0..N may exist; few enough that collisions and churn are frequent.
const N: usize = 6;

/// One service of the world: live or not, its content version, and hostile traits.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Svc {
    live: bool,
    version: u8,
    /// Its labels try to put another owner's tag on it.
    forge: bool,
}

/// What goes wrong in one round.
#[derive(Debug, Clone, Default, PartialEq)]
struct Faults {
    source_fails: bool,
    /// The first listing misses this live service (and says it is complete).
    skew: Option<usize>,
    /// These live services come back malformed (skipped by the source).
    malformed: BTreeSet<usize>,
    list_fails: bool,
    /// Writes for these services fail.
    write_fails: BTreeSet<usize>,
    /// A foreign writer creates (owner `Some`) or hand-makes (`None`) these ids first.
    foreign: BTreeMap<usize, Option<String>>,
    /// How wrong the watched view is, in a round woken by an event.
    view: View,
}

/// A round woken by an event plans from the source's watched view (`Source::current`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
enum View {
    /// A full round: the source is listed.
    #[default]
    Listed,
    /// An event round whose view is exact.
    Exact,
    /// Events were lost: the view is the previous round's world.
    Stale,
    /// An event claims this service is gone (it may be live).
    Gone(usize),
}

impl Faults {
    fn any(&self) -> bool {
        Faults {
            view: View::Listed,
            ..self.clone()
        } != Faults::default()
            || !matches!(self.view, View::Listed | View::Exact)
    }
}

#[derive(Debug, Clone)]
struct Round {
    world: [Svc; N],
    faults: Faults,
}

fn id_of(i: usize) -> String {
    service_id(&format!("svc{i}-10.0.0.{i}-80"))
}

fn index_of(id: &str) -> Option<usize> {
    (0..N).find(|i| id_of(*i) == id)
}

/// The world the source reads, and how many times it was listed this round.
#[derive(Default)]
struct SourceState {
    world: Vec<Svc>,
    /// The previous round's world (what a stale view still shows).
    prev: Vec<Svc>,
    faults: Faults,
    fetches: usize,
}

impl SourceState {
    /// The endpoints of `world`, as the source reads them this round.
    fn endpoints(&self, world: &[Svc], listing: bool) -> (Vec<Endpoint>, Vec<Skip>) {
        let (mut eps, mut skipped) = (Vec::new(), Vec::new());
        for (i, s) in world.iter().enumerate().filter(|(_, s)| s.live) {
            if listing && self.fetches == 1 && self.faults.skew == Some(i) {
                continue;
            }
            if self.faults.malformed.contains(&i) {
                skipped.push(Skip {
                    endpoint: format!("sim/svc{i}"),
                    kind: SkipKind::Shape,
                    reason: "malformed".into(),
                });
                continue;
            }
            let mut props = Props::new();
            props.insert("name".into(), format!("svc{i}"));
            props.insert("host".into(), format!("10.0.0.{i}"));
            props.insert("port".into(), "80".into());
            props.insert("meta_version".into(), s.version.to_string());
            if s.forge {
                props.insert("tags".into(), "web,rancon-other".into());
                props.insert("meta_rancon-owner".into(), "other".into());
            }
            eps.push(Endpoint {
                source: "sim".into(),
                props,
            });
        }
        (eps, skipped)
    }
}

struct SimSource(Arc<Mutex<SourceState>>);

#[async_trait]
impl Source for SimSource {
    fn name(&self) -> &str {
        "sim"
    }

    async fn fetch(&self) -> Result<(Vec<Endpoint>, Vec<Skip>), SourceError> {
        let mut st = self.0.lock().unwrap();
        st.fetches += 1;
        if st.faults.source_fails {
            return Err(SourceError::Transport {
                url: "sim://".into(),
                message: "refused".into(),
            });
        }
        let world = st.world.clone();
        Ok(st.endpoints(&world, true))
    }

    /// A failing listing first hands over half of what it saw, then fails: the engine must
    /// discard what it was given (a part taken for the whole would deregister the rest).
    async fn fetch_each(
        &self,
        sink: &mut rancon::source::Sink<'_>,
    ) -> Result<(usize, Vec<Skip>), SourceError> {
        let (endpoints, skipped, fails) = {
            let mut st = self.0.lock().unwrap();
            st.fetches += 1;
            let world = st.world.clone();
            let (eps, skipped) = st.endpoints(&world, true);
            (eps, skipped, st.faults.source_fails)
        };
        if fails {
            let half = endpoints.len() / 2;
            endpoints.into_iter().take(half).for_each(sink);
            return Err(SourceError::Transport {
                url: "sim://".into(),
                message: "connection reset mid-listing".into(),
            });
        }
        let n = endpoints.len();
        endpoints.into_iter().for_each(sink);
        Ok((n, skipped))
    }

    fn current(&self) -> Option<(Vec<Endpoint>, Vec<Skip>)> {
        let st = self.0.lock().unwrap();
        let mut world = match st.faults.view {
            View::Listed => return None,
            View::Exact => st.world.clone(),
            View::Stale => st.prev.clone(),
            View::Gone(_) => st.world.clone(),
        };
        if let View::Gone(i) = st.faults.view {
            world[i].live = false;
        }
        Some(st.endpoints(&world, false))
    }
}

/// One registry entry and who owns it (`None`: made by hand).
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    reg: Registration,
    owner: Option<String>,
}

#[derive(Default)]
struct Registry {
    entries: BTreeMap<String, Entry>,
    faults: Faults,
    writes: usize,
}

struct SimBackend(Arc<Mutex<Registry>>);

fn render(ep: &Endpoint) -> Registration {
    let name = ep.prop("name").to_string();
    let mut tags = label_tags(&ep.props);
    tags.insert(OWNER_TAG.into());
    Registration {
        id: service_id(&format!("{name}-{}-{}", ep.prop("host"), ep.prop("port"))),
        name,
        address: ep.prop("host").into(),
        port: 80,
        tags,
        meta: label_meta(&ep.props),
        private: Default::default(),
        health: None,
    }
}

#[async_trait]
impl Backend for SimBackend {
    fn name(&self) -> &str {
        "registry"
    }

    fn sources(&self) -> Option<&[String]> {
        None
    }

    fn render(&self, ep: &Endpoint) -> Result<Registration, Skip> {
        Ok(render(ep))
    }

    async fn list(&self, desired: &RegistrationMap) -> Result<Listing, BackendError> {
        let r = self.0.lock().unwrap();
        if r.faults.list_fails {
            return Err(BackendError::Transport {
                backend: "registry".into(),
                op: "list",
                url: "sim://".into(),
                message: "refused".into(),
            });
        }
        let mut listing = Listing::default();
        for (id, e) in &r.entries {
            match &e.owner {
                Some(o) if o == "sim" => {
                    listing.regs.insert(id.clone(), e.reg.clone());
                }
                other if desired.contains_key(id) => {
                    let holder = other
                        .as_deref()
                        .map_or("nobody".into(), |o| format!("owner {o}"));
                    listing.foreign.insert(id.clone(), holder);
                }
                _ => {}
            }
        }
        Ok(listing)
    }

    async fn apply(
        &self,
        _unchanged: &RegistrationMap,
        _actual: &RegistrationMap,
        plan: &Plan,
    ) -> ApplyReport {
        let mut r = self.0.lock().unwrap();
        let mut report = ApplyReport::default();
        let failing = |r: &Registry, id: &str| {
            index_of(id).is_some_and(|i| r.faults.write_fails.contains(&i))
        };
        let fail = |id: &str| WriteFailure {
            id: id.into(),
            error: BackendError::Transport {
                backend: "registry".into(),
                op: "write",
                url: "sim://".into(),
                message: "refused".into(),
            },
        };
        // Like Consul's agent API, the registry itself lets anyone overwrite anything: only
        // rancon's own discipline protects foreign entries, which is what is tested.
        for (id, reg) in plan.register.iter().chain(&plan.update) {
            if failing(&r, id) {
                report.failed.push(fail(id));
                continue;
            }
            r.writes += 1;
            let entry = Entry {
                reg: reg.clone(),
                owner: Some("sim".into()),
            };
            r.entries.insert(id.clone(), entry);
            report.done += 1;
        }
        for id in &plan.deregister {
            if failing(&r, id) {
                report.failed.push(fail(id));
                continue;
            }
            r.writes += 1;
            r.entries.remove(id);
            report.done += 1;
        }
        report
    }
}

fn arb_svc() -> impl Strategy<Value = Svc> {
    (prop::bool::weighted(0.7), 0u8..2, prop::bool::weighted(0.1)).prop_map(
        |(live, version, forge)| Svc {
            live,
            version,
            forge,
        },
    )
}

fn arb_faults() -> impl Strategy<Value = Faults> {
    let set = || prop::collection::btree_set(0..N, 0..2);
    (
        prop::bool::weighted(0.15),
        prop::option::weighted(0.2, 0..N),
        prop::option::weighted(0.2, set()),
        prop::bool::weighted(0.1),
        prop::option::weighted(0.2, set()),
        prop::option::weighted(
            0.15,
            prop::collection::btree_map(
                0..N,
                prop::option::of(prop::sample::select(vec!["other".to_string()])),
                1..2,
            ),
        ),
        prop_oneof![
            4 => Just(View::Listed),
            2 => Just(View::Exact),
            1 => Just(View::Stale),
            1 => (0..N).prop_map(View::Gone),
        ],
    )
        .prop_map(
            |(source_fails, skew, malformed, list_fails, writes, foreign, view)| Faults {
                source_fails,
                skew,
                malformed: malformed.unwrap_or_default(),
                list_fails,
                write_fails: writes.unwrap_or_default(),
                foreign: foreign.unwrap_or_default(),
                view,
            },
        )
}

fn arb_rounds() -> impl Strategy<Value = Vec<Round>> {
    // A world that sometimes stays put (steady rounds) and sometimes changes.
    let world = prop::array::uniform6(arb_svc());
    prop::collection::vec((world, prop::bool::weighted(0.5), arb_faults()), 1..8).prop_map(
        |steps| {
            let mut rounds: Vec<Round> = Vec::new();
            for (world, keep, faults) in steps {
                let world = match rounds.last() {
                    Some(prev) if keep => prev.world,
                    _ => world,
                };
                rounds.push(Round { world, faults });
            }
            rounds
        },
    )
}

/// What the registry should hold for us when nothing goes wrong: every live service, unless
/// its id is held by someone else.
fn expected(world: &[Svc], entries: &BTreeMap<String, Entry>) -> BTreeMap<String, Registration> {
    let src = SimSource(Arc::new(Mutex::new(SourceState {
        world: world.to_vec(),
        ..Default::default()
    })));
    let eps = futures::executor::block_on(src.fetch()).unwrap().0;
    eps.iter()
        .map(render)
        .filter(|r| {
            entries
                .get(&r.id)
                .is_none_or(|e| e.owner.as_deref() == Some("sim"))
        })
        .map(|r| (r.id.clone(), r))
        .collect()
}

fn ours(entries: &BTreeMap<String, Entry>) -> BTreeMap<String, Registration> {
    entries
        .iter()
        .filter(|(_, e)| e.owner.as_deref() == Some("sim"))
        .map(|(id, e)| (id.clone(), e.reg.clone()))
        .collect()
}

fn run(rounds: Vec<Round>) -> Result<(), TestCaseError> {
    let source = Arc::new(Mutex::new(SourceState::default()));
    let registry = Arc::new(Mutex::new(Registry::default()));
    let pipeline = Pipeline {
        sources: vec![Box::new(SimSource(source.clone()))],
        backends: vec![Box::new(SimBackend(registry.clone()))],
        // The guard is proven elsewhere; here deregistrations must follow the truth.
        max_deregister_fraction: 1.0,
        write_gate: None,
    };
    // Two fault-free rounds with the last world close every sequence.
    let last = rounds.last().map(|r| r.world).unwrap_or(
        [Svc {
            live: false,
            version: 0,
            forge: false,
        }; N],
    );
    let calm = Round {
        world: last,
        faults: Faults::default(),
    };
    let total = rounds.len();
    let all = rounds.into_iter().chain([calm.clone(), calm]);
    let mut prev: Option<Round> = None;
    let mut converged = false;
    for (n, round) in all.enumerate() {
        {
            let mut r = registry.lock().unwrap();
            for (i, owner) in &round.faults.foreign {
                let id = id_of(*i);
                if r.entries
                    .get(&id)
                    .is_none_or(|e| e.owner.as_deref() != Some("sim"))
                {
                    let mut reg = render(&Endpoint {
                        source: "hand".into(),
                        props: [
                            ("name", format!("svc{i}")),
                            ("host", format!("10.0.0.{i}")),
                            ("port", "80".into()),
                        ]
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                    });
                    reg.tags = [format!("rancon-{}", owner.as_deref().unwrap_or("x"))].into();
                    r.entries.insert(
                        id,
                        Entry {
                            reg,
                            owner: owner.clone(),
                        },
                    );
                }
            }
            r.faults = round.faults.clone();
            r.writes = 0;
        }
        {
            let mut s = source.lock().unwrap();
            s.prev = std::mem::replace(&mut s.world, round.world.to_vec());
            s.faults = round.faults.clone();
            s.fetches = 0;
        }
        let before = registry.lock().unwrap().entries.clone();
        // A round woken by an event plans from the watched view, not a listing.
        let scope = Scope {
            cached: round.faults.view != View::Listed,
            backends: None,
        };
        let report =
            futures::executor::block_on(pipeline.round_in(RoundOptions::default(), &scope));
        let r = registry.lock().unwrap();
        let after = &r.entries;
        // 1. Nothing rancon does not own changed.
        for (id, e) in before
            .iter()
            .filter(|(_, e)| e.owner.as_deref() != Some("sim"))
        {
            prop_assert_eq!(
                after.get(id),
                Some(e),
                "foreign entry {} touched in round {}",
                id,
                n
            );
        }
        // 2. Nothing whose service is live was deregistered.
        for id in before.keys().filter(|id| !after.contains_key(*id)) {
            let i = index_of(id).expect("only known ids exist");
            prop_assert!(
                !round.world[i].live,
                "live {} deregistered in round {}",
                id,
                n
            );
        }
        // 3. No registration of ours carries another owner's marker.
        for e in after.values().filter(|e| e.owner.as_deref() == Some("sim")) {
            prop_assert!(
                e.reg
                    .tags
                    .iter()
                    .all(|t| !t.starts_with("rancon-") || t == OWNER_TAG),
                "forged tags {:?}",
                e.reg.tags
            );
            prop_assert!(!e.reg.meta.contains_key("rancon-owner"));
        }
        // 4. A steady round (same world, no faults, already converged) writes nothing.
        let steady = converged
            && !round.faults.any()
            && prev
                .as_ref()
                .is_some_and(|p| p.world == round.world && !p.faults.any());
        if steady {
            prop_assert_eq!(r.writes, 0, "steady round {} wrote", n);
        }
        // 5. Two fault-free rounds after the faults stop, the registry is the desired state.
        if n > total {
            prop_assert_eq!(
                ours(after),
                expected(&round.world, after),
                "not converged after round {}",
                n
            );
            prop_assert!(!report.failed(), "{:?}", report);
        }
        converged = !round.faults.any() && ours(after) == expected(&round.world, after);
        prev = Some(round);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        // CI runs 10,000 sequences; locally the default keeps the loop quick.
        cases: if std::env::var_os("CI").is_some() { 10_000 } else { 2_000 },
        .. ProptestConfig::default()
    })]

    #[test]
    fn the_promise_holds_over_random_rounds_and_faults(rounds in arb_rounds()) {
        run(rounds)?;
    }
}

/// The fault the confirming listing exists for, spelled out: a live service missing from one
/// listing that claims to be complete is not deregistered.
#[test]
fn a_skewed_listing_does_not_deregister_a_live_service() {
    let live = Svc {
        live: true,
        version: 0,
        forge: false,
    };
    let world = [live; N];
    let rounds = vec![
        Round {
            world,
            faults: Faults::default(),
        },
        Round {
            world,
            faults: Faults {
                skew: Some(2),
                ..Default::default()
            },
        },
    ];
    run(rounds).unwrap();
}
