//! The sans-IO PostgreSQL protocol core: one connection's state, bytes in, bytes out.
//!
//! `Protocol` owns the startup and authentication exchange, the queue of requests sent to the
//! server, the matching of every response to its request, and the framing checks on what the
//! server sends. It never touches a socket, a clock or the loop: the caller feeds received
//! bytes to [`Protocol::handle_input`], writes what [`Protocol::transmit_buf`] holds, and
//! collects results with [`Protocol::poll_event`]. Anything the server sends that breaks the
//! protocol fails the whole connection with a clear error; nothing here panics on server input
//! or allocates more than the configured message bound.
//!
//! Requests are *sync units*: each one ends with exactly one ReadyForQuery from the server (a
//! simple Query, or an extended-protocol group closed by Sync). Several may be in flight at
//! once; their answers come back in order, so a FIFO is all the matching needs.

mod auth;
mod cert_hash;
mod framing;
mod version;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::{self, Message};
use postgres_protocol::message::frontend;

use crate::error::{DbError, Error};
use crate::row::{Column, Row};
use crate::types::TypeRegistry;

pub(crate) use auth::Credentials;
// For the TLS transport: the binding data of the server's certificate
// (Credentials::set_server_certificate wraps it).
#[allow(unused_imports)] // the fuzz entry points and tests call it directly
pub(crate) use cert_hash::tls_server_end_point;
pub(crate) use framing::DEFAULT_MAX_MESSAGE_SIZE;
pub(crate) use version::{BackendKey, Versions};

/// A request the protocol can send: each is one sync unit.
#[derive(Debug)]
pub(crate) enum Request {
    /// A simple-protocol Query message (possibly several statements).
    Simple { query: String },
    /// Parse + Describe(statement) + Sync: prepares a named statement.
    Prepare {
        name: String,
        query: String,
        param_types: Vec<u32>,
    },
    /// Bind + Execute + Sync on a prepared statement whose result columns are known.
    ExecutePrepared {
        statement: std::rc::Rc<str>,
        /// Already-encoded parameter values (None = NULL) and their formats.
        params: Vec<Option<Bytes>>,
        param_formats: Vec<i16>,
        /// Columns of the result, with the formats asked for in Bind.
        columns: Option<Arc<[Column]>>,
        /// One format per result column (0 text, 1 binary), as Bind sends them; shared by
        /// every execution of the statement.
        result_formats: std::rc::Rc<[i16]>,
        /// Ask for the portal's columns (Describe), when `columns` is not known yet.
        describe: bool,
    },
    /// Parse + Bind + Describe + Execute + Sync on the unnamed statement, in one piece: a
    /// parameterized query with no statement kept on the server (for transaction poolers
    /// such as PgBouncer, where the next Sync may land on another server connection).
    /// Results come back as text.
    ExecuteUnnamed {
        query: String,
        /// Parameter types for Parse (0: the server infers it).
        param_types: Vec<u32>,
        params: Vec<Option<Bytes>>,
        param_formats: Vec<i16>,
    },
    /// Several statements, each Parse + Bind + Describe + Execute on the unnamed statement,
    /// and one Sync: one round trip, one implicit transaction (all or nothing).
    Batch { queries: Vec<String> },
    /// Close(statement) + Sync: drops a prepared statement on the server.
    CloseStatement { name: String },
    /// A COPY FROM STDIN; its data is pulled from `source` as the socket takes it.
    CopyIn { query: String, source: CopySource },
    /// A COPY TO STDOUT; its data comes out as [`Event::CopyData`] before the completion.
    CopyOut { query: String },
}

/// Where COPY FROM STDIN data comes from: chunks pulled while the transmit buffer has room,
/// so a large COPY never sits in memory whole. An `Err` aborts the COPY with CopyFail.
pub(crate) struct CopySource(pub(crate) Box<dyn Iterator<Item = Result<Bytes, String>>>);

impl std::fmt::Debug for CopySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CopySource")
    }
}

/// How much COPY data is buffered for the socket before the source is asked for more.
const COPY_BUFFER: usize = 256 * 1024;

/// What a completed request produced.
#[derive(Debug)]
pub(crate) enum Response {
    /// The last result of a query (psycopg2 keeps only the last statement's result).
    Query(QueryResult),
    /// A prepared statement's parameter types and result columns.
    Prepared {
        param_types: Vec<u32>,
        columns: Option<Arc<[Column]>>,
    },
    /// A statement was closed.
    Closed,
    /// Every result of a batch, in order.
    Batch(Vec<QueryResult>),
}

/// The result of one statement: its columns, rows and command tag.
#[derive(Debug, Default)]
pub(crate) struct QueryResult {
    pub(crate) columns: Option<Arc<[Column]>>,
    pub(crate) rows: Vec<Row>,
    pub(crate) tag: Option<String>,
    /// The text of a simple query, handed back (not copied) for the cursor.
    pub(crate) query: String,
}

/// What the protocol reports to its driver.
#[derive(Debug)]
pub(crate) enum Event {
    /// Startup finished: authenticated, parameters received, ReadyForQuery seen.
    Connected,
    /// The oldest in-flight request completed, successfully or with the server's error.
    Completed(Result<Response, Error>),
    /// A chunk of COPY TO STDOUT data for the oldest in-flight request.
    CopyData(Bytes),
    /// A NOTIFY delivered to this session.
    Notification {
        process_id: i32,
        channel: String,
        payload: String,
    },
    /// A NoticeResponse (warnings, notices); also logged.
    Notice(Box<DbError>),
    /// A run-time ParameterStatus change (e.g. `SET TIME ZONE`).
    ParameterChanged { name: String, value: String },
    /// The connection is finished: the error says why (a clean close is a Connection error
    /// saying so). No event follows this one.
    Closed(Error),
}

