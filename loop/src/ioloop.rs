//! The `IoLoop`: the reactor that owns a `mio::Poll`, the handler table, the callback queue,
//! the timer queue and the spawned tasks, and runs Tornado's iteration over them.
//!
//! It must never hold a `RefCell` borrow of its own tables while user code runs (a
//! callback, handler, timeout, task poll, waker, or the `Drop` of anything user-supplied):
//! every table access is statement-scoped, user code is taken out of its slot before it is
//! called and put back afterwards only if its generational slot is still its own. Each
//! iteration, in this order (Tornado's `PollIOLoop`, v4.5):
//!
//! 1. move callbacks and task wake-ups queued from other threads into the callback queue;
//! 2. note how many callbacks are queued: only those run in this iteration;
//! 3. collect the timeouts that are due, before running anything;
//! 4. run the noted callbacks, then the collected timeouts not cancelled meanwhile;
//! 5. run the before-poll callbacks (`add_before_poll`): work that batches what this
//!    iteration asked for, such as one write per connection, without a poll of its own;
//! 6. stop here if `stop()` was called;
//! 7. poll: not at all if callbacks are pending, else until the next deadline, at most an
//!    hour; `EINTR` is retried with the time left until the next deadline;
//! 8. dispatch the events one at a time, looking each handler up when its turn comes.
//!
//! `start` runs iterations until stopped; `turn` runs exactly one, for a program that nests
//! the loop in an event loop of its own through the poll's descriptor (`AsRawFd`) and
//! `next_timeout`; `run_sync` runs them until its root future, pinned in its own frame (not
//! in the task table), completes, polling it after step 4 whenever its waker fired. None of
//! them may be entered from code the loop runs.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io;
#[cfg(unix)]
use std::os::fd::{AsRawFd, RawFd};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::arena::{Arena, Key};
use crate::future::Future;
use crate::handlers::{self, HandlerCallback, HandlerId, HandlerSlot, Ready, WAKER_TOKEN};
use crate::remote::{Inbox, LoopHandle, Remote};
use crate::tasks::{self, BoxedTask, RootWaker, Task, TaskState};
use crate::timers::{Scheduled, Timers};

mod guards;
use guards::{DueBatch, HandlerGuard, RunGuard, TaskGuard};

/// Poll for at most this long when nothing is scheduled, as Tornado's `_POLL_TIMEOUT`; it
/// bounds the damage of a lost wake-up.
const MAX_POLL_TIMEOUT: Duration = Duration::from_secs(3600);

const EVENTS_CAPACITY: usize = 1024;

/// The message of the error (from `turn`) or panic (from `start` and the `run_sync` family)
/// when the loop is entered from inside itself.
const ALREADY_RUNNING: &str = "momoko_loop::IoLoop: the loop is already running \
     (start, turn and run_sync must not be called from inside the same loop)";

/// Each loop gets a process-unique id so that a `HandlerId` from one loop never matches a
/// registration in another.
static NEXT_LOOP_ID: AtomicU32 = AtomicU32::new(1);

thread_local! {
    static CURRENT: RefCell<Option<IoLoop>> = const { RefCell::new(None) };
}

/// Identifies a timeout added with [`IoLoop::call_later`] or [`IoLoop::call_at`], for
/// [`IoLoop::remove_timeout`].
///
/// Generational: it never matches another timeout, of this loop or any other, so removing
/// it after it fired or was removed does nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeoutId {
    pub(crate) index: usize,
    pub(crate) seq: u64,
}

/// The error of [`IoLoop::run_sync_timeout`]: the future was not done in time.
///
/// ```
/// use momoko_loop::{Future, IoLoop, TimedOut};
/// use std::time::Duration;
///
/// let ioloop = IoLoop::new();
/// let never: Future<()> = Future::with_loop(&ioloop);
/// let result = ioloop.run_sync_timeout(never, Duration::from_millis(10));
/// assert_eq!(result, Err(TimedOut));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the future did not complete before the timeout")
    }
}

impl std::error::Error for TimedOut {}

enum Callback {
    Fn(Box<dyn FnOnce()>),
    /// Cheaper than boxing a closure per wake-up.
    PollTask(Key),
}

pub(crate) struct Inner {
    id: u32,
    poll: RefCell<mio::Poll>,
    events: RefCell<mio::Events>,
    /// Events of the last poll not yet dispatched. Kept in the loop rather than on the
    /// stack so that a handler panicking mid-batch loses no events: the next `start()`
    /// dispatches the rest.
    pending_events: RefCell<VecDeque<(mio::Token, Ready)>>,
    handlers: RefCell<Arena<HandlerSlot>>,
    callbacks: RefCell<VecDeque<Callback>>,
    timers: RefCell<Timers>,
    tasks: RefCell<Arena<Task>>,
    /// Spare buffer swapped with the remote inbox on each drain.
    inbox: RefCell<Inbox>,
    remote: Arc<Remote>,
    /// The poll's epoll (or kqueue) descriptor, kept apart so that `as_raw_fd` never needs
    /// a borrow of `poll`.
    #[cfg(unix)]
    fd: RawFd,
    /// True from the start to the end of `start()`, `turn()` or `run_sync`, whatever `stop()`
    /// says meanwhile: what makes re-entering the loop an error.
    active: Cell<bool>,
    /// False once `stop()` was called in the current run (see `is_running`).
    running: Cell<bool>,
    stopped: Cell<bool>,
    /// The last poll filled the events buffer, so the kernel may hold more. A program that
    /// nests the loop would not hear of those (its registration of our fd is
    /// edge-triggered), hence `next_timeout` says "now".
    more_events: Cell<bool>,
    /// `add_before_poll`'s queue: run at step 5 of an iteration.
    before_poll: RefCell<VecDeque<BeforePoll>>,
    /// How far [`IoLoop::advance_time`] moved this loop's clock ahead of the system's: every
    /// deadline (timers, the poll's wait) is read through [`Inner::now`], so a test moves
    /// time without sleeping.
    skew: Cell<Duration>,
}

/// A before-poll callback: run once, or kept by its owner and queued again and again
/// ([`IoLoop::add_before_poll_shared`]), which allocates nothing.
enum BeforePoll {
    Once(Box<dyn FnOnce()>),
    Shared(Rc<dyn Fn()>),
}

/// Rounds of before-poll callbacks one iteration runs at most: a callback that keeps adding
/// another must not keep the loop from polling.
const BEFORE_POLL_ROUNDS: usize = 8;

impl Inner {
    /// The loop's clock: the system's monotonic clock plus what `advance_time` added.
    fn now(&self) -> Instant {
        Instant::now() + self.skew.get()
    }

    /// Step 5: the before-poll callbacks, and those they add, for a bounded number of
    /// rounds (what is left runs in the next iteration, which then polls without waiting).
    fn run_before_poll(&self) {
        for _ in 0..BEFORE_POLL_ROUNDS {
            let count = self.before_poll.borrow().len();
            if count == 0 {
                return;
            }
            // One at a time from the queue itself: a callback that panics leaves the rest
            // queued for the next `start()`.
            for _ in 0..count {
                let next = self.before_poll.borrow_mut().pop_front();
                match next {
                    Some(BeforePoll::Once(callback)) => callback(),
                    Some(BeforePoll::Shared(callback)) => callback(),
                    None => break,
                }
            }
        }
    }

