//! The tutorial's parallel queries: three `execute` calls on a [`Pool`] made one after the
//! other without waiting, so they run at the same time on three connections; their cursors
//! are read only once all three are done (Tornado's `yield [f1, f2, f3]`).
//!
//! Each query sleeps 0.3 s on the server, so the run takes about 0.3 s, not 0.9 s. The pool
//! starts with one connection and stretches to three (`max_size`) as the queries queue up.
//!
//! The server comes from `MOMOKO_DSN`, else `MOMOKO_TEST_DSN`, else libpq's defaults and the
//! `PG*` variables. Run it with `cargo run --example parallel`, or with `make demo`.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

use momoko::ioloop::IoLoop;
use momoko::{Error, Pool};

fn main() -> Result<(), Error> {
    let dsn = dsn();
    match momoko::Config::parse(&dsn) {
        Ok(c) => println!("server: {}", c.summary()),
        Err(e) => println!("server: unusable DSN: {e}"),
    }
    let ioloop = IoLoop::current();

    let pool = Pool::builder(&dsn).size(1).max_size(3).build()?;
    let future = pool.connect();
    let lp = ioloop.clone();
    ioloop.add_future(&future, move |_| lp.stop());
    ioloop.start();
    future.take().expect("done")?;
    println!("connected: {pool:?}");

    // execute() returns at once: the first query gets the free connection, the other two
    // wait while the pool opens one more connection for each (up to max_size). The loop
    // does the sending and receiving once it runs.
    let started = Instant::now();
    let futures = [
        pool.execute("SELECT 1, pg_sleep(0.3)", ()),
        pool.execute("SELECT 2, pg_sleep(0.3)", ()),
        pool.execute("SELECT 3, pg_sleep(0.3)", ()),
    ];
    println!("three queries queued: {pool:?}");

    // Stop the loop once the last of the three is done. The done-callbacks run on the loop
    // one at a time, so a plain Rc<Cell> is enough to count them.
    let pending = Rc::new(Cell::new(futures.len()));
    for future in &futures {
        let (pending, lp) = (pending.clone(), ioloop.clone());
        ioloop.add_future(future, move |_| {
            pending.set(pending.get() - 1);
            if pending.get() == 0 {
                lp.stop();
            }
        });
    }
    ioloop.start();
    let elapsed = started.elapsed();
    println!(
        "all three done in {:.2} s (one after the other would take 0.9 s): {pool:?}",
        elapsed.as_secs_f64()
    );

    // Only now are the cursors read, in the order the queries were made. A failed query
    // gives its error here, as f.result() raises in Python.
    for (i, future) in futures.iter().enumerate() {
        let mut cursor = future.take().expect("done")?;
        let values: Vec<i32> = cursor.fetchall().iter().map(|row| row.get(0)).collect();
        println!(
            "Q{}: {values:?} ({})",
            i + 1,
            cursor.statusmessage().unwrap_or("?")
        );
    }

    pool.close()?;
    println!("pool closed");
    Ok(())
}

/// `MOMOKO_DSN`, else `MOMOKO_TEST_DSN` (what `momoko-testpg run` exports), else the empty
/// string: libpq's defaults and `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`...
fn dsn() -> String {
    std::env::var("MOMOKO_DSN")
        .or_else(|_| std::env::var("MOMOKO_TEST_DSN"))
        .unwrap_or_default()
}
