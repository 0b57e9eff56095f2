//! How the daemon turns watches' wake-ups into rounds: which backends, listed or from views.

use crate::engine::{Pipeline, Scope};
use crate::watch::Wake;
use std::time::{Duration, Instant};

/// How long the daemon gathers wake-ups after the first one before it runs their round.
pub const DEBOUNCE: Duration = Duration::from_millis(20);

/// Starts every component's watch that can and is configured to.
pub fn start_watches(pipeline: &Pipeline, wake: &crate::watch::WakeTx) -> crate::watch::Watches {
    let mut w = crate::watch::Watches::default();
    for s in &pipeline.sources {
        if let Some(t) = s.watch(wake.clone()) {
            w.push(t);
        }
    }
    for b in &pipeline.backends {
        if let Some(t) = b.watch(wake.clone()) {
            w.push(t);
        }
    }
    if !w.is_empty() {
        tracing::info!(
            watches = w.len(),
            "watching for changes between full rounds"
        );
    }
    w
}

/// Wake-ups turned into rounds, and what the metrics need from them.
#[derive(Default)]
pub struct EventBook {
    /// Components whose watch has connected once: their later connects are reconnects.
    connected: std::collections::BTreeSet<String>,
    /// The earliest arrival among the wake-ups the coming round applies.
    oldest: Option<Instant>,
}

impl EventBook {
    /// The round `wakes` call for: the backends fed by changed sources, or whose registry
    /// changed; listed in full after a (re)connect. `None` when none concerns this pipeline
    /// (a watch of the configuration a reload replaced).
    pub fn scope(
        &mut self,
        pipeline: &Pipeline,
        wakes: Vec<Wake>,
        m: &crate::metrics::EventMetrics,
    ) -> Option<Scope> {
        let mut backends = std::collections::BTreeSet::new();
        let mut cached = true;
        let feeding = |src: &str| -> Vec<String> {
            pipeline
                .backends
                .iter()
                .filter(|b| crate::engine::feeds(b.as_ref(), src))
                .map(|b| b.name().to_string())
                .collect()
        };
        for w in wakes {
            match w {
                Wake::Source {
                    source,
                    kind,
                    received,
                } => {
                    if !pipeline.sources.iter().any(|s| s.name() == source) {
                        continue;
                    }
                    m.event(&source, &kind);
                    self.oldest = Some(self.oldest.map_or(received, |o| o.min(received)));
                    backends.extend(feeding(&source));
                }
                Wake::Backend { backend, received } => {
                    if pipeline.backends.iter().any(|b| b.name() == backend) {
                        self.oldest = Some(self.oldest.map_or(received, |o| o.min(received)));
                        backends.insert(backend);
                    }
                }
                Wake::Resync { component } => {
                    let known = pipeline.sources.iter().any(|s| s.name() == component)
                        || pipeline.backends.iter().any(|b| b.name() == component);
                    if !known {
                        continue;
                    }
                    if !self.connected.insert(component.clone()) {
                        m.reconnect(&component);
                    }
                    cached = false;
                    // Sources and backends name themselves apart, so `[sources.main]` and
                    // `[backends.main]` may both exist: a source's reconnect lists every
                    // backend it feeds, whatever a backend is called.
                    if pipeline.sources.iter().any(|s| s.name() == component) {
                        backends.extend(feeding(&component));
                    }
                    if pipeline.backends.iter().any(|b| b.name() == component) {
                        backends.insert(component);
                    }
                }
            }
        }
        (!backends.is_empty()).then_some(Scope {
            cached,
            backends: Some(backends),
        })
    }