    pub(crate) fn push_callback(&self, callback: Box<dyn FnOnce()>) {
        self.callbacks
            .borrow_mut()
            .push_back(Callback::Fn(callback));
    }

    fn stop(&self) {
        self.running.set(false);
        self.stopped.set(true);
    }

    fn drain_remote(&self) {
        self.remote.clear_local_wake();
        if self.remote.has_queued() {
            self.drain_inbox();
        }
        // After the inbox: a stop that raced the drain (its flag set after an earlier check,
        // its wake-up drained here) is seen now instead of being left behind a cleared
        // `pending`, which would leave the loop running forever.
        if self.remote.take_stop_request() {
            self.stop();
        }
    }

    fn drain_inbox(&self) {
        let mut inbox = std::mem::take(&mut *self.inbox.borrow_mut());
        self.remote.drain(&mut inbox);
        {
            let mut callbacks = self.callbacks.borrow_mut();
            for callback in inbox.callbacks.drain(..) {
                callbacks.push_back(Callback::Fn(callback));
            }
        }
        for key in inbox.woken_tasks.drain(..) {
            self.schedule_task(key);
        }
        *self.inbox.borrow_mut() = inbox;
    }

    fn schedule_task(&self, key: Key) {
        let queue = match self.tasks.borrow_mut().get_mut(key) {
            Some(task) if !task.queued => {
                task.queued = true;
                true
            }
            // Already queued, or finished: waking a finished task is harmless.
            _ => false,
        };
        if queue {
            self.callbacks
                .borrow_mut()
                .push_back(Callback::PollTask(key));
        }
    }

    fn run_callbacks(&self, count: usize) {
        for _ in 0..count {
            let next = self.callbacks.borrow_mut().pop_front();
            match next {
                Some(Callback::Fn(callback)) => callback(),
                Some(Callback::PollTask(key)) => self.poll_task(key),
                None => break,
            }
        }
    }

    fn poll_task(&self, key: Key) {
        let taken = match self.tasks.borrow_mut().get_mut(key) {
            Some(task) => {
                task.queued = false;
                match std::mem::replace(&mut task.state, TaskState::Running) {
                    TaskState::Idle(future) => Some((future, task.waker.clone())),
                    // Polled re-entrantly: the outer poll puts it back; its wake is queued.
                    TaskState::Running => None,
                }
            }
            None => None,
        };
        let Some((future, waker)) = taken else {
            return;
        };
        let mut guard = TaskGuard {
            inner: self,
            key,
            future: Some(future),
        };
        let mut cx = Context::from_waker(&waker);
        let ready = match guard.future.as_mut() {
            Some(future) => future.as_mut().poll(&mut cx).is_ready(),
            None => true,
        };
        let future = guard.future.take();
        drop(guard);
        let leftover = if ready {
            let removed = self.tasks.borrow_mut().remove(key);
            (removed, future)
        } else {
            let mut tasks = self.tasks.borrow_mut();
            match (tasks.get_mut(key), future) {
                (Some(task), Some(future)) if matches!(task.state, TaskState::Running) => {
                    task.state = TaskState::Idle(future);
                    (None, None)
                }
                (_, future) => (None, future),
            }
        };
        // Dropped here, with no borrow held: a task's captures may call into the loop.
        drop(leftover);
    }

    /// Steps 1 to 4 of an iteration: take in what other threads queued, then run the
    /// callbacks queued so far and the timeouts due now. `due` is a spare buffer, left empty.
    fn run_ready(&self, due: &mut Vec<Scheduled>) {
        self.drain_remote();
        let ncallbacks = self.callbacks.borrow().len();
        {
            // No clock read on an iteration with no timeout scheduled.
            let mut timers = self.timers.borrow_mut();
            if timers.next_deadline().is_some() {
                timers.collect_due(self.now(), due);
            }
        }
        let mut batch = DueBatch {
            inner: self,
            due: std::mem::take(due),
            next: 0,
        };
        self.run_callbacks(ncallbacks);
        batch.run();
        *due = std::mem::take(&mut batch.due);
        due.clear();
        drop(batch);
    }

    /// Callbacks, task polls, items from other threads or undispatched events are waiting:
    /// the next iteration has work without polling.
    fn has_ready_work(&self) -> bool {
        !self.callbacks.borrow().is_empty()
            || !self.before_poll.borrow().is_empty()
            || self.remote.is_pending()
            || !self.pending_events.borrow().is_empty()
            || self.more_events.get()
    }

    fn poll_timeout(&self) -> Duration {
        if self.has_ready_work() {
            return Duration::ZERO;
        }
        match self.timers.borrow_mut().next_deadline() {
            Some(deadline) => deadline
                .saturating_duration_since(self.now())
                .min(MAX_POLL_TIMEOUT),
            None => MAX_POLL_TIMEOUT,
        }
    }

    /// Polls for at most `timeout` (from [`Inner::poll_timeout`]), and at most until `cap`, a
    /// bound of the caller's own (`turn`'s). The clock is read only if a signal interrupts
    /// the poll: the wait is then worked out again from the timers, as before the poll.
    fn poll_once(&self, timeout: Duration, cap: Option<Instant>) -> io::Result<()> {
        let mut poll = self.poll.borrow_mut();
        let mut events = self.events.borrow_mut();
        let mut remaining = timeout;
        loop {
            match poll.poll(&mut events, Some(remaining)) {
                Ok(()) => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {
                    remaining = self.poll_timeout();
                    if let Some(cap) = cap {
                        remaining = remaining.min(cap.saturating_duration_since(Instant::now()));
                    }
                }
                Err(err) => return Err(err),
            }
        }
        let mut pending = self.pending_events.borrow_mut();
        let mut count = 0;
        for event in events.iter() {
            count += 1;
            // The waker's only job is to end the poll; the inbox is drained every iteration.
            if event.token() != WAKER_TOKEN {
                pending.push_back((event.token(), Ready::from(event)));
            }
        }
        self.more_events.set(count >= events.capacity());
        Ok(())
    }

    fn dispatch_events(&self) {
        loop {
            let next = self.pending_events.borrow_mut().pop_front();
            let Some((token, ready)) = next else {
                break;
            };
            self.dispatch(token, ready);
        }
    }

    fn dispatch(&self, token: mio::Token, ready: Ready) {
        let key = handlers::decode(token);
        let callback = match self.handlers.borrow_mut().get_mut(key) {
            Some(slot) => match std::mem::replace(slot, HandlerSlot::Running) {
                HandlerSlot::Idle(callback) => Some(callback),
                HandlerSlot::Running => None,
            },
            None => None,
        };
        let Some(callback) = callback else {
            log::trace!("momoko-loop: dropped an event for a removed handler ({token:?})");
            return;
        };
        let mut guard = HandlerGuard {
            inner: self,
            key,
            callback: Some(callback),
        };
        if let Some(callback) = guard.callback.as_mut() {
            callback(ready);
        }
    }
}