/// The connection's state.
///
/// ```text
///   Startup ──auth ok──▶ Authenticated ──ReadyForQuery──▶ Ready ──close/error──▶ Closed
///      │                       │                                                   ▲
///      └──────────error────────┴───────────────────────────────────────────────────┘
/// ```
#[derive(Debug)]
enum State {
    /// The StartupMessage is queued; authentication is in progress.
    Startup(auth::Auth),
    /// AuthenticationOk received; waiting for BackendKeyData/ParameterStatus/ReadyForQuery.
    Authenticated,
    /// Ready for requests (some may be in flight).
    Ready,
    /// Finished; the error is sticky.
    Closed(Error),
}

/// See [`Protocol::holds_for_batch`]: the depth of a pipeline at which new requests wait
/// to go out together.
pub(crate) const PIPELINE_HOLD: usize = 32;

/// What an in-flight request has collected so far.
#[derive(Debug)]
struct InFlight {
    kind: Kind,
    result: QueryResult,
    error: Option<Error>,
    /// For Prepare: the parameter types.
    param_types: Vec<u32>,
    /// For Batch: the results of the statements already complete.
    batch: Vec<QueryResult>,
    /// For COPY IN: the data still to send, once the server asks for it.
    copy_source: Option<CopySource>,
    /// For COPY IN: the server is in copy-in mode and we are still sending.
    copying: bool,
    /// The request's encoded length; its bytes wait in `held` while a COPY is being sent.
    len: u64,
    held: bool,
    /// Whether the server has answered anything for this request yet.
    answered: bool,
    /// Where the request starts in the stream of bytes written to the server: if the writes
    /// never got that far, the server never saw it.
    start: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Simple,
    Batch,
    Prepare,
    Execute,
    /// ExecuteUnnamed: Execute with a ParseComplete first.
    Unnamed,
    Close,
    CopyIn,
    CopyOut,
}

/// One PostgreSQL connection's protocol state. See the module documentation.
#[derive(Debug)]
pub(crate) struct Protocol {
    state: State,
    out: BytesMut,
    input: BytesMut,
    in_flight: VecDeque<InFlight>,
    events: VecDeque<Event>,
    server_params: HashMap<String, String>,
    backend_key: Option<BackendKey>,
    /// The protocol versions allowed, and the one in use: asked for, then as negotiated.
    versions: Versions,
    transaction_status: u8,
    max_message_size: usize,
    /// The connection's type registry, shared with its session: one registry, not a copy.
    types: Rc<Types>,
    /// The SQLSTATE of the last notice, attached to a "connection lost" error: an immediate
    /// shutdown sends only a WARNING 57P01 before closing.
    last_notice_code: Option<String>,
    /// Bytes ever written to the server. Bytes leave the transmit buffer only by being
    /// written, so those ever queued are this plus what the buffer holds
    /// (`queued_total()`): a request's `start` is such an offset.
    sent_total: u64,
    /// Requests made while a COPY FROM STDIN is being sent: the server accepts nothing but
    /// copy data until it ends, so they wait here, encoded, in order.
    held: BytesMut,
    /// COPY FROM STDIN requests in flight.
    copy_flights: usize,
    /// The bytes of the RowDescription being handled, and the last one with its columns.
    row_desc_bytes: Option<Bytes>,
    last_row_desc: Option<(Bytes, Arc<[Column]>, u64)>,
    /// COPY sources the protocol is done with. Dropping one runs user code (its captures), so
    /// the session drops them after every borrow is released.
    spent_sources: Vec<CopySource>,
}

/// The type registry of one connection, shared by its session and its protocol core. The
/// epoch changes with every registration, so that columns resolved before are not reused.
#[derive(Debug, Default)]
pub(crate) struct Types {
    registry: std::cell::RefCell<TypeRegistry>,
    epoch: std::cell::Cell<u64>,
}

impl Types {
    /// Records hstore's OIDs in this database.
    pub(crate) fn register_hstore(&self, oid: u32, array_oid: u32) {
        self.registry.borrow_mut().register_hstore(oid, array_oid);
        self.epoch.set(self.epoch.get() + 1);
    }

    /// A copy of the registry as it is now.
    pub(crate) fn snapshot(&self) -> TypeRegistry {
        self.registry.borrow().clone()
    }
}

impl Protocol {
    /// A new connection: the StartupMessage, asking for the newest version `versions`
    /// allows, is queued for transmission at once.
    pub(crate) fn new(
        startup_params: &[(String, String)],
        credentials: Credentials,
        max_message_size: usize,
        versions: Versions,
    ) -> Protocol {
        let mut out = BytesMut::with_capacity(256);
        let state = match version::startup_message(startup_params, &versions, &mut out) {
            Ok(()) => State::Startup(auth::Auth::new(credentials)),
            Err(e) => State::Closed(e),
        };
        let mut p = Protocol {
            state,
            out,
            input: BytesMut::with_capacity(8192),
            in_flight: VecDeque::new(),
            events: VecDeque::new(),
            server_params: HashMap::new(),
            backend_key: None,
            versions,
            transaction_status: b'I',
            max_message_size,
            types: Rc::default(),
            last_notice_code: None,
            sent_total: 0,
            held: BytesMut::new(),
            copy_flights: 0,
            row_desc_bytes: None,
            last_row_desc: None,
            spent_sources: Vec::new(),
        };
        if let State::Closed(e) = &p.state {
            p.events.push_back(Event::Closed(e.clone()));
        }
        p
    }

