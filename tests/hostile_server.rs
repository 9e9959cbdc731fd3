//! A hostile server: a real TCP listener on 127.0.0.1 that reads the client's StartupMessage
//! and then plays a script of raw bytes (truncated messages, absurd lengths, unknown types,
//! rows that do not match their description, missing ReadyForQuery, endless authentication,
//! silence). Each case asserts a clear error of the right kind, a closed connection, no
//! panic, no giant allocation, and that the same loop still serves a real connection to the
//! throwaway server afterwards.
//!
//! Every wait is bounded: the fake server's socket reads time out, the client is bounded by
//! `connect_timeout` or `run_sync_timeout`, and the fake server's thread is joined at the end.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use momoko::ioloop::IoLoop;
use momoko::{Connection, Error, ErrorKind};

/// The bound on any single wait of the fake server.
const PEER_WAIT: Duration = Duration::from_secs(10);

/// The server side of one hostile connection.
struct Peer {
    s: TcpStream,
}

impl Peer {
    fn read_exact(&mut self, n: usize) -> Option<Vec<u8>> {
        let mut b = vec![0; n];
        self.s.read_exact(&mut b).ok()?;
        Some(b)
    }

    /// Reads the StartupMessage (answering an SSLRequest with 'N' first, if one comes).
    fn read_startup(&mut self) -> Option<Vec<u8>> {
        loop {
            let len = i32::from_be_bytes(self.read_exact(4)?.try_into().ok()?);
            let body = self.read_exact(usize::try_from(len).ok()?.checked_sub(4)?)?;
            if body.get(..4) == Some(&80_877_103i32.to_be_bytes()[..]) {
                self.send(b"N");
                continue;
            }
            return Some(body);
        }
    }

    /// Reads one frontend message: its tag and body.
    fn read_message(&mut self) -> Option<(u8, Vec<u8>)> {
        let head = self.read_exact(5)?;
        let len = i32::from_be_bytes(head[1..5].try_into().ok()?);
        let body = self.read_exact(usize::try_from(len).ok()?.checked_sub(4)?)?;
        Some((head[0], body))
    }

    fn send(&mut self, bytes: &[u8]) {
        // The client may already have given up: a failed write is part of the game.
        let _ = self.s.write_all(bytes);
        let _ = self.s.flush();
    }

    /// Says nothing until the client closes (or the wait bound passes).
    fn silence(&mut self) {
        let mut buf = [0u8; 1024];
        let deadline = Instant::now() + PEER_WAIT;
        while Instant::now() < deadline {
            match self.s.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return,
            }
        }
    }
}

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// What PostgreSQL sends after a trust login.
fn startup_ok() -> Vec<u8> {
    let mut s = msg(b'R', &0i32.to_be_bytes());
    for (k, v) in [
        ("server_version", "15.18"),
        ("client_encoding", "UTF8"),
        ("standard_conforming_strings", "on"),
    ] {
        let mut b = cstr(k);
        b.extend(cstr(v));
        s.extend(msg(b'S', &b));
    }
    s.extend(msg(b'K', &[0, 0, 0, 42, 0, 0, 0, 7]));
    s.extend(msg(b'Z', b"I"));
    s
}

fn row_description(names: &[&str]) -> Vec<u8> {
    let mut b = (names.len() as i16).to_be_bytes().to_vec();
    for n in names {
        b.extend(cstr(n));
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&23u32.to_be_bytes());
        b.extend_from_slice(&4i16.to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
    }
    msg(b'T', &b)
}

fn data_row(fields: &[&str]) -> Vec<u8> {
    let mut b = (fields.len() as i16).to_be_bytes().to_vec();
    for f in fields {
        b.extend_from_slice(&(f.len() as i32).to_be_bytes());
        b.extend_from_slice(f.as_bytes());
    }
    msg(b'D', &b)
}

/// Starts a fake server that accepts one connection and plays `script` on it.
fn hostile(script: impl FnOnce(&mut Peer) + Send + 'static) -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + PEER_WAIT;
        let s = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => return,
            }
        };
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(PEER_WAIT)).unwrap();
        s.set_write_timeout(Some(PEER_WAIT)).unwrap();
        script(&mut Peer { s });
    });
    (port, handle)
}

