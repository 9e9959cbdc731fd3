//! Logical and physical replication against a real server (wal_level = logical): the
//! walsender commands, every change kind through a stream, streamed and aborted large
//! transactions, an exported snapshot meeting the stream, consumers killed and restarted,
//! idle slots, pause/resume, server restarts under reconnect(true), the server's errors, and
//! the raw streams (test_decoding, physical WAL). Every wait is bounded.

mod common;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use common::{dsn, run_for, sleep, unique, wait_until};
use momoko::replication::{
    Change, Lsn, ReplicationConnection, ReplicationStream, SlotOptions, Snapshot, StreamOptions,
    XLogData,
};
use momoko::{Connection, ErrorKind};
use momoko_testpg::{StopMode, TestServer};

/// A plain connection for the SQL side of a test.
async fn sql(dsn: &str) -> Connection {
    Connection::new(dsn).connect().await.unwrap()
}

async fn exec(conn: &Connection, q: &str) {
    conn.execute(q, ())
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}"));
}

async fn scalar<T: momoko::FromSql>(conn: &Connection, q: &str) -> T {
    conn.execute(q, ())
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}"))
        .fetchone()
        .unwrap()
        .get(0)
}

/// A table `t(id int primary key, note text)`, a publication of it, and their names.
async fn published_table(conn: &Connection) -> (String, String) {
    let table = unique("rt");
    let publication = unique("rp");
    exec(
        conn,
        &format!("CREATE TABLE {table} (id int PRIMARY KEY, note text)"),
    )
    .await;
    exec(
        conn,
        &format!("CREATE PUBLICATION {publication} FOR TABLE {table}"),
    )
    .await;
    (table, publication)
}

/// What `stop()` returns.
type Stopped = momoko::ioloop::Future<Result<(), momoko::Error>>;

/// What a stream delivered, shared with the test.
type Seen = Rc<RefCell<Vec<Change>>>;

/// Starts a pgoutput stream whose changes all go to the returned list; each Commit is
/// confirmed when `confirm` is set.
fn collect(
    repl: &ReplicationConnection,
    slot: &str,
    options: StreamOptions,
    confirm: bool,
) -> (ReplicationStream, Seen) {
    let seen: Seen = Rc::default();
    let sink = seen.clone();
    let stream = repl.start_logical(slot, Lsn::ZERO, options, move |s, change| {
        if confirm {
            if let Change::Commit { end_lsn, .. } | Change::StreamCommit { end_lsn, .. } = &change {
                s.confirm(*end_lsn);
            }
        }
        sink.borrow_mut().push(change);
    });
    (stream, seen)
}

fn commits(seen: &Seen) -> usize {
    seen.borrow()
        .iter()
        .filter(|c| matches!(c, Change::Commit { .. } | Change::StreamCommit { .. }))
        .count()
}

/// The ids inserted in what was seen.
fn inserted_ids(seen: &Seen) -> Vec<i32> {
    seen.borrow()
        .iter()
        .filter_map(|c| match c {
            Change::Insert { new, .. } => Some(new.get::<_, i32>("id")),
            _ => None,
        })
        .collect()
}

async fn confirmed_flush(conn: &Connection, slot: &str) -> Lsn {
    let text: String = scalar(
        conn,
        &format!(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = '{slot}'"
        ),
    )
    .await;
    text.parse().unwrap()
}

#[test]
fn identify_system_names_the_database_the_timeline_and_the_wal_position() {
    let dsn = dsn();
    run_for(30, async move {
        let conn = sql(&dsn).await;
        let repl = ReplicationConnection::connect(&dsn).await.unwrap();
        let sys = repl.identify_system().await.unwrap();
        let db: String = scalar(&conn, "SELECT current_database()").await;
        let id: String = scalar(
            &conn,
            "SELECT system_identifier::text FROM pg_control_system()",
        )
        .await;
        assert_eq!(sys.dbname(), Some(db.as_str()));
        assert_eq!(sys.systemid(), id);
        assert_eq!(sys.timeline(), 1);
        assert!(sys.xlogpos() > Lsn::ZERO);
        // A walsender (replication=database) it is: pg_stat_replication lists it.
        let pid = repl.backend_pid().unwrap();
        let kind: String = scalar(
            &conn,
            &format!("SELECT backend_type FROM pg_stat_activity WHERE pid = {pid}"),
        )
        .await;
        assert_eq!(kind, "walsender");
        let phys = ReplicationConnection::connect_physical(&dsn).await.unwrap();
        assert_eq!(phys.identify_system().await.unwrap().dbname(), None);
        repl.close();
        phys.close();
    });
}

#[test]
fn the_server_refuses_a_duplicate_slot_a_missing_slot_and_a_slot_in_use() {
    let dsn = dsn();
    run_for(60, async move {
        let conn = sql(&dsn).await;
        let (_, publication) = published_table(&conn).await;
        let slot = unique("rs");
        let repl = ReplicationConnection::connect(&dsn).await.unwrap();
        let info = repl
            .create_slot(
                &slot,
                SlotOptions::logical("pgoutput").snapshot(Snapshot::Nothing),
            )
            .await
            .unwrap();
        assert_eq!(info.name(), slot);
        assert_eq!(info.output_plugin(), Some("pgoutput"));
        assert_eq!(info.snapshot_name(), None);
        assert!(info.consistent_point() > Lsn::ZERO);

        let dup = repl
            .create_slot(&slot, SlotOptions::logical("pgoutput"))
            .await
            .unwrap_err();
        assert_eq!(dup.code(), Some("42710"), "{dup}");

        let missing = repl.start_logical(
            "no_such_slot",
            Lsn::ZERO,
            StreamOptions::pgoutput(&[&publication]),
            |_, _| {},
        );
        let e = missing.finished().await.unwrap_err();
        assert_eq!(e.code(), Some("42704"), "{e}");

        // The connection is usable again after a refused START_REPLICATION.
        let options = StreamOptions::pgoutput(&[&publication]);
        let first = repl.start_logical(&slot, Lsn::ZERO, options.clone(), |_, _| {});
        let wait_active =
            format!("SELECT active FROM pg_replication_slots WHERE slot_name = '{slot}'");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !scalar::<bool>(&conn, &wait_active).await {
            assert!(
                std::time::Instant::now() < deadline,
                "the slot never became active"
            );
            sleep(Duration::from_millis(20)).await;
        }
        let other = ReplicationConnection::connect(&dsn).await.unwrap();
        let second = other.start_logical(&slot, Lsn::ZERO, options, |_, _| {});
        let e = second.finished().await.unwrap_err();
        assert_eq!(e.code(), Some("55006"), "{e}");

        // Commands wait for the stream: a clear Usage error, not a confused server.
        let busy = repl.identify_system().await.unwrap_err();
        assert_eq!(busy.kind(), ErrorKind::Usage);

        first.stop().await.unwrap();
        assert!(first.finished().await.is_ok());
        repl.drop_slot(&slot, true).await.unwrap();
        let gone = repl.drop_slot(&slot, false).await.unwrap_err();
        assert_eq!(gone.code(), Some("42704"));
    });
}

