//! `Pool`: Momoko's connection pool, with its hangs fixed and safe automatic recovery.
//!
//! This file is the pool's driver: it owns the connections, the loop's timers and the
//! callbacks. Where each connection is (free as a LIFO with last-used times, busy, dead,
//! pending), the FIFO of waiters and every decision that depends on time (stretch towards
//! `max_size`, shrink back to `size`, reconnect batches spaced by `reconnect_interval`,
//! health checks, lifetimes, the queue's deadlines) live in `container.rs`, which takes the
//! time as an argument; the driver applies its answers. It never lets a waiter wait forever
//! once nothing can serve it, and never runs user code while it holds a borrow of its state.
//!
//! The operations callers run and their retry live in `ops.rs`; the LISTEN connection in
//! `listen.rs`; the production side (connections that age out, checks before hand-out,
//! hooks, rotating passwords, resizing, counters, leak warnings) in `lifecycle.rs`; the
//! options and the connection template in `builder.rs`; what an operator reads in
//! `stats.rs`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use momoko_loop::{Future, IoLoop, PeriodicCallback, TimeoutId};

use crate::connection::Connection;
use crate::error::{Error, ErrorKind};
use crate::observe::{AcquireTrack, PoolAcquire, PoolRelease};
use crate::session::ops::Done;

mod builder;
mod container;
mod errors;
mod lifecycle;
mod listen;
mod observed;
mod ops;
mod stats;

use builder::PoolConfig;
pub use builder::{CustomReset, PoolBuilder, Reset, RetryPolicy};
use container::{Container, Handle, Handout, Id, Released, Retired, Stretch};
use errors::{connect_failed, not_available, not_connected, pool_closed, timed_out};
pub use stats::{PoolCounters, PoolStats};

fn id_of(conn: &Connection) -> Id {
    conn.shared_id()
}

impl Handle for Connection {
    fn id(&self) -> Id {
        self.shared_id()
    }
}

/// One request for a connection, as it goes through `acquire` (again after a failed health
/// check or, with `wait_for_reconnect`, after its connection died).
#[derive(Clone)]
struct Acquisition {
    /// The operation may share its connection (see `pipeline_depth`).
    shareable: bool,
    /// Taken with `getconn`: held by the caller (leak warnings).
    held: bool,
    abandoned: Abandoned,
    /// How long it may wait in the queue.
    timeout: Option<Duration>,
    /// Served once already: a second acquisition is not a new request.
    retry: bool,
}

/// A queued acquisition and the callback that gets its connection.
struct Claim {
    req: Acquisition,
    cb: Done<Connection>,
}

/// A waiting request as the container holds it.
type Queued = container::Queued<Claim>;

fn abandoned(w: &Claim) -> bool {
    (w.req.abandoned)()
}

fn shareable(w: &Claim) -> bool {
    w.req.shareable
}

/// What the pool knows of one of its connections beyond where it is.
#[derive(Default)]
struct Meta {
    /// Since when it is handed out, for `usage_time`.
    busy_since: Option<Instant>,
    /// Numbers the holds by `getconn`: a leak warning is for one hold only.
    hold: u64,
    /// The leak-warning timer of the current hold.
    leak_timer: Option<TimeoutId>,
    /// The pool itself is checking or closing it: a close now is not a loss.
    quiet: bool,
    /// Its reset runs: it is busy, but nobody holds it (a `putconn` now is a Usage error).
    resetting: bool,
}

/// Where the pool stands.
///
/// ```text
///   New ──connect()──▶ Open ──close()──▶ Closed
///    └──────────────close()──────────────▲
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum PoolPhase {
    #[default]
    New,
    Open,
    Closed,
}

/// The pool's mutable state, behind the one `RefCell` of `Inner`.
#[derive(Default)]
struct PoolState {
    phase: PoolPhase,
    /// Where each connection is, and the waiting requests.
    pool: Container<Connection, Claim>,
    /// Futures of `connect()` calls made while the first connect is running.
    connect_waiters: Vec<Future<Result<Pool, Error>>>,
    initial: Option<Initial>,
    reconnect_timer: Option<TimeoutId>,
    shrinker: Option<PeriodicCallback>,
    hstore: Option<(u32, u32)>,
    server_version: Option<i32>,
    /// Per connection: lifetime, generation, usage, leak timer.
    meta: HashMap<Id, Meta>,
    counters: PoolCounters,
    /// The timer that fails waiting requests at the earliest deadline, and that deadline.
    waiter_timer: Option<(TimeoutId, Instant)>,
    /// The timer that retires idle connections at the earliest expiry, and that expiry.
    expiry_timer: Option<(TimeoutId, Instant)>,
    /// The error of the last connect attempt that failed.
    last_connect_error: Option<Error>,
    /// The dedicated LISTEN connection, outside the container.
    listener: Option<Connection>,
    listener_timer: Option<TimeoutId>,
    /// Told after the listener reconnected: notifications may have been missed meanwhile.
    on_gap: Option<Rc<dyn Fn()>>,
    /// The acquisition being made, while `acquire` runs, when something observes it: a
    /// connection opened meanwhile was opened for it.
    acquiring: Option<Rc<AcquireTrack>>,
}

