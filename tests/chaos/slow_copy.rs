//! Scenario 5: a slow link (1 Mbit/s each way, tc tbf) under a large COPY in and a large
//! COPY out at once, with momoko's default keepalives and `tcp_user_timeout`: both
//! complete with every row, the client's memory stays bounded, and no timeout fires on a
//! link that is slow but alive.
//!
//! The client runs in a process of its own (this test binary again, running only
//! [`copy_client`]): the other scenarios run in this process at the same time, and their
//! allocations (a 100 000-row result, a pool per test, an allocator arena per thread)
//! would be counted as the COPY's. Its peak resident size (`VmHWM`) against its size once
//! connected is the COPY's memory.

use super::*;

/// This process's resident set size now (`VmRSS`) or at its peak (`VmHWM`), in bytes.
fn memory(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("the field is in /proc/self/status");
    kb * 1024
}

/// One COPY text row of `ROW` bytes: the id, a tab, padding, a newline.
const ROW: usize = 1000;

fn row(id: u64) -> Vec<u8> {
    let mut r = format!("{id}\t").into_bytes();
    r.resize(ROW - 1, b'x');
    r.push(b'\n');
    r
}

/// Where the parent tells the client process which server to copy with, and how much.
const DSN_VAR: &str = "MOMOKO_CHAOS_COPY_DSN";
const ROWS_VAR: &str = "MOMOKO_CHAOS_COPY_ROWS";

/// The client of scenario 5, run by the test below in a process of its own (ignored in a
/// plain run): a COPY in of the rows and a COPY out of `chaos_copy_out` at once on two
/// connections, then one line of figures for the parent, which checks them.
#[test]
#[ignore = "the client process of scenario 5, started by its test"]
fn copy_client() {
    let (Ok(dsn), Ok(rows)) = (std::env::var(DSN_VAR), std::env::var(ROWS_VAR)) else {
        eprintln!("run by a_large_copy_each_way_over_a_one_megabit_link_… only");
        return;
    };
    let rows: u64 = rows.parse().unwrap();
    run_for(900, async move {
        let (a, b) = (
            momoko::connect(&dsn).await.unwrap(),
            momoko::connect(&dsn).await.unwrap(),
        );
        let before = memory("VmRSS:");
        // The rows are made as the socket takes them, 64 rows (64 kB) a chunk.
        let chunks = (0..rows.div_ceil(64)).map(move |c| {
            let mut chunk = Vec::with_capacity(64 * ROW);
            for id in c * 64 + 1..=((c + 1) * 64).min(rows) {
                chunk.extend(row(id));
            }
            chunk
        });
        let copy_in = spawn(timed(
            a.copy_in_chunks("COPY chaos_copy_in FROM STDIN", chunks),
        ));
        let received = Rc::new(std::cell::Cell::new(0u64));
        let r = received.clone();
        let copy_out = spawn(timed(
            b.copy_out("COPY chaos_copy_out TO STDOUT", move |data: &[u8]| {
                r.set(r.get() + data.len() as u64)
            }),
        ));
        let (in_took, copied_in) = copy_in.await;
        let (out_took, copied_out) = copy_out.await;
        let peak = memory("VmHWM:");
        let fate = |r: Result<u64, momoko::Error>| match r {
            Ok(n) => n.to_string(),
            Err(e) => format!("error {:?}: {e}", e.kind()).replace('|', "/"),
        };
        for c in [&a, &b] {
            c.execute("SELECT 1", ())
                .await
                .expect("the connection is still live");
            c.close();
        }
        println!(
            "chaos-copy|{}|{}|{}|{}|{}|{}",
            fate(copied_in),
            in_took.as_millis(),
            fate(copied_out),
            out_took.as_millis(),
            received.get(),
            peak.saturating_sub(before)
        );
    });
}