#[test]
fn every_change_kind_arrives_decoded_with_exact_values() {
    let dsn = dsn();
    run_for(60, async move {
        let conn = sql(&dsn).await;
        let (table, publication) = published_table(&conn).await;
        let slot = unique("rs");
        let repl = ReplicationConnection::connect(&dsn).await.unwrap();
        repl.create_slot(
            &slot,
            SlotOptions::logical("pgoutput")
                .temporary(true)
                .snapshot(Snapshot::Nothing),
        )
        .await
        .unwrap();
        let options = StreamOptions::pgoutput(&[&publication])
            .proto_version(2)
            .messages(true);
        let (stream, seen) = collect(&repl, &slot, options, true);

        exec(
            &conn,
            &format!("INSERT INTO {table} VALUES (1, 'one'), (2, NULL)"),
        )
        .await;
        exec(
            &conn,
            &format!("UPDATE {table} SET note = 'uno' WHERE id = 1"),
        )
        .await;
        exec(&conn, &format!("UPDATE {table} SET id = 3 WHERE id = 2")).await;
        exec(&conn, &format!("ALTER TABLE {table} REPLICA IDENTITY FULL")).await;
        exec(&conn, &format!("DELETE FROM {table} WHERE id = 1")).await;
        exec(
            &conn,
            "SELECT pg_logical_emit_message(false, 'pfx', 'outside')",
        )
        .await;
        exec(&conn, &format!("TRUNCATE {table} RESTART IDENTITY CASCADE")).await;
        wait_until(20, "six transactions", || commits(&seen) >= 5).await;
        wait_until(5, "the message", || {
            seen.borrow()
                .iter()
                .any(|c| matches!(c, Change::Message { .. }))
        })
        .await;
        stream.stop().await.unwrap();

        let seen = seen.borrow();
        let data: Vec<&Change> = seen
            .iter()
            .filter(|c| {
                !matches!(
                    c,
                    Change::Begin { .. } | Change::Commit { .. } | Change::Relation { .. }
                )
            })
            .collect();
        match data.as_slice() {
            [Change::Insert {
                table: t,
                new: a,
                xid: None,
                ..
            }, Change::Insert { new: b, .. }, Change::Update {
                key: None,
                old: None,
                new: u1,
                ..
            }, Change::Update {
                key: Some(k),
                old: None,
                new: u2,
                ..
            }, Change::Delete {
                key: None,
                old: Some(old),
                ..
            }, Change::Message {
                transactional: false,
                prefix,
                content,
                ..
            }, Change::Truncate {
                tables,
                cascade: true,
                restart_identity: true,
                ..
            }] => {
                assert_eq!(t.name(), table);
                assert_eq!(t.schema(), "public");
                let keys: Vec<&str> = t
                    .columns()
                    .iter()
                    .filter(|c| c.is_key())
                    .map(|c| c.name())
                    .collect();
                assert_eq!(keys, ["id"]);
                assert_eq!(
                    (a.get::<_, i32>("id"), a.get::<_, Option<String>>("note")),
                    (1, Some("one".into()))
                );
                assert_eq!(
                    (b.get::<_, i32>(0), b.get::<_, Option<String>>(1)),
                    (2, None)
                );
                assert!(b.is_null("note"));
                assert_eq!(u1.get::<_, String>("note"), "uno");
                // The key changed: its old value comes as a key tuple.
                assert_eq!(k.get::<_, i32>("id"), 2);
                assert_eq!(u2.get::<_, i32>("id"), 3);
                // REPLICA IDENTITY FULL: the whole old row.
                assert_eq!(
                    (old.get::<_, i32>("id"), old.get::<_, String>("note")),
                    (1, "uno".into())
                );
                assert_eq!(prefix, "pfx");
                assert_eq!(content.as_slice(), b"outside");
                assert_eq!(tables.len(), 1);
                assert_eq!(tables[0].name(), table);
            }
            other => panic!("unexpected changes: {other:#?}"),
        }
        // Commits carry increasing LSNs; Begin's final LSN is its Commit's.
        let mut last_end = Lsn::ZERO;
        let mut begin_final = None;
        for c in seen.iter() {
            match c {
                Change::Begin { final_lsn, .. } => begin_final = Some(*final_lsn),
                Change::Commit {
                    commit_lsn,
                    end_lsn,
                    ..
                } => {
                    assert_eq!(begin_final.take(), Some(*commit_lsn));
                    assert!(*end_lsn > last_end);
                    last_end = *end_lsn;
                }
                _ => {}
            }
        }
        assert!(stream.confirmed_lsn() >= last_end);
        repl.close();
    });
}

