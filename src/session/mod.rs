//! The session core: one PostgreSQL connection's state, held exactly once, under any driver.
//!
//! [`Session`] owns the durable state of a connection (the options, the type registry, the
//! NOTIFY listeners, the statement cache, the server session's identity), the requests in
//! flight and held ([`Recipient`]s), one deadline table, the [`Phase`] with what belongs to
//! it, and the [`Action`]s waiting for the driver; it survives reconnects, so nothing is
//! copied from one connect to the next by hand. It is loop-free: it never registers itself
//! anywhere, never reads the clock (every call that needs the time takes `now`) and never
//! runs user code. What must reach user code (a completion, a notification, a notice, COPY
//! data, a value to drop) comes out as an [`Action`] that a driver runs once it holds no
//! borrow of the session.
//!
//! The rest of the session lives beside it, each part in a file of its own:
//! - `walk.rs`: the connect walk (the attempts listed before connecting; retry / next /
//!   give up), `target.rs`: whether a server fits target_session_attrs;
//! - `connect.rs`: the session's side of a connect (`connect` to `Action::Connected`);
//! - `transport/`: the socket and TLS together (the only place that knows of TLS);
//! - `core.rs`: [`Core`], the session in a `RefCell` beside its driver, and [`Drive`];
//! - `rows.rs`: a streamed query's rows, one read's worth at a time;
//! - `ops/`: one operation per file, all going through [`Core::request`].
//!
//! The methods, by group:
//! - setup and durable state: `new`, `set_dsn`, `set_password`, `set_listener`,
//!   `forget_statements`;
//! - getters (getters.rs): `stage`, `is_closed`, `parameter`, `server_version`, `reached`,
//!   `pending`, `ssl_in_use`, …; here `cancel_target`;
//! - requests: `request`, `request_copy_out`, `take_copy_source` / `feed_copy`;
//! - events in: `connect`, `handle_ready`, `handle_timeout`, `poll_resolved`, `close`;
//! - what a driver polls after each: `source` / `socket_generation`, `wants_write`,
//!   `next_deadline`, `take_actions`.
//!
//! The order a driver follows: `connect(now)`; then on every turn (1) register `source()`
//! again when `socket_generation()` changed, for readable, and writable while
//! `wants_write()`; (2) feed what happened: `handle_ready(..)` for readiness,
//! `handle_timeout(now)` once `next_deadline()` passed, `poll_resolved(now)` when a lookup
//! finished (a driver with no `Notify` polls while `is_resolving()`); (3) pump COPY sources
//! with no borrow held (`Core::pump_copy`); (4) `take_actions()` and run them with no borrow
//! held (its own `Complete` / `Connected` / `Closed` / `Cancel`, and `Action::deliver` for
//! the callbacks every driver runs alike).
//!
//! Identities are process-wide: each core has an id from one counter, statement names come
//! from another, and each server session (one successful connect) has an identity a prepared
//! statement holds weakly, so a statement can only ever run as itself.

pub(crate) mod cache;
mod connect;
mod copy_both;
mod core;
mod getters;
pub(crate) mod ops;
mod rows;
mod target;
pub(crate) mod transport;
mod walk;

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::conninfo::{Config, Target};
use crate::error::{DbError, Error, ErrorKind};
use crate::proto::{
    CopySource, Credentials, Event, Protocol, Request, Response, Types, DEFAULT_MAX_MESSAGE_SIZE,
};
use crate::types::QuoteContext;
use cache::StatementCache;
use target::{Fit, Probe, ServerState};
use transport::{Peer, Socket, Transport};
use walk::Walk;

pub(crate) use self::core::{Core, Drive};
pub(crate) use rows::RowSink;

/// A completion callback for one request.
pub(crate) type Callback = Box<dyn FnOnce(Result<Response, Error>)>;

/// Who a request's answer goes to: a callback of the response, or (the most common request,
/// a simple query) the caller of a cursor, its response turned into one on delivery, so
/// that the operation boxes no callback of its own around the caller's.
pub(crate) enum Waiter {
    Response(Callback),
    /// The query text names the cursor when the result does not carry its own.
    Cursor(crate::row::QueryText, ops::Done<crate::row::Cursor>),
}

