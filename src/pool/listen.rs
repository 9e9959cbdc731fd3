//! The pool's LISTEN connection: one dedicated connection outside `size`, built from the
//! same template as the others, made on first `listen`, reconnected after a loss (spaced by
//! `reconnect_interval`), after which the program is told that notifications were missed.
//! It is never handed out and never counted in the container.

use std::rc::Rc;
use std::time::Duration;

use momoko_loop::Future;

use super::{not_connected, pool_closed, Inner, Pool, PoolPhase};
use crate::connection::Connection;
use crate::error::Error;

impl Pool {
    /// Listens on `channel` on a dedicated connection of the pool (outside `size`). When that
    /// connection is lost, it is reconnected (spaced by `reconnect_interval`) and LISTENs
    /// again; then the callback of [`Pool::on_notifications_missed`] runs, because
    /// notifications sent meanwhile were lost.
    pub fn listen(
        &self,
        channel: &str,
        callback: impl FnMut(&crate::Notification) + 'static,
    ) -> Future<Result<(), Error>> {
        let fut = Future::with_loop(&self.0.ioloop);
        match self.0.state.borrow().phase {
            PoolPhase::New => {
                let _ = fut.set_result(Err(not_connected()));
                return fut;
            }
            PoolPhase::Closed => {
                let _ = fut.set_result(Err(pool_closed()));
                return fut;
            }
            PoolPhase::Open => {}
        }
        let conn = Inner::listener_connection(&self.0);
        let f = fut.clone();
        let channel = channel.to_owned();
        let c = conn.clone();
        Inner::connect_with_password(
            &self.0,
            &conn,
            Box::new(move |r| {
                if let Err(e) = r {
                    let _ = f.set_result(Err(e));
                    return;
                }
                let listened = c.listen(&channel, callback);
                c.ioloop().add_future(&listened, move |l| {
                    let _ = f.set_result(l.take().expect("resolved"));
                });
            }),
        );
        fut
    }

    /// Stops listening on `channel`.
    pub fn unlisten(&self, channel: &str) -> Future<Result<(), Error>> {
        let conn = self.0.state.borrow().listener.clone();
        match conn {
            Some(c) => c.unlisten(channel),
            None => {
                // Bound to the pool's loop, which need not be the thread's current one.
                let fut = Future::with_loop(&self.0.ioloop);
                let _ = fut.set_result(Ok(()));
                fut
            }
        }
    }

    /// Runs `callback` each time the pool's LISTEN connection came back after being lost:
    /// notifications sent while it was away were missed.
    pub fn on_notifications_missed(&self, callback: impl Fn() + 'static) {
        self.0.state.borrow_mut().on_gap = Some(Rc::new(callback));
    }
}

impl Inner {
    /// The dedicated LISTEN connection, made on first use.
    fn listener_connection(this: &Rc<Inner>) -> Connection {
        if let Some(c) = this.state.borrow().listener.clone() {
            return c;
        }
        let conn = this.config.connection(&this.ioloop);
        let weak = Rc::downgrade(this);
        conn.on_close(Rc::new(move |e: &Error| {
            if let Some(inner) = weak.upgrade() {
                log::warn!("pool: the LISTEN connection was lost: {e}");
                Inner::relisten(&inner, Duration::ZERO);
            }
        }));
        this.state.borrow_mut().listener = Some(conn.clone());
        conn
    }

    /// Reconnects the LISTEN connection after `delay`; its channels are LISTENed again by
    /// the connection itself. Failures retry every `reconnect_interval`.
    fn relisten(this: &Rc<Inner>, delay: Duration) {
        let weak = Rc::downgrade(this);
        let timer = this.ioloop.call_later(delay, move || {
            let Some(inner) = weak.upgrade() else { return };
            let conn = {
                let mut st = inner.state.borrow_mut();
                st.listener_timer = None;
                if st.phase != PoolPhase::Open {
                    return;
                }
                st.listener.clone()
            };
            let Some(conn) = conn else { return };
            let weak = Rc::downgrade(&inner);
            Inner::connect_with_password(
                &inner,
                &conn,
                Box::new(move |r| {
                    let Some(inner) = weak.upgrade() else { return };
                    match r {
                        Ok(()) => {
                            let gap = inner.state.borrow().on_gap.clone();
                            if let Some(g) = gap {
                                g();
                            }
                        }
                        Err(e) => {
                            log::debug!("pool: the LISTEN connection could not reconnect: {e}");
                            Inner::relisten(&inner, inner.config.settings.reconnect_interval);
                        }
                    }
                }),
            );
        });
        if let Some(old) = this.state.borrow_mut().listener_timer.replace(timer) {
            this.ioloop.remove_timeout(old);
        }
    }
}
