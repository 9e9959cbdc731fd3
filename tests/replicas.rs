//! Host lists against real streaming replication (momoko-testpg's `Replicated`: a primary
//! and a hot standby of it): each target_session_attrs value finds the right server in
//! either list order, prefer-standby falls back to the primary when no standby answers,
//! load_balance_hosts=random reaches both, a connection whose server stops fitting is
//! retired, and a pool follows a promotion without losing an acknowledged row.

mod common;
#[path = "common/failover.rs"]
mod failover;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{run, run_for, wait_until};
use momoko::{Pool, PoolCounters};
use momoko_testpg::{Replicated, StopMode};

/// Which server each target_session_attrs value picks from `[first, second]`.
fn expected(attrs: &str, first: u16, primary: u16, standby: u16) -> u16 {
    match attrs {
        "any" => first,
        "read-write" | "primary" => primary,
        "read-only" | "standby" | "prefer-standby" => standby,
        other => unreachable!("{other}"),
    }
}

#[test]
fn each_target_session_attrs_value_picks_the_right_server_whatever_the_list_order() {
    let pair = Replicated::start(false).expect("a primary and a standby");
    let (p, s) = (pair.primary_info().port, pair.standby_info().port);
    for (first, second) in [(p, s), (s, p)] {
        for attrs in [
            "any",
            "read-write",
            "read-only",
            "primary",
            "standby",
            "prefer-standby",
        ] {
            let dsn = format!(
                "host=127.0.0.1,127.0.0.1 port={first},{second} dbname=momoko_test \
                 user=momoko target_session_attrs={attrs}"
            );
            let want = expected(attrs, first, p, s);
            let (port, in_recovery) = run(async move {
                let conn = momoko::connect(&dsn).await.unwrap();
                let r: bool = conn
                    .execute("SELECT pg_is_in_recovery()", ())
                    .await
                    .unwrap()
                    .fetchone()
                    .unwrap()
                    .get(0);
                let port = conn.port();
                conn.close();
                (port, r)
            });
            assert_eq!(port, Some(want), "{attrs} over [{first}, {second}]");
            assert_eq!(in_recovery, want == s, "{attrs} over [{first}, {second}]");
        }
    }
}

#[test]
fn prefer_standby_takes_the_primary_when_the_standby_is_down_and_standby_then_fails() {
    let pair = Replicated::start(false).expect("a primary and a standby");
    let (p, s) = (pair.primary_info().port, pair.standby_info().port);
    pair.stop_standby(StopMode::Fast).unwrap();
    let dsn = |attrs: &str| {
        format!(
            "host=127.0.0.1,127.0.0.1 port={s},{p} dbname=momoko_test user=momoko \
             target_session_attrs={attrs}"
        )
    };
    let (prefer, standby) = (dsn("prefer-standby"), dsn("standby"));
    run(async move {
        let conn = momoko::connect(&prefer).await.unwrap();
        assert_eq!(conn.port(), Some(p));
        conn.close();
        let e = momoko::connect(&standby).await.unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("could not connect to any of 2 servers tried"),
            "{text}"
        );
        assert!(
            text.contains(&format!("127.0.0.1:{p}: server is not in hot standby mode")),
            "{text:?}"
        );
    });
}

#[test]
fn load_balance_hosts_random_reaches_the_primary_and_the_standby() {
    let pair = Replicated::start(false).expect("a primary and a standby");
    let (p, s) = (pair.primary_info().port, pair.standby_info().port);
    let dsn = format!("{} load_balance_hosts=random", pair.hosts_dsn());
    let seen = run(async move {
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..40 {
            let c = momoko::connect(&dsn).await.unwrap();
            *seen.entry(c.port().unwrap()).or_insert(0u32) += 1;
            c.close();
        }
        seen
    });
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), {
        let mut v = vec![p, s];
        v.sort_unstable();
        v
    });
    assert!(seen.values().all(|&n| n >= 5), "{seen:?}");
}

#[test]
fn a_standby_pool_retires_its_connections_when_the_standby_is_promoted() {
    let pair = Arc::new(Replicated::start(false).expect("a primary and a standby"));
    let version: i32 = pair
        .standby_info()
        .psql("SHOW server_version_num")
        .unwrap()
        .parse()
        .unwrap();
    if version < 140000 {
        // Before 14 a server reports no change of in_hot_standby (nor its value at
        // startup): a connection cannot learn of the promotion without asking, and libpq
        // does not ask either once connected.
        eprintln!("skipped: PostgreSQL {version} does not report in_hot_standby");
        return;
    }
    let s = pair.standby_info().port;
    // Only the standby in the list: once promoted, nothing fits `standby` any more.
    let dsn = format!(
        "host=127.0.0.1 port={s} dbname=momoko_test user=momoko target_session_attrs=standby"
    );
    let go = Arc::new(AtomicBool::new(false));
    let promoter = {
        let (pair, go) = (pair.clone(), go.clone());
        std::thread::spawn(move || {
            while !go.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            pair.promote_standby().unwrap();
            go.store(false, Ordering::SeqCst);
        })
    };
    run_for(60, async move {
        let pool = Pool::builder(&dsn)
            .size(2)
            .raise_connect_errors(false)
            .reconnect_interval(Duration::from_millis(100))
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap();
        assert_eq!(pool.stats().free, 2);
        go.store(true, Ordering::SeqCst);
        let promoted = go.clone();
        wait_until(40, "the promotion", || !promoted.load(Ordering::SeqCst)).await;
        // A server reports in_hot_standby's change (a ParameterStatus) only with the
        // ReadyForQuery of a session's next command: each connection serves one more
        // query, then it is retired.
        let both = (pool.execute("SELECT 1", ()), pool.execute("SELECT 2", ()));
        both.0.await.unwrap();
        both.1.await.unwrap();
        wait_until(
            10,
            "the promoted server's connections to be retired",
            || pool.stats().free == 0,
        )
        .await;
        let counters: PoolCounters = pool.take_stats().counters;
        assert_eq!(counters.connections_lost, 2, "{counters:?}");
        wait_until(10, "a reconnect to be refused", || {
            pool.last_connect_error().is_some()
        })
        .await;
        let e = pool.last_connect_error().unwrap();
        assert!(
            e.to_string().contains("server is not in hot standby mode"),
            "{e}"
        );
        pool.close().unwrap();
    });
    promoter.join().unwrap();
}

#[test]
fn a_read_write_pool_follows_a_promotion_and_loses_no_acknowledged_insert() {
    let pair = Arc::new(Replicated::start(true).expect("a synchronous primary and standby"));
    let report = failover::failover_round(pair, 200, Duration::from_secs(2));
    eprintln!("{}", report.table());
    assert!(report.acknowledged >= 200, "{report:?}");
    assert!(report.acknowledged_after > 0, "{report:?}");
    assert_eq!(report.lost, Vec::<i64>::new(), "{report:?}");
    assert_eq!(report.duplicated, Vec::<i64>::new(), "{report:?}");
    assert!(
        report.recovered_after < Duration::from_secs(15),
        "{report:?}"
    );
}
