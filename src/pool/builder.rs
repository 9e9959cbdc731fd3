//! `PoolBuilder`: every option of a pool, checked once at `build()`, and the `PoolConfig`
//! the pool runs with: the `Template` every pooled connection is built from (the LISTEN one
//! included) and the pool's own `Settings`. It owns no state of a running pool and never
//! connects anything.

use std::cell::{Cell, RefCell};
use std::future::Future as StdFuture;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use momoko_loop::{IoLoop, PeriodicCallback};

use super::{Inner, Pool, PoolState};
use crate::connection::Connection;
use crate::conninfo::Dsn;
use crate::error::Error;

/// A boxed future a hook returns, run on the pool's loop.
pub(super) type HookFuture<T> = Pin<Box<dyn StdFuture<Output = Result<T, Error>>>>;

/// A user hook run on a connection (`on_connect`, a custom `Reset`).
#[derive(Clone)]
pub(super) struct ConnHook(pub(super) Rc<dyn Fn(Connection) -> HookFuture<()>>);

impl ConnHook {
    fn new<F, Fut>(hook: F) -> ConnHook
    where
        F: Fn(Connection) -> Fut + 'static,
        Fut: StdFuture<Output = Result<(), Error>> + 'static,
    {
        ConnHook(Rc::new(move |c| Box::pin(hook(c))))
    }
}

impl std::fmt::Debug for ConnHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hook>")
    }
}

/// The password callback.
#[derive(Clone)]
pub(super) struct PasswordHook(pub(super) Rc<dyn Fn() -> HookFuture<String>>);

impl std::fmt::Debug for PasswordHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<password callback>")
    }
}

/// What runs on a connection when it comes back to the pool, before anyone else gets it
/// (see [`PoolBuilder::reset`]). A reset that fails closes the connection; a new one
/// replaces it.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum Reset {
    /// `ROLLBACK` when a transaction is open or answers are still due; nothing otherwise.
    /// The default, and what momoko always did: session state (`SET`, temporary tables,
    /// `LISTEN`, advisory locks) stays for the next user.
    #[default]
    Rollback,
    /// `ROLLBACK` when needed, then `DISCARD ALL` on every return: the next user gets a
    /// fresh session. Prepared statements go too; momoko prepares its cached ones again on
    /// next use. One more round trip per return.
    Discard,
    /// The pooler-safe subset of `DISCARD ALL` that keeps prepared statements (deadpool's
    /// `Clean`): `CLOSE ALL; RESET ALL; UNLISTEN *; SELECT pg_advisory_unlock_all();
    /// DISCARD TEMP; DISCARD SEQUENCES`, after a `ROLLBACK` when needed.
    Clean,
    /// Your own: see [`Reset::custom`].
    Custom(#[doc(hidden)] CustomReset),
}

/// A reset hook of the caller's (opaque; made by [`Reset::custom`]).
#[derive(Clone, Debug)]
pub struct CustomReset(pub(super) ConnHook);

impl Reset {
    /// Runs `hook` on every connection that comes back, after momoko's own `ROLLBACK` when a
    /// transaction was left open; the connection is idle again once the hook's future
    /// resolves, and closed (then replaced) if it fails.
    pub fn custom<F, Fut>(hook: F) -> Reset
    where
        F: Fn(Connection) -> Fut + 'static,
        Fut: StdFuture<Output = Result<(), Error>> + 'static,
    {
        Reset::Custom(CustomReset(ConnHook::new(hook)))
    }
}

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

/// Builds a [`Pool`]; see each option. Its Debug never shows the password.
#[derive(Debug, Clone)]
pub struct PoolBuilder {
    dsn: Dsn,
    size: usize,
    max_size: Option<usize>,
    ioloop: Option<IoLoop>,
    template: Template,
    settings: Settings,
}

