//! `Connection`: the IoLoop driver of a session, with Momoko's methods.
//!
//! This module binds a session [`Core`] to an [`IoLoop`]: it registers the socket, keeps one
//! timer for the session's next deadline, batches every request made in one loop iteration
//! into one write, delivers the session's actions and resolves one-shot futures. Every
//! operation lives in `session/ops`; the methods here only make a future and call it. It must
//! never run user code while it holds a borrow of the session, never deliver out of request
//! order, and never leave a future unresolved: a closed or lost connection fails everything in
//! flight.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use momoko_loop::{Future, HandlerId, IoLoop, Ready, TimeoutId};

use crate::conninfo::{Config, Dsn};
use crate::driver::ops as observed;
use crate::driver::{CancelTarget, Driver, UserToken};
use crate::error::{DbError, Error};
use crate::params::Params;
use crate::proto::CopySource;
use crate::row::{Cursor, Row};
use crate::session::ops::{self, Done};
use crate::session::{Core, Drive, Notification, Notify, Options, Stage};

pub use crate::session::ops::prepared::Prepared;
pub use crate::session::ops::Statement;

/// Opens a connection: `momoko.connect(dsn)`. The future resolves to the connection.
pub fn connect(dsn: &str) -> Future<Result<Connection, Error>> {
    Connection::new(dsn).connect()
}

/// Where the server session stands with transactions, as of the server's last
/// ReadyForQuery (libpq's `PQtransactionStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransactionStatus {
    /// Outside a transaction block (`I`).
    Idle,
    /// Inside a transaction block (`T`).
    InTransaction,
    /// Inside a failed transaction block (`E`): only `ROLLBACK` will be accepted.
    InError,
    /// Not connected: never connected yet, connecting, closed or lost.
    Unknown,
}

impl TransactionStatus {
    /// From the session: its phase and the status byte of its last ReadyForQuery.
    pub(crate) fn of(ready: bool, status: u8) -> TransactionStatus {
        match (ready, status) {
            (false, _) => TransactionStatus::Unknown,
            (true, b'I') => TransactionStatus::Idle,
            (true, b'T') => TransactionStatus::InTransaction,
            (true, b'E') => TransactionStatus::InError,
            (true, _) => TransactionStatus::Unknown,
        }
    }
}

/// Builds a [`Connection`] (or, with [`build_mio`](Self::build_mio), a
/// [`MioConnection`](crate::MioConnection)) with options beyond the connection string. Its
/// Debug never shows the password.
#[derive(Debug)]
pub struct ConnectionBuilder {
    dsn: Dsn,
    ioloop: Option<IoLoop>,
    options: Options,
    poll_before_write: bool,
}

impl ConnectionBuilder {
    /// A builder for a connection configured in code instead of by a connection string
    /// (`Config::new().host("db").user("app")…`); [`Connection::dsn`] is then empty.
    pub fn from_config(config: Config) -> ConnectionBuilder {
        ConnectionBuilder::with_dsn(Dsn::Config(Box::new(config)))
    }

    pub(crate) fn with_dsn(dsn: Dsn) -> ConnectionBuilder {
        ConnectionBuilder {
            dsn,
            ioloop: None,
            options: Options::default(),
            poll_before_write: false,
        }
    }

    /// The loop that drives the connection (default: [`IoLoop::current`]). A
    /// [`MioConnection`](crate::MioConnection) runs on the program's own `mio::Poll`, so
    /// [`build_mio`](Self::build_mio) refuses a builder that names a loop.
    pub fn ioloop(mut self, ioloop: &IoLoop) -> Self {
        self.ioloop = Some(ioloop.clone());
        self
    }

    /// The TLS client configuration to share (a pool's, for each of its connections).
    pub(crate) fn tls_cache(mut self, cache: crate::session::transport::TlsCache) -> Self {
        self.options.tls = cache;
        self
    }

    /// Statements run after every connect, in order; one that fails fails the connect with
    /// its error and the connection is closed (Momoko ignored such failures).
    pub fn setsession<I, S>(mut self, statements: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.options.setsession = statements.into_iter().map(Into::into).collect();
        self
    }

