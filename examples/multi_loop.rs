//! More than one core: one `IoLoop` and one `Pool` per thread. momoko's types are `!Send`
//! (a loop, its connections and their futures live on the thread that made them, which is
//! what lets them run without locks), so what the threads share is the connection string,
//! never a pool. Each thread here runs its own loop with its own pool of `--connections`
//! connections and its share of `--queries` parameterized queries from `--callers`
//! concurrent callers; the main thread waits for them and adds up what they did.
//!
//! ```text
//! cargo run --release --example multi_loop -- --threads 2 --connections 2 --queries 20000
//! ```
//!
//! The server comes from `MOMOKO_DSN`, else `MOMOKO_TEST_DSN`, else libpq's defaults and
//! the `PG*` variables. `make bench` measures the same pattern (W3t) against pgbench with
//! the same thread and connection counts.

use std::time::{Duration, Instant};

use momoko::ioloop::IoLoop;
use momoko::{Error, Pool};

struct Args {
    threads: usize,
    connections: usize,
    callers: usize,
    queries: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let dsn = dsn();
    let started = Instant::now();
    let workers: Vec<_> = (0..args.threads)
        .map(|t| {
            // The thread's share; the first ones take the remainder.
            let share = args.queries / args.threads + usize::from(t < args.queries % args.threads);
            let (dsn, connections, callers) = (dsn.clone(), args.connections, args.callers);
            std::thread::Builder::new()
                .name(format!("momoko-loop-{t}"))
                .spawn(move || run_thread(t, &dsn, connections, callers, share))
        })
        .collect::<Result<_, _>>()?;
    let mut total = 0;
    for w in workers {
        let (t, done, took) = w.join().map_err(|_| "a loop thread panicked")??;
        println!(
            "thread {t}: {done} queries in {:.2} s ({:.0} queries/s)",
            took.as_secs_f64(),
            done as f64 / took.as_secs_f64()
        );
        total += done;
    }
    let took = started.elapsed();
    println!(
        "{} threads x {} connections: {total} queries in {:.2} s ({:.0} queries/s)",
        args.threads,
        args.connections,
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64()
    );
    Ok(())
}

/// One thread's whole life: its loop (this thread's current one), its pool, its queries.
fn run_thread(
    t: usize,
    dsn: &str,
    connections: usize,
    callers: usize,
    queries: usize,
) -> Result<(usize, usize, Duration), Error> {
    let dsn = dsn.to_owned();
    IoLoop::current().run_sync(async move {
        let pool = Pool::builder(&dsn)
            .size(connections)
            .build()?
            .connect()
            .await?;
        let started = Instant::now();
        // `callers` tasks on this loop, each running its share one query at a time: the
        // pool spreads them over its connections.
        let tasks: Vec<_> = (0..callers)
            .map(|c| {
                let pool = pool.clone();
                let n = queries / callers + usize::from(c < queries % callers);
                IoLoop::current().spawn(async move {
                    for i in 0..n {
                        let v = (t * 1_000_000 + c * 10_000 + i) as i64;
                        let mut cur = pool.query("SELECT $1::int8 + 1", (v,)).await?;
                        let got: i64 = cur.fetchone().expect("one row").get(0);
                        assert_eq!(got, v + 1);
                    }
                    Ok::<usize, Error>(n)
                })
            })
            .collect();
        let mut done = 0;
        for task in tasks {
            done += task.await?;
        }
        let took = started.elapsed();
        pool.close()?;
        Ok((t, done, took))
    })
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        threads: 2,
        connections: 2,
        callers: 8,
        queries: 20_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?
            .parse::<usize>()
            .map_err(|e| format!("{flag}: {e}"))?;
        if value == 0 {
            return Err(format!("{flag} must be at least 1"));
        }
        match flag.as_str() {
            "--threads" => a.threads = value,
            "--connections" => a.connections = value,
            "--callers" => a.callers = value,
            "--queries" => a.queries = value,
            _ => {
                return Err(format!(
                    "unknown flag {flag}: --threads N --connections N --callers N --queries N"
                ))
            }
        }
    }
    Ok(a)
}

/// `MOMOKO_DSN`, else `MOMOKO_TEST_DSN` (what `momoko-testpg run` exports), else the empty
/// string: libpq's defaults and `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`...
fn dsn() -> String {
    std::env::var("MOMOKO_DSN")
        .or_else(|_| std::env::var("MOMOKO_TEST_DSN"))
        .unwrap_or_default()
}
