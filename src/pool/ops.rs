//! What callers run on the pool: the operations (`execute` … `register_json`, `getconn`
//! with its ping), each acquired, run on its connection and, when that is provably safe, run
//! once more (on the connection reconnected in place, or with `wait_for_reconnect` on the
//! next one handed out). It never retries a request whose effect on the server is unknown
//! (unless the caller chose Momoko's rule), and never holds a borrow of the pool's state
//! while a callback runs.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use momoko_loop::Future;

use super::builder::RetryPolicy;
use super::{timed_out, Abandoned, Acquisition, Inner, Pool, PoolPhase};
use crate::connection::{Connection, Statement};
use crate::error::{Error, ErrorKind};
use crate::params::{ParamValues, Params};
use crate::row::{Cursor, Row};
use crate::session::ops::Done;

/// An operation the pool runs on a connection, again on another one for a retry.
type Op<T> = Rc<dyn Fn(&Connection, Done<T>)>;

/// Where an operation stands in `Inner::attempt`.
struct Run {
    /// 0 for the first attempt.
    attempt: u32,
    /// The connection stays busy afterwards (getconn's ping).
    keep: bool,
    /// The request, for an acquisition of another connection.
    req: Acquisition,
    /// When the request was made: a retry waits only what is left of its bound.
    started: Instant,
}