    /// Bytes waiting to be written to the socket. The driver writes a prefix and then calls
    /// [`Protocol::advance_transmit`] with how much was written.
    pub(crate) fn transmit_buf(&self) -> &[u8] {
        &self.out
    }

    /// Marks `n` bytes of the transmit buffer as written.
    pub(crate) fn advance_transmit(&mut self, n: usize) {
        let n = n.min(self.out.len());
        self.sent_total += n as u64;
        let _ = self.out.split_to(n);
        if self.out.is_empty() && self.out.capacity() > 1 << 20 {
            // A large COPY or query went out: don't keep its buffer for the connection's life.
            self.out = BytesMut::with_capacity(8192);
        }
    }

    /// Whether there is anything to write.
    pub(crate) fn wants_write(&self) -> bool {
        !self.out.is_empty()
    }

    /// Whether the startup exchange is finished and requests may be sent.
    #[cfg(test)]
    pub(crate) fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready)
    }

    /// Whether the connection is finished.
    pub(crate) fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }

    /// The error that closed the connection, if it is closed.
    pub(crate) fn close_error(&self) -> Option<&Error> {
        match &self.state {
            State::Closed(e) => Some(e),
            _ => None,
        }
    }

    /// Number of requests sent and not yet answered.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Bytes ever queued for the server: those written and those waiting to be.
    fn queued_total(&self) -> u64 {
        self.sent_total + self.out.len() as u64
    }

    /// Whether the requests waiting in the transmit buffer can wait for more to join them:
    /// while at least [`PIPELINE_HOLD`] requests already sent are unanswered, the server has
    /// work queued, so writing a few more now would only cost a write (and, on the server,
    /// a read and a flush) that a larger batch shares. They go out as soon as fewer than
    /// that are left unanswered (each answer that arrives is such a moment) or as many
    /// are waiting. Only ordinary requests wait: with anything else in the buffer (a COPY,
    /// requests held behind one, a message that is no request) it is written at once.
    pub(crate) fn holds_for_batch(&self) -> bool {
        if self.out.is_empty() || self.copy_flights > 0 || !self.held.is_empty() {
            return false;
        }
        // The unsent requests at the end of the queue must be all the buffer holds.
        let unsent_bytes = self.out.len() as u64;
        let (mut unsent, mut bytes) = (0usize, 0u64);
        for f in self.in_flight.iter().rev() {
            if f.start < self.sent_total {
                break;
            }
            unsent += 1;
            bytes += f.len;
        }
        let sent = self.in_flight.len() - unsent;
        bytes == unsent_bytes && sent >= PIPELINE_HOLD && unsent < PIPELINE_HOLD
    }

    /// A server parameter reported by ParameterStatus (`server_version`, `TimeZone`…).
    pub(crate) fn parameter(&self, name: &str) -> Option<&str> {
        self.server_params.get(name).map(String::as_str)
    }

    /// The server version as libpq's PQserverVersion computes it (150018 for 15.18).
    pub(crate) fn server_version(&self) -> Option<i32> {
        self.parameter("server_version")
            .and_then(parse_server_version)
    }

    /// The process id and secret key for CancelRequest.
    pub(crate) fn backend_key(&self) -> Option<&BackendKey> {
        self.backend_key.as_ref()
    }

    /// The protocol version the connection speaks, `(3, 2)` or `(3, 0)`: known once the
    /// server authenticated it (NegotiateProtocolVersion can only come before that).
    pub(crate) fn protocol_version(&self) -> Option<(u16, u16)> {
        self.versions.settled().map(|v| v.pair())
    }

    /// The transaction status of the last ReadyForQuery: `I` idle, `T` in a transaction,
    /// `E` in a failed transaction.
    pub(crate) fn transaction_status(&self) -> u8 {
        self.transaction_status
    }

    /// Shares the session's type registry (hstore's OID once registered).
    pub(crate) fn set_types(&mut self, types: Rc<Types>) {
        self.last_row_desc = None;
        self.types = types;
    }

    /// Queues a request. Fails (without queuing) when the connection is closed or not ready,
    /// or when the request cannot be encoded (e.g. a NUL byte in the query).
    pub(crate) fn send(&mut self, request: Request) -> Result<(), Error> {
        match &self.state {
            State::Ready => {}
            State::Closed(e) => return Err(e.clone()),
            _ => {
                return Err(Error::usage(
                    "the connection is not ready: startup is in progress",
                ))
            }
        }
        let hold = self.copy_in_progress();
        let mut buf = if hold {
            std::mem::take(&mut self.held)
        } else {
            std::mem::take(&mut self.out)
        };
        let mark = buf.len();
        let encoded = Self::encode(request, &mut buf);
        if encoded.is_err() {
            buf.truncate(mark);
        }
        let len = (buf.len() - mark) as u64;
        if hold {
            self.held = buf;
        } else {
            self.out = buf;
        }
        let mut flight = encoded?;
        flight.len = len;
        flight.held = hold;
        if !hold {
            flight.start = self.queued_total() - len;
        }
        if flight.kind == Kind::CopyIn {
            self.copy_flights += 1;
        }
        self.in_flight.push_back(flight);
        Ok(())
    }

    /// Whether a COPY FROM STDIN is in flight and not yet fully sent.
    fn copy_in_progress(&self) -> bool {
        // Most connections never COPY: no scan of the requests in flight for them.
        self.copy_flights > 0
            && self
                .in_flight
                .iter()
                .any(|f| f.kind == Kind::CopyIn && (f.copying || f.copy_source.is_some()))
    }

    /// The source of the COPY FROM STDIN being sent, taken out when the transmit buffer has
    /// room for more of its data. The caller pulls chunks from it with no borrow held (the
    /// source is user code) and gives it back with [`Protocol::feed_copy`].
    pub(crate) fn take_copy_source(&mut self) -> Option<CopySource> {
        if self.out.len() >= COPY_BUFFER / 2 {
            return None;
        }
        let flight = self.in_flight.front_mut()?;
        if !flight.copying {
            return None;
        }
        flight.copy_source.take()
    }

    /// How many bytes of COPY data [`Protocol::feed_copy`] takes at once.
    pub(crate) const COPY_CHUNK_BUDGET: usize = COPY_BUFFER;

    /// Queues chunks pulled from a source that [`Protocol::take_copy_source`] gave out, and
    /// how the source ended (`Some(Ok)`: exhausted, `Some(Err)`: it failed). The source is
    /// kept for more unless it ended or the COPY is over (the server refused it, or the
    /// connection closed while the chunks were being pulled): then it is handed back, for
    /// the caller to drop with no borrow held.
    pub(crate) fn feed_copy(
        &mut self,
        source: CopySource,
        chunks: Vec<Bytes>,
        end: Option<Result<(), String>>,
    ) -> Option<CopySource> {
        let still = !self.is_closed()
            && self
                .in_flight
                .front()
                .is_some_and(|f| f.kind == Kind::CopyIn && f.copying && f.copy_source.is_none());
        if !still {
            return Some(source);
        }
        let mut ended = false;
        for chunk in chunks {
            if chunk.is_empty() {
                continue;
            }
            match frontend::CopyData::new(chunk) {
                Ok(d) => d.write(&mut self.out),
                Err(e) => {
                    let _ = frontend::copy_fail(&format!("COPY chunk refused: {e}"), &mut self.out);
                    ended = true;
                    break;
                }
            }
        }
        if !ended {
            match end {
                Some(Ok(())) => {
                    frontend::copy_done(&mut self.out);
                    ended = true;
                }
                Some(Err(msg)) => {
                    let msg = msg.replace('\0', " ");
                    let _ = frontend::copy_fail(&msg, &mut self.out);
                    ended = true;
                }
                None => {}
            }
        }
        let flight = self.in_flight.front_mut().expect("checked above");
        if ended {
            flight.copying = false;
            self.release_held();
            Some(source)
        } else {
            flight.copy_source = Some(source);
            None
        }
    }

    /// COPY sources the protocol no longer needs, to be dropped with no borrow held.
    pub(crate) fn take_spent_sources(&mut self) -> Vec<CopySource> {
        std::mem::take(&mut self.spent_sources)
    }

    /// Moves the requests held behind a COPY into the transmit buffer, in order.
    fn release_held(&mut self) {
        if self.copy_in_progress() || self.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.held);
        let mut at = self.queued_total();
        self.out.extend_from_slice(&held);
        for f in self.in_flight.iter_mut().filter(|f| f.held) {
            f.held = false;
            f.start = at;
            at += f.len;
        }
    }

    fn encode(request: Request, out: &mut BytesMut) -> Result<InFlight, Error> {
        let enc = |e: std::io::Error| Error::usage(format!("cannot encode the request: {e}"));
        let mut flight = InFlight {
            kind: Kind::Simple,
            result: QueryResult::default(),
            error: None,
            param_types: Vec::new(),
            batch: Vec::new(),
            copy_source: None,
            copying: false,
            len: 0,
            held: false,
            answered: false,
            start: 0,
        };
        match request {
            Request::Simple { query } => {
                frontend::query(&query, out).map_err(enc)?;
                flight.result.query = query;
            }
            Request::Prepare {
                name,
                query,
                param_types,
            } => {
                flight.kind = Kind::Prepare;
                frontend::parse(&name, &query, param_types.iter().copied(), out).map_err(enc)?;
                frontend::describe(b'S', &name, out).map_err(enc)?;
                frontend::sync(out);
            }
            Request::ExecutePrepared {
                statement,
                params,
                param_formats,
                columns,
                result_formats,
                describe,
            } => {
                flight.kind = Kind::Execute;
                flight.result.columns = columns;
                frontend::bind(
                    "",
                    &statement,
                    param_formats,
                    params.iter(),
                    |v, buf| match v {
                        Some(b) => {
                            buf.extend_from_slice(b);
                            Ok(postgres_protocol::IsNull::No)
                        }
                        None => Ok(postgres_protocol::IsNull::Yes),
                    },
                    result_formats.iter().copied(),
                    out,
                )
                .map_err(|e| match e {
                    frontend::BindError::Conversion(e) => Error::conversion(e.to_string()),
                    frontend::BindError::Serialization(e) => enc(e),
                })?;
                if describe {
                    frontend::describe(b'P', "", out).map_err(enc)?;
                }
                frontend::execute("", 0, out).map_err(enc)?;
                frontend::sync(out);
            }
            Request::ExecuteUnnamed {
                query,
                param_types,
                params,
                param_formats,
            } => {
                flight.kind = Kind::Unnamed;
                frontend::parse("", &query, param_types.iter().copied(), out).map_err(enc)?;
                frontend::bind(
                    "",
                    "",
                    param_formats,
                    params.iter(),
                    |v, buf| match v {
                        Some(b) => {
                            buf.extend_from_slice(b);
                            Ok(postgres_protocol::IsNull::No)
                        }
                        None => Ok(postgres_protocol::IsNull::Yes),
                    },
                    std::iter::empty(),
                    out,
                )
                .map_err(|e| match e {
                    frontend::BindError::Conversion(e) => Error::conversion(e.to_string()),
                    frontend::BindError::Serialization(e) => enc(e),
                })?;
                frontend::describe(b'P', "", out).map_err(enc)?;
                frontend::execute("", 0, out).map_err(enc)?;
                frontend::sync(out);
                flight.result.query = query;
            }
            Request::Batch { queries } => {
                flight.kind = Kind::Batch;
                for q in &queries {
                    frontend::parse("", q, std::iter::empty(), out).map_err(enc)?;
                    frontend::bind(
                        "",
                        "",
                        std::iter::empty(),
                        std::iter::empty::<&[u8]>(),
                        |_, _| Ok(postgres_protocol::IsNull::No),
                        std::iter::empty(),
                        out,
                    )
                    .map_err(|_| Error::usage("cannot encode a batch statement"))?;
                    frontend::describe(b'P', "", out).map_err(enc)?;
                    frontend::execute("", 0, out).map_err(enc)?;
                }
                frontend::sync(out);
            }
            Request::CloseStatement { name } => {
                flight.kind = Kind::Close;
                frontend::close(b'S', &name, out).map_err(enc)?;
                frontend::sync(out);
            }
            Request::CopyIn { query, source } => {
                flight.kind = Kind::CopyIn;
                flight.copy_source = Some(source);
                frontend::query(&query, out).map_err(enc)?;
            }
            Request::CopyOut { query } => {
                flight.kind = Kind::CopyOut;
                frontend::query(&query, out).map_err(enc)?;
            }
        }
        Ok(flight)
    }

    /// Queues a Terminate message and closes the protocol with `reason`: in-flight requests
    /// fail with it. The driver should flush what is left to write, then close the socket.
    pub(crate) fn terminate(&mut self, reason: Error) {
        if self.is_closed() {
            return;
        }
        self.out.clear();
        frontend::terminate(&mut self.out);
        self.fail(reason);
    }

    /// The socket reached end of stream or failed: the connection is lost.
    pub(crate) fn handle_eof(&mut self, cause: Option<std::io::Error>) {
        if self.is_closed() {
            return;
        }
        let mut err = match cause {
            Some(e) => Error::io("connection to the server was lost", e),
            None => Error::connection("the server closed the connection unexpectedly"),
        };
        if let Some(code) = self.last_notice_code.take() {
            err = err.with_code(code);
        }
        self.fail(err);
    }

    /// Closes the protocol with `err`: every in-flight request fails with it, then `Closed`
    /// is reported.
    ///
    /// A request fails as *of unknown outcome* when the server may have run it: its bytes
    /// were (at least partly) written and the connection was lost without the server saying
    /// it gave up. A request never written, or one the server answered with a FATAL error (the
    /// session ended before it completed, so its transaction was rolled back), provably did
    /// not take effect, and a pool may run it again elsewhere.
    pub(crate) fn fail(&mut self, err: Error) {
        if self.is_closed() {
            return;
        }
        self.state = State::Closed(err.clone());
        let server_gave_up = err.as_db_error().is_some_and(DbError::is_fatal);
        self.copy_flights = 0;
        for mut flight in std::mem::take(&mut self.in_flight) {
            if let Some(src) = flight.copy_source.take() {
                self.spent_sources.push(src);
            }
            let sent = !flight.held && flight.start < self.sent_total;
            let e = if sent && !server_gave_up && err.is_connection_lost() {
                err.with_outcome_unknown()
            } else {
                err.clone()
            };
            self.events.push_back(Event::Completed(Err(e)));
        }
        self.events.push_back(Event::Closed(err));
    }

    /// The next event, in the order things happened.
    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Feeds received bytes and parses every whole message among them.
    pub(crate) fn handle_input(&mut self, data: &[u8]) {
        self.input.extend_from_slice(data);
        self.process_input();
    }

    /// Parses every whole message in the input buffer.
    pub(crate) fn process_input(&mut self) {
        while !self.is_closed() {
            match framing::next_frame(&mut self.input, self.max_message_size) {
                Ok(Some(frame)) => {
                    if let Err(e) = self.handle_frame(frame) {
                        self.fail(e);
                    }
                }
                Ok(None) => break,
                Err(e) => self.fail(e),
            }
        }
        if self.is_closed() {
            self.input.clear();
        }
    }

    fn handle_frame(&mut self, frame: framing::Frame) -> Result<(), Error> {
        // Hot path: rows are kept as received and decoded lazily.
        if frame.tag == backend::DATA_ROW_TAG {
            return self.on_data_row(frame.into_body());
        }
        // postgres-protocol 0.6 knows neither NegotiateProtocolVersion nor a cancel key
        // longer than 4 bytes (protocol 3.2): both are read here, before it sees them.
        if frame.tag == b'v' {
            return self.on_negotiate_protocol_version(frame.body());
        }
        if frame.tag == backend::BACKEND_KEY_DATA_TAG {
            return self.on_backend_key_data(frame.body());
        }
        if frame.tag == backend::ROW_DESCRIPTION_TAG {
            self.row_desc_bytes = Some(Bytes::copy_from_slice(frame.body()));
        }
        let msg = frame.parse()?;
        match msg {
            Message::NoticeResponse(body) => {
                let notice = parse_db_error(&mut body.fields())?;
                log::info!("server notice: {notice}");
                self.last_notice_code = Some(notice.code.clone());
                self.events.push_back(Event::Notice(Box::new(notice)));
                Ok(())
            }
            Message::NotificationResponse(body) => {
                let channel = body
                    .channel()
                    .map_err(bad("NotificationResponse"))?
                    .to_owned();
                let payload = body
                    .message()
                    .map_err(bad("NotificationResponse"))?
                    .to_owned();
                self.events.push_back(Event::Notification {
                    process_id: body.process_id(),
                    channel,
                    payload,
                });
                Ok(())
            }
            Message::ParameterStatus(body) => {
                let name = body.name().map_err(bad("ParameterStatus"))?.to_owned();
                let value = body.value().map_err(bad("ParameterStatus"))?.to_owned();
                if name == "client_encoding" && !value.eq_ignore_ascii_case("UTF8") {
                    return Err(Error::protocol(format!(
                        "the server switched client_encoding to {value}; momoko speaks only UTF8"
                    )));
                }
                self.server_params.insert(name.clone(), value.clone());
                if matches!(self.state, State::Ready) {
                    self.events
                        .push_back(Event::ParameterChanged { name, value });
                }
                Ok(())
            }
            msg => match self.state {
                State::Startup(_) => self.on_startup_message(msg),
                State::Authenticated => self.on_authenticated_message(msg),
                State::Ready => self.on_ready_message(msg),
                State::Closed(_) => Ok(()),
            },
        }
    }

    fn on_negotiate_protocol_version(&mut self, body: &[u8]) -> Result<(), Error> {
        if !matches!(self.state, State::Startup(_)) {
            return Err(Error::protocol(
                "NegotiateProtocolVersion received after startup",
            ));
        }
        self.versions.negotiate(body)
    }

    fn on_backend_key_data(&mut self, body: &[u8]) -> Result<(), Error> {
        match self.state {
            State::Authenticated => {
                self.backend_key = Some(self.versions.backend_key(body)?);
                Ok(())
            }
            State::Startup(_) => Err(Error::protocol(
                "unexpected BackendKeyData during authentication",
            )),
            _ => Err(Error::protocol("unexpected BackendKeyData after startup")),
        }
    }

    fn on_startup_message(&mut self, msg: Message) -> Result<(), Error> {
        let State::Startup(auth) = &mut self.state else {
            unreachable!("checked by the caller")
        };
        match msg {
            Message::AuthenticationOk => {
                auth.finish()?;
                self.versions.settle();
                self.state = State::Authenticated;
                Ok(())
            }
            Message::ErrorResponse(body) => Err(Error::db(parse_db_error(&mut body.fields())?)),
            other => auth.handle(other, &mut self.out),
        }
    }

    fn on_authenticated_message(&mut self, msg: Message) -> Result<(), Error> {
        match msg {
            Message::ReadyForQuery(body) => {
                self.transaction_status = body.status();
                self.state = State::Ready;
                self.events.push_back(Event::Connected);
                Ok(())
            }
            Message::ErrorResponse(body) => Err(Error::db(parse_db_error(&mut body.fields())?)),
            other => Err(unexpected(&other, "after authentication")),
        }
    }

    fn on_data_row(&mut self, body: Bytes) -> Result<(), Error> {
        let Some(flight) = self.in_flight.front_mut() else {
            return Err(Error::protocol(
                "DataRow received with no request in flight",
            ));
        };
        flight.answered = true;
        if flight.error.is_some() {
            return Ok(());
        }
        let Some(columns) = &flight.result.columns else {
            return Err(Error::protocol("DataRow received before RowDescription"));
        };
        let row = Row::new(columns.clone(), body)?;
        flight.result.rows.push(row);
        Ok(())
    }

    fn on_ready_message(&mut self, msg: Message) -> Result<(), Error> {
        let Some(flight) = self.in_flight.front_mut() else {
            return match msg {
                // The server ends sessions with a FATAL ErrorResponse (57P01 on shutdown,
                // pg_terminate_backend) while nothing is in flight.
                Message::ErrorResponse(body) => Err(Error::db(parse_db_error(&mut body.fields())?)),
                other => Err(unexpected(&other, "with no request in flight")),
            };
        };
        flight.answered = true;
        match msg {
            Message::RowDescription(body) => {
                if !matches!(
                    flight.kind,
                    Kind::Simple
                        | Kind::Prepare
                        | Kind::CopyOut
                        | Kind::Batch
                        | Kind::Execute
                        | Kind::Unnamed
                ) {
                    return Err(unexpected_named("RowDescription", flight.kind));
                }
                // The same statement run again describes its rows with the same bytes: reuse
                // the columns instead of building them anew for every query.
                let raw = self.row_desc_bytes.take().unwrap_or_default();
                let epoch = self.types.epoch.get();
                let columns = match &self.last_row_desc {
                    Some((bytes, cols, e)) if *bytes == raw && *e == epoch => cols.clone(),
                    _ => {
                        let cols = parse_columns(&body, &self.types.registry.borrow())?;
                        self.last_row_desc = Some((raw, cols.clone(), epoch));
                        cols
                    }
                };
                let flight = self.in_flight.front_mut().expect("checked above");
                // A new statement of a multi-statement query: psycopg2 keeps only the last.
                flight.result.rows.clear();
                flight.result.tag = None;
                flight.result.columns = Some(columns);
            }
            Message::NoData => {
                if !matches!(
                    flight.kind,
                    Kind::Prepare | Kind::Batch | Kind::Execute | Kind::Unnamed
                ) {
                    return Err(unexpected_named("NoData", flight.kind));
                }
                flight.result.columns = None;
            }
            Message::ParameterDescription(body) => {
                if flight.kind != Kind::Prepare {
                    return Err(unexpected_named("ParameterDescription", flight.kind));
                }
                flight.param_types = body
                    .parameters()
                    .collect()
                    .map_err(bad("ParameterDescription"))?;
            }
            Message::ParseComplete => {
                if !matches!(flight.kind, Kind::Prepare | Kind::Batch | Kind::Unnamed) {
                    return Err(unexpected_named("ParseComplete", flight.kind));
                }
            }
            Message::BindComplete => {
                if !matches!(flight.kind, Kind::Execute | Kind::Batch | Kind::Unnamed) {
                    return Err(unexpected_named("BindComplete", flight.kind));
                }
            }
            Message::CloseComplete => {
                if flight.kind != Kind::Close {
                    return Err(unexpected_named("CloseComplete", flight.kind));
                }
            }
            Message::CommandComplete(body) => {
                let tag = body.tag().map_err(bad("CommandComplete"))?.to_owned();
                if flight.kind == Kind::Simple && flight.result.tag.is_some() {
                    // The previous statement produced no RowDescription: a new, row-less result.
                    flight.result.columns = None;
                    flight.result.rows.clear();
                }
                flight.result.tag = Some(tag);
                if flight.kind == Kind::Batch {
                    let done = std::mem::take(&mut flight.result);
                    flight.batch.push(done);
                }
            }
            Message::EmptyQueryResponse => {
                flight.result.columns = None;
                flight.result.rows.clear();
                flight.result.tag = None;
                if flight.kind == Kind::Batch {
                    flight.batch.push(QueryResult::default());
                }
            }
            Message::PortalSuspended => {
                return Err(unexpected_named("PortalSuspended", flight.kind));
            }
            Message::ErrorResponse(body) => {
                let db = parse_db_error(&mut body.fields())?;
                let fatal = db.is_fatal();
                let err = Error::db(db);
                if fatal {
                    return Err(err);
                }
                if flight.error.is_none() {
                    flight.error = Some(err);
                }
                flight.result.rows = Vec::new();
                if flight.copying {
                    // The server drops whatever copy data still comes; stop producing it.
                    flight.copying = false;
                    if let Some(src) = flight.copy_source.take() {
                        self.spent_sources.push(src);
                    }
                    self.release_held();
                }
            }
            Message::CopyInResponse(_) => {
                if flight.kind != Kind::CopyIn {
                    // A COPY FROM STDIN sent through execute(): refuse it, the server fails the
                    // statement and the connection stays usable.
                    frontend::copy_fail(
                        "COPY FROM STDIN is only supported through copy_in()",
                        &mut self.out,
                    )
                    .map_err(bad("CopyFail"))?;
                    return Ok(());
                }
                // The session pulls the data from the source, outside every borrow.
                flight.copying = true;
            }
            Message::CopyOutResponse(_) => {
                if flight.kind != Kind::CopyOut {
                    flight.error.get_or_insert_with(|| {
                        Error::usage("COPY TO STDOUT is only supported through copy_out()")
                    });
                }
            }
            Message::CopyData(body) => {
                if flight.kind != Kind::CopyOut {
                    return Ok(()); // discarded: already reported as a usage error
                }
                self.events.push_back(Event::CopyData(body.into_bytes()));
            }
            Message::CopyDone => {}
            Message::ReadyForQuery(body) => {
                self.transaction_status = body.status();
                let flight = self.in_flight.pop_front().expect("checked above");
                if flight.kind == Kind::CopyIn {
                    self.copy_flights -= 1;
                }
                let was_copy = flight.kind == Kind::CopyIn;
                self.complete(flight);
                if was_copy {
                    self.release_held();
                }
            }
            other => return Err(unexpected(&other, "while a request is in flight")),
        }
        Ok(())
    }

    fn complete(&mut self, flight: InFlight) {
        let result = match flight.error {
            Some(e) => Err(e),
            None => Ok(match flight.kind {
                Kind::Prepare => Response::Prepared {
                    param_types: flight.param_types,
                    columns: flight.result.columns,
                },
                Kind::Close => Response::Closed,
                Kind::Batch => Response::Batch(flight.batch),
                _ => Response::Query(flight.result),
            }),
        };
        self.events.push_back(Event::Completed(result));
    }
}

