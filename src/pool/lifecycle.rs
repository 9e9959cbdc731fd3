//! The life of a pooled connection beyond Momoko's container: how it is opened (password
//! callback, connect and `setsession`, `on_connect`), checked before hand-out when it sat
//! idle, reset when it comes back, retired (max_lifetime, drain, shrink, a failed reset)
//! and replaced, and watched while a caller holds it (leak warnings); and the run-time
//! `resize`. Every timer goes through the pool's IoLoop: nothing here sleeps or starts a
//! thread. User code (hooks, callbacks) runs only in tasks spawned on the loop, never while
//! a borrow of the pool's state is held, and never from inside one of these functions.
//!
//! One connection, as this module sees it:
//!
//! ```text
//!   (new) ──open: password? → connect + setsession → on_connect?──▶ idle ◀───────────┐
//!     ▲           │ any step fails                                    │ taken         │
//!     │           ▼                                                   ▼               │
//!     │         dead ──reconnect batch──▶ open …        idle past health_check_after? │
//!     │                                                  │ yes: empty query           │
//!     │                                       dead ◀─fail┘ ok / no ──▶ handed out     │
//!     │                                                                  │ returned   │
//!     │                                                                  ▼            │
//!     │                                                      reset (Rollback / …) ────┤
//!     │                                                         │ fails               │ settle:
//!     └──── replaced ◀── retired (closed, forgotten) ◀──────────┴── outlived max_lifetime,
//!                                                                   a drain, or max_size
//! ```

use std::rc::Rc;
use std::time::Duration;

use super::builder::{check_sizes, Reset};
use super::container::{jitter, lifetime_end, Id, Retired};
use super::{id_of, pool_closed, Acquisition, Inner, PoolPhase};
use crate::connection::{Connection, TransactionStatus};
use crate::error::Error;
use crate::observe::spans::{self, PoolEvent};
use crate::session::ops::Done;

/// What `CLOSE ALL`…`DISCARD SEQUENCES` of [`Reset::Clean`] sends, in one round trip.
const CLEAN: &str = "CLOSE ALL; RESET ALL; UNLISTEN *; SELECT pg_advisory_unlock_all(); \
                     DISCARD TEMP; DISCARD SEQUENCES";

/// How long a health check may wait for its answer when no `connect_timeout` is set: a
/// half-open connection never answers, and nothing may wait forever.
const CHECK_BOUND: Duration = Duration::from_secs(5);

impl Inner {
    /// Opens `conn`: the password callback's answer, then connect and `setsession`, then
    /// `on_connect`. Counts the attempt, stamps the connection's lifetime and generation,
    /// and tells `done` (never while a borrow is held). A failing hook closes the
    /// connection quietly: it is a failed connect, not a loss.
    pub(super) fn open(
        this: &Rc<Inner>,
        conn: Connection,
        done: Box<dyn FnOnce(Result<(), Error>)>,
    ) {
        let generation = this.state.borrow().pool.generation();
        let weak = Rc::downgrade(this);
        let c = conn.clone();
        Inner::connect_with_password(
            this,
            &conn,
            Box::new(move |r| {
                let Some(inner) = weak.upgrade() else {
                    c.close();
                    return done(Err(pool_closed()));
                };
                let hook = inner.config.settings.on_connect.clone();
                match (r, hook) {
                    (Err(e), _) => Inner::opened(&inner, &c, generation, Err(e), done),
                    (Ok(()), None) => Inner::opened(&inner, &c, generation, Ok(()), done),
                    (Ok(()), Some(hook)) => {
                        let ran = inner.ioloop.spawn((hook.0)(c.clone()));
                        let weak = Rc::downgrade(&inner);
                        inner.ioloop.add_future(&ran, move |f| {
                            let r = f.take().expect("resolved");
                            let Some(inner) = weak.upgrade() else {
                                c.close();
                                return done(Err(pool_closed()));
                            };
                            if let Err(e) = &r {
                                log::warn!("pool: on_connect failed; closing that connection: {e}");
                                // Quiet until its next connect: its close is no loss.
                                Inner::set_quiet(&inner, id_of(&c), true);
                                c.close();
                            }
                            Inner::opened(&inner, &c, generation, r, done)
                        });
                    }
                }
            }),
        );
    }

