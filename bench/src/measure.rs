//! What one timed run yields ([`Sample`]) and how it is taken: wall time from `Instant`,
//! client CPU time from `getrusage`, resident memory from `/proc/self/statm`, and the
//! median/min/max that every figure in the report is.
//!
//! CPU time is the whole process's (`RUSAGE_SELF`: every contender in this process runs on
//! the calling thread, and tokio's current-thread runtime adds no worker) or, for pgbench,
//! the children's (`RUSAGE_CHILDREN`, taken around the `wait` of that one child).

use std::time::{Duration, Instant};

/// One timed run of one contender on one workload.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Units of work done: queries, statements, rows or connections (the workload says which).
    pub ops: u64,
    /// Wall-clock time of the timed part.
    pub wall: Duration,
    /// Client CPU time (user + system) of the timed part.
    pub cpu: Duration,
    /// The system (kernel) part of `cpu`: socket calls, wake-ups, loopback TCP.
    pub sys: Duration,
}

impl Sample {
    /// Units per second.
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// The kernel's share of the client CPU, 0 to 1.
    pub fn sys_share(&self) -> f64 {
        self.sys.as_secs_f64() / self.cpu.as_secs_f64().max(1e-12)
    }

    /// Client CPU microseconds per unit.
    pub fn cpu_us_per_op(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / (self.ops.max(1) as f64)
    }
}

/// A running measurement: started before the timed part, finished after it.
pub struct Meter {
    start: Instant,
    cpu: (Duration, Duration),
}

impl Meter {
    /// Starts timing now.
    pub fn start() -> Meter {
        Meter {
            cpu: cpu_time(libc::RUSAGE_SELF),
            start: Instant::now(),
        }
    }

    /// Stops timing; `ops` units were done in between.
    pub fn finish(self, ops: u64) -> Sample {
        let wall = self.start.elapsed();
        let (user, sys) = cpu_time(libc::RUSAGE_SELF);
        let sys = sys.saturating_sub(self.cpu.1);
        Sample {
            ops,
            wall,
            cpu: user.saturating_sub(self.cpu.0) + sys,
            sys,
        }
    }
}

/// User and system CPU time of `who` (`RUSAGE_SELF` or `RUSAGE_CHILDREN`).
pub fn cpu_time(who: libc::c_int) -> (Duration, Duration) {
    // SAFETY: getrusage only writes the struct we hand it; all-zero is a valid rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage for the duration of the call.
    let rc = unsafe { libc::getrusage(who, &mut ru) };
    assert_eq!(rc, 0, "getrusage failed");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

/// The process's resident set in bytes, from `/proc/self/statm` (its second field, in pages).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(1) as u64
}

/// Median, min and max of a set of figures.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (NaN in all three when empty).
    pub fn of(values: impl IntoIterator<Item = f64>) -> Spread {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Spread {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            };
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Spread {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }
}
