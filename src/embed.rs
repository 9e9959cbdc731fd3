//! Embedding: the session driver for a program that owns its own `mio::Poll`.
//!
//! [`MioConnection`] is the same session as [`crate::Connection`] without the `IoLoop`: the
//! program registers it under a `Token` of its choosing, forwards the events of that token
//! and the connection's deadline, and calls [`MioConnection::dispatch`] once per turn of its
//! loop, which writes what was queued and runs callbacks. It offers the whole operation set
//! (the same `session/ops` as `Connection`). Callbacks run from `dispatch` with no borrow of
//! the connection held, so a callback may issue further requests on a clone of its handle;
//! they are delivered in request order; a request that fails before it is sent (a bad
//! parameter, a closed connection) is answered from `dispatch` too, never inside the call.
//! [`MioConnection::builder`] takes the options `Connection` has (the same
//! [`ConnectionBuilder`]). It owns no timer and no poll of its own and never blocks the
//! program's thread: a CancelRequest goes out from a short-lived helper thread. Delivery,
//! cancel and the accessors are the shared ones of `driver/`.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::{Interest, Registry, Token};

use crate::driver::ops as observed;
use crate::driver::{CancelTarget, Driver, UserToken};
use crate::error::Error;
use crate::params::Params;
use crate::proto::CopySource;
use crate::row::{Cursor, Row};
use crate::session::ops::{self, Done, Statement};
use crate::session::{Core, Drive, Notification, Options};
use crate::{ConnectionBuilder, Prepared};

/// How often `next_deadline` asks to be called back while a cancel is under way on its
/// helper thread (its answer cannot wake the program's poll).
const CANCEL_POLL: Duration = Duration::from_millis(10);

/// A PostgreSQL connection for a program that runs its own mio loop. See the module docs
/// and `examples/custom_mio_loop.rs`.
///
/// A cheap handle: clones share one connection, so a callback can hold one and issue more
/// requests. When the last handle is dropped the connection is closed.
#[derive(Clone)]
pub struct MioConnection {
    core: Rc<Core<MioDriver>>,
    _user: Rc<UserToken<MioDriver>>,
}

/// The program's side of one connection: its token and registry, delivery, cancels.
pub(crate) struct MioDriver {
    /// See [`ConnectionBuilder::poll_before_write`].
    poll_before_write: bool,
    /// With `poll_before_write`: whether this turn of `dispatch` may still write, that is
    /// whether the program polled since the last write.
    may_write: Cell<bool>,
    token: Cell<Option<Token>>,
    registry: RefCell<Option<Registry>>,
    registered: Cell<u64>,
    on_connect: RefCell<Option<Done<()>>>,
    delivering: Cell<bool>,
    cancels: RefCell<Vec<CancelTask>>,
    /// Library code to run once its instant has passed (a cancel asked again), from
    /// `dispatch`; `next_deadline` includes the earliest.
    later: RefCell<Vec<Later>>,
    /// The error of a failed re-registration, reported from `dispatch`.
    register_error: RefCell<Option<io::Error>>,
}

/// Library code due at an instant (see `Driver::call_later`).
type Later = (Instant, Box<dyn FnOnce()>);

/// A CancelRequest under way on a helper thread.
struct CancelTask {
    answer: mpsc::Receiver<Result<(), Error>>,
    done: Done<()>,
}

impl Drive for MioDriver {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wake(core: &Rc<Core<Self>>) {
        // Delivery is the program's `dispatch`; only a replaced socket needs doing now.
        sync_registration(core);
    }
}

impl Driver for MioDriver {
    fn delivering(&self) -> &Cell<bool> {
        &self.delivering
    }

    /// Writes what is queued (requests that callbacks made go out in the same `dispatch`,
    /// unless they must wait for the program's next poll) and registers a replaced socket.
    fn turn(core: &Rc<Core<Self>>) {
        if core.driver.may_write.get() {
            core.pump();
            // Written: what callbacks queue next waits for the next poll.
            core.driver.may_write.set(!core.driver.poll_before_write);
        } else {
            core.with_mut(|s| s.process_events(core.driver.now()));
        }
        sync_registration(core);
    }

    fn connected(core: &Rc<Core<Self>>, result: Result<(), Error>) {
        let cb = core.driver.on_connect.borrow_mut().take();
        if let Some(cb) = cb {
            cb.call(result);
        }
    }

