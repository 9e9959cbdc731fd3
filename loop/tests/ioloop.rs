//! Ports of Tornado's IOLoop tests for callbacks, timeouts, start/stop, run_sync and the
//! current loop, plus the re-entrancy cases a Rust `RefCell` loop can get wrong.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{watchdog, XorShift};
use momoko_loop::{Future, IoLoop, TimedOut};

type Log = Rc<RefCell<Vec<&'static str>>>;

fn log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

fn push(log: &Log, entry: &'static str) -> impl FnOnce() + 'static {
    let log = log.clone();
    move || log.borrow_mut().push(entry)
}

#[test]
fn callbacks_added_from_callbacks_run_in_the_next_iteration() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let log = log();
    // A timeout already due runs after this iteration's callbacks; a callback added by a
    // callback must run after it, i.e. in the next iteration.
    ioloop.call_at(
        Instant::now() - Duration::from_millis(1),
        push(&log, "due timeout"),
    );
    let (l, lg) = (ioloop.clone(), log.clone());
    ioloop.add_callback(move || {
        lg.borrow_mut().push("first");
        let (l2, lg2) = (l.clone(), lg.clone());
        l.add_callback(move || {
            lg2.borrow_mut().push("added by first");
            l2.stop();
        });
    });
    ioloop.add_callback(push(&log, "second"));
    ioloop.start();
    assert_eq!(
        *log.borrow(),
        ["first", "second", "due timeout", "added by first"]
    );
}

#[test]
fn a_callback_re_adding_itself_forever_does_not_starve_timeouts() {
    fn again(ioloop: IoLoop, count: Rc<Cell<u64>>) {
        count.set(count.get() + 1);
        let l = ioloop.clone();
        ioloop.add_callback(move || again(l, count));
    }
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let count = Rc::new(Cell::new(0));
    let (l, c) = (ioloop.clone(), count.clone());
    ioloop.add_callback(move || again(l, c));
    let l = ioloop.clone();
    ioloop.call_later(Duration::from_millis(20), move || l.stop());
    ioloop.start();
    assert!(count.get() > 1, "the callback ran {} times", count.get());
    ioloop.close();
}

#[test]
fn timeout_removed_by_another_timeout_of_the_same_batch_does_not_run() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let log = log();
    let past = Instant::now() - Duration::from_millis(5);
    let second = Rc::new(Cell::new(None));
    let (l, lg, s) = (ioloop.clone(), log.clone(), second.clone());
    ioloop.call_at(past, move || {
        lg.borrow_mut().push("first");
        l.remove_timeout(s.get().unwrap());
    });
    second.set(Some(ioloop.call_at(past, push(&log, "second"))));
    let l = ioloop.clone();
    ioloop.call_at(past, move || l.stop());
    ioloop.start();
    assert_eq!(*log.borrow(), ["first"]);
}

#[test]
fn timeouts_scheduled_inside_a_timeout_wait_for_the_next_iteration() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let log = log();
    let past = Instant::now() - Duration::from_millis(5);
    let (l, lg) = (ioloop.clone(), log.clone());
    ioloop.call_at(past, move || {
        lg.borrow_mut().push("t1");
        // Due at once, and earlier than t2: still must wait for the next iteration, whose
        // callbacks run before its timeouts.
        let (l2, lg2) = (l.clone(), lg.clone());
        l.call_at(past - Duration::from_millis(1), move || {
            lg2.borrow_mut().push("t3 (added by t1)");
            l2.stop();
        });
        let lg3 = lg.clone();
        l.add_callback(move || lg3.borrow_mut().push("callback (added by t1)"));
    });
    ioloop.call_at(past, push(&log, "t2"));
    ioloop.start();
    assert_eq!(
        *log.borrow(),
        ["t1", "t2", "callback (added by t1)", "t3 (added by t1)"]
    );
}

