//! [`ReplicationConnection`]: a walsender session (`replication=database` or `true`) and
//! its commands: `IDENTIFY_SYSTEM`, `CREATE_REPLICATION_SLOT`, `DROP_REPLICATION_SLOT`, and
//! the `START_REPLICATION` that hands it to a [`ReplicationStream`].
//!
//! It owns the rule that a walsender hears only simple-protocol queries (every command goes
//! through the session's simple Query), and that nothing else is sent while a stream has the
//! connection. It connects like any [`Connection`] (host lists, TLS, authentication,
//! target_session_attrs) because it is one, with the walsender mode in its startup packet.

use std::cell::Cell;
use std::rc::Rc;

use momoko_loop::{Future, IoLoop};

use super::options::{SlotOptions, StreamOptions};
use super::stream::{self, Delivery, ReplicationStream};
use super::{Change, Lsn, XLogData};
use crate::connection::{Connection, ConnectionBuilder};
use crate::conninfo::Config;
use crate::error::Error;
use crate::row::Cursor;
use crate::session::ops::quote_ident;
use crate::session::ops::Done;

/// `IDENTIFY_SYSTEM`'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemInfo {
    systemid: String,
    timeline: u32,
    xlogpos: Lsn,
    dbname: Option<String>,
}

impl SystemInfo {
    /// The cluster's unique system identifier (a number, as text).
    pub fn systemid(&self) -> &str {
        &self.systemid
    }
    /// The current timeline.
    pub fn timeline(&self) -> u32 {
        self.timeline
    }
    /// The current WAL flush position.
    pub fn xlogpos(&self) -> Lsn {
        self.xlogpos
    }
    /// The database connected to (logical walsender), `None` on a physical one.
    pub fn dbname(&self) -> Option<&str> {
        self.dbname.as_deref()
    }
}

/// `CREATE_REPLICATION_SLOT`'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    name: String,
    consistent_point: Lsn,
    snapshot_name: Option<String>,
    output_plugin: Option<String>,
}

impl SlotInfo {
    /// The slot's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The first LSN a stream of this slot can deliver (0/0 for a physical slot that does
    /// not reserve WAL yet).
    pub fn consistent_point(&self) -> Lsn {
        self.consistent_point
    }
    /// The exported snapshot (`Snapshot::Export`): valid until the next command on the
    /// connection that created the slot.
    pub fn snapshot_name(&self) -> Option<&str> {
        self.snapshot_name.as_deref()
    }
    /// The logical slot's output plugin.
    pub fn output_plugin(&self) -> Option<&str> {
        self.output_plugin.as_deref()
    }
}

/// A walsender connection: replication commands, then one stream at a time.
///
/// A cheap handle: clones share one connection. Commands made while a stream runs fail with
/// a Usage error (the server hears nothing but the stream's messages until it ends).
#[derive(Clone)]
pub struct ReplicationConnection {
    pub(crate) conn: Connection,
    /// A stream has the connection now (set at its start, cleared when it finishes).
    pub(crate) streaming: Rc<Cell<bool>>,
}

impl std::fmt::Debug for ReplicationConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<ReplicationConnection {:?}>", self.conn)
    }
}

impl ReplicationConnection {
    /// Connects a logical walsender (`replication=database` added to `dsn`): replication
    /// commands and SQL on the database of `dsn`.
    pub fn connect(dsn: &str) -> Future<Result<ReplicationConnection, Error>> {
        ReplicationConnection::connect_mode(dsn, "database")
    }

    /// Connects a physical walsender (`replication=true` added to `dsn`).
    pub fn connect_physical(dsn: &str) -> Future<Result<ReplicationConnection, Error>> {
        ReplicationConnection::connect_mode(dsn, "true")
    }

    fn connect_mode(dsn: &str, mode: &str) -> Future<Result<ReplicationConnection, Error>> {
        match Config::parse(dsn).and_then(|c| c.replication(mode)) {
            Ok(config) => ReplicationConnection::connect_config(config),
            Err(e) => {
                let fut = Future::with_loop(&IoLoop::current());
                let _ = fut.set_result(Err(e));
                fut
            }
        }
    }