/// What every pooled connection is built with, the LISTEN connection included: the
/// connection options the pool passes on, beside the connection string (which `set_dsn`
/// changes, so it is kept apart).
#[derive(Debug, Clone, Default)]
pub(super) struct Template {
    setsession: Vec<String>,
    connect_timeout: Option<Duration>,
    query_timeout: Option<Duration>,
    statement_cache_size: Option<usize>,
    /// Set by `build` from the retry policy: safe retry needs to know that a request was
    /// never written (see `ConnectionBuilder::poll_before_write`).
    poll_before_write: bool,
    /// One TLS client configuration for every connection of the pool (see `build`).
    tls: crate::session::transport::TlsCache,
    /// The observer and the statement log settings, for every connection.
    observe: crate::observe::ObserveOptions,
}

impl Template {
    pub(super) fn connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout
    }

    /// A connection on `dsn` with these options, not yet connected.
    pub(super) fn build(&self, dsn: Dsn, ioloop: &IoLoop) -> Connection {
        let mut b = crate::ConnectionBuilder::with_dsn(dsn)
            .ioloop(ioloop)
            .setsession(self.setsession.iter().cloned())
            .poll_before_write(self.poll_before_write)
            .tls_cache(self.tls.clone())
            .shared_observer(self.observe.observer.clone())
            .log_overrides(self.observe.log);
        if let Some(t) = self.connect_timeout {
            b = b.connect_timeout(t);
        }
        if let Some(t) = self.query_timeout {
            b = b.query_timeout(t);
        }
        if let Some(n) = self.statement_cache_size {
            b = b.statement_cache_size(n);
        }
        b.build()
    }
}

/// The pool's own settings (everything but the sizes, which `resize` changes).
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) raise_connect_errors: bool,
    pub(super) reconnect_interval: Duration,
    pub(super) auto_shrink: bool,
    pub(super) shrink_delay: Duration,
    pub(super) shrink_period: Duration,
    pub(super) retry: RetryPolicy,
    pub(super) acquire_timeout: Option<Duration>,
    pub(super) max_waiting: Option<usize>,
    pub(super) pipeline_depth: usize,
    pub(super) max_lifetime: Option<Duration>,
    pub(super) health_check_after: Option<Duration>,
    pub(super) on_connect: Option<ConnHook>,
    pub(super) reset: Reset,
    pub(super) password: Option<PasswordHook>,
    pub(super) wait_for_reconnect: bool,
    pub(super) leak_warning: Option<Duration>,
    /// The pool's name and observer (the name is set by `build` when none was given).
    pub(super) observing: crate::observe::PoolObserving,
}

impl Default for Settings {
    /// The defaults, Momoko's where it has one.
    fn default() -> Self {
        Settings {
            raise_connect_errors: true,
            reconnect_interval: Duration::from_millis(500),
            auto_shrink: false,
            shrink_delay: Duration::from_secs(120),
            shrink_period: Duration::from_secs(120),
            retry: RetryPolicy::Safe,
            acquire_timeout: None,
            max_waiting: None,
            pipeline_depth: 1,
            max_lifetime: None,
            health_check_after: Some(Duration::from_secs(1)),
            on_connect: None,
            reset: Reset::Rollback,
            password: None,
            wait_for_reconnect: false,
            leak_warning: None,
            observing: Default::default(),
        }
    }
}

impl PoolBuilder {
    /// A builder for a pool configured in code instead of by a connection string
    /// (`Config::new().host("db").user("app")…`).
    pub fn from_config(config: crate::Config) -> PoolBuilder {
        PoolBuilder::with_dsn(Dsn::Config(Box::new(config)))
    }

    pub(super) fn new(dsn: &str) -> PoolBuilder {
        PoolBuilder::with_dsn(Dsn::Text(dsn.to_owned()))
    }

