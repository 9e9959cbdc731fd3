//! The container's behaviours on a virtual clock: every instant is `base` plus a duration,
//! nothing sleeps. Connections are plain numbers (the container knows them by id only);
//! waiters carry a name and whether their caller gave up.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Conn(Id);

impl Handle for Conn {
    fn id(&self) -> Id {
        self.0
    }
}

/// A waiting request: its name, and whether its caller gave up.
#[derive(Debug, PartialEq)]
struct Req {
    name: &'static str,
    gone: bool,
    shareable: bool,
}

fn req(name: &'static str) -> Req {
    Req {
        name,
        gone: false,
        shareable: false,
    }
}

type Pool = Container<Conn, Req>;

fn limits(size: usize, max_size: usize) -> Limits {
    Limits {
        size,
        max_size,
        max_waiting: None,
        reconnect_interval: Duration::from_secs(1),
        shrink_delay: Duration::from_secs(120),
        health_check_after: None,
        pipeline_depth: 1,
    }
}

struct Clock(Instant);

impl Clock {
    fn new() -> Clock {
        Clock(Instant::now())
    }
    fn at(&self, ms: u64) -> Instant {
        self.0 + Duration::from_millis(ms)
    }
}

fn gone(r: &Req) -> bool {
    r.gone
}

fn shareable(r: &Req) -> bool {
    r.shareable
}

/// A container with connections 1..=n free, each last used at `at`.
fn with_free(n: usize, at: Instant, lim: &Limits) -> Pool {
    let mut p = Pool::default();
    for id in 1..=n {
        p.connecting(Conn(id), false);
        assert_eq!(p.connected(at, id, true), Some(false));
        assert!(p.serve(at, Conn(id), lim, gone, shareable).to.is_none());
    }
    p
}

// ---- stretch ----

#[test]
fn stretch_grows_by_one_connection_per_acquisition_up_to_max_size() {
    let clock = Clock::new();
    let lim = limits(1, 3);
    let mut p = with_free(1, clock.at(0), &lim);
    assert_eq!(p.acquire(clock.at(1), false, &lim), Handout::Free(Conn(1)));
    // Nothing free now: the acquisition calls for one more connection.
    assert_eq!(p.stretch(&lim), Stretch::Grow);
    p.connecting(Conn(2), true);
    // A second request waits; the connect in flight covers it: no more growth.
    assert_eq!(p.acquire(clock.at(2), false, &lim), Handout::Wait);
    p.enqueue(clock.at(2), req("a"), None, &lim, gone).unwrap();
    assert_eq!(p.stretch(&lim), Stretch::Nothing);
    // A third request: two waiters, one connect in flight: grow to max_size.
    p.enqueue(clock.at(3), req("b"), None, &lim, gone).unwrap();
    assert_eq!(p.stretch(&lim), Stretch::Grow);
    p.connecting(Conn(3), true);
    p.enqueue(clock.at(4), req("c"), None, &lim, gone).unwrap();
    assert_eq!(p.total(), 3);
    assert_eq!(p.stretch(&lim), Stretch::Nothing, "at max_size");
}

#[test]
fn stretch_reconnects_the_dead_before_growing() {
    let clock = Clock::new();
    let lim = limits(2, 4);
    let mut p = with_free(1, clock.at(0), &lim);
    p.connecting(Conn(2), false);
    p.connected(clock.at(1), 2, false);
    assert!(!p.add_dead(Conn(2)));
    assert_eq!(p.acquire(clock.at(2), false, &lim), Handout::Free(Conn(1)));
    assert_eq!(p.stretch(&lim), Stretch::Reconnect);
}

#[test]
fn a_free_connection_means_no_growth() {
    let clock = Clock::new();
    let lim = limits(2, 4);
    let mut p = with_free(2, clock.at(0), &lim);
    assert_eq!(p.acquire(clock.at(1), false, &lim), Handout::Free(Conn(2)));
    assert_eq!(p.stretch(&lim), Stretch::Nothing);
}

