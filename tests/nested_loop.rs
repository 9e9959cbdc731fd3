//! A `Pool` on an `IoLoop` nested in a program's own `mio::Poll`, against the real server:
//! the only things that drive it are the program's poll (with the loop's descriptor
//! registered through `SourceFd`, waiting at most `next_timeout`) and
//! `turn(Some(Duration::ZERO))`. `IoLoop::start` and `run_sync` are never called.
//!
//! Every wait is bounded by a 30 s deadline, so a lost wake-up fails instead of hanging.

mod common;

use std::cell::{Cell, RefCell};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use momoko::ioloop::IoLoop;
use momoko::{Error, Notification, Pool};

const INNER: Token = Token(0);

/// One query's row: `i`, `i * i` and `'q' || i`.
type Answer = (i32, i64, String);
const LIMIT: Duration = Duration::from_secs(30);

/// The program's own event loop with momoko's nested in it.
struct Nest {
    poll: Poll,
    events: Events,
    inner: IoLoop,
    deadline: Instant,
    turns: u64,
}

impl Nest {
    fn new() -> Nest {
        let inner = IoLoop::try_new().unwrap();
        let poll = Poll::new().unwrap();
        poll.registry()
            .register(&mut SourceFd(&inner.as_raw_fd()), INNER, Interest::READABLE)
            .unwrap();
        Nest {
            poll,
            events: Events::with_capacity(16),
            inner,
            deadline: Instant::now() + LIMIT,
            turns: 0,
        }
    }

    /// Polls and turns until `done()`; fails the test past the deadline.
    fn run_until(&mut self, what: &str, done: impl Fn() -> bool) {
        while !done() {
            let left = self.deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{what}: not done within {LIMIT:?}");
            let wait = self.inner.next_timeout().map_or(left, |t| t.min(left));
            self.poll.poll(&mut self.events, Some(wait)).unwrap();
            for event in self.events.iter() {
                assert_eq!(event.token(), INNER, "the only source of this poll");
            }
            self.inner.turn(Some(Duration::ZERO)).unwrap();
            self.turns += 1;
            assert!(!self.inner.is_running());
        }
    }

    /// A connected pool of `size` on the nested loop.
    fn pool(&mut self, size: usize) -> Pool {
        let pool = Pool::builder(&common::dsn())
            .ioloop(&self.inner)
            .size(size)
            .build()
            .unwrap();
        let connecting = pool.connect();
        self.run_until("connect", || connecting.done());
        connecting.take().unwrap().unwrap();
        pool
    }
}

#[test]
fn a_pool_driven_only_by_an_outer_poll_answers_500_queries_exactly() {
    let mut nest = Nest::new();
    let pool = nest.pool(2);
    // All queued at once, far more than the pool's two connections: 498 wait their turn.
    // Even ones are read through a kept future; odd ones only through a done-callback, with
    // no handle kept (the Tornado style).
    let answers: Rc<RefCell<Vec<Option<Answer>>>> = Rc::new(RefCell::new(vec![None; 500]));
    let delivered = Rc::new(Cell::new(0usize));
    let mut kept = Vec::new();
    for i in 0..500i32 {
        let query = pool.execute(
            "SELECT %s::int AS i, %s::int8 * %s::int8 AS square, 'q' || %s::text AS tag",
            (i, i, i, i),
        );
        let (answers, delivered) = (answers.clone(), delivered.clone());
        let read = move |result: Result<momoko::Cursor, Error>| {
            let mut cursor = result.unwrap_or_else(|e| panic!("query {i}: {e}"));
            assert_eq!(cursor.rowcount(), 1, "query {i}");
            let row = cursor.fetchone().expect("one row");
            let slot = &mut answers.borrow_mut()[i as usize];
            assert!(slot.is_none(), "query {i} answered twice");
            *slot = Some((row.get("i"), row.get("square"), row.get("tag")));
            delivered.set(delivered.get() + 1);
        };
        if i % 2 == 0 {
            kept.push((query, read));
        } else {
            nest.inner
                .add_future(&query, move |f| read(f.take().expect("done")));
        }
    }
    nest.run_until("500 queries", || {
        delivered.get() == 250 && kept.iter().all(|(f, _)| f.done())
    });
    for (query, read) in kept {
        read(query.take().expect("done"));
    }
    let answers = answers.borrow();
    for (i, answer) in answers.iter().enumerate() {
        let i = i as i32;
        assert_eq!(
            answer.as_ref(),
            Some(&(i, i64::from(i) * i64::from(i), format!("q{i}"))),
            "query {i}"
        );
    }
    assert_eq!(delivered.get(), 500);
    assert!(
        nest.turns < 50_000,
        "{} turns for 500 queries: the program spun",
        nest.turns
    );
    pool.close().unwrap();
}

#[test]
fn a_pool_driven_only_by_an_outer_poll_receives_a_listen_notification() {
    let mut nest = Nest::new();
    let pool = nest.pool(1);
    let channel = common::unique("nested");
    let heard: Rc<RefCell<Vec<(String, String)>>> = Rc::default();
    let h = heard.clone();
    let listening = pool.listen(&channel, move |n: &Notification| {
        h.borrow_mut()
            .push((n.channel().to_owned(), n.payload().to_owned()));
    });
    nest.run_until("LISTEN", || listening.done());
    listening.take().unwrap().unwrap();

    let notifying = pool.execute(
        "SELECT pg_notify(%s, %s)",
        (channel.as_str(), "from the outer poll"),
    );
    nest.run_until("the notification", || {
        notifying.done() && !heard.borrow().is_empty()
    });
    notifying.take().unwrap().unwrap();
    // A little longer, on a timer of the nested loop: exactly one arrives.
    let settled = Rc::new(Cell::new(false));
    let s = settled.clone();
    nest.inner
        .call_later(Duration::from_millis(100), move || s.set(true));
    nest.run_until("settling", || settled.get());
    assert_eq!(
        *heard.borrow(),
        [(channel.clone(), "from the outer poll".to_owned())]
    );
    pool.close().unwrap();
}

#[test]
fn a_pools_immediate_answers_belong_to_its_own_loop_not_the_threads_current_one() {
    let inner = IoLoop::try_new().unwrap();
    assert!(!inner.ptr_eq(&IoLoop::current()));
    let pool = Pool::builder(&common::dsn())
        .ioloop(&inner)
        .build()
        .unwrap();
    // No listener: answered at once, and the answer must reach callbacks on `inner`.
    let f = pool.unlisten("nobody_listens_here");
    let hit = Rc::new(Cell::new(false));
    let h = hit.clone();
    inner.add_future(&f, move |f| {
        assert_eq!(f.take().map(|r| r.is_ok()), Some(true));
        h.set(true);
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while !hit.get() {
        assert!(
            Instant::now() < deadline,
            "the answer never reached the pool's loop"
        );
        inner.turn(Some(Duration::from_millis(10))).unwrap();
    }
    pool.close().unwrap();
}
