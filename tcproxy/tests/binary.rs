//! The `tcproxy` command as Momoko's tests ran it: policy on the command line, relaying
//! until SIGTERM or SIGINT, then every socket closed and exit status 0.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tcproxy did not exit within 5 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The next connection to `listener`, failing the test after `limit`.
fn accept_within(listener: &TcpListener, limit: Duration) -> (TcpStream, std::net::SocketAddr) {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + limit;
    loop {
        match listener.accept() {
            Ok((s, a)) => {
                s.set_nonblocking(false).unwrap();
                return (s, a);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("no connection from tcproxy within {limit:?}: {e}"),
        }
    }
}

fn relays_then_exits_cleanly_on(sig: i32) {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let up = server.local_addr().unwrap().port();
    // Port 0: tcproxy takes a port of the kernel's and logs it. A port picked here and
    // closed could be handed to a concurrent test's listener before tcproxy binds it (the
    // client then reaches that listener, and tcproxy never sees it).
    let mut child = Command::new(env!("CARGO_BIN_EXE_tcproxy"))
        .arg("-v")
        .arg(format!("localhost:0 -> 127.0.0.1:{up}"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    let port = loop {
        let mut line = String::new();
        let n = stderr.read_line(&mut line).unwrap();
        assert!(n > 0, "tcproxy ended before it listened: {log}");
        log.push_str(&line);
        if let Some(rest) = line.trim().strip_prefix("INFO relaying 127.0.0.1:") {
            let port = rest.split(' ').next().unwrap_or_default();
            break port.parse::<u16>().unwrap();
        }
    };
    let mut client = None;
    wait_until(Duration::from_secs(5), "tcproxy accepts", || {
        // A connect to a port nobody listens on can land on itself (TCP simultaneous
        // open, when the kernel picks that very port as the source): not tcproxy's.
        client = TcpStream::connect(("127.0.0.1", port))
            .ok()
            .filter(|s| s.local_addr().ok() != s.peer_addr().ok());
        client.is_some()
    });
    let mut client = client.unwrap();
    client.set_read_timeout(Some(IO_LIMIT)).unwrap();
    let (mut upstream, _) = accept_within(&server, IO_LIMIT);
    upstream.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");

    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { kill(child.id() as i32, sig) }, 0);
    let status = wait_exit(&mut child);
    assert!(status.success(), "{status:?}");
    assert_eq!(
        client.read(&mut buf).unwrap(),
        0,
        "the relayed connection is closed"
    );
    let err = TcpStream::connect(("127.0.0.1", port)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    stderr.read_to_string(&mut log).unwrap();
    assert!(
        log.contains(&format!("relaying 127.0.0.1:{port} -> 127.0.0.1:{up}")),
        "{log}"
    );
    assert!(log.contains("1 connection(s) accepted"), "{log}");
}

#[test]
fn sigterm_closes_every_socket_and_exits_zero() {
    relays_then_exits_cleanly_on(15);
}

#[test]
fn sigint_closes_every_socket_and_exits_zero() {
    relays_then_exits_cleanly_on(2);
}

#[test]
fn a_bad_policy_is_refused_with_status_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_tcproxy"))
        .arg("15432")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "tcproxy: bad proxy policy: \"15432\" has no \"->\""
    );
}
