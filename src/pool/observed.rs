//! The pool's part of observing momoko: an acquisition followed by its span and the
//! observer's `pool_acquire`, a release told as `pool_release`. The observer is always told
//! from the loop's next turn, with no borrow of the pool held; nothing here changes what the
//! pool decides.

use super::*;

impl Inner {
    /// [`Inner::acquire`] for a caller's request, followed when something observes it: the
    /// acquisition's span, whether it made the pool open a connection, the observer's
    /// `pool_acquire` (from the loop), and `cb` run inside the caller's span.
    pub(super) fn acquire_observed(this: &Rc<Inner>, req: Acquisition, cb: Done<Connection>) {
        let observing = &this.config.settings.observing;
        let Some(track) = AcquireTrack::start(observing, this.ioloop.time()) else {
            return Inner::acquire(this, req, cb);
        };
        let weak = Rc::downgrade(this);
        let t = track.clone();
        let cb: Done<Connection> = Done::new(move |r| {
            if let Some(inner) = weak.upgrade() {
                let (wait, created) = t.end(inner.ioloop.time(), r.as_ref().err());
                Inner::tell_acquire(&inner, wait, created, r.as_ref().err());
            }
            t.context.in_scope(|| cb.call(r))
        });
        let outer = this.state.borrow_mut().acquiring.replace(track);
        Inner::acquire(this, req, cb);
        this.state.borrow_mut().acquiring = outer;
    }

    /// The observer's `pool_acquire`, from the loop's next turn.
    fn tell_acquire(this: &Rc<Inner>, wait: Duration, created: bool, error: Option<&Error>) {
        let Some(observer) = this.config.settings.observing.observer.clone() else {
            return;
        };
        let weak = Rc::downgrade(this);
        let error = error.cloned();
        this.ioloop.add_callback(move || {
            if let Some(inner) = weak.upgrade() {
                observer.pool_acquire(&PoolAcquire {
                    pool: inner.config.settings.observing.name.to_string(),
                    wait,
                    created,
                    error,
                    stats: Pool(inner).stats(),
                });
            }
        });
    }

    /// The observer's `pool_release`, from the loop's next turn.
    pub(super) fn tell_release(this: &Rc<Inner>, use_time: Duration) {
        let Some(observer) = this.config.settings.observing.observer.clone() else {
            return;
        };
        let weak = Rc::downgrade(this);
        this.ioloop.add_callback(move || {
            if let Some(inner) = weak.upgrade() {
                observer.pool_release(&PoolRelease {
                    pool: inner.config.settings.observing.name.to_string(),
                    use_time,
                    stats: Pool(inner).stats(),
                });
            }
        });
    }
}
