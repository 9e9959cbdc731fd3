//! What a session tells about itself: its options, stage, server, socket, deadlines and TLS
//! session, read by the drivers and the pool. Reading only (`source` lends the socket for
//! registration): nothing here sends, decides or changes state.

use super::*;

impl Session {
    /// The connection string the next connect uses.
    pub(crate) fn dsn(&self) -> &str {
        &self.dsn
    }

    /// What operations are observed with.
    pub(crate) fn observing(&self) -> &Rc<crate::observe::Observing> {
        &self.observing
    }

    /// The options given at creation.
    pub(crate) fn options(&self) -> &Options {
        &self.options
    }

    /// The connect timeout in force: the builder's, else the connection string's
    /// `connect_timeout` (known once a connect began).
    pub(crate) fn connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout.or(self.options.connect_timeout)
    }

    /// Where the session stands.
    pub(crate) fn stage(&self) -> Stage {
        self.phase.stage()
    }

    /// Whether the session is closed or was never opened.
    pub(crate) fn is_closed(&self) -> bool {
        matches!(self.stage(), Stage::New | Stage::Closed)
    }

    /// The type registry, shared with the protocol core.
    pub(crate) fn types(&self) -> &Rc<Types> {
        &self.types
    }

    /// The current server session, for a prepared statement to hold weakly.
    pub(crate) fn identity(&self) -> Weak<()> {
        Rc::downgrade(&self.identity)
    }

    /// Whether `owner` is the current server session of this connection.
    pub(crate) fn is_current(&self, owner: &Weak<()>) -> bool {
        self.stage() == Stage::Ready && std::ptr::eq(owner.as_ptr(), Rc::as_ptr(&self.identity))
    }

    /// The server version as libpq reports it, once connected.
    pub(crate) fn server_version(&self) -> Option<i32> {
        self.server_version
    }

    /// Where the current connection went (libpq's PQhost / PQport): the host as given (or the
    /// socket directory), and the port. `None` until a connect succeeded.
    pub(crate) fn reached(&self) -> Option<(String, u16)> {
        if !matches!(self.stage(), Stage::Ready | Stage::Setsession) {
            return None;
        }
        self.attempt_target()
    }

    /// The host (or socket directory) and port of the attempt under way or made.
    pub(super) fn attempt_target(&self) -> Option<(String, u16)> {
        match &self.walk.current()?.target {
            Target::Tcp { host, port, .. } => Some((host.clone(), *port)),
            Target::Unix { path, port } => Some((
                path.parent()
                    .map(|d| d.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                *port,
            )),
        }
    }

    /// A server parameter as last reported.
    pub(crate) fn parameter(&self, name: &str) -> Option<&str> {
        self.proto.as_ref()?.parameter(name)
    }

    /// The backend's process id and secret key.
    pub(crate) fn backend_key(&self) -> Option<&crate::proto::BackendKey> {
        self.proto.as_ref()?.backend_key()
    }

    /// The protocol version spoken, `(3, 0)` or `(3, 2)`; `(0, 0)` before the server
    /// authenticated the connection (libpq's PQfullProtocolVersion says 0 then).
    pub(crate) fn protocol_version(&self) -> (u16, u16) {
        self.proto
            .as_ref()
            .and_then(Protocol::protocol_version)
            .unwrap_or((0, 0))
    }

    /// `I` idle, `T` in a transaction, `E` in a failed one.
    pub(crate) fn transaction_status(&self) -> u8 {
        self.proto
            .as_ref()
            .map_or(b'I', Protocol::transaction_status)
    }

    /// The quoting `mogrify` shows: psycopg2's, for the setting the server last reported.
    pub(crate) fn quote_context(&self) -> QuoteContext {
        QuoteContext {
            standard_conforming_strings: self
                .parameter("standard_conforming_strings")
                .is_none_or(|v| v == "on"),
        }
    }

    /// The socket to register for readable and writable events, while there is one.
    pub(crate) fn source(&mut self) -> Option<&mut Socket> {
        self.transport.source()
    }

    /// Changes whenever the socket is replaced or dropped: the driver re-registers then.
    pub(crate) fn socket_generation(&self) -> u64 {
        self.transport.generation()
    }

    /// The earliest instant at which [`Session::handle_timeout`] must be called.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let head = self.waiters.front().and_then(|p| p.deadline);
        let Deadlines { connect, discard } = self.deadlines;
        // Asked several times per query, and nearly always all None: compared pairwise.
        let earlier = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, None) => a,
            (None, b) => b,
        };
        earlier(earlier(connect, head), discard)
    }

    /// A number naming the oldest request in flight (the one a cancel would hit), if any.
    pub(crate) fn head_sequence(&self) -> Option<u64> {
        (!self.waiters.is_empty()).then_some(self.answered)
    }

    /// Where the socket is connected, for a CancelRequest.
    pub(crate) fn peer(&self) -> Option<&Peer> {
        self.transport.peer()
    }

    /// Requests sent and not yet answered, plus requests held until the connection is ready.
    pub(crate) fn pending(&self) -> usize {
        self.waiters.len() + self.held.len()
    }

    /// Whether there are bytes to write now: some are queued and the socket did not say it
    /// is full (then the next writable event flushes them).
    pub(crate) fn wants_write(&self) -> bool {
        self.transport.wants_write(self.proto.as_ref())
    }

    /// Whether the connection runs over TLS (libpq's `PQsslInUse`).
    pub(crate) fn ssl_in_use(&self) -> bool {
        self.stage() == Stage::Ready && self.transport.tls_up()
    }

    /// libpq's `PQsslAttribute`: "library", "protocol", "cipher", "key_bits", "compression",
    /// "alpn".
    /// Whether the TLS session in use was resumed; `None` without TLS.
    pub(crate) fn tls_resumed(&self) -> Option<bool> {
        self.transport.tls_resumed()
    }

    pub(crate) fn ssl_attribute(&self, name: &str) -> Option<String> {
        if !self.ssl_in_use() {
            return None;
        }
        self.transport.ssl_attribute(name)
    }
}
