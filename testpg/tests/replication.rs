//! The extra servers of issue 14 against the real thing: a primary with a streaming standby
//! (replay, synchronous commits, promotion, stopping either side) and PgBouncer in front of
//! a server; and that each leaves no process or directory behind.

use std::path::Path;
use std::time::{Duration, Instant};

use momoko_testpg::{psql, Replicated, StopMode, STANDBY_NAME};

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
