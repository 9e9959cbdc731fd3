//! A user's first day: every mistake says why, once; no password is ever shown; the
//! connection string is checked before anything connects; a wrong number of parameters is
//! refused before anything is sent; the transaction status reads as words; a `Config` built
//! in code goes wherever a connection string does.

mod common;

use std::cell::RefCell;
use std::error::Error as _;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::rc::Rc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{dsn, refused_port, run, server};
use mio::{Events, Poll, Token};
use momoko::{
    Config, Connection, ConnectionBuilder, Error, ErrorKind, MioConnection, Pool, PoolBuilder,
    TransactionStatus,
};

// ----------------------------------------------------------------------------------------
// Helpers
// ----------------------------------------------------------------------------------------

/// What an error-chain printer (anyhow's `{:#}`) shows: each error's Display, joined.
fn chain(e: &Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(&format!(": {s}"));
        next = s.source();
    }
    out
}

/// `Pool::connect`'s error for `dsn` with two connections.
async fn pool_connect_error(dsn: &str) -> (Error, Pool) {
    let pool = Pool::builder(dsn)
        .size(2)
        .connect_timeout(Duration::from_secs(10))
        .reconnect_interval(Duration::from_secs(30))
        .build()
        .expect("a well-formed connection string");
    let err = pool.connect().await.expect_err("nothing to connect to");
    (err, pool)
}

/// Checks the rules every `Pool::connect` error keeps when no connection could be made:
/// the count, the cause once (in Display, not again in the chain), no "partially".
fn assert_none_connected(err: &Error, pool: &Pool) -> Error {
    assert_eq!(err.kind(), ErrorKind::DatabaseNotAvailable, "{err}");
    let cause = err.cause().expect("the first failure").clone();
    assert_eq!(
        err.to_string(),
        format!(
            "database not available: 0 of 2 connections could be made: {}",
            without_kind(&cause)
        )
    );
    assert!(!err.to_string().contains("partially"), "{err}");
    assert_eq!(chain(err), err.to_string(), "said once");
    assert_eq!(err.code(), cause.code());
    let last = pool.last_connect_error().expect("kept for operators");
    assert_eq!(last.to_string(), cause.to_string());
    cause
}

/// The error's text without its kind in front, as a wrapping error quotes it.
fn without_kind(e: &Error) -> String {
    let all = e.to_string();
    match (e.kind(), all.split_once(": ")) {
        (ErrorKind::Db, _) | (_, None) => all,
        (_, Some((_, rest))) => rest.to_owned(),
    }
}

/// A server that answers every SSLRequest with `N` (no TLS) and then closes.
fn plain_only_server(connections: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for _ in 0..connections {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let mut request = [0u8; 8];
            s.read_exact(&mut request).unwrap();
            // SSLRequest: length 8, code 80877103.
            assert_eq!(request, [0, 0, 0, 8, 4, 210, 22, 47]);
            s.write_all(b"N").unwrap();
        }
    });
    port
}

// ----------------------------------------------------------------------------------------
// 1. Pool::connect says why, once
// ----------------------------------------------------------------------------------------

#[test]
fn pool_connect_with_no_server_says_how_many_and_why() {
    run(async {
        let port = refused_port();
        let (err, pool) =
            pool_connect_error(&format!("host=127.0.0.1 port={port} user=u dbname=d")).await;
        let cause = assert_none_connected(&err, &pool);
        assert_eq!(cause.kind(), ErrorKind::Connection);
        assert_eq!(
            err.to_string(),
            "database not available: 0 of 2 connections could be made: could not connect \
                 to the server: Connection refused (os error 111)"
        );
        assert_eq!(
            err.io_error().map(std::io::Error::kind),
            Some(std::io::ErrorKind::ConnectionRefused)
        );
        assert_eq!(err.code(), None);
        // A request then fails for want of a connection, and says why.
        let e = pool.execute("SELECT 1", ()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DatabaseNotAvailable);
        assert_eq!(
            e.to_string(),
            "database not available: no database connection available; the last connect \
                 failed: could not connect to the server: Connection refused (os error 111)"
        );
        assert_eq!(chain(&e), e.to_string());
        pool.close().unwrap();
    });
}

