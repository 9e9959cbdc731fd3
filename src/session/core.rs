//! [`Core`]: a session in a `RefCell` beside the driver that drives it, the one seam every
//! operation goes through, and [`Drive`], what a driver provides (the clock, a wake-up).
//! Operations call [`Core::request`] and never see a socket; the core never runs user code
//! while it holds the session's borrow (COPY sources are pulled with no borrow held).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use super::ops::Done;
use super::{next_id, Action, Callback, CopySink, Notify, Options, RowSink, Session};
use crate::error::Error;
use crate::proto::{Protocol, Request};
use crate::row::Cursor;

/// What a driver provides to the operations: the clock, and a way to be told that the
/// session changed outside the driver's own event handling (a request was queued).
pub(crate) trait Drive: Sized + 'static {
    /// Reads the clock: drivers do, the session never does. The IoLoop driver reads its
    /// loop's clock, so a test that moves the loop's time (`IoLoop::advance_time`) moves the
    /// session's deadlines with it.
    fn now(&self) -> Instant;
    /// The session changed: bring the registration in line and deliver what is due, now or
    /// on the driver's next turn. Called with no borrow of the session held.
    fn wake(core: &Rc<Core<Self>>);
    /// A wake-up another thread may call when a name lookup finished; it must bring the
    /// core to `Session::poll_resolved` on the driver's thread. `None`: the driver polls
    /// while `Session::is_resolving`.
    fn notifier(core: &Rc<Core<Self>>) -> Option<Notify> {
        let _ = core;
        None
    }
    /// The core with this id is gone: forget what `notifier` kept for it.
    fn forget(id: u64) {
        let _ = id;
    }
}

impl<D> Drop for Core<D> {
    fn drop(&mut self) {
        (self.forget)(self.id);
    }
}

/// A session beside the driver that drives it: the one seam of every operation.
pub(crate) struct Core<D> {
    /// Process-wide, never reused.
    pub(crate) id: u64,
    pub(crate) session: RefCell<Session>,
    pub(crate) driver: D,
    /// `D::forget`, kept so that dropping needs no bound on `D`.
    forget: fn(u64),
}

impl<D: Drive> Core<D> {
    /// A new, unconnected core.
    pub(crate) fn new(dsn: String, options: Options, driver: D) -> Rc<Core<D>> {
        let core = Rc::new(Core {
            id: next_id(),
            session: RefCell::new(Session::new(dsn, options)),
            driver,
            forget: D::forget,
        });
        let notify = D::notifier(&core);
        core.session.borrow_mut().notify = notify;
        core
    }

    /// Queues one request; `cb` runs from the driver's delivery with no borrow held.
    pub(crate) fn request(self: &Rc<Self>, req: Request, cb: Callback) {
        {
            let mut s = self.session.borrow_mut();
            // The clock is read only where a query_timeout needs it.
            let now = s.options.query_timeout.map(|_| self.driver.now());
            s.request(req, cb, now);
        }
        D::wake(self);
    }

    /// Queues a request whose response becomes a cursor for `done`; `query` names it when
    /// the result does not carry its own text (only simple queries do).
    pub(crate) fn request_cursor(
        self: &Rc<Self>,
        req: Request,
        query: crate::row::QueryText,
        done: Done<Cursor>,
    ) {
        {
            let mut s = self.session.borrow_mut();
            let now = s.options.query_timeout.map(|_| self.driver.now());
            s.request_cursor(req, query, done, now);
        }
        D::wake(self);
    }

    /// Answers `done` from the driver's delivery, in order with every other completion:
    /// for an answer known before anything is sent. The caller of an operation never sees
    /// its callback run inside the call.
    pub(crate) fn answer_later<T: 'static>(
        self: &Rc<Self>,
        done: Done<T>,
        result: Result<T, Error>,
    ) {
        self.with_mut(|s| {
            s.actions
                .push(Action::Answer(Box::new(move || done.call(result))))
        });
        D::wake(self);
    }

    /// Queues a COPY TO STDOUT whose data goes to `sink`.
    pub(crate) fn request_copy_out(self: &Rc<Self>, req: Request, sink: CopySink, cb: Callback) {
        {
            let mut s = self.session.borrow_mut();
            let now = s.options.query_timeout.map(|_| self.driver.now());
            s.request_copy_out(req, sink, cb, now);
        }
        D::wake(self);
    }

    /// Queues a query whose rows go to `sink` as they arrive (`stream`).
    pub(crate) fn request_rows(self: &Rc<Self>, req: Request, sink: RowSink, cb: Callback) {
        {
            let mut s = self.session.borrow_mut();
            let now = s.options.query_timeout.map(|_| self.driver.now());
            s.request_rows(req, sink, cb, now);
        }
        D::wake(self);
    }

    /// Reads the session.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&Session) -> T) -> T {
        f(&self.session.borrow())
    }

    /// Changes the session. `f` is library code only: it must not call back into the core.
    pub(crate) fn with_mut<T>(&self, f: impl FnOnce(&mut Session) -> T) -> T {
        f(&mut self.session.borrow_mut())
    }

    /// Sends what is queued: COPY data is pulled from its source with no borrow held, and
    /// the socket is written until it would block. Then the protocol's events become actions.
    pub(crate) fn pump(&self) {
        self.pump_copy();
        let mut s = self.session.borrow_mut();
        s.flush();
        // A write that went out produces no event (a failed one does): nothing to process,
        // and no clock to read.
        if s.has_events() {
            s.process_events(self.driver.now());
        }
    }

    /// Pulls COPY data, with no borrow held, while the COPY being sent has room for it, and
    /// writes it. After a readiness event the session has flushed and processed events
    /// already: only a COPY needs more, and then its events are processed here.
    pub(crate) fn pump_copy(&self) {
        let mut pulled = false;
        loop {
            let source = self.session.borrow_mut().take_copy_source();
            let Some(mut source) = source else { break };
            // User code: the source may call into this very connection.
            let mut chunks = Vec::new();
            let mut size = 0;
            let mut end = None;
            while size < Protocol::COPY_CHUNK_BUDGET {
                match source.0.next() {
                    Some(Ok(chunk)) => {
                        size += chunk.len().max(1);
                        chunks.push(chunk);
                    }
                    Some(Err(msg)) => {
                        end = Some(Err(msg));
                        break;
                    }
                    None => {
                        end = Some(Ok(()));
                        break;
                    }
                }
            }
            let mut s = self.session.borrow_mut();
            s.feed_copy(source, chunks, end);
            s.flush();
            pulled = true;
        }
        if pulled {
            self.session.borrow_mut().process_events(self.driver.now());
        }
    }
}
