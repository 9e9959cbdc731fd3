//! A TLS-terminating relay: the server side of TLS that a test needs and PostgreSQL 15
//! cannot give it (direct TLS with a required ALPN, a server certificate that is expired
//! or names another host).
//!
//! It owns one thread with its own `mio::Poll`, the listener, and every relayed pair
//! (client over TLS, upstream in plain text). Each client goes through
//!
//! ```text
//!   Postgres negotiation:  SslRequest --'S'--> Hello --ClientHello ok--> Relaying --> closed
//!   Direct negotiation:                        Hello --ClientHello ok--> Relaying --> closed
//!                                                \--no ALPN "postgresql"--> alert, closed
//! ```
//!
//! In `Direct` mode it does what PostgreSQL 17 does: a ClientHello that does not offer the
//! ALPN protocol `postgresql` gets a fatal `no_application_protocol` alert, so a client
//! that forgets ALPN fails here as it would against the real server. The upstream sees
//! plain text: the relay is the TLS end point.
//!
//! It is a test tool and must never be put in front of anything real: buffers are not
//! bounded (a test's 1 MB value is the largest thing it is meant to carry), and the key
//! is whatever the test hands it.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{Acceptor, ServerConfig, ServerConnection};

/// The PostgreSQL SSLRequest packet: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
/// A fatal `no_application_protocol` (120) alert in a plain TLS 1.2-framed record, what a
/// server sends before any key is agreed.
const NO_ALPN_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x78];
const ALPN: &[u8] = b"postgresql";

const WAKER: Token = Token(0);
const LISTENER: Token = Token(1);

/// How a client starts TLS with the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiation {
    /// PostgreSQL's SSLRequest first, answered `S`, then the handshake (every server).
    Postgres,
    /// The handshake at once, ALPN `postgresql` required (PostgreSQL 17's
    /// `sslnegotiation=direct`).
    Direct,
}

/// Counters of a [`TlsRelay`], read with [`TlsRelay::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TlsStats {
    /// TCP connections accepted.
    pub accepted: u64,
    /// TLS sessions that completed their handshake and were relayed.
    pub established: u64,
    /// Direct-mode clients refused for not offering ALPN `postgresql`.
    pub refused_alpn: u64,
    /// Handshakes that failed otherwise (the client refused the certificate, garbage).
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    established: AtomicU64,
    refused_alpn: AtomicU64,
    failed: AtomicU64,
}

/// A running TLS-terminating relay; dropping it stops the thread and closes every socket.
#[derive(Debug)]
pub struct TlsRelay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counters")
    }
}