impl Waiter {
    /// Answers, from the driver's delivery (no borrow held).
    #[inline]
    pub(crate) fn answer(self, result: Result<Response, Error>) {
        match self {
            Waiter::Response(cb) => cb(result),
            Waiter::Cursor(query, done) => {
                done.call(result.and_then(|resp| ops::to_cursor(query, resp)))
            }
        }
    }
}
/// A NOTIFY listener.
pub(crate) type Listener = Rc<RefCell<dyn FnMut(&Notification)>>;
/// A notice handler.
pub(crate) type NoticeHandler = Rc<RefCell<dyn FnMut(&DbError)>>;
/// Where COPY TO STDOUT data goes.
pub(crate) type CopySink = Rc<RefCell<dyn FnMut(&[u8])>>;

/// Numbers connections and statements across the whole process: never a heap address, never
/// reused.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A process-wide unique number.
pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Shuffles in place (load_balance_hosts=random), with fastrand's per-thread generator: a
/// spread is all that is needed.
pub(crate) fn shuffle<T>(items: &mut [T]) {
    fastrand::shuffle(items);
}

/// A statement name no other statement of this process has had.
pub(crate) fn statement_name(prefix: &str) -> String {
    format!("momoko_{prefix}{}", next_id())
}

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

/// Something the driver must run once it holds no borrow of the session.
pub(crate) enum Action {
    /// A request finished.
    Complete(Waiter, Result<Response, Error>),
    /// A caller answered before anything was sent (a parameter that does not render, a
    /// wrong count): run in order with the completions, never inside the call that queued it.
    Answer(Box<dyn FnOnce()>),
    /// The connect attempt finished (after setsession).
    Connected(Result<(), Error>),
    /// A notification for a listener.
    Notify(Listener, Notification),
    /// A notice for the notice handler.
    Notice(NoticeHandler, Box<DbError>),
    /// COPY TO STDOUT data for a sink.
    CopyData(CopySink, Bytes),
    /// Rows of a streamed query, those one read produced, for its sink: each is dropped
    /// once the sink has seen it.
    Rows(RowSink, crate::row::Rows),
    /// The established connection was lost or closed.
    Closed(Error),
    /// A request ran past its query_timeout: the driver sends a CancelRequest.
    Cancel,
    /// A value holding user code (a COPY source, a request that will never be sent): dropped
    /// by the driver, since its captures' destructors are user code too.
    Release(Box<dyn std::any::Any>),
}

impl Action {
    /// Runs the callbacks every driver runs the same way (a listener, the notice handler, a
    /// COPY sink, a release) and hands back the actions the driver must handle itself. A
    /// callback that is already running (re-entered from inside itself) is skipped, not
    /// borrowed twice.
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
            Action::Rows(sink, rows) => match sink.try_borrow_mut() {
                Ok(mut s) => rows.for_each_ref(|row| s(row)),
                Err(_) => log::warn!(
                    "a stream callback was re-entered; dropped {} rows",
                    rows.len()
                ),
            },
            Action::Release(value) => drop(value),
            other => return Some(other),
        }
        None
    }
}

/// What waits for each request in flight, in order.
enum Recipient {
    User(Waiter),
    /// A setsession statement; the last one finishes the connect.
    Setsession {
        last: bool,
    },
    /// A COPY TO STDOUT with its sink.
    CopyOut(Callback, CopySink),
    /// A streamed query with the sink of its rows.
    Rows(Callback, RowSink),
    /// A request that timed out: its caller was answered already, its answer is dropped.
    Discard,
}

/// A waiter with the instant its request must be answered by.
struct Pending {
    waiter: Recipient,
    deadline: Option<Instant>,
}