    /// A CancelRequest from a short-lived helper thread (blocking sockets bounded by the
    /// target's timeout): the program's poll cannot watch a second socket for us.
    fn send_cancel(core: &Rc<Core<Self>>, target: &CancelTarget, done: Done<()>) {
        let (tx, rx) = mpsc::channel();
        let t = target.clone();
        let spawned = std::thread::Builder::new()
            .name("momoko-cancel".into())
            .spawn(move || {
                let r = crate::cancel::cancel_blocking(&t.peer, &t.key, t.timeout, t.tls.as_ref());
                let _ = tx.send(r);
            });
        match spawned {
            Ok(_) => core
                .driver
                .cancels
                .borrow_mut()
                .push(CancelTask { answer: rx, done }),
            Err(e) => core.answer_later(
                done,
                Err(Error::io("could not start the cancel request", e)),
            ),
        }
    }

    fn call_later(core: &Rc<Core<Self>>, delay: Duration, f: Box<dyn FnOnce()>) {
        let at = core.driver.now() + delay;
        core.driver.later.borrow_mut().push((at, f));
    }

    /// From `dispatch`'s `call_later` queue, due at once: `next_deadline` says so.
    fn read_again(core: &Rc<Core<Self>>) {
        let weak = Rc::downgrade(core);
        MioDriver::call_later(
            core,
            Duration::ZERO,
            Box::new(move || {
                if let Some(core) = weak.upgrade() {
                    core.with_mut(|s| s.handle_ready(true, false, false, false, core.driver.now()));
                    sync_registration(&core);
                }
            }),
        );
    }

    /// The connection closes at once; callbacks that can no longer be delivered are
    /// dropped with no borrow held.
    fn abandoned(core: &Rc<Core<Self>>) {
        let e = Error::connection("the connection was dropped");
        core.with_mut(|s| s.close(e, core.driver.now()));
        if !core.driver.delivering.get() {
            let actions = core.with_mut(|s| s.take_actions());
            drop(actions);
        }
    }
}

impl std::fmt::Debug for MioConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MioConnection")
            .field("id", &self.core.id)
            .field("session", &*self.core.session.borrow())
            .field("token", &self.core.driver.token.get())
            .finish_non_exhaustive()
    }
}

/// Registers a new socket (a connect, a move to the next host) with the program's registry.
fn sync_registration(core: &Rc<Core<MioDriver>>) {
    let d = &core.driver;
    let Some(token) = d.token.get() else { return };
    let mut s = core.session.borrow_mut();
    let generation = s.socket_generation();
    if d.registered.get() == generation {
        return;
    }
    d.registered.set(generation);
    let registry = d.registry.borrow();
    let (Some(registry), Some(socket)) = (registry.as_ref(), s.source()) else {
        // A replaced socket was closed, which removed it from the poll.
        return;
    };
    if let Err(e) = registry.register(socket, token, Interest::READABLE | Interest::WRITABLE) {
        let msg = format!("cannot register the socket: {e}");
        s.close(
            Error::io("cannot register the socket", e),
            core.driver.now(),
        );
        *d.register_error.borrow_mut() = Some(io::Error::other(msg));
    }
}

impl MioConnection {
    /// Starts connecting to `dsn` (libpq's forms); nothing blocks. Register the connection
    /// with [`MioConnection::register`] before polling. `on_connect` runs from `dispatch`
    /// once the connection is ready or has failed.
    pub fn connect(dsn: &str, on_connect: impl FnOnce(Result<(), Error>) + 'static) -> Self {
        MioConnection::connect_with(dsn.to_owned(), Options::default(), None, on_connect)
    }

    /// A builder for options beyond the connection string (the same as
    /// [`Connection::builder`](crate::Connection::builder)); finish it with
    /// [`ConnectionBuilder::build_mio`].
    pub fn builder(dsn: &str) -> ConnectionBuilder {
        crate::Connection::builder(dsn)
    }

