//! The handful of C library calls the harness needs, declared by hand so that the crate
//! depends on nothing but std. It owns only thin safe wrappers; it must never grow logic of
//! its own or pull in the `libc` crate.

use std::sync::atomic::{AtomicI32, Ordering};

// Signal numbers are the same on Linux and the BSDs for the ones used here.
pub const SIGINT: i32 = 2;
pub const SIGKILL: i32 = 9;
pub const SIGTERM: i32 = 15;
pub const SIGHUP: i32 = 1;

extern "C" {
    fn geteuid() -> u32;
    fn kill(pid: i32, sig: i32) -> i32;
    fn atexit(cb: extern "C" fn()) -> i32;
    fn signal(signum: i32, handler: usize) -> usize;
}

/// True when running as root: PostgreSQL refuses to run as root, so the server binaries are
/// then run as an unprivileged account.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { geteuid() == 0 }
}

/// Sends `sig` to a process (pid > 0) or a process group (pid < 0). Errors are ignored by
/// callers on purpose: the target may already be gone.
pub fn send_signal(pid: i32, sig: i32) -> bool {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { kill(pid, sig) == 0 }
}

/// Registers `cb` to run at normal process exit (also after `std::process::exit`, which is
/// how the test harness ends a run with failed tests).
pub fn at_exit(cb: extern "C" fn()) -> bool {
    // SAFETY: cb is a plain function with the C ABI, valid for the whole program.
    unsafe { atexit(cb) == 0 }
}

static LAST_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn remember_signal(sig: i32) {
    // Only an atomic store: async-signal-safe.
    LAST_SIGNAL.store(sig, Ordering::SeqCst);
}

/// Routes SIGINT, SIGTERM and SIGHUP to a flag instead of killing the process, so the
/// `run` wrapper can stop its server before exiting.
pub fn catch_termination_signals() {
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            signal(sig, remember_signal as extern "C" fn(i32) as usize);
        }
    }
}

/// The last termination signal caught, if any (and clears it).
pub fn take_signal() -> Option<i32> {
    match LAST_SIGNAL.swap(0, Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}
