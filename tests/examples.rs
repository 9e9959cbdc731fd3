//! Runs every program in `examples/` against the suite's server, so that none can rot: each
//! must exit successfully within its time bound and print the lines that show it did its
//! work.
//!
//! `cargo test` builds the examples next to the test binaries (`target/<profile>/examples`);
//! they are run from there directly, with `MOMOKO_DSN` set to the suite's server. A binary
//! that is missing or older than its sources (`cargo test --test examples` builds no
//! example) is built first with `cargo build --example`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// The suite's server: a throwaway cluster, or the one in `MOMOKO_TEST_DSN`.
fn dsn() -> String {
    momoko_testpg::TestServer::shared().dsn.clone()
}

/// The example's binary, built if it is missing or older than its sources (as after
/// `cargo test --test examples`, which builds no example).
fn example_binary(name: &str) -> PathBuf {
    example_binary_with(name, &[])
}

/// [`example_binary`] for an example that needs `features`.
fn example_binary_with(name: &str, features: &[&str]) -> PathBuf {
    // The test binary is target/<profile>/deps/examples-<hash>; examples sit beside deps/.
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = [
        root.join("examples").join(format!("{name}.rs")),
        root.join("src"),
        root.join("loop/src"),
        root.join("Cargo.toml"),
    ];
    let built = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    let newest = sources.iter().filter_map(|p| newest_mtime(p)).max();
    if built.is_none() || newest > built {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--example", name]).current_dir(root);
        if !features.is_empty() {
            cmd.arg("--features").arg(features.join(","));
        }
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build --example");
        assert!(status.success(), "cargo build --example {name} failed");
    }
    assert!(path.exists(), "no example binary at {}", path.display());
    path
}

/// The latest modification time of a file, or of any file under a directory.
fn newest_mtime(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(|entry| newest_mtime(&entry.ok()?.path()))
        .max()
}

/// Runs an example with `args`, killing it after `limit`; returns its stdout after
/// asserting that it exited successfully.
fn run_example(name: &str, args: &[&str], limit: Duration) -> String {
    run_example_on(name, &dsn(), args, limit)
}

/// [`run_example`] with `MOMOKO_DSN` set to `dsn`.
fn run_example_on(name: &str, dsn: &str, args: &[&str], limit: Duration) -> String {
    run_binary(name, example_binary(name), dsn, args, limit)
}

/// Runs the example binary at `path`, as [`run_example`].
fn run_binary(name: &str, path: PathBuf, dsn: &str, args: &[&str], limit: Duration) -> String {
    let mut child = Command::new(path)
        .args(args)
        .env("MOMOKO_DSN", dsn)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start example {name}: {e}"));
    // Read both pipes on threads so that a chatty example never blocks on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the example") {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    match status {
        None => panic!(
            "example {name} did not finish within {limit:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        ),
        Some(s) if !s.success() => {
            panic!("example {name} failed ({s})\nstdout:\n{stdout}\nstderr:\n{stderr}")
        }
        Some(_) => stdout,
    }
}

/// Asserts that `output` has a line containing each of `expected`, in that order.
fn assert_lines_in_order(name: &str, output: &str, expected: &[&str]) {
    let mut lines = output.lines();
    for want in expected {
        assert!(
            lines.any(|line| line.contains(want)),
            "example {name}: no line with {want:?} (in this order) in:\n{output}"
        );
    }
}

#[test]
fn trivial() {
    let out = run_example("trivial", &[], Duration::from_secs(30));
    assert_lines_in_order(
        "trivial",
        &out,
        &[
            "connection: connected, server version",
            "connection: \"SELECT 1\" -> 1 row(s), first value 1 (SELECT 1)",
            "connection: closed: true",
            "pool: connected: <Pool at",
            "-> two = 2",
            "pool: closed: <Pool at",
        ],
    );
}

#[test]
fn parallel() {
    let out = run_example("parallel", &[], Duration::from_secs(30));
    assert_lines_in_order(
        "parallel",
        &out,
        &[
            "connected: <Pool at",
            "three queries queued",
            "all three done in",
            "Q1: [1] (SELECT 1)",
            "Q2: [2] (SELECT 1)",
            "Q3: [3] (SELECT 1)",
            "pool closed",
        ],
    );
    // The pool stretched to three connections to run them at once.
    assert!(
        out.contains("3 free, 0 busy"),
        "parallel: the pool did not stretch to 3:\n{out}"
    );
}

