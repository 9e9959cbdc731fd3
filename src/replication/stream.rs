//! [`ReplicationStream`]: one `START_REPLICATION` on the loop, from the command to its end:
//! the CopyData it receives turned into callbacks (decoded [`Change`]s or raw [`XLogData`]),
//! the standby status updates it sends (on a timer of the loop, when a keepalive asks, before
//! a clean stop), pause and resume, stop, and the reconnects of `reconnect(true)`.
//!
//! It owns the order of delivery (WAL order, across pauses and reconnects) and the rule that
//! a user callback runs with no borrow held: neither the session's (the data comes through the
//! driver's delivery, which holds none) nor the stream's own (the state is released before the
//! callback runs). What a status update says, and when one is due, is the feedback rule's
//! (`Feedback`); this file feeds it what arrives, asks it at its deadline (a timer of the
//! loop) and after every keepalive, and sends what it returns.
//!
//! ```text
//!   Starting ──CopyBothResponse / data──▶ Streaming ──stop()──▶ Stopping ──command done──▶ Over(Ok)
//!      │ ▲                                   │                                              ▲
//!      │ └──connected again── Reconnecting ◀─┴── connection lost, reconnect(true) ─┐        │
//!      │                          ▲                                                │        │
//!      ├──────────────────────────┘ slot in use (55006) on a restart               │        │
//!      └── server error (42704, 55006…) / lost without reconnect / decode error ───┴──▶ Over(Err)
//! ```

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use momoko_loop::{Future, TimeoutId};

use super::connection::ReplicationConnection;
use super::copy_both::{parse_server_message, ServerMessage, StatusUpdate};
use super::feedback::{Feedback, Tracking};
use super::options::{Kind, StreamOptions};
use super::pgoutput::Decoder;
use super::{Change, Lsn, XLogData};
use crate::error::Error;
use crate::proto::Request;
use crate::session::Drive;

/// A pgoutput stream's callback.
pub(crate) type ChangeCallback = Box<dyn FnMut(&ReplicationStream, Change)>;
/// A raw stream's callback.
pub(crate) type RawCallback = Box<dyn FnMut(&ReplicationStream, XLogData)>;

/// Where decoded messages go.
pub(crate) enum Delivery {
    Changes(ChangeCallback),
    Raw(RawCallback),
    /// The start was refused before anything was sent; the stream finishes with this.
    Refused(Error),
}

/// A running replication stream: a cheap handle, clones share it; handed to each callback.
///
/// Delivery is at least once. The server starts a stream at the later of the requested LSN
/// and the slot's `confirmed_flush_lsn`, which only moves when the client reports it (here:
/// what [`confirm`](Self::confirm) recorded, sent in the next status update). A transaction
/// received but not yet confirmed when the consumer or the connection dies is sent again,
/// from its Begin. A consumer gets exactly once by storing the commit's `end_lsn` in the
/// same durable write as the transaction's output (as PostgreSQL's replication origins
/// do), and on restart skipping every transaction whose `end_lsn` is at or below the stored
/// one (or starting from it). `confirm` only after the output is durable: the server may
/// drop the WAL before a confirmed position for ever.
#[derive(Clone)]
pub struct ReplicationStream {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for ReplicationStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.inner.state.borrow();
        f.debug_struct("ReplicationStream")
            .field("slot", &self.inner.slot)
            .field("phase", &st.phase.name())
            .field("received", &st.feedback.received())
            .field("confirmed", &st.feedback.confirmed())
            .finish()
    }
}

struct Inner {
    repl: ReplicationConnection,
    slot: Option<String>,
    start: Lsn,
    timeline: Option<u32>,
    options: StreamOptions,
    state: RefCell<State>,
    /// The callback, borrowed only while it runs (never with `state` borrowed).
    delivery: RefCell<Delivery>,
}

impl Drop for Inner {
    /// The last handle is gone while the stream runs: nobody can stop it or see its
    /// changes any more, so the connection is closed rather than left streaming.
    fn drop(&mut self) {
        let over = matches!(self.state.get_mut().phase, Phase::Over(_));
        if !over {
            self.repl.conn.close();
        }
    }
}

