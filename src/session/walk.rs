//! The connect walk: which servers one connect tries, in which order, and what a failed
//! attempt leads to, decided as libpq decides it.
//!
//! The attempts are listed before anything is connected (psycopg 3's `conninfo_attempts()`):
//! every target of the connection string, shuffled under load_balance_hosts=random, each with
//! what the server must be (target_session_attrs; prefer-standby lists every target twice,
//! first asking for a standby, then for any server). A host name is looked up on a helper
//! thread when its turn comes, and its addresses join the front of the list. A failed attempt
//! is answered [`Step::Retry`] (the same target again: sslmode=allow's TLS try after plain
//! text was refused, prefer's plain-text try after the TLS session was, or a startup
//! parameter of ours dropped), [`Step::Next`] (the next attempt), or [`Step::GiveUp`] with
//! the error that names every place tried.
//!
//! It owns the list, the attempt under way, the lookup thread's answer and the attempt lines;
//! it never touches a socket (the transport does) and never judges a server (`target.rs`
//! does; the session asks it with [`Attempt::want`]).

use std::collections::VecDeque;
use std::io;
use std::sync::mpsc::{Receiver, TryRecvError};

use crate::conninfo::{Config, LoadBalanceHosts, SslMode, Target, TargetSessionAttrs};
use crate::error::Error;

/// One attempt of the walk: where, how, and what the server must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attempt {
    pub(crate) target: Target,
    /// sslmode's second try of the same target (allow: TLS; prefer: plain text).
    pub(crate) second_try: bool,
    /// What the server must be: prefer-standby's first pass asks for `Standby`, its second
    /// for `Any`; other settings are asked as they are.
    pub(crate) want: TargetSessionAttrs,
}

/// What a failed attempt leads to.
#[derive(Debug)]
pub(crate) enum Step {
    /// The same target again, differently.
    Retry(Attempt),
    /// The next attempt of the list.
    Next(Attempt),
    /// No attempt is left: the connect fails with this.
    GiveUp(Error),
}

/// Why the same target may be worth another try after a failure.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Again {
    /// The server refused a startup parameter of ours, which the session has dropped.
    WithoutParameter,
    /// Under this sslmode, the other kind of connection may be accepted; `had_tls`: the
    /// failed attempt ran over TLS.
    SslMode { mode: SslMode, had_tls: bool },
}

/// See the module documentation.
#[derive(Default)]
pub(crate) struct Walk {
    /// The attempts still to make, in order.
    queue: VecDeque<Attempt>,
    /// The attempt under way (kept once connected: where the connection went).
    current: Option<Attempt>,
    /// One line per failed attempt, `host:port: why`, for the final error.
    lines: Vec<String>,
    last_error: Option<Error>,
    /// A host name being looked up on a helper thread (never on the loop's thread).
    lookup: Option<Receiver<io::Result<Vec<std::net::SocketAddr>>>>,
    /// load_balance_hosts=random: a name's addresses are shuffled too.
    random: bool,
}

impl Walk {
    /// Lists the attempts of one connect under `config`.
    pub(crate) fn list(config: &Config) -> Result<Walk, Error> {
        let mut targets = config.targets()?;
        let random = config.get_load_balance_hosts() == LoadBalanceHosts::Random;
        if random {
            super::shuffle(&mut targets);
        }
        let attempt = |want| {
            move |target: &Target| Attempt {
                target: target.clone(),
                second_try: false,
                want,
            }
        };
        let queue = match config.get_target_session_attrs() {
            TargetSessionAttrs::PreferStandby => targets
                .iter()
                .map(attempt(TargetSessionAttrs::Standby))
                .chain(targets.iter().map(attempt(TargetSessionAttrs::Any)))
                .collect(),
            want => targets.iter().map(attempt(want)).collect(),
        };
        Ok(Walk {
            queue,
            random,
            ..Walk::default()
        })
    }

    /// The attempt under way, or the one that connected.
    pub(crate) fn current(&self) -> Option<&Attempt> {
        self.current.as_ref()
    }

    /// The first attempt (or, after a failure, the next one).
    pub(crate) fn next(&mut self) -> Step {
        match self.queue.pop_front() {
            Some(a) => {
                self.current = Some(a.clone());
                Step::Next(a)
            }
            None => {
                self.current = None;
                Step::GiveUp(self.final_error())
            }
        }
    }