#[test]
fn test_decoding_text_arrives_through_the_raw_stream() {
    let dsn = dsn();
    run_for(60, async move {
        let conn = sql(&dsn).await;
        let table = unique("rtd");
        exec(&conn, &format!("CREATE TABLE {table} (id int PRIMARY KEY)")).await;
        let slot = unique("rs");
        let repl = ReplicationConnection::connect(&dsn).await.unwrap();
        repl.create_slot(&slot, SlotOptions::logical("test_decoding").temporary(true))
            .await
            .unwrap();
        let lines: Rc<RefCell<Vec<String>>> = Rc::default();
        let sink = lines.clone();
        let options = StreamOptions::plugin()
            .option("include-xids", "0")
            .option("skip-empty-xacts", "1");
        let stream = repl.start_logical_raw(&slot, Lsn::ZERO, options, move |s, msg: XLogData| {
            sink.borrow_mut()
                .push(String::from_utf8(msg.data().to_vec()).unwrap());
            assert!(msg.wal_end() >= msg.data_start());
            s.confirm(msg.data_start());
        });
        exec(&conn, &format!("INSERT INTO {table} VALUES (7)")).await;
        wait_until(20, "the COMMIT line", || {
            lines.borrow().iter().any(|l| l == "COMMIT")
        })
        .await;
        stream.stop().await.unwrap();
        let lines = lines.borrow();
        let ours: Vec<&String> = lines.iter().skip_while(|l| !l.contains(&table)).collect();
        assert_eq!(
            ours.first().map(|s| s.as_str()),
            Some(format!("table public.{table}: INSERT: id[integer]:7").as_str())
        );
        repl.close();
    });
}

#[test]
fn physical_wal_arrives_from_the_position_asked_for() {
    let dsn = dsn();
    run_for(60, async move {
        let conn = sql(&dsn).await;
        let phys = ReplicationConnection::connect_physical(&dsn).await.unwrap();
        let sys = phys.identify_system().await.unwrap();
        let received: Rc<RefCell<Vec<(Lsn, usize)>>> = Rc::default();
        let sink = received.clone();
        let stream = phys.start_physical(
            None,
            sys.xlogpos(),
            Some(sys.timeline()),
            StreamOptions::physical().status_interval(Duration::from_secs(1)),
            move |_, msg: XLogData| sink.borrow_mut().push((msg.data_start(), msg.data().len())),
        );
        let table = unique("rph");
        exec(
            &conn,
            &format!("CREATE TABLE {table} AS SELECT generate_series(1, 1000) AS n"),
        )
        .await;
        wait_until(20, "WAL", || {
            received.borrow().iter().map(|r| r.1).sum::<usize>() > 1000
        })
        .await;
        stream.stop().await.unwrap();
        let received = received.borrow();
        // Contiguous WAL from the position asked for (streaming starts at its page).
        let first = received[0].0;
        assert!(u64::from(first) <= u64::from(sys.xlogpos()));
        let mut next = first;
        for (start, len) in received.iter() {
            assert_eq!(*start, next, "WAL arrives contiguous");
            next = Lsn::from(u64::from(*start) + *len as u64);
        }
        assert!(stream.received_lsn() >= next);
        phys.close();
    });
}

