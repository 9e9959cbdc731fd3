//! Shared helpers of the integration tests: the server to use and a bounded way to run.
#![allow(dead_code)]

use std::time::Duration;

use momoko::ioloop::IoLoop;

/// The trust-login DSN of the suite's server (a throwaway cluster, or `MOMOKO_TEST_DSN`).
pub fn dsn() -> String {
    momoko_testpg::TestServer::shared().dsn.clone()
}

/// The server description, for the MD5, SCRAM and Unix-socket DSNs.
pub fn server() -> &'static momoko_testpg::ServerInfo {
    momoko_testpg::TestServer::shared()
}

/// Runs `fut` on a fresh loop; a hang fails the test after `secs` seconds.
pub fn run_for<F: std::future::Future + 'static>(secs: u64, fut: F) -> F::Output {
    IoLoop::new()
        .run_sync_timeout(fut, Duration::from_secs(secs))
        .expect("the test did not finish in time")
}

/// Runs `fut` on a fresh loop with a 30 s bound.
pub fn run<F: std::future::Future + 'static>(fut: F) -> F::Output {
    run_for(30, fut)
}

/// A port on 127.0.0.1 where nothing listens.
pub fn refused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A name unique to this process and call, for tables shared by parallel tests.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A tcproxy relay of the caller's own in front of the suite's server, and the DSN that
/// goes through it (Momoko's `good_proxy_dsn`).
pub fn relay() -> (tcproxy::ProxyHandle, String) {
    use std::net::{SocketAddr, ToSocketAddrs};
    let info = server();
    let upstream: SocketAddr = (info.host.as_str(), info.port)
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap();
    let proxy = tcproxy::Proxy::start("127.0.0.1:0".parse().unwrap(), upstream).unwrap();
    let addr = proxy.local_addr();
    let mut words: Vec<String> = info
        .dsn
        .split_whitespace()
        .filter(|w| {
            !["host=", "hostaddr=", "port="]
                .iter()
                .any(|k| w.starts_with(k))
        })
        .map(str::to_owned)
        .collect();
    words.push(format!("hostaddr={} port={}", addr.ip(), addr.port()));
    (proxy, words.join(" "))
}

/// Sleeps on the current loop (the test's own, inside `run`).
pub async fn sleep(d: Duration) {
    momoko::ioloop::sleep(&IoLoop::current(), d).await
}

/// Waits until `cond` holds, failing the test after `secs` seconds.
pub async fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        sleep(Duration::from_millis(10)).await;
    }
}

/// Momoko's "Some connections were not recycled" check.
pub fn assert_none_busy(pool: &momoko::Pool) {
    assert_eq!(
        pool.stats().busy,
        0,
        "connections were not recycled: {pool:?}"
    );
}

/// Momoko's run_and_check_query.
pub async fn run_and_check_query(pool: &momoko::Pool) {
    let mut c = pool.execute("SELECT 6, 19, 24;", ()).await.unwrap();
    let r = c.fetchone().unwrap();
    assert_eq!(
        (r.get::<_, i32>(0), r.get::<_, i32>(1), r.get::<_, i32>(2)),
        (6, 19, 24)
    );
}

/// Momoko's run_parallel_queries: `jobs` concurrent `pg_sleep(2)` must finish within 1.1 ×
/// the ideal time for a pool of `size`.
pub async fn run_parallel_queries(pool: &momoko::Pool, jobs: usize, size: usize) {
    let start = std::time::Instant::now();
    let fs: Vec<_> = (0..jobs)
        .map(|_| pool.execute("SELECT pg_sleep(2);", ()))
        .collect();
    for f in fs {
        f.await.unwrap();
    }
    let bound = 2.0 * (jobs as f64 / size as f64) * 1.1;
    let took = start.elapsed().as_secs_f64();
    assert!(
        took < bound,
        "{jobs} jobs took {took:.2}s, bound {bound:.2}s"
    );
    assert_none_busy(pool);
}

/// Momoko's server-side cursor test body: DECLARE over `table` (the integers 0..1000 in
/// insertion order), FETCH 10 at a time with a `%s` parameter, each chunk exact, then
/// CLOSE and COMMIT.
pub async fn fetch_all_ints_in_chunks(conn: &momoko::Connection, table: &str) {
    conn.execute("BEGIN", ()).await.unwrap();
    conn.execute(
        &format!("DECLARE all_ints CURSOR FOR SELECT * FROM {table}"),
        (),
    )
    .await
    .unwrap();
    let mut offset = 0;
    while offset < 1000 {
        let mut c = conn
            .execute("FETCH %s FROM all_ints", (10i32,))
            .await
            .unwrap();
        let got: Vec<i32> = c.fetchall().iter().map(|r| r.get(0)).collect();
        assert_eq!(got, (offset..offset + 10).collect::<Vec<i32>>());
        offset += 10;
    }
    conn.execute("CLOSE all_ints", ()).await.unwrap();
    conn.execute("COMMIT", ()).await.unwrap();
}

/// Momoko's test_stretch_genconn body: three concurrent `getconn`s each run a query, are
/// given back, and the pool has stretched to exactly three connections.
pub async fn three_concurrent_getconns(pool: &momoko::Pool) {
    let fs: Vec<_> = (0..3).map(|_| pool.getconn(true)).collect();
    let mut conns = Vec::new();
    for f in fs {
        conns.push(f.await.unwrap());
    }
    let qs: Vec<_> = conns
        .iter()
        .enumerate()
        .map(|(i, c)| c.execute(&format!("SELECT {};", i + 1), ()))
        .collect();
    for (i, q) in qs.into_iter().enumerate() {
        assert_eq!(
            q.await.unwrap().fetchone().unwrap().get::<_, i32>(0),
            i as i32 + 1
        );
    }
    for c in conns {
        pool.putconn(c).unwrap();
    }
    assert_eq!(pool.stats().total(), 3);
}
