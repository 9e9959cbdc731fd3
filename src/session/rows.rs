//! The session's side of a streamed query (`stream`): queuing it, handing its rows to the
//! driver one read at a time, and reading on once they are delivered.
//!
//! It owns batching the rows of one read into one [`Action::Rows`] and the decision to read
//! again without a readiness event after a read stopped at its budget
//! (`Transport::read`). It never runs the sink itself (the driver does, with no borrow
//! held) and never keeps a row past its delivery.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use super::{Action, Callback, Pending, Recipient, Session};
use crate::proto::Request;
use crate::row::{Row, Rows};

/// Where a streamed query's rows go.
pub(crate) type RowSink = Rc<RefCell<dyn FnMut(&Row)>>;

impl Session {
    /// Queues a query whose rows go to `sink` as they arrive, none kept.
    pub(crate) fn request_rows(
        &mut self,
        req: Request,
        sink: RowSink,
        cb: Callback,
        now: Option<Instant>,
    ) {
        if now.is_some() {
            self.now = now;
        }
        self.send(req, Recipient::Rows(cb, sink), now);
    }

    /// The rows one read brought for the oldest request, which streams: they go out
    /// together, in one action.
    pub(super) fn on_rows(&mut self, rows: Rows) {
        let Some(Pending {
            waiter: Recipient::Rows(_, sink),
            ..
        }) = self.waiters.front()
        else {
            // Its caller timed out: the rest of the answer is dropped.
            return;
        };
        self.actions.push(Action::Rows(sink.clone(), rows));
    }

    /// A read stopped at its budget while rows stream (see `Transport::read`): the driver
    /// must read again itself, as a readable event would, for no event will come.
    pub(crate) fn read_pending(&self) -> bool {
        self.transport.read_more() && self.proto.is_some()
    }
}