#[test]
fn pool_connect_as_an_unknown_user_gives_28000() {
    run(async {
        let (err, pool) = pool_connect_error(&format!("{} user=nobody_here", dsn())).await;
        let cause = assert_none_connected(&err, &pool);
        assert_eq!(err.code(), Some("28000"));
        assert_eq!(cause.kind(), ErrorKind::Db);
        assert_eq!(
            err.as_db_error().map(|d| d.message.as_str()),
            Some("role \"nobody_here\" does not exist")
        );
        assert_eq!(
            err.to_string(),
            "database not available: 0 of 2 connections could be made: FATAL: role \
             \"nobody_here\" does not exist (SQLSTATE 28000)"
        );
        pool.close().unwrap();
    });
}

#[test]
fn pool_connect_with_a_wrong_password_gives_28p01_and_never_shows_it() {
    let Some(scram) = server().dsn_scram.clone() else {
        return; // a server named by MOMOKO_TEST_DSN alone has no password user
    };
    let words: Vec<&str> = scram
        .split_whitespace()
        .filter(|w| !w.starts_with("password="))
        .collect();
    let wrong = format!("{} password=s3cret", words.join(" "));
    run(async move {
        let (err, pool) = pool_connect_error(&wrong).await;
        assert_none_connected(&err, &pool);
        assert_eq!(err.code(), Some("28P01"));
        assert!(
            err.to_string().contains("password authentication failed"),
            "{err}"
        );
        assert!(!format!("{err} {err:?} {err:#?}").contains("s3cret"));
        pool.close().unwrap();
    });
}

#[test]
fn pool_connect_to_a_missing_database_gives_3d000() {
    run(async {
        let (err, pool) = pool_connect_error(&format!("{} dbname=no_such_db", dsn())).await;
        assert_none_connected(&err, &pool);
        assert_eq!(err.code(), Some("3D000"));
        assert_eq!(
            err.to_string(),
            "database not available: 0 of 2 connections could be made: FATAL: database \
             \"no_such_db\" does not exist (SQLSTATE 3D000)"
        );
        pool.close().unwrap();
    });
}

#[test]
fn pool_connect_requiring_tls_of_a_server_without_it_says_so() {
    let port = plain_only_server(2);
    run(async move {
        let (err, pool) = pool_connect_error(&format!(
            "host=127.0.0.1 port={port} user=u dbname=d sslmode=require"
        ))
        .await;
        assert_none_connected(&err, &pool);
        assert_eq!(
            err.to_string(),
            "database not available: 0 of 2 connections could be made: server does not \
             support SSL, but SSL was required (sslmode=require)"
        );
        pool.close().unwrap();
    });
}

#[test]
fn pool_connect_to_an_unknown_host_names_it() {
    run(async {
        let (err, pool) =
            pool_connect_error("host=nonexistent.invalid port=5432 user=u dbname=d").await;
        let cause = assert_none_connected(&err, &pool);
        assert_eq!(cause.kind(), ErrorKind::Connection);
        assert!(
            err.to_string().starts_with(
                "database not available: 0 of 2 connections could be made: could not \
                 translate host name \"nonexistent.invalid\""
            ),
            "{err}"
        );
        pool.close().unwrap();
    });
}

#[test]
fn a_partly_connected_pool_says_how_many_and_the_first_failure() {
    run(async {
        let calls = Rc::new(std::cell::Cell::new(0));
        let c2 = calls.clone();
        let pool = Pool::builder(&dsn())
            .size(2)
            .reconnect_interval(Duration::from_secs(30))
            .on_connect(move |_conn| {
                let n = c2.get() + 1;
                c2.set(n);
                async move {
                    if n == 1 {
                        Err(Error::new(ErrorKind::Usage, "the first on_connect refuses"))
                    } else {
                        Ok(())
                    }
                }
            })
            .build()
            .unwrap();
        let err = pool.connect().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PartiallyConnected);
        assert_eq!(
            err.to_string(),
            "partially connected: 1 of 2 connections could be made: the first on_connect \
             refuses"
        );
        assert_eq!(err.cause().map(Error::kind), Some(ErrorKind::Usage));
        assert_eq!(chain(&err), err.to_string());
        // The pool is usable, as Momoko's is after PartiallyConnectedError.
        let mut c = pool.execute("SELECT 1", ()).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 1);
        pool.close().unwrap();
    });
}

