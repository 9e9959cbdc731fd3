//! `Connection`: one PostgreSQL connection driven by an `IoLoop`, with Momoko's methods.
//!
//! This module binds a [`RawConnection`] to an [`IoLoop`]: it registers the socket, keeps a
//! timer for the next deadline, batches every request made in one loop iteration into one
//! write, and resolves one-shot futures with cursors. It renders psycopg2 parameters before
//! anything is sent, so a bad parameter never reaches the server. It must never run user code
//! while it holds a borrow of the connection's state, and never leave a future unresolved: a
//! closed or lost connection fails everything in flight.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use momoko_loop::{Future, HandlerId, IoLoop, Ready, TimeoutId};
use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::conninfo::Config;
use crate::error::{DbError, Error};
use crate::params::{ParamValues, Params};
use crate::proto::CopySource;
use crate::proto::{Request, Response};
use crate::raw::{Action, Callback, Listener, Notification, Options, Phase, RawConnection};
use crate::row::{Column, Cursor};
use crate::types::QuoteContext;
use crate::types::TypeRegistry;
use crate::types::Value;

/// The quoting of what is sent: string literals as `E'…'`, which the server reads the same
/// whatever `standard_conforming_strings` is when the query runs. The setting the client
/// last heard of is not enough: a SET pipelined before the query (or run by a function)
/// changes it in between, and a backslash would then end a `'…'` literal early.
const SEND_CONTEXT: QuoteContext = QuoteContext {
    standard_conforming_strings: false,
};

/// Opens a connection: `momoko.connect(dsn)`. The future resolves to the connection.
pub fn connect(dsn: &str) -> Future<Result<Connection, Error>> {
    Connection::new(dsn).connect()
}

/// One statement of a [`Connection::transaction`]: a query and its parameters.
#[derive(Debug, Clone)]
pub struct Statement {
    query: String,
    params: Option<ParamValues>,
}

impl Statement {
    /// A statement with parameters.
    pub fn new<P: Params>(query: impl Into<String>, params: P) -> Statement {
        Statement {
            query: query.into(),
            params: if params.is_empty() {
                None
            } else {
                Some(params.to_values())
            },
        }
    }

    /// The query text, before parameters are rendered.
    pub fn query(&self) -> &str {
        &self.query
    }

    fn render(&self, ctx: &QuoteContext) -> Result<String, Error> {
        match &self.params {
            None => Ok(self.query.clone()),
            Some(p) => p.render(&self.query, ctx),
        }
    }
}

impl From<&str> for Statement {
    fn from(query: &str) -> Statement {
        Statement {
            query: query.to_owned(),
            params: None,
        }
    }
}

impl From<String> for Statement {
    fn from(query: String) -> Statement {
        Statement {
            query,
            params: None,
        }
    }
}

impl<Q: Into<String>, P: Params> From<(Q, P)> for Statement {
    fn from((query, params): (Q, P)) -> Statement {
        Statement::new(query, params)
    }
}

/// Builds a [`Connection`] with options beyond the connection string.
#[derive(Debug)]
pub struct ConnectionBuilder {
    dsn: String,
    ioloop: Option<IoLoop>,
    options: Options,
}

