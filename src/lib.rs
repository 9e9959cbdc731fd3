//! momoko: an asynchronous PostgreSQL client and connection pool for single-threaded,
//! callback-driven programs on mio, the Rust form of Momoko 2.2 (Tornado + psycopg2).
//!
//! One thread runs an [`IoLoop`](ioloop::IoLoop) (Tornado's IOLoop, re-exported as
//! [`ioloop`]); [`Connection`]s and [`Pool`]s register their sockets with it and answer
//! with one-shot [`Future`](ioloop::Future)s. This tutorial follows Momoko's; the programs in
//! `examples/` are its complete, runnable form (`make demo` runs them against a throwaway
//! server).
//!
//! Coming from Python's Momoko? [`migrating_from_momoko`] puts every item of its API beside
//! its momoko form.
//!
//! # The principle
//!
//! Almost every method of [`Pool`] and [`Connection`] returns a
//! [`Future`](ioloop::Future) at once and does its work as the loop runs. The exceptions are
//! synchronous, as in Momoko: [`Connection::close`], [`Pool::close`], [`Connection::mogrify`],
//! [`Pool::putconn`]. Query futures resolve to `Result<`[`Cursor`]`, `[`Error`]`>`; a cursor
//! holds the rows (`fetchone`, `fetchmany`, `fetchall`, or iterate it).
//!
//! A future is consumed in one of two ways:
//! - with a callback: [`IoLoop::add_future`](ioloop::IoLoop::add_future) or
//!   [`Future::add_done_callback`](ioloop::Future::add_done_callback), then
//!   [`Future::take`](ioloop::Future::take) the value inside it. Callbacks always run later,
//!   from the loop, never inline;
//! - with `.await`, inside an `async` block run on the loop by
//!   [`IoLoop::spawn`](ioloop::IoLoop::spawn) or [`IoLoop::run_sync`](ioloop::IoLoop::run_sync)
//!   (Tornado's `gen.coroutine`).
//!
//! # Trivial example
//!
//! The loop started and stopped around one future at a time (`examples/trivial.rs`):
//!
//! ```no_run
//! use momoko::ioloop::IoLoop;
//! use momoko::{Connection, Error};
//!
//! # fn main() -> Result<(), Error> {
//! let ioloop = IoLoop::current();
//!
//! let conn = Connection::new("dbname=postgres"); // nothing happens on the network yet
//! let future = conn.connect();
//! let lp = ioloop.clone();
//! ioloop.add_future(&future, move |_| lp.stop());
//! ioloop.start(); // returns once the future is done
//! future.take().expect("done")?; // the Err if connecting failed
//!
//! let future = conn.execute("SELECT 1", ());
//! let lp = ioloop.clone();
//! ioloop.add_future(&future, move |_| lp.stop());
//! ioloop.start();
//! let mut cursor = future.take().expect("done")?;
//! let rows = cursor.fetchall();
//! let one: i32 = rows[0].get(0);
//! # Ok(()) }
//! ```
//!
//! The connection string is read as libpq reads it (`key=value` pairs or a `postgresql://`
//! URI; the `PG*` environment variables and `~/.pgpass` fill in the rest): see [`Config`].
//!
//! # Introducing Pool
//!
//! A [`Pool`] keeps `size` connections open and hands them out: requests wait in a queue
//! when all are busy, it stretches by one connection at a time up to `max_size` under load,
//! shrinks back after idling (`auto_shrink`), reconnects connections the server dropped, and
//! runs an operation once more on another connection when the first attempt provably never
//! ran. Every option of Momoko's pool is on [`PoolBuilder`]:
//!
//! ```no_run
//! use std::time::Duration;
//! use momoko::ioloop::IoLoop;
//! use momoko::{Error, Pool};
//!
//! # fn main() -> Result<(), Error> {
//! let ioloop = IoLoop::current();
//! let pool = Pool::builder("host=localhost dbname=postgres")
//!     .size(1)
//!     .max_size(4)
//!     .reconnect_interval(Duration::from_millis(500))
//!     .setsession(["SET TIME ZONE 'UTC'"])
//!     .build()?; // size 0, or max_size below size, is a Usage error
//!
//! // One way to run the loop "in sync", as in Momoko's tutorial.
//! let future = pool.connect();
//! let lp = ioloop.clone();
//! ioloop.add_future(&future, move |_| lp.stop());
//! ioloop.start();
//! future.take().expect("done")?;
//! # Ok(()) }
//! ```
//!
//! # Using Pool
//!
//! [`Pool::execute`], [`Pool::callproc`], [`Pool::transaction`] and [`Pool::mogrify`] each
//! take a free connection for the one operation. To run queries in parallel, make the calls
//! first and wait after (`examples/parallel.rs`, and `examples/web.rs` for the tutorial's
//! `TutorialHandler`):
//!
//! ```no_run
//! # use momoko::{Error, Pool};
//! # async fn handler(db: Pool) -> Result<(), Error> {
//! let f1 = db.execute("select 1;", ());
//! let f2 = db.execute("select 2;", ());
//! let f3 = db.execute("select 3;", ());
//! let (mut c1, mut c2, mut c3) = (f1.await?, f2.await?, f3.await?);
//! println!("Q1: {:?}", c1.fetchall());
//! # let _ = (c2.fetchall(), c3.fetchall());
//! # Ok(()) }
//! ```
//!
//! A transaction is one unit of work, of retry and of rollback: it resolves to one cursor
//! per statement, and any failure rolls it back.
//!
//! ```no_run
//! # use momoko::{Error, Pool, Statement};
//! # async fn f(db: Pool) -> Result<(), Error> {
//! let cursors = db
//!     .transaction(vec![
//!         Statement::from("UPDATE accounts SET balance = balance - 10 WHERE id = 1"),
//!         Statement::from(("UPDATE accounts SET balance = balance + %s WHERE id = %s", (10, 2))),
//!     ])
//!     .await?;
//! assert_eq!(cursors.len(), 2);
//! # Ok(()) }
//! ```
//!
//! # Parameters
//!
//! Queries take psycopg2's placeholders ([`Params`]): `%s` with a tuple, array, `Vec` or
//! slice; `%(name)s` with [`named`], a `BTreeMap` or a `HashMap`; `%%` for a literal percent
//! sign, and with no parameters at all (`()`), `%` is literal. Values are rendered as SQL
//! literals on the client, exactly as [`mogrify`] (and [`Connection::mogrify`]) shows; a
//! placeholder without its parameter is a Usage error before anything is sent.
//!
//! ```
//! use momoko::{mogrify, named, QuoteContext, Value};
//!
//! let ctx = QuoteContext::default(); // a connection keeps its own in step with the server
//! assert_eq!(mogrify("SELECT %s, %s", &(1, "it's"), &ctx).unwrap(), "SELECT 1, 'it''s'");
//! let params = named([("id", Value::from(7))]);
//! assert_eq!(mogrify("SELECT %(id)s", &params, &ctx).unwrap(), "SELECT 7");
//! assert_eq!(mogrify("SELECT '100%'", &(), &ctx).unwrap(), "SELECT '100%'");
//! assert!(mogrify("SELECT %s, %s", &(1,), &ctx).is_err()); // a Usage error
//! ```
//!
//! Rows decode on demand: [`Row::get`] by index or column name into any [`FromSql`] type
//! (`Option<T>` for a nullable column), [`Row::try_get`] without panicking, and
//! [`Row::to_map`] for a dictionary of [`Value`]s.
//!
//! # Manual connection management
//!
//! [`Pool::getconn`] takes a connection for your exclusive use, for example for a
//! server-side cursor. Give it back with [`Pool::putconn`], or keep it under
//! [`Pool::manage`], whose guard gives it back when dropped, also on an early return or a
//! panic; one returned inside a transaction is rolled back first
//! (`examples/server_side_cursor.rs`):
//!
//! ```no_run
//! # use momoko::{Error, Pool};
//! # async fn f(db: Pool) -> Result<(), Error> {
//! let conn = db.manage(db.getconn(true).await?);
//! conn.execute("BEGIN", ()).await?;
//! conn.execute("DECLARE all_ints CURSOR FOR SELECT generate_series(1, 1000)", ()).await?;
//! for _ in 0..10 {
//!     let mut cursor = conn.execute("FETCH %s FROM all_ints", (100,)).await?;
//!     let rows = cursor.fetchall(); // do something with them
//! #   let _ = rows;
//! }
//! conn.execute("CLOSE all_ints", ()).await?;
//! conn.execute("COMMIT", ()).await?;
//! # Ok(()) }
//! ```
//!
//! # Coroutines
//!
//! [`IoLoop::spawn`](ioloop::IoLoop::spawn) runs an `async` block as a task on the loop and
//! returns a future of its output; [`IoLoop::run_sync`](ioloop::IoLoop::run_sync) runs the
//! loop until one is done (`examples/coroutines.rs`):
//!
//! ```no_run
//! use momoko::ioloop::IoLoop;
//! use momoko::{Error, Pool};
//!
//! fn main() -> Result<(), Error> {
//!     IoLoop::current().run_sync(async {
//!         let pool = Pool::builder("dbname=postgres").size(1).max_size(4).build()?;
//!         pool.connect().await?;
//!         let a = IoLoop::current().spawn({
//!             let pool = pool.clone(); // Pool and Connection are cheap, shared handles
//!             async move { pool.execute("SELECT 1", ()).await }
//!         });
//!         let b = pool.execute("SELECT 2", ());
//!         let (mut a, mut b) = (a.await?, b.await?);
//!         println!("{:?} {:?}", a.fetchone(), b.fetchone());
//!         pool.close()
//!     })
//! }
//! ```
//!
//! # Errors
//!
//! Every failure is an [`Error`] whose [`kind`](Error::kind) says who caused it:
//! [`ErrorKind::Db`] (the server refused; [`Error::code`] is the SQLSTATE),
//! [`ErrorKind::Connection`] (network, lost or closed connection), [`ErrorKind::Usage`] (a
//! mistake in the call), and for pools [`ErrorKind::Pool`], [`ErrorKind::PartiallyConnected`],
//! [`ErrorKind::DatabaseNotAvailable`] and [`ErrorKind::Timeout`]. No future is left
//! pending: closing a connection or a pool fails what was in flight. An error caused by
//! another says the cause in its own text, once (`0 of 2 connections could be made: …`);
//! [`Error::code`], [`Error::as_db_error`], [`Error::cause`] and [`Error::io_error`] give
//! it to programs, and `source()` does not repeat it.
//!
//! # Dead links
//!
//! A peer that vanishes without a reset (a cut link, a failed host, a load balancer's idle
//! timeout) is found within a minute with no keyword set. Unless the connection string says
//! otherwise, momoko turns TCP keepalives on after 15 s idle (a probe every 5 s, 3 of them)
//! and sets `tcp_user_timeout` to 30 s: a request written to a dead link fails after about
//! 30 s (marked [`Error::outcome_unknown`]) instead of the kernel's ~15 minutes, and an idle
//! pooled connection is dropped and replaced after about 30 s. A long query on a live link
//! is never cut (the server acknowledges it and answers the probes); a server that stops
//! reading for 30 s while the client still has data to send (a large COPY into a stalled
//! server) is taken for dead, so raise `tcp_user_timeout` for such loads. `keepalives=0`,
//! `tcp_user_timeout=0` (and 0 for `keepalives_idle`, `keepalives_interval`,
//! `keepalives_count`) keep the system's behaviour. See [`Config::DEFAULT_TCP_USER_TIMEOUT`].
//!
//! # Environment
//!
//! The library reads only what libpq would: the `PG*` variables (`PGHOST`, `PGPORT`,
//! `PGDATABASE`, `PGUSER`, `PGPASSWORD`, `PGPASSFILE`, ...), `USER`/`LOGNAME` and `HOME`,
//! and the password file. The examples read their DSN from `MOMOKO_DSN`, else
//! `MOMOKO_TEST_DSN`, and the tests start a throwaway server unless `MOMOKO_TEST_DSN` names
//! one.
//!
//! # Embedding in your own loop
//!
//! Two ways, each with the whole of momoko:
//! - the [`IoLoop`](ioloop::IoLoop) nests in any poll loop: register its file descriptor
//!   (`AsRawFd`, readable when it has work), bound your poll by
//!   [`IoLoop::next_timeout`](ioloop::IoLoop::next_timeout) and call
//!   [`IoLoop::turn`](ioloop::IoLoop::turn); pools, LISTEN and everything else then run
//!   without `IoLoop::start` (`examples/nested_loop.rs`);
//! - [`MioConnection`] is one connection driven straight from your `mio::Poll`, with the
//!   same operations as [`Connection`] and callbacks instead of futures
//!   (`examples/custom_mio_loop.rs`).
//!
//! # Layers
//!
//! Bottom up; no module imports from a layer above its own.
//!
//! - **momoko-loop** (`loop/`): the IoLoop, its futures, timers and tasks. It knows nothing
//!   of PostgreSQL and never holds a borrow of its tables while user code runs.
//! - **The protocol core** (`proto/`): sans-IO. Bytes in, bytes out, events out. It never
//!   touches a socket, the clock or the loop, and never runs user code: not even a COPY
//!   source, which it hands out to be pulled.
//! - **The session core** (`session/`): one connection's state, held once and kept across
//!   reconnects (transport, protocol core, type registry, listeners, statement cache,
//!   requests in flight), with the operations one per file in `session/ops` over one request
//!   seam. It takes `now` as an argument and never reads the clock; what must reach user
//!   code leaves it as actions for a driver to run after every borrow is released.
//!   Connection and statement identities are process-wide, never heap addresses.
//! - **The drivers** (`connection.rs`, `embed.rs`): [`Connection`] binds a session to an
//!   IoLoop, [`MioConnection`] to a program's own `mio::Poll`. They register sockets, feed
//!   readiness and deadlines in, pull COPY data and deliver actions in request order; they
//!   hold no connection state of their own beyond that.
//! - **The pool** (`pool.rs`): Momoko's container, recovery and retry over [`Connection`]s.
//! - **Values** (`types/`, `row.rs`, `params.rs`, `conninfo/`): codecs, rows, psycopg2
//!   parameters, libpq connection strings. Pure functions and data; no I/O.
//!
//! This crate root only wires the modules together and re-exports the public surface; it
//! holds no logic of its own.
// No unsafe code, here or in momoko-loop (run_sync's future lives in its caller's frame).
#![forbid(unsafe_code)]
// Every public item is documented and printable; `make test` (clippy -D warnings) holds it.
#![warn(missing_docs, missing_debug_implementations)]
// docs.rs (package.metadata.docs.rs) marks each item with the feature it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

