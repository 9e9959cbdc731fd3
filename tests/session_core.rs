//! The session core's guarantees, against the real server: statements run only as
//! themselves, user code never runs under a borrow, completions come in request order.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::Bytes;
use common::{dsn, run, unique};
use momoko::ioloop::IoLoop;
use momoko::{Connection, Error};

async fn connect() -> Connection {
    momoko::connect(&dsn()).await.unwrap()
}

#[test]
fn a_statement_of_a_closed_connection_runs_as_itself_on_another_never_as_the_others() {
    run(async {
        for _ in 0..20 {
            let a = connect().await;
            let answer = a.prepare("SELECT 41 + 1 AS answer").await.unwrap();
            a.close();
            let b = connect().await;
            let other = b.prepare("SELECT 'not the answer'::text").await.unwrap();
            assert_ne!(answer.name(), other.name());
            let mut c = b.execute_prepared(&answer, ()).await.unwrap();
            let row = c.fetchone().unwrap();
            assert_eq!(row.get::<_, i32>("answer"), 42);
            let mut c = b.execute_prepared(&other, ()).await.unwrap();
            assert_eq!(c.fetchone().unwrap().get::<_, String>(0), "not the answer");
            b.close();
        }
    });
}

#[test]
fn statement_names_are_unique_across_connections_of_the_process() {
    run(async {
        let a = connect().await;
        let b = connect().await;
        let sa = a.prepare("SELECT 1").await.unwrap();
        let sb = b.prepare("SELECT 2").await.unwrap();
        assert_ne!(sa.name(), sb.name());
        // Used on B, A's statement is prepared again there under a name of its own.
        let mut c = b.execute_prepared(&sa, ()).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 1);
        assert_ne!(sa.name(), sb.name());
        let mut c = b.execute_prepared(&sb, ()).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 2);
    });
}

#[test]
fn a_copy_source_may_call_into_its_own_connection() {
    run(async {
        let conn = connect().await;
        let table = unique("copy_reentrant");
        conn.execute(&format!("CREATE TEMP TABLE {table} (n int)"), ())
            .await
            .unwrap();
        let seen = Rc::new(RefCell::new(Vec::new()));
        let side = Rc::new(RefCell::new(None));
        let (c, s, sd) = (conn.clone(), seen.clone(), side.clone());
        let mut i = 0;
        let source = std::iter::from_fn(move || {
            // Inside the connection's own COPY: asking it anything must not panic.
            s.borrow_mut().push(c.in_flight());
            if i == 1 {
                *sd.borrow_mut() = Some(c.execute("SELECT 7", ()));
            }
            i += 1;
            (i <= 3).then(|| Bytes::from(format!("{i}\n")))
        });
        let copied = conn
            .copy_in_chunks(&format!("COPY {table} FROM STDIN"), source)
            .await
            .unwrap();
        assert_eq!(copied, 3);
        assert!(seen.borrow().iter().all(|&n| n >= 1), "{:?}", seen.borrow());
        let side = side.borrow_mut().take().unwrap();
        assert_eq!(side.await.unwrap().fetchone().unwrap().get::<_, i32>(0), 7);
        let mut c = conn
            .execute(&format!("SELECT sum(n)::int FROM {table}"), ())
            .await
            .unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 6);
    });
}

#[test]
fn three_hundred_requests_whose_callbacks_send_more_complete_in_request_order() {
    run(async {
        let conn = connect().await;
        let log: Rc<RefCell<Vec<i64>>> = Rc::default();
        type Pending = momoko::ioloop::Future<Result<momoko::Cursor, Error>>;
        let follow_ups: Rc<RefCell<Vec<Pending>>> = Rc::default();
        let lp = IoLoop::current();
        let mut firsts = Vec::new();
        for i in 0..300i64 {
            let f = conn.execute("SELECT %s::int8", (i,));
            let (log, fu, c) = (log.clone(), follow_ups.clone(), conn.clone());
            let lg = log.clone();
            lp.add_future(&f, move |f| {
                let v: i64 = f.take().unwrap().unwrap().fetchone().unwrap().get(0);
                log.borrow_mut().push(v);
                // A follow-up from inside the callback.
                let g = c.execute("SELECT %s::int8", (1000 + v,));
                let lg2 = lg.clone();
                IoLoop::current().add_future(&g, move |g| {
                    let w: i64 = g.take().unwrap().unwrap().fetchone().unwrap().get(0);
                    lg2.borrow_mut().push(w);
                });
                fu.borrow_mut().push(g);
            });
            firsts.push(f);
        }
        common::wait_until(20, "600 answers", || log.borrow().len() == 600).await;
        let expected: Vec<i64> = (0..300).chain(1000..1300).collect();
        assert_eq!(*log.borrow(), expected);
        assert_eq!(follow_ups.borrow().len(), 300);
    });
}

#[test]
fn run_sync_borrows_from_the_callers_stack() {
    let mut seen: Vec<i32> = Vec::new();
    let calls = Cell::new(0);
    let out = IoLoop::new().run_sync(async {
        let conn = momoko::connect(&dsn()).await?;
        let v: i32 = conn
            .execute("SELECT 5", ())
            .await?
            .fetchone()
            .unwrap()
            .get(0);
        seen.push(v);
        calls.set(calls.get() + 1);
        conn.close();
        Ok::<(), Error>(())
    });
    out.unwrap();
    assert_eq!(seen, vec![5]);
    assert_eq!(calls.get(), 1);
}

#[test]
fn an_io_error_becomes_a_connection_error() {
    let e: Error = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "gone").into();
    assert_eq!(e.kind(), momoko::ErrorKind::Connection);
}
