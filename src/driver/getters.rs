//! The accessors of a connection handle, written once for both drivers.
//!
//! [`session_getters!`] expands, inside the `impl` of a handle with a `core` field, to the
//! methods that only read the session: state, the server's parameters, where the
//! connection went, TLS, `mogrify`. Both handles offer every name either of them ever had
//! (`closed` and `is_closed`, `in_flight` and `pending`), with one meaning each.

/// See the module docs.
macro_rules! session_getters {
    () => {
        /// Whether the connection is closed: never connected, closed by `close()`, lost, or
        /// its connect failed.
        pub fn closed(&self) -> bool {
            self.core.with(|s| s.is_closed())
        }

        /// The same as [`closed`](Self::closed).
        pub fn is_closed(&self) -> bool {
            self.closed()
        }

        /// Whether the connection is connected and ready for requests.
        pub fn is_ready(&self) -> bool {
            self.core
                .with(|s| s.stage() == $crate::session::Stage::Ready)
        }

        /// Requests not yet answered: sent and awaiting their answer, or held until the
        /// connection is ready.
        pub fn in_flight(&self) -> usize {
            self.core.with(|s| s.pending())
        }

        /// The same as [`in_flight`](Self::in_flight).
        pub fn pending(&self) -> usize {
            self.in_flight()
        }

        /// The server version as libpq reports it (150018 for 15.18), once connected.
        pub fn server_version(&self) -> Option<i32> {
            self.core.with(|s| s.server_version())
        }

        /// A server parameter as last reported (`TimeZone`, `standard_conforming_strings`,
        /// `application_name`…).
        pub fn parameter(&self, name: &str) -> Option<String> {
            self.core.with(|s| s.parameter(name).map(str::to_owned))
        }

        /// The host this connection reached, as given in the connection string (a name, an
        /// address, or the Unix socket directory): libpq's `PQhost`. With a host list it
        /// says which one target_session_attrs settled on. `None` while not connected.
        pub fn host(&self) -> Option<String> {
            self.core.with(|s| s.reached().map(|(h, _)| h))
        }

        /// The port of [`host`](Self::host): libpq's `PQport`.
        pub fn port(&self) -> Option<u16> {
            self.core.with(|s| s.reached().map(|(_, p)| p))
        }

        /// The backend process id of this session (for `pg_terminate_backend`, logs).
        pub fn backend_pid(&self) -> Option<i32> {
            self.core.with(|s| s.backend_key().map(|k| k.pid()))
        }

        /// The protocol version this connection speaks, as `(major, minor)`: `(3, 2)` with
        /// `max_protocol_version=3.2` (or `latest`) on PostgreSQL 18 and later, `(3, 0)`
        /// otherwise (libpq's default is 3.0). `(0, 0)` while not connected.
        pub fn protocol_version(&self) -> (u16, u16) {
            self.core.with(|s| s.protocol_version())
        }

        /// Idle, in a transaction, in a failed one, or unknown (not connected).
        pub fn transaction_status(&self) -> $crate::TransactionStatus {
            self.core.with(|s| {
                $crate::TransactionStatus::of(
                    s.stage() == $crate::session::Stage::Ready,
                    s.transaction_status(),
                )
            })
        }

        /// Whether the connection runs over TLS (libpq's `PQsslInUse`).
        pub fn ssl_in_use(&self) -> bool {
            self.core.with(|s| s.ssl_in_use())
        }

        /// libpq's `PQsslAttribute`: `"library"` (`"rustls"`), `"protocol"` (`"TLSv1.3"`),
        /// `"cipher"` (`"TLS_AES_256_GCM_SHA384"`), `"key_bits"`, `"compression"`
        /// (`"off"`), `"alpn"` (`"postgresql"`, empty when none was chosen); `None` when
        /// the connection is not TLS or the name is unknown.
        pub fn ssl_attribute(&self, name: &str) -> Option<String> {
            self.core.with(|s| s.ssl_attribute(name))
        }

        /// Whether this connection's TLS session was resumed: `Some(true)` when the
        /// handshake reused a session an earlier connection of the same configuration (the
        /// same pool, or this connection before a reconnect) established, skipping the
        /// certificate exchange and its signatures; `Some(false)` for a full handshake;
        /// `None` without TLS. A server resumes only if it issues session tickets (or keeps
        /// a session cache): PostgreSQL's own TLS does neither (it turns both off), a TLS
        /// end point in front of it that keeps sessions (a terminating proxy) may.
        pub fn tls_resumed(&self) -> Option<bool> {
            self.core.with(|s| s.tls_resumed())
        }

        /// The query with its parameters rendered as psycopg2 renders them. Synchronous,
        /// like Momoko's; mistakes in placeholders are `ErrorKind::Usage` errors.
        pub fn mogrify<P: $crate::Params>(
            &self,
            query: &str,
            params: P,
        ) -> Result<String, $crate::Error> {
            $crate::params::mogrify(query, &params, &self.core.with(|s| s.quote_context()))
        }
    };
}

pub(crate) use session_getters;
