//! The relay on real loopback sockets: bulk data intact both ways, many connections at
//! once, backpressure, and each fault's effect as a peer sees it. Every wait is bounded.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use tcproxy::{Direction, Proxy, ProxyHandle, Stats};

fn read_some(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0; 64 * 1024];
    let n = s.read(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// True when nothing arrives on `s` within `d`.
fn silent_for(s: &mut TcpStream, d: Duration) -> bool {
    s.set_read_timeout(Some(d)).unwrap();
    let r = s.read(&mut [0u8; 1]);
    s.set_read_timeout(Some(IO_LIMIT)).unwrap();
    matches!(r, Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut)
}

#[test]
fn a_hundred_megabytes_each_way_at_once_arrive_intact() {
    const BLOCKS: usize = 1600; // 1600 × 64 KiB = 100 MiB each way
    let (proxy, server) = proxy();
    let (client, upstream) = pair(&proxy, &server);
    let start = Instant::now();
    let (c_in, u_in) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
    // Each sender half-closes when done, so each reader also checks the stream ends there.
    let send = |s: TcpStream, seed| {
        thread::spawn(move || {
            let h = send_stream(&s, seed, BLOCKS);
            s.shutdown(Shutdown::Write).unwrap();
            h
        })
    };
    let (sent_up, sent_down) = (send(client, 1), send(upstream, 2));
    let got_up = thread::spawn(move || receive_stream(u_in, BLOCKS));
    let got_down = receive_stream(c_in, BLOCKS);
    let (sent_up, sent_down) = (sent_up.join().unwrap(), sent_down.join().unwrap());
    assert_eq!(got_up.join().unwrap(), sent_up);
    assert_eq!(got_down, sent_down);
    let took = start.elapsed().as_secs_f64();
    let total = 2.0 * (BLOCKS * BLOCK) as f64;
    eprintln!(
        "relayed 2 × 100 MiB in {took:.2} s: {:.0} MiB/s in all",
        total / took / 1048576.0
    );
    let s = proxy.stats();
    assert_eq!(
        (s.bytes_up, s.bytes_down),
        ((BLOCKS * BLOCK) as u64, (BLOCKS * BLOCK) as u64)
    );
}

#[test]
fn half_close_passes_through_and_the_stream_ends_exactly() {
    let (proxy, server) = proxy();
    let (mut client, upstream) = pair(&proxy, &server);
    let h = send_stream(&client, 7, 16);
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(receive_stream(&upstream, 16), h);
    // The other way still flows after the client's FIN.
    let h = send_stream(&upstream, 8, 4);
    upstream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(receive_stream(&client, 4), h);
    assert_eq!(read_some(&mut client).unwrap(), b"");
    wait_until(IO_LIMIT, "the connection is closed", || {
        proxy.stats().live == 0
    });
}

#[test]
fn a_thousand_concurrent_connections_are_relayed() {
    const N: usize = 1000;
    raise_fd_limit();
    let (proxy, server) = proxy();
    // The server answers each connection with its 8 bytes doubled, in accept order.
    let echo = thread::spawn(move || {
        let mut conns = Vec::new();
        for _ in 0..N {
            let (s, _) = server.accept().unwrap();
            s.set_read_timeout(Some(IO_LIMIT)).unwrap();
            conns.push(s);
        }
        for s in &mut conns {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).unwrap();
            let v = u64::from_le_bytes(b) * 2;
            s.write_all(&v.to_le_bytes()).unwrap();
        }
        conns
    });
    let mut clients: Vec<TcpStream> = (0..N)
        .map(|i| {
            let mut c = TcpStream::connect(proxy.local_addr()).unwrap();
            c.set_read_timeout(Some(IO_LIMIT)).unwrap();
            c.write_all(&(i as u64).to_le_bytes()).unwrap();
            c
        })
        .collect();
    let server_side = echo.join().unwrap();
    assert_eq!(proxy.stats().live, N as u64);
    let mut seen = Vec::new();
    for c in &mut clients {
        let mut b = [0u8; 8];
        c.read_exact(&mut b).unwrap();
        seen.push(u64::from_le_bytes(b));
    }
    // Each client got its own answer, whatever order the server accepted them in.
    assert_eq!(seen, (0..N as u64).map(|i| i * 2).collect::<Vec<_>>());
    assert_eq!(
        proxy.stats(),
        Stats {
            accepted: N as u64,
            live: N as u64,
            bytes_up: 8 * N as u64,
            bytes_down: 8 * N as u64
        }
    );
    drop(clients);
    drop(server_side);
    wait_until(IO_LIMIT, "every connection closed", || {
        proxy.stats().live == 0
    });
}

