//! Scenario 6: a logical replication stream across a partition. A pgoutput stream with
//! `reconnect(true)` and tight TCP bounds crosses the veth pair; a writer on the server's
//! Unix socket (a path, so not cut by the namespace's rules) commits rows with known ids
//! before, during and after a partition of the link. Every committed id must be delivered
//! at least once, and only a transaction past the slot's confirmed position at the cut may
//! be delivered twice; the stream must notice the cut, reconnect after the heal, and never
//! end with an error.
//!
//! The bounds it relies on: `tcp_user_timeout=3000` (the stream's status updates stay
//! unacknowledged) and keepalives every second find the dead link; `connect_timeout=2`
//! bounds each reconnect attempt into the blackhole; after the heal the new walsender may
//! find the slot still held by the old one (it learns of the dead client only from a reset
//! or `wal_sender_timeout`), which a reconnecting stream waits out.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use super::*;
use momoko::replication::{
    Change, Lsn, ReplicationConnection, SlotOptions, Snapshot, StreamOptions,
};

/// The stream's bounds: a dead link found about 3 s after the first unanswered packet.
const STREAM_BOUNDS: &str = "keepalives_idle=1 keepalives_interval=1 keepalives_count=2 \
                             tcp_user_timeout=3000 connect_timeout=2";

/// One transaction as the stream delivered it.
#[derive(Debug)]
struct Delivered {
    end_lsn: Lsn,
    ids: Vec<i32>,
    at: Instant,
}

/// What the stream's callback saw.
#[derive(Default)]
struct Seen {
    /// Inserts of the transaction being delivered (since its Begin).
    open: Vec<i32>,
    /// Every Commit, in order of delivery (a transaction sent again appears again).
    transactions: Vec<Delivered>,
    /// The xid of every Begin, in order.
    begins: Vec<u32>,
}