#[test]
fn a_large_transaction_arrives_in_streamed_blocks_and_an_aborted_one_ends_with_stream_abort() {
    let dsn = dsn();
    run_for(120, async move {
        let conn = sql(&dsn).await;
        let (table, publication) = published_table(&conn).await;
        let slot = unique("rs");
        // The walsender decodes: its own logical_decoding_work_mem decides when to stream.
        let repl = ReplicationConnection::connect(&format!(
            "{dsn} options='-c logical_decoding_work_mem=64kB'"
        ))
        .await
        .unwrap();
        repl.create_slot(&slot, SlotOptions::logical("pgoutput").temporary(true))
            .await
            .unwrap();
        let options = StreamOptions::pgoutput(&[&publication])
            .proto_version(2)
            .streaming(true);
        let (stream, seen) = collect(&repl, &slot, options, true);
        exec(
            &conn,
            &format!("INSERT INTO {table} SELECT g, 'row ' || g FROM generate_series(1, 20000) g"),
        )
        .await;
        wait_until(60, "the streamed commit", || {
            seen.borrow()
                .iter()
                .any(|c| matches!(c, Change::StreamCommit { .. }))
        })
        .await;
        // Rolled back only once the server has streamed some of it (a transaction known
        // to be aborted before its first block is never streamed at all).
        let doomed = sql(&dsn).await;
        exec(
            &doomed,
            &format!(
                "BEGIN; INSERT INTO {table} SELECT g, 'gone' FROM generate_series(20001, 40000) g"
            ),
        )
        .await;
        wait_until(60, "a block of the open transaction", || {
            seen.borrow()
                .iter()
                .filter(|c| matches!(c, Change::StreamStart { first: true, .. }))
                .count()
                == 2
        })
        .await;
        exec(&doomed, "ROLLBACK").await;
        wait_until(60, "the StreamAbort", || {
            seen.borrow()
                .iter()
                .any(|c| matches!(c, Change::StreamAbort { .. }))
        })
        .await;
        stream.stop().await.unwrap();

        let seen = seen.borrow();
        let xids: Vec<u32> = seen
            .iter()
            .filter_map(|c| match c {
                Change::StreamStart { xid, .. } => Some(*xid),
                _ => None,
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(xids.len(), 2, "two streamed transactions");
        let (committed, aborted) = (xids[0], xids[1]);
        let blocks = |x: u32| {
            seen.iter()
                .filter(|c| matches!(c, Change::StreamStart { xid, .. } if *xid == x))
                .count()
        };
        assert!(
            blocks(committed) >= 2,
            "20,000 rows over 64kB come in several blocks"
        );
        assert!(blocks(aborted) >= 1);
        // The first block says so; the later ones do not.
        let firsts: Vec<bool> = seen
            .iter()
            .filter_map(|c| match c {
                Change::StreamStart { xid, first, .. } if *xid == committed => Some(*first),
                _ => None,
            })
            .collect();
        assert!(firsts[0] && firsts[1..].iter().all(|f| !f));
        let mut ids = Vec::new();
        let mut inside = false;
        for c in seen.iter() {
            match c {
                Change::StreamStart { .. } => inside = true,
                Change::StreamStop { .. } => inside = false,
                Change::Insert { new, xid, .. } => {
                    assert!(inside, "streamed changes arrive inside a block");
                    if *xid == Some(committed) {
                        ids.push(new.get::<_, i32>("id"));
                    }
                }
                _ => {}
            }
        }
        assert_eq!(ids, (1..=20000).collect::<Vec<_>>());
        assert!(seen
            .iter()
            .any(|c| matches!(c, Change::StreamCommit { xid, .. } if *xid == committed)));
        assert!(seen.iter().any(
            |c| matches!(c, Change::StreamAbort { xid, subxid, .. } if *xid == aborted && *subxid == aborted)
        ));
        // Every insert came inside a block (above): none as an ordinary transaction.
        repl.close();
    });
}

#[test]
fn an_exported_snapshot_and_the_stream_meet_exactly() {
    let dsn = dsn();
    run_for(60, async move {
        let conn = sql(&dsn).await;
        let (table, publication) = published_table(&conn).await;
        let insert = |from: i32, to: i32| {
            format!("INSERT INTO {table} SELECT g, 'x' FROM generate_series({from}, {to}) g")
        };
        exec(&conn, &insert(1, 100)).await;
        // A transaction still open while the slot is created: the slot waits for it, and
        // it commits before the consistent point.
        let open = sql(&dsn).await;
        exec(&open, &format!("BEGIN; {}", insert(101, 150))).await;
        let slot = unique("rs");
        let repl = ReplicationConnection::connect(&dsn).await.unwrap();
        let created = repl.create_slot(
            &slot,
            SlotOptions::logical("pgoutput")
                .temporary(true)
                .snapshot(Snapshot::Export),
        );
        sleep(Duration::from_millis(300)).await;
        assert!(!created.done(), "the slot waits for the open transaction");
        exec(&open, "COMMIT").await;
        let info = created.await.unwrap();
        let snapshot = info
            .snapshot_name()
            .expect("an exported snapshot")
            .to_owned();
        // After the consistent point: in the stream, not in the copy.
        exec(&conn, &insert(151, 200)).await;
        let copier = sql(&dsn).await;
        exec(&copier, "BEGIN ISOLATION LEVEL REPEATABLE READ").await;
        exec(&copier, &format!("SET TRANSACTION SNAPSHOT '{snapshot}'")).await;
        let copied: BTreeSet<i32> = copier
            .execute(&format!("SELECT id FROM {table}"), ())
            .await
            .unwrap()
            .fetchall()
            .iter()
            .map(|r| r.get(0))
            .collect();
        exec(&copier, "COMMIT").await;
        let (stream, seen) = collect(&repl, &slot, StreamOptions::pgoutput(&[&publication]), true);
        exec(&conn, &insert(201, 250)).await;
        wait_until(20, "every row after the snapshot", || {
            inserted_ids(&seen).len() >= 100
        })
        .await;
        stream.stop().await.unwrap();
        let streamed: BTreeSet<i32> = inserted_ids(&seen).into_iter().collect();
        assert_eq!(copied, (1..=150).collect());
        assert_eq!(streamed, (151..=250).collect());
        assert_eq!(inserted_ids(&seen).len(), 100, "no row twice in the stream");
        repl.close();
    });
}

/// How a consumer round of `a_consumer_killed_..` ends.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kill {
    /// After `n` stored commits and part of the next transaction: the connection dropped.
    Close(usize),
    /// The same, its walsender killed by pg_terminate_backend.
    Terminate(usize),
    /// Right after the `n`th commit is stored and confirmed, before any status update.
    AfterConfirm(usize),
    /// Never: the round reads everything and stops cleanly.
    Never,
}

/// The consumer's durable output: every id it stored, and the end LSN stored with them.
#[derive(Default)]
struct Store {
    ids: Vec<i32>,
    end_lsn: Lsn,
}

/// What one consumer round saw.
#[derive(Default)]
struct Round {
    pending: Vec<i32>,
    commits: Vec<Lsn>,
    first_final_lsn: Option<Lsn>,
    /// The commit LSN of the transaction received but not yet committed, if any.
    open_final_lsn: Option<Lsn>,
    killable: bool,
}

#[test]
fn a_consumer_killed_at_several_points_sees_every_committed_row_and_the_slot_never_passes_unconfirmed_work(
) {
    let dsn = dsn();
    run_for(120, async move {
        let conn = sql(&dsn).await;
        let (table, publication) = published_table(&conn).await;
        let slot = unique("rs");
        let admin = ReplicationConnection::connect(&dsn).await.unwrap();
        admin
            .create_slot(
                &slot,
                SlotOptions::logical("pgoutput").snapshot(Snapshot::Nothing),
            )
            .await
            .unwrap();
        admin.close();
        for t in 0..30 {
            exec(
                &conn,
                &format!(
                    "INSERT INTO {table} SELECT g, 'x' FROM generate_series({}, {}) g",
                    t * 10 + 1,
                    t * 10 + 10
                ),
            )
            .await;
        }
        let store: Rc<RefCell<Store>> = Rc::default();
        let inactive =
            format!("SELECT NOT active FROM pg_replication_slots WHERE slot_name = '{slot}'");
        let mut slot_at = confirmed_flush(&conn, &slot).await;
        for kill in [
            Kill::Close(5),
            Kill::Terminate(5),
            Kill::AfterConfirm(3),
            Kill::Close(4),
            Kill::Never,
        ] {
            let repl = ReplicationConnection::connect(&dsn).await.unwrap();
            let round: Rc<RefCell<Round>> = Rc::default();
            let (r, st) = (round.clone(), store.clone());
            let options = StreamOptions::pgoutput(&[&publication])
                .status_interval(Duration::from_millis(100));
            let stream = repl.start_logical(&slot, Lsn::ZERO, options, move |s, change| {
                let mut r = r.borrow_mut();
                if r.killable {
                    return;
                }
                let stored = r.commits.len();
                match change {
                    Change::Begin { final_lsn, .. } => {
                        r.first_final_lsn.get_or_insert(final_lsn);
                        r.open_final_lsn = Some(final_lsn);
                    }
                    Change::Insert { new, .. } => {
                        r.pending.push(new.get("id"));
                        let partial = r.pending.len() >= 3;
                        if partial
                            && matches!(kill, Kill::Close(n) | Kill::Terminate(n) if stored == n)
                        {
                            // Received, never confirmed: the consumer dies here.
                            s.pause();
                            r.killable = true;
                        }
                    }
                    Change::Commit { end_lsn, .. } => {
                        let mut st = st.borrow_mut();
                        st.ids.append(&mut r.pending);
                        st.end_lsn = end_lsn;
                        s.confirm(end_lsn);
                        r.open_final_lsn = None;
                        r.commits.push(end_lsn);
                        if kill == Kill::AfterConfirm(r.commits.len()) {
                            s.pause();
                            r.killable = true;
                        }
                    }
                    _ => {}
                }
            });
            match kill {
                Kill::Never => {
                    wait_until(30, "every row", || {
                        store
                            .borrow()
                            .ids
                            .iter()
                            .copied()
                            .collect::<BTreeSet<_>>()
                            .len()
                            == 300
                    })
                    .await;
                    stream.stop().await.unwrap();
                }
                _ => {
                    wait_until(30, "the kill point", || round.borrow().killable).await;
                    match kill {
                        Kill::Terminate(_) => {
                            let pid = repl.backend_pid().unwrap();
                            exec(&conn, &format!("SELECT pg_terminate_backend({pid})")).await;
                            let e = stream.finished().await.unwrap_err();
                            assert!(e.is_connection_lost(), "{e}");
                        }
                        Kill::Close(_) => {
                            // This consumer reported before dying: the slot is where its
                            // store is, and nothing stored comes again.
                            stream.send_feedback().await.unwrap();
                            let stored = store.borrow().end_lsn;
                            let deadline = std::time::Instant::now() + Duration::from_secs(10);
                            while confirmed_flush(&conn, &slot).await != stored {
                                assert!(std::time::Instant::now() < deadline, "feedback lost");
                                sleep(Duration::from_millis(20)).await;
                            }
                            repl.close();
                        }
                        _ => repl.close(),
                    }
                }
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !scalar::<bool>(&conn, &inactive).await {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the walsender never left"
                );
                sleep(Duration::from_millis(20)).await;
            }
            let (first_final_lsn, round_commits, open) = {
                let round = round.borrow();
                (
                    round.first_final_lsn,
                    round.commits.clone(),
                    round.open_final_lsn.filter(|_| !round.pending.is_empty()),
                )
            };
            // Re-sent: only transactions past the slot's confirmed position.
            assert!(
                first_final_lsn.is_none_or(|f| f > slot_at),
                "{kill:?}: a transaction at or before the confirmed {slot_at} was sent again"
            );
            assert!(round_commits.iter().all(|c| *c > slot_at));
            let now_at = confirmed_flush(&conn, &slot).await;
            let stored = store.borrow().end_lsn;
            if let Some(open_commit) = open {
                // A transaction received and never confirmed: the slot stays at or before
                // its commit, so that it comes again. (It may be past what the consumer
                // stored: a keepalive that came while nothing was open moves an idle slot
                // on, and WAL of other tables can lie between the two commits.)
                assert!(
                    now_at <= open_commit,
                    "{kill:?}: the slot ({now_at}) passed the open transaction's commit \
                     ({open_commit}; stored {stored})"
                );
            }
            assert!(now_at >= slot_at, "the slot never moves back");
            slot_at = now_at;
        }
        let store = std::mem::take(&mut *store.borrow_mut());
        let distinct: BTreeSet<i32> = store.ids.iter().copied().collect();
        assert_eq!(
            distinct,
            (1..=300).collect(),
            "every committed row at least once"
        );
        // Duplicates only from rounds that died before reporting (at least once).
        assert!(store.ids.len() > 300);
        assert!(confirmed_flush(&conn, &slot).await >= store.end_lsn);
        let repl = ReplicationConnection::connect(&dsn).await.unwrap();
        repl.drop_slot(&slot, true).await.unwrap();
    });
}

#[test]
fn an_idle_slot_advances_while_only_unpublished_tables_change_but_never_past_unconfirmed_work() {
    let dsn = dsn();
    run_for(90, async move {
        let conn = sql(&dsn).await;
        let (table, publication) = published_table(&conn).await;
        let other = unique("rother");
        exec(&conn, &format!("CREATE TABLE {other} (n int)")).await;
        let slot = unique("rs");
        let repl = ReplicationConnection::connect(&dsn).await.unwrap();
        repl.create_slot(
            &slot,
            SlotOptions::logical("pgoutput").snapshot(Snapshot::Nothing),
        )
        .await
        .unwrap();
        let hold = Rc::new(std::cell::Cell::new(false));
        let seen: Seen = Rc::default();
        let (sink, holding) = (seen.clone(), hold.clone());
        let options =
            StreamOptions::pgoutput(&[&publication]).status_interval(Duration::from_millis(100));
        let stream = repl.start_logical(&slot, Lsn::ZERO, options, move |s, change| {
            if let Change::Commit { end_lsn, .. } = &change {
                if !holding.get() {
                    s.confirm(*end_lsn);
                }
            }
            sink.borrow_mut().push(change);
        });
        let start = confirmed_flush(&conn, &slot).await;
        for n in 0..50 {
            exec(&conn, &format!("INSERT INTO {other} VALUES ({n})")).await;
        }
        let other_end: String = scalar(&conn, "SELECT pg_current_wal_lsn()::text").await;
        let other_end: Lsn = other_end.parse().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while confirmed_flush(&conn, &slot).await < other_end {
            assert!(
                std::time::Instant::now() < deadline,
                "the idle slot stayed at {} (from {start}) while WAL reached {other_end}",
                confirmed_flush(&conn, &slot).await
            );
            sleep(Duration::from_millis(50)).await;
        }
        // Servers before 15 send the other table's transactions as empty Begin/Commit pairs.
        let data = |seen: &Seen| {
            seen.borrow()
                .iter()
                .filter(|c| matches!(c, Change::Insert { .. }))
                .count()
        };
        assert_eq!(data(&seen), 0, "nothing published changed");

        // A published transaction received and not confirmed holds the slot, whatever
        // unpublished tables do after it.
        hold.set(true);
        exec(&conn, &format!("INSERT INTO {table} VALUES (1, 'held')")).await;
        let before = seen.borrow().len();
        wait_until(20, "the held commit", || {
            data(&seen) == 1
                && seen.borrow()[before..]
                    .iter()
                    .skip_while(|c| !matches!(c, Change::Insert { .. }))
                    .any(|c| matches!(c, Change::Commit { .. }))
        })
        .await;
        let held_end = seen.borrow()[before..]
            .iter()
            .skip_while(|c| !matches!(c, Change::Insert { .. }))
            .find_map(|c| match c {
                Change::Commit { end_lsn, .. } => Some(*end_lsn),
                _ => None,
            })
            .unwrap();
        for n in 0..50 {
            exec(&conn, &format!("INSERT INTO {other} VALUES ({n})")).await;
        }
        sleep(Duration::from_millis(1500)).await;
        let at = confirmed_flush(&conn, &slot).await;
        assert!(
            at < held_end,
            "the slot ({at}) passed an unconfirmed commit ({held_end})"
        );
        // Confirmed, it moves on.
        stream.confirm(held_end);
        stream.send_feedback().await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while confirmed_flush(&conn, &slot).await < held_end {
            assert!(
                std::time::Instant::now() < deadline,
                "the confirmed commit never reached the slot"
            );
            sleep(Duration::from_millis(20)).await;
        }
        stream.stop().await.unwrap();
        repl.drop_slot(&slot, true).await.unwrap();
    });
}

#[test]
fn pause_stops_the_callbacks_and_resume_delivers_what_waited_in_order() {
    let dsn = dsn();
    run_for(60, async move {
        let conn = sql(&dsn).await;
        let (table, publication) = published_table(&conn).await;
        let slot = unique("rs");
        let repl = ReplicationConnection::connect(&dsn).await.unwrap();
        repl.create_slot(&slot, SlotOptions::logical("pgoutput").temporary(true))
            .await
            .unwrap();
        let (stream, seen) = collect(&repl, &slot, StreamOptions::pgoutput(&[&publication]), true);
        exec(&conn, &format!("INSERT INTO {table} VALUES (1, 'a')")).await;
        wait_until(20, "the first row", || inserted_ids(&seen) == [1]).await;
        stream.pause();
        assert!(stream.is_paused());
        for id in 2..=200 {
            exec(
                &conn,
                &format!("INSERT INTO {table} VALUES ({id}, repeat('x', 1000))"),
            )
            .await;
        }
        sleep(Duration::from_millis(500)).await;
        assert_eq!(inserted_ids(&seen), [1], "no callback while paused");
        let received_while_paused = stream.received_lsn();
        // Status updates still go out while paused: the server keeps the stream.
        stream.send_feedback().await.unwrap();
        stream.resume();
        wait_until(20, "every row", || inserted_ids(&seen).len() == 200).await;
        assert_eq!(inserted_ids(&seen), (1..=200).collect::<Vec<_>>());
        assert!(stream.received_lsn() > received_while_paused);
        stream.stop().await.unwrap();
        repl.close();
    });
}

/// A private server, for what changes server settings or restarts it.
fn private_server() -> Arc<TestServer> {
    Arc::new(TestServer::start().expect("a private server"))
}

#[test]
fn a_stream_idle_past_wal_sender_timeout_is_kept_by_answering_keepalives() {
    let server = private_server();
    let dsn = server.info().dsn.clone();
    run_for(60, async move {
        let conn = sql(&dsn).await;
        exec(&conn, "ALTER SYSTEM SET wal_sender_timeout = '2s'").await;
        exec(&conn, "SELECT pg_reload_conf()").await;
        let (table, publication) = published_table(&conn).await;
        let slot = unique("rs");
        let repl = ReplicationConnection::connect(&dsn).await.unwrap();
        let timeout: String = repl
            .execute("SHOW wal_sender_timeout")
            .await
            .unwrap()
            .fetchone()
            .unwrap()
            .get(0);
        assert_eq!(timeout, "2s");
        repl.create_slot(&slot, SlotOptions::logical("pgoutput").temporary(true))
            .await
            .unwrap();
        // status_interval (10 s) is far past the timeout: only the replies to the server's
        // keepalives keep the stream.
        let (stream, seen) = collect(&repl, &slot, StreamOptions::pgoutput(&[&publication]), true);
        let pid = repl.backend_pid().unwrap();
        sleep(Duration::from_secs(6)).await;
        assert!(!stream.is_over(), "the server ended an idle stream");
        let still: i64 = scalar(
            &conn,
            &format!("SELECT count(*) FROM pg_stat_replication WHERE pid = {pid}"),
        )
        .await;
        assert_eq!(still, 1);
        exec(
            &conn,
            &format!("INSERT INTO {table} VALUES (5, 'after idle')"),
        )
        .await;
        wait_until(20, "the row after the idle time", || {
            inserted_ids(&seen) == [5]
        })
        .await;
        stream.stop().await.unwrap();
        repl.close();
    });
}

#[test]
fn a_server_restart_under_reconnect_loses_nothing() {
    let server = private_server();
    let dsn = server.info().dsn.clone();
    run_for(120, async move {
        let conn = sql(&dsn).await;
        let (table, publication) = published_table(&conn).await;
        let slot = unique("rs");
        let repl = ReplicationConnection::connect(&dsn).await.unwrap();
        repl.create_slot(
            &slot,
            SlotOptions::logical("pgoutput").snapshot(Snapshot::Nothing),
        )
        .await
        .unwrap();
        let options = StreamOptions::pgoutput(&[&publication])
            .status_interval(Duration::from_millis(100))
            .reconnect(true)
            .reconnect_interval(Duration::from_millis(100));
        let (stream, seen) = collect(&repl, &slot, options, true);
        for id in 1..=10 {
            exec(
                &conn,
                &format!("INSERT INTO {table} VALUES ({id}, 'before')"),
            )
            .await;
        }
        wait_until(20, "the rows before", || inserted_ids(&seen).len() >= 10).await;
        let pid = repl.backend_pid();
        for mode in [StopMode::Fast, StopMode::Immediate] {
            if mode == StopMode::Immediate {
                // Paused across a lost connection: it reconnects all the same, and stays
                // paused until resumed.
                stream.pause();
            }
            // On a thread: a fast shutdown waits for the walsender, which waits for this
            // loop's answer to its last keepalive.
            let s = server.clone();
            let restart = std::thread::spawn(move || s.restart(mode));
            while !restart.is_finished() {
                sleep(Duration::from_millis(20)).await;
            }
            restart.join().unwrap().unwrap();
        }
        let conn = sql(&dsn).await;
        for id in 11..=20 {
            exec(
                &conn,
                &format!("INSERT INTO {table} VALUES ({id}, 'after')"),
            )
            .await;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while repl.backend_pid().is_none_or(|p| Some(p) == pid) || repl.is_closed() {
            assert!(
                std::time::Instant::now() < deadline,
                "no reconnect while paused"
            );
            sleep(Duration::from_millis(20)).await;
        }
        sleep(Duration::from_millis(300)).await;
        assert!(
            inserted_ids(&seen).iter().all(|id| *id <= 10),
            "a callback ran while paused"
        );
        stream.resume();
        wait_until(30, "the rows after the restarts", || {
            inserted_ids(&seen)
                .iter()
                .copied()
                .collect::<BTreeSet<_>>()
                .len()
                == 20
        })
        .await;
        assert!(!stream.is_over());
        assert_ne!(repl.backend_pid(), pid, "a new walsender");
        stream.stop().await.unwrap();
        assert!(stream.finished().await.is_ok());
        let ids: BTreeSet<i32> = inserted_ids(&seen).into_iter().collect();
        assert_eq!(ids, (1..=20).collect());
        repl.drop_slot(&slot, true).await.unwrap();
    });
}

/// The replication part of the reach contract, compiled with exactly its signatures.
#[path = "contract/replication.rs"]
mod contract;

#[test]
fn the_contracts_lsn_calls_run_against_the_server() {
    let dsn = dsn();
    let lp = momoko::ioloop::IoLoop::current();
    let conn = lp
        .run_sync(async move { Connection::new(&dsn).connect().await })
        .unwrap();
    contract::lsns(&conn).unwrap();
    let at: Lsn = lp.run_sync(async move { scalar(&conn, "SELECT '16/B374D848'::pg_lsn").await });
    assert_eq!(at, Lsn::from(0x16_B374_D848u64));
}

#[test]
fn failover_slots_and_protocol_versions_follow_the_servers_version() {
    let dsn = dsn();
    run_for(60, async move {
        let conn = sql(&dsn).await;
        let (table, publication) = published_table(&conn).await;
        let repl = ReplicationConnection::connect(&dsn).await.unwrap();
        let version = repl.server_version().unwrap();
        let slot = unique("rs");
        let made = repl
            .create_slot(
                &slot,
                // Failover slots are permanent ones.
                SlotOptions::logical("pgoutput").failover(true),
            )
            .await;
        if version >= 170000 {
            made.unwrap();
            let failover: bool = scalar(
                &conn,
                &format!("SELECT failover FROM pg_replication_slots WHERE slot_name = '{slot}'"),
            )
            .await;
            assert!(failover);
        } else {
            // Refused before anything is sent, naming the version needed.
            let e = made.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Usage);
            assert!(e.to_string().contains("PostgreSQL 17"), "{e}");
            repl.create_slot(&slot, SlotOptions::logical("pgoutput"))
                .await
                .unwrap();
        }
        // The newest pgoutput protocol the server has, or a clear refusal of the next one.
        let newest = match version {
            v if v >= 160000 => 4,
            v if v >= 150000 => 3,
            v if v >= 140000 => 2,
            _ => 1,
        };
        if newest < 4 {
            let refused = repl.start_logical(
                &slot,
                Lsn::ZERO,
                StreamOptions::pgoutput(&[&publication]).proto_version(newest + 1),
                |_, _| {},
            );
            let e = refused.finished().await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Usage, "{e}");
        }
        let mut options = StreamOptions::pgoutput(&[&publication]).proto_version(newest);
        if newest == 4 {
            options = options.streaming_parallel();
        }
        let (stream, seen) = collect(&repl, &slot, options, true);
        exec(&conn, &format!("INSERT INTO {table} VALUES (42, 'v')")).await;
        wait_until(20, "the row", || inserted_ids(&seen) == [42]).await;
        stream.stop().await.unwrap();
        repl.drop_slot(&slot, true).await.unwrap();
        repl.close();
    });
}

