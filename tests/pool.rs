//! The Pool against a real server: Momoko's MomokoPool* tests ported with strict assertions,
//! "no connection left busy" checked after each, and the hangs Momoko had.

mod common;

use std::time::{Duration, Instant};

use common::{
    assert_none_busy, dsn, refused_port, run, run_and_check_query, run_for, run_parallel_queries,
    sleep, unique,
};
use momoko::{ErrorKind, Pool, PoolStats, Statement, TransactionStatus};

fn bad_dsn() -> String {
    format!(
        "dbname=db user=user password=xxpassword host=127.0.0.1 port={}",
        refused_port()
    )
}

fn builder(size: usize) -> momoko::PoolBuilder {
    Pool::builder(&dsn())
        .size(size)
        .raise_connect_errors(false)
        .reconnect_interval(Duration::from_millis(500))
}

async fn build(size: usize) -> Pool {
    builder(size).build().unwrap().connect().await.unwrap()
}

/// The container's counts only (sizes and counters left at zero), to compare whole.
fn counts(pool: &Pool) -> PoolStats {
    let s = pool.stats();
    PoolStats {
        free: s.free,
        busy: s.busy,
        dead: s.dead,
        pending: s.pending,
        waiting: s.waiting,
        ..PoolStats::default()
    }
}

/// Momoko's shutter: closes every live connection on the client side.
fn shutter(pool: &Pool) {
    for c in pool.connections_for_tests() {
        c.close();
    }
}

#[test]
fn connect_resolves_to_the_pool_with_size_free_connections() {
    run(async {
        let pool = build(3).await;
        assert_eq!(
            counts(&pool),
            PoolStats {
                free: 3,
                busy: 0,
                dead: 0,
                pending: 0,
                waiting: 0,
                ..PoolStats::default()
            }
        );
        let s = format!("{pool:?}");
        assert!(s.starts_with("<Pool at "), "{s}");
        assert!(
            s.ends_with(": 3 free, 0 busy, 0 dead, 0 pending, 0 waiting>"),
            "{s}"
        );
        // A second connect opens nothing new.
        pool.connect().await.unwrap();
        assert_eq!(pool.stats().total(), 3);
        pool.close().unwrap();
    });
}

#[test]
fn builder_refuses_a_zero_size_and_a_max_size_below_size() {
    assert_eq!(
        Pool::builder("").size(0).build().unwrap_err().kind(),
        ErrorKind::Usage
    );
    assert_eq!(
        Pool::builder("")
            .size(3)
            .max_size(2)
            .build()
            .unwrap_err()
            .kind(),
        ErrorKind::Usage
    );
}

#[test]
fn setsession_runs_on_every_pooled_connection() {
    run(async {
        for tz in ["UTC", "Israel", "Australia/Melbourne"] {
            let pool = builder(1)
                .setsession(["SELECT 1".to_owned(), format!("SET TIME ZONE '{tz}'")])
                .build()
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut c = pool
                .execute("SELECT current_setting('TIMEZONE');", ())
                .await
                .unwrap();
            assert_eq!(c.fetchone().unwrap().get::<_, String>(0), tz);
            pool.close().unwrap();
        }
    });
}

#[test]
fn pool_runs_the_connection_data_calls() {
    run(async {
        let pool = build(3).await;
        let mut c = pool.execute("SELECT 1, 2, 3", ()).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(2), 3);
        let mut c = pool.execute("SELECT 'a%s'", ()).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, String>(0), "a%s");
        pool.ping().await.unwrap();
        let cursors = pool
            .transaction(vec![
                Statement::from("SELECT 1, 2, 3, 4;"),
                Statement::from(("SELECT %s+10;", (3i32,))),
            ])
            .await
            .unwrap();
        assert_eq!(cursors.len(), 2);
        let s = pool
            .mogrify("SELECT %s, %s;", ("'\"test\"'", "SELECT 1;"))
            .await
            .unwrap();
        assert_eq!(s, "SELECT '''\"test\"''', 'SELECT 1;';");
        let err = pool
            .mogrify(
                "SELECT %(foos;",
                momoko::named([("foo", momoko::Value::from("bar"))]),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage);
        let err = pool
            .execute("SELECT DOES NOT WORK!;", ())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("42601"));
        pool.register_hstore().await.unwrap();
        let mut c = pool.execute("SELECT 'a=>b'::hstore", ()).await.unwrap();
        let h: std::collections::HashMap<String, Option<String>> = c.fetchone().unwrap().get(0);
        assert_eq!(h.get("a"), Some(&Some("b".to_owned())));
        pool.register_json().await.unwrap();
        assert_none_busy(&pool);
        pool.close().unwrap();
    });
}