// ----------------------------------------------------------------------------------------
// 2. A request on a connection that failed to connect says why, once
// ----------------------------------------------------------------------------------------

/// Turns the test's own mio loop until `done` holds; fails after 10 s.
fn drive(poll: &mut Poll, conn: &MioConnection, mut done: impl FnMut() -> bool) {
    let mut events = Events::with_capacity(16);
    let give_up = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < give_up, "the embedded connection hung");
        let timeout = conn
            .next_deadline()
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(50))
            .min(Duration::from_millis(50));
        poll.poll(&mut events, Some(timeout)).unwrap();
        for e in events.iter() {
            conn.handle_event(poll.registry(), e);
        }
        conn.handle_timeout(poll.registry(), Instant::now());
        conn.dispatch(poll.registry());
    }
}

type Slot<T> = Rc<RefCell<Option<T>>>;

#[test]
fn a_request_after_a_failed_connect_gets_the_connect_error_once() {
    let mut poll = Poll::new().unwrap();
    let port = refused_port();
    let connected: Slot<Error> = Rc::default();
    let c = connected.clone();
    let conn = MioConnection::connect(
        &format!("host=127.0.0.1 port={port} user=u dbname=d"),
        move |r| *c.borrow_mut() = r.err(),
    );
    conn.register(poll.registry(), Token(7)).unwrap();
    drive(&mut poll, &conn, || connected.borrow().is_some());
    let cause = connected.borrow().clone().unwrap();
    assert_eq!(
        cause.to_string(),
        "connection error: could not connect to the server: Connection refused (os \
             error 111)"
    );
    let got: Slot<Error> = Rc::default();
    let g = got.clone();
    conn.execute("SELECT 1", (), move |r| *g.borrow_mut() = r.err());
    drive(&mut poll, &conn, || got.borrow().is_some());
    let e = got.borrow().clone().unwrap();
    assert_eq!(e.kind(), ErrorKind::Connection);
    assert_eq!(
        e.to_string(),
        "connection error: the connection failed to connect: could not connect to the \
             server: Connection refused (os error 111)"
    );
    assert_eq!(chain(&e), e.to_string());
    assert_eq!(e.to_string().matches("connection is closed").count(), 0);
}

#[test]
fn a_request_on_a_connection_closed_by_the_client_says_closed_once() {
    let mut poll = Poll::new().unwrap();
    let ready = Rc::new(std::cell::Cell::new(false));
    let r = ready.clone();
    let conn = MioConnection::connect(&dsn(), move |res| {
        res.unwrap();
        r.set(true)
    });
    conn.register(poll.registry(), Token(7)).unwrap();
    drive(&mut poll, &conn, || ready.get());
    assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
    conn.close();
    conn.dispatch(poll.registry());
    assert_eq!(conn.transaction_status(), TransactionStatus::Unknown);
    let got: Slot<Error> = Rc::default();
    let g = got.clone();
    conn.execute("SELECT 1", (), move |r| *g.borrow_mut() = r.err());
    drive(&mut poll, &conn, || got.borrow().is_some());
    let e = got.borrow().clone().unwrap();
    assert_eq!(
        e.to_string(),
        "connection error: the connection is closed: the connection was closed by the client"
    );
}

// ----------------------------------------------------------------------------------------
// 3. No password in any Debug, error or log line
// ----------------------------------------------------------------------------------------

struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        self.0
            .lock()
            .unwrap()
            .push(format!("{} {}", record.target(), record.args()));
    }
    fn flush(&self) {}
}

fn captured() -> &'static Capture {
    static CAPTURE: std::sync::OnceLock<&'static Capture> = std::sync::OnceLock::new();
    CAPTURE.get_or_init(|| {
        let c: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        log::set_logger(c).expect("the only logger of this test binary");
        log::set_max_level(log::LevelFilter::Trace);
        c
    })
}

fn assert_hidden(what: &str, shown: String) {
    assert!(
        !shown.contains("s3cret"),
        "{what} shows the password: {shown}"
    );
}

