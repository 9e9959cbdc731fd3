//! `PeriodicCallback`: a callback run every `period` on a loop, start to start.
//!
//! It owns the schedule (the next deadline and its timeout) and skips runs it missed,
//! as Tornado does. It must never reschedule from a stale timeout, and never hold a borrow
//! of its callback while the callback runs (the callback may stop or restart its own
//! `PeriodicCallback`).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use crate::ioloop::{Inner, IoLoop, TimeoutId};

/// Where the periodic callback is.
///
/// ```text
///              start()                  deadline reached
///   Stopped ───────────▶ Scheduled(id) ──────────────────▶ Calling
///      ▲                   ▲      │                          │
///      │                   │      │ stop(): timeout removed  │ callback returned:
///      ├───────────────────┼──────┘                          │ schedule the next run
///      │                   └─────────────────────────────────┤
///      └──────────── stop() from inside the callback ────────┘
/// ```
///
/// `start()` from inside the callback after `stop()` goes Stopped → Scheduled directly, and
/// the return from the callback then leaves that schedule alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schedule {
    Stopped,
    Scheduled(TimeoutId),
    Calling,
}

struct Periodic {
    /// Weak: the timeout closure holds this struct strongly, and must not keep the loop
    /// alive through it.
    ioloop: Weak<Inner>,
    period: Duration,
    callback: RefCell<Option<Box<dyn FnMut()>>>,
    state: Cell<Schedule>,
    next: Cell<Instant>,
}

/// Calls a callback every `period` on a loop, measured from the start of one run to the
/// start of the next. If a run (or anything else on the loop) takes longer than `period`,
/// the missed runs are skipped: the next run is at the next multiple of `period` (counted
/// from the first deadline) after now, as Tornado's `PeriodicCallback`.
///
/// The first run is one `period` after [`start`](PeriodicCallback::start). Clones are
/// handles to the same periodic callback; once started it keeps running even if every
/// handle is dropped, until stopped (or its loop is dropped). [`stop`](PeriodicCallback::stop)
/// works from inside the callback itself.
///
/// ```
/// use momoko_loop::{IoLoop, PeriodicCallback};
/// use std::{cell::Cell, rc::Rc, time::Duration};
///
/// let ioloop = IoLoop::new();
/// let count = Rc::new(Cell::new(0));
/// let pc = PeriodicCallback::new(&ioloop, Duration::from_millis(1), {
///     let (count, ioloop) = (count.clone(), ioloop.clone());
///     move || {
///         count.set(count.get() + 1);
///         if count.get() == 3 {
///             ioloop.stop();
///         }
///     }
/// });
/// pc.start();
/// ioloop.start();
/// pc.stop();
/// assert_eq!(count.get(), 3);
/// ```
#[derive(Clone)]
pub struct PeriodicCallback(Rc<Periodic>);

impl fmt::Debug for PeriodicCallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeriodicCallback")
            .field("period", &self.0.period)
            .field("running", &self.is_running())
            .finish()
    }
}

impl PeriodicCallback {
    /// Creates a stopped periodic callback on `ioloop`.
    ///
    /// # Panics
    ///
    /// If `period` is zero (it would run on every iteration and starve IO).
    pub fn new(
        ioloop: &IoLoop,
        period: Duration,
        callback: impl FnMut() + 'static,
    ) -> PeriodicCallback {
        assert!(
            !period.is_zero(),
            "momoko_loop::PeriodicCallback::new: the period must be greater than zero"
        );
        PeriodicCallback(Rc::new(Periodic {
            ioloop: ioloop.downgrade_inner(),
            period,
            callback: RefCell::new(Some(Box::new(callback))),
            state: Cell::new(Schedule::Stopped),
            next: Cell::new(ioloop.time()),
        }))
    }

    /// Starts it: the first run is one period from now. Does nothing if already running.
    pub fn start(&self) {
        if self.0.state.get() != Schedule::Stopped {
            return;
        }
        if let Some(ioloop) = IoLoop::from_weak(&self.0.ioloop) {
            self.0.next.set(ioloop.time());
        }
        schedule_next(&self.0);
    }

    /// Stops it: no further run, also when called from inside the callback. Does nothing if
    /// already stopped.
    pub fn stop(&self) {
        let previous = self.0.state.replace(Schedule::Stopped);
        if let Schedule::Scheduled(id) = previous {
            if let Some(ioloop) = IoLoop::from_weak(&self.0.ioloop) {
                ioloop.remove_timeout(id);
            }
        }
    }

    /// True between `start()` and `stop()`.
    pub fn is_running(&self) -> bool {
        self.0.state.get() != Schedule::Stopped
    }
}

/// The deadline after `next` that is after `now` and a whole number of periods from it.
fn next_deadline(next: Instant, now: Instant, period: Duration) -> Instant {
    if next > now {
        // Not reachable with a monotonic clock unless a run was early; move on anyway so
        // the same deadline is never reused.
        return next + period;
    }
    let behind = now.duration_since(next).as_nanos();
    let periods = behind / period.as_nanos() + 1;
    let advance = period
        .as_nanos()
        .checked_mul(periods)
        .and_then(|n| u64::try_from(n).ok())
        .map_or(Duration::MAX, Duration::from_nanos);
    next.checked_add(advance).unwrap_or(now + period)
}

fn schedule_next(periodic: &Rc<Periodic>) {
    let Some(ioloop) = IoLoop::from_weak(&periodic.ioloop) else {
        periodic.state.set(Schedule::Stopped);
        return;
    };
    let next = next_deadline(periodic.next.get(), ioloop.time(), periodic.period);
    periodic.next.set(next);
    let this = Rc::clone(periodic);
    let id = ioloop.call_at(next, move || fire(&this));
    periodic.state.set(Schedule::Scheduled(id));
}

fn fire(periodic: &Rc<Periodic>) {
    if !matches!(periodic.state.get(), Schedule::Scheduled(_)) {
        return;
    }
    periodic.state.set(Schedule::Calling);
    let callback = periodic.callback.borrow_mut().take();
    let mut guard = FireGuard { periodic, callback };
    if let Some(callback) = guard.callback.as_mut() {
        callback();
    }
}

/// Puts the callback back and schedules the next run, also if the callback panicked (as
/// Tornado's `try/finally`), so one panic does not silently end the schedule.
struct FireGuard<'a> {
    periodic: &'a Rc<Periodic>,
    callback: Option<Box<dyn FnMut()>>,
}

impl Drop for FireGuard<'_> {
    fn drop(&mut self) {
        if let Some(callback) = self.callback.take() {
            if let Ok(mut slot) = self.periodic.callback.try_borrow_mut() {
                *slot = Some(callback);
            }
        }
        if self.periodic.state.get() == Schedule::Calling {
            schedule_next(self.periodic);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missed_runs_are_skipped_to_the_next_multiple() {
        let t0 = Instant::now();
        let p = Duration::from_millis(10);
        // Tornado's test_overrun: a run that lasted 25ms lands on the 30ms boundary.
        assert_eq!(next_deadline(t0, t0, p), t0 + p);
        assert_eq!(
            next_deadline(t0, t0 + Duration::from_millis(25), p),
            t0 + 3 * p
        );
        assert_eq!(
            next_deadline(t0, t0 + Duration::from_millis(30), p),
            t0 + 4 * p
        );
        assert_eq!(next_deadline(t0, t0 + Duration::from_millis(9), p), t0 + p);
        assert_eq!(next_deadline(t0 + p, t0, p), t0 + 2 * p);
    }
}
