//! The embedding API: a connection driven by the test's own `mio::Poll`, no IoLoop.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{dsn, refused_port};
use mio::{Events, Poll, Token};
use momoko::{ErrorKind, MioConnection};

/// Turns the test's loop until `done` holds or 10 s pass.
fn drive(poll: &mut Poll, conn: &MioConnection, mut done: impl FnMut(&MioConnection) -> bool) {
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
    let conn = MioConnection::connect(&dsn(), move |r| *c.borrow_mut() = Some(r.is_ok()));
    conn.register(poll.registry(), Token(3)).unwrap();
    let got: Rc<RefCell<Vec<i64>>> = Rc::default();
    for i in 0..50i64 {
        let g = got.clone();
        conn.execute("SELECT %s::int8 + 1", (i,), move |r| {
            g.borrow_mut().push(r.unwrap().fetchone().unwrap().get(0))
        });
    }
    drive(&mut poll, &conn, |_| got.borrow().len() == 50);
    assert_eq!(*connected.borrow(), Some(true));
    assert_eq!(*got.borrow(), (1..=50).collect::<Vec<i64>>());
    assert_eq!(conn.pending(), 0);
    assert!(conn.is_ready());
    let err: Rc<RefCell<Option<momoko::Error>>> = Rc::default();
    let e = err.clone();
    conn.execute("SELECT 1/0", (), move |r| *e.borrow_mut() = r.err());
    drive(&mut poll, &conn, |_| err.borrow().is_some());
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
    let conn = MioConnection::connect(&dsn, move |r| *c.borrow_mut() = r.err());
    conn.register(poll.registry(), Token(3)).unwrap();
    let failed = Rc::new(RefCell::new(false));
    let f = failed.clone();
    conn.execute("SELECT 1", (), move |r| *f.borrow_mut() = r.is_err());
    drive(&mut poll, &conn, |c| c.is_closed() && *failed.borrow());
    assert_eq!(
        connected.borrow().as_ref().unwrap().kind(),
        ErrorKind::Connection
    );
}

/// Connects a MioConnection on `poll` and waits until it is ready.
fn ready_connection(poll: &mut Poll) -> MioConnection {
    let conn = MioConnection::connect(&dsn(), |r| r.unwrap());
    conn.register(poll.registry(), Token(3)).unwrap();
    drive(poll, &conn, |c| c.is_ready());
    conn
}

