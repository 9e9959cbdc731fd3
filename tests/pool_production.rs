//! The production pool against a real server: connections that age out (max_lifetime and
//! its jitter), the check of idle connections before hand-out, on_connect, reset policies,
//! the password callback with a password that changes, resize and drain under load, every
//! counter with exact values in scripted runs, leak warnings, and wait_for_reconnect through
//! a server that goes away and through real restarts.
//!
//! Timing: every wait is bounded; assertions are on counts and order, and durations only
//! with generous bounds (the CI machine has two loaded cores).

mod common;

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{dsn, relay, run_for, sleep, unique, wait_until};
use momoko::ioloop::IoLoop;
use momoko::{Error, ErrorKind, Pool, PoolCounters, Reset, RetryPolicy, TransactionStatus};
use momoko_testpg::{StopMode, TestServer};

/// The backend pids of the pool's live connections (free and busy).
fn pids(pool: &Pool) -> HashSet<i32> {
    pool.connections_for_tests()
        .iter()
        .filter_map(|c| c.backend_pid())
        .collect()
}

async fn backend_pid(pool: &Pool) -> i32 {
    pool.execute("SELECT pg_backend_pid()", ())
        .await
        .unwrap()
        .fetchone()
        .unwrap()
        .get(0)
}

/// Terminates `pid` from another thread with a loop and a connection of its own, and
/// returns once the server has closed that backend: meanwhile this thread (and its loop)
/// is blocked, as a loop busy with other work would be.
fn terminate_while_the_loop_is_busy(pid: i32) {
    let dsn = dsn();
    std::thread::spawn(move || {
        IoLoop::new()
            .run_sync_timeout(
                async move {
                    let admin = momoko::connect(&dsn).await.unwrap();
                    admin
                        .execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
                        .await
                        .unwrap();
                    admin.close();
                },
                Duration::from_secs(20),
            )
            .expect("the terminating thread finished in time")
    })
    .join()
    .unwrap();
}

/// Terminates `pid` from a connection on the current loop.
async fn terminate(pid: i32) {
    let admin = momoko::connect(&dsn()).await.unwrap();
    admin
        .execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
        .await
        .unwrap();
    admin.close();
}

// ----------------------------------------------------------------------------------------
// max_lifetime

#[test]
fn max_lifetime_replaces_every_connection_under_steady_load_and_no_request_fails() {
    run_for(60, async {
        let pool = Pool::builder(&dsn())
            .size(2)
            .max_lifetime(Duration::from_secs(1))
            // Any request that met a connection closed under it would fail: no retry hides it.
            .retry(RetryPolicy::Never)
            .build()
            .unwrap();
        pool.connect().await.unwrap();
        let first = pids(&pool);
        assert_eq!(first.len(), 2);
        let start = Instant::now();
        let mut served = 0;
        // One query every 100 ms for a bit more than three lifetimes.
        while start.elapsed() < Duration::from_millis(3500) {
            let pid = backend_pid(&pool).await; // unwraps: no request may fail
            assert!(pid > 0);
            served += 1;
            sleep(Duration::from_millis(100)).await;
        }
        assert!(served >= 10, "{served}");
        let now = pids(&pool);
        assert!(
            now.is_disjoint(&first),
            "every connection was replaced: {first:?} then {now:?}"
        );
        let c = pool.stats().counters;
        // Both connections expired at least twice in 3.5 s of 0.9..1 s lifetimes.
        assert!(c.connections_expired >= 4, "{c:?}");
        assert_eq!(c.connections_opened, 2 + c.connections_expired, "{c:?}");
        assert_eq!(c.connections_lost, 0, "{c:?}");
        assert_eq!(pool.stats().total(), 2);
        pool.close().unwrap();
    });
}

#[test]
fn jitter_spreads_the_replacements_over_the_last_tenth_of_the_lifetime() {
    run_for(60, async {
        let lifetime = Duration::from_secs(3);
        let pool = Pool::builder(&dsn())
            .size(10)
            .max_lifetime(lifetime)
            .build()
            .unwrap();
        let start = Instant::now();
        pool.connect().await.unwrap();
        let first = pids(&pool);
        assert_eq!(first.len(), 10);
        let mut gone_at: Vec<Duration> = Vec::new();
        let mut seen_gone = HashSet::new();
        while seen_gone.len() < first.len() {
            assert!(start.elapsed() < Duration::from_secs(20), "not all expired");
            let now = pids(&pool);
            for p in &first {
                if !now.contains(p) && seen_gone.insert(*p) {
                    gone_at.push(start.elapsed());
                }
            }
            sleep(Duration::from_millis(5)).await;
        }
        let earliest = *gone_at.iter().min().unwrap();
        let latest = *gone_at.iter().max().unwrap();
        // None before 90 % of its lifetime (counted from before connect() was called).
        assert!(
            earliest >= lifetime.mul_f64(0.9),
            "replaced too early: {gone_at:?}"
        );
        // Ten connections opened together: without jitter they would go within a few ms.
        assert!(
            latest - earliest >= Duration::from_millis(30),
            "the replacements were not spread: {gone_at:?}"
        );
        assert_eq!(pool.stats().counters.connections_expired, 10);
        pool.close().unwrap();
    });
}

