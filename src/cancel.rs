//! CancelRequest: asking the server, on a separate socket, to cancel a running query.
//!
//! This module opens a second connection to the same address as the session (over TLS when
//! the session is TLS, with the same settings), writes the CancelRequest with the session's
//! BackendKeyData (the secret key whole: 4 bytes under protocol 3.0, up to 256 under 3.2),
//! and waits for the server to close that socket, which it does once the request was handed
//! to the postmaster. It never touches the session's own socket and never waits past its
//! deadline.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use momoko_loop::{Future, HandlerId, IoLoop, Ready, TimeoutId};

use crate::error::{Error, ErrorKind};
use crate::proto::BackendKey;
use crate::session::transport::{Peer, Socket};

/// Where one cancel stands.
///
/// ```text
///   Connecting ──writable──▶ Sent ──EOF──▶ (done: Ok)
///        └────── error / deadline ─────────▶ (done: Err)
/// ```
enum Step {
    Connecting,
    Sent,
}

struct Task {
    socket: Socket,
    step: Step,
    request: BytesMut,
    handler: Option<HandlerId>,
    timer: Option<TimeoutId>,
    done: Option<Future<Result<(), Error>>>,
}

/// Sends a CancelRequest for `key` to `peer`; the future resolves once the server took it
/// (not once the query stopped: the query's own answer says that).
pub(crate) fn cancel(
    ioloop: &IoLoop,
    peer: &Peer,
    key: &BackendKey,
    timeout: Duration,
) -> Future<Result<(), Error>> {
    let fut = Future::with_loop(ioloop);
    let socket = match peer {
        Peer::Tcp(addr) => mio::net::TcpStream::connect(*addr).map(Socket::Tcp),
        Peer::Unix(path) => mio::net::UnixStream::connect(path).map(Socket::Unix),
    };
    let socket = match socket {
        Ok(s) => s,
        Err(e) => {
            let _ = fut.set_result(Err(Error::io("could not send the cancel request", e)));
            return fut;
        }
    };
    let mut request = BytesMut::new();
    key.cancel_request(&mut request);
    let task = Rc::new(RefCell::new(Task {
        socket,
        step: Step::Connecting,
        request,
        handler: None,
        timer: None,
        done: Some(fut.clone()),
    }));
    let t = task.clone();
    let lp = ioloop.clone();
    let added = {
        let mut guard = task.borrow_mut();
        ioloop.add_handler(
            &mut guard.socket,
            mio::Interest::READABLE | mio::Interest::WRITABLE,
            move |ready| on_ready(&lp, &t, ready),
        )
    };
    match added {
        Ok(id) => task.borrow_mut().handler = Some(id),
        Err(e) => {
            let _ = fut.set_result(Err(Error::io("could not send the cancel request", e)));
            return fut;
        }
    }
    let t = task.clone();
    let lp = ioloop.clone();
    let timer = ioloop.call_later(timeout, move || {
        t.borrow_mut().timer = None;
        finish(
            &lp,
            &t,
            Err(Error::new(
                ErrorKind::Timeout,
                format!("the cancel request got no answer within {timeout:?}"),
            )),
        );
    });
    task.borrow_mut().timer = Some(timer);
    fut
}

fn on_ready(ioloop: &IoLoop, task: &Rc<RefCell<Task>>, ready: Ready) {
    let result = {
        let mut t = task.borrow_mut();
        step(&mut t, ready)
    };
    match result {
        Ok(false) => {}
        Ok(true) => finish(ioloop, task, Ok(())),
        Err(e) => finish(ioloop, task, Err(Error::io("the cancel request failed", e))),
    }
}