    /// Connects with a configuration built in code; its [`Config::replication`] must ask
    /// for a walsender (a Usage error otherwise).
    pub fn connect_config(config: Config) -> Future<Result<ReplicationConnection, Error>> {
        let fut = Future::with_loop(&IoLoop::current());
        if config.get_replication().is_none() {
            let _ = fut.set_result(Err(Error::usage(
                "a replication connection needs Config::replication(\"database\" or \"true\")",
            )));
            return fut;
        }
        let done = fut.clone();
        ConnectionBuilder::from_config(config)
            .connect()
            .add_done_callback(move |f| {
                let r = f
                    .take()
                    .unwrap_or_else(|| Err(Error::connection("the connect was lost")));
                let _ = done.set_result(r.map(|conn| ReplicationConnection {
                    conn,
                    streaming: Rc::default(),
                }));
            });
        fut
    }

    /// The server version as libpq's PQserverVersion (150004 for 15.4).
    pub fn server_version(&self) -> Option<i32> {
        self.conn.server_version()
    }

    /// The server process serving this connection.
    pub fn backend_pid(&self) -> Option<i32> {
        self.conn.backend_pid()
    }

    /// Whether the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }

    /// A failed future unless no stream has the connection.
    fn check_idle<T: 'static>(&self) -> Result<(), Future<Result<T, Error>>> {
        if self.streaming.get() {
            let fut = Future::with_loop(self.conn.ioloop());
            let _ = fut.set_result(Err(Error::usage(
                "a replication stream has this connection: stop it (or wait for finished()) first",
            )));
            return Err(fut);
        }
        Ok(())
    }

    /// Runs one command (a replication command, or SQL on a logical walsender) as a simple
    /// query: the only protocol a walsender speaks.
    pub fn execute(&self, command: &str) -> Future<Result<Cursor, Error>> {
        if let Err(f) = self.check_idle() {
            return f;
        }
        self.conn.execute(command, ())
    }

    /// The server's `version` or a clear error when the connection has none yet.
    fn version(&self) -> Result<i32, Error> {
        self.server_version()
            .ok_or_else(|| Error::connection("the replication connection is not connected"))
    }

    fn command<T: 'static>(
        &self,
        command: Result<String, Error>,
        then: impl FnOnce(Cursor) -> Result<T, Error> + 'static,
    ) -> Future<Result<T, Error>> {
        if let Err(f) = self.check_idle() {
            return f;
        }
        let fut = Future::with_loop(self.conn.ioloop());
        let command = match command {
            Ok(c) => c,
            Err(e) => {
                let _ = fut.set_result(Err(e));
                return fut;
            }
        };
        let done = fut.clone();
        self.conn.replication_command(
            command,
            Done::new(move |r| {
                let _ = done.set_result(r.and_then(then));
            }),
        );
        fut
    }

    /// `IDENTIFY_SYSTEM`.
    pub fn identify_system(&self) -> Future<Result<SystemInfo, Error>> {
        self.command(Ok("IDENTIFY_SYSTEM".into()), |mut c| {
            let row = c
                .fetchone()
                .ok_or_else(|| Error::protocol("IDENTIFY_SYSTEM returned no row"))?;
            let systemid: String = row.try_get(0)?;
            let timeline: i64 = text_int(&row, 1)?;
            let xlogpos: String = row.try_get(2)?;
            let dbname: Option<String> = row.try_get(3)?;
            Ok(SystemInfo {
                systemid,
                timeline: u32::try_from(timeline)
                    .map_err(|_| Error::protocol(format!("timeline {timeline} out of range")))?,
                xlogpos: xlogpos.parse()?,
                dbname,
            })
        })
    }

    /// `CREATE_REPLICATION_SLOT name …`: the options are checked against the server's
    /// version first (failover needs 17, two_phase 14…) and refused with a Usage error.
    pub fn create_slot(&self, name: &str, options: SlotOptions) -> Future<Result<SlotInfo, Error>> {
        let command = self.version().and_then(|v| options.command(name, v));
        self.command(command, |mut c| {
            let row = c
                .fetchone()
                .ok_or_else(|| Error::protocol("CREATE_REPLICATION_SLOT returned no row"))?;
            let name: String = row.try_get(0)?;
            let point: Option<String> = row.try_get(1)?;
            Ok(SlotInfo {
                name,
                consistent_point: match point {
                    Some(p) => p.parse()?,
                    None => Lsn::ZERO,
                },
                snapshot_name: row.try_get(2)?,
                output_plugin: row.try_get(3)?,
            })
        })
    }

    /// `DROP_REPLICATION_SLOT name [WAIT]`: with `wait`, an active slot is dropped once
    /// released instead of failing with 55006.
    pub fn drop_slot(&self, name: &str, wait: bool) -> Future<Result<(), Error>> {
        let mut cmd = format!("DROP_REPLICATION_SLOT {}", quote_ident(name));
        if wait {
            cmd.push_str(" WAIT");
        }
        self.command(Ok(cmd), |_| Ok(()))
    }

    /// Streams `slot` from `start` (the server starts at the later of `start` and the slot's
    /// confirmed position, so `Lsn::ZERO` means "where the slot is") with pgoutput, each
    /// message decoded into a [`Change`] for `callback`, on the loop, in WAL order, with no
    /// borrow of the library held.
    pub fn start_logical<F>(
        &self,
        slot: &str,
        start: Lsn,
        options: StreamOptions,
        callback: F,
    ) -> ReplicationStream
    where
        F: FnMut(&ReplicationStream, Change) + 'static,
    {
        let delivery = if options.is_pgoutput() {
            Delivery::Changes(Box::new(callback))
        } else {
            Delivery::Refused(Error::usage(
                "start_logical decodes pgoutput: give StreamOptions::pgoutput(..), or use \
                 start_logical_raw for another plugin",
            ))
        };
        self.start(Some(slot), start, None, options, delivery)
    }

    /// Streams `slot` from `start` with any output plugin (the slot's): each XLogData as it
    /// came, for `callback`.
    pub fn start_logical_raw<F>(
        &self,
        slot: &str,
        start: Lsn,
        options: StreamOptions,
        callback: F,
    ) -> ReplicationStream
    where
        F: FnMut(&ReplicationStream, XLogData) + 'static,
    {
        let delivery = match options.kind {
            super::options::Kind::Physical => Delivery::Refused(Error::usage(
                "StreamOptions::physical() is for start_physical",
            )),
            _ => Delivery::Raw(Box::new(callback)),
        };
        self.start(Some(slot), start, None, options, delivery)
    }

    /// Streams physical WAL from `start` on `timeline` (the current one when `None`),
    /// through `slot` when given, on a physical walsender (`connect_physical`).
    pub fn start_physical<F>(
        &self,
        slot: Option<&str>,
        start: Lsn,
        timeline: Option<u32>,
        options: StreamOptions,
        callback: F,
    ) -> ReplicationStream
    where
        F: FnMut(&ReplicationStream, XLogData) + 'static,
    {
        let delivery = match options.kind {
            super::options::Kind::Physical => Delivery::Raw(Box::new(callback)),
            _ => Delivery::Refused(Error::usage(
                "start_physical takes StreamOptions::physical()",
            )),
        };
        self.start(slot, start, timeline, options, delivery)
    }

    fn start(
        &self,
        slot: Option<&str>,
        start: Lsn,
        timeline: Option<u32>,
        options: StreamOptions,
        delivery: Delivery,
    ) -> ReplicationStream {
        let refused = match self.check_idle::<()>() {
            Err(_) => Some(Error::usage(
                "a replication stream has this connection already: one stream at a time",
            )),
            Ok(()) => None,
        };
        stream::start(
            self.clone(),
            slot.map(str::to_owned),
            start,
            timeline,
            options,
            delivery,
            refused,
        )
    }

    /// Closes the connection; a stream on it finishes with a Connection error.
    pub fn close(&self) {
        self.conn.close();
    }
}

/// An integer column a walsender sends as text (IDENTIFY_SYSTEM's timeline is int8).
fn text_int(row: &crate::row::Row, idx: usize) -> Result<i64, Error> {
    match row.try_get::<_, i64>(idx) {
        Ok(v) => Ok(v),
        Err(_) => {
            let s: String = row.try_get(idx)?;
            s.trim()
                .parse()
                .map_err(|_| Error::protocol(format!("not an integer: {s:?}")))
        }
    }
}
