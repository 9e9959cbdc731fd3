//! Part of the reach contract (check it with `check.sh replication`).
//! Logical and physical replication on the loop (the replication issue).
//!
//! Same rules as the other parts: these calls must compile as written; add freely, rename
//! nothing. `Change` is `#[non_exhaustive]`: code outside momoko matches it with a `_` arm and
//! names only the fields it needs (`..`).
#![allow(dead_code, unused_variables, clippy::all)]

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use momoko::ioloop::{Future, IoLoop};
use momoko::replication::{
    Change, Lsn, ReplicationConnection, ReplicationStream, SlotInfo, SlotOptions, Snapshot,
    StreamOptions, SystemInfo, Table, Tuple, XLogData,
};
use momoko::Error;

/// A change-data-capture consumer: a logical slot with pgoutput, typed changes delivered to a
/// callback on the loop, an LSN confirmed once the work is durable, a clean stop.
pub fn logical(dsn: &str) -> Result<(), Error> {
    let dsn = dsn.to_owned();
    IoLoop::current().run_sync(async move {
        // A walsender connection for logical replication: momoko adds `replication=database`.
        let repl: ReplicationConnection = ReplicationConnection::connect(&dsn).await?;
        let sys: SystemInfo = repl.identify_system().await?;
        let (id, timeline, xlogpos, db): (&str, u32, Lsn, Option<&str>) =
            (sys.systemid(), sys.timeline(), sys.xlogpos(), sys.dbname());

        // A permanent slot whose snapshot is exported: until the next command on `repl`, another
        // connection can `SET TRANSACTION SNAPSHOT` to it and copy the tables as of
        // `consistent_point`, the first LSN the stream will deliver.
        let slot: SlotInfo = repl
            .create_slot(
                "cdc",
                SlotOptions::logical("pgoutput")
                    .temporary(false)
                    .snapshot(Snapshot::Export),
            )
            .await?;
        let (name, at, snapshot): (&str, Lsn, Option<&str>) =
            (slot.name(), slot.consistent_point(), slot.snapshot_name());
        let _other = SlotOptions::logical("test_decoding")
            .temporary(true)
            .snapshot(Snapshot::Nothing);
        let _physical = SlotOptions::physical().reserve_wal(true);

        let options: StreamOptions = StreamOptions::pgoutput(&["cdc_pub"])
            .proto_version(2) // 1..=4 as the server allows
            .streaming(true) // large transactions arrive as StreamStart..StreamStop blocks
            .messages(true) // pg_logical_emit_message
            .binary(false)
            .status_interval(Duration::from_secs(10)) // standby status updates, sent by momoko
            .reconnect(true); // after a lost connection: reconnect and resume from the confirmed LSN

        let applied: Rc<RefCell<Vec<i32>>> = Rc::default();
        let sink = applied.clone();
        // The callback gets the stream (to confirm, pause, stop) and each decoded change, in
        // WAL order; momoko keeps the relations (Relation/Type messages) and decodes every
        // column with the same FromSql as rows.
        let stream: ReplicationStream = repl.start_logical(
            "cdc",
            Lsn::ZERO, // the slot's confirmed_flush_lsn, as the server does
            options,
            move |stream: &ReplicationStream, change: Change| match change {
                Change::Begin {
                    xid,
                    final_lsn,
                    commit_time,
                    ..
                } => {
                    let _: (u32, Lsn, SystemTime) = (xid, final_lsn, commit_time);
                }
                Change::Relation { table, .. } => {
                    let t: &Table = &table;
                }
                Change::Insert {
                    table, new, xid, ..
                } => {
                    let (schema, name, oid): (&str, &str, u32) =
                        (table.schema(), table.name(), table.oid());
                    let keys: Vec<&str> = table
                        .columns()
                        .iter()
                        .filter(|c| c.is_key())
                        .map(|c| c.name())
                        .collect();
                    let type_oid: u32 = table.columns()[0].type_oid();
                    let id: i32 = new.get("id");
                    let note: Option<String> = new.get(1);
                    let tried: Result<Option<String>, Error> = new.try_get("note");
                    let toasted: bool = new.is_unchanged("body"); // an unchanged TOASTed value: not sent
                    let n: usize = new.len();
                    let _: Option<u32> = xid; // Some inside a streamed transaction
                    sink.borrow_mut().push(id);
                }
                // `key`: the replica-identity key columns ('K'); `old`: the whole old row ('O',
                // REPLICA IDENTITY FULL); at most one of them is Some.
                Change::Update {
                    table,
                    key,
                    old,
                    new,
                    ..
                } => {
                    let _: (Option<Tuple>, Option<Tuple>, Tuple) = (key, old, new);
                }
                Change::Delete {
                    table, key, old, ..
                } => {
                    let _: (Option<Tuple>, Option<Tuple>) = (key, old);
                }
                Change::Truncate {
                    tables,
                    cascade,
                    restart_identity,
                    ..
                } => {
                    let _: (Vec<Table>, bool, bool) = (tables, cascade, restart_identity);
                }
                Change::Message {
                    transactional,
                    lsn,
                    prefix,
                    content,
                    ..
                } => {
                    let _: (bool, Lsn, String, Vec<u8>) = (transactional, lsn, prefix, content);
                }
                Change::Commit {
                    commit_lsn,
                    end_lsn,
                    commit_time,
                    ..
                } => {
                    // Everything up to end_lsn is durable here: the server may forget it.
                    stream.confirm(end_lsn);
                }
                Change::StreamStart { xid, first, .. } => {
                    let _: (u32, bool) = (xid, first);
                }
                Change::StreamStop { .. } => {}
                Change::StreamCommit {
                    xid,
                    commit_lsn,
                    end_lsn,
                    ..
                } => stream.confirm(end_lsn),
                Change::StreamAbort { xid, subxid, .. } => {
                    let _: (u32, u32) = (xid, subxid);
                }
                _ => {}
            },
        );
        let received: Lsn = stream.received_lsn(); // the end of the last XLogData received
        let confirmed: Lsn = stream.confirmed_lsn(); // the highest LSN passed to confirm
        stream.pause(); // stop reading the socket (TCP back-pressure to the server)
        stream.resume();
        let sent: Future<Result<(), Error>> = stream.send_feedback(); // a status update now
        let ended: Future<Result<(), Error>> = stream.finished(); // Ok after stop, Err if lost
        stream.stop().await?; // CopyDone; resolves when the server has ended the stream

        repl.drop_slot("cdc", true).await?; // wait = true: wait for an active slot to be released
        Ok(())
    })
}

