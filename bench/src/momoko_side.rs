//! momoko's side of every workload: one fresh `IoLoop` per run, connections made before the
//! clock starts, and the calls a Momoko user would write (`execute`, `execute_prepared`,
//! `transaction`, `batch`, `Pool::execute`, `copy_in`).

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::{join_all, try_join_all};
use momoko::ioloop::IoLoop;
use momoko::{Connection, Cursor, Error, Pool};

use crate::env::Env;
use crate::measure::{rss_bytes, Meter, Sample};
use crate::workloads::{Proto, IN_FLIGHT, MIXED_SQL, POOL_SIZE};

type Res<T> = Result<T, Error>;

/// Runs `body` on a fresh loop with a connection to `dsn`; `body` starts the meter itself,
/// after its own setup.
fn with_conn<F, Fut>(dsn: &str, body: F) -> Result<Sample, String>
where
    F: FnOnce(Connection) -> Fut + 'static,
    Fut: std::future::Future<Output = Res<Sample>> + 'static,
{
    let dsn = dsn.to_owned();
    IoLoop::new()
        .run_sync(async move {
            let conn = momoko::connect(&dsn).await?;
            let sample = body(conn.clone()).await;
            conn.close();
            sample
        })
        .map_err(|e| e.to_string())
}

fn first_int(mut c: Cursor) -> i64 {
    c.fetchone().map_or(0, |r| r.get::<_, i64>(0usize))
}

/// One `SELECT 1` the way `proto` says: `execute` (simple protocol, parameters rendered on
/// the client) or `execute_prepared` (Bind/Execute/Sync on a statement prepared once).
async fn select1(conn: &Connection, st: Option<&momoko::Prepared>) -> Res<i64> {
    let c = match st {
        None => conn.execute("SELECT 1", ()).await?,
        Some(st) => conn.execute_prepared(st, ()).await?,
    };
    Ok(first_int(c))
}

async fn prepared_if(conn: &Connection, proto: Proto, sql: &str) -> Res<Option<momoko::Prepared>> {
    Ok(match proto {
        Proto::Simple => None,
        Proto::Prepared => Some(conn.prepare(sql).await?),
    })
}

/// W1: `n` round trips one after the other.
pub fn w1(env: &Env, proto: Proto) -> Result<Sample, String> {
    let n = env.sizes.w1;
    with_conn(&env.dsn, move |conn| async move {
        let st = prepared_if(&conn, proto, "SELECT 1").await?;
        let m = Meter::start();
        for _ in 0..n {
            select1(&conn, st.as_ref()).await?;
        }
        Ok(m.finish(n))
    })
}

/// W2: `IN_FLIGHT` callers on one connection, each with its own Sync; momoko pipelines them.
pub fn w2(env: &Env, proto: Proto) -> Result<Sample, String> {
    let n = env.sizes.w2;
    with_conn(&env.dsn, move |conn| async move {
        let st = prepared_if(&conn, proto, "SELECT 1").await?;
        let per = n / IN_FLIGHT;
        let m = Meter::start();
        try_join_all((0..IN_FLIGHT).map(|_| async {
            for _ in 0..per {
                select1(&conn, st.as_ref()).await?;
            }
            Res::Ok(())
        }))
        .await?;
        Ok(m.finish(per * IN_FLIGHT))
    })
}

/// How W2b sends its 100 statements.
#[derive(Debug, Clone, Copy)]
pub enum RoundTrip {
    /// `transaction()`: BEGIN, the statements and COMMIT in one write.
    Transaction,
    /// `batch()`: the statements with one Sync.
    Batch,
    /// BEGIN, each statement and COMMIT awaited one after the other (the baseline).
    OneAtATime,
}

/// W2b: `reps` groups of 100 `SELECT 1`; ops are the SELECTs.
pub fn w2b(env: &Env, how: RoundTrip, reps: u64) -> Result<Sample, String> {
    with_conn(&env.dsn, move |conn| async move {
        let stmts = vec!["SELECT 1"; 100];
        let m = Meter::start();
        for _ in 0..reps {
            match how {
                RoundTrip::Transaction => {
                    conn.transaction(stmts.clone()).await?;
                }
                RoundTrip::Batch => {
                    conn.batch(stmts.clone()).await?;
                }
                RoundTrip::OneAtATime => {
                    conn.execute("BEGIN", ()).await?;
                    for s in &stmts {
                        first_int(conn.execute(s, ()).await?);
                    }
                    conn.execute("COMMIT", ()).await?;
                }
            }
        }
        Ok(m.finish(reps * 100))
    })
}