#[test]
fn timeouts_with_equal_deadlines_run_in_the_order_added() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let order = Rc::new(RefCell::new(Vec::new()));
    let at = Instant::now() + Duration::from_millis(2);
    for i in 0..50 {
        let order = order.clone();
        ioloop.call_at(at, move || order.borrow_mut().push(i));
    }
    let l = ioloop.clone();
    ioloop.call_at(at, move || l.stop());
    ioloop.start();
    assert_eq!(*order.borrow(), (0..50).collect::<Vec<_>>());
}

#[test]
fn remove_timeout_after_firing_is_harmless() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let fired = Rc::new(Cell::new(0));
    let (f, l) = (fired.clone(), ioloop.clone());
    let id = ioloop.call_later(Duration::from_millis(1), move || {
        f.set(f.get() + 1);
        l.stop();
    });
    ioloop.start();
    assert_eq!(fired.get(), 1);
    ioloop.remove_timeout(id);
    ioloop.remove_timeout(id);
    // The slot it used is reused by a new timeout, which the stale id must not cancel.
    let (f, l) = (fired.clone(), ioloop.clone());
    ioloop.call_later(Duration::from_millis(1), move || {
        f.set(f.get() + 10);
        l.stop();
    });
    ioloop.remove_timeout(id);
    ioloop.start();
    assert_eq!(fired.get(), 11);
}

#[test]
fn remove_timeout_with_an_id_from_another_loop_is_harmless() {
    let a = IoLoop::new();
    let b = IoLoop::new();
    watchdog(&b);
    let id_a = a.call_later(Duration::from_secs(60), || {});
    let fired = Rc::new(Cell::new(false));
    let (f, l) = (fired.clone(), b.clone());
    b.call_later(Duration::from_millis(1), move || {
        f.set(true);
        l.stop();
    });
    b.remove_timeout(id_a);
    b.start();
    assert!(fired.get());
}

#[test]
fn random_timer_inserts_and_cancels_fire_in_deadline_order_and_only_uncancelled() {
    const N: usize = 100_000;
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let base = Instant::now() + Duration::from_millis(20);
    let fired = Rc::new(RefCell::new(Vec::with_capacity(N)));
    let mut deadlines = Vec::with_capacity(N);
    let mut ids = Vec::with_capacity(N);
    let mut cancelled = vec![false; N];
    for i in 0..N {
        let deadline = base + Duration::from_micros(rng.below(100_000));
        deadlines.push(deadline);
        let fired = fired.clone();
        ids.push(ioloop.call_at(deadline, move || fired.borrow_mut().push(i)));
        // Cancel some at random, including ones inserted long ago.
        if rng.below(2) == 0 {
            let victim = rng.below(i as u64 + 1) as usize;
            ioloop.remove_timeout(ids[victim]);
            cancelled[victim] = true;
        }
    }
    let latest = deadlines.iter().max().copied().unwrap();
    let l = ioloop.clone();
    ioloop.call_at(latest + Duration::from_millis(1), move || l.stop());
    ioloop.start();

    let fired = fired.borrow();
    let mut expected: Vec<usize> = (0..N).filter(|&i| !cancelled[i]).collect();
    // Deadline order, ties in insertion order: a stable sort by deadline.
    expected.sort_by_key(|&i| deadlines[i]);
    // Victims repeat, so fewer than half are cancelled; still both paths are well exercised.
    assert!(
        expected.len() > N / 10 && expected.len() < N * 9 / 10,
        "{}",
        expected.len()
    );
    assert_eq!(fired.len(), expected.len());
    assert!(
        *fired == expected,
        "timeouts fired out of deadline order or wrongly"
    );
}

#[test]
fn many_cancelled_timeouts_do_not_slow_the_loop_or_fire() {
    // Tornado's test_remove_timeout_cleanup.
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    for _ in 0..2000 {
        let id = ioloop.call_later(Duration::from_secs(3600), || {
            panic!("cancelled timeout ran")
        });
        ioloop.remove_timeout(id);
    }
    let l = ioloop.clone();
    ioloop.call_later(Duration::from_millis(1), move || l.stop());
    ioloop.start();
}