#[test]
fn server_side_cursor() {
    let out = run_example("server_side_cursor", &[], Duration::from_secs(30));
    assert_lines_in_order(
        "server_side_cursor",
        &out,
        &[
            "getconn: took a connection: <Pool at",
            "setup: BEGIN",
            "setup: DECLARE CURSOR",
            "FETCH 100 -> rows 1..=100",
            "FETCH 100 -> rows 901..=1000",
            "fetched 1000 rows in chunks of 100",
            "transaction status now Idle",
            "connection given back: <Pool at",
            "pool closed",
        ],
    );
    assert_eq!(out.matches("FETCH 100 -> ").count(), 10, "{out}");
    assert!(out.contains("took a connection: <Pool at"), "{out}");
    assert!(
        out.contains("0 free, 1 busy"),
        "getconn left the connection free:\n{out}"
    );
}

#[test]
fn coroutines() {
    let out = run_example("coroutines", &[], Duration::from_secs(30));
    // The three tasks interleave, so each one's lines are checked on their own.
    assert_lines_in_order(
        "coroutines",
        &out,
        &["[trivial] connected", "[trivial] SELECT 1 -> 1"],
    );
    assert_lines_in_order(
        "coroutines",
        &out,
        &[
            "[parallel] Q1: [1]",
            "[parallel] Q2: [2]",
            "[parallel] Q3: [3]",
        ],
    );
    assert_lines_in_order(
        "coroutines",
        &out,
        &[
            "[cursor] FETCH 250: 250 rows, sum 31375",
            "[cursor] 1000 rows read; committed",
        ],
    );
    assert_lines_in_order(
        "coroutines",
        &out,
        &["[main] all three coroutines done", "[main] pool closed"],
    );
}

#[test]
fn web_serves_its_own_client() {
    let out = run_example(
        "web",
        &["--port", "0", "--self-test", "300"],
        Duration::from_secs(60),
    );
    assert_lines_in_order(
        "web",
        &out,
        &[
            "listening on http://127.0.0.1:",
            "served 300 responses (0 answered 500)",
            "self-test: 300 requests over 8 keep-alive connections, all 200",
        ],
    );
}

