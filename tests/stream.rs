//! `stream`: rows handed to a callback as they are read, none kept. Exact counts and sums,
//! binary decoding like `query`'s, parameters, an error mid-stream reported once after the
//! rows before it, a callback that borrows what the test owns and queues more work on the
//! same connection, the pool's and the embedding API's variants.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{dsn, run};
use momoko::{Connection, ErrorKind, Pool, Row};

/// The reach contract's calls, compiled with exactly its signatures (check.sh runs it).
#[allow(dead_code, unused_variables, clippy::all)]
mod contract {
    use momoko::ioloop::IoLoop;
    use momoko::{Connection, Error, Pool, Row};

    pub fn streaming(conn: &Connection, pool: &Pool) -> Result<(), Error> {
        let (conn, pool) = (conn.clone(), pool.clone());
        IoLoop::current().run_sync(async move {
            let n: u64 = conn
                .stream(
                    "SELECT g, g::text FROM generate_series(1, $1) g",
                    (1_000_000i32,),
                    |row: &Row| {
                        let id: i32 = row.get(0);
                    },
                )
                .await?;
            let m: u64 = pool.stream("SELECT 1", (), |row: &Row| {}).await?;
            Ok(())
        })
    }
}

async fn connect() -> Connection {
    momoko::connect(&dsn()).await.expect("connect")
}

const SERIES: &str = "SELECT g FROM generate_series(1, $1) g";

#[test]
fn a_hundred_thousand_rows_arrive_in_order_and_the_future_resolves_to_their_count() {
    run(async {
        let conn = connect().await;
        let (sum, next) = (Rc::new(Cell::new(0i64)), Rc::new(Cell::new(1i32)));
        let (s, nx) = (sum.clone(), next.clone());
        let n = conn
            .stream(SERIES, (100_000i32,), move |row: &Row| {
                let g: i32 = row.get(0);
                assert_eq!(g, nx.get(), "rows out of order");
                nx.set(g + 1);
                s.set(s.get() + i64::from(g));
            })
            .await
            .unwrap();
        assert_eq!(n, 100_000);
        assert_eq!(sum.get(), 5_000_050_000);
        assert_eq!(next.get(), 100_001);
        // No rows at all: the callback never runs, the count is 0.
        let calls = Rc::new(Cell::new(0));
        let c = calls.clone();
        let n = conn
            .stream(SERIES, (0i32,), move |_: &Row| c.set(c.get() + 1))
            .await
            .unwrap();
        assert_eq!((n, calls.get()), (0, 0));
        // The connection goes on as usual.
        let mut cur = conn.query("SELECT $1::int4 * 2", (21i32,)).await.unwrap();
        assert_eq!(cur.fetchone().unwrap().get::<_, i32>(0), 42);
    });
}

/// The values of one row of TYPED as the callback sees them, with the format they came in.
type Seen = (
    i64,
    f64,
    String,
    bool,
    Vec<i32>,
    Option<i32>,
    String,
    Vec<i16>,
);

const TYPED: &str = "SELECT $1::int8 + g, g::float8 / 4, 'row ' || g, g % 2 = 0, \
     ARRAY[g, g * 10], NULLIF(g, 2), (date '2024-02-28' + g)::text \
     FROM generate_series(1, 3) g";

async fn typed_rows(conn: &Connection) -> Vec<Seen> {
    let seen: Rc<RefCell<Vec<Seen>>> = Rc::default();
    let s = seen.clone();
    let n = conn
        .stream(TYPED, (1_000_000_000_000i64,), move |row: &Row| {
            let formats = row.columns().iter().map(|c| c.format()).collect();
            s.borrow_mut().push((
                row.get(0),
                row.get(1),
                row.get(2),
                row.get(3),
                row.get(4),
                row.get(5),
                row.get(6),
                formats,
            ))
        })
        .await
        .unwrap();
    assert_eq!(n, 3);
    seen.take()
}