    /// The bookkeeping of a finished connect attempt.
    fn opened(
        this: &Rc<Inner>,
        conn: &Connection,
        generation: u64,
        result: Result<(), Error>,
        done: Box<dyn FnOnce(Result<(), Error>)>,
    ) {
        {
            let mut st = this.state.borrow_mut();
            match &result {
                Ok(()) => {
                    st.counters.connections_opened += 1;
                    let now = this.ioloop.time();
                    let expires = this
                        .config
                        .settings
                        .max_lifetime
                        .map(|l| lifetime_end(now, jittered(l)));
                    st.pool.opened(id_of(conn), expires, generation);
                    if let Some(m) = st.meta.get_mut(&id_of(conn)) {
                        m.quiet = false;
                    }
                }
                Err(e) => {
                    st.counters.connections_failed += 1;
                    st.last_connect_error = Some(e.clone());
                }
            }
        }
        done(result)
    }

    /// Connects `conn`, first setting the password the callback gives (when there is one).
    /// An error of the callback fails the attempt before anything is sent.
    pub(super) fn connect_with_password(
        this: &Rc<Inner>,
        conn: &Connection,
        done: Box<dyn FnOnce(Result<(), Error>)>,
    ) {
        fn connect(conn: &Connection, done: Box<dyn FnOnce(Result<(), Error>)>) {
            let fut = conn.connect();
            conn.ioloop()
                .add_future(&fut, move |f| done(f.take().expect("resolved").map(drop)));
        }
        let Some(hook) = this.config.settings.password.clone() else {
            return connect(conn, done);
        };
        let asked = this.ioloop.spawn((hook.0)());
        let c = conn.clone();
        this.ioloop
            .add_future(&asked, move |f| match f.take().expect("resolved") {
                Ok(password) => {
                    c.set_password(Some(password));
                    connect(&c, done)
                }
                Err(e) => {
                    log::warn!("pool: the password callback failed: {e}");
                    done(Err(e))
                }
            });
    }

    fn set_quiet(this: &Rc<Inner>, id: Id, quiet: bool) {
        if let Some(m) = this.state.borrow_mut().meta.get_mut(&id) {
            m.quiet = quiet;
        }
    }

    /// The bookkeeping of a hand-out: the request is served, usage time starts, and a
    /// connection held by `getconn` gets its leak timer.
    pub(super) fn handed_out(this: &Rc<Inner>, conn: &Connection, req: &Acquisition) {
        let id = id_of(conn);
        let now = this.ioloop.time();
        let mut st = this.state.borrow_mut();
        if !req.retry {
            st.counters.requests_served += 1;
        }
        let Some(m) = st.meta.get_mut(&id) else {
            return;
        };
        m.busy_since.get_or_insert(now);
        if let (true, Some(after)) = (req.held, this.config.settings.leak_warning) {
            m.hold += 1;
            let hold = m.hold;
            let weak = Rc::downgrade(this);
            let timer = this.ioloop.call_later(after, move || {
                if let Some(inner) = weak.upgrade() {
                    Inner::leak_suspected(&inner, id, hold, after);
                }
            });
            if let Some(old) = m.leak_timer.replace(timer) {
                this.ioloop.remove_timeout(old);
            }
        }
    }

