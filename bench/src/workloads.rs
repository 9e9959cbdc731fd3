//! The workloads (W1–W6), who runs each, and the targets they are judged by. The
//! first contender of every workload is the momoko variant its ratios are taken for.

use std::cell::OnceCell;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use crate::env::Env;
use crate::measure::Sample;
use crate::momoko_side::{self as mk, RoundTrip};
use crate::{floor, pgbench, replication, tokio_side as tp};

/// Requests outstanding on one connection in W2 and W3's callers.
pub const IN_FLIGHT: u64 = 100;
/// W3's connections.
pub const POOL_SIZE: usize = 4;
/// W3's pipelined variant: operations per busy connection.
pub const PIPELINE_DEPTH: usize = 25;

/// W4's second result: 10 columns of mixed types, one NULL in ten in the last; `$N` rows.
pub const MIXED_SQL: &str = "SELECT (i % 30000)::int2 AS small, i AS int, \
     i::int8 * 1000003 AS big, (i / 3.0)::float4 AS real, (i / 7.0)::float8 AS dbl, \
     i % 2 = 0 AS flag, 'name-' || i AS name, repeat('x', 20) || i AS label, \
     decode(lpad(to_hex(i), 8, '0'), 'hex') AS bin, \
     (CASE WHEN i % 10 = 0 THEN NULL ELSE (i * 7)::text END)::varchar AS maybe \
     FROM generate_series(1, $N) AS i";

/// W5's table: unlogged, so the server's WAL is not what is measured.
pub const CREATE_TABLE: &str = "CREATE UNLOGGED TABLE IF NOT EXISTS momoko_bench_insert \
     (id int4, name text, score float8)";
pub const DROP_TABLE: &str = "DROP TABLE IF EXISTS momoko_bench_insert";
/// R1's publication and table.
pub const DROP_REPLICATION: &str =
    "DROP PUBLICATION IF EXISTS momoko_bench_repl_pub; DROP TABLE IF EXISTS momoko_bench_repl";
pub const TRUNCATE: &str = "TRUNCATE momoko_bench_insert";
pub const COPY_SQL: &str = "COPY momoko_bench_insert (id, name, score) FROM STDIN";

/// The TLS protocol and cipher of the asking connection, or `plain text`.
pub const TLS_STAT_SQL: &str = "SELECT coalesce((SELECT CASE WHEN ssl THEN version || ' ' || \
     cipher END FROM pg_stat_ssl WHERE pid = pg_backend_pid()), 'plain text')";

/// Which protocol a contender speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// Query messages, text results.
    Simple,
    /// A statement prepared once, then Bind/Execute/Sync, binary results.
    Prepared,
}

/// A contender of one workload.
pub struct Contender {
    pub name: &'static str,
    pub run: Box<dyn Fn() -> Result<Sample, String>>,
}

/// One workload: a table in the report.
pub struct Workload {
    pub id: &'static str,
    pub title: &'static str,
    /// What one op is.
    pub unit: &'static str,
    pub note: String,
    pub contenders: Vec<Contender>,
}

/// Which figure a target compares.
#[derive(Debug, Clone, Copy)]
pub enum Metric {
    /// Throughput ratio, must be at least the bound.
    Rate,
    /// Client CPU per op ratio, must be at most the bound.
    Cpu,
}

/// A target of the issue: `num ÷ den` of `metric` in `workload`, median of the rounds.
pub struct Target {
    pub text: &'static str,
    pub workload: &'static str,
    pub num: &'static str,
    pub den: &'static str,
    pub metric: Metric,
    pub bound: f64,
}

macro_rules! contender {
    ($name:expr, $env:ident, $body:expr) => {{
        let $env = $env.clone();
        Contender {
            name: $name,
            run: Box::new(move || $body),
        }
    }};
}

fn pg(
    env: &Env,
    name: &'static str,
    script: String,
    stmts: u64,
    mode: &'static str,
    (clients, threads): (u32, u32),
) -> Contender {
    let env = env.clone();
    let r = pgbench::Run {
        script,
        stmts,
        mode,
        clients,
        threads,
    };
    Contender {
        name,
        run: Box::new(move || pgbench::run(&env, &r)),
    }
}

