//! The byte pipe under a session: one struct, [`Transport`], owns the socket (TCP or Unix),
//! where it goes, and the TLS session over it, as rustls's `tlsclient-mio` example holds
//! both together.
//!
//! It owns opening a socket to one target of the connection string (a numeric address: host
//! names are looked up by the connect walk on a helper thread, so nothing here waits on
//! DNS), the SSLRequest and its answer, the TLS handshake, and reading and writing the
//! protocol's bytes through TLS or in plain text. It knows nothing of PostgreSQL's messages
//! (the protocol core does) and never blocks. Every `cfg(feature = "tls")` of the session is
//! here and in `tls.rs`; without the feature, asking for TLS is an error that says so.

use std::cell::RefCell;
use std::io::{self, Read, Write};

use crate::conninfo::{Config, Target};
use crate::error::Error;
use crate::proto::Protocol;

#[cfg(feature = "tls")]
pub(crate) mod tls;

/// The TLS client configuration shared by the connections of one configuration (see
/// `tls::ConfigCache`); nothing without TLS.
#[cfg(feature = "tls")]
pub(crate) use tls::ConfigCache as TlsCache;
#[cfg(not(feature = "tls"))]
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsCache;

/// Whether TLS is compiled in (feature "tls"): without it, sslmode's retries have nothing to
/// retry with.
pub(crate) const TLS_COMPILED: bool = cfg!(feature = "tls");

thread_local! {
    /// One read buffer per thread: connections read into it in turn, so an idle connection
    /// holds no read buffer of its own beyond what the protocol core keeps.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; 256 * 1024]);
}

/// What one read takes while a streamed query's rows arrive: the rows it yields are
/// delivered (and dropped) before the next is read, so a stream's memory stays flat
/// however fast the server sends.
const STREAM_READ_BUDGET: usize = 256 * 1024;

/// How the SSLRequest was answered, once it was.
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Negotiated {
    /// `S`: the TLS handshake has started.
    Tls,
    /// `N` where the sslmode allows plain text: the protocol starts in the clear.
    Plain,
}

/// The socket and the TLS session over it, for one connect attempt and the connection it
/// establishes. See the module documentation.
#[derive(Default)]
pub(crate) struct Transport {
    socket: Option<Socket>,
    /// Where the socket is connected: the CancelRequest goes to the same place.
    peer: Option<Peer>,
    /// Changes whenever the socket is replaced or dropped: the driver re-registers then.
    generation: u64,
    /// The socket refused a write (its buffer is full) and no writable event came since.
    write_blocked: bool,
    /// The TLS session over `socket`, once the server said `S`.
    #[cfg(feature = "tls")]
    tls: Option<Box<rustls::ClientConnection>>,
    /// How the current attempt uses TLS (kept once TLS is up: cancel requests use it too).
    #[cfg(feature = "tls")]
    plan: Option<tls::Plan>,
    /// The last read stopped at [`STREAM_READ_BUDGET`] with bytes left to read: no
    /// readiness event will say so (edge-triggered), the delivery reads on (`read_on`).
    read_more: bool,
}

impl Transport {
    /// The socket to register for readable and writable events, while there is one.
    pub(crate) fn source(&mut self) -> Option<&mut Socket> {
        self.socket.as_mut()
    }

    /// See the field.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Where the socket is connected, for a CancelRequest.
    pub(crate) fn peer(&self) -> Option<&Peer> {
        self.peer.as_ref()
    }

    /// Whether the socket said it is full and no writable event came since.
    pub(crate) fn write_blocked(&self) -> bool {
        self.write_blocked
    }

    /// A writable event: the socket takes bytes again.
    pub(crate) fn set_writable(&mut self) {
        self.write_blocked = false;
    }

    /// Drops the socket, the TLS session and the plan of an attempt.
    pub(crate) fn reset(&mut self) {
        self.socket = None;
        #[cfg(feature = "tls")]
        {
            self.tls = None;
            self.plan = None;
        }
        self.generation += 1;
    }

    /// Shuts the socket down. The TLS session stays (until [`Transport::reset`] or
    /// [`Transport::shut_down`]): whether the attempt that just failed ran over TLS decides
    /// sslmode=prefer's retry.
    pub(crate) fn close_socket(&mut self) {
        if let Some(s) = self.socket.take() {
            s.shutdown();
        }
        self.generation += 1;
    }

