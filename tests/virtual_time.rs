//! Time-driven behaviour driven by the loop's clock instead of the wall clock: a test moves
//! the loop's time with `IoLoop::advance_time` and a running connection or pool acts as if
//! that much time had passed, so timeouts of a minute or lifetimes of an hour are tested in
//! well under a second of real time. The bound on each test is a watchdog thread on the real
//! clock (the loop's own `run_sync_timeout` would be fooled by the moved clock).

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{dsn, sleep};
use momoko::ioloop::IoLoop;
use momoko::{Connection, ErrorKind, Pool};

/// Runs `fut` on a fresh loop; a hang fails the test after `secs` seconds of real time.
fn run_real<F: std::future::Future + 'static>(secs: u64, fut: F) -> F::Output {
    let ioloop = IoLoop::new();
    let handle = ioloop.handle();
    let (done, watch) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = watch.recv_timeout(Duration::from_secs(secs))
        {
            handle.add_callback(move || panic!("the test did not finish in {secs} s"));
        }
    });
    let out = ioloop.run_sync(fut);
    drop(done);
    watchdog.join().unwrap();
    out
}

#[test]
fn a_query_timeout_of_a_minute_fires_when_the_loop_clock_passes_it() {
    run_real(30, async {
        let conn = Connection::builder(&dsn())
            .query_timeout(Duration::from_secs(60))
            .connect()
            .await
            .unwrap();
        let started = Instant::now();
        let slow = conn.execute("SELECT pg_sleep(20)", ());
        // Sent and running on the server; then a minute passes on the loop's clock only.
        sleep(Duration::from_millis(200)).await;
        IoLoop::current().advance_time(Duration::from_secs(61));
        let err = slow.await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert_eq!(err.code(), Some("57014"));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the timeout waited for the wall clock: {:?}",
            started.elapsed()
        );
        // The cancel reached the server: the connection serves the next query.
        let mut c = conn.execute("SELECT 7", ()).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 7);
    });
}

#[test]
fn a_pool_retires_connections_past_max_lifetime_on_the_loop_clock() {
    run_real(30, async {
        let pool = Pool::builder(&dsn())
            .size(2)
            .max_lifetime(Duration::from_secs(3600))
            .build()
            .unwrap();
        pool.connect().await.unwrap();
        let before = pool.stats();
        assert_eq!(before.counters.connections_opened, 2);
        assert_eq!(before.counters.connections_expired, 0);

        // Two hours on the loop's clock: both connections are past their lifetime (at most
        // an hour, less the jitter), so each is replaced as the pool next looks at it.
        IoLoop::current().advance_time(Duration::from_secs(7200));
        for _ in 0..2 {
            let mut c = pool.execute("SELECT 1", ()).await.unwrap();
            assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 1);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.stats().counters.connections_expired < 2 || pool.stats().free < 2 {
            assert!(Instant::now() < deadline, "not retired: {:?}", pool.stats());
            sleep(Duration::from_millis(20)).await;
        }
        let after = pool.stats();
        assert_eq!(after.counters.connections_expired, 2);
        assert_eq!(after.counters.connections_opened, 4);
        assert_eq!(after.free, 2);
        pool.close().unwrap();
    });
}
