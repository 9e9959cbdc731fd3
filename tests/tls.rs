//! TLS as libpq does it, against the suite's server (which runs with `ssl = on` and a
//! throwaway CA from momoko-testpg), and against small hostile listeners of the tests' own.
//! Skipped when `MOMOKO_TEST_DSN` names a server without momoko-testpg's certificates.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{run, server};
use momoko::{Connection, Error, ErrorKind};

fn tls() -> Option<&'static momoko_testpg::TlsInfo> {
    let t = server().tls.as_ref();
    if t.is_none() {
        eprintln!("no TLS test server (MOMOKO_TEST_TLS_DIR unset): skipped");
    }
    t
}

/// The TLS base DSN with `extra` keywords appended (later keywords win).
fn dsn_with(extra: &str) -> String {
    format!("{} {extra}", tls().unwrap().dsn)
}

fn q(p: &std::path::Path) -> String {
    format!("'{}'", p.display())
}

async fn connect(dsn: &str) -> Result<Connection, Error> {
    momoko::connect(dsn).await
}

/// Whether the server sees this backend's connection as TLS.
async fn server_says_ssl(conn: &Connection) -> bool {
    let mut c = conn
        .execute(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            (),
        )
        .await
        .unwrap();
    c.fetchone().unwrap().get(0)
}

#[test]
fn every_sslmode_against_a_tls_server_uses_what_libpq_would() {
    let Some(t) = tls() else { return };
    run(async move {
        for (mode, extra, want) in [
            ("disable", "", false),
            ("allow", "", false),
            ("prefer", "sslrootcert=/nonexistent/root.crt", true),
            ("require", "sslrootcert=/nonexistent/root.crt", true),
            ("verify-ca", "", true),
            ("verify-full", "", true),
        ] {
            let dsn = dsn_with(&format!("sslmode={mode} {extra}"));
            let conn = connect(&dsn)
                .await
                .unwrap_or_else(|e| panic!("{mode}: {e}"));
            assert_eq!(server_says_ssl(&conn).await, want, "sslmode={mode}");
            assert_eq!(conn.ssl_in_use(), want, "sslmode={mode}");
            if want {
                assert_eq!(conn.ssl_attribute("library").as_deref(), Some("rustls"));
                assert_eq!(conn.ssl_attribute("protocol").as_deref(), Some("TLSv1.3"));
                let cipher = conn.ssl_attribute("cipher").unwrap();
                assert!(cipher.starts_with("TLS_"), "{cipher}");
                assert!(conn.ssl_attribute("key_bits").is_some());
            } else {
                assert_eq!(conn.ssl_attribute("protocol"), None);
            }
            conn.close();
        }
        let _ = t;
    });
}

#[test]
fn allow_moves_to_tls_when_the_server_refuses_plain_text() {
    let Some(t) = tls() else { return };
    run(async move {
        let conn = connect(&dsn_with(&format!(
            "sslmode=allow user={}",
            t.tls_only_user
        )))
        .await
        .unwrap();
        assert!(server_says_ssl(&conn).await);
        let e = connect(&dsn_with(&format!(
            "sslmode=disable user={}",
            t.tls_only_user
        )))
        .await
        .unwrap_err();
        assert!(e.to_string().contains("pg_hba.conf"), "{e}");
    });
}

#[test]
fn prefer_moves_to_plain_text_when_the_server_refuses_the_tls_session() {
    let Some(t) = tls() else { return };
    run(async move {
        let conn = connect(&dsn_with(&format!(
            "sslmode=prefer user={}",
            t.plain_only_user
        )))
        .await
        .unwrap();
        assert!(!server_says_ssl(&conn).await);
        assert!(!conn.ssl_in_use());
        let e = connect(&dsn_with(&format!(
            "sslmode=require user={}",
            t.plain_only_user
        )))
        .await
        .unwrap_err();
        assert!(e.to_string().contains("pg_hba.conf"), "{e}");
    });
}

#[test]
fn verify_full_refuses_a_certificate_from_another_ca() {
    let Some(t) = tls() else { return };
    run(async move {
        for mode in ["verify-full", "verify-ca"] {
            let e = connect(&dsn_with(&format!(
                "sslmode={mode} sslrootcert={}",
                q(&t.other_ca_file)
            )))
            .await
            .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Connection, "{e}");
            assert!(e.to_string().contains("certificate"), "{mode}: {e}");
        }
    });
}