/// A fake server that reads the startup, logs in and answers the first query with `reply`,
/// then either closes or says nothing more.
fn after_query(reply: Vec<u8>, then_close: bool) -> (u16, JoinHandle<()>) {
    hostile(move |p| {
        if p.read_startup().is_none() {
            return;
        }
        p.send(&startup_ok());
        if p.read_message().is_none() {
            return;
        }
        p.send(&reply);
        if !then_close {
            p.silence();
        }
    })
}

fn hostile_dsn(port: u16, extra: &str) -> String {
    format!("host=127.0.0.1 port={port} user=mallory dbname=x sslmode=disable {extra}")
}

/// The resident set size of this process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// One loop serving a real connection to the throwaway server next to the hostile one.
struct Bench {
    ioloop: IoLoop,
    good: Connection,
    rss_before: u64,
}

impl Bench {
    fn new() -> Bench {
        let ioloop = IoLoop::new();
        let good = ioloop
            .run_sync_timeout(
                Connection::builder(&common::dsn())
                    .ioloop(&ioloop)
                    .connect_timeout(Duration::from_secs(10))
                    .connect(),
                Duration::from_secs(30),
            )
            .expect("connect to the real server in time")
            .expect("connect to the real server");
        Bench {
            ioloop,
            good,
            rss_before: rss(),
        }
    }

    /// Connects to the hostile server at `port` on the same loop.
    fn connect(&self, port: u16, extra: &str, timeout: Duration) -> Result<Connection, Error> {
        self.ioloop
            .run_sync_timeout(
                Connection::builder(&hostile_dsn(port, extra))
                    .ioloop(&self.ioloop)
                    .connect_timeout(timeout)
                    .connect(),
                timeout + Duration::from_secs(10),
            )
            .expect("connect_timeout must bound the connect")
    }

    fn connected(&self, port: u16) -> Connection {
        self.connect(port, "", Duration::from_secs(10))
            .expect("the hostile server's startup is valid")
    }

    /// Runs one query on `conn`, which must fail within a bound.
    fn query_error(&self, conn: &Connection) -> Error {
        self.ioloop
            .run_sync_timeout(conn.execute("SELECT 1", ()), Duration::from_secs(15))
            .expect("the hostile answer must end the query in time")
            .expect_err("the hostile answer must fail the query")
    }

    /// The loop still serves the real connection, and nothing huge was allocated.
    fn check_survived(self, peer: JoinHandle<()>) {
        let mut cur = self
            .ioloop
            .run_sync_timeout(
                self.good.execute("SELECT 40 + 2", ()),
                Duration::from_secs(15),
            )
            .expect("the loop still runs")
            .expect("the real connection still works");
        assert_eq!(cur.fetchone().unwrap().get::<_, i32>(0), 42);
        let grown = rss().saturating_sub(self.rss_before);
        assert!(
            grown < 64 << 20,
            "RSS grew by {} MB while facing the hostile server",
            grown >> 20
        );
        self.good.close();
        peer.join().expect("the fake server's script");
    }
}

fn assert_kind(e: &Error, kind: ErrorKind, words: &str) {
    assert_eq!(e.kind(), kind, "{e}");
    assert!(
        e.to_string().contains(words),
        "error {e:?} should mention {words:?}"
    );
}

#[test]
fn a_message_truncated_by_a_close_is_a_connection_error() {
    let b = Bench::new();
    let mut reply = row_description(&["a"]);
    let row = data_row(&["1"]);
    reply.extend_from_slice(&row[..row.len() - 3]);
    let (port, peer) = after_query(reply, true);
    let conn = b.connected(port);
    let e = b.query_error(&conn);
    assert_kind(
        &e,
        ErrorKind::Connection,
        "the server closed the connection unexpectedly",
    );
    // The server may have run the query before it died: that must be said.
    assert!(e.outcome_unknown(), "{e:?}");
    assert!(conn.closed());
    b.check_survived(peer);
}

#[test]
fn a_truncated_startup_is_a_connection_error() {
    let b = Bench::new();
    let (port, peer) = hostile(|p| {
        if p.read_startup().is_some() {
            let ok = startup_ok();
            p.send(&ok[..ok.len() - 4]);
        }
    });
    let e = b
        .connect(port, "", Duration::from_secs(10))
        .expect_err("startup cannot finish");
    assert_kind(
        &e,
        ErrorKind::Connection,
        "the server closed the connection unexpectedly",
    );
    b.check_survived(peer);
}