fn parse_columns(
    body: &backend::RowDescriptionBody,
    types: &TypeRegistry,
) -> Result<Arc<[Column]>, Error> {
    let mut columns = Vec::new();
    let mut fields = body.fields();
    while let Some(f) = fields.next().map_err(bad("RowDescription"))? {
        let mut c = Column::new(
            f.name().to_owned(),
            f.table_oid(),
            f.column_id(),
            f.type_oid(),
            f.type_size(),
            f.type_modifier(),
            f.format(),
        );
        c.resolve(types);
        columns.push(c);
    }
    Ok(columns.into())
}

/// Reads every field of an ErrorResponse or NoticeResponse; text is checked UTF-8 (lossy
/// where the server sent something else, so that the message is never lost).
pub(crate) fn parse_db_error(fields: &mut backend::ErrorFields<'_>) -> Result<DbError, Error> {
    let mut e = DbError::default();
    while let Some(f) = fields.next().map_err(bad("ErrorResponse"))? {
        let v = String::from_utf8_lossy(f.value_bytes()).into_owned();
        match f.type_() {
            b'S' => e.severity = v,
            b'V' => e.severity_nonlocalized = Some(v),
            b'C' => e.code = v,
            b'M' => e.message = v,
            b'D' => e.detail = Some(v),
            b'H' => e.hint = Some(v),
            b'P' => e.position = v.parse().ok(),
            b'p' => e.internal_position = v.parse().ok(),
            b'q' => e.internal_query = Some(v),
            b'W' => e.where_ = Some(v),
            b's' => e.schema = Some(v),
            b't' => e.table = Some(v),
            b'c' => e.column = Some(v),
            b'd' => e.datatype = Some(v),
            b'n' => e.constraint = Some(v),
            b'F' => e.file = Some(v),
            b'L' => e.line = v.parse().ok(),
            b'R' => e.routine = Some(v),
            _ => {} // the protocol says unknown fields must be ignored
        }
    }
    if e.code.is_empty() || e.severity.is_empty() {
        return Err(Error::protocol(
            "ErrorResponse without a severity or SQLSTATE",
        ));
    }
    Ok(e)
}

