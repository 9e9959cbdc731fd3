//! `Pool`: Momoko's connection pool, with its hangs fixed and safe automatic recovery.
//!
//! The pool owns its connections and the container that says where each one is: free (a
//! LIFO with last-used times), busy, dead or pending, plus a FIFO of waiters. It decides
//! when to stretch towards `max_size`, when to shrink back to `size`, when to reconnect dead
//! connections (batches spaced by `reconnect_interval`), and when an operation may be run a
//! second time. It never retries a request whose effect on the server is unknown (unless the
//! caller chose Momoko's rule), never lets a waiter wait forever once nothing can serve it,
//! and never runs user code while it holds a borrow of its state.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use momoko_loop::{Future, IoLoop, PeriodicCallback, TimeoutId};

use crate::connection::{Connection, Statement};
use crate::error::{Error, ErrorKind};
use crate::params::{ParamValues, Params};
use crate::row::Cursor;
use crate::session::ops::Done;

mod builder;
mod stats;

use builder::Config;
pub use builder::{PoolBuilder, RetryPolicy};
pub use stats::PoolStats;

/// A pooled connection's identity: the address of its shared state, stable while it lives.
type Id = usize;

fn id_of(conn: &Connection) -> Id {
    conn.shared_id()
}

struct Waiter {
    seq: u64,
    /// The operation may share its connection (see `pipeline_depth`).
    shareable: bool,
    abandoned: Abandoned,
    cb: Done<Connection>,
    timer: Option<TimeoutId>,
}

/// Where the pool stands.
///
/// ```text
///   New ──connect()──▶ Open ──close()──▶ Closed
///    └──────────────close()──────────────▲
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Phase {
    #[default]
    New,
    Open,
    Closed,
}

#[derive(Default)]
struct State {
    phase: Phase,
    /// Right end = most recently used: taken from the right (LIFO), shrunk from the left.
    free: VecDeque<(Connection, Instant)>,
    busy: HashMap<Id, Connection>,
    /// For busy connections taken by shareable operations: how many run on each.
    sharers: HashMap<Id, usize>,
    dead: Vec<Connection>,
    pending: HashMap<Id, Connection>,
    waiting: VecDeque<Waiter>,
    next_seq: u64,
    /// Futures of `connect()` calls made while the first connect is running.
    connect_waiters: Vec<Future<Result<Pool, Error>>>,
    initial: Option<Initial>,
    /// When a connect attempt last failed: background reconnects wait `reconnect_interval`.
    last_failed_connect: Option<Instant>,
    /// When an attempt made on demand (by `connect()` or a request that found every
    /// connection dead) last failed: within `reconnect_interval` of it, such a request fails
    /// at once with DatabaseNotAvailable, as in Momoko.
    last_failed_requested: Option<Instant>,
    /// Pending connects made on demand.
    requested: std::collections::HashSet<Id>,
    reconnect_timer: Option<TimeoutId>,
    shrinker: Option<PeriodicCallback>,
    hstore: Option<(u32, u32)>,
    server_version: Option<i32>,
    /// Connections that are busy because the pool itself is rolling them back.
    resetting: usize,
    /// The dedicated LISTEN connection, outside the container.
    listener: Option<Connection>,
    listener_timer: Option<TimeoutId>,
    /// Told after the listener reconnected: notifications may have been missed meanwhile.
    on_gap: Option<Rc<dyn Fn()>>,
}

/// The first `connect()`: which connections it opened, how many failed.
impl State {
    /// Every connection of the container, whatever its state.
    fn all_connections(&self) -> Vec<Connection> {
        self.free
            .iter()
            .map(|(c, _)| c.clone())
            .chain(self.busy.values().cloned())
            .chain(self.pending.values().cloned())
            .chain(self.dead.iter().cloned())
            .collect()
    }
}

struct Initial {
    ids: std::collections::HashSet<Id>,
    failed: usize,
}

struct Inner {
    ioloop: IoLoop,
    config: Config,
    state: RefCell<State>,
}

/// Momoko's connection pool. A cheap handle: clones share one pool.
#[derive(Clone)]
pub struct Pool(Rc<Inner>);

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.stats();
        write!(
            f,
            "<Pool at {:x}: {} free, {} busy, {} dead, {} pending, {} waiting>",
            Rc::as_ptr(&self.0) as usize,
            s.free,
            s.busy,
            s.dead,
            s.pending,
            s.waiting
        )
    }
}

/// A connection taken with [`Pool::getconn`] that goes back to the pool when dropped
/// (Momoko's `with pool.manage(conn)`), also during a panic.
pub struct Managed {
    pool: Pool,
    conn: Option<Connection>,
}

impl std::fmt::Debug for Managed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Managed").field(&self.conn).finish()
    }
}

impl std::ops::Deref for Managed {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("present until dropped")
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if let Err(e) = self.pool.putconn(conn) {
                log::warn!("manage: could not give the connection back: {e}");
            }
        }
    }
}

/// Whether the caller of a waiting request has given up on it.
type Abandoned = Rc<dyn Fn() -> bool>;

