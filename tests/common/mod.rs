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
