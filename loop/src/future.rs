//! `Future<T>`: a one-shot, clonable result slot bound to an `IoLoop`.
//!
//! It owns the value, the done-callbacks and the std `Waker`s of tasks awaiting it. It must
//! never run a done-callback inline: `set_result` and `add_done_callback` only schedule them
//! on the bound loop (Tornado's `add_future` and asyncio semantics), so completing a future
//! never re-enters the code that completed it. Wakers are woken directly, which for this
//! crate's tasks only queues a poll.

use std::cell::RefCell;
use std::fmt;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

use crate::ioloop::{Inner, IoLoop};

type DoneCallback<T> = Box<dyn FnOnce(&Future<T>)>;

/// Where the value is.
///
/// ```text
///   new() ──▶ Pending ──set_result──▶ Done(T) ──take() / .await──▶ Taken
///                                       (done() is true in Done and Taken)
/// ```
pub(crate) enum Value<T> {
    Pending,
    Done(T),
    Taken,
}

struct State<T> {
    value: Value<T>,
    callbacks: Vec<DoneCallback<T>>,
    /// The first task awaiting (the usual one: no allocation for it), then any others.
    waker: Option<Waker>,
    wakers: Vec<Waker>,
    /// Weak so that a future kept in a closure stored in its own loop makes no `Rc` cycle.
    ioloop: Weak<Inner>,
}

/// A one-shot result: set once with [`set_result`](Future::set_result), observed with
/// [`done`](Future::done), [`result`](Future::result) or [`take`](Future::take), with
/// [`add_done_callback`](Future::add_done_callback) /
/// [`IoLoop::add_future`](crate::IoLoop::add_future), or by `.await` inside a task
/// started with [`IoLoop::spawn`](crate::IoLoop::spawn).
///
/// Clones share the same slot. A `Future` is bound to one loop (the current one at
/// creation, or the one given to [`with_loop`](Future::with_loop)), which is where its
/// done-callbacks run: always in a later iteration of that loop, never inline from
/// `set_result` or `add_done_callback`. It holds its loop weakly; done-callbacks scheduled
/// after the loop was dropped are discarded (with a log warning).
///
/// `.await` takes the value out. Several tasks may await the same future (all are woken),
/// but only one gets the value: polling it again after that panics. To share a result, give
/// each consumer its own future, or, for `T: Clone`, use [`result`](Future::result) from a
/// done-callback.
///
/// ```
/// use momoko_loop::{Future, IoLoop};
///
/// let ioloop = IoLoop::new();
/// let fut: Future<u32> = Future::with_loop(&ioloop);
/// let setter = fut.clone();
/// ioloop.call_later(std::time::Duration::from_millis(1), move || {
///     setter.set_result(42).unwrap();
/// });
/// assert_eq!(ioloop.run_sync(fut), 42);
/// ```
pub struct Future<T>(Rc<RefCell<State<T>>>);

impl<T> Clone for Future<T> {
    fn clone(&self) -> Future<T> {
        Future(Rc::clone(&self.0))
    }
}

impl<T> fmt::Debug for Future<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.0.try_borrow() {
            Ok(state) => match state.value {
                Value::Pending => "pending",
                Value::Done(_) => "done",
                Value::Taken => "done (taken)",
            },
            Err(_) => "<borrowed>",
        };
        f.debug_struct("Future").field("state", &state).finish()
    }
}

impl<T: 'static> Default for Future<T> {
    /// Same as [`Future::new`].
    fn default() -> Future<T> {
        Future::new()
    }
}