/// An operation the pool runs on a connection, again on another one for a retry.
type Op<T> = Rc<dyn Fn(&Connection, Done<T>)>;

impl Pool {
    /// A builder for a pool on `dsn`.
    pub fn builder(dsn: &str) -> PoolBuilder {
        PoolBuilder::new(dsn)
    }

    /// A pool of `size` connections with every other option at its default.
    pub fn new(dsn: &str, size: usize) -> Result<Pool, Error> {
        Pool::builder(dsn).size(size).build()
    }

    /// The loop driving the pool.
    pub fn ioloop(&self) -> &IoLoop {
        &self.0.ioloop
    }

    /// Opens `size` connections in parallel and resolves to the pool once every attempt has
    /// finished. With `raise_connect_errors`, any failure gives a `PartiallyConnected` error
    /// while the pool stays usable. A second call opens nothing new.
    pub fn connect(&self) -> Future<Result<Pool, Error>> {
        let fut = Future::with_loop(&self.0.ioloop);
        let mut st = self.0.state.borrow_mut();
        match st.phase {
            Phase::Closed => {
                drop(st);
                let _ = fut.set_result(Err(pool_closed()));
                return fut;
            }
            Phase::Open => {
                if st.initial.is_some() {
                    st.connect_waiters.push(fut.clone());
                } else {
                    drop(st);
                    let _ = fut.set_result(Ok(self.clone()));
                }
                return fut;
            }
            Phase::New => {}
        }
        st.phase = Phase::Open;
        st.initial = Some(Initial {
            ids: Default::default(),
            failed: 0,
        });
        st.connect_waiters.push(fut.clone());
        drop(st);
        for _ in 0..self.0.config.size {
            let id = Inner::new_connection(&self.0);
            if let Some(init) = self.0.state.borrow_mut().initial.as_mut() {
                init.ids.insert(id);
            }
        }
        fut
    }

    /// Changes the connection string of every later connect and reconnect (new credentials,
    /// a moved server). Connections that are up stay as they are.
    pub fn set_dsn(&self, dsn: &str) {
        *self.0.config.dsn.borrow_mut() = dsn.to_owned();
        for c in self.connections() {
            c.set_dsn(dsn);
        }
    }

    /// Every connection of the pool, whatever its state.
    fn connections(&self) -> Vec<Connection> {
        self.0.state.borrow().all_connections()
    }

    /// The free and busy connections, for tests that close them under the pool (Momoko's
    /// `shutter`).
    #[doc(hidden)]
    pub fn connections_for_tests(&self) -> Vec<Connection> {
        let st = self.0.state.borrow();
        st.free
            .iter()
            .map(|(c, _)| c.clone())
            .chain(st.busy.values().cloned())
            .collect()
    }

    /// Counts of connections and waiters.
    pub fn stats(&self) -> PoolStats {
        let st = self.0.state.borrow();
        PoolStats {
            free: st.free.len(),
            busy: st.busy.len(),
            dead: st.dead.len(),
            pending: st.pending.len(),
            waiting: st.waiting.len(),
        }
    }

    /// Whether `close()` was called.
    pub fn closed(&self) -> bool {
        self.0.state.borrow().phase == Phase::Closed
    }

    /// The server version of the last connection that connected.
    pub fn server_version(&self) -> Option<i32> {
        self.0.state.borrow().server_version
    }

    /// `execute` on a free connection (waiting for one if needed), retried once on another
    /// connection when the first attempt provably did not take effect.
    pub fn execute<P: Params>(&self, query: &str, params: P) -> Future<Result<Cursor, Error>> {
        let query = query.to_owned();
        let values: Option<ParamValues> = if params.is_empty() {
            None
        } else {
            Some(params.to_values())
        };
        self.operate(
            Rc::new(move |conn: &Connection, done| match &values {
                Some(v) => conn.execute_cb(&query, v, done),
                None => conn.execute_cb(&query, &(), done),
            }),
            true,
        )
    }

    /// [`Connection::query`] (server-side `$n` parameters, cached prepared statements) on a
    /// pooled connection, with the same retry as `execute`.
    pub fn query<P: Params>(&self, sql: &str, params: P) -> Future<Result<Cursor, Error>> {
        let sql = sql.to_owned();
        let values = params.to_values();
        self.operate(
            Rc::new(move |conn: &Connection, done| conn.query_cb(&sql, &values, done)),
            true,
        )
    }

    /// `callproc` on a pooled connection, with the same retry as `execute`.
    pub fn callproc<P: Params>(&self, procname: &str, params: P) -> Future<Result<Cursor, Error>> {
        let procname = procname.to_owned();
        let values = params.to_values();
        self.operate(
            Rc::new(move |conn: &Connection, done| conn.callproc_cb(&procname, &values, done)),
            true,
        )
    }

    /// A whole transaction on one pooled connection: one unit of work and of retry. A
    /// transaction whose COMMIT may have been executed is never replayed (with the default
    /// retry policy).
    pub fn transaction<S: Into<Statement>>(
        &self,
        statements: Vec<S>,
    ) -> Future<Result<Vec<Cursor>, Error>> {
        self.transaction_with(statements, true)
    }

