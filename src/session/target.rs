//! Whether a server fits `target_session_attrs`, decided as libpq 14+ decides it
//! (`PQconnectPoll`'s CONNECTION_CHECK_TARGET): from `in_hot_standby` and
//! `default_transaction_read_only` when the server reported them at startup (PostgreSQL 14
//! and later), else from a question asked on the same connection before it is handed out
//! (`SHOW transaction_read_only`, `SELECT pg_catalog.pg_is_in_recovery()`). It owns the
//! decision and the reading of the answers, nothing else: it never sends anything (the
//! session does) and never guesses what a server did not say.

use crate::conninfo::TargetSessionAttrs;
use crate::error::Error;

/// What is known of a server: `None` where it has not said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ServerState {
    pub(crate) in_hot_standby: Option<bool>,
    pub(crate) default_transaction_read_only: Option<bool>,
}

impl ServerState {
    /// From the parameters the server reported (`on` / `off`; anything else is unknown).
    pub(crate) fn reported(param: impl Fn(&str) -> Option<String>) -> ServerState {
        let flag = |name: &str| match param(name).as_deref() {
            Some("on") => Some(true),
            Some("off") => Some(false),
            _ => None,
        };
        ServerState {
            in_hot_standby: flag("in_hot_standby"),
            default_transaction_read_only: flag("default_transaction_read_only"),
        }
    }
}

/// A question for a server that did not report what the decision needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// `SHOW transaction_read_only`: on when either the server is a standby or the session
    /// defaults to read-only (which of the two does not matter to read-write / read-only).
    TransactionReadOnly,
    /// `SELECT pg_catalog.pg_is_in_recovery()`: whether the server is a standby.
    InRecovery,
}

impl Probe {
    /// The statement sent, exactly libpq's.
    pub(crate) fn query(self) -> &'static str {
        match self {
            Probe::TransactionReadOnly => "SHOW transaction_read_only",
            Probe::InRecovery => "SELECT pg_catalog.pg_is_in_recovery()",
        }
    }

    /// What the answer (the first column of the only row, as text) says, added to `state`;
    /// an answer that is not one row of a boolean is an error naming the statement, as
    /// libpq's `"SHOW transaction_read_only" failed`.
    pub(crate) fn learn(self, answer: Option<&str>, state: &mut ServerState) -> Result<(), Error> {
        match (self, answer) {
            // As libpq: "on" proves one of the two is on without saying which; both are
            // taken as on, which is all that read-write / read-only ask. "off": both off.
            (Probe::TransactionReadOnly, Some(v @ ("on" | "off"))) => {
                let on = v == "on";
                state.in_hot_standby = Some(on);
                state.default_transaction_read_only = Some(on);
                Ok(())
            }
            (Probe::InRecovery, Some(v @ ("t" | "f"))) => {
                state.in_hot_standby = Some(v == "t");
                Ok(())
            }
            (_, other) => Err(Error::connection(format!(
                "\"{}\" failed: the server answered {other:?}",
                self.query()
            ))),
        }
    }
}

/// The decision on one server.
#[derive(Debug)]
pub(crate) enum Fit {
    Fits,
    /// Not the kind of server asked for: libpq's reason; the walk goes on to the next host.
    Refused(Error),
    /// The server did not say enough: ask it this, [`Probe::learn`] the answer, decide again.
    Ask(Probe),
}

