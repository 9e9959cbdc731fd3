//! The pool's bookkeeping, without I/O and without a clock of its own: where each connection
//! is (free as a LIFO with last-used times, busy, shared, dead, pending), when each must end
//! (max_lifetime, drain generations), and the FIFO of requests waiting for one, with their
//! deadlines. Every method that depends on time takes `now` as an argument and answers with a
//! decision (what to hand out, what to close, how many to open, when the next timer is due);
//! the driver (`mod.rs`, `lifecycle.rs`) does the I/O and arms the loop's timers. This module
//! must never touch a socket, the loop or a user callback, so that it can be tested on a
//! virtual clock (see the tests at the end).
//!
//! A connection is known by its [`Handle`]; the container clones handles and compares their
//! ids, nothing else. It is generic over the handle and the waiter's payload for that reason.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// A pooled connection's identity: process-wide and never reused (`Connection::shared_id`).
pub(super) type Id = usize;

/// What the container needs of a connection: a stable id.
pub(super) trait Handle: Clone {
    fn id(&self) -> Id;
}

/// The pool's own settings, as the container reads them at each decision (`resize` changes
/// the sizes at run time).
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub size: usize,
    pub max_size: usize,
    pub max_waiting: Option<usize>,
    pub reconnect_interval: Duration,
    pub shrink_delay: Duration,
    pub health_check_after: Option<Duration>,
    pub pipeline_depth: usize,
}

/// Why the pool closes one of its connections for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retired {
    /// It outlived `max_lifetime`.
    Expired,
    /// `Pool::drain`.
    Drained,
    /// Above `size` idle too long (auto_shrink), or above `max_size` after a resize.
    Shrunk,
    /// Its reset failed.
    ResetFailed,
}

/// A request in the queue: the driver's payload, when it joined, and when it gives up.
pub(super) struct Queued<W> {
    pub since: Instant,
    pub deadline: Option<Instant>,
    pub item: W,
}

/// The answer to an acquisition.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Handout<C> {
    /// A connection other shareable operations already run on (pipeline_depth).
    Shared(C),
    /// A free connection, now busy.
    Free(C),
    /// A free connection that idled past `health_check_after`: busy, to be checked first.
    Check(C),
    /// None free, but some busy or connecting: the request waits.
    Wait,
    /// Nothing free, busy or connecting: every connection is dead.
    AllDead,
}

/// What the acquisition that just happened calls for (Momoko's
/// `_reanimate_and_stretch_if_needed`).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Stretch {
    /// Dead connections are waiting for a reconnect batch.
    Reconnect,
    /// One more connection, towards `max_size`.
    Grow,
    Nothing,
}

/// A busy connection given back.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Released {
    /// Other shareable operations still run on it.
    StillShared,
    /// It was not busy (given back twice, or closed with the pool).
    NotBusy,
    /// It is out of every set: the driver resets and settles it.
    Out,
}

/// A connection that is up and nobody's, given to `serve`.
pub(super) struct Served<C, W> {
    /// The request that gets it, if one waits; otherwise it joined `free`.
    pub to: Option<(C, Queued<W>)>,
    /// Requests whose callers gave up, dropped on the way.
    pub abandoned: Vec<Queued<W>>,
}

/// When one connection's server session must end, and the drain generation it belongs to.
#[derive(Debug, Clone, Copy, Default)]
struct Life {
    expires: Option<Instant>,
    generation: u64,
}

/// The container. `C`: a connection handle; `W`: what the driver keeps per waiting request.
pub(super) struct Container<C, W> {
    /// Right end = most recently used: taken from the right (LIFO), shrunk from the left.
    free: VecDeque<(C, Instant)>,
    busy: HashMap<Id, C>,
    /// For busy connections taken by shareable operations: how many run on each.
    sharers: HashMap<Id, usize>,
    dead: Vec<C>,
    pending: HashMap<Id, C>,
    /// Pending connects made on demand (`connect()`, stretching, an acquisition that found
    /// every connection dead), as opposed to the pool's own replacements.
    requested: HashSet<Id>,
    waiting: VecDeque<Queued<W>>,
    lives: HashMap<Id, Life>,
    /// Bumped by `drain`: connections of older generations are replaced.
    generation: u64,
    /// When a connect attempt last failed: background reconnects wait `reconnect_interval`.
    last_failed_connect: Option<Instant>,
    /// When an attempt made on demand last failed: within `reconnect_interval` of it, an
    /// on-demand batch is refused (the request fails at once, as in Momoko).
    last_failed_requested: Option<Instant>,
}

