//! The `tcproxy` command: one relay from Momoko's policy syntax, until SIGINT or SIGTERM.
//!
//! It owns the command line, a stderr logger for `-v`/`-vv`, and the termination signals
//! (a self-pipe: the handler only writes one byte, which is async-signal-safe, and the main
//! thread wakes from its blocking read). It must never relay anything itself: the library's
//! relay thread does, and the main thread only waits for the signal and shuts it down, so
//! every relayed socket is closed before the process exits with status 0.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};

const USAGE: &str = "usage: tcproxy [-v|-vv] \"[addr:]port -> [addr:]port\"
  addr is localhost, any or a dotted IPv4 address (listen default: any; target
  default: 127.0.0.1). Relays every connection both ways until SIGINT or SIGTERM.
  -v   log listening, stopping and the counters; -vv  also every connection
  -h   this help; --version  the version";

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

extern "C" {
    fn signal(signum: i32, handler: usize) -> usize;
    fn write(fd: i32, buf: *const u8, count: usize) -> isize;
}

/// The write end of the self-pipe, for the signal handler.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(_sig: i32) {
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; the buffer is a valid static byte.
        unsafe {
            write(fd, b"!".as_ptr(), 1);
        }
    }
}

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            eprintln!("{} {}", r.level(), r.args());
        }
    }
    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

fn main() -> ExitCode {
    let mut verbosity = 0;
    let mut policy = None;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--version" => {
                println!("tcproxy {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            "-v" => verbosity += 1,
            "-vv" => verbosity += 2,
            s if s.starts_with('-') && s.len() > 1 && !s.contains("->") => {
                eprintln!("tcproxy: unknown option {s}\n{USAGE}");
                return ExitCode::from(2);
            }
            s if policy.is_none() => policy = Some(s.to_owned()),
            s => {
                eprintln!("tcproxy: one policy only, got another: {s:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(policy) = policy else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let policy: tcproxy::Policy = match policy.parse() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("tcproxy: {e}");
            return ExitCode::from(2);
        }
    };
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(match verbosity {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    });

    let (mut wait_end, wake_end) = match UnixStream::pair() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("tcproxy: cannot create the signal pipe: {e}");
            return ExitCode::FAILURE;
        }
    };
    WAKE_FD.store(wake_end.as_raw_fd(), Ordering::SeqCst);
    for sig in [SIGINT, SIGTERM] {
        // SAFETY: the handler only calls write(2) on a descriptor that outlives it.
        unsafe {
            signal(sig, on_signal as extern "C" fn(i32) as usize);
        }
    }

    let proxy = match tcproxy::Proxy::start(policy.listen, policy.upstream) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("tcproxy: cannot listen on {}: {e}", policy.listen);
            return ExitCode::FAILURE;
        }
    };
    log::info!("relaying {} -> {}", proxy.local_addr(), policy.upstream);
    let mut byte = [0u8; 1];
    loop {
        match wait_end.read(&mut byte) {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("tcproxy: waiting for a signal failed: {e}");
                break;
            }
        }
    }
    let s = proxy.stats();
    log::info!(
        "stopping: {} connection(s) accepted, {} live, {} bytes up, {} bytes down",
        s.accepted,
        s.live,
        s.bytes_up,
        s.bytes_down
    );
    proxy.shutdown();
    drop(wake_end);
    ExitCode::SUCCESS
}
