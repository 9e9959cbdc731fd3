//! The loop nested in a program's own poll: its descriptor (`AsRawFd`), `next_timeout` and
//! `turn`; and `run_sync` as `block_on`, whose future may borrow from the caller's stack.
//!
//! Every wait is bounded: outer polls have timeouts, and loops that could block carry the
//! watchdog timeout, which also bounds `turn(None)`.

mod common;

use std::cell::{Cell, RefCell};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use common::{tcp_pair, watchdog};
use mio::unix::SourceFd;
use mio::{Events, Interest, Token};
use momoko_loop::{sleep, Future, IoLoop, TimedOut};

const INNER: Token = Token(1);

/// A program's own poll with the loop's descriptor registered under `INNER`.
fn outer_poll(ioloop: &IoLoop) -> mio::Poll {
    let poll = mio::Poll::new().unwrap();
    poll.registry()
        .register(
            &mut SourceFd(&ioloop.as_raw_fd()),
            INNER,
            Interest::READABLE,
        )
        .unwrap();
    poll
}

/// Polls `poll` once for at most `timeout`; true if the loop's descriptor was reported.
fn inner_fd_ready(poll: &mut mio::Poll, timeout: Duration) -> bool {
    let mut events = Events::with_capacity(8);
    poll.poll(&mut events, Some(timeout)).unwrap();
    let ready = events.iter().any(|e| e.token() == INNER && e.is_readable());
    ready
}

/// The text of a caught panic.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload
            .downcast::<&str>()
            .map(|message| message.to_string())
            .unwrap_or_default(),
    }
}

/// Sets its flag when dropped: shows when a future that owns it is dropped.
struct DropFlag<'a>(&'a Cell<bool>);

impl Drop for DropFlag<'_> {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

// --- turn: how long it may block ----------------------------------------------------------

#[test]
fn turn_with_a_zero_timeout_never_blocks() {
    let ioloop = IoLoop::new();
    let (_client, mut server) = tcp_pair(); // registered, silent
    ioloop
        .add_handler(&mut server, Interest::READABLE, |_| {
            panic!("no data was sent")
        })
        .unwrap();
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    ioloop.call_later(Duration::from_secs(60), move || f.set(true));
    let started = Instant::now();
    for _ in 0..100 {
        ioloop.turn(Some(Duration::ZERO)).unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "100 zero turns took {:?}",
        started.elapsed()
    );
    assert!(!fired.get());
}

#[test]
fn turn_with_a_timeout_and_nothing_to_do_waits_that_long_and_returns() {
    let ioloop = IoLoop::new();
    assert_eq!(ioloop.next_timeout(), None);
    let started = Instant::now();
    ioloop.turn(Some(Duration::from_millis(50))).unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(45),
        "returned after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "returned after {elapsed:?}"
    );
}

#[test]
fn turn_never_waits_past_the_loops_next_timeout_and_runs_it_in_the_next_turn() {
    let ioloop = IoLoop::new();
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    ioloop.call_later(Duration::from_millis(30), move || f.set(true));
    let started = Instant::now();
    ioloop.turn(Some(Duration::from_secs(10))).unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(25),
        "returned after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "returned after {elapsed:?}"
    );
    // Due timeouts are collected before the poll: it runs in the following turn.
    assert!(!fired.get());
    assert_eq!(ioloop.next_timeout(), Some(Duration::ZERO));
    ioloop.turn(Some(Duration::ZERO)).unwrap();
    assert!(fired.get());
    assert_eq!(ioloop.next_timeout(), None);
}

#[test]
fn turn_with_no_timeout_waits_for_the_loops_own_next_timeout() {
    let ioloop = IoLoop::new();
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    ioloop.call_later(Duration::from_millis(30), move || f.set(true));
    let started = Instant::now();
    ioloop.turn(None).unwrap();
    let elapsed = started.elapsed();
    assert!(!fired.get(), "it runs in the next turn");
    // With nothing left after it, a turn(None) would now wait for IO (up to an hour).
    ioloop.turn(Some(Duration::ZERO)).unwrap();
    assert!(fired.get());
    assert!(
        elapsed >= Duration::from_millis(25),
        "returned after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "returned after {elapsed:?}"
    );
}

