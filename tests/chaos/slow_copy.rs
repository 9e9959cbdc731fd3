//! Scenario 5: a slow link (1 Mbit/s each way, tc tbf) under a large COPY in and a large
//! COPY out at once, with momoko's default keepalives and `tcp_user_timeout`: both
//! complete with every row, the client's memory stays bounded, and no timeout fires on a
//! link that is slow but alive.

use super::*;

/// This process's resident set size now, in bytes (`VmRSS` of /proc/self/status).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
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

#[test]
fn a_large_copy_each_way_over_a_one_megabit_link_completes_in_bounded_memory() {
    let Some(net) = host() else { return };
    let net = Rc::new(net);
    // 50 MB each way in the full run (about 7 minutes at 1 Mbit/s: both directions at
    // once, each with a token bucket of its own); 2 MB each way (about 17 s) in the short.
    let size: u64 = if full() { 50_000_000 } else { 2_000_000 };
    let rows = size / ROW as u64;
    // No keyword: the defaults (keepalives 15/5/3, tcp_user_timeout 30 s) must not cut a
    // link that is slow but alive.
    let dsn = net.dsn();
    let n = net.clone();
    run_for(if full() { 900 } else { 120 }, async move {
        let net = n;
        let (a, b) = (
            momoko::connect(&dsn).await.unwrap(),
            momoko::connect(&dsn).await.unwrap(),
        );
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
        let expected: i64 = a
            .execute(
                "SELECT sum(length(id::text) + length(pad) + 2)::bigint FROM chaos_copy_out",
                (),
            )
            .await
            .unwrap()
            .fetchone()
            .unwrap()
            .get(0);
        net.apply(Fault::RateKbit(1000)).unwrap();
        let before = rss();
        let peak = Rc::new(std::cell::Cell::new(before));
        let sampling = Rc::new(std::cell::Cell::new(true));
        let sampler = {
            let (peak, sampling) = (peak.clone(), sampling.clone());
            spawn(async move {
                while sampling.get() {
                    peak.set(peak.get().max(rss()));
                    sleep(Duration::from_millis(100)).await;
                }
            })
        };
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
        sampling.set(false);
        sampler.await;
        let growth = peak.get().saturating_sub(before);
        net.heal().unwrap();
        let copied_in = copied_in.expect("the COPY in completes on a slow link");
        let copied_out = copied_out.expect("the COPY out completes on a slow link");
        let count: i64 = a
            .execute("SELECT count(*) FROM chaos_copy_in", ())
            .await
            .unwrap()
            .fetchone()
            .unwrap()
            .get(0);
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
             no keyword; the process's RSS grew by {:.1} MB at most during them",
            size / 1_000_000,
            in_took.as_secs_f64(),
            rate(in_took),
            size / 1_000_000,
            out_took.as_secs_f64(),
            rate(out_took),
            growth as f64 / 1e6
        );
        assert_eq!((copied_in, copied_out), (rows, rows));
        assert_eq!(count as u64, rows);
        assert_eq!(received.get(), expected as u64);
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
        // Streamed both ways: the COPY in pulls a 64 kB chunk when the socket takes one,
        // the COPY out hands each CopyData to the sink. 16 MB allows the other tests that
        // run in this process meanwhile; a client holding the data whole would grow by
        // 100 MB in the full run.
        assert!(growth < 16_000_000, "RSS grew by {growth} bytes");
        for c in [&a, &b] {
            c.execute("SELECT 1", ())
                .await
                .expect("the connection is still live");
            c.close();
        }
    });
    finish(Rc::try_unwrap(net).unwrap());
}