#[test]
fn a_length_of_2_pow_31_minus_1_is_refused_without_allocating() {
    let b = Bench::new();
    let mut reply = row_description(&["a"]);
    reply.extend_from_slice(b"D\x7f\xff\xff\xff\0\x01\0\0\0\x01");
    let (port, peer) = after_query(reply, false);
    let conn = b.connected(port);
    let e = b.query_error(&conn);
    assert_kind(&e, ErrorKind::Protocol, "declares 2147483647 bytes");
    assert!(conn.closed());
    b.check_survived(peer);
}

#[test]
fn a_long_non_row_message_is_lost_sync_as_in_libpq() {
    let b = Bench::new();
    // CommandComplete may not exceed 30000 bytes.
    let (port, peer) = after_query(b"C\0\x01\0\0".to_vec(), false);
    let conn = b.connected(port);
    let e = b.query_error(&conn);
    assert_kind(&e, ErrorKind::Protocol, "over the bound of 30000");
    assert!(conn.closed());
    b.check_survived(peer);
}

#[test]
fn a_length_under_four_is_lost_synchronization() {
    let b = Bench::new();
    let (port, peer) = after_query(b"Z\0\0\0\x02I".to_vec(), false);
    let conn = b.connected(port);
    let e = b.query_error(&conn);
    assert_kind(&e, ErrorKind::Protocol, "lost synchronization");
    assert!(conn.closed());
    b.check_survived(peer);
}

#[test]
fn an_unknown_message_type_fails_the_connection() {
    let b = Bench::new();
    let (port, peer) = after_query(msg(b'!', b"surprise"), false);
    let conn = b.connected(port);
    let e = b.query_error(&conn);
    assert_kind(&e, ErrorKind::Protocol, "'!'");
    assert!(conn.closed());
    b.check_survived(peer);
}

#[test]
fn an_unknown_message_type_during_startup_fails_the_connect() {
    let b = Bench::new();
    let (port, peer) = hostile(|p| {
        if p.read_startup().is_some() {
            p.send(&msg(b'R', &0i32.to_be_bytes()));
            p.send(&msg(b'~', b""));
            p.silence();
        }
    });
    let e = b
        .connect(port, "", Duration::from_secs(10))
        .expect_err("startup cannot finish");
    assert_kind(&e, ErrorKind::Protocol, "'~'");
    b.check_survived(peer);
}

#[test]
fn a_data_row_with_the_wrong_number_of_columns_fails_the_connection() {
    let b = Bench::new();
    let mut reply = row_description(&["a"]);
    reply.extend(data_row(&["1", "2"]));
    reply.extend(msg(b'C', &cstr("SELECT 1")));
    reply.extend(msg(b'Z', b"I"));
    let (port, peer) = after_query(reply, false);
    let conn = b.connected(port);
    let e = b.query_error(&conn);
    assert_kind(
        &e,
        ErrorKind::Protocol,
        "DataRow has 2 fields but the RowDescription has 1 columns",
    );
    assert!(conn.closed());
    b.check_survived(peer);
}

#[test]
fn a_missing_ready_for_query_then_silence_is_bounded_and_close_fails_the_query() {
    let b = Bench::new();
    let mut reply = row_description(&["a"]);
    reply.extend(data_row(&["1"]));
    reply.extend(msg(b'C', &cstr("SELECT 1")));
    let (port, peer) = after_query(reply, false);
    let conn = b.connected(port);
    let fut = conn.execute("SELECT 1", ());
    let waiting = fut.clone();
    // Nothing ends the query: the bound does.
    assert!(b
        .ioloop
        .run_sync_timeout(fut, Duration::from_millis(500))
        .is_err());
    assert!(!conn.closed());
    conn.close();
    let e = b
        .ioloop
        .run_sync_timeout(waiting, Duration::from_secs(5))
        .expect("close resolves the query")
        .expect_err("a closed connection cannot complete the query");
    assert_kind(&e, ErrorKind::Connection, "closed by the client");
    assert!(conn.closed());
    b.check_survived(peer);
}

#[test]
fn a_missing_ready_for_query_then_close_fails_the_query_when_the_server_closes() {
    let b = Bench::new();
    let mut reply = row_description(&["a"]);
    reply.extend(data_row(&["1"]));
    reply.extend(msg(b'C', &cstr("SELECT 1")));
    let (port, peer) = after_query(reply, true);
    let conn = b.connected(port);
    let e = b.query_error(&conn);
    assert_kind(
        &e,
        ErrorKind::Connection,
        "the server closed the connection unexpectedly",
    );
    assert!(e.outcome_unknown(), "{e:?}");
    assert!(conn.closed());
    b.check_survived(peer);
}