/// Where the stream stands; what belongs to one phase lives in it.
enum Phase {
    /// START_REPLICATION sent (or about to be): no data yet.
    Starting,
    Streaming,
    /// CopyDone sent (or asked for before the copy started): the server ends the copy.
    Stopping,
    /// The connection was lost; the next connect attempt is due on `timer`.
    Reconnecting {
        timer: Option<TimeoutId>,
    },
    Over(Result<(), Error>),
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Starting => "Starting",
            Phase::Streaming => "Streaming",
            Phase::Stopping => "Stopping",
            Phase::Reconnecting { .. } => "Reconnecting",
            Phase::Over(_) => "Over",
        }
    }
}

struct State {
    phase: Phase,
    feedback: Feedback,
    decoder: Decoder,
    /// `pause()` was called and `resume()` not yet.
    paused: bool,
    /// Messages received and not yet delivered (while paused, or behind ones that were):
    /// delivered in order before anything newer.
    queue: VecDeque<Bytes>,
    /// A drain of `queue` waits in the loop's callbacks.
    drain_scheduled: bool,
    /// The status-update timer.
    timer: Option<TimeoutId>,
    /// Which START_REPLICATION the session's answers belong to (one per connect).
    generation: u64,
    /// Futures of `stop()` and `finished()` waiting for the end.
    stop_waiters: Vec<Future<Result<(), Error>>>,
    finish_waiters: Vec<Future<Result<(), Error>>>,
    /// The error that ends the stream, found by the stream itself (a message it cannot
    /// decode): no reconnect follows it.
    fatal: Option<Error>,
}

/// What the feedback rule can follow of a stream of these options.
fn tracking_of(options: &StreamOptions) -> Tracking {
    match options.kind {
        Kind::Pgoutput { .. } => Tracking::Transactions,
        Kind::Plugin(_) => Tracking::Messages,
        Kind::Physical => Tracking::Physical,
    }
}

/// Starts a stream on `repl` (see `ReplicationConnection::start_logical`).
pub(crate) fn start(
    repl: ReplicationConnection,
    slot: Option<String>,
    start: Lsn,
    timeline: Option<u32>,
    options: StreamOptions,
    delivery: Delivery,
    refused: Option<Error>,
) -> ReplicationStream {
    let refused = refused.or_else(|| match &delivery {
        Delivery::Refused(e) => Some(e.clone()),
        _ => None,
    });
    let inner = Rc::new(Inner {
        repl,
        slot,
        start,
        timeline,
        state: RefCell::new(State {
            phase: Phase::Starting,
            feedback: Feedback::new(
                tracking_of(&options),
                start,
                options.status_interval,
                Instant::now(),
            ),
            decoder: Decoder::new(),
            paused: false,
            queue: VecDeque::new(),
            drain_scheduled: false,
            timer: None,
            generation: 0,
            stop_waiters: Vec::new(),
            finish_waiters: Vec::new(),
            fatal: None,
        }),
        options,
        delivery: RefCell::new(delivery),
    });
    let stream = ReplicationStream { inner };
    match refused {
        // Answered from the loop, never inside this call.
        Some(e) => {
            let me = stream.clone();
            stream.ioloop().add_callback(move || me.finish(Err(e)));
        }
        None => {
            stream.inner.repl.streaming.set(true);
            stream.send_start();
        }
    }
    stream
}

impl ReplicationStream {
    fn ioloop(&self) -> &momoko_loop::IoLoop {
        self.inner.repl.conn.ioloop()
    }

