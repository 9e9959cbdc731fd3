//! Behind PgBouncer in transaction pooling mode, where every transaction may run on another
//! server session: the statement cache off (`statement_cache_size(0)`), so that `query`
//! runs on the unnamed statement (Parse, Bind, Describe, Execute and Sync in one go, which
//! a transaction pooler never splits) and leaves no named statement behind for the next
//! client of that session to trip over. `execute`, `transaction` and friends render
//! psycopg2's parameters on the client and prepare nothing anyway. Session state is kept
//! inside transactions: `SET LOCAL`, `pg_advisory_xact_lock`.
//!
//! The DSN (PgBouncer's) comes from `MOMOKO_DSN`, else `MOMOKO_TEST_DSN`, e.g.
//! `MOMOKO_DSN="host=pgbouncer port=6432 dbname=app user=app"`. The tests run it through
//! a real PgBouncer that momoko-testpg starts, with a single server connection.

use momoko::ioloop::IoLoop;
use momoko::{Error, Pool, Statement};

fn main() -> Result<(), Error> {
    let dsn = std::env::var("MOMOKO_DSN")
        .or_else(|_| std::env::var("MOMOKO_TEST_DSN"))
        .unwrap_or_default();
    IoLoop::current().run_sync(async move {
        let pool = Pool::builder(&dsn)
            .size(4)
            .statement_cache_size(0)
            .build()?
            .connect()
            .await?;

        // Server-side parameters, no prepared statement left on any session.
        let futures: Vec<_> = (1..=8)
            .map(|i| pool.query("SELECT $1::int * $1::int", (i,)))
            .collect();
        let mut squares = Vec::new();
        for f in futures {
            squares.push(f.await?.fetchone().expect("one row").get::<_, i32>(0));
        }
        println!("squares through the pooler: {squares:?}");

        // One transaction keeps its server session from BEGIN to COMMIT: a setting and a
        // lock scoped to it are safe here, where a session-level SET or lock is not.
        let cursors = pool
            .transaction(vec![
                Statement::from("SET LOCAL statement_timeout = '5s'"),
                Statement::from("SELECT pg_advisory_xact_lock(42)"),
                Statement::from("SELECT current_setting('statement_timeout')"),
            ])
            .await?;
        let mut last = cursors.into_iter().last().expect("three cursors");
        let timeout: String = last.fetchone().expect("one row").get(0);
        println!("inside the transaction: statement_timeout = {timeout}");

        let mut c = pool
            .execute("SELECT current_setting('statement_timeout')", ())
            .await?;
        let after: String = c.fetchone().expect("one row").get(0);
        println!("after it: statement_timeout = {after}");
        pool.close()?;
        Ok(())
    })
}
