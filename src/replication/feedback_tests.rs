//! The feedback rule on a virtual clock: an `Instant` taken once and moved by hand.

use std::time::{Duration, Instant, SystemTime};

use super::*;

fn lsn(v: u64) -> Lsn {
    Lsn::from(v)
}

fn begin() -> Change {
    Change::Begin {
        xid: 1,
        final_lsn: lsn(0),
        commit_time: SystemTime::UNIX_EPOCH,
    }
}

fn commit(end: u64) -> Change {
    Change::Commit {
        commit_lsn: lsn(end - 8),
        end_lsn: lsn(end),
        commit_time: SystemTime::UNIX_EPOCH,
    }
}

/// A transaction as pgoutput sends it: Begin at `first`, Commit whose XLogData starts at
/// its end LSN.
fn transaction(f: &mut Feedback, first: u64, end: u64) {
    f.on_xlogdata(lsn(first), lsn(first));
    f.on_change(&begin());
    f.on_xlogdata(lsn(end), lsn(end));
    f.on_change(&commit(end));
}

fn status(written: u64, flushed: u64) -> StatusUpdate {
    StatusUpdate {
        written: lsn(written),
        flushed: lsn(flushed),
        applied: lsn(flushed),
        reply_requested: false,
    }
}

fn logical(t0: Instant) -> Feedback {
    Feedback::new(
        Tracking::Transactions,
        Lsn::ZERO,
        DEFAULT_STATUS_INTERVAL,
        t0,
    )
}

#[test]
fn status_goes_out_every_interval_and_not_before() {
    let t0 = Instant::now();
    let mut f = logical(t0);
    assert_eq!(f.next_deadline(), Some(t0 + Duration::from_secs(10)));
    assert_eq!(f.poll_status(t0 + Duration::from_millis(9_999)), None);
    assert_eq!(
        f.poll_status(t0 + Duration::from_secs(10)),
        Some(status(0, 0))
    );
    // The next one is 10 s after that one, not after the start.
    assert_eq!(f.next_deadline(), Some(t0 + Duration::from_secs(20)));
    assert_eq!(f.poll_status(t0 + Duration::from_secs(15)), None);
    assert!(f.poll_status(t0 + Duration::from_secs(21)).is_some());
    assert_eq!(f.next_deadline(), Some(t0 + Duration::from_secs(31)));
}

#[test]
fn zero_interval_sends_only_when_asked() {
    let t0 = Instant::now();
    let mut f = Feedback::new(Tracking::Transactions, Lsn::ZERO, Duration::ZERO, t0);
    assert_eq!(f.next_deadline(), None);
    assert_eq!(f.poll_status(t0 + Duration::from_secs(3600)), None);
    f.request_status(t0 + Duration::from_secs(5));
    assert_eq!(f.next_deadline(), Some(t0 + Duration::from_secs(5)));
    assert!(f.poll_status(t0 + Duration::from_secs(5)).is_some());
    assert_eq!(f.next_deadline(), None);
}

#[test]
fn keepalive_asking_for_a_reply_makes_a_status_due_at_once() {
    let t0 = Instant::now();
    let mut f = logical(t0);
    let t1 = t0 + Duration::from_secs(2);
    f.on_keepalive(lsn(0x500), false, t1);
    assert_eq!(f.poll_status(t1), None);
    f.on_keepalive(lsn(0x500), true, t1);
    assert_eq!(f.next_deadline(), Some(t1));
    // Idle with nothing received: the keepalive's WAL end is flushed.
    assert_eq!(f.poll_status(t1), Some(status(0x500, 0x500)));
    assert_eq!(f.next_deadline(), Some(t1 + Duration::from_secs(10)));
    // A second request before the status went out does not move the due time.
    f.request_status(t1 + Duration::from_secs(1));
    f.on_keepalive(lsn(0x500), true, t1 + Duration::from_secs(2));
    assert_eq!(f.next_deadline(), Some(t1 + Duration::from_secs(1)));
}