#[test]
fn a_connection_past_its_lifetime_is_not_closed_while_in_use_and_goes_when_returned() {
    run_for(30, async {
        let pool = Pool::builder(&dsn())
            .size(1)
            .max_lifetime(Duration::from_millis(300))
            .build()
            .unwrap();
        pool.connect().await.unwrap();
        let conn = pool.getconn(false).await.unwrap();
        let pid = conn.backend_pid().unwrap();
        sleep(Duration::from_millis(600)).await;
        // Past its lifetime and still usable: nobody closes a connection in use.
        let mut c = conn.execute("SELECT pg_backend_pid()", ()).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), pid);
        assert_eq!(pool.stats().counters.connections_expired, 0);
        pool.putconn(conn).unwrap();
        assert_eq!(pool.stats().counters.connections_expired, 1);
        assert_ne!(backend_pid(&pool).await, pid);
        pool.close().unwrap();
    });
}

// ----------------------------------------------------------------------------------------
// health_check_after

#[test]
fn the_health_check_finds_a_backend_terminated_while_the_loop_was_busy_and_the_request_succeeds_first_try(
) {
    run_for(30, async {
        let pool = Pool::builder(&dsn())
            .size(1)
            .retry(RetryPolicy::Never)
            .health_check_after(Duration::from_millis(100))
            .build()
            .unwrap();
        pool.connect().await.unwrap();
        let pid = backend_pid(&pool).await;
        terminate_while_the_loop_is_busy(pid);
        // Still blocked: the connection idles past health_check_after without the loop
        // having seen its socket close.
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(pool.stats().free, 1, "the pool has not noticed yet");
        let after = backend_pid(&pool).await; // the first and only try
        assert_ne!(after, pid);
        let c = pool.stats().counters;
        assert_eq!(c.connections_failed_check, 1, "{c:?}");
        assert_eq!(c.connections_lost, 0, "found by the check, not lost: {c:?}");
        assert_eq!(c.connections_opened, 2, "{c:?}");
        assert_eq!(c.requests_served, 2, "{c:?}");
        pool.close().unwrap();
    });
}

#[test]
fn without_the_health_check_the_same_stale_connection_fails_the_request() {
    // The control of the test above: it proves the stale connection is really handed out.
    run_for(30, async {
        let pool = Pool::builder(&dsn())
            .size(1)
            .retry(RetryPolicy::Never)
            .health_check_after(None)
            .build()
            .unwrap();
        pool.connect().await.unwrap();
        let pid = backend_pid(&pool).await;
        terminate_while_the_loop_is_busy(pid);
        std::thread::sleep(Duration::from_millis(300));
        let err = pool.execute("SELECT 1", ()).await.unwrap_err();
        assert!(err.is_connection_lost(), "{err:?}");
        assert_eq!(pool.stats().counters.connections_failed_check, 0);
        pool.close().unwrap();
    });
}

#[test]
fn a_connection_used_recently_is_not_checked() {
    run_for(30, async {
        let pool = Pool::builder(&dsn())
            .size(1)
            .health_check_after(Duration::from_secs(30))
            .retry(RetryPolicy::Never)
            .build()
            .unwrap();
        pool.connect().await.unwrap();
        let pid = backend_pid(&pool).await;
        terminate_while_the_loop_is_busy(pid);
        std::thread::sleep(Duration::from_millis(300));
        // Idle for less than 30 s: handed out unchecked, and so the request meets the
        // dead connection (RetryPolicy::Never).
        assert!(pool.execute("SELECT 1", ()).await.is_err());
        assert_eq!(pool.stats().counters.connections_failed_check, 0);
        pool.close().unwrap();
    });
}

// ----------------------------------------------------------------------------------------
// on_connect

