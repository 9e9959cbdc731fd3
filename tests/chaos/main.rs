//! Real network faults between momoko and a server (issue 27): each test runs its own
//! cluster inside a network namespace reached over a veth pair (`NetnsServer`; a primary
//! and its synchronous standby in two, joined by a third pair, for failover:
//! `NetnsCluster`), cuts or degrades the links with nftables and tc (and delays them with
//! tcproxy: the kernel has no netem), and checks that every request ends within the bound
//! momoko relies on, that outcome-unknown is marked where a request was sent, that no
//! acknowledged transaction is lost or applied twice, that the pool recovers when the link
//! heals, and that nothing of the test is left on the machine.
//!
//! Scenarios (the numbers): 1 TPC-B under loss with delay or a cut (bank.rs); 2 a
//! partition, with tight keywords and with none (here); 3 half-open either way (here);
//! 4 failover under a partition (failover.rs); 5 a large COPY over a slow link
//! (slow_copy.rs); 6 a logical replication stream across a partition (replication.rs). `MOMOKO_CHAOS_FULL=1` (`make chaos`) gives the lengths; each
//! scenario prints a `chaos-table|` row that `make chaos` gathers into a table.
//!
//! The client is this test process in the root namespace, not in a namespace of its own:
//! a namespace is a thread's (setns), so moving the test's loop thread would also move
//! every `ip`, `tc`, `nft` and `pg_ctl` it runs, and the Rust test harness shares one
//! process between tests. Nothing is lost by it: the root side of each link holds only a
//! private /30 of 10.213.0.0/16, no forwarding is turned on, and every fault is applied
//! inside a server's namespace on exactly one link, so the client's traffic to each server
//! meets that server's faults only.
//!
//! Needs root (namespaces, nftables); without it each test says why and passes, except
//! under `CI=true`, where it fails. Figures are printed: run with `--nocapture` to read them.
//!
//! The bounds: with `keepalives_idle=2 keepalives_interval=1 keepalives_count=3
//! tcp_user_timeout=5000` a dead link is found 5 s after the last packet received (the
//! kernel drops the connection when keepalive probes or sent data stay unanswered for
//! `tcp_user_timeout`); with no keyword, momoko's defaults (15 s idle, 5 s interval, 3
//! probes, `tcp_user_timeout` 30 s) find it within 30 s.

#[path = "../common/mod.rs"]
mod common;
// Scenario 1 (TPC-B: a bank's transfers) sorts first of the modules: libtest starts tests
// in name order, and make test's two threads finish sooner with the long ones early.
mod bank;
mod failover;
mod replication;
mod slow_copy;

use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{run_for, sleep};
use momoko::ioloop::IoLoop;
use momoko::{ErrorKind, Pool};
use momoko_testpg::{Fault, NetnsServer};

/// The tight bounds of scenarios 2 and 3.
const TIGHT: &str = "keepalives_idle=2 keepalives_interval=1 keepalives_count=3 \
                     tcp_user_timeout=5000 connect_timeout=3";
/// How long a dead link may take to be found under `TIGHT`: `tcp_user_timeout` counted from
/// the last packet received, plus the kernel's timer granularity and the loop's reaction.
const TIGHT_BOUND: Duration = Duration::from_millis(5000 + 1500);

/// `make chaos` sets `MOMOKO_CHAOS_FULL=1`: the scenarios at the full length
/// (a 20 s partition, 60 s of TPC-B) instead of the short version `make test` runs (10 s
/// each).
fn full() -> bool {
    std::env::var("MOMOKO_CHAOS_FULL").is_ok_and(|v| v == "1")
}

/// One row of `make chaos`'s table, printed as `chaos-table|` and `|`-separated fields for
/// the Makefile to align: the scenario, transactions acknowledged, acknowledged but lost,
/// applied twice, outcome unknown, the time from the fault to its first failure (detect)
/// and from the heal or promotion to the first success (recover); `-` where a figure does
/// not apply.
fn table_row(
    scenario: &str,
    acknowledged: usize,
    lost: usize,
    duplicated: usize,
    unknown: usize,
    detect: Option<Duration>,
    recover: Option<Duration>,
) {
    let secs =
        |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()));
    println!(
        "chaos-table|{scenario}|{acknowledged}|{lost}|{duplicated}|{unknown}|{}|{}",
        secs(detect),
        secs(recover)
    );
}