#[test]
fn verify_ca_accepts_a_host_name_that_verify_full_refuses() {
    if tls().is_none() {
        return;
    }
    run(async move {
        let e = connect(&dsn_with("sslmode=verify-full host=wrong.example"))
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("certificate not valid for name \"wrong.example\""),
            "{e}"
        );
        let conn = connect(&dsn_with("sslmode=verify-ca host=wrong.example"))
            .await
            .unwrap();
        assert!(server_says_ssl(&conn).await);
        // The IP address SAN is checked when the host is an address.
        let conn = connect(&dsn_with("sslmode=verify-full host=127.0.0.1"))
            .await
            .unwrap();
        assert!(conn.ssl_in_use());
    });
}

#[test]
fn a_client_certificate_logs_in_and_its_absence_is_refused() {
    let Some(t) = tls() else { return };
    run(async move {
        let conn = connect(&t.cert_dsn).await.unwrap();
        let mut c = conn.execute("SELECT current_user::text", ()).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, String>(0), t.cert_user);
        let e = connect(&dsn_with(&format!(
            "user={} sslcert=/nonexistent.crt",
            t.cert_user
        )))
        .await
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent.crt"), "{e}");
        // Without a certificate the server refuses the cert login.
        let e = connect(&dsn_with(&format!("user={}", t.cert_user)))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("certificate"), "{e}");
    });
}

#[test]
fn a_client_key_readable_by_others_is_refused_as_libpq_does() {
    let Some(t) = tls() else { return };
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir();
    let key = dir.join("client.key");
    std::fs::copy(&t.client_key, &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let dsn = dsn_with(&format!(
        "user={} sslcert={} sslkey={}",
        t.cert_user,
        q(&t.client_cert),
        q(&key)
    ));
    run(async move {
        let e = connect(&dsn).await.unwrap_err();
        assert!(e.to_string().contains("group or world access"), "{e}");
    });
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_missing_root_certificate_is_an_error_for_verify_modes() {
    if tls().is_none() {
        return;
    }
    run(async move {
        let e = connect(&dsn_with("sslrootcert=/nonexistent/root.crt"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    });
}

#[test]
fn sslrootcert_system_refuses_the_private_ca_and_weak_modes() {
    if tls().is_none() {
        return;
    }
    run(async move {
        let e = connect(&dsn_with("sslrootcert=system")).await.unwrap_err();
        assert!(e.to_string().contains("certificate"), "{e}");
        let e = connect(&dsn_with("sslrootcert=system sslmode=require"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(e.to_string().contains("weak sslmode"), "{e}");
    });
}

#[test]
fn cancel_over_tls_stops_a_ten_second_sleep_within_three_seconds() {
    let Some(t) = tls() else { return };
    run(async move {
        let conn = connect(&t.dsn).await.unwrap();
        assert!(conn.ssl_in_use());
        let started = Instant::now();
        let sleeping = conn.execute("SELECT pg_sleep(10)", ());
        common::sleep(Duration::from_millis(100)).await;
        conn.cancel().await.unwrap();
        let e = sleeping.await.unwrap_err();
        assert_eq!(e.code(), Some("57014"));
        assert!(started.elapsed() < Duration::from_secs(3));
        let mut c = conn.execute("SELECT 1", ()).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 1);
    });
}

#[test]
fn large_values_and_a_100000_row_copy_cross_tls_exactly() {
    let Some(t) = tls() else { return };
    run(async move {
        let conn = connect(&t.dsn).await.unwrap();
        let big: String = (0..1_000_000)
            .map(|i| (b'a' + (i % 26) as u8) as char)
            .collect();
        let mut c = conn
            .execute("SELECT %s::text", (big.as_str(),))
            .await
            .unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, String>(0), big);
        let mut c = conn
            .query("SELECT $1::text", (big.as_str(),))
            .await
            .unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, String>(0), big);
        let table = common::unique("tls_copy");
        conn.execute(&format!("CREATE TEMP TABLE {table} (n int)"), ())
            .await
            .unwrap();
        let rows: String = (0..100_000).map(|i| format!("{i}\n")).collect();
        let copied = conn
            .copy_in(&format!("COPY {table} FROM STDIN"), rows.clone())
            .await
            .unwrap();
        assert_eq!(copied, 100_000);
        let out = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let o = out.clone();
        let n = conn
            .copy_out(
                &format!("COPY (SELECT n FROM {table} ORDER BY n) TO STDOUT"),
                move |d| o.borrow_mut().extend_from_slice(d),
            )
            .await
            .unwrap();
        assert_eq!(n, 100_000);
        assert_eq!(String::from_utf8(out.borrow().clone()).unwrap(), rows);
    });
}

#[test]
fn a_pool_over_verify_full_is_tls_on_every_connection() {
    let Some(t) = tls() else { return };
    run(async move {
        let pool = momoko::Pool::builder(&t.dsn).size(4).build().unwrap();
        pool.connect().await.unwrap();
        let fs: Vec<_> = (0..8)
            .map(|_| {
                pool.execute(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    (),
                )
            })
            .collect();
        for f in fs {
            assert!(f.await.unwrap().fetchone().unwrap().get::<_, bool>(0));
        }
        pool.close().unwrap();
    });
}

/// A listener that answers the SSLRequest with `answer`, then closes.
fn fake_server(answer: &'static [u8]) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let mut req = [0u8; 8];
            if s.read_exact(&mut req).is_ok() {
                let _ = s.write_all(answer);
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    });
    port
}

fn fake_dsn(port: u16, mode: &str) -> String {
    format!("host=127.0.0.1 port={port} user=u dbname=d sslmode={mode} connect_timeout=5")
}

#[test]
fn require_against_a_server_without_tls_fails_naming_the_sslmode() {
    let port = fake_server(b"N");
    run(async move {
        let e = connect(&fake_dsn(port, "require")).await.unwrap_err();
        assert!(e.to_string().contains("server does not support SSL"), "{e}");
        assert!(e.to_string().contains("sslmode=require"), "{e}");
    });
}

#[test]
fn bytes_after_the_servers_s_are_refused_as_injected() {
    let port = fake_server(b"Sgarbage");
    run(async move {
        let e = connect(&fake_dsn(port, "require")).await.unwrap_err();
        assert!(e.to_string().contains("CVE-2021-23222"), "{e}");
    });
}

#[test]
fn garbage_instead_of_a_server_hello_is_a_clear_tls_error() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let mut req = [0u8; 8];
            let _ = s.read_exact(&mut req);
            let _ = s.write_all(b"S");
            let mut hello = [0u8; 5];
            let _ = s.read_exact(&mut hello);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    run(async move {
        let e = connect(&fake_dsn(port, "require")).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Connection);
        assert!(e.to_string().contains("TLS"), "{e}");
    });
}

