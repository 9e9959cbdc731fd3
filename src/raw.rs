//! The loop-independent connection driver: one socket, one protocol core, callbacks out.
//!
//! `RawConnection` owns the socket (TCP or Unix), tries the targets of the connection string
//! in order, feeds the protocol core, runs `setsession`, and turns the core's events into
//! [`Action`]s that its driver runs *after* releasing any borrow of it, so that a completion
//! callback may call straight back into the connection. It never blocks (apart from the name
//! lookup of a host name, as libpq does), never registers itself anywhere and never reads the
//! clock: the driver (the IoLoop-based `Connection`, or a user's own mio loop) registers
//! [`RawConnection::source`], forwards readiness and deadlines, and runs the actions.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::ToSocketAddrs;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::conninfo::{Config, Target};
use crate::error::{DbError, Error, ErrorKind};
use crate::proto::{Credentials, Event, Protocol, Request, Response, DEFAULT_MAX_MESSAGE_SIZE};
use crate::types::TypeRegistry;

/// A completion callback for one request.
pub(crate) type Callback = Box<dyn FnOnce(Result<Response, Error>)>;
/// A NOTIFY listener.
pub(crate) type Listener = Rc<RefCell<dyn FnMut(&Notification)>>;
/// A notice handler.
pub(crate) type NoticeHandler = Rc<RefCell<dyn FnMut(&DbError)>>;
/// Where COPY TO STDOUT data goes.
pub(crate) type CopySink = Rc<RefCell<dyn FnMut(&[u8])>>;

/// A notification received with LISTEN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    process_id: i32,
    channel: String,
    payload: String,
}

impl Notification {
    /// The process id of the server backend that sent the NOTIFY.
    pub fn process_id(&self) -> i32 {
        self.process_id
    }
    /// The channel name.
    pub fn channel(&self) -> &str {
        &self.channel
    }
    /// The payload (empty when NOTIFY gave none).
    pub fn payload(&self) -> &str {
        &self.payload
    }
}

/// Something the driver must run once it holds no borrow of the connection.
pub(crate) enum Action {
    /// A request finished.
    Complete(Callback, Result<Response, Error>),
    /// The connect attempt finished (after setsession).
    Connected(Result<(), Error>),
    /// A notification for a listener.
    Notify(Listener, Notification),
    /// A notice for the notice handler.
    Notice(NoticeHandler, Box<DbError>),
    /// COPY TO STDOUT data for a sink.
    CopyData(CopySink, bytes::Bytes),
    /// The established connection was lost or closed.
    Closed(Error),
    /// A request ran past its query_timeout: the driver sends a CancelRequest.
    Cancel,
}

impl Action {
    /// Runs the callbacks every driver runs the same way (a listener, the notice handler, a
    /// COPY sink) and hands back the actions the driver must handle itself. A callback that
    /// is already running (re-entered from inside itself) is skipped, not borrowed twice.
    pub(crate) fn deliver(self) -> Option<Action> {
        match self {
            Action::Notify(listener, n) => match listener.try_borrow_mut() {
                Ok(mut l) => l(&n),
                Err(_) => log::warn!("a notification listener was re-entered; dropped {n:?}"),
            },
            Action::Notice(handler, db) => {
                if let Ok(mut h) = handler.try_borrow_mut() {
                    h(&db);
                }
            }
            Action::CopyData(sink, data) => {
                if let Ok(mut s) = sink.try_borrow_mut() {
                    s(&data);
                }
            }
            other => return Some(other),
        }
        None
    }
}

/// What waits for each request in flight, in order.
enum Waiter {
    User(Callback),
    /// A setsession statement; the last one finishes the connect.
    Setsession {
        last: bool,
    },
    /// A COPY TO STDOUT with its sink.
    CopyOut(Callback, CopySink),
    /// A request that timed out: its caller was answered already, its answer is dropped.
    Discard,
}

/// A waiter with the instant its request must be answered by.
struct Pending {
    waiter: Waiter,
    deadline: Option<Instant>,
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

