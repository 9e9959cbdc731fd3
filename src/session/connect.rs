//! The session's side of a connect: from `connect` to `Action::Connected`. It follows the
//! walk (`walk.rs`: which attempt comes next), drives the transport's handshakes (socket,
//! SSLRequest, TLS) for the attempt under way, starts the protocol, has the server judged
//! for target_session_attrs (`target.rs`), and runs setsession. It owns no state of its own:
//! these are `Session` methods, kept here so that `mod.rs` holds the durable state and the
//! request plumbing.

use std::time::Instant;

use super::target::{self, Fit, Probe, ServerState};
use super::transport::Negotiated;
use super::walk::{self, Again, Step, Walk};
use super::{ops, Phase, Recipient, Session, Stage};
use crate::conninfo::{Config, Target};
use crate::error::{Error, ErrorKind};
use crate::proto::{Credentials, Protocol, Request, Response};

impl Session {
    /// Starts connecting (or reconnecting) to the first target of the connection string.
    /// Failures are reported as `Action::Connected(Err(..))`, never returned, so that every
    /// caller sees them the same way. Listeners, types and options carry over; LISTEN is
    /// issued again for every listener after setsession.
    pub(crate) fn connect(&mut self, now: Instant) {
        self.now = Some(now);
        self.phase = Phase::Connecting;
        self.walk.abandon();
        self.deadlines.discard = None;
        self.discards = 0;
        self.setsession = self.options.setsession.clone();
        let mut channels: Vec<&String> = self.listeners.keys().collect();
        channels.sort();
        for channel in channels {
            self.setsession
                .push(format!("LISTEN {}", ops::quote_ident(channel)));
        }
        let config = match &self.options.config {
            Some(c) => Ok(c.clone()),
            None => Config::parse(&self.dsn),
        };
        let config = match config {
            Ok(c) => c,
            Err(e) => return self.finish_connect(Err(e)),
        };
        self.startup_params = config.startup_params();
        crate::types::pin_text_styles(&mut self.startup_params);
        let refused = &self.refused_params;
        self.startup_params.retain(|(k, _)| !refused.contains(k));
        self.credentials = Credentials {
            user: config.get_user().unwrap_or_default().to_owned(),
            password: None,
            channel_binding: config.get_tls().channel_binding(),
            tls_server_end_point: None,
        };
        self.connect_timeout = self
            .options
            .connect_timeout
            .or(config.get_connect_timeout());
        self.walk = match Walk::list(&config) {
            Ok(w) => w,
            Err(e) => return self.finish_connect(Err(e)),
        };
        self.observing = crate::observe::Observing::new(&self.options.observe, Some(&config));
        self.trace
            .connect(self.observing.namespace(), self.server_version.is_some());
        self.config = Some(config);
        let first = self.walk.next();
        self.follow(first, now);
    }

    /// The attempt under way failed with `e`: its span closes, and the walk says what next.
    fn walk_failed(&mut self, e: Error, again: Option<Again>) -> Step {
        if let Some(method) = self.proto.as_ref().and_then(Protocol::auth_method) {
            self.trace.auth(method);
        }
        self.trace.attempt_failed(&e);
        self.walk.failed(e, again)
    }

    /// Follows the walk from `next` until an attempt is under way or none is left.
    pub(super) fn follow(&mut self, mut next: Step, now: Instant) {
        loop {
            let attempt = match next {
                Step::Retry(a) => {
                    log::debug!("trying {} again", a.target);
                    a
                }
                Step::Next(a) => a,
                Step::GiveUp(e) => {
                    self.reset_transport();
                    return self.finish_connect(Err(e));
                }
            };
            match self.open_attempt(&attempt, now) {
                Ok(()) => return,
                Err(e) => {
                    log::debug!("connecting to {:?} failed: {e}", attempt.target);
                    next = self.walk_failed(e, None);
                }
            }
        }
    }

    /// Drops the socket, the TLS session and the protocol core of an attempt.
    pub(super) fn reset_transport(&mut self) {
        // A lookup still running answers into a dropped channel.
        self.walk.drop_lookup();
        self.transport.reset();
        self.drop_proto();
    }

    /// Starts `attempt`: its password, its TLS plan, then a lookup of its host name (on a
    /// helper thread; the connect deadline covers it) or its socket.
    pub(super) fn open_attempt(
        &mut self,
        attempt: &walk::Attempt,
        now: Instant,
    ) -> Result<(), Error> {
        self.reset_transport();
        let target = &attempt.target;
        self.trace.attempt(target, attempt.second_try);
        // The password file is read per host, as libpq does.
        self.credentials.password = self
            .config
            .as_ref()
            .and_then(|c| c.password_for(target))
            .map(String::into_bytes);
        if let Some(p) = &self.options.password {
            self.credentials.password = Some(p.clone().into_bytes());
        }
        self.credentials.tls_server_end_point = None;
        self.transport.plan(
            target,
            self.config.as_ref(),
            attempt.second_try,
            &self.options.tls,
        )?;
        let named = matches!(target, Target::Tcp { host, addr: None, .. }
            if host.parse::<std::net::IpAddr>().is_err());
        if named {
            self.walk.start_lookup(self.notify.clone())?;
        } else {
            self.transport.open(target, self.config.as_ref())?;
        }
        self.phase = Phase::Connecting;
        self.deadlines.connect = self.connect_timeout.map(|t| now + t);
        Ok(())
    }

