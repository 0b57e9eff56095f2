//! Wake-ups from watching components: what changed, so the engine runs the right round.
//!
//! Events make rancon fast; the periodic full listing keeps it right. A watcher never decides
//! anything: it keeps its component's view current and says "look again" on a channel. The
//! round that follows plans with the same rules as any other (ownership, hold-backs, guard,
//! absence confirmed by a full listing).

use std::time::Instant;
use tokio::sync::mpsc;

/// What a watcher tells the daemon loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// Events changed what source `source` holds; its `Source::current` view has them.
    /// `kind` is the event kind (`service`, `stack`, `container`, …) for metrics; `received`
    /// is when the event reached rancon (for `rancon_event_lag_seconds`).
    Source {
        /// The source's component name.
        source: String,
        /// The kind of resource or event.
        kind: String,
        /// When the event arrived.
        received: Instant,
    },
    /// Component `component`'s watch (re)connected or may have lost events: its view is
    /// unknown until a full listing, so the next round lists it in full.
    Resync {
        /// The source's or backend's component name.
        component: String,
    },
    /// The registry of backend `backend` changed under rancon (a hand deletion or edit, or
    /// anyone's write): list it again and repair what is ours.
    Backend {
        /// The backend's component name.
        backend: String,
        /// When the change was seen.
        received: Instant,
    },
}

/// Where watchers send. Unbounded on purpose: every producer is paced by its server (Rancher
/// flushes once a second per resource, Consul's blocking queries are rate-limited), and the
/// daemon loop drains the whole queue into one round, so a burst costs one round.
pub type WakeTx = mpsc::UnboundedSender<Wake>;
/// The daemon loop's end.
pub type WakeRx = mpsc::UnboundedReceiver<Wake>;

/// A new channel.
pub fn channel() -> (WakeTx, WakeRx) {
    mpsc::unbounded_channel()
}

/// Watch tasks of one built pipeline; aborted when dropped (a SIGHUP reload builds new ones).
#[derive(Debug, Default)]
pub struct Watches(Vec<tokio::task::JoinHandle<()>>);

impl Watches {
    /// Adds a task.
    pub fn push(&mut self, task: tokio::task::JoinHandle<()>) {
        self.0.push(task);
    }

    /// How many watch tasks run.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when nothing watches.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}
