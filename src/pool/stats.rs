//! `PoolStats`: what an operator reads about a pool. Plain data; it never reaches into the
//! pool's state itself.

/// Counts of the pool's connections and waiters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Connected and idle.
    pub free: usize,
    /// Handed out or running an operation.
    pub busy: usize,
    /// Lost or failed to connect; reconnected in batches spaced by `reconnect_interval`.
    pub dead: usize,
    /// Connecting.
    pub pending: usize,
    /// Requests waiting for a connection.
    pub waiting: usize,
}

impl PoolStats {
    /// free + busy + dead + pending, as Momoko's `total`.
    pub fn total(&self) -> usize {
        self.free + self.busy + self.dead + self.pending
    }
}
