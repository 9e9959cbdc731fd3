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
//!
//! This file holds the core itself: its stage, the events, and the dispatch of each server
//! message. The rest is in files of their own: [`encode`] (the requests and their frontend
//! messages), [`in_flight`] (each kind of request in flight, collecting its own answers),
//! [`copy`] (COPY FROM STDIN's upload and the requests held behind it), [`parse`] (reading
//! message bodies), [`framing`] (cutting messages out of the input), [`auth`] (the
//! authentication exchange, SCRAM and channel binding), [`cert_hash`] (the certificate
//! hash it binds to) and [`version`] (protocol 3.0 and 3.2, the cancel key and the one
//! CancelRequest writer).

mod auth;
mod cert_hash;
mod copy;
mod copy_both;
mod encode;
mod framing;
mod in_flight;
mod parse;
mod version;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::{self, Message};
use postgres_protocol::message::frontend;

use crate::error::{DbError, Error};
use crate::row::{Column, RowBuf, Rows, Tag};
use crate::types::TypeRegistry;
use in_flight::{Answer, Effect, InFlight, Queued};
use parse::{bad, parse_columns, unexpected};

pub(crate) use auth::Credentials;
// For the TLS transport: the binding data of the server's certificate
// (Credentials::set_server_certificate wraps it).
#[allow(unused_imports)] // the fuzz entry points and tests call it directly
pub(crate) use cert_hash::tls_server_end_point;
pub(crate) use copy::CopySource;
pub(crate) use encode::Request;
pub(crate) use framing::DEFAULT_MAX_MESSAGE_SIZE;
pub(crate) use parse::{parse_db_error, parse_server_version};
pub(crate) use version::{BackendKey, Versions};

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
    pub(crate) rows: RowBuf,
    pub(crate) tag: Option<Tag>,
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
    /// The rows one read brought for the oldest in-flight request, which streams its rows
    /// (see [`Protocol::stream_last`]): packed as they came, made into `Row`s only as they
    /// are handed out.
    Rows(Rows),
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

/// Where the connection is in its life.
///
/// ```text
///   Startup ──auth ok──▶ Authenticated ──ReadyForQuery──▶ Ready ──close/error──▶ Closed
///      │                       │                                                   ▲
///      └──────────error────────┴───────────────────────────────────────────────────┘
/// ```
#[derive(Debug)]
enum Stage {
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

/// One PostgreSQL connection's protocol state. See the module documentation.
#[derive(Debug)]
pub(crate) struct Protocol {
    stage: Stage,
    /// The authentication method of the startup, once it is done.
    auth_method: Option<&'static str>,
    out: BytesMut,
    input: BytesMut,
    in_flight: VecDeque<Queued>,
    events: VecDeque<Event>,
    /// Rows of the oldest request, which streams, are packed in its result and not yet
    /// reported: they go out as one [`Event::Rows`] before anything else is handled.
    streamed: bool,
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
    /// Bytes of every request ever written to the transmit buffer (not other messages): see
    /// `Queued::bytes_before`.
    request_bytes: u64,
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

/// What [`Protocol::quick`] read.
enum Quick {
    Ready(u8),
    Answer(Answer),
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
        let stage = match version::startup_message(startup_params, &versions, &mut out) {
            Ok(()) => Stage::Startup(auth::Auth::new(credentials)),
            Err(e) => Stage::Closed(e),
        };
        let mut p = Protocol {
            stage,
            auth_method: None,
            out,
            // Sized by the first read: an idle connection keeps only what its largest read
            // needed (the startup answers, a few hundred bytes), not 8 KiB up front.
            input: BytesMut::new(),
            in_flight: VecDeque::new(),
            events: VecDeque::new(),
            streamed: false,
            server_params: HashMap::new(),
            backend_key: None,
            versions,
            transaction_status: b'I',
            max_message_size,
            types: Rc::default(),
            last_notice_code: None,
            sent_total: 0,
            request_bytes: 0,
            held: BytesMut::new(),
            copy_flights: 0,
            row_desc_bytes: None,
            last_row_desc: None,
            spent_sources: Vec::new(),
        };
        if let Stage::Closed(e) = &p.stage {
            p.events.push_back(Event::Closed(e.clone()));
        }
        p
    }

