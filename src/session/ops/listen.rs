//! LISTEN and UNLISTEN: a callback per channel, kept by the session across reconnects.
//!
//! It owns the order of the two steps: the listener is in place before the LISTEN is sent
//! (a notification may follow its answer at once), and removed again if the LISTEN fails.

use std::cell::RefCell;
use std::rc::Rc;

use super::{quote_ident, Done};
use crate::proto::Request;
use crate::session::{Core, Drive, Listener, Notification};

/// Listens on `channel`; `callback` runs for every notification on it.
pub(crate) fn listen<D: Drive>(
    core: &Rc<Core<D>>,
    channel: &str,
    callback: impl FnMut(&Notification) + 'static,
    done: Done<()>,
) {
    let listener: Listener = Rc::new(RefCell::new(callback));
    core.with_mut(|s| s.set_listener(channel, Some(listener)));
    let c = core.clone();
    let ch = channel.to_owned();
    core.request(
        Request::Simple {
            query: format!("LISTEN {}", quote_ident(channel)),
        },
        Box::new(move |r| {
            if r.is_err() {
                c.with_mut(|s| s.set_listener(&ch, None));
            }
            done.call(r.map(drop))
        }),
    );
}

/// Stops listening on `channel`.
pub(crate) fn unlisten<D: Drive>(core: &Rc<Core<D>>, channel: &str, done: Done<()>) {
    core.with_mut(|s| s.set_listener(channel, None));
    core.request(
        Request::Simple {
            query: format!("UNLISTEN {}", quote_ident(channel)),
        },
        Box::new(move |r| done.call(r.map(drop))),
    );
}