#[test]
fn an_endless_authentication_loop_is_cut_off() {
    let b = Bench::new();
    let (port, peer) = hostile(|p| {
        if p.read_startup().is_none() {
            return;
        }
        // Ask for an MD5 password forever (up to a bound of our own, to end the thread).
        for _ in 0..1000 {
            p.send(&msg(b'R', &[0, 0, 0, 5, b's', b'a', b'l', b't']));
            if p.read_message().is_none() {
                return;
            }
        }
    });
    let e = b
        .connect(port, "password=secret", Duration::from_secs(10))
        .expect_err("authentication never ends");
    assert_kind(&e, ErrorKind::Protocol, "authentication");
    b.check_survived(peer);
}

#[test]
fn a_server_that_accepts_and_says_nothing_times_out() {
    let b = Bench::new();
    let (port, peer) = hostile(|p| p.silence());
    let started = Instant::now();
    let e = b
        .connect(port, "", Duration::from_secs(1))
        .expect_err("nothing is ever said");
    let took = started.elapsed();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "timed out after {took:?}"
    );
    b.check_survived(peer);
}

#[test]
fn a_server_silent_after_the_startup_message_times_out() {
    let b = Bench::new();
    let (port, peer) = hostile(|p| {
        if p.read_startup().is_some() {
            p.silence();
        }
    });
    let e = b
        .connect(port, "", Duration::from_secs(1))
        .expect_err("nothing is ever said");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    b.check_survived(peer);
}

#[test]
fn a_server_that_stops_mid_startup_times_out() {
    let b = Bench::new();
    let (port, peer) = hostile(|p| {
        if p.read_startup().is_some() {
            // Authenticated, then never ReadyForQuery.
            let ok = startup_ok();
            p.send(&ok[..ok.len() - 6]);
            p.silence();
        }
    });
    let e = b
        .connect(port, "", Duration::from_secs(1))
        .expect_err("startup never finishes");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    b.check_survived(peer);
}

#[test]
fn a_fatal_error_then_close_keeps_its_sqlstate() {
    let b = Bench::new();
    let mut e = Vec::new();
    for (t, v) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "57P01"),
        (b'M', "terminating connection due to administrator command"),
    ] {
        e.push(t);
        e.extend(cstr(v));
    }
    e.push(0);
    let (port, peer) = after_query(msg(b'E', &e), true);
    let conn = b.connected(port);
    let err = b.query_error(&conn);
    assert_eq!(err.code(), Some("57P01"));
    assert!(err.is_connection_lost(), "{err:?}");
    assert!(conn.closed());
    b.check_survived(peer);
}

#[test]
fn a_shutdown_warning_then_close_attaches_its_sqlstate_to_connection_lost() {
    // `pg_ctl stop -m immediate` sends only a WARNING 57P01 notice, then closes.
    let b = Bench::new();
    let mut n = Vec::new();
    for (t, v) in [
        (b'S', "WARNING"),
        (b'V', "WARNING"),
        (b'C', "57P01"),
        (
            b'M',
            "terminating connection due to immediate shutdown command",
        ),
    ] {
        n.push(t);
        n.extend(cstr(v));
    }
    n.push(0);
    let (port, peer) = after_query(msg(b'N', &n), true);
    let conn = b.connected(port);
    let err = b.query_error(&conn);
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    assert_eq!(err.code(), Some("57P01"));
    assert!(conn.closed());
    b.check_survived(peer);
}

#[test]
fn garbage_instead_of_a_startup_answer_fails_the_connect() {
    // An HTTP server, say, on the PostgreSQL port.
    let b = Bench::new();
    let (port, peer) = hostile(|p| {
        if p.read_startup().is_some() {
            p.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            p.silence();
        }
    });
    let e = b
        .connect(port, "", Duration::from_secs(5))
        .expect_err("not PostgreSQL");
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    b.check_survived(peer);
}

