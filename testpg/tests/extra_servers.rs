//! The extra servers of issue 14 against the real thing: a primary with a streaming standby
//! (replay, synchronous commits, promotion, stopping either side) and PgBouncer in front of
//! a server; and that each leaves no process or directory behind.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use momoko_testpg::{
    pgbouncer_version, psql, Bouncer, BouncerOptions, PoolMode, Replicated, StopMode, TestServer,
    MD5_USER, SCRAM_USER, STANDBY_NAME,
};

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
fn standby_replays_and_promotion_makes_it_writable() {
    let t0 = Instant::now();
    let pair = Replicated::start(false).unwrap();
    eprintln!("Replicated::start(false) took {:?}", t0.elapsed());
    assert!(!pair.is_sync());
    let (p, s) = (pair.primary_info(), pair.standby_info());
    assert_ne!(p.port, s.port);
    assert_ne!(p.socket_dir, s.socket_dir);
    assert_eq!(p.psql("select pg_is_in_recovery()").unwrap(), "f");
    assert_eq!(s.psql("select pg_is_in_recovery()").unwrap(), "t");
    assert_eq!(
        p.psql("select sync_state from pg_stat_replication")
            .unwrap(),
        "async"
    );

    p.psql("create table r (x int); insert into r values (1), (2)")
        .unwrap();
    pair.wait_for_replay().unwrap();
    assert_eq!(s.psql("select sum(x) from r").unwrap(), "3");
    // Every login works on the standby, over TCP, the socket and TLS (one CA for both).
    assert_eq!(
        psql(s.dsn_unix.as_ref().unwrap(), "select count(*) from r", &[]).unwrap(),
        "2"
    );
    let (ptls, stls) = (p.tls.as_ref().unwrap(), s.tls.as_ref().unwrap());
    assert_ne!(ptls.dir, stls.dir);
    assert_eq!(
        std::fs::read(&ptls.ca_file).unwrap(),
        std::fs::read(&stls.ca_file).unwrap()
    );
    assert_eq!(
        psql(
            &stls.dsn,
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
            &[]
        )
        .unwrap(),
        "t"
    );
    let err = s.psql("insert into r values (3)").unwrap_err();
    assert!(err.to_string().contains("read-only transaction"), "{err}");

    // Both answer to one host list; the primary comes first.
    let hosts = pair.hosts_dsn();
    assert!(
        hosts.contains(&format!("port={},{}", p.port, s.port)),
        "{hosts}"
    );

    pair.stop_primary(StopMode::Immediate).unwrap();
    assert!(p.psql("select 1").is_err());
    let t0 = Instant::now();
    pair.promote_standby().unwrap();
    eprintln!("promote_standby took {:?}", t0.elapsed());
    assert_eq!(s.psql("select pg_is_in_recovery()").unwrap(), "f");
    s.psql("insert into r values (3)").unwrap();
    assert_eq!(s.psql("select sum(x) from r").unwrap(), "6");
}

#[test]
fn synchronous_commit_is_on_the_standby_at_once() {
    let t0 = Instant::now();
    let pair = Replicated::start(true).unwrap();
    eprintln!("Replicated::start(true) took {:?}", t0.elapsed());
    assert!(pair.is_sync());
    let (p, s) = (pair.primary_info(), pair.standby_info());
    assert_eq!(
        p.psql("select application_name, sync_state from pg_stat_replication")
            .unwrap(),
        format!("{STANDBY_NAME}|sync")
    );
    assert_eq!(p.psql("show synchronous_commit").unwrap(), "remote_apply");
    // After promotion the standby must not wait for a standby of its own.
    assert_eq!(s.psql("show synchronous_standby_names").unwrap(), "");

    p.psql("create table s (x int)").unwrap();
    for i in 1..=20 {
        // No wait_for_replay: the acknowledged commit is already applied there.
        p.psql(&format!("insert into s values ({i})")).unwrap();
        assert_eq!(
            s.psql("select max(x) from s").unwrap(),
            i.to_string(),
            "commit {i} not on the standby right after it was acknowledged"
        );
    }

    // The primary gone at once: every acknowledged row survives the promotion.
    pair.stop_primary(StopMode::Immediate).unwrap();
    pair.promote_standby().unwrap();
    assert_eq!(s.psql("select count(*) from s").unwrap(), "20");
    s.psql("insert into s values (21)").unwrap();
}

#[test]
fn stopping_and_restarting_either_side() {
    let pair = Replicated::start(false).unwrap();
    let (p, s) = (pair.primary_info(), pair.standby_info());
    p.psql("create table t (x int)").unwrap();

    pair.stop_standby(StopMode::Fast).unwrap();
    assert!(s.psql("select 1").is_err());
    // The slot keeps the WAL the standby missed.
    p.psql("insert into t select generate_series(1, 1000)")
        .unwrap();
    pair.standby().start_again().unwrap();
    pair.wait_for_replay().unwrap();
    assert_eq!(s.psql("select count(*) from t").unwrap(), "1000");

    // A restarted primary is streamed from again.
    pair.primary().restart(StopMode::Fast).unwrap();
    p.psql("insert into t values (0)").unwrap();
    pair.wait_for_replay().unwrap();
    assert_eq!(s.psql("select count(*) from t").unwrap(), "1001");

    // wait_for_replay is bounded and says what it waited for.
    pair.stop_standby(StopMode::Immediate).unwrap();
    let t0 = Instant::now();
    let err = pair
        .wait_for_replay_within(Duration::from_secs(2))
        .unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    assert!(err.to_string().contains("replay"), "{err}");
}