    /// A batch (see [`Connection::batch`]) on one pooled connection, with the same retry.
    pub fn batch<S: Into<Statement>>(
        &self,
        statements: Vec<S>,
    ) -> Future<Result<Vec<Cursor>, Error>> {
        let statements: Vec<Statement> = statements.into_iter().map(Into::into).collect();
        self.operate(
            Rc::new(move |conn: &Connection, done| conn.batch_cb(&statements, done)),
            true,
        )
    }

    /// [`Pool::transaction`] with Momoko's `auto_rollback` flag.
    pub fn transaction_with<S: Into<Statement>>(
        &self,
        statements: Vec<S>,
        auto_rollback: bool,
    ) -> Future<Result<Vec<Cursor>, Error>> {
        let statements: Vec<Statement> = statements.into_iter().map(Into::into).collect();
        self.operate(
            Rc::new(move |conn: &Connection, done| {
                conn.transaction_cb(&statements, auto_rollback, done)
            }),
            auto_rollback,
        )
    }

    /// Renders the query on a pooled connection (asynchronous at pool level, as in Momoko).
    pub fn mogrify<P: Params>(&self, query: &str, params: P) -> Future<Result<String, Error>> {
        let query = query.to_owned();
        let values = params.to_values();
        self.operate(
            Rc::new(move |conn: &Connection, done| done(conn.mogrify(&query, &values))),
            true,
        )
    }

    /// `SELECT 1 AS ping` on a pooled connection, with the retry.
    pub fn ping(&self) -> Future<Result<(), Error>> {
        self.operate(Rc::new(|conn: &Connection, done| conn.ping_cb(done)), true)
    }

    /// Registers hstore for every connection of the pool, present and future.
    pub fn register_hstore(&self) -> Future<Result<(), Error>> {
        let weak = Rc::downgrade(&self.0);
        self.operate(
            Rc::new(move |conn: &Connection, done| {
                let weak = weak.clone();
                conn.hstore_oids_cb(Box::new(move |r| {
                    done(r.map(|(oid, arr)| {
                        if let Some(inner) = weak.upgrade() {
                            Inner::set_hstore(&inner, oid, arr);
                        }
                    }))
                }))
            }),
            false,
        )
    }

    /// Checks json on one connection; JSON always decodes (kept for Momoko compatibility).
    pub fn register_json(&self) -> Future<Result<(), Error>> {
        self.operate(
            Rc::new(|conn: &Connection, done| conn.register_json_cb(done)),
            false,
        )
    }

    /// Takes a connection for exclusive use; give it back with [`Pool::putconn`] or
    /// [`Pool::manage`]. With `ping`, it is pinged first (a dead one is reconnected once)
    /// and `DatabaseNotAvailable` is returned when no live connection can be had.
    pub fn getconn(&self, ping: bool) -> Future<Result<Connection, Error>> {
        let fut = Future::with_loop(&self.0.ioloop);
        let (resolve, abandoned) = resolver(&fut);
        let inner = self.0.clone();
        let pool = self.clone();
        let gone = abandoned.clone();
        let done: Done<Connection> = Box::new(move |r| {
            if gone() {
                // The caller dropped its future: nobody will give this connection back.
                if let Ok(conn) = r {
                    log::debug!("pool: getconn was abandoned; the connection goes back");
                    let _ = pool.putconn(conn);
                }
                return;
            }
            resolve(r)
        });
        if !ping {
            Inner::acquire(&inner, false, abandoned, done);
            return fut;
        }
        let pool = self.clone();
        Inner::acquire(
            &self.0,
            false,
            abandoned,
            Box::new(move |r| match r {
                Err(e) => done(Err(e)),
                Ok(conn) => {
                    let op: Op<()> = Rc::new(|c: &Connection, d| c.ping_cb(d));
                    let c2 = conn.clone();
                    let inner = pool.0.clone();
                    Inner::attempt(
                        &inner,
                        conn,
                        op,
                        0,
                        true,
                        Box::new(move |r| match r {
                            Ok(()) => done(Ok(c2)),
                            Err(e) => {
                                let closed = c2.closed();
                                let _ = pool.putconn(c2);
                                done(Err(if closed { not_available() } else { e }))
                            }
                        }),
                    );
                }
            }),
        );
        fut
    }

    /// Gives back a connection taken with `getconn`. A connection given back inside a
    /// transaction is rolled back before anyone else gets it. Giving back a connection that
    /// is not busy (twice, or one from elsewhere) is a Usage error.
    pub fn putconn(&self, conn: Connection) -> Result<(), Error> {
        let id = id_of(&conn);
        if !self.0.state.borrow().busy.contains_key(&id) {
            return Err(Error::usage(
                "tried to release a connection that is not busy in this pool",
            ));
        }
        Inner::release(&self.0, conn);
        Ok(())
    }