    fn with_dsn(dsn: Dsn) -> PoolBuilder {
        PoolBuilder {
            dsn,
            size: 1,
            max_size: None,
            ioloop: None,
            template: Template::default(),
            settings: Settings::default(),
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
    /// Whether `connect()` fails when any connection failed (default true, as in Momoko):
    /// with `PartiallyConnected` when some opened, `DatabaseNotAvailable` when none did,
    /// either way with the first failure as the cause (see [`Pool::connect`]).
    pub fn raise_connect_errors(mut self, raise: bool) -> Self {
        self.settings.raise_connect_errors = raise;
        self
    }
    /// The least time between two reconnect batches after a failed one (default 500 ms).
    pub fn reconnect_interval(mut self, interval: Duration) -> Self {
        self.settings.reconnect_interval = interval;
        self
    }
    /// Statements run on every connection after each connect.
    pub fn setsession<I, S>(mut self, statements: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.template.setsession = statements.into_iter().map(Into::into).collect();
        self
    }
    /// Close idle connections above `size` (default false).
    pub fn auto_shrink(mut self, on: bool) -> Self {
        self.settings.auto_shrink = on;
        self
    }
    /// How long a connection must be idle before shrinking closes it (default 2 minutes).
    pub fn shrink_delay(mut self, delay: Duration) -> Self {
        self.settings.shrink_delay = delay;
        self
    }
    /// How often shrinking runs (default 2 minutes).
    pub fn shrink_period(mut self, period: Duration) -> Self {
        self.settings.shrink_period = period;
        self
    }
    /// When failed operations are run again (default [`RetryPolicy::Safe`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.settings.retry = policy;
        self
    }
    /// A request waiting longer than this for a connection fails with `ErrorKind::Timeout`.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.settings.acquire_timeout = Some(timeout);
        self
    }
    /// At most this many requests wait; beyond it a request fails at once (`ErrorKind::Pool`)
    /// and nothing is queued.
    pub fn max_waiting(mut self, max: usize) -> Self {
        self.settings.max_waiting = Some(max);
        self
    }
    /// Gives up each connect attempt after this long.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.template.connect_timeout = Some(timeout);
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
        self.settings.pipeline_depth = depth.max(1);
        self
    }
    /// A query not answered within this long fails with `ErrorKind::Timeout` and is
    /// cancelled on the server (see [`crate::ConnectionBuilder::query_timeout`]).
    pub fn query_timeout(mut self, timeout: Duration) -> Self {
        self.template.query_timeout = Some(timeout);
        self
    }

    /// Statements `query` keeps prepared per connection (see
    /// [`crate::ConnectionBuilder::statement_cache_size`]); `0` for PgBouncer's transaction
    /// pooling.
    pub fn statement_cache_size(mut self, n: usize) -> Self {
        self.template.statement_cache_size = Some(n);
        self
    }
    /// A connection whose server session is older than this is closed when it is next idle
    /// and replaced by a new one (never while it is in use), so that connections move to a
    /// new server after a failover and rebalance behind a load balancer. Each connection's
    /// limit is shortened by a random jitter of up to 10 % so that they do not all expire
    /// together. Default: none (connections live as long as the server keeps them).
    pub fn max_lifetime(mut self, lifetime: Duration) -> Self {
        self.settings.max_lifetime = Some(lifetime);
        self
    }
    /// A connection that sat idle longer than this is checked with an empty query (one
    /// round trip) before it is handed out; if it proves dead (a half-open TCP connection, a
    /// backend terminated while the loop was busy), it is replaced and the request goes to
    /// another connection instead of failing. Default: 1 s, as pgxpool; `None` turns the
    /// check off (Momoko's behaviour: a dead idle connection is found by the retry).
    pub fn health_check_after(mut self, idle: impl Into<Option<Duration>>) -> Self {
        self.settings.health_check_after = idle.into();
        self
    }
    /// An async hook run on every new connection (and every reconnect: each is a new
    /// server session) after `setsession` and before the pool uses it, e.g. to register
    /// types or prepare statements. An error fails that connection like a failed connect:
    /// it is counted in `connections_failed`, kept in [`Pool::last_connect_error`], and the
    /// connection is closed and tried again later.
    pub fn on_connect<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Connection) -> Fut + 'static,
        Fut: StdFuture<Output = Result<(), Error>> + 'static,
    {
        self.settings.on_connect = Some(ConnHook::new(hook));
        self
    }
    /// What runs on a connection when it comes back (default [`Reset::Rollback`]).
    pub fn reset(mut self, reset: Reset) -> Self {
        self.settings.reset = reset;
        self
    }
    /// Asks `callback` for the password before every connect (new connections, reconnects,
    /// the LISTEN connection), for credentials that rotate (cloud IAM tokens valid for
    /// minutes). It overrides the connection string's password and the password file. An
    /// error from it fails that connect attempt with the callback's error; nothing is sent
    /// to the server.
    pub fn password<F, Fut>(mut self, callback: F) -> Self
    where
        F: Fn() -> Fut + 'static,
        Fut: StdFuture<Output = Result<String, Error>> + 'static,
    {
        self.settings.password = Some(PasswordHook(Rc::new(move || Box::pin(callback()))));
        self
    }
    /// What a request does when no connection is alive (every one dead, none connecting):
    /// with `false` (the default, Momoko's rule) it fails at once with
    /// `DatabaseNotAvailable`; with `true` it waits in the queue (FIFO, with the others) for
    /// a reconnect, up to `acquire_timeout` (30 s when none is set), then fails with
    /// `ErrorKind::Timeout`; `max_waiting` still bounds the queue. An operation that failed
    /// because its connection died, provably without effect, waits for another connection
    /// too (within the same bound) instead of reconnecting in place.
    pub fn wait_for_reconnect(mut self, wait: bool) -> Self {
        self.settings.wait_for_reconnect = wait;
        self
    }
    /// Logs a warning (with the `log` crate, target `momoko::pool`) when a connection taken
    /// with `getconn` has not been given back after this long, once per hold. Default: off.
    pub fn leak_warning(mut self, after: Duration) -> Self {
        self.settings.leak_warning = Some(after);
        self
    }

    /// The pool's name: `db.client.connection.pool.name` in its spans and figures, and
    /// what the observer is told (default: `DBNAME@HOST:PORT` of the first host of the
    /// connection string).
    pub fn name(mut self, name: &str) -> Self {
        self.settings.observing.name = Rc::from(name);
        self
    }
    /// Tells `observer` of every operation on the pool's connections (as
    /// [`ConnectionBuilder::observer`](crate::ConnectionBuilder::observer)) and of every
    /// acquisition and release (see [`Observer`](crate::Observer)).
    pub fn observer(mut self, observer: impl crate::Observer + 'static) -> Self {
        let observer: Rc<dyn crate::Observer> = Rc::new(observer);
        self.template.observe.observer = Some(observer.clone());
        self.settings.observing.observer = Some(observer);
        self
    }
    /// The statement log level of every pooled connection (see
    /// [`ConnectionBuilder::log_statements`](crate::ConnectionBuilder::log_statements)).
    pub fn log_statements(mut self, level: crate::LevelFilter) -> Self {
        self.template.observe.log.statements = Some(level);
        self
    }
    /// The slow statement log of every pooled connection (see
    /// [`ConnectionBuilder::log_slow_statements`](crate::ConnectionBuilder::log_slow_statements)).
    pub fn log_slow_statements(mut self, level: crate::LevelFilter, threshold: Duration) -> Self {
        self.template.observe.log.slow_statements = Some(level);
        self.template.observe.log.slow_threshold = Some(threshold);
        self
    }
    /// Turns the statement log of every pooled connection off.
    pub fn disable_statement_logging(self) -> Self {
        self.log_statements(crate::LevelFilter::Off)
            .log_slow_statements(crate::LevelFilter::Off, Duration::from_secs(1))
    }
    /// Adds the rendered SQL to the statement log lines (see
    /// [`ConnectionBuilder::log_rendered_sql`](crate::ConnectionBuilder::log_rendered_sql)).
    pub fn log_rendered_sql(mut self, on: bool) -> Self {
        self.template.observe.log.rendered_sql = Some(on);
        self
    }

    /// The pool, not yet connected. A size of 0, a `max_size` below `size`, and a mistake
    /// in the connection string (`invalid connection option "usr"`, a bad `sslmode` or port,
    /// a malformed URI: libpq's words) are Usage errors.
    pub fn build(self) -> Result<Pool, Error> {
        let max_size = match self.max_size {
            None | Some(0) => self.size,
            Some(m) => m,
        };
        check_sizes(self.size, max_size)?;
        let dsn_config = self.dsn.config()?;
        let ioloop = self.ioloop.clone().unwrap_or_else(IoLoop::current);
        let mut config = self.into_config();
        if config.settings.observing.name.is_empty() {
            config.settings.observing.name = Rc::from(default_name(&dsn_config).as_str());
        }
        config.max_size.set(max_size);
        let inner = Rc::new(Inner {
            ioloop,
            config,
            state: RefCell::new(PoolState::default()),
        });
        if inner.config.settings.auto_shrink {
            let weak = Rc::downgrade(&inner);
            let pc = PeriodicCallback::new(
                &inner.ioloop,
                inner.config.settings.shrink_period,
                move || {
                    if let Some(inner) = weak.upgrade() {
                        Inner::shrink(&inner);
                    }
                },
            );
            pc.start();
            inner.state.borrow_mut().shrinker = Some(pc);
        }
        Ok(Pool(inner))
    }

    fn into_config(self) -> PoolConfig {
        let template = Template {
            poll_before_write: self.settings.retry == RetryPolicy::Safe,
            // Each pool its own, even from a cloned builder.
            tls: Default::default(),
            ..self.template
        };
        PoolConfig {
            dsn: RefCell::new(self.dsn),
            size: Cell::new(self.size),
            max_size: Cell::new(0),
            template,
            settings: self.settings,
        }
    }
}