#[test]
fn on_connect_runs_once_per_connection_after_setsession_and_again_after_a_reconnect() {
    run_for(30, async {
        let app = unique("onconn");
        let seen: Rc<RefCell<Vec<(i32, String)>>> = Rc::default();
        let hook_seen = seen.clone();
        let pool = Pool::builder(&dsn())
            .size(3)
            .setsession([format!("SET application_name = '{app}'")])
            .on_connect(move |conn| {
                let seen = hook_seen.clone();
                async move {
                    // What setsession did is already there.
                    let mut c = conn.execute("SHOW application_name", ()).await?;
                    let name: String = c.fetchone().unwrap().get(0);
                    seen.borrow_mut().push((conn.backend_pid().unwrap(), name));
                    conn.execute("SET statement_timeout = '1234ms'", ()).await?;
                    Ok(())
                }
            })
            .build()
            .unwrap();
        pool.connect().await.unwrap();
        {
            let seen = seen.borrow();
            assert_eq!(seen.len(), 3, "{seen:?}");
            assert!(seen.iter().all(|(_, name)| *name == app), "{seen:?}");
            let distinct: HashSet<i32> = seen.iter().map(|(p, _)| *p).collect();
            assert_eq!(distinct, pids(&pool));
        }
        // What the hook set is what the pool's users get.
        let mut c = pool.execute("SHOW statement_timeout", ()).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, String>(0), "1234ms");
        // A reconnect is a new session: the hook runs for it, once.
        let victim = *pids(&pool).iter().next().unwrap();
        terminate(victim).await;
        wait_until(10, "the lost connection replaced", || {
            pool.stats().free == 3 && !pids(&pool).contains(&victim)
        })
        .await;
        assert_eq!(seen.borrow().len(), 4);
        assert_eq!(pool.stats().counters.connections_opened, 4);
        pool.close().unwrap();
    });
}

#[test]
fn a_failing_on_connect_fails_that_connection_and_is_reported() {
    run_for(30, async {
        let app = unique("onconnfail");
        let calls = Rc::new(Cell::new(0));
        let c2 = calls.clone();
        let pool = Pool::builder(&format!("{} application_name={app}", dsn()))
            .size(2)
            .reconnect_interval(Duration::from_millis(100))
            .on_connect(move |_conn| {
                let n = c2.get() + 1;
                c2.set(n);
                async move {
                    if n == 1 {
                        Err(Error::new(ErrorKind::Usage, "the first on_connect refuses"))
                    } else {
                        Ok(())
                    }
                }
            })
            .build()
            .unwrap();
        let err = pool.connect().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PartiallyConnected);
        assert_eq!(
            err.to_string(),
            "partially connected: 1 of 2 connections could be made: the first on_connect refuses"
        );
        let last = pool.last_connect_error().expect("reported");
        assert_eq!(last.kind(), ErrorKind::Usage);
        assert!(last.to_string().contains("the first on_connect refuses"));
        let c = pool.stats().counters;
        assert_eq!((c.connections_opened, c.connections_failed), (1, 1));
        assert_eq!(c.connections_lost, 0, "closed by the pool: {c:?}");
        // The failed one is reconnected in the background, and its hook then passes.
        wait_until(10, "both connections up", || pool.stats().free == 2).await;
        assert_eq!(calls.get(), 3);
        // The connection whose hook failed was closed on the server too.
        let mut cur = pool
            .execute(
                "SELECT count(*)::int FROM pg_stat_activity WHERE application_name = %s",
                (app.as_str(),),
            )
            .await
            .unwrap();
        assert_eq!(cur.fetchone().unwrap().get::<_, i32>(0), 2);
        pool.close().unwrap();
    });
}

// ----------------------------------------------------------------------------------------
// reset

#[test]
fn reset_discard_gives_the_next_user_a_fresh_session_and_prepared_statements_still_work() {
    run_for(30, async {
        let pool = Pool::builder(&dsn())
            .size(1)
            .reset(Reset::Discard)
            .build()
            .unwrap();
        pool.connect().await.unwrap();
        let mut c = pool.query("SELECT $1::int + 1", (1,)).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 2);
        let conn = pool.getconn(false).await.unwrap();
        let pid = conn.backend_pid();
        conn.execute("SET application_name = 'dirty'", ())
            .await
            .unwrap();
        conn.execute("CREATE TEMP TABLE leftover (x int)", ())
            .await
            .unwrap();
        conn.execute("BEGIN", ()).await.unwrap();
        pool.putconn(conn).unwrap();
        let conn = pool.getconn(false).await.unwrap();
        assert_eq!(conn.backend_pid(), pid, "the same session, reset");
        assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
        let mut c = conn
            .execute(
                "SELECT current_setting('application_name'), to_regclass('pg_temp.leftover') IS NULL",
                (),
            )
            .await
            .unwrap();
        let row = c.fetchone().unwrap();
        assert_ne!(row.get::<_, String>(0), "dirty");
        assert!(row.get::<_, bool>(1));
        pool.putconn(conn).unwrap();
        // DISCARD ALL dropped the cached statement; it is prepared again, transparently.
        let mut c = pool.query("SELECT $1::int + 1", (2,)).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 3);
        assert_eq!(pool.stats().counters.connections_reset_failed, 0);
        pool.close().unwrap();
    });
}