    /// A connection with `options`, connecting at once unless `refused` says why it must
    /// not (then it stays closed and `on_connect` gets that error from `dispatch`).
    pub(crate) fn connect_with(
        dsn: String,
        options: Options,
        refused: Option<Error>,
        on_connect: impl FnOnce(Result<(), Error>) + 'static,
    ) -> Self {
        let driver = MioDriver {
            poll_before_write: options.poll_before_write,
            may_write: Cell::new(true),
            token: Cell::new(None),
            registry: RefCell::new(None),
            registered: Cell::new(0),
            on_connect: RefCell::new(None),
            delivering: Cell::new(false),
            cancels: RefCell::new(Vec::new()),
            later: RefCell::new(Vec::new()),
            register_error: RefCell::new(None),
        };
        let core = Core::new(dsn, options, driver);
        let conn = MioConnection {
            _user: Rc::new(UserToken(core.clone())),
            core,
        };
        match refused {
            Some(e) => conn.core.answer_later(Done::new(on_connect), Err(e)),
            None => conn.reconnect(on_connect),
        }
        conn
    }

    /// Connects again after the connection was closed or lost (listeners are kept and
    /// LISTEN issued again); `on_connect` runs from `dispatch`. On a connection that is
    /// connecting or connected, `on_connect` gets a Usage error.
    pub fn reconnect(&self, on_connect: impl FnOnce(Result<(), Error>) + 'static) {
        if !self.core.with(|s| s.is_closed()) {
            let e = Error::usage("the connection is already connected or connecting");
            // Delivered from dispatch like every other callback.
            return self.core.answer_later(Done::new(on_connect), Err(e));
        }
        *self.core.driver.on_connect.borrow_mut() = Some(Done::new(on_connect));
        self.core.with_mut(|s| s.connect(self.core.driver.now()));
        sync_registration(&self.core);
    }

    /// Registers the socket under `token` for readable and writable events. Call it once;
    /// the connection registers a replacement socket itself (with a clone of `registry`)
    /// when it moves to another host or reconnects.
    pub fn register(&self, registry: &Registry, token: Token) -> io::Result<()> {
        let d = &self.core.driver;
        d.token.set(Some(token));
        *d.registry.borrow_mut() = Some(registry.try_clone()?);
        d.registered.set(u64::MAX);
        sync_registration(&self.core);
        match d.register_error.borrow_mut().take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Handles an event of this connection's token.
    pub fn handle_event(&self, registry: &Registry, event: &mio::event::Event) {
        let _ = registry;
        self.core.with_mut(|s| {
            s.handle_ready(
                event.is_readable(),
                event.is_writable(),
                event.is_error(),
                event.is_read_closed(),
                self.core.driver.now(),
            )
        });
        self.core.driver.may_write.set(true);
        self.core.pump_copy();
        sync_registration(&self.core);
    }

    /// The instant by which [`MioConnection::handle_timeout`] (and `dispatch`) must be
    /// called (a connect timeout, a query timeout, a cancel under way), if any: use it to
    /// bound the poll's timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        let d = &self.core.driver;
        let (own, resolving) = self.core.with(|s| (s.next_deadline(), s.is_resolving()));
        let later = d.later.borrow().iter().map(|(at, _)| *at).min();
        let own = match (own, later) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // Requests wait for the program's next poll: one right away.
        if d.poll_before_write && self.core.with(|s| s.wants_write()) {
            return Some(self.core.driver.now());
        }
        // A name lookup or a cancel runs on a helper thread: look for its answer soon.
        if d.cancels.borrow().is_empty() && !resolving {
            return own;
        }
        let soon = self.core.driver.now() + CANCEL_POLL;
        Some(own.map_or(soon, |d| d.min(soon)))
    }

    /// Handles deadlines that have passed.
    pub fn handle_timeout(&self, registry: &Registry, now: Instant) {
        let _ = registry;
        self.core.with_mut(|s| {
            s.poll_resolved(now);
            s.handle_timeout(now);
        });
        // Called after the program's poll: what waits for one may be written.
        self.core.driver.may_write.set(true);
        sync_registration(&self.core);
    }

    /// Writes what is queued and runs every finished callback, in request order. Call it
    /// once per turn of your loop (after handling events and timeouts). Requests that
    /// callbacks make are sent and, if already answered, delivered in the same call. Returns
    /// how many callbacks ran. Called from inside a callback it only writes.
    pub fn dispatch(&self, registry: &Registry) -> usize {
        let _ = registry;
        let core = &self.core;
        if core.driver.delivering.get() {
            if core.driver.may_write.get() {
                core.pump();
            }
            return 0;
        }
        if !core.driver.poll_before_write {
            core.driver.may_write.set(true);
        }
        if core.with(|s| s.is_resolving()) {
            core.with_mut(|s| s.poll_resolved(core.driver.now()));
            sync_registration(core);
        }
        self.poll_cancels();
        core.deliver().unwrap_or(0)
    }

