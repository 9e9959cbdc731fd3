//! `Future<T>` semantics and spawned tasks: done-callbacks never inline, set_result once,
//! awaiting, wakers from other threads.

mod common;

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::watchdog;
use momoko_loop::{Future, IoLoop};

#[test]
fn add_future_defers_even_when_the_future_is_already_resolved() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let f = Future::with_loop(&ioloop);
    f.set_result(3).unwrap();
    let got = Rc::new(Cell::new(None));
    let (g, l) = (got.clone(), ioloop.clone());
    ioloop.add_future(&f, move |f| {
        g.set(f.take());
        l.stop();
    });
    assert_eq!(got.get(), None, "add_future ran its callback inline");
    ioloop.start();
    assert_eq!(got.get(), Some(3));
}

#[test]
fn add_future_defers_when_resolved_later_and_set_result_never_runs_callbacks_inline() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let f: Future<&str> = Future::with_loop(&ioloop);
    let got = Rc::new(RefCell::new(Vec::new()));
    let (g, l) = (got.clone(), ioloop.clone());
    ioloop.add_future(&f, move |f| {
        g.borrow_mut().push(f.result().unwrap());
        l.stop();
    });
    let (f2, g2) = (f.clone(), got.clone());
    ioloop.add_callback(move || {
        f2.set_result("value").unwrap();
        assert!(
            g2.borrow().is_empty(),
            "set_result ran a done-callback inline"
        );
    });
    ioloop.start();
    assert_eq!(*got.borrow(), ["value"]);
}

#[test]
fn add_future_on_a_future_bound_to_another_loop_runs_the_callback_on_this_loop() {
    let a = IoLoop::new();
    let b = IoLoop::new();
    watchdog(&b);
    let f: Future<u8> = Future::with_loop(&a);
    f.set_result(1).unwrap();
    let ran_on = Rc::new(RefCell::new(None));
    let (r, l) = (ran_on.clone(), b.clone());
    b.add_future(&f, move |_| {
        *r.borrow_mut() = Some(IoLoop::current());
        l.stop();
    });
    // Loop `a` runs the hop, loop `b` the callback.
    let l = a.clone();
    a.call_later(Duration::from_millis(5), move || l.stop());
    a.start();
    assert!(ran_on.borrow().is_none());
    b.start();
    assert!(ran_on.borrow().as_ref().unwrap().ptr_eq(&b));
}

#[test]
fn add_done_callback_after_resolution_is_scheduled_not_inline() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let f = Future::with_loop(&ioloop);
    f.set_result(String::from("r")).unwrap();
    let order = Rc::new(RefCell::new(Vec::new()));
    let o = order.clone();
    f.add_done_callback(move |f| o.borrow_mut().push(format!("cb {}", f.result().unwrap())));
    order
        .borrow_mut()
        .push("after add_done_callback".to_string());
    let l = ioloop.clone();
    ioloop.add_callback(move || l.stop());
    ioloop.start();
    assert_eq!(*order.borrow(), ["after add_done_callback", "cb r"]);
}

#[test]
fn done_callbacks_run_in_the_order_added() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let f: Future<()> = Future::with_loop(&ioloop);
    let order = Rc::new(RefCell::new(Vec::new()));
    for i in 0..5 {
        let o = order.clone();
        f.add_done_callback(move |_| o.borrow_mut().push(i));
    }
    f.set_result(()).unwrap();
    let l = ioloop.clone();
    ioloop.add_callback(move || l.stop());
    ioloop.start();
    assert_eq!(*order.borrow(), [0, 1, 2, 3, 4]);
}

#[test]
fn a_future_is_abandoned_only_with_no_other_handle_and_no_done_callback() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let producer: Future<u8> = Future::with_loop(&ioloop);
    assert!(producer.is_sole_handle());
    let consumer = producer.clone();
    assert!(!producer.is_sole_handle());
    // The Tornado style: a callback, and no handle kept. Someone still reads the value.
    let got = Rc::new(Cell::new(None));
    let (g, l) = (got.clone(), ioloop.clone());
    ioloop.add_future(&consumer, move |f| {
        g.set(f.take());
        l.stop();
    });
    drop(consumer);
    assert!(!producer.is_sole_handle());
    producer.set_result(7).unwrap();
    ioloop.start();
    assert_eq!(got.get(), Some(7));
    assert!(producer.is_sole_handle(), "the callback ran and let go");
}

#[test]
fn set_result_twice_is_refused_and_keeps_the_first_value() {
    let ioloop = IoLoop::new();
    let f = Future::with_loop(&ioloop);
    assert!(!f.done());
    assert_eq!(f.set_result("first"), Ok(()));
    assert_eq!(f.set_result("second"), Err("second"));
    assert!(f.done());
    assert_eq!(f.result(), Some("first"));
    assert_eq!(f.take(), Some("first"));
    assert!(f.done(), "done stays true after take");
    assert_eq!(f.take(), None);
    assert_eq!(f.result(), None);
    assert_eq!(f.set_result("third"), Err("third"));
}

