//! The timer queue: a min-heap of `(deadline, seq, slot)` over a slab of callbacks.
//!
//! It owns deadlines, their tie-breaking order and cancellation. Cancelling is O(1): the
//! slab entry goes away and the heap entry becomes a tombstone that is skipped when it
//! reaches the top, or swept out when tombstones outnumber live entries. It must never run
//! a callback itself: callbacks are handed out to the loop, which calls them with no
//! borrow of this queue held.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use slab::Slab;

use crate::TimeoutId;

/// Sequence numbers come from one process-wide counter so that a `TimeoutId` from one loop
/// can never match a timeout of another loop, and equal deadlines fire in insertion order.
static NEXT_SEQ: AtomicU64 = AtomicU64::new(1);

/// Below this many tombstones the heap is left alone: sweeping a tiny heap saves nothing.
const COMPACT_MIN: usize = 16;

pub(crate) type TimerCallback = Box<dyn FnOnce()>;

struct Entry {
    seq: u64,
    /// False while the entry sits in a due batch (popped from the heap, not yet run), so that
    /// cancelling it then does not count a tombstone that is not in the heap.
    in_heap: bool,
    callback: TimerCallback,
}

/// A heap key; `Ord` is derived field by field, so deadline first, then insertion order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Scheduled {
    deadline: Instant,
    seq: u64,
    index: usize,
}

pub(crate) struct Timers {
    entries: Slab<Entry>,
    heap: BinaryHeap<Reverse<Scheduled>>,
    /// Heap entries whose slab entry is gone.
    tombstones: usize,
}

impl Timers {
    pub(crate) fn new() -> Timers {
        Timers {
            entries: Slab::new(),
            heap: BinaryHeap::new(),
            tombstones: 0,
        }
    }

    /// Live timeouts (scheduled or in the current due batch).
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub(crate) fn heap_len(&self) -> usize {
        self.heap.len()
    }

    pub(crate) fn insert(&mut self, deadline: Instant, callback: TimerCallback) -> TimeoutId {
        let seq = NEXT_SEQ.fetch_add(1, Ordering::Relaxed);
        let index = self.entries.insert(Entry {
            seq,
            in_heap: true,
            callback,
        });
        self.heap.push(Reverse(Scheduled {
            deadline,
            seq,
            index,
        }));
        TimeoutId { index, seq }
    }

    fn is_live(&self, index: usize, seq: u64) -> bool {
        self.entries.get(index).is_some_and(|e| e.seq == seq)
    }

    /// Cancels `id` and hands its callback back so the caller can drop it outside any
    /// borrow (its captures may have `Drop` impls that call into the loop).
    pub(crate) fn cancel(&mut self, id: TimeoutId) -> Option<TimerCallback> {
        if !self.is_live(id.index, id.seq) {
            return None;
        }
        let entry = self.entries.remove(id.index);
        if entry.in_heap {
            self.tombstones += 1;
            self.maybe_compact();
        }
        Some(entry.callback)
    }

    fn maybe_compact(&mut self) {
        if self.tombstones >= COMPACT_MIN && self.tombstones > self.heap.len() / 2 {
            let entries = &self.entries;
            self.heap
                .retain(|Reverse(s)| entries.get(s.index).is_some_and(|e| e.seq == s.seq));
            self.tombstones = 0;
        }
    }

    fn pop_tombstones(&mut self) {
        while let Some(Reverse(top)) = self.heap.peek() {
            if self.is_live(top.index, top.seq) {
                break;
            }
            self.heap.pop();
            self.tombstones -= 1;
        }
    }

    /// The earliest live deadline.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        self.pop_tombstones();
        self.heap.peek().map(|Reverse(s)| s.deadline)
    }

    /// Pops every live timeout due at `now`, in firing order, without running any: the
    /// caller runs them afterwards, so a timeout scheduled by one of them (even an already
    /// due one) waits for the next iteration.
    pub(crate) fn collect_due(&mut self, now: Instant, due: &mut Vec<Scheduled>) {
        loop {
            self.pop_tombstones();
            match self.heap.peek() {
                Some(Reverse(top)) if top.deadline <= now => {
                    let top = *top;
                    self.heap.pop();
                    self.entries[top.index].in_heap = false;
                    due.push(top);
                }
                _ => break,
            }
        }
    }

    /// Takes the callback of a due timeout, unless it was cancelled since it was collected.
    pub(crate) fn take_due(&mut self, scheduled: Scheduled) -> Option<TimerCallback> {
        if !self.is_live(scheduled.index, scheduled.seq) {
            return None;
        }
        Some(self.entries.remove(scheduled.index).callback)
    }

    /// Puts a collected but unrun timeout back (a callback earlier in its batch panicked).
    pub(crate) fn restore(&mut self, scheduled: Scheduled) {
        if let Some(entry) = self.entries.get_mut(scheduled.index) {
            if entry.seq == scheduled.seq && !entry.in_heap {
                entry.in_heap = true;
                self.heap.push(Reverse(scheduled));
            }
        }
    }

    /// Empties the queue (for the loop's teardown), handing the callbacks out for dropping.
    pub(crate) fn drain(&mut self) -> Vec<TimerCallback> {
        self.heap.clear();
        self.tombstones = 0;
        self.entries.drain().map(|e| e.callback).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn cancelling_many_keeps_the_heap_bounded() {
        let mut timers = Timers::new();
        let base = Instant::now() + Duration::from_secs(60);
        let keep = timers.insert(base, Box::new(|| {}));
        for i in 0..10_000u64 {
            let id = timers.insert(base + Duration::from_millis(i), Box::new(|| {}));
            assert!(timers.cancel(id).is_some());
            assert!(
                timers.heap_len() <= 2 * COMPACT_MIN + 2,
                "heap grew to {}",
                timers.heap_len()
            );
        }
        assert_eq!(timers.len(), 1);
        assert_eq!(timers.next_deadline(), Some(base));
        assert!(timers.cancel(keep).is_some());
        assert_eq!(timers.next_deadline(), None);
        assert_eq!(timers.heap_len(), 0);
    }

    #[test]
    fn equal_deadlines_fire_in_insertion_order() {
        let mut timers = Timers::new();
        let t = Instant::now();
        let ids: Vec<TimeoutId> = (0..10).map(|_| timers.insert(t, Box::new(|| {}))).collect();
        let mut due = Vec::new();
        timers.collect_due(t, &mut due);
        let order: Vec<u64> = due.iter().map(|s| s.seq).collect();
        assert_eq!(order, ids.iter().map(|id| id.seq).collect::<Vec<_>>());
    }

    #[test]
    fn cancel_of_a_collected_timeout_skips_it_without_counting_a_tombstone() {
        let mut timers = Timers::new();
        let t = Instant::now();
        let a = timers.insert(t, Box::new(|| {}));
        let mut due = Vec::new();
        timers.collect_due(t, &mut due);
        assert_eq!(due.len(), 1);
        assert!(timers.cancel(a).is_some());
        assert_eq!(timers.tombstones, 0);
        assert!(timers.take_due(due[0]).is_none());
        assert!(timers.cancel(a).is_none());
    }

    #[test]
    fn restore_puts_an_unrun_timeout_back() {
        let mut timers = Timers::new();
        let t = Instant::now();
        timers.insert(t, Box::new(|| {}));
        let mut due = Vec::new();
        timers.collect_due(t, &mut due);
        assert_eq!(timers.next_deadline(), None);
        timers.restore(due[0]);
        assert_eq!(timers.next_deadline(), Some(t));
    }
}