#[test]
fn stop_from_a_callback_stops_the_loop() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let l = ioloop.clone();
    ioloop.add_callback(move || l.stop());
    ioloop.start();
    assert!(!ioloop.is_running());
}

#[test]
fn is_running_is_true_only_inside_start() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    assert!(!ioloop.is_running());
    let seen = Rc::new(Cell::new(false));
    let (s, l) = (seen.clone(), ioloop.clone());
    ioloop.add_callback(move || {
        s.set(l.is_running());
        l.stop();
    });
    ioloop.start();
    assert!(seen.get());
    assert!(!ioloop.is_running());
}

#[test]
fn stop_before_start_makes_start_return_at_once() {
    let ioloop = IoLoop::new();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    ioloop.add_callback(move || r.set(true));
    ioloop.stop();
    let started = Instant::now();
    ioloop.start();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        !ran.get(),
        "start() after stop() must return before running anything"
    );
    // Only one start() is skipped.
    let l = ioloop.clone();
    ioloop.add_callback(move || l.stop());
    watchdog(&ioloop);
    ioloop.start();
    assert!(ran.get());
}

#[test]
fn stop_from_a_loop_handle_before_start_makes_start_return_at_once() {
    let ioloop = IoLoop::new();
    let handle = ioloop.handle();
    std::thread::spawn(move || handle.stop()).join().unwrap();
    let started = Instant::now();
    ioloop.start();
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn run_sync_returns_the_output() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    assert_eq!(ioloop.run_sync(async { String::from("output") }), "output");
    // And again on the same loop.
    assert_eq!(ioloop.run_sync(async { 7 }), 7);
}

#[test]
fn run_sync_waits_for_a_future_resolved_by_a_timeout() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let f: Future<u8> = Future::with_loop(&ioloop);
    let setter = f.clone();
    ioloop.call_later(Duration::from_millis(10), move || {
        setter.set_result(9).unwrap();
    });
    assert_eq!(ioloop.run_sync(f), 9);
}

#[test]
fn run_sync_timeout_fails_with_timed_out_within_a_bounded_time() {
    let ioloop = IoLoop::new();
    let never: Future<()> = Future::with_loop(&ioloop);
    let started = Instant::now();
    let result = ioloop.run_sync_timeout(never.clone(), Duration::from_millis(50));
    let elapsed = started.elapsed();
    assert_eq!(result, Err(TimedOut));
    assert!(elapsed >= Duration::from_millis(50), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert_eq!(
        TimedOut.to_string(),
        "the future did not complete before the timeout"
    );
    // The loop is reusable afterwards and the timed-out run left no timer behind.
    assert_eq!(
        ioloop.run_sync_timeout(async { 1 }, Duration::from_secs(5)),
        Ok(1)
    );
}

#[test]
fn run_sync_timeout_drops_the_unfinished_task() {
    struct Flag(Rc<Cell<bool>>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let ioloop = IoLoop::new();
    let dropped = Rc::new(Cell::new(false));
    let flag = Flag(dropped.clone());
    let never: Future<()> = Future::with_loop(&ioloop);
    let result = ioloop.run_sync_timeout(
        async move {
            let _flag = flag;
            never.await
        },
        Duration::from_millis(10),
    );
    assert_eq!(result, Err(TimedOut));
    assert!(dropped.get());
}

#[test]
#[should_panic(expected = "stopped before the future completed")]
fn run_sync_panics_if_the_loop_is_stopped_before_the_future_completes() {
    let ioloop = IoLoop::new();
    let never: Future<()> = Future::with_loop(&ioloop);
    ioloop.stop();
    ioloop.run_sync(never);
}

#[test]
fn current_inside_run_sync_is_that_loop_and_restored_after() {
    let outer = IoLoop::new();
    outer.make_current();
    let ioloop = IoLoop::new();
    let l = ioloop.clone();
    let inside = ioloop.run_sync(async move {
        // A Future made without a loop binds to the running one.
        let f: Future<()> = Future::new();
        IoLoop::current().ptr_eq(&l) && f.ioloop().ptr_eq(&l)
    });
    assert!(inside);
    assert!(IoLoop::current().ptr_eq(&outer));
    assert!(!IoLoop::current().ptr_eq(&ioloop));
}

#[test]
fn current_is_restored_when_a_callback_panics() {
    let outer = IoLoop::new();
    outer.make_current();
    let ioloop = IoLoop::new();
    ioloop.add_callback(|| panic!("boom"));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ioloop.start()));
    assert!(result.is_err());
    assert!(!ioloop.is_running());
    assert!(IoLoop::current().ptr_eq(&outer));
}