#[test]
fn flushed_is_what_was_confirmed_and_written_what_was_received() {
    let t0 = Instant::now();
    let mut f = logical(t0);
    transaction(&mut f, 0x100, 0x180);
    assert_eq!(f.received(), lsn(0x180));
    assert_eq!(f.final_status(t0), status(0x180, 0));
    f.confirm(lsn(0x180));
    assert_eq!(f.final_status(t0), status(0x180, 0x180));
    // Never backward.
    f.confirm(lsn(0x120));
    assert_eq!(f.confirmed(), lsn(0x180));
    assert_eq!(f.final_status(t0), status(0x180, 0x180));
}

#[test]
fn idle_keepalive_advances_flushed_once_everything_received_is_confirmed() {
    let t0 = Instant::now();
    let mut f = logical(t0);
    transaction(&mut f, 0x100, 0x180);
    // Confirmed? Not yet: the keepalive's WAL end must not pass the unconfirmed commit.
    f.on_keepalive(lsn(0x900), false, t0);
    assert_eq!(f.final_status(t0), status(0x180, 0));
    f.confirm(lsn(0x180));
    assert!(!f.has_unconfirmed());
    // Now only unpublished tables change: the WAL end moves and so does flushed.
    f.on_keepalive(lsn(0x900), false, t0);
    assert_eq!(f.final_status(t0), status(0x900, 0x900));
    f.on_keepalive(lsn(0xA00), false, t0);
    assert_eq!(f.flushed(), lsn(0xA00));
    // A keepalive behind it does not move it back.
    f.on_keepalive(lsn(0x950), false, t0);
    assert_eq!(f.flushed(), lsn(0xA00));
}

#[test]
fn keepalive_inside_a_transaction_never_advances_flushed() {
    let t0 = Instant::now();
    let mut f = logical(t0);
    transaction(&mut f, 0x100, 0x180);
    f.confirm(lsn(0x180));
    // An interleaved transaction: it began (0x150) before the last commit's end, and
    // commits at 0x300. Its Begin and a change arrive; then a keepalive past its commit.
    f.on_xlogdata(lsn(0x150), lsn(0x150));
    f.on_change(&begin());
    f.on_xlogdata(lsn(0x160), lsn(0x160));
    assert!(f.has_unconfirmed());
    f.on_keepalive(lsn(0x400), true, t0);
    assert_eq!(f.poll_status(t0), Some(status(0x180, 0x180)));
    // Confirming the earlier end again (a consumer confirming late) does not settle it.
    f.confirm(lsn(0x180));
    f.on_keepalive(lsn(0x400), false, t0);
    assert_eq!(f.flushed(), lsn(0x180));
    // Its Commit arrives: still unconfirmed until 0x300 is confirmed.
    f.on_xlogdata(lsn(0x300), lsn(0x300));
    f.on_change(&commit(0x300));
    f.on_keepalive(lsn(0x400), false, t0);
    assert_eq!(f.flushed(), lsn(0x180));
    f.confirm(lsn(0x2FF));
    f.on_keepalive(lsn(0x400), false, t0);
    assert_eq!(f.flushed(), lsn(0x2FF));
    f.confirm(lsn(0x300));
    f.on_keepalive(lsn(0x400), false, t0);
    assert_eq!(f.final_status(t0), status(0x400, 0x400));
}

#[test]
fn confirm_lagging_behind_reception_settles_only_the_transactions_it_covers() {
    let t0 = Instant::now();
    let mut f = logical(t0);
    transaction(&mut f, 0x100, 0x180);
    transaction(&mut f, 0x200, 0x280);
    // The consumer confirms the first only (the second is still being written).
    f.confirm(lsn(0x180));
    f.on_keepalive(lsn(0x900), false, t0);
    assert_eq!(f.flushed(), lsn(0x180));
    f.confirm(lsn(0x280));
    f.on_keepalive(lsn(0x900), false, t0);
    assert_eq!(f.flushed(), lsn(0x900));
}