/// The session's deadline table: with the oldest request's query_timeout (kept on its
/// waiter), everything [`Session::next_deadline`] reports and [`Session::handle_timeout`]
/// acts on.
#[derive(Debug, Clone, Copy, Default)]
struct Deadlines {
    /// The connect attempt under way fails then (connect_timeout, per attempt).
    connect: Option<Instant>,
    /// A timed-out request still unanswered must be answered by then, or the connection
    /// is given up (the server or the network is gone).
    discard: Option<Instant>,
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
    /// A request not answered within this long fails with `ErrorKind::Timeout` and is
    /// cancelled on the server.
    pub(crate) query_timeout: Option<Duration>,
    /// Statements `query` keeps prepared per connection (default 256); 0 runs every
    /// `query` on the unnamed statement.
    pub(crate) statement_cache_size: Option<usize>,
    /// A password that overrides the connection string's and the password file's: set by
    /// a pool's password callback before each connect (rotating credentials).
    pub(crate) password: Option<String>,
    /// A configuration built in code, used instead of the connection string until
    /// `set_dsn` gives one.
    pub(crate) config: Option<Config>,
    /// Requests wait for the driver's next poll before they are written (see
    /// `ConnectionBuilder::poll_before_write`); the session itself never reads it.
    pub(crate) poll_before_write: bool,
    /// The TLS client configuration, built once and shared by every connection these
    /// options are cloned into (a pool's) and by their reconnects, so that they resume.
    pub(crate) tls: transport::TlsCache,
    /// The observer and the statement log settings given in code (see `observe`).
    pub(crate) observe: crate::observe::ObserveOptions,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("setsession", &self.setsession)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_message_size", &self.max_message_size)
            .field("query_timeout", &self.query_timeout)
            .field("statement_cache_size", &self.statement_cache_size)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("config", &self.config)
            .field("poll_before_write", &self.poll_before_write)
            .field("observe", &self.observe)
            .finish_non_exhaustive()
    }
}

/// Where the session stands, with what belongs to that phase alone.
///
/// ```text
///   New ──connect──▶ Connecting ──socket up──▶ [SslRequest ──S──▶ TlsHandshake | N: plain──▶] Starting ──ReadyForQuery──▶ Setsession ──last ok──▶ Ready
///                       │  ▲                     │                      (probing) │             (error) │             (retire)
///                       │  └──next attempt───────┤                                │                     │
///                       └────────────────────────┴────── the walk gives up ───────┴─────────────────────┴──▶ Closed (connect_error)
///   Ready ──lost, closed or retired──▶ Closed        Closed ──connect──▶ Connecting (a reconnect keeps listeners, types and options)
/// ```
#[derive(Debug)]
enum Phase {
    New,
    /// A name lookup or the socket's connect is under way.
    Connecting,
    /// The SSLRequest is sent; the server's one-byte answer is awaited.
    SslRequest,
    /// The server said `S`: the TLS handshake runs before anything of PostgreSQL's.
    TlsHandshake,
    /// Startup and authentication; then, for target_session_attrs on a server that did not
    /// report enough (before 14), its answer to libpq's question.
    Starting {
        /// The question in flight, with what was known before it.
        probing: Option<(Probe, ServerState)>,
    },
    /// The setsession statements run; the first failure fails the connect.
    Setsession {
        error: Option<Error>,
    },
    Ready {
        /// The server stopped fitting target_session_attrs (a ParameterStatus change): the
        /// connection is closed as soon as nothing is in flight.
        retire: Option<Error>,
    },
    Closed {
        /// Why the last connect failed (None: it closed once ready): what a request made on
        /// the closed connection is told.
        connect_error: Option<Error>,
    },
}

impl Phase {
    fn stage(&self) -> Stage {
        match self {
            Phase::New => Stage::New,
            Phase::Connecting => Stage::Connecting,
            Phase::SslRequest => Stage::SslRequest,
            Phase::TlsHandshake => Stage::TlsHandshake,
            Phase::Starting { .. } => Stage::Starting,
            Phase::Setsession { .. } => Stage::Setsession,
            Phase::Ready { .. } => Stage::Ready,
            Phase::Closed { .. } => Stage::Closed,
        }
    }
}

/// The session's [`Phase`] without its data, for drivers and operations to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    New,
    Connecting,
    SslRequest,
    TlsHandshake,
    Starting,
    Setsession,
    Ready,
    Closed,
}

