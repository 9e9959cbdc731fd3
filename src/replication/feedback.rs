//! The feedback rule: which positions a replication client reports in its standby status
//! updates, and when it sends them.
//!
//! Pure: every method takes the time as an argument, nothing here reads a clock, sleeps or
//! sends; the stream driver feeds it what arrives, asks [`Feedback::poll_status`] at
//! [`Feedback::next_deadline`], and sends what it returns. It must never report as flushed
//! a position past work the consumer has not confirmed (a crash would then lose it:
//! conduit#313), and must not hold an idle slot back either (the server would keep WAL until
//! its disk fills: psycopg2#780, npgsql#6143, pgjdbc#2941, supabase/etl#429).
//!
//! The rules:
//! * written = the end of the last XLogData received (never less than flushed);
//!   flushed = applied = the highest position passed to [`confirm`](Feedback::confirm), or
//!   further only by the idle rule below; neither ever goes backward.
//! * Idle rule: a keepalive's WAL end becomes the flushed position when nothing received is
//!   unconfirmed. On a logical stream of typed changes ([`Tracking::Transactions`]) that
//!   means no transaction (plain, prepared, or streamed) is open and every transaction end
//!   received (Commit, StreamCommit, Prepare, StreamPrepare, CommitPrepared and
//!   RollbackPrepared end LSNs, a non-transactional message's LSN) has been confirmed. On a raw
//!   stream ([`Tracking::Messages`]), which has no transactions to see, it means that since
//!   the newest XLogData arrived, a confirmation named a position at or past the highest
//!   XLogData start received.
//!   Physical WAL ([`Tracking::Physical`]) has no idle WAL: flushed is only what was
//!   confirmed.
//! * A status goes out every `status_interval` (none periodically when it is zero), at once
//!   when a keepalive asks for a reply or the consumer asks for one, and once before a
//!   clean stop ([`final_status`](Feedback::final_status)).
//! * Until something past the start position is flushed, flushed and applied are sent as
//!   0/0, which the server ignores: the start position may lie before the slot's
//!   `confirmed_flush_lsn` (the server streams from the later of the two), and servers before
//!   PostgreSQL 18 would move the slot back to it.
//!
//! ```text
//!             on_change(Begin / BeginPrepare / StreamStart)
//!   settled ────────────────────────────────────────────────▶ open
//!   (idle rule      ◀──────────── confirm(x ≥ every end) ──── (no idle advance)
//!    applies)        after Commit / Prepare / StreamCommit / StreamAbort closes it
//! ```

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::copy_both::StatusUpdate;
use super::{Change, Lsn};

/// The default `status_interval`, as psycopg2's and PostgreSQL's own
/// `wal_receiver_status_interval`.
pub const DEFAULT_STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// What the feedback rule can see of the stream, which decides when everything received
/// counts as confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracking {
    /// Decoded pgoutput: the stream passes each [`Change`] to
    /// [`on_change`](Feedback::on_change), and the rule follows transactions.
    Transactions,
    /// Raw logical XLogData (another output plugin): the rule follows confirmations of
    /// message positions.
    Messages,
    /// Physical WAL: every byte is sent, so there is no idle WAL to skip; flushed is only
    /// ever what the consumer confirmed.
    Physical,
}

/// The feedback state of one replication stream.
#[derive(Debug, Clone)]
pub struct Feedback {
    tracking: Tracking,
    status_interval: Duration,
    /// Where the stream started: flushed positions up to it are not reported.
    start: Lsn,
    /// The end of the newest XLogData (the highest, since logical XLogData may carry 0/0).
    received: Lsn,
    /// The start of the newest XLogData (the highest).
    last_start: Lsn,
    /// The highest position the consumer confirmed.
    confirmed: Lsn,
    /// What is reported as flushed: `confirmed`, or further by the idle rule.
    flushed: Lsn,
    /// Messages: an XLogData arrived after the last confirmation that covered the stream.
    dirty: bool,
    /// Transactions: a plain or prepared transaction is between its Begin and its end.
    open_tx: bool,
    /// Transactions: the streamed transactions with blocks sent and no end yet.
    open_streams: BTreeSet<u32>,
    /// Transactions: the highest transaction end received.
    need: Lsn,
    /// When the last status went out (or the stream started).
    last_sent: Instant,
    /// Since when a status is owed at once (a keepalive asked, or the consumer did).
    due_since: Option<Instant>,
}

impl Feedback {
    /// The state of a stream started at `start` (0/0 for the slot's position) at `now`.
    pub fn new(
        tracking: Tracking,
        start: Lsn,
        status_interval: Duration,
        now: Instant,
    ) -> Feedback {
        Feedback {
            tracking,
            status_interval,
            start,
            received: Lsn::ZERO,
            last_start: Lsn::ZERO,
            confirmed: start,
            flushed: start,
            dirty: false,
            open_tx: false,
            open_streams: BTreeSet::new(),
            need: Lsn::ZERO,
            last_sent: now,
            due_since: None,
        }
    }

    /// An XLogData arrived: its start, and its end (the start plus the data's length for
    /// physical WAL; the start itself for a logical stream, whose positions are those of
    /// the records the messages came from).
    pub fn on_xlogdata(&mut self, start: Lsn, end: Lsn) {
        self.received = self.received.max(end).max(start);
        self.last_start = self.last_start.max(start);
        self.dirty = true;
    }