/// Whether this machine can make servers in namespaces; if not, says why (and under CI
/// fails the test).
fn available() -> bool {
    let Some(why) = NetnsServer::unavailable() else {
        return true;
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the chaos tests must run in CI: {why}"
    );
    eprintln!("skipped: {why}");
    false
}

/// A server in a namespace of its own, or None where this machine can't make one.
fn host() -> Option<NetnsServer> {
    available().then(|| NetnsServer::start().expect("the server in a namespace starts"))
}

/// `n` such servers, started at once.
fn hosts(n: usize) -> Option<Vec<NetnsServer>> {
    if !available() {
        return None;
    }
    let started: Vec<std::io::Result<NetnsServer>> = std::thread::scope(|s| {
        let all: Vec<_> = (0..n).map(|_| s.spawn(NetnsServer::start)).collect();
        all.into_iter().map(|h| h.join().unwrap()).collect()
    });
    Some(
        started
            .into_iter()
            .map(|r| r.expect("the server in a namespace starts"))
            .collect(),
    )
}

/// Removes the namespace, link and server and checks that none of them is left.
fn finish(net: NetnsServer) {
    let ns = net.namespace().to_owned();
    let left = net.close();
    assert!(left.is_empty(), "{ns} left behind: {left:?}");
}

/// The backend pid a query ran on.
async fn backend_pid(pool: &Pool, sql: &str) -> Result<i32, momoko::Error> {
    Ok(pool.execute(sql, ()).await?.fetchone().unwrap().get(0))
}

#[test]
fn the_harness_cuts_each_direction_and_leaves_nothing_behind_even_on_panic() {
    let Some(net) = host() else { return };
    let addr = net.addr();
    let reach = || std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500));
    assert!(reach().is_ok(), "the server answers over the veth pair");
    for fault in [
        Fault::Partition,
        Fault::DropToServer,
        Fault::DropFromServer,
        Fault::Loss(99),
    ] {
        net.apply(fault).unwrap();
        assert_eq!(net.faults(), vec![fault]);
        assert!(reach().is_err(), "{fault:?} stops a TCP handshake");
        net.heal().unwrap();
        assert!(reach().is_ok(), "the link heals after {fault:?}");
    }
    assert_eq!(
        net.apply(Fault::Loss(0)).unwrap_err().kind(),
        std::io::ErrorKind::InvalidInput
    );
    let net = Rc::new(net);
    let dsn = net.dsn();
    let n = net.clone();
    run_for(30, async move {
        let c = momoko::connect(&dsn).await.unwrap();
        let fetch = || async {
            let start = Instant::now();
            let text: String = c
                .execute("SELECT repeat('x', 500000)", ())
                .await
                .unwrap()
                .fetchone()
                .unwrap()
                .get(0);
            assert_eq!(text.len(), 500_000);
            start.elapsed()
        };
        let clean = fetch().await;
        // 500 kB at 2 Mbit/s: 2 s.
        n.apply(Fault::RateKbit(2000)).unwrap();
        let slow = fetch().await;
        n.heal().unwrap();
        println!(
            "harness: 500 kB in {:.2} s clean, {:.2} s at 2 Mbit/s",
            clean.as_secs_f64(),
            slow.as_secs_f64()
        );
        assert!(slow >= Duration::from_millis(1500), "{slow:?}");
        assert!(
            fetch().await < Duration::from_secs(1),
            "the rate limit is lifted"
        );
        c.close();
    });
    let net = Rc::try_unwrap(net).unwrap();
    net.apply(Fault::Partition).unwrap();
    let (ns, link, pid) = (
        net.namespace().to_owned(),
        net.link().to_owned(),
        net.server().pid(),
    );
    assert!(pid.is_some());
    // A test failing with the link cut: unwinding alone removes everything.
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _net = net;
        panic!("a test failing with a fault applied (on purpose)");
    }));
    assert!(unwound.is_err());
    assert_eq!(
        NetnsServer::leftovers(&ns, &link, pid),
        Vec::<String>::new()
    );
}