impl<C, W> Default for Container<C, W> {
    fn default() -> Self {
        Container {
            free: VecDeque::new(),
            busy: HashMap::new(),
            sharers: HashMap::new(),
            dead: Vec::new(),
            pending: HashMap::new(),
            requested: HashSet::new(),
            waiting: VecDeque::new(),
            lives: HashMap::new(),
            generation: 0,
            last_failed_connect: None,
            last_failed_requested: None,
        }
    }
}

/// `lifetime` shortened by `r` × 10 % (`r` in [0, 1), the driver's random draw), so that
/// connections opened together do not all expire together.
pub(super) fn jitter(lifetime: Duration, r: f64) -> Duration {
    lifetime.mul_f64(1.0 - 0.1 * r.clamp(0.0, 1.0))
}

/// When a connection opened at `now` must end, given its (jittered) lifetime.
pub(super) fn lifetime_end(now: Instant, lifetime: Duration) -> Instant {
    now + lifetime
}

impl<C: Handle, W> Container<C, W> {
    // ---- counts and views ----

    /// free + busy + dead + pending.
    pub fn total(&self) -> usize {
        self.free.len() + self.busy.len() + self.dead.len() + self.pending.len()
    }

    pub fn free_len(&self) -> usize {
        self.free.len()
    }
    pub fn busy_len(&self) -> usize {
        self.busy.len()
    }
    pub fn dead_len(&self) -> usize {
        self.dead.len()
    }
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
    pub fn waiting_len(&self) -> usize {
        self.waiting.len()
    }
    pub fn generation(&self) -> u64 {
        self.generation
    }
    pub fn is_busy(&self, id: Id) -> bool {
        self.busy.contains_key(&id)
    }
    pub fn busy_conn(&self, id: Id) -> Option<C> {
        self.busy.get(&id).cloned()
    }

    /// Every connection, whatever its state.
    pub fn all(&self) -> Vec<C> {
        self.free
            .iter()
            .map(|(c, _)| c.clone())
            .chain(self.busy.values().cloned())
            .chain(self.pending.values().cloned())
            .chain(self.dead.iter().cloned())
            .collect()
    }

    /// The free and busy connections.
    pub fn live(&self) -> Vec<C> {
        self.free
            .iter()
            .map(|(c, _)| c.clone())
            .chain(self.busy.values().cloned())
            .collect()
    }

    // ---- connecting ----

    /// A connect of `conn` (new or dead) starts: it is pending.
    pub fn connecting(&mut self, conn: C, requested: bool) {
        let id = conn.id();
        self.lives.entry(id).or_default();
        if requested {
            self.requested.insert(id);
        }
        self.pending.insert(id, conn);
    }

    /// A connect finished. `None` when the connection is no longer pending (the pool closed
    /// meanwhile); otherwise whether it was requested on demand. A failure starts the
    /// `reconnect_interval` spacing.
    pub fn connected(&mut self, now: Instant, id: Id, ok: bool) -> Option<bool> {
        self.pending.remove(&id)?;
        let requested = self.requested.remove(&id);
        if !ok {
            self.last_failed_connect = Some(now);
            if requested {
                self.last_failed_requested = Some(now);
            }
        }
        Some(requested)
    }

    /// Stamps a connection that just opened: its lifetime's end and its generation.
    pub fn opened(&mut self, id: Id, expires: Option<Instant>, generation: u64) {
        let life = self.lives.entry(id).or_default();
        life.expires = expires;
        life.generation = generation;
    }