    /// Listens on `channel` on a dedicated connection of the pool (outside `size`). When that
    /// connection is lost, it is reconnected (spaced by `reconnect_interval`) and LISTENs
    /// again; then the callback of [`Pool::on_notifications_missed`] runs, because
    /// notifications sent meanwhile were lost.
    pub fn listen(
        &self,
        channel: &str,
        callback: impl FnMut(&crate::Notification) + 'static,
    ) -> Future<Result<(), Error>> {
        let fut = Future::with_loop(&self.0.ioloop);
        match self.0.state.borrow().phase {
            Phase::New => {
                let _ = fut.set_result(Err(not_connected()));
                return fut;
            }
            Phase::Closed => {
                let _ = fut.set_result(Err(pool_closed()));
                return fut;
            }
            Phase::Open => {}
        }
        let conn = Inner::listener_connection(&self.0);
        let f = fut.clone();
        let channel = channel.to_owned();
        let connecting = conn.connect();
        self.0.ioloop.add_future(&connecting, move |c| {
            let conn = match c.take().expect("resolved") {
                Ok(conn) => conn,
                Err(e) => {
                    let _ = f.set_result(Err(e));
                    return;
                }
            };
            let listened = conn.listen(&channel, callback);
            conn.ioloop().add_future(&listened, move |l| {
                let _ = f.set_result(l.take().expect("resolved"));
            });
        });
        fut
    }

    /// Stops listening on `channel`.
    pub fn unlisten(&self, channel: &str) -> Future<Result<(), Error>> {
        let conn = self.0.state.borrow().listener.clone();
        match conn {
            Some(c) => c.unlisten(channel),
            None => {
                // Bound to the pool's loop, which need not be the thread's current one.
                let fut = Future::with_loop(&self.0.ioloop);
                let _ = fut.set_result(Ok(()));
                fut
            }
        }
    }

    /// Runs `callback` each time the pool's LISTEN connection came back after being lost:
    /// notifications sent while it was away were missed.
    pub fn on_notifications_missed(&self, callback: impl Fn() + 'static) {
        self.0.state.borrow_mut().on_gap = Some(Rc::new(callback));
    }

    /// A guard that gives `conn` back to the pool when dropped.
    pub fn manage(&self, conn: Connection) -> Managed {
        Managed {
            pool: self.clone(),
            conn: Some(conn),
        }
    }

    /// Closes the pool: every waiter and every operation in flight fails with a Pool error,
    /// timers stop, every connection is closed. A second `close()` is a Pool error.
    pub fn close(&self) -> Result<(), Error> {
        let (conns, waiters, connect_waiters) = {
            let mut st = self.0.state.borrow_mut();
            if st.phase == Phase::Closed {
                return Err(Error::new(
                    ErrorKind::Pool,
                    "connection pool is already closed",
                ));
            }
            st.phase = Phase::Closed;
            if let Some(pc) = st.shrinker.take() {
                pc.stop();
            }
            if let Some(t) = st.reconnect_timer.take() {
                self.0.ioloop.remove_timeout(t);
            }
            let mut conns: Vec<Connection> = st.free.drain(..).map(|(c, _)| c).collect();
            conns.extend(st.busy.drain().map(|(_, c)| c));
            st.sharers.clear();
            conns.extend(st.pending.drain().map(|(_, c)| c));
            conns.append(&mut st.dead);
            st.requested.clear();
            conns.extend(st.listener.take());
            if let Some(t) = st.listener_timer.take() {
                self.0.ioloop.remove_timeout(t);
            }
            st.initial = None;
            let waiters: Vec<Waiter> = st.waiting.drain(..).collect();
            (conns, waiters, std::mem::take(&mut st.connect_waiters))
        };
        for w in waiters {
            if let Some(t) = w.timer {
                self.0.ioloop.remove_timeout(t);
            }
            (w.cb)(Err(pool_closed()));
        }
        for f in connect_waiters {
            let _ = f.set_result(Err(pool_closed()));
        }
        for c in conns {
            c.close_with(Error::new(
                ErrorKind::Pool,
                "the connection pool was closed",
            ));
        }
        Ok(())
    }

    fn operate<T: 'static>(&self, op: Op<T>, shareable: bool) -> Future<Result<T, Error>> {
        let fut = Future::with_loop(&self.0.ioloop);
        let (done, abandoned) = resolver(&fut);
        let inner = self.0.clone();
        Inner::acquire(
            &self.0,
            shareable,
            abandoned,
            Box::new(move |r| match r {
                Err(e) => done(Err(e)),
                Ok(conn) => Inner::attempt(&inner, conn, op, 0, false, done),
            }),
        );
        fut
    }
}

/// The callback that resolves `fut`, and a probe telling whether its caller dropped it (the
/// pool's own handle is then the last one: a waiter nobody waits for leaves the queue).
fn resolver<T: 'static>(fut: &Future<Result<T, Error>>) -> (Done<T>, Abandoned) {
    let holder = Rc::new(fut.clone());
    let h = holder.clone();
    let done: Done<T> = Box::new(move |r| {
        let _ = h.set_result(r);
    });
    (done, Rc::new(move || holder.is_sole_handle()))
}