    /// The attempt under way failed with `e`: its line for the final error, then what comes
    /// next. `again`: why the same target may deserve another try.
    pub(crate) fn failed(&mut self, e: Error, again: Option<Again>) -> Step {
        if let Some(a) = self.current.clone() {
            let retry = match again {
                Some(Again::WithoutParameter) => Some(a.clone()),
                Some(Again::SslMode { mode, had_tls }) => sslmode_retry(mode, had_tls, &a, &e)
                    .then(|| Attempt {
                        second_try: true,
                        ..a.clone()
                    }),
                None => None,
            };
            if let Some(a) = retry {
                if matches!(again, Some(Again::SslMode { .. })) {
                    self.last_error = Some(e);
                }
                self.current = Some(a.clone());
                return Step::Retry(a);
            }
            self.lines.push(attempt_line(&a.target, &e));
        }
        // The server refused these credentials: libpq tries no further host.
        if e.code().is_some_and(|c| c.starts_with("28")) {
            self.queue.clear();
        }
        self.last_error = Some(e);
        self.next()
    }

    /// The connect was given up from outside (a close): nothing more is tried.
    pub(crate) fn abandon(&mut self) {
        self.queue.clear();
        self.lookup = None;
    }

    /// Looks the current attempt's host name up on a helper thread; `notify` tells the
    /// driver when the answer is there. Its outcome comes through [`Walk::poll_lookup`].
    pub(crate) fn start_lookup(&mut self, notify: Option<super::Notify>) -> Result<(), Error> {
        let Some(Attempt {
            target: Target::Tcp { host, port, .. },
            ..
        }) = &self.current
        else {
            return Err(Error::connection("no host name to look up"));
        };
        let (host, port) = (host.clone(), *port);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("momoko-resolve".into())
            .spawn(move || {
                use std::net::ToSocketAddrs;
                let r = (host.as_str(), port)
                    .to_socket_addrs()
                    .map(Iterator::collect);
                if tx.send(r).is_ok() {
                    if let Some(n) = notify {
                        n();
                    }
                }
            })
            .map_err(|e| Error::io("could not start a name lookup", e))?;
        self.lookup = Some(rx);
        Ok(())
    }

    /// Whether a name lookup is under way.
    pub(crate) fn is_looking_up(&self) -> bool {
        self.lookup.is_some()
    }

    /// Forgets a lookup still running (it answers into a dropped channel).
    pub(crate) fn drop_lookup(&mut self) {
        self.lookup = None;
    }

    /// Takes a finished name lookup. `None`: not finished (or none under way). `Some(Ok)`:
    /// the attempt at the first address (the others listed next, shuffled under
    /// load_balance_hosts=random); `Some(Err)`: the lookup failed, for [`Walk::failed`].
    pub(crate) fn poll_lookup(&mut self) -> Option<Result<Attempt, Error>> {
        let answer = match self.lookup.as_ref()?.try_recv() {
            Ok(a) => a,
            Err(TryRecvError::Empty) => return None,
            Err(TryRecvError::Disconnected) => {
                Err(io::Error::other("the name lookup thread ended"))
            }
        };
        self.lookup = None;
        let named = self.current.clone()?;
        let Target::Tcp { host, port, .. } = &named.target else {
            return None;
        };
        let mut addrs = match answer {
            Ok(a) if !a.is_empty() => a,
            Ok(_) => {
                return Some(Err(Error::connection(format!(
                    "host name {host:?} has no address"
                ))))
            }
            Err(e) => {
                return Some(Err(Error::io(
                    &format!("could not translate host name {host:?}"),
                    e,
                )))
            }
        };
        if self.random {
            super::shuffle(&mut addrs);
        }
        let mut each = addrs.into_iter().map(|a| Attempt {
            target: Target::Tcp {
                host: host.clone(),
                addr: Some(a.ip()),
                port: *port,
            },
            ..named.clone()
        });
        let first = each.next().expect("not empty");
        for (i, a) in each.enumerate() {
            self.queue.insert(i, a);
        }
        self.current = Some(first.clone());
        Some(Ok(first))
    }