#[test]
fn reset_clean_resets_settings_and_keeps_prepared_statements() {
    run_for(30, async {
        let pool = Pool::builder(&dsn())
            .size(1)
            .reset(Reset::Clean)
            .build()
            .unwrap();
        pool.connect().await.unwrap();
        let conn = pool.getconn(false).await.unwrap();
        let stmt = conn.prepare("SELECT $1::int * 10").await.unwrap();
        conn.execute("SET work_mem = '7MB'", ()).await.unwrap();
        pool.putconn(conn).unwrap();
        let conn = pool.getconn(false).await.unwrap();
        let mut c = conn.execute("SHOW work_mem", ()).await.unwrap();
        assert_ne!(c.fetchone().unwrap().get::<_, String>(0), "7MB");
        let mut c = conn
            .execute(
                "SELECT count(*)::int FROM pg_prepared_statements WHERE name = %s",
                (stmt.name(),),
            )
            .await
            .unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 1, "still prepared");
        pool.putconn(conn).unwrap();
        pool.close().unwrap();
    });
}

#[test]
fn a_custom_reset_runs_on_every_return_and_a_failing_one_replaces_the_connection() {
    run_for(30, async {
        let calls = Rc::new(Cell::new(0u32));
        let fail = Rc::new(Cell::new(false));
        let (c2, f2) = (calls.clone(), fail.clone());
        let pool = Pool::builder(&dsn())
            .size(1)
            .reset(Reset::custom(move |conn| {
                c2.set(c2.get() + 1);
                let fail = f2.get();
                async move {
                    conn.execute("RESET ALL", ()).await?;
                    if fail {
                        return Err(Error::new(ErrorKind::Usage, "this reset fails"));
                    }
                    Ok(())
                }
            }))
            .build()
            .unwrap();
        pool.connect().await.unwrap();
        let pid = backend_pid(&pool).await;
        for _ in 0..3 {
            pool.execute("SELECT 1", ()).await.unwrap();
        }
        let conn = pool.getconn(false).await.unwrap();
        pool.putconn(conn).unwrap();
        wait_until(5, "the resets done", || pool.stats().free == 1).await;
        assert_eq!(calls.get(), 5, "4 pool operations and 1 putconn");
        fail.set(true);
        pool.execute("SELECT 1", ()).await.unwrap();
        wait_until(5, "the connection replaced", || {
            pool.stats().free == 1 && pool.stats().pending == 0
        })
        .await;
        fail.set(false);
        assert_ne!(backend_pid(&pool).await, pid);
        let c = pool.stats().counters;
        assert_eq!(c.connections_reset_failed, 1, "{c:?}");
        assert_eq!(c.connections_opened, 2, "{c:?}");
        pool.close().unwrap();
    });
}

#[test]
fn putconn_while_the_pool_resets_that_connection_is_a_usage_error() {
    run_for(30, async {
        let pool = Pool::builder(&dsn())
            .size(1)
            .reset(Reset::Discard)
            .build()
            .unwrap();
        pool.connect().await.unwrap();
        let conn = pool.getconn(false).await.unwrap();
        pool.putconn(conn.clone()).unwrap();
        // Its DISCARD ALL is in flight: busy, but not the caller's any more.
        assert_eq!(pool.putconn(conn).unwrap_err().kind(), ErrorKind::Usage);
        pool.execute("SELECT 1", ()).await.unwrap();
        pool.close().unwrap();
    });
}

// ----------------------------------------------------------------------------------------
// password