#[test]
fn every_operation_runs_on_the_programs_own_poll_with_follow_ups_from_callbacks() {
    let mut poll = Poll::new().unwrap();
    let conn = ready_connection(&mut poll);
    let log: Rc<RefCell<Vec<String>>> = Rc::default();
    let push = {
        let log = log.clone();
        move |s: String| log.borrow_mut().push(s)
    };
    let table = format!("mio_ops_{}", std::process::id());
    let (c, p, t) = (conn.clone(), push.clone(), table.clone());
    // Each step is issued from the callback of the one before: the connection is not
    // borrowed while callbacks run.
    conn.execute(
        &format!("CREATE TEMP TABLE {table} (n int, s text)"),
        (),
        move |r| {
            r.unwrap();
            p("create".into());
            let (c2, p2, t2) = (c.clone(), p.clone(), t.clone());
            c.transaction(
                vec![
                    momoko::Statement::from((format!("INSERT INTO {t} VALUES (%s, %s)"), (1, "a"))),
                    momoko::Statement::from((format!("INSERT INTO {t} VALUES (%s, %s)"), (2, "b"))),
                ],
                move |r| {
                    assert_eq!(r.unwrap().len(), 2);
                    p2("transaction".into());
                    let (c3, p3, t3) = (c2.clone(), p2.clone(), t2.clone());
                    c2.batch(vec![format!("SELECT count(*) FROM {t2}"), "SELECT 2".to_owned()], move |r| {
                        let mut cs = r.unwrap();
                        assert_eq!(cs[0].fetchone().unwrap().get::<_, i64>(0), 2);
                        p3("batch".into());
                        let (c4, p4, t4) = (c3.clone(), p3.clone(), t3.clone());
                        c3.prepare(&format!("SELECT s FROM {t3} WHERE n = $1"), move |r| {
                            let st = r.unwrap();
                            p4("prepare".into());
                            let (c5, p5, t5) = (c4.clone(), p4.clone(), t4.clone());
                            let st2 = st.clone();
                            c4.execute_prepared(&st, (2,), move |r| {
                                assert_eq!(r.unwrap().fetchone().unwrap().get::<_, String>(0), "b");
                                p5("execute_prepared".into());
                                let (c6, p6, t6) = (c5.clone(), p5.clone(), t5.clone());
                                c5.close_prepared(&st2, move |r| {
                                    r.unwrap();
                                    p6("close_prepared".into());
                                    let (c7, p7, t7) = (c6.clone(), p6.clone(), t6.clone());
                                    c6.query("SELECT $1::int + 1", (41,), move |r| {
                                        assert_eq!(r.unwrap().fetchone().unwrap().get::<_, i32>(0), 42);
                                        p7("query".into());
                                        let (c8, p8, t8) = (c7.clone(), p7.clone(), t7.clone());
                                        c7.copy_in(
                                            &format!("COPY {t7} (n, s) FROM STDIN"),
                                            &b"3\tc\n4\td\n"[..],
                                            move |r| {
                                                assert_eq!(r.unwrap(), 2);
                                                p8("copy_in".into());
                                                let out: Rc<RefCell<Vec<u8>>> = Rc::default();
                                                let o = out.clone();
                                                let (c9, p9) = (c8.clone(), p8.clone());
                                                c8.copy_out(
                                                    &format!("COPY (SELECT n FROM {t8} ORDER BY n) TO STDOUT"),
                                                    move |d| o.borrow_mut().extend_from_slice(d),
                                                    move |r| {
                                                        assert_eq!(r.unwrap(), 4);
                                                        assert_eq!(&*out.borrow(), b"1\n2\n3\n4\n");
                                                        p9("copy_out".into());
                                                        let (c10, p10) = (c9.clone(), p9.clone());
                                                        c9.callproc("abs", (-5,), move |r| {
                                                            assert_eq!(r.unwrap().fetchone().unwrap().get::<_, i32>(0), 5);
                                                            p10("callproc".into());
                                                            c10.register_json({
                                                                let p = p10.clone();
                                                                move |r| {
                                                                    r.unwrap();
                                                                    p("register_json".into());
                                                                }
                                                            });
                                                            c10.ping({
                                                                let p = p10.clone();
                                                                move |r| {
                                                                    r.unwrap();
                                                                    p("ping".into());
                                                                }
                                                            });
                                                        });
                                                    },
                                                );
                                            },
                                        );
                                    });
                                });
                            });
                        });
                    });
                },
            );
        },
    );
    drive(&mut poll, &conn, |_| log.borrow().len() == 12);
    assert_eq!(
        *log.borrow(),
        [
            "create",
            "transaction",
            "batch",
            "prepare",
            "execute_prepared",
            "close_prepared",
            "query",
            "copy_in",
            "copy_out",
            "callproc",
            "register_json",
            "ping"
        ]
    );
    assert_eq!(conn.pending(), 0);
}

#[test]
fn listen_and_cancel_work_on_the_programs_own_poll() {
    let mut poll = Poll::new().unwrap();
    let conn = ready_connection(&mut poll);
    let channel = format!("mio_chan_{}", std::process::id());
    let got: Rc<RefCell<Vec<String>>> = Rc::default();
    let g = got.clone();
    let listening = Rc::new(RefCell::new(false));
    let l = listening.clone();
    conn.listen(
        &channel,
        move |n| g.borrow_mut().push(n.payload().to_owned()),
        move |r| {
            r.unwrap();
            *l.borrow_mut() = true;
        },
    );
    drive(&mut poll, &conn, |_| *listening.borrow());
    // NOTIFY from the same connection: delivered to its own listener.
    conn.execute(&format!("NOTIFY {channel}, 'hello'"), (), |r| {
        r.unwrap();
    });
    drive(&mut poll, &conn, |_| got.borrow().len() == 1);
    assert_eq!(*got.borrow(), ["hello"]);

    let slept: Rc<RefCell<Option<momoko::Error>>> = Rc::default();
    let s = slept.clone();
    let started = Instant::now();
    conn.execute("SELECT pg_sleep(10)", (), move |r| {
        *s.borrow_mut() = r.err()
    });
    conn.dispatch(poll.registry()); // the query goes out before the cancel
    let cancelled = Rc::new(RefCell::new(None));
    let cd = cancelled.clone();
    conn.cancel(move |r| *cd.borrow_mut() = Some(r.is_ok()));
    drive(&mut poll, &conn, |_| slept.borrow().is_some());
    assert_eq!(slept.borrow().as_ref().unwrap().code(), Some("57014"));
    assert!(started.elapsed() < Duration::from_secs(5));
    drive(&mut poll, &conn, |_| cancelled.borrow().is_some());
    assert_eq!(*cancelled.borrow(), Some(true));
    // Still usable.
    let after = Rc::new(RefCell::new(None));
    let a = after.clone();
    conn.execute("SELECT 3", (), move |r| {
        *a.borrow_mut() = Some(r.unwrap().fetchone().unwrap().get::<_, i32>(0))
    });
    drive(&mut poll, &conn, |_| after.borrow().is_some());
    assert_eq!(*after.borrow(), Some(3));
}