impl<T: 'static> Future<T> {
    /// A pending future bound to [`IoLoop::current`].
    pub fn new() -> Future<T> {
        Future::with_loop(&IoLoop::current())
    }

    /// A pending future bound to `ioloop`: its done-callbacks run there.
    pub fn with_loop(ioloop: &IoLoop) -> Future<T> {
        Future::from_weak(ioloop.downgrade_inner(), Value::Pending)
    }

    pub(crate) fn from_weak(ioloop: Weak<Inner>, value: Value<T>) -> Future<T> {
        Future(Rc::new(RefCell::new(State {
            value,
            callbacks: Vec::new(),
            waker: None,
            wakers: Vec::new(),
            ioloop,
        })))
    }

    /// An already-done future bound to [`IoLoop::current`].
    ///
    /// ```
    /// let f = momoko_loop::Future::resolved("x");
    /// assert!(f.done());
    /// assert_eq!(f.take(), Some("x"));
    /// ```
    pub fn resolved(value: T) -> Future<T> {
        Future::from_weak(IoLoop::current().downgrade_inner(), Value::Done(value))
    }

    /// Completes the future: wakes every task awaiting it, and schedules every done-callback
    /// on the bound loop (none runs before this returns). A second call is refused and hands
    /// the value back; the first value is never overwritten.
    ///
    /// ```
    /// let f = momoko_loop::Future::new();
    /// assert_eq!(f.set_result(1), Ok(()));
    /// assert_eq!(f.set_result(2), Err(2));
    /// assert_eq!(f.take(), Some(1));
    /// ```
    #[inline]
    pub fn set_result(&self, value: T) -> Result<(), T> {
        let (callbacks, waker, wakers) = {
            let mut state = self.0.borrow_mut();
            if !matches!(state.value, Value::Pending) {
                return Err(value);
            }
            state.value = Value::Done(value);
            (
                std::mem::take(&mut state.callbacks),
                state.waker.take(),
                std::mem::take(&mut state.wakers),
            )
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        for waker in wakers {
            waker.wake();
        }
        if !callbacks.is_empty() {
            // Only now is the loop needed; the borrow above is over (a waker may have read
            // this future), so it is taken again, briefly.
            let ioloop = self.0.borrow().ioloop.clone();
            self.schedule(&ioloop, callbacks);
        }
        Ok(())
    }

    fn schedule(&self, ioloop: &Weak<Inner>, callbacks: Vec<DoneCallback<T>>) {
        match ioloop.upgrade() {
            Some(inner) => {
                for callback in callbacks {
                    let this = self.clone();
                    inner.push_callback(Box::new(move || callback(&this)));
                }
            }
            None => log::warn!(
                "momoko-loop: {} done-callback(s) discarded: the future's IoLoop was dropped",
                callbacks.len()
            ),
        }
    }

    /// Whether this is the only handle left to the future and no done-callback waits for
    /// it: nobody else can ever read its value. A producer can use it to notice an abandoned
    /// request (a dropped waiter) and give back what it would have handed over.
    ///
    /// A done-callback counts as a reader, although it holds no handle until it runs: the
    /// Tornado style `ioloop.add_future(&pool.execute(..), callback)` drops every handle at
    /// once and still wants the result.
    ///
    /// ```
    /// use momoko_loop::{Future, IoLoop};
    ///
    /// let ioloop = IoLoop::new();
    /// let producer: Future<u8> = Future::with_loop(&ioloop);
    /// let consumer = producer.clone();
    /// assert!(!producer.is_sole_handle());
    /// ioloop.add_future(&consumer, |f| assert_eq!(f.take(), Some(1)));
    /// drop(consumer);
    /// assert!(!producer.is_sole_handle(), "the done-callback will read it");
    /// ```
    pub fn is_sole_handle(&self) -> bool {
        Rc::strong_count(&self.0) == 1
            && self
                .0
                .try_borrow()
                .is_ok_and(|state| state.callbacks.is_empty())
    }

    /// True once [`set_result`](Future::set_result) has run, and still after the value was
    /// taken.
    pub fn done(&self) -> bool {
        !matches!(self.0.borrow().value, Value::Pending)
    }

    /// Moves the value out: `None` while pending, and `None` again once taken (by `take` or
    /// by `.await`).
    pub fn take(&self) -> Option<T> {
        let mut state = self.0.borrow_mut();
        match std::mem::replace(&mut state.value, Value::Taken) {
            Value::Done(value) => Some(value),
            other => {
                state.value = other;
                None
            }
        }
    }

    /// Runs `callback(&future)` once the future is done, always from the bound loop's
    /// callback queue in a later iteration, also when the future is already done. Callbacks
    /// run in the order added.
    ///
    /// ```
    /// use momoko_loop::{Future, IoLoop};
    /// use std::{cell::Cell, rc::Rc};
    ///
    /// let ioloop = IoLoop::new();
    /// let f = Future::with_loop(&ioloop);
    /// f.set_result(5).unwrap();
    /// let seen = Rc::new(Cell::new(0));
    /// let s = seen.clone();
    /// let stopper = ioloop.clone();
    /// f.add_done_callback(move |f| { s.set(f.result().unwrap()); stopper.stop(); });
    /// assert_eq!(seen.get(), 0); // not inline
    /// ioloop.start();
    /// assert_eq!(seen.get(), 5);
    /// ```
    pub fn add_done_callback(&self, callback: impl FnOnce(&Future<T>) + 'static) {
        let ioloop = {
            let mut state = self.0.borrow_mut();
            if matches!(state.value, Value::Pending) {
                state.callbacks.push(Box::new(callback));
                return;
            }
            state.ioloop.clone()
        };
        self.schedule(&ioloop, vec![Box::new(callback)]);
    }

    /// The loop this future is bound to.
    ///
    /// # Panics
    ///
    /// If that loop has been dropped (every `IoLoop` clone of it is gone).
    pub fn ioloop(&self) -> IoLoop {
        let weak = self.0.borrow().ioloop.clone();
        IoLoop::from_weak(&weak)
            .expect("momoko_loop::Future::ioloop: the IoLoop this future is bound to was dropped")
    }

    pub(crate) fn weak_loop(&self) -> Weak<Inner> {
        self.0.borrow().ioloop.clone()
    }
}

impl<T: Clone + 'static> Future<T> {
    /// A clone of the value: `None` while pending or once the value was taken.
    ///
    /// ```
    /// let f = momoko_loop::Future::resolved(String::from("row"));
    /// assert_eq!(f.result().as_deref(), Some("row"));
    /// assert_eq!(f.result().as_deref(), Some("row"));
    /// ```
    pub fn result(&self) -> Option<T> {
        match &self.0.borrow().value {
            Value::Done(value) => Some(value.clone()),
            _ => None,
        }
    }
}

impl<T: 'static> std::future::Future for Future<T> {
    type Output = T;

    /// Ready takes the value. While pending, registers the task's waker (each distinct
    /// waker once), so several awaiters are all woken by `set_result`.
    ///
    /// # Panics
    ///
    /// If polled after the value was taken (by `take` or by another awaiter).
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut state = self.0.borrow_mut();
        // Pending is told apart before the value is moved: a result is not copied out and
        // back on every poll that finds none.
        let value = if matches!(state.value, Value::Pending) {
            Value::Pending
        } else {
            std::mem::replace(&mut state.value, Value::Taken)
        };
        match value {
            Value::Done(value) => Poll::Ready(value),
            Value::Pending => {
                let known = state.waker.iter().chain(&state.wakers);
                if !known.into_iter().any(|w| w.will_wake(cx.waker())) {
                    if state.waker.is_none() {
                        state.waker = Some(cx.waker().clone());
                    } else {
                        state.wakers.push(cx.waker().clone());
                    }
                }
                Poll::Pending
            }
            Value::Taken => {
                drop(state);
                panic!(
                    "momoko_loop::Future polled after its value was taken \
                     (by take() or by another awaiter); a Future yields its value once"
                )
            }
        }
    }
}
