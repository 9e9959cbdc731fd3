//! A signal that interrupts the loop's poll (EINTR) changes nothing a program sees: the
//! wait is worked out again from the timers, so a timeout fires when it is due, neither
//! early nor an interval late.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use momoko_loop::IoLoop;

static HANDLED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn note_signal(_: libc::c_int) {
    HANDLED.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn a_signal_during_the_poll_neither_fires_a_timeout_early_nor_delays_it() {
    // SAFETY: installs a handler that only bumps an atomic, for a signal nothing else uses.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = note_signal as *const () as usize;
        assert_eq!(
            libc::sigaction(libc::SIGUSR2, &action, std::ptr::null_mut()),
            0
        );
    }
    let (tx, rx) = mpsc::channel();
    let looper = std::thread::spawn(move || {
        // SAFETY: pthread_self has no preconditions.
        tx.send(unsafe { libc::pthread_self() }).unwrap();
        let ioloop = IoLoop::new();
        let start = Instant::now();
        let fired = ioloop.run_sync({
            let l = ioloop.clone();
            async move {
                let f = momoko_loop::Future::with_loop(&l);
                let s = f.clone();
                l.call_later(Duration::from_millis(600), move || {
                    let _ = s.set_result(Instant::now());
                });
                f.await
            }
        });
        fired.duration_since(start)
    });
    let thread = rx.recv().unwrap();
    // Several signals while the loop waits for its timeout.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(100));
        // SAFETY: the thread is alive (it waits for a 600 ms timeout) and handles SIGUSR2.
        assert_eq!(unsafe { libc::pthread_kill(thread, libc::SIGUSR2) }, 0);
    }
    let waited = looper.join().unwrap();
    assert_eq!(
        HANDLED.load(Ordering::SeqCst),
        3,
        "every signal reached the loop's thread"
    );
    assert!(
        waited >= Duration::from_millis(600),
        "fired early: {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(1_500),
        "fired late: {waited:?}"
    );
}
