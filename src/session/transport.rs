//! The byte pipe under a session: a non-blocking socket (TCP or Unix) and where it goes.
//!
//! It owns opening a socket to one target of the connection string and reading and writing
//! it; it knows nothing of PostgreSQL and never blocks, apart from the name lookup of a host
//! name (as libpq does, until host lists move lookups to a helper thread). TLS will be a third
//! kind of transport here.

use std::io::{self, Read, Write};

use crate::conninfo::Target;
use crate::error::Error;

/// A connected socket of either family.
#[derive(Debug)]
pub(crate) enum Socket {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl Socket {
    pub(crate) fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Socket::Tcp(s) => s.take_error(),
            Socket::Unix(s) => s.take_error(),
        }
    }

    pub(crate) fn is_connected(&self) -> io::Result<bool> {
        let r = match self {
            Socket::Tcp(s) => s.peer_addr().map(drop),
            Socket::Unix(s) => s.peer_addr().map(drop),
        };
        match r {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) if e.raw_os_error() == Some(115) => Ok(false), // EINPROGRESS
            Err(e) => Err(e),
        }
    }

    pub(crate) fn shutdown(&self) {
        let _ = match self {
            Socket::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            Socket::Unix(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(buf),
            Socket::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl mio::event::Source for Socket {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.register(registry, token, interests),
            Socket::Unix(s) => s.register(registry, token, interests),
        }
    }
    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.reregister(registry, token, interests),
            Socket::Unix(s) => s.reregister(registry, token, interests),
        }
    }
    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.deregister(registry),
            Socket::Unix(s) => s.deregister(registry),
        }
    }
}

/// The address a socket was connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Peer {
    Tcp(std::net::SocketAddr),
    Unix(std::path::PathBuf),
}

/// The TCP settings of libpq's keywords, applied to every TCP socket.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TcpSettings {
    pub(crate) keepalives: bool,
    pub(crate) idle: Option<std::time::Duration>,
    pub(crate) interval: Option<std::time::Duration>,
    pub(crate) count: Option<u32>,
    pub(crate) user_timeout: Option<std::time::Duration>,
}

impl TcpSettings {
    pub(crate) fn from_config(c: &crate::conninfo::Config) -> TcpSettings {
        TcpSettings {
            keepalives: c.get_keepalives(),
            idle: c.get_keepalives_idle(),
            interval: c.get_keepalives_interval(),
            count: c.get_keepalives_count(),
            user_timeout: c.get_tcp_user_timeout(),
        }
    }

    /// SO_KEEPALIVE with its idle time, interval and count, and TCP_USER_TIMEOUT, as libpq
    /// sets them; what is unset keeps the system's value.
    fn apply(&self, s: &mio::net::TcpStream) -> Result<(), Error> {
        let sock = socket2::SockRef::from(s);
        let fail = |what: &str, e: io::Error| Error::io(&format!("could not set {what}"), e);
        if self.keepalives {
            let mut ka = socket2::TcpKeepalive::new();
            if let Some(t) = self.idle {
                ka = ka.with_time(t);
            }
            if let Some(t) = self.interval {
                ka = ka.with_interval(t);
            }
            if let Some(n) = self.count {
                ka = ka.with_retries(n);
            }
            sock.set_tcp_keepalive(&ka)
                .map_err(|e| fail("TCP keepalives", e))?;
        } else {
            sock.set_keepalive(false)
                .map_err(|e| fail("SO_KEEPALIVE", e))?;
        }
        if let Some(t) = self.user_timeout {
            sock.set_tcp_user_timeout(Some(t))
                .map_err(|e| fail("TCP_USER_TIMEOUT", e))?;
        }
        Ok(())
    }
}

/// Opens a non-blocking socket to `target`, which names a numeric address: host names are
/// looked up by the session on a helper thread first (`Session::start_lookup`), so nothing
/// here can block on DNS.
pub(crate) fn open(target: &Target, tcp: &TcpSettings) -> Result<(Socket, Peer), Error> {
    match target {
        Target::Unix { path, .. } => {
            let s = mio::net::UnixStream::connect(path).map_err(|e| {
                Error::io(
                    &format!(
                        "could not connect to the server on socket {}",
                        path.display()
                    ),
                    e,
                )
            })?;
            Ok((Socket::Unix(s), Peer::Unix(path.clone())))
        }
        Target::Tcp { host, addr, port } => {
            let ip = match addr {
                Some(ip) => *ip,
                None => host.parse::<std::net::IpAddr>().map_err(|_| {
                    Error::connection(format!("host name {host:?} was not looked up"))
                })?,
            };
            let peer = std::net::SocketAddr::new(ip, *port);
            let s = mio::net::TcpStream::connect(peer)
                .map_err(|e| Error::io(&format!("could not connect to the server at {peer}"), e))?;
            // Small requests must not wait for Nagle's timer.
            let _ = s.set_nodelay(true);
            tcp.apply(&s)?;
            Ok((Socket::Tcp(s), Peer::Tcp(peer)))
        }
    }
}