/// A wake-up from another thread: the driver brings the session's news to its own thread.
pub(crate) type Notify = std::sync::Arc<dyn Fn() + Send + Sync>;

/// What a request on a closed connection is told, before the cause.
const CLOSED: &str = "the connection is closed";

/// How long a cancelled request may take to be answered before the connection is given up.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// See the module documentation.
pub(crate) struct Session {
    // What survives reconnects.
    dsn: String,
    options: Options,
    types: Rc<Types>,
    listeners: HashMap<String, Listener>,
    /// Statements `query` prepared in the current server session.
    pub(crate) cache: StatementCache,
    /// The current server session; replaced at every successful connect.
    identity: Rc<()>,
    server_version: Option<i32>,

    // One connect attempt and what it established.
    phase: Phase,
    /// The connect walk: the attempts listed, the one under way, the lookup.
    walk: Walk,
    /// Tells the driver, from the lookup thread, that a lookup finished (None: the driver
    /// polls, see `is_resolving`).
    pub(crate) notify: Option<Notify>,
    startup_params: Vec<(String, String)>,
    /// Startup parameters of momoko's own (the pinned text styles) that a server or pooler
    /// refused: left out of every later connect of this session.
    refused_params: Vec<String>,
    credentials: Credentials,
    connect_timeout: Option<Duration>,
    max_message_size: usize,
    setsession: Vec<String>,
    /// The socket and the TLS session over it.
    transport: Transport,
    proto: Option<Protocol>,
    waiters: VecDeque<Pending>,
    /// Requests made before the connection was ready; sent after setsession.
    held: VecDeque<(Request, Recipient)>,
    /// Every instant the session must be woken at, but the requests' own (on `waiters`).
    deadlines: Deadlines,
    /// Requests answered so far: the oldest in flight is number `answered`.
    answered: u64,
    /// How many waiters are `Discard` (timed out, answer still to come).
    discards: usize,
    actions: Vec<Action>,
    /// An emptied `actions` handed back by the driver ([`Session::recycle_actions`]), so
    /// that a round of delivery allocates nothing.
    spare_actions: Vec<Action>,
    config: Option<Config>,
    /// The `now` of the latest call that passed one: the clock of requests released by a
    /// connect, whose query_timeout starts when the connection became ready.
    now: Option<Instant>,
    /// What operations are observed with (resolved again at each connect, when the
    /// connection string's keywords are read).
    observing: Rc<crate::observe::Observing>,
    /// The spans of the connect under way (nothing without the `tracing` feature).
    pub(crate) trace: crate::observe::spans::ConnectTrace,
    /// A replication stream paused its reading: the socket is left unread (TCP pushes back
    /// on the server) until it resumes; an error or a hang-up is still read.
    read_paused: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("phase", &self.phase)
            .field("in_flight", &self.waiters.len())
            .field("held", &self.held.len())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session for `dsn`, not yet connected.
    pub(crate) fn new(dsn: String, options: Options) -> Session {
        let observing = crate::observe::Observing::new(&options.observe, options.config.as_ref());
        Session {
            dsn,
            max_message_size: options.max_message_size.unwrap_or(DEFAULT_MAX_MESSAGE_SIZE),
            options,
            types: Rc::default(),
            listeners: HashMap::new(),
            cache: StatementCache::default(),
            identity: Rc::new(()),
            server_version: None,
            phase: Phase::New,
            walk: Walk::default(),
            notify: None,
            startup_params: Vec::new(),
            refused_params: Vec::new(),
            credentials: Credentials::default(),
            connect_timeout: None,
            setsession: Vec::new(),
            transport: Transport::default(),
            proto: None,
            waiters: VecDeque::new(),
            held: VecDeque::new(),
            deadlines: Deadlines::default(),
            answered: 0,
            discards: 0,
            actions: Vec::new(),
            spare_actions: Vec::new(),
            config: None,
            now: None,
            observing,
            trace: Default::default(),
            read_paused: false,
        }
    }

    // ---- getters: in getters.rs; the cancel exchange's needs stay here ----

