//! Protocol 3.2 against the suite's real server, as libpq 18 speaks it: `max_protocol_version`
//! and `min_protocol_version`, the version a connection settles on, and cancel keys kept and
//! sent whole. PostgreSQL 18 and later speak 3.2 (and send a 32-byte key); older servers
//! negotiate down to 3.0 (a 4-byte key). Every test reads the server's version and asserts
//! what that server must do, so the file means something on every version: `make test` runs
//! it on PostgreSQL 18 as well as on the default server.
//!
//! A small recording relay of the tests' own sits between client and server where the bytes
//! themselves are the point: it shows the BackendKeyData the server sent and the
//! CancelRequest the client wrote.

mod common;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{dsn, run, server};
use momoko::{Connection, Error, ErrorKind, MioConnection, Pool};

/// Whether the suite's server speaks protocol 3.2 (PostgreSQL 18 and later).
fn server_speaks_3_2() -> bool {
    run(async {
        let conn = momoko::connect(&dsn()).await.unwrap();
        let v = conn
            .server_version()
            .expect("the server reports its version");
        conn.close();
        v >= 180_000
    })
}

/// The version a connection must settle on when it asks for 3.2 and accepts 3.0.
fn expected_with_3_2() -> (u16, u16) {
    if server_speaks_3_2() {
        (3, 2)
    } else {
        (3, 0)
    }
}

async fn connect(extra: &str) -> Result<Connection, Error> {
    momoko::connect(&format!("{} {extra}", dsn())).await
}

async fn one(conn: &Connection, sql: &str) -> i32 {
    let mut c = conn.execute(sql, ()).await.unwrap();
    assert_eq!(c.rowcount(), 1);
    c.fetchone().unwrap().get::<_, i32>(0)
}

#[test]
fn max_protocol_version_3_2_speaks_the_newest_the_server_has_and_works() {
    let expected = expected_with_3_2();
    run(async move {
        let conn = connect("max_protocol_version=3.2").await.unwrap();
        assert_eq!(conn.protocol_version(), expected);
        assert_eq!(one(&conn, "SELECT 40 + 2").await, 42);
        // Prepared statements and their binary rows are the same on both versions.
        let mut c = conn.query("SELECT $1::int * 2", (21,)).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 42);
    });
}

#[test]
fn latest_asks_for_3_2_too() {
    let expected = expected_with_3_2();
    run(async move {
        let conn = connect("max_protocol_version=latest").await.unwrap();
        assert_eq!(conn.protocol_version(), expected);
        assert_eq!(one(&conn, "SELECT 1").await, 1);
    });
}

#[test]
fn the_default_is_3_0_on_every_server_as_in_libpq_18() {
    run(async {
        let conn = connect("").await.unwrap();
        assert_eq!(conn.protocol_version(), (3, 0));
        let conn = connect("max_protocol_version=3.0").await.unwrap();
        assert_eq!(conn.protocol_version(), (3, 0));
        // Not connected yet: nothing is spoken.
        assert_eq!(Connection::new(&dsn()).protocol_version(), (0, 0));
    });
}

#[test]
fn min_protocol_version_3_2_is_refused_by_a_server_before_18_with_both_versions_named() {
    let speaks_3_2 = server_speaks_3_2();
    run(async move {
        let r = connect("min_protocol_version=3.2").await;
        if speaks_3_2 {
            let conn = r.expect("PostgreSQL 18 speaks 3.2");
            assert_eq!(conn.protocol_version(), (3, 2));
            assert_eq!(one(&conn, "SELECT 7").await, 7);
        } else {
            let e = r.expect_err("the server speaks only 3.0");
            assert_eq!(e.kind(), ErrorKind::Connection, "{e}");
            assert!(
                e.to_string().contains(
                    "server only supports protocol version 3.0, but \
                     \"min_protocol_version\" was set to 3.2"
                ),
                "{e}"
            );
        }
    });
}

#[test]
fn a_bad_version_is_a_usage_error_before_anything_is_sent() {
    run(async {
        for (extra, words) in [
            (
                "max_protocol_version=3.1",
                "invalid max_protocol_version value: \"3.1\"",
            ),
            (
                "min_protocol_version=three",
                "invalid min_protocol_version value: \"three\"",
            ),
            (
                "min_protocol_version=latest max_protocol_version=3.0",
                "\"min_protocol_version\" is greater than \"max_protocol_version\"",
            ),
        ] {
            let e = connect(extra).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Usage, "{e}");
            assert!(e.to_string().contains(words), "{e}");
        }
    });
}

#[test]
fn a_pool_asking_for_3_2_serves_queries() {
    let expected = expected_with_3_2();
    run(async move {
        let pool = Pool::builder(&format!("{} max_protocol_version=3.2", dsn()))
            .size(2)
            .build()
            .unwrap();
        pool.connect().await.unwrap();
        let conn = pool.getconn(false).await.unwrap();
        assert_eq!(conn.protocol_version(), expected);
        pool.putconn(conn).unwrap();
        let mut c = pool.execute("SELECT 5", ()).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 5);
        pool.close().unwrap();
    });
}

