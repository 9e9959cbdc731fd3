//! One host list, two pools: writes go to whichever server takes them
//! (`target_session_attrs=read-write`), reads to a standby when one answers
//! (`prefer-standby`: a second pass takes the primary when none does). After a failover,
//! each pool's reconnects walk the list again and land where they fit now.
//!
//! The list comes from `MOMOKO_DSN`, else `MOMOKO_TEST_DSN`, else libpq's defaults, e.g.
//! `MOMOKO_DSN="host=db1,db2 port=5432 dbname=app user=app"`. With a single server both
//! pools reach it. Run it with `cargo run --example replicas`; the tests run it against a
//! primary and a streaming standby that momoko-testpg starts.

use std::time::{Duration, Instant};

use momoko::ioloop::IoLoop;
use momoko::{Error, ErrorKind, Pool};

fn main() -> Result<(), Error> {
    let list = dsn();
    IoLoop::current().run_sync(async move {
        let writer = Pool::builder(&with(&list, "target_session_attrs", "read-write"))
            .size(2)
            .build()?
            .connect()
            .await?;
        let reader = Pool::builder(&with(&list, "target_session_attrs", "prefer-standby"))
            .size(2)
            .build()?
            .connect()
            .await?;
        for (name, pool) in [("writer", &writer), ("reader", &reader)] {
            let mut c = pool
                .execute("SELECT inet_server_port(), pg_is_in_recovery()", ())
                .await?;
            let row = c.fetchone().expect("one row");
            let (port, standby): (Option<i32>, bool) = (row.get(0), row.get(1));
            let port = port.map_or("a Unix socket".to_owned(), |p| format!("port {p}"));
            let what = if standby { "a standby" } else { "a primary" };
            println!("{name}: {what} on {port}");
        }

        let table = format!("replicas_demo_{}", std::process::id());
        writer
            .execute(&format!("CREATE TABLE {table} (id serial, note text)"), ())
            .await?;
        let mut c = writer
            .execute(
                &format!("INSERT INTO {table} (note) VALUES (%s) RETURNING id"),
                ("written on the primary",),
            )
            .await?;
        let id: i32 = c.fetchone().expect("one row").get(0);
        println!("writer: inserted row {id}");

        // A standby replays the primary's WAL a little later: read until the row shows,
        // for at most ten seconds.
        let started = Instant::now();
        let sql = format!("SELECT note FROM {table} WHERE id = %s");
        let note: String = loop {
            match reader.execute(&sql, (id,)).await {
                Ok(mut c) => {
                    if let Some(row) = c.fetchone() {
                        break row.get(0);
                    }
                }
                // The table itself may not have been replayed yet.
                Err(e) if e.code() == Some("42P01") => {}
                Err(e) => return Err(e),
            }
            if started.elapsed() > Duration::from_secs(10) {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    "the row did not reach the reader within 10 s",
                ));
            }
            momoko::ioloop::sleep(&IoLoop::current(), Duration::from_millis(10)).await;
        };
        println!(
            "reader: row {id} says {note:?} (visible after {} ms)",
            started.elapsed().as_millis()
        );

        writer.execute(&format!("DROP TABLE {table}"), ()).await?;
        reader.close()?;
        writer.close()?;
        println!("both pools closed");
        Ok(())
    })
}

/// `dsn` with `key=value` added, in the DSN's own form (keywords or a URI).
fn with(dsn: &str, key: &str, value: &str) -> String {
    if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
        let sep = if dsn.contains('?') { '&' } else { '?' };
        format!("{dsn}{sep}{key}={value}")
    } else {
        format!("{dsn} {key}={value}")
    }
}

/// `MOMOKO_DSN`, else `MOMOKO_TEST_DSN` (what `momoko-testpg run` exports), else the empty
/// string: libpq's defaults and `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`...
fn dsn() -> String {
    std::env::var("MOMOKO_DSN")
        .or_else(|_| std::env::var("MOMOKO_TEST_DSN"))
        .unwrap_or_default()
}