    /// Gives up a connect attempt (per host) after this long, with `ErrorKind::Timeout`.
    /// Overrides the connection string's `connect_timeout`.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.connect_timeout = Some(timeout);
        self
    }

    /// A query not answered within this long fails with `ErrorKind::Timeout` (SQLSTATE
    /// 57014 kept) and is cancelled on the server; the connection stays usable. If the server
    /// does not answer the cancelled query within a grace period (the larger of 2 s and half
    /// the timeout), the connection is closed.
    pub fn query_timeout(mut self, timeout: Duration) -> Self {
        self.options.query_timeout = Some(timeout);
        self
    }

    /// Whether requests wait for one more poll of the loop before they are written (default
    /// off; a [`Pool`](crate::Pool) with [`RetryPolicy::Safe`](crate::RetryPolicy::Safe)
    /// turns it on for its connections). That poll reports a close the server sent since
    /// the loop last looked, so that a request is never written into a connection that
    /// died meanwhile: it then fails as never sent, which is what makes retrying it safe.
    /// It costs one `epoll_wait` per loop iteration that writes; off, the request goes out
    /// just before the loop's next poll, and a request written into a connection that died
    /// in the moment since that poll fails with an unknown outcome (which is true).
    pub fn poll_before_write(mut self, on: bool) -> Self {
        self.poll_before_write = on;
        self
    }

    /// How many statements `query` keeps prepared on this connection (default 256, the least
    /// recently used closed first). `0` turns the cache off: every `query` then runs on the unnamed
    /// statement, parsed, bound and executed in one round trip, which is what works behind
    /// PgBouncer in transaction pooling mode (any version). Results then come back as text.
    pub fn statement_cache_size(mut self, n: usize) -> Self {
        self.options.statement_cache_size = Some(n);
        self
    }

    /// The largest message accepted from the server (default 1 GiB). A larger one fails the
    /// connection with a protocol error before anything is allocated for it.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.options.max_message_size = Some(bytes);
        self
    }

    /// Called with every NoticeResponse (warnings, notices); they are also logged.
    pub fn notice_handler(mut self, handler: impl FnMut(&DbError) + 'static) -> Self {
        self.options.notice_handler = Some(Rc::new(RefCell::new(handler)));
        self
    }

    /// Logs every statement at `level` (default `Debug`), through `log` (or, with the
    /// `tracing` feature, as a `tracing` event inside the operation's span) at the target
    /// `momoko::statement`: the operation, the query as written (placeholders, never the
    /// values), the rows returned, the time taken and, on failure, the SQLSTATE or the kind
    /// of error (never the error's message, which may quote a value). `LevelFilter::Off`
    /// turns it off. Overrides the connection string's `momoko_log_statements`.
    pub fn log_statements(mut self, level: crate::LevelFilter) -> Self {
        self.options.observe.log.statements = Some(level);
        self
    }

    /// Logs statements that took `threshold` or more (from the call to the answer) at
    /// `level` instead (default `Warn` and 1 s, as sqlx), with sqlx's words "slow
    /// statement: execution time exceeded alert threshold". Overrides the connection
    /// string's `momoko_log_slow_statements` and `momoko_slow_statement_ms`.
    pub fn log_slow_statements(mut self, level: crate::LevelFilter, threshold: Duration) -> Self {
        self.options.observe.log.slow_statements = Some(level);
        self.options.observe.log.slow_threshold = Some(threshold);
        self
    }

    /// Turns the statement log off, slow statements included.
    pub fn disable_statement_logging(self) -> Self {
        self.log_statements(crate::LevelFilter::Off)
            .log_slow_statements(crate::LevelFilter::Off, Duration::from_secs(1))
    }

    /// Adds the rendered SQL, parameter values quoted in, to each statement log line
    /// (default off: values can be personal data or secrets). It never reaches a span or
    /// an observer.
    pub fn log_rendered_sql(mut self, on: bool) -> Self {
        self.options.observe.log.rendered_sql = Some(on);
        self
    }

    /// Tells `observer` of every operation's start and end (see
    /// [`Observer`](crate::Observer)).
    pub fn observer(mut self, observer: impl crate::Observer + 'static) -> Self {
        self.options.observe.observer = Some(Rc::new(observer));
        self
    }

    /// The observer as the pool shares it.
    pub(crate) fn shared_observer(mut self, observer: Option<Rc<dyn crate::Observer>>) -> Self {
        self.options.observe.observer = observer;
        self
    }

    /// The statement log settings as the pool passes them on.
    pub(crate) fn log_overrides(mut self, log: crate::observe::LogOverrides) -> Self {
        self.options.observe.log = log;
        self
    }

    /// The connection, not yet connected: nothing happens on the network until `connect()`,
    /// which checks the connection string first (a mistake in it fails the connect with
    /// `ErrorKind::Usage`, in libpq's words, before any I/O).
    pub fn build(self) -> Connection {
        let ioloop = self.ioloop.clone().unwrap_or_else(IoLoop::current);
        let (dsn, options) = self.into_parts();
        Connection::from_parts(dsn, ioloop, options)
    }

    /// A [`MioConnection`](crate::MioConnection) with these options, connecting at once
    /// (as [`MioConnection::connect`](crate::MioConnection::connect)): register it before
    /// polling; `on_connect` runs from `dispatch`. With
    /// [`poll_before_write`](Self::poll_before_write), requests that callbacks make wait for
    /// the program's next poll before they are written, and `next_deadline` asks for that
    /// poll at once. A builder that names a loop ([`ioloop`](Self::ioloop)) is refused:
    /// the connection stays closed and `on_connect` gets a Usage error from `dispatch`.
    pub fn build_mio(
        self,
        on_connect: impl FnOnce(Result<(), Error>) + 'static,
    ) -> crate::MioConnection {
        let refused = self.ioloop.is_some().then(|| {
            Error::usage(
                "ioloop() names the IoLoop a Connection runs on; a MioConnection runs on the \
                 program's own mio::Poll: build it without ioloop()",
            )
        });
        let (dsn, options) = self.into_parts();
        crate::MioConnection::connect_with(dsn, options, refused, on_connect)
    }

    /// The connection string (empty for a configuration built in code) and the options.
    fn into_parts(self) -> (String, Options) {
        let mut options = self.options;
        options.poll_before_write = self.poll_before_write;
        let dsn = match self.dsn {
            Dsn::Text(s) => s,
            Dsn::Config(c) => {
                options.config = Some(*c);
                String::new()
            }
        };
        (dsn, options)
    }

    /// Builds and connects.
    pub fn connect(self) -> Future<Result<Connection, Error>> {
        self.build().connect()
    }
}