#[test]
fn a_reader_that_does_not_read_stalls_the_writer() {
    let (proxy, server) = proxy();
    let (client, mut upstream) = pair(&proxy, &server);
    client.set_nonblocking(true).unwrap();
    // Write until the client's writes block and stay blocked.
    let (mut written, mut idle_since, mut buf) = (0usize, Instant::now(), vec![0u8; BLOCK]);
    let mut stream = Stream::new(3);
    let mut pending: Vec<u8> = Vec::new();
    while idle_since.elapsed() < Duration::from_millis(300) {
        if pending.is_empty() {
            stream.fill(&mut buf);
            pending = buf.clone();
        }
        match (&client).write(&pending) {
            Ok(n) => {
                written += n;
                pending.drain(..n);
                idle_since = Instant::now();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("{e}"),
        }
        assert!(written < 256 << 20, "256 MiB went in with nobody reading");
    }
    let relayed = proxy.stats().bytes_up;
    eprintln!("stalled after {written} bytes written, {relayed} relayed");
    // What the relay holds is at most its 64 KiB buffer (the rest sits in kernel buffers).
    assert!(relayed as usize <= written);
    // Everything written arrives, intact, once the reader reads.
    client.shutdown(Shutdown::Write).unwrap();
    let total = written;
    let mut got = Vec::with_capacity(total);
    upstream.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), total);
    let mut expect = vec![0u8; got.len().div_ceil(BLOCK) * BLOCK];
    let mut s = Stream::new(3);
    for b in expect.chunks_mut(BLOCK) {
        s.fill(b);
    }
    assert!(got == expect[..total], "the stream was corrupted");
}

#[test]
fn stop_closes_live_connections_and_refuses_connects_until_start() {
    let (proxy, server) = proxy();
    let addr = proxy.local_addr();
    let (mut client, mut upstream) = pair(&proxy, &server);
    proxy.stop();
    assert_eq!(read_some(&mut client).unwrap(), b"", "the client sees EOF");
    assert_eq!(
        read_some(&mut upstream).unwrap(),
        b"",
        "the server sees EOF"
    );
    let err = TcpStream::connect(addr).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    assert_eq!(proxy.stats().live, 0);
    proxy.stop(); // twice is harmless
    proxy.start().unwrap();
    assert_eq!(proxy.local_addr(), addr, "the same port again");
    let (mut client, mut upstream) = pair(&proxy, &server);
    client.write_all(b"again").unwrap();
    assert_eq!(read_some(&mut upstream).unwrap(), b"again");
    proxy.start().unwrap(); // while listening: nothing happens
    assert_eq!(proxy.stats().live, 1);
}

#[test]
fn reset_all_gives_both_peers_a_reset_and_keeps_listening() {
    let (proxy, server) = proxy();
    let (mut client, mut upstream) = pair(&proxy, &server);
    client.write_all(b"x").unwrap();
    assert_eq!(read_some(&mut upstream).unwrap(), b"x");
    proxy.reset_all();
    assert_eq!(
        read_some(&mut client).unwrap_err().kind(),
        ErrorKind::ConnectionReset
    );
    assert_eq!(
        read_some(&mut upstream).unwrap_err().kind(),
        ErrorKind::ConnectionReset
    );
    assert_eq!(proxy.stats().live, 0);
    let (mut client, mut upstream) = pair(&proxy, &server);
    client.write_all(b"y").unwrap();
    assert_eq!(read_some(&mut upstream).unwrap(), b"y");
}

#[test]
fn blackhole_moves_no_byte_on_live_and_new_connections_until_healed() {
    let (proxy, server) = proxy();
    let (mut client, mut upstream) = pair(&proxy, &server);
    proxy.blackhole(true);
    client.write_all(b"up").unwrap();
    upstream.write_all(b"down").unwrap();
    assert!(silent_for(&mut upstream, Duration::from_millis(300)));
    assert!(silent_for(&mut client, Duration::from_millis(300)));
    // New connections are accepted and kept open, and stay silent too.
    let (mut c2, mut u2) = pair(&proxy, &server);
    c2.write_all(b"new").unwrap();
    assert!(silent_for(&mut u2, Duration::from_millis(200)));
    assert_eq!(proxy.stats().bytes_up, 0);
    proxy.heal();
    assert_eq!(read_some(&mut upstream).unwrap(), b"up");
    assert_eq!(read_some(&mut client).unwrap(), b"down");
    assert_eq!(read_some(&mut u2).unwrap(), b"new");
}