fn pool_closed() -> Error {
    Error::new(ErrorKind::Pool, "the connection pool is closed")
}

fn not_connected() -> Error {
    Error::new(
        ErrorKind::Pool,
        "the connection pool is not connected: call connect() first",
    )
}

fn not_available() -> Error {
    Error::new(
        ErrorKind::DatabaseNotAvailable,
        "no database connection available",
    )
}

impl Inner {
    /// Opens one more connection; it joins `pending`.
    fn new_connection(this: &Rc<Inner>) -> Id {
        let dsn = this.config.dsn.borrow().clone();
        let mut b = Connection::builder(&dsn)
            .ioloop(&this.ioloop)
            .setsession(this.config.setsession.iter().cloned());
        if let Some(t) = this.config.connect_timeout {
            b = b.connect_timeout(t);
        }
        if let Some(t) = this.config.query_timeout {
            b = b.query_timeout(t);
        }
        if let Some(n) = this.config.statement_cache_size {
            b = b.statement_cache_size(n);
        }
        let conn = b.build();
        if let Some((oid, arr)) = this.state.borrow().hstore {
            conn.set_hstore_oids(oid, arr);
        }
        let weak = Rc::downgrade(this);
        conn.on_close(Rc::new(move |e: &Error| {
            if let Some(inner) = weak.upgrade() {
                Inner::on_connection_lost(&inner, e);
            }
        }));
        let id = id_of(&conn);
        Inner::connect_one(this, conn, true);
        id
    }

    /// Starts connecting `conn` (new or dead); it joins `pending`.
    fn connect_one(this: &Rc<Inner>, conn: Connection, requested: bool) {
        {
            let mut st = this.state.borrow_mut();
            st.pending.insert(id_of(&conn), conn.clone());
            if requested {
                st.requested.insert(id_of(&conn));
            }
        }
        let weak = Rc::downgrade(this);
        let fut = conn.connect();
        this.ioloop.add_future(&fut, move |f| {
            let result = f.take().expect("resolved").map(drop);
            if let Some(inner) = weak.upgrade() {
                Inner::connect_done(&inner, conn, result);
            } else {
                conn.close();
            }
        });
    }

    fn connect_done(this: &Rc<Inner>, conn: Connection, result: Result<(), Error>) {
        let id = id_of(&conn);
        let mut st = this.state.borrow_mut();
        if st.phase == Phase::Closed || st.pending.remove(&id).is_none() {
            drop(st);
            conn.close();
            return;
        }
        let ok = result.is_ok();
        let requested = st.requested.remove(&id);
        if let Err(e) = &result {
            log::debug!("pool: a connection failed to connect: {e}");
            // Reconnect batches after a failure are spaced by reconnect_interval.
            let now = this.ioloop.time();
            st.last_failed_connect = Some(now);
            if requested {
                st.last_failed_requested = Some(now);
            }
        } else {
            st.server_version = conn.server_version().or(st.server_version);
        }
        let initial_done = match st.initial.as_mut() {
            Some(init) => {
                if init.ids.remove(&id) && !ok {
                    init.failed += 1;
                }
                init.ids.is_empty().then_some(init.failed)
            }
            None => None,
        };
        drop(st);
        if ok {
            Inner::add_free(this, conn);
        } else {
            Inner::add_dead(this, conn);
        }
        if let Some(failed) = initial_done {
            let waiters = {
                let mut st = this.state.borrow_mut();
                st.initial = None;
                std::mem::take(&mut st.connect_waiters)
            };
            Inner::schedule_reconnect(this);
            for f in waiters {
                let r = if failed > 0 && this.config.raise_connect_errors {
                    Err(Error::new(
                        ErrorKind::PartiallyConnected,
                        format!("{failed} connection(s) failed to connect"),
                    ))
                } else {
                    Ok(Pool(this.clone()))
                };
                let _ = f.set_result(r);
            }
        }
    }

    /// A connection is ready for work: the oldest waiter gets it, or it joins `free`.
    fn add_free(this: &Rc<Inner>, conn: Connection) {
        let waiter = {
            let mut st = this.state.borrow_mut();
            while st.waiting.front().is_some_and(|w| (w.abandoned)()) {
                let w = st.waiting.pop_front().expect("checked");
                if let Some(t) = w.timer {
                    this.ioloop.remove_timeout(t);
                }
            }
            match st.waiting.pop_front() {
                Some(w) => {
                    st.busy.insert(id_of(&conn), conn.clone());
                    if w.shareable && this.config.pipeline_depth > 1 {
                        st.sharers.insert(id_of(&conn), 1);
                    }
                    Some(w)
                }
                None => {
                    st.free.push_back((conn.clone(), this.ioloop.time()));
                    None
                }
            }
        };
        if let Some(w) = waiter {
            if let Some(t) = w.timer {
                this.ioloop.remove_timeout(t);
            }
            (w.cb)(Ok(conn));
        }
    }