/// libpq's PQserverVersion: "15.18" → 150018, "9.6.24" → 90624, "16beta1" → 160000.
pub(crate) fn parse_server_version(s: &str) -> Option<i32> {
    let digits_then = |s: &str| -> (Option<i32>, usize) {
        let n = s.bytes().take_while(u8::is_ascii_digit).count();
        (s[..n].parse().ok(), n)
    };
    let (major, n) = digits_then(s);
    let major = major?;
    let rest = &s[n..];
    let (minor, n2) = match rest.strip_prefix('.') {
        Some(r) => {
            let (m, k) = digits_then(r);
            (m, k + 1)
        }
        None => (None, 0),
    };
    if major >= 10 {
        return Some(major * 10000 + minor.unwrap_or(0));
    }
    let rest = &rest[n2..];
    let patch = rest.strip_prefix('.').and_then(|r| digits_then(r).0);
    Some(major * 10000 + minor.unwrap_or(0) * 100 + patch.unwrap_or(0))
}

fn bad(what: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |e| Error::protocol(format!("malformed {what} message: {e}"))
}

fn unexpected(msg: &Message, when: &str) -> Error {
    Error::protocol(format!("unexpected {} {when}", message_name(msg)))
}

fn unexpected_named(name: &str, kind: Kind) -> Error {
    Error::protocol(format!("unexpected {name} in answer to a {kind:?} request"))
}

