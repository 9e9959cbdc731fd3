//! `PoolBuilder`: every option of a pool, checked once at `build()`, and the `Config` the
//! pool runs with. It owns no state of a running pool and never opens a connection.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use momoko_loop::{IoLoop, PeriodicCallback};

use super::{Inner, Pool, State};
use crate::error::Error;

/// When a pool-level operation that failed on a lost connection is run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RetryPolicy {
    /// Once, and only when the first attempt provably did not take effect: the connection was
    /// dead before the request was sent, the request was never written, or the server
    /// answered with a FATAL error before completing it. When the outcome is unknown the
    /// caller gets the error, marked [`Error::outcome_unknown`].
    #[default]
    Safe,
    /// Momoko's rule: once, whenever the connection proved dead after the failure. A
    /// transaction whose COMMIT was executed just before the connection died is then applied
    /// twice.
    Momoko,
    /// Never.
    Never,
}

/// Builds a [`Pool`]; see each option.
#[derive(Debug, Clone)]
pub struct PoolBuilder {
    dsn: String,
    size: usize,
    max_size: Option<usize>,
    ioloop: Option<IoLoop>,
    raise_connect_errors: bool,
    reconnect_interval: Duration,
    setsession: Vec<String>,
    auto_shrink: bool,
    shrink_delay: Duration,
    shrink_period: Duration,
    retry: RetryPolicy,
    acquire_timeout: Option<Duration>,
    max_waiting: Option<usize>,
    connect_timeout: Option<Duration>,
    query_timeout: Option<Duration>,
    statement_cache_size: Option<usize>,
    pipeline_depth: usize,
}

impl PoolBuilder {
    /// The defaults, Momoko's where it has one.
    pub(super) fn new(dsn: &str) -> PoolBuilder {
        PoolBuilder {
            dsn: dsn.to_owned(),
            size: 1,
            max_size: None,
            ioloop: None,
            raise_connect_errors: true,
            reconnect_interval: Duration::from_millis(500),
            setsession: Vec::new(),
            auto_shrink: false,
            shrink_delay: Duration::from_secs(120),
            shrink_period: Duration::from_secs(120),
            retry: RetryPolicy::Safe,
            acquire_timeout: None,
            max_waiting: None,
            connect_timeout: None,
            query_timeout: None,
            statement_cache_size: None,
            pipeline_depth: 1,
        }
    }

