//! Handler registrations: the readiness type, handler ids and their `mio::Token` encoding,
//! and the per-slot state used while a handler runs.
//!
//! It owns the mapping from a token in a poll event back to the handler registered for it,
//! and the rule that a stale token (its handler removed, its slot perhaps reused) maps to
//! nothing. It must never call a handler: dispatch in `ioloop.rs` takes the callback out of
//! its slot, releases the borrow, calls it, and puts it back.

use crate::arena::Key;

/// The token of the loop's `mio::Waker`; handler tokens can never equal it (see
/// `arena::GEN_LIMIT`).
pub(crate) const WAKER_TOKEN: mio::Token = mio::Token(usize::MAX);

const INDEX_BITS: u32 = usize::BITS / 2;
const INDEX_LIMIT: u64 = 1u64 << INDEX_BITS;

pub(crate) fn encode(key: Key) -> Option<mio::Token> {
    if u64::from(key.index) >= INDEX_LIMIT {
        return None;
    }
    Some(mio::Token(
        (key.index as usize) | ((key.gen as usize) << INDEX_BITS),
    ))
}

pub(crate) fn decode(token: mio::Token) -> Key {
    let mask = (INDEX_LIMIT - 1) as usize;
    Key {
        index: (token.0 & mask) as u32,
        gen: (token.0 >> INDEX_BITS) as u32,
    }
}

/// Readiness reported for a handler's source.
///
/// mio is edge-triggered: a handler is called once per readiness *change*, so it must read
/// (or write) until the call returns `WouldBlock`, or it will not be called again for data
/// that is already waiting. Events can also be spurious, so `WouldBlock` on the first try is
/// normal. `error`, `read_closed` and `write_closed` are hints; the read or write call gives
/// the real outcome, so a handler should attempt the IO rather than trust them.
///
/// ```
/// use momoko_loop::Ready;
/// let r = Ready { readable: true, ..Ready::default() };
/// assert!(r.readable && !r.writable);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ready {
    /// The source may have data to read (or a connection to accept, or EOF).
    pub readable: bool,
    /// The source may accept more data (or a non-blocking connect finished).
    pub writable: bool,
    /// The OS reported an error condition (for sockets, check `take_error()`).
    pub error: bool,
    /// The peer closed its writing half, or the source hung up.
    pub read_closed: bool,
    /// This side can no longer write.
    pub write_closed: bool,
}

impl From<&mio::event::Event> for Ready {
    /// For programs that run their own `mio::Poll` and forward events to code written
    /// against handlers.
    fn from(event: &mio::event::Event) -> Ready {
        Ready {
            readable: event.is_readable(),
            writable: event.is_writable(),
            error: event.is_error(),
            read_closed: event.is_read_closed(),
            write_closed: event.is_write_closed(),
        }
    }
}

/// Identifies a handler added with [`IoLoop::add_handler`](crate::IoLoop::add_handler).
///
/// Generational: once the handler is removed, the id is stale for good, even after its slot
/// is reused by a new handler, and every method given a stale id (or one from another loop)
/// does nothing or returns an error, never panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HandlerId {
    pub(crate) loop_id: u32,
    pub(crate) key: Key,
}

pub(crate) type HandlerCallback = Box<dyn FnMut(Ready)>;

/// One registered handler's callback.
///
/// ```text
///   add_handler        event dispatched: callback taken out
///  ───────────▶ Idle ─────────────────────────────────────▶ Running
///                ▲                                            │
///                └────────────────────────────────────────────┘
///                     callback returned (or panicked) and the
///                     slot still holds this registration
///
///   remove_handler / forget_handler, from either state: slot freed, generation bumped;
///   a callback that returns to a freed slot is dropped instead of put back.
/// ```
pub(crate) enum HandlerSlot {
    Idle(HandlerCallback),
    Running,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_never_hit_the_waker_token() {
        for (index, gen) in [(0, 0), (1, 7), (12345, 0), (0, 99), (u16::MAX as u32, 3)] {
            let key = Key { index, gen };
            let token = encode(key).unwrap();
            assert_ne!(token, WAKER_TOKEN);
            assert_eq!(decode(token), key);
        }
    }
}
