//! The spans, with OpenTelemetry's database names (semantic conventions 1.33, stable for
//! PostgreSQL): one per operation, one per connect with one per host attempt inside it, one
//! per pool acquisition, health-check failure and retirement. Every span is at INFO, target
//! `momoko`, kind client. Without the `tracing` feature each type here is empty and each
//! method does nothing, so that the rest of the crate calls them without a `cfg`.
//!
//! An operation's span is entered while momoko works on the operation (rendering and
//! queueing it, recording its answer) and closed before the caller's callback runs; it is
//! never entered while user code runs.

#[cfg(feature = "tracing")]
pub(crate) use imp::*;

#[cfg(not(feature = "tracing"))]
pub(crate) use noop::*;

#[cfg(feature = "tracing")]
mod imp {
    use tracing::field::Empty;
    use tracing::Span;

    use super::super::{error_type, OpKind, Operation, OperationOutcome};
    use crate::conninfo::Target;
    use crate::error::Error;

    /// The span of one operation, with every attribute declared (tracing needs the names
    /// at creation) and recorded as it becomes known.
    macro_rules! operation_span {
        ($name:literal) => {
            tracing::info_span!(
                target: "momoko",
                $name,
                otel.kind = "client",
                otel.name = ::tracing::field::Empty,
                db.system.name = "postgresql",
                db.namespace = ::tracing::field::Empty,
                db.query.text = ::tracing::field::Empty,
                db.query.summary = ::tracing::field::Empty,
                db.operation.name = ::tracing::field::Empty,
                db.operation.batch.size = ::tracing::field::Empty,
                db.response.status_code = ::tracing::field::Empty,
                "error.type" = ::tracing::field::Empty,
                server.address = ::tracing::field::Empty,
                server.port = ::tracing::field::Empty,
                db.response.returned_rows = ::tracing::field::Empty,
            )
        };
    }
    pub(crate) use operation_span;

    /// An operation's span (disabled when no subscriber wants it).
    #[derive(Clone)]
    pub(crate) struct OpSpan(Span);

