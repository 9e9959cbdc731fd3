//! R1, logical replication: the same slot workload consumed by momoko (pgoutput decoded
//! into changes, every column read into its Rust type, each transaction confirmed) and by
//! `pg_recvlogical` (libpq, from the server's own binaries; it writes the pgoutput bytes to
//! /dev/null and decodes nothing).
//!
//! Each run creates its own slot, then commits the rows (untimed: the backlog is in the WAL
//! before the consumer starts), then times the consumer from its connect to the last commit.
//! The server decodes the same WAL for both, so the figures differ only by the client.

use std::cell::Cell;
use std::path::PathBuf;
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use momoko::ioloop::{Future, IoLoop};
use momoko::replication::{Change, Lsn, ReplicationConnection, StreamOptions};

use crate::env::Env;
use crate::measure::{cpu_time, Meter, Sample};

pub const TABLE: &str = "momoko_bench_repl";
pub const PUBLICATION: &str = "momoko_bench_repl_pub";
/// Rows per transaction.
pub const TXN_ROWS: u64 = 1000;

/// pg_recvlogical from `MOMOKO_PG_BIN`, the usual Debian place, or PATH.
pub fn find_pg_recvlogical() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(bin) = std::env::var_os("MOMOKO_PG_BIN") {
        candidates.push(PathBuf::from(bin).join("pg_recvlogical"));
    }
    candidates.push("/usr/lib/postgresql/15/bin/pg_recvlogical".into());
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("pg_recvlogical")));
    }
    candidates.into_iter().find(|p| p.is_file())
}

fn sql(env: &Env, statements: Vec<String>) -> Result<Option<String>, String> {
    let dsn = env.dsn.clone();
    IoLoop::new()
        .run_sync(async move {
            let conn = momoko::connect(&dsn).await?;
            let mut last = None;
            for q in statements {
                let mut c = conn.execute(&q, ()).await?;
                last = c
                    .fetchone()
                    .and_then(|r| r.try_get::<_, Option<String>>(0).ok().flatten());
            }
            conn.close();
            Ok(last)
        })
        .map_err(|e: momoko::Error| e.to_string())
}

/// A new slot named for `who`, then `rows` rows committed in transactions of
/// [`TXN_ROWS`]; returns the slot and the WAL position after the last commit.
fn prepare(env: &Env, who: &str, rows: u64) -> Result<(String, Lsn), String> {
    let slot = format!("momoko_bench_{who}_{}", std::process::id());
    let mut s = vec![
        format!("CREATE TABLE IF NOT EXISTS {TABLE} (id int4, name text, score float8)"),
        format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = \
             '{PUBLICATION}') THEN CREATE PUBLICATION {PUBLICATION} FOR TABLE {TABLE}; END IF; \
             END $$"
        ),
        format!("TRUNCATE {TABLE}"),
        format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE slot_name = '{slot}'"
        ),
        format!("SELECT lsn::text FROM pg_create_logical_replication_slot('{slot}', 'pgoutput')"),
    ];
    let mut id = 0;
    while id < rows {
        let to = (id + TXN_ROWS).min(rows);
        s.push(format!(
            "INSERT INTO {TABLE} SELECT g, 'name-' || g, g / 7.0 FROM generate_series({}, {to}) g",
            id + 1
        ));
        id = to;
    }
    s.push("SELECT pg_current_wal_lsn()::text".into());
    let end = sql(env, s)?.ok_or("no WAL position")?;
    Ok((slot, end.parse().map_err(|e: momoko::Error| e.to_string())?))
}

fn drop_slot(env: &Env, slot: &str) {
    let _ = sql(
        env,
        vec![format!("SELECT pg_drop_replication_slot('{slot}')")],
    );
}

/// momoko: every change decoded, every column read, every transaction confirmed.
pub fn momoko(env: &Env, rows: u64) -> Result<Sample, String> {
    let (slot, _) = prepare(env, "momoko", rows)?;
    let txns = rows.div_ceil(TXN_ROWS);
    let dsn = env.dsn.clone();
    let s = slot.clone();
    let lp = IoLoop::new();
    let meter = Meter::start();
    let result = lp.run_sync_timeout(
        async move {
            let repl = ReplicationConnection::connect(&dsn).await?;
            let done: Future<()> = Future::with_loop(&IoLoop::current());
            let (seen, commits, sum) = (
                Rc::new(Cell::new(0u64)),
                Rc::new(Cell::new(0u64)),
                Rc::new(Cell::new(0f64)),
            );
            let (d, n, c, total) = (done.clone(), seen.clone(), commits.clone(), sum.clone());
            let options = StreamOptions::pgoutput(&[PUBLICATION]).proto_version(1);
            let stream =
                repl.start_logical(&s, Lsn::ZERO, options, move |stream, change| match change {
                    Change::Insert { new, .. } => {
                        let id: i32 = new.get(0);
                        let name: String = new.get(1);
                        let score: f64 = new.get(2);
                        total.set(total.get() + id as f64 + name.len() as f64 + score);
                        n.set(n.get() + 1);
                    }
                    Change::Commit { end_lsn, .. } => {
                        stream.confirm(end_lsn);
                        c.set(c.get() + 1);
                        if c.get() == txns {
                            let _ = d.set_result(());
                        }
                    }
                    _ => {}
                });
            done.await;
            stream.stop().await?;
            repl.close();
            Ok::<_, momoko::Error>((seen.get(), sum.get()))
        },
        Duration::from_secs(600),
    );
    let sample = meter.finish(rows);
    drop_slot(env, &slot);
    let (seen, sum) = result
        .map_err(|_| "momoko: timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    if seen != rows || sum <= 0.0 {
        return Err(format!("momoko saw {seen} of {rows} changes"));
    }
    Ok(sample)
}

/// pg_recvlogical: the same slot workload to /dev/null, up to the last commit.
pub fn pg_recvlogical(env: &Env, rows: u64) -> Result<Sample, String> {
    let bin = find_pg_recvlogical().ok_or("pg_recvlogical not found")?;
    let (slot, end) = prepare(env, "recvlogical", rows)?;
    let started = Instant::now();
    let before = cpu_time(libc::RUSAGE_CHILDREN);
    let out = Command::new(bin)
        .env("PGSSLMODE", "disable")
        .args(["-d", &env.dsn, "--slot", &slot, "--start", "--no-loop"])
        .args(["-f", "/dev/null", "-E", &end.to_string(), "-s", "10"])
        .args(["-o", "proto_version=1"])
        .args(["-o", &format!("publication_names={PUBLICATION}")])
        .output()
        .map_err(|e| format!("pg_recvlogical: {e}"));
    let wall = started.elapsed();
    let after = cpu_time(libc::RUSAGE_CHILDREN);
    drop_slot(env, &slot);
    let out = out?;
    if !out.status.success() {
        return Err(format!(
            "pg_recvlogical failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let sys = after.1.saturating_sub(before.1);
    Ok(Sample {
        ops: rows,
        wall,
        cpu: after.0.saturating_sub(before.0) + sys,
        sys,
    })
}