/// One asynchronous PostgreSQL connection, Momoko's `Connection`.
///
/// A cheap handle: clones share one connection. Requests made while others are in flight are
/// pipelined and answered in order. When the last handle is dropped the connection closes as
/// soon as nothing is in flight.
#[derive(Clone)]
pub struct Connection {
    core: Rc<Core<LoopDriver>>,
    _user: Rc<UserToken<LoopDriver>>,
}

/// Run when an established connection is lost or closed.
pub(crate) type CloseHook = Rc<dyn Fn(&Error)>;

/// The IoLoop side of one connection: registration, timer, write scheduling, delivery.
pub(crate) struct LoopDriver {
    ioloop: IoLoop,
    /// See [`ConnectionBuilder::poll_before_write`].
    poll_before_write: bool,
    reg: RefCell<Registration>,
    connect_waiters: RefCell<Vec<Future<Result<Connection, Error>>>>,
    user: RefCell<Weak<UserToken<LoopDriver>>>,
    abandoned: Cell<bool>,
    /// True while actions are being delivered: a wake from inside a callback only brings the
    /// registration in line, and the delivery already under way runs what it queued, after
    /// the actions before it. That keeps completions in request order whatever callbacks do.
    delivering: Cell<bool>,
    /// Hooks run when an established connection is lost or closed (the pool's dead-detection).
    on_close: RefCell<Vec<CloseHook>>,
    /// The core itself while a name lookup runs: no socket handler holds it then, and a
    /// connect whose handle was dropped must still finish (as it does with a socket).
    lookup_hold: RefCell<Option<Rc<Core<LoopDriver>>>>,
    /// The before-poll flush of this connection, made once and queued whenever a write
    /// waits (it holds the core weakly: the loop may keep it queued past the connection).
    flush: std::cell::OnceCell<Rc<dyn Fn()>>,
}

#[derive(Default)]
struct Registration {
    handler: Option<HandlerId>,
    generation: u64,
    timer: Option<(TimeoutId, Instant)>,
    flush_scheduled: bool,
    /// A delivery waits in the loop's callbacks (see `Drive::wake`).
    delivery_scheduled: bool,
}

impl Drop for LoopDriver {
    fn drop(&mut self) {
        let reg = self.reg.get_mut();
        if let Some(id) = reg.handler.take() {
            self.ioloop.forget_handler(id);
        }
        if let Some((id, _)) = reg.timer.take() {
            self.ioloop.remove_timeout(id);
        }
    }
}

impl Drive for LoopDriver {
    fn now(&self) -> Instant {
        self.ioloop.time()
    }

    /// A request was queued: registration now, and an answer known before anything was
    /// sent (a local failure) from the loop's next turn, never inside the caller's call.
    fn wake(core: &Rc<Core<Self>>) {
        register(core);
        let d = &core.driver;
        if d.delivering.get() || !core.with(|s| s.has_actions()) {
            return;
        }
        let mut reg = d.reg.borrow_mut();
        if !reg.delivery_scheduled {
            reg.delivery_scheduled = true;
            let me = core.clone();
            d.ioloop.add_callback(move || {
                me.driver.reg.borrow_mut().delivery_scheduled = false;
                sync(&me);
            });
        }
    }

    /// A finished name lookup reaches the loop through its cross-thread handle; the core is
    /// found again by id on the loop's thread.
    fn notifier(core: &Rc<Core<Self>>) -> Option<Notify> {
        let id = core.id;
        LOOKUPS.with(|m| m.borrow_mut().insert(id, Rc::downgrade(core)));
        let handle = core.driver.ioloop.handle();
        Some(std::sync::Arc::new(move || {
            handle.add_callback(move || {
                let core = LOOKUPS.with(|m| m.borrow().get(&id).and_then(Weak::upgrade));
                if let Some(core) = core {
                    core.with_mut(|s| s.poll_resolved(core.driver.now()));
                    sync(&core);
                }
            });
        }))
    }