#[test]
fn latency_delays_each_direction_by_the_amount() {
    let (proxy, server) = proxy();
    let (mut client, mut upstream) = pair(&proxy, &server);
    let lat = Duration::from_millis(100);
    proxy.latency(lat);
    for _ in 0..3 {
        let t = Instant::now();
        client.write_all(b"ping").unwrap();
        assert_eq!(read_some(&mut upstream).unwrap(), b"ping");
        let up = t.elapsed();
        upstream.write_all(b"pong").unwrap();
        assert_eq!(read_some(&mut client).unwrap(), b"pong");
        let rtt = t.elapsed();
        eprintln!("latency 100 ms: one way {up:?}, round trip {rtt:?}");
        assert!(up >= lat && up < lat + Duration::from_millis(80), "{up:?}");
        assert!(
            rtt >= 2 * lat && rtt < 2 * lat + Duration::from_millis(150),
            "{rtt:?}"
        );
    }
    proxy.heal();
    let t = Instant::now();
    client.write_all(b"fast").unwrap();
    assert_eq!(read_some(&mut upstream).unwrap(), b"fast");
    assert!(t.elapsed() < Duration::from_millis(50), "{:?}", t.elapsed());
}

/// Each of `n` 8-byte messages (a sequence number) written `gap` apart on `from`: the time
/// each took to arrive on `to`, in the order they arrived.
fn one_way_delays(
    from: &TcpStream,
    to: &mut TcpStream,
    n: u64,
    gap: Duration,
) -> Vec<(u64, Duration)> {
    let mut w = from.try_clone().unwrap();
    let start = Instant::now();
    let sender = thread::spawn(move || {
        for i in 0..n {
            let at = start + gap * i as u32;
            thread::sleep(at.saturating_duration_since(Instant::now()));
            w.write_all(&i.to_be_bytes()).unwrap();
        }
    });
    let mut got = Vec::new();
    let mut buf = Vec::new();
    while (got.len() as u64) < n {
        buf.extend(read_some(to).unwrap());
        let now = Instant::now();
        while buf.len() >= 8 {
            let i = u64::from_be_bytes(buf[..8].try_into().unwrap());
            buf.drain(..8);
            got.push((i, now - (start + gap * i as u32)));
        }
    }
    sender.join().unwrap();
    got
}

#[test]
fn latency_with_jitter_spreads_each_direction_and_keeps_the_order() {
    let (proxy, server) = proxy();
    let (mut client, mut upstream) = pair(&proxy, &server);
    let (delay, jitter) = (Duration::from_millis(20), Duration::from_millis(10));
    proxy.latency_jitter(delay, jitter);
    // Written 15 ms apart, so that most messages leave the relay on a read of their own.
    let gap = Duration::from_millis(15);
    let ends = |a: &TcpStream, b: &TcpStream| (a.try_clone().unwrap(), b.try_clone().unwrap());
    for (dir, (from, mut to)) in [
        ("up", ends(&client, &upstream)),
        ("down", ends(&upstream, &client)),
    ] {
        let got = one_way_delays(&from, &mut to, 60, gap);
        let order: Vec<u64> = got.iter().map(|(i, _)| *i).collect();
        assert_eq!(
            order,
            (0..60).collect::<Vec<_>>(),
            "{dir}: the order is kept"
        );
        let held: Vec<Duration> = got.iter().map(|(_, d)| *d).collect();
        let (min, max) = (*held.iter().min().unwrap(), *held.iter().max().unwrap());
        let mean = held.iter().sum::<Duration>() / held.len() as u32;
        eprintln!("latency 20 ± 10 ms, {dir}: held {min:?}..{max:?}, mean {mean:?}");
        // Never less than delay - jitter; more only by the machine's scheduling (2 cores
        // shared with builds: a generous margin).
        assert!(min >= delay - jitter, "{dir}: {min:?}");
        assert!(
            max < delay + jitter + Duration::from_millis(60),
            "{dir}: {max:?}"
        );
        // The jitter acts: the draws spread over most of the 20 ms window.
        assert!(
            max - min >= Duration::from_millis(12),
            "{dir}: {min:?}..{max:?}"
        );
    }
    proxy.heal();
    let t = Instant::now();
    client.write_all(b"fast").unwrap();
    assert_eq!(read_some(&mut upstream).unwrap(), b"fast");
    assert!(t.elapsed() < Duration::from_millis(50), "{:?}", t.elapsed());
}

#[test]
fn bandwidth_limits_the_rate_of_a_stream() {
    let (proxy, server) = proxy();
    let (client, upstream) = pair(&proxy, &server);
    const RATE: u64 = 512 * 1024;
    proxy.bandwidth(RATE);
    let blocks = 8; // 512 KiB: one second at the rate
    let t = Instant::now();
    let sender = thread::spawn(move || {
        let h = send_stream(&client, 9, blocks);
        client.shutdown(Shutdown::Write).unwrap();
        (h, client)
    });
    let got = receive_stream(&upstream, blocks);
    let took = t.elapsed().as_secs_f64();
    let (sent, _client) = sender.join().unwrap();
    assert_eq!(got, sent);
    let rate = (blocks * BLOCK) as f64 / took;
    eprintln!("bandwidth {RATE} B/s: measured {rate:.0} B/s over {took:.2} s");
    assert!(
        rate > RATE as f64 * 0.85 && rate < RATE as f64 * 1.1,
        "measured {rate:.0} B/s for a limit of {RATE}"
    );
}