#[test]
fn hand_out_is_lifo_and_shrink_is_lru() {
    let clock = Clock::new();
    let mut lim = limits(1, 3);
    let mut p = with_free(3, clock.at(0), &lim);
    assert_eq!(p.acquire(clock.at(10), false, &lim), Handout::Free(Conn(3)));
    assert_eq!(p.release(3), Released::Out);
    p.serve(clock.at(20), Conn(3), &lim, gone, shareable);
    lim.shrink_delay = Duration::from_millis(500);
    // At 505 ms, 1 and 2 (used at 0) idled past 500 ms; 3 (used at 20) did not.
    assert_eq!(p.shrink(clock.at(505), &lim), vec![Conn(1), Conn(2)]);
    assert_eq!(p.free_len(), 1);
}

// ---- shrink ----

#[test]
fn shrink_waits_for_shrink_delay_sub_second() {
    let clock = Clock::new();
    let mut lim = limits(1, 3);
    lim.shrink_delay = Duration::from_millis(250);
    let mut p = with_free(3, clock.at(0), &lim);
    assert_eq!(
        p.shrink(clock.at(250), &lim),
        vec![],
        "not past the delay yet"
    );
    assert_eq!(p.shrink(clock.at(251), &lim), vec![Conn(1), Conn(2)]);
    assert_eq!(p.free_len(), 1, "never below size");
    assert_eq!(p.shrink(clock.at(10_000), &lim), vec![]);
}

#[test]
fn shrink_waits_for_shrink_delay_long() {
    let clock = Clock::new();
    let mut lim = limits(2, 4);
    lim.shrink_delay = Duration::from_secs(3600);
    let mut p = with_free(4, clock.at(0), &lim);
    assert_eq!(p.shrink(clock.at(3_600_000), &lim), vec![]);
    assert_eq!(p.shrink(clock.at(3_600_001), &lim), vec![Conn(1), Conn(2)]);
    assert_eq!(p.free_len(), 2);
}

#[test]
fn shrink_stops_at_the_first_recently_used_connection() {
    let clock = Clock::new();
    let mut lim = limits(0, 3);
    lim.shrink_delay = Duration::from_millis(100);
    let mut p = with_free(1, clock.at(0), &lim);
    p.connecting(Conn(2), false);
    p.connected(clock.at(90), 2, true);
    p.serve(clock.at(90), Conn(2), &lim, gone, shareable);
    assert_eq!(p.shrink(clock.at(150), &lim), vec![Conn(1)]);
    assert_eq!(p.shrink(clock.at(191), &lim), vec![Conn(2)]);
}

// ---- max_lifetime ----

#[test]
fn lifetime_jitter_is_bounded_to_ten_percent() {
    let clock = Clock::new();
    let l = Duration::from_secs(100);
    assert_eq!(lifetime_end(clock.at(0), jitter(l, 0.0)), clock.at(100_000));
    assert_eq!(lifetime_end(clock.at(0), jitter(l, 0.5)), clock.at(95_000));
    assert_eq!(lifetime_end(clock.at(0), jitter(l, 1.0)), clock.at(90_000));
    assert_eq!(
        lifetime_end(clock.at(0), jitter(l, 7.0)),
        clock.at(90_000),
        "clamped"
    );
}

#[test]
fn connections_past_their_lifetime_are_retired_idle_and_at_hand_out() {
    let clock = Clock::new();
    let lim = limits(3, 3);
    let mut p = with_free(3, clock.at(0), &lim);
    let l = Duration::from_secs(10);
    p.opened(1, Some(lifetime_end(clock.at(0), jitter(l, 0.0))), 0); // ends at 10 s
    p.opened(2, Some(lifetime_end(clock.at(0), jitter(l, 1.0))), 0); // ends at 9 s
    p.opened(3, Some(lifetime_end(clock.at(0), jitter(l, 0.5))), 0); // ends at 9.5 s
    assert_eq!(p.next_expiry(), Some(clock.at(9_000)));
    assert_eq!(p.expire_idle(clock.at(8_999)), vec![]);
    assert_eq!(p.expire_idle(clock.at(9_000)), vec![Conn(2)]);
    assert_eq!(p.next_expiry(), Some(clock.at(9_500)));
    // The timer is late: the acquisition itself retires 3 (at the hand-out end) first.
    assert_eq!(p.expired_at_handout(clock.at(9_600)), vec![Conn(3)]);
    assert_eq!(
        p.acquire(clock.at(9_600), false, &lim),
        Handout::Free(Conn(1))
    );
    // Coming back past its lifetime, 1 is retired instead of kept.
    assert_eq!(p.release(1), Released::Out);
    assert_eq!(p.verdict(clock.at(10_000), 1, &lim), Some(Retired::Expired));
    assert_eq!(p.verdict(clock.at(9_999), 1, &lim), None);
}