#[test]
fn turn_with_no_timeout_returns_when_another_thread_adds_a_callback() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop); // bounds turn(None) to 5 s
    let ran = Arc::new(AtomicBool::new(false));
    let (handle, r) = (ioloop.handle(), ran.clone());
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        handle.add_callback(move || r.store(true, Ordering::SeqCst));
    });
    let started = Instant::now();
    ioloop.turn(None).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the wake-up was lost"
    );
    sender.join().unwrap();
    // It arrived during the poll: queued for the next turn, which has work at once.
    assert_eq!(ioloop.next_timeout(), Some(Duration::ZERO));
    ioloop.turn(Some(Duration::ZERO)).unwrap();
    assert!(ran.load(Ordering::SeqCst));
}

#[test]
fn a_turn_runs_only_the_callbacks_queued_when_it_began() {
    let ioloop = IoLoop::new();
    let log = Rc::new(RefCell::new(Vec::new()));
    let (l, lg) = (ioloop.clone(), log.clone());
    ioloop.add_callback(move || {
        lg.borrow_mut().push("first");
        let lg = lg.clone();
        l.add_callback(move || lg.borrow_mut().push("added by first"));
    });
    ioloop.turn(Some(Duration::ZERO)).unwrap();
    assert_eq!(*log.borrow(), ["first"]);
    assert_eq!(ioloop.next_timeout(), Some(Duration::ZERO));
    ioloop.turn(Some(Duration::ZERO)).unwrap();
    assert_eq!(*log.borrow(), ["first", "added by first"]);
    assert_eq!(ioloop.next_timeout(), None);
}

// --- next_timeout -------------------------------------------------------------------------

#[test]
fn next_timeout_is_none_when_nothing_is_scheduled() {
    let ioloop = IoLoop::new();
    assert_eq!(ioloop.next_timeout(), None);
    // Registered handlers are not scheduled work.
    let (_client, mut server) = tcp_pair();
    ioloop
        .add_handler(&mut server, Interest::READABLE, |_| {})
        .unwrap();
    assert_eq!(ioloop.next_timeout(), None);
    // Nor is a removed timeout.
    let id = ioloop.call_later(Duration::from_secs(1), || {});
    ioloop.remove_timeout(id);
    assert_eq!(ioloop.next_timeout(), None);
}

#[test]
fn next_timeout_is_zero_after_add_callback_until_a_turn_runs_it() {
    let ioloop = IoLoop::new();
    ioloop.add_callback(|| {});
    assert_eq!(ioloop.next_timeout(), Some(Duration::ZERO));
    ioloop.turn(Some(Duration::ZERO)).unwrap();
    assert_eq!(ioloop.next_timeout(), None);
}

#[test]
fn next_timeout_is_zero_with_a_spawned_task_a_due_timeout_or_a_remote_callback() {
    let ioloop = IoLoop::new();
    let task = ioloop.spawn(async { 1 });
    assert_eq!(ioloop.next_timeout(), Some(Duration::ZERO));
    ioloop.turn(Some(Duration::ZERO)).unwrap();
    assert_eq!(task.take(), Some(1));
    ioloop.turn(Some(Duration::ZERO)).unwrap(); // the task future's done-callbacks, if any
    assert_eq!(ioloop.next_timeout(), None);

    ioloop.call_at(Instant::now() - Duration::from_millis(1), || {});
    assert_eq!(ioloop.next_timeout(), Some(Duration::ZERO));
    ioloop.turn(Some(Duration::ZERO)).unwrap();
    assert_eq!(ioloop.next_timeout(), None);

    let handle = ioloop.handle();
    std::thread::spawn(move || handle.add_callback(|| {}))
        .join()
        .unwrap();
    assert_eq!(ioloop.next_timeout(), Some(Duration::ZERO));
    ioloop.turn(Some(Duration::ZERO)).unwrap();
    assert_eq!(ioloop.next_timeout(), None);
}

#[test]
fn next_timeout_is_the_time_left_until_a_call_later() {
    let ioloop = IoLoop::new();
    ioloop.call_later(Duration::from_secs(5), || {});
    ioloop.call_later(Duration::from_secs(60), || {});
    let left = ioloop.next_timeout().expect("a timeout is scheduled");
    assert!(left <= Duration::from_secs(5), "{left:?}");
    assert!(left > Duration::from_millis(4500), "{left:?}");
}

// --- the descriptor -----------------------------------------------------------------------