    /// Forgets a connection the pool closes for good (already out of every set).
    pub fn forget(&mut self, id: Id) {
        self.lives.remove(&id);
        self.requested.remove(&id);
    }

    /// Whether a connection up and nobody's must be retired rather than kept: it outlived
    /// its lifetime, belongs to a drained generation, or would put the pool above
    /// `max_size` (it is in none of the sets yet).
    pub fn verdict(&self, now: Instant, id: Id, lim: &Limits) -> Option<Retired> {
        let life = self.lives.get(&id);
        if life.is_some_and(|l| l.expires.is_some_and(|t| t <= now)) {
            Some(Retired::Expired)
        } else if life.is_some_and(|l| l.generation < self.generation) {
            Some(Retired::Drained)
        } else if self.total() >= lim.max_size {
            Some(Retired::Shrunk)
        } else {
            None
        }
    }

    // ---- dead connections and reconnect spacing ----

    /// A connection failed or was lost: it waits for the next reconnect batch. Whether
    /// nothing is left that could serve a request.
    pub fn add_dead(&mut self, conn: C) -> bool {
        self.dead.push(conn);
        self.pending.is_empty() && self.free.is_empty() && self.busy.is_empty()
    }

    /// When the next reconnect batch is due: `None` with nothing dead, otherwise now or
    /// `reconnect_interval` after the last failed attempt, whichever is later.
    pub fn reconnect_at(&self, now: Instant, lim: &Limits) -> Option<Instant> {
        if self.dead.is_empty() {
            return None;
        }
        Some(match self.last_failed_connect {
            Some(t) if now < t + lim.reconnect_interval => t + lim.reconnect_interval,
            _ => now,
        })
    }

    /// Whether a reconnect batch may start now: on demand, unless an on-demand attempt
    /// failed within `reconnect_interval`; in the background, unless any attempt did.
    pub fn may_reconnect(&self, now: Instant, requested: bool, lim: &Limits) -> bool {
        let last = if requested {
            self.last_failed_requested
        } else {
            self.last_failed_connect
        };
        last.is_none_or(|t| now >= t + lim.reconnect_interval)
    }

    /// Takes every dead connection for a reconnect batch.
    pub fn take_dead(&mut self) -> Vec<C> {
        std::mem::take(&mut self.dead)
    }

    /// Idle connections that closed (`closed` says which) leave `free`, to be marked dead.
    pub fn take_closed_idle(&mut self, closed: impl Fn(&C) -> bool) -> Vec<C> {
        let (gone, kept): (Vec<_>, Vec<_>) = self.free.drain(..).partition(|(c, _)| closed(c));
        self.free = kept.into();
        gone.into_iter().map(|(c, _)| c).collect()
    }

    // ---- acquisition ----

    /// Momoko's `_reanimate_and_stretch_if_needed`, after each acquisition that got or
    /// queued for a connection: reconnect the dead first; otherwise grow by one unless at
    /// `max_size`, a connection is free, or enough connects are in flight for the waiters.
    pub fn stretch(&self, lim: &Limits) -> Stretch {
        if !self.dead.is_empty() {
            return Stretch::Reconnect;
        }
        let enough_pending = !self.pending.is_empty() && self.pending.len() >= self.waiting.len();
        if self.total() < lim.max_size && self.free.is_empty() && !enough_pending {
            Stretch::Grow
        } else {
            Stretch::Nothing
        }
    }