/// Asserts that a ten-second sleep on `conn` is cancelled (57014) within three seconds and
/// that the connection is usable afterwards.
async fn cancel_stops_a_sleep(conn: &Connection) {
    let started = Instant::now();
    let sleeping = conn.execute("SELECT pg_sleep(10)", ());
    common::sleep(Duration::from_millis(200)).await;
    conn.cancel().await.unwrap();
    let e = sleeping.await.unwrap_err();
    assert_eq!(e.code(), Some("57014"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cancelled after {:?}",
        started.elapsed()
    );
    assert_eq!(one(conn, "SELECT 1").await, 1);
}

#[test]
fn cancel_with_the_servers_key_stops_a_running_sleep() {
    // PostgreSQL 18 ignores a CancelRequest whose key is not the whole 32 bytes it sent:
    // the sleep would run its ten seconds.
    let expected = expected_with_3_2();
    run(async move {
        let conn = connect("max_protocol_version=3.2").await.unwrap();
        assert_eq!(conn.protocol_version(), expected);
        cancel_stops_a_sleep(&conn).await;
    });
}

#[test]
fn cancel_over_tls_with_the_servers_key_stops_a_running_sleep() {
    let Some(tls) = server().tls.as_ref() else {
        eprintln!("no TLS test server: skipped");
        return;
    };
    let expected = expected_with_3_2();
    let tls_dsn = format!("{} max_protocol_version=3.2", tls.dsn);
    run(async move {
        let conn = momoko::connect(&tls_dsn).await.unwrap();
        assert!(conn.ssl_in_use());
        assert_eq!(conn.protocol_version(), expected);
        cancel_stops_a_sleep(&conn).await;
    });
}

#[test]
fn an_embedded_connection_speaks_3_2_and_cancels_with_the_whole_key() {
    use mio::{Events, Poll, Token};
    let expected = expected_with_3_2();
    let mut poll = Poll::new().unwrap();
    let conn = MioConnection::connect(&format!("{} max_protocol_version=3.2", dsn()), |r| {
        r.unwrap()
    });
    conn.register(poll.registry(), Token(7)).unwrap();
    let drive = |poll: &mut Poll, done: &dyn Fn() -> bool| {
        let mut events = Events::with_capacity(16);
        let give_up = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < give_up, "the embedded connection stalled");
            poll.poll(&mut events, Some(Duration::from_millis(20)))
                .unwrap();
            for e in events.iter() {
                conn.handle_event(poll.registry(), e);
            }
            conn.handle_timeout(poll.registry(), Instant::now());
            conn.dispatch(poll.registry());
        }
    };
    drive(&mut poll, &|| conn.is_ready());
    assert_eq!(conn.protocol_version(), expected);
    let outcome: Rc<RefCell<Option<Result<(), Error>>>> = Rc::default();
    let o = outcome.clone();
    let started = Instant::now();
    conn.execute("SELECT pg_sleep(10)", (), move |r| {
        *o.borrow_mut() = Some(r.map(drop))
    });
    drive(&mut poll, &|| {
        started.elapsed() > Duration::from_millis(200)
    });
    let cancelled = Rc::new(RefCell::new(None));
    let c = cancelled.clone();
    conn.cancel(move |r| *c.borrow_mut() = Some(r));
    drive(&mut poll, &|| {
        outcome.borrow().is_some() && cancelled.borrow().is_some()
    });
    cancelled.borrow_mut().take().unwrap().unwrap();
    let e = outcome.borrow_mut().take().unwrap().unwrap_err();
    assert_eq!(e.code(), Some("57014"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    conn.close();
    conn.dispatch(poll.registry());
}

/// What a relay saw on one connection: the bytes each way.
#[derive(Default)]
struct Seen {
    from_server: Vec<u8>,
    from_client: Vec<u8>,
}

/// Every connection a relay carried, in order.
type Recording = Arc<Mutex<Vec<Arc<Mutex<Seen>>>>>;

/// A relay on 127.0.0.1 to the suite's server that keeps every byte of every connection
/// it carries. Connections after the first (the cancel) are relayed too.
fn recording_relay() -> (u16, Recording) {
    let info = server();
    let upstream = format!("{}:{}", info.host, info.port);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let all: Recording = Arc::default();
    let a = all.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().take(4) {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(&upstream) else {
                return;
            };
            let seen: Arc<Mutex<Seen>> = Arc::default();
            a.lock().unwrap().push(seen.clone());
            let pipe =
                |mut from: TcpStream, mut to: TcpStream, seen: Arc<Mutex<Seen>>, up: bool| {
                    std::thread::spawn(move || {
                        let _ = from.set_read_timeout(Some(Duration::from_secs(30)));
                        let mut buf = [0u8; 8192];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            // Kept before it is passed on: once the other side has it,
                            // the test may look.
                            {
                                let mut s = seen.lock().unwrap();
                                let log = if up {
                                    &mut s.from_client
                                } else {
                                    &mut s.from_server
                                };
                                log.extend_from_slice(&buf[..n]);
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Write);
                    });
                };
            pipe(
                client.try_clone().unwrap(),
                server.try_clone().unwrap(),
                seen.clone(),
                true,
            );
            pipe(server, client, seen, false);
        }
    });
    (port, all)
}

