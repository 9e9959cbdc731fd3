//! The cancel exchange and its retry policy, the same for every driver.
//!
//! It owns when a CancelRequest is sent and sent again: at once, then, while the request
//! it was aimed at is still the one running, again after a short wait, a bounded number of
//! times (a backend still reading its next command ignores a cancel, and the query may reach
//! it just after our request did). How the request travels (a socket on the loop, a helper
//! thread) is the driver's; this module never touches a socket.

use std::rc::Rc;
use std::time::Duration;

use super::Driver;
use crate::cancel::TlsCancel;
use crate::error::Error;
use crate::proto::BackendKey;
use crate::session::ops::Done;
use crate::session::transport::Peer;
use crate::session::Core;

/// How many times a cancel is asked again while its request still runs.
const TRIES: u32 = 20;
/// The wait before each new ask.
const AGAIN_AFTER: Duration = Duration::from_millis(50);
/// The bound of one exchange when the connection has no connect_timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and with which key a CancelRequest goes, and how long it may take.
#[derive(Clone)]
pub(crate) struct CancelTarget {
    pub(crate) peer: Peer,
    pub(crate) key: BackendKey,
    /// The connection's TLS session, when it is TLS (as libpq's PQcancelCreate).
    pub(crate) tls: Option<TlsCancel>,
    pub(crate) timeout: Duration,
}

impl<D: Driver> Core<D> {
    /// Asks the server to cancel the request running now; `done` gets whether the server
    /// took the request, from the driver's delivery or loop (an unconnected connection's
    /// failure too, never inside this call).
    pub(crate) fn cancel(self: &Rc<Self>, done: Done<()>) {
        // A closed session keeps its last peer and key, but nothing runs there any more.
        let target = self.with_mut(|s| {
            if s.is_closed() {
                None
            } else {
                s.cancel_target()
            }
        });
        let Some(((peer, key), head, tls)) = target else {
            let e = Error::connection("the connection is not established: nothing to cancel");
            return self.answer_later(done, Err(e));
        };
        // The connection string's connect_timeout too, as libpq's cancel: a cancel that
        // cannot reach the server ends there.
        let timeout = self
            .with(|s| s.connect_timeout())
            .unwrap_or(DEFAULT_TIMEOUT);
        let target = Rc::new(CancelTarget {
            peer,
            key,
            tls,
            timeout,
        });
        ask(self, target, head, TRIES, done);
    }
}

/// Sends the cancel; once answered, asks again after [`AGAIN_AFTER`] if request `head` is
/// still the one running and tries are left.
fn ask<D: Driver>(
    core: &Rc<Core<D>>,
    target: Rc<CancelTarget>,
    head: Option<u64>,
    tries: u32,
    done: Done<()>,
) {
    let weak = Rc::downgrade(core);
    let t = target.clone();
    D::send_cancel(
        core,
        &target,
        Done::new(move |r| {
            if let (Some(head), true, Some(core)) = (head, tries > 0, weak.upgrade()) {
                let weak = Rc::downgrade(&core);
                let again = move || {
                    let Some(core) = weak.upgrade() else { return };
                    if core.with(|s| s.head_sequence()) == Some(head) {
                        ask(&core, t, Some(head), tries - 1, Done::new(|_| {}));
                    }
                };
                D::call_later(&core, AGAIN_AFTER, Box::new(again));
            }
            done.call(r);
        }),
    );
}
