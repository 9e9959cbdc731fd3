//! The tutorial's server-side cursor: take a connection from the pool with `getconn`, keep
//! it under `manage` (it goes back to the pool however the work ends), and read a large
//! result in chunks with `DECLARE` / `FETCH %s` inside one transaction.
//!
//! The FETCH loop is callback-driven: each FETCH's done-callback prints its chunk and
//! issues the next one, with no `async` in sight (see `coroutines.rs` for that form).
//!
//! The server comes from `MOMOKO_DSN`, else `MOMOKO_TEST_DSN`, else libpq's defaults and the
//! `PG*` variables. Run it with `cargo run --example server_side_cursor`, or with
//! `make demo`.

use std::rc::Rc;

use momoko::ioloop::{Future, IoLoop};
use momoko::{Error, Managed, Pool};

/// How many rows the table holds, and how many one FETCH reads.
const INT_COUNT: usize = 1000;
const CHUNK: usize = 100;

fn main() -> Result<(), Error> {
    let dsn = dsn();
    match momoko::Config::parse(&dsn) {
        Ok(c) => println!("server: {}", c.summary()),
        Err(e) => println!("server: unusable DSN: {e}"),
    }
    let ioloop = IoLoop::current();

    let pool = Pool::new(&dsn, 1)?;
    wait(&ioloop, &pool.connect())?;
    println!("pool connected: {pool:?}");

    // getconn(true) pings the connection first, so a connection the server dropped while
    // it sat idle is reconnected (or reported) here rather than on the first statement.
    let conn = wait(&ioloop, &pool.getconn(true))?;
    println!("getconn: took a connection: {pool:?}");

    // From here the connection is managed: when the last Rc<Managed> is dropped, it goes
    // back to the pool, which rolls back a transaction left open (after an error).
    let conn: Rc<Managed> = Rc::new(pool.manage(conn));

    // A connection pipelines what it is given: the three statements go out together and
    // are answered in order. We wait for the last one; the earlier ones are done by then
    // (and inside the transaction, a failure in one makes those after it fail too).
    let setup = [
        conn.execute("BEGIN", ()),
        conn.execute(
            "CREATE TEMP TABLE unit_test_int_table ON COMMIT DROP AS \
             SELECT generate_series(1, %s) AS i",
            (INT_COUNT as i64,),
        ),
        conn.execute(
            "DECLARE all_ints CURSOR FOR SELECT i FROM unit_test_int_table ORDER BY i",
            (),
        ),
    ];
    let declared = wait(&ioloop, &setup[2]);
    for future in &setup[..2] {
        let cursor = future.take().expect("answered before the last")?;
        println!("setup: {}", cursor.statusmessage().unwrap_or("?"));
    }
    println!("setup: {}", declared?.statusmessage().unwrap_or("?"));

    // The FETCH loop, driven by callbacks; `fetched` resolves when it ends, with the rows
    // read or the first error. It holds its own Rc<Managed>, so the connection stays ours.
    let fetched: Future<Result<usize, Error>> = Future::new();
    fetch_from(conn.clone(), 0, fetched.clone());
    let rows = wait(&ioloop, &fetched)?;
    println!("fetched {rows} rows in chunks of {CHUNK}");

    let close = conn.execute("CLOSE all_ints", ());
    let commit = conn.execute("COMMIT", ());
    wait(&ioloop, &commit)?;
    close.take().expect("done")?;
    println!(
        "CLOSE and COMMIT done; transaction status now {:?}",
        conn.transaction_status()
    );

    // Dropping the last handle gives the connection back (Momoko's `with pool.manage()`).
    drop(conn);
    println!("connection given back: {pool:?}");
    pool.close()?;
    println!("pool closed");
    Ok(())
}

/// Fetches the next chunk from `offset` on; once `INT_COUNT` rows are read (or on the first
/// error), resolves `done`.
fn fetch_from(conn: Rc<Managed>, offset: usize, done: Future<Result<usize, Error>>) {
    if offset >= INT_COUNT {
        let _ = done.set_result(Ok(offset));
        return;
    }
    let future = conn.execute("FETCH %s FROM all_ints", (CHUNK as i64,));
    // The callback runs on the loop, never inline, so the recursion below never grows the
    // stack: each FETCH starts from a fresh loop iteration.
    future.add_done_callback(move |future| match future.take().expect("done") {
        Err(e) => {
            let _ = done.set_result(Err(e));
        }
        Ok(mut cursor) => {
            let rows = cursor.fetchall();
            let (first, last): (i32, i32) = match (rows.first(), rows.last()) {
                (Some(a), Some(b)) => (a.get(0), b.get(0)),
                _ => {
                    let _ = done.set_result(Ok(offset)); // the cursor ran out early
                    return;
                }
            };
            // Do something with the results: here, print what the chunk held.
            println!(
                "{} -> rows {first}..={last}",
                cursor.statusmessage().unwrap_or("FETCH ?")
            );
            fetch_from(conn, offset + rows.len(), done);
        }
    });
}

/// Runs the loop until `future` is done and takes its value: the tutorial's
/// `add_future` + `stop` + `start`, shown step by step in `trivial.rs`.
fn wait<T: 'static>(ioloop: &IoLoop, future: &Future<T>) -> T {
    let lp = ioloop.clone();
    ioloop.add_future(future, move |_| lp.stop());
    ioloop.start();
    future
        .take()
        .expect("the loop stopped, so the future is done")
}

/// `MOMOKO_DSN`, else `MOMOKO_TEST_DSN` (what `momoko-testpg run` exports), else the empty
/// string: libpq's defaults and `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`...
fn dsn() -> String {
    std::env::var("MOMOKO_DSN")
        .or_else(|_| std::env::var("MOMOKO_TEST_DSN"))
        .unwrap_or_default()
}