/// W5's data: the INSERT statements and the COPY chunks.
type InsertData = (Arc<Vec<String>>, Arc<Vec<Bytes>>);

/// W5's data: `rows` rows as multi-row INSERTs of 1,000 rows, and as COPY text in 64 KiB
/// chunks. Built once, outside every timed part, and shared by every contender.
pub fn insert_data(rows: u64) -> InsertData {
    let mut stmts = Vec::new();
    let mut i = 0u64;
    while i < rows {
        let end = (i + 1000).min(rows);
        let mut s = String::from("INSERT INTO momoko_bench_insert (id, name, score) VALUES ");
        for k in i..end {
            if k > i {
                s.push(',');
            }
            s.push_str(&format!("({k},'name-{k}',{})", k as f64 * 0.5));
        }
        stmts.push(s);
        i = end;
    }
    let mut text = Vec::new();
    for k in 0..rows {
        text.extend_from_slice(format!("{k}\tname-{k}\t{}\n", k as f64 * 0.5).as_bytes());
    }
    let text = Bytes::from(text);
    let chunks = (0..text.len())
        .step_by(64 * 1024)
        .map(|s| text.slice(s..(s + 64 * 1024).min(text.len())))
        .collect();
    (Arc::new(stmts), Arc::new(chunks))
}