/// LSNs: `Display`/`FromStr` in PostgreSQL's text form (two hex numbers of at most 8 digits each,
/// `16/B374D848`), ordered, to and from u64, and readable from `pg_lsn` columns in text and binary
/// results.
pub fn lsns(conn: &momoko::Connection) -> Result<(), Error> {
    let a: Lsn = "16/B374D848".parse()?;
    let b: Lsn = Lsn::from(0x16_B374_D848u64);
    let raw: u64 = u64::from(a);
    let text: String = a.to_string(); // "16/B374D848"
    let ordered: bool = Lsn::ZERO < a && a == b;
    let conn = conn.clone();
    IoLoop::current().run_sync(async move {
        let mut c = conn.execute("SELECT pg_current_wal_lsn()", ()).await?;
        let at: Lsn = c.fetchone().unwrap().get(0);
        Ok(())
    })
}

/// Raw streams: another output plugin (test_decoding, wal2json) or physical WAL, each XLogData
/// as it came.
pub fn raw(dsn: &str) -> Result<(), Error> {
    let dsn = dsn.to_owned();
    IoLoop::current().run_sync(async move {
        let repl = ReplicationConnection::connect(&dsn).await?;
        let options = StreamOptions::plugin()
            .option("include-xids", "0")
            .option("skip-empty-xacts", "1");
        let logical: ReplicationStream = repl.start_logical_raw(
            "td",
            Lsn::ZERO,
            options,
            |stream: &ReplicationStream, msg: XLogData| {
                let (start, end, at, data): (Lsn, Lsn, SystemTime, &[u8]) =
                    (msg.data_start(), msg.wal_end(), msg.send_time(), msg.data());
                stream.confirm(msg.data_start());
            },
        );
        logical.stop().await?;

        // Physical replication (`replication=true`): raw WAL from an LSN on a timeline.
        let phys = ReplicationConnection::connect_physical(&dsn).await?;
        let sys = phys.identify_system().await?;
        let wal: ReplicationStream = phys.start_physical(
            None, // or Some("slot_name")
            sys.xlogpos(),
            Some(sys.timeline()),
            StreamOptions::physical().status_interval(Duration::from_secs(1)),
            |stream: &ReplicationStream, msg: XLogData| {
                let bytes: &[u8] = msg.data();
            },
        );
        wal.stop().await?;
        phys.close();
        repl.close();
        Ok(())
    })
}