/// The body of a task: `future`, then its output into `result` (only the task sets it; if
/// the user already did, theirs is kept).
async fn resolve_with<F: std::future::Future>(future: F, result: Future<F::Output>)
where
    F::Output: 'static,
{
    let output = future.await;
    let _ = result.set_result(output);
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Later LoopHandle calls become no-ops instead of queueing into a dead loop.
        let inbox = self.remote.close();
        drop(inbox);
    }
}

/// A Tornado-like event loop on mio: IO handlers, callbacks, timeouts, one-shot
/// [`Future`]s and spawned `async` tasks, all run on one thread.
///
/// `IoLoop` is a cheap `Rc` handle (`!Send`): clones share one loop. Other threads use a
/// [`LoopHandle`] from [`handle`](IoLoop::handle).
///
/// # Re-entrancy
///
/// Every method may be called from inside any callback, handler, timeout or task of the
/// same loop: add or remove handlers (including the running one), schedule or cancel
/// timeouts (including ones already due in this iteration), resolve futures, stop the
/// loop. No user code ever runs while the loop's tables are borrowed, and user code is
/// never run inline by a method of the loop: callbacks, done-callbacks and tasks run from
/// the loop's iteration. `start()` and the `run_sync` family are the exceptions: they must
/// not be called while the same loop is running.
///
/// # Panics in user code
///
/// A panic in a callback, handler, timeout or task propagates out of `start()` (or
/// `run_sync`). The loop stays consistent: it is marked stopped, the previous current loop
/// is restored, the panicking handler stays registered (a panicking task or callback is
/// dropped), undispatched events and unrun due timeouts are kept, and `start()` may be
/// called again.
///
/// # Reference cycles
///
/// Closures stored in the loop (handlers, callbacks, timeouts, tasks) that capture an
/// `IoLoop` clone keep the loop alive until they are removed or run. Capture a
/// [`WeakIoLoop`] (from [`downgrade`](IoLoop::downgrade)) in long-lived handlers.
///
/// ```
/// use momoko_loop::IoLoop;
/// use std::time::Duration;
///
/// let ioloop = IoLoop::new();
/// let l = ioloop.clone();
/// ioloop.add_callback(move || {
///     l.call_later(Duration::from_millis(5), {
///         let l = l.clone();
///         move || l.stop()
///     });
/// });
/// ioloop.start(); // returns once the timeout called stop()
/// ```
///
/// # Nesting in another event loop
///
/// A program with an event loop of its own (a `mio::Poll`, epoll, a GUI toolkit) need not
/// give its thread to [`start`](IoLoop::start): the loop nests as one file descriptor plus a
/// deadline, as calloop's sources do. Register the loop's descriptor
/// ([`as_raw_fd`](IoLoop#impl-AsRawFd-for-IoLoop)) for reading, wait at most
/// [`next_timeout`](IoLoop::next_timeout), and after every wake-up call
/// [`turn`](IoLoop::turn)`(Some(Duration::ZERO))`, which runs one iteration without
/// blocking. Everything else (handlers, timeouts, tasks, momoko's connections and pools on
/// this loop) works as under `start`.
///
/// ```
/// use std::os::fd::AsRawFd;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// use mio::{unix::SourceFd, Events, Interest, Poll, Token};
/// use momoko_loop::IoLoop;
///
/// const INNER: Token = Token(0); // the program's other sources use other tokens
///
/// let ioloop = IoLoop::new();
/// let mut poll = Poll::new()?;
/// let mut events = Events::with_capacity(16);
/// poll.registry()
///     .register(&mut SourceFd(&ioloop.as_raw_fd()), INNER, Interest::READABLE)?;
///
/// // Work that comes from another thread makes the descriptor readable.
/// let done = Arc::new(AtomicBool::new(false));
/// let (handle, d) = (ioloop.handle(), done.clone());
/// std::thread::spawn(move || handle.add_callback(move || d.store(true, Ordering::SeqCst)));
///
/// while !done.load(Ordering::SeqCst) {
///     // Bounded here only so that a doc test cannot hang; None would wait for an event.
///     let wait = ioloop.next_timeout().unwrap_or(Duration::from_secs(5));
///     poll.poll(&mut events, Some(wait))?;
///     for event in events.iter() {
///         if event.token() != INNER {
///             // the program's own sources
///         }
///     }
///     ioloop.turn(Some(Duration::ZERO))?;
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct IoLoop(pub(crate) Rc<Inner>);

/// A weak reference to an [`IoLoop`], which does not keep it alive.
///
/// ```
/// let ioloop = momoko_loop::IoLoop::new();
/// let weak = ioloop.downgrade();
/// assert!(weak.upgrade().is_some());
/// drop(ioloop);
/// assert!(weak.upgrade().is_none());
/// ```
#[derive(Clone)]
pub struct WeakIoLoop(Weak<Inner>);

impl WeakIoLoop {
    /// The loop, if any `IoLoop` clone of it is still alive.
    pub fn upgrade(&self) -> Option<IoLoop> {
        IoLoop::from_weak(&self.0)
    }
}

impl fmt::Debug for WeakIoLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.upgrade() {
            Some(ioloop) => f.debug_tuple("WeakIoLoop").field(&ioloop.0.id).finish(),
            None => f.write_str("WeakIoLoop(<dropped>)"),
        }
    }
}

impl fmt::Debug for IoLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // try_borrow: Debug may be called from inside a callback, mid-iteration.
        fn len<T>(cell: &RefCell<T>, len: impl Fn(&T) -> usize) -> Option<usize> {
            cell.try_borrow().ok().map(|t| len(&t))
        }
        let inner = &self.0;
        f.debug_struct("IoLoop")
            .field("id", &inner.id)
            .field("running", &inner.running.get())
            .field("handlers", &len(&inner.handlers, Arena::len))
            .field("callbacks", &len(&inner.callbacks, VecDeque::len))
            .field("timeouts", &len(&inner.timers, Timers::len))
            .field("tasks", &len(&inner.tasks, Arena::len))
            .finish()
    }
}

impl IoLoop {
    /// Creates a loop (not yet current: see [`make_current`](IoLoop::make_current)).
    ///
    /// # Panics
    ///
    /// If the OS refuses a new `mio::Poll` or `mio::Waker` (for example when out of file
    /// descriptors); [`try_new`](IoLoop::try_new) returns that error instead.
    pub fn new() -> IoLoop {
        IoLoop::try_new().unwrap_or_else(|err| {
            panic!("momoko_loop::IoLoop::new: cannot create a mio::Poll and its Waker: {err}")
        })
    }