/// Advances the exchange; `Ok(true)` once the server closed the socket.
fn step(t: &mut Task, ready: Ready) -> io::Result<bool> {
    if let Step::Connecting = t.step {
        if let Some(e) = t.socket_error()? {
            return Err(e);
        }
        if !(ready.writable || ready.error) {
            return Ok(false);
        }
        while !t.request.is_empty() {
            match t.socket.write(&t.request) {
                Ok(n) => {
                    let _ = t.request.split_to(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        t.step = Step::Sent;
    }
    let mut buf = [0u8; 64];
    loop {
        match t.socket.read(&mut buf) {
            Ok(0) => return Ok(true),
            Ok(_) => {} // the server sends nothing back; ignore anything
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A reset after the request was written still means it was delivered.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(true),
            Err(e) => return Err(e),
        }
    }
}

impl Task {
    fn socket_error(&self) -> io::Result<Option<io::Error>> {
        self.socket.take_error()
    }
}

fn finish(ioloop: &IoLoop, task: &Rc<RefCell<Task>>, result: Result<(), Error>) {
    let (fut, handler, timer) = {
        let mut t = task.borrow_mut();
        (t.done.take(), t.handler.take(), t.timer.take())
    };
    if let Some(id) = handler {
        let mut t = task.borrow_mut();
        ioloop.remove_handler(id, &mut t.socket);
    }
    if let Some(id) = timer {
        ioloop.remove_timeout(id);
    }
    if let Some(f) = fut {
        let _ = f.set_result(result);
    }
}

/// The same CancelRequest, sent from a helper thread with blocking sockets bounded by
/// `timeout` (the embedding driver has no loop to watch a second socket with). Never call it
/// on a loop thread.
pub(crate) fn cancel_blocking(
    peer: &Peer,
    key: &BackendKey,
    timeout: Duration,
    tls: Option<&TlsCancel>,
) -> Result<(), Error> {
    let mut request = BytesMut::new();
    key.cancel_request(&mut request);
    // A blocking socket's read or write timeout shows as WouldBlock (EAGAIN): the bound.
    let failed = |e: io::Error| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::new(
            ErrorKind::Timeout,
            format!("the cancel request got no answer within {timeout:?}"),
        ),
        _ => Error::io("the cancel request failed", e),
    };
    let exchange = |s: &mut dyn ReadWrite| -> io::Result<()> {
        s.write_all(&request)?;
        let mut buf = [0u8; 64];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    };
    match peer {
        Peer::Tcp(addr) => {
            let mut s = std::net::TcpStream::connect_timeout(addr, timeout).map_err(failed)?;
            s.set_read_timeout(Some(timeout)).map_err(failed)?;
            s.set_write_timeout(Some(timeout)).map_err(failed)?;
            #[cfg(feature = "tls")]
            if let Some(tls) = tls {
                // As the session itself: SSLRequest, S, handshake, then the request inside.
                let mut ssl = BytesMut::with_capacity(8);
                postgres_protocol::message::frontend::ssl_request(&mut ssl);
                s.write_all(&ssl).map_err(failed)?;
                let mut answer = [0u8; 1];
                s.read_exact(&mut answer).map_err(failed)?;
                if answer[0] == b'S' {
                    let conn = rustls::ClientConnection::new(tls.config.clone(), tls.name.clone())
                        .map_err(|e| Error::connection(format!("could not start TLS: {e}")))?;
                    let mut stream = rustls::StreamOwned::new(conn, s);
                    return match exchange(&mut stream) {
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(()),
                        r => r.map_err(failed),
                    };
                }
                // N: the server takes the request in plain text on the same socket.
            }
            #[cfg(not(feature = "tls"))]
            let _ = tls;
            exchange(&mut s).map_err(failed)
        }
        Peer::Unix(path) => {
            let mut s = std::os::unix::net::UnixStream::connect(path).map_err(failed)?;
            s.set_read_timeout(Some(timeout)).map_err(failed)?;
            s.set_write_timeout(Some(timeout)).map_err(failed)?;
            exchange(&mut s).map_err(failed)
        }
    }
}

/// The TLS session a cancel request needs: the connection's own configuration and name.
#[derive(Clone)]
pub(crate) struct TlsCancel {
    #[cfg(feature = "tls")]
    pub(crate) config: std::sync::Arc<rustls::ClientConfig>,
    #[cfg(feature = "tls")]
    pub(crate) name: rustls::pki_types::ServerName<'static>,
}

/// A cancel running on a helper thread: its future, and the loop's timer that ends the
/// caller's wait at the bound whatever the thread is doing.
type Pending = (Future<Result<(), Error>>, Option<TimeoutId>);

thread_local! {
    /// Cancels running on helper threads, by number: their futures are not Send.
    static OVER_TLS: RefCell<std::collections::HashMap<u64, Pending>> =
        RefCell::new(std::collections::HashMap::new());
}

/// A cancel over TLS for a loop: sent from a helper thread with blocking sockets (bounded by
/// `timeout`), its answer delivered to the loop through the loop's cross-thread handle.
pub(crate) fn cancel_over_tls(
    ioloop: &IoLoop,
    peer: &Peer,
    key: BackendKey,
    timeout: Duration,
    tls: TlsCancel,
) -> Future<Result<(), Error>> {
    let fut = Future::with_loop(ioloop);
    let id = crate::session::next_id();
    // The blocking sockets bound each read and write by `timeout`, and a handshake makes
    // several: the caller's wait is bounded by `timeout` here, on the loop.
    let timer = ioloop.call_later(timeout, move || {
        let pending = OVER_TLS.with(|m| m.borrow_mut().remove(&id));
        if let Some((f, _)) = pending {
            let _ = f.set_result(Err(Error::new(
                ErrorKind::Timeout,
                format!("the cancel request got no answer within {timeout:?}"),
            )));
        }
    });
    OVER_TLS.with(|m| m.borrow_mut().insert(id, (fut.clone(), Some(timer))));
    let handle = ioloop.handle();
    let peer = peer.clone();
    let spawned = std::thread::Builder::new()
        .name("momoko-cancel".into())
        .spawn(move || {
            let r = cancel_blocking(&peer, &key, timeout, Some(&tls));
            handle.add_callback(move || {
                let pending = OVER_TLS.with(|m| m.borrow_mut().remove(&id));
                if let Some((f, timer)) = pending {
                    if let Some(t) = timer {
                        IoLoop::current().remove_timeout(t);
                    }
                    let _ = f.set_result(r);
                }
            });
        });
    if let Err(e) = spawned {
        OVER_TLS.with(|m| m.borrow_mut().remove(&id));
        ioloop.remove_timeout(timer);
        let _ = fut.set_result(Err(Error::io("could not start the cancel request", e)));
    }
    fut
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}