impl ConnectionBuilder {
    /// The loop that drives the connection (default: [`IoLoop::current`]).
    pub fn ioloop(mut self, ioloop: &IoLoop) -> Self {
        self.ioloop = Some(ioloop.clone());
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

    /// The connection, not yet connected: nothing happens on the network until `connect()`.
    pub fn build(self) -> Connection {
        let ioloop = self.ioloop.unwrap_or_else(IoLoop::current);
        Connection::from_parts(self.dsn, ioloop, self.options)
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
    shared: Rc<Shared>,
    _user: Rc<UserToken>,
}

/// Dropped with the last user handle: closes the connection once it is idle.
struct UserToken(Rc<Shared>);

impl Drop for UserToken {
    fn drop(&mut self) {
        let shared = &self.0;
        shared.abandoned.set(true);
        Shared::close_if_abandoned(shared);
    }
}

/// Run when an established connection is lost or closed.
pub(crate) type CloseHook = Rc<dyn Fn(&Error)>;

struct Shared {
    ioloop: IoLoop,
    dsn: RefCell<String>,
    options: Options,
    raw: RefCell<Option<RawConnection>>,
    reg: RefCell<Registration>,
    connect_waiters: RefCell<Vec<Future<Result<Connection, Error>>>>,
    user: RefCell<Weak<UserToken>>,
    abandoned: Cell<bool>,
    server_version: Cell<Option<i32>>,
    /// Types registered on this connection; they survive reconnects.
    types: RefCell<TypeRegistry>,
    /// NOTIFY listeners by channel; LISTEN is issued again after every reconnect.
    listeners: RefCell<HashMap<String, Listener>>,
    /// Counts successful connects: prepared statements belong to one session.
    session: Cell<u64>,
    /// Statements `query` prepared, by text and parameter types.
    cache: RefCell<StatementCache>,
    /// Names of prepared statements are unique per connection.
    next_statement: Cell<u64>,
    /// Hooks run when an established connection is lost or closed (the pool's dead-detection).
    on_close: RefCell<Vec<CloseHook>>,
}

#[derive(Default)]
struct Registration {
    handler: Option<HandlerId>,
    generation: u64,
    timer: Option<(TimeoutId, Instant)>,
    flush_scheduled: bool,
}

impl Drop for Shared {
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

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let raw = self.shared.raw.borrow();
        let (phase, pending) = match raw.as_ref() {
            Some(r) => (format!("{:?}", r.phase()), r.pending()),
            None => ("New".to_owned(), 0),
        };
        write!(
            f,
            "<Connection at {:p}: {phase}, {pending} in flight>",
            Rc::as_ptr(&self.shared)
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
        ConnectionBuilder {
            dsn: dsn.to_owned(),
            ioloop: None,
            options: Options::default(),
        }
    }

    fn from_parts(dsn: String, ioloop: IoLoop, options: Options) -> Connection {
        let shared = Rc::new(Shared {
            ioloop,
            dsn: RefCell::new(dsn),
            options,
            raw: RefCell::new(None),
            reg: RefCell::new(Registration::default()),
            connect_waiters: RefCell::new(Vec::new()),
            user: RefCell::new(Weak::new()),
            abandoned: Cell::new(false),
            server_version: Cell::new(None),
            types: RefCell::new(TypeRegistry::default()),
            listeners: RefCell::new(HashMap::new()),
            session: Cell::new(0),
            cache: RefCell::new(StatementCache::default()),
            next_statement: Cell::new(0),
            on_close: RefCell::new(Vec::new()),
        });
        Shared::handle(&shared)
    }

    /// The loop driving this connection.
    pub fn ioloop(&self) -> &IoLoop {
        &self.shared.ioloop
    }

    /// The connection string.
    pub fn dsn(&self) -> String {
        self.shared.dsn.borrow().clone()
    }

    /// Changes the connection string used by the next `connect()` (Momoko's tests change
    /// `conn.dsn` to simulate an outage).
    pub fn set_dsn(&self, dsn: &str) {
        *self.shared.dsn.borrow_mut() = dsn.to_owned();
    }

    /// Connects (or reconnects, when the connection was closed or lost), runs `setsession`,
    /// and resolves to the connection. A failure fails the future; it never hangs: a refused
    /// port, a missing socket, a wrong password and a failing setsession statement all fail it.
    pub fn connect(&self) -> Future<Result<Connection, Error>> {
        let fut = Future::with_loop(&self.shared.ioloop);
        let in_progress = self
            .shared
            .raw
            .borrow()
            .as_ref()
            .is_some_and(|r| !matches!(r.phase(), Phase::Ready | Phase::Closed));
        if in_progress {
            self.shared.connect_waiters.borrow_mut().push(fut.clone());
            return fut;
        }
        let already = self
            .shared
            .raw
            .borrow()
            .as_ref()
            .is_some_and(|r| r.phase() == Phase::Ready);
        if already {
            let _ = fut.set_result(Ok(self.clone()));
            return fut;
        }
        self.shared.connect_waiters.borrow_mut().push(fut.clone());
        let config = Config::parse(&self.shared.dsn.borrow());
        let mut options = self.shared.options.clone();
        options.types = self.shared.types.borrow().clone();
        options.listeners = self.shared.listeners.borrow().clone();
        for channel in self.shared.listeners.borrow().keys() {
            options
                .setsession
                .push(format!("LISTEN {}", quote_ident(channel)));
        }
        let raw = RawConnection::connect(config, options, Instant::now());
        *self.shared.raw.borrow_mut() = Some(raw);
        Shared::sync(&self.shared);
        fut
    }

    /// Whether the connection is closed: never connected, closed by `close()`, or lost.
    pub fn closed(&self) -> bool {
        self.shared
            .raw
            .borrow()
            .as_ref()
            .is_none_or(|r| r.is_closed())
    }

    /// The server version as libpq reports it (150018 for 15.18), once connected.
    pub fn server_version(&self) -> Option<i32> {
        self.shared.server_version.get()
    }

    /// A server parameter (`TimeZone`, `standard_conforming_strings`, `application_name`…).
    pub fn parameter(&self, name: &str) -> Option<String> {
        let raw = self.shared.raw.borrow();
        raw.as_ref()?.proto()?.parameter(name).map(str::to_owned)
    }

    /// The backend process id of this session (for `pg_terminate_backend`, logs).
    pub fn backend_pid(&self) -> Option<i32> {
        let raw = self.shared.raw.borrow();
        raw.as_ref()?.proto()?.backend_key().map(|(pid, _)| pid)
    }

    /// The transaction status: `b'I'` idle, `b'T'` in a transaction, `b'E'` in a failed one.
    pub fn transaction_status(&self) -> u8 {
        let raw = self.shared.raw.borrow();
        raw.as_ref()
            .and_then(|r| r.proto())
            .map_or(b'I', |p| p.transaction_status())
    }

    /// Requests sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.shared.raw.borrow().as_ref().map_or(0, |r| r.pending())
    }

    /// The quoting of what this connection shows (`mogrify`): psycopg2's, for the setting
    /// the server last reported.
    fn quote_context(&self) -> QuoteContext {
        let raw = self.shared.raw.borrow();
        let scs = raw
            .as_ref()
            .and_then(|r| r.proto())
            .and_then(|p| p.parameter("standard_conforming_strings"))
            .is_none_or(|v| v == "on");
        QuoteContext {
            standard_conforming_strings: scs,
        }
    }

    /// The query with its parameters rendered as psycopg2 renders them. Synchronous, like
    /// Momoko's; mistakes in placeholders are `ErrorKind::Usage` errors.
    pub fn mogrify<P: Params>(&self, query: &str, params: P) -> Result<String, Error> {
        crate::params::mogrify(query, &params, &self.quote_context())
    }

    fn render<P: Params + ?Sized>(&self, query: &str, params: &P) -> Result<String, Error> {
        if params.is_empty() {
            // With no parameters at all `%` is literal (Momoko issue 136).
            return Ok(query.to_owned());
        }
        params.render(query, &SEND_CONTEXT)
    }

    /// Runs `query` with psycopg2-style parameters (`%s`, `%(name)s`, `%%`) and resolves to a
    /// cursor holding the result of its last statement.
    pub fn execute<P: Params>(&self, query: &str, params: P) -> Future<Result<Cursor, Error>> {
        let (fut, done) = self.future();
        self.execute_cb(query, &params, done);
        fut
    }

    /// A future of this connection's loop and the callback that resolves it.
    fn future<T: 'static>(&self) -> (Future<T>, Box<dyn FnOnce(T)>) {
        let fut = Future::with_loop(&self.shared.ioloop);
        let f = fut.clone();
        (
            fut,
            Box::new(move |v| {
                let _ = f.set_result(v);
            }),
        )
    }

    /// `execute` with a completion callback instead of a future.
    pub(crate) fn execute_cb<P: Params + ?Sized>(
        &self,
        query: &str,
        params: &P,
        done: Done<Cursor>,
    ) {
        match self.render(query, params) {
            Ok(sql) => self.simple(
                sql,
                Box::new(move |r| done(r.and_then(|resp| to_cursor(String::new(), resp)))),
            ),
            Err(e) => done(Err(e)),
        }
    }