    /// The span entered.
    pub(crate) struct Entered<'a>(#[allow(dead_code)] tracing::span::Entered<'a>);

    impl OpSpan {
        pub(crate) fn new(kind: OpKind) -> OpSpan {
            OpSpan(super::super::new_span(kind))
        }

        pub(crate) fn is_enabled(&self) -> bool {
            !self.0.is_disabled()
        }

        pub(crate) fn enter(&self) -> Entered<'_> {
            Entered(self.0.enter())
        }

        /// What is known when the operation is queued.
        pub(crate) fn start(&self, op: &Operation) {
            let s = &self.0;
            if s.is_disabled() {
                return;
            }
            let name = op.operation_name().unwrap_or("postgresql");
            s.record("otel.name", name);
            if let Some(n) = op.operation_name() {
                s.record("db.operation.name", n);
                s.record("db.query.summary", n);
            }
            if !op.query().is_empty() {
                s.record("db.query.text", op.query());
            }
            if let Some(n) = op.batch_size() {
                s.record("db.operation.batch.size", n as u64);
            }
            if let Some(ns) = op.namespace() {
                s.record("db.namespace", ns);
            }
            if let Some((host, port)) = op.server() {
                s.record("server.address", host);
                s.record("server.port", u64::from(port));
            }
        }

        /// Closes the span (this handle is the last but the caller's clones, all gone).
        pub(crate) fn close(self) {}

        /// The answer; `server`: where the connection went was learnt since the start.
        pub(crate) fn end(&self, op: &Operation, outcome: &OperationOutcome<'_>, server: bool) {
            let s = &self.0;
            if s.is_disabled() {
                return;
            }
            if let Some((host, port)) = op.server().filter(|_| server) {
                s.record("server.address", host);
                s.record("server.port", u64::from(port));
            }
            if let Some(n) = outcome.rows() {
                s.record("db.response.returned_rows", n);
            }
            if let Some(e) = outcome.error() {
                if let Some(code) = e.code() {
                    s.record("db.response.status_code", code);
                }
                s.record("error.type", error_type(e));
            }
        }
    }

    /// The spans of one connect: the connect itself, and the host attempt under way inside
    /// it. Kept by the session from `connect` to the connection's ready (or the walk's
    /// end).
    #[derive(Default)]
    pub(crate) struct ConnectTrace {
        connect: Option<Span>,
        attempt: Option<Span>,
        attempts: u64,
        /// Where the last connect of this session went, for `momoko.failover`.
        last_reached: Option<String>,
    }

    impl ConnectTrace {
        /// A connect (`reconnect`: the session had connected before) starts.
        pub(crate) fn connect(&mut self, namespace: Option<&str>, reconnect: bool) {
            let span = tracing::info_span!(
                target: "momoko",
                "connect",
                otel.kind = "client",
                db.system.name = "postgresql",
                db.namespace = namespace,
                momoko.reconnect = reconnect,
                momoko.failover = Empty,
                momoko.attempts = Empty,
                server.address = Empty,
                server.port = Empty,
                "error.type" = Empty,
            );
            self.attempt = None;
            self.attempts = 0;
            self.connect = (!span.is_disabled()).then_some(span);
        }

        /// A host attempt starts (the same target again after an sslmode refusal is a new
        /// attempt). An attempt that looked its host name up keeps its span: the address
        /// found is recorded on it.
        pub(crate) fn attempt(&mut self, target: &Target, second_try: bool) {
            let Some(connect) = &self.connect else { return };
            if let (Some(span), Target::Tcp { addr: Some(a), .. }) = (&self.attempt, target) {
                span.record("network.peer.address", a.to_string().as_str());
                return;
            }
            self.attempts += 1;
            let (host, port) = host_port(target);
            let span = tracing::info_span!(
                target: "momoko",
                parent: connect,
                "connect_attempt",
                otel.kind = "client",
                server.address = host.as_str(),
                server.port = u64::from(port),
                network.peer.address = Empty,
                momoko.second_try = second_try,
                momoko.tls = Empty,
                momoko.auth = Empty,
                "error.type" = Empty,
                momoko.error = Empty,
            );
            match target {
                Target::Tcp { addr: Some(a), .. } => {
                    span.record("network.peer.address", a.to_string().as_str());
                }
                Target::Tcp { host, .. } if host.parse::<std::net::IpAddr>().is_ok() => {
                    span.record("network.peer.address", host.as_str());
                }
                _ => {}
            }
            self.attempt = Some(span);
        }

        /// The attempt's connection runs over TLS, or not.
        pub(crate) fn tls(&self, on: bool) {
            if let Some(s) = &self.attempt {
                s.record("momoko.tls", on);
            }
        }

        /// The attempt's authentication method (`trust`, `password`, `md5`,
        /// `SCRAM-SHA-256`, `SCRAM-SHA-256-PLUS`).
        pub(crate) fn auth(&self, method: &str) {
            if let Some(s) = &self.attempt {
                s.record("momoko.auth", method);
            }
        }

        /// The attempt under way failed with `e`; its span closes.
        pub(crate) fn attempt_failed(&mut self, e: &Error) {
            if let Some(s) = self.attempt.take() {
                s.record("error.type", error_type(e));
                // A connect error names hosts and causes, never a password or a value.
                s.record("momoko.error", e.to_string().as_str());
            }
        }

        /// The connect ended: connected to `reached`, or failed with `e`.
        pub(crate) fn done(&mut self, result: Result<Option<(String, u16)>, &Error>) {
            self.attempt = None;
            let Some(s) = self.connect.take() else {
                if let Ok(Some((host, port))) = result {
                    self.last_reached = Some(format!("{host}:{port}"));
                }
                return;
            };
            s.record("momoko.attempts", self.attempts);
            match result {
                Ok(reached) => {
                    if let Some((host, port)) = reached {
                        s.record("server.address", host.as_str());
                        s.record("server.port", u64::from(port));
                        let at = format!("{host}:{port}");
                        if let Some(last) = &self.last_reached {
                            s.record("momoko.failover", *last != at);
                        }
                        self.last_reached = Some(at);
                    }
                }
                Err(e) => {
                    s.record("error.type", error_type(e));
                }
            }
        }
    }

    fn host_port(target: &Target) -> (String, u16) {
        match target {
            Target::Tcp { host, port, .. } => (host.clone(), *port),
            Target::Unix { path, port } => (
                path.parent()
                    .map(|d| d.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                *port,
            ),
        }
    }

    /// The span of one pool acquisition.
    pub(crate) struct AcquireSpan(Span);

    impl AcquireSpan {
        pub(crate) fn new(pool: &str) -> Option<AcquireSpan> {
            let span = tracing::info_span!(
                target: "momoko",
                "pool.acquire",
                otel.kind = "client",
                db.system.name = "postgresql",
                db.client.connection.pool.name = pool,
                db.client.connection.wait_time = Empty,
                momoko.pool.created = Empty,
                "error.type" = Empty,
            );
            (!span.is_disabled()).then_some(AcquireSpan(span))
        }

        pub(crate) fn end(self, wait: std::time::Duration, created: bool, error: Option<&Error>) {
            let s = &self.0;
            s.record("db.client.connection.wait_time", wait.as_secs_f64());
            s.record("momoko.pool.created", created);
            if let Some(e) = error {
                s.record("error.type", error_type(e));
            }
        }
    }

    /// A short span for something the pool did to one connection: `pool.health_check_failed`
    /// (with the error's type), `pool.retire` (with the reason).
    pub(crate) fn pool_event(pool: &str, what: PoolEvent<'_>) {
        match what {
            PoolEvent::HealthCheckFailed(e) => {
                tracing::info_span!(
                    target: "momoko",
                    "pool.health_check_failed",
                    db.system.name = "postgresql",
                    db.client.connection.pool.name = pool,
                    "error.type" = error_type(e),
                );
            }
            PoolEvent::Retired(reason) => {
                tracing::info_span!(
                    target: "momoko",
                    "pool.retire",
                    db.system.name = "postgresql",
                    db.client.connection.pool.name = pool,
                    momoko.reason = reason,
                );
            }
        }
    }

    /// What [`pool_event`] reports.
    pub(crate) enum PoolEvent<'a> {
        HealthCheckFailed(&'a Error),
        Retired(&'a str),
    }

    /// The span current where a pool operation was called, entered again when its
    /// connection is handed over later: the operation's span gets the caller's as parent.
    #[derive(Clone)]
    pub(crate) struct Context(Span);

    impl Context {
        pub(crate) fn current() -> Context {
            Context(Span::current())
        }

        pub(crate) fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
            self.0.in_scope(f)
        }
    }
}