    /// Sends START_REPLICATION from the confirmed position (the requested start at first).
    fn send_start(&self) {
        let (from, generation) = {
            let mut st = self.inner.state.borrow_mut();
            st.generation += 1;
            st.phase = Phase::Starting;
            st.decoder.reset();
            st.queue.clear();
            let from = self.inner.start.max(st.feedback.confirmed());
            if st.generation > 1 {
                // A new server session: nothing of the lost one is open any more, and the
                // server starts again at the slot's confirmed position.
                st.feedback = Feedback::new(
                    tracking_of(&self.inner.options),
                    from,
                    self.inner.options.status_interval,
                    Instant::now(),
                );
            }
            (from, st.generation)
        };
        let version = self.inner.repl.server_version().unwrap_or(0);
        let command = self.inner.options.command(
            self.inner.slot.as_deref(),
            from,
            self.inner.timeline,
            version,
        );
        let command = match command {
            Ok(c) => c,
            Err(e) => {
                let me = self.clone();
                self.ioloop().add_callback(move || me.finish(Err(e)));
                return;
            }
        };
        let weak = Rc::downgrade(&self.inner);
        let sink_weak = weak.clone();
        let sink = move |data: &[u8]| {
            if let Some(inner) = sink_weak.upgrade() {
                ReplicationStream { inner }.received(generation, Bytes::copy_from_slice(data));
            }
        };
        let core = self.inner.repl.conn.core();
        core.request_copy_out(
            Request::CopyBoth { query: command },
            Rc::new(RefCell::new(sink)),
            Box::new(move |result| {
                if let Some(inner) = weak.upgrade() {
                    ReplicationStream { inner }.command_done(generation, result.map(drop));
                }
            }),
        );
        self.schedule_status();
        if self.inner.state.borrow().paused {
            self.set_session_reading(false);
        }
    }

    /// Sends the status update the feedback rule says is due now, if any, and sets the
    /// timer for the next one.
    fn poll_status(&self) {
        let update = {
            let mut st = self.inner.state.borrow_mut();
            if !matches!(st.phase, Phase::Streaming) {
                None
            } else {
                st.feedback.poll_status(Instant::now())
            }
        };
        if let Some(update) = update {
            let _ = self.send_status(update);
        }
        self.schedule_status();
    }

    /// One CopyData of the stream, from the driver's delivery (no borrow held).
    fn received(&self, generation: u64, payload: Bytes) {
        {
            let mut st = self.inner.state.borrow_mut();
            // After stop() nothing more reaches the callback, though the server sends on
            // until it reads our CopyDone.
            if st.generation != generation || matches!(st.phase, Phase::Over(_) | Phase::Stopping) {
                return;
            }
            if matches!(st.phase, Phase::Starting) {
                st.phase = Phase::Streaming;
            }
            if st.paused || !st.queue.is_empty() {
                st.queue.push_back(payload);
                drop(st);
                self.schedule_drain();
                return;
            }
        }
        self.handle(payload);
    }

    /// Delivers what waited in the queue, in order, until it is empty or the stream is
    /// paused again. From the loop, never inside `resume()`.
    fn schedule_drain(&self) {
        let mut st = self.inner.state.borrow_mut();
        if st.paused || st.queue.is_empty() || st.drain_scheduled {
            return;
        }
        st.drain_scheduled = true;
        drop(st);
        let me = self.clone();
        self.ioloop().add_callback(move || {
            me.inner.state.borrow_mut().drain_scheduled = false;
            loop {
                let next = {
                    let mut st = me.inner.state.borrow_mut();
                    if st.paused || matches!(st.phase, Phase::Over(_) | Phase::Stopping) {
                        None
                    } else {
                        st.queue.pop_front()
                    }
                };
                match next {
                    Some(payload) => me.handle(payload),
                    None => break,
                }
            }
        });
    }