// ---- reconnect spacing ----

#[test]
fn reconnect_batches_are_spaced_by_reconnect_interval() {
    let clock = Clock::new();
    let mut lim = limits(2, 2);
    lim.reconnect_interval = Duration::from_millis(300);
    let mut p = Pool::default();
    assert_eq!(p.reconnect_at(clock.at(0), &lim), None, "nothing dead");
    p.connecting(Conn(1), false);
    p.connecting(Conn(2), false);
    assert_eq!(p.connected(clock.at(100), 1, false), Some(false));
    assert!(!p.add_dead(Conn(1)), "2 still connecting");
    // Failed at 100 ms: the next batch is due at 400 ms, not before.
    assert_eq!(p.reconnect_at(clock.at(150), &lim), Some(clock.at(400)));
    assert!(!p.may_reconnect(clock.at(399), false, &lim));
    assert!(p.may_reconnect(clock.at(400), false, &lim));
    // Only background attempts failed: an on-demand batch may go at once.
    assert!(p.may_reconnect(clock.at(150), true, &lim));
    assert_eq!(p.connected(clock.at(200), 2, false), Some(false));
    assert!(p.add_dead(Conn(2)), "nothing left to serve a request");
    assert_eq!(p.reconnect_at(clock.at(250), &lim), Some(clock.at(500)));
    assert_eq!(p.take_dead(), vec![Conn(1), Conn(2)]);
    assert_eq!(p.reconnect_at(clock.at(600), &lim), None);
}

#[test]
fn a_failed_on_demand_batch_refuses_the_next_within_reconnect_interval() {
    let clock = Clock::new();
    let lim = limits(1, 1);
    let mut p = Pool::default();
    p.connecting(Conn(1), true);
    assert_eq!(p.connected(clock.at(0), 1, false), Some(true));
    p.add_dead(Conn(1));
    assert_eq!(p.acquire(clock.at(10), false, &lim), Handout::AllDead);
    assert!(!p.may_reconnect(clock.at(999), true, &lim));
    assert!(p.may_reconnect(clock.at(1_000), true, &lim));
    assert_eq!(p.reconnect_at(clock.at(10), &lim), Some(clock.at(1_000)));
}

// ---- health checks ----

#[test]
fn a_connection_idle_past_health_check_after_is_checked_before_hand_out() {
    let clock = Clock::new();
    let mut lim = limits(2, 2);
    lim.health_check_after = Some(Duration::from_secs(30));
    let mut p = with_free(2, clock.at(0), &lim);
    assert_eq!(
        p.acquire(clock.at(29_999), false, &lim),
        Handout::Free(Conn(2))
    );
    assert_eq!(
        p.acquire(clock.at(30_000), false, &lim),
        Handout::Check(Conn(1))
    );
    assert!(p.is_busy(1), "busy while checked");
    // The check failed: it leaves busy, and dies.
    p.failed_check(1);
    assert!(!p.add_dead(Conn(1)));
    assert_eq!((p.busy_len(), p.dead_len()), (1, 1));
}

#[test]
fn without_health_check_after_nothing_is_checked() {
    let clock = Clock::new();
    let lim = limits(1, 1);
    let mut p = with_free(1, clock.at(0), &lim);
    assert_eq!(
        p.acquire(clock.at(86_400_000), false, &lim),
        Handout::Free(Conn(1))
    );
}