#[test]
fn a_prepared_transaction_streams_at_prepare_and_its_commit_prepared_follows() {
    let dsn = dsn();
    run_for(60, async move {
        let conn = sql(&dsn).await;
        let (table, publication) = published_table(&conn).await;
        let slot = unique("rs");
        let repl = ReplicationConnection::connect(&dsn).await.unwrap();
        let made = repl
            .create_slot(
                &slot,
                SlotOptions::logical("pgoutput")
                    .temporary(true)
                    .two_phase(true),
            )
            .await;
        if repl.server_version().unwrap() < 150000 {
            let e = made.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Usage, "{e}");
            return;
        }
        made.unwrap();
        let options = StreamOptions::pgoutput(&[&publication])
            .proto_version(3)
            .two_phase(true);
        let seen: Seen = Rc::default();
        let sink = seen.clone();
        let stream = repl.start_logical(&slot, Lsn::ZERO, options, move |s, change| {
            if let Change::Prepare { end_lsn, .. } | Change::CommitPrepared { end_lsn, .. } =
                &change
            {
                s.confirm(*end_lsn);
            }
            sink.borrow_mut().push(change);
        });
        let gid = unique("gid");
        exec(
            &conn,
            &format!("BEGIN; INSERT INTO {table} VALUES (9, 'two'); PREPARE TRANSACTION '{gid}'"),
        )
        .await;
        wait_until(20, "the Prepare", || {
            seen.borrow()
                .iter()
                .any(|c| matches!(c, Change::Prepare { .. }))
        })
        .await;
        exec(&conn, &format!("COMMIT PREPARED '{gid}'")).await;
        wait_until(20, "the CommitPrepared", || {
            seen.borrow()
                .iter()
                .any(|c| matches!(c, Change::CommitPrepared { .. }))
        })
        .await;
        stream.stop().await.unwrap();
        let seen = seen.borrow();
        let kinds: Vec<&str> = seen
            .iter()
            .filter_map(|c| match c {
                Change::BeginPrepare { gid: g, .. } => {
                    assert_eq!(g, &gid);
                    Some("BeginPrepare")
                }
                Change::Insert { new, .. } => {
                    assert_eq!(new.get::<_, i32>("id"), 9);
                    Some("Insert")
                }
                Change::Prepare { gid: g, .. } => {
                    assert_eq!(g, &gid);
                    Some("Prepare")
                }
                Change::CommitPrepared { gid: g, .. } => {
                    assert_eq!(g, &gid);
                    Some("CommitPrepared")
                }
                Change::Relation { .. } => None,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            ["BeginPrepare", "Insert", "Prepare", "CommitPrepared"]
        );
        repl.close();
    });
}

