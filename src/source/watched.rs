//! The view a source's watch keeps — its last complete listing with the changes received since
//! applied — and when it can stand in for a listing; one copy of these rules for every source.

use crate::error::Skip;
use crate::model::Endpoint;
use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// How many changes a listing in flight may collect (and how many items events may add to a
/// view between listings): a server, or anyone between, sending endless new ids must not take
/// all the memory. Past it the view is dropped and the next round lists.
pub const MAX_ADDED: usize = 10_000;

/// What applying one change to a view did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// What the source yields changed.
    Changed,
    /// Stored, but nothing the source yields changed.
    Unchanged,
    /// Too many new items since the listing: not stored; the view must be listed again.
    Overflow,
}

/// What the watch should do after a change.
#[derive(Debug, PartialEq, Eq)]
pub enum After {
    /// Tell the daemon: what the source yields changed.
    Wake,
    /// Nothing the source yields changed.
    Quiet,
    /// The view cannot be kept: the next round must list.
    Resync,
}

/// A source's listing, as its watch keeps it.
pub trait View {
    /// One change an event stream reports.
    type Change: Clone;
    /// What turns the view into endpoints.
    type Rules;
    /// Applies a change that came on `stream`.
    fn apply(&mut self, rules: &Self::Rules, stream: &str, change: &Self::Change) -> Applied;
    /// The event streams that must have been up throughout a listing for it to be trusted.
    fn streams(&self) -> Vec<&str>;
    /// Every endpoint, and what could not be used.
    fn endpoints(&self, rules: &Self::Rules) -> (Vec<Endpoint>, Vec<Skip>);
}

struct State<V: View> {
    view: Option<V>,
    /// The view is a complete listing made while every stream it needs was up, with every
    /// change received since applied.
    valid: bool,
    /// Bumped by every connect and disconnect: a listing that saw one is not trusted.
    epoch: u64,
    /// Streams that are up.
    connected: HashSet<String>,
    /// Listings in flight.
    fetching: usize,
    /// Changes received while a listing was in flight, re-applied to its result (the listing
    /// may have read an item before the change).
    journal: Vec<(String, V::Change)>,
    /// The journal hit its bound: the listing in flight cannot be completed by it.
    journal_full: bool,
}

impl<V: View> State<V> {
    fn end_fetch(&mut self) {
        self.fetching -= 1;
        if self.fetching == 0 {
            self.journal = Vec::new();
            self.journal_full = false;
        }
    }

    fn moved(&mut self) {
        self.epoch += 1;
        self.valid = false;
    }
}

/// Shared by a source (listings, `current`) and its watch tasks.
pub struct Watched<V: View> {
    state: Mutex<State<V>>,
    /// Set once `watch` started: listings keep a view only then (a `--once` run does not pay
    /// for it).
    pub watching: AtomicBool,
}

impl<V: View> Default for Watched<V> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                view: None,
                valid: false,
                epoch: 0,
                connected: HashSet::new(),
                fetching: 0,
                journal: Vec::new(),
                journal_full: false,
            }),
            watching: AtomicBool::new(false),
        }
    }
}

/// A listing in flight; dropping it unfinished (a failed or cancelled round) leaves no view.
pub struct Fetch<'a, V: View> {
    shared: &'a Watched<V>,
    epoch: u64,
    done: bool,
}

impl<V: View> Fetch<'_, V> {
    /// The listing completed: it becomes the view, with the changes received meanwhile
    /// re-applied. It is trusted only when no stream connected or dropped meanwhile and every
    /// stream the view needs is up.
    pub fn complete(mut self, rules: &V::Rules, mut view: V) {
        self.done = true;
        let mut st = self.shared.lock();
        // A change the view could not store (past its own bound) leaves it short of an item:
        // kept, but not trusted.
        let mut overflow = false;
        for (stream, change) in &st.journal {
            overflow |= view.apply(rules, stream, change) == Applied::Overflow;
        }
        st.valid = st.epoch == self.epoch
            && !st.journal_full
            && !overflow
            && view.streams().iter().all(|s| st.connected.contains(*s));
        st.view = Some(view);
        st.end_fetch();
    }
}

impl<V: View> Drop for Fetch<'_, V> {
    fn drop(&mut self) {
        if !self.done {
            self.shared.lock().end_fetch();
        }
    }
}