#[test]
fn a_logical_stream_across_a_partition_delivers_every_committed_change_at_least_once() {
    let Some(net) = host() else { return };
    let net = Rc::new(net);
    let stream_dsn = format!("{} {STREAM_BOUNDS}", net.dsn());
    let writer_dsn = net
        .server()
        .info()
        .dsn_unix
        .clone()
        .expect("the server has a Unix socket");
    // The short run's partition outlasts detection (about 3.5 s) so that the stream must
    // reconnect; it is held until the stream noticed, bounded.
    let (before, partition, after) = if full() {
        (
            Duration::from_secs(2),
            Duration::from_secs(20),
            Duration::from_secs(3),
        )
    } else {
        (
            Duration::from_secs(1),
            Duration::from_secs(4),
            Duration::from_secs(1),
        )
    };
    let n = net.clone();
    run_for(120, async move {
        let net = n;
        let writer = momoko::connect(&writer_dsn).await.unwrap();
        for q in [
            "CREATE TABLE chaos_stream (id int PRIMARY KEY)",
            "CREATE PUBLICATION chaos_stream_pub FOR TABLE chaos_stream",
        ] {
            writer.execute(q, ()).await.unwrap();
        }
        let repl = ReplicationConnection::connect(&stream_dsn).await.unwrap();
        repl.create_slot(
            "chaos_stream_slot",
            SlotOptions::logical("pgoutput").snapshot(Snapshot::Nothing),
        )
        .await
        .unwrap();
        let first_walsender = repl.backend_pid();
        let seen: Rc<RefCell<Seen>> = Rc::default();
        let sink = seen.clone();
        let options = StreamOptions::pgoutput(&["chaos_stream_pub"])
            .status_interval(Duration::from_millis(200))
            .reconnect(true)
            .reconnect_interval(Duration::from_millis(200));
        let stream =
            repl.start_logical("chaos_stream_slot", Lsn::ZERO, options, move |s, change| {
                let mut seen = sink.borrow_mut();
                match change {
                    Change::Begin { xid, .. } => {
                        seen.open.clear();
                        seen.begins.push(xid);
                    }
                    Change::Insert { new, .. } => {
                        let id = new.get::<_, i32>("id");
                        seen.open.push(id);
                    }
                    Change::Commit { end_lsn, .. } => {
                        // The consumer's output is this list: durable as soon as pushed.
                        let ids = std::mem::take(&mut seen.open);
                        seen.transactions.push(Delivered {
                            end_lsn,
                            ids,
                            at: Instant::now(),
                        });
                        s.confirm(end_lsn);
                    }
                    _ => {}
                }
            });
        let finished = stream.finished();

        // The writer: three rows a transaction, ids 3k+1..=3k+3, until told to stop.
        let stop = Rc::new(std::cell::Cell::new(false));
        let writes = {
            let (writer, stop) = (writer.clone(), stop.clone());
            spawn(async move {
                let mut committed: Vec<i32> = Vec::new();
                let mut failed = 0;
                let mut k = 0;
                while !stop.get() {
                    let (a, b) = (3 * k + 1, 3 * k + 3);
                    k += 1;
                    match writer
                        .execute(
                            "INSERT INTO chaos_stream SELECT generate_series(%s::int, %s::int)",
                            (a, b),
                        )
                        .await
                    {
                        Ok(_) => committed.extend(a..=b),
                        Err(e) => {
                            eprintln!("scenario 6: a write failed: {e}");
                            failed += 1;
                        }
                    }
                    sleep(Duration::from_millis(20)).await;
                }
                (committed, failed)
            })
        };

        sleep(before).await;
        assert!(
            !seen.borrow().transactions.is_empty(),
            "the stream delivers before the cut"
        );
        net.apply(Fault::Partition).unwrap();
        let cut = Instant::now();
        // What the server will send again: everything past the slot's confirmed position
        // (read over the Unix socket; it cannot move while the link is cut).
        let confirmed_at_cut: Lsn = writer
            .execute(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots \
                 WHERE slot_name = 'chaos_stream_slot'",
                (),
            )
            .await
            .unwrap()
            .fetchone()
            .unwrap()
            .get::<_, String>(0)
            .parse()
            .unwrap();
        // The stream notices when its connection closes; the link stays cut for at least
        // `partition` and until then (bounded), so that a reconnect is needed.
        let mut detect = None;
        // What the consumer had confirmed when its connection was lost: the stream starts
        // again from there.
        let mut confirmed_at_loss = Lsn::ZERO;
        loop {
            let elapsed = cut.elapsed();
            if detect.is_none() && repl.is_closed() {
                detect = Some(elapsed);
                confirmed_at_loss = stream.confirmed_lsn();
            }
            if elapsed >= partition && detect.is_some() {
                break;
            }
            assert!(
                elapsed < partition + Duration::from_secs(10),
                "the stream did not notice the cut within {elapsed:?}"
            );
            sleep(Duration::from_millis(10)).await;
        }
        assert!(
            !stream.is_over(),
            "a lost connection does not end the stream"
        );
        net.heal().unwrap();
        let healed = Instant::now();
        let held = healed - cut;
        sleep(after).await;
        stop.set(true);
        let (committed, failed) = writes.await;
        assert_eq!(failed, 0, "the writer's Unix socket is not cut");
        let committed_set: BTreeSet<i32> = committed.iter().copied().collect();
        // Every committed id delivered, within a bound.
        let delivered_all = Instant::now();
        let all_ids = |seen: &Seen| -> BTreeSet<i32> {
            seen.transactions
                .iter()
                .flat_map(|t| t.ids.iter().copied())
                .collect()
        };
        while all_ids(&seen.borrow()) != committed_set {
            assert!(
                delivered_all.elapsed() < Duration::from_secs(30),
                "committed ids not delivered 30 s after the writer stopped: {:?}",
                committed_set
                    .difference(&all_ids(&seen.borrow()))
                    .take(20)
                    .collect::<Vec<_>>()
            );
            if stream.is_over() {
                panic!("the stream ended: {:?}", stream.finished().await);
            }
            sleep(Duration::from_millis(20)).await;
        }
        let second_walsender = repl.backend_pid();
        assert!(!stream.is_over());
        stream.stop().await.unwrap();
        assert!(finished.await.is_ok(), "finished() resolved with an error");
        repl.drop_slot("chaos_stream_slot", true).await.unwrap();
        repl.close();
        writer.close();

        let seen = seen.borrow();
        // Exact sets: nothing delivered that was not committed, every id at least once.
        assert_eq!(all_ids(&seen), committed_set);
        let mut times: BTreeMap<Lsn, (usize, &Vec<i32>)> = BTreeMap::new();
        for t in &seen.transactions {
            let e = times.entry(t.end_lsn).or_insert((0, &t.ids));
            e.0 += 1;
            assert_eq!(e.1, &t.ids, "a transaction sent again has the same rows");
        }
        let mut per_id: BTreeMap<i32, usize> = BTreeMap::new();
        for t in &seen.transactions {
            for id in &t.ids {
                *per_id.entry(*id).or_default() += 1;
            }
        }
        // Only what the server had not been told of may come twice; and as the stream
        // starts again from what the consumer confirmed (every Commit, at once, here),
        // nothing it delivered whole before the loss comes again: none at all.
        let again: Vec<(Lsn, usize, &Vec<i32>)> = times
            .iter()
            .filter(|(_, (n, _))| *n > 1)
            .map(|(lsn, (n, ids))| (*lsn, *n, *ids))
            .collect();
        for (lsn, n, ids) in &again {
            assert!(
                *lsn > confirmed_at_cut,
                "the transaction ending at {lsn} ({ids:?}) was confirmed before the cut \
                 ({confirmed_at_cut}) but delivered {n} times"
            );
            assert!(
                *lsn > confirmed_at_loss,
                "the transaction ending at {lsn} ({ids:?}) was confirmed by the consumer \
                 ({confirmed_at_loss}) before the loss but delivered {n} times"
            );
        }
        let duplicated: usize = per_id.values().filter(|n| **n > 1).count();
        assert_eq!(
            duplicated,
            again.iter().map(|(_, _, ids)| ids.len()).sum::<usize>()
        );
        // The stream reconnected: a new walsender serves it.
        assert!(first_walsender.is_some() && second_walsender.is_some());
        assert_ne!(first_walsender, second_walsender, "no reconnect happened");
        let recover = seen
            .transactions
            .iter()
            .find(|t| t.at > healed)
            .map(|t| t.at - healed);
        assert!(recover.is_some(), "nothing delivered after the heal");
        let begun_again = seen.begins.len() - seen.begins.iter().collect::<BTreeSet<_>>().len();
        println!(
            "scenario 6 (logical stream, {:.1} s partition): {} rows in {} transactions \
             committed, {} delivered, {} rows in {} transactions delivered again \
             (confirmed at the cut: {confirmed_at_cut}; again: {:?}), {begun_again} Begins \
             seen again; the stream noticed the cut after {:.1} s and delivered again {:.1} s \
             after the heal; walsender {:?} -> {:?}",
            held.as_secs_f64(),
            committed.len(),
            committed.len() / 3,
            seen.transactions.iter().map(|t| t.ids.len()).sum::<usize>(),
            duplicated,
            again.len(),
            again
                .iter()
                .map(|(lsn, _, ids)| (lsn.to_string(), ids.first().copied()))
                .collect::<Vec<_>>(),
            detect.unwrap().as_secs_f64(),
            recover.unwrap().as_secs_f64(),
            first_walsender,
            second_walsender,
        );
        table_row(
            &format!("6 logical stream, partition {:.0} s", held.as_secs_f64()),
            committed.len(),
            0,
            duplicated,
            0,
            detect,
            recover,
        );
    });
    let net = Rc::try_unwrap(net).unwrap();
    finish(net);
}