#[test]
fn three_hundred_mio_callbacks_that_send_more_are_delivered_in_request_order() {
    let mut poll = Poll::new().unwrap();
    let conn = ready_connection(&mut poll);
    let log: Rc<RefCell<Vec<i64>>> = Rc::default();
    for i in 0..300i64 {
        let (c, l) = (conn.clone(), log.clone());
        conn.execute("SELECT %s::int8", (i,), move |r| {
            l.borrow_mut().push(r.unwrap().fetchone().unwrap().get(0));
            let l2 = l.clone();
            c.execute("SELECT %s::int8", (1000 + i,), move |r| {
                l2.borrow_mut().push(r.unwrap().fetchone().unwrap().get(0))
            });
        });
    }
    drive(&mut poll, &conn, |_| log.borrow().len() == 600);
    let expected: Vec<i64> = (0..300).chain(1000..1300).collect();
    assert_eq!(*log.borrow(), expected);
}

#[test]
fn a_mio_copy_source_may_call_into_its_own_connection() {
    let mut poll = Poll::new().unwrap();
    let conn = ready_connection(&mut poll);
    let table = format!("mio_copy_{}", std::process::id());
    let done = Rc::new(RefCell::new(None));
    let d = done.clone();
    let c = conn.clone();
    conn.execute(
        &format!("CREATE TEMP TABLE {table} (n int)"),
        (),
        move |r| {
            r.unwrap();
            let c2 = c.clone();
            let mut i = 0;
            let source = std::iter::from_fn(move || {
                assert!(c2.pending() >= 1);
                i += 1;
                (i <= 3).then(|| bytes::Bytes::from(format!("{i}\n")))
            });
            c.copy_in_chunks(&format!("COPY {table} FROM STDIN"), source, move |r| {
                *d.borrow_mut() = Some(r.unwrap())
            });
        },
    );
    drive(&mut poll, &conn, |_| done.borrow().is_some());
    assert_eq!(*done.borrow(), Some(3));
}

#[test]
fn cancel_and_reconnect_refused_up_front_are_answered_from_dispatch() {
    let mut poll = Poll::new().unwrap();
    let conn = ready_connection(&mut poll);
    // Connected already: reconnect is refused, from dispatch, not inline.
    let refused: Rc<RefCell<Option<momoko::Error>>> = Rc::default();
    let r = refused.clone();
    conn.reconnect(move |res| *r.borrow_mut() = res.err());
    assert!(refused.borrow().is_none());
    drive(&mut poll, &conn, |_| refused.borrow().is_some());
    assert_eq!(refused.borrow().as_ref().unwrap().kind(), ErrorKind::Usage);
    // Never established: nothing to cancel.
    let dsn = format!("host=127.0.0.1 port={} user=u dbname=d", refused_port());
    let never = MioConnection::connect(&dsn, |_| {});
    never.register(poll.registry(), Token(3)).unwrap();
    let answer: Rc<RefCell<Option<momoko::Error>>> = Rc::default();
    let a = answer.clone();
    never.cancel(move |res| *a.borrow_mut() = res.err());
    assert!(answer.borrow().is_none());
    drive(&mut poll, &never, |_| answer.borrow().is_some());
    assert!(answer
        .borrow()
        .as_ref()
        .unwrap()
        .to_string()
        .contains("nothing to cancel"));
}

/// A callback that notes its outcome in `state`, as an embedding program's would: it
/// borrows the program's state, so it must never run while the program holds that borrow.
fn note<T: 'static>(
    state: &Rc<RefCell<Vec<String>>>,
    label: &'static str,
) -> impl FnOnce(Result<T, momoko::Error>) + 'static {
    let state = state.clone();
    move |r| {
        let outcome = match r {
            Ok(_) => "ok".to_owned(),
            Err(e) => format!("{:?}: {e}", e.kind()),
        };
        state.borrow_mut().push(format!("{label}: {outcome}"));
    }
}