#[test]
fn no_debug_shows_the_password_in_keyword_or_uri_form() {
    let log = captured();
    let port = refused_port();
    let keyword = format!("host=127.0.0.1 port={port} user=u dbname=d password=s3cret");
    let uri = format!("postgresql://u:s3cret@127.0.0.1:{port}/d?application_name=a");
    let config = Config::new()
        .host("127.0.0.1")
        .port(port)
        .user("u")
        .dbname("d")
        .password("s3cret");
    assert_hidden("Config", format!("{config:?} {config:#?}"));
    for dsn in [&keyword, &uri] {
        let pb = Pool::builder(dsn).size(1);
        assert_hidden("PoolBuilder", format!("{pb:?} {pb:#?}"));
        let cb = Connection::builder(dsn);
        assert_hidden("ConnectionBuilder", format!("{cb:?} {cb:#?}"));
        assert!(format!("{pb:?}").contains("password=***"), "{pb:?}");
    }
    let pb = PoolBuilder::from_config(config.clone()).size(2);
    let cb = ConnectionBuilder::from_config(config.clone());
    assert_hidden(
        "builders from a Config",
        format!("{pb:?} {pb:#?} {cb:?} {cb:#?}"),
    );
    // Malformed: the string is not shown at all, the error masks the password.
    let bad = "host=h usr=me password=s3cret";
    let pb = Pool::builder(bad);
    assert_hidden("PoolBuilder of a bad string", format!("{pb:?} {pb:#?}"));
    let err = pb.build().unwrap_err();
    assert_hidden("its error", format!("{err} {err:?}"));
    for malformed in [
        "postgresql://u:s3cret@[::1/db",
        "postgresql://u:s3cret@[::1]x/db",
        "postgresql://u:s3cr%zzet@h/db",
        "postgresql://h/db?password=s3cr%zzet",
        "postgresql://u:s3cret@h/db?usr=me",
    ] {
        let err = Pool::builder(malformed).build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage, "{err}");
        assert_hidden(malformed, format!("{err} {err:?} {err:#?}"));
    }
    run(async move {
        for dsn in [&keyword, &uri] {
            let pool = Pool::builder(dsn).size(1).build().unwrap();
            assert_hidden("Pool", format!("{pool:?} {pool:#?}"));
            let err = pool.connect().await.unwrap_err();
            assert_hidden("a connect error", format!("{err} {err:?} {err:#?}"));
            let err = pool.execute("SELECT 1", ()).await.unwrap_err();
            assert_hidden("a request's error", format!("{err} {err:?} {err:#?}"));
            pool.close().unwrap();
            let conn = Connection::new(dsn);
            assert_hidden("Connection", format!("{conn:?} {conn:#?}"));
            let err = conn.connect().await.unwrap_err();
            assert_hidden("Connection's error", format!("{err} {err:?} {err:#?}"));
            let mio = MioConnection::connect(dsn, |_| {});
            assert_hidden("MioConnection", format!("{mio:?} {mio:#?}"));
        }
    });
    let lines = log.0.lock().unwrap().join("\n");
    assert_hidden("the log", lines);
}

// ----------------------------------------------------------------------------------------
// 4. The connection string is checked before anything connects
// ----------------------------------------------------------------------------------------

fn build_error(dsn: &str) -> String {
    let err = Pool::builder(dsn).build().expect_err(dsn);
    assert_eq!(err.kind(), ErrorKind::Usage, "{err}");
    err.to_string()
}

#[test]
fn a_mistake_in_the_connection_string_fails_the_pool_builder_in_libpqs_words() {
    assert_eq!(
        build_error("host=db usr=me"),
        "usage error: invalid connection option \"usr\""
    );
    assert_eq!(
        build_error("host=db sslmode=bogus"),
        "usage error: invalid sslmode value: \"bogus\""
    );
    assert_eq!(
        build_error("host=db port=x"),
        "usage error: invalid integer value \"x\" for connection option \"port\""
    );
    assert_eq!(
        build_error("host=db port=99999"),
        "usage error: invalid port number: \"99999\""
    );
    assert_eq!(
        build_error("postgresql://db/app?usr=me"),
        "usage error: invalid URI query parameter: \"usr\""
    );
    assert_eq!(
        build_error("host=db user"),
        "usage error: missing \"=\" after \"user\" in connection info string"
    );
    assert_eq!(
        Pool::new("host=db usr=me", 2).unwrap_err().to_string(),
        "usage error: invalid connection option \"usr\""
    );
}

