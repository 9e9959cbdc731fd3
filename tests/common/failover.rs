//! One failover round on real replication, shared by tests/replicas.rs (a short round in
//! `make test`) and tests/soak.rs (a longer one in `make soak`): a read-write pool of 4 over
//! [primary, standby] runs unique-keyed INSERTs, another thread stops the primary
//! immediately and promotes the standby, and the pool must find the new primary by itself.
//! The round never waits without a bound; the caller asserts on the report.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use momoko::Pool;
use momoko_testpg::{Replicated, StopMode};

use crate::common::{run_for, sleep};

/// What one round saw, row by row.
#[derive(Debug)]
pub struct FailoverReport {
    /// INSERTs the client saw succeed.
    pub acknowledged: usize,
    /// Acknowledged INSERTs missing from the new primary's table.
    pub lost: Vec<i64>,
    /// Keys present more than once.
    pub duplicated: Vec<i64>,
    /// INSERTs whose outcome the client could not know (the server went away after they
    /// were sent), and how many of them the table holds.
    pub unknown: usize,
    pub unknown_applied: usize,
    /// From the primary's stop to the first acknowledged INSERT after it (on the promoted
    /// standby).
    pub recovered_after: Duration,
    /// INSERTs acknowledged after the primary's stop.
    pub acknowledged_after: usize,
    /// Failed requests by error kind.
    pub errors: HashMap<String, u32>,
}

impl FailoverReport {
    /// The soak's table: one line per outcome.
    pub fn table(&self) -> String {
        format!(
            "| outcome | rows |\n|---|---|\n\
             | acknowledged | {} |\n| lost | {} |\n| duplicated | {} |\n\
             | unknown outcome | {} ({} applied) |\n\
             recovered {:.2} s after the primary stopped; {} acknowledged after that; errors {:?}",
            self.acknowledged,
            self.lost.len(),
            self.duplicated.len(),
            self.unknown,
            self.unknown_applied,
            self.recovered_after.as_secs_f64(),
            self.acknowledged_after,
            self.errors
        )
    }
}

/// Runs the round: `before` INSERTs acknowledged on the primary, then the failover, then
/// the load goes on for `after` once the first INSERT succeeds on the new primary.
/// Fails the test if no INSERT succeeds within 15 s of the primary's stop.
pub fn failover_round(pair: Arc<Replicated>, before: usize, after: Duration) -> FailoverReport {
    pair.primary_info()
        .psql("CREATE TABLE failover (k bigint NOT NULL)")
        .expect("create the table");
    pair.wait_for_replay()
        .expect("the standby replays the table");
    let dsn = format!(
        "{} target_session_attrs=read-write connect_timeout=2",
        pair.hosts_dsn()
    );
    let acked = Arc::new(AtomicUsize::new(0));
    // When the primary stopped.
    let promoted: Arc<Mutex<Option<Instant>>> = Arc::default();
    let chaos = {
        let (pair, acked, promoted) = (pair.clone(), acked.clone(), promoted.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while acked.load(Ordering::SeqCst) < before {
                assert!(Instant::now() < deadline, "no load on the primary");
                std::thread::sleep(Duration::from_millis(5));
            }
            pair.stop_primary(StopMode::Immediate)
                .expect("stop the primary");
            // From here no server takes writes until the promotion is done.
            *promoted.lock().unwrap() = Some(Instant::now());
            pair.promote_standby().expect("promote the standby");
        })
    };
    let report = run_for(120, async move {
        let pool = Pool::builder(&dsn)
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
        let (mut acknowledged, mut unknown) = (Vec::new(), Vec::new());
        let mut errors: HashMap<String, u32> = HashMap::new();
        let mut recovered: Option<(Instant, Duration)> = None;
        let mut acknowledged_after = 0;
        let mut next_key = 0i64;
        loop {
            let promoted_at = *promoted.lock().unwrap();
            if let Some(at) = promoted_at {
                match recovered {
                    Some((first, _)) if first.elapsed() >= after => break,
                    None if at.elapsed() > Duration::from_secs(15) => panic!(
                        "no INSERT succeeded within 15 s of the primary's stop: {pool:?}, \
                         errors {errors:?}, last connect error {:?}",
                        pool.last_connect_error()
                    ),
                    _ => {}
                }
            }
            let batch: Vec<_> = (0..8)
                .map(|_| {
                    next_key += 1;
                    (
                        next_key,
                        pool.execute("INSERT INTO failover (k) VALUES (%s)", (next_key,)),
                    )
                })
                .collect();
            let mut failed = false;
            for (k, f) in batch {
                match f.await {
                    Ok(_) => {
                        acknowledged.push(k);
                        acked.fetch_add(1, Ordering::SeqCst);
                        if let Some(at) = promoted_at {
                            acknowledged_after += 1;
                            recovered.get_or_insert((Instant::now(), at.elapsed()));
                        }
                    }
                    Err(e) => {
                        failed = true;
                        if e.outcome_unknown() {
                            unknown.push(k);
                        }
                        *errors.entry(format!("{:?}", e.kind())).or_default() += 1;
                    }
                }
            }
            if failed {
                // While no server takes writes, requests fail at once: do not spin.
                sleep(Duration::from_millis(20)).await;
            }
        }
        pool.close().unwrap();
        (acknowledged, unknown, errors, recovered, acknowledged_after)
    });
    chaos.join().expect("the failover thread");
    let (acknowledged, unknown, errors, recovered, acknowledged_after) = report;
    let rows = pair
        .standby_info()
        .psql("SELECT k || ' ' || count(*) FROM failover GROUP BY k")
        .expect("read the new primary's table");
    let in_table: HashMap<i64, i64> = rows
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, n)| (k.parse().unwrap(), n.parse().unwrap()))
        .collect();
    let mut duplicated: Vec<i64> = in_table
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| *k)
        .collect();
    duplicated.sort_unstable();
    FailoverReport {
        acknowledged: acknowledged.len(),
        lost: acknowledged
            .iter()
            .copied()
            .filter(|k| !in_table.contains_key(k))
            .collect(),
        duplicated,
        unknown: unknown.len(),
        unknown_applied: unknown.iter().filter(|k| in_table.contains_key(k)).count(),
        recovered_after: recovered.map(|(_, d)| d).unwrap_or_default(),
        acknowledged_after,
        errors,
    }
}