    /// Hands out a connection for a request: a shared one (shareable requests, pipelining,
    /// nothing free), else the most recently used free one (checked first when it idled
    /// `health_check_after` or longer), else tells the request to wait or that all is dead.
    pub fn acquire(&mut self, now: Instant, shareable: bool, lim: &Limits) -> Handout<C> {
        let depth = lim.pipeline_depth;
        if shareable && depth > 1 && self.free.is_empty() {
            // The least loaded connection that other shareable operations run on.
            let shared = self
                .sharers
                .iter()
                .filter(|(_, n)| **n < depth)
                .min_by_key(|(id, n)| (**n, **id))
                .map(|(id, _)| *id);
            if let Some(id) = shared {
                *self.sharers.get_mut(&id).expect("present") += 1;
                return Handout::Shared(self.busy.get(&id).expect("sharers are busy").clone());
            }
        }
        match self.free.pop_back() {
            Some((conn, last_used)) => {
                let id = conn.id();
                self.busy.insert(id, conn.clone());
                let stale = lim
                    .health_check_after
                    .is_some_and(|t| now.saturating_duration_since(last_used) >= t);
                if stale {
                    Handout::Check(conn)
                } else {
                    if shareable {
                        self.shared(id, lim);
                    }
                    Handout::Free(conn)
                }
            }
            None if !self.busy.is_empty() || !self.pending.is_empty() => Handout::Wait,
            None => Handout::AllDead,
        }
    }

    /// A busy connection now runs a shareable operation: others may join it.
    pub fn shared(&mut self, id: Id, lim: &Limits) {
        if lim.pipeline_depth > 1 {
            self.sharers.insert(id, 1);
        }
    }

    /// A health check found a busy connection dead: it leaves `busy`, closed by the driver.
    pub fn failed_check(&mut self, id: Id) {
        self.busy.remove(&id);
    }

    /// A connection is busy again without a hand-out (its reset runs).
    pub fn hold(&mut self, conn: C) {
        self.busy.insert(conn.id(), conn);
    }

    /// A busy connection comes back (or its reset ended).
    pub fn release(&mut self, id: Id) -> Released {
        if let Some(n) = self.sharers.get_mut(&id) {
            *n -= 1;
            if *n > 0 {
                return Released::StillShared;
            }
            self.sharers.remove(&id);
        }
        match self.busy.remove(&id) {
            Some(_) => Released::Out,
            None => Released::NotBusy,
        }
    }

    /// A connection is ready for work: the oldest waiter whose caller still waits
    /// (`abandoned` says who gave up) gets it, busy now; with none, it joins `free`.
    pub fn serve(
        &mut self,
        now: Instant,
        conn: C,
        lim: &Limits,
        abandoned: impl Fn(&W) -> bool,
        shareable: impl Fn(&W) -> bool,
    ) -> Served<C, W> {
        let mut gone = Vec::new();
        while self.waiting.front().is_some_and(|w| abandoned(&w.item)) {
            gone.push(self.waiting.pop_front().expect("checked"));
        }
        let to = match self.waiting.pop_front() {
            Some(w) => {
                let id = conn.id();
                self.busy.insert(id, conn.clone());
                if shareable(&w.item) {
                    self.shared(id, lim);
                }
                Some((conn, w))
            }
            None => {
                self.free.push_back((conn, now));
                None
            }
        };
        Served {
            to,
            abandoned: gone,
        }
    }

    // ---- waiting ----

    /// Queues a request (FIFO) that may wait `timeout`; requests whose callers gave up
    /// first leave the queue. At `max_waiting`, refused: the item comes back with the
    /// queue's length.
    pub fn enqueue(
        &mut self,
        now: Instant,
        item: W,
        timeout: Option<Duration>,
        lim: &Limits,
        abandoned: impl Fn(&W) -> bool,
    ) -> Result<(), (W, usize)> {
        self.waiting.retain(|w| !abandoned(&w.item));
        if lim.max_waiting.is_some_and(|m| self.waiting.len() >= m) {
            return Err((item, self.waiting.len()));
        }
        self.waiting.push_back(Queued {
            since: now,
            deadline: timeout.map(|t| now + t),
            item,
        });
        Ok(())
    }

    /// Every request whose deadline is `now` or past, out of the queue.
    pub fn overdue(&mut self, now: Instant) -> Vec<Queued<W>> {
        let (late, kept): (Vec<_>, Vec<_>) = self
            .waiting
            .drain(..)
            .partition(|w| w.deadline.is_some_and(|d| d <= now));
        self.waiting = kept.into();
        late
    }