/// W3: a pool of `POOL_SIZE`, `IN_FLIGHT` concurrent callers of `pool.execute` (simple) or
/// `pool.query` (prepared, through the statement cache). `depth` > 1 lets the pool pipeline
/// on busy connections.
pub fn w3(env: &Env, proto: Proto, depth: usize) -> Result<Sample, String> {
    let n = env.sizes.w3;
    let dsn = env.dsn.clone();
    IoLoop::new()
        .run_sync(async move {
            let pool = Pool::builder(&dsn)
                .size(POOL_SIZE)
                .pipeline_depth(depth)
                .build()?
                .connect()
                .await?;
            // Fill every connection's statement cache before the clock starts.
            try_join_all((0..POOL_SIZE * 2).map(|_| pool.query("SELECT 1", ()))).await?;
            let per = n / IN_FLIGHT;
            let m = Meter::start();
            try_join_all((0..IN_FLIGHT).map(|_| async {
                for _ in 0..per {
                    let c = match proto {
                        Proto::Simple => pool.execute("SELECT 1", ()).await?,
                        Proto::Prepared => pool.query("SELECT 1", ()).await?,
                    };
                    first_int(c);
                }
                Res::Ok(())
            }))
            .await?;
            let s = m.finish(per * IN_FLIGHT);
            let _ = pool.close();
            Ok(s)
        })
        .map_err(|e: Error| e.to_string())
}

/// W4: one big result, every value decoded. `proto` Simple is `execute` (text results),
/// Prepared is `execute_prepared` (binary results).
pub fn w4_series(env: &Env, proto: Proto) -> Result<Sample, String> {
    let sql = format!(
        "SELECT i FROM generate_series(1, {}) AS i",
        env.sizes.w4_series
    );
    with_conn(&env.dsn, move |conn| async move {
        let st = prepared_if(&conn, proto, &sql).await?;
        let m = Meter::start();
        let cur = match &st {
            None => conn.execute(&sql, ()).await?,
            Some(st) => conn.execute_prepared(st, ()).await?,
        };
        Ok(m.finish(read_series(cur)))
    })
}

/// W4's reading: every value as an integer; the row count.
fn read_series(cur: Cursor) -> u64 {
    let mut rows = 0u64;
    let mut sum = 0i64;
    for row in cur {
        sum += i64::from(row.get::<_, i32>(0usize));
        rows += 1;
    }
    std::hint::black_box(sum);
    rows
}

/// W4 through `query` (the statement cache, binary results), as a new user writes it. The
/// row count is a parameter, so that the statement the clock times is the one cached
/// before it starts (a statement's first run returns text: its columns are not known
/// before its Bind).
pub fn w4_series_query(env: &Env) -> Result<Sample, String> {
    let n = i32::try_from(env.sizes.w4_series).map_err(|e| e.to_string())?;
    with_conn(&env.dsn, move |conn| async move {
        let sql = "SELECT i FROM generate_series(1, $1) AS i";
        // Prepared once (cached) before the clock starts, as the other prepared contenders.
        conn.query(sql, (0i32,)).await?;
        let m = Meter::start();
        let cur = conn.query(sql, (n,)).await?;
        Ok(m.finish(read_series(cur)))
    })
}