#[test]
fn streamed_rows_decode_like_query_rows_binary_once_the_statement_is_cached() {
    run(async {
        let conn = connect().await;
        let first = typed_rows(&conn).await;
        let second = typed_rows(&conn).await;
        let values = |rows: &[Seen]| -> Vec<Seen> {
            rows.iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.7.clear();
                    r
                })
                .collect()
        };
        let expected: Vec<Seen> = vec![
            (
                1_000_000_000_001,
                0.25,
                "row 1".into(),
                false,
                vec![1, 10],
                Some(1),
                "2024-02-29".into(),
                vec![],
            ),
            (
                1_000_000_000_002,
                0.5,
                "row 2".into(),
                true,
                vec![2, 20],
                None,
                "2024-03-01".into(),
                vec![],
            ),
            (
                1_000_000_000_003,
                0.75,
                "row 3".into(),
                false,
                vec![3, 30],
                Some(3),
                "2024-03-02".into(),
                vec![],
            ),
        ];
        assert_eq!(values(&first), expected);
        assert_eq!(values(&second), expected);
        // The first run describes the statement as it goes (text results, as `query`); the
        // cached statement then asks for binary wherever momoko decodes the type.
        assert_eq!(first[0].7, vec![0; 7]);
        assert_eq!(second[0].7, vec![1; 7]);
        // `query` on the same statement gets the same values.
        let mut cur = conn.query(TYPED, (1_000_000_000_000i64,)).await.unwrap();
        let row = cur.fetchone().unwrap();
        assert_eq!(row.get::<_, i64>(0), 1_000_000_000_001);
        assert_eq!(row.get::<_, Vec<i32>>(4), vec![1, 10]);
    });
}

#[test]
fn an_error_mid_stream_resolves_the_future_once_after_the_rows_before_it() {
    run(async {
        let conn = connect().await;
        for _ in 0..2 {
            // Twice: once while the statement is described, once cached (binary).
            let rows = Rc::new(Cell::new(0u32));
            let r = rows.clone();
            let err = conn
                .stream(
                    "SELECT 1/(g-5000) FROM generate_series(1, $1) g",
                    (10_000i32,),
                    move |row: &Row| {
                        let v: i32 = row.get(0);
                        assert_eq!(v, if r.get() == 4998 { -1 } else { 0 });
                        r.set(r.get() + 1);
                    },
                )
                .await
                .unwrap_err();
            assert_eq!(err.code(), Some("22012"), "{err}");
            assert_eq!(err.kind(), ErrorKind::Db);
            // g = 1 … 4999 came before the division by zero at g = 5000.
            assert_eq!(rows.get(), 4999);
        }
        // A parameter that does not fit is refused before anything is sent.
        let e = conn.stream(SERIES, (1i32, 2i32), |_: &Row| {}).await;
        assert_eq!(e.unwrap_err().kind(), ErrorKind::Usage);
        let mut cur = conn.query("SELECT 5", ()).await.unwrap();
        assert_eq!(cur.fetchone().unwrap().get::<_, i32>(0), 5);
    });
}

#[test]
fn the_callback_holds_no_borrow_of_the_connection_and_its_follow_up_query_runs_after() {
    run(async {
        let conn = connect().await;
        let log: Rc<RefCell<Vec<String>>> = Rc::default();
        let follow_up: Rc<RefCell<Option<momoko::ioloop::Future<_>>>> = Rc::default();
        let (c, l, f) = (conn.clone(), log.clone(), follow_up.clone());
        let n = conn
            .stream(SERIES, (1000i32,), move |row: &Row| {
                let g: i32 = row.get(0);
                // A borrow of the test's own state for the whole callback.
                let mut log = l.borrow_mut();
                // Reading and queuing on the same connection from inside the callback.
                assert!(c.is_ready());
                if g == 1 {
                    let l2 = l.clone();
                    let fut = c.query("SELECT $1::int4 + 1", (g,));
                    fut.add_done_callback(move |_| l2.borrow_mut().push("follow-up".into()));
                    *f.borrow_mut() = Some(fut);
                }
                if g % 250 == 0 {
                    log.push(format!("row {g}"));
                }
            })
            .await
            .unwrap();
        assert_eq!(n, 1000);
        let fut = follow_up.borrow_mut().take().unwrap();
        let mut cur = fut.await.unwrap();
        assert_eq!(cur.fetchone().unwrap().get::<_, i32>(0), 2);
        assert_eq!(
            *log.borrow(),
            ["row 250", "row 500", "row 750", "row 1000", "follow-up"]
        );
    });
}

#[test]
fn the_statement_cache_off_streams_text_rows_on_the_unnamed_statement() {
    run(async {
        let conn = Connection::builder(&dsn())
            .statement_cache_size(0)
            .connect()
            .await
            .unwrap();
        let sum = Rc::new(Cell::new(0i64));
        let s = sum.clone();
        for _ in 0..2 {
            let n = conn
                .stream(SERIES, (10_000i32,), {
                    let s = s.clone();
                    move |row: &Row| {
                        assert_eq!(row.columns()[0].format(), 0);
                        s.set(s.get() + i64::from(row.get::<_, i32>(0)));
                    }
                })
                .await
                .unwrap();
            assert_eq!(n, 10_000);
        }
        assert_eq!(sum.get(), 2 * 50_005_000);
    });
}