    /// The earliest deadline of a waiting request.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.waiting.iter().filter_map(|w| w.deadline).min()
    }

    /// Every waiting request, out of the queue (they fail).
    pub fn take_waiting(&mut self) -> Vec<Queued<W>> {
        self.waiting.drain(..).collect()
    }

    /// How many connections to open now: back to `size`, and one more per waiter left
    /// without a connect in flight while none is free (up to `max_size`).
    pub fn to_open(&self, lim: &Limits) -> usize {
        let (mut total, mut pending) = (self.total(), self.pending.len());
        let mut n = 0;
        while total < lim.size
            || (self.waiting.len() > pending && self.free.is_empty() && total < lim.max_size)
        {
            total += 1;
            pending += 1;
            n += 1;
        }
        n
    }

    // ---- retiring ----

    /// The least recently used free connections idle longer than `shrink_delay`, above
    /// `size`: out of `free`, to be retired (Shrunk).
    pub fn shrink(&mut self, now: Instant, lim: &Limits) -> Vec<C> {
        let mut out = Vec::new();
        while self.free.len() > lim.size {
            let Some((_, last_used)) = self.free.front() else {
                break;
            };
            if now.saturating_duration_since(*last_used) <= lim.shrink_delay {
                break;
            }
            out.push(self.free.pop_front().expect("checked").0);
        }
        out
    }

    fn outlived(&self, now: Instant, c: &C) -> bool {
        self.lives
            .get(&c.id())
            .and_then(|l| l.expires)
            .is_some_and(|t| t <= now)
    }

    /// Idle connections at the hand-out end past their lifetime (the expiry timer may be
    /// late on a busy loop): out of `free`, to be retired (Expired).
    pub fn expired_at_handout(&mut self, now: Instant) -> Vec<C> {
        let mut out = Vec::new();
        while self.free.back().is_some_and(|(c, _)| self.outlived(now, c)) {
            out.push(self.free.pop_back().expect("checked").0);
        }
        out
    }

    /// Every idle connection past its lifetime: out of `free`, to be retired (Expired).
    pub fn expire_idle(&mut self, now: Instant) -> Vec<C> {
        let free = std::mem::take(&mut self.free);
        let (gone, kept): (Vec<_>, Vec<_>) =
            free.into_iter().partition(|(c, _)| self.outlived(now, c));
        self.free = kept.into();
        gone.into_iter().map(|(c, _)| c).collect()
    }

    /// When the earliest idle connection's lifetime ends: the expiry timer's due time.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.free
            .iter()
            .filter_map(|(c, _)| self.lives.get(&c.id()).and_then(|l| l.expires))
            .min()
    }

    /// After a resize to `max`: dead connections, then the least recently used idle ones,
    /// until the pool fits; busy and pending ones go as they settle.
    pub fn resize_excess(&mut self, max: usize) -> Vec<C> {
        let mut out = Vec::new();
        while self.total() > max {
            if let Some(c) = self.dead.pop() {
                out.push(c);
            } else if let Some((c, _)) = self.free.pop_front() {
                out.push(c);
            } else {
                break;
            }
        }
        out
    }

    /// A drain: a new generation; every idle connection out of `free`, to be retired
    /// (Drained). Busy ones are retired when they come back (`verdict`).
    pub fn drain(&mut self) -> Vec<C> {
        self.generation += 1;
        self.free.drain(..).map(|(c, _)| c).collect()
    }

    /// The pool closes: every connection and every waiting request, out.
    pub fn close(&mut self) -> (Vec<C>, Vec<Queued<W>>) {
        let mut conns: Vec<C> = self.free.drain(..).map(|(c, _)| c).collect();
        conns.extend(self.busy.drain().map(|(_, c)| c));
        self.sharers.clear();
        conns.extend(self.pending.drain().map(|(_, c)| c));
        conns.append(&mut self.dead);
        self.requested.clear();
        (conns, self.take_waiting())
    }
}

#[cfg(test)]
mod tests;