#[test]
fn the_fd_becomes_readable_when_another_thread_adds_a_callback() {
    let ioloop = IoLoop::new();
    let mut poll = outer_poll(&ioloop);
    assert!(
        !inner_fd_ready(&mut poll, Duration::ZERO),
        "precondition: an idle loop's fd is quiet"
    );
    let ran = Arc::new(AtomicBool::new(false));
    let (handle, r) = (ioloop.handle(), ran.clone());
    std::thread::spawn(move || handle.add_callback(move || r.store(true, Ordering::SeqCst)))
        .join()
        .unwrap();
    assert!(inner_fd_ready(&mut poll, Duration::from_secs(5)));
    assert!(!ran.load(Ordering::SeqCst), "nothing runs before a turn");
    ioloop.turn(Some(Duration::ZERO)).unwrap();
    assert!(ran.load(Ordering::SeqCst));
    assert!(
        !inner_fd_ready(&mut poll, Duration::ZERO),
        "the turn took the wake-up"
    );
}

#[test]
fn the_fd_becomes_readable_when_a_registered_socket_gets_data() {
    let ioloop = IoLoop::new();
    let mut poll = outer_poll(&ioloop);
    let (mut client, server) = tcp_pair();
    let server = Rc::new(RefCell::new(server));
    let received = Rc::new(RefCell::new(Vec::new()));
    let (s, got) = (server.clone(), received.clone());
    ioloop
        .add_handler(&mut *server.borrow_mut(), Interest::READABLE, move |_| {
            let mut buf = [0u8; 64];
            loop {
                match s.borrow_mut().read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.borrow_mut().extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("read: {e}"),
                }
            }
        })
        .unwrap();
    assert!(
        !inner_fd_ready(&mut poll, Duration::ZERO),
        "precondition: nothing sent yet"
    );
    client.write_all(b"ping").unwrap();
    assert!(inner_fd_ready(&mut poll, Duration::from_secs(5)));
    ioloop.turn(Some(Duration::ZERO)).unwrap();
    assert_eq!(*received.borrow(), b"ping");
}

#[test]
fn a_program_of_its_own_drives_timeouts_tasks_and_io_through_the_fd_and_next_timeout() {
    let ioloop = IoLoop::new();
    let mut poll = outer_poll(&ioloop);
    let mut events = Events::with_capacity(8);
    let (mut client, server) = tcp_pair();
    let server = Rc::new(RefCell::new(server));
    let bytes: Future<Vec<u8>> = Future::with_loop(&ioloop);
    let (s, b) = (server.clone(), bytes.clone());
    ioloop
        .add_handler(&mut *server.borrow_mut(), Interest::READABLE, move |_| {
            let mut buf = [0u8; 64];
            if let Ok(n) = s.borrow_mut().read(&mut buf) {
                let _ = b.set_result(buf[..n].to_vec());
            }
        })
        .unwrap();
    let l = ioloop.clone();
    let task = ioloop.spawn(async move {
        sleep(&l, Duration::from_millis(20)).await;
        let got = bytes.await;
        got.len()
    });
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(40));
        client.write_all(b"three").unwrap();
        client // kept open until joined
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut turns = 0;
    while !task.done() {
        assert!(Instant::now() < deadline, "not done after 5 s");
        let wait = ioloop
            .next_timeout()
            .unwrap_or(Duration::from_secs(1))
            .min(deadline.saturating_duration_since(Instant::now()));
        poll.poll(&mut events, Some(wait)).unwrap();
        ioloop.turn(Some(Duration::ZERO)).unwrap();
        turns += 1;
    }
    drop(writer.join().unwrap());
    assert_eq!(task.take(), Some(5));
    assert!(turns < 100, "{turns} turns: the program spun");
}

// --- re-entrance, stop, current -----------------------------------------------------------