#[test]
fn current_creates_one_default_loop_per_thread() {
    std::thread::spawn(|| {
        let a = IoLoop::current();
        let b = IoLoop::current();
        assert!(a.ptr_eq(&b));
        let fresh = IoLoop::new();
        assert!(!fresh.ptr_eq(&a));
        fresh.make_current();
        assert!(IoLoop::current().ptr_eq(&fresh));
    })
    .join()
    .unwrap();
}

#[test]
fn a_panicking_callback_leaves_the_loop_usable_and_keeps_later_callbacks() {
    let ioloop = IoLoop::new();
    let log = log();
    ioloop.add_callback(|| panic!("first callback panics"));
    ioloop.add_callback(push(&log, "second"));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ioloop.start()));
    assert!(result.is_err());
    assert!(log.borrow().is_empty());
    let l = ioloop.clone();
    ioloop.add_callback(move || l.stop());
    watchdog(&ioloop);
    ioloop.start();
    assert_eq!(*log.borrow(), ["second"]);
}

#[test]
fn a_panicking_timeout_keeps_the_other_due_timeouts() {
    let ioloop = IoLoop::new();
    let log = log();
    let past = Instant::now() - Duration::from_millis(1);
    ioloop.call_at(past, || panic!("timeout panics"));
    ioloop.call_at(past, push(&log, "later timeout"));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ioloop.start()));
    assert!(result.is_err());
    let l = ioloop.clone();
    ioloop.call_later(Duration::from_millis(1), move || l.stop());
    watchdog(&ioloop);
    ioloop.start();
    assert_eq!(*log.borrow(), ["later timeout"]);
}

#[test]
#[should_panic(expected = "already running")]
fn start_inside_the_same_running_loop_panics_clearly() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let l = ioloop.clone();
    ioloop.add_callback(move || l.start());
    ioloop.start();
}

#[test]
fn run_sync_of_another_loop_inside_a_callback_works() {
    let outer = IoLoop::new();
    watchdog(&outer);
    let got = Rc::new(Cell::new(0));
    let (g, o) = (got.clone(), outer.clone());
    outer.add_callback(move || {
        let inner = IoLoop::new();
        g.set(inner.run_sync(async { 5 }));
        assert!(IoLoop::current().ptr_eq(&o));
        o.stop();
    });
    outer.start();
    assert_eq!(got.get(), 5);
}

#[test]
fn dropping_a_closure_that_calls_into_the_loop_does_not_double_borrow() {
    // A captured value whose Drop uses the loop: dropped by remove_timeout, by close, and
    // after running.
    struct UsesLoop(IoLoop, Rc<Cell<u32>>);
    impl Drop for UsesLoop {
        fn drop(&mut self) {
            let id = self.0.call_later(Duration::from_secs(60), || {});
            self.0.remove_timeout(id);
            let c = self.1.clone();
            self.0.add_callback(move || c.set(c.get() + 1));
        }
    }
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let count = Rc::new(Cell::new(0));
    let guard = UsesLoop(ioloop.clone(), count.clone());
    let id = ioloop.call_later(Duration::from_secs(60), move || drop(guard));
    ioloop.remove_timeout(id);
    let guard = UsesLoop(ioloop.clone(), count.clone());
    ioloop.add_callback(move || {
        let _g = guard;
    });
    let l = ioloop.clone();
    ioloop.call_later(Duration::from_millis(5), move || l.stop());
    ioloop.start();
    assert_eq!(count.get(), 2);
}