#[test]
fn non_database_errors_release_the_connection() {
    run(async {
        let pool = build(3).await;
        let err = pool.execute("SELECT %s %s;", (1i32,)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage);
        assert_none_busy(&pool);
        assert_eq!(pool.stats().free, 3);
    });
}

#[test]
fn hstore_registered_on_the_pool_applies_to_connections_opened_later() {
    run(async {
        let pool = builder(1)
            .max_size(3)
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap();
        pool.register_hstore().await.unwrap();
        let fs: Vec<_> = (0..3)
            .map(|_| pool.execute("SELECT 'k=>v'::hstore, pg_sleep(0.2)", ()))
            .collect();
        for f in fs {
            let mut c = f.await.unwrap();
            let h: std::collections::HashMap<String, Option<String>> = c.fetchone().unwrap().get(0);
            assert_eq!(h.get("k"), Some(&Some("v".to_owned())));
        }
        assert_eq!(pool.stats().total(), 3);
    });
}

#[test]
fn transaction_after_the_connections_were_closed_runs_exactly_once() {
    run(async {
        let pool = build(3).await;
        let table = unique("tx_reconnect");
        pool.execute(&format!("CREATE TABLE {table} (id integer)"), ())
            .await
            .unwrap();
        shutter(&pool);
        pool.transaction(vec![format!("INSERT INTO {table} VALUES (1)")])
            .await
            .unwrap();
        let mut c = pool
            .execute(&format!("SELECT COUNT(1) FROM {table}"), ())
            .await
            .unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i64>(0), 1);
        pool.execute(&format!("DROP TABLE {table}"), ())
            .await
            .unwrap();
        assert_none_busy(&pool);
    });
}

#[test]
fn getconn_putconn_fifteen_times() {
    run(async {
        let pool = build(3).await;
        for _ in 0..15 {
            let conn = pool.getconn(true).await.unwrap();
            for j in 0..10i32 {
                let mut c = conn.execute("SELECT %s", (j,)).await.unwrap();
                assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), j);
            }
            pool.putconn(conn).unwrap();
        }
        assert_none_busy(&pool);
    });
}

#[test]
fn getconn_revives_connections_closed_under_the_pool() {
    run(async {
        let pool = build(3).await;
        for _ in 0..15 {
            shutter(&pool);
            let conn = pool.getconn(true).await.unwrap();
            for j in 0..10i32 {
                let mut c = conn.execute("SELECT %s", (j,)).await.unwrap();
                assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), j);
            }
            let managed = pool.manage(conn);
            managed.ping().await.unwrap();
        }
        assert_none_busy(&pool);
    });
}

#[test]
fn putconn_twice_is_a_usage_error() {
    run(async {
        let pool = build(1).await;
        let conn = pool.getconn(false).await.unwrap();
        pool.putconn(conn.clone()).unwrap();
        assert_eq!(pool.putconn(conn).unwrap_err().kind(), ErrorKind::Usage);
    });
}

#[test]
fn a_connection_given_back_inside_a_transaction_is_rolled_back() {
    run(async {
        let pool = build(1).await;
        let table = unique("putconn_tx");
        pool.execute(&format!("CREATE TABLE {table} (id integer)"), ())
            .await
            .unwrap();
        {
            let conn = pool.manage(pool.getconn(false).await.unwrap());
            conn.execute("BEGIN", ()).await.unwrap();
            conn.execute(&format!("INSERT INTO {table} VALUES (1)"), ())
                .await
                .unwrap();
        }
        let conn = pool.getconn(false).await.unwrap();
        assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
        let mut c = conn
            .execute(&format!("SELECT COUNT(*) FROM {table}"), ())
            .await
            .unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i64>(0), 0);
        pool.putconn(conn).unwrap();
        pool.execute(&format!("DROP TABLE {table}"), ())
            .await
            .unwrap();
    });
}