impl Pool {
    /// `$n` parameters whose number does not match the SQL, refused before any connection
    /// is taken (named parameters are not `$n`, so not counted).
    fn refuse_count<T: 'static>(
        &self,
        sql: &str,
        values: &ParamValues,
    ) -> Option<Future<Result<T, Error>>> {
        let ParamValues::Positional(v) = values else {
            return None;
        };
        let e = crate::session::ops::placeholders::check(sql, v.len()).err()?;
        let fut = Future::with_loop(&self.0.ioloop);
        let _ = fut.set_result(Err(e));
        Some(fut)
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
    /// A wrong number of parameters fails at once (`ErrorKind::Usage`), before any
    /// connection is taken.
    pub fn query<P: Params>(&self, sql: &str, params: P) -> Future<Result<Cursor, Error>> {
        let sql = sql.to_owned();
        let values = params.to_values();
        if let Some(refused) = self.refuse_count(&sql, &values) {
            return refused;
        }
        self.operate(
            Rc::new(move |conn: &Connection, done| conn.query_cb(&sql, &values, done)),
            true,
        )
    }

    /// [`Connection::stream`] on a pooled connection: each row goes to `f` as it is read,
    /// none kept; resolves to the number of rows. The connection is held alone for the
    /// stream (nothing is pipelined behind it). An attempt that fails before handing out
    /// any row is retried like `query`; once a row was handed out, the error is the
    /// answer (a replay would hand the rows out twice).
    pub fn stream<P: Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnMut(&Row) + 'static,
    ) -> Future<Result<u64, Error>> {
        let sql = sql.to_owned();
        let values = params.to_values();
        if let Some(refused) = self.refuse_count(&sql, &values) {
            return refused;
        }
        let f = Rc::new(RefCell::new(f));
        // Rows handed out by earlier attempts, and the error that ended the last one.
        let handed = Rc::new(Cell::new(0u64));
        let last_error: Rc<RefCell<Option<Error>>> = Rc::default();
        self.operate(
            Rc::new(move |conn: &Connection, done: Done<u64>| {
                if handed.get() > 0 {
                    if let Some(e) = last_error.borrow_mut().take() {
                        return done.call(Err(e));
                    }
                }
                let (f, count, slot) = (f.clone(), handed.clone(), last_error.clone());
                let rows = move |row: &Row| {
                    count.set(count.get() + 1);
                    (f.borrow_mut())(row)
                };
                conn.stream_cb(
                    &sql,
                    &values,
                    rows,
                    Done::new(move |r| {
                        if let Err(e) = &r {
                            *slot.borrow_mut() = Some(e.clone());
                        }
                        done.call(r)
                    }),
                )
            }),
            false,
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
            Rc::new(move |conn: &Connection, done| done.call(conn.mogrify(&query, &values))),
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
                conn.hstore_oids_cb(Done::new(move |r| {
                    done.call(r.map(|(oid, arr)| {
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
        let pool = self.clone();
        let gone = abandoned.clone();
        let done: Done<Connection> = Done::new(move |r| {
            if gone() {
                // The caller dropped its future: nobody will give this connection back.
                if let Ok(conn) = r {
                    log::debug!("pool: getconn was abandoned; the connection goes back");
                    let _ = pool.putconn(conn);
                }
                return;
            }
            resolve.call(r)
        });
        let req = Acquisition {
            shareable: false,
            held: true,
            abandoned,
            timeout: self.0.config.wait_bound(),
            retry: false,
        };
        let inner = self.0.clone();
        let started = self.0.ioloop.time();
        Inner::acquire_observed(
            &self.0,
            req.clone(),
            Done::new(move |r| match r {
                Err(e) => done.call(Err(e)),
                Ok(conn) if !ping => done.call(Ok(conn)),
                Ok(conn) => {
                    // The ping hands back the connection it ran on: with wait_for_reconnect
                    // a dead one is swapped for another.
                    let op: Op<Connection> = Rc::new(|c: &Connection, d| {
                        let c2 = c.clone();
                        c.ping_cb(Done::new(move |r| d.call(r.map(|()| c2))))
                    });
                    let run = Run {
                        attempt: 0,
                        keep: true,
                        req,
                        started,
                    };
                    Inner::attempt(&inner, conn, op, run, done);
                }
            }),
        );
        fut
    }

    fn operate<T: 'static>(&self, op: Op<T>, shareable: bool) -> Future<Result<T, Error>> {
        let fut = Future::with_loop(&self.0.ioloop);
        let (done, abandoned) = resolver(&fut);
        let inner = self.0.clone();
        let req = Acquisition {
            shareable,
            held: false,
            abandoned,
            timeout: self.0.config.wait_bound(),
            retry: false,
        };
        let started = self.0.ioloop.time();
        Inner::acquire_observed(
            &self.0,
            req.clone(),
            Done::new(move |r| match r {
                Err(e) => done.call(Err(e)),
                Ok(conn) => {
                    let run = Run {
                        attempt: 0,
                        keep: false,
                        req,
                        started,
                    };
                    Inner::attempt(&inner, conn, op, run, done)
                }
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
    let done: Done<T> = Done::new(move |r| {
        let _ = h.set_result(r);
    });
    (done, Rc::new(move || holder.is_sole_handle()))
}

impl Inner {
    /// Runs `op` on `conn`; on a failure that allows it, runs it once more: on `conn`
    /// reconnected in place (Momoko's way), or with `wait_for_reconnect` on whichever
    /// connection the pool hands out next, within the request's bound. `keep` leaves the
    /// connection busy afterwards (getconn's ping).
    fn attempt<T: 'static>(this: &Rc<Inner>, conn: Connection, op: Op<T>, run: Run, done: Done<T>) {
        let inner = this.clone();
        let c = conn.clone();
        let op2 = op.clone();
        op(
            &conn,
            Done::new(move |r| match r {
                Ok(v) => {
                    if !run.keep {
                        Inner::release(&inner, c);
                    }
                    done.call(Ok(v))
                }
                Err(e) => {
                    let waits = inner.config.settings.wait_for_reconnect;
                    let retry = (run.attempt == 0 || waits) && Inner::may_retry(&inner, &c, &e);
                    if retry && waits {
                        log::debug!("pool: running again on another connection after: {e}");
                        Inner::release(&inner, c);
                        Inner::retry_elsewhere(&inner, op2, run, done);
                        return;
                    }
                    if retry {
                        log::debug!("pool: retrying once after: {e}");
                        let inner2 = inner.clone();
                        let c2 = c.clone();
                        Inner::open(
                            &inner,
                            c,
                            Box::new(move |r| match r {
                                Ok(()) => {
                                    let run = Run { attempt: 1, ..run };
                                    Inner::attempt(&inner2, c2, op2, run, done)
                                }
                                Err(ce) => Inner::give_up(&inner2, c2, &run, ce, done),
                            }),
                        );
                        return;
                    }
                    Inner::give_up(&inner, c, &run, e, done)
                }
            }),
        );
    }

    /// Another attempt on the next connection handed out, within what is left of the
    /// request's bound (wait_for_reconnect).
    fn retry_elsewhere<T: 'static>(this: &Rc<Inner>, op: Op<T>, run: Run, done: Done<T>) {
        let elapsed = this.ioloop.time().saturating_duration_since(run.started);
        let left = run.req.timeout.map(|t| t.saturating_sub(elapsed));
        if left == Some(Duration::ZERO) {
            return done.call(Err(timed_out(run.req.timeout.unwrap_or_default())));
        }
        let req = Acquisition {
            timeout: left,
            retry: true,
            ..run.req.clone()
        };
        let inner = this.clone();
        Inner::acquire(
            this,
            req,
            Done::new(move |r| match r {
                Ok(conn) => {
                    let run = Run {
                        attempt: run.attempt + 1,
                        ..run
                    };
                    Inner::attempt(&inner, conn, op, run, done)
                }
                // A timeout says how long the request itself waited, retries included.
                Err(e) if e.kind() == ErrorKind::Timeout => {
                    done.call(Err(timed_out(run.req.timeout.unwrap_or_default())))
                }
                Err(e) => done.call(Err(e)),
            }),
        );
    }

    /// The operation failed for good: the connection goes back, the caller gets the error
    /// (DatabaseNotAvailable when a connection proved dead where one was needed).
    fn give_up<T: 'static>(this: &Rc<Inner>, c: Connection, run: &Run, e: Error, done: Done<T>) {
        let dead = c.closed();
        let e = if dead && ((run.attempt > 0 && e.is_connection_lost()) || run.keep) {
            Error::caused_by(
                ErrorKind::DatabaseNotAvailable,
                "no database connection available",
                &e,
            )
        } else {
            e
        };
        Inner::release(this, c);
        done.call(Err(e))
    }

    fn may_retry(this: &Rc<Inner>, conn: &Connection, e: &Error) -> bool {
        if this.state.borrow().phase != PoolPhase::Open || !conn.closed() {
            return false;
        }
        match this.config.settings.retry {
            RetryPolicy::Never => false,
            RetryPolicy::Momoko => true,
            RetryPolicy::Safe => e.is_connection_lost() && !e.outcome_unknown(),
        }
    }
}