/// Every workload, in report order.
pub fn all(env: &Env) -> Vec<Workload> {
    let s = env.sizes;
    let secs = s.pgbench_secs;
    let mut w = Vec::new();
    for (proto, id, title, mode) in [
        (
            Proto::Simple,
            "W1s",
            "W1 sequential SELECT 1, simple protocol",
            "simple",
        ),
        (
            Proto::Prepared,
            "W1p",
            "W1 sequential SELECT 1, prepared",
            "prepared",
        ),
    ] {
        w.push(Workload {
            id,
            title,
            unit: "queries",
            note: format!(
                "{} round trips one after the other on one connection; pgbench `-M {mode} -c 1 -j 1 -T {secs}`.",
                s.w1
            ),
            contenders: vec![
                contender!("momoko", env, mk::w1(&env, proto)),
                contender!("tokio-postgres", env, tp::w1(&env, proto)),
                contender!("floor", env, floor::w1(&env, proto)),
                pg(env, "pgbench", pgbench::select1(), 1, mode, (1, 1)),
            ],
        });
    }
    for (proto, id, title) in [
        (
            Proto::Simple,
            "W2s",
            "W2 100 in flight on one connection, simple protocol",
        ),
        (
            Proto::Prepared,
            "W2p",
            "W2 100 in flight on one connection, prepared",
        ),
    ] {
        w.push(Workload {
            id,
            title,
            unit: "queries",
            note: format!(
                "{} `SELECT 1`, {IN_FLIGHT} callers on one connection, each query with its own \
                 Sync (pipelined, not batched). pgbench has no equivalent (no Sync inside a \
                 pipeline before PostgreSQL 17).",
                s.w2
            ),
            contenders: vec![
                contender!("momoko", env, mk::w2(&env, proto)),
                contender!("tokio-postgres", env, tp::w2(&env, proto)),
                contender!("floor", env, floor::w2(&env, proto)),
            ],
        });
    }
    let reps = s.w2b;
    w.push(Workload {
        id: "W2b",
        title: "W2b 100 statements per round trip",
        unit: "statements",
        note: format!(
            "{reps} round trips of 100 `SELECT 1` on one connection. momoko `batch()` (one Sync, \
             unnamed Parse/Bind/Describe/Execute each) and `transaction()` (BEGIN, 100 Query \
             messages, COMMIT in one write); the baseline sends BEGIN, each statement and COMMIT \
             one round trip at a time ({} groups). tokio-postgres has no one-Sync pipeline: its \
             one-round-trip form is one simple Query of 100 statements. The floor writes \
             `batch()`'s messages. pgbench `\\startpipeline` … `\\endpipeline` around 100 \
             statements, `-c 1 -j 1`.",
            reps / 10
        ),
        contenders: vec![
            contender!("momoko batch", env, mk::w2b(&env, RoundTrip::Batch, reps)),
            contender!(
                "momoko transaction",
                env,
                mk::w2b(&env, RoundTrip::Transaction, reps)
            ),
            contender!(
                "momoko one at a time",
                env,
                mk::w2b(&env, RoundTrip::OneAtATime, (reps / 10).max(1))
            ),
            contender!("tokio-postgres", env, tp::w2b(&env, reps)),
            contender!("floor", env, floor::w2b(&env, reps)),
            pg(
                env,
                "pgbench extended",
                pgbench::pipeline100(),
                100,
                "extended",
                (1, 1),
            ),
            pg(
                env,
                "pgbench prepared",
                pgbench::pipeline100(),
                100,
                "prepared",
                (1, 1),
            ),
        ],
    });
    for (proto, id, title, mode) in [
        (
            Proto::Simple,
            "W3s",
            "W3 pool of 4, simple protocol",
            "simple",
        ),
        (Proto::Prepared, "W3p", "W3 pool of 4, prepared", "prepared"),
    ] {
        w.push(Workload {
            id,
            title,
            unit: "queries",
            note: format!(
                "{} `SELECT 1` from {IN_FLIGHT} concurrent callers of a momoko pool of \
                 {POOL_SIZE} (`pool.{}`; no pipelining, so at most {POOL_SIZE} in flight, as in \
                 Momoko); tokio-postgres: {POOL_SIZE} connections with one caller each; pgbench \
                 `-M {mode} -c 4 -j 2 -T {secs}`.",
                s.w3,
                if proto == Proto::Simple {
                    "execute"
                } else {
                    "query, through its statement cache"
                }
            ),
            contenders: vec![
                contender!("momoko", env, mk::w3(&env, proto, 1)),
                contender!("tokio-postgres", env, tp::w3(&env, proto, 1)),
                pg(env, "pgbench -c 4", pgbench::select1(), 1, mode, (4, 2)),
            ],
        });
    }
    w.push(Workload {
        id: "W3d",
        title: "W3 pool of 4, pipelined (pipeline_depth 25), prepared",
        unit: "queries",
        note: format!(
            "As W3p, with the pool's `pipeline_depth({PIPELINE_DEPTH})`: up to {PIPELINE_DEPTH} \
             operations per busy connection; tokio-postgres: {PIPELINE_DEPTH} callers on each \
             of its {POOL_SIZE} connections."
        ),
        contenders: vec![
            contender!("momoko", env, mk::w3(&env, Proto::Prepared, PIPELINE_DEPTH)),
            contender!(
                "tokio-postgres",
                env,
                tp::w3(&env, Proto::Prepared, PIPELINE_DEPTH as u64)
            ),
        ],
    });
    // pgbench's tables, made on first use (not at all when W3t is not selected).
    let accounts: Rc<OnceCell<Result<(), String>>> = Rc::default();
    let init = {
        let (env, accounts) = (env.clone(), accounts.clone());
        Rc::new(move || accounts.get_or_init(|| pgbench::init(&env)).clone())
    };
    let pg_select_only = pg(
        env,
        "pgbench -j 2 -c 4 -S",
        pgbench::select_only(),
        1,
        "prepared",
        (4, 2),
    );
    w.push(Workload {
        id: "W3t",
        title: "W3t 2 threads × 2 connections, select-only",
        unit: "queries",
        note: format!(
            "{} of pgbench's select-only transaction (`SELECT abalance FROM pgbench_accounts \
             WHERE aid = $1`, a random aid of 100,000, `pgbench -i -s 1`): momoko on 2 threads, \
             each with its own `IoLoop` and a pool of 2 running `pool.query` from 2 callers \
             (examples/multi_loop.rs's pattern); pgbench `-M prepared -j 2 -c 4 -T {secs}`.",
            s.w3
        ),
        contenders: vec![
            {
                let (env, init) = (env.clone(), init.clone());
                Contender {
                    name: "momoko",
                    run: Box::new(move || {
                        init()?;
                        mk::w3t(&env, 2, 2)
                    }),
                }
            },
            Contender {
                name: pg_select_only.name,
                run: Box::new(move || {
                    init()?;
                    (pg_select_only.run)()
                }),
            },
        ],
    });
    w.push(Workload {
        id: "W4a",
        title: "W4 generate_series, one int4 column",
        unit: "rows",
        note: format!(
            "`SELECT i FROM generate_series(1, {})`, every value read as an integer. momoko \
             prepared = `execute_prepared` (binary); momoko execute = text results; momoko \
             query = `query` through the statement cache (binary); tokio-postgres prepared `query`; the floor frames the rows and decodes nothing.",
            s.w4_series
        ),
        contenders: vec![
            contender!("momoko prepared", env, mk::w4_series(&env, Proto::Prepared)),
            contender!("momoko execute", env, mk::w4_series(&env, Proto::Simple)),
            contender!("momoko query", env, mk::w4_series_query(&env)),
            contender!("tokio-postgres", env, tp::w4_series(&env)),
            contender!("floor", env, floor::w4_series(&env)),
        ],
    });
    w.push(Workload {
        id: "W4s",
        title: "W4 generate_series, streamed",
        unit: "rows",
        note: format!(
            "W4a's `SELECT i FROM generate_series(1, {})` read as the rows arrive, none kept: \
             momoko `stream` (statement cache, binary), tokio-postgres `query_raw`; the floor \
             frames the rows as they come and decodes nothing.",
            s.w4_series
        ),
        contenders: vec![
            contender!("momoko stream", env, crate::momoko_side::w4_stream(&env)),
            contender!("tokio-postgres", env, crate::streamed::tokio_raw(&env)),
            contender!("floor", env, floor::w4_series(&env)),
        ],
    });
    w.push(Workload {
        id: "W4b",
        title: "W4 10 mixed-type columns",
        unit: "rows",
        note: format!(
            "{} rows of int2, int4, int8, float4, float8, bool, two text, bytea and a nullable \
             varchar, every value decoded into its Rust type (text and bytea into `String` and \
             `Vec<u8>` on both clients).",
            s.w4_mixed
        ),
        contenders: vec![
            contender!("momoko prepared", env, mk::w4_mixed(&env, Proto::Prepared)),
            contender!("momoko execute", env, mk::w4_mixed(&env, Proto::Simple)),
            contender!("tokio-postgres", env, tp::w4_mixed(&env)),
            contender!("floor", env, floor::w4_mixed(&env)),
        ],
    });
    // Built on first use (not at all when W5 is not selected), outside every timed part.
    let data: Rc<OnceCell<InsertData>> = Rc::default();
    let rows = s.w5;
    let stmts = {
        let d = data.clone();
        move || d.get_or_init(|| insert_data(rows)).0.clone()
    };
    let chunks = {
        let d = data.clone();
        move || d.get_or_init(|| insert_data(rows)).1.clone()
    };
    let (a, b, c) = (stmts.clone(), stmts.clone(), stmts);
    w.push(Workload {
        id: "W5i",
        title: "W5 bulk insert, multi-row INSERT",
        unit: "rows",
        note: format!(
            "{rows} rows (int4, text, float8) into an unlogged table as {} INSERTs of 1,000 \
             rows, one after the other, simple protocol.",
            rows.div_ceil(1000)
        ),
        contenders: vec![
            contender!("momoko", env, mk::w5_insert(&env, a(), rows)),
            contender!("tokio-postgres", env, tp::w5_insert(&env, b(), rows)),
            contender!("floor", env, floor::w5_insert(&env, c(), rows)),
        ],
    });
    let (a, b, c) = (chunks.clone(), chunks.clone(), chunks);
    w.push(Workload {
        id: "W5c",
        title: "W5 bulk insert, COPY FROM STDIN",
        unit: "rows",
        note: format!(
            "The same {rows} rows as COPY text, in 64 KiB chunks: momoko `copy_in_chunks`, \
             tokio-postgres `copy_in` sink, the floor's CopyData messages."
        ),
        contenders: vec![
            contender!("momoko", env, mk::w5_copy(&env, a(), rows)),
            contender!("tokio-postgres", env, tp::w5_copy(&env, b(), rows)),
            contender!("floor", env, floor::w5_copy(&env, c(), rows)),
        ],
    });
    let n = s.w6;
    let mut w6 = |id, title, dsn: Option<String>, n: u64, with_floor: bool| {
        let Some(dsn) = dsn else { return };
        let (d1, d2) = (dsn.clone(), dsn);
        let mut contenders = vec![
            Contender {
                name: "momoko",
                run: Box::new(move || mk::w6(&d1, n)),
            },
            Contender {
                name: "tokio-postgres",
                run: Box::new(move || tp::w6(&d2, n)),
            },
        ];
        if with_floor {
            contenders.push(contender!("floor", env, floor::w6(&env, n)));
        }
        w.push(Workload {
            id,
            title,
            unit: "connections",
            note: format!(
                "{n} connections opened (logged in, ReadyForQuery) and closed, one at a time."
            ),
            contenders,
        });
    };
    w6(
        "W6t",
        "W6 connections, trust",
        Some(env.dsn.clone()),
        n,
        true,
    );
    w6("W6m", "W6 connections, MD5", env.dsn_md5.clone(), n, false);
    w6(
        "W6s",
        "W6 connections, SCRAM-SHA-256",
        env.dsn_scram.clone(),
        (n / 3).max(1),
        false,
    );
    let rows = s.repl;
    w.push(Workload {
        id: "R1",
        title: "R1 logical replication, pgoutput",
        unit: "changes",
        note: format!(
            "{rows} rows (int4, text, float8) committed in {} transactions of 1,000, then read \
             from a new slot with pgoutput (proto_version 1) up to the last commit, connect \
             included. momoko decodes every change, reads every column into its Rust type and \
             confirms each transaction; pg_recvlogical (libpq) writes the bytes to /dev/null. \
             The server decodes the same WAL for both.",
            rows.div_ceil(replication::TXN_ROWS)
        ),
        contenders: vec![
            contender!("momoko", env, replication::momoko(&env, rows)),
            contender!(
                "pg_recvlogical",
                env,
                replication::pg_recvlogical(&env, rows)
            ),
        ],
    });
    w
}

