//! The tutorial's trivial example: connect, run `SELECT 1`, read the rows, with the loop
//! started and stopped around one future at a time (`add_future` + `stop` + `start`), the way
//! Momoko's tutorial runs Tornado's IOLoop "in sync". Done once with a lone [`Connection`] and
//! once with a [`Pool`].
//!
//! The server comes from `MOMOKO_DSN`, else `MOMOKO_TEST_DSN`, else libpq's defaults and the
//! `PG*` variables (as `psql` with no arguments); TLS follows the DSN's `sslmode`, e.g.
//! `MOMOKO_DSN="host=db.example.com sslmode=verify-full sslrootcert=ca.pem"`. Run it with
//! `cargo run --example trivial`, or against a throwaway server with `make demo`.

use momoko::ioloop::IoLoop;
use momoko::{Connection, Error, Pool};

fn main() -> Result<(), Error> {
    let dsn = dsn();
    match momoko::Config::parse(&dsn) {
        Ok(c) => println!("server: {}", c.summary()),
        Err(e) => println!("server: unusable DSN: {e}"),
    }
    let ioloop = IoLoop::current();

    // --- A lone connection -------------------------------------------------------------
    // Nothing touches the network yet: Connection::new only records the DSN and the loop.
    let conn = Connection::new(&dsn);

    // connect() returns a future at once. The loop is what does the work, so we ask it to
    // stop as soon as the future is done, and start it; start() returns after that stop.
    let future = conn.connect();
    let lp = ioloop.clone();
    ioloop.add_future(&future, move |_| lp.stop());
    ioloop.start();
    // take() is None while pending; here the future is done, so the Option is Some and
    // the Result inside says whether connecting worked (as future.result() raises).
    future
        .take()
        .expect("the loop stopped, so the future is done")?;
    println!(
        "connection: connected, server version {}, backend pid {}, TLS: {}",
        conn.server_version().unwrap_or_default(),
        conn.backend_pid().unwrap_or_default(),
        // sslmode=prefer (the default) uses TLS when the server offers it; a DSN such as
        // "host=db.example.com sslmode=verify-full sslrootcert=ca.pem" demands it.
        match (conn.ssl_attribute("protocol"), conn.ssl_attribute("cipher")) {
            (Some(p), Some(c)) => format!("{p} {c}"),
            _ => "off".to_owned(),
        },
    );

    let sql = "SELECT 1";
    let future = conn.execute(sql, ());
    let lp = ioloop.clone();
    ioloop.add_future(&future, move |_| lp.stop());
    ioloop.start();
    let mut cursor = future.take().expect("done")?;
    let rows = cursor.fetchall();
    let one: i32 = rows[0].get(0);
    println!(
        "connection: {sql:?} -> {} row(s), first value {one} ({})",
        rows.len(),
        cursor.statusmessage().unwrap_or("?"),
    );

    // close() is synchronous, as in Momoko.
    conn.close();
    println!("connection: closed: {}", conn.closed());

    // --- The same with a pool ------------------------------------------------------------
    // Pool::new(dsn, size) takes every other option at Momoko's defaults; Pool::builder has
    // them all. The pool connects `size` connections in parallel on connect().
    let pool = Pool::new(&dsn, 1)?;
    let future = pool.connect();
    let lp = ioloop.clone();
    ioloop.add_future(&future, move |_| lp.stop());
    ioloop.start();
    future.take().expect("done")?;
    println!("pool: connected: {pool:?}");

    // Pool::execute waits for a free connection, runs the query on it and gives it back.
    let sql = "SELECT %s::int + 1 AS two";
    let future = pool.execute(sql, (1i32,));
    let lp = ioloop.clone();
    ioloop.add_future(&future, move |_| lp.stop());
    ioloop.start();
    let mut cursor = future.take().expect("done")?;
    let row = cursor.fetchone().expect("one row");
    let two: i32 = row.get("two");
    println!("pool: {sql:?} with (1,) -> two = {two}");

    pool.close()?;
    println!("pool: closed: {pool:?}");
    Ok(())
}

/// `MOMOKO_DSN`, else `MOMOKO_TEST_DSN` (what `momoko-testpg run` exports), else the empty
/// string: libpq's defaults and `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`...
fn dsn() -> String {
    std::env::var("MOMOKO_DSN")
        .or_else(|_| std::env::var("MOMOKO_TEST_DSN"))
        .unwrap_or_default()
}
