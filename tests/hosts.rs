//! Host lists as libpq walks them, against the suite's server and small listeners of the
//! tests' own: every place tried in order, connect_timeout per attempt, an authentication
//! failure ending the walk, target_session_attrs decided from what the server reports (or,
//! before PostgreSQL 14, from what it answers when asked),
//! load_balance_hosts=random, TCP keepalives on the socket, and `query` without a statement
//! cache (PgBouncer's transaction pooling). Replication itself is in tests/replicas.rs.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{refused_port, run, server};
use momoko::{Connection, ErrorKind};

fn base() -> String {
    let s = server();
    format!("dbname={} user=momoko sslmode=disable", s.dbname)
}

/// A listener that accepts and never answers (a host that is up but hung).
fn silent_listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

#[test]
fn a_refused_first_host_falls_through_to_the_next_and_host_and_port_say_where() {
    let port = server().port;
    let dead = refused_port();
    let dsn = format!("host=localhost,127.0.0.1 port={dead},{port} {}", base());
    run(async move {
        let conn = momoko::connect(&dsn).await.unwrap();
        assert_eq!(conn.host().as_deref(), Some("127.0.0.1"));
        assert_eq!(conn.port(), Some(port));
        let one: i32 = conn
            .execute("SELECT 1", ())
            .await
            .unwrap()
            .fetchone()
            .unwrap()
            .get(0);
        assert_eq!(one, 1);
        conn.close();
    });
}

#[test]
fn a_host_that_accepts_and_never_answers_falls_through_within_connect_timeout() {
    let port = server().port;
    let (_hold, silent) = silent_listener();
    let dsn = format!(
        "host=127.0.0.1,127.0.0.1 port={silent},{port} connect_timeout=2 {}",
        base()
    );
    run(async move {
        let started = Instant::now();
        let conn = momoko::connect(&dsn).await.unwrap();
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(1900), "{took:?}");
        assert!(took < Duration::from_secs(8), "{took:?}");
        assert_eq!(conn.port(), Some(port));
        conn.close();
    });
}