    /// A decoded change arrived (after its XLogData's [`on_xlogdata`](Feedback::on_xlogdata)).
    /// Only [`Tracking::Transactions`] follows them.
    pub fn on_change(&mut self, change: &Change) {
        if self.tracking != Tracking::Transactions {
            return;
        }
        match change {
            Change::Begin { .. } | Change::BeginPrepare { .. } => self.open_tx = true,
            Change::Commit { end_lsn, .. } | Change::Prepare { end_lsn, .. } => {
                self.open_tx = false;
                self.need = self.need.max(*end_lsn);
            }
            Change::CommitPrepared { end_lsn, .. } => self.need = self.need.max(*end_lsn),
            Change::RollbackPrepared {
                rollback_end_lsn, ..
            } => self.need = self.need.max(*rollback_end_lsn),
            Change::StreamStart { xid, .. } => {
                self.open_streams.insert(*xid);
            }
            Change::StreamCommit { xid, end_lsn, .. }
            | Change::StreamPrepare { xid, end_lsn, .. } => {
                self.open_streams.remove(xid);
                self.need = self.need.max(*end_lsn);
            }
            Change::StreamAbort { xid, subxid, .. } if xid == subxid => {
                // An aborted transaction changed nothing: nothing of it needs confirming.
                self.open_streams.remove(xid);
            }
            Change::Message {
                transactional: false,
                lsn,
                xid: None,
                ..
            } if !self.open_tx => self.need = self.need.max(*lsn),
            _ => {}
        }
    }

    /// The consumer has made everything up to `lsn` durable. Lower positions than one
    /// confirmed before change nothing.
    pub fn confirm(&mut self, lsn: Lsn) {
        self.confirmed = self.confirmed.max(lsn);
        self.flushed = self.flushed.max(self.confirmed);
        // The argument, not the running maximum: a message that arrived after the last
        // confirmation stays unconfirmed until a confirmation names a position at or past
        // every start received (an earlier one may be a transaction still in progress).
        if lsn >= self.last_start {
            self.dirty = false;
        }
    }

    /// Whether something received is not confirmed yet (the idle rule is off).
    pub fn has_unconfirmed(&self) -> bool {
        match self.tracking {
            Tracking::Transactions => {
                self.open_tx || !self.open_streams.is_empty() || self.confirmed < self.need
            }
            Tracking::Messages => self.dirty,
            Tracking::Physical => self.confirmed < self.received,
        }
    }

    /// A primary keepalive arrived at `now`: its WAL end advances the flushed position when
    /// nothing received is unconfirmed; a reply request makes a status due at once.
    pub fn on_keepalive(&mut self, wal_end: Lsn, reply_requested: bool, now: Instant) {
        if self.tracking != Tracking::Physical && !self.has_unconfirmed() {
            self.flushed = self.flushed.max(wal_end);
        }
        if reply_requested {
            self.request_status(now);
        }
    }

    /// Makes a status due at once (the consumer's `send_feedback`).
    pub fn request_status(&mut self, now: Instant) {
        self.due_since.get_or_insert(now);
    }

    /// When [`poll_status`](Feedback::poll_status) next has a status to send: at once (a
    /// time already past) when one is owed, else `status_interval` after the last;
    /// `None` when no status is owed and periodic ones are off.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.due_since.or_else(|| {
            (!self.status_interval.is_zero()).then(|| self.last_sent + self.status_interval)
        })
    }

    /// The status to send at `now`, if one is due; it then counts as sent.
    pub fn poll_status(&mut self, now: Instant) -> Option<StatusUpdate> {
        match self.next_deadline() {
            Some(at) if at <= now => Some(self.final_status(now)),
            _ => None,
        }
    }

    /// The status to send now whatever the schedule (before a clean stop); it counts as
    /// sent.
    pub fn final_status(&mut self, now: Instant) -> StatusUpdate {
        self.last_sent = now;
        self.due_since = None;
        self.status()
    }

    /// The positions a status sent now would carry.
    pub fn status(&self) -> StatusUpdate {
        let flushed = if self.flushed > self.start {
            self.flushed
        } else {
            Lsn::ZERO
        };
        StatusUpdate {
            written: self.received.max(flushed),
            flushed,
            applied: flushed,
            reply_requested: false,
        }
    }

    /// The end of the newest XLogData received.
    pub fn received(&self) -> Lsn {
        self.received
    }

    /// The highest position confirmed by the consumer.
    pub fn confirmed(&self) -> Lsn {
        self.confirmed
    }

    /// The flushed position as the next status reports it (0/0 until past the start).
    pub fn flushed(&self) -> Lsn {
        self.status().flushed
    }

    /// A new session after a lost connection, started again at `start` (the confirmed
    /// position): the server sends again every transaction past it, so nothing received
    /// before counts as open, and what the server confirmed stays confirmed.
    pub fn restart(&mut self, start: Lsn, now: Instant) {
        let confirmed = self.confirmed.max(start);
        let mut fresh = Feedback::new(self.tracking, start, self.status_interval, now);
        fresh.confirmed = confirmed;
        fresh.flushed = self.flushed.max(confirmed);
        fresh.received = self.received;
        *self = fresh;
    }
}

#[cfg(test)]
#[path = "feedback_tests.rs"]
mod tests;