#[test]
fn a_pool_streams_on_a_connection_of_its_own_and_reports_an_error_once() {
    run(async {
        let pool = Pool::builder(&dsn())
            .size(2)
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap();
        let sum = Rc::new(Cell::new(0i64));
        let s = sum.clone();
        let n = pool
            .stream(
                "SELECT g::int8 * $1 FROM generate_series(1, 50000) g",
                (2i64,),
                move |row: &Row| s.set(s.get() + row.get::<_, i64>(0)),
            )
            .await
            .unwrap();
        assert_eq!(n, 50_000);
        assert_eq!(sum.get(), 2 * 1_250_025_000);

        let rows = Rc::new(Cell::new(0u32));
        let r = rows.clone();
        let err = pool
            .stream(
                "SELECT 1/(g-5000) FROM generate_series(1, 10000) g",
                (),
                move |_: &Row| r.set(r.get() + 1),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("22012"));
        assert_eq!(rows.get(), 4999);
        let e = pool.stream("SELECT $1::int4", (), |_: &Row| {}).await;
        assert_eq!(e.unwrap_err().kind(), ErrorKind::Usage);
        // Every connection went back.
        assert_eq!(pool.stats().busy, 0);
    });
}

#[test]
fn a_pool_stream_cut_off_mid_way_is_not_replayed_even_under_momokos_retry_rule() {
    run(async {
        // Momoko's rule runs an operation again on the reconnected connection whatever
        // happened: for a stream that would hand the first rows out twice.
        let pool = Pool::builder(&dsn())
            .size(1)
            .retry(momoko::RetryPolicy::Momoko)
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap();
        let pid = pool.connections_for_tests()[0].backend_pid().unwrap();
        let killer = momoko::connect(&dsn()).await.unwrap();
        let next = Rc::new(Cell::new(1i32));
        let kill: Rc<RefCell<Option<momoko::ioloop::Future<_>>>> = Rc::default();
        let (nx, k) = (next.clone(), kill.clone());
        let err = pool
            .stream(
                "SELECT g FROM generate_series(1, 3000000) g",
                (),
                move |row: &Row| {
                    let g: i32 = row.get(0);
                    assert_eq!(g, nx.get(), "a row handed out twice or skipped");
                    nx.set(g + 1);
                    if g == 1000 {
                        // The stream yields to the loop between reads: this runs meanwhile.
                        let f = killer.execute("SELECT pg_terminate_backend(%s)", (pid,));
                        *k.borrow_mut() = Some(f);
                    }
                },
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("57P01"), "{err}");
        let delivered = next.get() - 1;
        assert!(
            (1000..3_000_000).contains(&delivered),
            "{delivered} rows before the cut"
        );
        let kill = kill.borrow_mut().take().unwrap();
        let terminated = kill.await.unwrap();
        assert!(terminated.into_iter().next().unwrap().get::<_, bool>(0));
        // The pool goes on, on a new connection.
        let n = pool.stream(SERIES, (10i32,), |_: &Row| {}).await.unwrap();
        assert_eq!(n, 10);
    });
}

/// Turns the test's own poll until `done` holds or 10 s pass.
fn drive(poll: &mut mio::Poll, conn: &momoko::MioConnection, mut done: impl FnMut() -> bool) {
    let mut events = mio::Events::with_capacity(16);
    let give_up = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            Instant::now() < give_up,
            "the embedded stream did not finish"
        );
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .unwrap();
        for e in events.iter() {
            conn.handle_event(poll.registry(), e);
        }
        conn.handle_timeout(poll.registry(), Instant::now());
        conn.dispatch(poll.registry());
    }
}

#[test]
fn a_mio_connection_streams_from_dispatch() {
    let mut poll = mio::Poll::new().unwrap();
    let conn = momoko::MioConnection::connect(&dsn(), |r| r.unwrap());
    conn.register(poll.registry(), mio::Token(7)).unwrap();
    drive(&mut poll, &conn, || conn.is_ready());
    let sum = Rc::new(Cell::new(0i64));
    let done: Rc<RefCell<Option<Result<u64, momoko::Error>>>> = Rc::default();
    let (s, d) = (sum.clone(), done.clone());
    conn.stream(
        SERIES,
        (20_000i32,),
        move |row: &Row| s.set(s.get() + i64::from(row.get::<_, i32>(0))),
        move |r| *d.borrow_mut() = Some(r),
    );
    // Nothing runs inside the call that queued the work.
    assert!(done.borrow().is_none());
    drive(&mut poll, &conn, || done.borrow().is_some());
    assert_eq!(done.take().unwrap().unwrap(), 20_000);
    assert_eq!(sum.get(), 200_010_000);
}