    /// Sends one simple-protocol query whose result goes to `cb`.
    pub(crate) fn simple(&self, sql: String, cb: Callback) {
        self.request(Request::Simple { query: sql }, cb);
    }

    pub(crate) fn request(&self, req: Request, cb: Callback) {
        {
            let mut raw = self.shared.raw.borrow_mut();
            match raw.as_mut() {
                Some(r) => r.request(req, cb),
                None => {
                    drop(raw);
                    cb(Err(Error::usage(
                        "the connection is not connected: call connect() first",
                    )));
                    return;
                }
            }
        }
        Shared::sync(&self.shared);
    }

    /// `SELECT 1 AS ping`: resolves once the server answered.
    pub fn ping(&self) -> Future<Result<(), Error>> {
        let (fut, done) = self.future();
        self.ping_cb(done);
        fut
    }

    pub(crate) fn ping_cb(&self, done: Done<()>) {
        self.simple(
            "SELECT 1 AS ping".to_owned(),
            Box::new(move |r| done(r.map(drop))),
        );
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
        let (query, values) = callproc_query(procname, params);
        self.execute_cb(&query, &values, done);
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
        let ctx = SEND_CONTEXT;
        let queries: Result<Vec<String>, Error> =
            statements.iter().map(|s| s.render(&ctx)).collect();
        let queries = match queries {
            Ok(q) if q.is_empty() => return done(Ok(Vec::new())),
            Ok(q) => q,
            Err(e) => return done(Err(e)),
        };
        let texts = queries.clone();
        self.request(
            Request::Batch { queries },
            Box::new(move |r| {
                done(r.and_then(|resp| {
                    match resp {
                        Response::Batch(results) => Ok(results
                            .into_iter()
                            .zip(texts)
                            .map(|(r, q)| result_cursor(q, r))
                            .collect()),
                        other => Err(Error::protocol(format!(
                            "expected a batch result, got {other:?}"
                        ))),
                    }
                }))
            }),
        );
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
        let ctx = SEND_CONTEXT;
        let rendered: Result<Vec<String>, Error> =
            statements.iter().map(|s| s.render(&ctx)).collect();
        let rendered = match rendered {
            Ok(r) => r,
            Err(e) => return done(Err(e)),
        };
        if auto_rollback {
            self.transaction_pipelined(rendered, done);
        } else {
            let tx = Rc::new(RefCell::new((rendered.into_iter(), Vec::new())));
            let conn = self.clone();
            self.simple(
                "BEGIN".to_owned(),
                Box::new(move |r| match r {
                    Ok(_) => transaction_step(conn, tx, done),
                    Err(e) => done(Err(e)),
                }),
            );
        }
    }

    /// BEGIN and the statements as one batch (one Sync), then COMMIT as a query of its own:
    /// two answers for the whole transaction. A failing statement makes the server skip
    /// the rest of the batch; the COMMIT of the failed transaction then rolls it back, so
    /// whatever is pipelined behind it runs outside it. A statement holding several
    /// commands, which a batch cannot take, sends the transaction again the simple way.
    fn transaction_pipelined(&self, rendered: Vec<String>, done: Done<Vec<Cursor>>) {
        let mut queries = Vec::with_capacity(rendered.len() + 1);
        queries.push("BEGIN".to_owned());
        queries.extend(rendered.iter().cloned());
        let batch: Rc<RefCell<Option<Result<Response, Error>>>> = Rc::default();
        let slot = batch.clone();
        self.request(
            Request::Batch { queries },
            Box::new(move |r| *slot.borrow_mut() = Some(r)),
        );
        let conn = self.clone();
        self.simple(
            "COMMIT".to_owned(),
            Box::new(move |commit| {
                let batch = batch.borrow_mut().take().expect("answered before COMMIT");
                match (batch, commit) {
                    (Err(e), _) if is_multiple_commands(&e) => {
                        conn.transaction_simple(rendered, done)
                    }
                    (Err(e), _) | (Ok(_), Err(e)) => done(Err(e)),
                    (Ok(Response::Batch(results)), Ok(_)) => done(Ok(results
                        .into_iter()
                        .skip(1)
                        .zip(rendered)
                        .map(|(r, q)| result_cursor(q, r))
                        .collect())),
                    (Ok(other), Ok(_)) => done(Err(Error::protocol(format!(
                        "expected a batch result, got {other:?}"
                    )))),
                }
            }),
        );
    }

    /// The transaction as separate simple queries, pipelined: BEGIN, each statement, COMMIT.
    fn transaction_simple(&self, rendered: Vec<String>, done: Done<Vec<Cursor>>) {
        struct Tx {
            cursors: Vec<Option<Cursor>>,
            error: Option<Error>,
        }
        let n = rendered.len();
        let tx = Rc::new(RefCell::new(Tx {
            cursors: (0..n).map(|_| None).collect(),
            error: None,
        }));
        let record_error = |tx: &Rc<RefCell<Tx>>, e: Error| {
            let mut t = tx.borrow_mut();
            t.error.get_or_insert(e);
        };
        let t = tx.clone();
        self.simple(
            "BEGIN".to_owned(),
            Box::new(move |r| {
                if let Err(e) = r {
                    record_error(&t, e);
                }
            }),
        );
        for (i, sql) in rendered.into_iter().enumerate() {
            let t = tx.clone();
            let query = sql.clone();
            self.simple(
                sql,
                Box::new(move |r| match r.and_then(|resp| to_cursor(query, resp)) {
                    Ok(c) => t.borrow_mut().cursors[i] = Some(c),
                    Err(e) => record_error(&t, e),
                }),
            );
        }
        let t = tx;
        let conn = self.clone();
        self.simple(
            "COMMIT".to_owned(),
            Box::new(move |r| {
                let mut t = t.borrow_mut();
                if let Err(e) = r {
                    t.error.get_or_insert(e);
                }
                let result = match t.error.take() {
                    Some(e) => {
                        // COMMIT of a failed transaction rolls it back; if the connection is
                        // somehow still inside one (the server never saw COMMIT), roll back.
                        if !conn.closed() && conn.transaction_status() != b'I' {
                            conn.simple("ROLLBACK".to_owned(), Box::new(|_| {}));
                        }
                        Err(e)
                    }
                    None => Ok(t
                        .cursors
                        .drain(..)
                        .map(|c| c.expect("every statement answered"))
                        .collect()),
                };
                drop(t);
                done(result);
            }),
        );
    }