    /// Shuts the socket down and drops the TLS session (the plan stays, as what the last
    /// attempt was).
    pub(crate) fn shut_down(&mut self) {
        self.close_socket();
        #[cfg(feature = "tls")]
        {
            self.tls = None;
        }
    }

    /// Decides how an attempt at `target` uses TLS (Unix sockets ignore sslmode, as libpq).
    /// `second_try`: sslmode's retry of the same target (see `tls::plan`).
    pub(crate) fn plan(
        &mut self,
        target: &Target,
        config: Option<&Config>,
        second_try: bool,
        cache: &TlsCache,
    ) -> Result<(), Error> {
        #[cfg(feature = "tls")]
        {
            self.plan = Some(match (target, config) {
                (Target::Tcp { host, .. }, Some(config)) => {
                    tls::plan(config, host, second_try, cache)?
                }
                _ => tls::Plan::Plain,
            });
        }
        let _ = (target, config, second_try, cache);
        Ok(())
    }

    /// Opens a socket to `target` (a numeric address), with libpq's TCP settings.
    pub(crate) fn open(&mut self, target: &Target, config: Option<&Config>) -> Result<(), Error> {
        let tcp = config.map(TcpSettings::from_config).unwrap_or_default();
        let (socket, peer) = open(target, &tcp)?;
        self.peer = Some(peer);
        self.socket = Some(socket);
        self.write_blocked = false;
        Ok(())
    }