    /// Everything a CancelRequest needs: where, the backend's key, the request it would hit
    /// and the TLS session to use. What is queued is written first, so that the request to
    /// cancel reaches the server before the cancel does.
    #[allow(clippy::type_complexity)]
    pub(crate) fn cancel_target(
        &mut self,
    ) -> Option<(
        (Peer, crate::proto::BackendKey),
        Option<u64>,
        Option<crate::cancel::TlsCancel>,
    )> {
        self.flush();
        let key = self.backend_key().cloned();
        self.peer()
            .cloned()
            .zip(key)
            .map(|t| (t, self.head_sequence(), self.cancel_tls()))
    }

    /// What a cancel request needs to go over TLS, when this connection is TLS.
    pub(crate) fn cancel_tls(&self) -> Option<crate::cancel::TlsCancel> {
        if !self.ssl_in_use() {
            return None;
        }
        self.transport.cancel_tls()
    }

    // ---- mutators ----

    /// Changes the connection string of the next connect.
    pub(crate) fn set_dsn(&mut self, dsn: &str) {
        dsn.clone_into(&mut self.dsn);
        self.options.config = None;
    }

    /// Sets the password every later connect sends, over the connection string's.
    pub(crate) fn set_password(&mut self, password: Option<String>) {
        self.options.password = password;
    }

    /// Forgets the server's prepared statements (after `DISCARD ALL` dropped them): cached
    /// and user-held statements are prepared again on next use, as after a reconnect.
    pub(crate) fn forget_statements(&mut self) {
        self.identity = Rc::new(());
        self.cache.clear();
    }

    /// Takes the actions to run. The driver runs them holding no borrow of this session.
    pub(crate) fn take_actions(&mut self) -> Vec<Action> {
        let spare = std::mem::take(&mut self.spare_actions);
        std::mem::replace(&mut self.actions, spare)
    }

    /// Takes back a vector [`Session::take_actions`] gave, once its actions ran (emptied
    /// here), for the next round.
    pub(crate) fn recycle_actions(&mut self, mut used: Vec<Action>) {
        used.clear();
        if self.spare_actions.capacity() < used.capacity() {
            self.spare_actions = used;
        }
    }

    /// Whether actions wait for the driver's delivery.
    pub(crate) fn has_actions(&self) -> bool {
        !self.actions.is_empty()
    }

    /// Whether the protocol has anything for [`Session::process_events`]: an event, or a
    /// finished COPY source to hand back.
    pub(crate) fn has_events(&self) -> bool {
        self.proto
            .as_ref()
            .is_some_and(|p| p.has_events() || p.has_spent_sources())
    }

    /// Registers or removes the listener of a channel (the LISTEN itself is a request).
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

    /// Drops the protocol core, handing whatever user code it still holds to the driver.
    fn drop_proto(&mut self) {
        // A question to this server dies with its connection.
        if let Phase::Starting { probing } = &mut self.phase {
            *probing = None;
        }
        if let Some(mut p) = self.proto.take() {
            while p.poll_event().is_some() {}
            for src in p.take_spent_sources() {
                self.actions.push(Action::Release(Box::new(src)));
            }
        }
    }

    fn finish_connect(&mut self, result: Result<(), Error>) {
        match &result {
            Ok(()) => {
                let reached = self.attempt_target();
                self.trace.done(Ok(reached));
            }
            Err(e) => self.trace.done(Err(e)),
        }
        match &result {
            Ok(()) => {
                self.phase = Phase::Ready { retire: None };
                self.deadlines.connect = None;
                // A new server session: statements of the last one are gone.
                self.identity = Rc::new(());
                self.cache.clear();
                self.server_version = self.proto.as_ref().and_then(Protocol::server_version);
                let held = std::mem::take(&mut self.held);
                for (req, waiter) in held {
                    self.send(req, waiter, None);
                }
            }
            Err(e) => {
                self.phase = Phase::Closed {
                    connect_error: Some(e.clone()),
                };
                self.deadlines.connect = None;
                self.transport.shut_down();
                let e = e.clone();
                for (req, waiter) in std::mem::take(&mut self.held) {
                    self.actions.push(Action::Release(Box::new(req)));
                    self.fail_waiter(waiter, e.clone());
                }
                for p in std::mem::take(&mut self.waiters) {
                    self.fail_waiter(p.waiter, e.clone());
                }
            }
        }
        self.actions.push(Action::Connected(result));
    }