fn message_name(msg: &Message) -> &'static str {
    match msg {
        Message::AuthenticationCleartextPassword
        | Message::AuthenticationGss
        | Message::AuthenticationKerberosV5
        | Message::AuthenticationMd5Password(_)
        | Message::AuthenticationOk
        | Message::AuthenticationScmCredential
        | Message::AuthenticationSspi
        | Message::AuthenticationGssContinue(_)
        | Message::AuthenticationSasl(_)
        | Message::AuthenticationSaslContinue(_)
        | Message::AuthenticationSaslFinal(_) => "Authentication message",
        Message::BackendKeyData(_) => "BackendKeyData",
        Message::BindComplete => "BindComplete",
        Message::CloseComplete => "CloseComplete",
        Message::CommandComplete(_) => "CommandComplete",
        Message::CopyData(_) => "CopyData",
        Message::CopyDone => "CopyDone",
        Message::CopyInResponse(_) => "CopyInResponse",
        Message::CopyOutResponse(_) => "CopyOutResponse",
        Message::DataRow(_) => "DataRow",
        Message::EmptyQueryResponse => "EmptyQueryResponse",
        Message::ErrorResponse(_) => "ErrorResponse",
        Message::NoData => "NoData",
        Message::NoticeResponse(_) => "NoticeResponse",
        Message::NotificationResponse(_) => "NotificationResponse",
        Message::ParameterDescription(_) => "ParameterDescription",
        Message::ParameterStatus(_) => "ParameterStatus",
        Message::ParseComplete => "ParseComplete",
        Message::PortalSuspended => "PortalSuspended",
        Message::ReadyForQuery(_) => "ReadyForQuery",
        Message::RowDescription(_) => "RowDescription",
        _ => "message",
    }
}