    /// A connection taken with `getconn` is still out after `leak_warning`: say so, once.
    fn leak_suspected(this: &Rc<Inner>, id: Id, hold: u64, after: Duration) {
        let conn = {
            let mut st = this.state.borrow_mut();
            let conn = st.pool.busy_conn(id);
            let Some(m) = st.meta.get_mut(&id) else {
                return;
            };
            if m.hold != hold || m.leak_timer.take().is_none() {
                return;
            }
            st.counters.leak_warnings += 1;
            conn
        };
        let pid = conn.and_then(|c| c.backend_pid());
        log::warn!(
            "pool: a connection taken with getconn (backend pid {}) has not been given back \
             after {after:?}: give it back with putconn, or hold it with manage()",
            pid.map_or_else(|| "unknown".to_owned(), |p| p.to_string())
        );
    }

    /// Checks `conn` (busy, taken for `req`) with an empty query before handing it out.
    /// Dead: it is replaced and the request goes through `acquire` again, to another
    /// connection or to the queue; it never fails because of the stale one.
    pub(super) fn health_check(
        this: &Rc<Inner>,
        conn: Connection,
        req: Acquisition,
        cb: Done<Connection>,
    ) {
        let bound = this
            .config
            .template
            .connect_timeout()
            .unwrap_or(CHECK_BOUND);
        let watchdog = {
            let c = conn.clone();
            this.ioloop.call_later(bound, move || {
                c.close_with(Error::connection(format!(
                    "the health check got no answer within {bound:?}"
                )))
            })
        };
        let weak = Rc::downgrade(this);
        let c = conn.clone();
        conn.simple(
            String::new(),
            Done::new(move |r| {
                c.ioloop().remove_timeout(watchdog);
                let Some(inner) = weak.upgrade() else {
                    return cb.call(Err(pool_closed()));
                };
                let id = id_of(&c);
                let alive = r.is_ok() && !c.closed();
                if alive {
                    {
                        let mut st = inner.state.borrow_mut();
                        if let Some(m) = st.meta.get_mut(&id) {
                            m.quiet = false;
                        }
                        if req.shareable {
                            st.pool.shared(id, &inner.config.limits());
                        }
                    }
                    Inner::handed_out(&inner, &c, &req);
                    return cb.call(Ok(c));
                }
                let e = match r {
                    Err(e) => e,
                    Ok(_) => Error::connection("the connection closed during its health check"),
                };
                log::debug!("pool: an idle connection failed its health check: {e}");
                let name = &inner.config.settings.observing.name;
                spans::pool_event(name, PoolEvent::HealthCheckFailed(&e));
                // Closed while quiet (until its next connect: the session may report the
                // close after this answer): the check's finding, not a loss.
                if !c.closed() {
                    c.close();
                }
                let closed_pool = {
                    let mut st = inner.state.borrow_mut();
                    st.pool.failed_check(id);
                    st.counters.connections_failed_check += 1;
                    st.phase == PoolPhase::Closed
                };
                if closed_pool {
                    return cb.call(Err(pool_closed()));
                }
                inner.state.borrow_mut().pool.add_dead(c);
                Inner::reanimate(&inner, true);
                Inner::acquire(&inner, req, cb);
            }),
        );
    }

    /// Idle connections at the hand-out end that outlived `max_lifetime` are retired
    /// before one is taken (the expiry timer may be late on a busy loop).
    pub(super) fn expire_before_handout(this: &Rc<Inner>) {
        if this.config.settings.max_lifetime.is_none() {
            return;
        }
        let now = this.ioloop.time();
        let expired = this.state.borrow_mut().pool.expired_at_handout(now);
        if expired.is_empty() {
            return;
        }
        for c in expired {
            Inner::retire(this, c, Retired::Expired);
        }
        Inner::replenish(this);
    }

