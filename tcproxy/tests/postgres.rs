//! PostgreSQL through the relay: psql works through it, stopping the relay makes the next
//! query of a live session fail and new sessions fail, starting it again makes a new
//! session work. The server is momoko-testpg's throwaway one (or `MOMOKO_TEST_DSN`).

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};

use common::*;
use momoko_testpg::{ServerInfo, TestServer};
use tcproxy::{Proxy, ProxyHandle};

fn relay_to(info: &ServerInfo) -> ProxyHandle {
    let upstream: SocketAddr = (info.host.as_str(), info.port)
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap();
    Proxy::start(any_port(), upstream).unwrap()
}

/// `dsn` with its host and port pointing at `addr`.
fn via(dsn: &str, addr: SocketAddr) -> String {
    let mut words: Vec<String> = dsn
        .split_whitespace()
        .filter(|w| {
            !["host=", "hostaddr=", "port="]
                .iter()
                .any(|k| w.starts_with(k))
        })
        .map(str::to_owned)
        .collect();
    words.push(format!("host={} port={}", addr.ip(), addr.port()));
    words.join(" ")
}

fn dsn_value<'a>(dsn: &'a str, key: &str) -> Option<&'a str> {
    dsn.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Just enough of the protocol for one trust-login session over a plain socket, so that a
/// live session can be watched across a relay stop.
struct Session(TcpStream);

impl Session {
    fn connect(addr: SocketAddr, user: &str, dbname: &str) -> io::Result<Session> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(IO_LIMIT))?;
        let mut body = 196608u32.to_be_bytes().to_vec();
        for (k, v) in [("user", user), ("database", dbname)] {
            body.extend_from_slice(format!("{k}\0{v}\0").as_bytes());
        }
        body.push(0);
        let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        msg.extend_from_slice(&body);
        let mut session = Session(s);
        session.0.write_all(&msg)?;
        session.until_ready()?;
        Ok(session)
    }

    /// Reads messages up to ReadyForQuery; returns the first column of the DataRows.
    fn until_ready(&mut self) -> io::Result<Vec<String>> {
        let mut rows = Vec::new();
        loop {
            let mut head = [0u8; 5];
            self.0.read_exact(&mut head)?;
            let len = u32::from_be_bytes(head[1..].try_into().unwrap()) as usize - 4;
            let mut body = vec![0u8; len];
            self.0.read_exact(&mut body)?;
            match head[0] {
                b'R' => assert_eq!(&body[..4], &[0, 0, 0, 0], "trust login expected"),
                b'E' => {
                    return Err(io::Error::other(
                        String::from_utf8_lossy(&body).into_owned(),
                    ))
                }
                b'D' => {
                    let n = i32::from_be_bytes(body[2..6].try_into().unwrap()) as usize;
                    rows.push(String::from_utf8_lossy(&body[6..6 + n]).into_owned());
                }
                b'Z' => return Ok(rows),
                _ => {}
            }
        }
    }

    fn query(&mut self, sql: &str) -> io::Result<Vec<String>> {
        let mut msg = vec![b'Q'];
        msg.extend_from_slice(&((sql.len() + 5) as u32).to_be_bytes());
        msg.extend_from_slice(sql.as_bytes());
        msg.push(0);
        self.0.write_all(&msg)?;
        self.until_ready()
    }
}

#[test]
fn psql_works_through_the_relay_fails_when_stopped_and_works_after_start() {
    let info = TestServer::shared();
    let proxy = relay_to(info);
    let dsn = via(&info.dsn, proxy.local_addr());
    let user = dsn_value(&info.dsn, "user").unwrap_or(momoko_testpg::USER);
    let psql = |sql: &str| momoko_testpg::psql(&dsn, sql, &[]);

    assert_eq!(psql("SELECT 40 + 2").unwrap(), "42");
    let mut live = Session::connect(proxy.local_addr(), user, &info.dbname).unwrap();
    assert_eq!(live.query("SELECT 7").unwrap(), ["7"]);

    proxy.stop();
    // The live session's next query fails: its socket was closed under it.
    let err = live.query("SELECT 8").unwrap_err();
    assert!(
        matches!(
            err.kind(),
            io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
        ),
        "{err:?}"
    );
    // A new session is refused.
    let err = psql("SELECT 1").unwrap_err().to_string();
    assert!(err.contains("Connection refused"), "{err}");

    proxy.start().unwrap();
    assert_eq!(psql("SELECT 'back'").unwrap(), "back");
    let mut again = Session::connect(proxy.local_addr(), user, &info.dbname).unwrap();
    assert_eq!(again.query("SELECT 9").unwrap(), ["9"]);
    // psql, session, psql, session: the refused connect never reached the relay. The last
    // psql's connection ends once the server closed its side too, a moment after psql exits.
    wait_until(IO_LIMIT, "only the live session left", || {
        proxy.stats().live == 1
    });
    assert_eq!(proxy.stats().accepted, 4);
}
