//! Scenario 4: failover under a partition. A primary and its synchronous standby
//! (`remote_apply`) each in a namespace of their own (`NetnsCluster`); writers through a
//! `target_session_attrs=read-write` pool on the host list (primary, standby); the primary
//! cut off from the client and from the standby, the standby promoted; the pool must move
//! to it with no acknowledged write lost or applied twice.

use super::*;
use momoko_testpg::NetnsCluster;

/// What a writer learnt of one insert, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Acknowledged,
    Failed,
    Unknown,
}

/// A primary and a synchronous standby in namespaces, or None where this machine can't.
fn cluster() -> Option<NetnsCluster> {
    available().then(|| NetnsCluster::start(true).expect("the pair in namespaces starts"))
}

#[test]
fn failover_under_a_partition_moves_the_pool_to_the_promoted_standby_losing_no_acknowledged_write()
{
    let Some(cluster) = cluster() else { return };
    let cluster = std::sync::Arc::new(cluster);
    // The tight keywords bound the writes stuck on the cut primary (their commits wait for
    // a standby they can no longer reach) and each connect attempt to it.
    let dsn = format!(
        "{} target_session_attrs=read-write {TIGHT}",
        cluster.hosts_dsn()
    );
    let (before, after) = if full() { (10, 20) } else { (2, 5) };
    let c = cluster.clone();
    run_for(180, async move {
        let cluster = c;
        let pool = pool(&dsn, 4, true).await;
        pool.execute(
            "CREATE TABLE chaos_failover (id bigint NOT NULL, at timestamptz DEFAULT now())",
            (),
        )
        .await
        .unwrap();
        let stop = Rc::new(std::cell::Cell::new(false));
        let writers: Vec<_> = (0..4i64)
            .map(|w| {
                let (p, stop) = (pool.clone(), stop.clone());
                spawn(async move {
                    let mut log = Vec::new();
                    let mut i = 0;
                    while !stop.get() {
                        let id = w * 1_000_000 + i;
                        i += 1;
                        let r = p
                            .execute("INSERT INTO chaos_failover (id) VALUES (%s)", (id,))
                            .await;
                        let fate = match r {
                            Ok(_) => Fate::Acknowledged,
                            Err(e) if e.outcome_unknown() => Fate::Unknown,
                            Err(_) => Fate::Failed,
                        };
                        log.push((id, fate, Instant::now()));
                        if fate != Fate::Acknowledged {
                            // No busy loop while no server takes writes.
                            sleep(Duration::from_millis(100)).await;
                        }
                    }
                    log
                })
            })
            .collect();
        sleep(Duration::from_secs(before)).await;
        cluster.isolate_primary().unwrap();
        let cut = Instant::now();
        // What a failover manager would wait before it declares the primary dead.
        sleep(Duration::from_secs(2)).await;
        // pg_ctl promote blocks: on a thread of its own, so the loop keeps serving.
        let started_promote = Instant::now();
        let (tx, promoting) = std::sync::mpsc::channel();
        let c = cluster.clone();
        let promoter = std::thread::spawn(move || {
            let r = c.promote();
            drop(c);
            let _ = tx.send((r, Instant::now()));
        });
        let (promoted, promoted_at) = loop {
            if let Ok(r) = promoting.try_recv() {
                break r;
            }
            assert!(
                started_promote.elapsed() < Duration::from_secs(60),
                "the promotion did not end"
            );
            sleep(Duration::from_millis(20)).await;
        };
        promoted.expect("the standby is promoted");
        promoter.join().unwrap();
        sleep(Duration::from_secs(after)).await;
        stop.set(true);
        let log: Vec<(i64, Fate, Instant)> = momoko::ioloop::gather(writers)
            .await
            .into_iter()
            .flatten()
            .collect();
        // The pool now writes to the promoted standby.
        let row = pool
            .execute("SELECT pg_is_in_recovery(), inet_server_addr()::text", ())
            .await
            .unwrap()
            .fetchone()
            .unwrap();
        let (recovery, server): (bool, String) = (row.get(0), row.get(1));
        let standby_ip = cluster.standby().addr().ip().to_string();
        assert!(!recovery);
        assert!(
            server.starts_with(&standby_ip),
            "{server} is not {standby_ip}"
        );
        let mut applied = std::collections::HashMap::new();
        for row in pool
            .execute("SELECT id, count(*) FROM chaos_failover GROUP BY id", ())
            .await
            .unwrap()
            .fetchall()
        {
            applied.insert(row.get::<_, i64>(0), row.get::<_, i64>(1));
        }
        let times = |id: &i64| applied.get(id).copied().unwrap_or(0);
        let count = |f: Fate| log.iter().filter(|(_, x, _)| *x == f).count();
        let lost: Vec<i64> = log
            .iter()
            .filter(|(id, f, _)| *f == Fate::Acknowledged && times(id) == 0)
            .map(|(id, ..)| *id)
            .collect();
        let duplicated = applied.values().filter(|&&n| n > 1).count();
        let failed_applied = log
            .iter()
            .filter(|(id, f, _)| *f == Fate::Failed && times(id) > 0)
            .count();
        let unknown_applied = log
            .iter()
            .filter(|(id, f, _)| *f == Fate::Unknown && times(id) > 0)
            .count();
        let detected = log
            .iter()
            .filter(|(_, f, at)| *f != Fate::Acknowledged && *at >= cut)
            .map(|(.., at)| *at - cut)
            .min();
        let first_ack = log
            .iter()
            .filter(|(_, f, at)| *f == Fate::Acknowledged && *at >= started_promote)
            .map(|(.., at)| *at - started_promote)
            .min()
            .expect("writes are acknowledged after the promotion");
        let acked_before_cut = log
            .iter()
            .filter(|(_, f, at)| *f == Fate::Acknowledged && *at < cut)
            .count();
        table_row(
            "4 failover, primary isolated",
            count(Fate::Acknowledged),
            lost.len(),
            duplicated,
            count(Fate::Unknown),
            detected,
            Some(first_ack),
        );
        println!(
            "scenario 4: {} writes acknowledged ({acked_before_cut} before the cut), {} failed \
             without effect, {} outcome unknown ({unknown_applied} of them on the new primary); \
             lost {}, duplicated {duplicated}, failed but applied {failed_applied}; first \
             failure {:.1} s after the cut; promotion (pg_ctl promote -w) took {:.1} s; first \
             acknowledged write {:.2} s after the promotion began",
            count(Fate::Acknowledged),
            count(Fate::Failed),
            count(Fate::Unknown),
            lost.len(),
            detected.unwrap_or_default().as_secs_f64(),
            (promoted_at - started_promote).as_secs_f64(),
            first_ack.as_secs_f64()
        );
        assert!(acked_before_cut >= 10, "{acked_before_cut} before the cut");
        assert_eq!(
            lost,
            Vec::<i64>::new(),
            "acknowledged but not on the new primary"
        );
        assert_eq!((duplicated, failed_applied), (0, 0));
        // Each pooled connection has at most its one write in doubt at the cut.
        assert!(
            count(Fate::Unknown) <= 4,
            "{} unknown",
            count(Fate::Unknown)
        );
        // A connect to the cut primary (connect_timeout 3 s) and the pool's reconnect
        // interval, on a machine shared with builds.
        assert!(
            first_ack <= Duration::from_secs(15),
            "first ack {first_ack:?} after the promotion"
        );
        pool.close().unwrap();
    });
    let cluster = std::sync::Arc::try_unwrap(cluster).unwrap();
    let left = cluster.close();
    assert!(left.is_empty(), "left behind: {left:?}");
}
