//! Helpers of tcproxy's tests: a relay in front of a std listener, a bounded wait, and a
//! deterministic byte stream with a hash to prove data arrived intact.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use tcproxy::{Proxy, ProxyHandle};

/// Every blocking read and write of the tests gives up after this long.
pub const IO_LIMIT: Duration = Duration::from_secs(20);

/// A relay on a free port in front of a fresh listener (the "server").
pub fn proxy() -> (ProxyHandle, TcpListener) {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = Proxy::start(any_port(), server.local_addr().unwrap()).unwrap();
    (proxy, server)
}

pub fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A relayed connection: the client's end and the server's end, with bounded IO.
pub fn pair(proxy: &ProxyHandle, server: &TcpListener) -> (TcpStream, TcpStream) {
    let client = TcpStream::connect(proxy.local_addr()).unwrap();
    let (upstream, _) = server.accept().unwrap();
    for s in [&client, &upstream] {
        s.set_read_timeout(Some(IO_LIMIT)).unwrap();
        s.set_write_timeout(Some(IO_LIMIT)).unwrap();
        s.set_nodelay(true).unwrap();
    }
    (client, upstream)
}

/// Polls `cond` every millisecond until it holds; panics with `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// xorshift64*: a reproducible stream of bytes, 8 at a time.
pub struct Stream(u64);

impl Stream {
    pub fn new(seed: u64) -> Stream {
        Stream(seed | 1)
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for word in buf.chunks_exact_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            word.copy_from_slice(&self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
    }
}

/// FNV-1a over 64-bit words (byte-wise FNV is too slow for 100 MB in a debug build).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Hash(pub u64);

impl Hash {
    pub fn new() -> Hash {
        Hash(0xcbf2_9ce4_8422_2325)
    }
    pub fn update(&mut self, buf: &[u8]) {
        assert_eq!(buf.len() % 8, 0, "whole words only");
        for word in buf.chunks_exact(8) {
            self.0 ^= u64::from_le_bytes(word.try_into().unwrap());
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

pub const BLOCK: usize = 64 * 1024;

/// Writes `blocks` blocks of the stream `seed`; returns their hash.
pub fn send_stream(mut w: impl Write, seed: u64, blocks: usize) -> Hash {
    let (mut s, mut h, mut buf) = (Stream::new(seed), Hash::new(), vec![0u8; BLOCK]);
    for _ in 0..blocks {
        s.fill(&mut buf);
        h.update(&buf);
        w.write_all(&buf).unwrap();
    }
    h
}

/// Reads `blocks` blocks; returns their hash, after checking the stream ends there.
pub fn receive_stream(mut r: impl Read, blocks: usize) -> Hash {
    let (mut h, mut buf) = (Hash::new(), vec![0u8; BLOCK]);
    for _ in 0..blocks {
        r.read_exact(&mut buf).unwrap();
        h.update(&buf);
    }
    assert_eq!(
        r.read(&mut buf).unwrap(),
        0,
        "bytes past the end of the stream"
    );
    h
}

/// The number of open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Raises this process's soft limit on open files to its hard limit. An ordinary user's
/// soft limit is often 1024, below what a thousand relayed connections need (a client, two
/// relay sockets and a server socket each); root's is usually higher.
pub fn raise_fd_limit() {
    #[repr(C)]
    struct Rlimit {
        cur: u64,
        max: u64,
    }
    extern "C" {
        fn getrlimit(resource: i32, rlim: *mut Rlimit) -> i32;
        fn setrlimit(resource: i32, rlim: *const Rlimit) -> i32;
    }
    // RLIMIT_NOFILE on Linux.
    const RLIMIT_NOFILE: i32 = 7;
    let mut r = Rlimit { cur: 0, max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed in, which
    // matches the kernel's `struct rlimit` on 64-bit Linux.
    unsafe {
        if getrlimit(RLIMIT_NOFILE, &mut r) == 0 && r.cur < r.max {
            r.cur = r.max;
            setrlimit(RLIMIT_NOFILE, &r);
        }
    }
}