    /// A connection failed or was lost: it waits for the next reconnect batch. Waiters fail
    /// when nothing is left that could serve them.
    fn add_dead(this: &Rc<Inner>, conn: Connection) {
        let all_dead = {
            let mut st = this.state.borrow_mut();
            st.dead.push(conn);
            st.pending.is_empty() && st.free.is_empty() && st.busy.is_empty()
        };
        if all_dead {
            log::warn!(
                "pool: every connection is dead; requests fail with DatabaseNotAvailable \
                 until a reconnect succeeds"
            );
            Inner::abort_waiters(this, not_available());
        }
        Inner::schedule_reconnect(this);
    }

    fn abort_waiters(this: &Rc<Inner>, err: Error) {
        let waiters: Vec<Waiter> = this.state.borrow_mut().waiting.drain(..).collect();
        for w in waiters {
            if let Some(t) = w.timer {
                this.ioloop.remove_timeout(t);
            }
            (w.cb)(Err(err.clone()));
        }
    }

    /// An established connection closed: if it sat idle, it is dead now (found at once, not
    /// on its next use), and a reconnect is scheduled.
    fn on_connection_lost(this: &Rc<Inner>, e: &Error) {
        let lost: Vec<Connection> = {
            let mut st = this.state.borrow_mut();
            if st.phase == Phase::Closed {
                return;
            }
            let (gone, kept): (Vec<_>, Vec<_>) = st.free.drain(..).partition(|(c, _)| c.closed());
            st.free = kept.into();
            gone.into_iter().map(|(c, _)| c).collect()
        };
        for conn in lost {
            log::debug!("pool: an idle connection was lost: {e}");
            Inner::add_dead(this, conn);
        }
    }

    /// Reconnects every dead connection now, or when `reconnect_interval` has passed since
    /// the last batch that failed.
    fn schedule_reconnect(this: &Rc<Inner>) {
        let now = this.ioloop.time();
        let at = {
            let st = this.state.borrow();
            // During the first connect, its own failures are judged when it ends.
            if st.phase != Phase::Open
                || st.dead.is_empty()
                || st.reconnect_timer.is_some()
                || st.initial.is_some()
            {
                return;
            }
            match st.last_failed_connect {
                Some(t) if now < t + this.config.reconnect_interval => {
                    t + this.config.reconnect_interval
                }
                _ => now,
            }
        };
        if at <= now {
            Inner::reanimate(this, false);
            return;
        }
        let weak = Rc::downgrade(this);
        let timer = this.ioloop.call_at(at, move || {
            if let Some(inner) = weak.upgrade() {
                inner.state.borrow_mut().reconnect_timer = None;
                Inner::reanimate(&inner, false);
            }
        });
        this.state.borrow_mut().reconnect_timer = Some(timer);
    }

    /// Whether a reconnect batch may start now: on demand, unless an on-demand attempt
    /// failed within `reconnect_interval`; in the background, unless any attempt did.
    fn may_reconnect(this: &Rc<Inner>, requested: bool) -> bool {
        let st = this.state.borrow();
        let last = if requested {
            st.last_failed_requested
        } else {
            st.last_failed_connect
        };
        match last {
            Some(t) => this.ioloop.time() >= t + this.config.reconnect_interval,
            None => true,
        }
    }

    /// Starts a reconnect batch of every dead connection, unless that is too soon after a
    /// failed one (see `may_reconnect`).
    fn reanimate(this: &Rc<Inner>, requested: bool) {
        if !Inner::may_reconnect(this, requested) {
            log::debug!("pool: not reconnecting, too soon after the last failed batch");
            Inner::schedule_reconnect(this);
            return;
        }
        let dead: Vec<Connection> = {
            let mut st = this.state.borrow_mut();
            if st.phase != Phase::Open {
                return;
            }
            std::mem::take(&mut st.dead)
        };
        if !dead.is_empty() {
            log::debug!("pool: reconnecting {} connection(s)", dead.len());
        }
        for conn in dead {
            Inner::connect_one(this, conn, requested);
        }
    }

    /// Momoko's `_reanimate_and_stretch_if_needed`, run after each acquisition that got or
    /// queued for a connection.
    fn stretch_if_needed(this: &Rc<Inner>) {
        let grow = {
            let st = this.state.borrow();
            if !st.dead.is_empty() {
                drop(st);
                Inner::schedule_reconnect(this);
                return;
            }
            let total = st.free.len() + st.busy.len() + st.dead.len() + st.pending.len();
            // Momoko's order: at max_size, a free connection left, or enough connects in
            // flight for the waiters all mean no growth.
            let enough_pending = !st.pending.is_empty() && st.pending.len() >= st.waiting.len();
            total < this.config.max_size && st.free.is_empty() && !enough_pending
        };
        if grow {
            log::debug!("pool: stretching by one connection");
            Inner::new_connection(this);
        }
    }