/// The prefix of the TLS workloads' ids: `TLS-` and the plain workload's id.
pub const TLS_PREFIX: &str = "TLS-";

/// Every TLS workload's id, and the TLS memory figure's.
pub const TLS_IDS: [&str; 6] = [
    "TLS-W1s", "TLS-W1p", "TLS-W2p", "TLS-W4a", "TLS-W4b", "TLS-mem",
];

/// Issue 13's workloads over TLS: W1 (both protocols), W2 prepared and W4 again on `tls`
/// (the [`Env::over_tls`] environment), momoko against tokio-postgres on
/// tokio-postgres-rustls, both on rustls 0.23 with the ring provider, verify-full.
pub fn over_tls(tls: &Env) -> Vec<Workload> {
    let s = tls.sizes;
    let env = tls;
    let same = "Over TLS (verify-full, rustls 0.23 with the ring provider on both sides: \
                momoko's own, tokio-postgres through tokio-postgres-rustls).";
    let mut w = Vec::new();
    for (proto, id, title) in [
        (
            Proto::Simple,
            "TLS-W1s",
            "W1 sequential SELECT 1, simple protocol, over TLS",
        ),
        (
            Proto::Prepared,
            "TLS-W1p",
            "W1 sequential SELECT 1, prepared, over TLS",
        ),
    ] {
        w.push(Workload {
            id,
            title,
            unit: "queries",
            note: format!(
                "{same} {} round trips one after the other on one connection.",
                s.w1
            ),
            contenders: vec![
                contender!("momoko", env, mk::w1(&env, proto)),
                contender!("tokio-postgres", env, tp::w1(&env, proto)),
            ],
        });
    }
    w.push(Workload {
        id: "TLS-W2p",
        title: "W2 100 in flight on one connection, prepared, over TLS",
        unit: "queries",
        note: format!(
            "{same} {} `SELECT 1`, {IN_FLIGHT} callers on one connection, each query with its \
             own Sync.",
            s.w2
        ),
        contenders: vec![
            contender!("momoko", env, mk::w2(&env, Proto::Prepared)),
            contender!("tokio-postgres", env, tp::w2(&env, Proto::Prepared)),
        ],
    });
    w.push(Workload {
        id: "TLS-W4a",
        title: "W4 generate_series, one int4 column, over TLS",
        unit: "rows",
        note: format!(
            "{same} `SELECT i FROM generate_series(1, {})`, as W4a.",
            s.w4_series
        ),
        contenders: vec![
            contender!("momoko prepared", env, mk::w4_series(&env, Proto::Prepared)),
            contender!("momoko execute", env, mk::w4_series(&env, Proto::Simple)),
            contender!("tokio-postgres", env, tp::w4_series(&env)),
        ],
    });
    w.push(Workload {
        id: "TLS-W4b",
        title: "W4 10 mixed-type columns, over TLS",
        unit: "rows",
        note: format!("{same} {} rows of W4b's ten columns, as W4b.", s.w4_mixed),
        contenders: vec![
            contender!("momoko prepared", env, mk::w4_mixed(&env, Proto::Prepared)),
            contender!("momoko execute", env, mk::w4_mixed(&env, Proto::Simple)),
            contender!("tokio-postgres", env, tp::w4_mixed(&env)),
        ],
    });
    w
}