/// Reads a TLS connection until the socket is empty: TLS records from the socket, then
/// every byte of plaintext rustls has, so that no record waits in rustls's buffers for a
/// readiness event that will not come (mio is edge-triggered). As for plain text, a socket
/// read that returned less than rustls asked for proves the socket empty (unless `to_end`).
/// Failures end the protocol.
#[cfg(feature = "tls")]
pub(crate) fn read_tls(
    socket: &mut Socket,
    tls: &mut rustls::ClientConnection,
    proto: &mut crate::proto::Protocol,
    plain: &mut [u8],
    to_end: bool,
) {
    let mut drained = false;
    loop {
        // Plaintext first: rustls refuses more records while its plaintext buffer is full.
        loop {
            match tls.reader().read(plain) {
                Ok(0) => {
                    // The server's close_notify.
                    proto.handle_eof(None);
                    return;
                }
                Ok(n) => {
                    proto.handle_input(&plain[..n]);
                    if proto.is_closed() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    proto.handle_eof(None);
                    return;
                }
                Err(e) => {
                    proto.handle_eof(Some(e));
                    return;
                }
            }
        }
        if drained {
            return;
        }
        let mut reader = ShortReads {
            socket: &mut *socket,
            short: false,
        };
        let read = tls.read_tls(&mut reader);
        drained = reader.short && !to_end;
        match read {
            Ok(0) => {
                proto.handle_eof(None);
                return;
            }
            Ok(_) => {
                if let Err(e) = tls.process_new_packets() {
                    // Tell the server why (an alert), then give up.
                    let _ = tls.write_tls(socket);
                    proto.fail(Error::connection(tls_failure(&e)));
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                proto.handle_eof(Some(e));
                return;
            }
        }
    }
}

/// The socket as rustls reads it, noting a read that returned less than asked for.
#[cfg(feature = "tls")]
struct ShortReads<'a> {
    socket: &'a mut Socket,
    short: bool,
}

#[cfg(feature = "tls")]
impl Read for ShortReads<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.socket.read(buf)?;
        self.short = n < buf.len();
        Ok(n)
    }
}

/// What a TLS failure means, in words: the certificate problems libpq users know.
#[cfg(feature = "tls")]
pub(crate) fn tls_failure(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => {
            format!(
                "the server's certificate was refused: {c} (SSL error: certificate verify failed)"
            )
        }
        rustls::Error::AlertReceived(a) => format!("the server ended the TLS handshake: {a:?}"),
        other => format!("TLS error: {other}"),
    }
}

/// Moves the protocol's bytes into rustls and TLS records to the socket. A request's bytes
/// count as sent once rustls accepted them. True when the socket is full.
#[cfg(feature = "tls")]
pub(crate) fn flush_tls(
    socket: &mut Socket,
    tls: &mut rustls::ClientConnection,
    proto: &mut crate::proto::Protocol,
) -> bool {
    loop {
        while proto.wants_write() {
            match tls.writer().write(proto.transmit_buf()) {
                Ok(0) => break, // rustls's buffer is full until records go out
                Ok(n) => proto.advance_transmit(n),
                Err(e) => {
                    proto.handle_eof(Some(e));
                    return false;
                }
            }
        }
        if !tls.wants_write() {
            return false;
        }
        if flush_tls_records(socket, tls, proto) {
            return true;
        }
        if !proto.wants_write() {
            return false;
        }
    }
}

/// Writes the TLS records rustls has made until it has none or the socket would block
/// (`true`). Failures end the protocol.
#[cfg(feature = "tls")]
pub(crate) fn flush_tls_records(
    socket: &mut Socket,
    tls: &mut rustls::ClientConnection,
    proto: &mut crate::proto::Protocol,
) -> bool {
    while tls.wants_write() {
        match tls.write_tls(socket) {
            Ok(0) => {
                proto.handle_eof(None);
                return false;
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                proto.handle_eof(Some(e));
                return false;
            }
        }
    }
    false
}