/// The web example against a client written here: HTTP/1.0, a 404, garbage, and two
/// pipelined requests on a connection half-closed after sending them.
#[test]
fn web_answers_other_clients() {
    use std::io::{BufRead, BufReader, Write};
    use std::net::{Shutdown, TcpStream};

    let mut child = Command::new(example_binary("web"))
        .args(["--port", "0", "--requests", "5"])
        .env("MOMOKO_DSN", dsn())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start web");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).expect("web's first line");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();

    let exchange = |request: &[u8]| -> String {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(request).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap(); // until the server closes
        answer
    };
    let a = exchange(b"GET / HTTP/1.0\r\n\r\n");
    assert!(a.starts_with("HTTP/1.1 200 OK\r\n"), "{a}");
    assert!(a.contains("Connection: close\r\n"), "{a}");
    assert!(
        a.ends_with("Q1: [(1,)]<br>Q2: [(2,)]<br>Q3: [(3,)]<br>"),
        "{a}"
    );
    let b = exchange(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(b.starts_with("HTTP/1.1 404 Not Found\r\n"), "{b}");
    let c = exchange(b"NOT HTTP AT ALL\0\r\n\r\n");
    assert!(c.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{c}");
    let d = exchange(b"GET / HTTP/1.1\r\n\r\nGET /stats HTTP/1.1\r\n\r\n");
    assert_eq!(d.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{d}");
    let (first, second) = d.split_at(d.rfind("HTTP/1.1").unwrap());
    assert!(
        first.ends_with("Q3: [(3,)]<br>"),
        "answers out of order: {d}"
    );
    assert!(second.contains("<Pool at"), "{d}");

    // Five responses: it stops by itself.
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("web did not stop after 5 responses");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "web failed: {rest}");
    assert!(
        rest.contains("served 5 responses (0 answered 500)"),
        "{rest}"
    );
}

#[test]
fn listen() {
    let out = run_example("listen", &[], Duration::from_secs(30));
    assert_lines_in_order(
        "listen",
        &out,
        &[
            "listener: LISTEN jobs",
            "\"resize image 1\"",
            "\"send mail 2\"",
            "\"rebuild index 3\"",
            "listener: 3 notifications, in order",
            "pool listener: \"hello from the pool\"",
            "pool: closed: <Pool at",
        ],
    );
}

#[test]
fn custom_mio_loop() {
    let out = run_example("custom_mio_loop", &[], Duration::from_secs(30));
    assert_lines_in_order(
        "custom_mio_loop",
        &out,
        &["connected", "1 * 2 = 2", "2 * 2 = 4", "3 * 2 = 6"],
    );
}

#[test]
fn nested_loop() {
    let out = run_example("nested_loop", &[], Duration::from_secs(30));
    assert_lines_in_order(
        "nested_loop",
        &out,
        &[
            "line server: listening on 127.0.0.1:",
            "pool: connected: <Pool at",
            "listener: LISTEN nested_loop",
            "client: sends 3, 4 and 5",
            "client: 3 answers: [\"3 squared is 9\", \"4 squared is 16\", \"5 squared is 25\"]",
            "listener: \"hello from the outer loop\" on \"nested_loop\"",
            "listener: 1 notification(s)",
            "pool: closed: <Pool at",
            "IoLoop::start and run_sync were never called",
        ],
    );
    assert_eq!(out.matches("line server: answers ").count(), 3, "{out}");
}

#[test]
fn replicas() {
    let pair = momoko_testpg::Replicated::start(false).expect("a primary and a standby");
    let (p, s) = (pair.primary_info().port, pair.standby_info().port);
    // The standby first in the list: the writer must walk past it.
    let list = format!("host=127.0.0.1,127.0.0.1 port={s},{p} dbname=momoko_test user=momoko");
    let out = run_example_on("replicas", &list, &[], Duration::from_secs(60));
    assert_lines_in_order(
        "replicas",
        &out,
        &[
            &format!("writer: a primary on port {p}"),
            &format!("reader: a standby on port {s}"),
            "writer: inserted row 1",
            "reader: row 1 says \"written on the primary\"",
            "both pools closed",
        ],
    );
    // And on the suite's single server, both pools reach it.
    let out = run_example("replicas", &[], Duration::from_secs(30));
    let port = momoko_testpg::TestServer::shared().port;
    assert_lines_in_order(
        "replicas",
        &out,
        &[
            &format!("writer: a primary on port {port}"),
            &format!("reader: a primary on port {port}"),
            "both pools closed",
        ],
    );
}

#[test]
fn multi_loop() {
    let out = run_example(
        "multi_loop",
        &["--threads", "3", "--connections", "2", "--queries", "3000"],
        Duration::from_secs(60),
    );
    for t in 0..3 {
        assert!(
            out.contains(&format!("thread {t}: 1000 queries in")),
            "multi_loop: thread {t} did not do its share:\n{out}"
        );
    }
    assert_lines_in_order(
        "multi_loop",
        &out,
        &["3 threads x 2 connections: 3000 queries in"],
    );
}

#[test]
fn tls_cloud() {
    let Some(tls) = momoko_testpg::TestServer::shared().tls.as_ref() else {
        eprintln!("tls_cloud: skipped, the server named by MOMOKO_TEST_DSN has no TLS side");
        return;
    };
    // verify-full against the throwaway CA, a SCRAM login bound to the TLS session.
    let dsn = format!("{} channel_binding=require", tls.scram_tls_dsn);
    let out = run_example_on("tls_cloud", &dsn, &[], Duration::from_secs(30));
    assert_lines_in_order(
        "tls_cloud",
        &out,
        &[
            "TLS in use: true",
            "  protocol: TLSv1.3",
            "the server says: ssl true, TLSv1.3",
            &format!("pool of 2 over TLS, logged in as {}", tls.scram_tls_user),
        ],
    );
}

#[test]
fn pgbouncer() {
    let bouncer = momoko_testpg::Bouncer::start(
        momoko_testpg::TestServer::shared(),
        &momoko_testpg::BouncerOptions::default(),
    )
    .expect("a PgBouncer");
    let out = run_example_on("pgbouncer", bouncer.dsn(), &[], Duration::from_secs(30));
    assert_lines_in_order(
        "pgbouncer",
        &out,
        &[
            "squares through the pooler: [1, 4, 9, 16, 25, 36, 49, 64]",
            "inside the transaction: statement_timeout = 5s",
            "after it: statement_timeout = 0",
        ],
    );
}

/// Needs the typed-value features: `make test` runs it with `--all-features`.
#[cfg(all(
    feature = "chrono",
    feature = "rust_decimal",
    feature = "uuid",
    feature = "serde"
))]
#[test]
fn typed_rows() {
    let path = example_binary_with("typed_rows", &["chrono", "rust_decimal", "uuid", "serde"]);
    let out = run_binary("typed_rows", path, &dsn(), &[], Duration::from_secs(30));
    assert_lines_in_order(
        "typed_rows",
        &out,
        &[
            "INSERT INTO invoice VALUES ('01234567-89ab-cdef-0123-456789abcdef'::uuid, \
             '2026-12-01'::date, '2026-12-01T09:30:00+00:00'::timestamptz, 1234.50, \
             ARRAY['a','b'])",
            "Invoice { id: 01234567-89ab-cdef-0123-456789abcdef, issued: 2026-12-01, \
             paid_at: Some(2026-12-01T09:30:00Z), amount: 1234.50, tags: [\"a\", \"b\"] }",
            "Invoice { id: fedcba98-7654-3210-fedc-ba9876543210, issued: 2026-12-02, \
             paid_at: None, amount: -0.05, tags: [] }",
            "text and binary results agree: true",
            "interval: 1 months, 3 days, 3000000 µs",
        ],
    );
}

