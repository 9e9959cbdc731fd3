//! The session's side of a CopyBoth exchange (a replication stream): the caller's CopyData
//! and CopyDone written into it, and the reading of the socket paused and resumed.
//!
//! What the stream carries is `crate::replication`'s business; this file only moves bytes
//! and never runs user code.

use std::time::Instant;

use super::Session;
use crate::error::Error;

impl Session {
    /// Queues one CopyData message into the open CopyBoth exchange and writes it out.
    pub(crate) fn copy_both_write(&mut self, data: &[u8]) -> Result<(), Error> {
        let proto = self
            .proto
            .as_mut()
            .ok_or_else(|| Error::connection("the connection is closed"))?;
        proto.copy_both_write(data)?;
        self.flush();
        Ok(())
    }

    /// Ends our side of the CopyBoth exchange (see `Protocol::copy_both_done`); false when
    /// there is none to end.
    pub(crate) fn copy_both_done(&mut self) -> bool {
        let done = self.proto.as_mut().is_some_and(|p| p.copy_both_done());
        if done {
            self.flush();
        }
        done
    }

    /// Stops (`true`) or restarts reading the socket. Restarting reads what arrived
    /// meanwhile at once: the socket will not say again that it is readable.
    pub(crate) fn pause_reading(&mut self, paused: bool, now: Instant) {
        let was = std::mem::replace(&mut self.read_paused, paused);
        if was && !paused && self.proto.is_some() {
            self.handle_ready(true, false, false, false, now);
        }
    }
}