#[test]
fn requests_that_fail_before_they_are_sent_are_answered_from_dispatch_not_inside_the_call() {
    let mut poll = Poll::new().unwrap();
    let conn = ready_connection(&mut poll);
    // A statement prepared and closed: closing it again is answered without the server.
    let prepared = Rc::new(RefCell::new(None));
    let p = prepared.clone();
    conn.prepare("SELECT $1::int", move |r| {
        *p.borrow_mut() = Some(r.unwrap())
    });
    drive(&mut poll, &conn, |_| prepared.borrow().is_some());
    let st = prepared.borrow().clone().unwrap();
    let closed = Rc::new(RefCell::new(false));
    let c = closed.clone();
    conn.close_prepared(&st, move |r| *c.borrow_mut() = r.is_ok());
    drive(&mut poll, &conn, |_| *closed.borrow());

    let state: Rc<RefCell<Vec<String>>> = Rc::default();
    {
        // The program's own borrow, held across every call (a panic "already borrowed"
        // if a callback ran inside one).
        let _held = state.borrow_mut();
        conn.execute("SELECT %d", (1,), note(&state, "execute"));
        conn.execute("SELECT %s, %s", (1,), note(&state, "execute count"));
        conn.callproc("f%d", (1,), note(&state, "callproc"));
        let bad = || vec![momoko::Statement::from(("SELECT %s", (1, 2)))];
        conn.transaction(bad(), note(&state, "transaction"));
        conn.transaction_with(bad(), false, note(&state, "transaction_with"));
        conn.batch(bad(), note(&state, "batch"));
        conn.batch(Vec::<momoko::Statement>::new(), note(&state, "empty batch"));
        conn.query("SELECT $1::int", (1, 2), note(&state, "query"));
        conn.execute_prepared(&st, (1, 2), note(&state, "execute_prepared"));
        conn.close_prepared(&st, note(&state, "close_prepared"));
    }
    assert_eq!(conn.dispatch(poll.registry()), 10);
    assert_eq!(
        *state.borrow(),
        vec![
            "execute: Usage: usage error: unsupported format character 'd' (0x64) at index 8",
            "execute count: Usage: usage error: not enough parameters: 1 given, but the query has more %s placeholders",
            "callproc: Usage: usage error: unsupported format character 'd' (0x64) at index 16",
            "transaction: Usage: usage error: not all arguments converted during string formatting: 2 parameters given, 1 placeholders",
            "transaction_with: Usage: usage error: not all arguments converted during string formatting: 2 parameters given, 1 placeholders",
            "batch: Usage: usage error: not all arguments converted during string formatting: 2 parameters given, 1 placeholders",
            "empty batch: ok",
            "query: Usage: usage error: the statement takes 1 parameter but 2 were given",
            "execute_prepared: Usage: usage error: the statement takes 1 parameter but 2 were given",
            "close_prepared: ok",
        ]
    );
    assert!(conn.is_ready());

    // Closed by the client: every request fails from dispatch.
    conn.close();
    conn.dispatch(poll.registry());
    state.borrow_mut().clear();
    {
        let _held = state.borrow_mut();
        conn.execute("SELECT 1", (), note(&state, "execute"));
        conn.ping(note(&state, "ping"));
        conn.query("SELECT $1::int", (1,), note(&state, "query"));
        conn.copy_in("COPY t FROM STDIN", &b"1\n"[..], note(&state, "copy_in"));
        conn.cancel(note(&state, "cancel"));
    }
    conn.dispatch(poll.registry());
    let closed = "Connection: connection error: the connection is closed: the connection was closed by the client";
    assert_eq!(
        *state.borrow(),
        vec![
            format!("execute: {closed}"),
            format!("ping: {closed}"),
            format!("query: {closed}"),
            format!("copy_in: {closed}"),
            "cancel: Connection: connection error: the connection is not established: nothing to cancel".to_owned(),
        ]
    );
}