/// W3t: `threads` threads, each with its own `IoLoop` and a pool of `conns` connections
/// (momoko's types are `!Send`: the threads share the DSN, not a pool), `conns` callers
/// per thread each running pgbench's select-only transaction one at a time through
/// `pool.query`. The clock runs from when every thread is connected and warm until the
/// last one is done; the CPU is the whole process's.
pub fn w3t(env: &Env, threads: usize, conns: usize) -> Result<Sample, String> {
    use std::sync::{mpsc, Barrier};
    let n = env.sizes.w3 as usize;
    let go = Arc::new(Barrier::new(threads + 1));
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (dsn, go, ready) = (env.dsn.clone(), go.clone(), ready_tx.clone());
            let share = n / threads + usize::from(t < n % threads);
            std::thread::spawn(move || -> Result<u64, String> {
                IoLoop::current()
                    .run_sync(async move {
                        let warm = async {
                            let pool = Pool::builder(&dsn).size(conns).build()?.connect().await?;
                            // Every connection's statement cache filled before the clock.
                            try_join_all(
                                (0..conns * 2).map(|i| pool.query(W3T_SQL, (i as i32 + 1,))),
                            )
                            .await?;
                            Res::Ok(pool)
                        };
                        let pool = match warm.await {
                            Ok(p) => p,
                            Err(e) => {
                                let _ = ready.send(Err(e.to_string()));
                                go.wait();
                                return Err(e);
                            }
                        };
                        let _ = ready.send(Ok(()));
                        go.wait();
                        let done = try_join_all((0..conns).map(|c| {
                            let pool = pool.clone();
                            let per = share / conns + usize::from(c < share % conns);
                            async move {
                                let mut x = (t * 7919 + c * 104729 + 1) as u64;
                                for _ in 0..per {
                                    // xorshift: pgbench's random(1, 100000).
                                    x ^= x << 13;
                                    x ^= x >> 7;
                                    x ^= x << 17;
                                    let aid = (x % W3T_ACCOUNTS) as i32 + 1;
                                    let mut c = pool.query(W3T_SQL, (aid,)).await?;
                                    std::hint::black_box(c.fetchone().map(|r| r.get::<_, i32>(0)));
                                }
                                Res::Ok(per as u64)
                            }
                        }))
                        .await?;
                        let _ = pool.close();
                        Ok(done.iter().sum())
                    })
                    .map_err(|e: Error| e.to_string())
            })
        })
        .collect();
    drop(ready_tx);
    let mut failed = None;
    for _ in 0..threads {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed = Some(e),
            Err(_) => failed = Some("a W3t thread ended before it was ready".into()),
        }
    }
    if let Some(e) = failed {
        // Let the others go (and finish) before giving up.
        go.wait();
        for w in workers {
            let _ = w.join();
        }
        return Err(e);
    }
    let m = Meter::start();
    go.wait();
    let mut ops = 0;
    for w in workers {
        ops += w.join().map_err(|_| "a W3t thread panicked".to_owned())??;
    }
    Ok(m.finish(ops))
}

/// pgbench's select-only transaction, and its accounts at scale 1.
pub const W3T_SQL: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";
const W3T_ACCOUNTS: u64 = 100_000;

/// W4: 10 columns of mixed types, every value decoded into its Rust type.
pub fn w4_mixed(env: &Env, proto: Proto) -> Result<Sample, String> {
    let sql = MIXED_SQL.replace("$N", &env.sizes.w4_mixed.to_string());
    with_conn(&env.dsn, move |conn| async move {
        let st = prepared_if(&conn, proto, &sql).await?;
        let m = Meter::start();
        let cur = match &st {
            None => conn.execute(&sql, ()).await?,
            Some(st) => conn.execute_prepared(st, ()).await?,
        };
        let mut rows = 0u64;
        for row in cur {
            let v = (
                row.get::<_, i16>(0usize),
                row.get::<_, i32>(1usize),
                row.get::<_, i64>(2usize),
                row.get::<_, f32>(3usize),
                row.get::<_, f64>(4usize),
                row.get::<_, bool>(5usize),
                row.get::<_, String>(6usize),
                row.get::<_, String>(7usize),
                row.get::<_, Vec<u8>>(8usize),
                row.get::<_, Option<String>>(9usize),
            );
            std::hint::black_box(v);
            rows += 1;
        }
        Ok(m.finish(rows))
    })
}

/// W5: the multi-row INSERTs one after the other (each ~1,000 rows, sent as they are).
pub fn w5_insert(env: &Env, stmts: Arc<Vec<String>>, rows: u64) -> Result<Sample, String> {
    with_conn(&env.dsn, move |conn| async move {
        conn.execute(crate::workloads::TRUNCATE, ()).await?;
        let m = Meter::start();
        for s in stmts.iter() {
            conn.execute(s, ()).await?;
        }
        Ok(m.finish(rows))
    })
}