    /// Whether the socket's non-blocking connect finished: `None` without a socket,
    /// `Some(Ok(false))` while it is still under way.
    pub(crate) fn connected(&self) -> Option<io::Result<bool>> {
        let socket = self.socket.as_ref()?;
        Some(match socket.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => socket.is_connected(),
        })
    }

    /// Whether the current attempt starts with an SSLRequest (or direct TLS).
    pub(crate) fn wants_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        if matches!(self.plan, Some(tls::Plan::Tls { .. })) {
            return true;
        }
        false
    }

    /// Whether the current attempt starts TLS at once (sslnegotiation=direct).
    pub(crate) fn wants_direct_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        if matches!(self.plan, Some(tls::Plan::Tls { direct: true, .. })) {
            return true;
        }
        false
    }

    /// Whether a TLS session exists (handshaking or up): the attempt ran over TLS.
    pub(crate) fn has_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return true;
        }
        false
    }

    /// Whether TLS is up, its handshake done.
    pub(crate) fn tls_up(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Some(t) = &self.tls {
            return !t.is_handshaking();
        }
        false
    }

    /// libpq's `PQsslAttribute` of the TLS session, while it is up.
    /// Whether the TLS session in use was resumed (no certificate exchange, no key exchange
    /// of its own); `None` without TLS or before its handshake finished.
    pub(crate) fn tls_resumed(&self) -> Option<bool> {
        #[cfg(feature = "tls")]
        if let (true, Some(t)) = (self.tls_up(), &self.tls) {
            return t
                .handshake_kind()
                .map(|k| k == rustls::HandshakeKind::Resumed);
        }
        None
    }

    pub(crate) fn ssl_attribute(&self, name: &str) -> Option<String> {
        #[cfg(feature = "tls")]
        if let (true, Some(t)) = (self.tls_up(), &self.tls) {
            return tls::attribute(t, name);
        }
        let _ = name;
        None
    }

    /// What a cancel request needs to go over TLS, when this attempt planned TLS.
    pub(crate) fn cancel_tls(&self) -> Option<crate::cancel::TlsCancel> {
        #[cfg(feature = "tls")]
        if let Some(tls::Plan::Tls { config, name, .. }) = &self.plan {
            return Some(crate::cancel::TlsCancel {
                config: config.clone(),
                name: name.clone(),
            });
        }
        None
    }

    /// Starts the TLS handshake of this attempt's plan.
    #[cfg(feature = "tls")]
    pub(crate) fn start_tls(&mut self) -> Result<(), Error> {
        let Some(tls::Plan::Tls {
            config, name, mode, ..
        }) = &self.plan
        else {
            return Err(Error::connection("no TLS plan for this attempt"));
        };
        let conn = rustls::ClientConnection::new(config.clone(), name.clone())
            .map_err(|e| Error::connection(format!("could not start TLS: {e}")))?;
        self.tls = Some(Box::new(conn));
        log::debug!("TLS handshake (sslmode {})", mode.as_str());
        Ok(())
    }

    #[cfg(not(feature = "tls"))]
    pub(crate) fn start_tls(&mut self) -> Result<(), Error> {
        Err(not_compiled())
    }

    /// Writes the SSLRequest: eight bytes on a fresh socket, which one write takes whole.
    pub(crate) fn send_ssl_request(&mut self) -> Result<(), Error> {
        let socket = self
            .socket
            .as_mut()
            .ok_or_else(|| Error::connection("no socket"))?;
        let mut req = bytes::BytesMut::with_capacity(8);
        postgres_protocol::message::frontend::ssl_request(&mut req);
        match socket.write(&req) {
            Ok(8) => Ok(()),
            Ok(_) => Err(Error::connection(
                "could not send the SSL negotiation packet whole",
            )),
            Err(e) => Err(Error::io("could not send SSL negotiation packet", e)),
        }
    }

    /// Reads the server's answer to the SSLRequest and starts TLS (`S`) or plain text (`N`,
    /// when the sslmode allows it). `Ok(None)`: nothing yet.
    #[cfg(feature = "tls")]
    pub(crate) fn read_ssl_answer(&mut self) -> Result<Option<Negotiated>, Error> {
        let socket = self
            .socket
            .as_mut()
            .ok_or_else(|| Error::connection("no socket"))?;
        let (fallback, mode) = match &self.plan {
            Some(tls::Plan::Tls { fallback, mode, .. }) => (*fallback, *mode),
            _ => return Err(Error::connection("no TLS plan for this attempt")),
        };
        match tls::read_ssl_answer(socket, fallback, mode)? {
            None => Ok(None),
            Some(tls::SslAnswer::Tls) => {
                self.start_tls()?;
                Ok(Some(Negotiated::Tls))
            }
            Some(tls::SslAnswer::Plain) => {
                self.plan = None;
                Ok(Some(Negotiated::Plain))
            }
        }
    }

    #[cfg(not(feature = "tls"))]
    pub(crate) fn read_ssl_answer(&mut self) -> Result<Option<Negotiated>, Error> {
        Err(not_compiled())
    }

    /// Runs the TLS handshake as far as the socket allows. `Ok(None)`: not done yet;
    /// `Ok(Some(cert))`: complete, with the server's leaf certificate (DER) when it sent one,
    /// for SCRAM-SHA-256-PLUS's channel binding.
    #[cfg(feature = "tls")]
    pub(crate) fn drive_handshake(&mut self) -> Result<Option<Option<Vec<u8>>>, Error> {
        let (Some(socket), Some(conn)) = (self.socket.as_mut(), self.tls.as_mut()) else {
            return Err(Error::connection("no TLS session"));
        };
        let direct = matches!(self.plan, Some(tls::Plan::Tls { direct: true, .. }));
        match tls::drive_handshake(socket, conn, direct)? {
            tls::Handshake::Blocked { on_write } => {
                self.write_blocked |= on_write;
                Ok(None)
            }
            tls::Handshake::Done { server_cert } => Ok(Some(server_cert)),
        }
    }

    #[cfg(not(feature = "tls"))]
    pub(crate) fn drive_handshake(&mut self) -> Result<Option<Option<Vec<u8>>>, Error> {
        Err(not_compiled())
    }

    /// Whether there are bytes to write now: some are queued (in rustls or in `proto`) and
    /// the socket did not say it is full (then the next writable event flushes them).
    pub(crate) fn wants_write(&self, proto: Option<&Protocol>) -> bool {
        if self.write_blocked {
            return false;
        }
        #[cfg(feature = "tls")]
        if self.tls.as_ref().is_some_and(|t| t.wants_write()) {
            return true;
        }
        proto.is_some_and(|p| p.wants_write() && !p.holds_for_batch())
    }

    /// Reads what the socket has into `proto`. The loop is edge-triggered (mio), so every
    /// byte that is there must be taken now; a read that fills less than the buffer proves
    /// the stream socket empty for now, and the EAGAIN read that would confirm it is skipped
    /// (the next byte to arrive raises a new event). With `to_end` (the peer closed, or an
    /// error) it reads on to the end of the stream, which no further event would announce.
    pub(crate) fn read(&mut self, proto: &mut Protocol, to_end: bool) {
        self.read_more = false;
        let Some(socket) = self.socket.as_mut() else {
            return;
        };
        self.read_more = SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            #[cfg(feature = "tls")]
            if let Some(tls) = self.tls.as_mut() {
                return read_tls(socket, tls, proto, &mut scratch, to_end);
            }
            let mut taken = 0;
            loop {
                match socket.read(&mut scratch) {
                    Ok(0) => {
                        proto.handle_eof(None);
                        break;
                    }
                    Ok(n) => {
                        proto.handle_input(&scratch[..n]);
                        if proto.is_closed() || (n < scratch.len() && !to_end) {
                            break;
                        }
                        taken += n;
                        if taken >= STREAM_READ_BUDGET && !to_end && proto.streaming() {
                            return true;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        proto.handle_eof(Some(e));
                        break;
                    }
                }
            }
            false
        });
    }

    /// See the field; cleared by the next read.
    pub(crate) fn read_more(&self) -> bool {
        self.read_more
    }

    /// Writes what `proto` has to send, until the socket would block.
    pub(crate) fn flush(&mut self, proto: &mut Protocol) {
        let Some(socket) = self.socket.as_mut() else {
            return;
        };
        if proto.holds_for_batch() {
            #[cfg(feature = "tls")]
            if let Some(tls) = self.tls.as_mut() {
                // Records rustls already made still go out.
                if tls.wants_write() && flush_tls_records(socket, tls, proto) {
                    self.write_blocked = true;
                }
            }
            return;
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_mut() {
            if flush_tls(socket, tls, proto) {
                self.write_blocked = true;
            }
            return;
        }
        while proto.wants_write() {
            match socket.write(proto.transmit_buf()) {
                Ok(0) => {
                    proto.handle_eof(None);
                    break;
                }
                Ok(n) => proto.advance_transmit(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Only a writable event can help now: trying again sooner would spin.
                    self.write_blocked = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    proto.handle_eof(Some(e));
                    break;
                }
            }
        }
    }
}

