//! How the round engine merges several sources (`engine::Pipeline`, sources handing endpoints
//! to a sink): of two sources giving one id, the first in config order wins; a source that
//! fails after handing over part of its listing counts as unknown for its backends; a backend
//! sees only the sources it reads; a round scoped to some backends lists only their sources.

use async_trait::async_trait;
use rancon::backend::{ApplyReport, Backend, Listing};
use rancon::engine::{Pipeline, RoundOptions, Scope};
use rancon::error::{BackendError, Skip, SourceError};
use rancon::model::{Endpoint, Registration, RegistrationMap};
use rancon::plan::Plan;
use rancon::source::{Sink, Source};
use rancon::template::Props;
use std::collections::BTreeSet;

/// A source giving `(name, version)` endpoints; with `fails`, hands them over one by one and
/// then fails, as a listing cut on its last page would.
struct Src {
    name: &'static str,
    eps: Vec<(&'static str, &'static str)>,
    fails: bool,
}

impl Src {
    fn new(name: &'static str, eps: &[(&'static str, &'static str)], fails: bool) -> Self {
        Self {
            name,
            eps: eps.to_vec(),
            fails,
        }
    }

    fn endpoints(&self) -> Vec<Endpoint> {
        self.eps
            .iter()
            .map(|(name, version)| {
                let mut props = Props::new();
                props.insert("name".into(), name.to_string());
                props.insert("version".into(), version.to_string());
                Endpoint {
                    source: self.name.into(),
                    props,
                }
            })
            .collect()
    }

    fn error(&self) -> SourceError {
        SourceError::Transport {
            url: format!("{}://", self.name),
            message: "cut".into(),
        }
    }
}

#[async_trait]
impl Source for Src {
    fn name(&self) -> &str {
        self.name
    }

    async fn fetch(&self) -> Result<(Vec<Endpoint>, Vec<Skip>), SourceError> {
        if self.fails {
            return Err(self.error());
        }
        Ok((self.endpoints(), vec![]))
    }

    async fn fetch_each(&self, sink: &mut Sink<'_>) -> Result<(usize, Vec<Skip>), SourceError> {
        let eps = self.endpoints();
        let n = eps.len();
        eps.into_iter().for_each(&mut *sink);
        if self.fails {
            return Err(self.error());
        }
        Ok((n, vec![]))
    }
}

/// A backend holding `held` (ids of this owner), reading `sources` (all when `None`).
struct Reg {
    name: &'static str,
    sources: Option<Vec<String>>,
    held: Vec<&'static str>,
}

fn reg(name: &str, version: &str) -> Registration {
    let mut meta = rancon::model::Meta::default();
    meta.insert("version".into(), version.into());
    Registration {
        id: name.into(),
        name: name.into(),
        address: "10.0.0.1".into(),
        port: 80,
        tags: Default::default(),
        meta,
        private: Default::default(),
        health: None,
    }
}

#[async_trait]
impl Backend for Reg {
    fn name(&self) -> &str {
        self.name
    }
    fn sources(&self) -> Option<&[String]> {
        self.sources.as_deref()
    }
    fn render(&self, ep: &Endpoint) -> Result<Registration, Skip> {
        Ok(reg(ep.prop("name"), ep.prop("version")))
    }
    async fn list(&self, _: &RegistrationMap) -> Result<Listing, BackendError> {
        let mut l = Listing::default();
        for id in &self.held {
            l.regs.insert(id.to_string(), reg(id, "held"));
        }
        Ok(l)
    }
    async fn apply(&self, _: &RegistrationMap, _: &RegistrationMap, _: &Plan) -> ApplyReport {
        ApplyReport::default()
    }
}

fn backend(name: &'static str, sources: Option<&[&str]>, held: &[&'static str]) -> Reg {
    Reg {
        name,
        sources: sources.map(|s| s.iter().map(|s| s.to_string()).collect()),
        held: held.to_vec(),
    }
}