/// The body of the first message of type `tag` in a stream of backend messages.
fn first_message(stream: &[u8], tag: u8) -> Option<Vec<u8>> {
    let mut at = 0;
    while at + 5 <= stream.len() {
        let len = i32::from_be_bytes(stream[at + 1..at + 5].try_into().unwrap()) as usize;
        let end = at + 1 + len;
        if end > stream.len() {
            return None;
        }
        if stream[at] == tag {
            return Some(stream[at + 5..end].to_vec());
        }
        at = end;
    }
    None
}

#[test]
fn the_key_the_server_sends_is_the_key_the_cancel_request_carries_byte_for_byte() {
    let speaks_3_2 = server_speaks_3_2();
    let (port, seen) = recording_relay();
    let relayed = dsn()
        .split_whitespace()
        .filter(|w| !w.starts_with("host=") && !w.starts_with("port="))
        .collect::<Vec<_>>()
        .join(" ");
    let relayed =
        format!("{relayed} host=127.0.0.1 port={port} sslmode=disable max_protocol_version=3.2");
    run(async move {
        let conn = momoko::connect(&relayed).await.unwrap();
        cancel_stops_a_sleep(&conn).await;
        conn.close();
    });
    let seen = seen.lock().unwrap();
    assert!(
        seen.len() >= 2,
        "a session and a cancel went through the relay"
    );
    let session = seen[0].lock().unwrap();
    let key_data = first_message(&session.from_server, b'K').expect("BackendKeyData");
    let key_len = key_data.len() - 4;
    assert_eq!(key_len, if speaks_3_2 { 32 } else { 4 });
    // The StartupMessage asked for 3.2.
    assert_eq!(&session.from_client[4..8], &0x0003_0002i32.to_be_bytes());
    // Every cancel sent is the whole key. (One is sent again while the query still runs:
    // a repeat cut short by the query's end may have written nothing yet.)
    let mut expected = ((12 + key_len) as i32).to_be_bytes().to_vec();
    expected.extend_from_slice(&80_877_102i32.to_be_bytes());
    expected.extend_from_slice(&key_data);
    let cancels: Vec<Vec<u8>> = seen[1..]
        .iter()
        .map(|c| c.lock().unwrap().from_client.clone())
        .filter(|bytes| !bytes.is_empty())
        .collect();
    assert!(
        !cancels.is_empty(),
        "no CancelRequest went through the relay"
    );
    for bytes in cancels {
        assert_eq!(bytes, expected);
    }
}

/// `pgbouncer -V`'s version as (major, minor).
fn pgbouncer_version() -> Option<(u32, u32)> {
    let v = momoko_testpg::pgbouncer_version().ok()?;
    let mut parts = v.trim().split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}

#[test]
fn through_pgbouncer_the_default_3_0_connects_where_asking_for_3_2_may_not() {
    // Why the default stays 3.0: a PgBouncer without protocol negotiation (Debian 12 ships
    // 1.18) refuses a StartupMessage for 3.2 outright, and newer ones can answer it with two
    // NegotiateProtocolVersion messages (pgbouncer#1459).
    let Some(version) = pgbouncer_version() else {
        eprintln!("no pgbouncer: skipped");
        return;
    };
    let bouncer =
        momoko_testpg::Bouncer::start(server(), &Default::default()).expect("a PgBouncer");
    let through = bouncer.dsn().to_owned();
    run(async move {
        let conn = momoko::connect(&through).await.unwrap();
        assert_eq!(conn.protocol_version(), (3, 0));
        assert_eq!(one(&conn, "SELECT 3").await, 3);
        let asked = momoko::connect(&format!("{through} max_protocol_version=3.2")).await;
        match asked {
            Err(e) if version <= (1, 18) || e.code() == Some("08P01") => {
                assert_eq!(e.code(), Some("08P01"), "{e}");
                assert!(e.to_string().contains("bad packet header"), "{e}");
            }
            Err(e) => assert!(
                e.to_string()
                    .contains("received duplicate protocol negotiation message"),
                "PgBouncer {version:?}: {e}"
            ),
            Ok(conn) => {
                assert!(version > (1, 18), "PgBouncer {version:?} took 3.2");
                assert_eq!(one(&conn, "SELECT 4").await, 4);
            }
        }
    });
}
