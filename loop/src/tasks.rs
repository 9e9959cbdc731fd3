//! Spawned tasks: `async` blocks polled on the loop (Tornado's `gen.coroutine`).
//!
//! It owns each task's boxed future, its std `Waker` and its "already queued for a poll"
//! flag. Wakers are `Arc`-based and `Send + Sync`: waking one, from any thread, only pushes
//! the task's id into the loop's inbox (see `remote.rs`). It must never poll a task while a
//! borrow of the task table is held: the loop takes the future out, polls it, and puts it
//! back (see `IoLoop::poll_task`).

use std::future::Future as StdFuture;
use std::pin::Pin;
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
///                                                       │ Ready, panic, or cancelled
///                                                       ▼ (run_sync timed out)
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