#[test]
fn a_mistake_in_the_connection_string_fails_a_connect_before_any_io() {
    run(async {
        let started = Instant::now();
        for (dsn, said) in [
            ("host=db usr=me", "invalid connection option \"usr\""),
            ("host=db sslmode=bogus", "invalid sslmode value: \"bogus\""),
            (
                "host=db port=x",
                "invalid integer value \"x\" for connection option \"port\"",
            ),
        ] {
            let err = Connection::builder(dsn).connect().await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Usage, "{err}");
            assert_eq!(err.to_string(), format!("usage error: {said}"));
        }
        // `db` is never looked up: no name lookup, no socket.
        assert!(started.elapsed() < Duration::from_millis(500));
    });
}

// ----------------------------------------------------------------------------------------
// 5. The number of parameters is checked before anything is sent
// ----------------------------------------------------------------------------------------

const TOO_MANY: &str = "usage error: the statement takes 1 parameter but 2 were given";
const TOO_FEW: &str = "usage error: the statement takes 2 parameters but 1 was given";
const ZERO: &str = "usage error: the statement takes 0 parameters but 1 was given";
const ONE: &str = "usage error: the statement takes 1 parameter but 0 were given";

fn usage_text(r: Result<momoko::Cursor, Error>) -> String {
    let e = r.expect_err("a wrong number of parameters");
    assert_eq!(e.kind(), ErrorKind::Usage, "{e}");
    e.to_string()
}

#[test]
fn connection_query_refuses_a_wrong_number_of_parameters_and_stays_usable() {
    for cache in [None, Some(0)] {
        run(async move {
            let mut b = Connection::builder(&dsn());
            if let Some(n) = cache {
                b = b.statement_cache_size(n);
            }
            let conn = b.connect().await.unwrap();
            let pid = conn.backend_pid();
            assert_eq!(
                usage_text(conn.query("SELECT $1::int", (1, 2)).await),
                TOO_MANY
            );
            assert_eq!(
                usage_text(conn.query("SELECT $1::int + $2::int", (1,)).await),
                TOO_FEW
            );
            assert_eq!(usage_text(conn.query("SELECT 1", (1,)).await), ZERO);
            assert_eq!(usage_text(conn.query("SELECT $1::int", ()).await), ONE);
            // A `$2` inside a literal, a comment or a name is no parameter.
            let mut c = conn
                .query("SELECT $1::int AS a$2 /* $2 */, '$2' AS b", (7,))
                .await
                .unwrap();
            let row = c.fetchone().unwrap();
            assert_eq!(
                (row.get::<_, i32>(0), row.get::<_, String>(1)),
                (7, "$2".into())
            );
            // Nothing reached the server: same session, idle, and a good query works.
            assert_eq!(conn.backend_pid(), pid);
            assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
            let mut c = conn
                .query("SELECT $1::int + $2::int", (1, 2))
                .await
                .unwrap();
            assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 3);
            conn.close();
        });
    }
}

#[test]
fn execute_prepared_refuses_a_wrong_number_of_parameters() {
    run(async {
        let conn = momoko::connect(&dsn()).await.unwrap();
        let one = conn.prepare("SELECT $1::int").await.unwrap();
        let two = conn.prepare("SELECT $1::int + $2::int").await.unwrap();
        let none = conn.prepare("SELECT 1").await.unwrap();
        assert_eq!(
            usage_text(conn.execute_prepared(&one, (1, 2)).await),
            TOO_MANY
        );
        assert_eq!(usage_text(conn.execute_prepared(&two, (1,)).await), TOO_FEW);
        assert_eq!(usage_text(conn.execute_prepared(&none, (1,)).await), ZERO);
        assert_eq!(usage_text(conn.execute_prepared(&one, ()).await), ONE);
        let mut c = conn.execute_prepared(&two, (2, 3)).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 5);
    });
}

