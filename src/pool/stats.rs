//! `PoolStats` and `PoolCounters`: what an operator reads about a pool. Plain data: the
//! gauges are a snapshot of the container, the counters are cumulative since the pool was
//! built (or since the last `Pool::take_stats`). This module never reaches into the pool's
//! state itself and never decides anything.

use std::time::Duration;

/// Counts of the pool's connections and waiters, the sizes it keeps, and its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Connected and idle.
    pub free: usize,
    /// Handed out, running an operation, being checked or being reset.
    pub busy: usize,
    /// Lost or failed to connect; reconnected in batches spaced by `reconnect_interval`.
    pub dead: usize,
    /// Connecting.
    pub pending: usize,
    /// Requests waiting for a connection.
    pub waiting: usize,
    /// The `size` the pool keeps (changed by `Pool::resize`).
    pub size: usize,
    /// The `max_size` it stretches to.
    pub max_size: usize,
    /// What happened since the pool was built, or since the last `Pool::take_stats`.
    pub counters: PoolCounters,
}

impl PoolStats {
    /// free + busy + dead + pending, as Momoko's `total`.
    pub fn total(&self) -> usize {
        self.free + self.busy + self.dead + self.pending
    }
}

/// Cumulative counters of a pool, for graphs and alerts. Each counts from the pool's build
/// (or from the last [`Pool::take_stats`](crate::Pool::take_stats), which zeroes them).
///
/// Requests are the pool's operations (`execute`, `query`, `transaction`, …, one per call
/// however often it is retried) and `getconn` calls. Connections are counted per connect
/// attempt: a connection reconnected three times was opened three times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolCounters {
    /// Requests that were given a connection (psycopg_pool's `requests_num`).
    pub requests_served: u64,
    /// Requests that found no connection free and queued (`requests_queued`).
    pub requests_waited: u64,
    /// The time queued requests spent in the queue, summed, whatever came of them
    /// (`requests_wait_ms`).
    pub requests_wait_time: Duration,
    /// Requests that waited longer than `acquire_timeout` and failed with
    /// `ErrorKind::Timeout`.
    pub requests_timed_out: u64,
    /// Requests refused at once because `max_waiting` requests were already queued.
    pub requests_refused: u64,
    /// Requests that failed with `DatabaseNotAvailable` because no connection was alive
    /// (at once, or taken out of the queue when the last connect attempt failed).
    pub requests_unavailable: u64,
    /// Connect attempts that succeeded, `on_connect` included (new connections,
    /// reconnects, replacements; not the LISTEN connection).
    pub connections_opened: u64,
    /// Connect attempts that failed: refused, timed out, bad password, a password callback
    /// or `on_connect` that failed, a failing `setsession`.
    pub connections_failed: u64,
    /// Established connections that the server or the network closed under the pool (or
    /// that a caller closed), found by the socket closing, idle or in use.
    pub connections_lost: u64,
    /// Connections closed because they outlived `max_lifetime`.
    pub connections_expired: u64,
    /// Connections closed to shrink the pool: idle above `size` for `shrink_delay`
    /// (`auto_shrink`), or above a smaller `max_size` after `Pool::resize`.
    pub connections_shrunk: u64,
    /// Idle connections that failed the check of `health_check_after` and were replaced
    /// (not also counted as lost).
    pub connections_failed_check: u64,
    /// Connections closed by `Pool::drain`.
    pub connections_drained: u64,
    /// Connections closed because their `reset` failed.
    pub connections_reset_failed: u64,
    /// The time connections spent handed out (from hand-out to return), summed.
    pub usage_time: Duration,
    /// Warnings logged for connections held by `getconn` past `leak_warning`.
    pub leak_warnings: u64,
}
