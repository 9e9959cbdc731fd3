//! Through a real PgBouncer in transaction pooling mode with a single server connection
//! (momoko-testpg's `Bouncer`): every client's transactions take turns on one server
//! session, so nothing of a session may be relied on between them. With
//! `statement_cache_size(0)`, `query` runs on the unnamed statement with Parse, Bind,
//! Describe, Execute and Sync sent together, which a transaction pooler never splits.

mod common;

use std::time::Duration;

use common::{run, server, unique};
use momoko::{Connection, Pool, Statement};
use momoko_testpg::{Bouncer, BouncerOptions};

fn bouncer() -> Bouncer {
    Bouncer::start(server(), &BouncerOptions::default()).expect("a PgBouncer")
}

async fn backend_pid(conn: &Connection) -> i32 {
    conn.execute("SELECT pg_backend_pid()", ())
        .await
        .unwrap()
        .fetchone()
        .unwrap()
        .get(0)
}

#[test]
fn two_clients_alternate_200_parameterized_queries_each_on_one_server_connection() {
    let b = bouncer();
    let dsn = b.dsn().to_owned();
    run(async move {
        let open = || Connection::builder(&dsn).statement_cache_size(0).connect();
        let (a, c) = (open().await.unwrap(), open().await.unwrap());
        // Both clients are served by the same server session: PgBouncer's one connection.
        assert_eq!(backend_pid(&a).await, backend_pid(&c).await);
        for i in 0..200i32 {
            for (who, conn) in [("a", &a), ("c", &c)] {
                let mut cur = conn
                    .query(
                        "SELECT $1::int * 2, $2::text, $3::int8",
                        (i, who, i64::from(i)),
                    )
                    .await
                    .unwrap();
                let row = cur.fetchone().unwrap();
                assert_eq!(row.get::<_, i32>(0), i * 2);
                assert_eq!(row.get::<_, String>(1), who);
                assert_eq!(row.get::<_, i64>(2), i64::from(i));
            }
        }
        // psycopg2-style parameters go as one simple query, which works through it too.
        let mut cur = a.execute("SELECT %s || %s", ("x", "y")).await.unwrap();
        assert_eq!(cur.fetchone().unwrap().get::<_, String>(0), "xy");
        // PgBouncer 1.18 refuses the IntervalStyle momoko pins at startup: the connect went
        // again without it, and text intervals still read (the server's default style).
        let mut cur = a
            .execute(
                "SELECT %s::interval, %s::date",
                ("1 mon 2 days 03:04:05", "2024-02-29"),
            )
            .await
            .unwrap();
        let row = cur.fetchone().unwrap();
        assert_eq!(
            row.get::<_, momoko::Interval>(0),
            momoko::Interval::new(1, 2, (3 * 3600 + 4 * 60 + 5) * 1_000_000)
        );
        assert_eq!(row.get::<_, String>(1), "2024-02-29");
        // An error ends only that statement.
        let e = c.query("SELECT $1::int", ("nope",)).await.unwrap_err();
        assert_eq!(e.code(), Some("22P02"), "{e}");
        let mut cur = c.query("SELECT $1::int", (7,)).await.unwrap();
        assert_eq!(cur.fetchone().unwrap().get::<_, i32>(0), 7);
        a.close();
        c.close();
    });
}

#[test]
fn a_transaction_holds_the_server_connection_until_it_commits() {
    let b = bouncer();
    let dsn = b.dsn().to_owned();
    let table = unique("bounced");
    run(async move {
        let conn = Connection::builder(&dsn)
            .statement_cache_size(0)
            .connect()
            .await
            .unwrap();
        conn.execute(&format!("CREATE TABLE {table} (k int, who text)"), ())
            .await
            .unwrap();
        let cursors = conn
            .transaction(vec![
                Statement::from((
                    format!("INSERT INTO {table} VALUES (%s, %s)").as_str(),
                    (1, "first"),
                )),
                Statement::from((
                    format!("INSERT INTO {table} VALUES (%s, %s)").as_str(),
                    (2, "second"),
                )),
                Statement::from(format!("SELECT count(*) FROM {table}").as_str()),
            ])
            .await
            .unwrap();
        let mut last = cursors.into_iter().last().unwrap();
        assert_eq!(last.fetchone().unwrap().get::<_, i64>(0), 2);
        // A failed transaction is rolled back as a whole, and the server connection goes
        // back to PgBouncer clean: the next client statement works.
        let e = conn
            .transaction(vec![
                Statement::from((
                    format!("INSERT INTO {table} VALUES (%s, %s)").as_str(),
                    (3, "x"),
                )),
                Statement::from("SELECT 1/0"),
            ])
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("22012"), "{e}");
        let mut c = conn
            .query(&format!("SELECT k, who FROM {table} ORDER BY k"), ())
            .await
            .unwrap();
        let rows: Vec<(i32, String)> = c.fetchall().iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(rows, vec![(1, "first".into()), (2, "second".into())]);
        conn.execute(&format!("DROP TABLE {table}"), ())
            .await
            .unwrap();
        conn.close();
    });
}

#[test]
fn a_pool_of_four_runs_400_queries_through_one_server_connection() {
    let b = bouncer();
    let dsn = b.dsn().to_owned();
    run(async move {
        let pool = Pool::builder(&dsn)
            .size(4)
            .statement_cache_size(0)
            .query_timeout(Duration::from_secs(20))
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap();
        let futures: Vec<_> = (0..400i32)
            .map(|i| pool.query("SELECT $1::int + 1, pg_backend_pid()", (i,)))
            .collect();
        let mut pids = std::collections::BTreeSet::new();
        for (i, f) in futures.into_iter().enumerate() {
            let mut c = f.await.unwrap();
            let row = c.fetchone().unwrap();
            assert_eq!(row.get::<_, i32>(0), i as i32 + 1);
            pids.insert(row.get::<_, i32>(1));
        }
        assert_eq!(
            pids.len(),
            1,
            "one server connection behind the pool: {pids:?}"
        );
        assert_eq!(pool.stats().free, 4);
        pool.close().unwrap();
    });
}