/// Runs [`copy_client`] in a process of its own and returns its line of figures, split.
/// Waits at most `within`, then kills it.
fn run_copy_client(dsn: &str, rows: u64, within: Duration) -> Vec<String> {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "slow_copy::copy_client",
            "--ignored",
            "--nocapture",
        ])
        .args(["--test-threads", "1"])
        .env(DSN_VAR, dsn)
        .env(ROWS_VAR, rows.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the client process starts");
    let deadline = Instant::now() + within;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the COPY client did not end within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the COPY client failed: {text}");
    text.lines()
        // libtest prints "test slow_copy::copy_client ... " before the test's own output.
        .find_map(|l| l.split_once("chaos-copy|").map(|(_, f)| f))
        .unwrap_or_else(|| panic!("no figures from the COPY client: {text}"))
        .split('|')
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_large_copy_each_way_over_a_one_megabit_link_completes_in_bounded_memory() {
    let Some(net) = host() else { return };
    // 50 MB each way in the full run (about 7.5 minutes at 1 Mbit/s: both directions at
    // once, each with a token bucket of its own); 1 MB each way (about 9 s) in the short,
    // which must leave room in make test's minute and a half for the other scenarios.
    let size: u64 = if full() { 50_000_000 } else { 1_000_000 };
    let rows = size / ROW as u64;
    // No keyword: the defaults (keepalives 15/5/3, tcp_user_timeout 30 s) must not cut a
    // link that is slow but alive.
    let dsn = net.dsn();
    let d = dsn.clone();
    let expected: i64 = run_for(60, async move {
        let a = momoko::connect(&d).await.unwrap();
        for t in ["chaos_copy_in", "chaos_copy_out"] {
            a.execute(&format!("CREATE TABLE {t} (id bigint, pad text)"), ())
                .await
                .unwrap();
        }
        // Made on the server: no byte of it crosses the link before the COPY out.
        a.execute(
            &format!(
                "INSERT INTO chaos_copy_out SELECT g, repeat('x', {}) \
                 FROM generate_series(1, {rows}) g",
                ROW - 8
            ),
            (),
        )
        .await
        .unwrap();
        // The text COPY out sends: id, tab, padding, newline per row.
        let bytes = a
            .execute(
                "SELECT sum(length(id::text) + length(pad) + 2)::bigint FROM chaos_copy_out",
                (),
            )
            .await
            .unwrap()
            .fetchone()
            .unwrap()
            .get(0);
        a.close();
        bytes
    });
    net.apply(Fault::RateKbit(1000)).unwrap();
    let within = Duration::from_secs(if full() { 900 } else { 120 });
    let f = run_copy_client(&dsn, rows, within);
    net.heal().unwrap();
    let ms = |s: &str| Duration::from_millis(s.parse().unwrap());
    let (copied_in, in_took, copied_out, out_took) = (&f[0], ms(&f[1]), &f[2], ms(&f[3]));
    let (received, growth): (u64, u64) = (f[4].parse().unwrap(), f[5].parse().unwrap());
    let d = dsn.clone();
    let count: i64 = run_for(30, async move {
        let a = momoko::connect(&d).await.unwrap();
        let n = a
            .execute("SELECT count(*) FROM chaos_copy_in", ())
            .await
            .unwrap()
            .fetchone()
            .unwrap()
            .get(0);
        a.close();
        n
    });
    let rate = |took: Duration| size as f64 * 8.0 / took.as_secs_f64() / 1e6;
    table_row(
        &format!("5 COPY {} MB each way at 1 Mbit/s", size / 1_000_000),
        2,
        0,
        0,
        0,
        None,
        None,
    );
    println!(
        "scenario 5: {} MB in ({copied_in} rows) in {:.1} s ({:.2} Mbit/s) and {} MB out \
         ({copied_out} rows) in {:.1} s ({:.2} Mbit/s) at once over 1 Mbit/s each way, \
         no keyword; the client process's peak resident size was {:.1} MB above its size \
         once connected",
        size / 1_000_000,
        in_took.as_secs_f64(),
        rate(in_took),
        size / 1_000_000,
        out_took.as_secs_f64(),
        rate(out_took),
        growth as f64 / 1e6
    );
    // Both complete, every row: no timeout fired on the slow link.
    assert_eq!(
        (copied_in.as_str(), copied_out.as_str()),
        (&*rows.to_string(), &*rows.to_string())
    );
    assert_eq!(count as u64, rows);
    assert_eq!(received, expected as u64);
    // The limit held (no faster than 1 Mbit/s plus the bucket's 16 kB burst and
    // measurement slack) ...
    assert!(
        rate(in_took) < 1.15 && rate(out_took) < 1.15,
        "{in_took:?} {out_took:?}"
    );
    // ... and the link, slow as it is, carried on near its rate: nothing stalled.
    assert!(
        rate(in_took) > 0.5 && rate(out_took) > 0.5,
        "{in_took:?} {out_took:?}"
    );
    // Streamed both ways: the COPY in pulls a 64 kB chunk when the socket takes one, the
    // COPY out hands each CopyData to the sink. 8 MB is room for the allocator and the
    // loop; a client holding the data whole would grow by 100 MB in the full run (the
    // short run's 2 MB cannot tell the two apart, only the full one can).
    assert!(growth < 8_000_000, "the client grew by {growth} bytes");
    finish(net);
}