    /// The round that applied the pending events has ended.
    pub fn applied(&mut self, m: &crate::metrics::EventMetrics) {
        if let Some(t) = self.oldest.take() {
            m.lag(t.elapsed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{ApplyReport, Backend, Listing};
    use crate::error::{BackendError, Skip, SourceError};
    use crate::metrics::Metrics;
    use crate::model::{Endpoint, Registration, RegistrationMap};
    use crate::plan::Plan;
    use crate::source::Source;

    struct Src(&'static str);
    #[async_trait::async_trait]
    impl Source for Src {
        fn name(&self) -> &str {
            self.0
        }
        async fn fetch(&self) -> Result<(Vec<Endpoint>, Vec<Skip>), SourceError> {
            Ok((vec![], vec![]))
        }
    }

    struct Be(&'static str, Option<Vec<String>>);
    #[async_trait::async_trait]
    impl Backend for Be {
        fn name(&self) -> &str {
            self.0
        }
        fn sources(&self) -> Option<&[String]> {
            self.1.as_deref()
        }
        fn render(&self, _: &Endpoint) -> Result<Registration, Skip> {
            unreachable!("no endpoints")
        }
        async fn list(&self, _: &RegistrationMap) -> Result<Listing, BackendError> {
            Ok(Listing::default())
        }
        async fn apply(&self, _: &RegistrationMap, _: &RegistrationMap, _: &Plan) -> ApplyReport {
            ApplyReport::default()
        }
    }

    /// Sources `r` and `s`; backend `a` reads `r`, `b` reads `s`, `c` reads everything.
    fn pipeline() -> Pipeline {
        Pipeline {
            sources: vec![Box::new(Src("r")), Box::new(Src("s"))],
            backends: vec![
                Box::new(Be("a", Some(vec!["r".into()]))),
                Box::new(Be("b", Some(vec!["s".into()]))),
                Box::new(Be("c", None)),
            ],
            max_deregister_fraction: 0.5,
            write_gate: None,
        }
    }

    fn names(s: &Scope) -> Vec<&str> {
        s.backends.iter().flatten().map(String::as_str).collect()
    }

    fn src(name: &str) -> Wake {
        Wake::Source {
            source: name.into(),
            kind: "service".into(),
            received: Instant::now(),
        }
    }

    #[test]
    fn an_event_wakes_only_the_backends_its_source_feeds_from_views() {
        let (p, m) = (pipeline(), Metrics::new());
        let mut book = EventBook::default();
        let s = book.scope(&p, vec![src("r"), src("r")], &m.events).unwrap();
        assert!(s.cached, "an event round plans from the watched view");
        assert_eq!(names(&s), ["a", "c"]);
        let text = m.encode();
        assert!(
            text.contains(r#"rancon_events_total{source="r",kind="service"} 2"#),
            "{text}"
        );
    }

    #[test]
    fn a_reconnect_lists_in_full_and_only_later_connects_count_as_reconnects() {
        let (p, m) = (pipeline(), Metrics::new());
        let mut book = EventBook::default();
        let resync = || Wake::Resync {
            component: "s".into(),
        };
        let first = book.scope(&p, vec![resync(), src("r")], &m.events).unwrap();
        assert!(!first.cached, "after a (re)connect the source is listed");
        assert_eq!(names(&first), ["a", "b", "c"]);
        assert!(!m.encode().contains("rancon_watch_reconnects_total{"));
        book.scope(&p, vec![resync()], &m.events).unwrap();
        assert!(
            m.encode()
                .contains(r#"rancon_watch_reconnects_total{component="s"} 1"#)
        );
    }

    #[test]
    fn a_source_named_like_a_backend_lists_every_backend_it_feeds_on_reconnect() {
        let m = Metrics::new();
        let mut p = pipeline();
        // Source `a` (read by `c` only) shares its name with backend `a` (which reads `r`).
        p.sources.push(Box::new(Src("a")));
        let resync = Wake::Resync {
            component: "a".into(),
        };
        let s = EventBook::default()
            .scope(&p, vec![resync], &m.events)
            .unwrap();
        assert!(!s.cached);
        assert!(names(&s).contains(&"c"), "{:?}", names(&s));
    }

    #[test]
    fn a_backend_wake_rounds_that_backend_and_unknown_names_round_nothing() {
        let (p, m) = (pipeline(), Metrics::new());
        let mut book = EventBook::default();
        let drift = |b: &str| Wake::Backend {
            backend: b.into(),
            received: Instant::now(),
        };
        let s = book.scope(&p, vec![drift("b")], &m.events).unwrap();
        assert_eq!(names(&s), ["b"]);
        assert!(s.cached);
        // A watch of a configuration a reload replaced: no round.
        assert_eq!(book.scope(&p, vec![drift("gone")], &m.events), None);
        assert_eq!(book.scope(&p, vec![src("unread")], &m.events), None);
    }

    #[test]
    fn the_lag_is_recorded_once_after_the_round_from_the_oldest_event() {
        let (p, m) = (pipeline(), Metrics::new());
        let mut book = EventBook::default();
        let old = Instant::now() - Duration::from_millis(300);
        let wakes = vec![
            src("r"),
            Wake::Source {
                source: "r".into(),
                kind: "service".into(),
                received: old,
            },
        ];
        book.scope(&p, wakes, &m.events).unwrap();
        book.applied(&m.events);
        book.applied(&m.events);
        let text = m.encode();
        assert!(text.contains("rancon_event_lag_seconds_count 1"), "{text}");
        // The oldest event (300 ms ago) sets the lag: the sum is at least that.
        let sum: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("rancon_event_lag_seconds_sum "))
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!(sum >= 0.3, "{sum}");
    }
}
