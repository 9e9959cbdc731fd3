//! IO handlers on real sockets: edge-triggered draining, re-entrant add/remove from inside
//! handlers (Tornado's test_remove_handler_from_handler), stale ids.

mod common;

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::time::Duration;

use common::{tcp_pair, watchdog};
use mio::net::{TcpListener, TcpStream};
use mio::Interest;
use momoko_loop::{HandlerId, IoLoop, Ready};

const MEGABYTE: usize = 1 << 20;

fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// Reads everything available into `into`; Ok(true) on EOF.
fn drain(stream: &mut TcpStream, into: &mut Vec<u8>) -> io::Result<bool> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(true),
            Ok(n) => into.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

#[test]
fn a_megabyte_crosses_a_tcp_connection_exactly_with_handlers_draining_until_would_block() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let listener_id = Rc::new(Cell::new(None::<HandlerId>));
    let received = Rc::new(RefCell::new(Vec::new()));
    let reads = Rc::new(Cell::new(0u32));

    // Server: accept until WouldBlock, then read each connection until WouldBlock / EOF.
    let listener_rc = Rc::new(RefCell::new(listener));
    let id = {
        let (l, lst, received, reads, listener_id) = (
            ioloop.clone(),
            listener_rc.clone(),
            received.clone(),
            reads.clone(),
            listener_id.clone(),
        );
        ioloop
            .add_handler(
                &mut *listener_rc.borrow_mut(),
                Interest::READABLE,
                move |_| loop {
                    let accepted = lst.borrow().accept();
                    match accepted {
                        Ok((stream, _)) => {
                            let stream = Rc::new(RefCell::new(stream));
                            let (l2, received, reads) =
                                (l.clone(), received.clone(), reads.clone());
                            let s2 = stream.clone();
                            let conn_id = Rc::new(Cell::new(None::<HandlerId>));
                            let cid = conn_id.clone();
                            let id = l
                                .add_handler(
                                    &mut *stream.borrow_mut(),
                                    Interest::READABLE,
                                    move |_| {
                                        reads.set(reads.get() + 1);
                                        let eof =
                                            drain(&mut s2.borrow_mut(), &mut received.borrow_mut())
                                                .unwrap();
                                        if eof {
                                            l2.remove_handler(
                                                cid.get().unwrap(),
                                                &mut *s2.borrow_mut(),
                                            );
                                            l2.stop();
                                        }
                                    },
                                )
                                .unwrap();
                            conn_id.set(Some(id));
                            // One connection expected: stop accepting.
                            l.remove_handler(listener_id.get().unwrap(), &mut *lst.borrow_mut());
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => panic!("accept: {e}"),
                    }
                },
            )
            .unwrap()
    };
    listener_id.set(Some(id));

    // Client: write until WouldBlock on each writable event, then shut down.
    let client = Rc::new(RefCell::new(TcpStream::connect(addr).unwrap()));
    let sent = Rc::new(Cell::new(0usize));
    let data: Rc<Vec<u8>> = Rc::new((0..MEGABYTE).map(pattern).collect());
    let client_id = Rc::new(Cell::new(None::<HandlerId>));
    let id = {
        let (l, c, sent, data, cid) = (
            ioloop.clone(),
            client.clone(),
            sent.clone(),
            data.clone(),
            client_id.clone(),
        );
        ioloop
            .add_handler(
                &mut *client.borrow_mut(),
                Interest::WRITABLE,
                move |ready: Ready| {
                    if !ready.writable {
                        return;
                    }
                    let mut c = c.borrow_mut();
                    while sent.get() < data.len() {
                        match c.write(&data[sent.get()..]) {
                            Ok(n) => sent.set(sent.get() + n),
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                            // Not yet connected: wait for the next writable event.
                            Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => panic!("write: {e}"),
                        }
                    }
                    c.shutdown(std::net::Shutdown::Write).unwrap();
                    l.remove_handler(cid.get().unwrap(), &mut *c);
                },
            )
            .unwrap()
    };
    client_id.set(Some(id));

    ioloop.start();
    let received = received.borrow();
    assert_eq!(sent.get(), MEGABYTE);
    assert_eq!(received.len(), MEGABYTE);
    assert!(received.iter().enumerate().all(|(i, &b)| b == pattern(i)));
    assert!(reads.get() >= 1);
}

