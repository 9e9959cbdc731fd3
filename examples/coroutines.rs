//! The tutorial's work again (a lone connection, three parallel queries, a server-side
//! cursor), written as `async` blocks: the Rust form of Tornado's `gen.coroutine`.
//!
//! `IoLoop::spawn` starts each block as a task on the loop and returns a momoko
//! [`Future`] of its output; the three tasks run at the same time, interleaving at every
//! `.await`. `IoLoop::run_sync` runs the loop until one future is done, so `main` stays a
//! plain function. Every momoko future can be `.await`ed inside such a task.
//!
//! The server comes from `MOMOKO_DSN`, else `MOMOKO_TEST_DSN`, else libpq's defaults and the
//! `PG*` variables. Run it with `cargo run --example coroutines`.

use std::time::Instant;

use momoko::ioloop::{Future, IoLoop};
use momoko::{Connection, Error, Pool};

fn main() -> Result<(), Error> {
    let dsn = dsn();
    match momoko::Config::parse(&dsn) {
        Ok(c) => println!("server: {}", c.summary()),
        Err(e) => println!("server: unusable DSN: {e}"),
    }
    let ioloop = IoLoop::current();

    // run_sync spawns the block, runs the loop until it is done, and returns its output.
    ioloop.run_sync(async move {
        let pool = Pool::builder(&dsn).size(1).max_size(4).build()?;
        pool.connect().await?;
        println!("[main] pool connected: {pool:?}");

        // Three coroutines at once. spawn() only schedules: none has run yet.
        let ioloop = IoLoop::current();
        let started = Instant::now();
        let tasks: [Future<Result<(), Error>>; 3] = [
            ioloop.spawn(trivial(dsn.clone())),
            ioloop.spawn(parallel(pool.clone())),
            ioloop.spawn(server_side_cursor(pool.clone())),
        ];
        // Awaiting in order is fine: the tasks run meanwhile, each at its own pace.
        for task in tasks {
            task.await?;
        }
        println!(
            "[main] all three coroutines done in {:.2} s: {pool:?}",
            started.elapsed().as_secs_f64()
        );
        pool.close()?;
        println!("[main] pool closed");
        Ok(())
    })
}

/// The trivial example: `momoko::connect`, one query, close.
async fn trivial(dsn: String) -> Result<(), Error> {
    let conn: Connection = momoko::connect(&dsn).await?;
    println!("[trivial] connected (backend pid {:?})", conn.backend_pid());
    let mut cursor = conn.execute("SELECT 1", ()).await?;
    let one: i32 = cursor.fetchone().expect("one row").get(0);
    println!("[trivial] SELECT 1 -> {one}");
    conn.close();
    Ok(())
}

/// Three queries in parallel: the futures are all taken first, then awaited.
async fn parallel(pool: Pool) -> Result<(), Error> {
    let f1 = pool.execute("SELECT 1, pg_sleep(0.2)", ());
    let f2 = pool.execute("SELECT 2, pg_sleep(0.2)", ());
    let f3 = pool.execute("SELECT 3, pg_sleep(0.2)", ());
    println!("[parallel] three queries queued");
    let (mut c1, mut c2, mut c3) = (f1.await?, f2.await?, f3.await?);
    for (name, cursor) in [("Q1", &mut c1), ("Q2", &mut c2), ("Q3", &mut c3)] {
        let values: Vec<i32> = cursor.fetchall().iter().map(|r| r.get(0)).collect();
        println!("[parallel] {name}: {values:?}");
    }
    Ok(())
}

/// The server-side cursor, with the FETCH loop as a plain `while`.
async fn server_side_cursor(pool: Pool) -> Result<(), Error> {
    let (int_count, chunk) = (1000usize, 250usize);
    let conn = pool.getconn(true).await?;
    // Back to the pool when `conn` goes out of scope, also on an early `?` return.
    let conn = pool.manage(conn);
    conn.execute("BEGIN", ()).await?;
    conn.execute(
        "DECLARE all_ints CURSOR FOR SELECT generate_series(1, %s)",
        (int_count as i64,),
    )
    .await?;
    let mut offset = 0;
    while offset < int_count {
        let mut cursor = conn
            .execute("FETCH %s FROM all_ints", (chunk as i64,))
            .await?;
        let rows = cursor.fetchall();
        let sum: i64 = rows.iter().map(|r| i64::from(r.get::<_, i32>(0))).sum();
        println!("[cursor] FETCH {chunk}: {} rows, sum {sum}", rows.len());
        offset += chunk;
    }
    conn.execute("CLOSE all_ints", ()).await?;
    conn.execute("COMMIT", ()).await?;
    println!("[cursor] {offset} rows read; committed");
    Ok(())
}

/// `MOMOKO_DSN`, else `MOMOKO_TEST_DSN` (what `momoko-testpg run` exports), else the empty
/// string: libpq's defaults and `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`...
fn dsn() -> String {
    std::env::var("MOMOKO_DSN")
        .or_else(|_| std::env::var("MOMOKO_TEST_DSN"))
        .unwrap_or_default()
}
