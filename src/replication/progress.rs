//! The stream's progress and what its status updates say: a small, pure stand-in for the
//! feedback rule, taking the time as an argument (see the tests).
//!
//! written = received; flushed = applied = confirmed, never more. While everything received
//! has been confirmed (no transaction is open on the consumer's side), an idle keepalive's
//! WAL end advances the flushed position, so an idle slot does not hold WAL back while only
//! unpublished tables change; never while any received data is unconfirmed.

use std::time::{Duration, Instant};

use super::copy_both::StatusUpdate;
use super::Lsn;

/// See the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct Feedback {
    /// The end of the last XLogData received.
    received: Lsn,
    /// The start of the last XLogData received: a confirm at or past it confirms it all.
    last_start: Lsn,
    /// What the consumer confirmed (or where the stream started).
    confirmed: Lsn,
    /// Data arrived that no later confirm covered: a transaction is open on the consumer's
    /// side. Only a confirm that moves the position forward, made after the data arrived,
    /// clears it (a transaction that began before the last commit has a lower start).
    pending: bool,
    /// The flushed position reported: `confirmed`, or a keepalive's WAL end when idle.
    flushed: Lsn,
    last_sent: Option<Instant>,
}

impl Feedback {
    pub(crate) fn new(start: Lsn) -> Feedback {
        Feedback {
            received: start,
            last_start: start,
            confirmed: start,
            pending: false,
            flushed: start,
            last_sent: None,
        }
    }

    pub(crate) fn received(&self) -> Lsn {
        self.received
    }

    pub(crate) fn confirmed(&self) -> Lsn {
        self.confirmed
    }

    /// An XLogData of `len` bytes starting at `start`.
    pub(crate) fn received_data(&mut self, start: Lsn, len: usize) {
        self.last_start = self.last_start.max(start);
        self.pending = true;
        let end = Lsn::from(u64::from(start).saturating_add(len as u64));
        self.received = self.received.max(end);
    }

    /// The consumer made everything up to `lsn` durable.
    pub(crate) fn confirm(&mut self, lsn: Lsn) {
        let lsn = lsn.min(self.received);
        if lsn <= self.confirmed {
            return;
        }
        self.confirmed = lsn;
        self.flushed = self.flushed.max(lsn);
        if lsn >= self.last_start {
            self.pending = false;
        }
    }

    /// Nothing received is waiting for the consumer.
    fn idle(&self) -> bool {
        !self.pending
    }

    /// A keepalive: an idle stream's flushed position follows the server's WAL end; true
    /// when a status update must go now (the server asked for one).
    pub(crate) fn keepalive(&mut self, wal_end: Lsn, reply_requested: bool, _now: Instant) -> bool {
        if self.idle() {
            self.flushed = self.flushed.max(wal_end);
            self.received = self.received.max(wal_end);
            self.confirmed = self.confirmed.max(wal_end);
        }
        reply_requested
    }

    /// Whether `interval` has passed since the last update.
    pub(crate) fn due(&self, now: Instant, interval: Duration) -> bool {
        self.last_sent
            .is_none_or(|t| now.saturating_duration_since(t) >= interval)
    }

    /// The update to send now.
    pub(crate) fn update(&mut self, reply_requested: bool, now: Instant) -> StatusUpdate {
        self.last_sent = Some(now);
        StatusUpdate {
            written: self.received,
            flushed: self.flushed,
            applied: self.flushed,
            reply_requested,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lsn(v: u64) -> Lsn {
        Lsn::from(v)
    }

    #[test]
    fn flushed_is_what_was_confirmed_never_what_was_received() {
        let now = Instant::now();
        let mut f = Feedback::new(lsn(100));
        f.received_data(lsn(200), 26);
        f.received_data(lsn(300), 26);
        f.confirm(lsn(250));
        let u = f.update(false, now);
        assert_eq!(
            (u.written, u.flushed, u.applied),
            (lsn(326), lsn(250), lsn(250))
        );
        // A keepalive while data is unconfirmed does not move flushed.
        f.keepalive(lsn(900), false, now);
        assert_eq!(f.update(false, now).flushed, lsn(250));
        // Once all is confirmed, the next keepalive's WAL end is flushed.
        f.confirm(lsn(326));
        f.keepalive(lsn(900), false, now);
        let u = f.update(false, now);
        assert_eq!((u.written, u.flushed), (lsn(900), lsn(900)));
    }

    #[test]
    fn a_transaction_that_began_before_the_last_commit_holds_the_idle_advance() {
        let now = Instant::now();
        let mut f = Feedback::new(lsn(100));
        f.received_data(lsn(500), 26); // A's Commit, end_lsn 500
        f.confirm(lsn(500));
        f.received_data(lsn(400), 20); // B's Begin: its first LSN is before A's end
        f.confirm(lsn(500)); // a repeated confirm confirms nothing new
        f.keepalive(lsn(900), false, now);
        assert_eq!(f.update(false, now).flushed, lsn(500));
        f.received_data(lsn(700), 26); // B's Commit
        f.confirm(lsn(700));
        f.keepalive(lsn(900), false, now);
        assert_eq!(f.update(false, now).flushed, lsn(900));
    }

    #[test]
    fn an_update_is_due_once_per_interval() {
        let t0 = Instant::now();
        let mut f = Feedback::new(lsn(1));
        let i = Duration::from_secs(10);
        assert!(f.due(t0, i));
        f.update(false, t0);
        assert!(!f.due(t0 + Duration::from_secs(9), i));
        assert!(f.due(t0 + i, i));
        assert!(
            f.keepalive(lsn(1), true, t0),
            "a reply requested is sent at once"
        );
    }
}