    /// Prepares `query` (with `$1`, `$2`… parameters) on the server. The statement belongs
    /// to this connection; used after a reconnect or on another connection it is prepared
    /// again transparently.
    pub fn prepare(&self, query: &str) -> Future<Result<Prepared, Error>> {
        let (fut, done) = self.future();
        self.prepare_cb(query, done);
        fut
    }

    pub(crate) fn prepare_cb(&self, query: &str, done: Done<Prepared>) {
        let n = self.shared.next_statement.get() + 1;
        self.shared.next_statement.set(n);
        let name = format!("momoko_{n}");
        let (conn_id, session) = (self.shared_id(), self.shared.session.get());
        let types = self.shared.types.borrow().clone();
        let query = query.to_owned();
        let q = query.clone();
        let nm = name.clone();
        self.request(
            Request::Prepare {
                name,
                query,
                param_types: Vec::new(),
            },
            Box::new(move |r| {
                done(r.and_then(|resp| match resp {
                    Response::Prepared {
                        param_types,
                        columns,
                    } => {
                        let columns = columns.map(|c| binary_columns(&c, &types));
                        Ok(Prepared(Rc::new(PreparedInner {
                            query: q,
                            name: RefCell::new(Rc::from(nm)),
                            param_types,
                            result_formats: result_formats(&columns),
                            columns,
                            owner: Cell::new((conn_id, session)),
                        })))
                    }
                    other => Err(Error::protocol(format!(
                        "expected a prepared statement, got {other:?}"
                    ))),
                }))
            }),
        );
    }

    /// Runs a prepared statement with server-side parameters; results come back in binary
    /// form where momoko decodes it, in text otherwise.
    pub fn execute_prepared<P: Params>(
        &self,
        statement: &Prepared,
        params: P,
    ) -> Future<Result<Cursor, Error>> {
        let (fut, done) = self.future();
        self.execute_prepared_cb(statement, &params, done);
        fut
    }

    pub(crate) fn execute_prepared_cb<P: Params + ?Sized>(
        &self,
        statement: &Prepared,
        params: &P,
        done: Done<Cursor>,
    ) {
        let st = &statement.0;
        let values = match params.positional() {
            Ok(v) => v,
            Err(e) => return done(Err(e)),
        };
        if values.len() != st.param_types.len() {
            return done(Err(Error::usage(format!(
                "the statement takes {} parameter(s), {} given",
                st.param_types.len(),
                values.len()
            ))));
        }
        let (encoded, formats) = match encode_params(&values, &st.param_types) {
            Ok(x) => x,
            Err(e) => return done(Err(e)),
        };
        let here = (self.shared_id(), self.shared.session.get());
        let mut reprepare_error: Option<Rc<RefCell<Option<Error>>>> = None;
        if st.owner.get() != here {
            // Another session: prepare it again, pipelined just before the execution.
            let n = self.shared.next_statement.get() + 1;
            self.shared.next_statement.set(n);
            let name = format!("momoko_{n}");
            *st.name.borrow_mut() = Rc::from(name.as_str());
            st.owner.set(here);
            let slot: Rc<RefCell<Option<Error>>> = Rc::default();
            reprepare_error = Some(slot.clone());
            self.request(
                Request::Prepare {
                    name,
                    query: st.query.clone(),
                    param_types: st.param_types.clone(),
                },
                Box::new(move |r| {
                    if let Err(e) = r {
                        *slot.borrow_mut() = Some(e);
                    }
                }),
            );
        }
        let query = st.query.clone();
        self.request(
            Request::ExecutePrepared {
                statement: st.name.borrow().clone(),
                params: encoded,
                param_formats: formats,
                columns: st.columns.clone(),
                result_formats: st.result_formats.clone(),
                describe: false,
            },
            Box::new(move |r| {
                if let Some(e) = reprepare_error.and_then(|slot| slot.borrow_mut().take()) {
                    return done(Err(e));
                }
                done(r.and_then(|resp| to_cursor(query, resp)))
            }),
        );
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
        let values = match params.positional() {
            Ok(v) => v,
            Err(e) => return done(Err(e)),
        };
        let types: Vec<u32> = values.iter().map(Value::type_oid).collect();
        self.query_values(sql.to_owned(), values, types, true, done);
    }