#[test]
fn stop_from_inside_the_callback_ends_the_callbacks_at_once() {
    let dsn = dsn();
    run_for(60, async move {
        let conn = sql(&dsn).await;
        let (table, publication) = published_table(&conn).await;
        let slot = unique("rs");
        let repl = ReplicationConnection::connect(&dsn).await.unwrap();
        repl.create_slot(&slot, SlotOptions::logical("pgoutput").temporary(true))
            .await
            .unwrap();
        let inserts = Rc::new(std::cell::Cell::new(0));
        let stops: Rc<RefCell<Vec<Stopped>>> = Rc::default();
        let (n, st) = (inserts.clone(), stops.clone());
        let stream = repl.start_logical(
            &slot,
            Lsn::ZERO,
            StreamOptions::pgoutput(&[&publication]),
            move |s, change| {
                if let Change::Insert { .. } = change {
                    n.set(n.get() + 1);
                    st.borrow_mut().push(s.stop());
                }
            },
        );
        exec(
            &conn,
            &format!("INSERT INTO {table} SELECT g, 'x' FROM generate_series(1, 100) g"),
        )
        .await;
        stream.finished().await.unwrap();
        let stop = stops.borrow_mut().pop().expect("stop was called");
        stop.await.unwrap();
        assert_eq!(inserts.get(), 1, "no callback after stop()");
        // The connection takes commands again.
        assert!(repl.identify_system().await.is_ok());
        repl.close();
    });
}