#[test]
fn when_every_host_fails_the_error_names_each_and_why() {
    let (a, b) = (refused_port(), refused_port());
    let dsn = format!("host=127.0.0.1,127.0.0.1 port={a},{b} {}", base());
    let e = run(async move { momoko::connect(&dsn).await.unwrap_err() });
    assert_eq!(e.kind(), ErrorKind::Connection);
    let text = e.to_string();
    assert!(
        text.contains("could not connect to any of 2 servers tried"),
        "{text}"
    );
    assert!(text.contains(&format!("127.0.0.1:{a}: ")), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{b}: ")), "{text}");
}

#[test]
fn an_authentication_failure_ends_the_walk_as_libpq_does() {
    let s = server();
    let port = s.port;
    // Both entries would work with the right password: the walk must stop at the first.
    let dsn = format!(
        "host=127.0.0.1,localhost port={port} dbname={} user=momoko_md5 password=wrong sslmode=disable",
        s.dbname
    );
    let e = run(async move { momoko::connect(&dsn).await.unwrap_err() });
    assert_eq!(e.code(), Some("28P01"), "{e}");
    assert!(!e.to_string().contains("servers tried"), "{e}");
}

#[test]
fn target_session_attrs_keep_a_primary_only_where_it_fits() {
    let port = server().port;
    for (attrs, fits) in [
        ("any", Ok(())),
        ("read-write", Ok(())),
        ("primary", Ok(())),
        // No standby answered: the second pass takes any server.
        ("prefer-standby", Ok(())),
        ("read-only", Err("session is not read-only")),
        ("standby", Err("server is not in hot standby mode")),
    ] {
        let dsn = format!(
            "host=127.0.0.1 port={port} target_session_attrs={attrs} {}",
            base()
        );
        let got = run(async move { momoko::connect(&dsn).await.map(|c| c.close()) });
        match (fits, got) {
            (Ok(()), Ok(())) => {}
            (Err(why), Err(e)) => {
                assert_eq!(e.kind(), ErrorKind::Connection, "{attrs}: {e}");
                assert!(e.to_string().contains(why), "{attrs}: {e}");
            }
            (want, got) => panic!("{attrs}: wanted {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn a_server_before_14_is_asked_what_it_did_not_report_on_the_same_connection() {
    // PostgreSQL 14 and later report in_hot_standby and default_transaction_read_only at
    // startup; before 14 nothing is reported, and momoko asks as libpq does (SHOW
    // transaction_read_only, SELECT pg_catalog.pg_is_in_recovery()) before handing the
    // connection out. Either way the same servers fit: this test runs on both kinds (the
    // suite's PostgreSQL 15, and `make test`'s pass on PostgreSQL 13).
    let port = server().port;
    let dsn = |attrs: &str| {
        format!(
            "host=127.0.0.1 port={port} target_session_attrs={attrs} {}",
            base()
        )
    };
    let (rw, primary, prefer) = (dsn("read-write"), dsn("primary"), dsn("prefer-standby"));
    run(async move {
        for dsn in [&rw, &primary, &prefer] {
            let conn = momoko::connect(dsn).await.unwrap();
            let version = conn.server_version().unwrap();
            let reported = conn.parameter("in_hot_standby");
            if version >= 140000 {
                assert_eq!(reported.as_deref(), Some("off"), "{dsn}");
            } else {
                assert_eq!(reported, None, "{version}: {dsn}");
            }
            // The question's answer was read whole: the caller's first query gets its own.
            let (one, in_recovery): (i32, bool) = {
                let mut c = conn
                    .execute("SELECT 1, pg_is_in_recovery()", ())
                    .await
                    .unwrap();
                let row = c.fetchone().unwrap();
                (row.get(0), row.get(1))
            };
            assert_eq!((one, in_recovery), (1, false), "{dsn}");
            conn.close();
        }
    });
    // And a server that does not fit is left with libpq's reason, whichever way it was
    // found out, and the walk goes on to the next host.
    let dead = refused_port();
    let walk = format!(
        "host=127.0.0.1,127.0.0.1 port={port},{dead} target_session_attrs=standby {}",
        base()
    );
    let e = run(async move { momoko::connect(&walk).await.unwrap_err() });
    let text = e.to_string();
    assert!(
        text.contains(&format!(
            "127.0.0.1:{port}: server is not in hot standby mode"
        )),
        "{text}"
    );
    assert!(text.contains(&format!("127.0.0.1:{dead}: ")), "{text}");
}

#[test]
fn a_primary_made_read_only_by_default_is_read_only_not_standby() {
    let port = server().port;
    let opts = "options='-c default_transaction_read_only=on'";
    let ro = format!(
        "host=127.0.0.1 port={port} target_session_attrs=read-only {opts} {}",
        base()
    );
    let rw = format!(
        "host=127.0.0.1 port={port} target_session_attrs=read-write {opts} {}",
        base()
    );
    let sb = format!(
        "host=127.0.0.1 port={port} target_session_attrs=standby {opts} {}",
        base()
    );
    run(async move {
        momoko::connect(&ro).await.unwrap().close();
        let e = momoko::connect(&rw).await.unwrap_err();
        assert!(e.to_string().contains("session is read-only"), "{e}");
        let e = momoko::connect(&sb).await.unwrap_err();
        assert!(
            e.to_string().contains("server is not in hot standby mode"),
            "{e}"
        );
    });
}

#[test]
fn load_balance_hosts_random_reaches_every_host() {
    let port = server().port;
    let (proxy, _) = common::relay();
    let other = proxy.local_addr().port();
    let dsn = format!(
        "host=127.0.0.1,127.0.0.1 port={port},{other} load_balance_hosts=random {}",
        base()
    );
    let ports = run(async move {
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..40 {
            let c = momoko::connect(&dsn).await.unwrap();
            *seen.entry(c.port().unwrap()).or_insert(0) += 1;
            c.close();
        }
        seen
    });
    assert_eq!(ports.len(), 2, "{ports:?}");
    assert!(ports.values().all(|&n| n >= 5), "{ports:?}");
    // In order, the first host always wins.
    let dsn = format!("host=127.0.0.1,127.0.0.1 port={port},{other} {}", base());
    run(async move {
        for _ in 0..10 {
            let c = momoko::connect(&dsn).await.unwrap();
            assert_eq!(c.port(), Some(port));
            c.close();
        }
    });
    drop(proxy);
}

/// The timer column of this process's socket to the server in /proc/net/tcp: `02` while a
/// keepalive timer runs, `00` when no timer does.
async fn keepalive_timer(conn: &Connection) -> String {
    let local: i32 = conn
        .execute(
            "SELECT client_port FROM pg_stat_activity WHERE pid = pg_backend_pid()",
            (),
        )
        .await
        .unwrap()
        .fetchone()
        .unwrap()
        .get(0);
    let want = format!("0100007F:{:04X}", local);
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let line = table
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(want.as_str()))
        .unwrap_or_else(|| panic!("no socket {want} in /proc/net/tcp"));
    line.split_whitespace()
        .nth(5)
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn tcp_keepalives_follow_the_connection_string() {
    let port = server().port;
    let on = format!(
        "host=127.0.0.1 port={port} keepalives_idle=7 keepalives_interval=2 keepalives_count=3 {}",
        base()
    );
    let off = format!("host=127.0.0.1 port={port} keepalives=0 {}", base());
    run(async move {
        let c = momoko::connect(&on).await.unwrap();
        assert_eq!(keepalive_timer(&c).await, "02");
        c.close();
        let c = momoko::connect(&off).await.unwrap();
        assert_eq!(keepalive_timer(&c).await, "00");
        c.close();
    });
}

#[test]
fn without_a_statement_cache_query_leaves_no_statement_on_the_server() {
    let dsn = format!("host=127.0.0.1 port={} {}", server().port, base());
    run(async move {
        let conn = Connection::builder(&dsn)
            .statement_cache_size(0)
            .connect()
            .await
            .unwrap();
        for i in 0..20 {
            let mut c = conn
                .query("SELECT $1::int + 1, $2::text, NULL::int", (i, "x"))
                .await
                .unwrap();
            let row = c.fetchone().unwrap();
            assert_eq!(row.get::<_, i32>(0), i + 1);
            assert_eq!(row.get::<_, String>(1), "x");
            assert_eq!(row.get::<_, Option<i32>>(2), None);
        }
        let e = conn.query("SELECT $1::int", ("nope",)).await.unwrap_err();
        assert_eq!(e.code(), Some("22P02"), "{e}");
        let n: i64 = conn
            .execute("SELECT count(*) FROM pg_prepared_statements", ())
            .await
            .unwrap()
            .fetchone()
            .unwrap()
            .get(0);
        assert_eq!(n, 0);
        // And with the default cache, the statement stays prepared.
        let cached = momoko::connect(&dsn).await.unwrap();
        cached.query("SELECT $1::int + 1", (1,)).await.unwrap();
        let n: i64 = cached
            .execute("SELECT count(*) FROM pg_prepared_statements", ())
            .await
            .unwrap()
            .fetchone()
            .unwrap()
            .get(0);
        assert_eq!(n, 1);
        conn.close();
        cached.close();
    });
}

#[test]
fn malformed_host_lists_are_usage_errors_before_any_connect() {
    for (dsn, says) in [
        (
            "host=a,b port=1,2,3",
            "could not match 3 port numbers to 2 hosts",
        ),
        ("host=a port=70000", "invalid port number"),
        (
            "host=a,b hostaddr=127.0.0.1",
            "could not match 2 host names to 1 hostaddr values",
        ),
        (
            "host=a target_session_attrs=primary-ish",
            "invalid target_session_attrs value",
        ),
        (
            "host=a load_balance_hosts=yes",
            "invalid load_balance_hosts value",
        ),
    ] {
        let e = momoko::Config::parse(dsn).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage, "{dsn}");
        assert!(e.to_string().contains(says), "{dsn}: {e}");
    }
}

#[test]
fn a_name_that_does_not_resolve_is_one_failed_attempt_and_the_walk_goes_on() {
    let port = server().port;
    let dsn = format!("host=nonexistent.invalid,localhost port={port} {}", base());
    run(async move {
        let conn = momoko::connect(&dsn).await.unwrap();
        assert_eq!(conn.host().as_deref(), Some("localhost"));
        conn.close();
    });
    let dsn = format!(
        "host=nonexistent.invalid,127.0.0.1 port={port},{} {}",
        refused_port(),
        base()
    );
    let e = run(async move { momoko::connect(&dsn).await.unwrap_err() });
    let text = e.to_string();
    assert!(
        text.contains("nonexistent.invalid:")
            && text.contains("could not translate host name \"nonexistent.invalid\""),
        "{text}"
    );
}