/// W5: COPY FROM STDIN of the same rows, in the same chunks every contender sends.
pub fn w5_copy(env: &Env, chunks: Arc<Vec<Bytes>>, rows: u64) -> Result<Sample, String> {
    with_conn(&env.dsn, move |conn| async move {
        conn.execute(crate::workloads::TRUNCATE, ()).await?;
        let m = Meter::start();
        let chunks: Vec<Bytes> = chunks.iter().cloned().collect();
        let n = conn
            .copy_in_chunks(crate::workloads::COPY_SQL, chunks)
            .await?;
        assert_eq!(n, rows, "COPY stored a different number of rows");
        Ok(m.finish(rows))
    })
}

/// W6: `n` connections opened (authenticated, ready for a query) and closed, one at a time.
pub fn w6(dsn: &str, n: u64) -> Result<Sample, String> {
    let dsn = dsn.to_owned();
    IoLoop::new()
        .run_sync(async move {
            let m = Meter::start();
            for _ in 0..n {
                let conn = momoko::connect(&dsn).await?;
                conn.close();
            }
            Ok(m.finish(n))
        })
        .map_err(|e: Error| e.to_string())
}

/// Memory: the resident-set growth of a pool of `n` idle connections, in bytes per
/// connection (ops = connections, so `cpu` is meaningless here; `wall` carries bytes).
pub fn idle_pool(env: &Env) -> Result<u64, String> {
    let n = env.sizes.idle as usize;
    let dsn = env.dsn.clone();
    IoLoop::new()
        .run_sync(async move {
            // One connection first, so one-time setup (the loop, lazy statics, the
            // allocator's first arenas) is not charged to the pool.
            let warm = momoko::connect(&dsn).await?;
            warm.execute("SELECT 1", ()).await?;
            let before = rss_bytes();
            let pool = Rc::new(Pool::builder(&dsn).size(n).build()?.connect().await?);
            // Every connection has answered a query, as a pooled connection in use has.
            join_all((0..n).map(|_| pool.execute("SELECT 1", ()))).await;
            let after = rss_bytes();
            let _ = pool.close();
            warm.close();
            Ok(after.saturating_sub(before) / n as u64)
        })
        .map_err(|e: Error| e.to_string())
}

/// Over TLS: that the connection really is on TLS (`ssl_in_use`), and the protocol version
/// and cipher the server reports for it (`pg_stat_ssl`).
pub fn tls_check(env: &Env) -> Result<String, String> {
    let dsn = env.dsn.clone();
    IoLoop::new()
        .run_sync(async move {
            let conn = momoko::connect(&dsn).await?;
            let in_use = conn.ssl_in_use();
            let mut c = conn.execute(crate::workloads::TLS_STAT_SQL, ()).await?;
            let what = c
                .fetchone()
                .map(|r| r.get::<_, String>(0usize))
                .unwrap_or_default();
            conn.close();
            Ok((in_use, what))
        })
        .map_err(|e: Error| e.to_string())
        .and_then(|(in_use, what)| {
            if in_use {
                Ok(what)
            } else {
                Err(format!("momoko is not on TLS ({what})"))
            }
        })
}

/// The streamed read (issue 26): rows handed over as they are read, none kept. Its slot in
/// the counted table waits for `Connection::stream`.
pub fn w4_stream(env: &Env) -> Result<Sample, String> {
    let n = i32::try_from(env.sizes.w4_series).map_err(|e| e.to_string())?;
    with_conn(&env.dsn, move |conn| async move {
        let sql = "SELECT i FROM generate_series(1, $1) AS i";
        // Cached before the clock starts (the same text, so that the timed run is binary).
        conn.query(sql, (0i32,)).await?;
        let m = Meter::start();
        let sum = std::rc::Rc::new(std::cell::Cell::new(0i64));
        let s = sum.clone();
        let rows = conn
            .stream(sql, (n,), move |row: &momoko::Row| {
                s.set(s.get() + i64::from(row.get::<_, i32>(0usize)))
            })
            .await?;
        std::hint::black_box(sum.get());
        Ok(m.finish(rows))
    })
}