#[test]
fn server_side_cursor_on_a_managed_connection() {
    run(async {
        let pool = build(3).await;
        let table = unique("ssc");
        pool.execute(&format!("CREATE TABLE {table} (id integer)"), ())
            .await
            .unwrap();
        let values: Vec<String> = (0..1000).map(|i| format!("({i})")).collect();
        pool.transaction(vec![format!(
            "INSERT INTO {table} VALUES {}",
            values.join(",")
        )])
        .await
        .unwrap();
        {
            let conn = pool.manage(pool.getconn(true).await.unwrap());
            common::fetch_all_ints_in_chunks(&conn, &table).await;
        }
        pool.execute(&format!("DROP TABLE {table}"), ())
            .await
            .unwrap();
        assert_none_busy(&pool);
    });
}

#[test]
fn parallel_queries_reuse_the_connection() {
    run(async {
        let pool = build(1).await;
        run_parallel_queries(&pool, 1, 1).await;
        run_parallel_queries(&pool, 1, 1).await;
    });
}

#[test]
fn requests_queue_when_every_connection_is_busy() {
    run(async {
        let pool = build(1).await;
        let f1 = pool.execute("SELECT pg_sleep(0.3)", ());
        let f2 = pool.execute("SELECT 2", ());
        let f3 = pool.execute("SELECT 3", ());
        assert_eq!(pool.stats().waiting, 2);
        f1.await.unwrap();
        let (mut c2, mut c3) = (f2.await.unwrap(), f3.await.unwrap());
        assert_eq!(c2.fetchone().unwrap().get::<_, i32>(0), 2);
        assert_eq!(c3.fetchone().unwrap().get::<_, i32>(0), 3);
        run_parallel_queries(&pool, 2, 1).await;
    });
}

#[test]
fn parallel_queries_after_every_connection_was_closed() {
    run(async {
        let pool = build(1).await;
        shutter(&pool);
        run_parallel_queries(&pool, 1, 1).await;
    });
}

#[test]
fn stretching_opens_one_connection_per_acquisition_up_to_four() {
    run(async {
        let pool = builder(1)
            .max_size(5)
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap();
        run_parallel_queries(&pool, 4, 1).await;
        assert_eq!(pool.stats().total(), 4);
    });
}

#[test]
fn sequential_queries_stretch_once() {
    run(async {
        let pool = builder(1)
            .max_size(5)
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap();
        for _ in 0..3 {
            run_and_check_query(&pool).await;
        }
        assert_eq!(pool.stats().total(), 2);
    });
}

#[test]
fn sequential_queries_after_a_reconnect_stretch_once() {
    run(async {
        let pool = builder(1)
            .max_size(5)
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap();
        shutter(&pool);
        for _ in 0..3 {
            run_and_check_query(&pool).await;
        }
        assert_eq!(pool.stats().total(), 2);
    });
}

#[test]
fn stretching_after_a_disconnect_reaches_four() {
    run(async {
        let pool = builder(1)
            .max_size(5)
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap();
        shutter(&pool);
        run_parallel_queries(&pool, 4, 1).await;
        assert_eq!(pool.stats().total(), 4);
    });
}

#[test]
fn three_concurrent_getconns_stretch_to_three() {
    run(async {
        let pool = builder(1)
            .max_size(5)
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap();
        common::three_concurrent_getconns(&pool).await;
    });
}

#[test]
fn a_pool_of_one_with_max_two_and_four_requests_shows_momokos_counts() {
    run(async {
        let pool = builder(1)
            .max_size(2)
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap();
        let fs: Vec<_> = (0..4).map(|_| pool.execute("SELECT 1", ())).collect();
        assert_eq!(
            counts(&pool),
            PoolStats {
                free: 0,
                busy: 1,
                dead: 0,
                pending: 1,
                waiting: 3,
                ..PoolStats::default()
            }
        );
        for f in fs {
            f.await.unwrap();
        }
        // The stretched connection may still be connecting when the last answer arrives.
        let deadline = Instant::now() + Duration::from_secs(5);
        while pool.stats().pending > 0 {
            assert!(Instant::now() < deadline, "{pool:?}");
            sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            counts(&pool),
            PoolStats {
                free: 2,
                ..PoolStats::default()
            }
        );
    });
}

