//! Real server restarts (pg_ctl restart, fast and immediate) under an idle pool and under
//! load: nothing hangs, every request ends clearly, and the pool returns to its size.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{run_for, sleep};
use momoko::{ErrorKind, Pool};
use momoko_testpg::{StopMode, TestServer};

async fn wait_for_size(pool: &Pool, size: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while pool.stats().free != size {
        assert!(
            Instant::now() < deadline,
            "the pool did not return to {size}: {pool:?}"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn after_a_restart_of_an_idle_pool_the_next_query_succeeds() {
    let server = Arc::new(TestServer::start().expect("a private server"));
    let dsn = server.info().dsn.clone();
    run_for(120, async move {
        let pool = Pool::builder(&dsn)
            .size(3)
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap();
        for mode in [StopMode::Fast, StopMode::Immediate] {
            let before: i32 = pool
                .execute("SELECT pg_backend_pid()", ())
                .await
                .unwrap()
                .fetchone()
                .unwrap()
                .get(0);
            server.restart(mode).unwrap();
            let mut c = pool
                .execute("SELECT 6, 19, 24", ())
                .await
                .unwrap_or_else(|e| panic!("the first query after a {mode:?} restart failed: {e}"));
            assert_eq!(c.fetchone().unwrap().get::<_, i32>(1), 19);
            let after: i32 = pool
                .execute("SELECT pg_backend_pid()", ())
                .await
                .unwrap()
                .fetchone()
                .unwrap()
                .get(0);
            assert_ne!(before, after);
            wait_for_size(&pool, 3).await;
        }
        pool.close().unwrap();
    });
}

#[test]
fn under_load_three_restarts_leave_no_request_hanging_and_the_pool_whole() {
    let server = Arc::new(TestServer::start().expect("a private server"));
    let dsn = server.info().dsn.clone();
    let restarter = {
        let server = server.clone();
        std::thread::spawn(move || {
            for mode in [StopMode::Fast, StopMode::Immediate, StopMode::Fast] {
                std::thread::sleep(Duration::from_millis(700));
                server.restart(mode).expect("restart");
            }
        })
    };
    let (ok, failed) = run_for(180, async move {
        let pool = Pool::builder(&dsn)
            .size(4)
            .reconnect_interval(Duration::from_millis(100))
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap();
        let (mut ok, mut failed) = (0u32, 0u32);
        let start = Instant::now();
        // Batches of 40 concurrent queries until the restarts are over, 3,000 at least.
        while ok + failed < 3000 || start.elapsed() < Duration::from_secs(4) {
            let fs: Vec<_> = (0..40i32)
                .map(|i| pool.execute("SELECT %s", (i,)))
                .collect();
            for (i, f) in fs.into_iter().enumerate() {
                match f.await {
                    Ok(mut c) => {
                        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), i as i32);
                        ok += 1;
                    }
                    Err(e) => {
                        // Every failure says what happened.
                        assert!(
                            matches!(
                                e.kind(),
                                ErrorKind::Connection
                                    | ErrorKind::DatabaseNotAvailable
                                    | ErrorKind::Db
                            ),
                            "unexpected failure: {e:?}"
                        );
                        assert!(!e.to_string().is_empty());
                        failed += 1;
                    }
                }
            }
            if failed > 0 && ok + failed > 20_000 {
                break;
            }
        }
        wait_for_size(&pool, 4).await;
        assert_eq!(pool.stats().total(), 4);
        pool.close().unwrap();
        (ok, failed)
    });
    restarter.join().unwrap();
    eprintln!("under restarts: {ok} queries succeeded, {failed} failed clearly");
    assert!(ok > 0);
}

/// A pool of 4 over verify-full keeps verifying through a restart: every reconnect is a
/// new TLS handshake against the same CA and host name, never a fallback to plain text.
#[test]
fn a_verify_full_pool_of_four_is_tls_again_after_a_restart() {
    let server = Arc::new(TestServer::start().expect("a private server"));
    let Some(tls) = server.info().tls.clone() else {
        eprintln!("the private server has no certificates: skipped");
        return;
    };
    assert!(tls.dsn.contains("sslmode=verify-full"), "{}", tls.dsn);
    run_for(120, async move {
        let pool = Pool::builder(&tls.dsn)
            .size(4)
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap();
        let ssl_everywhere = |pool: &Pool| {
            let fs: Vec<_> = (0..8)
                .map(|_| {
                    pool.execute(
                        "SELECT ssl, pg_backend_pid() FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                        (),
                    )
                })
                .collect();
            async move {
                let mut pids = Vec::new();
                for f in fs {
                    let row = f.await.unwrap().fetchone().unwrap();
                    assert!(row.get::<_, bool>(0), "a backend without TLS");
                    pids.push(row.get::<_, i32>(1));
                }
                pids
            }
        };
        let before = ssl_everywhere(&pool).await;
        wait_for_size(&pool, 4).await;
        server.restart(StopMode::Fast).unwrap();
        // The first request after the restart may meet a dead socket; the pool reconnects.
        let _ = pool.execute("SELECT 1", ()).await;
        wait_for_size(&pool, 4).await;
        let after = ssl_everywhere(&pool).await;
        assert!(
            after.iter().all(|p| !before.contains(p)),
            "backends survived a restart: {before:?} {after:?}"
        );
        let distinct: std::collections::BTreeSet<_> = after.iter().collect();
        assert!(
            distinct.len() > 1,
            "all eight ran on one backend: {after:?}"
        );
        pool.close().unwrap();
    });
}
