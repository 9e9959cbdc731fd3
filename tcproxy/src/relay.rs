//! The relay itself: the listener, every relayed connection and the faults, all living on
//! one momoko-loop thread.
//!
//! It owns the sockets, the bounded per-direction buffers and the fault state, and applies
//! every command from [`crate::ProxyHandle`] in a loop callback. It must never block, never
//! buffer more than [`BUFFER_CAP`] bytes per direction (a slow reader slows the writer on the
//! other side through TCP's own flow control), and never keep a socket open after the
//! connection it belongs to ended. Handlers are edge-triggered: every pump reads and writes
//! until `WouldBlock`, until the buffer is full, or until a fault or a timer says to wait; each
//! of those stops has something that pumps again (a readiness edge, the buffer draining in the
//! same pump, a timer, or `heal`).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::Interest;
use momoko_loop::{HandlerId, IoLoop, TimeoutId};

use crate::latency::{Draws, Latency};
use crate::Direction;

/// The most bytes buffered per direction of one connection; reading from the source stops
/// while this much waits for the sink.
pub(crate) const BUFFER_CAP: usize = 64 * 1024;
/// The most bytes read in one call.
const READ_CHUNK: usize = 16 * 1024;
/// After an accept error such as EMFILE the listener is tried again after this long (the
/// edge that reported the waiting connections will not come again).
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// bandwidth: the time one write's worth stands for (1/50 s).
const SLICE: Duration = Duration::from_millis(20);

/// Counters shared with the handles; written on the relay thread only.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicU64,
    pub(crate) live: AtomicU64,
    pub(crate) bytes_up: AtomicU64,
    pub(crate) bytes_down: AtomicU64,
}

/// The faults in force. They apply to live connections when set and to every connection
/// accepted while they are set; `heal` clears them all.
#[derive(Debug, Clone, Default)]
pub(crate) struct Faults {
    pub(crate) blackhole: bool,
    pub(crate) latency: Option<Latency>,
    pub(crate) bandwidth: Option<u64>,
    pub(crate) cut_after: Option<u64>,
    /// Indexed by `Direction as usize`.
    pub(crate) closed: [bool; 2],
}

/// One direction of a connection: what was read from its source and not yet written to its
/// sink.
///
/// ```text
///   Open ──EOF read from the source──▶ Draining ──buffer written, FIN sent──▶ Done
///     │                                                                     ▲
///     └──close_direction: buffer dropped, FIN sent, later reads discarded───┘ (at EOF)
/// ```
#[derive(Debug, Default)]
struct Pipe {
    chunks: VecDeque<Chunk>,
    buffered: usize,
    read_eof: bool,
    fin_sent: bool,
    /// close_direction: nothing more is forwarded; what arrives is read and dropped.
    closed: bool,
    /// cut_after: bytes this direction may still forward before the connection is cut.
    cut_left: Option<u64>,
    /// bandwidth: the sink may take more once this instant has passed.
    free_at: Option<Instant>,
}

#[derive(Debug)]
struct Chunk {
    data: Vec<u8>,
    pos: usize,
    /// latency: not written before this instant.
    release_at: Option<Instant>,
}

impl Pipe {
    fn done(&self) -> bool {
        self.read_eof && self.fin_sent
    }

    fn close(&mut self, dst: &TcpStream) {
        self.closed = true;
        self.chunks.clear();
        self.buffered = 0;
        if !self.fin_sent {
            // The sink may already be gone; the FIN is best effort.
            let _ = dst.shutdown(Shutdown::Write);
            self.fin_sent = true;
        }
    }

