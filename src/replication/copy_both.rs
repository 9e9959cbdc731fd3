//! The replication stream's CopyData payloads: the server's XLogData (`w`) and primary
//! keepalive (`k`), the client's standby status update (`r`) and hot standby feedback (`h`).
//!
//! Sans-IO: this module turns a CopyData payload (the bytes after the CopyData header) into
//! a [`ServerMessage`] and writes the client's payloads; the stream driver frames and sends
//! them. It never decides when to send anything (that is `feedback.rs`) and never panics on
//! what a server sends: a short or unknown payload is a Protocol error.

use std::fmt;
use std::time::SystemTime;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::Error;

use super::{from_pg_micros, to_pg_micros, Lsn};

/// One XLogData message of a replication stream: a piece of WAL (physical) or one message of
/// the output plugin (logical), with where it is in the WAL.
///
/// Cheap to clone (the bytes are shared).
#[derive(Clone)]
pub struct XLogData {
    start: Lsn,
    wal_end: Lsn,
    send_time: SystemTime,
    /// The whole CopyData payload; the data starts at [`XLOGDATA_HEADER`].
    payload: Bytes,
}

/// The bytes before an XLogData's data: tag, start, WAL end, send time.
pub(crate) const XLOGDATA_HEADER: usize = 25;

impl XLogData {
    /// The WAL position of the start of the data.
    pub fn data_start(&self) -> Lsn {
        self.start
    }

    /// The server's current end of WAL when it sent the message.
    pub fn wal_end(&self) -> Lsn {
        self.wal_end
    }

    /// When the server sent the message (its clock).
    pub fn send_time(&self) -> SystemTime {
        self.send_time
    }

    /// The data: raw WAL, or one output plugin message (for pgoutput, one [`Change`]).
    ///
    /// [`Change`]: super::Change
    pub fn data(&self) -> &[u8] {
        &self.payload[XLOGDATA_HEADER..]
    }

    /// The data as shared bytes, without a copy.
    pub fn data_bytes(&self) -> Bytes {
        self.payload.slice(XLOGDATA_HEADER..)
    }
}

impl fmt::Debug for XLogData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XLogData")
            .field("data_start", &self.start)
            .field("wal_end", &self.wal_end)
            .field("send_time", &self.send_time)
            .field("len", &self.data().len())
            .finish()
    }
}

/// A primary keepalive (`k`): the server's WAL end, and whether it wants a status update now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// The server's current end of WAL.
    pub wal_end: Lsn,
    /// When the server sent it.
    pub send_time: SystemTime,
    /// The server asks for a status update at once (it is about to time the client out).
    pub reply_requested: bool,
}

/// What the server sends inside a replication stream's CopyData.
#[derive(Debug, Clone)]
pub enum ServerMessage {
    /// `w`: WAL data.
    XLogData(XLogData),
    /// `k`: a keepalive.
    Keepalive(Keepalive),
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

fn time(b: &[u8], at: usize, what: &str) -> Result<SystemTime, Error> {
    from_pg_micros(be_u64(b, at) as i64)
        .ok_or_else(|| Error::protocol(format!("{what}: send time out of range")))
}

/// Parses one CopyData payload of a replication stream.
pub fn parse_server_message(payload: Bytes) -> Result<ServerMessage, Error> {
    match payload.first() {
        Some(b'w') => {
            if payload.len() < XLOGDATA_HEADER {
                return Err(Error::protocol(format!(
                    "XLogData of {} bytes is shorter than its {XLOGDATA_HEADER}-byte header",
                    payload.len()
                )));
            }
            Ok(ServerMessage::XLogData(XLogData {
                start: Lsn::from(be_u64(&payload, 1)),
                wal_end: Lsn::from(be_u64(&payload, 9)),
                send_time: time(&payload, 17, "XLogData")?,
                payload,
            }))
        }
        Some(b'k') => {
            if payload.len() != 18 {
                return Err(Error::protocol(format!(
                    "primary keepalive of {} bytes (expected 18)",
                    payload.len()
                )));
            }
            Ok(ServerMessage::Keepalive(Keepalive {
                wal_end: Lsn::from(be_u64(&payload, 1)),
                send_time: time(&payload, 9, "primary keepalive")?,
                reply_requested: payload[17] != 0,
            }))
        }
        Some(&t) => Err(Error::protocol(format!(
            "unknown replication message {:?} (0x{t:02x}) in CopyData",
            char::from(t)
        ))),
        None => Err(Error::protocol("empty CopyData in a replication stream")),
    }
}

/// A standby status update (`r`): the positions the client reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusUpdate {
    /// Received and written (the end of the last XLogData).
    pub written: Lsn,
    /// Durable: the server may drop the WAL before it.
    pub flushed: Lsn,
    /// Applied.
    pub applied: Lsn,
    /// Ask the server to answer at once with a keepalive.
    pub reply_requested: bool,
}

impl StatusUpdate {
    /// Appends the CopyData payload (34 bytes) of this update, sent at `now`.
    pub fn encode(&self, now: SystemTime, out: &mut BytesMut) {
        out.reserve(34);
        out.put_u8(b'r');
        out.put_u64(self.written.into());
        out.put_u64(self.flushed.into());
        out.put_u64(self.applied.into());
        out.put_i64(to_pg_micros(now));
        out.put_u8(u8::from(self.reply_requested));
    }
}