#[test]
fn a_server_that_answers_s_and_closes_fails_without_hanging() {
    let port = fake_server(b"S");
    run(async move {
        let started = Instant::now();
        let e = connect(&fake_dsn(port, "require")).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Connection, "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    });
}

#[test]
fn tls_keywords_are_checked_as_libpq_checks_them() {
    for (dsn, says) in [
        ("sslmode=prefer sslnegotiation=direct", "weak sslmode"),
        (
            "ssl_min_protocol_version=TLSv1.3 ssl_max_protocol_version=TLSv1.2",
            "range",
        ),
        (
            "ssl_max_protocol_version=TLSv1.1",
            "TLSv1.2 and TLSv1.3 only",
        ),
        ("sslsni=2", "invalid sslsni"),
        ("channel_binding=maybe", "invalid channel_binding"),
        ("sslpassword=secret", "sslpassword is not supported"),
    ] {
        let e = momoko::Config::parse(&format!("host=h {dsn}")).unwrap_err();
        assert!(e.to_string().contains(says), "{dsn}: {e}");
    }
}

#[test]
fn a_mio_connection_runs_over_tls() {
    let Some(t) = tls() else { return };
    use mio::{Events, Poll, Token};
    let mut poll = Poll::new().unwrap();
    let conn = momoko::MioConnection::connect(&t.dsn, |r| r.unwrap());
    conn.register(poll.registry(), Token(1)).unwrap();
    let got = std::rc::Rc::new(std::cell::Cell::new(None));
    let g = got.clone();
    conn.execute(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        (),
        move |r| g.set(Some(r.unwrap().fetchone().unwrap().get::<_, bool>(0))),
    );
    let mut events = Events::with_capacity(16);
    let give_up = Instant::now() + Duration::from_secs(10);
    while got.get().is_none() {
        assert!(Instant::now() < give_up, "no answer over TLS");
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .unwrap();
        for e in events.iter() {
            conn.handle_event(poll.registry(), e);
        }
        conn.handle_timeout(poll.registry(), Instant::now());
        conn.dispatch(poll.registry());
    }
    assert_eq!(got.get(), Some(true));
    assert!(conn.ssl_in_use());
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(common::unique("momoko_tls"));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn channel_binding_required_logs_in_with_scram_plus_and_is_refused_without_it() {
    let Some(t) = tls() else { return };
    run(async move {
        // SCRAM-SHA-256-PLUS over TLS: the login is bound to the server's certificate.
        let conn = connect(&format!("{} channel_binding=require", t.scram_tls_dsn))
            .await
            .unwrap();
        assert!(conn.ssl_in_use());
        let mut c = conn.execute("SELECT current_user::text", ()).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, String>(0), t.scram_tls_user);
        // The default (prefer) binds too, and disable does not need to.
        connect(&t.scram_tls_dsn).await.unwrap();
        connect(&format!("{} channel_binding=disable", t.scram_tls_dsn))
            .await
            .unwrap();
        // Without TLS there is no channel to bind to.
        let scram = server().dsn_scram.clone().unwrap();
        let e = connect(&format!("{scram} sslmode=disable channel_binding=require"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("SSL not in use"), "{e}");
        // A trust login never binds: refused under require.
        let e = connect(&dsn_with("channel_binding=require"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("without channel binding"), "{e}");
    });
}

#[test]
fn direct_tls_against_a_server_without_it_fails_clearly_and_at_once() {
    if tls().is_none() {
        return;
    }
    run(async move {
        let probe = connect(&dsn_with("")).await.unwrap();
        let version = probe.server_version().unwrap();
        probe.close();
        if version >= 170000 {
            // PostgreSQL 17 and later accept direct TLS (ALPN "postgresql"): it just works.
            let conn = connect(&dsn_with("sslnegotiation=direct")).await.unwrap();
            assert!(conn.ssl_in_use());
            assert_eq!(
                conn.ssl_attribute("alpn").as_deref(),
                Some("postgresql"),
                "{version}"
            );
            conn.close();
            return;
        }
        // Before 17 the server takes the ClientHello for a startup packet and refuses it.
        let started = Instant::now();
        let e = connect(&dsn_with("sslnegotiation=direct connect_timeout=5"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Connection, "{e}");
        assert!(e.to_string().contains("TLS"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(4));
    });
}

/// Connects with `extra` appended to the TLS DSN, expecting a connection error; its text.
async fn refused(extra: &str) -> String {
    let started = Instant::now();
    let e = connect(&dsn_with(extra)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Connection, "{extra}: {e}");
    assert!(started.elapsed() < Duration::from_secs(10), "{extra}: slow");
    e.to_string()
}

#[test]
fn bad_client_certificates_and_root_files_fail_clearly_without_hanging() {
    let Some(t) = tls() else { return };
    let dir = tempdir();
    let garbage = dir.join("garbage.crt");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64 !!\n").unwrap();
    let cases = vec![
        (
            "the server ended the TLS handshake: CertificateExpired",
            format!(
                "user={} sslcert={} sslkey={}",
                t.cert_user,
                q(&t.expired_client_cert),
                q(&t.expired_client_key)
            ),
        ),
        (
            "the server ended the TLS handshake: UnknownCA",
            format!(
                "user={} sslcert={} sslkey={}",
                t.cert_user,
                q(&t.other_ca_client_cert),
                q(&t.other_ca_client_key)
            ),
        ),
        (
            "the client certificate and key do not match",
            format!(
                "user={} sslcert={} sslkey={}",
                t.cert_user,
                q(&t.client_cert),
                q(&t.expired_client_key)
            ),
        ),
        (
            "could not read root certificate file",
            format!("sslrootcert={}", q(&dir)),
        ),
        (
            "could not read root certificate file",
            format!("sslrootcert={}", q(&garbage)),
        ),
    ];
    run(async move {
        for (says, extra) in cases {
            let msg = refused(&extra).await;
            assert!(msg.contains(says), "{extra}: {msg}");
        }
    });
    std::fs::remove_dir_all(dir).unwrap();
}

/// A TLS end point of the tests' own in front of the suite's server (which sees plain
/// text), presenting `cert`/`key`.
fn tls_relay(
    cert: &std::path::Path,
    key: &std::path::Path,
    negotiation: tcproxy::Negotiation,
) -> tcproxy::TlsRelay {
    let s = server();
    tcproxy::TlsRelay::start(
        "127.0.0.1:0".parse().unwrap(),
        format!("{}:{}", s.host, s.port).parse().unwrap(),
        &std::fs::read(cert).unwrap(),
        &std::fs::read(key).unwrap(),
        negotiation,
    )
    .unwrap()
}

/// A DSN for `relay` as `user`, with `extra` keywords.
fn relay_dsn(relay: &tcproxy::TlsRelay, user: &str, extra: &str) -> String {
    format!(
        "host=localhost hostaddr=127.0.0.1 port={} dbname={} user={user} connect_timeout=5 {extra}",
        relay.local_addr().port(),
        server().dbname,
    )
}

#[test]
fn direct_tls_through_a_relay_that_requires_alpn_postgresql_connects_verified() {
    let Some(t) = tls() else { return };
    let relay = tls_relay(&t.server_cert, &t.server_key, tcproxy::Negotiation::Direct);
    // The plain-only user proves the relay, not the server, ended the TLS session.
    let dsn = relay_dsn(
        &relay,
        &t.plain_only_user,
        &format!(
            "sslmode=verify-full sslrootcert={} sslnegotiation=direct",
            q(&t.ca_file)
        ),
    );
    run(async move {
        let conn = connect(&dsn).await.unwrap();
        assert!(conn.ssl_in_use());
        assert_eq!(conn.ssl_attribute("alpn").as_deref(), Some("postgresql"));
        assert!(!server_says_ssl(&conn).await);
        let mut c = conn
            .execute("SELECT %s::text", ("over direct TLS",))
            .await
            .unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, String>(0), "over direct TLS");
        conn.close();
    });
    let st = relay.stats();
    assert_eq!((st.established, st.refused_alpn), (1, 0), "{st:?}");
}

#[test]
fn an_expired_server_certificate_is_refused_by_verify_ca_and_verify_full() {
    let Some(t) = tls() else { return };
    let relay = tls_relay(
        &t.expired_server_cert,
        &t.expired_server_key,
        tcproxy::Negotiation::Postgres,
    );
    for mode in ["verify-ca", "verify-full"] {
        let dsn = relay_dsn(
            &relay,
            &t.plain_only_user,
            &format!("sslmode={mode} sslrootcert={}", q(&t.ca_file)),
        );
        let e = run(async move { connect(&dsn).await.unwrap_err() });
        assert_eq!(e.kind(), ErrorKind::Connection, "{mode}: {e}");
        assert!(
            e.to_string()
                .contains("certificate expired: verification time"),
            "{mode}: {e}"
        );
    }
    // require without a root certificate checks nothing, as libpq's require does.
    let dsn = relay_dsn(
        &relay,
        &t.plain_only_user,
        "sslmode=require sslrootcert=/nonexistent/root.crt",
    );
    run(async move {
        let conn = connect(&dsn).await.unwrap();
        assert!(conn.ssl_in_use());
        conn.close();
    });
}

#[test]
fn a_server_certificate_for_another_host_is_refused_by_verify_full_only() {
    let Some(t) = tls() else { return };
    let relay = tls_relay(
        &t.wrong_host_cert,
        &t.wrong_host_key,
        tcproxy::Negotiation::Postgres,
    );
    let full = relay_dsn(
        &relay,
        &t.plain_only_user,
        &format!("sslmode=verify-full sslrootcert={}", q(&t.ca_file)),
    );
    let e = run(async move { connect(&full).await.unwrap_err() });
    assert_eq!(e.kind(), ErrorKind::Connection, "{e}");
    assert!(
        e.to_string()
            .contains("certificate not valid for name \"localhost\""),
        "{e}"
    );
    let ca = relay_dsn(
        &relay,
        &t.plain_only_user,
        &format!("sslmode=verify-ca sslrootcert={}", q(&t.ca_file)),
    );
    run(async move {
        let conn = connect(&ca).await.unwrap();
        assert!(conn.ssl_in_use());
        assert_eq!(
            conn.execute("SELECT 7", ())
                .await
                .unwrap()
                .fetchone()
                .unwrap()
                .get::<_, i32>(0),
            7
        );
        conn.close();
    });
}

/// A pool of `size` (growing to `max`) on `dsn`, connected.
async fn tls_pool(dsn: &str, size: usize, max: usize) -> momoko::Pool {
    momoko::Pool::builder(dsn)
        .size(size)
        .max_size(max)
        .build()
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[test]
fn a_pools_second_connection_resumes_the_tls_session_of_the_first() {
    let Some(t) = tls() else { return };
    // A TLS end point that keeps sessions (rustls's server: TLS 1.3 tickets).
    let relay = tls_relay(
        &t.server_cert,
        &t.server_key,
        tcproxy::Negotiation::Postgres,
    );
    let dsn = relay_dsn(
        &relay,
        &t.plain_only_user,
        &format!("sslmode=verify-full sslrootcert={}", q(&t.ca_file)),
    );
    run(async move {
        let pool = tls_pool(&dsn, 1, 2).await;
        let first = pool.getconn(false).await.unwrap();
        // The pool grows for the second caller: a new connection, the same configuration.
        let second = pool.getconn(false).await.unwrap();
        assert!(!first.same(&second));
        assert_eq!(first.ssl_attribute("protocol").as_deref(), Some("TLSv1.3"));
        assert_eq!(
            first.tls_resumed(),
            Some(false),
            "the first handshake is a full one"
        );
        assert_eq!(
            second.tls_resumed(),
            Some(true),
            "the second resumes the first's session"
        );
        let mut c = second.execute("SELECT 'resumed'::text", ()).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, String>(0), "resumed");
        pool.putconn(first).unwrap();
        pool.putconn(second).unwrap();
        pool.close().unwrap();
        // A connection of its own has a configuration of its own: nothing to resume.
        let alone = connect(&dsn).await.unwrap();
        assert_eq!(alone.tls_resumed(), Some(false));
        alone.close();
    });
}

#[test]
fn a_reconnect_resumes_the_tls_session_of_the_connection_before_it() {
    let Some(t) = tls() else { return };
    let relay = tls_relay(
        &t.server_cert,
        &t.server_key,
        tcproxy::Negotiation::Postgres,
    );
    let dsn = relay_dsn(
        &relay,
        &t.plain_only_user,
        &format!("sslmode=verify-full sslrootcert={}", q(&t.ca_file)),
    );
    run(async move {
        let conn = Connection::new(&dsn);
        conn.connect().await.unwrap();
        assert_eq!(conn.tls_resumed(), Some(false));
        conn.close();
        conn.connect().await.unwrap();
        assert_eq!(conn.tls_resumed(), Some(true));
        assert_eq!(
            conn.execute("SELECT 8", ())
                .await
                .unwrap()
                .fetchone()
                .unwrap()
                .get::<_, i32>(0),
            8
        );
        conn.close();
    });
}

#[test]
fn postgresql_itself_never_resumes_and_plain_text_has_no_tls_session() {
    let Some(t) = tls() else { return };
    let plain = dsn_with("sslmode=disable");
    let verified = dsn_with(&format!(
        "sslmode=verify-full sslrootcert={}",
        q(&t.ca_file)
    ));
    run(async move {
        let conn = connect(&plain).await.unwrap();
        assert_eq!(conn.tls_resumed(), None);
        conn.close();
        // PostgreSQL's server turns off both TLS session tickets and its session cache
        // (be-secure-openssl.c: SSL_CTX_set_num_tickets(0), SSL_OP_NO_TICKET,
        // SSL_SESS_CACHE_OFF; no ssl_* setting changes it): every handshake with it is a
        // full one, whatever the client keeps.
        let pool = tls_pool(&verified, 1, 2).await;
        let first = pool.getconn(false).await.unwrap();
        let second = pool.getconn(false).await.unwrap();
        assert_eq!(
            (first.tls_resumed(), second.tls_resumed()),
            (Some(false), Some(false))
        );
        pool.putconn(first).unwrap();
        pool.putconn(second).unwrap();
        pool.close().unwrap();
    });
}