    fn forget(id: u64) {
        let _ = LOOKUPS.try_with(|m| m.borrow_mut().remove(&id));
    }
}

thread_local! {
    /// The loop's connections by id, for name lookups finishing on other threads.
    static LOOKUPS: RefCell<std::collections::HashMap<u64, Weak<Core<LoopDriver>>>> =
        RefCell::new(std::collections::HashMap::new());
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (phase, pending) = self.core.with(|s| (s.stage(), s.pending()));
        let phase = match phase {
            Stage::New => "New".to_owned(),
            p => format!("{p:?}"),
        };
        write!(
            f,
            "<Connection {}: {phase}, {pending} in flight>",
            self.core.id
        )
    }
}

impl Connection {
    /// A connection for `dsn` (libpq's key=value or URI form), driven by
    /// [`IoLoop::current`]. Nothing happens on the network until [`Connection::connect`].
    pub fn new(dsn: &str) -> Connection {
        Connection::builder(dsn).build()
    }

    /// A builder for options beyond the connection string.
    pub fn builder(dsn: &str) -> ConnectionBuilder {
        ConnectionBuilder::with_dsn(Dsn::Text(dsn.to_owned()))
    }

    fn from_parts(dsn: String, ioloop: IoLoop, options: Options) -> Connection {
        let driver = LoopDriver {
            ioloop,
            poll_before_write: options.poll_before_write,
            reg: RefCell::new(Registration::default()),
            connect_waiters: RefCell::new(Vec::new()),
            user: RefCell::new(Weak::new()),
            abandoned: Cell::new(false),
            delivering: Cell::new(false),
            on_close: RefCell::new(Vec::new()),
            lookup_hold: RefCell::new(None),
            flush: std::cell::OnceCell::new(),
        };
        handle(&Core::new(dsn, options, driver))
    }

    /// The loop driving this connection.
    pub fn ioloop(&self) -> &IoLoop {
        &self.core.driver.ioloop
    }

    /// The connection string (empty for a connection built from a [`Config`]).
    pub fn dsn(&self) -> String {
        self.core.with(|s| s.dsn().to_owned())
    }

    /// Changes the connection string used by the next `connect()` (Momoko's tests change
    /// `conn.dsn` to simulate an outage).
    pub fn set_dsn(&self, dsn: &str) {
        self.core.with_mut(|s| s.set_dsn(dsn));
    }

    /// Connects (or reconnects, when the connection was closed or lost), runs `setsession`,
    /// and resolves to the connection. A failure fails the future; it never hangs: a refused
    /// port, a missing socket, a wrong password and a failing setsession statement all fail it.
    pub fn connect(&self) -> Future<Result<Connection, Error>> {
        let fut = Future::with_loop(&self.core.driver.ioloop);
        let phase = self.core.with(|s| s.stage());
        match phase {
            Stage::Ready => {
                let _ = fut.set_result(Ok(self.clone()));
            }
            Stage::Connecting
            | Stage::SslRequest
            | Stage::TlsHandshake
            | Stage::Starting
            | Stage::Setsession => {
                self.core
                    .driver
                    .connect_waiters
                    .borrow_mut()
                    .push(fut.clone());
            }
            Stage::New | Stage::Closed => {
                self.core
                    .driver
                    .connect_waiters
                    .borrow_mut()
                    .push(fut.clone());
                self.core.with_mut(|s| s.connect(self.core.driver.now()));
                // A connection string refused before any I/O fails the future from the
                // loop, like every other local failure.
                LoopDriver::wake(&self.core);
            }
        }
        fut
    }

    /// The password the next connects send, over the connection string's (a pool's
    /// password callback sets it before each connect).
    pub(crate) fn set_password(&self, password: Option<String>) {
        self.core.with_mut(|s| s.set_password(password));
    }

    /// Forgets the server's prepared statements after `DISCARD ALL` dropped them.
    pub(crate) fn forget_statements(&self) {
        self.core.with_mut(|s| s.forget_statements());
    }

    crate::driver::session_getters!();