/// `dsn` without its password.
fn without_password(dsn: &str) -> String {
    dsn.split_whitespace()
        .filter(|w| !w.starts_with("password="))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_password_callback_is_asked_per_connection_and_a_changed_password_works_for_new_ones() {
    // A private server: the test changes a role's password.
    let server = TestServer::start().expect("a private server");
    let info = server.info().clone();
    let scram = without_password(info.dsn_scram.as_ref().expect("a SCRAM user"));
    run_for(60, async move {
        let password = Rc::new(RefCell::new(String::from("scrampass")));
        let asked = Rc::new(Cell::new(0u32));
        let (p2, a2) = (password.clone(), asked.clone());
        let pool = Pool::builder(&scram)
            .size(2)
            .reconnect_interval(Duration::from_secs(60))
            .password(move || {
                a2.set(a2.get() + 1);
                let p = p2.borrow().clone();
                async move { Ok(p) }
            })
            .build()
            .unwrap();
        pool.connect().await.unwrap();
        assert_eq!(asked.get(), 2);
        // Rotate: the server first, then the callback's answer.
        info.psql("ALTER ROLE momoko_scram PASSWORD 'rotated'")
            .unwrap();
        *password.borrow_mut() = "rotated".to_owned();
        // Connections that are up stay up; new ones log in with the new password.
        pool.execute("SELECT 1", ()).await.unwrap();
        pool.drain().unwrap();
        wait_until(10, "both replaced", || {
            let s = pool.stats();
            s.free == 2 && s.pending == 0
        })
        .await;
        assert_eq!(asked.get(), 4);
        let mut c = pool.execute("SELECT current_user::text", ()).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, String>(0), "momoko_scram");
        let c = pool.stats().counters;
        assert_eq!(
            (c.connections_opened, c.connections_failed),
            (4, 0),
            "{c:?}"
        );
        // A wrong answer fails those connects with the server's error.
        *password.borrow_mut() = "wrong".to_owned();
        pool.resize(3, None).unwrap();
        wait_until(10, "the third connect done", || pool.stats().pending == 0).await;
        assert_eq!(asked.get(), 5);
        let e = pool.last_connect_error().expect("the failed login");
        assert_eq!(e.code(), Some("28P01"), "{e:?}");
        assert_eq!(pool.stats().counters.connections_failed, 1);
        pool.close().unwrap();
    });
    drop(server);
}

#[test]
fn an_error_from_the_password_callback_fails_the_connect_cleanly() {
    run_for(30, async {
        let pool = Pool::builder(&dsn())
            .size(2)
            .password(|| async { Err(Error::new(ErrorKind::Usage, "no token today")) })
            .build()
            .unwrap();
        let err = pool.connect().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DatabaseNotAvailable);
        assert_eq!(
            err.to_string(),
            "database not available: 0 of 2 connections could be made: no token today"
        );
        let last = pool.last_connect_error().unwrap();
        assert!(last.to_string().contains("no token today"), "{last}");
        assert_eq!(pool.stats().dead, 2);
        assert_eq!(pool.stats().counters.connections_failed, 2);
        // Every connection dead: a request fails at once, as Momoko's pool does.
        let e = pool.execute("SELECT 1", ()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DatabaseNotAvailable);
        pool.close().unwrap();
    });
}

// ----------------------------------------------------------------------------------------
// resize and drain

#[test]
fn resize_grows_at_once_and_shrinks_as_connections_free_up_under_load() {
    run_for(60, async {
        let pool = Pool::builder(&dsn()).size(2).build().unwrap();
        pool.connect().await.unwrap();
        // Load all along: eight queries at a time.
        let load = |pool: &Pool| -> Vec<_> {
            (0..8)
                .map(|i: i32| pool.execute("SELECT %s, pg_sleep(0.05)", (i,)))
                .collect()
        };
        let running = load(&pool);
        pool.resize(4, None).unwrap();
        let s = pool.stats();
        assert_eq!((s.size, s.max_size, s.total()), (4, 4, 4), "{s:?}");
        for f in running {
            f.await.unwrap();
        }
        wait_until(10, "four connections up", || pool.stats().free == 4).await;
        // Shrink while every connection is held: nothing is closed under its holder.
        let held: Vec<_> = {
            let fs: Vec<_> = (0..4).map(|_| pool.getconn(false)).collect();
            let mut v = Vec::new();
            for f in fs {
                v.push(f.await.unwrap());
            }
            v
        };
        let queued = load(&pool);
        pool.resize(1, None).unwrap();
        assert_eq!(pool.stats().total(), 4);
        for (i, conn) in held.into_iter().enumerate() {
            let mut c = conn.execute("SELECT %s", (i as i32,)).await.unwrap();
            assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), i as i32);
            pool.putconn(conn).unwrap();
        }
        for f in queued {
            f.await.unwrap();
        }
        let s = pool.stats();
        assert_eq!(s.total(), 1, "{s:?}");
        assert_eq!(s.counters.connections_shrunk, 3);
        // And up again, with max_size above size: it stretches as Momoko's pool does.
        pool.resize(2, Some(3)).unwrap();
        let fs = load(&pool);
        for f in fs {
            f.await.unwrap();
        }
        assert_eq!(pool.stats().max_size, 3);
        assert!(pool.stats().total() >= 2 && pool.stats().total() <= 3);
        assert_eq!(pool.resize(0, None).unwrap_err().kind(), ErrorKind::Usage);
        assert_eq!(
            pool.resize(3, Some(2)).unwrap_err().kind(),
            ErrorKind::Usage
        );
        pool.close().unwrap();
        assert_eq!(pool.resize(1, None).unwrap_err().kind(), ErrorKind::Pool);
    });
}

