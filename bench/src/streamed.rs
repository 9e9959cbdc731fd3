//! The streamed read (issue 26): W4s, W4a's one-int4-column result read row by row as it
//! arrives (momoko's `stream`, tokio-postgres's `query_raw`), and the peak memory of a
//! 1M-row read held whole (`query`) and streamed, each variant in a child process of its
//! own so that no earlier workload's heap hides the growth.
//!
//! The peak is the kernel's: the child resets its resident high-water mark
//! (`/proc/self/clear_refs`, 5) once connected and warm, then reads `VmHWM` after the read;
//! the figure is that peak less the resident set before the read. Nothing here times a
//! memory figure or runs in the test suite.

use futures_util::TryStreamExt;
use momoko::ioloop::IoLoop;
use momoko::{Error, Row};

use crate::env::Env;
use crate::measure::{Meter, Sample, Spread};
use crate::tokio_side;

/// The rows of the memory figure, whatever `--quick` says: the 1M.
pub const MEMORY_ROWS: u64 = 1_000_000;

/// The memory probes: child name and label.
pub const PROBES: [(&str, &str); 4] = [
    ("rows-held", "momoko query (held)"),
    ("rows-streamed", "momoko stream"),
    ("rows-tokio", "tokio-postgres query (held)"),
    ("rows-tokio-raw", "tokio-postgres query_raw (streamed)"),
];

fn series(rows: u64) -> String {
    format!("SELECT i FROM generate_series(1, {rows}) AS i")
}

/// W4s, momoko: `stream` through the statement cache (binary), every value read.
pub fn momoko_stream(env: &Env) -> Result<Sample, String> {
    crate::momoko_side::w4_stream(env)
}

/// W4s, tokio-postgres: `query_raw` on a prepared statement, rows read off the stream.
pub fn tokio_raw(env: &Env) -> Result<Sample, String> {
    let sql = series(env.sizes.w4_series);
    tokio_side::runtime()
        .block_on(async {
            let client = tokio_side::connect(env).await?;
            let st = client.prepare(&sql).await?;
            let m = Meter::start();
            let rows = client.query_raw(&st, std::iter::empty::<i32>()).await?;
            futures_util::pin_mut!(rows);
            let (mut n, mut sum) = (0u64, 0i64);
            while let Some(row) = rows.try_next().await? {
                sum += i64::from(row.get::<_, i32>(0));
                n += 1;
            }
            std::hint::black_box(sum);
            Ok(m.finish(n))
        })
        .map_err(|e: tokio_postgres::Error| e.to_string())
}

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Resets the high-water mark to the resident set now; the resident set then.
fn reset_peak() -> u64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_bytes("VmRSS")
}

/// The child's side: the peak growth over one 1M-row read, in bytes, and the peak itself.
pub fn probe(name: &str, env: &Env) -> Result<(u64, u64), String> {
    let sql = series(MEMORY_ROWS);
    let measure = |before: u64| {
        let peak = status_bytes("VmHWM");
        (peak.saturating_sub(before), peak)
    };
    match name {
        "rows-held" | "rows-streamed" => {
            let dsn = env.dsn.clone();
            let streamed = name == "rows-streamed";
            IoLoop::new()
                .run_sync(async move {
                    let conn = momoko::connect(&dsn).await?;
                    conn.query(&format!("{sql} LIMIT 0"), ()).await?;
                    let before = reset_peak();
                    let mut sum = 0i64;
                    let rows = if streamed {
                        let s = std::rc::Rc::new(std::cell::Cell::new(0i64));
                        let s2 = s.clone();
                        let n = conn
                            .stream(&sql, (), move |row: &Row| {
                                s2.set(s2.get() + i64::from(row.get::<_, i32>(0usize)))
                            })
                            .await?;
                        sum = s.get();
                        n
                    } else {
                        let cur = conn.query(&sql, ()).await?;
                        let n = cur.len() as u64;
                        for row in cur {
                            sum += i64::from(row.get::<_, i32>(0usize));
                        }
                        n
                    };
                    let figure = measure(before);
                    conn.close();
                    Ok((figure, rows, sum))
                })
                .map_err(|e: Error| e.to_string())
                .and_then(|(figure, n, sum)| check(n, sum).map(|()| figure))
        }
        "rows-tokio" | "rows-tokio-raw" => {
            let raw = name == "rows-tokio-raw";
            tokio_side::runtime()
                .block_on(async {
                    let client = tokio_side::connect(env).await?;
                    let st = client.prepare(&sql).await?;
                    let before = reset_peak();
                    let (mut n, mut sum) = (0u64, 0i64);
                    if raw {
                        let rows = client.query_raw(&st, std::iter::empty::<i32>()).await?;
                        futures_util::pin_mut!(rows);
                        while let Some(row) = rows.try_next().await? {
                            sum += i64::from(row.get::<_, i32>(0));
                            n += 1;
                        }
                    } else {
                        let rows = client.query(&st, &[]).await?;
                        for row in &rows {
                            sum += i64::from(row.get::<_, i32>(0));
                            n += 1;
                        }
                    }
                    Ok((measure(before), n, sum))
                })
                .map_err(|e: tokio_postgres::Error| e.to_string())
                .and_then(|(figure, n, sum)| check(n, sum).map(|()| figure))
        }
        _ => Err(format!("unknown probe {name}")),
    }
}