impl<V: View> Watched<V> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<V>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether listings should keep a view.
    pub fn watching(&self) -> bool {
        self.watching.load(Ordering::Relaxed)
    }

    /// A listing starts (before its first request). The view it will replace goes now: two
    /// copies of a large listing would double the peak memory, and rounds never overlap, so
    /// nothing asks for the view meanwhile (the changes received are journaled).
    pub fn begin_fetch(&self) -> Fetch<'_, V> {
        let mut st = self.lock();
        st.fetching += 1;
        st.view = None;
        st.valid = false;
        Fetch {
            shared: self,
            epoch: st.epoch,
            done: false,
        }
    }

    /// The view's endpoints, while it can stand in for a listing.
    pub fn current(&self, rules: &V::Rules) -> Option<(Vec<Endpoint>, Vec<Skip>)> {
        let st = self.lock();
        let view = st.view.as_ref().filter(|_| st.valid)?;
        Some(view.endpoints(rules))
    }

    /// Reads the view, trusted or not (`None`: no view).
    pub fn read<R>(&self, f: impl FnOnce(&V) -> R) -> Option<R> {
        self.lock().view.as_ref().map(f)
    }

    /// A stream is up: changes flow from now on, but what happened before is unknown until
    /// the next listing.
    pub fn connected(&self, stream: &str) {
        let mut st = self.lock();
        st.moved();
        st.connected.insert(stream.to_string());
    }

    /// A stream dropped: changes are being lost.
    pub fn disconnected(&self, stream: &str) {
        let mut st = self.lock();
        st.moved();
        st.connected.remove(stream);
    }

    /// Applies a change a stream received.
    pub fn apply(&self, rules: &V::Rules, stream: &str, change: V::Change) -> After {
        let mut st = self.lock();
        let mut resync = false;
        let mut journaled = false;
        if st.fetching > 0 {
            if st.journal.len() < MAX_ADDED {
                st.journal.push((stream.to_string(), change.clone()));
                journaled = true;
            } else if !st.journal_full {
                // The listing in flight cannot be completed: list again.
                st.journal_full = true;
                resync = true;
            }
        }
        let after = match st.view.as_mut().map(|v| v.apply(rules, stream, &change)) {
            Some(Applied::Changed) => After::Wake,
            Some(Applied::Overflow) => {
                st.valid = false;
                After::Resync
            }
            // The listing in flight will hold it; whether it changes anything is unknown.
            None if journaled => After::Wake,
            Some(Applied::Unchanged) | None => After::Quiet,
        };
        if resync { After::Resync } else { after }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A view of numbered items on streams "a" and "b": a change sets an item's value.
    #[derive(Default)]
    struct Items(std::collections::BTreeMap<u32, u32>);

    impl View for Items {
        type Change = (u32, u32);
        type Rules = ();
        fn apply(&mut self, _: &(), _: &str, &(k, v): &(u32, u32)) -> Applied {
            if self.0.len() >= 3 && !self.0.contains_key(&k) {
                return Applied::Overflow;
            }
            match self.0.insert(k, v) {
                Some(old) if old == v => Applied::Unchanged,
                _ => Applied::Changed,
            }
        }
        fn streams(&self) -> Vec<&str> {
            vec!["a", "b"]
        }
        fn endpoints(&self, _: &()) -> (Vec<Endpoint>, Vec<Skip>) {
            let eps = self
                .0
                .iter()
                .map(|(k, v)| Endpoint {
                    source: "s".into(),
                    props: [("host", format!("10.0.0.{k}")), ("port", v.to_string())]
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                })
                .collect();
            (eps, Vec::new())
        }
    }

    fn ports(w: &Watched<Items>) -> Option<Vec<u16>> {
        w.current(&())
            .map(|(e, _)| e.iter().map(|e| e.prop("port").parse().unwrap()).collect())
    }

    #[test]
    fn a_listing_is_trusted_only_with_every_stream_up_throughout() {
        let w = Watched::<Items>::default();
        w.connected("a");
        w.begin_fetch().complete(&(), Items::default());
        assert_eq!(ports(&w), None, "stream b is down");
        w.connected("b");
        assert_eq!(
            ports(&w),
            None,
            "a connect: what happened before is unknown"
        );
        let f = w.begin_fetch();
        w.disconnected("a");
        w.connected("a");
        f.complete(&(), Items::default());
        assert_eq!(ports(&w), None, "a stream dropped during the listing");
        w.begin_fetch().complete(&(), Items::default());
        assert_eq!(ports(&w), Some(vec![]));
        w.disconnected("b");
        assert_eq!(ports(&w), None, "a stream dropped: changes are being lost");
    }

    #[test]
    fn changes_during_a_listing_are_reapplied_and_only_changes_wake() {
        let w = Watched::<Items>::default();
        w.connected("a");
        w.connected("b");
        let f = w.begin_fetch();
        assert_eq!(
            w.apply(&(), "a", (1, 80)),
            After::Wake,
            "journaled: unknown"
        );
        let mut listed = Items::default();
        listed.0.insert(1, 70);
        f.complete(&(), listed);
        assert_eq!(ports(&w), Some(vec![80]), "the event after the read wins");
        assert_eq!(w.apply(&(), "b", (1, 80)), After::Quiet);
        assert_eq!(w.apply(&(), "b", (2, 90)), After::Wake);
        assert_eq!(w.apply(&(), "b", (3, 91)), After::Wake);
        assert_eq!(w.apply(&(), "b", (4, 92)), After::Resync, "overflow");
        assert_eq!(ports(&w), None, "an overflowed view is not trusted");
    }

    #[test]
    fn a_full_journal_asks_for_another_listing_and_an_abandoned_one_leaves_no_view() {
        let w = Watched::<Items>::default();
        w.connected("a");
        w.connected("b");
        w.begin_fetch().complete(&(), Items::default());
        let f = w.begin_fetch();
        assert_eq!(ports(&w), None, "the view goes when a listing starts");
        for i in 0..MAX_ADDED as u32 {
            w.apply(&(), "a", (i, 1));
        }
        assert_eq!(w.apply(&(), "a", (0, 2)), After::Resync);
        assert_eq!(w.apply(&(), "a", (0, 3)), After::Quiet, "asked once");
        f.complete(&(), Items::default());
        assert_eq!(ports(&w), None, "the journal could not hold every change");
        drop(w.begin_fetch());
        assert_eq!(ports(&w), None);
        w.begin_fetch().complete(&(), Items::default());
        assert_eq!(ports(&w), Some(vec![]), "the journal starts over");
    }

    #[test]
    fn a_listing_whose_journal_overflows_its_view_is_not_trusted() {
        let w = Watched::<Items>::default();
        w.connected("a");
        w.connected("b");
        let f = w.begin_fetch();
        // Four new items journaled; the view holds three (`Items`' bound).
        for i in 1..=4 {
            w.apply(&(), "a", (i, 80));
        }
        f.complete(&(), Items::default());
        assert_eq!(
            ports(&w),
            None,
            "a view missing an item it was told of stands in for a listing"
        );
    }
}