    /// The authentication method of the startup (see `Auth::method`): the one asked for
    /// while it runs, the one that succeeded after it.
    pub(crate) fn auth_method(&self) -> Option<&'static str> {
        match &self.stage {
            Stage::Startup(auth) => Some(auth.method()),
            _ => self.auth_method,
        }
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
        if n == self.out.len() {
            // All of it (nearly always): the buffer is kept as it is, never split (a split
            // turns it into a shared one, with a reference count to touch at every write).
            self.out.clear();
        } else {
            self.out.advance(n);
        }
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
        matches!(self.stage, Stage::Ready)
    }

    /// Whether the connection is finished.
    pub(crate) fn is_closed(&self) -> bool {
        matches!(self.stage, Stage::Closed(_))
    }

    /// The error that closed the connection, if it is closed.
    pub(crate) fn close_error(&self) -> Option<&Error> {
        match &self.stage {
            Stage::Closed(e) => Some(e),
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
        // Asked after every request: O(1) in the requests in flight. Nothing is held, so
        // they start in the byte stream in their order, and those not written yet (none of
        // their bytes, not a part) are a suffix; it matters only while it is shorter than
        // PIPELINE_HOLD, so only that many at the back are bisected.
        let total = self.in_flight.len();
        if total < PIPELINE_HOLD {
            return false;
        }
        let (mut lo, mut hi) = (total - PIPELINE_HOLD, total);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.in_flight[mid].start < self.sent_total {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let (sent, unsent) = (lo, total - lo);
        if sent < PIPELINE_HOLD || unsent >= PIPELINE_HOLD {
            return false;
        }
        // The unsent requests must be all the buffer holds (no other message among them).
        let bytes = match (self.in_flight.get(sent), self.in_flight.back()) {
            (Some(first), Some(last)) if unsent > 0 => {
                last.bytes_before + last.len - first.bytes_before
            }
            _ => 0,
        };
        bytes == self.out.len() as u64
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
        // Rows that arrived before the failure stay delivered.
        if self.streamed {
            self.emit_streamed();
        }
        self.stage = Stage::Closed(err.clone());
        let server_gave_up = err.as_db_error().is_some_and(DbError::is_fatal);
        self.copy_flights = 0;
        for mut flight in std::mem::take(&mut self.in_flight) {
            if let Some(source) = flight.answers.upload().and_then(|u| u.stop()) {
                self.spent_sources.push(source);
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

    /// Whether an event waits for [`poll_event`](Protocol::poll_event).
    pub(crate) fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// The next event, in the order things happened.
    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Feeds received bytes and parses every whole message among them. They are read where
    /// they lie: only a message that the read cut short is kept (in `input`), and the bytes
    /// of the next read that finish it join it before the rest is read in place.
    pub(crate) fn handle_input(&mut self, mut data: &[u8]) {
        while !self.input.is_empty() && !data.is_empty() && !self.is_closed() {
            let have = self.input.len();
            let want = match framing::declared_len(&self.input) {
                Some(len) if len >= 4 => 1 + len as usize,
                // A length framing refuses: everything goes in, for it to say so.
                Some(_) => usize::MAX,
                None => 5,
            };
            let take = want.saturating_sub(have).min(data.len());
            self.input.extend_from_slice(&data[..take]);
            data = &data[take..];
            let mut input = std::mem::take(&mut self.input);
            let done = self.process_input(&input);
            input.advance(done);
            if !self.is_closed() {
                self.input = input;
            }
        }
        if self.is_closed() || data.is_empty() {
            return;
        }
        let done = self.process_input(data);
        if !self.is_closed() && done < data.len() {
            self.input.extend_from_slice(&data[done..]);
        }
    }

    /// Parses every whole message at the start of `input` (DataRows and the other answers
    /// of every query where they lie, anything else copied out for postgres-protocol's
    /// parser); returns how many bytes they took.
    fn process_input(&mut self, input: &[u8]) -> usize {
        let mut done = 0;
        while !self.is_closed() {
            match framing::peek_frame(&input[done..], self.max_message_size) {
                Ok(Some((tag, end))) => {
                    let quick = if tag == backend::DATA_ROW_TAG {
                        None
                    } else {
                        if self.streamed {
                            self.emit_streamed();
                        }
                        self.quick(tag, &input[done + 5..done + end])
                    };
                    let r = if tag == backend::DATA_ROW_TAG {
                        // Hot path: this DataRow and those right after it, copied into
                        // their result where they lie (length and body).
                        self.on_data_rows(input, &mut done, end)
                    } else if let Some(quick) = quick {
                        done += end;
                        self.on_quick(quick)
                    } else {
                        let frame = framing::Frame::copied(tag, &input[done..done + end]);
                        done += end;
                        self.handle_frame(frame)
                    };
                    if let Err(e) = r {
                        self.fail(e);
                    }
                }
                Ok(None) => break,
                Err(e) => self.fail(e),
            }
        }
        if self.streamed {
            self.emit_streamed();
        }
        done
    }

    /// Reports the streamed rows packed so far, as one event.
    #[cold]
    fn emit_streamed(&mut self) {
        self.streamed = false;
        if let Some(rows) = self
            .in_flight
            .front_mut()
            .and_then(|f| f.answers.take_rows())
        {
            self.events.push_back(Event::Rows(rows));
        }
    }

    fn handle_frame(&mut self, frame: framing::Frame) -> Result<(), Error> {
        // postgres-protocol 0.6 knows neither NegotiateProtocolVersion nor a cancel key
        // longer than 4 bytes (protocol 3.2): both are read here, before it sees them.
        if frame.tag == b'v' {
            return self.on_negotiate_protocol_version(frame.body());
        }
        if frame.tag == backend::BACKEND_KEY_DATA_TAG {
            return self.on_backend_key_data(frame.body());
        }
        // Nor CopyBothResponse (START_REPLICATION's answer).
        if frame.tag == copy_both::COPY_BOTH_RESPONSE_TAG {
            return self.on_copy_both_response(frame.body());
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
                if matches!(self.stage, Stage::Ready) {
                    self.events
                        .push_back(Event::ParameterChanged { name, value });
                }
                Ok(())
            }
            msg => match self.stage {
                Stage::Startup(_) => self.on_startup_message(msg),
                Stage::Authenticated => self.on_authenticated_message(msg),
                Stage::Ready => self.on_ready_message(msg),
                Stage::Closed(_) => Ok(()),
            },
        }
    }

    /// The answers of every query, read straight from their bytes when they are well
    /// formed (anything else goes through postgres-protocol's parser, which reports it):
    /// ReadyForQuery, CommandComplete, the empty acknowledgements, and a RowDescription
    /// byte for byte the same as the last one, whose columns are reused.
    #[inline]
    fn quick(&self, tag: u8, body: &[u8]) -> Option<Quick> {
        if !matches!(self.stage, Stage::Ready) || self.in_flight.is_empty() {
            return None;
        }
        Some(Quick::Answer(match (tag, body) {
            (b'Z', [status]) => return Some(Quick::Ready(*status)),
            // A few bytes: a plain loop, cheaper here than memchr's setup.
            #[allow(clippy::manual_contains)]
            (b'C', [tag @ .., 0]) if !tag.iter().any(|&b| b == 0) => {
                Answer::Tag(Tag::from_bytes(tag)?)
            }
            (b'1', []) => Answer::ParseComplete,
            (b'2', []) => Answer::BindComplete,
            (b'3', []) => Answer::CloseComplete,
            (b'n', []) => Answer::NoData,
            (b'I', []) => Answer::EmptyQuery,
            (b's', []) => Answer::PortalSuspended,
            (backend::ROW_DESCRIPTION_TAG, _) => match &self.last_row_desc {
                Some((bytes, cols, epoch))
                    if *epoch == self.types.epoch.get() && bytes[..] == *body =>
                {
                    Answer::Columns(cols.clone())
                }
                _ => return None,
            },
            _ => return None,
        }))
    }

    fn on_quick(&mut self, quick: Quick) -> Result<(), Error> {
        match quick {
            Quick::Ready(status) => {
                self.on_ready_for_query(status);
                Ok(())
            }
            Quick::Answer(a) => self.on_answer(a),
        }
    }

    fn on_negotiate_protocol_version(&mut self, body: &[u8]) -> Result<(), Error> {
        if !matches!(self.stage, Stage::Startup(_)) {
            return Err(Error::protocol(
                "NegotiateProtocolVersion received after startup",
            ));
        }
        self.versions.negotiate(body)
    }

    fn on_backend_key_data(&mut self, body: &[u8]) -> Result<(), Error> {
        match self.stage {
            Stage::Authenticated => {
                self.backend_key = Some(self.versions.backend_key(body)?);
                Ok(())
            }
            Stage::Startup(_) => Err(Error::protocol(
                "unexpected BackendKeyData during authentication",
            )),
            _ => Err(Error::protocol("unexpected BackendKeyData after startup")),
        }
    }

    fn on_startup_message(&mut self, msg: Message) -> Result<(), Error> {
        let Stage::Startup(auth) = &mut self.stage else {
            unreachable!("checked by the caller")
        };
        match msg {
            Message::AuthenticationOk => {
                auth.finish()?;
                self.auth_method = Some(auth.method());
                self.versions.settle();
                self.stage = Stage::Authenticated;
                Ok(())
            }
            Message::ErrorResponse(body) => Err(Error::db(parse_db_error(&mut body.fields())?)),
            other => {
                let answered = auth.handle(other, &mut self.out);
                self.auth_method = Some(auth.method());
                answered
            }
        }
    }

    fn on_authenticated_message(&mut self, msg: Message) -> Result<(), Error> {
        match msg {
            Message::ReadyForQuery(body) => {
                self.transaction_status = body.status();
                self.stage = Stage::Ready;
                self.events.push_back(Event::Connected);
                Ok(())
            }
            Message::ErrorResponse(body) => Err(Error::db(parse_db_error(&mut body.fields())?)),
            other => Err(unexpected(&other, "after authentication")),
        }
    }

    /// A run of DataRows: the first, framed already, ends `end` bytes after `*done`; those
    /// whole ones right behind it go into the same result without a turn of the message
    /// loop each. `*done` moves past every row taken.
    fn on_data_rows(&mut self, input: &[u8], done: &mut usize, end: usize) -> Result<(), Error> {
        let Some(flight) = self.in_flight.front_mut() else {
            return Err(Error::protocol(
                "DataRow received with no request in flight",
            ));
        };
        if flight.error.is_some() {
            *done += end;
            return Ok(());
        }
        self.streamed |= flight.stream;
        let (columns, rows) = flight.answers.row_buf()?;
        let mut end = end;
        loop {
            let r = rows.push(columns, &input[*done + 1..*done + end]);
            *done += end;
            r?;
            // The next message, when it is another whole DataRow (framing's checks, as for
            // any message); anything else goes back to the message loop.
            if input.get(*done) != Some(&backend::DATA_ROW_TAG) {
                return Ok(());
            }
            match framing::peek_frame(&input[*done..], self.max_message_size) {
                Ok(Some((backend::DATA_ROW_TAG, next))) => end = next,
                _ => return Ok(()),
            }
        }
    }

    /// Whether the oldest request in flight streams its rows.
    pub(crate) fn streaming(&self) -> bool {
        self.in_flight.front().is_some_and(|f| f.stream)
    }

    /// The request just sent hands its rows out as [`Event::Rows`] as they arrive instead of
    /// collecting them: its response then carries none.
    pub(crate) fn stream_last(&mut self) {
        if let Some(flight) = self.in_flight.back_mut() {
            flight.stream = true;
        }
    }

    fn on_ready_message(&mut self, msg: Message) -> Result<(), Error> {
        if self.in_flight.is_empty() {
            return match msg {
                // The server ends sessions with a FATAL ErrorResponse (57P01 on shutdown,
                // pg_terminate_backend) while nothing is in flight.
                Message::ErrorResponse(body) => Err(Error::db(parse_db_error(&mut body.fields())?)),
                other => Err(unexpected(&other, "with no request in flight")),
            };
        }
        let answer = match msg {
            Message::ReadyForQuery(body) => {
                self.on_ready_for_query(body.status());
                return Ok(());
            }
            Message::ErrorResponse(body) => {
                let db = parse_db_error(&mut body.fields())?;
                return self.on_error_response(db);
            }
            Message::RowDescription(body) => Answer::Columns(self.columns(&body)?),
            Message::NoData => Answer::NoData,
            Message::ParameterDescription(body) => Answer::ParameterTypes(
                body.parameters()
                    .collect()
                    .map_err(bad("ParameterDescription"))?,
            ),
            Message::ParseComplete => Answer::ParseComplete,
            Message::BindComplete => Answer::BindComplete,
            Message::CloseComplete => Answer::CloseComplete,
            Message::CommandComplete(body) => {
                Answer::Tag(Tag::new(body.tag().map_err(bad("CommandComplete"))?))
            }
            Message::EmptyQueryResponse => Answer::EmptyQuery,
            Message::PortalSuspended => Answer::PortalSuspended,
            Message::CopyInResponse(_) => Answer::CopyInResponse,
            Message::CopyOutResponse(_) => Answer::CopyOutResponse,
            Message::CopyData(body) => Answer::CopyData(body.into_bytes()),
            Message::CopyDone => Answer::CopyDone,
            other => return Err(unexpected(&other, "while a request is in flight")),
        };
        self.on_answer(answer)
    }

    /// An answer to the oldest request in flight (there is one).
    fn on_answer(&mut self, answer: Answer) -> Result<(), Error> {
        let flight = self.in_flight.front_mut().expect("checked by the caller");
        match flight.answers.take(answer)? {
            Effect::None => {}
            Effect::RefuseCopyIn => {
                frontend::copy_fail(
                    "COPY FROM STDIN is only supported through copy_in()",
                    &mut self.out,
                )
                .map_err(bad("CopyFail"))?;
            }
            Effect::Fail(err) => {
                flight.error.get_or_insert(err);
            }
            Effect::CopyData(data) => self.events.push_back(Event::CopyData(data)),
            Effect::EndCopyBoth(err) => {
                if let Some(err) = err {
                    flight.error.get_or_insert(err);
                }
                frontend::copy_done(&mut self.out);
            }
        }
        Ok(())
    }

    /// A RowDescription's columns. The same statement run again describes its rows with the
    /// same bytes: the columns are reused instead of built anew for every query.
    fn columns(&mut self, body: &backend::RowDescriptionBody) -> Result<Arc<[Column]>, Error> {
        let raw = self.row_desc_bytes.take().unwrap_or_default();
        let epoch = self.types.epoch.get();
        match &self.last_row_desc {
            Some((bytes, cols, e)) if *bytes == raw && *e == epoch => Ok(cols.clone()),
            _ => {
                let cols = parse_columns(body, &self.types.registry.borrow())?;
                self.last_row_desc = Some((raw, cols.clone(), epoch));
                Ok(cols)
            }
        }
    }

    /// An ErrorResponse for the oldest request: a FATAL one ends the connection; any other
    /// fails the request (the first error is kept) and stops a COPY FROM STDIN.
    fn on_error_response(&mut self, db: DbError) -> Result<(), Error> {
        let fatal = db.is_fatal();
        let err = Error::db(db);
        if fatal {
            return Err(err);
        }
        let flight = self.in_flight.front_mut().expect("checked by the caller");
        flight.error.get_or_insert(err);
        if let Some(source) = flight.answers.failed() {
            self.spent_sources.push(source);
        }
        self.release_held();
        Ok(())
    }

    /// ReadyForQuery: the oldest request is over; requests held behind a COPY go out.
    fn on_ready_for_query(&mut self, status: u8) {
        self.transaction_status = status;
        let flight = self.in_flight.pop_front().expect("checked by the caller");
        let was_copy = matches!(flight.answers, InFlight::CopyIn { .. });
        if was_copy {
            self.copy_flights -= 1;
        }
        let (response, source) = flight.answers.finish();
        self.spent_sources.extend(source);
        let result = match flight.error {
            Some(e) => Err(e),
            None => Ok(response),
        };
        self.events.push_back(Event::Completed(result));
        if was_copy {
            self.release_held();
        }
    }
}