/// Whether a server in `state` fits `want` (prefer-standby's first pass is asked as
/// `Standby`, its second pass as `Any`), with libpq's reasons when it does not.
pub(crate) fn decide(want: TargetSessionAttrs, state: ServerState) -> Fit {
    let refuse = |why: &str| Fit::Refused(Error::connection(why.to_owned()));
    match want {
        TargetSessionAttrs::Any => Fit::Fits,
        TargetSessionAttrs::ReadWrite | TargetSessionAttrs::ReadOnly => {
            let (Some(standby), Some(default_ro)) =
                (state.in_hot_standby, state.default_transaction_read_only)
            else {
                return Fit::Ask(Probe::TransactionReadOnly);
            };
            let read_only = standby || default_ro;
            match want {
                TargetSessionAttrs::ReadWrite if read_only => refuse("session is read-only"),
                TargetSessionAttrs::ReadOnly if !read_only => refuse("session is not read-only"),
                _ => Fit::Fits,
            }
        }
        TargetSessionAttrs::Primary
        | TargetSessionAttrs::Standby
        | TargetSessionAttrs::PreferStandby => {
            let Some(standby) = state.in_hot_standby else {
                return Fit::Ask(Probe::InRecovery);
            };
            match want {
                TargetSessionAttrs::Primary if standby => refuse("server is in hot standby mode"),
                TargetSessionAttrs::Standby | TargetSessionAttrs::PreferStandby if !standby => {
                    refuse("server is not in hot standby mode")
                }
                _ => Fit::Fits,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TargetSessionAttrs::*;

    const ALL: [TargetSessionAttrs; 6] =
        [Any, ReadWrite, ReadOnly, Primary, Standby, PreferStandby];

    fn state(standby: Option<bool>, default_ro: Option<bool>) -> ServerState {
        ServerState {
            in_hot_standby: standby,
            default_transaction_read_only: default_ro,
        }
    }

    /// "fits", the refusal's text, or the probe's statement.
    fn outcome(want: TargetSessionAttrs, s: ServerState) -> String {
        match decide(want, s) {
            Fit::Fits => "fits".to_owned(),
            Fit::Refused(e) => e.to_string(),
            Fit::Ask(p) => p.query().to_owned(),
        }
    }

    #[test]
    fn a_server_that_reported_both_parameters_is_decided_without_a_question() {
        let primary = state(Some(false), Some(false));
        let standby = state(Some(true), Some(false));
        let read_only_primary = state(Some(false), Some(true));
        let cases = [
            (
                primary,
                [
                    "fits",
                    "fits",
                    "session is not read-only",
                    "fits",
                    "server is not in hot standby mode",
                    "server is not in hot standby mode",
                ],
            ),
            (
                standby,
                [
                    "fits",
                    "session is read-only",
                    "fits",
                    "server is in hot standby mode",
                    "fits",
                    "fits",
                ],
            ),
            (
                read_only_primary,
                [
                    "fits",
                    "session is read-only",
                    "fits",
                    "fits",
                    "server is not in hot standby mode",
                    "server is not in hot standby mode",
                ],
            ),
        ];
        for (s, wants) in cases {
            for (want, expect) in ALL.into_iter().zip(wants) {
                assert!(
                    outcome(want, s).ends_with(expect),
                    "{want:?} {s:?}: {}",
                    outcome(want, s)
                );
            }
        }
    }

    #[test]
    fn a_server_before_14_is_asked_what_libpq_asks_and_any_needs_nothing() {
        let silent = ServerState::default();
        assert_eq!(outcome(Any, silent), "fits");
        for want in [ReadWrite, ReadOnly] {
            assert_eq!(outcome(want, silent), "SHOW transaction_read_only");
        }
        for want in [Primary, Standby, PreferStandby] {
            assert_eq!(
                outcome(want, silent),
                "SELECT pg_catalog.pg_is_in_recovery()"
            );
        }
        // One of the two reported is not enough for read-write (libpq asks then too), but
        // in_hot_standby alone is for primary / standby.
        assert_eq!(
            outcome(ReadWrite, state(Some(false), None)),
            "SHOW transaction_read_only"
        );
        assert_eq!(
            outcome(ReadOnly, state(None, Some(true))),
            "SHOW transaction_read_only"
        );
        assert_eq!(outcome(Primary, state(Some(false), None)), "fits");
    }

    #[test]
    fn the_answers_decide_as_libpq_reads_them() {
        let after = |want, probe: Probe, answer: &str| {
            let mut s = ServerState::default();
            probe.learn(Some(answer), &mut s).unwrap();
            outcome(want, s)
        };
        let show = Probe::TransactionReadOnly;
        let recovery = Probe::InRecovery;
        assert_eq!(after(ReadWrite, show, "off"), "fits");
        assert!(after(ReadWrite, show, "on").ends_with("session is read-only"));
        assert_eq!(after(ReadOnly, show, "on"), "fits");
        assert!(after(ReadOnly, show, "off").ends_with("session is not read-only"));
        assert_eq!(after(Primary, recovery, "f"), "fits");
        assert!(after(Primary, recovery, "t").ends_with("server is in hot standby mode"));
        assert_eq!(after(Standby, recovery, "t"), "fits");
        assert!(after(Standby, recovery, "f").ends_with("server is not in hot standby mode"));
        assert_eq!(after(PreferStandby, recovery, "t"), "fits");
        assert!(after(PreferStandby, recovery, "f").ends_with("server is not in hot standby mode"));
    }

    #[test]
    fn an_answer_that_is_not_a_boolean_fails_naming_the_statement() {
        let mut s = ServerState::default();
        let e = Probe::InRecovery.learn(Some("maybe"), &mut s).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Connection);
        assert!(
            e.to_string()
                .contains("\"SELECT pg_catalog.pg_is_in_recovery()\" failed: the server answered Some(\"maybe\")"),
            "{e}"
        );
        let e = Probe::TransactionReadOnly.learn(None, &mut s).unwrap_err();
        assert!(
            e.to_string()
                .contains("\"SHOW transaction_read_only\" failed"),
            "{e}"
        );
        assert_eq!(
            s,
            ServerState::default(),
            "nothing learnt from a bad answer"
        );
    }

    #[test]
    fn reported_parameters_are_read_as_on_and_off_only() {
        let s = ServerState::reported(|name| match name {
            "in_hot_standby" => Some("on".to_owned()),
            "default_transaction_read_only" => Some("maybe".to_owned()),
            _ => None,
        });
        assert_eq!(s, state(Some(true), None));
        assert_eq!(ServerState::reported(|_| None), ServerState::default());
    }
}