    /// The last error, naming every place tried when there was more than one, as libpq
    /// does; the last SQLSTATE is kept.
    fn final_error(&mut self) -> Error {
        let err = self
            .last_error
            .take()
            .unwrap_or_else(|| Error::connection("no host to connect to"));
        if self.lines.len() <= 1 {
            return err;
        }
        let mut e = Error::connection(format!(
            "could not connect to any of {} servers tried:\n  {}",
            self.lines.len(),
            self.lines.join("\n  ")
        ));
        if let Some(code) = err.code() {
            e = e.with_code(code);
        }
        e
    }
}

/// Whether sslmode asks for the same target again after `e`, as libpq: allow tries TLS when
/// plain text was refused; prefer tries plain text when the TLS session was refused (the
/// server's own error, not a failed handshake). Only once, only over TCP, only with TLS
/// compiled in.
fn sslmode_retry(mode: SslMode, had_tls: bool, a: &Attempt, e: &Error) -> bool {
    let other_kind = match mode {
        SslMode::Allow => !had_tls,
        SslMode::Prefer => had_tls,
        _ => false,
    };
    super::transport::TLS_COMPILED
        && other_kind
        && e.as_db_error().is_some()
        && !a.second_try
        && matches!(a.target, Target::Tcp { .. })
}

/// One line of "could not connect to any of N servers tried": where, and why.
fn attempt_line(target: &Target, e: &Error) -> String {
    format!("{target}: {}", e.without_kind())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(dsn: &str) -> Walk {
        Walk::list(&Config::parse(dsn).unwrap()).unwrap()
    }

    fn take(next: Step) -> Attempt {
        match next {
            Step::Next(a) | Step::Retry(a) => a,
            Step::GiveUp(e) => panic!("gave up: {e}"),
        }
    }

    #[test]
    fn prefer_standby_lists_every_host_twice_first_asking_for_a_standby() {
        let mut w = walk("host=a,b port=1 target_session_attrs=prefer-standby");
        let order: Vec<(String, TargetSessionAttrs)> = std::iter::from_fn(|| match w.next() {
            Step::Next(a) => Some((a.target.to_string(), a.want)),
            _ => None,
        })
        .collect();
        use TargetSessionAttrs::{Any, Standby};
        let names: Vec<(&str, TargetSessionAttrs)> =
            order.iter().map(|(t, w)| (t.as_str(), *w)).collect();
        assert_eq!(
            names,
            [
                ("a:1", Standby),
                ("b:1", Standby),
                ("a:1", Any),
                ("b:1", Any)
            ]
        );
    }

    #[test]
    fn a_refused_login_gives_up_naming_every_place_tried() {
        let mut w = walk("host=a,b,c port=1");
        take(w.next());
        take(w.failed(Error::connection("refused"), None));
        let denied = Error::db(crate::error::DbError {
            severity: "FATAL".into(),
            code: "28P01".into(),
            message: "password authentication failed".into(),
            ..Default::default()
        });
        let Step::GiveUp(e) = w.failed(denied, None) else {
            panic!("a refused login ends the walk: c is never tried")
        };
        assert_eq!(e.code(), Some("28P01"));
        let text = e.to_string();
        assert!(
            text.starts_with(
                "connection error: could not connect to any of 2 servers tried:\n  a:1: refused\n  \
                 b:1: "
            ),
            "{text}"
        );
        assert!(text.contains("password authentication failed"), "{text}");
        assert!(!text.contains("c:1"), "{text}");
    }

    #[test]
    fn only_a_server_error_under_allow_or_prefer_retries_the_same_target() {
        let mut w = walk("host=a port=1");
        let first = take(w.next());
        let allow = Some(Again::SslMode {
            mode: SslMode::Allow,
            had_tls: false,
        });
        // A socket that failed is not a refusal by the server: the walk moves on.
        assert!(matches!(
            w.failed(Error::connection("no route"), allow),
            Step::GiveUp(_)
        ));
        let mut w = walk("host=a port=1");
        take(w.next());
        let refused = Error::db(crate::error::DbError {
            severity: "FATAL".into(),
            code: "28000".into(),
            message: "no pg_hba.conf entry".into(),
            ..Default::default()
        });
        let tls = super::super::transport::TLS_COMPILED;
        match w.failed(refused, allow) {
            Step::Retry(a) if tls => {
                assert_eq!(a.target, first.target);
                assert!(a.second_try);
            }
            Step::GiveUp(_) if !tls => {}
            other => panic!("{other:?} with TLS compiled in: {tls}"),
        }
    }
}
