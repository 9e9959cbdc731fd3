//! W1 for instruction counts: `N` sequential `SELECT 1` on one momoko connection, simple
//! protocol (`s`, `execute`) or prepared (`p`, `execute_prepared`), as `make bench`'s W1s
//! and W1p run them, and nothing else. Run it under callgrind at two sizes: the difference
//! divided by the difference of sizes is the cost of one query, without the connect and the
//! process's start and end.
//!
//! ```sh
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/a target/release/w1_instructions s 2000
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/b target/release/w1_instructions s 4000
//! # (Ir(b) - Ir(a)) / 2000 = instructions per query
//! ```
//!
//! Built with `--features momoko/tracing` it measures the `tracing` feature with no
//! subscriber (issue 28's bound: within 5 % of the feature off). The server comes from
//! `MOMOKO_TEST_DSN` (or `MOMOKO_DSN`).

use momoko::ioloop::IoLoop;

fn main() {
    let mut args = std::env::args().skip(1);
    let proto = args.next().unwrap_or_else(|| "s".to_owned());
    let n: usize = args
        .next()
        .and_then(|n| n.parse().ok())
        .expect("usage: w1_instructions s|p N");
    let dsn = std::env::var("MOMOKO_TEST_DSN")
        .or_else(|_| std::env::var("MOMOKO_DSN"))
        .unwrap_or_default();
    let ioloop = IoLoop::current();
    let total = ioloop.run_sync(async move {
        let conn = momoko::connect(&dsn).await.expect("connect");
        let st = match proto.as_str() {
            "p" => Some(conn.prepare("SELECT 1").await.expect("prepare")),
            _ => None,
        };
        let mut total = 0i64;
        for _ in 0..n {
            let mut c = match &st {
                None => conn.execute("SELECT 1", ()).await,
                Some(st) => conn.execute_prepared(st, ()).await,
            }
            .expect("SELECT 1");
            total += c.fetchone().expect("a row").get::<_, i32>(0) as i64;
        }
        total
    });
    assert_eq!(total, n as i64);
    println!("{n} queries");
}