    /// One message: XLogData to the callback, a keepalive to the feedback rule.
    fn handle(&self, payload: Bytes) {
        let message = match parse_server_message(payload) {
            Ok(m) => m,
            Err(e) => return self.fail(e),
        };
        match message {
            ServerMessage::Keepalive(k) => {
                self.inner.state.borrow_mut().feedback.on_keepalive(
                    k.wal_end,
                    k.reply_requested,
                    Instant::now(),
                );
                self.poll_status();
            }
            ServerMessage::XLogData(x) => {
                let change = {
                    let mut st = self.inner.state.borrow_mut();
                    let start = x.data_start();
                    let end = match self.inner.options.kind {
                        Kind::Physical => {
                            Lsn::from(u64::from(start).saturating_add(x.data().len() as u64))
                        }
                        _ => start,
                    };
                    st.feedback.on_xlogdata(start, end);
                    match &*self.inner.delivery.borrow() {
                        Delivery::Changes(_) => {
                            let change = st.decoder.decode(x.data_bytes());
                            if let Ok(c) = &change {
                                st.feedback.on_change(c);
                            }
                            Some(change)
                        }
                        _ => None,
                    }
                };
                let Ok(mut delivery) = self.inner.delivery.try_borrow_mut() else {
                    // The callback is running (it cannot be re-entered): keep the order.
                    return self.fail(Error::usage("a replication callback was re-entered"));
                };
                match (&mut *delivery, change) {
                    (Delivery::Changes(cb), Some(Ok(change))) => cb(self, change),
                    (Delivery::Changes(_), Some(Err(e))) => {
                        drop(delivery);
                        self.fail(e)
                    }
                    (Delivery::Raw(cb), _) => cb(self, x),
                    _ => {}
                }
            }
        }
    }

    /// The stream cannot go on (a message it cannot read): the connection is closed and
    /// the stream finishes with `e`, with no reconnect.
    fn fail(&self, e: Error) {
        {
            let mut st = self.inner.state.borrow_mut();
            if matches!(st.phase, Phase::Over(_)) {
                return;
            }
            st.fatal.get_or_insert(e.clone());
        }
        self.inner.repl.conn.close_with(e);
    }

    /// START_REPLICATION's command finished: the server ended the copy (after our CopyDone,
    /// or on its own), refused the command, or the connection was lost.
    fn command_done(&self, generation: u64, result: Result<(), Error>) {
        let (stopping, restart, fatal) = {
            let mut st = self.inner.state.borrow_mut();
            if st.generation != generation || matches!(st.phase, Phase::Over(_)) {
                return;
            }
            (
                matches!(st.phase, Phase::Stopping),
                st.generation > 1,
                st.fatal.take(),
            )
        };
        if let Some(e) = fatal {
            return self.finish(Err(e));
        }
        match result {
            Ok(()) => self.finish(Ok(())),
            Err(e) if stopping => self.finish(if e.is_connection_lost() {
                // The server closed as we stopped: what we confirmed was sent before.
                Ok(())
            } else {
                Err(e)
            }),
            Err(e) if self.inner.options.reconnect && e.is_connection_lost() => {
                log::warn!("replication stream lost ({e}); reconnecting");
                self.schedule_reconnect();
            }
            // Starting again after a loss, the slot may still be held by the lost session's
            // walsender: across a partition it learns that its client is gone only from a
            // reset once the link is back, or at wal_sender_timeout. Waited out, as
            // PostgreSQL's own subscribers do; on the first start it is the caller's error.
            Err(e) if self.inner.options.reconnect && restart && e.code() == Some("55006") => {
                log::warn!("replication slot still in use ({e}); starting again");
                self.schedule_reconnect();
            }
            Err(e) => self.finish(Err(e)),
        }
    }

    fn schedule_reconnect(&self) {
        let weak = Rc::downgrade(&self.inner);
        let timer = self
            .ioloop()
            .call_later(self.inner.options.reconnect_interval, move || {
                if let Some(inner) = weak.upgrade() {
                    ReplicationStream { inner }.reconnect();
                }
            });
        {
            let mut st = self.inner.state.borrow_mut();
            st.phase = Phase::Reconnecting { timer: Some(timer) };
            st.queue.clear();
        }
        // The session must read to connect again; a paused stream pauses it again once the
        // new START_REPLICATION is sent.
        self.set_session_reading(true);
    }

    /// Lets the session read its socket (`true`) or not.
    fn set_session_reading(&self, reading: bool) {
        let core = self.inner.repl.conn.core();
        core.with_mut(|s| s.pause_reading(!reading, Instant::now()));
        crate::connection::LoopDriver::wake(core);
    }