    fn query_values(
        &self,
        sql: String,
        values: Vec<Value>,
        types: Vec<u32>,
        may_retry: bool,
        done: Done<Cursor>,
    ) {
        let session = self.shared.session.get();
        let cached = self.shared.cache.borrow_mut().get(&sql, &types, session);
        match cached {
            Some(st) => {
                let (encoded, formats) = match encode_params(&values, &st.param_types) {
                    Ok(x) => x,
                    Err(e) => return done(Err(e)),
                };
                let conn = self.clone();
                self.request(
                    Request::ExecutePrepared {
                        statement: st.name.clone(),
                        params: encoded,
                        param_formats: formats,
                        columns: st.columns.clone(),
                        result_formats: st.result_formats.clone(),
                        describe: false,
                    },
                    Box::new(move |r| match r {
                        Err(e) if may_retry && matches!(e.code(), Some("0A000" | "26000")) => {
                            conn.shared.cache.borrow_mut().remove(&sql, &types);
                            conn.query_values(sql, values, types, false, done);
                        }
                        r => done(r.and_then(|resp| to_cursor(sql, resp))),
                    }),
                );
            }
            None => {
                // Parse with the parameter types the values carry; unknown ones (NULL) are
                // left for the server to infer and sent as text.
                let (encoded, formats) = match encode_params(&values, &types) {
                    Ok(x) => x,
                    Err(e) => return done(Err(e)),
                };
                let n = self.shared.next_statement.get() + 1;
                self.shared.next_statement.set(n);
                let name = format!("momoko_q{n}");
                let weak = Rc::downgrade(&self.shared);
                let registry = self.shared.types.borrow().clone();
                let (key_sql, key_types, stmt_name) = (sql.clone(), types.clone(), name.clone());
                let prepare_error: Rc<RefCell<Option<Error>>> = Rc::default();
                let slot = prepare_error.clone();
                self.request(
                    Request::Prepare {
                        name: name.clone(),
                        query: sql.clone(),
                        param_types: types.clone(),
                    },
                    Box::new(move |r| {
                        let r = match r {
                            Err(e) => {
                                *slot.borrow_mut() = Some(e);
                                return;
                            }
                            Ok(r) => r,
                        };
                        let Some(shared) = weak.upgrade() else { return };
                        if let Response::Prepared {
                            param_types,
                            columns,
                        } = r
                        {
                            let evicted = shared.cache.borrow_mut().insert(key_sql, key_types, {
                                let columns = columns.map(|c| binary_columns(&c, &registry));
                                CachedStatement {
                                    name: Rc::from(stmt_name),
                                    param_types,
                                    result_formats: result_formats(&columns),
                                    columns,
                                    session,
                                }
                            });
                            if let Some(old) = evicted {
                                let conn = Shared::handle(&shared);
                                conn.request(
                                    Request::CloseStatement { name: old },
                                    Box::new(|_| {}),
                                );
                            }
                        }
                    }),
                );
                self.request(
                    Request::ExecutePrepared {
                        statement: Rc::from(name),
                        params: encoded,
                        param_formats: formats,
                        columns: None,
                        result_formats: Rc::from([]),
                        describe: true,
                    },
                    Box::new(move |r| {
                        // The statement's own error says more than "does not exist".
                        if let Some(e) = prepare_error.borrow_mut().take() {
                            return done(Err(e));
                        }
                        done(r.and_then(|resp| to_cursor(sql, resp)))
                    }),
                );
            }
        }
    }

    /// Drops a prepared statement on the server (a no-op when it was prepared in another
    /// session).
    pub fn close_prepared(&self, statement: &Prepared) -> Future<Result<(), Error>> {
        let (fut, done) = self.future();
        let here = (self.shared_id(), self.shared.session.get());
        if statement.0.owner.get() != here {
            done(Ok(()));
            return fut;
        }
        // Executing it again prepares it anew.
        statement.0.owner.set((0, 0));
        self.request(
            Request::CloseStatement {
                name: statement.0.name.borrow().to_string(),
            },
            Box::new(move |r| done(r.map(drop))),
        );
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
        let listener: Listener = Rc::new(RefCell::new(callback));
        self.shared
            .listeners
            .borrow_mut()
            .insert(channel.to_owned(), listener.clone());
        if let Some(raw) = self.shared.raw.borrow_mut().as_mut() {
            raw.set_listener(channel, Some(listener));
        }
        let me = self.clone();
        let ch = channel.to_owned();
        self.simple(
            format!("LISTEN {}", quote_ident(channel)),
            Box::new(move |r| {
                if r.is_err() {
                    me.forget_listener(&ch);
                }
                done(r.map(drop))
            }),
        );
        fut
    }

    /// Stops listening on `channel`.
    pub fn unlisten(&self, channel: &str) -> Future<Result<(), Error>> {
        let (fut, done) = self.future();
        self.forget_listener(channel);
        self.simple(
            format!("UNLISTEN {}", quote_ident(channel)),
            Box::new(move |r| done(r.map(drop))),
        );
        fut
    }

    fn forget_listener(&self, channel: &str) {
        self.shared.listeners.borrow_mut().remove(channel);
        if let Some(raw) = self.shared.raw.borrow_mut().as_mut() {
            raw.set_listener(channel, None);
        }
    }

    /// Asks the server to cancel the query this connection is running (a CancelRequest on a
    /// new socket). The query then fails with SQLSTATE 57014 and the connection stays
    /// usable. Resolves once the server took the request.
    pub fn cancel(&self) -> Future<Result<(), Error>> {
        let target = {
            let mut raw = self.shared.raw.borrow_mut();
            match raw.as_mut() {
                Some(r) => {
                    // Whatever is queued must reach the server before the cancel does.
                    r.flush();
                    let key = r.proto().and_then(|p| p.backend_key());
                    r.peer().cloned().zip(key).map(|t| (t, r.head_sequence()))
                }
                None => None,
            }
        };
        match target {
            Some(((peer, (pid, secret)), head)) => {
                let timeout = self
                    .shared
                    .options
                    .connect_timeout
                    .unwrap_or(Duration::from_secs(10));
                let fut = crate::cancel::cancel(&self.shared.ioloop, &peer, pid, secret, timeout);
                if let Some(head) = head {
                    // A backend still reading its next command ignores a cancel, and the
                    // query may reach it just after our request did: while that same
                    // request is still running, ask again a few times.
                    let weak = Rc::downgrade(&self.shared);
                    let retry = move |_: &Future<Result<(), Error>>| {
                        Shared::cancel_again(weak, peer, (pid, secret), head, timeout, 20);
                    };
                    fut.add_done_callback(retry);
                }
                fut
            }
            None => {
                let (fut, done) = self.future();
                done(Err(Error::connection(
                    "the connection is not established: nothing to cancel",
                )));
                fut
            }
        }
    }

    /// `COPY … FROM STDIN` with the data given whole; resolves to the number of rows copied.
    /// A bad row fails the call with the server's error and leaves the connection usable.
    pub fn copy_in(&self, query: &str, data: impl Into<Bytes>) -> Future<Result<u64, Error>> {
        let data: Bytes = data.into();
        self.copy_in_chunks(query, std::iter::once(data))
    }

    /// `COPY … FROM STDIN` with the data pulled chunk by chunk as the socket takes it, so a
    /// large COPY never sits in memory whole.
    pub fn copy_in_chunks<I>(&self, query: &str, chunks: I) -> Future<Result<u64, Error>>
    where
        I: IntoIterator + 'static,
        I::Item: Into<Bytes>,
    {
        let source = CopySource(Box::new(chunks.into_iter().map(|c| Ok(c.into()))));
        self.copy_in_source(query, source)
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
        self.request(
            Request::CopyIn {
                query: query.to_owned(),
                source,
            },
            Box::new(move |r| done(r.and_then(copy_count))),
        );
        fut
    }

