//! Timeouts against a server that stops answering: tcproxy blackholes the traffic (sockets
//! stay open, no byte moves), and connect_timeout, query_timeout and acquire_timeout each
//! fire within their bound plus a small margin; after `heal()` the pool serves again.

mod common;

use std::time::{Duration, Instant};

use common::{relay as proxy, run, sleep};
use momoko::{Connection, ErrorKind, Pool};

fn assert_within(took: Duration, bound: Duration) {
    let margin = Duration::from_millis(500);
    assert!(
        took >= bound.saturating_sub(Duration::from_millis(10)) && took <= bound + margin,
        "took {took:?}, bound {bound:?}"
    );
}

#[test]
fn connect_timeout_fires_when_the_server_is_blackholed() {
    let (p, dsn) = proxy();
    p.blackhole(true);
    run(async move {
        let start = Instant::now();
        let err = Connection::builder(&dsn)
            .connect_timeout(Duration::from_millis(400))
            .connect()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert_within(start.elapsed(), Duration::from_millis(400));
        p.heal();
        Connection::builder(&dsn)
            .connect()
            .await
            .unwrap()
            .ping()
            .await
            .unwrap();
    });
}

#[test]
fn query_timeout_fires_when_the_server_goes_silent_mid_session() {
    let (p, dsn) = proxy();
    run(async move {
        let conn = Connection::builder(&dsn)
            .query_timeout(Duration::from_millis(400))
            .connect_timeout(Duration::from_secs(1))
            .connect()
            .await
            .unwrap();
        conn.ping().await.unwrap();
        p.blackhole(true);
        let start = Instant::now();
        let err = conn.execute("SELECT 1", ()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert_eq!(err.code(), Some("57014"));
        assert_within(start.elapsed(), Duration::from_millis(400));
        // The cancelled request is never answered: after the grace period the connection
        // is given up rather than left waiting forever.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !conn.closed() {
            assert!(
                Instant::now() < deadline,
                "the silent connection was never given up"
            );
            sleep(Duration::from_millis(50)).await;
        }
        p.heal();
        conn.connect().await.unwrap();
        conn.ping().await.unwrap();
    });
}

#[test]
fn acquire_timeout_fires_and_the_pool_serves_again_after_heal() {
    let (p, dsn) = proxy();
    run(async move {
        let pool = Pool::builder(&dsn)
            .size(1)
            .query_timeout(Duration::from_millis(500))
            .acquire_timeout(Duration::from_millis(300))
            .connect_timeout(Duration::from_secs(1))
            .reconnect_interval(Duration::from_millis(100))
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap();
        pool.ping().await.unwrap();
        p.blackhole(true);
        let start = Instant::now();
        let running = pool.execute("SELECT 1", ());
        let waiting = pool.execute("SELECT 2", ());
        let err = waiting.await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert_within(start.elapsed(), Duration::from_millis(300));
        let err = running.await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert_within(start.elapsed(), Duration::from_millis(500));
        p.heal();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match pool.execute("SELECT 3", ()).await {
                Ok(mut c) => {
                    assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 3);
                    break;
                }
                Err(e) => {
                    assert!(Instant::now() < deadline, "the pool did not recover: {e}");
                    sleep(Duration::from_millis(50)).await;
                }
            }
        }
        assert_eq!(pool.stats().busy, 0);
        pool.close().unwrap();
    });
}

#[test]
fn a_cancel_the_server_never_takes_ends_at_the_connection_strings_connect_timeout() {
    let (p, dsn) = proxy();
    run(async move {
        // connect_timeout given in the connection string only: the cancel's bound too, as
        // in libpq (it waited momoko's 10 s fallback before).
        let conn = Connection::builder(&format!("{dsn} connect_timeout=2"))
            .connect()
            .await
            .unwrap();
        conn.ping().await.unwrap();
        p.blackhole(true);
        let start = Instant::now();
        let err = conn.cancel().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        assert_within(start.elapsed(), Duration::from_secs(2));
        p.heal();
        conn.close();
    });
}
