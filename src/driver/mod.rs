//! What the two drivers of a session share: the delivery of the session's actions, the
//! cancel exchange with its retry policy, and the accessors of the public handles.
//!
//! A driver (the IoLoop's [`Connection`](crate::Connection), the embedding
//! [`MioConnection`](crate::MioConnection)) owns only how it is woken: its socket
//! registration, its timers, when it writes and how a CancelRequest travels. Everything that
//! decides what a caller sees, and in which order, is here, once: callbacks run only from
//! [`Core::deliver`], with no borrow of the session held, in the order the session produced
//! them. Nothing here reads a socket or owns a timer.

pub(crate) mod cancel;
mod getters;
pub(crate) mod ops;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use crate::error::Error;
use crate::session::ops::Done;
use crate::session::{Action, Core, Drive};
pub(crate) use cancel::CancelTarget;
pub(crate) use getters::session_getters;

/// What a driver adds to the shared core: the hooks its delivery calls.
pub(crate) trait Driver: Drive {
    /// Set while a delivery is under way (see [`Core::deliver`]).
    fn delivering(&self) -> &Cell<bool>;
    /// Runs before each round of delivery: brings the driver's registration in line with
    /// the session (and, for a driver that writes from its delivery, writes).
    fn turn(core: &Rc<Core<Self>>);
    /// Whether [`Driver::turn`] runs before every round of a delivery, or only before the
    /// first. A driver whose `Drive::wake` already brings its registration in line after
    /// every change a callback makes (the IoLoop's) needs it only once.
    const TURN_EVERY_ROUND: bool = true;
    /// The connect attempt finished: the driver answers whoever waits for it.
    fn connected(core: &Rc<Core<Self>>, result: Result<(), Error>);
    /// The established connection was lost or closed.
    fn closed(core: &Rc<Core<Self>>, e: &Error) {
        let _ = (core, e);
    }
    /// Sends one CancelRequest to `target` now; `done` gets the server's taking it, from the
    /// driver's delivery or its loop, never inside this call.
    fn send_cancel(core: &Rc<Core<Self>>, target: &CancelTarget, done: Done<()>);
    /// Runs `f` after `delay`, from the driver's own turn (library code only).
    fn call_later(core: &Rc<Core<Self>>, delay: Duration, f: Box<dyn FnOnce()>);
    /// Reads again from the driver's next turn, as a readable event would (see
    /// `Session::read_pending`), then delivers.
    fn read_again(core: &Rc<Core<Self>>);
    /// The last user handle is gone (see [`UserToken`]).
    fn abandoned(core: &Rc<Core<Self>>);
}

/// Shared by every user handle of one connection and dropped with the last: the driver
/// then closes the connection as its promise says (at once, or once idle).
pub(crate) struct UserToken<D: Driver>(pub(crate) Rc<Core<D>>);

impl<D: Driver> Drop for UserToken<D> {
    fn drop(&mut self) {
        D::abandoned(&self.0);
    }
}

/// Clears the delivery flag however the delivery ends (a callback may panic).
struct Delivering<'a>(&'a Cell<bool>);

impl Drop for Delivering<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl<D: Driver> Core<D> {
    /// Runs the session's actions with no borrow held, in the order the session produced
    /// them, round after round until none is left, and returns how many ran. Called again
    /// from inside a callback it returns `None` at once: the delivery under way picks up
    /// what that callback queued, after what came before it, which keeps completions in
    /// request order whatever callbacks do.
    pub(crate) fn deliver(self: &Rc<Self>) -> Option<usize> {
        if self.driver.delivering().replace(true) {
            return None;
        }
        let _guard = Delivering(self.driver.delivering());
        let mut ran = 0;
        loop {
            if ran == 0 || D::TURN_EVERY_ROUND {
                D::turn(self);
            }
            let (mut actions, read_pending) = self.with_mut(|s| {
                if s.has_actions() {
                    (s.take_actions(), false)
                } else {
                    (Vec::new(), s.read_pending())
                }
            });
            if actions.is_empty() {
                // A streamed query's read stopped at its budget: its rows are delivered,
                // the next part waits for the driver's next turn (no readiness event will
                // announce it), so that the rest of the program runs in between.
                if read_pending {
                    D::read_again(self);
                }
                return Some(ran);
            }
            ran += actions.len();
            for action in actions.drain(..) {
                self.run(action);
            }
            self.with_mut(|s| s.recycle_actions(actions));
        }
    }

    /// Runs one action. The completion, the most common, is matched first, so that it is
    /// not moved into `Action::deliver` and back out; the callbacks every driver runs the
    /// same way go to `Action::deliver`, which hands none of them back.
    #[inline]
    fn run(self: &Rc<Self>, action: Action) {
        match action {
            Action::Complete(waiter, result) => waiter.answer(result),
            Action::Answer(answer) => answer(),
            shared @ (Action::Notify(..)
            | Action::Notice(..)
            | Action::CopyData(..)
            | Action::Rows(..)
            | Action::Release(_)) => {
                let _ = shared.deliver();
            }
            Action::Connected(result) => D::connected(self, result),
            Action::Closed(e) => {
                log::debug!("connection closed: {e}");
                D::closed(self, &e);
            }
            Action::Cancel => self.cancel(Done::new(|r| {
                if let Err(e) = r {
                    log::warn!("cancelling a timed-out query failed: {e}");
                }
            })),
        }
    }
}