#[test]
fn close_drops_everything_and_breaks_reference_cycles() {
    let ioloop = IoLoop::new();
    let l = ioloop.clone();
    ioloop.call_later(Duration::from_secs(60), move || l.stop());
    let l = ioloop.clone();
    ioloop.add_callback(move || l.stop());
    let l = ioloop.clone();
    let _task = ioloop.spawn(async move {
        let never: Future<()> = Future::with_loop(&l);
        never.await
    });
    let weak = ioloop.downgrade();
    ioloop.close();
    drop(ioloop);
    assert!(
        weak.upgrade().is_none(),
        "a reference cycle kept the loop alive"
    );
}

#[test]
fn debug_output_shows_counts() {
    let ioloop = IoLoop::new();
    ioloop.add_callback(|| {});
    let id = ioloop.call_later(Duration::from_secs(60), || {});
    let text = format!("{ioloop:?}");
    assert!(text.contains("running: false"), "{text}");
    assert!(text.contains("callbacks: Some(1)"), "{text}");
    assert!(text.contains("timeouts: Some(1)"), "{text}");
    ioloop.remove_timeout(id);
    assert!(format!("{ioloop:?}").contains("timeouts: Some(0)"));
}

#[test]
fn before_poll_callbacks_run_in_the_same_iteration_after_its_callbacks_and_need_no_poll() {
    let ioloop = IoLoop::new();
    let order = Rc::new(RefCell::new(Vec::new()));
    {
        let (l, order) = (ioloop.clone(), order.clone());
        ioloop.add_callback(move || {
            order.borrow_mut().push("callback");
            let o = order.clone();
            l.add_before_poll(move || o.borrow_mut().push("before poll"));
            let o = order.clone();
            l.add_callback(move || o.borrow_mut().push("next iteration"));
        });
    }
    ioloop.turn(Some(Duration::ZERO)).unwrap();
    assert_eq!(*order.borrow(), vec!["callback", "before poll"]);
    ioloop.turn(Some(Duration::ZERO)).unwrap();
    assert_eq!(
        *order.borrow(),
        vec!["callback", "before poll", "next iteration"]
    );
    // Nothing queued: the loop would wait for its sources.
    assert_eq!(ioloop.next_timeout(), None);
}

#[test]
fn a_before_poll_callback_added_outside_an_iteration_makes_the_next_one_run_it_first() {
    let ioloop = IoLoop::new();
    let ran = Rc::new(Cell::new(0));
    let r = ran.clone();
    ioloop.add_before_poll(move || r.set(r.get() + 1));
    assert_eq!(ioloop.next_timeout(), Some(Duration::ZERO));
    ioloop.turn(Some(Duration::from_millis(10))).unwrap();
    assert_eq!(ran.get(), 1);
    // Run once: the next turn has nothing left of it.
    assert_eq!(ioloop.next_timeout(), None);
}

#[test]
fn before_poll_callbacks_that_keep_adding_themselves_do_not_starve_the_poll() {
    fn again(l: IoLoop, n: Rc<Cell<u32>>) {
        n.set(n.get() + 1);
        let l2 = l.clone();
        l.add_before_poll(move || again(l2, n));
    }
    let ioloop = IoLoop::new();
    let n = Rc::new(Cell::new(0));
    again(ioloop.clone(), n.clone());
    ioloop.turn(Some(Duration::ZERO)).unwrap();
    // The first was run by `again` itself, then eight rounds in the turn.
    assert_eq!(n.get(), 9);
    assert_eq!(ioloop.next_timeout(), Some(Duration::ZERO));
}