    /// A future for the caller and the completion that resolves it, in place (no callback
    /// boxed around it).
    fn future<T: 'static>(&self) -> (Future<Result<T, Error>>, Done<T>) {
        let fut = Future::with_loop(&self.core.driver.ioloop);
        (fut.clone(), Done::Future(fut))
    }

    /// Runs `query` with psycopg2-style parameters (`%s`, `%(name)s`, `%%`) and resolves to a
    /// cursor holding the result of its last statement.
    pub fn execute<P: Params>(&self, query: &str, params: P) -> Future<Result<Cursor, Error>> {
        let (fut, done) = self.future();
        self.execute_cb(query, &params, done);
        fut
    }

    pub(crate) fn execute_cb<P: Params + ?Sized>(
        &self,
        query: &str,
        params: &P,
        done: Done<Cursor>,
    ) {
        observed::execute(&self.core, query, params, done);
    }

    /// Sends one simple-protocol query whose cursor goes to `done`.
    pub(crate) fn simple(&self, sql: String, done: Done<Cursor>) {
        ops::execute::simple(&self.core, sql, done);
    }

    /// A walsender command, observed as one (span `replication_command`).
    pub(crate) fn replication_command(&self, command: String, done: Done<Cursor>) {
        observed::replication_command(&self.core, command, done);
    }

    /// `SELECT 1 AS ping`: resolves once the server answered.
    pub fn ping(&self) -> Future<Result<(), Error>> {
        let (fut, done) = self.future();
        self.ping_cb(done);
        fut
    }

    pub(crate) fn ping_cb(&self, done: Done<()>) {
        ops::execute::ping(&self.core, done);
    }

    /// Calls a function as psycopg2's `callproc` does: `SELECT * FROM name(%s, …)`, or with
    /// named parameters `SELECT * FROM name(a := %(a)s, …)`.
    pub fn callproc<P: Params>(&self, procname: &str, params: P) -> Future<Result<Cursor, Error>> {
        let (fut, done) = self.future();
        self.callproc_cb(procname, &params, done);
        fut
    }

    pub(crate) fn callproc_cb<P: Params + ?Sized>(
        &self,
        procname: &str,
        params: &P,
        done: Done<Cursor>,
    ) {
        observed::callproc(&self.core, procname, params, done);
    }

    /// Runs the statements in one transaction and resolves to one cursor per statement. On
    /// any error the transaction is rolled back and the first error is returned. Every
    /// parameter is rendered before anything is sent, and BEGIN, the statements and COMMIT
    /// go to the server together: one round trip.
    pub fn transaction<S: Into<Statement>>(
        &self,
        statements: Vec<S>,
    ) -> Future<Result<Vec<Cursor>, Error>> {
        self.transaction_with(statements, true)
    }

    /// Runs the statements as one batch: one round trip and one implicit transaction, all
    /// or nothing (as pgbench's pipeline mode), and resolves to one cursor per statement.
    /// Parameters are rendered on the client as in `execute`. Unlike `transaction`, no BEGIN
    /// and COMMIT are sent: a batch inside an explicit transaction joins it.
    pub fn batch<S: Into<Statement>>(
        &self,
        statements: Vec<S>,
    ) -> Future<Result<Vec<Cursor>, Error>> {
        let (fut, done) = self.future();
        let statements: Vec<Statement> = statements.into_iter().map(Into::into).collect();
        self.batch_cb(&statements, done);
        fut
    }

    pub(crate) fn batch_cb(&self, statements: &[Statement], done: Done<Vec<Cursor>>) {
        observed::batch(&self.core, statements, done);
    }

    /// [`Connection::transaction`] with Momoko's `auto_rollback` flag. With `false`, the
    /// statements run one after the other and a failure leaves the (failed) transaction open
    /// for the caller to roll back, as in Momoko.
    pub fn transaction_with<S: Into<Statement>>(
        &self,
        statements: Vec<S>,
        auto_rollback: bool,
    ) -> Future<Result<Vec<Cursor>, Error>> {
        let (fut, done) = self.future();
        let statements: Vec<Statement> = statements.into_iter().map(Into::into).collect();
        self.transaction_cb(&statements, auto_rollback, done);
        fut
    }

    pub(crate) fn transaction_cb(
        &self,
        statements: &[Statement],
        auto_rollback: bool,
        done: Done<Vec<Cursor>>,
    ) {
        observed::transaction(&self.core, statements, auto_rollback, done);
    }

    /// Prepares `query` (with `$1`, `$2`… parameters) on the server. The statement belongs
    /// to this connection's session; used after a reconnect or on another connection it is
    /// prepared again there, transparently.
    pub fn prepare(&self, query: &str) -> Future<Result<Prepared, Error>> {
        let (fut, done) = self.future();
        observed::prepare(&self.core, query, done);
        fut
    }

    /// Runs a prepared statement with server-side parameters; results come back in binary
    /// form where momoko decodes it, in text otherwise.
    pub fn execute_prepared<P: Params>(
        &self,
        statement: &Prepared,
        params: P,
    ) -> Future<Result<Cursor, Error>> {
        let (fut, done) = self.future();
        observed::execute_prepared(&self.core, statement, &params, done);
        fut
    }

    /// Runs `sql` with server-side parameters (`$1`, `$2`…), preparing it on first use and
    /// keeping it in a bounded per-connection cache: later calls with the same text and
    /// parameter types skip parsing and planning and get binary results. The first call
    /// costs no extra round trip (Parse and Bind are pipelined). A cached statement that the
    /// server no longer accepts (SQLSTATE 0A000 "cached plan must not change result type",
    /// or 26000) is prepared again once, transparently.
    pub fn query<P: Params>(&self, sql: &str, params: P) -> Future<Result<Cursor, Error>> {
        let (fut, done) = self.future();
        self.query_cb(sql, &params, done);
        fut
    }

    pub(crate) fn query_cb<P: Params + ?Sized>(&self, sql: &str, params: &P, done: Done<Cursor>) {
        observed::query(&self.core, sql, params, done);
    }

    /// Runs `sql` like [`Connection::query`] (server-side `$1`, `$2`… parameters, the
    /// statement cache, binary results where momoko decodes them) and hands each row to
    /// `f` as it is read, keeping none: memory stays flat whatever the row count. Resolves
    /// to the number of rows handed out.
    ///
    /// `f` runs from the loop with no borrow of the connection held, one read's rows at a
    /// time, never inside this call: it may queue other work on this connection (which
    /// runs after the stream). An error mid-stream (the server's, a lost connection, a
    /// `query_timeout`) resolves the future with it, once; the rows handed out before it
    /// stay handed out. A panic in `f` unwinds out of the loop, as in every callback.
    pub fn stream<P: Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnMut(&Row) + 'static,
    ) -> Future<Result<u64, Error>> {
        let (fut, done) = self.future();
        self.stream_cb(sql, &params, f, done);
        fut
    }

    pub(crate) fn stream_cb<P: Params + ?Sized>(
        &self,
        sql: &str,
        params: &P,
        f: impl FnMut(&Row) + 'static,
        done: Done<u64>,
    ) {
        observed::stream(&self.core, sql, params, f, done);
    }

    /// Drops a prepared statement on the server (a no-op where it is not prepared).
    pub fn close_prepared(&self, statement: &Prepared) -> Future<Result<(), Error>> {
        let (fut, done) = self.future();
        observed::close_prepared(&self.core, statement, done);
        fut
    }

    /// Listens on `channel`: `callback` runs for every notification, as soon as it arrives
    /// (the socket stays watched while idle). The LISTEN is issued again after a reconnect.
    pub fn listen(
        &self,
        channel: &str,
        callback: impl FnMut(&Notification) + 'static,
    ) -> Future<Result<(), Error>> {
        let (fut, done) = self.future();
        observed::listen(&self.core, channel, callback, done);
        fut
    }

    /// Stops listening on `channel`.
    pub fn unlisten(&self, channel: &str) -> Future<Result<(), Error>> {
        let (fut, done) = self.future();
        observed::unlisten(&self.core, channel, done);
        fut
    }

    /// Asks the server to cancel the query this connection is running (a CancelRequest on a
    /// new socket). The query then fails with SQLSTATE 57014 and the connection stays
    /// usable. Resolves once the server took the request.
    pub fn cancel(&self) -> Future<Result<(), Error>> {
        let (fut, done) = self.future();
        observed::cancel(&self.core, done);
        fut
    }

    /// `COPY … FROM STDIN` with the data given whole; resolves to the number of rows copied.
    /// A bad row fails the call with the server's error and leaves the connection usable.
    pub fn copy_in(&self, query: &str, data: impl Into<Bytes>) -> Future<Result<u64, Error>> {
        let data: Bytes = data.into();
        self.copy_in_chunks(query, std::iter::once(data))
    }

    /// `COPY … FROM STDIN` with the data pulled chunk by chunk as the socket takes it, so a
    /// large COPY never sits in memory whole. The iterator runs with no borrow of the
    /// connection held: it may call into this connection.
    pub fn copy_in_chunks<I>(&self, query: &str, chunks: I) -> Future<Result<u64, Error>>
    where
        I: IntoIterator + 'static,
        I::Item: Into<Bytes>,
    {
        self.copy_in_source(query, ops::copy::chunks(chunks))
    }

    /// `COPY … FROM STDIN` from fallible chunks: an `Err` aborts the COPY (CopyFail) and
    /// the call fails with the server's answer, which quotes the message.
    pub fn copy_in_results<I>(&self, query: &str, chunks: I) -> Future<Result<u64, Error>>
    where
        I: IntoIterator<Item = Result<Bytes, String>> + 'static,
    {
        self.copy_in_source(query, CopySource(Box::new(chunks.into_iter())))
    }

    fn copy_in_source(&self, query: &str, source: CopySource) -> Future<Result<u64, Error>> {
        let (fut, done) = self.future();
        observed::copy_in(&self.core, query, source, done);
        fut
    }

    /// `COPY … TO STDOUT`: `sink` gets the data as it arrives; resolves to the row count.
    pub fn copy_out(
        &self,
        query: &str,
        sink: impl FnMut(&[u8]) + 'static,
    ) -> Future<Result<u64, Error>> {
        let (fut, done) = self.future();
        observed::copy_out(&self.core, query, sink, done);
        fut
    }

    /// Registers hstore for this connection (and its reconnects): hstore values decode to
    /// `HashMap<String, Option<String>>` and `Value::Hstore`.
    pub fn register_hstore(&self) -> Future<Result<(), Error>> {
        let (fut, done) = self.future();
        ops::register::register_hstore(&self.core, done);
        fut
    }

    /// Looks up hstore's OIDs (they differ from database to database).
    pub(crate) fn hstore_oids_cb(&self, done: Done<(u32, u32)>) {
        ops::register::hstore_oids(&self.core, done);
    }

    /// Decodes hstore from now on, on this session and every later reconnect.
    pub(crate) fn set_hstore_oids(&self, oid: u32, array_oid: u32) {
        self.core
            .with(|s| s.types().register_hstore(oid, array_oid));
    }

    /// Checks that json exists on the server. JSON and JSONB always decode to
    /// `serde_json::Value`; this call is kept for Momoko compatibility.
    pub fn register_json(&self) -> Future<Result<(), Error>> {
        let (fut, done) = self.future();
        self.register_json_cb(done);
        fut
    }

    pub(crate) fn register_json_cb(&self, done: Done<()>) {
        ops::register::register_json(&self.core, done);
    }

    /// Closes the connection: everything in flight fails with a Connection error, the socket
    /// is closed and deregistered. Harmless on a closed connection.
    pub fn close(&self) {
        self.close_with(Error::connection("the connection was closed by the client"));
    }

    /// Closes the connection, failing what is in flight with `reason`.
    pub(crate) fn close_with(&self, reason: Error) {
        close(&self.core, reason);
    }

    /// A process-wide identity of this connection, never reused (the pool's key).
    pub(crate) fn shared_id(&self) -> usize {
        self.core.id as usize
    }

    /// Runs `hook` when this connection, once established, is lost or closed.
    pub(crate) fn on_close(&self, hook: Rc<dyn Fn(&Error)>) {
        self.core.driver.on_close.borrow_mut().push(hook);
    }

    /// The session core, for the replication stream's CopyBoth exchange.
    pub(crate) fn core(&self) -> &Rc<Core<LoopDriver>> {
        &self.core
    }

    /// Whether two handles are the same connection.
    pub fn same(&self, other: &Connection) -> bool {
        Rc::ptr_eq(&self.core, &other.core)
    }
}