/// The first `connect()`: which connections it opened, how many failed, the first failure.
struct Initial {
    ids: std::collections::HashSet<Id>,
    /// Attempts finished.
    tried: usize,
    failed: usize,
    first_error: Option<Error>,
}

/// The pool's driver: the loop, the configuration and the state, shared by every handle.
struct Inner {
    ioloop: IoLoop,
    config: PoolConfig,
    state: RefCell<PoolState>,
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
    /// finished. With `raise_connect_errors` (the default), a failure fails the future with
    /// the first failed connect as its cause (its text, [`Error::code`], [`Error::cause`]):
    /// `PartiallyConnected` when some connections opened (`1 of 2 connections could be
    /// made: …`), `DatabaseNotAvailable` when none did (`0 of 2 connections could be made:
    /// …`). Either way the pool stays usable and keeps reconnecting. A second call opens
    /// nothing new.
    pub fn connect(&self) -> Future<Result<Pool, Error>> {
        let fut = Future::with_loop(&self.0.ioloop);
        let mut st = self.0.state.borrow_mut();
        match st.phase {
            PoolPhase::Closed => {
                drop(st);
                let _ = fut.set_result(Err(pool_closed()));
                return fut;
            }
            PoolPhase::Open => {
                if st.initial.is_some() {
                    st.connect_waiters.push(fut.clone());
                } else {
                    drop(st);
                    let _ = fut.set_result(Ok(self.clone()));
                }
                return fut;
            }
            PoolPhase::New => {}
        }
        st.phase = PoolPhase::Open;
        st.initial = Some(Initial {
            ids: Default::default(),
            tried: 0,
            failed: 0,
            first_error: None,
        });
        st.connect_waiters.push(fut.clone());
        drop(st);
        for _ in 0..self.0.config.size.get() {
            let id = Inner::new_connection(&self.0, true);
            if let Some(init) = self.0.state.borrow_mut().initial.as_mut() {
                init.ids.insert(id);
            }
        }
        fut
    }

    /// Changes the connection string of every later connect and reconnect (new credentials,
    /// a moved server). Connections that are up stay as they are.
    pub fn set_dsn(&self, dsn: &str) {
        *self.0.config.dsn.borrow_mut() = crate::conninfo::Dsn::Text(dsn.to_owned());
        for c in self.connections() {
            c.set_dsn(dsn);
        }
    }

    /// Every connection of the pool, whatever its state.
    fn connections(&self) -> Vec<Connection> {
        self.0.state.borrow().pool.all()
    }

    /// The free and busy connections, for tests that close them under the pool (Momoko's
    /// `shutter`).
    #[doc(hidden)]
    pub fn connections_for_tests(&self) -> Vec<Connection> {
        self.0.state.borrow().pool.live()
    }

    /// The dedicated LISTEN connection, once [`Pool::listen`] made it, for tests that check
    /// how it was built.
    #[doc(hidden)]
    pub fn listener_for_tests(&self) -> Option<Connection> {
        self.0.state.borrow().listener.clone()
    }

    /// Counts of connections and waiters, the sizes, and the cumulative counters.
    pub fn stats(&self) -> PoolStats {
        let st = self.0.state.borrow();
        PoolStats {
            free: st.pool.free_len(),
            busy: st.pool.busy_len(),
            dead: st.pool.dead_len(),
            pending: st.pool.pending_len(),
            waiting: st.pool.waiting_len(),
            size: self.0.config.size.get(),
            max_size: self.0.config.max_size.get(),
            counters: st.counters,
        }
    }

    /// [`Pool::stats`], and the counters start again from zero: for a scraper that reports
    /// what happened since its last visit.
    pub fn take_stats(&self) -> PoolStats {
        let stats = self.stats();
        self.0.state.borrow_mut().counters = PoolCounters::default();
        stats
    }