#[test]
fn open_streamed_transaction_blocks_the_idle_rule_until_it_ends() {
    let t0 = Instant::now();
    let mut f = logical(t0);
    let start = Change::StreamStart {
        xid: 900,
        first: true,
    };
    f.on_xlogdata(lsn(0x1000), lsn(0x1000));
    f.on_change(&start);
    f.on_xlogdata(Lsn::ZERO, Lsn::ZERO); // a Relation inside the block carries 0/0
    f.on_xlogdata(lsn(0x1100), lsn(0x1100));
    f.on_change(&Change::StreamStop {});
    assert!(f.has_unconfirmed());
    f.on_keepalive(lsn(0x2000), false, t0);
    assert_eq!(f.flushed(), Lsn::ZERO);
    // The stream commits; confirming its end settles it.
    f.on_xlogdata(lsn(0x1800), lsn(0x1800));
    f.on_change(&Change::StreamCommit {
        xid: 900,
        commit_lsn: lsn(0x17F0),
        end_lsn: lsn(0x1800),
        commit_time: SystemTime::UNIX_EPOCH,
    });
    assert!(f.has_unconfirmed());
    f.confirm(lsn(0x1800));
    f.on_keepalive(lsn(0x2000), false, t0);
    assert_eq!(f.flushed(), lsn(0x2000));
    assert_eq!(f.received(), lsn(0x1800));
}

#[test]
fn aborted_streamed_transaction_needs_no_confirmation_but_a_subtransaction_abort_does_not_end_it() {
    let t0 = Instant::now();
    let mut f = logical(t0);
    f.on_xlogdata(lsn(0x1000), lsn(0x1000));
    f.on_change(&Change::StreamStart {
        xid: 900,
        first: true,
    });
    f.on_change(&Change::StreamStop {});
    let abort = |subxid| Change::StreamAbort {
        xid: 900,
        subxid,
        abort_lsn: None,
        abort_time: None,
    };
    f.on_change(&abort(901));
    f.on_keepalive(lsn(0x2000), false, t0);
    assert_eq!(f.flushed(), Lsn::ZERO);
    f.on_change(&abort(900));
    assert!(!f.has_unconfirmed());
    f.on_keepalive(lsn(0x2000), false, t0);
    assert_eq!(f.flushed(), lsn(0x2000));
}

#[test]
fn two_phase_ends_need_confirmation() {
    let t0 = Instant::now();
    let mut f = logical(t0);
    let bp = Change::BeginPrepare {
        prepare_lsn: lsn(0x100),
        end_lsn: lsn(0x180),
        prepare_time: SystemTime::UNIX_EPOCH,
        xid: 5,
        gid: "g".into(),
    };
    f.on_change(&bp);
    assert!(f.has_unconfirmed());
    f.on_change(&Change::Prepare {
        prepare_lsn: lsn(0x100),
        end_lsn: lsn(0x180),
        prepare_time: SystemTime::UNIX_EPOCH,
        xid: 5,
        gid: "g".into(),
    });
    assert!(f.has_unconfirmed());
    f.confirm(lsn(0x180));
    assert!(!f.has_unconfirmed());
    f.on_change(&Change::CommitPrepared {
        commit_lsn: lsn(0x200),
        end_lsn: lsn(0x230),
        commit_time: SystemTime::UNIX_EPOCH,
        xid: 5,
        gid: "g".into(),
    });
    assert!(f.has_unconfirmed());
    f.confirm(lsn(0x230));
    f.on_change(&Change::RollbackPrepared {
        prepare_end_lsn: lsn(0x300),
        rollback_end_lsn: lsn(0x340),
        prepare_time: SystemTime::UNIX_EPOCH,
        rollback_time: SystemTime::UNIX_EPOCH,
        xid: 6,
        gid: "h".into(),
    });
    assert!(f.has_unconfirmed());
    f.confirm(lsn(0x340));
    assert!(!f.has_unconfirmed());
}

#[test]
fn non_transactional_message_needs_its_lsn_confirmed() {
    let t0 = Instant::now();
    let mut f = logical(t0);
    f.on_xlogdata(lsn(0x700), lsn(0x700));
    f.on_change(&Change::Message {
        transactional: false,
        lsn: lsn(0x700),
        prefix: "p".into(),
        content: vec![],
        xid: None,
    });
    f.on_keepalive(lsn(0x800), false, t0);
    assert_eq!(f.flushed(), Lsn::ZERO);
    f.confirm(lsn(0x700));
    f.on_keepalive(lsn(0x800), false, t0);
    assert_eq!(f.flushed(), lsn(0x800));
}