/// A pool's default name: `DBNAME@HOST:PORT` of its first target.
fn default_name(config: &crate::Config) -> String {
    let db = config.get_dbname().or(config.get_user()).unwrap_or("");
    match config.targets().ok().and_then(|t| t.into_iter().next()) {
        Some(t) => format!("{db}@{t}"),
        None => db.to_owned(),
    }
}

/// Momoko's two rules on sizes, as Usage errors.
pub(super) fn check_sizes(size: usize, max_size: usize) -> Result<(), Error> {
    if size == 0 {
        return Err(Error::usage(
            "the connection pool size must be a number above 0",
        ));
    }
    if max_size < size {
        return Err(Error::usage(
            "the connection pool max size must be of at least 'size'",
        ));
    }
    Ok(())
}

impl PoolConfig {
    /// How long a request may wait for a connection: `acquire_timeout`, else 30 s when it
    /// may wait for a reconnect (nothing waits forever), else unbounded (Momoko's queue).
    pub(super) fn wait_bound(&self) -> Option<Duration> {
        self.settings.acquire_timeout.or(self
            .settings
            .wait_for_reconnect
            .then_some(Duration::from_secs(30)))
    }
}

/// What a built pool runs by: its connection string, sizes, template and settings.
#[derive(Debug)]
pub(super) struct PoolConfig {
    pub(super) dsn: RefCell<Dsn>,
    /// `size` and `max_size` change with `Pool::resize`.
    pub(super) size: Cell<usize>,
    pub(super) max_size: Cell<usize>,
    pub(super) template: Template,
    pub(super) settings: Settings,
}

impl PoolConfig {
    /// A pooled connection on the current connection string, not yet connected.
    pub(super) fn connection(&self, ioloop: &IoLoop) -> Connection {
        self.template.build(self.dsn.borrow().clone(), ioloop)
    }
}

impl PoolConfig {
    /// The settings the container decides by, as they stand now.
    pub(super) fn limits(&self) -> super::container::Limits {
        super::container::Limits {
            size: self.size.get(),
            max_size: self.max_size.get(),
            max_waiting: self.settings.max_waiting,
            reconnect_interval: self.settings.reconnect_interval,
            shrink_delay: self.settings.shrink_delay,
            health_check_after: self.settings.health_check_after,
            pipeline_depth: self.settings.pipeline_depth,
        }
    }
}
