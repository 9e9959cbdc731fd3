//! Embedding: a connection driven by a program that owns its own `mio::Poll`.
//!
//! [`MioConnection`] is the same connection as [`crate::Connection`] without the `IoLoop`:
//! the program registers it under a `Token` of its choosing, forwards the events of that
//! token and the connection's deadline, and calls [`MioConnection::dispatch`] once per turn
//! of its loop, which writes what was queued and runs completion callbacks. It owns no
//! thread, no timer and no poll of its own, and never blocks.

use std::io;
use std::time::Instant;

use mio::{Interest, Registry, Token};

use crate::connection::to_cursor;
use crate::conninfo::Config;
use crate::error::Error;
use crate::params::Params;
use crate::proto::Request;
use crate::raw::{Action, Options, Phase, RawConnection};
use crate::row::Cursor;
use crate::types::QuoteContext;

/// A PostgreSQL connection for a program that runs its own mio loop. See the module docs
/// and `examples/custom_mio_loop.rs`.
pub struct MioConnection {
    raw: RawConnection,
    token: Option<Token>,
    registered: u64,
    on_connect: Option<crate::connection::Done<()>>,
}

impl std::fmt::Debug for MioConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MioConnection")
            .field("raw", &self.raw)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl MioConnection {
    /// Starts connecting to `dsn` (libpq's forms); nothing blocks. Register the connection
    /// with [`MioConnection::register`] before polling. `on_connect` runs from `dispatch`
    /// once the connection is ready or has failed.
    pub fn connect(dsn: &str, on_connect: impl FnOnce(Result<(), Error>) + 'static) -> Self {
        let raw = RawConnection::connect(Config::parse(dsn), Options::default(), Instant::now());
        MioConnection {
            raw,
            token: None,
            registered: 0,
            on_connect: Some(Box::new(on_connect)),
        }
    }

    /// Registers the socket under `token` for readable and writable events. Call it once;
    /// the connection registers a replacement socket itself when it moves to another host.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        self.token = Some(token);
        self.registered = u64::MAX;
        self.sync_registration(registry)
    }

    fn sync_registration(&mut self, registry: &Registry) -> io::Result<()> {
        let Some(token) = self.token else {
            return Ok(());
        };
        let generation = self.raw.socket_generation();
        if self.registered == generation {
            return Ok(());
        }
        self.registered = generation;
        // A replaced socket was closed, which removed it from the poll.
        match self.raw.source() {
            Some(s) => registry.register(s, token, Interest::READABLE | Interest::WRITABLE),
            None => Ok(()),
        }
    }

    /// Handles an event of this connection's token.
    pub fn handle_event(&mut self, registry: &Registry, event: &mio::event::Event) {
        self.raw.handle_ready(
            event.is_readable() || event.is_read_closed(),
            event.is_writable(),
            event.is_error(),
            Instant::now(),
        );
        self.after(registry);
    }

    /// The instant by which [`MioConnection::handle_timeout`] must be called (a connect
    /// timeout or a query timeout), if any: use it to bound the poll's timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.raw.next_deadline()
    }

    /// Handles deadlines that have passed.
    pub fn handle_timeout(&mut self, registry: &Registry, now: Instant) {
        self.raw.handle_timeout(now);
        self.after(registry);
    }

    fn after(&mut self, registry: &Registry) {
        if let Err(e) = self.sync_registration(registry) {
            self.raw
                .close(Error::io("cannot register the socket", e), Instant::now());
        }
    }

    /// Queues a query (psycopg2 parameters); `callback` gets its cursor from `dispatch`.
    pub fn execute<P: Params>(
        &mut self,
        query: &str,
        params: P,
        callback: impl FnOnce(Result<Cursor, Error>) + 'static,
    ) {
        // As the IoLoop binding: literals the server reads the same under either setting.
        let sql = if params.is_empty() {
            Ok(query.to_owned())
        } else {
            params.render(
                query,
                &QuoteContext {
                    standard_conforming_strings: false,
                },
            )
        };
        match sql {
            Ok(sql) => self.raw.request(
                Request::Simple { query: sql },
                Box::new(move |r| callback(r.and_then(|resp| to_cursor(String::new(), resp)))),
            ),
            Err(e) => callback(Err(e)),
        }
    }

    /// Writes what is queued and runs every finished callback. Call it once per turn of
    /// your loop (after handling events and timeouts). Returns how many callbacks ran.
    pub fn dispatch(&mut self, registry: &Registry) -> usize {
        self.raw.flush();
        self.raw.process_events(Instant::now());
        self.after(registry);
        let mut ran = 0;
        loop {
            let actions = self.raw.take_actions();
            if actions.is_empty() {
                return ran;
            }
            for action in actions {
                ran += 1;
                let Some(action) = action.deliver() else {
                    continue;
                };
                match action {
                    Action::Complete(cb, r) => cb(r),
                    // Already run by `Action::deliver`.
                    Action::Notify(..) | Action::Notice(..) | Action::CopyData(..) => {}
                    Action::Connected(r) => {
                        if let Some(cb) = self.on_connect.take() {
                            cb(r);
                        }
                    }
                    Action::Closed(e) => log::debug!("connection closed: {e}"),
                    // Cancelling needs a second socket, which only the IoLoop binding opens.
                    Action::Cancel => log::debug!("query timed out"),
                }
            }
            // Callbacks may have queued more requests.
            self.raw.flush();
            self.raw.process_events(Instant::now());
            self.after(registry);
        }
    }

    /// Requests queued or waiting for an answer.
    pub fn pending(&self) -> usize {
        self.raw.pending()
    }

    /// Whether the connection is ready for requests.
    pub fn is_ready(&self) -> bool {
        self.raw.phase() == Phase::Ready
    }

    /// Whether the connection is closed (or failed to connect).
    pub fn is_closed(&self) -> bool {
        self.raw.is_closed()
    }

    /// Closes the connection; queued requests fail from the next `dispatch`. Deregister the
    /// token afterwards if your loop keeps a table of them.
    pub fn close(&mut self) {
        self.raw.close(
            Error::connection("the connection was closed by the client"),
            Instant::now(),
        );
    }
}