#[test]
fn drain_replaces_idle_connections_now_and_busy_ones_when_they_come_back() {
    run_for(30, async {
        let pool = Pool::builder(&dsn()).size(2).build().unwrap();
        pool.connect().await.unwrap();
        let held = pool.getconn(false).await.unwrap();
        let busy_pid = held.backend_pid().unwrap();
        let idle_pid = *pids(&pool).iter().find(|p| **p != busy_pid).unwrap();
        pool.drain().unwrap();
        assert_eq!(pool.stats().counters.connections_drained, 1);
        wait_until(10, "the idle one replaced", || pool.stats().free == 1).await;
        assert!(!pids(&pool).contains(&idle_pid));
        // The held one is untouched until it comes back.
        let mut c = held.execute("SELECT pg_backend_pid()", ()).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), busy_pid);
        pool.putconn(held).unwrap();
        wait_until(10, "the busy one replaced", || {
            let s = pool.stats();
            s.free == 2 && s.pending == 0
        })
        .await;
        let now = pids(&pool);
        assert!(
            !now.contains(&busy_pid) && !now.contains(&idle_pid),
            "{now:?}"
        );
        let c = pool.stats().counters;
        assert_eq!(
            (c.connections_drained, c.connections_opened),
            (2, 4),
            "{c:?}"
        );
        pool.close().unwrap();
    });
}

// ----------------------------------------------------------------------------------------
// counters and leak warnings

/// Collects the warnings the pool logs about leaked connections.
struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record) {
        if r.level() <= log::Level::Warn {
            self.0.lock().unwrap().push(r.args().to_string());
        }
    }
    fn flush(&self) {}
}

fn captured() -> &'static Capture {
    static CAPTURE: std::sync::OnceLock<&'static Capture> = std::sync::OnceLock::new();
    CAPTURE.get_or_init(|| {
        let c: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        log::set_logger(c).expect("the only logger of this test binary");
        log::set_max_level(log::LevelFilter::Warn);
        c
    })
}

#[test]
fn counters_have_exact_values_in_a_scripted_run() {
    let log = captured();
    run_for(60, async {
        let pool = Pool::builder(&dsn())
            .size(1)
            .max_waiting(1)
            .acquire_timeout(Duration::from_millis(300))
            .leak_warning(Duration::from_millis(100))
            .health_check_after(None)
            .reconnect_interval(Duration::from_secs(30))
            .build()
            .unwrap();
        pool.connect().await.unwrap();
        pool.execute("SELECT 1", ()).await.unwrap();
        pool.execute("SELECT 2", ()).await.unwrap();
        let held = pool.getconn(false).await.unwrap();
        let pid = held.backend_pid().unwrap();
        let waits = pool.execute("SELECT 3", ()); // queued behind `held`
        let refused = pool.execute("SELECT 4", ()).await.unwrap_err(); // max_waiting 1
        assert_eq!(refused.kind(), ErrorKind::Pool);
        assert_eq!(waits.await.unwrap_err().kind(), ErrorKind::Timeout);
        // Held well past two leak thresholds: warned once for this hold.
        sleep(Duration::from_millis(300)).await;
        pool.putconn(held).unwrap();
        let warnings: Vec<String> = log
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.contains(&format!("backend pid {pid})")))
            .cloned()
            .collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("has not been given back"),
            "{warnings:?}"
        );
        // The server takes the idle connection away; the pool reconnects on its own.
        terminate(pid).await;
        wait_until(10, "reconnected", || {
            pool.stats().free == 1 && !pids(&pool).contains(&pid)
        })
        .await;
        pool.execute("SELECT 5", ()).await.unwrap();
        let stats = pool.take_stats();
        let c = stats.counters;
        assert!(c.requests_wait_time >= Duration::from_millis(250), "{c:?}");
        assert!(c.requests_wait_time < Duration::from_secs(10), "{c:?}");
        // From getconn to putconn: at least the wait of the timed-out request and the sleep.
        assert!(c.usage_time >= Duration::from_millis(500), "{c:?}");
        assert!(c.usage_time < Duration::from_secs(20), "{c:?}");
        assert_eq!(
            c,
            PoolCounters {
                requests_served: 4,
                requests_waited: 1,
                requests_wait_time: c.requests_wait_time,
                requests_timed_out: 1,
                requests_refused: 1,
                requests_unavailable: 0,
                connections_opened: 2,
                connections_failed: 0,
                connections_lost: 1,
                connections_expired: 0,
                connections_shrunk: 0,
                connections_failed_check: 0,
                connections_drained: 0,
                connections_reset_failed: 0,
                usage_time: c.usage_time,
                leak_warnings: 1,
            }
        );
        // take_stats started the counters again.
        assert_eq!(pool.stats().counters, PoolCounters::default());
        // Now the server becomes unreachable for the pool.
        let (proxy, relayed) = relay();
        pool.set_dsn(&relayed);
        pool.drain().unwrap();
        wait_until(10, "the relayed connection up", || {
            pool.stats().free == 1 && pool.stats().pending == 0
        })
        .await;
        proxy.stop();
        // Lost at once (the relay closed it), reconnected at once, refused: dead.
        wait_until(10, "the connection dead", || pool.stats().dead == 1).await;
        // A request finds every connection dead: a reconnect on demand, refused again, and
        // the request fails; a second one right after is refused at once (too soon).
        let e = pool.execute("SELECT 6", ()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DatabaseNotAvailable);
        let e = pool.execute("SELECT 7", ()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DatabaseNotAvailable);
        let c = pool.stats().counters;
        assert_eq!(
            c,
            PoolCounters {
                requests_served: 0,
                requests_waited: 1,
                requests_wait_time: c.requests_wait_time,
                requests_unavailable: 2,
                connections_opened: 1,
                connections_failed: 2,
                connections_lost: 1,
                connections_drained: 1,
                ..PoolCounters::default()
            }
        );
        pool.close().unwrap();
        proxy.shutdown();
    });
}