#[test]
fn a_scram_iteration_count_of_2_pow_32_minus_1_is_refused_at_once() {
    // Without a bound the key derivation would block the loop for about half an hour.
    let b = Bench::new();
    let (port, peer) = hostile(|p| {
        if p.read_startup().is_none() {
            return;
        }
        let mut offer = 10i32.to_be_bytes().to_vec();
        offer.extend(cstr("SCRAM-SHA-256"));
        offer.push(0);
        p.send(&msg(b'R', &offer));
        let Some((b'p', body)) = p.read_message() else {
            return;
        };
        let first = String::from_utf8_lossy(&body).into_owned();
        let Some(nonce) = first.split("r=").nth(1) else {
            return;
        };
        let mut cont = 11i32.to_be_bytes().to_vec();
        cont.extend_from_slice(format!("r={nonce}x,s=c2FsdA==,i=4294967295").as_bytes());
        p.send(&msg(b'R', &cont));
        p.silence();
    });
    let started = Instant::now();
    let e = b
        .connect(port, "password=secret", Duration::from_secs(10))
        .expect_err("the iteration count is refused");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_kind(
        &e,
        ErrorKind::Connection,
        "asks for 4294967295 iterations, more than momoko's bound of 1000000",
    );
    b.check_survived(peer);
}

// ---- protocol 3.2: NegotiateProtocolVersion and cancel keys of 4 to 256 bytes ----

/// What PostgreSQL 18 sends after a trust login, with a cancel key of `key_len` bytes.
fn startup_with_key(key_len: usize) -> Vec<u8> {
    let mut s = msg(b'R', &0i32.to_be_bytes());
    for (k, v) in [
        ("server_version", "18.1"),
        ("client_encoding", "UTF8"),
        ("standard_conforming_strings", "on"),
    ] {
        let mut b = cstr(k);
        b.extend(cstr(v));
        s.extend(msg(b'S', &b));
    }
    s.extend(msg(b'K', &key_data(key_len)));
    s.extend(msg(b'Z', b"I"));
    s
}

/// BackendKeyData's body: process id 42, then a key of `len` bytes 1, 2, 3, … (wrapping).
fn key_data(len: usize) -> Vec<u8> {
    let mut b = 42i32.to_be_bytes().to_vec();
    b.extend((1..=len).map(|i| i as u8));
    b
}

/// NegotiateProtocolVersion: the newest version the server speaks, then option names.
fn negotiate(version: i32, options: &[&str]) -> Vec<u8> {
    let mut b = version.to_be_bytes().to_vec();
    b.extend_from_slice(&(options.len() as i32).to_be_bytes());
    for o in options {
        b.extend(cstr(o));
    }
    msg(b'v', &b)
}

/// A fake server that reads the StartupMessage, checks the version it asks for, and
/// answers `reply`, then waits for the client to leave.
fn answers_startup(asked: i32, reply: Vec<u8>) -> (u16, JoinHandle<()>) {
    hostile(move |p| {
        let Some(startup) = p.read_startup() else {
            return;
        };
        assert_eq!(startup[..4], asked.to_be_bytes(), "the version asked for");
        p.send(&reply);
        p.silence();
    })
}

const V3_0: i32 = 0x0003_0000;
const V3_2: i32 = 0x0003_0002;

#[test]
fn a_server_offering_3_0_to_a_client_asking_3_2_gets_a_3_0_connection() {
    let b = Bench::new();
    let mut reply = negotiate(V3_0, &[]);
    reply.extend(startup_ok());
    let (port, peer) = answers_startup(V3_2, reply);
    let conn = b
        .connect(port, "max_protocol_version=3.2", Duration::from_secs(10))
        .expect("3.0 is at least the minimum");
    assert_eq!(conn.protocol_version(), (3, 0));
    assert_eq!(conn.backend_pid(), Some(42));
    conn.close();
    b.check_survived(peer);
}

#[test]
fn a_server_offering_less_than_min_protocol_version_is_refused_with_both_versions() {
    let b = Bench::new();
    let mut reply = negotiate(V3_0, &[]);
    reply.extend(startup_ok());
    let (port, peer) = answers_startup(V3_2, reply);
    let e = b
        .connect(port, "min_protocol_version=3.2", Duration::from_secs(10))
        .expect_err("the server speaks only 3.0");
    assert_kind(
        &e,
        ErrorKind::Connection,
        "server only supports protocol version 3.0, but \"min_protocol_version\" was set to 3.2",
    );
    b.check_survived(peer);
}

