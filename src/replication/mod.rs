//! Streaming replication: WAL positions ([`Lsn`]), the replication stream's CopyData
//! messages ([`XLogData`] and the client's status updates), the pgoutput decoder that turns
//! logical replication messages into typed [`Change`]s, and the rule that decides when and
//! what progress the client reports.
//!
//! Everything in the sans-IO half (this file, `lsn`, `change`, `tuple`, `copy_both`,
//! `pgoutput`, `feedback`) takes bytes and times as arguments and returns values: it never
//! touches a socket, a clock or a timer, so that each rule is unit-tested on exact bytes and
//! a virtual clock. The connection and the stream on the loop drive it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod change;
mod connection;
pub mod copy_both;
pub mod feedback;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz;
mod lsn;
mod options;
pub mod pgoutput;
mod stream;
mod tuple;

pub use change::{Change, ReplicaIdentity, Table, TableColumn};
pub use connection::{ReplicationConnection, SlotInfo, SystemInfo};
pub use copy_both::XLogData;
pub use lsn::Lsn;
pub use options::{SlotOptions, Snapshot, StreamOptions};
pub use stream::ReplicationStream;
pub use tuple::Tuple;

/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00:00 UTC).
const PG_EPOCH_UNIX_SECS: u64 = 946_684_800;

/// A replication timestamp (microseconds since 2000-01-01 UTC) as a `SystemTime`, `None` when
/// the platform's clock cannot represent it.
pub(crate) fn from_pg_micros(us: i64) -> Option<SystemTime> {
    let epoch = UNIX_EPOCH.checked_add(Duration::from_secs(PG_EPOCH_UNIX_SECS))?;
    let d = Duration::from_micros(us.unsigned_abs());
    if us >= 0 {
        epoch.checked_add(d)
    } else {
        epoch.checked_sub(d)
    }
}

/// A `SystemTime` as a replication timestamp, saturating at the ends of i64.
pub(crate) fn to_pg_micros(t: SystemTime) -> i64 {
    let epoch = UNIX_EPOCH + Duration::from_secs(PG_EPOCH_UNIX_SECS);
    match t.duration_since(epoch) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_micros()).map_or(i64::MIN, |v| -v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_timestamps_count_microseconds_from_2000() {
        let t = from_pg_micros(1_500_000).unwrap();
        assert_eq!(
            t,
            UNIX_EPOCH + Duration::from_secs(946_684_801) + Duration::from_micros(500_000)
        );
        assert_eq!(to_pg_micros(t), 1_500_000);
        let before = from_pg_micros(-1).unwrap();
        assert_eq!(to_pg_micros(before), -1);
        assert_eq!(to_pg_micros(UNIX_EPOCH), -946_684_800_000_000);
        // Far-off values never panic.
        let _ = from_pg_micros(i64::MAX);
        let _ = from_pg_micros(i64::MIN);
    }
}