    /// Whether a name lookup is under way (a driver without a cross-thread wake-up polls
    /// `poll_resolved` while it is).
    pub(crate) fn is_resolving(&self) -> bool {
        self.walk.is_looking_up()
    }

    /// Takes a finished name lookup: connects to its first address (the others listed next),
    /// or fails the attempt.
    pub(crate) fn poll_resolved(&mut self, now: Instant) {
        self.now = Some(now);
        match self.walk.poll_lookup() {
            None => return,
            Some(Ok(first)) => {
                if let Err(e) = self.open_attempt(&first, now) {
                    let next = self.walk_failed(e, None);
                    self.follow(next, now);
                }
            }
            Some(Err(e)) => self.attempt_failed(e, now),
        }
        self.process_events(now);
    }

    /// The attempt failed before the connection was established: the walk says whether the
    /// same target is tried again (a refused startup parameter, sslmode), the next one, or
    /// none.
    pub(super) fn attempt_failed(&mut self, e: Error, now: Instant) {
        let mut again = None;
        // A pooler that knows no IntervalStyle (PgBouncer before 1.20 refuses any startup
        // parameter it does not track): the styles are ours to pin, not the caller's, so
        // the same target is tried again without it, and so are later connects.
        if let Some(name) = refused_pin(&e) {
            if let Some(i) = self.startup_params.iter().position(|(k, _)| *k == name) {
                log::info!("the server refuses the startup parameter {name}; not sending it");
                self.startup_params.remove(i);
                self.refused_params.push(name);
                again = Some(Again::WithoutParameter);
            }
        }
        if again.is_none() {
            again = self.config.as_ref().map(|c| Again::SslMode {
                mode: c.get_ssl_mode(),
                had_tls: self.transport.has_tls(),
            });
        }
        let next = self.walk_failed(e, again);
        self.follow(next, now);
    }

    /// Whether the server just connected to fits target_session_attrs, given what is known
    /// of it (`known`: what it reported, plus the answers to questions asked).
    pub(super) fn check_target(&self, known: ServerState) -> Fit {
        let Some(config) = self.config.as_ref() else {
            return Fit::Fits;
        };
        let want = self
            .walk
            .current()
            .map_or(config.get_target_session_attrs(), |a| a.want);
        target::decide(want, known)
    }

    /// What the server reported of itself at startup (PostgreSQL 14 and later).
    pub(super) fn reported_state(&self) -> ServerState {
        ServerState::reported(|name| self.parameter(name).map(str::to_owned))
    }

    /// Accepts or leaves the server just connected to; one that did not say enough is asked
    /// first, on the same connection, as libpq asks (the answer comes back through
    /// `take_probe_answer`).
    pub(super) fn judge_target(&mut self, known: ServerState, now: Instant) {
        match self.check_target(known) {
            Fit::Fits => self.on_connected(),
            Fit::Refused(e) => self.leave_target(e, now),
            Fit::Ask(probe) => {
                let query = probe.query().to_owned();
                let Some(proto) = self.proto.as_mut() else {
                    return;
                };
                match proto.send(Request::Simple { query }) {
                    Ok(()) => {
                        self.phase = Phase::Starting {
                            probing: Some((probe, known)),
                        };
                        self.flush();
                    }
                    Err(e) => self.leave_target(e, now),
                }
            }
        }
    }

    /// The answer to the question of `judge_target`, then the decision made again with it.
    pub(super) fn take_probe_answer(
        &mut self,
        probe: Probe,
        mut known: ServerState,
        answer: Result<Response, Error>,
        now: Instant,
    ) {
        let learnt = match answer {
            Ok(Response::Query(result)) => {
                let rows = match &result.columns {
                    Some(columns) => result.rows.to_vec(columns),
                    None => Vec::new(),
                };
                let value = match rows.as_slice() {
                    [row] => row.get_raw(0).and_then(|v| std::str::from_utf8(v).ok()),
                    _ => None,
                };
                probe.learn(value, &mut known)
            }
            Ok(other) => Err(Error::connection(format!(
                "\"{}\" failed: unexpected answer {other:?}",
                probe.query()
            ))),
            Err(e) => Err(Error::connection(format!(
                "\"{}\" failed: {}",
                probe.query(),
                e.without_kind()
            ))),
        };
        match learnt {
            Ok(()) => self.judge_target(known, now),
            Err(e) => self.leave_target(e, now),
        }
    }