// ---- waiters ----

#[test]
fn waiters_are_served_in_order_skipping_those_who_gave_up() {
    let clock = Clock::new();
    let lim = limits(1, 1);
    let mut p = with_free(1, clock.at(0), &lim);
    assert_eq!(p.acquire(clock.at(1), false, &lim), Handout::Free(Conn(1)));
    p.enqueue(clock.at(2), req("a"), None, &lim, gone).unwrap();
    p.enqueue(clock.at(3), req("b"), None, &lim, gone).unwrap();
    p.enqueue(clock.at(4), req("c"), None, &lim, gone).unwrap();
    p.waiting.front_mut().unwrap().item.gone = true;
    assert_eq!(p.release(1), Released::Out);
    let served = p.serve(clock.at(5), Conn(1), &lim, gone, shareable);
    let names: Vec<_> = served.abandoned.iter().map(|w| w.item.name).collect();
    assert_eq!(names, ["a"]);
    let (conn, w) = served.to.unwrap();
    assert_eq!((conn, w.item.name, w.since), (Conn(1), "b", clock.at(3)));
    assert!(p.is_busy(1));
    assert_eq!(p.waiting_len(), 1);
}

#[test]
fn max_waiting_bounds_the_queue() {
    let clock = Clock::new();
    let mut lim = limits(1, 1);
    lim.max_waiting = Some(2);
    let mut p = Pool::default();
    assert_eq!(p.enqueue(clock.at(0), req("a"), None, &lim, gone), Ok(()));
    assert_eq!(p.enqueue(clock.at(0), req("b"), None, &lim, gone), Ok(()));
    let (back, len) = p
        .enqueue(clock.at(0), req("c"), None, &lim, gone)
        .unwrap_err();
    assert_eq!((back.name, len), ("c", 2));
    // A caller that gave up holds no place.
    p.waiting[0].item.gone = true;
    assert_eq!(p.enqueue(clock.at(1), req("d"), None, &lim, gone), Ok(()));
    assert_eq!(p.waiting_len(), 2);
}

#[test]
fn waiters_time_out_at_acquire_timeout() {
    let clock = Clock::new();
    let lim = limits(1, 1);
    let mut p = Pool::default();
    let t = Some(Duration::from_millis(1500));
    p.enqueue(clock.at(0), req("a"), t, &lim, gone).unwrap();
    p.enqueue(clock.at(500), req("b"), t, &lim, gone).unwrap();
    p.enqueue(clock.at(600), req("forever"), None, &lim, gone)
        .unwrap();
    assert_eq!(p.next_deadline(), Some(clock.at(1500)));
    assert!(p.overdue(clock.at(1499)).is_empty());
    let late: Vec<_> = p
        .overdue(clock.at(1500))
        .into_iter()
        .map(|w| w.item.name)
        .collect();
    assert_eq!(late, ["a"]);
    assert!(p.overdue(clock.at(1500)).is_empty(), "already out");
    assert_eq!(p.next_deadline(), Some(clock.at(2000)));
    let late: Vec<_> = p
        .overdue(clock.at(2000))
        .into_iter()
        .map(|w| w.item.name)
        .collect();
    assert_eq!(late, ["b"]);
    assert_eq!(p.next_deadline(), None);
    assert_eq!(p.waiting_len(), 1);
}

#[test]
fn waiters_without_connects_in_flight_get_one_each_up_to_max_size() {
    let clock = Clock::new();
    let lim = limits(1, 3);
    let mut p = with_free(1, clock.at(0), &lim);
    assert_eq!(p.acquire(clock.at(1), false, &lim), Handout::Free(Conn(1)));
    for name in ["a", "b", "c", "d"] {
        p.enqueue(clock.at(2), req(name), None, &lim, gone).unwrap();
    }
    assert_eq!(p.to_open(&lim), 2, "up to max_size");
    p.connecting(Conn(2), false);
    assert_eq!(p.to_open(&lim), 1);
}