#[test]
fn a_handler_removing_itself_is_not_called_again() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let (mut client, server) = tcp_pair();
    let server = Rc::new(RefCell::new(server));
    let calls = Rc::new(Cell::new(0));
    let own_id = Rc::new(Cell::new(None::<HandlerId>));
    let id = {
        let (l, s, calls, own_id) = (
            ioloop.clone(),
            server.clone(),
            calls.clone(),
            own_id.clone(),
        );
        ioloop
            .add_handler(&mut *server.borrow_mut(), Interest::READABLE, move |_| {
                calls.set(calls.get() + 1);
                let mut sink = Vec::new();
                drain(&mut s.borrow_mut(), &mut sink).unwrap();
                l.remove_handler(own_id.get().unwrap(), &mut *s.borrow_mut());
                // Removing again from inside is harmless too.
                l.remove_handler(own_id.get().unwrap(), &mut *s.borrow_mut());
            })
            .unwrap()
    };
    own_id.set(Some(id));
    client.write_all(b"first").unwrap();
    let (l, c) = (ioloop.clone(), Rc::new(RefCell::new(client)));
    ioloop.call_later(Duration::from_millis(30), move || {
        c.borrow_mut().write_all(b"second").unwrap();
        let l2 = l.clone();
        l.call_later(Duration::from_millis(30), move || l2.stop());
    });
    ioloop.start();
    assert_eq!(calls.get(), 1);
}

#[test]
fn a_handler_removing_another_whose_event_is_pending_in_the_same_batch_stops_that_event() {
    // Tornado's test_remove_handler_from_handler: both sockets are readable in the same
    // poll; whichever handler runs first removes the other; only one runs.
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let (mut c1, s1) = tcp_pair();
    let (mut c2, s2) = tcp_pair();
    c1.write_all(b"x").unwrap();
    c2.write_all(b"y").unwrap();
    std::thread::sleep(Duration::from_millis(20)); // both readable before the first poll
    let socks = [Rc::new(RefCell::new(s1)), Rc::new(RefCell::new(s2))];
    let ids: Rc<RefCell<Vec<HandlerId>>> = Rc::new(RefCell::new(Vec::new()));
    let calls = Rc::new(RefCell::new(Vec::new()));
    for me in 0..2 {
        let other = 1 - me;
        let (l, socks2, ids2, calls2) = (ioloop.clone(), socks.clone(), ids.clone(), calls.clone());
        let id = ioloop
            .add_handler(
                &mut *socks[me].borrow_mut(),
                Interest::READABLE,
                move |_| {
                    calls2.borrow_mut().push(me);
                    let other_id = ids2.borrow()[other];
                    l.remove_handler(other_id, &mut *socks2[other].borrow_mut());
                    let l2 = l.clone();
                    l.call_later(Duration::from_millis(20), move || l2.stop());
                },
            )
            .unwrap();
        ids.borrow_mut().push(id);
    }
    ioloop.start();
    assert_eq!(calls.borrow().len(), 1, "calls: {:?}", calls.borrow());
}

#[test]
fn update_handler_switches_interest_and_fails_on_a_stale_id() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let (client, _server) = tcp_pair();
    let client = Rc::new(RefCell::new(client));
    let seen = Rc::new(RefCell::new(Vec::new()));
    let id = {
        let (l, seen) = (ioloop.clone(), seen.clone());
        ioloop
            .add_handler(
                &mut *client.borrow_mut(),
                Interest::READABLE,
                move |ready| {
                    seen.borrow_mut().push(ready.writable);
                    l.stop();
                },
            )
            .unwrap()
    };
    // Nothing to read: only switching to WRITABLE produces an event.
    ioloop
        .update_handler(id, &mut *client.borrow_mut(), Interest::WRITABLE)
        .unwrap();
    ioloop.start();
    assert_eq!(*seen.borrow(), [true]);

    ioloop.remove_handler(id, &mut *client.borrow_mut());
    let err = ioloop
        .update_handler(id, &mut *client.borrow_mut(), Interest::READABLE)
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    // Removing or forgetting a stale id is harmless.
    ioloop.remove_handler(id, &mut *client.borrow_mut());
    ioloop.forget_handler(id);
}