    fn fail_waiter(&mut self, waiter: Recipient, e: Error) {
        match waiter {
            Recipient::User(w) => self.actions.push(Action::Complete(w, Err(e))),
            Recipient::CopyOut(cb, _) | Recipient::Rows(cb, _) => self
                .actions
                .push(Action::Complete(Waiter::Response(cb), Err(e))),
            Recipient::Setsession { .. } | Recipient::Discard => {}
        }
    }

    /// Queues a request with its completion callback.
    /// `now` is needed only for a query_timeout.
    pub(crate) fn request(&mut self, req: Request, cb: Callback, now: Option<Instant>) {
        if now.is_some() {
            self.now = now;
        }
        self.send(req, Recipient::User(Waiter::Response(cb)), now);
    }

    /// Queues a request whose response becomes a cursor for `done` (see [`Waiter`]).
    pub(crate) fn request_cursor(
        &mut self,
        req: Request,
        query: crate::row::QueryText,
        done: ops::Done<crate::row::Cursor>,
        now: Option<Instant>,
    ) {
        if now.is_some() {
            self.now = now;
        }
        self.send(req, Recipient::User(Waiter::Cursor(query, done)), now);
    }

    /// Queues a COPY TO STDOUT; its data goes to `sink` as it arrives.
    pub(crate) fn request_copy_out(
        &mut self,
        req: Request,
        sink: CopySink,
        cb: Callback,
        now: Option<Instant>,
    ) {
        self.send(req, Recipient::CopyOut(cb, sink), now);
    }

    /// `now` starts the request's query_timeout; `None` for requests released after the
    /// connect (their clock starts then, from the connect's own `now`).
    fn send(&mut self, req: Request, waiter: Recipient, now: Option<Instant>) {
        match self.stage() {
            Stage::Ready => {}
            Stage::New => {
                self.actions.push(Action::Release(Box::new(req)));
                let e = Error::usage("the connection is not connected: call connect() first");
                self.fail_waiter(waiter, e);
                return;
            }
            Stage::Closed => {
                self.actions.push(Action::Release(Box::new(req)));
                let closed_by = self.proto.as_ref().and_then(|p| p.close_error().cloned());
                // The cause once, never "closed" twice (see error.rs's rule).
                let connect_error = match &self.phase {
                    Phase::Closed { connect_error } => connect_error.as_ref(),
                    _ => None,
                };
                let e = match (connect_error, closed_by) {
                    (Some(cause), _) => Error::caused_by(
                        ErrorKind::Connection,
                        "the connection failed to connect",
                        cause,
                    ),
                    (None, Some(cause)) if cause.without_kind() != CLOSED => Error::caused_by(
                        ErrorKind::Connection,
                        CLOSED,
                        &cause.with_kind(ErrorKind::Connection),
                    ),
                    (None, _) => Error::connection(CLOSED),
                };
                self.fail_waiter(waiter, e);
                return;
            }
            _ if !matches!(waiter, Recipient::Setsession { .. }) => {
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
                if matches!(waiter, Recipient::Rows(..)) {
                    proto.stream_last();
                }
                let deadline = match waiter {
                    Recipient::User(_) | Recipient::CopyOut(..) | Recipient::Rows(..) => self
                        .options
                        .query_timeout
                        .zip(now.or(self.now))
                        .map(|(t, at)| at + t),
                    _ => None,
                };
                self.waiters.push_back(Pending { waiter, deadline })
            }
            Err(e) => self.fail_waiter(waiter, e),
        }
    }

    /// The socket is readable and/or writable (or in error). `read_closed`: the event also
    /// said the peer closed (or hung up), so reading goes on to the end of the stream
    /// rather than stopping at the first short read.
    pub(crate) fn handle_ready(
        &mut self,
        readable: bool,
        writable: bool,
        error: bool,
        read_closed: bool,
        now: Instant,
    ) {
        self.now = Some(now);
        if writable {
            self.transport.set_writable();
        }
        if !self.advance_handshake(readable, writable, error, now) {
            return;
        }
        if self.proto.is_some() {
            if (readable && !self.read_paused) || error || read_closed {
                self.read(error || read_closed);
            }
            self.flush();
            self.process_events(now);
        }
    }