    fn reconnect(&self) {
        {
            let mut st = self.inner.state.borrow_mut();
            match &mut st.phase {
                Phase::Reconnecting { timer } => *timer = None,
                _ => return,
            }
        }
        let weak = Rc::downgrade(&self.inner);
        self.inner.repl.conn.connect().add_done_callback(move |f| {
            let Some(inner) = weak.upgrade() else { return };
            let me = ReplicationStream { inner };
            if !matches!(me.inner.state.borrow().phase, Phase::Reconnecting { .. }) {
                // Stopped meanwhile.
                if f.take().is_some_and(|r| r.is_ok()) {
                    me.inner.repl.conn.close();
                }
                return;
            }
            match f.take() {
                Some(Ok(_)) => me.send_start(),
                Some(Err(e)) => {
                    log::info!("replication reconnect failed ({e}); trying again");
                    me.schedule_reconnect();
                }
                None => me.schedule_reconnect(),
            }
        });
    }

    /// The stream is over: the futures waiting for it resolve from here.
    fn finish(&self, result: Result<(), Error>) {
        let (stops, finishes, timer, reconnect_timer) = {
            let mut st = self.inner.state.borrow_mut();
            if matches!(st.phase, Phase::Over(_)) {
                return;
            }
            let reconnect_timer = match &mut st.phase {
                Phase::Reconnecting { timer } => timer.take(),
                _ => None,
            };
            st.phase = Phase::Over(result.clone());
            st.queue.clear();
            (
                std::mem::take(&mut st.stop_waiters),
                std::mem::take(&mut st.finish_waiters),
                st.timer.take(),
                reconnect_timer,
            )
        };
        for t in timer.into_iter().chain(reconnect_timer) {
            self.ioloop().remove_timeout(t);
        }
        self.inner.repl.streaming.set(false);
        // The connection, if still open, reads again for whatever the caller does next.
        self.set_session_reading(true);
        if let Err(e) = &result {
            log::debug!("replication stream finished: {e}");
        }
        for f in stops.into_iter().chain(finishes) {
            let _ = f.set_result(result.clone());
        }
    }

    /// The status-update timer, at the feedback rule's next deadline.
    fn schedule_status(&self) {
        let deadline = {
            let st = self.inner.state.borrow();
            if matches!(st.phase, Phase::Over(_)) {
                None
            } else {
                st.feedback.next_deadline()
            }
        };
        let weak: Weak<Inner> = Rc::downgrade(&self.inner);
        let id = deadline.map(|at| {
            self.ioloop().call_at(at, move || {
                if let Some(inner) = weak.upgrade() {
                    let me = ReplicationStream { inner };
                    me.inner.state.borrow_mut().timer = None;
                    me.poll_status();
                }
            })
        });
        let old = std::mem::replace(&mut self.inner.state.borrow_mut().timer, id);
        if let Some(old) = old {
            self.ioloop().remove_timeout(old);
        }
    }

    /// Writes a status update into the stream now.
    fn send_status(&self, update: StatusUpdate) -> Result<(), Error> {
        let mut buf = BytesMut::with_capacity(34);
        update.encode(SystemTime::now(), &mut buf);
        let core = self.inner.repl.conn.core();
        let r = core.with_mut(|s| s.copy_both_write(&buf));
        crate::connection::LoopDriver::wake(core);
        r
    }

    /// Records that everything up to `lsn` is durable on the consumer's side (a Commit's
    /// `end_lsn`): the next status update reports it as flushed and applied, and the server
    /// may forget the WAL before it. Never moves back (a lower LSN changes nothing).
    pub fn confirm(&self, lsn: Lsn) {
        self.inner.state.borrow_mut().feedback.confirm(lsn);
    }

    /// The end of the last XLogData received.
    pub fn received_lsn(&self) -> Lsn {
        self.inner.state.borrow().feedback.received()
    }

    /// The highest LSN passed to [`confirm`](Self::confirm) (or the start).
    pub fn confirmed_lsn(&self) -> Lsn {
        self.inner.state.borrow().feedback.confirmed()
    }

    /// The slot streamed, if any.
    pub fn slot(&self) -> Option<&str> {
        self.inner.slot.as_deref()
    }