    fn is_connected(&self) -> io::Result<bool> {
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

    fn shutdown(&self) {
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

/// Options that shape a connection, beyond the connection string.
#[derive(Clone, Default)]
pub(crate) struct Options {
    /// Statements run after every connect, in order; one that fails fails the connect.
    pub(crate) setsession: Vec<String>,
    /// Overrides the connection string's connect_timeout.
    pub(crate) connect_timeout: Option<Duration>,
    /// The largest server message accepted.
    pub(crate) max_message_size: Option<usize>,
    pub(crate) notice_handler: Option<NoticeHandler>,
    /// Types registered on the connection (hstore), given to every new session.
    pub(crate) types: TypeRegistry,
    /// A request not answered within this long fails with `ErrorKind::Timeout` and is
    /// cancelled on the server.
    pub(crate) query_timeout: Option<Duration>,
    /// NOTIFY listeners, by channel; they survive reconnects.
    pub(crate) listeners: HashMap<String, Listener>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("setsession", &self.setsession)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_message_size", &self.max_message_size)
            .field("query_timeout", &self.query_timeout)
            .finish_non_exhaustive()
    }
}

/// Where the connection stands.
///
/// ```text
///   Connecting ──socket up──▶ Starting ──ReadyForQuery──▶ Setsession ──last ok──▶ Ready
///       │  ▲                     │                            │                     │
///       │  └──next target────────┤                            │                     │
///       └────────────────────────┴────── failure ─────────────┴─────────────────────┴──▶ Closed
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Connecting,
    Starting,
    Setsession,
    Ready,
    Closed,
}

/// How long a cancelled request may take to be answered before the connection is given up.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

thread_local! {
    /// One read buffer per thread: connections read into it in turn, so an idle connection
    /// holds no read buffer of its own beyond what the protocol core keeps.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; 256 * 1024]);
}

/// See the module documentation.
pub(crate) struct RawConnection {
    phase: Phase,
    targets: VecDeque<Target>,
    startup_params: Vec<(String, String)>,
    credentials: Credentials,
    connect_timeout: Option<Duration>,
    connect_deadline: Option<Instant>,
    max_message_size: usize,
    setsession: Vec<String>,
    socket: Option<Socket>,
    socket_generation: u64,
    proto: Option<Protocol>,
    waiters: VecDeque<Pending>,
    /// Requests made before the connection was ready; sent after setsession.
    held: VecDeque<(Request, Waiter)>,
    query_timeout: Option<Duration>,
    /// A timed-out request still unanswered must be answered by then, or the connection
    /// is given up (the server or the network is gone).
    discard_deadline: Option<Instant>,
    /// Where the socket is connected: the CancelRequest goes to the same place.
    peer: Option<Peer>,
    /// Requests answered so far: the oldest in flight is number `answered`.
    answered: u64,
    /// The socket refused a write (its buffer is full) and no writable event came since.
    write_blocked: bool,
    /// How many waiters are `Discard` (timed out, answer still to come).
    discards: usize,
    actions: Vec<Action>,
    last_error: Option<Error>,
    setsession_error: Option<Error>,
    listeners: HashMap<String, Listener>,
    notice_handler: Option<NoticeHandler>,
    types: TypeRegistry,
    config: Option<Config>,
}

impl std::fmt::Debug for RawConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawConnection")
            .field("phase", &self.phase)
            .field("in_flight", &self.waiters.len())
            .field("held", &self.held.len())
            .finish_non_exhaustive()
    }
}

impl RawConnection {
    /// Starts connecting to the first target of `config`. Failures are reported as
    /// `Action::Connected(Err(..))`, never returned, so that every caller sees them the same way.
    pub(crate) fn connect(
        config: Result<Config, Error>,
        options: Options,
        now: Instant,
    ) -> RawConnection {
        let mut raw = RawConnection {
            phase: Phase::Connecting,
            targets: VecDeque::new(),
            startup_params: Vec::new(),
            credentials: Credentials::default(),
            connect_timeout: None,
            connect_deadline: None,
            max_message_size: options.max_message_size.unwrap_or(DEFAULT_MAX_MESSAGE_SIZE),
            setsession: options.setsession,
            socket: None,
            socket_generation: 0,
            proto: None,
            waiters: VecDeque::new(),
            held: VecDeque::new(),
            query_timeout: options.query_timeout,
            discard_deadline: None,
            peer: None,
            answered: 0,
            write_blocked: false,
            discards: 0,
            actions: Vec::new(),
            last_error: None,
            setsession_error: None,
            listeners: options.listeners,
            notice_handler: options.notice_handler,
            types: options.types,
            config: None,
        };
        let config = match config.and_then(|c| c.tls_required().map(|()| c)) {
            Ok(c) => c,
            Err(e) => {
                raw.finish_connect(Err(e));
                return raw;
            }
        };
        raw.startup_params = config.startup_params();
        raw.credentials = Credentials {
            user: config.get_user().unwrap_or_default().to_owned(),
            password: None,
        };
        raw.connect_timeout = options.connect_timeout.or(config.get_connect_timeout());
        match config.targets() {
            Ok(t) => raw.targets = t.into(),
            Err(e) => {
                raw.finish_connect(Err(e));
                return raw;
            }
        }
        raw.config = Some(config);
        raw.next_target(now);
        raw
    }

