//! Spawned tasks: `async` blocks polled on the loop (Tornado's `gen.coroutine`).
//!
//! It owns each task's boxed future, its std `Waker` and its "already queued for a poll"
//! flag. Wakers are `Arc`-based and `Send + Sync`: waking one, from any thread, only pushes
//! the task's id into the loop's inbox (see `remote.rs`). It must never poll a task while a
//! borrow of the task table is held: the loop takes the future out, polls it, and puts it
//! back (see `IoLoop::poll_task`).

use std::future::Future as StdFuture;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};

use crate::arena::Key;
use crate::remote::Remote;

pub(crate) type BoxedTask = Pin<Box<dyn StdFuture<Output = ()>>>;

/// A task's future.
///
/// ```text
///   spawn ──▶ Idle(future) ──poll_task: taken out──▶ Running
///                  ▲                                    │
///                  └───────────── Pending ──────────────┤
///                                                       │ Ready, panic, or close()
///                                                       ▼
///                                                  slot freed
/// ```
pub(crate) enum TaskState {
    Idle(BoxedTask),
    Running,
}

pub(crate) struct Task {
    pub(crate) state: TaskState,
    /// True while a poll of this task sits in the callback queue, so that a burst of wakes
    /// costs one poll.
    pub(crate) queued: bool,
    pub(crate) waker: Waker,
}

struct TaskWaker {
    remote: Arc<Remote>,
    key: Key,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.remote.wake_task(self.key);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.remote.wake_task(self.key);
    }
}

pub(crate) fn make_waker(remote: &Arc<Remote>, key: Key) -> Waker {
    Waker::from(Arc::new(TaskWaker {
        remote: Arc::clone(remote),
        key,
    }))
}

/// The waker of `run_sync`'s root future, which is polled by `run_until` itself rather than
/// kept in the task table. Waking it, from any thread, sets its flag and pushes an empty
/// item through the remote: that ends a blocked poll (or, from the loop's thread, makes the
/// next poll not wait), and the iteration that follows polls the root.
pub(crate) struct RootWaker {
    woken: AtomicBool,
    remote: Arc<Remote>,
}

impl RootWaker {
    /// Starts woken: the root is polled in the first iteration.
    pub(crate) fn new(remote: &Arc<Remote>) -> RootWaker {
        RootWaker {
            woken: AtomicBool::new(true),
            remote: Arc::clone(remote),
        }
    }

    /// Whether it was woken since the last call.
    pub(crate) fn take_woken(&self) -> bool {
        self.woken.swap(false, Ordering::AcqRel)
    }
}

impl Wake for RootWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.woken.swap(true, Ordering::AcqRel) {
            self.remote.notify();
        }
    }
}
