//! File descriptors: 10,000 relayed connect/close cycles leave the process holding exactly
//! as many as before. Alone in its own test binary, so no other test opens or closes
//! descriptors meanwhile.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use common::*;

#[test]
fn ten_thousand_connect_close_cycles_leak_no_descriptor() {
    const CYCLES: usize = 10_000;
    let (proxy, server) = proxy();
    // The server: echo one byte, then wait for the end of the stream and close.
    let echo = std::thread::spawn(move || {
        for _ in 0..CYCLES {
            let (mut s, _) = server.accept().unwrap();
            s.set_read_timeout(Some(IO_LIMIT)).unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).unwrap();
            s.write_all(&b).unwrap();
            assert_eq!(s.read(&mut b).unwrap(), 0);
        }
        server
    });
    // The relay is fully up once Proxy::start returned: its listener, poll and waker.
    let before = open_fds();
    let start = Instant::now();
    for i in 0..CYCLES {
        let mut c = TcpStream::connect(proxy.local_addr()).unwrap();
        c.set_read_timeout(Some(IO_LIMIT)).unwrap();
        c.write_all(&[i as u8]).unwrap();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).unwrap();
        assert_eq!(b[0], i as u8);
    }
    let server = echo.join().unwrap();
    wait_until(IO_LIMIT, "every relayed connection closed", || {
        proxy.stats().live == 0
    });
    let took = start.elapsed();
    let after = open_fds();
    eprintln!(
        "{CYCLES} cycles in {took:.2?}: {before} descriptors before, {after} after, {} accepted",
        proxy.stats().accepted
    );
    assert_eq!(proxy.stats().accepted, CYCLES as u64);
    assert_eq!(after, before, "descriptors leaked");
    drop(server);
    drop(proxy);
    // Gone: the server's listener, and the relay's listener, poll and waker.
    assert_eq!(open_fds(), before - 4);
}