    /// The error of the most recent connect attempt that failed (refused, a bad password,
    /// a password callback or `on_connect` hook that failed…), for operators: a pool
    /// reconnects in the background, so these errors reach no caller otherwise.
    pub fn last_connect_error(&self) -> Option<Error> {
        self.0.state.borrow().last_connect_error.clone()
    }

    /// Changes `size` and `max_size` (`None` or 0: the same as `size`) at run time, with
    /// the builder's rules (a Usage error otherwise). Growth takes effect at once: the
    /// connections missing to `size` are opened now. Shrinking takes effect as connections
    /// free up: dead and idle ones above the new `max_size` are closed now (least recently
    /// used first), busy ones when they come back; connections between `size` and
    /// `max_size` are left to `auto_shrink`. A closed pool is a Pool error.
    pub fn resize(&self, size: usize, max_size: Option<usize>) -> Result<(), Error> {
        Inner::resize(&self.0, size, max_size)
    }

    /// Replaces every connection: idle ones are closed now and new ones opened in their
    /// place; busy ones are closed when they come back. For after a failover, a DNS change
    /// or a change of `set_dsn` that should apply at once. A closed pool is a Pool error.
    pub fn drain(&self) -> Result<(), Error> {
        Inner::drain(&self.0)
    }

    /// Whether `close()` was called.
    pub fn closed(&self) -> bool {
        self.0.state.borrow().phase == PoolPhase::Closed
    }

    /// The pool's name (`db.client.connection.pool.name`, see [`PoolBuilder::name`]).
    pub fn name(&self) -> &str {
        &self.0.config.settings.observing.name
    }

    /// The server version of the last connection that connected.
    pub fn server_version(&self) -> Option<i32> {
        self.0.state.borrow().server_version
    }

    /// Gives back a connection taken with `getconn`. A connection given back inside a
    /// transaction is rolled back before anyone else gets it. Giving back a connection that
    /// is not busy (twice, or one from elsewhere) is a Usage error.
    pub fn putconn(&self, conn: Connection) -> Result<(), Error> {
        let id = id_of(&conn);
        let held = {
            let st = self.0.state.borrow();
            st.pool.is_busy(id) && !st.meta.get(&id).is_some_and(|m| m.resetting)
        };
        if !held {
            return Err(Error::usage(
                "tried to release a connection that is not busy in this pool",
            ));
        }
        Inner::release(&self.0, conn);
        Ok(())
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
            if st.phase == PoolPhase::Closed {
                return Err(Error::new(
                    ErrorKind::Pool,
                    "connection pool is already closed",
                ));
            }
            st.phase = PoolPhase::Closed;
            if let Some(pc) = st.shrinker.take() {
                pc.stop();
            }
            if let Some(t) = st.reconnect_timer.take() {
                self.0.ioloop.remove_timeout(t);
            }
            if let Some((t, _)) = st.expiry_timer.take() {
                self.0.ioloop.remove_timeout(t);
            }
            if let Some((t, _)) = st.waiter_timer.take() {
                self.0.ioloop.remove_timeout(t);
            }
            for m in st.meta.values_mut() {
                if let Some(t) = m.leak_timer.take() {
                    self.0.ioloop.remove_timeout(t);
                }
            }
            let (mut conns, waiters) = st.pool.close();
            conns.extend(st.listener.take());
            if let Some(t) = st.listener_timer.take() {
                self.0.ioloop.remove_timeout(t);
            }
            st.initial = None;
            (conns, waiters, std::mem::take(&mut st.connect_waiters))
        };
        for w in waiters {
            (w.item.cb).call(Err(pool_closed()));
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
}

impl Inner {
    /// Opens one more connection; it joins `pending`. `requested`: on demand (`connect()`,
    /// stretching), as opposed to the pool's own replacements.
    fn new_connection(this: &Rc<Inner>, requested: bool) -> Id {
        let conn = this.config.connection(&this.ioloop);
        let id = id_of(&conn);
        {
            let mut st = this.state.borrow_mut();
            if let Some((oid, arr)) = st.hstore {
                conn.set_hstore_oids(oid, arr);
            }
            st.meta.insert(id, Meta::default());
        }
        let weak = Rc::downgrade(this);
        conn.on_close(Rc::new(move |e: &Error| {
            if let Some(inner) = weak.upgrade() {
                Inner::on_connection_lost(&inner, id, e);
            }
        }));
        Inner::connect_one(this, conn, requested);
        id
    }