/// The socket behind a connection of this process whose local port is `port`, found
/// through /proc, with its keepalive and user-timeout options read back by getsockopt.
fn socket_options(port: u16) -> (bool, Duration, Duration, u32, Option<Duration>) {
    use std::os::fd::BorrowedFd;
    let want = format!(":{port:04X}");
    // An established socket with an inode: a closed connection that used the same port
    // may linger in TIME_WAIT (state 06, inode 0).
    let inode = std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .find(|f| f.len() > 9 && f[1].ends_with(&want) && f[3] == "01" && f[9] != "0")
        .map(|f| f[9].clone())
        .unwrap_or_else(|| panic!("no established socket on local port {port}"));
    let link = format!("socket:[{inode}]");
    let fd: i32 = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .find(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy() == link))
        .expect("the socket is one of this process's descriptors")
        .file_name()
        .to_string_lossy()
        .parse()
        .unwrap();
    // SAFETY: the descriptor belongs to a connection that stays open during this call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let s = socket2::SockRef::from(&fd);
    (
        s.keepalive().unwrap(),
        s.tcp_keepalive_time().unwrap(),
        s.tcp_keepalive_interval().unwrap(),
        s.tcp_keepalive_retries().unwrap(),
        s.tcp_user_timeout().unwrap(),
    )
}

#[test]
fn with_no_keyword_set_the_socket_carries_bounded_keepalives_and_user_timeout() {
    let base = common::dsn();
    let zero = format!("{base} keepalives=0 tcp_user_timeout=0");
    let tight = format!("{base} {TIGHT}");
    run_for(30, async move {
        let port = |c: momoko::Connection| async move {
            let p: i32 = c
                .execute("SELECT inet_client_port()", ())
                .await
                .unwrap()
                .fetchone()
                .unwrap()
                .get(0);
            (c, p as u16)
        };
        let (c, p) = port(momoko::connect(&base).await.unwrap()).await;
        assert_eq!(
            socket_options(p),
            (
                true,
                Duration::from_secs(15),
                Duration::from_secs(5),
                3,
                Some(Duration::from_secs(30))
            )
        );
        c.close();
        let (c, p) = port(momoko::connect(&tight).await.unwrap()).await;
        assert_eq!(
            socket_options(p),
            (
                true,
                Duration::from_secs(2),
                Duration::from_secs(1),
                3,
                Some(Duration::from_millis(5000))
            )
        );
        c.close();
        // The system's behaviour: no keepalives, no user timeout.
        let (c, p) = port(momoko::connect(&zero).await.unwrap()).await;
        let (on, .., user) = socket_options(p);
        assert_eq!((on, user), (false, None));
        c.close();
    });
}

/// How long `f` took, and its output.
async fn timed<T>(f: impl std::future::Future<Output = T>) -> (Duration, T) {
    let start = Instant::now();
    let out = f.await;
    (start.elapsed(), out)
}

/// Runs `f` beside the test's own code on the test's loop.
fn spawn<T: 'static>(
    f: impl std::future::Future<Output = T> + 'static,
) -> momoko::ioloop::Future<T> {
    IoLoop::current().spawn(f)
}