#[test]
fn a_pool_on_a_refused_port_starts_with_every_connection_dead() {
    run(async {
        let pool = Pool::builder(&bad_dsn())
            .size(3)
            .raise_connect_errors(false)
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap();
        assert_eq!(pool.stats().dead + pool.stats().pending, 3);
        let local = Pool::builder("host=/nonexistent/momoko dbname=db user=u")
            .size(3)
            .raise_connect_errors(false)
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap();
        assert_eq!(local.stats().dead + local.stats().pending, 3);
        // Within reconnect_interval of that failure, a request fails at once.
        let err = pool.execute("SELECT 1", ()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DatabaseNotAvailable);
        assert_eq!(pool.stats().waiting, 0);
    });
}

#[test]
fn a_pool_that_connected_nothing_is_not_partially_connected() {
    run(async {
        let err = Pool::builder(&bad_dsn())
            .size(3)
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DatabaseNotAvailable);
        assert_eq!(
            err.to_string(),
            "database not available: 0 of 3 connections could be made: could not connect to \
             the server: Connection refused (os error 111)"
        );
    });
}

#[test]
fn requests_made_before_connect_finishes_wait_for_it() {
    run(async {
        let pool = builder(1).build().unwrap();
        let connecting = pool.connect();
        let mut c = pool.execute("SELECT 1", ()).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 1);
        connecting.await.unwrap();
    });
}

#[test]
fn requests_made_before_a_failing_connect_finishes_fail_instead_of_hanging() {
    run(async {
        let pool = Pool::builder(&bad_dsn()).size(1).build().unwrap();
        let connecting = pool.connect();
        let err = pool.execute("SELECT 1", ()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DatabaseNotAvailable);
        assert_eq!(
            connecting.await.unwrap_err().kind(),
            ErrorKind::DatabaseNotAvailable
        );
    });
}

#[test]
fn use_before_connect_and_after_close_are_pool_errors() {
    run(async {
        let pool = builder(1).build().unwrap();
        assert_eq!(
            pool.execute("SELECT 1", ()).await.unwrap_err().kind(),
            ErrorKind::Pool
        );
        assert_eq!(
            pool.getconn(true).await.unwrap_err().kind(),
            ErrorKind::Pool
        );
        pool.connect().await.unwrap();
        pool.close().unwrap();
        assert_eq!(pool.close().unwrap_err().kind(), ErrorKind::Pool);
        assert_eq!(
            pool.execute("SELECT 1", ()).await.unwrap_err().kind(),
            ErrorKind::Pool
        );
        assert_eq!(pool.connect().await.unwrap_err().kind(), ErrorKind::Pool);
    });
}

#[test]
fn close_fails_waiters_and_work_in_flight() {
    run(async {
        let pool = build(1).await;
        let running = pool.execute("SELECT pg_sleep(5)", ());
        let queued = pool.execute("SELECT 1", ());
        assert_eq!(pool.stats().waiting, 1);
        pool.close().unwrap();
        assert_eq!(queued.await.unwrap_err().kind(), ErrorKind::Pool);
        assert_eq!(running.await.unwrap_err().kind(), ErrorKind::Pool);
        assert_eq!(pool.stats().total(), 0);
    });
}

#[test]
fn reconnect_interval_good_path_reconnects_after_the_interval() {
    run(async {
        let pool = build(3).await;
        pool.set_dsn(&bad_dsn());
        shutter(&pool);
        // Let the reconnect batch fail, then heal the DSN.
        sleep(Duration::from_millis(100)).await;
        assert_eq!(pool.stats().dead, 3);
        pool.set_dsn(&dsn());
        sleep(Duration::from_millis(550)).await;
        run_and_check_query(&pool).await;
    });
}

#[test]
fn ping_error_when_nothing_can_connect_is_database_not_available() {
    run(async {
        let pool = build(3).await;
        pool.set_dsn(&bad_dsn());
        shutter(&pool);
        let err = pool.getconn(true).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DatabaseNotAvailable);
        assert_eq!(pool.stats().waiting, 0);
    });
}

#[test]
fn closing_every_connection_fails_the_waiters_with_database_not_available() {
    run(async {
        let pool = build(1).await;
        pool.set_dsn(&bad_dsn());
        let conn = pool.getconn(false).await.unwrap();
        let waiter = pool.execute("SELECT 1", ());
        assert_eq!(pool.stats().waiting, 1);
        conn.close();
        pool.putconn(conn).unwrap();
        let err = waiter.await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DatabaseNotAvailable);
        assert_eq!(pool.stats().waiting, 0);
    });
}