#[test]
fn requests_on_a_connection_whose_connect_failed_are_answered_from_dispatch() {
    let mut poll = Poll::new().unwrap();
    let dsn = format!("host=127.0.0.1 port={} user=u dbname=d", refused_port());
    let conn = MioConnection::connect(&dsn, |r| assert!(r.is_err()));
    conn.register(poll.registry(), Token(3)).unwrap();
    drive(&mut poll, &conn, |c| c.is_closed());
    let state: Rc<RefCell<Vec<String>>> = Rc::default();
    {
        let _held = state.borrow_mut();
        conn.execute("SELECT 1", (), note(&state, "execute"));
        conn.execute("SELECT %d", (1,), note(&state, "bad"));
        conn.transaction(vec!["SELECT 1"], note(&state, "transaction"));
    }
    conn.dispatch(poll.registry());
    let got = state.borrow();
    assert_eq!(got.len(), 3);
    assert!(
        got[0]
            .starts_with("execute: Connection: connection error: the connection failed to connect"),
        "{got:?}"
    );
    assert_eq!(
        got[1],
        "bad: Usage: usage error: unsupported format character 'd' (0x64) at index 8"
    );
    assert!(
        got[2].starts_with(
            "transaction: Connection: connection error: the connection failed to connect"
        ),
        "{got:?}"
    );
}

#[test]
fn a_mio_connection_from_the_builder_acts_on_its_options() {
    let mut poll = Poll::new().unwrap();
    let notices: Rc<RefCell<Vec<String>>> = Rc::default();
    let n = notices.clone();
    let conn = MioConnection::builder(&dsn())
        .setsession(["SET application_name = 'mio_built'"])
        .notice_handler(move |db| n.borrow_mut().push(db.message.clone()))
        .statement_cache_size(0)
        .query_timeout(Duration::from_millis(300))
        .build_mio(|r| r.unwrap());
    conn.register(poll.registry(), Token(3)).unwrap();
    drive(&mut poll, &conn, |c| c.is_ready());
    assert_eq!(
        conn.parameter("application_name").as_deref(),
        Some("mio_built")
    );

    // statement_cache_size(0): `query` runs on the unnamed statement, nothing stays prepared.
    let got: Rc<RefCell<Vec<i64>>> = Rc::default();
    let g = got.clone();
    conn.query("SELECT $1::int8 + 1", (41i64,), move |r| {
        g.borrow_mut().push(r.unwrap().fetchone().unwrap().get(0))
    });
    let g = got.clone();
    conn.execute(
        "SELECT count(*) FROM pg_prepared_statements",
        (),
        move |r| g.borrow_mut().push(r.unwrap().fetchone().unwrap().get(0)),
    );
    drive(&mut poll, &conn, |_| got.borrow().len() == 2);
    assert_eq!(*got.borrow(), vec![42, 0]);

    // notice_handler: every NoticeResponse.
    let done = Rc::new(RefCell::new(false));
    let d = done.clone();
    conn.execute(
        "DO $$ BEGIN RAISE NOTICE 'from mio'; END $$",
        (),
        move |r| {
            r.unwrap();
            *d.borrow_mut() = true;
        },
    );
    drive(&mut poll, &conn, |_| *done.borrow());
    assert_eq!(*notices.borrow(), vec!["from mio".to_owned()]);

    // query_timeout: the query fails with Timeout, is cancelled on the server, and the
    // connection stays usable.
    let started = Instant::now();
    let failed: Rc<RefCell<Option<momoko::Error>>> = Rc::default();
    let f = failed.clone();
    conn.execute("SELECT pg_sleep(5)", (), move |r| *f.borrow_mut() = r.err());
    drive(&mut poll, &conn, |_| failed.borrow().is_some());
    let waited = started.elapsed();
    assert_eq!(failed.borrow().as_ref().unwrap().kind(), ErrorKind::Timeout);
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    let after: Rc<RefCell<Option<i32>>> = Rc::default();
    let a = after.clone();
    conn.execute("SELECT 7", (), move |r| {
        *a.borrow_mut() = Some(r.unwrap().fetchone().unwrap().get(0))
    });
    drive(&mut poll, &conn, |_| after.borrow().is_some());
    assert_eq!(*after.borrow(), Some(7));
    assert!(started.elapsed() < Duration::from_secs(4));
}