    /// Moves bytes from `src` to `dst` until nothing more can move now.
    fn transfer(
        &mut self,
        src: &mut TcpStream,
        dst: &mut TcpStream,
        faults: &Faults,
        now: Instant,
        counter: &AtomicU64,
        scratch: &mut [u8],
        draws: &mut Draws,
    ) -> io::Result<Step> {
        let mut step = Step::default();
        // Write what may be written.
        while let Some(chunk) = self.chunks.front_mut() {
            if let Some(at) = chunk.release_at.filter(|at| *at > now) {
                step.wake_at(at);
                break;
            }
            let mut n = chunk.data.len() - chunk.pos;
            if let Some(rate) = faults.bandwidth {
                if let Some(at) = self.free_at.filter(|at| *at > now) {
                    step.wake_at(at);
                    break;
                }
                // At most one slice's worth per write, so the rate holds at a fine grain.
                n = n.min((rate / 50).clamp(1, READ_CHUNK as u64) as usize);
            }
            if let Some(left) = self.cut_left {
                n = n.min(usize::try_from(left).unwrap_or(usize::MAX));
            }
            if n == 0 {
                step.cut = true;
                return Ok(step);
            }
            match dst.write(&chunk.data[chunk.pos..chunk.pos + n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => {
                    chunk.pos += k;
                    self.buffered -= k;
                    step.progress = true;
                    counter.fetch_add(k as u64, Ordering::Relaxed);
                    if chunk.pos == chunk.data.len() {
                        self.chunks.pop_front();
                    }
                    if let Some(rate) = faults.bandwidth {
                        // A timer that fired late must not lower the rate: the credit of up
                        // to one slice (20 ms) is kept; an idle link earns no more.
                        let floor = now.checked_sub(SLICE).unwrap_or(now);
                        let base = self.free_at.map_or(now, |at| at.max(floor));
                        let cost = Duration::from_secs_f64(k as f64 / rate.max(1) as f64);
                        self.free_at = Some(base + cost);
                    }
                    if let Some(left) = self.cut_left.as_mut() {
                        *left -= k as u64;
                        if *left == 0 {
                            step.cut = true;
                            return Ok(step);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if self.read_eof && self.chunks.is_empty() && !self.fin_sent {
            // Half-close, as TCP allows: the sink may still answer the other way.
            let _ = dst.shutdown(Shutdown::Write);
            self.fin_sent = true;
            step.progress = true;
        }
        // Read while there is room.
        while !self.read_eof && self.buffered < BUFFER_CAP {
            let want = READ_CHUNK.min(BUFFER_CAP - self.buffered);
            match src.read(&mut scratch[..want]) {
                Ok(0) => {
                    self.read_eof = true;
                    step.progress = true;
                }
                Ok(_) if self.closed => step.progress = true,
                Ok(k) => {
                    let after = self.chunks.back().and_then(|c| c.release_at);
                    self.chunks.push_back(Chunk {
                        data: scratch[..k].to_vec(),
                        pos: 0,
                        release_at: faults.latency.map(|l| l.release_at(now, draws, after)),
                    });
                    self.buffered += k;
                    step.progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(step)
    }
}

#[derive(Debug, Default)]
struct Step {
    progress: bool,
    wake: Option<Instant>,
    cut: bool,
}

impl Step {
    fn wake_at(&mut self, at: Instant) {
        self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
    }
}

/// A relayed connection.
///
/// ```text
///   accept ──▶ Connecting ──upstream connected──▶ Relaying ──both pipes Done──▶ (closed)
///                  │                                  │
///                  └── upstream refused: client ──────┴── error, cut, reset, stop: both
///                      closed (it sees EOF)               sockets closed (RST on reset)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Relaying,
}

#[derive(Debug)]
struct Conn {
    client: TcpStream,
    server: TcpStream,
    handlers: [HandlerId; 2],
    phase: Phase,
    /// Indexed by `Direction as usize`: up is client to server, down server to client.
    pipes: [Pipe; 2],
    timer: Option<(Instant, TimeoutId)>,
}

/// What a pump decided about a connection.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Keep(Option<Instant>),
    Close,
    /// An error from the peer; a reset is passed on to the other side as a reset.
    Fail(io::ErrorKind),
}

impl Conn {
    fn pump(
        &mut self,
        faults: &Faults,
        counters: &Counters,
        scratch: &mut [u8],
        draws: &mut Draws,
    ) -> Verdict {
        if self.phase == Phase::Connecting {
            match self.server.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return Verdict::Fail(e.kind()),
            }
            match self.server.peer_addr() {
                Ok(_) => self.start_relaying(faults),
                Err(e)
                    if e.kind() == io::ErrorKind::NotConnected
                        || e.kind() == io::ErrorKind::WouldBlock =>
                {
                    return Verdict::Keep(None)
                }
                Err(e) => return Verdict::Fail(e.kind()),
            }
        }
        if faults.blackhole {
            return Verdict::Keep(None);
        }
        let now = Instant::now();
        // The last pass, which moved nothing, says what the connection waits for.
        let wake = loop {
            let [up, down] = &mut self.pipes;
            let steps = [
                up.transfer(
                    &mut self.client,
                    &mut self.server,
                    faults,
                    now,
                    &counters.bytes_up,
                    scratch,
                    draws,
                ),
                down.transfer(
                    &mut self.server,
                    &mut self.client,
                    faults,
                    now,
                    &counters.bytes_down,
                    scratch,
                    draws,
                ),
            ];
            let mut progress = false;
            let mut wake = None;
            for step in steps {
                match step {
                    Err(e) => return Verdict::Fail(e.kind()),
                    Ok(s) if s.cut => return Verdict::Close,
                    Ok(s) => {
                        progress |= s.progress;
                        if let Some(at) = s.wake {
                            wake = Some(wake.map_or(at, |w: Instant| w.min(at)));
                        }
                    }
                }
            }
            if !progress {
                break wake;
            }
        };
        if self.pipes.iter().all(Pipe::done) {
            return Verdict::Close;
        }
        Verdict::Keep(wake)
    }

    fn start_relaying(&mut self, faults: &Faults) {
        self.phase = Phase::Relaying;
        for (i, pipe) in self.pipes.iter_mut().enumerate() {
            pipe.cut_left = faults.cut_after;
            if faults.closed[i] {
                let dst = if i == Direction::Upstream as usize {
                    &self.server
                } else {
                    &self.client
                };
                pipe.close(dst);
            }
        }
    }

    fn apply(&mut self, faults: &Faults, changed: Change) {
        if self.phase != Phase::Relaying {
            // start_relaying reads the faults in force when the upstream connects.
            return;
        }
        for (i, pipe) in self.pipes.iter_mut().enumerate() {
            match changed {
                Change::Cut => pipe.cut_left = faults.cut_after,
                Change::Close(d) if d as usize == i => {
                    let dst = if i == Direction::Upstream as usize {
                        &self.server
                    } else {
                        &self.client
                    };
                    pipe.close(dst);
                }
                Change::Heal => {
                    pipe.cut_left = None;
                    pipe.free_at = None;
                    for c in &mut pipe.chunks {
                        c.release_at = None;
                    }
                }
                _ => {}
            }
        }
    }
}

/// Which fault changed, for what must happen to live connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Other,
    Cut,
    Close(Direction),
    Heal,
}

#[derive(Debug)]
struct Listener {
    socket: TcpListener,
    handler: HandlerId,
}

/// The relay's state on its thread. Closures stored in the loop hold only a `Weak` to it, so
/// dropping the last `Rc` closes every socket.
#[derive(Debug)]
pub(crate) struct Relay {
    ioloop: IoLoop,
    weak: Weak<Relay>,
    /// The bound address, resolved from port 0 on the first bind and reused by `start`.
    addr: Cell<SocketAddr>,
    upstream: SocketAddr,
    listener: RefCell<Option<Listener>>,
    conns: RefCell<HashMap<u64, Conn>>,
    next_key: Cell<u64>,
    faults: RefCell<Faults>,
    counters: std::sync::Arc<Counters>,
    accept_retry: Cell<Option<TimeoutId>>,
    scratch: RefCell<Vec<u8>>,
    /// latency: the random source of the jitter.
    draws: RefCell<Draws>,
}

impl Relay {
    /// Binds `listen` and starts accepting.
    pub(crate) fn new(
        ioloop: &IoLoop,
        listen: SocketAddr,
        upstream: SocketAddr,
        counters: std::sync::Arc<Counters>,
    ) -> io::Result<Rc<Relay>> {
        let relay = Rc::new_cyclic(|weak| Relay {
            ioloop: ioloop.clone(),
            weak: weak.clone(),
            addr: Cell::new(listen),
            upstream,
            listener: RefCell::new(None),
            conns: RefCell::new(HashMap::new()),
            next_key: Cell::new(0),
            faults: RefCell::new(Faults::default()),
            counters,
            accept_retry: Cell::new(None),
            scratch: RefCell::new(vec![0; READ_CHUNK]),
            draws: RefCell::new(Draws::new(seed())),
        });
        relay.listen()?;
        Ok(relay)
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr.get()
    }

    /// Listens again on the same address (no-op while listening).
    pub(crate) fn listen(&self) -> io::Result<()> {
        if self.listener.borrow().is_some() {
            return Ok(());
        }
        // mio sets SO_REUSEADDR, so a restart is not held up by TIME_WAIT connections.
        let mut socket = TcpListener::bind(self.addr.get())?;
        self.addr.set(socket.local_addr()?);
        let weak = self.weak.clone();
        let handler = self
            .ioloop
            .add_handler(&mut socket, Interest::READABLE, move |_| {
                if let Some(relay) = weak.upgrade() {
                    relay.accept();
                }
            })?;
        log::info!(
            "tcproxy: listening on {} -> {}",
            self.addr.get(),
            self.upstream
        );
        *self.listener.borrow_mut() = Some(Listener { socket, handler });
        Ok(())
    }

    /// Closes the listener and every relayed connection (FIN, as a dying process's would).
    pub(crate) fn stop(&self) {
        if let Some(l) = self.listener.borrow_mut().take() {
            self.ioloop.forget_handler(l.handler);
            log::info!("tcproxy: stopped listening on {}", self.addr.get());
        }
        if let Some(t) = self.accept_retry.take() {
            self.ioloop.remove_timeout(t);
        }
        self.close_all(false);
    }

    /// Closes every relayed connection; with `reset`, by RST (SO_LINGER 0).
    pub(crate) fn close_all(&self, reset: bool) {
        let conns: Vec<Conn> = self.conns.borrow_mut().drain().map(|(_, c)| c).collect();
        for c in conns {
            self.close(c, reset);
        }
    }

    pub(crate) fn set_faults(&self, f: impl FnOnce(&mut Faults) -> Change) {
        let change = f(&mut self.faults.borrow_mut());
        let faults = self.faults.borrow().clone();
        let keys: Vec<u64> = {
            let mut conns = self.conns.borrow_mut();
            for c in conns.values_mut() {
                c.apply(&faults, change);
            }
            conns.keys().copied().collect()
        };
        // A lifted blackhole or limit has no readiness edge of its own: pump everyone.
        for key in keys {
            self.pump(key);
        }
    }

    fn accept(&self) {
        loop {
            let accepted = match self.listener.borrow().as_ref() {
                Some(l) => l.socket.accept(),
                None => return,
            };
            match accepted {
                Ok((client, peer)) => self.relay(client, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || e.kind() == io::ErrorKind::ConnectionAborted =>
                {
                    continue
                }
                Err(e) => {
                    // EMFILE and the like: the waiting connections stay in the backlog.
                    log::warn!("tcproxy: accept failed: {e}; retrying in {ACCEPT_RETRY:?}");
                    if self.accept_retry.get().is_none() {
                        let weak = self.weak.clone();
                        let t = self.ioloop.call_later(ACCEPT_RETRY, move || {
                            if let Some(relay) = weak.upgrade() {
                                relay.accept_retry.set(None);
                                relay.accept();
                            }
                        });
                        self.accept_retry.set(Some(t));
                    }
                    return;
                }
            }
        }
    }

    fn relay(&self, mut client: TcpStream, peer: SocketAddr) {
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        let mut server = match TcpStream::connect(self.upstream) {
            Ok(s) => s,
            Err(e) => {
                log::info!(
                    "tcproxy: {peer}: connecting to {} failed: {e}",
                    self.upstream
                );
                return; // dropping the client closes it: it sees EOF
            }
        };
        // Small protocol messages must not wait for Nagle.
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let key = self.next_key.get();
        self.next_key.set(key + 1);
        let register = |s: &mut TcpStream| {
            let weak = self.weak.clone();
            self.ioloop
                .add_handler(s, Interest::READABLE | Interest::WRITABLE, move |_| {
                    if let Some(relay) = weak.upgrade() {
                        relay.pump(key);
                    }
                })
        };
        let handlers = match (register(&mut client), register(&mut server)) {
            (Ok(a), Ok(b)) => [a, b],
            (a, b) => {
                for id in [a, b].into_iter().flatten() {
                    self.ioloop.forget_handler(id);
                }
                log::warn!("tcproxy: {peer}: could not register the sockets");
                return;
            }
        };
        log::debug!("tcproxy: {peer}: accepted, relaying to {}", self.upstream);
        self.counters.live.fetch_add(1, Ordering::Relaxed);
        self.conns.borrow_mut().insert(
            key,
            Conn {
                client,
                server,
                handlers,
                phase: Phase::Connecting,
                pipes: Default::default(),
                timer: None,
            },
        );
        // The connect may already be done, and client bytes may already wait.
        self.pump(key);
    }

    fn pump(&self, key: u64) {
        let faults = self.faults.borrow().clone();
        let verdict = {
            let mut conns = self.conns.borrow_mut();
            let Some(conn) = conns.get_mut(&key) else {
                return; // a stray event or timer of a closed connection
            };
            let verdict = conn.pump(
                &faults,
                &self.counters,
                &mut self.scratch.borrow_mut(),
                &mut self.draws.borrow_mut(),
            );
            if let Verdict::Keep(Some(at)) = verdict {
                if conn.timer.is_none_or(|(t, _)| t > at) {
                    if let Some((_, old)) = conn.timer.take() {
                        self.ioloop.remove_timeout(old);
                    }
                    let weak = self.weak.clone();
                    let id = self.ioloop.call_at(at, move || {
                        if let Some(relay) = weak.upgrade() {
                            if let Some(c) = relay.conns.borrow_mut().get_mut(&key) {
                                c.timer = None;
                            }
                            relay.pump(key);
                        }
                    });
                    conn.timer = Some((at, id));
                }
            }
            verdict
        };
        let reset = match verdict {
            Verdict::Keep(_) => return,
            Verdict::Close => false,
            Verdict::Fail(kind) => {
                log::debug!("tcproxy: connection {key} failed: {kind:?}");
                kind == io::ErrorKind::ConnectionReset
            }
        };
        if let Some(conn) = self.conns.borrow_mut().remove(&key) {
            self.close(conn, reset);
        }
    }

    fn close(&self, conn: Conn, reset: bool) {
        for id in conn.handlers {
            self.ioloop.forget_handler(id);
        }
        if let Some((_, t)) = conn.timer {
            self.ioloop.remove_timeout(t);
        }
        if reset {
            for s in [&conn.client, &conn.server] {
                // SO_LINGER 0: close() sends RST and drops unsent data.
                let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
            }
        }
        self.counters.live.fetch_sub(1, Ordering::Relaxed);
        drop(conn);
    }
}

/// A seed for the jitter that differs between relays and runs.
fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}
