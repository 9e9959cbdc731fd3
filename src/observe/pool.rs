//! The pool's side of observation: one acquisition followed from request to hand-out (its
//! span, its wait, whether it made the pool open a connection), what the observer is told
//! at acquire and release, and the pool's figures under OpenTelemetry's
//! `db.client.connection.*` names. It decides nothing about the pool.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::spans::{AcquireSpan, Context};
use super::Observer;
use crate::error::Error;
use crate::pool::PoolStats;

/// A pool request got its connection, or failed to (timed out, refused, the pool closed).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PoolAcquire {
    /// The pool's name (`db.client.connection.pool.name`, see
    /// [`PoolBuilder::name`](crate::PoolBuilder::name)).
    pub pool: String,
    /// How long the request waited (`db.client.connection.wait_time`).
    pub wait: Duration,
    /// Whether the request made the pool open a connection (it stretched, or reconnected
    /// a dead one).
    pub created: bool,
    /// Why it got none.
    pub error: Option<Error>,
    /// The pool as it stands after the hand-out.
    pub stats: PoolStats,
}

/// A connection came back to the pool.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PoolRelease {
    /// The pool's name.
    pub pool: String,
    /// How long it was handed out (`db.client.connection.use_time`).
    pub use_time: Duration,
    /// The pool as it stands after the return.
    pub stats: PoolStats,
}

/// One of a pool's figures under its OpenTelemetry name (see [`PoolStats::metrics`]).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct PoolMetric {
    /// `db.client.connection.count`, `db.client.connection.pending_requests`…
    pub name: &'static str,
    /// `db.client.connection.state` (`idle` or `used`) for the connection count.
    pub state: Option<&'static str>,
    /// `{connection}`, `{request}`, `{timeout}`, `s`.
    pub unit: &'static str,
    /// The figure, in `unit`.
    pub value: f64,
}

impl PoolStats {
    /// The pool's figures under OpenTelemetry's names (semantic conventions, database
    /// client metrics), each with the pool's name to be added as
    /// `db.client.connection.pool.name` ([`Pool::name`](crate::Pool::name)):
    /// - `db.client.connection.count` with `db.client.connection.state` `idle` (`free`)
    ///   and `used` (`busy`);
    /// - `db.client.connection.idle.min` (`size`) and `db.client.connection.max`
    ///   (`max_size`);
    /// - `db.client.connection.pending_requests` (`waiting`);
    /// - `db.client.connection.timeouts` (`counters.requests_timed_out`);
    /// - `db.client.connection.wait_time` and `db.client.connection.use_time`, in seconds,
    ///   summed (`counters.requests_wait_time`, `counters.usage_time`: the conventions'
    ///   histograms get one value per acquisition and release from the
    ///   [`Observer`](crate::Observer)).
    pub fn metrics(&self) -> Vec<PoolMetric> {
        let m = |name, state, unit, value: f64| PoolMetric {
            name,
            state,
            unit,
            value,
        };
        vec![
            m(
                "db.client.connection.count",
                Some("idle"),
                "{connection}",
                self.free as f64,
            ),
            m(
                "db.client.connection.count",
                Some("used"),
                "{connection}",
                self.busy as f64,
            ),
            m(
                "db.client.connection.idle.min",
                None,
                "{connection}",
                self.size as f64,
            ),
            m(
                "db.client.connection.max",
                None,
                "{connection}",
                self.max_size as f64,
            ),
            m(
                "db.client.connection.pending_requests",
                None,
                "{request}",
                self.waiting as f64,
            ),
            m(
                "db.client.connection.timeouts",
                None,
                "{timeout}",
                self.counters.requests_timed_out as f64,
            ),
            m(
                "db.client.connection.wait_time",
                None,
                "s",
                self.counters.requests_wait_time.as_secs_f64(),
            ),
            m(
                "db.client.connection.use_time",
                None,
                "s",
                self.counters.usage_time.as_secs_f64(),
            ),
        ]
    }

    /// `db.client.connection.count` for `state` `"idle"` or `"used"` (0 for another).
    pub fn connection_count(&self, state: &str) -> usize {
        match state {
            "idle" => self.free,
            "used" => self.busy,
            _ => 0,
        }
    }
}

/// What a pool is observed with: its name and the observer.
#[derive(Clone, Default)]
pub(crate) struct PoolObserving {
    pub(crate) name: Rc<str>,
    pub(crate) observer: Option<Rc<dyn Observer>>,
}

impl std::fmt::Debug for PoolObserving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolObserving")
            .field("name", &self.name)
            .field("observer", &self.observer.as_ref().map(|_| "<observer>"))
            .finish()
    }
}

/// One acquisition followed, made only when something observes it.
pub(crate) struct AcquireTrack {
    span: Cell<Option<AcquireSpan>>,
    started: Instant,
    /// Set by the pool when this acquisition made it open a connection.
    pub(crate) created: Cell<bool>,
    /// The span current where the operation was called.
    pub(crate) context: Context,
}

impl AcquireTrack {
    /// A track when a span or the observer wants one.
    pub(crate) fn start(observing: &PoolObserving, now: Instant) -> Option<Rc<AcquireTrack>> {
        let span = AcquireSpan::new(&observing.name);
        if span.is_none() && observing.observer.is_none() {
            return None;
        }
        Some(Rc::new(AcquireTrack {
            span: Cell::new(span),
            started: now,
            created: Cell::new(false),
            context: Context::current(),
        }))
    }

    /// The acquisition ended at `now`: the span closes; the wait and whether a connection
    /// was opened for it are returned for the observer.
    pub(crate) fn end(&self, now: Instant, error: Option<&Error>) -> (Duration, bool) {
        let wait = now.saturating_duration_since(self.started);
        if let Some(span) = self.span.take() {
            span.end(wait, self.created.get(), error);
        }
        (wait, self.created.get())
    }
}