/// A user handle, sharing the one token while any handle lives.
fn handle(core: &Rc<Core<LoopDriver>>) -> Connection {
    let existing = core.driver.user.borrow().upgrade();
    let user = match existing {
        Some(u) => u,
        None => {
            let u = Rc::new(UserToken(core.clone()));
            *core.driver.user.borrow_mut() = Rc::downgrade(&u);
            core.driver.abandoned.set(false);
            u
        }
    };
    Connection {
        core: core.clone(),
        _user: user,
    }
}

fn on_ready(core: &Rc<Core<LoopDriver>>, ready: Ready) {
    let now = core.driver.now();
    core.with_mut(|s| {
        s.handle_ready(
            ready.readable,
            ready.writable,
            ready.error,
            ready.read_closed,
            now,
        )
    });
    core.pump_copy();
    sync(core);
}

fn on_timer(core: &Rc<Core<LoopDriver>>) {
    core.driver.reg.borrow_mut().timer = None;
    let now = core.driver.now();
    core.with_mut(|s| s.handle_timeout(now));
    sync(core);
}

fn flush_now(core: &Rc<Core<LoopDriver>>) {
    core.driver.reg.borrow_mut().flush_scheduled = false;
    core.pump();
    // A write that went out produces nothing to deliver (a failed one does: the close's
    // answers); then only the registration follows, without a delivery round around it.
    if core.with(|s| s.has_actions() || s.read_pending()) {
        sync(core);
    } else {
        register(core);
    }
}