/// A pool of `size` connections to `dsn`, connected; dead connections are reconnected every
/// 500 ms.
async fn pool(dsn: &str, size: usize, wait_for_reconnect: bool) -> Pool {
    Pool::builder(dsn)
        .size(size)
        .reconnect_interval(Duration::from_millis(500))
        .wait_for_reconnect(wait_for_reconnect)
        .acquire_timeout(Duration::from_secs(30))
        .build()
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// The distinct backends of `n` queries run at once on `pool`: one per connection when
/// every connection is live.
async fn backends(pool: &Pool, n: usize) -> Vec<i32> {
    let all: Vec<_> = (0..n)
        .map(|_| {
            let p = pool.clone();
            spawn(async move {
                backend_pid(&p, "SELECT pg_backend_pid() FROM pg_sleep(0.3)")
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut pids = momoko::ioloop::gather(all).await;
    pids.sort();
    pids.dedup();
    pids
}

/// Waits until all `size` connections of `pool` are free, and returns how long that took.
async fn all_live(pool: &Pool, size: usize, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let s = pool.stats();
        if s.free == size && s.dead == 0 && s.pending == 0 {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "the pool did not recover: {s:?}");
        sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn a_partition_ends_every_request_within_its_bound_and_the_pool_recovers() {
    let Some(net) = host() else { return };
    let net = Rc::new(net);
    let dsn = format!("{} {TIGHT}", net.dsn());
    let n = net.clone();
    run_for(90, async move {
        let net = n;
        let fast = pool(&dsn, 4, false).await;
        let patient = pool(&dsn, 2, true).await;
        assert_eq!(backends(&fast, 4).await.len(), 4);
        assert_eq!(backends(&patient, 2).await.len(), 2);
        let lone = momoko::connect(&dsn).await.unwrap();
        // Two requests running on the server when the link is cut: sent, so their outcome
        // is unknown to the client.
        let running: Vec<_> = (0..2)
            .map(|_| {
                let p = fast.clone();
                spawn(async move { timed(p.execute("SELECT pg_sleep(3)", ())).await })
            })
            .collect();
        sleep(Duration::from_millis(300)).await;
        net.apply(Fault::Partition).unwrap();
        let cut = Instant::now();
        // A cancel that cannot reach the server ends at connect_timeout (3 s).
        let cancel = spawn(timed(lone.cancel()));
        // Two more sent into the dead link (or stopped by the health check before).
        let late: Vec<_> = (0..2)
            .map(|_| {
                let p = fast.clone();
                spawn(async move { timed(p.execute("SELECT 1", ())).await })
            })
            .collect();
        sleep(Duration::from_secs(1)).await;
        // Requests that wait for the link to heal.
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let p = patient.clone();
                spawn(async move {
                    let pid = backend_pid(&p, "SELECT pg_backend_pid()").await;
                    (pid, Instant::now())
                })
            })
            .collect();
        let (cancel_took, cancelled) = cancel.await;
        let cancel_err = cancelled.expect_err("a cancel over a cut link fails");
        println!(
            "scenario 2: a cancel over the cut link failed after {:.1} s ({:?})",
            cancel_took.as_secs_f64(),
            cancel_err.kind()
        );
        assert!(
            cancel_took >= Duration::from_millis(2_900)
                && cancel_took <= Duration::from_millis(4_500),
            "the cancel took {cancel_took:?}: {cancel_err}"
        );
        lone.close();
        let mut unknown = 0;
        let mut detected = Duration::ZERO;
        for (i, r) in momoko::ioloop::gather(running)
            .await
            .into_iter()
            .enumerate()
        {
            let (took, result) = r;
            let err = result.expect_err("a request on a cut link fails");
            let detect = cut.elapsed().min(took);
            println!(
                "scenario 2, in flight {i}: failed after {:.1} s from the cut ({:?}, outcome unknown: {})",
                detect.as_secs_f64(),
                err.kind(),
                err.outcome_unknown()
            );
            assert!(err.outcome_unknown(), "a request that was sent: {err}");
            assert!(detect <= TIGHT_BOUND, "took {detect:?}: {err}");
            detected = detected.max(detect);
            unknown += 1;
        }
        for (i, (took, result)) in momoko::ioloop::gather(late).await.into_iter().enumerate() {
            let err = result.expect_err("a request on a cut link fails");
            println!(
                "scenario 2, issued after the cut {i}: failed after {:.1} s ({:?}, outcome unknown: {})",
                took.as_secs_f64(),
                err.kind(),
                err.outcome_unknown()
            );
            // The TCP bound of a request written to the dead link (or of the health check
            // that found its connection dead), then a reconnect bounded by connect_timeout.
            assert!(
                took <= TIGHT_BOUND + Duration::from_secs(3),
                "took {took:?}: {err}"
            );
            if err.outcome_unknown() {
                unknown += 1;
            } else {
                assert!(
                    matches!(
                        err.kind(),
                        ErrorKind::DatabaseNotAvailable | ErrorKind::Connection
                    ),
                    "{err}"
                );
            }
        }
        // A partition of about 10 s (20 s in full).
        let length = Duration::from_secs(if full() { 20 } else { 10 });
        let rest = length.saturating_sub(cut.elapsed());
        sleep(rest).await;
        net.heal().unwrap();
        let healed = Instant::now();
        let mut ok = 0;
        let mut waited = Duration::ZERO;
        for (pid, at) in momoko::ioloop::gather(waiting).await {
            pid.expect("a request of wait_for_reconnect succeeds once the link heals");
            assert!(at >= healed, "served {:?} before the heal", healed - at);
            waited = waited.max(at - healed);
            ok += 1;
        }
        all_live(&fast, 4, Duration::from_secs(15)).await;
        let recovered = healed.elapsed();
        all_live(&patient, 2, Duration::from_secs(15)).await;
        let pids = backends(&fast, 4).await;
        println!(
            "scenario 2: partition {:.1} s; {unknown} requests outcome unknown; {ok} waiting \
             requests served {:.2} s after the heal; pool of 4 all live {:.2} s after the heal",
            (healed - cut).as_secs_f64(),
            waited.as_secs_f64(),
            recovered.as_secs_f64()
        );
        table_row(
            &format!(
                "2 partition {:.0} s, tight keywords",
                (healed - cut).as_secs_f64()
            ),
            ok,
            0,
            0,
            unknown,
            Some(detected),
            Some(recovered),
        );
        assert_eq!(ok, 2);
        assert!(unknown >= 2);
        assert!(
            waited <= Duration::from_secs(4),
            "waited {waited:?} after the heal"
        );
        assert_eq!(
            pids.len(),
            4,
            "every connection of the pool is live: {pids:?}"
        );
        fast.close().unwrap();
        patient.close().unwrap();
    });
    finish(Rc::try_unwrap(net).unwrap());
}

#[test]
fn a_dead_link_is_found_within_a_minute_with_no_keyword_set() {
    let Some(net) = host() else { return };
    let net = Rc::new(net);
    // No keepalive or timeout keyword at all: momoko's defaults alone bound the wait.
    let dsn = net.dsn();
    let n = net.clone();
    run_for(120, async move {
        let net = n;
        let busy = pool(&dsn, 1, false).await;
        let idle = pool(&dsn, 1, false).await;
        busy.execute("SELECT 1", ()).await.unwrap();
        idle.execute("SELECT 1", ()).await.unwrap();
        let lone = momoko::connect(&dsn).await.unwrap();
        let sleeping = spawn(timed(lone.execute("SELECT pg_sleep(120)", ())));
        sleep(Duration::from_millis(200)).await;
        net.apply(Fault::Partition).unwrap();
        let cut = Instant::now();
        // A cancel that cannot reach the server: its own bound is connect_timeout, or
        // 10 s without one.
        let cancel = spawn(timed(lone.cancel()));
        // Written to the dead link at once (idle for less than health_check_after).
        let request = spawn(timed(busy.execute("SELECT 1", ())));
        // A new connection's SYN blackholed: TCP_USER_TIMEOUT bounds it too (Linux >= 5.4),
        // where the kernel alone would retry for about 127 s.
        let d = dsn.clone();
        let connect = spawn(async move { timed(momoko::connect(&d)).await });
        let minute = Duration::from_secs(60);
        let found = loop {
            if idle.stats().counters.connections_lost == 1 {
                break cut.elapsed();
            }
            assert!(
                cut.elapsed() < minute,
                "the idle connection is still taken for live after a minute: {:?}",
                idle.stats()
            );
            sleep(Duration::from_millis(50)).await;
        };
        let (took, result) = request.await;
        let err = result.expect_err("a request on a cut link fails");
        println!(
            "defaults: request on the cut link failed after {:.1} s ({:?}, outcome unknown: {}); \
             idle pooled connection found dead after {:.1} s",
            took.as_secs_f64(),
            err.kind(),
            err.outcome_unknown(),
            found.as_secs_f64()
        );
        let (connect_took, connected) = connect.await;
        let connect_err = connected.expect_err("a connect over a cut link fails");
        println!(
            "defaults: a new connection over the cut link failed after {:.1} s ({:?})",
            connect_took.as_secs_f64(),
            connect_err.kind()
        );
        table_row(
            "2 partition, no keyword (defaults)",
            0,
            0,
            0,
            usize::from(err.outcome_unknown()),
            Some(took.max(found)),
            None,
        );
        let (cancel_took, cancelled) = cancel.await;
        let cancel_err = cancelled.expect_err("a cancel over a cut link fails");
        let (sleep_took, slept) = sleeping.await;
        let sleep_err = slept.expect_err("a long query on a cut link fails");
        println!(
            "defaults: a cancel over the cut link failed after {:.1} s ({:?}); the query it \
             aimed at failed after {:.1} s ({:?}, outcome unknown: {})",
            cancel_took.as_secs_f64(),
            cancel_err.kind(),
            sleep_took.as_secs_f64(),
            sleep_err.kind(),
            sleep_err.outcome_unknown()
        );
        assert!(
            cancel_took >= Duration::from_millis(9_900) && cancel_took <= Duration::from_secs(12),
            "the cancel took {cancel_took:?}: {cancel_err}"
        );
        assert!(
            sleep_took < minute && sleep_err.outcome_unknown(),
            "{sleep_err}"
        );
        lone.close();
        assert!(took < minute, "took {took:?}");
        assert!(err.outcome_unknown(), "{err}");
        assert!(connect_took < minute, "connect took {connect_took:?}");
        assert_eq!(connect_err.kind(), ErrorKind::Connection, "{connect_err}");
        assert_eq!(busy.stats().counters.connections_lost, 1);
        net.heal().unwrap();
        all_live(&busy, 1, Duration::from_secs(30)).await;
        all_live(&idle, 1, Duration::from_secs(30)).await;
        busy.close().unwrap();
        idle.close().unwrap();
    });
    finish(Rc::try_unwrap(net).unwrap());
}

/// Scenario 3: one direction of the link dropped while a connection taken with `getconn`
/// runs a query and the pool's other connection sits idle past `health_check_after`.
async fn half_open(net: Rc<NetnsServer>, fault: Fault) {
    let dsn = format!("{} {TIGHT}", net.dsn());
    let pool = pool(&dsn, 2, true).await;
    let before = backends(&pool, 2).await;
    assert_eq!(before.len(), 2);
    let held = pool.getconn(false).await.unwrap();
    let h = held.clone();
    let running = spawn(async move { timed(h.execute("SELECT pg_sleep(2)", ())).await });
    // The other connection is now idle longer than health_check_after (1 s).
    sleep(Duration::from_millis(1200)).await;
    net.apply(fault).unwrap();
    let cut = Instant::now();
    // Handed the idle connection only once its check passes: it cannot.
    let p = pool.clone();
    let request = spawn(async move { backend_pid(&p, "SELECT pg_backend_pid()").await });
    let (took, result) = running.await;
    let (detect, err) = match fault {
        // The answer is lost: the query fails by the TCP bounds.
        Fault::DropFromServer => (
            cut.elapsed().min(took),
            result.expect_err("a query whose answer is dropped fails"),
        ),
        // The answer still arrives; the next query written is lost.
        _ => {
            result.expect("the answer of a query sent before the cut still arrives");
            let sent = Instant::now();
            let err = held
                .execute("SELECT 1", ())
                .await
                .expect_err("a query written to a link that drops it fails");
            (sent.elapsed(), err)
        }
    };
    pool.putconn(held).unwrap();
    sleep(Duration::from_secs(8).saturating_sub(cut.elapsed())).await;
    assert!(
        !request.done(),
        "the request waits while the link is half-open"
    );
    net.heal().unwrap();
    let healed = Instant::now();
    let pid = request
        .await
        .expect("the request is served once the link heals");
    let served = healed.elapsed();
    let c = pool.stats().counters;
    println!(
        "scenario 3, {fault:?}: the query in use failed after {:.1} s ({:?}, outcome \
         unknown: {}); idle connections that failed the health check: {}, lost: {}; the \
         waiting request was served {:.1} s after the heal on a new backend",
        detect.as_secs_f64(),
        err.kind(),
        err.outcome_unknown(),
        c.connections_failed_check,
        c.connections_lost,
        served.as_secs_f64()
    );
    table_row(
        &format!("3 half-open, {fault:?}"),
        1,
        0,
        0,
        usize::from(err.outcome_unknown()),
        Some(detect),
        Some(served),
    );
    assert!(err.outcome_unknown(), "{err}");
    assert!(detect <= TIGHT_BOUND, "took {detect:?}: {err}");
    assert_eq!(c.connections_failed_check, 1, "{c:?}");
    assert!(
        !before.contains(&pid),
        "served by a new connection, not a dead one: {pid} in {before:?}"
    );
    assert!(
        served <= Duration::from_secs(4),
        "served {served:?} after the heal"
    );
    all_live(&pool, 2, Duration::from_secs(15)).await;
    assert_eq!(backends(&pool, 2).await.len(), 2);
    pool.close().unwrap();
}

#[test]
fn half_open_either_way_finds_idle_and_busy_connections_dead_within_bounds() {
    let Some(nets) = hosts(2) else { return };
    let nets: Vec<Rc<NetnsServer>> = nets.into_iter().map(Rc::new).collect();
    let (replies, requests) = (nets[0].clone(), nets[1].clone());
    run_for(90, async move {
        let a = spawn(half_open(replies, Fault::DropFromServer));
        let b = spawn(half_open(requests, Fault::DropToServer));
        a.await;
        b.await;
    });
    for net in nets {
        finish(Rc::try_unwrap(net).unwrap());
    }
}

/// A server that accepts, answers the SSLRequest with 'S' and then says nothing: the TLS
/// handshake never completes. The link is live (the peer's kernel acknowledges every
/// byte), so neither keepalives nor `tcp_user_timeout` end the wait; `connect_timeout`
/// does, as in libpq (whose default also waits forever).
#[test]
fn a_tls_handshake_that_never_completes_ends_at_connect_timeout() {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    // Every connection is served, as a stranger may connect too (another test on this
    // machine probing a port it believes free): each that sends an SSLRequest gets 'S' and
    // then silence; what the client sends after it is counted.
    let silent = |mut s: std::net::TcpStream| -> usize {
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut ssl_request = [0u8; 8];
        if s.read_exact(&mut ssl_request).is_err() || ssl_request != [0, 0, 0, 8, 4, 210, 22, 47] {
            return 0;
        }
        s.write_all(b"S").unwrap();
        let (mut hello, mut buf) = (0, [0u8; 4096]);
        loop {
            match s.read(&mut buf) {
                Ok(0) => return hello,
                Ok(n) => hello += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return hello,
            }
        }
    };
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let peer = std::thread::spawn(move || {
        let mut served = Vec::new();
        while !d.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((s, _)) => served.push(std::thread::spawn(move || silent(s))),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        served.into_iter().map(|t| t.join().unwrap()).sum::<usize>()
    });
    let dsn =
        format!("host=127.0.0.1 port={port} dbname=x user=x sslmode=require connect_timeout=2");
    run_for(30, async move {
        let (took, r) = timed(momoko::connect(&dsn)).await;
        let err = r.expect_err("a handshake that never completes fails");
        println!(
            "timeouts: a TLS handshake that never completes failed after {:.1} s ({:?}: {err})",
            took.as_secs_f64(),
            err.kind()
        );
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        // libpq's connect_timeout has a 2 s floor, which momoko keeps.
        assert!(
            took >= Duration::from_millis(1_990) && took <= Duration::from_secs(4),
            "{took:?}"
        );
    });
    done.store(true, Ordering::Relaxed);
    assert!(
        peer.join().unwrap() > 0,
        "the client did start the handshake"
    );
}