    /// Deadlines passed: a connect attempt past its connect_timeout fails (and the next
    /// target is tried); a request past its query_timeout is answered with a Timeout.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.now = Some(now);
        self.check_query_timeout(now);
        self.check_connect_timeout(now);
    }

    /// The oldest request is past its query_timeout: its caller gets a Timeout error now,
    /// the server is asked to cancel it, and its answer will be dropped. If no answer comes
    /// within a grace period the connection is given up.
    fn check_query_timeout(&mut self, now: Instant) {
        if let Some(d) = self.deadlines.discard {
            if now >= d
                && self
                    .waiters
                    .front()
                    .is_some_and(|p| matches!(p.waiter, Recipient::Discard))
            {
                let e = Error::new(
                    ErrorKind::Timeout,
                    "the server did not answer a cancelled request: the connection is given up",
                );
                self.deadlines.discard = None;
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
        let waiter = std::mem::replace(&mut head.waiter, Recipient::Discard);
        self.discards += 1;
        let t = self.options.query_timeout.unwrap_or_default();
        let e = Error::new(
            ErrorKind::Timeout,
            format!("the query ran longer than its timeout of {t:?} and was cancelled"),
        )
        .with_code("57014");
        self.fail_waiter(waiter, e);
        self.deadlines.discard = Some(now + CANCEL_GRACE.max(t / 2));
        self.actions.push(Action::Cancel);
    }

    /// Reads what the socket has (see `Transport::read`). With `to_end` (the peer closed,
    /// or an error) it reads on to the end of the stream.
    fn read(&mut self, to_end: bool) {
        if let Some(proto) = self.proto.as_mut() {
            self.transport.read(proto, to_end);
        }
    }

    /// Writes what the protocol has to send, until the socket would block.
    pub(crate) fn flush(&mut self) {
        if let Some(proto) = self.proto.as_mut() {
            self.transport.flush(proto);
        }
    }

    /// The COPY source to pull from now, if the COPY being sent has room for more data and
    /// the socket is not full. The driver pulls it with no borrow held.
    pub(crate) fn take_copy_source(&mut self) -> Option<CopySource> {
        if self.transport.write_blocked() {
            return None;
        }
        self.proto.as_mut()?.take_copy_source()
    }

    /// Gives back a source from [`Session::take_copy_source`] with what was pulled.
    pub(crate) fn feed_copy(
        &mut self,
        source: CopySource,
        chunks: Vec<Bytes>,
        end: Option<Result<(), String>>,
    ) {
        let spent = match self.proto.as_mut() {
            Some(p) => p.feed_copy(source, chunks, end),
            None => Some(source),
        };
        if let Some(src) = spent {
            self.actions.push(Action::Release(Box::new(src)));
        }
    }

    /// Turns the protocol's events into actions and state changes.
    pub(crate) fn process_events(&mut self, now: Instant) {
        while let Some(proto) = self.proto.as_mut() {
            let Some(event) = proto.poll_event() else {
                for src in proto.take_spent_sources() {
                    self.actions.push(Action::Release(Box::new(src)));
                }
                break;
            };
            match event {
                Event::Connected => {
                    if let Some(method) = proto.auth_method() {
                        self.trace.auth(method);
                    }
                    let known = self.reported_state();
                    self.judge_target(known, now);
                }
                Event::Completed(result)
                    if matches!(self.phase, Phase::Starting { probing: Some(_) }) =>
                {
                    let probing = match &mut self.phase {
                        Phase::Starting { probing } => probing.take(),
                        _ => None,
                    };
                    if let Some((probe, known)) = probing {
                        self.take_probe_answer(probe, known, result, now);
                    }
                }
                Event::Completed(result) => {
                    let Some(Pending { waiter, .. }) = self.waiters.pop_front() else {
                        log::error!("a response arrived with no request waiting for it");
                        continue;
                    };
                    self.answered += 1;
                    if matches!(waiter, Recipient::Discard) {
                        self.discards -= 1;
                    }
                    if self.discards == 0 {
                        self.deadlines.discard = None;
                    }
                    match waiter {
                        Recipient::Discard => {
                            log::debug!("dropped the answer of a timed-out request");
                        }
                        Recipient::User(w) => self.actions.push(Action::Complete(w, result)),
                        Recipient::CopyOut(cb, _) | Recipient::Rows(cb, _) => self
                            .actions
                            .push(Action::Complete(Waiter::Response(cb), result)),
                        Recipient::Setsession { last } => {
                            if let Err(e) = result {
                                if let Phase::Setsession { error } = &mut self.phase {
                                    error.get_or_insert(e);
                                }
                            }
                            if last && self.stage() == Stage::Setsession {
                                let failed = match &mut self.phase {
                                    Phase::Setsession { error } => error.take(),
                                    _ => None,
                                };
                                match failed {
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
                        waiter: Recipient::CopyOut(_, sink),
                        ..
                    }) = self.waiters.front()
                    {
                        self.actions.push(Action::CopyData(sink.clone(), data));
                    }
                }
                Event::Rows(rows) => self.on_rows(rows),
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
                    if let Some(h) = &self.options.notice_handler {
                        self.actions.push(Action::Notice(h.clone(), db));
                    }
                }
                Event::ParameterChanged { name, value } => {
                    log::debug!("server parameter {name} is now {value:?}");
                    if self.stage() == Stage::Ready
                        && matches!(
                            name.as_str(),
                            "in_hot_standby" | "default_transaction_read_only"
                        )
                    {
                        // A promotion or a reload changed what this server is: a connection
                        // that no longer fits target_session_attrs is retired once idle.
                        // Only what the server reports counts here: one that reports
                        // nothing (before 14) sends no such change either.
                        if let Fit::Refused(e) = self.check_target(self.reported_state()) {
                            log::info!("retiring the connection: {e}");
                            if let Phase::Ready { retire } = &mut self.phase {
                                *retire = Some(e);
                            }
                        }
                    }
                }
                Event::Closed(e) => self.on_closed(e, now),
            }
        }
        if self.stage() == Stage::Ready && self.waiters.is_empty() && self.held.is_empty() {
            let retire = match &mut self.phase {
                Phase::Ready { retire } => retire.take(),
                _ => None,
            };
            if let Some(e) = retire {
                self.close(e, now);
            }
        }
    }

    fn on_closed(&mut self, e: Error, now: Instant) {
        // The protocol failed every request in flight before reporting Closed.
        self.transport.close_socket();
        match self.stage() {
            Stage::Connecting | Stage::SslRequest | Stage::TlsHandshake | Stage::Starting => {
                // A server that refuses us (authentication, too many clients) may be one of
                // several: libpq tries the next host.
                self.attempt_failed(e, now);
            }
            Stage::Setsession => self.finish_connect(Err(e)),
            Stage::Ready => {
                self.phase = Phase::Closed {
                    connect_error: None,
                };
                for (req, waiter) in std::mem::take(&mut self.held) {
                    self.actions.push(Action::Release(Box::new(req)));
                    self.fail_waiter(waiter, e.clone());
                }
                self.actions.push(Action::Closed(e));
            }
            Stage::New | Stage::Closed => {}
        }
    }

    /// Closes the connection from our side: a Terminate is sent if possible, everything in
    /// flight fails with `reason`.
    pub(crate) fn close(&mut self, reason: Error, now: Instant) {
        self.now = Some(now);
        if matches!(self.stage(), Stage::Closed | Stage::New) {
            return;
        }
        if let Some(p) = self.proto.as_mut() {
            p.terminate(reason.clone());
        }
        // Best effort: the Terminate message is tiny, one write either takes it or not.
        self.flush();
        if self.stage() != Stage::Ready {
            self.walk.abandon();
            self.drop_proto();
            self.finish_connect(Err(reason));
        } else {
            self.process_events(now);
        }
    }
}