#[test]
fn take_is_none_until_done() {
    let f: Future<u8> = Future::with_loop(&IoLoop::new());
    assert_eq!(f.take(), None);
    assert!(!f.done());
    f.set_result(1).unwrap();
    assert_eq!(f.take(), Some(1));
}

#[test]
fn debug_shows_the_state_without_requiring_t_debug() {
    struct Opaque;
    let f: Future<Opaque> = Future::with_loop(&IoLoop::new());
    assert_eq!(format!("{f:?}"), r#"Future { state: "pending" }"#);
    assert!(f.set_result(Opaque).is_ok());
    assert_eq!(format!("{f:?}"), r#"Future { state: "done" }"#);
    f.take();
    assert_eq!(format!("{f:?}"), r#"Future { state: "done (taken)" }"#);
}

#[test]
fn resolved_and_default_bind_to_the_current_loop() {
    let ioloop = IoLoop::new();
    ioloop.make_current();
    let r = Future::resolved(1);
    assert!(r.done());
    assert!(r.ioloop().ptr_eq(&ioloop));
    let d: Future<u8> = Future::default();
    assert!(!d.done());
    assert!(d.ioloop().ptr_eq(&ioloop));
}

#[test]
fn done_callbacks_of_a_future_whose_loop_was_dropped_are_discarded_without_panicking() {
    let f: Future<u8> = Future::with_loop(&IoLoop::new()); // the loop is dropped at once
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    f.add_done_callback(move |_| r.set(true));
    assert_eq!(f.set_result(1), Ok(()));
    f.add_done_callback(|_| {});
    assert!(!ran.get());
    assert_eq!(Rc::strong_count(&ran), 1);
}

#[test]
fn a_spawned_task_awaits_futures_and_resolves_its_own() {
    let ioloop = IoLoop::new();
    let a: Future<u32> = Future::with_loop(&ioloop);
    let b: Future<u32> = Future::with_loop(&ioloop);
    let (a2, b2) = (a.clone(), b.clone());
    let sum = ioloop.spawn(async move { a2.await + b2.await });
    let l = ioloop.clone();
    ioloop.call_later(Duration::from_millis(2), move || {
        a.set_result(40).unwrap();
        let b = b.clone();
        l.call_later(Duration::from_millis(2), move || b.set_result(2).unwrap());
    });
    assert_eq!(ioloop.run_sync_timeout(sum, Duration::from_secs(5)), Ok(42));
}

#[test]
fn spawn_does_not_poll_inline() {
    let ioloop = IoLoop::new();
    let polled = Rc::new(Cell::new(false));
    let p = polled.clone();
    let done = ioloop.spawn(async move { p.set(true) });
    assert!(!polled.get());
    assert_eq!(
        ioloop.run_sync_timeout(done, Duration::from_secs(5)),
        Ok(())
    );
    assert!(polled.get());
}

#[test]
fn several_tasks_awaiting_one_future_are_all_woken() {
    // Only one can take the value; the other sees it done through result() in a callback.
    let ioloop = IoLoop::new();
    let shared: Future<u8> = Future::with_loop(&ioloop);
    let woken = Rc::new(Cell::new(0));

    struct PollOnceThenReady(Future<u8>, Rc<Cell<u32>>, bool);
    impl std::future::Future for PollOnceThenReady {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.2 {
                self.1.set(self.1.get() + 1);
                return Poll::Ready(());
            }
            self.2 = true;
            // Register with the shared future without taking its value.
            assert!(Pin::new(&mut self.0).poll(cx).is_pending());
            Poll::Pending
        }
    }
    let t1 = ioloop.spawn(PollOnceThenReady(shared.clone(), woken.clone(), false));
    let t2 = ioloop.spawn(PollOnceThenReady(shared.clone(), woken.clone(), false));
    let s = shared.clone();
    ioloop.call_later(Duration::from_millis(2), move || s.set_result(1).unwrap());
    let both = async move {
        t1.await;
        t2.await;
    };
    assert_eq!(
        ioloop.run_sync_timeout(both, Duration::from_secs(5)),
        Ok(())
    );
    assert_eq!(woken.get(), 2);
    assert_eq!(shared.take(), Some(1));
}

#[test]
fn polling_after_the_value_was_taken_panics_clearly() {
    let ioloop = IoLoop::new();
    let f = Future::with_loop(&ioloop);
    f.set_result(1).unwrap();
    assert_eq!(f.take(), Some(1));
    let again = f.clone();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ioloop.run_sync_timeout(again, Duration::from_secs(5))
    }));
    let err = result.unwrap_err();
    let msg = err.downcast_ref::<&str>().copied().unwrap_or_default();
    assert!(msg.contains("polled after its value was taken"), "{msg}");
    // The loop survived the panic of the task.
    assert_eq!(
        ioloop.run_sync_timeout(async { 2 }, Duration::from_secs(5)),
        Ok(2)
    );
}

/// Ready once `flag` is set; hands its waker to another thread on first poll.
struct WokenFromThread {
    flag: Arc<AtomicBool>,
    started: bool,
    polls: Rc<Cell<u32>>,
}