    /// Creates a loop, or returns the OS error from creating its `mio::Poll` or `mio::Waker`.
    pub fn try_new() -> io::Result<IoLoop> {
        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKER_TOKEN)?;
        #[cfg(unix)]
        let fd = poll.as_raw_fd();
        Ok(IoLoop(Rc::new(Inner {
            id: NEXT_LOOP_ID.fetch_add(1, Ordering::Relaxed),
            poll: RefCell::new(poll),
            events: RefCell::new(mio::Events::with_capacity(EVENTS_CAPACITY)),
            pending_events: RefCell::new(VecDeque::new()),
            handlers: RefCell::new(Arena::new()),
            callbacks: RefCell::new(VecDeque::new()),
            timers: RefCell::new(Timers::new()),
            tasks: RefCell::new(Arena::new()),
            inbox: RefCell::new(Inbox::default()),
            remote: Arc::new(Remote::new(waker)),
            #[cfg(unix)]
            fd,
            active: Cell::new(false),
            running: Cell::new(false),
            stopped: Cell::new(false),
            more_events: Cell::new(false),
            before_poll: RefCell::new(VecDeque::new()),
            skew: Cell::new(Duration::ZERO),
        })))
    }

    /// The thread's current loop: the one running `start()`/`run_sync()` on this thread,
    /// else the one made current with [`make_current`](IoLoop::make_current), else a
    /// per-thread default loop created on first use.
    ///
    /// ```
    /// use momoko_loop::IoLoop;
    ///
    /// let ioloop = IoLoop::new();
    /// let l = ioloop.clone();
    /// let inside = ioloop.run_sync(async move { IoLoop::current().ptr_eq(&l) });
    /// assert!(inside);
    /// assert!(!IoLoop::current().ptr_eq(&ioloop)); // restored afterwards
    /// ```
    pub fn current() -> IoLoop {
        CURRENT
            .try_with(|current| {
                if let Some(ioloop) = current.borrow().as_ref() {
                    return ioloop.clone();
                }
                let ioloop = IoLoop::new();
                let none = current.replace(Some(ioloop.clone()));
                drop(none);
                ioloop
            })
            // The thread is exiting and its locals are gone: a loop nobody will run.
            .unwrap_or_else(|_| IoLoop::new())
    }

    /// Makes this loop the thread's current loop (what [`IoLoop::current`] and
    /// [`Future::new`] use) until another is made current. While a loop runs, the running
    /// one is current, and the one current before it is restored when it stops.
    pub fn make_current(&self) {
        let previous = CURRENT.try_with(|current| current.replace(Some(self.clone())));
        drop(previous);
    }

    /// True if `self` and `other` are handles to the same loop.
    pub fn ptr_eq(&self, other: &IoLoop) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }

    /// A weak reference, for closures stored in the loop itself.
    pub fn downgrade(&self) -> WeakIoLoop {
        WeakIoLoop(Rc::downgrade(&self.0))
    }

    pub(crate) fn downgrade_inner(&self) -> Weak<Inner> {
        Rc::downgrade(&self.0)
    }

    pub(crate) fn from_weak(weak: &Weak<Inner>) -> Option<IoLoop> {
        weak.upgrade().map(IoLoop)
    }

    /// Registers `source` with the loop's poll for `interest` and calls `callback` with the
    /// readiness whenever an event arrives for it.
    ///
    /// mio is edge-triggered: the callback must read (or write) until `WouldBlock`, or it
    /// will not hear again about data already waiting. It must also tolerate spurious
    /// events. The callback may add, update or remove any handler, itself included.
    ///
    /// The loop does not own `source`: keep it alive (typically inside the callback's
    /// captures, e.g. an `Rc<RefCell<TcpStream>>`) and call
    /// [`remove_handler`](IoLoop::remove_handler) before dropping it, or
    /// [`forget_handler`](IoLoop::forget_handler) when it is being closed anyway.
    ///
    /// ```
    /// use momoko_loop::IoLoop;
    /// use mio::{net::TcpListener, Interest};
    ///
    /// let ioloop = IoLoop::new();
    /// let mut listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    /// let id = ioloop
    ///     .add_handler(&mut listener, Interest::READABLE, |ready| {
    ///         // accept() in a loop until WouldBlock
    ///         let _ = ready;
    ///     })
    ///     .unwrap();
    /// ioloop.remove_handler(id, &mut listener);
    /// ```
    pub fn add_handler<S: mio::event::Source + ?Sized>(
        &self,
        source: &mut S,
        interest: mio::Interest,
        callback: impl FnMut(Ready) + 'static,
    ) -> io::Result<HandlerId> {
        let inner = &self.0;
        let key = inner
            .handlers
            .borrow_mut()
            .insert(HandlerSlot::Idle(Box::new(callback)));
        let registered = match handlers::encode(key) {
            Some(token) => inner
                .poll
                .borrow()
                .registry()
                .register(source, token, interest),
            None => Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "momoko-loop: too many handlers for this platform's token width",
            )),
        };
        if let Err(err) = registered {
            let callback = inner.handlers.borrow_mut().remove(key);
            drop(callback);
            return Err(err);
        }
        Ok(HandlerId {
            loop_id: inner.id,
            key,
        })
    }

    /// Changes the interest of a registered handler (for example to add `WRITABLE` while
    /// output is buffered). `source` must be the one given to `add_handler`. Allowed inside
    /// the handler's own callback.
    ///
    /// # Errors
    ///
    /// `NotFound` if `id` is stale (removed) or from another loop; otherwise the OS error.
    pub fn update_handler<S: mio::event::Source + ?Sized>(
        &self,
        id: HandlerId,
        source: &mut S,
        interest: mio::Interest,
    ) -> io::Result<()> {
        let inner = &self.0;
        let live = id.loop_id == inner.id && inner.handlers.borrow().get(id.key).is_some();
        if !live {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "momoko-loop: update_handler on a removed handler (stale HandlerId)",
            ));
        }
        let token = handlers::encode(id.key).expect("live keys always encode");
        inner
            .poll
            .borrow()
            .registry()
            .reregister(source, token, interest)
    }

    /// Deregisters `source` and drops the handler's callback. Does nothing if `id` is stale
    /// or from another loop (in particular, it then leaves `source` registered, as it may
    /// have been re-added under a new id). An event already collected for this handler in
    /// the current iteration is dropped, and a later handler reusing its slot never gets it.
    /// Allowed inside any handler, including this one.
    pub fn remove_handler<S: mio::event::Source + ?Sized>(&self, id: HandlerId, source: &mut S) {
        let inner = &self.0;
        if id.loop_id != inner.id {
            return;
        }
        let removed = inner.handlers.borrow_mut().remove(id.key);
        if removed.is_some() {
            if let Err(err) = inner.poll.borrow().registry().deregister(source) {
                log::debug!("momoko-loop: deregistering a removed handler's source: {err}");
            }
        }
        drop(removed);
    }

    /// Drops the handler's callback without deregistering its source, for when the source
    /// is being closed or dropped anyway (closing an fd removes it from the poll). Stray
    /// events for it are ignored. Does nothing if `id` is stale.
    pub fn forget_handler(&self, id: HandlerId) {
        let inner = &self.0;
        if id.loop_id != inner.id {
            return;
        }
        let removed = inner.handlers.borrow_mut().remove(id.key);
        drop(removed);
    }

    /// Runs `callback` in the next iteration of the loop (never inline). Callbacks added
    /// while callbacks run wait for the following iteration, so IO is not starved. This is
    /// not thread-safe by type; other threads use [`LoopHandle::add_callback`].
    pub fn add_callback(&self, callback: impl FnOnce() + 'static) {
        self.0.push_callback(Box::new(callback));
    }

    /// Runs `callback` in this iteration after its callbacks and timeouts, just before the
    /// loop polls (never inline): for work that should gather everything the iteration's
    /// callbacks asked for, such as one write per connection, without costing a poll of its
    /// own as [`add_callback`](IoLoop::add_callback) would. Added while the loop polls or
    /// dispatches events, it runs in the next iteration, before that one polls. Those it
    /// adds run in the same iteration, for a few rounds; after that the next iteration runs
    /// them, polling without waiting in between.
    pub fn add_before_poll(&self, callback: impl FnOnce() + 'static) {
        self.0
            .before_poll
            .borrow_mut()
            .push_back(BeforePoll::Once(Box::new(callback)));
    }

    /// As [`add_before_poll`](IoLoop::add_before_poll), for a callback its owner keeps and
    /// queues again whenever it needs it (one flush per connection and iteration): queuing
    /// it is a reference count, not an allocation.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use momoko_loop::{Future, IoLoop};
    ///
    /// let ioloop = IoLoop::new();
    /// let done: Future<u32> = Future::with_loop(&ioloop);
    /// let d = done.clone();
    /// let flush: Rc<dyn Fn()> = Rc::new(move || {
    ///     let _ = d.set_result(7);
    /// });
    /// ioloop.add_before_poll_shared(flush.clone());
    /// assert_eq!(ioloop.run_sync(done), 7);
    /// // Run and dropped from the queue: the owner holds the only reference again.
    /// assert_eq!(Rc::strong_count(&flush), 1);
    /// ```
    pub fn add_before_poll_shared(&self, callback: Rc<dyn Fn()>) {
        self.0
            .before_poll
            .borrow_mut()
            .push_back(BeforePoll::Shared(callback));
    }

    /// Runs `callback` once `delay` has passed (from now), in the first iteration after the
    /// deadline. A delay too large for `Instant` means "never".
    pub fn call_later(&self, delay: Duration, callback: impl FnOnce() + 'static) -> TimeoutId {
        let now = self.time();
        let deadline = now
            .checked_add(delay)
            .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
            .unwrap_or(now);
        self.call_at(deadline, callback)
    }

    /// Runs `callback` in the first iteration at or after `deadline` (a deadline in the past
    /// means the next iteration). Timeouts with equal deadlines run in the order added.
    pub fn call_at(&self, deadline: Instant, callback: impl FnOnce() + 'static) -> TimeoutId {
        self.0
            .timers
            .borrow_mut()
            .insert(deadline, Box::new(callback))
    }

    /// Cancels a timeout in O(1) and drops its callback. Harmless after it fired or was
    /// removed, and with an id from another loop. A timeout removed by a callback or
    /// timeout of the same iteration does not run, even if it was already due.
    ///
    /// ```
    /// use momoko_loop::IoLoop;
    /// use std::time::Duration;
    ///
    /// let ioloop = IoLoop::new();
    /// let id = ioloop.call_later(Duration::from_secs(60), || unreachable!());
    /// ioloop.remove_timeout(id);
    /// ioloop.remove_timeout(id); // harmless
    /// ```
    pub fn remove_timeout(&self, id: TimeoutId) {
        let removed = self.0.timers.borrow_mut().cancel(id);
        drop(removed);
    }

    /// The loop's clock: the base for [`call_at`](IoLoop::call_at). The system's monotonic
    /// clock, plus whatever [`advance_time`](IoLoop::advance_time) added.
    pub fn time(&self) -> Instant {
        self.0.now()
    }

    /// Moves this loop's clock forward by `by`, for tests of time-driven behaviour that must
    /// not sleep: timeouts due by the new [`time`](IoLoop::time) run in the next iteration,
    /// and everything that reads the loop's clock (momoko's query timeouts, a pool's
    /// lifetimes, health checks and reconnect spacing) sees the new time. The clock never
    /// goes back; other loops and the system's clock are unaffected.
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// use std::time::Duration;
    /// use momoko_loop::IoLoop;
    ///
    /// let ioloop = IoLoop::new();
    /// let fired = Rc::new(Cell::new(false));
    /// let f = fired.clone();
    /// ioloop.call_later(Duration::from_secs(3600), move || f.set(true));
    /// ioloop.advance_time(Duration::from_secs(3600));
    /// ioloop.turn(Some(Duration::ZERO)).unwrap();
    /// assert!(fired.get());
    /// ```
    pub fn advance_time(&self, by: Duration) {
        let inner = &*self.0;
        inner.skew.set(inner.skew.get().saturating_add(by));
    }

    /// Runs `callback(&future)` on this loop once `future` is done: always in a later
    /// iteration, never inline, also when `future` is already done.
    ///
    /// ```
    /// use momoko_loop::{Future, IoLoop};
    ///
    /// let ioloop = IoLoop::new();
    /// let f = Future::with_loop(&ioloop);
    /// let l = ioloop.clone();
    /// ioloop.add_future(&f, move |f| {
    ///     assert_eq!(f.take(), Some("done"));
    ///     l.stop();
    /// });
    /// f.set_result("done").unwrap();
    /// ioloop.start();
    /// ```
    pub fn add_future<T: 'static>(
        &self,
        future: &Future<T>,
        callback: impl FnOnce(&Future<T>) + 'static,
    ) {
        if Weak::ptr_eq(&future.weak_loop(), &self.downgrade_inner()) {
            future.add_done_callback(callback);
            return;
        }
        // Bound to another loop: hop over to this one.
        let this = self.downgrade_inner();
        future.add_done_callback(move |future| match this.upgrade() {
            Some(inner) => {
                let future = future.clone();
                inner.push_callback(Box::new(move || callback(&future)));
            }
            None => {
                log::warn!("momoko-loop: add_future callback discarded: its IoLoop was dropped")
            }
        });
    }

    /// Runs the loop until [`stop`](IoLoop::stop) is called. While it runs, this loop is
    /// [`current`](IoLoop::current). If `stop()` was called while the loop was not running,
    /// `start()` returns at once (as Tornado).
    ///
    /// # Panics
    ///
    /// If this loop is already running (`start` is not re-entrant), if polling fails (use
    /// [`try_start`](IoLoop::try_start) to get that error), and when user code run by the
    /// loop panics (see the type's docs: the loop stays consistent).
    pub fn start(&self) {
        if let Err(err) = self.try_start() {
            panic!("momoko_loop::IoLoop::start: polling failed: {err}");
        }
    }

    /// [`start`](IoLoop::start), but an error from `mio::Poll::poll` (other than `EINTR`,
    /// which is retried) stops the loop and is returned.
    pub fn try_start(&self) -> io::Result<()> {
        let inner = &*self.0;
        assert!(!inner.active.get(), "{}", ALREADY_RUNNING);
        if inner.remote.take_stop_request() {
            inner.stopped.set(true);
        }
        if inner.stopped.replace(false) {
            return Ok(());
        }
        let _running = RunGuard::enter(self);
        let mut due = Vec::new();
        loop {
            inner.run_ready(&mut due);
            inner.run_before_poll();
            let timeout = inner.poll_timeout();
            if !inner.running.get() {
                break;
            }
            inner.poll_once(timeout, None)?;
            inner.dispatch_events();
        }
        Ok(())
    }

    /// Makes the loop stop after the current iteration. If it is not running, the next
    /// `start()` returns at once instead.
    ///
    /// Inside a [`turn`](IoLoop::turn), it ends that turn early and is then forgotten (see
    /// there); a stop made between turns is kept for the next `start()`, not for a turn.
    pub fn stop(&self) {
        self.0.stop();
    }

    /// True while `start()`, `turn()` or `run_sync` is running this loop and `stop()` has not
    /// been called since.
    pub fn is_running(&self) -> bool {
        self.0.running.get()
    }

    /// Runs one iteration of the loop, for a program that nests it in an event loop of its
    /// own (see [Nesting](IoLoop#nesting-in-another-event-loop)): the steps of one pass of
    /// [`start`](IoLoop::start)'s loop, in the same order. It takes in what other threads
    /// queued, runs the callbacks queued when it began and the timeouts due then, polls, and
    /// dispatches the events.
    ///
    /// The poll waits at most the smaller of `timeout` and what the loop itself needs: not at
    /// all when callbacks are queued, else until its next timeout. `None` leaves only the
    /// loop's own need, which is at most an hour when nothing is scheduled. So
    /// `turn(Some(Duration::ZERO))` never blocks (the callbacks it runs may, of course), and
    /// no turn blocks past its `timeout`.
    ///
    /// While it runs, this loop is [`current`](IoLoop::current) and
    /// [`is_running`](IoLoop::is_running); both are undone when it returns or unwinds.
    ///
    /// # Stopping
    ///
    /// A [`stop`](IoLoop::stop) (or [`LoopHandle::stop`]) that reaches the loop during a turn
    /// ends that turn after its callbacks and timeouts, without polling (the events wait for
    /// the next turn), and is then forgotten: the next `turn()` or `start()` runs normally.
    /// A stop requested while the loop was not running is kept for the next `start()`, as
    /// before: `turn()` neither obeys nor clears it.
    ///
    /// ```
    /// use momoko_loop::IoLoop;
    /// use std::time::Duration;
    ///
    /// let ioloop = IoLoop::new();
    /// let l = ioloop.clone();
    /// ioloop.add_callback(move || l.stop());
    /// ioloop.turn(Some(Duration::ZERO)).unwrap(); // ran the callback, and forgot its stop
    /// let l = ioloop.clone();
    /// ioloop.add_callback(move || l.stop());
    /// ioloop.start(); // runs until that second stop(), as if no turn had happened
    /// ```
    ///
    /// # Errors
    ///
    /// * [`io::ErrorKind::ResourceBusy`] if the loop is already running: `turn` was called
    ///   from code that this loop runs (a callback, handler, timeout or task, under `start`,
    ///   `turn` or `run_sync`). Nothing is run then. (`start` and `run_sync` panic in that
    ///   case, with the same message.)
    /// * The error of `mio::Poll::poll`, other than `EINTR`, which is retried with the time
    ///   left. The loop stays usable.
    ///
    /// # Panics
    ///
    /// When user code run by the turn panics; the loop stays consistent, as with `start`.
    pub fn turn(&self, timeout: Option<Duration>) -> io::Result<()> {
        let inner = &*self.0;
        if inner.active.get() {
            return Err(io::Error::new(io::ErrorKind::ResourceBusy, ALREADY_RUNNING));
        }
        // Declared before RunGuard, so dropped after it: RunGuard clears `stopped`, and this
        // puts back a stop requested before the turn, which is for the next start().
        struct KeepEarlierStop<'a> {
            inner: &'a Inner,
            earlier: bool,
        }
        impl Drop for KeepEarlierStop<'_> {
            fn drop(&mut self) {
                if self.earlier {
                    self.inner.stopped.set(true);
                }
            }
        }
        let earlier = inner.stopped.replace(false) | inner.remote.take_stop_request();
        let _keep = KeepEarlierStop { inner, earlier };
        let _running = RunGuard::enter(self);
        let mut due = Vec::new();
        inner.run_ready(&mut due);
        inner.run_before_poll();
        if !inner.running.get() {
            return Ok(());
        }
        let need = inner.poll_timeout();
        let cap = timeout.and_then(|t| Instant::now().checked_add(t));
        inner.poll_once(timeout.map_or(need, |timeout| timeout.min(need)), cap)?;
        inner.dispatch_events();
        Ok(())
    }

    /// How long the loop can wait before it needs a [`turn`](IoLoop::turn):
    ///
    /// * `Some(Duration::ZERO)` when it has work now: callbacks or task polls queued, a
    ///   timeout due, callbacks or wake-ups queued from other threads, events not yet
    ///   dispatched (or perhaps left in the kernel by a full poll);
    /// * `Some(d)`, the time until its next timeout, otherwise;
    /// * `None` when nothing is scheduled at all: only IO or another thread can give it
    ///   work, and both make its [file descriptor](IoLoop#impl-AsRawFd-for-IoLoop) readable.
    ///
    /// Work given to the loop from its own thread outside a turn (your code calling
    /// `add_callback`, `call_later`, `Future::set_result`, or momoko's methods) does not make
    /// the descriptor readable: ask `next_timeout` again before each wait of your own poll.
    ///
    /// ```
    /// use momoko_loop::IoLoop;
    /// use std::time::Duration;
    ///
    /// let ioloop = IoLoop::new();
    /// assert_eq!(ioloop.next_timeout(), None);
    /// let id = ioloop.call_later(Duration::from_secs(60), || {});
    /// assert!(ioloop.next_timeout().unwrap() > Duration::from_secs(59));
    /// ioloop.add_callback(|| {});
    /// assert_eq!(ioloop.next_timeout(), Some(Duration::ZERO));
    /// ioloop.turn(Some(Duration::ZERO)).unwrap();
    /// ioloop.remove_timeout(id);
    /// assert_eq!(ioloop.next_timeout(), None);
    /// ```
    pub fn next_timeout(&self) -> Option<Duration> {
        let inner = &*self.0;
        if inner.has_ready_work() {
            return Some(Duration::ZERO);
        }
        let deadline = inner.timers.borrow_mut().next_deadline();
        deadline.map(|deadline| deadline.saturating_duration_since(inner.now()))
    }

    /// Runs the loop until `future` completes and returns its output: `block_on`. The
    /// future is polled by `run_sync` itself, after the callbacks and timeouts of the loop's
    /// first iteration and of every iteration after its waker fired; the loop is current
    /// meanwhile. Handy for scripts and tests.
    ///
    /// The future may borrow from the caller's stack (it need not be `'static`; its output
    /// must be): it is dropped before `run_sync` returns, whether it completed, panicked or
    /// was cancelled. Tasks it [`spawn`](IoLoop::spawn)s must still be `'static`, as they may
    /// outlive it.
    ///
    /// ```
    /// use momoko_loop::{sleep, IoLoop};
    /// use std::time::Duration;
    ///
    /// let ioloop = IoLoop::new();
    /// assert_eq!(ioloop.run_sync(async { 6 * 7 }), 42);
    ///
    /// let mut seen = Vec::new(); // borrowed by the future, used again afterwards
    /// let l = ioloop.clone();
    /// ioloop.run_sync(async {
    ///     sleep(&l, Duration::from_millis(1)).await;
    ///     seen.push("slept");
    /// });
    /// assert_eq!(seen, ["slept"]);
    /// ```
    ///
    /// # Panics
    ///
    /// If the loop is already running (called from code this loop runs), if user code
    /// panics, or if something else stops the loop before the future completes (Tornado
    /// raises "Event loop stopped before Future completed" then). A `stop()` issued before
    /// `run_sync` counts, as it makes `start()` return at once.
    pub fn run_sync<F>(&self, future: F) -> F::Output
    where
        F: std::future::Future,
        F::Output: 'static,
    {
        match self.run_until(future, None) {
            Ok(output) => output,
            Err(TimedOut) => unreachable!("run_sync has no timeout"),
        }
    }

    /// [`run_sync`](IoLoop::run_sync) with a limit: if the future is not done within
    /// `timeout`, it is dropped (cancelled) before this returns `Err(TimedOut)`. It may
    /// borrow from the caller's stack, as with `run_sync`.
    ///
    /// ```
    /// use momoko_loop::IoLoop;
    /// use std::time::Duration;
    ///
    /// let ioloop = IoLoop::new();
    /// assert_eq!(ioloop.run_sync_timeout(async { "ok" }, Duration::from_secs(5)), Ok("ok"));
    /// ```
    ///
    /// # Panics
    ///
    /// As [`run_sync`](IoLoop::run_sync).
    pub fn run_sync_timeout<F>(&self, future: F, timeout: Duration) -> Result<F::Output, TimedOut>
    where
        F: std::future::Future,
        F::Output: 'static,
    {
        self.run_until(future, Some(timeout))
    }

    /// `run_sync`'s block_on: the root future lives pinned in this frame, not in the task
    /// table, and is polled here, right after the callbacks and timeouts of each iteration
    /// in which its waker fired (the first iteration counts as woken). So it may borrow from
    /// the caller with no lifetime erased: it is dropped with this frame, whether it
    /// completed, panicked, timed out or the loop was stopped.
    fn run_until<F>(&self, future: F, timeout: Option<Duration>) -> Result<F::Output, TimedOut>
    where
        F: std::future::Future,
    {
        let inner = &*self.0;
        assert!(!inner.active.get(), "{}", ALREADY_RUNNING);
        let mut future = std::pin::pin!(future);
        let root = Arc::new(RootWaker::new(&inner.remote));
        let waker = Waker::from(Arc::clone(&root));
        let timed_out = Rc::new(Cell::new(false));
        let timer = timeout.map(|timeout| {
            let weak = self.downgrade_inner();
            let timed_out = Rc::clone(&timed_out);
            self.call_later(timeout, move || {
                timed_out.set(true);
                if let Some(inner) = weak.upgrade() {
                    inner.stop();
                }
            })
        });
        // However this ends (output, timeout, stop, a panic), the timer must not outlive it.
        struct RemoveTimer<'l> {
            ioloop: &'l IoLoop,
            timer: Option<TimeoutId>,
        }
        impl Drop for RemoveTimer<'_> {
            fn drop(&mut self) {
                if let Some(timer) = self.timer {
                    self.ioloop.remove_timeout(timer);
                }
            }
        }
        let _timer = RemoveTimer {
            ioloop: self,
            timer,
        };
        // A stop requested before counts, as it makes start() return at once.
        if inner.remote.take_stop_request() {
            inner.stopped.set(true);
        }
        if !inner.stopped.replace(false) {
            let _running = RunGuard::enter(self);
            let mut due = Vec::new();
            loop {
                inner.run_ready(&mut due);
                if root.take_woken() {
                    let mut cx = Context::from_waker(&waker);
                    if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                        return Ok(output);
                    }
                }
                inner.run_before_poll();
                // A wake of the root goes through the remote, so the poll does not wait.
                let timeout = inner.poll_timeout();
                if !inner.running.get() {
                    break;
                }
                if let Err(err) = inner.poll_once(timeout, None) {
                    panic!("momoko_loop::IoLoop::run_sync: polling failed: {err}");
                }
                inner.dispatch_events();
            }
        }
        if timed_out.get() {
            return Err(TimedOut);
        }
        panic!("momoko_loop::IoLoop::run_sync: the loop was stopped before the future completed");
    }

    /// Spawns `future` as a task polled on this loop (Tornado's `gen.coroutine`), and
    /// returns a [`Future`] that resolves with its output.
    ///
    /// The task is first polled in the next iteration (never inline), and again whenever
    /// its waker is woken: by a momoko-loop [`Future`] it awaits, or by any std `Waker`
    /// user, from any thread. Waking a finished task does nothing. A task not finished when
    /// the loop is dropped is dropped with it.
    ///
    /// ```
    /// use momoko_loop::{Future, IoLoop};
    ///
    /// let ioloop = IoLoop::new();
    /// let input: Future<i32> = Future::with_loop(&ioloop);
    /// let doubled = ioloop.spawn({
    ///     let input = input.clone();
    ///     async move { input.await * 2 }
    /// });
    /// input.set_result(21).unwrap();
    /// assert_eq!(ioloop.run_sync(doubled), 42);
    /// ```
    pub fn spawn<F>(&self, future: F) -> Future<F::Output>
    where
        F: std::future::Future + 'static,
        F::Output: 'static,
    {
        let result = Future::with_loop(self);
        self.insert_task(Box::pin(resolve_with(future, result.clone())));
        result
    }

    /// Puts `task` in the task table and queues its first poll.
    fn insert_task(&self, task: BoxedTask) -> Key {
        let inner = &self.0;
        let remote = &inner.remote;
        let key = inner.tasks.borrow_mut().insert_with(|key| Task {
            state: TaskState::Idle(task),
            queued: true,
            waker: tasks::make_waker(remote, key),
        });
        inner
            .callbacks
            .borrow_mut()
            .push_back(Callback::PollTask(key));
        key
    }

    /// Drops every handler (without deregistering: close the sources yourself), queued
    /// callback, timeout and task of this loop, which breaks reference cycles through their
    /// captures. Ids handed out before become stale; the loop itself stays usable. Allowed
    /// from inside the loop: the callback running at the time finishes normally.
    ///
    /// ```
    /// use momoko_loop::IoLoop;
    /// use std::time::Duration;
    ///
    /// let ioloop = IoLoop::new();
    /// let l = ioloop.clone(); // a cycle: the loop holds a timeout holding the loop
    /// ioloop.call_later(Duration::from_secs(60), move || l.stop());
    /// ioloop.close(); // cycle broken: dropping `ioloop` now frees the loop
    /// ```
    pub fn close(&self) {
        let inner = &self.0;
        let handlers = inner.handlers.borrow_mut().drain();
        let callbacks = std::mem::take(&mut *inner.callbacks.borrow_mut());
        let timers = inner.timers.borrow_mut().drain();
        let tasks = inner.tasks.borrow_mut().drain();
        inner.pending_events.borrow_mut().clear();
        // Dropped with no borrow held: their Drop impls may call into this loop.
        drop((handlers, callbacks, timers, tasks));
    }

    /// A `Send + Sync` handle for other threads.
    pub fn handle(&self) -> LoopHandle {
        LoopHandle {
            remote: Arc::clone(&self.0.remote),
        }
    }
}