    /// Hands a connection to `cb`: a free one at once (LIFO), or after waiting (FIFO).
    fn acquire(this: &Rc<Inner>, shareable: bool, abandoned: Abandoned, cb: Done<Connection>) {
        let phase = this.state.borrow().phase;
        match phase {
            Phase::New => return cb(Err(not_connected())),
            Phase::Closed => return cb(Err(pool_closed())),
            Phase::Open => {}
        }
        let got = {
            let mut st = this.state.borrow_mut();
            let depth = this.config.pipeline_depth;
            let shared = if shareable && depth > 1 && st.free.is_empty() {
                // The least loaded connection that other shareable operations run on.
                st.sharers
                    .iter()
                    .filter(|(_, n)| **n < depth)
                    .min_by_key(|(_, n)| **n)
                    .map(|(id, _)| *id)
            } else {
                None
            };
            if let Some(id) = shared {
                *st.sharers.get_mut(&id).expect("present") += 1;
                let conn = st.busy.get(&id).expect("sharers are busy").clone();
                drop(st);
                Inner::stretch_if_needed(this);
                return cb(Ok(conn));
            }
            match st.free.pop_back() {
                Some((conn, _)) => {
                    st.busy.insert(id_of(&conn), conn.clone());
                    if shareable && depth > 1 {
                        st.sharers.insert(id_of(&conn), 1);
                    }
                    Some(Ok(conn))
                }
                None if !st.busy.is_empty() || !st.pending.is_empty() => {
                    // Requests whose callers gave up hold no place in the queue.
                    st.waiting.retain(|w| !(w.abandoned)());
                    if this
                        .config
                        .max_waiting
                        .is_some_and(|m| st.waiting.len() >= m)
                    {
                        Some(Err(Error::new(
                            ErrorKind::Pool,
                            format!(
                                "too many requests are waiting for a connection (max_waiting {})",
                                st.waiting.len()
                            ),
                        )))
                    } else {
                        None
                    }
                }
                None => {
                    // Everything is dead: reconnect if allowed, then wait for it.
                    drop(st);
                    Inner::reanimate(this, true);
                    let st = this.state.borrow();
                    if st.pending.is_empty() {
                        drop(st);
                        return cb(Err(not_available()));
                    }
                    None
                }
            }
        };
        match got {
            Some(Ok(conn)) => {
                Inner::stretch_if_needed(this);
                cb(Ok(conn))
            }
            Some(Err(e)) => cb(Err(e)),
            None => {
                let seq = {
                    let mut st = this.state.borrow_mut();
                    st.next_seq += 1;
                    st.next_seq
                };
                let timer = this.config.acquire_timeout.map(|t| {
                    let weak: Weak<Inner> = Rc::downgrade(this);
                    this.ioloop.call_later(t, move || {
                        if let Some(inner) = weak.upgrade() {
                            Inner::waiter_timed_out(&inner, seq, t);
                        }
                    })
                });
                this.state.borrow_mut().waiting.push_back(Waiter {
                    seq,
                    shareable,
                    abandoned,
                    cb,
                    timer,
                });
                Inner::stretch_if_needed(this);
            }
        }
    }

    fn waiter_timed_out(this: &Rc<Inner>, seq: u64, t: Duration) {
        let w = {
            let mut st = this.state.borrow_mut();
            let pos = st.waiting.iter().position(|w| w.seq == seq);
            pos.and_then(|p| st.waiting.remove(p))
        };
        if let Some(w) = w {
            (w.cb)(Err(Error::new(
                ErrorKind::Timeout,
                format!("no connection became available within {t:?}"),
            )));
        }
    }

    /// A busy connection comes back: rolled back first if it is inside a transaction, dead
    /// if it closed, otherwise free for the next waiter.
    fn release(this: &Rc<Inner>, conn: Connection) {
        let id = id_of(&conn);
        {
            let mut st = this.state.borrow_mut();
            if let Some(n) = st.sharers.get_mut(&id) {
                *n -= 1;
                if *n > 0 {
                    return; // others still run on it
                }
                st.sharers.remove(&id);
            }
        }
        if this.state.borrow_mut().busy.remove(&id).is_none() {
            return;
        }
        if this.state.borrow().phase == Phase::Closed {
            conn.close();
            return;
        }
        if conn.closed() {
            Inner::add_dead(this, conn);
            return;
        }
        if conn.transaction_status() != b'I' || conn.in_flight() > 0 {
            // Nobody else may see this session's open transaction or pending answers.
            this.state.borrow_mut().busy.insert(id, conn.clone());
            this.state.borrow_mut().resetting += 1;
            let weak = Rc::downgrade(this);
            let c = conn.clone();
            conn.simple(
                "ROLLBACK".to_owned(),
                Box::new(move |_| {
                    if let Some(inner) = weak.upgrade() {
                        inner.state.borrow_mut().resetting -= 1;
                        Inner::release(&inner, c);
                    }
                }),
            );
            return;
        }
        Inner::add_free(this, conn);
    }

