//! Parameters that cannot inject: a generated corpus of hostile strings and byte strings
//! round-trips exactly through `SELECT %s` (client-side rendering, as psycopg2 does it) with
//! `standard_conforming_strings` on and off, NUL is refused before anything is sent, and a
//! negative number after a minus sign never opens a `--` comment (CVE-2024-1597's shape).
//!
//! The corpus is deterministic (a fixed PRNG seed), so a failure names a reproducible value.

mod common;

use std::time::Duration;

use common::run_for;
use momoko::{Connection, ErrorKind, QuoteContext};

/// Fragments that mean something to SQL's lexer, alone or in combination.
const ATOMS: &[&str] = &[
    "'",
    "''",
    "\\",
    "\\\\",
    "\\'",
    "'\\",
    "E'",
    "e'\\'",
    "$$",
    "$a$",
    "$$'$$",
    "--",
    "/*",
    "*/",
    ";",
    "\"",
    "U&'",
    "U&'\\0041'",
    "\\x41",
    "\\u0041",
    "\\000",
    "%",
    "%s",
    "%%",
    "%(x)s",
    "\n",
    "\r\n",
    "\t",
    "é",
    "💥",
    "\u{2028}",
    "\u{feff}",
    "\u{7f}",
    "\u{1}",
    "' OR '1'='1",
    "'; DROP TABLE t; --",
    "\\'; SELECT 1; --",
    "::text",
    "B'1'",
    "X'ff'",
];

/// A small deterministic PRNG (xorshift64*), so the corpus is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// At least 500 hostile strings, none containing NUL (those are refused; see below).
fn corpus() -> Vec<String> {
    let mut out: Vec<String> = ATOMS.iter().map(|s| (*s).to_owned()).collect();
    // Every ordered pair, and each atom wrapped in text.
    for a in ATOMS {
        for b in ATOMS {
            out.push(format!("{a}{b}"));
        }
        out.push(format!("x{a}y"));
        out.push(format!("{a} {a} {a}"));
    }
    // Random longer combinations.
    let mut rng = Rng(0x6d6f_6d6f_6b6f_0009);
    for _ in 0..300 {
        let n = 3 + rng.below(12);
        out.push((0..n).map(|_| ATOMS[rng.below(ATOMS.len())]).collect());
    }
    // Very long values: quotes and backslashes that must all be doubled.
    out.push("'\\".repeat(50_000));
    out.push("\\".repeat(100_001));
    out.push(format!("{}'; DROP TABLE t; --", "a".repeat(200_000)));
    out.push("💥'".repeat(20_000));
    out.push(String::new());
    out
}

/// Byte strings for bytea: invalid UTF-8 (CVE-2025-1094's lead byte before a quote), NUL,
/// quotes and backslashes.
fn byte_corpus() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        b"a\0b".to_vec(),
        vec![0xc0, b'\''],
        vec![0xc0, b'\\', b'\''],
        vec![0xff, 0xfe, 0xfd],
        vec![0xe2, 0x82],
        b"\\x41".to_vec(),
        b"'; DROP TABLE t; --".to_vec(),
        (0..=255u8).collect(),
        vec![b'\''; 100_000],
    ];
    let mut rng = Rng(0x0062_7974_6561);
    for _ in 0..100 {
        let n = rng.below(64);
        out.push((0..n).map(|_| rng.next() as u8).collect());
    }
    out
}

async fn connect_with(setsession: &[&str]) -> Connection {
    Connection::builder(&common::dsn())
        .setsession(setsession.iter().copied())
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("connect")
}

/// Runs every string of the corpus through `SELECT %s` (all pipelined at once) and checks
/// that each comes back exactly. Returns how many were checked.
async fn round_trip_strings(conn: &Connection) -> usize {
    let corpus = corpus();
    assert!(
        corpus.len() >= 500,
        "the corpus has {} strings",
        corpus.len()
    );
    let futures: Vec<_> = corpus
        .iter()
        .map(|s| conn.execute("SELECT %s", (s.as_str(),)))
        .collect();
    for (s, fut) in corpus.iter().zip(futures) {
        let mut cur = fut
            .await
            .unwrap_or_else(|e| panic!("SELECT %s failed for {:?}: {e}", preview(s)));
        assert_eq!(cur.rowcount(), 1, "{:?}", preview(s));
        let back: String = cur.fetchone().unwrap().get(0);
        assert!(
            back == *s,
            "{:?} came back as {:?}",
            preview(s),
            preview(&back)
        );
    }
    corpus.len()
}