#[cfg(not(feature = "tracing"))]
mod noop {
    use super::super::{OpKind, Operation, OperationOutcome};
    use crate::conninfo::Target;
    use crate::error::Error;

    #[derive(Clone)]
    pub(crate) struct OpSpan;
    pub(crate) struct Entered;

    impl OpSpan {
        #[inline(always)]
        pub(crate) fn new(_: OpKind) -> OpSpan {
            OpSpan
        }
        #[inline(always)]
        pub(crate) fn is_enabled(&self) -> bool {
            false
        }
        #[inline(always)]
        pub(crate) fn enter(&self) -> Entered {
            Entered
        }
        #[inline(always)]
        pub(crate) fn start(&self, _: &Operation) {}
        #[inline(always)]
        pub(crate) fn end(&self, _: &Operation, _: &OperationOutcome<'_>, _: bool) {}
        #[inline(always)]
        pub(crate) fn close(self) {}
    }

    #[derive(Default)]
    pub(crate) struct ConnectTrace;

    impl ConnectTrace {
        pub(crate) fn connect(&mut self, _: Option<&str>, _: bool) {}
        pub(crate) fn attempt(&mut self, _: &Target, _: bool) {}
        pub(crate) fn tls(&self, _: bool) {}
        pub(crate) fn auth(&self, _: &str) {}
        pub(crate) fn attempt_failed(&mut self, _: &Error) {}
        pub(crate) fn done(&mut self, _: Result<Option<(String, u16)>, &Error>) {}
    }

    pub(crate) struct AcquireSpan;

    impl AcquireSpan {
        pub(crate) fn new(_: &str) -> Option<AcquireSpan> {
            None
        }
        pub(crate) fn end(self, _: std::time::Duration, _: bool, _: Option<&Error>) {}
    }

    pub(crate) enum PoolEvent<'a> {
        HealthCheckFailed(#[allow(dead_code)] &'a Error),
        Retired(#[allow(dead_code)] &'a str),
    }

    pub(crate) fn pool_event(_: &str, _: PoolEvent<'_>) {}

    #[derive(Clone)]
    pub(crate) struct Context;

    impl Context {
        pub(crate) fn current() -> Context {
            Context
        }
        pub(crate) fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
            f()
        }
    }
}