    /// Sends a status update now; resolves once it is queued for the server (an error when
    /// the stream is not streaming).
    pub fn send_feedback(&self) -> Future<Result<(), Error>> {
        let fut = Future::with_loop(self.ioloop());
        let update = {
            let mut st = self.inner.state.borrow_mut();
            match st.phase {
                Phase::Streaming => Ok(st.feedback.final_status(Instant::now())),
                _ => Err(Error::usage("the replication stream is not streaming")),
            }
        };
        let r = update.and_then(|u| self.send_status(u));
        self.schedule_status();
        let done = fut.clone();
        self.ioloop().add_callback(move || {
            let _ = done.set_result(r);
        });
        fut
    }

    /// Stops reading the socket: no callback runs until [`resume`](Self::resume), and the
    /// server, its TCP window full, stops sending. Status updates still go out.
    pub fn pause(&self) {
        self.inner.state.borrow_mut().paused = true;
        let core = self.inner.repl.conn.core();
        core.with_mut(|s| s.pause_reading(true, Instant::now()));
    }

    /// Reads the socket again; what waited is delivered first, from the loop.
    pub fn resume(&self) {
        let was = std::mem::replace(&mut self.inner.state.borrow_mut().paused, false);
        if !was {
            return;
        }
        self.schedule_drain();
        let core = self.inner.repl.conn.core();
        core.with_mut(|s| s.pause_reading(false, Instant::now()));
        crate::connection::LoopDriver::wake(core);
    }

    /// Whether the stream is paused.
    pub fn is_paused(&self) -> bool {
        self.inner.state.borrow().paused
    }

    /// Ends the stream: a final status update, then CopyDone; resolves once the server
    /// ended the copy and the command completed (Ok), or with the error that ended the
    /// stream before.
    pub fn stop(&self) -> Future<Result<(), Error>> {
        let fut = Future::with_loop(self.ioloop());
        let phase = {
            let mut st = self.inner.state.borrow_mut();
            match &st.phase {
                Phase::Over(r) => {
                    let r = r.clone();
                    let done = fut.clone();
                    drop(st);
                    self.ioloop().add_callback(move || {
                        let _ = done.set_result(r);
                    });
                    return fut;
                }
                _ => {
                    st.stop_waiters.push(fut.clone());
                    st.paused = false;
                    std::mem::replace(&mut st.phase, Phase::Stopping)
                }
            }
        };
        match phase {
            Phase::Reconnecting { .. } => {
                // Nothing to end on the server: the stream is over now.
                self.inner.state.borrow_mut().phase = phase;
                let me = self.clone();
                self.ioloop().add_callback(move || me.finish(Ok(())));
            }
            Phase::Streaming => {
                let last = self
                    .inner
                    .state
                    .borrow_mut()
                    .feedback
                    .final_status(Instant::now());
                let _ = self.send_status(last);
                self.end_copy();
            }
            Phase::Starting => self.end_copy(),
            Phase::Stopping | Phase::Over(_) => {}
        }
        fut
    }

    fn end_copy(&self) {
        let core = self.inner.repl.conn.core();
        core.with_mut(|s| {
            s.pause_reading(false, Instant::now());
            s.copy_both_done()
        });
        crate::connection::LoopDriver::wake(core);
    }

    /// Resolves when the stream ends: Ok after [`stop`](Self::stop), the error otherwise
    /// (a missing slot, a slot in use, a lost connection without reconnect, a message that
    /// cannot be decoded).
    pub fn finished(&self) -> Future<Result<(), Error>> {
        let fut = Future::with_loop(self.ioloop());
        let mut st = self.inner.state.borrow_mut();
        match &st.phase {
            Phase::Over(r) => {
                let _ = fut.set_result(r.clone());
            }
            _ => st.finish_waiters.push(fut.clone()),
        }
        fut
    }

    /// Whether the stream has ended.
    pub fn is_over(&self) -> bool {
        matches!(self.inner.state.borrow().phase, Phase::Over(_))
    }
}