#[test]
fn a_second_negotiation_message_fails_the_connect() {
    // What PgBouncer up to 1.24 sends a client asking for 3.2 (pgbouncer#1459).
    let b = Bench::new();
    let mut reply = negotiate(V3_0, &[]);
    reply.extend(negotiate(V3_0, &[]));
    reply.extend(startup_ok());
    let (port, peer) = answers_startup(V3_2, reply);
    let e = b
        .connect(port, "max_protocol_version=3.2", Duration::from_secs(10))
        .expect_err("two negotiations");
    assert_kind(
        &e,
        ErrorKind::Protocol,
        "received duplicate protocol negotiation message",
    );
    b.check_survived(peer);
}

#[test]
fn a_negotiation_offering_more_than_asked_or_options_never_asked_for_is_a_violation() {
    let b = Bench::new();
    for (extra, asked, reply, words) in [
        (
            "",
            V3_0,
            negotiate(V3_2, &[]),
            "server requested downgrade to a higher-numbered version",
        ),
        (
            "max_protocol_version=3.2",
            V3_2,
            negotiate(V3_0, &["_pq_.compression"]),
            "server reported an unsupported parameter that was not requested \
             (\"_pq_.compression\")",
        ),
    ] {
        let mut reply = reply;
        reply.extend(startup_ok());
        let (port, peer) = answers_startup(asked, reply);
        let e = b
            .connect(port, extra, Duration::from_secs(10))
            .expect_err("a bad negotiation");
        assert_kind(&e, ErrorKind::Protocol, words);
        peer.join().unwrap();
    }
    let (port, peer) = answers_startup(V3_0, startup_ok());
    b.connected(port).close();
    b.check_survived(peer);
}

#[test]
fn cancel_keys_outside_libpq_18s_bounds_fail_the_connect() {
    let b = Bench::new();
    for (extra, asked, key_len, words) in [
        (
            "",
            V3_0,
            32,
            "cancel key with length 32 not allowed in protocol version 3.0 (must be 4 bytes)",
        ),
        (
            "max_protocol_version=3.2",
            V3_2,
            3,
            "cancel key with length 3 is too short (minimum 4 bytes)",
        ),
        (
            "max_protocol_version=3.2",
            V3_2,
            257,
            "cancel key with length 257 is too long (maximum 256 bytes)",
        ),
    ] {
        let (port, peer) = answers_startup(asked, startup_with_key(key_len));
        let e = b
            .connect(port, extra, Duration::from_secs(10))
            .expect_err("the key is refused");
        assert_kind(
            &e,
            ErrorKind::Protocol,
            &format!("received invalid BackendKeyData message: {words}"),
        );
        peer.join().unwrap();
    }
    let (port, peer) = answers_startup(V3_0, startup_ok());
    b.connected(port).close();
    b.check_survived(peer);
}

#[test]
fn a_256_byte_key_is_sent_whole_in_the_cancel_request() {
    let b = Bench::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    let peer = std::thread::spawn(move || {
        let accept = |l: &TcpListener| {
            let (s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(PEER_WAIT)).unwrap();
            s.set_write_timeout(Some(PEER_WAIT)).unwrap();
            Peer { s }
        };
        let mut session = accept(&listener);
        let startup = session.read_startup().expect("a StartupMessage");
        assert_eq!(startup[..4], V3_2.to_be_bytes());
        session.send(&startup_with_key(256));
        // The CancelRequest comes on a second connection; the server closes it at once.
        let mut cancel = accept(&listener);
        let len = i32::from_be_bytes(cancel.read_exact(4).unwrap().try_into().unwrap());
        let mut request = len.to_be_bytes().to_vec();
        request.extend(cancel.read_exact(len as usize - 4).unwrap());
        drop(cancel);
        tx.send(request).unwrap();
        session.silence();
    });
    let conn = b
        .connect(port, "max_protocol_version=3.2", Duration::from_secs(10))
        .expect("a 256-byte key is within the bounds");
    assert_eq!(conn.protocol_version(), (3, 2));
    b.ioloop
        .run_sync_timeout(conn.cancel(), Duration::from_secs(10))
        .expect("the cancel is answered in time")
        .expect("the server took the cancel");
    let request = rx.recv_timeout(PEER_WAIT).expect("the CancelRequest");
    let mut expected = 268i32.to_be_bytes().to_vec();
    expected.extend_from_slice(&80_877_102i32.to_be_bytes());
    expected.extend_from_slice(&key_data(256));
    assert_eq!(request, expected);
    conn.close();
    b.check_survived(peer);
}
