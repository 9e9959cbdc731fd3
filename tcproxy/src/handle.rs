//! The in-process relay's thread and its handle.
//!
//! It owns the relay thread's life: [`Proxy::start`] spawns it with its own `IoLoop`, and
//! the last [`ProxyHandle`] to go (or [`ProxyHandle::shutdown`]) stops and joins it. Every
//! handle call is a round trip: the command runs on the relay thread in a loop callback and
//! the caller waits for its reply, so when a call returns its effect is in force on the
//! sockets (tests need no sleeps). It must never touch the relay's state from the caller's
//! thread: that state is `Rc` and lives in the relay thread's thread-local.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use momoko_loop::{IoLoop, LoopHandle};

use crate::relay::{Change, Counters, Relay};

thread_local! {
    /// The relay of this thread: each relay has a thread of its own.
    static RELAY: RefCell<Option<Rc<Relay>>> = const { RefCell::new(None) };
}

/// One direction of a relayed connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server (toxiproxy's "upstream").
    Upstream = 0,
    /// Server to client (toxiproxy's "downstream").
    Downstream = 1,
}

/// A snapshot of the relay's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Connections accepted since the relay started.
    pub accepted: u64,
    /// Relayed connections open now.
    pub live: u64,
    /// Bytes written to the upstream (client to server).
    pub bytes_up: u64,
    /// Bytes written to clients (server to client).
    pub bytes_down: u64,
}

/// Starts relays; see [`Proxy::start`].
#[derive(Debug)]
pub struct Proxy;