/// Hot standby feedback (`h`, physical replication): the standby's oldest transaction ids,
/// so that the primary keeps the rows its queries still see. Zero xmins mean "none".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HotStandbyFeedback {
    /// The standby's global xmin.
    pub xmin: u32,
    /// Its epoch.
    pub xmin_epoch: u32,
    /// The standby's catalog xmin.
    pub catalog_xmin: u32,
    /// Its epoch.
    pub catalog_xmin_epoch: u32,
}

impl HotStandbyFeedback {
    /// Appends the CopyData payload (25 bytes) of this feedback, sent at `now`.
    pub fn encode(&self, now: SystemTime, out: &mut BytesMut) {
        out.reserve(25);
        out.put_u8(b'h');
        out.put_i64(to_pg_micros(now));
        out.put_u32(self.xmin);
        out.put_u32(self.xmin_epoch);
        out.put_u32(self.catalog_xmin);
        out.put_u32(self.catalog_xmin_epoch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use std::time::{Duration, UNIX_EPOCH};

    /// 2000-01-01 00:00:00 UTC plus 1 s.
    fn pg_epoch_plus_1s() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(946_684_800 + 1)
    }

    #[test]
    fn xlogdata_reads_its_header_and_shares_its_data() {
        let mut b = vec![b'w'];
        b.extend_from_slice(&0x16_B374_D848u64.to_be_bytes());
        b.extend_from_slice(&0x16_B374_D900u64.to_be_bytes());
        b.extend_from_slice(&1_000_000i64.to_be_bytes());
        b.extend_from_slice(b"BEGIN");
        let ServerMessage::XLogData(x) = parse_server_message(Bytes::from(b)).unwrap() else {
            panic!("not XLogData")
        };
        assert_eq!(x.data_start(), Lsn::from(0x16_B374_D848));
        assert_eq!(x.wal_end(), Lsn::from(0x16_B374_D900));
        assert_eq!(x.send_time(), pg_epoch_plus_1s());
        assert_eq!(x.data(), b"BEGIN");
        assert_eq!(&x.data_bytes()[..], b"BEGIN");
        // An empty data part is valid (the header alone).
        let mut h = vec![b'w'];
        h.extend_from_slice(&[0; 24]);
        let ServerMessage::XLogData(x) = parse_server_message(Bytes::from(h)).unwrap() else {
            panic!()
        };
        assert_eq!(x.data(), b"");
        assert_eq!(x.send_time(), UNIX_EPOCH + Duration::from_secs(946_684_800));
    }

    #[test]
    fn keepalive_reads_wal_end_time_and_reply_flag() {
        let mut b = vec![b'k'];
        b.extend_from_slice(&0x1_0000_0010u64.to_be_bytes());
        b.extend_from_slice(&(-1_000_000i64).to_be_bytes());
        b.push(1);
        let ServerMessage::Keepalive(k) = parse_server_message(Bytes::from(b.clone())).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            k,
            Keepalive {
                wal_end: Lsn::from(0x1_0000_0010),
                send_time: UNIX_EPOCH + Duration::from_secs(946_684_799),
                reply_requested: true,
            }
        );
        b[17] = 0;
        let ServerMessage::Keepalive(k) = parse_server_message(Bytes::from(b)).unwrap() else {
            panic!()
        };
        assert!(!k.reply_requested);
    }

    #[test]
    fn short_long_empty_and_unknown_payloads_are_protocol_errors() {
        for bad in [
            &b""[..],
            b"w",
            &[b'w'; 24][..],
            &[b'k'; 17][..],
            &[b'k'; 19][..],
            b"x1234",
            b"r",
        ] {
            let e = parse_server_message(Bytes::copy_from_slice(bad)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Protocol, "{bad:?}");
        }
    }

    #[test]
    fn status_update_is_34_exact_bytes() {
        let mut out = BytesMut::new();
        StatusUpdate {
            written: Lsn::from(0x0102_0304_0506_0708),
            flushed: Lsn::from(0x10),
            applied: Lsn::from(0x20),
            reply_requested: true,
        }
        .encode(pg_epoch_plus_1s(), &mut out);
        let mut want = vec![b'r', 1, 2, 3, 4, 5, 6, 7, 8];
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x10]);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x20]);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0x0F, 0x42, 0x40]); // 1_000_000 µs
        want.push(1);
        assert_eq!(&out[..], &want[..]);
    }

    #[test]
    fn hot_standby_feedback_is_25_exact_bytes() {
        let mut out = BytesMut::new();
        HotStandbyFeedback {
            xmin: 0x0A0B_0C0D,
            xmin_epoch: 1,
            catalog_xmin: 2,
            catalog_xmin_epoch: 3,
        }
        .encode(pg_epoch_plus_1s(), &mut out);
        let mut want = vec![b'h', 0, 0, 0, 0, 0, 0x0F, 0x42, 0x40];
        want.extend_from_slice(&[0x0A, 0x0B, 0x0C, 0x0D, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]);
        assert_eq!(&out[..], &want[..]);
    }
}
