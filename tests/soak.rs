//! The restart soak (`make soak`, at most two minutes): a pool of 4 under continuous reads
//! and unique-keyed INSERTs while the server restarts five times (fast and immediate) and
//! tcproxy resets every connection in between. Nothing may hang or panic, every INSERT the
//! client saw acknowledged must be in the table exactly once, the pool must return to its
//! size and the process to its file-descriptor count.
//!
//! Its second round fails over instead: a read-write pool of 4 over a synchronous primary
//! and standby keeps inserting while the primary is stopped immediately and the standby
//! promoted; the table of acknowledged, lost, duplicated and unknown-outcome rows is
//! printed, and lost or duplicated rows fail it.
//!
//! Ignored in `make test` (it takes about a minute); `make soak` runs it.

mod common;
#[path = "common/failover.rs"]
mod failover;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{run_for, sleep};
use momoko::Pool;
use momoko_testpg::{StopMode, TestServer};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
#[ignore = "the soak runs for about a minute: make soak"]
fn a_pool_under_load_survives_five_restarts_and_resets_without_losing_an_acknowledged_insert() {
    let server = Arc::new(TestServer::start().expect("a private server"));
    let info = server.info().clone();
    let upstream: SocketAddr = format!("127.0.0.1:{}", info.port).parse().unwrap();
    let proxy = tcproxy::Proxy::start("127.0.0.1:0".parse().unwrap(), upstream).unwrap();
    let via = format!(
        "hostaddr=127.0.0.1 port={} dbname={} user=momoko",
        proxy.local_addr().port(),
        info.dbname
    );
    let direct = info.dsn.clone();
    let done = Arc::new(AtomicBool::new(false));
    let chaos = {
        let (server, proxy, done) = (server.clone(), proxy.clone(), done.clone());
        std::thread::spawn(move || {
            let modes = [
                StopMode::Fast,
                StopMode::Immediate,
                StopMode::Fast,
                StopMode::Immediate,
                StopMode::Fast,
            ];
            for mode in modes {
                std::thread::sleep(Duration::from_millis(2500));
                proxy.reset_all();
                std::thread::sleep(Duration::from_millis(2500));
                server.restart(mode).expect("restart");
            }
            std::thread::sleep(Duration::from_secs(2));
            done.store(true, Ordering::SeqCst);
        })
    };

    let report = run_for(120, async move {
        let admin = momoko::connect(&direct).await.unwrap();
        admin
            .execute(
                "CREATE TABLE soak (k bigint, at timestamptz DEFAULT now())",
                (),
            )
            .await
            .unwrap();
        drop(admin);
        let fds_before = open_fds();
        // The throwaway server runs with synchronous_commit off, which lets an immediate
        // shutdown lose commits it already acknowledged: not what this soak is about.
        let pool = Pool::builder(&via)
            .setsession(["SET synchronous_commit = on"])
            .size(4)
            .raise_connect_errors(false)
            .reconnect_interval(Duration::from_millis(100))
            .connect_timeout(Duration::from_secs(2))
            .query_timeout(Duration::from_secs(5))
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut acknowledged = Vec::new();
        let mut unknown = Vec::new();
        let mut errors: HashMap<String, u32> = HashMap::new();
        let (mut reads, mut next_key) = (0u64, 0i64);
        let start = Instant::now();
        while !done.load(Ordering::SeqCst) {
            let inserts: Vec<_> = (0..10)
                .map(|_| {
                    next_key += 1;
                    (
                        next_key,
                        pool.execute("INSERT INTO soak (k) VALUES (%s)", (next_key,)),
                    )
                })
                .collect();
            let selects: Vec<_> = (0..10)
                .map(|i| pool.execute("SELECT %s::int", (i,)))
                .collect();
            for (k, f) in inserts {
                match f.await {
                    Ok(_) => acknowledged.push(k),
                    Err(e) => {
                        if e.outcome_unknown() {
                            unknown.push(k);
                        }
                        *errors.entry(format!("{:?}", e.kind())).or_default() += 1;
                    }
                }
            }
            for (i, f) in selects.into_iter().enumerate() {
                match f.await {
                    Ok(mut c) => {
                        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), i as i32);
                        reads += 1;
                    }
                    Err(e) => *errors.entry(format!("{:?}", e.kind())).or_default() += 1,
                }
            }
            if errors.values().sum::<u32>() > 0 && pool.stats().free == 0 {
                // While everything is down, do not spin: requests fail at once then.
                sleep(Duration::from_millis(5)).await;
            }
        }
        let elapsed = start.elapsed();
        // The pool returns to its size without being asked.
        let deadline = Instant::now() + Duration::from_secs(20);
        while pool.stats().free != 4 {
            assert!(
                Instant::now() < deadline,
                "the pool did not recover: {pool:?}"
            );
            sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(pool.stats().total(), 4);
        pool.close().unwrap();
        sleep(Duration::from_millis(200)).await;
        let fds_after = open_fds();

        let admin = momoko::connect(&direct).await.unwrap();
        let mut c = admin
            .execute("SELECT k, count(*) FROM soak GROUP BY k", ())
            .await
            .unwrap();
        let in_table: HashMap<i64, i64> = c
            .fetchall()
            .iter()
            .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
            .collect();
        for k in &acknowledged {
            assert_eq!(
                in_table.get(k),
                Some(&1),
                "acknowledged INSERT {k} not there once"
            );
        }
        let twice: Vec<_> = in_table.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "rows inserted twice: {twice:?}");
        assert!(
            fds_after <= fds_before,
            "file descriptors: {fds_before} before, {fds_after} after"
        );
        let unknown_applied = unknown.iter().filter(|k| in_table.contains_key(k)).count();
        format!(
            "soak: {:.1} s, {} inserts acknowledged (all present once), {} of unknown outcome \
             ({} applied), {} reads, errors by kind {:?}, fds {} -> {}",
            elapsed.as_secs_f64(),
            acknowledged.len(),
            unknown.len(),
            unknown_applied,
            reads,
            errors,
            fds_before,
            fds_after
        )
    });
    chaos.join().unwrap();
    eprintln!("{report}");
    assert!(report.contains("inserts acknowledged"));
}

#[test]
#[ignore = "the failover round of the soak: make soak"]
fn a_read_write_pool_under_load_follows_a_failover_and_loses_no_acknowledged_insert() {
    let pair = Arc::new(
        momoko_testpg::Replicated::start(true).expect("a synchronous primary and standby"),
    );
    // Ten seconds of load on the new primary after the failover.
    let report = failover::failover_round(pair, 5000, Duration::from_secs(10));
    eprintln!("failover round:\n{}", report.table());
    assert_eq!(report.lost, Vec::<i64>::new(), "{report:?}");
    assert_eq!(report.duplicated, Vec::<i64>::new(), "{report:?}");
    assert!(report.acknowledged_after > 0, "{report:?}");
}