impl std::future::Future for WokenFromThread {
    type Output = &'static str;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<&'static str> {
        self.polls.set(self.polls.get() + 1);
        if self.flag.load(Ordering::Acquire) {
            return Poll::Ready("woken from another thread");
        }
        if !self.started {
            self.started = true;
            let (flag, waker): (_, Waker) = (self.flag.clone(), cx.waker().clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                flag.store(true, Ordering::Release);
                waker.wake();
            });
        }
        Poll::Pending
    }
}

#[test]
fn a_spawned_task_is_woken_by_a_std_waker_from_another_thread() {
    let ioloop = IoLoop::new();
    let polls = Rc::new(Cell::new(0));
    let task = WokenFromThread {
        flag: Arc::new(AtomicBool::new(false)),
        started: false,
        polls: polls.clone(),
    };
    let out = ioloop.run_sync_timeout(task, Duration::from_secs(5));
    assert_eq!(out, Ok("woken from another thread"));
    // The poll blocked until the wake: no busy polling in between.
    assert_eq!(polls.get(), 2);
}

#[test]
fn waking_a_finished_task_is_harmless() {
    let ioloop = IoLoop::new();
    let stash: Rc<RefCell<Option<Waker>>> = Rc::new(RefCell::new(None));
    struct Grab(Rc<RefCell<Option<Waker>>>);
    impl std::future::Future for Grab {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            *self.0.borrow_mut() = Some(cx.waker().clone());
            Poll::Ready(())
        }
    }
    ioloop
        .run_sync_timeout(Grab(stash.clone()), Duration::from_secs(5))
        .unwrap();
    let waker = stash.borrow_mut().take().unwrap();
    waker.wake_by_ref();
    std::thread::spawn(move || waker.wake()).join().unwrap();
    // A new task may reuse the finished task's slot; it must still run once, normally.
    let runs = Rc::new(Cell::new(0));
    let r = runs.clone();
    let out = ioloop.run_sync_timeout(
        async move {
            r.set(r.get() + 1);
            7
        },
        Duration::from_secs(5),
    );
    assert_eq!(out, Ok(7));
    assert_eq!(runs.get(), 1);
}

#[test]
fn a_task_waking_itself_repeatedly_is_polled_once_per_wake_burst() {
    struct YieldN(u32, Rc<Cell<u32>>);
    impl std::future::Future for YieldN {
        type Output = u32;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            self.1.set(self.1.get() + 1);
            if self.0 == 0 {
                return Poll::Ready(self.1.get());
            }
            self.0 -= 1;
            // Three wakes in a row must cost one extra poll, not three.
            cx.waker().wake_by_ref();
            cx.waker().wake_by_ref();
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
    let ioloop = IoLoop::new();
    let polls = Rc::new(Cell::new(0));
    let out = ioloop.run_sync_timeout(YieldN(10, polls), Duration::from_secs(5));
    assert_eq!(out, Ok(11));
}

#[test]
fn eight_threads_times_a_thousand_loop_handle_callbacks_all_run_exactly_once() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 1000;
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let counts: Arc<Vec<AtomicUsize>> = Arc::new(
        (0..THREADS * PER_THREAD)
            .map(|_| AtomicUsize::new(0))
            .collect(),
    );
    let total = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (handle, counts, total) = (ioloop.handle(), counts.clone(), total.clone());
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let (counts, total, h) = (counts.clone(), total.clone(), handle.clone());
                    handle.add_callback(move || {
                        counts[t * PER_THREAD + i].fetch_add(1, Ordering::Relaxed);
                        if total.fetch_add(1, Ordering::Relaxed) + 1 == THREADS * PER_THREAD {
                            h.stop();
                        }
                    });
                }
            })
        })
        .collect();
    ioloop.start();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(total.load(Ordering::Relaxed), THREADS * PER_THREAD);
    assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
}

#[test]
fn loop_handle_callbacks_from_one_thread_run_in_order_on_the_loop_thread() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let handle = ioloop.handle();
    let loop_thread = std::thread::current().id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for i in 0..100 {
            let tx = tx.clone();
            handle.add_callback(move || {
                tx.send((i, std::thread::current().id() == loop_thread))
                    .unwrap()
            });
        }
        handle.stop();
    });
    ioloop.start();
    let got: Vec<(i32, bool)> = rx.try_iter().collect();
    // stop() may overtake the tail of the callbacks; what ran is in order, on the loop.
    assert!(got.iter().all(|&(_, on_loop)| on_loop));
    assert!(got.iter().map(|&(i, _)| i).eq(0..got.len() as i32));
}

#[test]
fn loop_handle_after_the_loop_was_dropped_is_harmless() {
    let ioloop = IoLoop::new();
    let handle = ioloop.handle();
    drop(ioloop);
    let dropped = Arc::new(AtomicBool::new(false));
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
    let guard = SetOnDrop(dropped.clone());
    handle.add_callback(move || drop(guard));
    handle.stop();
    assert!(
        dropped.load(Ordering::Acquire),
        "the callback was kept instead of discarded"
    );
}

#[test]
fn loop_handle_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<momoko_loop::LoopHandle>();
}
