//! momoko-loop: a Tornado-like single-threaded IoLoop on mio. It knows nothing of PostgreSQL.
//!
//! This crate root only declares the modules and re-exports the public surface. The loop
//! owns IO handlers on mio sources, callbacks, timeouts, one-shot [`Future`]s, spawned
//! `async` tasks and [`PeriodicCallback`]s, all run on one thread; a [`LoopHandle`] is the
//! only way in from other threads.
//!
//! # The guarantees users build on
//!
//! * **Nothing runs inline.** [`IoLoop::add_callback`], [`Future::set_result`],
//!   [`Future::add_done_callback`], [`IoLoop::add_future`] and [`IoLoop::spawn`] only
//!   schedule; the code they schedule runs from the loop's iteration, so completing a
//!   future never re-enters the code that completed it.
//! * **Everything is re-entrant.** Any callback may call any method of the loop (except
//!   `start`/`turn`/`run_sync` of the same loop), including removing the handler that is
//!   running.
//! * **Snapshots per iteration.** Callbacks added while callbacks run wait for the next
//!   iteration; timeouts due in an iteration are collected before any of them runs, so one
//!   removed by another of the same batch does not run, and one added by another waits.
//! * **Generational ids.** A removed handler's or fired timeout's id is stale for good:
//!   using it is harmless, and a reused handler slot never gets an event meant for the old
//!   handler.
//! * **Edge-triggered IO.** Handlers must read or write until `WouldBlock` (see [`Ready`]).
//! * **Nestable.** A program with a poll of its own drives the loop without `start`: the
//!   loop's descriptor (`AsRawFd`), [`IoLoop::next_timeout`] and [`IoLoop::turn`] (see
//!   [Nesting](IoLoop#nesting-in-another-event-loop)).
//!
//! ```
//! use momoko_loop::{Future, IoLoop};
//! use std::time::Duration;
//!
//! let ioloop = IoLoop::new();
//! let answer: Future<&str> = Future::with_loop(&ioloop);
//! let setter = answer.clone();
//! ioloop.call_later(Duration::from_millis(1), move || {
//!     setter.set_result("pong").unwrap();
//! });
//! let reply = ioloop.run_sync(async move { answer.await });
//! assert_eq!(reply, "pong");
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod arena;
mod combinators;
mod future;
mod handlers;
mod ioloop;
mod periodic;
mod remote;
mod tasks;
mod timers;

pub use combinators::{gather, sleep};
pub use future::Future;
pub use handlers::{HandlerId, Ready};
pub use ioloop::{IoLoop, TimedOut, TimeoutId, WeakIoLoop};
pub use periodic::PeriodicCallback;
pub use remote::LoopHandle;