#[test]
fn turn_from_inside_the_running_loop_is_a_resource_busy_error_and_runs_nothing() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let outcomes = Rc::new(RefCell::new(Vec::new()));
    let later_ran = Rc::new(Cell::new(false));
    let (l, o, lr) = (ioloop.clone(), outcomes.clone(), later_ran.clone());
    ioloop.add_callback(move || {
        let err = l.turn(Some(Duration::ZERO)).unwrap_err();
        o.borrow_mut().push((err.kind(), lr.get()));
        // Also after stop(), which ends the run but not the fact that it is running.
        l.stop();
        let err = l.turn(Some(Duration::ZERO)).unwrap_err();
        o.borrow_mut().push((err.kind(), lr.get()));
    });
    let lr = later_ran.clone();
    ioloop.add_callback(move || lr.set(true));
    ioloop.turn(Some(Duration::ZERO)).unwrap();
    assert_eq!(
        *outcomes.borrow(),
        [
            (ErrorKind::ResourceBusy, false),
            (ErrorKind::ResourceBusy, false)
        ]
    );
    // Under start() and run_sync() too.
    let l = ioloop.clone();
    let kinds = ioloop.run_sync(async move {
        let under_run_sync = l.turn(Some(Duration::ZERO)).unwrap_err().kind();
        let (tx, rx) = (Future::with_loop(&l), l.clone());
        let t = tx.clone();
        l.add_callback(move || {
            let _ = t.set_result(rx.turn(None).unwrap_err().kind());
        });
        (under_run_sync, tx.await)
    });
    assert_eq!(kinds, (ErrorKind::ResourceBusy, ErrorKind::ResourceBusy));
    let err = {
        let l = ioloop.clone();
        let got = Rc::new(RefCell::new(None));
        let g = got.clone();
        ioloop.add_callback(move || {
            *g.borrow_mut() = Some(l.turn(Some(Duration::ZERO)).unwrap_err());
            l.stop();
        });
        ioloop.start();
        let err = got.borrow_mut().take().expect("the callback ran");
        err
    };
    assert_eq!(err.kind(), ErrorKind::ResourceBusy);
    assert!(err.to_string().contains("already running"), "{err}");
}

#[test]
#[should_panic(expected = "already running")]
fn start_inside_a_turn_panics_clearly() {
    let ioloop = IoLoop::new();
    let l = ioloop.clone();
    ioloop.add_callback(move || l.start());
    ioloop.turn(Some(Duration::ZERO)).unwrap();
}

#[test]
#[should_panic(expected = "already running")]
fn start_after_stop_inside_the_running_loop_still_panics() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let l = ioloop.clone();
    ioloop.add_callback(move || {
        l.stop();
        l.start();
    });
    ioloop.start();
}

#[test]
fn run_sync_inside_a_turn_panics_without_polling_its_future() {
    let ioloop = IoLoop::new();
    let polled = Rc::new(Cell::new(false));
    let (l, p) = (ioloop.clone(), polled.clone());
    ioloop.add_callback(move || {
        l.run_sync(async move { p.set(true) });
    });
    let result = catch_unwind(AssertUnwindSafe(|| ioloop.turn(Some(Duration::ZERO))));
    let message = panic_message(result.unwrap_err());
    assert!(message.contains("already running"), "{message}");
    assert!(!polled.get());
    assert_eq!(ioloop.next_timeout(), None, "no task was left behind");
}

#[test]
fn stop_inside_a_turn_ends_it_before_the_poll_and_is_then_forgotten() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let (mut client, mut server) = tcp_pair();
    let events = Rc::new(Cell::new(0));
    let e = events.clone();
    ioloop
        .add_handler(&mut server, Interest::READABLE, move |_| e.set(e.get() + 1))
        .unwrap();
    client.write_all(b"x").unwrap();
    std::thread::sleep(Duration::from_millis(20)); // the data has arrived
    let l = ioloop.clone();
    ioloop.add_callback(move || l.stop());
    ioloop.turn(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(events.get(), 0, "the stopped turn must not poll");
    assert!(!ioloop.is_running());
    // The next turn runs normally: the event was kept by the kernel.
    ioloop.turn(Some(Duration::from_secs(1))).unwrap();
    assert_eq!(events.get(), 1);
    // And a later start() runs until its own stop(), not at once.
    let ran = Rc::new(Cell::new(false));
    let (r, l) = (ran.clone(), ioloop.clone());
    ioloop.add_callback(move || {
        r.set(true);
        l.stop();
    });
    ioloop.start();
    assert!(ran.get());
}