/// Closes the session at once (the socket is deregistered now); what was in flight is
/// answered from the loop's next turn, like every other answer, never inside the caller's
/// `close()`.
fn close(core: &Rc<Core<LoopDriver>>, reason: Error) {
    let now = core.driver.now();
    core.with_mut(|s| s.close(reason, now));
    LoopDriver::wake(core);
}

fn close_if_abandoned(core: &Rc<Core<LoopDriver>>) {
    if !core.driver.abandoned.get() {
        return;
    }
    let idle = core.with(|s| s.stage() == Stage::Ready && s.pending() == 0);
    if idle {
        close(core, Error::connection("the connection was dropped"));
    }
}

/// Brings the loop registration, the timer and the write scheduling in line with the
/// session.
fn register(core: &Rc<Core<LoopDriver>>) {
    let d = &core.driver;
    let resolving = core.with(|s| s.is_resolving());
    let held = d.lookup_hold.borrow().is_some();
    if resolving != held {
        // Dropped outside the borrow: the last reference may be this one.
        let old = d.lookup_hold.replace(resolving.then(|| core.clone()));
        drop(old);
    }
    let mut s = core.session.borrow_mut();
    let mut reg = d.reg.borrow_mut();
    if reg.generation != s.socket_generation() {
        if let Some(id) = reg.handler.take() {
            d.ioloop.forget_handler(id);
        }
        reg.generation = s.socket_generation();
        if let Some(socket) = s.source() {
            let me = core.clone();
            let added = d.ioloop.add_handler(
                socket,
                mio::Interest::READABLE | mio::Interest::WRITABLE,
                move |ready| on_ready(&me, ready),
            );
            match added {
                Ok(id) => reg.handler = Some(id),
                Err(e) => s.close(Error::io("cannot watch the socket", e), d.ioloop.time()),
            }
        }
    }
    let want = s.next_deadline();
    let have = reg.timer.map(|(_, at)| at);
    if want != have {
        if let Some((id, _)) = reg.timer.take() {
            d.ioloop.remove_timeout(id);
        }
        if let Some(at) = want {
            let me = core.clone();
            let id = d.ioloop.call_at(at, move || on_timer(&me));
            reg.timer = Some((id, at));
        }
    }
    // Writes wait until the loop is about to poll, so that every request of this iteration
    // goes out in one write. With poll_before_write they wait for the next iteration
    // instead, whose poll comes first and notices a connection that died while idle before
    // a request is written into it (so that a pool may retry safely).
    if !reg.flush_scheduled && s.wants_write() {
        reg.flush_scheduled = true;
        let me = core.clone();
        if d.poll_before_write {
            d.ioloop.add_callback(move || flush_now(&me));
        } else {
            let weak = Rc::downgrade(&me);
            let flush = d.flush.get_or_init(|| {
                Rc::new(move || {
                    if let Some(core) = weak.upgrade() {
                        flush_now(&core);
                    }
                })
            });
            d.ioloop.add_before_poll_shared(flush.clone());
        }
    }
}