/// The targets.
pub fn targets() -> Vec<Target> {
    use Metric::{Cpu, Rate};
    let t = |text, workload, num, den, metric, bound| Target {
        text,
        workload,
        num,
        den,
        metric,
        bound,
    };
    let tp = "tokio-postgres";
    // Issue 17's table, row by row.
    vec![
        t(
            "W1 simple ≥ 1.05 × tokio-postgres",
            "W1s",
            "momoko",
            tp,
            Rate,
            1.05,
        ),
        t(
            "W1 simple CPU/query ≤ 0.8 × tokio-postgres",
            "W1s",
            "momoko",
            tp,
            Cpu,
            0.8,
        ),
        t(
            "W2 simple ≥ 1.05 × tokio-postgres",
            "W2s",
            "momoko",
            tp,
            Rate,
            1.05,
        ),
        t(
            "W2 prepared ≥ 1.15 × tokio-postgres",
            "W2p",
            "momoko",
            tp,
            Rate,
            1.15,
        ),
        t(
            "W2 prepared CPU/query ≤ 0.6 × tokio-postgres",
            "W2p",
            "momoko",
            tp,
            Cpu,
            0.6,
        ),
        t(
            "W4 execute rows/s ≥ 1.1 × tokio-postgres",
            "W4a",
            "momoko execute",
            tp,
            Rate,
            1.1,
        ),
        t(
            "W4 execute CPU/row ≤ 0.7 × tokio-postgres",
            "W4a",
            "momoko execute",
            tp,
            Cpu,
            0.7,
        ),
        t(
            "W4 query rows/s ≥ 1.2 × tokio-postgres",
            "W4a",
            "momoko query",
            tp,
            Rate,
            1.2,
        ),
        t(
            "W1 simple over TLS ≥ 1.0 × tokio-postgres",
            "TLS-W1s",
            "momoko",
            tp,
            Rate,
            1.0,
        ),
        t(
            "W1 prepared over TLS ≥ 1.0 × tokio-postgres",
            "TLS-W1p",
            "momoko",
            tp,
            Rate,
            1.0,
        ),
        t(
            "W2 prepared over TLS ≥ 1.0 × tokio-postgres",
            "TLS-W2p",
            "momoko",
            tp,
            Rate,
            1.0,
        ),
        t(
            "W4 over TLS ≥ 1.0 × tokio-postgres",
            "TLS-W4a",
            "momoko execute",
            tp,
            Rate,
            1.0,
        ),
        t(
            "R1 replication ≥ 1.0 × pg_recvlogical",
            "R1",
            "momoko",
            "pg_recvlogical",
            Rate,
            1.0,
        ),
        t(
            "R1 CPU/change ≤ 1.5 × pg_recvlogical (which decodes nothing)",
            "R1",
            "momoko",
            "pg_recvlogical",
            Cpu,
            1.5,
        ),
        t(
            "W3t 2 threads × 2 connections ≥ 0.9 × pgbench -j 2 -c 4 -S",
            "W3t",
            "momoko",
            "pgbench -j 2 -c 4 -S",
            Rate,
            0.9,
        ),
    ]
}