#[cfg(feature = "tracing")]
#[test]
fn observability() {
    let path = example_binary_with("observability", &["tracing"]);
    let out = run_binary("observability", path, &dsn(), &[], Duration::from_secs(30));
    assert_lines_in_order(
        "observability",
        &out,
        &[
            "}:connect_attempt{otel.kind=\"client\" server.address=",
            "momoko.attempts=1 server.address=",
            "INFO pool.acquire{otel.kind=\"client\" db.system.name=\"postgresql\" \
             db.client.connection.pool.name=\"example\" db.client.connection.wait_time=",
            "db.query.text=\"SELECT $1::int * 2 AS doubled\"",
            "query: doubled = 42",
            "momoko::statement: slow statement: execution time exceeded alert threshold",
            "db.response.status_code=\"22012\" error.type=\"22012\"}: momoko: close",
            "observer: execute failed with SQLSTATE 22012",
            "execute: failed as expected: 22012",
            "db.query.text=\"SELECT 1; SELECT 2\" db.operation.batch.size=2",
            "observer: 4 operations, 4 acquisitions, true in all",
            "metric: db.client.connection.count{state=idle} = 2 {connection}",
            "metric: db.client.connection.pending_requests = 0 {request}",
        ],
    );
}

/// Runs SQL on the suite's server (setup and changes for the CDC example).
#[cfg(feature = "json")]
fn sql(statements: &[String]) {
    let dsn = dsn();
    let statements = statements.to_vec();
    momoko::ioloop::IoLoop::new()
        .run_sync_timeout(
            async move {
                let conn = momoko::connect(&dsn).await.unwrap();
                for q in statements {
                    conn.execute(&q, ())
                        .await
                        .unwrap_or_else(|e| panic!("{q}: {e}"));
                }
            },
            Duration::from_secs(30),
        )
        .expect("the SQL did not finish in time");
}

#[cfg(feature = "json")]
#[test]
fn cdc_prints_each_committed_change_and_resumes_where_it_stopped() {
    let id = std::process::id();
    let (table, publication, slot) = (
        format!("cdc_t_{id}"),
        format!("cdc_pub_{id}"),
        format!("cdc_slot_{id}"),
    );
    sql(&[
        format!("CREATE TABLE {table} (id int PRIMARY KEY, note text)"),
        format!("CREATE PUBLICATION {publication} FOR TABLE {table}"),
    ]);
    let args = |extra: &[&'static str]| -> Vec<String> {
        let mut a = vec![
            "--slot".to_owned(),
            slot.clone(),
            "--publication".to_owned(),
            publication.clone(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |extra: &[&'static str]| {
        let a = args(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        run_example("cdc", &a, Duration::from_secs(60))
    };
    // First run: creates the slot; nothing to print yet.
    let out = run(&["--idle-exit", "1"]);
    assert_eq!(out, "", "nothing committed yet");
    sql(&[
        format!("INSERT INTO {table} VALUES (1, 'one'), (2, 'two')"),
        format!("UPDATE {table} SET note = 'uno' WHERE id = 1"),
        format!("DELETE FROM {table} WHERE id = 2"),
    ]);
    let out = run(&["--transactions", "3"]);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let t = format!("public.{table}");
    let ops: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["op"].as_str().unwrap().to_owned(),
                l["table"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expect = |op: &str| (op.to_owned(), t.clone());
    assert_eq!(
        ops,
        [
            expect("insert"),
            expect("insert"),
            expect("update"),
            expect("delete")
        ]
    );
    assert_eq!(lines[0]["new"], serde_json::json!({"id": 1, "note": "one"}));
    assert_eq!(lines[1]["new"], serde_json::json!({"id": 2, "note": "two"}));
    assert_eq!(lines[2]["new"], serde_json::json!({"id": 1, "note": "uno"}));
    assert_eq!(lines[3]["old"], serde_json::json!({"id": 2, "note": null}));
    assert_eq!(
        lines[0]["lsn"], lines[1]["lsn"],
        "one transaction, one commit LSN"
    );
    // Resumed: only what came after the last confirmed transaction.
    sql(&[format!("INSERT INTO {table} VALUES (3, 'three')")]);
    let out = run(&["--transactions", "1"]);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(
        lines[0]["new"],
        serde_json::json!({"id": 3, "note": "three"})
    );
    sql(&[format!("SELECT pg_drop_replication_slot('{slot}')")]);
}