    /// Arms the expiry timer for the earliest `max_lifetime` among idle connections.
    pub(super) fn arm_expiry(this: &Rc<Inner>) {
        if this.config.settings.max_lifetime.is_none() {
            return;
        }
        let at = {
            let st = this.state.borrow();
            let earliest = st.pool.next_expiry();
            match (earliest, st.expiry_timer) {
                (None, _) => return,
                (Some(at), Some((_, armed))) if armed <= at => return,
                (Some(at), _) => at,
            }
        };
        let weak = Rc::downgrade(this);
        let timer = this.ioloop.call_at(at, move || {
            if let Some(inner) = weak.upgrade() {
                inner.state.borrow_mut().expiry_timer = None;
                Inner::expire_idle(&inner);
            }
        });
        if let Some((old, _)) = this.state.borrow_mut().expiry_timer.replace((timer, at)) {
            this.ioloop.remove_timeout(old);
        }
    }

    /// Retires every idle connection past its lifetime, replaces them, re-arms the timer.
    fn expire_idle(this: &Rc<Inner>) {
        let now = this.ioloop.time();
        let expired: Vec<Connection> = {
            let mut st = this.state.borrow_mut();
            if st.phase != PoolPhase::Open {
                return;
            }
            st.pool.expire_idle(now)
        };
        for c in expired {
            Inner::retire(this, c, Retired::Expired);
        }
        Inner::replenish(this);
        Inner::arm_expiry(this);
    }

    /// Takes `conn` (already out of every set) out of the pool for good: counts why,
    /// forgets it, closes it. Call `replenish` after.
    pub(super) fn retire(this: &Rc<Inner>, conn: Connection, why: Retired) {
        {
            let mut st = this.state.borrow_mut();
            st.pool.forget(id_of(&conn));
            if let Some(m) = st.meta.remove(&id_of(&conn)) {
                if let Some(t) = m.leak_timer {
                    this.ioloop.remove_timeout(t);
                }
            }
            let c = &mut st.counters;
            match why {
                Retired::Expired => c.connections_expired += 1,
                Retired::Drained => c.connections_drained += 1,
                Retired::Shrunk => c.connections_shrunk += 1,
                Retired::ResetFailed => c.connections_reset_failed += 1,
            }
        }
        log::debug!("pool: closing a connection ({why:?})");
        let reason = match why {
            Retired::Expired => "expired",
            Retired::Drained => "drained",
            Retired::Shrunk => "shrunk",
            Retired::ResetFailed => "reset_failed",
        };
        spans::pool_event(
            &this.config.settings.observing.name,
            PoolEvent::Retired(reason),
        );
        // Forgotten first: its close hook sees no connection of the pool, so no loss.
        conn.close();
    }

    /// Opens connections until the pool is back to `size`, and one more per waiter left
    /// without a connect in flight (up to `max_size`): a retired connection's waiters get
    /// its replacement.
    pub(super) fn replenish(this: &Rc<Inner>) {
        let n = {
            let st = this.state.borrow();
            if st.phase != PoolPhase::Open {
                return;
            }
            st.pool.to_open(&this.config.limits())
        };
        for _ in 0..n {
            Inner::new_connection(this, false);
        }
    }