#[test]
fn start_position_is_not_reported_as_flushed() {
    let t0 = Instant::now();
    let mut f = Feedback::new(
        Tracking::Transactions,
        lsn(0x5000),
        DEFAULT_STATUS_INTERVAL,
        t0,
    );
    // The slot may be past 0x5000; reporting it could move an old server's slot back.
    assert_eq!(f.final_status(t0), status(0, 0));
    f.confirm(lsn(0x4000));
    assert_eq!(f.final_status(t0), status(0, 0));
    assert_eq!(f.confirmed(), lsn(0x5000));
    transaction(&mut f, 0x5100, 0x5200);
    f.confirm(lsn(0x5200));
    assert_eq!(f.final_status(t0), status(0x5200, 0x5200));
}

#[test]
fn raw_messages_settle_on_a_confirmation_after_the_newest_message() {
    let t0 = Instant::now();
    let mut f = Feedback::new(Tracking::Messages, Lsn::ZERO, DEFAULT_STATUS_INTERVAL, t0);
    f.on_xlogdata(lsn(0x100), lsn(0x100));
    f.on_keepalive(lsn(0x900), false, t0);
    assert_eq!(f.flushed(), Lsn::ZERO);
    f.confirm(lsn(0x100));
    f.on_keepalive(lsn(0x900), false, t0);
    assert_eq!(f.flushed(), lsn(0x900));
    // A message after the confirmation (even at an earlier position) is unconfirmed
    // until a confirmation at or past the newest start.
    f.on_xlogdata(lsn(0x080), lsn(0x080));
    assert!(f.has_unconfirmed());
    f.on_keepalive(lsn(0xA00), false, t0);
    assert_eq!(f.flushed(), lsn(0x900));
    f.confirm(lsn(0x0F0));
    assert!(f.has_unconfirmed());
    f.confirm(lsn(0x900));
    f.on_keepalive(lsn(0xA00), false, t0);
    assert_eq!(f.flushed(), lsn(0xA00));
}

#[test]
fn physical_wal_is_never_flushed_past_what_was_confirmed() {
    let t0 = Instant::now();
    let mut f = Feedback::new(Tracking::Physical, Lsn::ZERO, DEFAULT_STATUS_INTERVAL, t0);
    f.on_xlogdata(lsn(0x1000), lsn(0x3000));
    f.confirm(lsn(0x3000));
    f.on_keepalive(lsn(0x9000), true, t0);
    assert_eq!(f.poll_status(t0), Some(status(0x3000, 0x3000)));
}

#[test]
fn changes_are_ignored_by_raw_tracking() {
    let t0 = Instant::now();
    let mut f = Feedback::new(Tracking::Messages, Lsn::ZERO, DEFAULT_STATUS_INTERVAL, t0);
    f.on_change(&begin());
    assert!(!f.has_unconfirmed());
}

#[test]
fn restart_forgets_open_transactions_and_keeps_confirmed() {
    let t0 = Instant::now();
    let mut f = logical(t0);
    transaction(&mut f, 0x100, 0x180);
    f.confirm(lsn(0x180));
    f.on_xlogdata(lsn(0x200), lsn(0x200));
    f.on_change(&begin());
    // The connection is lost mid-transaction; the stream starts again at 0x180.
    let t1 = t0 + Duration::from_secs(3);
    f.restart(lsn(0x180), t1);
    assert!(!f.has_unconfirmed());
    assert_eq!(f.confirmed(), lsn(0x180));
    assert_eq!(f.next_deadline(), Some(t1 + Duration::from_secs(10)));
    f.on_keepalive(lsn(0x150), false, t1);
    assert_eq!(f.final_status(t1), status(0x200, 0));
    // The server sends the transaction again; it needs its confirmation again.
    transaction(&mut f, 0x200, 0x280);
    f.on_keepalive(lsn(0x900), false, t1);
    assert_eq!(f.flushed(), Lsn::ZERO);
    f.confirm(lsn(0x280));
    assert_eq!(f.flushed(), lsn(0x280));
}