#[test]
fn stop_between_turns_is_not_obeyed_by_a_turn_and_kept_for_the_next_start() {
    let ioloop = IoLoop::new();
    let log = Rc::new(RefCell::new(Vec::new()));
    let lg = log.clone();
    ioloop.add_callback(move || lg.borrow_mut().push("turn"));
    ioloop.stop();
    ioloop.turn(Some(Duration::ZERO)).unwrap();
    assert_eq!(*log.borrow(), ["turn"], "the turn ignored the earlier stop");
    let lg = log.clone();
    ioloop.add_callback(move || lg.borrow_mut().push("start"));
    let started = Instant::now();
    ioloop.start(); // returns at once: that stop was for it
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(*log.borrow(), ["turn"]);
    // Only that one start() is skipped.
    watchdog(&ioloop);
    let l = ioloop.clone();
    ioloop.add_callback(move || l.stop());
    ioloop.start();
    assert_eq!(*log.borrow(), ["turn", "start"]);
}

#[test]
fn a_loop_handle_stop_before_a_turn_is_kept_for_the_next_start() {
    let ioloop = IoLoop::new();
    let handle = ioloop.handle();
    std::thread::spawn(move || handle.stop()).join().unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    ioloop.add_callback(move || r.set(true));
    ioloop.turn(Some(Duration::ZERO)).unwrap();
    assert!(ran.get());
    let started = Instant::now();
    ioloop.start();
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn during_a_turn_the_loop_is_current_and_running_and_both_are_restored_after() {
    let outer = IoLoop::new();
    outer.make_current();
    let ioloop = IoLoop::new();
    let seen = Rc::new(Cell::new((false, false)));
    let (l, s) = (ioloop.clone(), seen.clone());
    ioloop.add_callback(move || s.set((IoLoop::current().ptr_eq(&l), l.is_running())));
    ioloop.turn(Some(Duration::ZERO)).unwrap();
    assert_eq!(seen.get(), (true, true));
    assert!(IoLoop::current().ptr_eq(&outer));
    assert!(!ioloop.is_running());
}

#[test]
fn a_panic_inside_a_turn_leaves_the_loop_usable() {
    let outer = IoLoop::new();
    outer.make_current();
    let ioloop = IoLoop::new();
    let ran = Rc::new(Cell::new(false));
    ioloop.add_callback(|| panic!("boom"));
    let r = ran.clone();
    ioloop.add_callback(move || r.set(true));
    let result = catch_unwind(AssertUnwindSafe(|| ioloop.turn(Some(Duration::ZERO))));
    assert!(result.is_err());
    assert!(!ioloop.is_running());
    assert!(IoLoop::current().ptr_eq(&outer));
    assert!(!ran.get());
    // Not "already running": the next turn runs the callback the panic cut off.
    ioloop.turn(Some(Duration::ZERO)).unwrap();
    assert!(ran.get());
}

// --- run_sync as block_on -----------------------------------------------------------------

#[test]
fn run_sync_future_may_borrow_a_local_vec_and_push_into_it() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let mut seen: Vec<u32> = Vec::new();
    let l = ioloop.clone();
    let count = ioloop.run_sync(async {
        for i in 1..=3 {
            sleep(&l, Duration::from_millis(1)).await;
            seen.push(i * 10);
        }
        seen.len()
    });
    assert_eq!(count, 3);
    seen.push(40); // the borrow ended with run_sync
    assert_eq!(seen, [10, 20, 30, 40]);
}

#[test]
fn run_sync_timeout_drops_a_borrowing_future_before_it_returns() {
    let ioloop = IoLoop::new();
    let dropped = Cell::new(false);
    let never: Future<()> = Future::with_loop(&ioloop);
    let started = Instant::now();
    let result = ioloop.run_sync_timeout(
        async {
            let _flag = DropFlag(&dropped);
            never.clone().await
        },
        Duration::from_millis(20),
    );
    assert_eq!(result, Err(TimedOut));
    assert!(dropped.get(), "the future outlived run_sync_timeout");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(!never.done());
}

#[test]
fn run_sync_drops_a_borrowing_future_when_it_panics() {
    let ioloop = IoLoop::new();
    let dropped = Cell::new(false);
    let result = catch_unwind(AssertUnwindSafe(|| {
        ioloop.run_sync(async {
            let _flag = DropFlag(&dropped);
            panic!("the future panics");
        })
    }));
    assert!(result.is_err());
    assert!(dropped.get());
}