/// Registration in line, then the session's actions delivered (see `Core::deliver`). A
/// wake from inside a delivered callback only registers: the delivery under way picks up
/// what that callback queued, after what came before it.
fn sync(core: &Rc<Core<LoopDriver>>) {
    match core.deliver() {
        None => register(core),
        Some(0) => {}
        // Callbacks may have given up the last handle. The registration is in line
        // already: the delivery's last round began with it, and a close registers anew.
        Some(_) => close_if_abandoned(core),
    }
}

impl Driver for LoopDriver {
    fn delivering(&self) -> &Cell<bool> {
        &self.delivering
    }

    fn turn(core: &Rc<Core<Self>>) {
        register(core);
    }

    /// Every request a callback queues, and every close, goes through `Drive::wake`, which
    /// registers at once: the rounds after the first need no turn of their own.
    const TURN_EVERY_ROUND: bool = false;

    fn connected(core: &Rc<Core<Self>>, result: Result<(), Error>) {
        let waiters = std::mem::take(&mut *core.driver.connect_waiters.borrow_mut());
        for f in waiters {
            let r = match &result {
                Ok(()) => Ok(handle(core)),
                Err(e) => Err(e.clone()),
            };
            let _ = f.set_result(r);
        }
    }

    fn closed(core: &Rc<Core<Self>>, e: &Error) {
        let hooks: Vec<_> = core.driver.on_close.borrow().clone();
        for h in hooks {
            h(e);
        }
    }

    /// A CancelRequest on a socket of the loop, over TLS when the connection is TLS.
    fn send_cancel(core: &Rc<Core<Self>>, target: &CancelTarget, done: Done<()>) {
        let lp = &core.driver.ioloop;
        let (peer, key, timeout) = (&target.peer, target.key.clone(), target.timeout);
        let fut = match target.tls.clone() {
            Some(tls) => crate::cancel::cancel_over_tls(lp, peer, key, timeout, tls),
            None => crate::cancel::cancel(lp, peer, &key, timeout),
        };
        fut.add_done_callback(move |f| {
            let r = f
                .take()
                .unwrap_or_else(|| Err(Error::connection("the cancel was lost")));
            done.call(r);
        });
    }

    fn call_later(core: &Rc<Core<Self>>, delay: Duration, f: Box<dyn FnOnce()>) {
        core.driver.ioloop.call_later(delay, f);
    }

    fn read_again(core: &Rc<Core<Self>>) {
        let weak = Rc::downgrade(core);
        core.driver.ioloop.add_callback(move || {
            if let Some(core) = weak.upgrade() {
                let ready = Ready {
                    readable: true,
                    ..Ready::default()
                };
                on_ready(&core, ready);
            }
        });
    }

    /// The connection closes once it is idle: what is in flight still completes.
    fn abandoned(core: &Rc<Core<Self>>) {
        core.driver.abandoned.set(true);
        close_if_abandoned(core);
    }
}