#[test]
fn a_restart_under_reconnect_waits_while_another_walsender_still_holds_the_slot() {
    let dsn = dsn();
    run_for(60, async move {
        let conn = sql(&dsn).await;
        let (table, publication) = published_table(&conn).await;
        let slot = unique("rs");
        let repl = ReplicationConnection::connect(&dsn).await.unwrap();
        repl.create_slot(
            &slot,
            SlotOptions::logical("pgoutput").snapshot(Snapshot::Nothing),
        )
        .await
        .unwrap();
        // A reconnect a second after the loss: time for the other walsender to take the slot.
        let options = StreamOptions::pgoutput(&[&publication])
            .status_interval(Duration::from_millis(100))
            .reconnect(true)
            .reconnect_interval(Duration::from_secs(1));
        let (stream, seen) = collect(&repl, &slot, options.clone(), true);
        for id in 1..=5 {
            exec(
                &conn,
                &format!("INSERT INTO {table} VALUES ({id}, 'before')"),
            )
            .await;
        }
        wait_until(20, "the rows before", || inserted_ids(&seen).len() == 5).await;
        let lost = repl.backend_pid().unwrap();
        // The stream's session ends; another walsender takes the slot before the stream
        // starts again (as the lost session's own does after a partition, until it learns
        // that its client is gone).
        exec(&conn, &format!("SELECT pg_terminate_backend({lost})")).await;
        let other = ReplicationConnection::connect(&dsn).await.unwrap();
        let holder = other.backend_pid().unwrap();
        let active =
            format!("SELECT active_pid FROM pg_replication_slots WHERE slot_name = '{slot}'");
        let deadline = std::time::Instant::now() + Duration::from_millis(900);
        let held = loop {
            // Refused (55006) until the terminated walsender has released the slot.
            let held = other.start_logical(&slot, Lsn::ZERO, options.clone(), |_, _| {});
            while !held.is_over() && scalar::<Option<i32>>(&conn, &active).await != Some(holder) {
                sleep(Duration::from_millis(10)).await;
            }
            if !held.is_over() {
                break held;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the other walsender never took the slot: {:?}",
                held.finished().await
            );
            sleep(Duration::from_millis(10)).await;
        };
        for id in 6..=10 {
            exec(&conn, &format!("INSERT INTO {table} VALUES ({id}, 'held')")).await;
        }
        // The stream's starts meet a slot in use (55006) twice: it keeps trying.
        sleep(Duration::from_millis(2500)).await;
        assert!(!stream.is_over(), "{:?}", stream.finished().await);
        assert_eq!(scalar::<Option<i32>>(&conn, &active).await, Some(holder));
        held.stop().await.unwrap();
        other.close();
        wait_until(20, "the rows inserted while the slot was held", || {
            inserted_ids(&seen).iter().copied().collect::<BTreeSet<_>>()
                == (1..=10).collect::<BTreeSet<_>>()
        })
        .await;
        assert_ne!(repl.backend_pid(), Some(lost), "a new walsender");
        // Nothing confirmed came again.
        assert_eq!(inserted_ids(&seen), (1..=10).collect::<Vec<_>>());
        stream.stop().await.unwrap();
        assert!(stream.finished().await.is_ok());
        repl.drop_slot(&slot, true).await.unwrap();
    });
}
