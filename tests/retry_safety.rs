//! The pool's retry never applies a write twice: an INSERT whose connection is cut after the
//! request reached the server fails with "outcome unknown" and is not replayed, while one
//! whose connection was dead before it was written is replayed once, safely.

mod common;

use std::time::Duration;

use common::{relay, run, sleep, unique};
use momoko::{Connection, ErrorKind, Pool, RetryPolicy};

/// The row count of `table`, once it has stopped changing (the cut session's backend may
/// still be running its INSERT when the client already saw the connection die).
async fn settled_count(admin: &Connection, table: &str, expect: i64) -> i64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = admin
            .execute(&format!("SELECT count(*) FROM {table}"), ())
            .await
            .unwrap();
        let n: i64 = c.fetchone().unwrap().get(0);
        if n >= expect || std::time::Instant::now() > deadline {
            // Give a straggler the time to show up twice, if it were going to.
            sleep(Duration::from_millis(300)).await;
            let mut c = admin
                .execute(&format!("SELECT count(*) FROM {table}"), ())
                .await
                .unwrap();
            return c.fetchone().unwrap().get(0);
        }
    }
}

async fn pool_on(dsn: &str, retry: RetryPolicy) -> Pool {
    Pool::builder(dsn)
        .size(1)
        .raise_connect_errors(false)
        .reconnect_interval(Duration::from_millis(100))
        .retry(retry)
        .build()
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[test]
fn an_insert_cut_after_sending_is_not_applied_twice_and_says_its_outcome_is_unknown() {
    let (proxy, dsn) = relay();
    run(async move {
        let admin = momoko::connect(&common::dsn()).await.unwrap();
        let table = unique("retry_once");
        admin
            .execute(&format!("CREATE TABLE {table} (k text PRIMARY KEY)"), ())
            .await
            .unwrap();
        let pool = pool_on(&dsn, RetryPolicy::Safe).await;
        pool.ping().await.unwrap();
        // The INSERT reaches the server and runs for half a second; meanwhile the network
        // resets the connection, so the answer never comes back.
        let insert = format!("INSERT INTO {table} SELECT 'unique-key' FROM pg_sleep(0.5)");
        let running = pool.execute(&insert, ());
        sleep(Duration::from_millis(200)).await;
        proxy.reset_all();
        let err = running.await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Connection);
        assert!(err.outcome_unknown(), "{err:?}");
        assert!(
            err.to_string()
                .contains("whether it took effect is unknown"),
            "{err}"
        );
        proxy.heal();
        // The server did run it: exactly once.
        assert_eq!(settled_count(&admin, &table, 1).await, 1);
        // The pool is whole again and the next request works.
        pool.ping().await.unwrap();
        assert_eq!(pool.stats().busy, 0);
        admin
            .execute(&format!("DROP TABLE {table}"), ())
            .await
            .unwrap();
    });
}

#[test]
fn momokos_rule_replays_the_cut_insert_and_applies_it_twice() {
    let (proxy, dsn) = relay();
    run(async move {
        let admin = momoko::connect(&common::dsn()).await.unwrap();
        let table = unique("retry_momoko");
        admin
            .execute(&format!("CREATE TABLE {table} (k text)"), ())
            .await
            .unwrap();
        let pool = pool_on(&dsn, RetryPolicy::Momoko).await;
        pool.ping().await.unwrap();
        let insert = format!("INSERT INTO {table} SELECT 'unique-key' FROM pg_sleep(0.5)");
        let running = pool.execute(&insert, ());
        sleep(Duration::from_millis(200)).await;
        proxy.reset_all();
        // Momoko replays whenever the connection proved dead: the caller sees success, and
        // the row is there twice. This is why it is not the default.
        running.await.unwrap();
        assert_eq!(settled_count(&admin, &table, 2).await, 2);
        admin
            .execute(&format!("DROP TABLE {table}"), ())
            .await
            .unwrap();
    });
}

#[test]
fn an_insert_on_a_connection_dead_before_it_was_written_is_replayed_once() {
    let (proxy, dsn) = relay();
    run(async move {
        let admin = momoko::connect(&common::dsn()).await.unwrap();
        let table = unique("retry_dead");
        admin
            .execute(&format!("CREATE TABLE {table} (k text PRIMARY KEY)"), ())
            .await
            .unwrap();
        let pool = pool_on(&dsn, RetryPolicy::Safe).await;
        let conn = pool.getconn(false).await.unwrap();
        // The server side closes while the connection is held; nothing was in flight.
        proxy.reset_all();
        let insert = format!("INSERT INTO {table} VALUES ('k')");
        let f = conn.execute(&insert, ());
        // A connection taken with getconn is never retried: the error surfaces.
        assert_eq!(f.await.unwrap_err().kind(), ErrorKind::Connection);
        pool.putconn(conn).unwrap();
        // A pool-level INSERT finds the connection dead before writing and reconnects.
        pool.execute(&insert, ()).await.unwrap();
        assert_eq!(settled_count(&admin, &table, 1).await, 1);
        admin
            .execute(&format!("DROP TABLE {table}"), ())
            .await
            .unwrap();
    });
}

/// A connection through the relay, and the relay dropping every connection at once from
/// inside the loop's own callback: the close is in the client's socket before the next
/// request is written, but the loop has not polled since.
async fn cut_then_query(poll_before_write: bool) -> momoko::Error {
    let (proxy, dsn) = relay();
    let conn = Connection::builder(&dsn)
        .poll_before_write(poll_before_write)
        .connect()
        .await
        .unwrap();
    conn.execute("SELECT 1", ()).await.unwrap();
    proxy.reset_all();
    // The relay's threads close both ends; give the FIN time to reach our socket.
    std::thread::sleep(Duration::from_millis(100));
    let e = conn.execute("SELECT 2", ()).await.unwrap_err();
    drop(proxy);
    e
}

#[test]
fn with_poll_before_write_a_request_never_goes_into_a_connection_that_died_while_idle() {
    let e = run(cut_then_query(true));
    assert!(e.is_connection_lost(), "{e}");
    assert!(!e.outcome_unknown(), "{e}");
}

#[test]
fn without_it_such_a_request_is_written_and_its_outcome_is_unknown() {
    let e = run(cut_then_query(false));
    assert!(e.is_connection_lost(), "{e}");
    assert!(e.outcome_unknown(), "{e}");
}