#[test]
fn update_handler_from_inside_its_own_callback() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let (client, mut server) = tcp_pair();
    let client = Rc::new(RefCell::new(client));
    let seen = Rc::new(RefCell::new(Vec::new()));
    let own = Rc::new(Cell::new(None::<HandlerId>));
    let id = {
        let (l, c, seen, own) = (ioloop.clone(), client.clone(), seen.clone(), own.clone());
        ioloop
            .add_handler(
                &mut *client.borrow_mut(),
                Interest::WRITABLE,
                move |ready| {
                    seen.borrow_mut().push((ready.readable, ready.writable));
                    if seen.borrow().len() == 1 {
                        l.update_handler(
                            own.get().unwrap(),
                            &mut *c.borrow_mut(),
                            Interest::READABLE,
                        )
                        .unwrap();
                    } else {
                        l.stop();
                    }
                },
            )
            .unwrap()
    };
    own.set(Some(id));
    let l = ioloop.clone();
    ioloop.call_later(Duration::from_millis(20), move || {
        server.write_all(b"ping").unwrap();
        // keep `server` alive until the event arrives
        l.call_later(Duration::from_secs(1), move || drop(server));
    });
    ioloop.start();
    let seen = seen.borrow();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].1);
    assert!(seen[1].0);
}

#[test]
fn add_handler_twice_for_one_source_fails_and_leaves_no_slot_behind() {
    let ioloop = IoLoop::new();
    let (mut client, _server) = tcp_pair();
    let id = ioloop
        .add_handler(&mut client, Interest::READABLE, |_| {})
        .unwrap();
    let err = ioloop.add_handler(&mut client, Interest::READABLE, |_| {});
    assert!(err.is_err());
    assert!(format!("{ioloop:?}").contains("handlers: Some(1)"));
    ioloop.remove_handler(id, &mut client);
    assert!(format!("{ioloop:?}").contains("handlers: Some(0)"));
}

#[test]
fn forget_handler_drops_the_callback_and_ignores_later_events() {
    let ioloop = IoLoop::new();
    watchdog(&ioloop);
    let (mut client, mut server) = tcp_pair();
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    let id = ioloop
        .add_handler(&mut server, Interest::READABLE, move |_| c.set(c.get() + 1))
        .unwrap();
    ioloop.forget_handler(id);
    client.write_all(b"data").unwrap();
    let l = ioloop.clone();
    ioloop.call_later(Duration::from_millis(30), move || l.stop());
    ioloop.start();
    assert_eq!(calls.get(), 0);
    assert_eq!(Rc::strong_count(&calls), 1, "the callback was not dropped");
    drop(server);
}

#[test]
fn a_panicking_handler_propagates_and_stays_registered() {
    let ioloop = IoLoop::new();
    let (mut client, server) = tcp_pair();
    let server = Rc::new(RefCell::new(server));
    let calls = Rc::new(Cell::new(0));
    let (c, s, l) = (calls.clone(), server.clone(), ioloop.clone());
    ioloop
        .add_handler(&mut *server.borrow_mut(), Interest::READABLE, move |_| {
            c.set(c.get() + 1);
            let mut got = Vec::new();
            drain(&mut s.borrow_mut(), &mut got).unwrap();
            if c.get() == 1 {
                panic!("handler panics");
            }
            l.stop();
        })
        .unwrap();
    client.write_all(b"1").unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ioloop.start()));
    assert!(result.is_err());
    assert!(!ioloop.is_running());
    client.write_all(b"2").unwrap();
    watchdog(&ioloop);
    ioloop.start();
    assert_eq!(calls.get(), 2);
}

#[test]
fn ready_converts_from_a_mio_event() {
    let mut poll = mio::Poll::new().unwrap();
    let mut events = mio::Events::with_capacity(8);
    let (mut client, _server) = tcp_pair();
    poll.registry()
        .register(&mut client, mio::Token(1), Interest::WRITABLE)
        .unwrap();
    poll.poll(&mut events, Some(Duration::from_secs(5)))
        .unwrap();
    let event = events.iter().next().expect("a writable event");
    let ready = Ready::from(event);
    assert!(ready.writable);
    assert!(!ready.readable);
}