/// Runs one query whose callback queues a second, and returns the connection's
/// `next_deadline` as it stands right after the `dispatch` that ran the first callback,
/// then the two results once both are in.
fn follow_up_from_a_callback(poll: &mut Poll, conn: &MioConnection) -> (Option<Instant>, Vec<i32>) {
    let got: Rc<RefCell<Vec<i32>>> = Rc::default();
    let (g, c) = (got.clone(), conn.clone());
    conn.execute("SELECT 1", (), move |r| {
        g.borrow_mut().push(r.unwrap().fetchone().unwrap().get(0));
        let g = g.clone();
        c.execute("SELECT 2", (), move |r| {
            g.borrow_mut().push(r.unwrap().fetchone().unwrap().get(0))
        });
    });
    drive(poll, conn, |_| !got.borrow().is_empty());
    let deadline = conn.next_deadline();
    drive(poll, conn, |_| got.borrow().len() == 2);
    let got = got.borrow().clone();
    (deadline, got)
}

#[test]
fn with_poll_before_write_a_request_made_in_a_callback_waits_for_the_programs_next_poll() {
    let mut poll = Poll::new().unwrap();
    let conn = MioConnection::builder(&dsn())
        .poll_before_write(true)
        .build_mio(|r| r.unwrap());
    conn.register(poll.registry(), Token(3)).unwrap();
    drive(&mut poll, &conn, |c| c.is_ready());
    let (deadline, got) = follow_up_from_a_callback(&mut poll, &conn);
    // Not written by the dispatch that queued it: the connection asks for a poll at once.
    assert!(
        deadline.is_some_and(|d| d <= Instant::now()),
        "{deadline:?}"
    );
    assert_eq!(got, vec![1, 2]);

    // Without the option the same request went out from that dispatch: nothing is due.
    let mut poll = Poll::new().unwrap();
    let plain = ready_connection(&mut poll);
    let (deadline, got) = follow_up_from_a_callback(&mut poll, &plain);
    assert_eq!(deadline, None);
    assert_eq!(got, vec![1, 2]);
}

#[test]
fn both_handles_answer_to_every_accessor_name_with_one_meaning() {
    let mut poll = Poll::new().unwrap();
    let conn = ready_connection(&mut poll);
    let done = Rc::new(RefCell::new(false));
    let d = done.clone();
    conn.execute("SELECT 1", (), move |_| *d.borrow_mut() = true);
    conn.execute("SELECT 2", (), |_| {});
    assert_eq!((conn.in_flight(), conn.pending()), (2, 2));
    assert_eq!(
        (conn.closed(), conn.is_closed(), conn.is_ready()),
        (false, false, true)
    );
    drive(&mut poll, &conn, |c| *done.borrow() && c.in_flight() == 0);
    assert_eq!((conn.in_flight(), conn.pending()), (0, 0));
    conn.close();
    assert_eq!(
        (conn.closed(), conn.is_closed(), conn.is_ready()),
        (true, true, false)
    );
    assert_eq!(
        conn.transaction_status(),
        momoko::TransactionStatus::Unknown
    );

    // The IoLoop handle has the same names, with the same answers.
    common::run(async {
        let conn = momoko::connect(&dsn()).await.unwrap();
        let a = conn.execute("SELECT 1", ());
        let b = conn.execute("SELECT 2", ());
        assert_eq!((conn.in_flight(), conn.pending()), (2, 2));
        assert_eq!(
            (conn.closed(), conn.is_closed(), conn.is_ready()),
            (false, false, true)
        );
        a.await.unwrap();
        b.await.unwrap();
        assert_eq!((conn.in_flight(), conn.pending()), (0, 0));
        conn.close();
        assert_eq!(
            (conn.closed(), conn.is_closed(), conn.is_ready()),
            (true, true, false)
        );
    });
}

#[test]
fn a_builder_that_names_an_ioloop_is_refused_by_build_mio_from_dispatch() {
    let mut poll = Poll::new().unwrap();
    let got: Rc<RefCell<Option<momoko::Error>>> = Rc::default();
    let g = got.clone();
    let conn = MioConnection::builder(&dsn())
        .ioloop(&momoko::ioloop::IoLoop::current())
        .build_mio(move |r| *g.borrow_mut() = Some(r.unwrap_err()));
    // Not inside the call: the answer waits for dispatch.
    assert!(got.borrow().is_none());
    conn.register(poll.registry(), Token(3)).unwrap();
    drive(&mut poll, &conn, |_| got.borrow().is_some());
    let e = got.borrow_mut().take().unwrap();
    assert_eq!(e.kind(), ErrorKind::Usage);
    assert!(
        e.to_string()
            .contains("a MioConnection runs on the program's own mio::Poll"),
        "{e}"
    );
    assert!(conn.is_closed());
}