    /// Runs the pool's `reset` on a connection that came back, then settles it. It stays
    /// busy (and refuses a `putconn`) meanwhile; a failed reset retires it.
    pub(super) fn reset(this: &Rc<Inner>, conn: Connection) {
        let needs_rollback = matches!(
            conn.transaction_status(),
            TransactionStatus::InTransaction | TransactionStatus::InError
        ) || conn.in_flight() > 0;
        let reset = this.config.settings.reset.clone();
        if matches!(reset, Reset::Rollback) && !needs_rollback {
            return Inner::settle(this, conn);
        }
        let id = id_of(&conn);
        {
            let mut st = this.state.borrow_mut();
            st.pool.hold(conn.clone());
            if let Some(m) = st.meta.get_mut(&id) {
                m.resetting = true;
            }
        }
        let weak = Rc::downgrade(this);
        let c = conn.clone();
        let finish: Box<dyn FnOnce(Result<(), Error>)> = Box::new(move |r| {
            let Some(inner) = weak.upgrade() else { return };
            {
                let mut st = inner.state.borrow_mut();
                st.pool.release(id);
                if let Some(m) = st.meta.get_mut(&id) {
                    m.resetting = false;
                }
            }
            match r {
                _ if inner.state.borrow().phase == PoolPhase::Closed => c.close(),
                _ if c.closed() => Inner::add_dead(&inner, c),
                Ok(()) => Inner::settle(&inner, c),
                Err(e) => {
                    log::warn!("pool: resetting a returned connection failed; replacing it: {e}");
                    Inner::retire(&inner, c, Retired::ResetFailed);
                    Inner::replenish(&inner);
                }
            }
        });
        // Nobody else may see this session's open transaction or pending answers. Its
        // answer is not awaited apart: the reset after it is answered after it.
        if needs_rollback && !matches!(reset, Reset::Rollback) {
            conn.simple("ROLLBACK".to_owned(), Done::new(|_| {}));
        }
        let lp = this.ioloop.clone();
        let c = conn.clone();
        match reset {
            Reset::Rollback => conn.simple(
                "ROLLBACK".to_owned(),
                Done::new(move |r| finish(r.map(drop))),
            ),
            Reset::Discard => conn.simple(
                "DISCARD ALL".to_owned(),
                Done::new(move |r| {
                    if r.is_ok() {
                        c.forget_statements();
                    }
                    finish(r.map(drop))
                }),
            ),
            Reset::Clean => conn.simple(CLEAN.to_owned(), Done::new(move |r| finish(r.map(drop)))),
            Reset::Custom(hook) => {
                let ran = lp.spawn(((hook.0).0)(c));
                lp.add_future(&ran, move |f| finish(f.take().expect("resolved")));
            }
        }
    }

    /// `Pool::resize`.
    pub(super) fn resize(
        this: &Rc<Inner>,
        size: usize,
        max_size: Option<usize>,
    ) -> Result<(), Error> {
        let max = match max_size {
            None | Some(0) => size,
            Some(m) => m,
        };
        check_sizes(size, max)?;
        let phase = this.state.borrow().phase;
        if phase == PoolPhase::Closed {
            return Err(pool_closed());
        }
        this.config.size.set(size);
        this.config.max_size.set(max);
        if phase == PoolPhase::New {
            return Ok(());
        }
        log::debug!("pool: resized to size {size}, max_size {max}");
        let excess = this.state.borrow_mut().pool.resize_excess(max);
        for c in excess {
            Inner::retire(this, c, Retired::Shrunk);
        }
        Inner::replenish(this);
        Inner::stretch_if_needed(this);
        Ok(())
    }

    /// `Pool::drain`.
    pub(super) fn drain(this: &Rc<Inner>) -> Result<(), Error> {
        let idle: Vec<Connection> = {
            let mut st = this.state.borrow_mut();
            match st.phase {
                PoolPhase::Closed => return Err(pool_closed()),
                PoolPhase::New => return Ok(()),
                PoolPhase::Open => {}
            }
            st.pool.drain()
        };
        log::debug!(
            "pool: draining; {} idle connection(s) replaced now",
            idle.len()
        );
        for c in idle {
            Inner::retire(this, c, Retired::Drained);
        }
        Inner::replenish(this);
        Ok(())
    }
}

/// `lifetime` shortened by a random 0 to 10 % (fastrand's per-thread generator), so that
/// connections opened together do not all expire together.
fn jittered(lifetime: Duration) -> Duration {
    jitter(lifetime, fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_shortens_by_at_most_ten_percent_and_spreads() {
        let l = Duration::from_secs(100);
        let samples: Vec<Duration> = (0..1000).map(|_| jittered(l)).collect();
        assert!(samples
            .iter()
            .all(|d| *d <= l && *d >= Duration::from_secs(90)));
        let min = samples.iter().min().unwrap();
        let max = samples.iter().max().unwrap();
        assert!(*max - *min > Duration::from_secs(8), "{min:?}..{max:?}");
    }
}