    /// `COPY … TO STDOUT`: `sink` gets the data as it arrives; resolves to the row count.
    pub fn copy_out(
        &self,
        query: &str,
        sink: impl FnMut(&[u8]) + 'static,
    ) -> Future<Result<u64, Error>> {
        let (fut, done) = self.future();
        let sink: crate::raw::CopySink = Rc::new(RefCell::new(sink));
        {
            let mut raw = self.shared.raw.borrow_mut();
            match raw.as_mut() {
                Some(r) => r.request_copy_out(
                    Request::CopyOut {
                        query: query.to_owned(),
                    },
                    sink,
                    Box::new(move |r| done(r.and_then(copy_count))),
                ),
                None => {
                    drop(raw);
                    done(Err(Error::usage(
                        "the connection is not connected: call connect() first",
                    )));
                    return fut;
                }
            }
        }
        Shared::sync(&self.shared);
        fut
    }

    /// Registers hstore for this connection (and its reconnects): hstore values decode to
    /// `HashMap<String, Option<String>>` and `Value::Hstore`.
    pub fn register_hstore(&self) -> Future<Result<(), Error>> {
        let (fut, done) = self.future();
        let conn = self.clone();
        self.hstore_oids_cb(Box::new(move |r| {
            done(r.map(|(oid, arr)| conn.set_hstore_oids(oid, arr)))
        }));
        fut
    }

    /// Looks up hstore's OIDs (they differ from database to database).
    pub(crate) fn hstore_oids_cb(&self, done: Done<(u32, u32)>) {
        self.simple(
            "SELECT 'hstore'::regtype::oid AS hstore_oid, 'hstore[]'::regtype::oid AS hstore_arr_oid"
                .to_owned(),
            Box::new(move |r| {
                done(r.and_then(|resp| {
                    let mut c = to_cursor(String::new(), resp)?;
                    let row = c
                        .fetchone()
                        .ok_or_else(|| Error::protocol("no row for the hstore OIDs"))?;
                    let oid: i64 = row.try_get(0)?;
                    let arr: i64 = row.try_get(1)?;
                    Ok((oid as u32, arr as u32))
                }))
            }),
        );
    }

    /// Decodes hstore from now on, on this session and every later reconnect.
    pub(crate) fn set_hstore_oids(&self, oid: u32, array_oid: u32) {
        self.shared
            .types
            .borrow_mut()
            .register_hstore(oid, array_oid);
        if let Some(p) = self
            .shared
            .raw
            .borrow_mut()
            .as_mut()
            .and_then(|r| r.proto_mut())
        {
            p.types_mut().register_hstore(oid, array_oid);
        }
    }

    /// Checks that json exists on the server. JSON and JSONB always decode to
    /// `serde_json::Value`; this call is kept for Momoko compatibility.
    pub fn register_json(&self) -> Future<Result<(), Error>> {
        let (fut, done) = self.future();
        self.register_json_cb(done);
        fut
    }

    pub(crate) fn register_json_cb(&self, done: Done<()>) {
        self.simple(
            "SELECT 'json'::regtype::oid AS json_oid, 'json[]'::regtype::oid AS json_arr_oid"
                .to_owned(),
            Box::new(move |r| done(r.map(drop))),
        );
    }

    /// Closes the connection: everything in flight fails with a Connection error, the socket
    /// is closed and deregistered. Harmless on a closed connection.
    pub fn close(&self) {
        self.close_with(Error::connection("the connection was closed by the client"));
    }

    /// Closes the connection, failing what is in flight with `reason`.
    pub(crate) fn close_with(&self, reason: Error) {
        Shared::close(&self.shared, reason);
    }

    /// An identity stable while the connection lives (the pool's key).
    pub(crate) fn shared_id(&self) -> usize {
        Rc::as_ptr(&self.shared) as usize
    }

    /// Runs `hook` when this connection, once established, is lost or closed.
    pub(crate) fn on_close(&self, hook: Rc<dyn Fn(&Error)>) {
        self.shared.on_close.borrow_mut().push(hook);
    }

    /// Whether two handles are the same connection.
    pub fn same(&self, other: &Connection) -> bool {
        Rc::ptr_eq(&self.shared, &other.shared)
    }
}

fn transaction_step(
    conn: Connection,
    tx: Rc<RefCell<(std::vec::IntoIter<String>, Vec<Cursor>)>>,
    done: Done<Vec<Cursor>>,
) {
    let next = tx.borrow_mut().0.next();
    match next {
        Some(sql) => {
            let query = sql.clone();
            let c = conn.clone();
            conn.simple(
                sql,
                Box::new(move |r| match r.and_then(|resp| to_cursor(query, resp)) {
                    Ok(cursor) => {
                        tx.borrow_mut().1.push(cursor);
                        transaction_step(c, tx, done);
                    }
                    Err(e) => done(Err(e)),
                }),
            );
        }
        None => {
            conn.simple(
                "COMMIT".to_owned(),
                Box::new(move |r| {
                    let cursors = std::mem::take(&mut tx.borrow_mut().1);
                    done(r.map(|_| cursors));
                }),
            );
        }
    }
}

/// The query and the parameter values psycopg2's callproc would build.
fn callproc_query<P: Params + ?Sized>(procname: &str, params: &P) -> (String, ParamValues) {
    let values = params.to_values();
    let args = match &values {
        ParamValues::Positional(v) => vec!["%s"; v.len()].join(","),
        ParamValues::Named(m) => m
            .keys()
            .map(|k| format!("{k}:=%({k})s"))
            .collect::<Vec<_>>()
            .join(","),
    };
    (format!("SELECT * FROM {procname}({args})"), values)
}

/// Whether the server refused a statement because it holds several commands (the
/// extended protocol takes one per Parse).
fn is_multiple_commands(e: &Error) -> bool {
    e.as_db_error()
        .is_some_and(|d| d.code == "42601" && d.message.contains("cannot insert multiple commands"))
}

/// Builds the cursor for one statement's result; `query` names it when the result does not
/// carry its own text (only simple queries do).
fn result_cursor(query: String, mut r: crate::proto::QueryResult) -> Cursor {
    let query = if r.query.is_empty() {
        query
    } else {
        std::mem::take(&mut r.query)
    };
    let rowcount = match &r.tag {
        Some(tag) => crate::row::rowcount_from_tag(tag),
        None => -1,
    };
    Cursor::new(query, r.columns, r.rows, rowcount, r.tag)
}