    /// Starts connecting `conn` (new or dead); it joins `pending`.
    fn connect_one(this: &Rc<Inner>, conn: Connection, requested: bool) {
        {
            let mut st = this.state.borrow_mut();
            st.pool.connecting(conn.clone(), requested);
            if let Some(t) = &st.acquiring {
                t.created.set(true);
            }
        }
        let weak = Rc::downgrade(this);
        let c = conn.clone();
        Inner::open(
            this,
            conn,
            Box::new(move |result| match weak.upgrade() {
                Some(inner) => Inner::connect_done(&inner, c, result),
                None => c.close(),
            }),
        );
    }

    fn connect_done(this: &Rc<Inner>, conn: Connection, result: Result<(), Error>) {
        let id = id_of(&conn);
        let now = this.ioloop.time();
        let mut st = this.state.borrow_mut();
        let known =
            st.phase != PoolPhase::Closed && st.pool.connected(now, id, result.is_ok()).is_some();
        if !known {
            drop(st);
            conn.close();
            return;
        }
        let failure = result.as_ref().err().cloned();
        if failure.is_none() {
            st.server_version = conn.server_version().or(st.server_version);
        }
        let initial_done = match st.initial.as_mut() {
            Some(init) => {
                if init.ids.remove(&id) {
                    init.tried += 1;
                    if let Some(e) = &failure {
                        init.failed += 1;
                        init.first_error.get_or_insert_with(|| e.clone());
                    }
                }
                init.ids
                    .is_empty()
                    .then(|| (init.tried, init.first_error.clone()))
            }
            None => None,
        };
        drop(st);
        if let Some(e) = failure {
            log::debug!("pool: a connection failed to connect: {e}");
            Inner::add_dead(this, conn);
        } else {
            Inner::settle(this, conn);
        }
        if let Some((tried, first_error)) = initial_done {
            let (waiters, failed) = {
                let mut st = this.state.borrow_mut();
                let failed = st.initial.take().map_or(0, |i| i.failed);
                (std::mem::take(&mut st.connect_waiters), failed)
            };
            Inner::schedule_reconnect(this);
            let result = match first_error {
                Some(e) if this.config.settings.raise_connect_errors => {
                    Err(connect_failed(tried - failed, tried, &e))
                }
                _ => Ok(Pool(this.clone())),
            };
            for f in waiters {
                let _ = f.set_result(result.clone());
            }
        }
    }

    /// A connection that is up and nobody's: replaced if it outlived `max_lifetime` or a
    /// drain, closed if the pool is above `max_size`, otherwise ready for work.
    fn settle(this: &Rc<Inner>, conn: Connection) {
        if this.state.borrow().phase == PoolPhase::Closed {
            conn.close();
            return;
        }
        if conn.closed() {
            Inner::add_dead(this, conn);
            return;
        }
        let now = this.ioloop.time();
        let why = this
            .state
            .borrow()
            .pool
            .verdict(now, id_of(&conn), &this.config.limits());
        match why {
            Some(why) => {
                Inner::retire(this, conn, why);
                Inner::replenish(this);
            }
            None => Inner::add_free(this, conn),
        }
    }

    /// A connection is ready for work: the oldest waiter gets it, or it joins `free`.
    fn add_free(this: &Rc<Inner>, conn: Connection) {
        let now = this.ioloop.time();
        let served = {
            let mut st = this.state.borrow_mut();
            let served = st
                .pool
                .serve(now, conn, &this.config.limits(), abandoned, shareable);
            for w in served
                .abandoned
                .iter()
                .chain(served.to.as_ref().map(|(_, w)| w))
            {
                st.counters.requests_wait_time += now.saturating_duration_since(w.since);
            }
            served
        };
        match served.to {
            Some((conn, w)) => {
                Inner::handed_out(this, &conn, &w.item.req);
                (w.item.cb).call(Ok(conn));
            }
            None => Inner::arm_expiry(this),
        }
    }

