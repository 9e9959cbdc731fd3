//! Helpers shared by the integration tests: a watchdog so no test can hang, and connected
//! non-blocking TCP pairs on 127.0.0.1.

#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

use momoko_loop::{IoLoop, TimeoutId};

/// Makes a hung loop fail the test: after 5 s, panics from inside the loop, which
/// propagates out of `start()`.
pub fn watchdog(ioloop: &IoLoop) -> TimeoutId {
    ioloop.call_later(Duration::from_secs(5), || {
        panic!("watchdog: the loop ran for 5 s without finishing the test")
    })
}

/// A connected pair of non-blocking mio TCP streams (client, server side).
pub fn tcp_pair() -> (mio::net::TcpStream, mio::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    client.set_nonblocking(true).unwrap();
    server.set_nonblocking(true).unwrap();
    (
        mio::net::TcpStream::from_std(client),
        mio::net::TcpStream::from_std(server),
    )
}

/// The xorshift64 PRNG: deterministic, no rand crate.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