#[test]
fn an_idle_connection_terminated_by_the_server_is_found_dead_at_once_and_replaced() {
    run(async {
        let pool = build(1).await;
        let admin = momoko::connect(&dsn()).await.unwrap();
        let conn = pool.getconn(false).await.unwrap();
        let pid = conn.backend_pid().unwrap();
        pool.putconn(conn).unwrap();
        admin
            .execute("SELECT pg_terminate_backend(%s)", (pid,))
            .await
            .unwrap();
        // The FATAL message reaches the idle socket; the pool reconnects without being asked.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let replaced = pool.stats().free == 1
                && pool.connections_for_tests()[0]
                    .backend_pid()
                    .is_some_and(|p| p != pid);
            if replaced {
                break;
            }
            assert!(Instant::now() < deadline, "not replaced: {pool:?}");
            sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(pool.stats().total(), 1);
        let conn = pool.getconn(false).await.unwrap();
        assert_ne!(conn.backend_pid(), Some(pid));
        pool.putconn(conn).unwrap();
    });
}

#[test]
fn a_thousand_waiters_on_a_pool_of_two_are_all_served_in_order() {
    run(async {
        let pool = build(2).await;
        let fs: Vec<_> = (0..1000i32)
            .map(|i| pool.execute("SELECT %s", (i,)))
            .collect();
        assert_eq!(pool.stats().waiting, 998);
        for (i, f) in fs.into_iter().enumerate() {
            assert_eq!(
                f.await.unwrap().fetchone().unwrap().get::<_, i32>(0),
                i as i32
            );
        }
        assert_none_busy(&pool);
    });
}

#[test]
fn acquire_timeout_fails_a_waiter_with_timeout_and_max_waiting_refuses_at_once() {
    run(async {
        let pool = builder(1)
            .acquire_timeout(Duration::from_millis(200))
            .max_waiting(1)
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap();
        let busy = pool.execute("SELECT pg_sleep(1)", ());
        let start = Instant::now();
        let waiter = pool.execute("SELECT 1", ());
        let refused = pool.execute("SELECT 1", ()).await.unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Pool);
        assert_eq!(pool.stats().waiting, 1);
        let err = waiter.await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(190) && took < Duration::from_millis(800),
            "{took:?}"
        );
        assert_eq!(pool.stats().waiting, 0);
        busy.await.unwrap();
    });
}

#[test]
fn shrinking_closes_idle_stretched_connections_down_to_size() {
    run_for(20, async {
        let pool = builder(2)
            .max_size(5)
            .auto_shrink(true)
            .shrink_delay(Duration::from_secs(1))
            .shrink_period(Duration::from_millis(500))
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap();
        let fs: Vec<_> = (1..=5i32)
            .map(|i| pool.execute("SELECT %s, pg_sleep(0.1)", (i,)))
            .collect();
        for (i, f) in fs.into_iter().enumerate() {
            assert_eq!(
                f.await.unwrap().fetchone().unwrap().get::<_, i32>(0),
                i as i32 + 1
            );
        }
        sleep(Duration::from_millis(700)).await;
        assert_eq!(pool.stats().total(), 5);
        sleep(Duration::from_millis(1000)).await;
        assert_eq!(pool.stats().total(), 2);
    });
}

#[test]
fn shrinking_keeps_recently_used_connections() {
    run_for(20, async {
        let pool = builder(2)
            .max_size(5)
            .auto_shrink(true)
            .shrink_delay(Duration::from_secs(1))
            .shrink_period(Duration::from_millis(500))
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap();
        let fs: Vec<_> = (1..=5i32)
            .map(|i| pool.execute("SELECT %s, pg_sleep(0.1)", (i,)))
            .collect();
        for f in fs {
            f.await.unwrap();
        }
        sleep(Duration::from_millis(700)).await;
        assert_eq!(pool.stats().total(), 5);
        let fs: Vec<_> = (1..=3i32)
            .map(|i| pool.execute("SELECT %s, pg_sleep(0.1)", (i,)))
            .collect();
        for f in fs {
            f.await.unwrap();
        }
        sleep(Duration::from_millis(1000)).await;
        assert_eq!(pool.stats().total(), 3);
    });
}