/// Every row read, every value right.
fn check(rows: u64, sum: i64) -> Result<(), String> {
    let n = MEMORY_ROWS as i64;
    if rows != MEMORY_ROWS || sum != n * (n + 1) / 2 {
        return Err(format!("read {rows} rows summing to {sum}"));
    }
    Ok(())
}

/// One variant's figures: peak growth and peak, in bytes, per round.
pub struct RowMemory {
    pub label: &'static str,
    pub growth: Vec<f64>,
    pub peak: Vec<f64>,
    pub error: Option<String>,
}

/// The parent's side: each probe in a child, alternating, `rounds` times; printed as it
/// goes and returned.
pub fn run_memory(rounds: usize) -> Vec<RowMemory> {
    eprintln!("== memory of a {MEMORY_ROWS}-row int4 read, held and streamed (peak RSS growth)");
    let mut out: Vec<RowMemory> = PROBES
        .iter()
        .map(|(_, label)| RowMemory {
            label,
            growth: Vec::new(),
            peak: Vec::new(),
            error: None,
        })
        .collect();
    for r in 0..rounds {
        for (i, (name, label)) in PROBES.iter().enumerate() {
            match child(name) {
                Ok((growth, peak)) => {
                    eprintln!(
                        "   round {} {label:<36} {:>8.1} MiB growth, {:>8.1} MiB peak RSS",
                        r + 1,
                        growth / MIB,
                        peak / MIB
                    );
                    out[i].growth.push(growth);
                    out[i].peak.push(peak);
                }
                Err(e) => {
                    eprintln!("   round {} {label}: failed: {e}", r + 1);
                    out[i].error = Some(e);
                }
            }
        }
    }
    out
}

const MIB: f64 = 1024.0 * 1024.0;

/// The summary lines, medians in MiB.
pub fn print_summary(results: &[RowMemory]) {
    for m in results {
        match &m.error {
            Some(e) => eprintln!("   {}: {e}", m.label),
            None => {
                let g = Spread::of(m.growth.iter().copied());
                let p = Spread::of(m.peak.iter().copied());
                eprintln!(
                    "   memory, {MEMORY_ROWS} int4 rows, {:<36} {:>7.1} MiB growth ({:.1}–{:.1}), \
                     {:.1} MiB peak RSS",
                    m.label,
                    g.median / MIB,
                    g.min / MIB,
                    g.max / MIB,
                    p.median / MIB
                );
            }
        }
    }
}

/// Runs `--probe name` in a child and reads its two figures.
fn child(name: &str) -> Result<(f64, f64), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = std::process::Command::new(exe)
        .args(["--probe", name])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(str::parse::<f64>);
    match (it.next(), it.next()) {
        (Some(Ok(g)), Some(Ok(p))) => Ok((g, p)),
        _ => Err(format!("probe {name} printed {text:?}")),
    }
}