impl TlsRelay {
    /// Listens on `listen` and relays each client, after a TLS handshake in which the relay
    /// presents `cert_chain_pem` (leaf first) with `key_pem`, to `upstream` in plain text.
    /// Returns once the listener is bound.
    pub fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        cert_chain_pem: &[u8],
        key_pem: &[u8],
        negotiation: Negotiation,
    ) -> io::Result<TlsRelay> {
        let certs = CertificateDer::pem_slice_iter(cert_chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("certificate chain: {e}")))?;
        if certs.is_empty() {
            return Err(invalid("certificate chain: no CERTIFICATE section".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| invalid(format!("private key: {e}")))?;
        // The process's crypto provider (ring, from this crate's rustls features, unless the
        // program installed another), as momoko takes it: rustls 0.23.48 deprecated naming
        // ring's provider directly.
        let mut config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| invalid(format!("certificate and key: {e}")))?;
        config.alpn_protocols = vec![ALPN.to_vec()];

        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let mut worker = Worker {
            poll,
            listener,
            upstream,
            config: Arc::new(config),
            negotiation,
            conns: HashMap::new(),
            next_id: 0,
            counters: counters.clone(),
            scratch: vec![0; 64 * 1024],
        };
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("tcproxy tls {addr}"))
            .spawn(move || worker.run(&s))?;
        Ok(TlsRelay {
            addr,
            stop,
            waker,
            counters,
            thread: Some(thread),
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counters so far.
    pub fn stats(&self) -> TlsStats {
        let c = &self.counters;
        TlsStats {
            accepted: c.accepted.load(Ordering::SeqCst),
            established: c.established.load(Ordering::SeqCst),
            refused_alpn: c.refused_alpn.load(Ordering::SeqCst),
            failed: c.failed.load(Ordering::SeqCst),
        }
    }
}

impl Drop for TlsRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

enum Phase {
    /// Waiting for the 8-byte SSLRequest (Postgres negotiation); `got` bytes so far.
    SslRequest { got: Vec<u8> },
    /// Reading the ClientHello.
    Hello(Box<Acceptor>),
    /// Handshake done or under way, upstream connected: bytes flow both ways.
    Relaying {
        tls: Box<ServerConnection>,
        upstream: TcpStream,
        /// Plain text from the client not yet written upstream.
        to_upstream: Vec<u8>,
        counted: bool,
    },
}

struct Pair {
    client: TcpStream,
    phase: Phase,
}

struct Worker {
    poll: Poll,
    listener: TcpListener,
    upstream: SocketAddr,
    config: Arc<ServerConfig>,
    negotiation: Negotiation,
    conns: HashMap<usize, Pair>,
    next_id: usize,
    counters: Arc<Counters>,
    scratch: Vec<u8>,
}

/// Why a pair is finished.
enum End {
    Open,
    Closed,
}

impl Worker {
    fn run(&mut self, stop: &AtomicBool) {
        let mut events = Events::with_capacity(256);
        while !stop.load(Ordering::SeqCst) {
            if let Err(e) = self
                .poll
                .poll(&mut events, Some(Duration::from_millis(500)))
            {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("tcproxy tls: poll failed: {e}");
                return;
            }
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {}
                    LISTENER => self.accept(),
                    Token(t) => self.pump((t - 2) / 2),
                }
            }
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut client, _)) => {
                    self.counters.accepted.fetch_add(1, Ordering::SeqCst);
                    let id = self.next_id;
                    self.next_id += 1;
                    let token = Token(2 + 2 * id);
                    if self
                        .poll
                        .registry()
                        .register(&mut client, token, Interest::READABLE | Interest::WRITABLE)
                        .is_err()
                    {
                        continue;
                    }
                    let phase = match self.negotiation {
                        Negotiation::Postgres => Phase::SslRequest { got: Vec::new() },
                        Negotiation::Direct => Phase::Hello(Box::default()),
                    };
                    self.conns.insert(id, Pair { client, phase });
                    self.pump(id);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::warn!("tcproxy tls: accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn pump(&mut self, id: usize) {
        let Some(mut pair) = self.conns.remove(&id) else {
            return;
        };
        match self.advance(id, &mut pair) {
            Ok(End::Open) => {
                self.conns.insert(id, pair);
            }
            Ok(End::Closed) => self.close(pair),
            Err(e) => {
                log::debug!("tcproxy tls: connection {id} ends: {e}");
                self.close(pair);
            }
        }
    }

    fn close(&mut self, mut pair: Pair) {
        let _ = self.poll.registry().deregister(&mut pair.client);
        if let Phase::Relaying { mut upstream, .. } = pair.phase {
            let _ = self.poll.registry().deregister(&mut upstream);
        }
    }

    /// Moves one pair as far as its sockets allow, phase after phase.
    fn advance(&mut self, id: usize, pair: &mut Pair) -> io::Result<End> {
        loop {
            match &mut pair.phase {
                Phase::SslRequest { got } => {
                    let mut b = [0u8; 8];
                    match pair.client.read(&mut b[..8 - got.len()]) {
                        Ok(0) => return Ok(End::Closed),
                        Ok(n) => got.extend_from_slice(&b[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(End::Open),
                        Err(e) => return Err(e),
                    }
                    if got.len() < 8 {
                        continue;
                    }
                    if got[..] != SSL_REQUEST {
                        // Not a TLS client: refuse as a TLS-only server would.
                        let _ = pair.client.write_all(b"N");
                        return Ok(End::Closed);
                    }
                    pair.client.write_all(b"S")?;
                    pair.phase = Phase::Hello(Box::default());
                }
                Phase::Hello(acceptor) => {
                    match acceptor.read_tls(&mut pair.client) {
                        Ok(0) => return Ok(End::Closed),
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(End::Open),
                        Err(e) => return Err(e),
                    }
                    let accepted = match acceptor.accept() {
                        Ok(None) => continue,
                        Ok(Some(a)) => a,
                        Err((e, mut alert)) => {
                            self.counters.failed.fetch_add(1, Ordering::SeqCst);
                            let _ = alert.write_all(&mut pair.client);
                            return Err(io::Error::other(e));
                        }
                    };
                    let offers_pg = accepted
                        .client_hello()
                        .alpn()
                        .is_some_and(|mut ps| ps.any(|p| p == ALPN));
                    if self.negotiation == Negotiation::Direct && !offers_pg {
                        self.counters.refused_alpn.fetch_add(1, Ordering::SeqCst);
                        let _ = pair.client.write_all(&NO_ALPN_ALERT);
                        return Ok(End::Closed);
                    }
                    let tls = match accepted.into_connection(self.config.clone()) {
                        Ok(c) => c,
                        Err((e, mut alert)) => {
                            self.counters.failed.fetch_add(1, Ordering::SeqCst);
                            let _ = alert.write_all(&mut pair.client);
                            return Err(io::Error::other(e));
                        }
                    };
                    let std = std::net::TcpStream::connect_timeout(
                        &self.upstream,
                        Duration::from_secs(5),
                    )?;
                    std.set_nonblocking(true)?;
                    let _ = std.set_nodelay(true);
                    let mut upstream = TcpStream::from_std(std);
                    self.poll.registry().register(
                        &mut upstream,
                        Token(3 + 2 * id),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    pair.phase = Phase::Relaying {
                        tls: Box::new(tls),
                        upstream,
                        to_upstream: Vec::new(),
                        counted: false,
                    };
                }
                Phase::Relaying {
                    tls,
                    upstream,
                    to_upstream,
                    counted,
                } => {
                    let end = relay(
                        tls,
                        &mut pair.client,
                        upstream,
                        to_upstream,
                        &mut self.scratch,
                    );
                    if !*counted && !tls.is_handshaking() {
                        *counted = true;
                        self.counters.established.fetch_add(1, Ordering::SeqCst);
                    }
                    if end.is_err() && tls.is_handshaking() {
                        self.counters.failed.fetch_add(1, Ordering::SeqCst);
                    }
                    return end;
                }
            }
        }
    }
}

/// Both directions of an established pair, each until its socket would block. Edge
/// triggered: nothing is left readable without a read that saw WouldBlock.
fn relay(
    tls: &mut ServerConnection,
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    to_upstream: &mut Vec<u8>,
    buf: &mut [u8],
) -> io::Result<End> {
    let mut client_done = false;
    let mut upstream_done = false;
    loop {
        match tls.read_tls(client) {
            Ok(0) => {
                client_done = true;
                break;
            }
            Ok(_) => {
                if let Err(e) = tls.process_new_packets() {
                    // Send the alert rustls queued (a bad record, a refused certificate).
                    let _ = tls.write_tls(client);
                    return Err(io::Error::other(e));
                }
                loop {
                    match tls.reader().read(buf) {
                        Ok(0) => {
                            client_done = true;
                            break;
                        }
                        Ok(n) => to_upstream.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    if !tls.is_handshaking() {
        loop {
            match upstream.read(buf) {
                Ok(0) => {
                    upstream_done = true;
                    break;
                }
                Ok(n) => tls.writer().write_all(&buf[..n])?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
    }
    while !to_upstream.is_empty() {
        match upstream.write(to_upstream) {
            Ok(n) => {
                to_upstream.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    if upstream_done {
        tls.send_close_notify();
    }
    while tls.wants_write() {
        match tls.write_tls(client) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    if client_done || upstream_done {
        return Ok(End::Closed);
    }
    Ok(End::Open)
}