fn pipeline(sources: Vec<Src>, backends: Vec<Reg>) -> Pipeline {
    Pipeline {
        sources: sources
            .into_iter()
            .map(|s| Box::new(s) as Box<dyn Source>)
            .collect(),
        backends: backends
            .into_iter()
            .map(|b| Box::new(b) as Box<dyn Backend>)
            .collect(),
        max_deregister_fraction: 1.0,
        write_gate: None,
    }
}

const DRY: RoundOptions = RoundOptions {
    dry_run: true,
    force: false,
};

/// The version each registration the plan writes for backend `i` carries.
fn planned(r: &rancon::engine::RoundReport, i: usize) -> Vec<(String, String)> {
    let p = r.backends[i].plan.as_ref().expect("a plan");
    p.register
        .values()
        .map(|g| (g.id.clone(), g.meta.get("version").unwrap().to_string()))
        .collect()
}

#[tokio::test]
async fn of_two_sources_giving_one_id_the_first_in_config_order_wins() {
    for (first, second) in [("a", "b"), ("b", "a")] {
        let p = pipeline(
            vec![
                Src::new(first, &[("web", first), ("only-first", first)], false),
                Src::new(second, &[("web", second), ("only-second", second)], false),
            ],
            vec![backend("reg", None, &[])],
        );
        let r = p.round(DRY).await;
        let want = [
            ("only-first", first),
            ("only-second", second),
            ("web", first),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(planned(&r, 0), want, "{first} then {second}");
    }
}

#[tokio::test]
async fn a_source_failing_after_handing_over_part_of_its_listing_deregisters_nothing() {
    // `gone` is held and in no listing: with a complete listing it would be deregistered.
    let p = pipeline(
        vec![Src::new("a", &[("web", "a")], true)],
        vec![backend("reg", None, &["gone", "web"])],
    );
    let r = p.round(DRY).await;
    let plan = r.backends[0].plan.as_ref().expect("a plan");
    assert!(plan.deregister.is_empty(), "{plan:?}");
    assert!(r.sources[0].error.is_some());
    assert_eq!(r.backends[0].held_back, 2, "both held back");
}

#[tokio::test]
async fn a_failed_source_gives_nothing_even_an_id_another_source_also_gives() {
    // The failed source's half listing is not used: the second source's `web` is planned.
    let p = pipeline(
        vec![
            Src::new("a", &[("web", "a")], true),
            Src::new("b", &[("web", "b")], false),
        ],
        vec![backend("reg", None, &[])],
    );
    let r = p.round(DRY).await;
    assert_eq!(planned(&r, 0), [("web".to_string(), "b".to_string())]);
}

#[tokio::test]
async fn a_backend_sees_only_its_sources_and_a_scoped_round_lists_only_theirs() {
    let p = pipeline(
        vec![
            Src::new("a", &[("web", "a")], false),
            Src::new("b", &[("api", "b")], false),
        ],
        vec![
            backend("all", None, &[]),
            backend("only-b", Some(&["b"]), &["old"]),
        ],
    );
    let r = p.round(DRY).await;
    assert_eq!(planned(&r, 0).len(), 2);
    assert_eq!(planned(&r, 1), [("api".to_string(), "b".to_string())]);
    // `old` is held by `only-b`, listed by neither source: gone, once confirmed.
    let plan = r.backends[1].plan.as_ref().unwrap();
    assert_eq!(plan.deregister.iter().collect::<Vec<_>>(), ["old"]);

    let scope = Scope {
        cached: false,
        backends: Some(BTreeSet::from(["only-b".to_string()])),
    };
    let r = p.round_in(DRY, &scope).await;
    assert_eq!(r.backends.len(), 1);
    let listed: Vec<&str> = r.sources.iter().map(|s| s.source.as_str()).collect();
    assert_eq!(listed, ["b"], "source a feeds no backend in scope");
    assert_eq!(planned(&r, 0), [("api".to_string(), "b".to_string())]);
}