    /// Queues the answers of cancels whose helper thread answered, and runs what
    /// `call_later` set for now or before.
    fn poll_cancels(&self) {
        let d = &self.core.driver;
        let finished: Vec<(CancelTask, Result<(), Error>)> = {
            let mut cancels = d.cancels.borrow_mut();
            let mut out = Vec::new();
            let mut i = 0;
            while i < cancels.len() {
                match cancels[i].answer.try_recv() {
                    Ok(r) => out.push((cancels.swap_remove(i), r)),
                    Err(mpsc::TryRecvError::Empty) => i += 1,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        let e = Error::connection("the cancel request's thread ended");
                        out.push((cancels.swap_remove(i), Err(e)));
                    }
                }
            }
            out
        };
        for (task, r) in finished {
            self.core.answer_later(task.done, r);
        }
        let now = self.core.driver.now();
        let due: Vec<Box<dyn FnOnce()>> = {
            let mut later = d.later.borrow_mut();
            let (due, kept) = later.drain(..).partition(|(at, _)| *at <= now);
            *later = kept;
            due.into_iter().map(|(_, f)| f).collect::<Vec<_>>()
        };
        for f in due {
            f();
        }
    }

    // ---- the operations: each callback runs from `dispatch` ----

    /// Queues a query (psycopg2 parameters); `callback` gets its cursor from `dispatch`.
    pub fn execute<P: Params>(
        &self,
        query: &str,
        params: P,
        callback: impl FnOnce(Result<Cursor, Error>) + 'static,
    ) {
        observed::execute(&self.core, query, &params, Done::new(callback));
    }

    /// `SELECT 1 AS ping`.
    pub fn ping(&self, callback: impl FnOnce(Result<(), Error>) + 'static) {
        ops::execute::ping(&self.core, Done::new(callback));
    }

    /// psycopg2's `callproc`.
    pub fn callproc<P: Params>(
        &self,
        procname: &str,
        params: P,
        callback: impl FnOnce(Result<Cursor, Error>) + 'static,
    ) {
        observed::callproc(&self.core, procname, &params, Done::new(callback));
    }

    /// A transaction: one cursor per statement, rolled back on any error.
    pub fn transaction<S: Into<Statement>>(
        &self,
        statements: Vec<S>,
        callback: impl FnOnce(Result<Vec<Cursor>, Error>) + 'static,
    ) {
        self.transaction_with(statements, true, callback);
    }

    /// A transaction with Momoko's `auto_rollback` flag (see `Connection::transaction_with`).
    pub fn transaction_with<S: Into<Statement>>(
        &self,
        statements: Vec<S>,
        auto_rollback: bool,
        callback: impl FnOnce(Result<Vec<Cursor>, Error>) + 'static,
    ) {
        let statements: Vec<Statement> = statements.into_iter().map(Into::into).collect();
        observed::transaction(&self.core, &statements, auto_rollback, Done::new(callback));
    }

    /// The statements as one batch (see `Connection::batch`).
    pub fn batch<S: Into<Statement>>(
        &self,
        statements: Vec<S>,
        callback: impl FnOnce(Result<Vec<Cursor>, Error>) + 'static,
    ) {
        let statements: Vec<Statement> = statements.into_iter().map(Into::into).collect();
        observed::batch(&self.core, &statements, Done::new(callback));
    }

    /// Prepares a statement (see `Connection::prepare`).
    pub fn prepare(&self, query: &str, callback: impl FnOnce(Result<Prepared, Error>) + 'static) {
        observed::prepare(&self.core, query, Done::new(callback));
    }

    /// Runs a prepared statement (prepared again here if it belongs elsewhere).
    pub fn execute_prepared<P: Params>(
        &self,
        statement: &Prepared,
        params: P,
        callback: impl FnOnce(Result<Cursor, Error>) + 'static,
    ) {
        observed::execute_prepared(&self.core, statement, &params, Done::new(callback));
    }

    /// Server-side parameters with the statement cache (see `Connection::query`).
    pub fn query<P: Params>(
        &self,
        sql: &str,
        params: P,
        callback: impl FnOnce(Result<Cursor, Error>) + 'static,
    ) {
        observed::query(&self.core, sql, &params, Done::new(callback));
    }

    /// Streams the rows of `sql` to `f` as they are read, none kept (see
    /// `Connection::stream`); `f` runs from `dispatch`, then `callback` with the row count.
    pub fn stream<P: Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnMut(&Row) + 'static,
        callback: impl FnOnce(Result<u64, Error>) + 'static,
    ) {
        observed::stream(&self.core, sql, &params, f, Done::new(callback));
    }

    /// Drops a prepared statement on the server.
    pub fn close_prepared(
        &self,
        statement: &Prepared,
        callback: impl FnOnce(Result<(), Error>) + 'static,
    ) {
        observed::close_prepared(&self.core, statement, Done::new(callback));
    }

    /// Listens on `channel`; `listener` runs from `dispatch` for every notification.
    pub fn listen(
        &self,
        channel: &str,
        listener: impl FnMut(&Notification) + 'static,
        callback: impl FnOnce(Result<(), Error>) + 'static,
    ) {
        observed::listen(&self.core, channel, listener, Done::new(callback));
    }

    /// Stops listening on `channel`.
    pub fn unlisten(&self, channel: &str, callback: impl FnOnce(Result<(), Error>) + 'static) {
        observed::unlisten(&self.core, channel, Done::new(callback));
    }

    /// Asks the server to cancel the running query (a CancelRequest sent from a helper
    /// thread, bounded by the connect timeout or 10 s); `callback` runs from `dispatch` once
    /// the server took the request.
    pub fn cancel(&self, callback: impl FnOnce(Result<(), Error>) + 'static) {
        observed::cancel(&self.core, Done::new(callback));
    }

    /// `COPY … FROM STDIN` with the data given whole.
    pub fn copy_in(
        &self,
        query: &str,
        data: impl Into<Bytes>,
        callback: impl FnOnce(Result<u64, Error>) + 'static,
    ) {
        let data: Bytes = data.into();
        self.copy_in_chunks(query, std::iter::once(data), callback);
    }

    /// `COPY … FROM STDIN` pulled chunk by chunk as the socket takes it; the iterator runs
    /// with no borrow held and may call into this connection.
    pub fn copy_in_chunks<I>(
        &self,
        query: &str,
        chunks: I,
        callback: impl FnOnce(Result<u64, Error>) + 'static,
    ) where
        I: IntoIterator + 'static,
        I::Item: Into<Bytes>,
    {
        observed::copy_in(
            &self.core,
            query,
            ops::copy::chunks(chunks),
            Done::new(callback),
        );
    }

    /// `COPY … FROM STDIN` from fallible chunks: an `Err` aborts the COPY.
    pub fn copy_in_results<I>(
        &self,
        query: &str,
        chunks: I,
        callback: impl FnOnce(Result<u64, Error>) + 'static,
    ) where
        I: IntoIterator<Item = Result<Bytes, String>> + 'static,
    {
        let source = CopySource(Box::new(chunks.into_iter()));
        observed::copy_in(&self.core, query, source, Done::new(callback));
    }

    /// `COPY … TO STDOUT`: `sink` gets the data from `dispatch` as it arrives.
    pub fn copy_out(
        &self,
        query: &str,
        sink: impl FnMut(&[u8]) + 'static,
        callback: impl FnOnce(Result<u64, Error>) + 'static,
    ) {
        observed::copy_out(&self.core, query, sink, Done::new(callback));
    }

    /// Registers hstore for this connection and its reconnects.
    pub fn register_hstore(&self, callback: impl FnOnce(Result<(), Error>) + 'static) {
        ops::register::register_hstore(&self.core, Done::new(callback));
    }

    /// Checks that json exists (kept for Momoko compatibility).
    pub fn register_json(&self, callback: impl FnOnce(Result<(), Error>) + 'static) {
        ops::register::register_json(&self.core, Done::new(callback));
    }

    // ---- getters ----

    crate::driver::session_getters!();

    /// Closes the connection; queued requests fail from the next `dispatch`. Deregister the
    /// token afterwards if your loop keeps a table of them.
    pub fn close(&self) {
        self.core.with_mut(|s| {
            s.close(
                Error::connection("the connection was closed by the client"),
                self.core.driver.now(),
            )
        });
    }
}