async fn round_trip_bytes(conn: &Connection) -> usize {
    let corpus = byte_corpus();
    let futures: Vec<_> = corpus
        .iter()
        .map(|b| conn.execute("SELECT %s", (b.clone(),)))
        .collect();
    for (b, fut) in corpus.iter().zip(futures) {
        let mut cur = fut.await.expect("SELECT %s with bytes");
        let back: Vec<u8> = cur.fetchone().unwrap().get(0);
        assert_eq!(&back, b);
    }
    corpus.len()
}

fn preview(s: &str) -> String {
    if s.len() > 80 {
        format!(
            "{}… ({} bytes)",
            s.chars().take(40).collect::<String>(),
            s.len()
        )
    } else {
        s.to_owned()
    }
}

async fn scs(conn: &Connection) -> String {
    let mut cur = conn
        .execute("SHOW standard_conforming_strings", ())
        .await
        .unwrap();
    cur.fetchone().unwrap().get(0)
}

#[test]
fn hostile_strings_round_trip_with_standard_conforming_strings_on() {
    run_for(120, async {
        let conn = connect_with(&[]).await;
        assert_eq!(scs(&conn).await, "on");
        assert_eq!(
            conn.parameter("standard_conforming_strings").as_deref(),
            Some("on")
        );
        let n = round_trip_strings(&conn).await;
        let m = round_trip_bytes(&conn).await;
        println!("scs=on: {n} strings and {m} byte strings round-tripped exactly");
    });
}

#[test]
fn hostile_strings_round_trip_with_standard_conforming_strings_set_off() {
    run_for(120, async {
        let conn = connect_with(&[]).await;
        conn.execute("SET standard_conforming_strings = off", ())
            .await
            .unwrap();
        // The server reported the change in a ParameterStatus before the SET completed, so
        // the very next rendering uses the E'' form with doubled backslashes.
        assert_eq!(
            conn.parameter("standard_conforming_strings").as_deref(),
            Some("off")
        );
        assert_eq!(
            conn.mogrify("SELECT %s", ("a\\'b",)).unwrap(),
            "SELECT E'a\\\\''b'"
        );
        assert_eq!(scs(&conn).await, "off");
        let n = round_trip_strings(&conn).await;
        let m = round_trip_bytes(&conn).await;
        println!("scs=off (SET): {n} strings and {m} byte strings round-tripped exactly");
        // And back on: plain quoting again, still exact.
        conn.execute("SET standard_conforming_strings = on", ())
            .await
            .unwrap();
        assert_eq!(
            conn.mogrify("SELECT %s", ("a\\'b",)).unwrap(),
            "SELECT 'a\\''b'"
        );
        round_trip_strings(&conn).await;
    });
}

#[test]
fn hostile_strings_round_trip_with_standard_conforming_strings_off_by_setsession() {
    run_for(120, async {
        let conn = connect_with(&["SET standard_conforming_strings = off"]).await;
        assert_eq!(
            conn.parameter("standard_conforming_strings").as_deref(),
            Some("off")
        );
        assert_eq!(scs(&conn).await, "off");
        let n = round_trip_strings(&conn).await;
        let m = round_trip_bytes(&conn).await;
        println!("scs=off (setsession): {n} strings and {m} byte strings round-tripped exactly");
    });
}