#[test]
fn sub_second_shrink_delay_is_honoured() {
    run_for(20, async {
        let pool = builder(1)
            .max_size(3)
            .auto_shrink(true)
            .shrink_delay(Duration::from_millis(900))
            .shrink_period(Duration::from_millis(100))
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap();
        let fs: Vec<_> = (0..3)
            .map(|_| pool.execute("SELECT pg_sleep(0.1)", ()))
            .collect();
        for f in fs {
            f.await.unwrap();
        }
        assert_eq!(pool.stats().total(), 3);
        // Momoko truncated 900 ms to 0 s and shrank within 0.45 s.
        sleep(Duration::from_millis(500)).await;
        assert_eq!(pool.stats().total(), 3);
        sleep(Duration::from_millis(800)).await;
        assert_eq!(pool.stats().total(), 1);
    });
}

#[test]
fn pipeline_depth_lets_operations_share_busy_connections_in_order() {
    run(async {
        let pool = builder(2)
            .pipeline_depth(64)
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap();
        let fs: Vec<_> = (0..1000i32)
            .map(|i| pool.execute("SELECT %s", (i,)))
            .collect();
        // Nobody waits in the pool's queue: every request went onto a connection.
        assert_eq!(pool.stats().waiting, 1000 - 2 * 64);
        for (i, f) in fs.into_iter().enumerate() {
            assert_eq!(
                f.await.unwrap().fetchone().unwrap().get::<_, i32>(0),
                i as i32
            );
        }
        assert_eq!(
            counts(&pool),
            PoolStats {
                free: 2,
                ..PoolStats::default()
            }
        );
        // Exclusive users never share: getconn waits for a connection of its own.
        let a = pool.getconn(false).await.unwrap();
        let b = pool.getconn(false).await.unwrap();
        let shared = pool.execute("SELECT 1", ());
        assert_eq!(pool.stats().waiting, 1);
        pool.putconn(a).unwrap();
        shared.await.unwrap();
        pool.putconn(b).unwrap();
        assert_none_busy(&pool);
    });
}

#[test]
fn an_abandoned_getconn_does_not_leak_its_connection() {
    run(async {
        let pool = build(1).await;
        let held = pool.getconn(false).await.unwrap();
        // Queued behind `held`, then dropped by its caller.
        drop(pool.getconn(true));
        drop(pool.getconn(false));
        // Each new waiter clears the abandoned ones before it: one is left.
        assert_eq!(pool.stats().waiting, 1);
        pool.putconn(held).unwrap();
        let conn = pool.getconn(true).await.unwrap();
        pool.putconn(conn).unwrap();
        assert_eq!(
            counts(&pool),
            PoolStats {
                free: 1,
                ..PoolStats::default()
            }
        );
    });
}

#[test]
fn a_busy_connection_terminated_by_the_server_is_retried_on_a_new_session() {
    run(async {
        let pool = build(1).await;
        let admin = momoko::connect(&dsn()).await.unwrap();
        let conn = pool.getconn(false).await.unwrap();
        let pid = conn.backend_pid().unwrap();
        pool.putconn(conn).unwrap();
        let slow = pool.execute("SELECT pg_backend_pid(), pg_sleep(0.5)", ());
        sleep(Duration::from_millis(100)).await;
        admin
            .execute("SELECT pg_terminate_backend(%s)", (pid,))
            .await
            .unwrap();
        // The server answered FATAL before completing the query: provably not applied, so
        // the pool ran it again on a fresh session.
        let mut c = slow.await.unwrap();
        assert_ne!(c.fetchone().unwrap().get::<_, i32>(0), pid);
        assert_none_busy(&pool);
    });
}

#[test]
fn waiters_whose_futures_were_dropped_leave_the_queue() {
    run(async {
        let pool = builder(1)
            .max_waiting(2)
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap();
        let held = pool.getconn(false).await.unwrap();
        drop(pool.execute("SELECT 1", ()));
        drop(pool.execute("SELECT 2", ()));
        // The dropped ones hold no place: two live waiters still fit.
        let a = pool.execute("SELECT 3", ());
        let b = pool.execute("SELECT 4", ());
        assert_eq!(pool.stats().waiting, 2);
        assert_eq!(
            pool.execute("SELECT 5", ()).await.unwrap_err().kind(),
            ErrorKind::Pool
        );
        pool.putconn(held).unwrap();
        assert_eq!(a.await.unwrap().fetchone().unwrap().get::<_, i32>(0), 3);
        assert_eq!(b.await.unwrap().fetchone().unwrap().get::<_, i32>(0), 4);
        assert_none_busy(&pool);
    });
}