    /// A connection failed or was lost: it waits for the next reconnect batch. Waiters fail
    /// when nothing is left that could serve them, unless they may wait for a reconnect.
    fn add_dead(this: &Rc<Inner>, conn: Connection) {
        let all_dead = { this.state.borrow_mut().pool.add_dead(conn) };
        if all_dead && this.config.settings.wait_for_reconnect {
            log::warn!("pool: every connection is dead; requests wait for a reconnect");
        } else if all_dead {
            log::warn!(
                "pool: every connection is dead; requests fail with DatabaseNotAvailable \
                 until a reconnect succeeds"
            );
            let e = not_available(this.state.borrow().last_connect_error.as_ref());
            Inner::abort_waiters(this, e);
        }
        Inner::schedule_reconnect(this);
    }

    fn abort_waiters(this: &Rc<Inner>, err: Error) {
        let now = this.ioloop.time();
        let waiters: Vec<Queued> = {
            let mut st = this.state.borrow_mut();
            let waiters = st.pool.take_waiting();
            for w in &waiters {
                st.counters.requests_wait_time += now.saturating_duration_since(w.since);
            }
            if err.kind() == ErrorKind::DatabaseNotAvailable {
                st.counters.requests_unavailable += waiters.len() as u64;
            }
            waiters
        };
        for w in waiters {
            (w.item.cb).call(Err(err.clone()));
        }
    }

