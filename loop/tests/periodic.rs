//! PeriodicCallback: cadence, stopping from inside, restarting, skipping missed runs.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::watchdog;
use momoko_loop::{IoLoop, PeriodicCallback};

#[test]
fn a_10ms_periodic_callback_runs_about_20_times_in_200ms() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let count = Rc::new(Cell::new(0u32));
    let c = count.clone();
    let pc = PeriodicCallback::new(&ioloop, Duration::from_millis(10), move || {
        c.set(c.get() + 1)
    });
    pc.start();
    assert!(pc.is_running());
    let l = ioloop.clone();
    ioloop.call_later(Duration::from_millis(205), move || l.stop());
    ioloop.start();
    pc.stop();
    assert!(!pc.is_running());
    // 20 on an idle machine; missed runs are skipped on a loaded one, never doubled.
    assert!((8..=20).contains(&count.get()), "ran {} times", count.get());
}

#[test]
fn stop_from_inside_its_own_callback_ends_the_runs() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let count = Rc::new(Cell::new(0u32));
    let handle: Rc<RefCell<Option<PeriodicCallback>>> = Rc::new(RefCell::new(None));
    let (c, h) = (count.clone(), handle.clone());
    let pc = PeriodicCallback::new(&ioloop, Duration::from_millis(2), move || {
        c.set(c.get() + 1);
        if c.get() == 3 {
            let pc = h.borrow().clone().unwrap();
            pc.stop();
            assert!(!pc.is_running());
        }
    });
    *handle.borrow_mut() = Some(pc.clone());
    pc.start();
    let l = ioloop.clone();
    ioloop.call_later(Duration::from_millis(60), move || l.stop());
    ioloop.start();
    assert_eq!(count.get(), 3);
    assert!(!pc.is_running());
    handle.borrow_mut().take(); // break the handle's self-reference
}

#[test]
fn stop_then_start_from_inside_the_callback_keeps_a_single_schedule() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let times = Rc::new(RefCell::new(Vec::new()));
    let handle: Rc<RefCell<Option<PeriodicCallback>>> = Rc::new(RefCell::new(None));
    let (t, h) = (times.clone(), handle.clone());
    let pc = PeriodicCallback::new(&ioloop, Duration::from_millis(10), move || {
        t.borrow_mut().push(Instant::now());
        if t.borrow().len() == 1 {
            let pc = h.borrow().clone().unwrap();
            pc.stop();
            pc.start();
        }
    });
    *handle.borrow_mut() = Some(pc.clone());
    pc.start();
    let l = ioloop.clone();
    ioloop.call_later(Duration::from_millis(55), move || l.stop());
    ioloop.start();
    pc.stop();
    handle.borrow_mut().take();
    let times = times.borrow();
    // A doubled schedule would run twice per period (about 9 runs instead of 5).
    assert!((3..=5).contains(&times.len()), "ran {} times", times.len());
}

#[test]
fn missed_runs_are_skipped_not_replayed() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let count = Rc::new(Cell::new(0u32));
    let c = count.clone();
    let pc = PeriodicCallback::new(&ioloop, Duration::from_millis(10), move || {
        c.set(c.get() + 1);
        if c.get() == 1 {
            // Overrun by five periods: those runs are skipped, not run back to back.
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    pc.start();
    let l = ioloop.clone();
    ioloop.call_later(Duration::from_millis(85), move || l.stop());
    ioloop.start();
    pc.stop();
    // Runs at 10, then 70 and 80 (20..60 skipped): 3, where replaying would give 8.
    assert!((2..=4).contains(&count.get()), "ran {} times", count.get());
}

#[test]
fn start_twice_and_stop_twice_are_harmless() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let count = Rc::new(Cell::new(0u32));
    let c = count.clone();
    let pc = PeriodicCallback::new(&ioloop, Duration::from_millis(10), move || {
        c.set(c.get() + 1)
    });
    pc.start();
    pc.start();
    let l = ioloop.clone();
    ioloop.call_later(Duration::from_millis(25), move || l.stop());
    ioloop.start();
    pc.stop();
    pc.stop();
    assert!((1..=2).contains(&count.get()), "ran {} times", count.get());
    assert!(format!("{pc:?}").contains("running: false"));
}

#[test]
fn it_keeps_running_after_every_handle_is_dropped_until_the_loop_stops() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let count = Rc::new(Cell::new(0u32));
    let c = count.clone();
    PeriodicCallback::new(&ioloop, Duration::from_millis(5), move || {
        c.set(c.get() + 1)
    })
    .start();
    let l = ioloop.clone();
    ioloop.call_later(Duration::from_millis(30), move || l.stop());
    ioloop.start();
    assert!(count.get() >= 2, "ran {} times", count.get());
    ioloop.close();
}

#[test]
#[should_panic(expected = "period must be greater than zero")]
fn a_zero_period_is_refused() {
    PeriodicCallback::new(&IoLoop::new(), Duration::ZERO, || {});
}