impl Proxy {
    /// Listens on `listen` (port 0 picks a free port, kept across `stop`/`start`) and relays
    /// every accepted connection to `upstream`, on a thread of its own. Returns once the
    /// listener is bound: connects succeed from then on.
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let proxy = tcproxy::Proxy::start(
    ///     "127.0.0.1:0".parse().unwrap(),
    ///     upstream.local_addr().unwrap(),
    /// )
    /// .unwrap();
    /// let mut client = std::net::TcpStream::connect(proxy.local_addr()).unwrap();
    /// let (mut server, _) = upstream.accept().unwrap();
    /// client.write_all(b"ping").unwrap();
    /// let mut buf = [0; 4];
    /// server.read_exact(&mut buf).unwrap();
    /// assert_eq!(&buf, b"ping");
    /// ```
    pub fn start(listen: SocketAddr, upstream: SocketAddr) -> io::Result<ProxyHandle> {
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::sync_channel(1);
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name(format!("tcproxy {listen}"))
            .spawn(move || run(listen, upstream, c, tx))?;
        match rx.recv() {
            Ok(Ok((handle, addr))) => Ok(ProxyHandle(Arc::new(Shared {
                handle,
                addr,
                upstream,
                counters,
                thread: Mutex::new(Some(thread)),
            }))),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(io::Error::other(
                "tcproxy: the relay thread died while starting",
            )),
        }
    }
}

type Started = io::Result<(LoopHandle, SocketAddr)>;

fn run(
    listen: SocketAddr,
    upstream: SocketAddr,
    counters: Arc<Counters>,
    started: mpsc::SyncSender<Started>,
) {
    let ioloop = match IoLoop::try_new() {
        Ok(l) => l,
        Err(e) => {
            let _ = started.send(Err(e));
            return;
        }
    };
    let relay = match Relay::new(&ioloop, listen, upstream, counters) {
        Ok(r) => r,
        Err(e) => {
            let _ = started.send(Err(e));
            return;
        }
    };
    let addr = relay.local_addr();
    RELAY.with(|r| *r.borrow_mut() = Some(relay));
    let _ = started.send(Ok((ioloop.handle(), addr)));
    ioloop.start();
    // Close every socket before the thread ends, so a joined shutdown has closed them all.
    if let Some(relay) = RELAY.with(|r| r.borrow_mut().take()) {
        relay.stop();
    }
    drop(ioloop);
}

#[derive(Debug)]
struct Shared {
    handle: LoopHandle,
    addr: SocketAddr,
    upstream: SocketAddr,
    counters: Arc<Counters>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Shared {
    fn shutdown(&self) {
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            self.handle.stop();
            if thread.join().is_err() {
                log::error!("tcproxy: the relay thread panicked");
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Controls a relay started with [`Proxy::start`]. `Send + Sync + Clone`; the relay shuts
/// down when the last clone is dropped.
///
/// Every method returns after the relay thread applied it. After [`shutdown`](Self::shutdown)
/// the control methods do nothing (and `start` fails); should the relay thread have
/// panicked, they panic.
#[derive(Debug, Clone)]
pub struct ProxyHandle(Arc<Shared>);

impl ProxyHandle {
    /// Runs `f` on the relay thread and waits for its result.
    fn call<R: Send + 'static>(&self, f: impl FnOnce(&Relay) -> R + Send + 'static) -> Option<R> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.0.handle.add_callback(move || {
            if let Some(r) = RELAY.with(|r| r.borrow().clone()) {
                let _ = tx.send(f(&r));
            }
        });
        match rx.recv() {
            Ok(r) => Some(r),
            Err(_) => {
                let gone = self
                    .0
                    .thread
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                    .is_some_and(|t| t.is_finished());
                assert!(!gone, "tcproxy: the relay thread died (it panicked)");
                None
            }
        }
    }

    fn faults(&self, f: impl FnOnce(&mut crate::relay::Faults) -> Change + Send + 'static) {
        self.call(move |r| r.set_faults(f));
    }

    /// The address the relay listens on (the port resolved when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.0.addr
    }

    /// Where connections are relayed to.
    pub fn upstream(&self) -> SocketAddr {
        self.0.upstream
    }

    /// Closes the listener and every relayed socket: the server looks down, and connects
    /// are refused. Faults stay as they are.
    pub fn stop(&self) {
        self.call(|r| r.stop());
    }

    /// Listens again on the same address; does nothing while listening. Stop then start is
    /// Momoko's "server restart": live connections dropped, new ones work.
    pub fn start(&self) -> io::Result<()> {
        self.call(|r| r.listen())
            .unwrap_or_else(|| Err(io::Error::other("tcproxy: the relay was shut down")))
    }

    /// Resets every live connection: both of its sockets are closed with SO_LINGER 0, so
    /// each peer gets an RST. The listener stays open.
    pub fn reset_all(&self) {
        self.call(|r| r.close_all(true));
    }

    /// While on, connections are accepted and kept open but no byte moves either way, on
    /// live connections too (buffered bytes stay buffered, and flow again after
    /// `blackhole(false)` or `heal()`, intact).
    pub fn blackhole(&self, on: bool) {
        self.faults(move |f| {
            f.blackhole = on;
            Change::Other
        });
    }

    /// Delays every chunk read from now on by `delay` before it is written on, each way.
    pub fn latency(&self, delay: Duration) {
        self.latency_jitter(delay, Duration::ZERO);
    }

    /// Delays every chunk read from now on by `delay ± jitter` (drawn uniformly for each
    /// chunk) before it is written on, each way, keeping the order of the stream: a chunk
    /// whose draw would overtake the one before it waits for it instead, as behind a queue.
    /// A jitter larger than the delay is clamped: no chunk leaves before it arrived.
    pub fn latency_jitter(&self, delay: Duration, jitter: Duration) {
        self.faults(move |f| {
            f.latency = Some(crate::latency::Latency { delay, jitter });
            Change::Other
        });
    }

    /// Limits each direction of each connection to `bytes_per_sec`.
    pub fn bandwidth(&self, bytes_per_sec: u64) {
        self.faults(move |f| {
            f.bandwidth = Some(bytes_per_sec.max(1));
            Change::Other
        });
    }

    /// Closes a connection (FIN both ways) once `bytes` more have been forwarded in either
    /// of its directions, counted from this call for live connections and from the connect
    /// for new ones. The peer receives exactly `bytes` bytes.
    pub fn cut_after(&self, bytes: u64) {
        self.faults(move |f| {
            f.cut_after = Some(bytes);
            Change::Cut
        });
    }

    /// Closes one direction of every connection, live and new: the receiving side of that
    /// direction gets a FIN (end of stream), buffered bytes are dropped, and whatever the
    /// sending side writes afterwards is read and discarded. The other direction still
    /// flows. A FIN cannot be taken back: `heal` restores only new connections.
    pub fn close_direction(&self, direction: Direction) {
        self.faults(move |f| {
            f.closed[direction as usize] = true;
            Change::Close(direction)
        });
    }

    /// Clears every fault: blackhole off, no latency, no bandwidth limit, no cut, both
    /// directions open for new connections. Bytes held back flow at once.
    pub fn heal(&self) {
        self.faults(|f| {
            *f = Default::default();
            Change::Heal
        });
    }

    /// The counters, as of the relay thread's state when the call was answered.
    pub fn stats(&self) -> Stats {
        self.call(|_| ());
        let c = &self.0.counters;
        Stats {
            accepted: c.accepted.load(Ordering::Relaxed),
            live: c.live.load(Ordering::Relaxed),
            bytes_up: c.bytes_up.load(Ordering::Relaxed),
            bytes_down: c.bytes_down.load(Ordering::Relaxed),
        }
    }

    /// Stops the relay thread and closes everything; every clone is then inert. Returns
    /// once the thread has ended.
    pub fn shutdown(&self) {
        self.0.shutdown();
    }
}