    /// An established connection closed: counted as lost unless the pool itself closed
    /// it; if it sat idle, it is dead now (found at once, not on its next use), and a
    /// reconnect is scheduled.
    fn on_connection_lost(this: &Rc<Inner>, id: Id, e: &Error) {
        let lost: Vec<Connection> = {
            let mut st = this.state.borrow_mut();
            if st.phase == PoolPhase::Closed {
                return;
            }
            match st.meta.get(&id) {
                // Retired by the pool, or closed by its own check or hook.
                None => return,
                Some(m) if m.quiet => {}
                Some(_) => st.counters.connections_lost += 1,
            }
            st.pool.take_closed_idle(Connection::closed)
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
            if st.phase != PoolPhase::Open || st.reconnect_timer.is_some() || st.initial.is_some() {
                return;
            }
            match st.pool.reconnect_at(now, &this.config.limits()) {
                Some(at) => at,
                None => return,
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
        let now = this.ioloop.time();
        this.state
            .borrow()
            .pool
            .may_reconnect(now, requested, &this.config.limits())
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
            if st.phase != PoolPhase::Open {
                return;
            }
            st.pool.take_dead()
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
        let stretch = this.state.borrow().pool.stretch(&this.config.limits());
        match stretch {
            Stretch::Reconnect => Inner::schedule_reconnect(this),
            Stretch::Grow => {
                log::debug!("pool: stretching by one connection");
                Inner::new_connection(this, true);
            }
            Stretch::Nothing => {}
        }
    }

    /// Hands a connection to `cb`: a free one at once (LIFO; checked first when it idled
    /// past `health_check_after`), or after waiting (FIFO).
    fn acquire(this: &Rc<Inner>, req: Acquisition, cb: Done<Connection>) {
        let phase = this.state.borrow().phase;
        match phase {
            PoolPhase::New => return cb.call(Err(not_connected())),
            PoolPhase::Closed => return cb.call(Err(pool_closed())),
            PoolPhase::Open => {}
        }
        Inner::expire_before_handout(this);
        let now = this.ioloop.time();
        let got = {
            let mut st = this.state.borrow_mut();
            let got = st.pool.acquire(now, req.shareable, &this.config.limits());
            if let Handout::Check(conn) = &got {
                if let Some(m) = st.meta.get_mut(&id_of(conn)) {
                    m.quiet = true;
                }
            }
            got
        };
        match got {
            Handout::Shared(conn) | Handout::Free(conn) => {
                Inner::stretch_if_needed(this);
                Inner::handed_out(this, &conn, &req);
                cb.call(Ok(conn))
            }
            Handout::Check(conn) => {
                Inner::stretch_if_needed(this);
                Inner::health_check(this, conn, req, cb);
            }
            Handout::Wait => Inner::enqueue(this, req, cb),
            Handout::AllDead => {
                // Everything is dead: reconnect if allowed, then wait for it.
                Inner::reanimate(this, true);
                let nothing_pending = this.state.borrow().pool.pending_len() == 0;
                if nothing_pending && !this.config.settings.wait_for_reconnect {
                    let e = {
                        let mut st = this.state.borrow_mut();
                        st.counters.requests_unavailable += 1;
                        not_available(st.last_connect_error.as_ref())
                    };
                    return cb.call(Err(e));
                }
                if nothing_pending {
                    // Too soon after a failed batch: the next one is on a timer.
                    Inner::schedule_reconnect(this);
                }
                Inner::enqueue(this, req, cb);
            }
        }
    }

    /// Queues a request (FIFO) with its acquire timer, or refuses it at `max_waiting`.
    fn enqueue(this: &Rc<Inner>, req: Acquisition, cb: Done<Connection>) {
        let now = this.ioloop.time();
        let timeout = req.timeout;
        let waiter = Claim { req, cb };
        let queued = {
            let mut st = this.state.borrow_mut();
            let limits = this.config.limits();
            let queued = st.pool.enqueue(now, waiter, timeout, &limits, abandoned);
            match &queued {
                Ok(_) => st.counters.requests_waited += 1,
                Err(_) => st.counters.requests_refused += 1,
            }
            queued
        };
        if let Err((w, n)) = queued {
            return (w.cb).call(Err(Error::new(
                ErrorKind::Pool,
                format!("too many requests are waiting for a connection (max_waiting {n})"),
            )));
        }
        Inner::arm_waiter_timer(this);
        Inner::stretch_if_needed(this);
    }

    /// Arms the one timer of the queue for its earliest deadline.
    fn arm_waiter_timer(this: &Rc<Inner>) {
        let at = {
            let st = this.state.borrow();
            match (st.pool.next_deadline(), st.waiter_timer) {
                (None, _) => return,
                (Some(at), Some((_, armed))) if armed <= at => return,
                (Some(at), _) => at,
            }
        };
        let weak: Weak<Inner> = Rc::downgrade(this);
        let timer = this.ioloop.call_at(at, move || {
            if let Some(inner) = weak.upgrade() {
                inner.state.borrow_mut().waiter_timer = None;
                Inner::waiters_timed_out(&inner);
            }
        });
        if let Some((old, _)) = this.state.borrow_mut().waiter_timer.replace((timer, at)) {
            this.ioloop.remove_timeout(old);
        }
    }

    /// Fails every waiting request past its deadline, then re-arms the queue's timer.
    fn waiters_timed_out(this: &Rc<Inner>) {
        let now = this.ioloop.time();
        let late = {
            let mut st = this.state.borrow_mut();
            let late = st.pool.overdue(now);
            for w in &late {
                st.counters.requests_timed_out += 1;
                st.counters.requests_wait_time += now.saturating_duration_since(w.since);
            }
            late
        };
        for w in late {
            let t = w.item.req.timeout.unwrap_or_default();
            (w.item.cb).call(Err(timed_out(t)));
        }
        Inner::arm_waiter_timer(this);
    }

    /// A busy connection comes back: dead if it closed, reset (see `Reset`), then settled
    /// (free for the next waiter, or replaced).
    fn release(this: &Rc<Inner>, conn: Connection) {
        let id = id_of(&conn);
        let now = this.ioloop.time();
        {
            let mut st = this.state.borrow_mut();
            match st.pool.release(id) {
                Released::StillShared | Released::NotBusy => return,
                Released::Out => {}
            }
            let (since, leak) = match st.meta.get_mut(&id) {
                Some(m) => (m.busy_since.take(), m.leak_timer.take()),
                None => (None, None),
            };
            if let Some(since) = since {
                let used = now.saturating_duration_since(since);
                st.counters.usage_time += used;
                if this.config.settings.observing.observer.is_some() {
                    Inner::tell_release(this, used);
                }
            }
            if let Some(t) = leak {
                this.ioloop.remove_timeout(t);
            }
        }
        if this.state.borrow().phase == PoolPhase::Closed {
            conn.close();
            return;
        }
        if conn.closed() {
            Inner::add_dead(this, conn);
            return;
        }
        Inner::reset(this, conn);
    }

    fn set_hstore(this: &Rc<Inner>, oid: u32, arr: u32) {
        let conns: Vec<Connection> = {
            let mut st = this.state.borrow_mut();
            st.hstore = Some((oid, arr));
            st.pool.all()
        };
        for c in conns {
            c.set_hstore_oids(oid, arr);
        }
    }

    /// Closes the least recently used free connections idle longer than `shrink_delay`,
    /// down to `size`.
    fn shrink(this: &Rc<Inner>) {
        let now = this.ioloop.time();
        let closing = this
            .state
            .borrow_mut()
            .pool
            .shrink(now, &this.config.limits());
        if !closing.is_empty() {
            log::debug!("pool: shrinking by {} connection(s)", closing.len());
        }
        for c in closing {
            Inner::retire(this, c, Retired::Shrunk);
        }
    }
}