    /// Not the kind of server asked for (or it could not say): leave it politely, try the
    /// next target.
    pub(super) fn leave_target(&mut self, e: Error, now: Instant) {
        if let Some(p) = self.proto.as_mut() {
            p.terminate(e.clone());
        }
        self.flush();
        self.attempt_failed(e, now);
    }

    /// The socket's readiness in the phases before the protocol runs: the socket's connect,
    /// the SSLRequest's answer, the TLS handshake. True when the protocol may read and
    /// write now; false while the attempt waits, or after it failed (the walk moved on).
    pub(super) fn advance_handshake(
        &mut self,
        readable: bool,
        writable: bool,
        error: bool,
        now: Instant,
    ) -> bool {
        if self.stage() == Stage::Connecting {
            if !(writable || error || readable) {
                return false;
            }
            let Some(state) = self.transport.connected() else {
                return false;
            };
            match state {
                Ok(true) => {
                    if !self.transport.wants_tls() {
                        self.start_protocol();
                    } else if self.transport.wants_direct_tls() {
                        if let Err(e) = self.transport.start_tls() {
                            {
                                self.attempt_failed(e, now);
                                return false;
                            }
                        }
                        self.phase = Phase::TlsHandshake;
                    } else if let Err(e) = self.transport.send_ssl_request() {
                        {
                            self.attempt_failed(e, now);
                            return false;
                        }
                    } else {
                        self.phase = Phase::SslRequest;
                    }
                }
                Ok(false) => return false, // spurious: the handshake is still going
                Err(e) => {
                    self.attempt_failed(Error::io("could not connect to the server", e), now);
                    return false;
                }
            }
        }
        if self.stage() == Stage::SslRequest {
            if !(readable || error) {
                return false;
            }
            match self.transport.read_ssl_answer() {
                Ok(None) => return false, // not yet
                Ok(Some(Negotiated::Tls)) => self.phase = Phase::TlsHandshake,
                Ok(Some(Negotiated::Plain)) => self.start_protocol(),
                Err(e) => {
                    self.attempt_failed(e, now);
                    return false;
                }
            }
        }
        if self.stage() == Stage::TlsHandshake {
            match self.transport.drive_handshake() {
                Ok(None) => return false, // not yet
                Ok(Some(server_cert)) => {
                    // SCRAM-SHA-256-PLUS binds the login to this server certificate.
                    if let Some(der) = server_cert {
                        if let Err(e) = self.credentials.set_server_certificate(&der) {
                            {
                                self.attempt_failed(e, now);
                                return false;
                            }
                        }
                    }
                    self.start_protocol();
                }
                Err(e) => {
                    self.attempt_failed(e, now);
                    return false;
                }
            }
        }
        true
    }

    pub(super) fn start_protocol(&mut self) {
        self.phase = Phase::Starting { probing: None };
        self.trace.tls(self.transport.has_tls());
        let versions = self.config.as_ref().map_or_else(Default::default, |c| {
            crate::proto::Versions::new(c.get_min_protocol_version(), c.get_max_protocol_version())
        });
        let mut proto = Protocol::new(
            &self.startup_params,
            self.credentials.clone(),
            self.max_message_size,
            versions,
        );
        proto.set_types(self.types.clone());
        self.proto = Some(proto);
    }

    /// A connect attempt past its connect_timeout fails, and the walk moves on.
    pub(super) fn check_connect_timeout(&mut self, now: Instant) {
        if let Some(deadline) = self.deadlines.connect {
            if now >= deadline
                && matches!(
                    self.stage(),
                    Stage::Connecting | Stage::SslRequest | Stage::TlsHandshake | Stage::Starting
                )
            {
                let t = self.connect_timeout.unwrap_or_default();
                let e = Error::new(
                    ErrorKind::Timeout,
                    format!("connection timed out after {t:?}"),
                );
                // A timeout is no refusal: no sslmode retries it.
                let next = self.walk_failed(e, None);
                self.follow(next, now);
                self.process_events(now);
            }
        }
    }

    /// The server fits: setsession runs, then the connection is ready.
    pub(super) fn on_connected(&mut self) {
        if self.setsession.is_empty() {
            self.finish_connect(Ok(()));
            return;
        }
        self.phase = Phase::Setsession { error: None };
        let n = self.setsession.len();
        for (i, stmt) in std::mem::take(&mut self.setsession).into_iter().enumerate() {
            self.send(
                Request::Simple { query: stmt },
                Recipient::Setsession { last: i + 1 == n },
                None,
            );
        }
        self.flush();
    }
}

/// The pinned startup parameter (see `types::pin_text_styles`) that `e` refuses, from
/// PgBouncer's "unsupported startup parameter: NAME" (08P01).
fn refused_pin(e: &Error) -> Option<String> {
    let db = e.as_db_error().filter(|db| db.code == "08P01")?;
    let name = db.message.strip_prefix("unsupported startup parameter: ")?;
    crate::types::PINNED_STYLES
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name.trim()))
        .map(|(k, _)| (*k).to_owned())
}