    /// Tries the next target; reports the last error when none is left.
    fn next_target(&mut self, now: Instant) {
        loop {
            self.socket = None;
            self.proto = None;
            self.socket_generation += 1;
            let Some(target) = self.targets.pop_front() else {
                let err = self
                    .last_error
                    .take()
                    .unwrap_or_else(|| Error::connection("no host to connect to"));
                self.finish_connect(Err(err));
                return;
            };
            // The password file is read per host, as libpq does.
            self.credentials.password = self
                .config
                .as_ref()
                .and_then(|c| c.password_for(&target))
                .map(String::into_bytes);
            match open(&target) {
                Ok(sockets) => {
                    let mut sockets = sockets.into_iter();
                    let first = sockets.next().expect("open returns at least one");
                    // Other addresses of the same host name are tried next, in order.
                    for (i, extra) in sockets.enumerate() {
                        if let Opened::Target(t) = extra {
                            self.targets.insert(i, t);
                        }
                    }
                    match first {
                        Opened::Socket(s, peer) => {
                            self.peer = Some(peer);
                            self.socket = Some(s);
                            self.write_blocked = false;
                            self.phase = Phase::Connecting;
                            self.connect_deadline = self.connect_timeout.map(|t| now + t);
                            return;
                        }
                        Opened::Target(_) => unreachable!("the first entry is a socket"),
                    }
                }
                Err(e) => {
                    log::debug!("connecting to {target:?} failed: {e}");
                    self.last_error = Some(e);
                }
            }
        }
    }

    fn finish_connect(&mut self, result: Result<(), Error>) {
        match &result {
            Ok(()) => {
                self.phase = Phase::Ready;
                self.connect_deadline = None;
                let held = std::mem::take(&mut self.held);
                for (req, waiter) in held {
                    self.send(req, waiter);
                }
            }
            Err(e) => {
                self.phase = Phase::Closed;
                self.connect_deadline = None;
                if let Some(s) = self.socket.take() {
                    s.shutdown();
                }
                self.socket_generation += 1;
                let e = e.clone();
                for (_, waiter) in std::mem::take(&mut self.held) {
                    self.fail_waiter(waiter, e.clone());
                }
                for p in std::mem::take(&mut self.waiters) {
                    self.fail_waiter(p.waiter, e.clone());
                }
            }
        }
        self.actions.push(Action::Connected(result));
    }

    fn fail_waiter(&mut self, waiter: Waiter, e: Error) {
        match waiter {
            Waiter::User(cb) | Waiter::CopyOut(cb, _) => {
                self.actions.push(Action::Complete(cb, Err(e)))
            }
            Waiter::Setsession { .. } | Waiter::Discard => {}
        }
    }

    /// The phase of the connection.
    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the connection is closed (or never opened).
    pub(crate) fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The socket to register for readable and writable events, while there is one.
    pub(crate) fn source(&mut self) -> Option<&mut Socket> {
        self.socket.as_mut()
    }

    /// Changes whenever the socket is replaced or dropped: the driver re-registers then.
    pub(crate) fn socket_generation(&self) -> u64 {
        self.socket_generation
    }

