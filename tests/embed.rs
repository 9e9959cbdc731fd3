//! The embedding API: a connection driven by the test's own `mio::Poll`, no IoLoop.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{dsn, refused_port};
use mio::{Events, Poll, Token};
use momoko::{ErrorKind, MioConnection};

/// Turns the test's loop until `done` holds or 10 s pass.
fn drive(poll: &mut Poll, conn: &mut MioConnection, mut done: impl FnMut(&MioConnection) -> bool) {
    let mut events = Events::with_capacity(16);
    let give_up = Instant::now() + Duration::from_secs(10);
    while !done(conn) {
        assert!(
            Instant::now() < give_up,
            "the embedded connection did not finish"
        );
        let timeout = conn
            .next_deadline()
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(100))
            .min(Duration::from_millis(100));
        poll.poll(&mut events, Some(timeout)).unwrap();
        for e in events.iter() {
            assert_eq!(e.token(), Token(3));
            conn.handle_event(poll.registry(), e);
        }
        conn.handle_timeout(poll.registry(), Instant::now());
        conn.dispatch(poll.registry());
    }
}

#[test]
fn a_connection_on_the_programs_own_poll_runs_pipelined_queries_in_order() {
    let mut poll = Poll::new().unwrap();
    let connected = Rc::new(RefCell::new(None));
    let c = connected.clone();
    let mut conn = MioConnection::connect(&dsn(), move |r| *c.borrow_mut() = Some(r.is_ok()));
    conn.register(poll.registry(), Token(3)).unwrap();
    let got: Rc<RefCell<Vec<i64>>> = Rc::default();
    for i in 0..50i64 {
        let g = got.clone();
        conn.execute("SELECT %s::int8 + 1", (i,), move |r| {
            g.borrow_mut().push(r.unwrap().fetchone().unwrap().get(0))
        });
    }
    drive(&mut poll, &mut conn, |_| got.borrow().len() == 50);
    assert_eq!(*connected.borrow(), Some(true));
    assert_eq!(*got.borrow(), (1..=50).collect::<Vec<i64>>());
    assert_eq!(conn.pending(), 0);
    assert!(conn.is_ready());
    let err: Rc<RefCell<Option<momoko::Error>>> = Rc::default();
    let e = err.clone();
    conn.execute("SELECT 1/0", (), move |r| *e.borrow_mut() = r.err());
    drive(&mut poll, &mut conn, |_| err.borrow().is_some());
    assert_eq!(err.borrow().as_ref().unwrap().code(), Some("22012"));
    conn.close();
    conn.dispatch(poll.registry());
    assert!(conn.is_closed());
}

#[test]
fn a_refused_connect_is_reported_to_on_connect_and_fails_queued_queries() {
    let mut poll = Poll::new().unwrap();
    let connected: Rc<RefCell<Option<momoko::Error>>> = Rc::default();
    let c = connected.clone();
    let dsn = format!("host=127.0.0.1 port={} user=u dbname=d", refused_port());
    let mut conn = MioConnection::connect(&dsn, move |r| *c.borrow_mut() = r.err());
    conn.register(poll.registry(), Token(3)).unwrap();
    let failed = Rc::new(RefCell::new(false));
    let f = failed.clone();
    conn.execute("SELECT 1", (), move |r| *f.borrow_mut() = r.is_err());
    drive(&mut poll, &mut conn, |c| c.is_closed() && *failed.borrow());
    assert_eq!(
        connected.borrow().as_ref().unwrap().kind(),
        ErrorKind::Connection
    );
}