    /// Connections opened by `connect()` and kept at least (default 1; must be above 0).
    pub fn size(mut self, size: usize) -> Self {
        self.size = size;
        self
    }
    /// The most connections the pool stretches to (default: `size`; 0 means `size`).
    pub fn max_size(mut self, max_size: usize) -> Self {
        self.max_size = Some(max_size);
        self
    }
    /// The loop that drives the pool (default: [`IoLoop::current`]).
    pub fn ioloop(mut self, ioloop: &IoLoop) -> Self {
        self.ioloop = Some(ioloop.clone());
        self
    }
    /// Whether `connect()` fails with `PartiallyConnected` when any connection failed
    /// (default true, as in Momoko).
    pub fn raise_connect_errors(mut self, raise: bool) -> Self {
        self.raise_connect_errors = raise;
        self
    }
    /// The least time between two reconnect batches after a failed one (default 500 ms).
    pub fn reconnect_interval(mut self, interval: Duration) -> Self {
        self.reconnect_interval = interval;
        self
    }
    /// Statements run on every connection after each connect.
    pub fn setsession<I, S>(mut self, statements: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.setsession = statements.into_iter().map(Into::into).collect();
        self
    }
    /// Close idle connections above `size` (default false).
    pub fn auto_shrink(mut self, on: bool) -> Self {
        self.auto_shrink = on;
        self
    }
    /// How long a connection must be idle before shrinking closes it (default 2 minutes).
    pub fn shrink_delay(mut self, delay: Duration) -> Self {
        self.shrink_delay = delay;
        self
    }
    /// How often shrinking runs (default 2 minutes).
    pub fn shrink_period(mut self, period: Duration) -> Self {
        self.shrink_period = period;
        self
    }
    /// When failed operations are run again (default [`RetryPolicy::Safe`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }
    /// A request waiting longer than this for a connection fails with `ErrorKind::Timeout`.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = Some(timeout);
        self
    }
    /// At most this many requests wait; beyond it a request fails at once (`ErrorKind::Pool`)
    /// and nothing is queued.
    pub fn max_waiting(mut self, max: usize) -> Self {
        self.max_waiting = Some(max);
        self
    }
    /// Gives up each connect attempt after this long.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }
    /// When no connection is free, up to this many pool operations may share one busy
    /// connection, pipelined on it (default 1: off, as in Momoko). Only operations that
    /// are whole on their own share: `execute`, `query`, `callproc`, `batch`, `mogrify`,
    /// `ping` and `transaction` with auto-rollback (its BEGIN…COMMIT goes out in one
    /// piece). What it changes: an operation may wait behind a slow one on the same
    /// connection instead of in the pool's queue, and a lost connection fails every
    /// operation sharing it.
    pub fn pipeline_depth(mut self, depth: usize) -> Self {
        self.pipeline_depth = depth.max(1);
        self
    }
    /// A query not answered within this long fails with `ErrorKind::Timeout` and is
    /// cancelled on the server (see [`crate::ConnectionBuilder::query_timeout`]).
    pub fn query_timeout(mut self, timeout: Duration) -> Self {
        self.query_timeout = Some(timeout);
        self
    }

    /// Statements `query` keeps prepared per connection (see
    /// [`crate::ConnectionBuilder::statement_cache_size`]); `0` for PgBouncer's transaction
    /// pooling.
    pub fn statement_cache_size(mut self, n: usize) -> Self {
        self.statement_cache_size = Some(n);
        self
    }

    /// The pool, not yet connected. A size of 0 or a `max_size` below `size` is a Usage error.
    pub fn build(self) -> Result<Pool, Error> {
        if self.size == 0 {
            return Err(Error::usage(
                "the connection pool size must be a number above 0",
            ));
        }
        let max_size = match self.max_size {
            None | Some(0) => self.size,
            Some(m) => m,
        };
        if max_size < self.size {
            return Err(Error::usage(
                "the connection pool max size must be of at least 'size'",
            ));
        }
        let ioloop = self.ioloop.clone().unwrap_or_else(IoLoop::current);
        let inner = Rc::new(Inner {
            ioloop,
            config: Config {
                max_size,
                ..self.into_config()
            },
            state: RefCell::new(State::default()),
        });
        if inner.config.auto_shrink {
            let weak = Rc::downgrade(&inner);
            let pc = PeriodicCallback::new(&inner.ioloop, inner.config.shrink_period, move || {
                if let Some(inner) = weak.upgrade() {
                    Inner::shrink(&inner);
                }
            });
            pc.start();
            inner.state.borrow_mut().shrinker = Some(pc);
        }
        Ok(Pool(inner))
    }

    fn into_config(self) -> Config {
        Config {
            dsn: RefCell::new(self.dsn),
            size: self.size,
            max_size: 0,
            raise_connect_errors: self.raise_connect_errors,
            reconnect_interval: self.reconnect_interval,
            setsession: self.setsession,
            auto_shrink: self.auto_shrink,
            shrink_delay: self.shrink_delay,
            shrink_period: self.shrink_period,
            retry: self.retry,
            acquire_timeout: self.acquire_timeout,
            max_waiting: self.max_waiting,
            connect_timeout: self.connect_timeout,
            query_timeout: self.query_timeout,
            statement_cache_size: self.statement_cache_size,
            pipeline_depth: self.pipeline_depth,
        }
    }
}

#[derive(Debug)]
pub(super) struct Config {
    pub(super) dsn: RefCell<String>,
    pub(super) size: usize,
    pub(super) max_size: usize,
    pub(super) raise_connect_errors: bool,
    pub(super) reconnect_interval: Duration,
    pub(super) setsession: Vec<String>,
    pub(super) auto_shrink: bool,
    pub(super) shrink_delay: Duration,
    pub(super) shrink_period: Duration,
    pub(super) retry: RetryPolicy,
    pub(super) acquire_timeout: Option<Duration>,
    pub(super) max_waiting: Option<usize>,
    pub(super) connect_timeout: Option<Duration>,
    pub(super) query_timeout: Option<Duration>,
    pub(super) statement_cache_size: Option<usize>,
    pub(super) pipeline_depth: usize,
}