#[cfg(not(feature = "tls"))]
fn not_compiled() -> Error {
    Error::connection("TLS support is not compiled in (feature \"tls\")")
}

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
/// looked up by the connect walk on a helper thread first, so nothing here can block on DNS.
fn open(target: &Target, tcp: &TcpSettings) -> Result<(Socket, Peer), Error> {
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
/// Failures end the protocol. True when it stopped at [`STREAM_READ_BUDGET`].
#[cfg(feature = "tls")]
fn read_tls(
    socket: &mut Socket,
    tls: &mut rustls::ClientConnection,
    proto: &mut Protocol,
    plain: &mut [u8],
    to_end: bool,
) -> bool {
    let mut drained = false;
    let mut taken = 0;
    loop {
        // Plaintext first: rustls refuses more records while its plaintext buffer is full.
        loop {
            match tls.reader().read(plain) {
                Ok(0) => {
                    // The server's close_notify.
                    proto.handle_eof(None);
                    return false;
                }
                Ok(n) => {
                    proto.handle_input(&plain[..n]);
                    if proto.is_closed() {
                        return false;
                    }
                    taken += n;
                    if taken >= STREAM_READ_BUDGET && !to_end && proto.streaming() {
                        return true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    proto.handle_eof(None);
                    return false;
                }
                Err(e) => {
                    proto.handle_eof(Some(e));
                    return false;
                }
            }
        }
        if drained {
            return false;
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
                return false;
            }
            Ok(_) => {
                if let Err(e) = tls.process_new_packets() {
                    // Tell the server why (an alert), then give up.
                    let _ = tls.write_tls(socket);
                    proto.fail(Error::connection(tls_failure(&e)));
                    return false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                proto.handle_eof(Some(e));
                return false;
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
fn flush_tls(
    socket: &mut Socket,
    tls: &mut rustls::ClientConnection,
    proto: &mut Protocol,
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
fn flush_tls_records(
    socket: &mut Socket,
    tls: &mut rustls::ClientConnection,
    proto: &mut Protocol,
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
