//! Change data capture: every committed change of the tables in a publication, printed as
//! one JSON line each, on the loop; the slot is confirmed after each transaction is printed,
//! so a consumer stopped (or killed) and started again resumes where it stopped: nothing
//! printed and confirmed comes again, nothing committed is missed (a transaction printed but
//! not yet confirmed when the process died is printed again: at least once).
//!
//! Usage: `cdc [--slot NAME] [--publication NAME] [--transactions N] [--idle-exit SECS]`.
//! The slot (pgoutput) is created if missing; the publication must exist
//! (`CREATE PUBLICATION cdc_pub FOR TABLE …`). It stops after N transactions, or once
//! nothing arrived for SECS seconds; without either it runs until killed. Run it with
//! `MOMOKO_DSN` (or `MOMOKO_TEST_DSN`) naming a server with `wal_level = logical`, e.g. under
//! `make examples`.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::rc::Rc;
use std::time::{Duration, Instant};

use momoko::ioloop::{sleep, IoLoop};
use momoko::replication::{
    Change, Lsn, ReplicationConnection, SlotOptions, Snapshot, StreamOptions, Table, Tuple,
};
use momoko::{Error, Value};
use serde_json::{json, Map, Value as Json};

fn value_to_json(v: Option<Value>) -> Json {
    match v {
        None | Some(Value::Null) => Json::Null,
        Some(Value::Bool(b)) => json!(b),
        Some(Value::Int2(n)) => json!(n),
        Some(Value::Int4(n)) => json!(n),
        Some(Value::Int8(n)) => json!(n),
        Some(Value::Float4(f)) => json!(f),
        Some(Value::Float8(f)) => json!(f),
        Some(Value::Numeric(s)) | Some(Value::Text(s)) => json!(s),
        Some(Value::Json(j)) => j,
        Some(Value::Array(items)) => {
            Json::Array(items.into_iter().map(|v| value_to_json(Some(v))).collect())
        }
        Some(Value::Bytes(b)) => json!(b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
        Some(Value::Unknown { text, .. }) => json!(text),
        Some(other) => json!(format!("{other:?}")),
    }
}

/// A row as a JSON object by column name; an unchanged TOASTed value (not sent by the
/// server) is reported as `{"unchanged_toast": true}`, never as a value.
fn tuple_to_json(table: &Table, tuple: &Tuple) -> Result<Json, Error> {
    let mut row = Map::new();
    let values = tuple.try_to_values()?;
    for (i, (col, v)) in table.columns().iter().zip(values).enumerate() {
        let value = if tuple.is_unchanged(i) {
            json!({ "unchanged_toast": true })
        } else {
            value_to_json(v)
        };
        row.insert(col.name().to_owned(), value);
    }
    Ok(Json::Object(row))
}

fn table_name(t: &Table) -> String {
    format!("{}.{}", t.schema(), t.name())
}

/// One change as the JSON line it prints (None: nothing to print, e.g. a Relation).
fn change_to_json(change: &Change) -> Result<Option<Json>, Error> {
    Ok(Some(match change {
        Change::Insert { table, new, .. } => {
            json!({ "op": "insert", "table": table_name(table), "new": tuple_to_json(table, new)? })
        }
        Change::Update {
            table,
            key,
            old,
            new,
            ..
        } => {
            let mut o = json!({ "op": "update", "table": table_name(table),
                                "new": tuple_to_json(table, new)? });
            if let Some(k) = key.as_ref().or(old.as_ref()) {
                o["old"] = tuple_to_json(table, k)?;
            }
            o
        }
        Change::Delete {
            table, key, old, ..
        } => {
            let old = key.as_ref().or(old.as_ref());
            json!({ "op": "delete", "table": table_name(table),
                    "old": old.map(|t| tuple_to_json(table, t)).transpose()? })
        }
        Change::Truncate { tables, .. } => {
            json!({ "op": "truncate", "tables": tables.iter().map(table_name).collect::<Vec<_>>() })
        }
        _ => return Ok(None),
    }))
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let slot = arg(&args, "--slot").unwrap_or_else(|| "momoko_cdc".into());
    let publication = arg(&args, "--publication").unwrap_or_else(|| "cdc_pub".into());
    let max_txns: Option<usize> = arg(&args, "--transactions").and_then(|n| n.parse().ok());
    let idle_exit: Option<u64> = arg(&args, "--idle-exit").and_then(|n| n.parse().ok());
    let dsn = std::env::var("MOMOKO_DSN")
        .or_else(|_| std::env::var("MOMOKO_TEST_DSN"))
        .unwrap_or_default();

    IoLoop::new().run_sync(async move {
        let repl = ReplicationConnection::connect(&dsn).await?;
        match repl
            .create_slot(
                &slot,
                SlotOptions::logical("pgoutput").snapshot(Snapshot::Nothing),
            )
            .await
        {
            Ok(info) => eprintln!("cdc: created slot {slot} at {}", info.consistent_point()),
            // 42710: the slot exists; the server resumes at its confirmed position.
            Err(e) if e.code() == Some("42710") => eprintln!("cdc: resuming slot {slot}"),
            Err(e) => return Err(e),
        }

        let done_txns = Rc::new(Cell::new(0usize));
        let last_seen = Rc::new(Cell::new(Instant::now()));
        let failed: Rc<RefCell<Option<Error>>> = Rc::default();
        // The transaction being read: its lines are printed at its Commit, then confirmed.
        let mut lines: Vec<Json> = Vec::new();
        let (count, seen, fail) = (done_txns.clone(), last_seen.clone(), failed.clone());
        let options =
            StreamOptions::pgoutput(&[&publication]).status_interval(Duration::from_secs(1));
        let stream = repl.start_logical(&slot, Lsn::ZERO, options, move |stream, change| {
            seen.set(Instant::now());
            match &change {
                Change::Begin { .. } => lines.clear(),
                Change::Commit {
                    end_lsn,
                    commit_time,
                    ..
                } => {
                    let at = commit_time
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_micros() as u64)
                        .unwrap_or(0);
                    let mut out = std::io::stdout().lock();
                    for mut line in lines.drain(..) {
                        line["lsn"] = json!(end_lsn.to_string());
                        line["commit_time_us"] = json!(at);
                        let _ = writeln!(out, "{line}");
                    }
                    // Durable before it is confirmed (stdout is this consumer's output).
                    if out.flush().is_ok() {
                        stream.confirm(*end_lsn);
                        count.set(count.get() + 1);
                    }
                }
                other => match change_to_json(other) {
                    Ok(Some(line)) => lines.push(line),
                    Ok(None) => {}
                    Err(e) => {
                        fail.borrow_mut().get_or_insert(e);
                        stream.pause();
                    }
                },
            }
        });
        let finished = stream.finished();
        loop {
            if finished.done() || failed.borrow().is_some() {
                break;
            }
            if max_txns.is_some_and(|n| done_txns.get() >= n) {
                break;
            }
            if idle_exit.is_some_and(|s| last_seen.get().elapsed() >= Duration::from_secs(s)) {
                break;
            }
            sleep(&IoLoop::current(), Duration::from_millis(20)).await;
        }
        let failure = failed.borrow_mut().take();
        if let Some(e) = failure {
            let _ = stream.stop().await;
            return Err(e);
        }
        // A clean stop: a last status update with what was confirmed, then CopyDone.
        stream.stop().await?;
        eprintln!(
            "cdc: {} transactions, confirmed up to {}",
            done_txns.get(),
            stream.confirmed_lsn()
        );
        repl.close();
        Ok(())
    })
}