#[test]
fn a_nul_in_a_string_parameter_is_a_usage_error_and_nothing_is_sent() {
    run_for(30, async {
        let conn = connect_with(&[]).await;
        for s in ["\0", "a\0b", "'\0'", "\\\0", "x\0'; DROP TABLE t; --"] {
            let e = conn.execute("SELECT %s", (s,)).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Usage, "{e}");
            assert_eq!(
                e.to_string(),
                "usage error: A string literal cannot contain NUL (0x00) characters."
            );
            let e = conn.mogrify("SELECT %s", (s,)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Usage);
            // NUL inside an array, a map or JSON is refused the same way.
            let e = conn.mogrify("SELECT %s", (vec![s],)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Usage);
        }
        // The connection was never disturbed: nothing reached the server.
        assert_eq!(conn.in_flight(), 0);
        let mut cur = conn.execute("SELECT 1", ()).await.unwrap();
        assert_eq!(cur.fetchone().unwrap().get::<_, i32>(0), 1);
    });
}

#[test]
fn a_negative_number_after_a_minus_never_opens_a_comment() {
    run_for(30, async {
        let conn = connect_with(&[]).await;
        let mut cur = conn.execute("SELECT 1-%s", (-1i32,)).await.unwrap();
        assert_eq!(cur.fetchone().unwrap().get::<_, i32>(0), 2);
        assert_eq!(
            conn.mogrify("SELECT 1-%s", (-1i32,)).unwrap(),
            "SELECT 1- -1"
        );
        let mut cur = conn
            .execute("SELECT (1-%s)::float8", (-1.5f64,))
            .await
            .unwrap();
        assert_eq!(cur.fetchone().unwrap().get::<_, f64>(0), 2.5);
        let mut cur = conn.execute("SELECT 0-%s", (i64::MIN + 1,)).await.unwrap();
        assert_eq!(cur.fetchone().unwrap().get::<_, i64>(0), i64::MAX);
        // CVE-2024-1597: a negative number opening `--`, then a string on the same line
        // closing the quote the comment swallowed. Here both stay values.
        let mut cur = conn
            .execute("SELECT 1-%s, %s", (-1i64, "\n; SELECT 'injected'; --"))
            .await
            .unwrap();
        assert_eq!(cur.rowcount(), 1);
        let row = cur.fetchone().unwrap();
        assert_eq!(row.get::<_, i64>(0), 2);
        assert_eq!(row.get::<_, String>(1), "\n; SELECT 'injected'; --");
        // Numeric and real values too.
        let mut cur = conn
            .execute(
                "SELECT (1-%s)::float4, 1-%s",
                (-0.5f32, momoko::Value::Numeric("-3".into())),
            )
            .await
            .unwrap();
        let row = cur.fetchone().unwrap();
        assert_eq!(row.get::<_, f32>(0), 1.5);
        assert_eq!(row.get_value(1), momoko::Value::Int4(4));
    });
}

#[test]
fn mogrify_results_cannot_be_ignored() {
    // The compile-time half (an ignored result is an error under deny(unused_must_use)) is
    // the compile_fail doctest on momoko::mogrify; here the runtime half: errors are values.
    let ctx = QuoteContext::default();
    let r: Result<String, momoko::Error> = momoko::mogrify("SELECT %s", &("a\0",), &ctx);
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Usage);
    let r = momoko::mogrify("SELECT %s, %s", &("a",), &ctx);
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Usage);
}

/// A `SET standard_conforming_strings = off` still in flight when a query is rendered
/// changes the setting before the query runs; a literal written `'…'` for the old setting
/// would let `\'` end it early. Literals are sent as `E'…'`, read the same either way.
#[test]
fn a_pipelined_set_of_standard_conforming_strings_cannot_let_a_string_escape() {
    run_for(30, async {
        let conn = connect_with(&[]).await;
        let set = conn.execute("SET standard_conforming_strings = off", ());
        // No quote of its own (those would be doubled): only the backslash breaks out.
        let payload = "\\'; SELECT current_user; --";
        let query = conn.execute("SELECT %s", (payload,));
        set.await.unwrap();
        let mut cur = query.await.expect("the query runs");
        // The literal is sent as E'…', read the same under either setting.
        assert_eq!(
            cur.fetchone().unwrap().get_value(0),
            momoko::Value::Text(payload.to_owned())
        );
    });
}