// ----------------------------------------------------------------------------------------
// wait_for_reconnect

#[test]
fn by_default_a_request_made_while_every_connection_is_dead_fails_at_once() {
    run_for(30, async {
        let (proxy, relayed) = relay();
        let pool = Pool::builder(&relayed).size(2).build().unwrap();
        pool.connect().await.unwrap();
        proxy.stop();
        wait_until(10, "every connection dead", || pool.stats().dead == 2).await;
        let e = pool.execute("SELECT 1", ()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DatabaseNotAvailable);
        pool.close().unwrap();
        proxy.shutdown();
    });
}

#[test]
fn with_wait_for_reconnect_requests_wait_for_the_server_to_come_back() {
    run_for(30, async {
        let (proxy, relayed) = relay();
        // One connection: the order of the answers is the order of the hand-outs.
        let pool = Pool::builder(&relayed)
            .size(1)
            .wait_for_reconnect(true)
            .acquire_timeout(Duration::from_secs(10))
            .reconnect_interval(Duration::from_millis(100))
            .build()
            .unwrap();
        pool.connect().await.unwrap();
        proxy.stop();
        wait_until(10, "every connection dead", || pool.stats().dead == 1).await;
        let fs: Vec<_> = (0..5i32).map(|i| pool.execute("SELECT %s", (i,))).collect();
        let order = Rc::new(RefCell::new(Vec::new()));
        let lp = IoLoop::current();
        let tasks: Vec<_> = fs
            .into_iter()
            .enumerate()
            .map(|(i, f)| {
                let order = order.clone();
                lp.spawn(async move {
                    let mut c = f.await.unwrap();
                    assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), i as i32);
                    order.borrow_mut().push(i);
                })
            })
            .collect();
        sleep(Duration::from_millis(400)).await;
        assert_eq!(pool.stats().waiting, 5, "{pool:?}");
        assert!(order.borrow().is_empty());
        proxy.start().unwrap();
        for t in tasks {
            t.await;
        }
        // FIFO, as every wait in the pool.
        assert_eq!(*order.borrow(), vec![0, 1, 2, 3, 4]);
        let c = pool.stats().counters;
        assert_eq!((c.requests_waited, c.requests_unavailable), (5, 0), "{c:?}");
        pool.close().unwrap();
        proxy.shutdown();
    });
}

#[test]
fn with_wait_for_reconnect_a_request_times_out_and_max_waiting_still_bounds_the_queue() {
    run_for(30, async {
        let (proxy, relayed) = relay();
        let pool = Pool::builder(&relayed)
            .size(1)
            .wait_for_reconnect(true)
            .acquire_timeout(Duration::from_millis(500))
            .max_waiting(2)
            .reconnect_interval(Duration::from_millis(100))
            .build()
            .unwrap();
        pool.connect().await.unwrap();
        proxy.stop();
        wait_until(10, "the connection dead", || pool.stats().dead == 1).await;
        let a = pool.execute("SELECT 1", ());
        let b = pool.getconn(true);
        let c = pool.execute("SELECT 3", ()).await.unwrap_err();
        assert_eq!(c.kind(), ErrorKind::Pool, "refused: {c:?}");
        assert_eq!(a.await.unwrap_err().kind(), ErrorKind::Timeout);
        assert_eq!(b.await.unwrap_err().kind(), ErrorKind::Timeout);
        let s = pool.stats().counters;
        assert_eq!(
            (
                s.requests_timed_out,
                s.requests_refused,
                s.requests_unavailable
            ),
            (2, 1, 0),
            "{s:?}"
        );
        // Back up: served again.
        proxy.start().unwrap();
        pool.execute("SELECT 1", ()).await.unwrap();
        pool.close().unwrap();
        proxy.shutdown();
    });
}

