//! The throwaway server does what every other crate's tests rely on: the three logins over
//! TCP and the socket, hstore, the TLS side (certificates, TLS-only and plain-only users),
//! restarts on the same port, and a clean disappearance.

use std::path::Path;
use std::time::{Duration, Instant};

use momoko_testpg::{psql, StopMode, TestServer, MD5_PASSWORD, SCRAM_PASSWORD};

fn current_user(dsn: &str, env: &[(&str, &str)]) -> String {
    psql(dsn, "select current_user", env).unwrap_or_else(|e| panic!("login on {dsn}: {e}"))
}

/// The DSN without its password, so that the password comes from PGPASSWORD.
fn without_password(dsn: &str) -> String {
    dsn.split(' ')
        .filter(|kv| !kv.starts_with("password="))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn logins_auth_methods_and_hstore() {
    let server = TestServer::start().unwrap();
    let info = server.info();
    assert!(info.own);
    assert_eq!(info.host, "127.0.0.1");
    assert_eq!(info.dbname, "momoko_test");

    assert_eq!(current_user(&info.dsn, &[]), "momoko");
    assert_eq!(current_user(info.dsn_unix.as_ref().unwrap(), &[]), "momoko");
    assert_eq!(
        current_user(info.dsn_md5.as_ref().unwrap(), &[]),
        "momoko_md5"
    );
    assert_eq!(
        current_user(info.dsn_scram.as_ref().unwrap(), &[]),
        "momoko_scram"
    );

    let md5 = without_password(info.dsn_md5.as_ref().unwrap());
    let scram = without_password(info.dsn_scram.as_ref().unwrap());
    assert_eq!(
        current_user(&md5, &[("PGPASSWORD", MD5_PASSWORD)]),
        "momoko_md5"
    );
    assert_eq!(
        current_user(&scram, &[("PGPASSWORD", SCRAM_PASSWORD)]),
        "momoko_scram"
    );

    let err = psql(&md5, "select 1", &[("PGPASSWORD", "wrong")]).unwrap_err();
    assert!(
        err.to_string().contains("password authentication failed"),
        "{err}"
    );
    let err = psql(&scram, "select 1", &[("PGPASSWORD", "wrong")]).unwrap_err();
    assert!(
        err.to_string().contains("password authentication failed"),
        "{err}"
    );

    // The stored form decides which exchange the server can run for each role.
    let stored = info
        .psql(
            "select rolname, substring(rolpassword from '^(md5|SCRAM-SHA-256)') from pg_authid \
             where rolname like 'momoko%' order by 1",
        )
        .unwrap();
    assert_eq!(
        stored,
        "momoko|\nmomoko_cert|\nmomoko_md5|md5\nmomoko_plain_only|\nmomoko_scram|SCRAM-SHA-256\n\
         momoko_scram_tls|SCRAM-SHA-256\nmomoko_tls_only|"
    );
    // pg_hba: the password users are checked by the intended method, over TCP and socket.
    let hba = info
        .psql(
            "select type, user_name[1], auth_method from pg_hba_file_rules \
             where user_name[1] like 'momoko%' order by line_number",
        )
        .unwrap();
    assert!(hba.contains("local|momoko_md5|md5"), "{hba}");
    assert!(hba.contains("host|momoko_scram|scram-sha-256"), "{hba}");

    assert_eq!(info.psql("select 'a=>1'::hstore -> 'a'").unwrap(), "1");
    // The password users can work in the public schema.
    psql(
        info.dsn_md5.as_ref().unwrap(),
        "create table t_md5 (x int); drop table t_md5",
        &[],
    )
    .unwrap();
    assert_eq!(info.psql("show max_connections").unwrap(), "300");
    // Ready for logical replication and two-phase transactions.
    assert_eq!(info.psql("show wal_level").unwrap(), "logical");
    assert_eq!(info.psql("show max_replication_slots").unwrap(), "10");
    assert_eq!(info.psql("show max_prepared_transactions").unwrap(), "10");
}

fn wait_gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[test]
fn restarts_keep_the_port_and_drop_removes_everything() {
    let server = TestServer::start().unwrap();
    let port = server.info().port;
    let socket_dir = server.info().socket_dir.clone().unwrap();
    let first = server.pid().unwrap();

    for mode in [StopMode::Fast, StopMode::Immediate] {
        let before = server.pid().unwrap();
        server.restart(mode).unwrap();
        let after = server.pid().unwrap();
        assert_ne!(before, after, "{mode:?} restart kept the postmaster");
        assert!(
            wait_gone(before),
            "old postmaster {before} still there after {mode:?}"
        );
        assert_eq!(server.info().port, port);
        assert_eq!(current_user(&server.info().dsn, &[]), "momoko");
        assert_eq!(
            current_user(server.info().dsn_unix.as_ref().unwrap(), &[]),
            "momoko"
        );
    }
    assert_ne!(server.pid(), Some(first));

    server.stop(StopMode::Fast).unwrap();
    assert_eq!(server.pid(), None);
    assert!(psql(&server.info().dsn, "select 1", &[]).is_err());
    server.start_again().unwrap();
    assert_eq!(current_user(&server.info().dsn, &[]), "momoko");

    let pid = server.pid().unwrap();
    let dir = server.dir().to_path_buf();
    assert!(dir.join("data").is_dir());
    drop(server);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(!socket_dir.exists());
    assert!(wait_gone(pid), "postmaster {pid} survived Drop");
}

#[test]
fn drop_of_a_stopped_server_still_removes_it() {
    let server = TestServer::start().unwrap();
    let dir = server.dir().to_path_buf();
    server.stop(StopMode::Immediate).unwrap();
    drop(server);
    assert!(!dir.exists());
}

#[test]
fn shared_server_answers() {
    let info = TestServer::shared();
    assert_eq!(info.psql("select 1").unwrap(), "1");
    // The same description every time.
    assert!(std::ptr::eq(info, TestServer::shared()));
    // A server we started, or one handed down by `momoko-testpg run` (MOMOKO_TEST_TLS_DIR),
    // has its TLS side described; a server named by MOMOKO_TEST_DSN alone has none.
    if info.own || std::env::var_os("MOMOKO_TEST_TLS_DIR").is_some() {
        let tls = info.tls.as_ref().expect("the TLS side");
        assert_eq!(
            session(&tls.cert_dsn).unwrap(),
            "momoko_cert|t|/O=momoko-testpg/CN=momoko_cert"
        );
    } else {
        assert!(info.tls.is_none());
    }
}

#[test]
fn start_at_keep_and_stop_dir() {
    let parent =
        std::env::temp_dir().join(format!("momoko-testpg-keep-test-{}", std::process::id()));
    let dir = parent.join("server");
    let server = TestServer::start_at(&dir).unwrap();
    let pid = server.pid().unwrap();
    let info = server.keep();
    // Kept: still running after the value is gone.
    assert_eq!(current_user(&info.dsn, &[]), "momoko");
    let again = momoko_testpg::running_in(&dir).unwrap().unwrap();
    assert_eq!(again.dsn, info.dsn);
    assert_eq!(again.dsn_scram, info.dsn_scram);
    assert!(info.tls.is_some());
    assert_eq!(again.tls, info.tls);
    // A second start in the same place is refused rather than clobbering it.
    assert!(TestServer::start_at(&dir).is_err());
    momoko_testpg::stop_dir(&dir).unwrap();
    assert!(!dir.exists());
    assert!(wait_gone(pid));
    assert!(momoko_testpg::stop_dir(&dir).is_err());
    std::fs::remove_dir_all(&parent).unwrap();
}

/// What psql reports about its own session: user, whether TLS is on, and the client
/// certificate's DN.
fn session(dsn: &str) -> Result<String, String> {
    psql(
        dsn,
        "select current_user, ssl, coalesce(client_dn, '') from pg_stat_ssl \
         where pid = pg_backend_pid()",
        &[],
    )
    .map_err(|e| e.to_string())
}

/// pg_hba's refusal of a login over TLS (`tls`) or plain text that the file does not allow
/// that way. The last words changed in PostgreSQL 14: "SSL encryption" and "no encryption"
/// from then on, "SSL on" and "SSL off" before.
fn refused_by_hba(dsn: &str, tls: bool) {
    let (now, before) = if tls {
        ("SSL encryption", "SSL on")
    } else {
        ("no encryption", "SSL off")
    };
    match session(dsn) {
        Ok(s) => panic!("{dsn}: logged in ({s}), expected pg_hba's refusal"),
        Err(e) => assert!(
            e.contains("pg_hba.conf rejects connection") && (e.contains(now) || e.contains(before)),
            "{dsn}: expected pg_hba's refusal ending {now:?} or {before:?}, got: {e}"
        ),
    }
}

fn refused(dsn: &str, why: &str) {
    match session(dsn) {
        Ok(s) => panic!("{dsn}: logged in ({s}), expected a refusal with {why:?}"),
        Err(e) => assert!(e.contains(why), "{dsn}: expected {why:?}, got: {e}"),
    }
}

#[test]
fn tls_certificates_and_tls_bound_users() {
    use std::os::unix::fs::MetadataExt;

    let server = TestServer::start().unwrap();
    let info = server.info();
    let tls = info.tls.as_ref().expect("our servers have a TLS side");
    assert!(tls.dir.starts_with(server.dir()));
    assert_eq!(tls.cert_user, momoko_testpg::CERT_USER);

    // Keys are 0600: the client's owned by us, the server's by the account it runs as.
    let us = std::fs::metadata(server.dir().join("server.env"))
        .unwrap()
        .uid();
    for key in [
        &tls.ca_key,
        &tls.client_key,
        &tls.expired_client_key,
        &tls.other_ca_client_key,
        &tls.wrong_host_key,
        &tls.expired_server_key,
    ] {
        let m = std::fs::metadata(key).unwrap();
        assert_eq!(m.mode() & 0o777, 0o600, "{}", key.display());
        assert_eq!(m.uid(), us, "{}", key.display());
    }
    let server_key = std::fs::metadata(&tls.server_key).unwrap();
    assert_eq!(server_key.mode() & 0o777, 0o600);
    let data_owner = std::fs::metadata(server.dir().join("data")).unwrap().uid();
    assert_eq!(server_key.uid(), data_owner);
    for cert in [&tls.ca_file, &tls.other_ca_file, &tls.server_cert] {
        let text = std::fs::read_to_string(cert).unwrap();
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----"), "{text}");
    }

    // verify-full with the CA, the name checked against the certificate.
    assert_eq!(session(&tls.dsn).unwrap(), "momoko|t|");
    assert_eq!(
        session(&format!("{} host=127.0.0.1 hostaddr=", tls.dsn)).unwrap(),
        "momoko|t|",
        "the IP address SAN"
    );
    refused(
        &format!("{} host={}", tls.dsn, momoko_testpg::WRONG_HOST_NAME),
        "does not match host name",
    );
    refused(
        &format!("{} sslrootcert={}", tls.dsn, tls.other_ca_file.display()),
        "certificate verify failed",
    );

    // Client certificate login, and the certificates the server must refuse.
    assert_eq!(
        session(&tls.cert_dsn).unwrap(),
        "momoko_cert|t|/O=momoko-testpg/CN=momoko_cert"
    );
    refused(
        &format!(
            "{} sslcert={} sslkey={}",
            tls.cert_dsn,
            tls.expired_client_cert.display(),
            tls.expired_client_key.display()
        ),
        "certificate expired",
    );
    refused(
        &format!(
            "{} sslcert={} sslkey={}",
            tls.cert_dsn,
            tls.other_ca_client_cert.display(),
            tls.other_ca_client_key.display()
        ),
        "unknown ca",
    );
    refused(
        &format!("{} user={}", tls.dsn, tls.cert_user),
        "requires a valid client certificate",
    );
    refused(
        &format!("{} user={}", info.dsn_unix.as_ref().unwrap(), tls.cert_user),
        "pg_hba.conf rejects connection",
    );

    // SCRAM over TLS only.
    assert_eq!(session(&tls.scram_tls_dsn).unwrap(), "momoko_scram_tls|t|");
    refused(
        &format!("{} password=wrong", tls.scram_tls_dsn),
        "password authentication failed",
    );
    refused_by_hba(&format!("{} sslmode=disable", tls.scram_tls_dsn), false);

    // The TLS-only and plain-only users show which way a connection went: libpq's allow
    // and prefer retry the other way after the refusal.
    let tls_only = format!("{} user={}", info.dsn, tls.tls_only_user);
    refused_by_hba(&format!("{tls_only} sslmode=disable"), false);
    assert_eq!(
        session(&format!("{tls_only} sslmode=require")).unwrap(),
        "momoko_tls_only|t|"
    );
    assert_eq!(
        session(&format!("{tls_only} sslmode=allow")).unwrap(),
        "momoko_tls_only|t|"
    );
    let plain_only = format!("{} user={}", info.dsn, tls.plain_only_user);
    refused_by_hba(&format!("{plain_only} sslmode=require"), true);
    assert_eq!(
        session(&format!("{plain_only} sslmode=disable")).unwrap(),
        "momoko_plain_only|f|"
    );
    assert_eq!(
        session(&format!("{plain_only} sslmode=prefer")).unwrap(),
        "momoko_plain_only|f|"
    );

    // The plain-text logins work over TLS too.
    assert_eq!(
        session(&format!("{} sslmode=require", info.dsn)).unwrap(),
        "momoko|t|"
    );
    assert_eq!(
        session(&format!(
            "{} sslmode=require",
            info.dsn_scram.as_ref().unwrap()
        ))
        .unwrap(),
        "momoko_scram|t|"
    );
    assert_eq!(
        session(&format!(
            "{} sslmode=disable",
            info.dsn_md5.as_ref().unwrap()
        ))
        .unwrap(),
        "momoko_md5|f|"
    );

    // The TLS description survives the trip through the environment.
    let vars = info.env_vars();
    let dir = vars.iter().find(|(k, _)| *k == "MOMOKO_TEST_TLS_DIR");
    assert_eq!(dir.map(|(_, v)| Path::new(v)), Some(tls.dir.as_path()));
}