    /// The earliest instant at which [`RawConnection::handle_timeout`] must be called.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let head = self.waiters.front().and_then(|p| p.deadline);
        [self.connect_deadline, head, self.discard_deadline]
            .into_iter()
            .flatten()
            .min()
    }

    /// A number naming the oldest request in flight (the one a cancel would hit), if any.
    pub(crate) fn head_sequence(&self) -> Option<u64> {
        (!self.waiters.is_empty()).then_some(self.answered)
    }

    /// Where the socket is connected, for a CancelRequest.
    pub(crate) fn peer(&self) -> Option<&Peer> {
        self.peer.as_ref()
    }

    /// Requests sent and not yet answered, plus requests held until the connection is ready.
    pub(crate) fn pending(&self) -> usize {
        self.waiters.len() + self.held.len()
    }

    /// The protocol core, once the socket is up.
    pub(crate) fn proto(&self) -> Option<&Protocol> {
        self.proto.as_ref()
    }

    pub(crate) fn proto_mut(&mut self) -> Option<&mut Protocol> {
        self.proto.as_mut()
    }

    /// Takes the actions to run. The driver runs them holding no borrow of this connection.
    pub(crate) fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// Whether there are bytes to write now: some are queued and the socket did not say it
    /// is full (then the next writable event flushes them).
    pub(crate) fn wants_write(&self) -> bool {
        !self.write_blocked && self.proto.as_ref().is_some_and(Protocol::wants_write)
    }

    /// Queues a request with its completion callback.
    pub(crate) fn request(&mut self, req: Request, cb: Callback) {
        self.send(req, Waiter::User(cb));
    }

    /// Queues a COPY TO STDOUT; its data goes to `sink` as it arrives.
    pub(crate) fn request_copy_out(&mut self, req: Request, sink: CopySink, cb: Callback) {
        self.send(req, Waiter::CopyOut(cb, sink));
    }

    fn send(&mut self, req: Request, waiter: Waiter) {
        match self.phase {
            Phase::Ready => {}
            Phase::Closed => {
                let e = self
                    .proto
                    .as_ref()
                    .and_then(|p| p.close_error().cloned())
                    .map(|e| e.with_kind(ErrorKind::Connection))
                    .unwrap_or_else(|| Error::connection("the connection is closed"));
                let e = Error::connection(format!("the connection is closed ({e})"));
                self.fail_waiter(waiter, e);
                return;
            }
            _ if !matches!(waiter, Waiter::Setsession { .. }) => {
                self.held.push_back((req, waiter));
                return;
            }
            _ => {}
        }
        let proto = self
            .proto
            .as_mut()
            .expect("a ready connection has a protocol");
        match proto.send(req) {
            Ok(()) => {
                let deadline = match waiter {
                    Waiter::User(_) | Waiter::CopyOut(..) => {
                        self.query_timeout.map(|t| Instant::now() + t)
                    }
                    _ => None,
                };
                self.waiters.push_back(Pending { waiter, deadline })
            }
            Err(e) => self.fail_waiter(waiter, e),
        }
    }

    /// Registers a listener for a channel (the LISTEN itself is a request of the caller's).
    pub(crate) fn set_listener(&mut self, channel: &str, listener: Option<Listener>) {
        match listener {
            Some(l) => {
                self.listeners.insert(channel.to_owned(), l);
            }
            None => {
                self.listeners.remove(channel);
            }
        }
    }

    /// The socket is readable and/or writable (or in error).
    pub(crate) fn handle_ready(
        &mut self,
        readable: bool,
        writable: bool,
        error: bool,
        now: Instant,
    ) {
        if writable {
            self.write_blocked = false;
        }
        if self.phase == Phase::Connecting {
            if !(writable || error || readable) {
                return;
            }
            let Some(socket) = self.socket.as_ref() else {
                return;
            };
            let state = match socket.take_error() {
                Ok(Some(e)) | Err(e) => Err(e),
                Ok(None) => socket.is_connected(),
            };
            match state {
                Ok(true) => self.start_protocol(),
                Ok(false) => return, // spurious: the handshake is still going
                Err(e) => {
                    self.last_error = Some(Error::io("could not connect to the server", e));
                    self.next_target(now);
                    return;
                }
            }
        }
        if self.proto.is_some() {
            if readable || error {
                self.read();
            }
            self.flush();
            self.process_events(now);
        }
    }

    fn start_protocol(&mut self) {
        self.phase = Phase::Starting;
        let mut proto = Protocol::new(
            &self.startup_params,
            self.credentials.clone(),
            self.max_message_size,
        );
        proto.types_mut().clone_from(&self.types);
        self.proto = Some(proto);
    }

    /// Deadlines passed: a connect attempt past its connect_timeout fails (and the next
    /// target is tried).
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.check_query_timeout(now);
        if let Some(deadline) = self.connect_deadline {
            if now >= deadline && matches!(self.phase, Phase::Connecting | Phase::Starting) {
                let t = self.connect_timeout.unwrap_or_default();
                self.last_error = Some(Error::new(
                    ErrorKind::Timeout,
                    format!("connection timed out after {t:?}"),
                ));
                self.next_target(now);
                self.process_events(now);
            }
        }
    }

    /// The oldest request is past its query_timeout: its caller gets a Timeout error now,
    /// the server is asked to cancel it, and its answer will be dropped. If no answer comes
    /// within a grace period the connection is given up.
    fn check_query_timeout(&mut self, now: Instant) {
        if let Some(d) = self.discard_deadline {
            if now >= d
                && self
                    .waiters
                    .front()
                    .is_some_and(|p| matches!(p.waiter, Waiter::Discard))
            {
                let e = Error::new(
                    ErrorKind::Timeout,
                    "the server did not answer a cancelled request: the connection is given up",
                );
                self.discard_deadline = None;
                self.close(e, now);
                return;
            }
        }
        let Some(head) = self.waiters.front_mut() else {
            return;
        };
        let Some(deadline) = head.deadline else {
            return;
        };
        if now < deadline {
            return;
        }
        head.deadline = None;
        let waiter = std::mem::replace(&mut head.waiter, Waiter::Discard);
        self.discards += 1;
        let t = self.query_timeout.unwrap_or_default();
        let e = Error::new(
            ErrorKind::Timeout,
            format!("the query ran longer than its timeout of {t:?} and was cancelled"),
        )
        .with_code("57014");
        self.fail_waiter(waiter, e);
        self.discard_deadline = Some(now + CANCEL_GRACE.max(t / 2));
        self.actions.push(Action::Cancel);
    }

    fn read(&mut self) {
        let (Some(socket), Some(proto)) = (self.socket.as_mut(), self.proto.as_mut()) else {
            return;
        };
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            loop {
                match socket.read(&mut scratch) {
                    Ok(0) => {
                        proto.handle_eof(None);
                        break;
                    }
                    Ok(n) => {
                        proto.handle_input(&scratch[..n]);
                        if proto.is_closed() {
                            break;
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
        });
    }

    /// Writes what the protocol has to send, until the socket would block.
    pub(crate) fn flush(&mut self) {
        let (Some(socket), Some(proto)) = (self.socket.as_mut(), self.proto.as_mut()) else {
            return;
        };
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

    /// Turns the protocol's events into actions and state changes.
    pub(crate) fn process_events(&mut self, now: Instant) {
        loop {
            let Some(event) = self.proto.as_mut().and_then(Protocol::poll_event) else {
                break;
            };
            match event {
                Event::Connected => self.on_connected(),
                Event::Completed(result) => {
                    let Some(Pending { waiter, .. }) = self.waiters.pop_front() else {
                        log::error!("a response arrived with no request waiting for it");
                        continue;
                    };
                    self.answered += 1;
                    if matches!(waiter, Waiter::Discard) {
                        self.discards -= 1;
                    }
                    if self.discards == 0 {
                        self.discard_deadline = None;
                    }
                    match waiter {
                        Waiter::Discard => {
                            log::debug!("dropped the answer of a timed-out request");
                        }
                        Waiter::User(cb) | Waiter::CopyOut(cb, _) => {
                            self.actions.push(Action::Complete(cb, result))
                        }
                        Waiter::Setsession { last } => {
                            if let Err(e) = result {
                                self.setsession_error.get_or_insert(e);
                            }
                            if last && self.phase == Phase::Setsession {
                                match self.setsession_error.take() {
                                    None => self.finish_connect(Ok(())),
                                    Some(e) => {
                                        if let Some(p) = self.proto.as_mut() {
                                            p.terminate(e.clone());
                                        }
                                        self.flush();
                                        self.finish_connect(Err(e));
                                    }
                                }
                            }
                        }
                    }
                }
                Event::CopyData(data) => {
                    if let Some(Pending {
                        waiter: Waiter::CopyOut(_, sink),
                        ..
                    }) = self.waiters.front()
                    {
                        self.actions.push(Action::CopyData(sink.clone(), data));
                    }
                }
                Event::Notification {
                    process_id,
                    channel,
                    payload,
                } => {
                    let n = Notification {
                        process_id,
                        channel,
                        payload,
                    };
                    match self.listeners.get(&n.channel) {
                        Some(l) => self.actions.push(Action::Notify(l.clone(), n)),
                        None => log::debug!("notification on {:?} with no listener", n.channel),
                    }
                }
                Event::Notice(db) => {
                    if let Some(h) = &self.notice_handler {
                        self.actions.push(Action::Notice(h.clone(), db));
                    }
                }
                Event::ParameterChanged { name, value } => {
                    log::debug!("server parameter {name} is now {value:?}");
                }
                Event::Closed(e) => self.on_closed(e, now),
            }
        }
    }

    fn on_connected(&mut self) {
        if self.setsession.is_empty() {
            self.finish_connect(Ok(()));
            return;
        }
        self.phase = Phase::Setsession;
        let n = self.setsession.len();
        for (i, stmt) in self.setsession.clone().into_iter().enumerate() {
            self.send(
                Request::Simple { query: stmt },
                Waiter::Setsession { last: i + 1 == n },
            );
        }
        self.flush();
    }

    fn on_closed(&mut self, e: Error, now: Instant) {
        // The protocol failed every request in flight before reporting Closed.
        if let Some(s) = self.socket.take() {
            s.shutdown();
        }
        self.socket_generation += 1;
        match self.phase {
            Phase::Connecting | Phase::Starting => {
                // A server that refuses us (authentication, too many clients) may be one of
                // several: libpq tries the next host.
                self.last_error = Some(e);
                self.next_target(now);
            }
            Phase::Setsession => self.finish_connect(Err(e)),
            Phase::Ready => {
                self.phase = Phase::Closed;
                for (_, waiter) in std::mem::take(&mut self.held) {
                    self.fail_waiter(waiter, e.clone());
                }
                self.actions.push(Action::Closed(e));
            }
            Phase::Closed => {}
        }
    }

    /// Closes the connection from our side: a Terminate is sent if possible, everything in
    /// flight fails with `reason`.
    pub(crate) fn close(&mut self, reason: Error, now: Instant) {
        if self.phase == Phase::Closed {
            return;
        }
        if let Some(p) = self.proto.as_mut() {
            p.terminate(reason.clone());
        }
        // Best effort: the Terminate message is tiny, one write either takes it or not.
        self.flush();
        let was_connecting = !matches!(self.phase, Phase::Ready);
        if was_connecting {
            self.targets.clear();
            self.last_error = Some(reason.clone());
            if let Some(p) = self.proto.as_mut() {
                while p.poll_event().is_some() {}
            }
            self.proto = None;
            self.finish_connect(Err(reason));
        } else {
            self.process_events(now);
        }
    }
}

enum Opened {
    Socket(Socket, Peer),
    Target(Target),
}

/// The address a socket was connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Peer {
    Tcp(std::net::SocketAddr),
    Unix(std::path::PathBuf),
}

/// Opens a non-blocking socket to `target`. A host name with several addresses yields a
/// socket to the first and further targets for the others.
fn open(target: &Target) -> Result<Vec<Opened>, Error> {
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
            Ok(vec![Opened::Socket(
                Socket::Unix(s),
                Peer::Unix(path.clone()),
            )])
        }
        Target::Tcp { host, addr, port } => {
            let addrs: Vec<std::net::SocketAddr> = match addr {
                Some(ip) => vec![std::net::SocketAddr::new(*ip, *port)],
                None => (host.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(|e| Error::io(&format!("could not translate host name {host:?}"), e))?
                    .collect(),
            };
            let Some(first) = addrs.first() else {
                return Err(Error::connection(format!(
                    "host name {host:?} has no address"
                )));
            };
            let s = mio::net::TcpStream::connect(*first).map_err(|e| {
                Error::io(&format!("could not connect to the server at {first}"), e)
            })?;
            // Small requests must not wait for Nagle's timer.
            let _ = s.set_nodelay(true);
            let mut out = vec![Opened::Socket(Socket::Tcp(s), Peer::Tcp(*first))];
            for a in &addrs[1..] {
                out.push(Opened::Target(Target::Tcp {
                    host: host.clone(),
                    addr: Some(a.ip()),
                    port: *port,
                }));
            }
            Ok(out)
        }
    }
}