/// The migration guide (`docs/migrating-from-momoko.md`), here so that docs.rs shows it
/// and so that its Rust snippets are compiled with the doc tests.
#[doc = include_str!("../docs/migrating-from-momoko.md")]
pub mod migrating_from_momoko {}

/// The README's Rust blocks, compiled with the doc tests so that the Quick start a new user
/// copies cannot drift from the API (blocks that need a live server or features are `ignore`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use momoko_loop as ioloop;

pub mod conninfo;
mod error;

mod cancel;
mod connection;
mod driver;
mod embed;
pub mod observe;
mod params;
mod pool;
mod proto;
pub mod replication;
mod row;
mod session;
pub mod sqlstate;
mod types;

// Entry points for the fuzz targets in fuzz/; not API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use connection::{
    connect, Connection, ConnectionBuilder, Prepared, Statement, TransactionStatus,
};
pub use conninfo::Config;
pub use embed::MioConnection;
pub use error::{DbError, Error, ErrorKind};
/// The level type of the statement log settings (`log`'s, as sqlx takes it).
pub use log::LevelFilter;
pub use observe::Observer;
pub use params::{mogrify, named, Named, ParamValues, Params};
pub use pool::{
    CustomReset, Managed, Pool, PoolBuilder, PoolCounters, PoolStats, Reset, RetryPolicy,
};
pub use row::{Column, Cursor, Row, RowIndex};
pub use session::Notification;
pub use types::{
    oid, Cidr, Format, FromSql, Inet, Infinite, Interval, IsNull, Numeric, QuoteContext, Range,
    SqlType, ToSql, Value,
};
