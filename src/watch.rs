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

/// How many wake-ups may wait. A round reads the watched views, which the watchers keep
/// current in place, so a wake-up dropped while this many wait loses nothing: those queued
/// already run a round over the same views (and a view is not trusted again after a reconnect
/// until a full listing, whether or not its `Resync` got through). This bounds the memory a
/// flooding server can take while a round runs.
pub const QUEUE: usize = 1024;

/// Where watchers send; cloned into each watch task.
#[derive(Debug, Clone)]
pub struct WakeTx(mpsc::Sender<Wake>);

/// The daemon loop has stopped listening: the watch task should end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the daemon stopped listening")]
pub struct Closed;

impl WakeTx {
    /// Queues a wake-up without waiting; when the queue is full it is dropped (see `QUEUE`).
    pub fn send(&self, wake: Wake) -> Result<(), Closed> {
        match self.0.try_send(wake) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Closed),
        }
    }

    /// Whether the daemon loop stopped listening (a watcher then ends without sending).
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// The daemon loop's end.
pub type WakeRx = mpsc::Receiver<Wake>;

/// A new channel.
pub fn channel() -> (WakeTx, WakeRx) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (WakeTx(tx), rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_wakes_and_a_closed_one_tells_the_watcher_to_stop() {
        let (tx, mut rx) = channel();
        let w = || Wake::Resync {
            component: "r".into(),
        };
        for _ in 0..QUEUE * 3 {
            assert_eq!(tx.send(w()), Ok(()));
        }
        let mut queued = 0;
        while rx.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, QUEUE, "bounded: a flood cannot grow the queue");
        drop(rx);
        assert_eq!(tx.send(w()), Err(Closed));
    }
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