#[test]
fn cut_after_closes_the_stream_after_exactly_n_bytes() {
    let (proxy, server) = proxy();
    let (mut client, upstream) = pair(&proxy, &server);
    proxy.cut_after(1000);
    let writer = thread::spawn(move || {
        let mut s = Stream::new(5);
        let mut buf = vec![0u8; BLOCK];
        s.fill(&mut buf);
        // The relay closes the server's socket: writes fail sooner or later.
        let mut u = &upstream;
        for _ in 0..64 {
            if u.write_all(&buf).is_err() {
                return true;
            }
        }
        false
    });
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), 1000);
    let mut expect = vec![0u8; BLOCK];
    Stream::new(5).fill(&mut expect);
    assert_eq!(got, expect[..1000]);
    assert!(
        writer.join().unwrap(),
        "the server's writes kept succeeding"
    );
    assert_eq!(proxy.stats().bytes_down, 1000);
    // A new connection gets its own 1000 bytes.
    let (mut client, mut upstream) = pair(&proxy, &server);
    upstream.write_all(&[1u8; 1500]).unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got, vec![1u8; 1000]);
}

#[test]
fn close_direction_downstream_ends_the_clients_stream_while_it_can_still_send() {
    let (proxy, server) = proxy();
    let (mut client, mut upstream) = pair(&proxy, &server);
    upstream.write_all(b"before").unwrap();
    assert_eq!(read_some(&mut client).unwrap(), b"before");
    proxy.close_direction(Direction::Downstream);
    assert_eq!(read_some(&mut client).unwrap(), b"", "the client sees EOF");
    client.write_all(b"still up").unwrap();
    assert_eq!(read_some(&mut upstream).unwrap(), b"still up");
    // What the server sends now is dropped.
    upstream.write_all(b"lost").unwrap();
    assert_eq!(read_some(&mut client).unwrap(), b"");
    proxy.heal();
    let (mut client, mut upstream) = pair(&proxy, &server);
    upstream.write_all(b"new conn").unwrap();
    assert_eq!(read_some(&mut client).unwrap(), b"new conn");
}

#[test]
fn close_direction_upstream_ends_the_servers_stream_on_live_and_new_connections() {
    let (proxy, server) = proxy();
    let (mut client, mut upstream) = pair(&proxy, &server);
    proxy.close_direction(Direction::Upstream);
    assert_eq!(
        read_some(&mut upstream).unwrap(),
        b"",
        "the server sees EOF"
    );
    upstream.write_all(b"still down").unwrap();
    assert_eq!(read_some(&mut client).unwrap(), b"still down");
    let (_c2, mut u2) = pair(&proxy, &server);
    assert_eq!(
        read_some(&mut u2).unwrap(),
        b"",
        "a new connection's server sees EOF"
    );
}

#[test]
fn an_upstream_that_refuses_makes_the_client_see_eof() {
    let gone = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = gone.local_addr().unwrap();
    drop(gone);
    let proxy = Proxy::start(any_port(), addr).unwrap();
    let mut client = TcpStream::connect(proxy.local_addr()).unwrap();
    client.set_read_timeout(Some(IO_LIMIT)).unwrap();
    assert_eq!(read_some(&mut client).unwrap(), b"");
    assert_eq!(proxy.stats().accepted, 1);
    wait_until(IO_LIMIT, "no connection left", || proxy.stats().live == 0);
}

#[test]
fn dropping_the_last_handle_closes_everything() {
    fn is_send_sync_clone<T: Send + Sync + Clone>() {}
    is_send_sync_clone::<ProxyHandle>();
    let (proxy, server) = proxy();
    let addr = proxy.local_addr();
    let (mut client, _upstream) = pair(&proxy, &server);
    let clone = proxy.clone();
    thread::spawn(move || drop(clone)).join().unwrap();
    proxy.stats(); // still alive: a clone remains
    drop(proxy);
    assert_eq!(read_some(&mut client).unwrap(), b"");
    assert_eq!(
        TcpStream::connect(addr).unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );
}

#[test]
fn after_shutdown_control_calls_are_inert() {
    let (proxy, _server) = proxy();
    proxy.shutdown();
    proxy.stop();
    proxy.heal();
    assert!(proxy.start().is_err());
    assert_eq!(proxy.stats().live, 0);
}