#[test]
fn run_sync_drops_a_pending_borrowing_future_when_other_code_panics() {
    let ioloop = IoLoop::new();
    let dropped = Cell::new(false);
    ioloop.call_later(Duration::from_millis(5), || panic!("a timeout panics"));
    let never: Future<()> = Future::with_loop(&ioloop);
    let result = catch_unwind(AssertUnwindSafe(|| {
        ioloop.run_sync(async {
            let _flag = DropFlag(&dropped);
            never.clone().await
        })
    }));
    assert!(result.is_err());
    assert!(dropped.get());
}

#[test]
fn run_sync_drops_a_borrowing_future_when_the_loop_was_stopped_before() {
    let ioloop = IoLoop::new();
    let dropped = Cell::new(false);
    ioloop.stop();
    // Made outside: the future is never polled, so nothing inside it would ever run.
    let flag = DropFlag(&dropped);
    let result = catch_unwind(AssertUnwindSafe(|| {
        ioloop.run_sync(async move {
            let _flag = flag;
        })
    }));
    let message = panic_message(result.unwrap_err());
    assert!(
        message.contains("stopped before the future completed"),
        "{message}"
    );
    assert!(dropped.get());
}

#[test]
fn a_wake_after_run_sync_returned_never_reaches_its_future() {
    let ioloop = IoLoop::new();
    let polls = Cell::new(0);
    let saved: Rc<RefCell<Option<Waker>>> = Rc::default();
    let s = saved.clone();
    let result = ioloop.run_sync_timeout(
        std::future::poll_fn(|cx| {
            polls.set(polls.get() + 1);
            *s.borrow_mut() = Some(cx.waker().clone());
            Poll::<()>::Pending
        }),
        Duration::from_millis(10),
    );
    assert_eq!(result, Err(TimedOut));
    assert_eq!(polls.get(), 1);
    // A new task may take the freed slot; the old waker must reach neither.
    let new_polls = Rc::new(Cell::new(0));
    let np = new_polls.clone();
    let _pending = ioloop.spawn(std::future::poll_fn(move |_| {
        np.set(np.get() + 1);
        Poll::<()>::Pending
    }));
    ioloop.turn(Some(Duration::ZERO)).unwrap();
    assert_eq!(new_polls.get(), 1);
    let waker = saved
        .borrow_mut()
        .take()
        .expect("the future saved its waker");
    waker.wake_by_ref();
    std::thread::spawn(move || waker.wake()).join().unwrap();
    for _ in 0..3 {
        ioloop.turn(Some(Duration::ZERO)).unwrap();
    }
    assert_eq!(polls.get(), 1);
    assert_eq!(new_polls.get(), 1);
}

#[test]
fn run_sync_future_lives_in_run_syncs_frame_so_close_inside_it_does_not_cancel_it() {
    // close() drops every task of the loop; the root future is not one of them: it is
    // polled by run_sync's own frame, so it goes on and completes.
    let ioloop = IoLoop::new();
    // close() drops the loop's timeouts too: the bound comes from another thread.
    let handle = ioloop.handle();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        handle.stop();
    });
    let mut steps = Vec::new();
    let l = ioloop.clone();
    let result = catch_unwind(AssertUnwindSafe(|| {
        ioloop.run_sync(async {
            steps.push("before close");
            l.close();
            sleep(&l, Duration::from_millis(1)).await;
            steps.push("after close");
            7
        })
    }));
    assert_eq!(
        result.ok(),
        Some(7),
        "the root future was cancelled by close()"
    );
    assert_eq!(steps, ["before close", "after close"]);
}

#[test]
fn run_sync_future_woken_from_another_thread_is_polled_again_and_completes() {
    let ioloop = IoLoop::new();
    let done = Arc::new(AtomicBool::new(false));
    let polls = Cell::new(0);
    let result = ioloop.run_sync_timeout(
        std::future::poll_fn(|cx| {
            polls.set(polls.get() + 1);
            if done.load(Ordering::SeqCst) {
                return Poll::Ready("woken");
            }
            if polls.get() == 1 {
                let (waker, done) = (cx.waker().clone(), done.clone());
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(5));
                    done.store(true, Ordering::SeqCst);
                    waker.wake();
                });
            }
            Poll::Pending
        }),
        Duration::from_secs(2),
    );
    assert_eq!(result, Ok("woken"));
    assert_eq!(polls.get(), 2);
}