/// Builds the cursor for a query's response.
pub(crate) fn to_cursor(query: String, resp: Response) -> Result<Cursor, Error> {
    match resp {
        Response::Query(r) => Ok(result_cursor(query, r)),
        other => Err(Error::protocol(format!(
            "expected a query result, got {other:?}"
        ))),
    }
}

/// A completion callback of a connection or pool operation.
pub(crate) type Done<T> = Box<dyn FnOnce(Result<T, Error>)>;

/// A statement prepared with [`Connection::prepare`].
#[derive(Clone)]
pub struct Prepared(Rc<PreparedInner>);

struct PreparedInner {
    query: String,
    name: RefCell<Rc<str>>,
    param_types: Vec<u32>,
    columns: Option<Arc<[Column]>>,
    result_formats: Rc<[i16]>,
    /// The connection and session it is prepared in.
    owner: Cell<(usize, u64)>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("query", &self.0.query)
            .field("name", &self.0.name.borrow())
            .field("param_types", &self.0.param_types)
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// The query text.
    pub fn query(&self) -> &str {
        &self.0.query
    }
    /// The parameter types the server inferred (OIDs).
    pub fn param_types(&self) -> &[u32] {
        &self.0.param_types
    }
    /// The result columns, or `None` for a statement without a result set.
    pub fn columns(&self) -> Option<&[Column]> {
        self.0.columns.as_deref()
    }
}

/// A statement prepared by [`Connection::query`].
#[derive(Clone)]
struct CachedStatement {
    name: Rc<str>,
    param_types: Vec<u32>,
    columns: Option<Arc<[Column]>>,
    result_formats: Rc<[i16]>,
    session: u64,
}

/// The per-connection cache of [`Connection::query`]: bounded, oldest entry evicted first.
#[derive(Default)]
struct StatementCache {
    map: HashMap<(String, Vec<u32>), CachedStatement>,
    order: std::collections::VecDeque<(String, Vec<u32>)>,
}

/// Statements kept per connection by `query`.
const STATEMENT_CACHE_SIZE: usize = 256;

impl StatementCache {
    fn get(&mut self, sql: &str, types: &[u32], session: u64) -> Option<CachedStatement> {
        let key = (sql.to_owned(), types.to_vec());
        match self.map.get(&key) {
            Some(st) if st.session == session => Some(st.clone()),
            Some(_) => {
                // Prepared in an earlier session: gone from the server.
                self.remove(sql, types);
                None
            }
            None => None,
        }
    }

    /// Inserts; returns the name of an evicted statement to close on the server.
    fn insert(&mut self, sql: String, types: Vec<u32>, st: CachedStatement) -> Option<String> {
        let key = (sql, types);
        if let Some(previous) = self.map.insert(key.clone(), st) {
            // Two first uses raced: keep the newer, close the older.
            return Some(previous.name.to_string());
        }
        self.order.push_back(key);
        if self.order.len() > STATEMENT_CACHE_SIZE {
            let old = self.order.pop_front()?;
            return self.map.remove(&old).map(|s| s.name.to_string());
        }
        None
    }

    fn remove(&mut self, sql: &str, types: &[u32]) {
        let key = (sql.to_owned(), types.to_vec());
        self.map.remove(&key);
        self.order.retain(|k| *k != key);
    }
}

/// The result formats Bind asks for: one per column, computed once per statement.
fn result_formats(columns: &Option<Arc<[Column]>>) -> Rc<[i16]> {
    columns
        .as_ref()
        .map(|c| c.iter().map(Column::format).collect())
        .unwrap_or_else(|| Rc::from([]))
}

/// Types whose binary form momoko decodes: results of prepared statements come back binary
/// for these and as text for everything else.
fn binary_decodable(oid: u32) -> bool {
    matches!(
        oid,
        16 | 17
            | 18
            | 19
            | 20
            | 21
            | 23
            | 25
            | 26
            | 114
            | 700
            | 701
            | 1042
            | 1043
            | 1082
            | 1083
            | 1114
            | 1184
            | 1700
            | 2950
            | 3802
            | 1000
            | 1001
            | 1005
            | 1007
            | 1009
            | 1015
            | 1016
            | 1021
            | 1022
    )
}

fn binary_columns(columns: &[Column], types: &TypeRegistry) -> Arc<[Column]> {
    columns
        .iter()
        .map(|c| {
            let format = i16::from(binary_decodable(c.type_oid()));
            let mut col = Column::new(
                c.name().to_owned(),
                c.table_oid(),
                c.column_id(),
                c.type_oid(),
                c.type_size(),
                c.type_modifier(),
                format,
            );
            col.resolve(types);
            col
        })
        .collect()
}

/// Encodes parameters for Bind: binary where the type allows it, text otherwise.
#[allow(clippy::type_complexity)]
fn encode_params(values: &[Value], types: &[u32]) -> Result<(Vec<Option<Bytes>>, Vec<i16>), Error> {
    let mut buf = BytesMut::new();
    let mut out = Vec::with_capacity(values.len());
    let mut formats = Vec::with_capacity(values.len());
    for (v, &oid) in values.iter().zip(types) {
        let (format, is_null) = v.encode(oid, &mut buf)?;
        let bytes = buf.split().freeze();
        formats.push(format as i16);
        out.push(match is_null {
            crate::types::IsNull::Yes => None,
            crate::types::IsNull::No => Some(bytes),
        });
    }
    Ok((out, formats))
}