    /// Runs `op` on `conn`; on a failure that allows it, reconnects `conn` in place and runs
    /// it once more. `keep` leaves the connection busy afterwards (getconn's ping).
    fn attempt<T: 'static>(
        this: &Rc<Inner>,
        conn: Connection,
        op: Op<T>,
        attempt: u32,
        keep: bool,
        done: Done<T>,
    ) {
        let inner = this.clone();
        let c = conn.clone();
        let op2 = op.clone();
        op(
            &conn,
            Box::new(move |r| match r {
                Ok(v) => {
                    if !keep {
                        Inner::release(&inner, c);
                    }
                    done(Ok(v))
                }
                Err(e) => {
                    let retry = attempt == 0 && Inner::may_retry(&inner, &c, &e);
                    if retry {
                        log::debug!("pool: retrying once after: {e}");
                        let fut = c.connect();
                        let inner2 = inner.clone();
                        inner
                            .ioloop
                            .add_future(&fut, move |f| match f.take().expect("resolved") {
                                Ok(conn) => Inner::attempt(&inner2, conn, op2, 1, keep, done),
                                Err(ce) => {
                                    if !keep {
                                        Inner::release(&inner2, c);
                                    }
                                    done(Err(ce))
                                }
                            });
                        return;
                    }
                    let e = if attempt > 0 && c.closed() && e.is_connection_lost() {
                        not_available()
                    } else {
                        e
                    };
                    if !keep {
                        Inner::release(&inner, c);
                    }
                    done(Err(e))
                }
            }),
        );
    }

    fn may_retry(this: &Rc<Inner>, conn: &Connection, e: &Error) -> bool {
        if this.state.borrow().phase != Phase::Open || !conn.closed() {
            return false;
        }
        match this.config.retry {
            RetryPolicy::Never => false,
            RetryPolicy::Momoko => true,
            RetryPolicy::Safe => e.is_connection_lost() && !e.outcome_unknown(),
        }
    }

    /// The dedicated LISTEN connection, made on first use.
    fn listener_connection(this: &Rc<Inner>) -> Connection {
        if let Some(c) = this.state.borrow().listener.clone() {
            return c;
        }
        let dsn = this.config.dsn.borrow().clone();
        let mut b = Connection::builder(&dsn)
            .ioloop(&this.ioloop)
            .setsession(this.config.setsession.iter().cloned());
        if let Some(t) = this.config.connect_timeout {
            b = b.connect_timeout(t);
        }
        let conn = b.build();
        let weak = Rc::downgrade(this);
        conn.on_close(Rc::new(move |e: &Error| {
            if let Some(inner) = weak.upgrade() {
                log::warn!("pool: the LISTEN connection was lost: {e}");
                Inner::relisten(&inner, Duration::ZERO);
            }
        }));
        this.state.borrow_mut().listener = Some(conn.clone());
        conn
    }

    /// Reconnects the LISTEN connection after `delay`; its channels are LISTENed again by
    /// the connection itself. Failures retry every `reconnect_interval`.
    fn relisten(this: &Rc<Inner>, delay: Duration) {
        let weak = Rc::downgrade(this);
        let timer = this.ioloop.call_later(delay, move || {
            let Some(inner) = weak.upgrade() else { return };
            let conn = {
                let mut st = inner.state.borrow_mut();
                st.listener_timer = None;
                if st.phase != Phase::Open {
                    return;
                }
                st.listener.clone()
            };
            let Some(conn) = conn else { return };
            let fut = conn.connect();
            let weak = Rc::downgrade(&inner);
            inner.ioloop.add_future(&fut, move |f| {
                let Some(inner) = weak.upgrade() else { return };
                match f.take().expect("resolved") {
                    Ok(_) => {
                        let gap = inner.state.borrow().on_gap.clone();
                        if let Some(g) = gap {
                            g();
                        }
                    }
                    Err(e) => {
                        log::debug!("pool: the LISTEN connection could not reconnect: {e}");
                        Inner::relisten(&inner, inner.config.reconnect_interval);
                    }
                }
            });
        });
        if let Some(old) = this.state.borrow_mut().listener_timer.replace(timer) {
            this.ioloop.remove_timeout(old);
        }
    }

    fn set_hstore(this: &Rc<Inner>, oid: u32, arr: u32) {
        let conns: Vec<Connection> = {
            let mut st = this.state.borrow_mut();
            st.hstore = Some((oid, arr));
            st.all_connections()
        };
        for c in conns {
            c.set_hstore_oids(oid, arr);
        }
    }

    /// Closes the least recently used free connections idle longer than `shrink_delay`,
    /// down to `size`.
    fn shrink(this: &Rc<Inner>) {
        let now = this.ioloop.time();
        let closing: Vec<Connection> = {
            let mut st = this.state.borrow_mut();
            let mut out = Vec::new();
            while st.free.len() > this.config.size {
                let Some((_, last_used)) = st.free.front() else {
                    break;
                };
                if now.saturating_duration_since(*last_used) <= this.config.shrink_delay {
                    break;
                }
                let (c, _) = st.free.pop_front().expect("checked");
                out.push(c);
            }
            out
        };
        if !closing.is_empty() {
            log::debug!("pool: shrinking by {} connection(s)", closing.len());
        }
        for c in closing {
            c.close();
        }
    }
}