#[test]
fn with_wait_for_reconnect_an_operation_whose_connection_dies_unsent_waits_for_another() {
    run_for(30, async {
        let (proxy, relayed) = relay();
        let pool = Pool::builder(&relayed)
            .size(1)
            .wait_for_reconnect(true)
            .health_check_after(None)
            .acquire_timeout(Duration::from_secs(10))
            .reconnect_interval(Duration::from_millis(100))
            .build()
            .unwrap();
        pool.connect().await.unwrap();
        // The connection dies while the loop is blocked: the request meets a dead
        // connection, provably before anything was sent, while the server is still away.
        proxy.stop();
        std::thread::sleep(Duration::from_millis(200));
        let f = pool.execute("SELECT 42", ());
        let restarter = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(700));
            proxy.start().unwrap();
            proxy
        });
        let mut c = f.await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 42);
        let c = pool.stats().counters;
        assert_eq!(c.requests_served, 1, "one request, served once: {c:?}");
        pool.close().unwrap();
        restarter.join().unwrap().shutdown();
    });
}

#[test]
fn with_wait_for_reconnect_every_transaction_under_server_restarts_succeeds_or_times_out() {
    let server = Arc::new(TestServer::start().expect("a private server"));
    let dsn = server.info().dsn.clone();
    let restarts_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let restarter = {
        let server = server.clone();
        let done = restarts_done.clone();
        std::thread::spawn(move || {
            for _ in 0..3 {
                std::thread::sleep(Duration::from_millis(700));
                server.restart(StopMode::Fast).expect("restart");
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let (ok, timed_out) = run_for(180, async move {
        let setup = momoko::connect(&dsn).await.unwrap();
        setup
            .execute(
                "CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL);
                 INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 100) g;
                 CREATE TABLE history (id int, delta int)",
                (),
            )
            .await
            .unwrap();
        setup.close();
        let pool = Pool::builder(&dsn)
            .size(4)
            .wait_for_reconnect(true)
            .acquire_timeout(Duration::from_secs(10))
            .reconnect_interval(Duration::from_millis(100))
            .build()
            .unwrap();
        pool.connect().await.unwrap();
        let (mut ok, mut timed_out) = (0u32, 0u32);
        let start = Instant::now();
        // TPC-B-like transactions, 40 at a time, until the restarts are over.
        while !restarts_done.load(std::sync::atomic::Ordering::SeqCst)
            || start.elapsed() < Duration::from_secs(2)
        {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "the restarts took too long"
            );
            let fs: Vec<_> = (0..40i32)
                .map(|i| {
                    let id = i % 100 + 1;
                    pool.transaction(vec![
                        momoko::Statement::from((
                            "UPDATE accounts SET balance = balance + %s WHERE id = %s",
                            (1, id),
                        )),
                        momoko::Statement::from((
                            "SELECT balance FROM accounts WHERE id = %s",
                            (id,),
                        )),
                        momoko::Statement::from(("INSERT INTO history VALUES (%s, %s)", (id, 1))),
                    ])
                })
                .collect();
            for f in fs {
                match f.await {
                    Ok(cursors) => {
                        assert_eq!(cursors.len(), 3);
                        ok += 1;
                    }
                    Err(e) if e.kind() == ErrorKind::Timeout => timed_out += 1,
                    Err(e) => panic!("neither success nor timeout: {e:?}"),
                }
            }
        }
        // Every acknowledged transaction is there, once.
        let mut c = pool
            .execute("SELECT count(*)::int FROM history", ())
            .await
            .unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), ok as i32);
        let c = pool.stats().counters;
        assert_eq!(c.requests_unavailable, 0, "{c:?}");
        // The restarts really took the connections away, each time.
        assert!(c.connections_lost >= 3, "{c:?}");
        pool.close().unwrap();
        (ok, timed_out)
    });
    restarter.join().unwrap();
    eprintln!("under restarts: {ok} transactions succeeded, {timed_out} timed out");
    assert!(ok > 0);
}