/// Quotes a name as an SQL identifier ("" doubled).
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The row count of a COPY from its command tag ("COPY 42").
fn copy_count(resp: Response) -> Result<u64, Error> {
    match resp {
        Response::Query(r) => Ok(r
            .tag
            .as_deref()
            .and_then(|t| t.strip_prefix("COPY "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)),
        other => Err(Error::protocol(format!(
            "expected a COPY result, got {other:?}"
        ))),
    }
}

impl Shared {
    /// A user handle, sharing the one token while any handle lives.
    fn handle(this: &Rc<Shared>) -> Connection {
        let existing = this.user.borrow().upgrade();
        let user = match existing {
            Some(u) => u,
            None => {
                let u = Rc::new(UserToken(this.clone()));
                *this.user.borrow_mut() = Rc::downgrade(&u);
                this.abandoned.set(false);
                u
            }
        };
        Connection {
            shared: this.clone(),
            _user: user,
        }
    }

    /// Sends the cancel again after a short wait if request `head` is still the one running.
    fn cancel_again(
        weak: Weak<Shared>,
        peer: crate::raw::Peer,
        key: (i32, i32),
        head: u64,
        timeout: Duration,
        tries: u32,
    ) {
        let Some(shared) = weak.upgrade() else { return };
        if tries == 0 {
            return;
        }
        let lp = shared.ioloop.clone();
        drop(shared);
        lp.clone().call_later(Duration::from_millis(50), move || {
            let Some(shared) = weak.upgrade() else { return };
            let still = shared
                .raw
                .borrow()
                .as_ref()
                .is_some_and(|r| r.head_sequence() == Some(head));
            if !still {
                return;
            }
            let f = crate::cancel::cancel(&lp, &peer, key.0, key.1, timeout);
            f.add_done_callback(move |_| {
                Shared::cancel_again(weak, peer, key, head, timeout, tries - 1);
            });
        });
    }

    fn on_ready(this: &Rc<Shared>, ready: Ready) {
        if let Some(raw) = this.raw.borrow_mut().as_mut() {
            raw.handle_ready(
                ready.readable || ready.read_closed,
                ready.writable,
                ready.error,
                Instant::now(),
            );
        }
        Shared::sync(this);
    }

    fn on_timer(this: &Rc<Shared>) {
        this.reg.borrow_mut().timer = None;
        if let Some(raw) = this.raw.borrow_mut().as_mut() {
            raw.handle_timeout(Instant::now());
        }
        Shared::sync(this);
    }

    fn flush_now(this: &Rc<Shared>) {
        this.reg.borrow_mut().flush_scheduled = false;
        if let Some(raw) = this.raw.borrow_mut().as_mut() {
            raw.flush();
            raw.process_events(Instant::now());
        }
        Shared::sync(this);
    }

    fn close(this: &Rc<Shared>, reason: Error) {
        if let Some(raw) = this.raw.borrow_mut().as_mut() {
            raw.close(reason, Instant::now());
        }
        Shared::sync(this);
    }

    fn close_if_abandoned(this: &Rc<Shared>) {
        if !this.abandoned.get() {
            return;
        }
        let idle = this
            .raw
            .borrow()
            .as_ref()
            .is_some_and(|r| r.phase() == Phase::Ready && r.pending() == 0);
        if idle {
            Shared::close(this, Error::connection("the connection was dropped"));
        }
    }

    /// Brings the loop registration, the timer and the write scheduling in line with the
    /// raw connection, then runs its actions with no borrow held.
    fn sync(this: &Rc<Shared>) {
        let actions = {
            let mut raw_slot = this.raw.borrow_mut();
            let Some(raw) = raw_slot.as_mut() else { return };
            let mut reg = this.reg.borrow_mut();
            if reg.generation != raw.socket_generation() {
                if let Some(id) = reg.handler.take() {
                    this.ioloop.forget_handler(id);
                }
                reg.generation = raw.socket_generation();
                if let Some(socket) = raw.source() {
                    let me = this.clone();
                    let added = this.ioloop.add_handler(
                        socket,
                        mio::Interest::READABLE | mio::Interest::WRITABLE,
                        move |ready| Shared::on_ready(&me, ready),
                    );
                    match added {
                        Ok(id) => reg.handler = Some(id),
                        Err(e) => {
                            raw.close(Error::io("cannot watch the socket", e), Instant::now())
                        }
                    }
                }
            }
            let want = raw.next_deadline();
            let have = reg.timer.map(|(_, at)| at);
            if want != have {
                if let Some((id, _)) = reg.timer.take() {
                    this.ioloop.remove_timeout(id);
                }
                if let Some(at) = want {
                    let me = this.clone();
                    let id = this.ioloop.call_at(at, move || Shared::on_timer(&me));
                    reg.timer = Some((id, at));
                }
            }
            // Writes wait for the next turn of the loop: every request of this turn goes
            // out in one write, and the poll in between notices a connection that died
            // while idle before a request is written into it (so a pool may retry safely).
            if raw.wants_write() && !reg.flush_scheduled {
                reg.flush_scheduled = true;
                let me = this.clone();
                this.ioloop.add_callback(move || Shared::flush_now(&me));
            }
            raw.take_actions()
        };
        if actions.is_empty() {
            return;
        }
        for action in actions.into_iter().filter_map(Action::deliver) {
            match action {
                Action::Complete(cb, result) => cb(result),
                // Already run by `Action::deliver`.
                Action::Notify(..) | Action::Notice(..) | Action::CopyData(..) => {}
                Action::Cancel => {
                    let conn = Shared::handle(this);
                    let f = conn.cancel();
                    this.ioloop.add_future(&f, |f| {
                        if let Some(Err(e)) = f.take() {
                            log::warn!("cancelling a timed-out query failed: {e}");
                        }
                    });
                }
                Action::Connected(result) => {
                    if result.is_ok() {
                        this.session.set(this.session.get() + 1);
                        let v = this
                            .raw
                            .borrow()
                            .as_ref()
                            .and_then(|r| r.proto())
                            .and_then(|p| p.server_version());
                        this.server_version.set(v);
                    }
                    let waiters = std::mem::take(&mut *this.connect_waiters.borrow_mut());
                    for f in waiters {
                        let r = match &result {
                            Ok(()) => Ok(Shared::handle(this)),
                            Err(e) => Err(e.clone()),
                        };
                        let _ = f.set_result(r);
                    }
                }
                Action::Closed(e) => {
                    log::debug!("connection closed: {e}");
                    let hooks: Vec<_> = this.on_close.borrow().clone();
                    for h in hooks {
                        h(&e);
                    }
                }
            }
        }
        // Callbacks may have queued more work or given up the last handle.
        Shared::close_if_abandoned(this);
        Shared::sync(this);
    }
}
