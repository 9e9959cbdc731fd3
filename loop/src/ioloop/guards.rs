//! The drop guards of one loop iteration: each puts the loop's tables back in order when the
//! user code it surrounds returns or panics (a handler's callback back in its slot, a task
//! back in its table, the rest of a timeout batch kept, the running flags and the current
//! loop restored). They never run user code themselves, except dropping what was removed.

use super::*;

/// Puts a handler's callback back after it ran, or after it panicked, so a panic leaves
/// the table consistent; drops it instead if the handler was removed meanwhile.
pub(super) struct HandlerGuard<'a> {
    pub(super) inner: &'a Inner,
    pub(super) key: Key,
    pub(super) callback: Option<HandlerCallback>,
}

impl Drop for HandlerGuard<'_> {
    fn drop(&mut self) {
        let Some(callback) = self.callback.take() else {
            return;
        };
        let leftover = match self.inner.handlers.try_borrow_mut() {
            Ok(mut handlers) => match handlers.get_mut(self.key) {
                Some(slot) if matches!(slot, HandlerSlot::Running) => {
                    *slot = HandlerSlot::Idle(callback);
                    None
                }
                _ => Some(callback),
            },
            Err(_) => Some(callback),
        };
        drop(leftover);
    }
}

/// Frees the slot of a task whose poll panicked: a future that panicked must not be polled
/// again, and a freed slot makes its wakers harmless.
pub(super) struct TaskGuard<'a> {
    pub(super) inner: &'a Inner,
    pub(super) key: Key,
    pub(super) future: Option<BoxedTask>,
}

impl Drop for TaskGuard<'_> {
    fn drop(&mut self) {
        if self.future.is_some() {
            if let Ok(mut tasks) = self.inner.tasks.try_borrow_mut() {
                tasks.remove(self.key);
            }
        }
    }
}

/// The timeouts collected at the start of an iteration. If anything in the iteration
/// panics, the ones not yet run go back into the timer queue.
pub(super) struct DueBatch<'a> {
    pub(super) inner: &'a Inner,
    pub(super) due: Vec<Scheduled>,
    pub(super) next: usize,
}

impl DueBatch<'_> {
    pub(super) fn run(&mut self) {
        while let Some(&scheduled) = self.due.get(self.next) {
            self.next += 1;
            let callback = self.inner.timers.borrow_mut().take_due(scheduled);
            // None: removed by an earlier callback or timeout of this iteration.
            if let Some(callback) = callback {
                callback();
            }
        }
    }
}

impl Drop for DueBatch<'_> {
    fn drop(&mut self) {
        if self.next < self.due.len() {
            if let Ok(mut timers) = self.inner.timers.try_borrow_mut() {
                for scheduled in &self.due[self.next..] {
                    timers.restore(*scheduled);
                }
            }
        }
    }
}

/// Marks the loop active, running and current for the duration of `start()`, `turn()` or
/// `run_sync`, and undoes all three however it ends, panics included. A `stop()` made during the run is
/// consumed here.
pub(super) struct RunGuard<'a> {
    pub(super) inner: &'a Inner,
    pub(super) previous: Option<Option<IoLoop>>,
}

impl<'a> RunGuard<'a> {
    pub(super) fn enter(ioloop: &'a IoLoop) -> RunGuard<'a> {
        ioloop.0.active.set(true);
        ioloop.0.running.set(true);
        let previous = CURRENT
            .try_with(|current| current.replace(Some(ioloop.clone())))
            .ok();
        RunGuard {
            inner: &ioloop.0,
            previous,
        }
    }
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        self.inner.active.set(false);
        self.inner.running.set(false);
        self.inner.stopped.set(false);
        if let Some(previous) = self.previous.take() {
            let mine = CURRENT.try_with(|current| current.replace(previous));
            drop(mine);
        }
    }
}
