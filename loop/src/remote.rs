//! The one door into a loop from other threads: a mutex-guarded inbox plus the poll's
//! `mio::Waker`.
//!
//! It owns everything that is `Send`: callbacks queued by [`LoopHandle`], wake-ups of spawned
//! tasks from std `Waker`s, and cross-thread stop requests. It must never touch the loop's
//! `Rc` state (that lives on the loop's thread) and never run a callback: the loop drains the
//! inbox on its own thread at the start of each iteration.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::arena::Key;

/// A cheap per-thread number (std's `ThreadId` costs more to get at).
static NEXT_THREAD_TAG: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    static THREAD_TAG: usize = NEXT_THREAD_TAG.fetch_add(1, Ordering::Relaxed);
}

fn thread_tag() -> usize {
    THREAD_TAG.try_with(|tag| *tag).unwrap_or(0)
}

pub(crate) type SendCallback = Box<dyn FnOnce() + Send>;

#[derive(Default)]
pub(crate) struct Inbox {
    pub(crate) callbacks: Vec<SendCallback>,
    pub(crate) woken_tasks: Vec<Key>,
}

pub(crate) struct Remote {
    waker: mio::Waker,
    inbox: Mutex<Inbox>,
    /// Set (under the inbox lock) when something was queued since the last drain. It lets the
    /// loop skip the lock on idle iterations, makes the poll timeout zero, and means only the
    /// first of a burst of pushes pays for a `Waker::wake` syscall.
    pending: AtomicBool,
    /// Set by a wake from the loop's own thread, which queues nothing: the next poll must
    /// not wait, but there is no inbox to lock and drain. Only the owner thread touches it.
    local_wake: AtomicBool,
    stop_requested: AtomicBool,
    /// Set when the loop is dropped: later pushes are discarded instead of piling up.
    closed: AtomicBool,
    /// The thread that owns the loop (`IoLoop` is `!Send`, so it never moves). A push from
    /// that thread skips the `Waker` syscall: the loop cannot be blocked in poll while its
    /// own thread is running code, and it checks `pending` before it polls.
    owner: usize,
}

impl Remote {
    pub(crate) fn new(waker: mio::Waker) -> Remote {
        Remote {
            waker,
            inbox: Mutex::new(Inbox::default()),
            pending: AtomicBool::new(false),
            local_wake: AtomicBool::new(false),
            stop_requested: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            owner: thread_tag(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inbox> {
        // Nothing runs user code under this lock, so a poisoned inbox is still consistent.
        self.inbox
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, f: impl FnOnce(&mut Inbox)) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let first = {
            let mut inbox = self.lock();
            f(&mut inbox);
            !self.pending.swap(true, Ordering::AcqRel)
        };
        if first && thread_tag() != self.owner {
            self.wake();
        }
    }

    fn wake(&self) {
        if let Err(err) = self.waker.wake() {
            log::error!("momoko-loop: waking the poll failed: {err}");
        }
    }

    pub(crate) fn add_callback(&self, callback: SendCallback) {
        self.push(|inbox| inbox.callbacks.push(callback));
    }

    pub(crate) fn wake_task(&self, key: Key) {
        self.push(|inbox| inbox.woken_tasks.push(key));
    }

    /// Makes the loop run an iteration without queuing anything: it ends a blocked poll, or
    /// (from the loop's thread) makes the next one not wait.
    pub(crate) fn notify(&self) {
        // From the loop's own thread nothing is queued and no syscall is due: the flag alone
        // makes the next poll not wait (the loop reads it before it polls), so the lock is
        // skipped. A run_sync root woken by its own loop's callbacks takes this path.
        if thread_tag() == self.owner {
            if !self.closed.load(Ordering::Acquire) {
                self.local_wake.store(true, Ordering::Relaxed);
            }
            return;
        }
        self.push(|_| {});
    }

    pub(crate) fn request_stop(&self) {
        self.stop_requested.store(true, Ordering::Release);
        self.push(|_| {});
    }

    pub(crate) fn take_stop_request(&self) -> bool {
        self.stop_requested.swap(false, Ordering::AcqRel)
    }

    pub(crate) fn is_pending(&self) -> bool {
        self.local_wake.load(Ordering::Relaxed) || self.pending.load(Ordering::Acquire)
    }

    /// Whether something was queued in the inbox since the last drain.
    pub(crate) fn has_queued(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Forgets a wake from the loop's own thread: the iteration it asked for is running.
    pub(crate) fn clear_local_wake(&self) {
        self.local_wake.store(false, Ordering::Relaxed);
    }

    /// Empties the inbox into `into` (swapping buffers keeps allocations warm).
    pub(crate) fn drain(&self, into: &mut Inbox) {
        if !self.has_queued() {
            return;
        }
        let mut inbox = self.lock();
        self.pending.store(false, Ordering::Release);
        std::mem::swap(&mut *inbox, into);
    }

    pub(crate) fn close(&self) -> Inbox {
        self.closed.store(true, Ordering::Release);
        std::mem::take(&mut *self.lock())
    }
}

/// A `Send + Sync` handle to an [`IoLoop`](crate::IoLoop), for other threads.
///
/// Only [`add_callback`](LoopHandle::add_callback) and [`stop`](LoopHandle::stop) are
/// offered, as Tornado's `add_callback` is its only thread-safe method: everything else in
/// the loop is `!Send` by construction. Both wake the loop's poll through its one
/// `mio::Waker`. After the loop has been dropped they do nothing.
///
/// ```
/// use momoko_loop::IoLoop;
/// use std::sync::mpsc;
///
/// let ioloop = IoLoop::new();
/// let handle = ioloop.handle();
/// let (tx, rx) = mpsc::channel();
/// std::thread::spawn(move || {
///     let stopper = handle.clone();
///     // Stop from the callback: a stop() that reached the loop before start() would make
///     // start() return at once, without running the callback.
///     handle.add_callback(move || {
///         tx.send("ran on the loop thread").unwrap();
///         stopper.stop();
///     });
/// });
/// ioloop.start();
/// assert_eq!(rx.recv().unwrap(), "ran on the loop thread");
/// ```
#[derive(Clone)]
pub struct LoopHandle {
    pub(crate) remote: Arc<Remote>,
}

impl LoopHandle {
    /// Queues `callback` to run on the loop's thread in its next iteration, and wakes the
    /// loop if it is blocked in poll. Callbacks from one thread run in the order queued.
    pub fn add_callback(&self, callback: impl FnOnce() + Send + 'static) {
        self.remote.add_callback(Box::new(callback));
    }

    /// Stops the loop as [`IoLoop::stop`](crate::IoLoop::stop) does, from any thread. If
    /// the loop is not running, its next `start()` returns at once.
    pub fn stop(&self) {
        self.remote.request_stop();
    }
}

impl std::fmt::Debug for LoopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopHandle")
            .field("closed", &self.remote.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