impl Default for IoLoop {
    /// Same as [`IoLoop::new`].
    fn default() -> IoLoop {
        IoLoop::new()
    }
}

/// The descriptor of the loop's `mio::Poll` (an epoll instance on Linux, a kqueue on the
/// BSDs and macOS), for nesting the loop in another (see
/// [Nesting](IoLoop#nesting-in-another-event-loop)).
///
/// It polls readable when the loop has IO events waiting: readiness of a handler's source,
/// or a wake-up from another thread ([`LoopHandle::add_callback`], [`LoopHandle::stop`], a
/// task's std `Waker` woken elsewhere), all of which go through the poll. Register it for
/// reading only, never read from it or close it, and keep the loop alive while it is
/// registered. Readability is an edge, not a count: after it fires, a
/// [`turn`](IoLoop::turn) takes the events, and [`next_timeout`](IoLoop::next_timeout)
/// says whether more work is waiting.
#[cfg(unix)]
impl AsRawFd for IoLoop {
    fn as_raw_fd(&self) -> RawFd {
        self.0.fd
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tcp_pair() -> (mio::net::TcpStream, mio::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.set_nonblocking(true).unwrap();
        server.set_nonblocking(true).unwrap();
        (
            mio::net::TcpStream::from_std(client),
            mio::net::TcpStream::from_std(server),
        )
    }

    #[test]
    fn a_reused_handler_slot_never_receives_a_stale_event() {
        let ioloop = IoLoop::new();
        ioloop.call_later(Duration::from_secs(5), || panic!("watchdog"));
        let (mut c1, s1) = tcp_pair();
        let (mut c2, s2) = tcp_pair();
        let (_c3, s3) = tcp_pair(); // never written to: its handler must never run
        c1.write_all(b"x").unwrap();
        c2.write_all(b"y").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let socks = [Rc::new(RefCell::new(s1)), Rc::new(RefCell::new(s2))];
        let s3 = Rc::new(RefCell::new(s3));
        let ids: Rc<RefCell<Vec<HandlerId>>> = Rc::new(RefCell::new(Vec::new()));
        let first_calls = Rc::new(Cell::new(0));
        let stale_calls = Rc::new(Cell::new(0));
        // (was the victim's event pending in this batch, victim id, reusing id)
        let observed = Rc::new(Cell::new(None::<(bool, HandlerId, HandlerId)>));
        for me in 0..2 {
            let other = 1 - me;
            let l = ioloop.clone();
            let (socks2, ids2, first_calls, stale_calls, s3, observed) = (
                socks.clone(),
                ids.clone(),
                first_calls.clone(),
                stale_calls.clone(),
                s3.clone(),
                observed.clone(),
            );
            let id = ioloop
                .add_handler(
                    &mut *socks[me].borrow_mut(),
                    mio::Interest::READABLE,
                    move |_| {
                        first_calls.set(first_calls.get() + 1);
                        let victim = ids2.borrow()[other];
                        let pending =
                            l.0.pending_events
                                .borrow()
                                .iter()
                                .any(|(token, _)| handlers::decode(*token) == victim.key);
                        l.remove_handler(victim, &mut *socks2[other].borrow_mut());
                        let stale_calls = stale_calls.clone();
                        let reuser = l
                            .add_handler(
                                &mut *s3.borrow_mut(),
                                mio::Interest::READABLE,
                                move |_| stale_calls.set(stale_calls.get() + 1),
                            )
                            .unwrap();
                        observed.set(Some((pending, victim, reuser)));
                        let l2 = l.clone();
                        l.call_later(Duration::from_millis(20), move || l2.stop());
                    },
                )
                .unwrap();
            ids.borrow_mut().push(id);
        }
        ioloop.start();
        let (pending, victim, reuser) = observed.get().expect("a handler ran");
        assert!(
            pending,
            "precondition: the victim's event was in the same batch"
        );
        assert_eq!(
            reuser.key.index, victim.key.index,
            "precondition: the slot was reused"
        );
        assert_ne!(reuser.key.gen, victim.key.gen);
        assert_eq!(first_calls.get(), 1);
        assert_eq!(stale_calls.get(), 0);
    }

    #[test]
    fn a_handler_panic_keeps_the_undispatched_events_of_its_batch() {
        let ioloop = IoLoop::new();
        let (mut c1, s1) = tcp_pair();
        let (mut c2, s2) = tcp_pair();
        c1.write_all(b"x").unwrap();
        c2.write_all(b"y").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let calls = Rc::new(RefCell::new(Vec::new()));
        let mut socks = [s1, s2];
        for (me, sock) in socks.iter_mut().enumerate() {
            let (calls, l) = (calls.clone(), ioloop.clone());
            ioloop
                .add_handler(sock, mio::Interest::READABLE, move |_| {
                    calls.borrow_mut().push(me);
                    if calls.borrow().len() == 1 {
                        panic!("first handler of the batch panics");
                    }
                    l.stop();
                })
                .unwrap();
        }
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ioloop.start()));
        assert!(result.is_err());
        assert_eq!(ioloop.0.pending_events.borrow().len(), 1);
        ioloop.call_later(Duration::from_secs(5), || panic!("watchdog"));
        ioloop.start();
        let mut seen = calls.borrow().clone();
        seen.sort();
        assert_eq!(seen, [0, 1]);
    }

    #[test]
    fn loop_handle_pushes_from_the_loop_thread_need_no_waker_syscall_but_still_run() {
        let ioloop = IoLoop::new();
        ioloop.call_later(Duration::from_secs(5), || panic!("watchdog"));
        let handle = ioloop.handle();
        let ran = Rc::new(Cell::new(false));
        let r = ran.clone();
        // Long poll otherwise: only `pending` makes the timeout zero.
        ioloop.add_callback(move || {
            let h2 = handle.clone();
            handle.add_callback(move || h2.stop());
            r.set(true);
        });
        let started = Instant::now();
        ioloop.start();
        assert!(ran.get());
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