#[test]
fn drop_removes_both_clusters() {
    let pair = Replicated::start(true).unwrap();
    let pids = [pair.primary().pid().unwrap(), pair.standby().pid().unwrap()];
    let mut dirs = vec![
        pair.primary().dir().to_path_buf(),
        pair.standby().dir().to_path_buf(),
    ];
    dirs.extend(pair.primary_info().socket_dir.clone());
    dirs.extend(pair.standby_info().socket_dir.clone());
    // Drop with the primary stopped and the standby running: both still go.
    pair.stop_primary(StopMode::Fast).unwrap();
    drop(pair);
    for pid in pids {
        assert!(wait_gone(pid), "postmaster {pid} survived Drop");
    }
    for dir in dirs {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

#[test]
fn pgbouncer_relays_queries_over_one_server_connection() {
    let version = pgbouncer_version().unwrap();
    eprintln!("PgBouncer {version}");
    assert!(version.starts_with("1."), "{version}");

    let server = TestServer::start().unwrap();
    let t0 = Instant::now();
    let bouncer = Bouncer::start(server.info(), &BouncerOptions::default()).unwrap();
    eprintln!("Bouncer::start took {:?}", t0.elapsed());
    assert_ne!(bouncer.port(), server.info().port);
    assert!(bouncer.dsn().contains(&format!("port={}", bouncer.port())));

    assert_eq!(
        psql(
            bouncer.dsn(),
            "select current_user, current_database(), inet_server_port()",
            &[]
        )
        .unwrap(),
        format!("momoko|momoko_test|{}", server.info().port)
    );
    // Transaction pooling over one server connection: every client lands on one backend.
    let backend = |dsn: &str| psql(dsn, "select pg_backend_pid()", &[]).unwrap();
    let first = backend(bouncer.dsn());
    for _ in 0..3 {
        assert_eq!(backend(bouncer.dsn()), first);
    }
    // Startup parameters: application_name passes, options is dropped rather than refused.
    let with_params = format!(
        "{} application_name=through_bouncer options='-c geqo=off'",
        bouncer.dsn()
    );
    assert_eq!(
        psql(
            &with_params,
            "select current_setting('application_name')",
            &[]
        )
        .unwrap(),
        "through_bouncer"
    );
    // PgBouncer logs in as the password users with the passwords of its auth file.
    for user in [MD5_USER, SCRAM_USER] {
        let dsn = format!("{} user={user}", bouncer.dsn());
        assert_eq!(psql(&dsn, "select current_user", &[]).unwrap(), user);
    }
    let pools = psql(bouncer.admin_dsn(), "show config", &[]).unwrap();
    assert!(
        pools.contains("pool_mode|transaction") && pools.contains("default_pool_size|1|"),
        "{pools}"
    );

    // Drop stops PgBouncer and removes its directory; the server is not touched.
    let pid = bouncer.pid().unwrap();
    let dir = bouncer.dir().to_path_buf();
    drop(bouncer);
    assert!(wait_gone(pid), "pgbouncer {pid} survived Drop");
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert_eq!(server.info().psql("select 1").unwrap(), "1");
}

#[test]
fn pgbouncer_session_mode_and_upstream_restarts() {
    let server = TestServer::start().unwrap();
    let opts = BouncerOptions {
        pool_mode: PoolMode::Session,
        default_pool_size: 2,
        ..BouncerOptions::default()
    };
    let bouncer = Bouncer::start(server.info(), &opts).unwrap();
    assert_eq!(psql(bouncer.dsn(), "select 1", &[]).unwrap(), "1");
    // The upstream restarts: PgBouncer reconnects (server_login_retry = 1).
    server.restart(StopMode::Fast).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match psql(bouncer.dsn(), "select 2", &[]) {
            Ok(out) => break assert_eq!(out, "2"),
            Err(e) if Instant::now() > deadline => panic!("no query after restart: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

const CHILD_ENV: &str = "MOMOKO_TESTPG_ABORTING_CHILD";

/// Run by `watchdogs_clean_up_after_an_abort` in a child process of this test binary:
/// starts a pair and a bouncer, says where they are, and aborts (no Drop, no atexit).
#[test]
fn aborting_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let pair = Replicated::start(false).unwrap();
    let bouncer = Bouncer::start(pair.primary_info(), &BouncerOptions::default()).unwrap();
    let mut out = std::io::stdout();
    // After the harness's `test aborting_child ... `.
    writeln!(out).unwrap();
    for pid in [
        pair.primary().pid().unwrap(),
        pair.standby().pid().unwrap(),
        bouncer.pid().unwrap(),
    ] {
        writeln!(out, "PID {pid}").unwrap();
    }
    for dir in [pair.primary().dir(), pair.standby().dir(), bouncer.dir()] {
        writeln!(out, "DIR {}", dir.display()).unwrap();
    }
    out.flush().unwrap();
    std::process::abort();
}

#[test]
fn watchdogs_clean_up_after_an_abort() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "aborting_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the aborting child did not end within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut text).unwrap();
    let pids: Vec<u32> = text
        .lines()
        .filter_map(|l| l.strip_prefix("PID ")?.parse().ok())
        .collect();
    let dirs: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.strip_prefix("DIR ").map(PathBuf::from))
        .collect();
    assert_eq!((pids.len(), dirs.len()), (3, 3), "child said:\n{text}");
    // The watchdogs poll once a second, then stop and remove.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let alive: Vec<_> = pids
            .iter()
            .filter(|p| Path::new(&format!("/proc/{p}")).exists())
            .collect();
        let left: Vec<_> = dirs.iter().filter(|d| d.exists()).collect();
        if alive.is_empty() && left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 30 s, still alive: {alive:?}, still there: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
