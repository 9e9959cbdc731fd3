//! Small helpers over futures and timers that Tornado users reach for: `gen.sleep` and
//! `yield [f1, f2, f3]`.
//!
//! They are built only on the public `IoLoop` and `Future` API; they own no state of the
//! loop and never block.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use crate::{Future, IoLoop};

/// A future that resolves after `delay` on `ioloop` (Tornado's `gen.sleep`).
///
/// ```
/// use momoko_loop::{sleep, IoLoop};
/// use std::time::{Duration, Instant};
///
/// let lp = IoLoop::new();
/// let start = Instant::now();
/// lp.run_sync(sleep(&lp, Duration::from_millis(20)));
/// assert!(start.elapsed() >= Duration::from_millis(20));
/// ```
pub fn sleep(ioloop: &IoLoop, delay: Duration) -> Future<()> {
    let fut = Future::with_loop(ioloop);
    let f = fut.clone();
    ioloop.call_later(delay, move || {
        let _ = f.set_result(());
    });
    fut
}

/// A future of every value of `futures`, in their order, once all are done (Tornado's
/// `yield [f1, f2, f3]`). It takes each value as it arrives; resolve a list of futures
/// only once.
///
/// ```
/// use momoko_loop::{gather, Future, IoLoop};
///
/// let lp = IoLoop::new();
/// let out = lp.run_sync(async {
///     let a = Future::new();
///     let b = Future::new();
///     let all = gather(vec![a.clone(), b.clone()]);
///     b.set_result(2).unwrap();
///     a.set_result(1).unwrap();
///     all.await
/// });
/// assert_eq!(out, vec![1, 2]);
/// ```
pub fn gather<T: 'static>(futures: Vec<Future<T>>) -> Future<Vec<T>> {
    let out = Future::new();
    let n = futures.len();
    if n == 0 {
        let _ = out.set_result(Vec::new());
        return out;
    }
    let slots: Rc<RefCell<(Vec<Option<T>>, usize)>> =
        Rc::new(RefCell::new(((0..n).map(|_| None).collect(), 0)));
    for (i, f) in futures.into_iter().enumerate() {
        let slots = slots.clone();
        let out = out.clone();
        f.add_done_callback(move |f| {
            let all = {
                let mut s = slots.borrow_mut();
                s.0[i] = f.take();
                s.1 += 1;
                if s.1 == n {
                    Some(
                        s.0.drain(..)
                            .map(|v| v.expect("each value taken once"))
                            .collect(),
                    )
                } else {
                    None
                }
            };
            if let Some(values) = all {
                let _ = out.set_result(values);
            }
        });
    }
    out
}