#[test]
fn pipelining_shares_the_least_loaded_connection() {
    let clock = Clock::new();
    let mut lim = limits(2, 2);
    lim.pipeline_depth = 2;
    let mut p = with_free(2, clock.at(0), &lim);
    assert_eq!(p.acquire(clock.at(1), true, &lim), Handout::Free(Conn(2)));
    assert_eq!(p.acquire(clock.at(1), true, &lim), Handout::Free(Conn(1)));
    assert_eq!(p.acquire(clock.at(1), true, &lim), Handout::Shared(Conn(1)));
    assert_eq!(p.acquire(clock.at(1), true, &lim), Handout::Shared(Conn(2)));
    assert_eq!(
        p.acquire(clock.at(1), true, &lim),
        Handout::Wait,
        "depth reached"
    );
    assert_eq!(p.acquire(clock.at(1), false, &lim), Handout::Wait);
    assert_eq!(p.release(1), Released::StillShared);
    assert_eq!(p.release(1), Released::Out);
    assert_eq!(p.release(1), Released::NotBusy);
}

// ---- resize ----

#[test]
fn resize_down_closes_dead_then_least_recently_used_idle() {
    let clock = Clock::new();
    let lim = limits(4, 4);
    let mut p = with_free(3, clock.at(0), &lim);
    p.connecting(Conn(4), false);
    p.connected(clock.at(1), 4, false);
    p.add_dead(Conn(4));
    assert_eq!(p.acquire(clock.at(2), false, &lim), Handout::Free(Conn(3)));
    assert_eq!(p.resize_excess(2), vec![Conn(4), Conn(1)]);
    assert_eq!(
        p.resize_excess(0),
        vec![Conn(2)],
        "busy ones go as they settle"
    );
    assert_eq!(p.total(), 1);
    // Coming back above the new max_size, 3 is retired.
    assert_eq!(p.release(3), Released::Out);
    assert_eq!(
        p.verdict(clock.at(3), 3, &limits(0, 0)),
        Some(Retired::Shrunk)
    );
}

#[test]
fn resize_up_opens_the_missing_connections() {
    let clock = Clock::new();
    let lim = limits(2, 2);
    let p = with_free(2, clock.at(0), &lim);
    assert_eq!(p.to_open(&lim), 0);
    assert_eq!(p.to_open(&limits(5, 6)), 3);
}

// ---- drain ----

#[test]
fn drain_replaces_idle_connections_now_and_busy_ones_when_they_come_back() {
    let clock = Clock::new();
    let lim = limits(3, 3);
    let mut p = with_free(3, clock.at(0), &lim);
    for id in 1..=3 {
        p.opened(id, None, p.generation());
    }
    assert_eq!(p.acquire(clock.at(1), false, &lim), Handout::Free(Conn(3)));
    let mut idle = p.drain();
    idle.sort_by_key(|c| c.0);
    assert_eq!(idle, vec![Conn(1), Conn(2)]);
    for c in &idle {
        p.forget(c.0);
    }
    assert_eq!(p.to_open(&lim), 2);
    assert_eq!(p.release(3), Released::Out);
    assert_eq!(p.verdict(clock.at(2), 3, &lim), Some(Retired::Drained));
    // Its replacement belongs to the new generation.
    p.connecting(Conn(4), false);
    p.connected(clock.at(3), 4, true);
    p.opened(4, None, p.generation());
    assert_eq!(p.verdict(clock.at(3), 4, &lim), None);
}

#[test]
fn close_takes_every_connection_and_waiter() {
    let clock = Clock::new();
    let lim = limits(2, 3);
    let mut p = with_free(2, clock.at(0), &lim);
    p.acquire(clock.at(1), false, &lim);
    p.connecting(Conn(3), true);
    p.enqueue(clock.at(2), req("a"), None, &lim, gone).unwrap();
    let (mut conns, waiters) = p.close();
    conns.sort_by_key(|c| c.0);
    assert_eq!(conns, vec![Conn(1), Conn(2), Conn(3)]);
    assert_eq!(waiters.len(), 1);
    assert_eq!(p.total(), 0);
}