#[test]
fn pool_query_refuses_a_wrong_number_of_parameters() {
    run(async {
        let pool = Pool::builder(&dsn()).size(1).build().unwrap();
        pool.connect().await.unwrap();
        assert_eq!(
            usage_text(pool.query("SELECT $1::int", (1, 2)).await),
            TOO_MANY
        );
        assert_eq!(
            usage_text(pool.query("SELECT $1::int + $2::int", (1,)).await),
            TOO_FEW
        );
        assert_eq!(usage_text(pool.query("SELECT 1", (1,)).await), ZERO);
        let mut c = pool.query("SELECT $1::int", (4,)).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 4);
        let s = pool.stats();
        assert_eq!((s.free, s.dead, s.counters.connections_lost), (1, 0, 0));
        pool.close().unwrap();
    });
}

#[test]
fn mio_connection_query_refuses_a_wrong_number_of_parameters() {
    let mut poll = Poll::new().unwrap();
    let ready = Rc::new(std::cell::Cell::new(false));
    let r = ready.clone();
    let conn = MioConnection::connect(&dsn(), move |res| {
        res.unwrap();
        r.set(true)
    });
    conn.register(poll.registry(), Token(7)).unwrap();
    drive(&mut poll, &conn, || ready.get());
    let got: Rc<RefCell<Vec<String>>> = Rc::default();
    for (sql, n) in [
        ("SELECT $1::int", 2),
        ("SELECT $1::int + $2::int", 1),
        ("SELECT 1", 1),
    ] {
        let g = got.clone();
        let params: Vec<i32> = (0..n).collect();
        conn.query(sql, params, move |r| g.borrow_mut().push(usage_text(r)));
    }
    let sum: Slot<i32> = Rc::default();
    let s = sum.clone();
    conn.query("SELECT $1::int + $2::int", (20, 22), move |r| {
        *s.borrow_mut() = Some(r.unwrap().fetchone().unwrap().get(0))
    });
    drive(&mut poll, &conn, || sum.borrow().is_some());
    assert_eq!(*got.borrow(), [TOO_MANY, TOO_FEW, ZERO]);
    assert_eq!(*sum.borrow(), Some(42));
}

// ----------------------------------------------------------------------------------------
// 6. TransactionStatus, and a Config built in code
// ----------------------------------------------------------------------------------------

#[test]
fn the_transaction_status_reads_as_words() {
    run(async {
        let conn = Connection::new(&dsn());
        assert_eq!(conn.transaction_status(), TransactionStatus::Unknown);
        conn.connect().await.unwrap();
        assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
        conn.execute("BEGIN", ()).await.unwrap();
        assert_eq!(conn.transaction_status(), TransactionStatus::InTransaction);
        conn.execute("SELECT 1/0", ()).await.unwrap_err();
        assert_eq!(conn.transaction_status(), TransactionStatus::InError);
        conn.execute("ROLLBACK", ()).await.unwrap();
        assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
        conn.close();
        assert_eq!(conn.transaction_status(), TransactionStatus::Unknown);
    });
}

/// The suite's server as a Config built in code, as the first-day contract writes it.
fn config_in_code() -> Config {
    let info = server();
    let user = info
        .dsn
        .split_whitespace()
        .find_map(|w| w.strip_prefix("user="))
        .unwrap_or("momoko")
        .to_owned();
    Config::new()
        .host(info.host.as_str())
        .port(info.port)
        .user(user)
        .dbname(info.dbname.as_str())
        .password("s3cret") // trust login: sent only if asked for
}

#[test]
fn a_pool_and_a_connection_from_a_config_built_in_code_run_queries() {
    run(async {
        let pool = PoolBuilder::from_config(config_in_code())
            .size(2)
            .build()
            .unwrap();
        pool.connect().await.unwrap();
        assert_eq!(pool.stats().free, 2);
        let mut c = pool.query("SELECT $1::int * 2", (21,)).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 42);
        pool.close().unwrap();
        let conn = ConnectionBuilder::from_config(config_in_code())
            .connect()
            .await
            .unwrap();
        let mut c = conn.execute("SELECT current_database()", ()).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, String>(0), server().dbname);
        assert_eq!(conn.dsn(), "");
    });
}
