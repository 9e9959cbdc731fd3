//! What momoko does beyond Momoko, against a real server: prepared statements, LISTEN/NOTIFY,
//! cancellation, query timeouts and COPY.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{dsn, run, run_for, sleep, unique, wait_until};
use momoko::{Connection, ErrorKind, Notification, Pool, TransactionStatus};

async fn connect() -> Connection {
    momoko::connect(&dsn()).await.expect("connect")
}

/// Its parameters include a JSON value: the default `json` feature.
#[cfg(feature = "json")]
#[test]
fn prepared_statements_take_server_side_parameters_and_decode_binary_results() {
    run(async {
        let conn = connect().await;
        let st = conn.prepare("SELECT $1::int8 + 1").await.unwrap();
        assert_eq!(st.param_types(), &[20]);
        let mut c = conn.execute_prepared(&st, (41i64,)).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i64>(0), 42);
        assert_eq!(c.statusmessage(), Some("SELECT 1"));

        let st = conn
            .prepare(
                "SELECT $1::text, $2::float8, $3::bool, $4::bytea, $5::int4[], $6::numeric, \
                 $7::jsonb, NULL::int, '2024-02-29'::date, interval '1 day'",
            )
            .await
            .unwrap();
        use momoko::Value;
        let params: Vec<Value> = vec![
            Value::from("it's ünïcode"),
            Value::from(-1.5f64),
            Value::from(true),
            Value::from(vec![0u8, 1, 255]),
            Value::Array(vec![Value::from(1i32), Value::Null, Value::from(3i32)]),
            Value::Numeric("12345678901234567890.000000001".into()),
            Value::Json(serde_json::json!({"k": [1, 2]})),
        ];
        let mut c = conn.execute_prepared(&st, params).await.unwrap();
        let r = c.fetchone().unwrap();
        assert_eq!(r.get::<_, String>(0), "it's ünïcode");
        assert_eq!(r.get::<_, f64>(1), -1.5);
        assert!(r.get::<_, bool>(2));
        assert_eq!(r.get::<_, Vec<u8>>(3), vec![0, 1, 255]);
        assert_eq!(
            r.get::<_, Vec<Option<i32>>>(4),
            vec![Some(1), None, Some(3)]
        );
        assert_eq!(r.get::<_, String>(5), "12345678901234567890.000000001");
        assert_eq!(
            r.get::<_, serde_json::Value>(6),
            serde_json::json!({"k": [1, 2]})
        );
        assert_eq!(r.get::<_, Option<i32>>(7), None);
        assert_eq!(r.get::<_, String>(8), "2024-02-29");
        assert_eq!(r.get::<_, String>(9), "1 day");
    });
}

#[test]
fn a_prepared_statement_survives_a_reconnect_and_runs_on_another_connection() {
    run(async {
        let conn = connect().await;
        let st = conn.prepare("SELECT $1::int * 2").await.unwrap();
        conn.close();
        conn.connect().await.unwrap();
        let mut c = conn.execute_prepared(&st, (21i32,)).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 42);
        let other = connect().await;
        let mut c = other.execute_prepared(&st, (5i32,)).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 10);
        conn.close_prepared(&st).await.unwrap();
    });
}

#[test]
fn prepared_statement_errors_are_clear() {
    run(async {
        let conn = connect().await;
        let err = conn.prepare("SELECT nope FROM").await.unwrap_err();
        assert_eq!(err.code(), Some("42601"));
        let st = conn.prepare("SELECT $1::int").await.unwrap();
        let err = conn.execute_prepared(&st, (1i32, 2i32)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage);
        let err = conn.execute_prepared(&st, ("x",)).await.unwrap_err();
        assert_eq!(err.code(), Some("22P02"));
        conn.ping().await.unwrap();
    });
}

#[test]
fn a_thousand_pipelined_prepared_executions_answer_in_order() {
    run(async {
        let conn = connect().await;
        let st = conn.prepare("SELECT $1::int4").await.unwrap();
        let fs: Vec<_> = (0..1000i32)
            .map(|i| conn.execute_prepared(&st, (i,)))
            .collect();
        for (i, f) in fs.into_iter().enumerate() {
            assert_eq!(
                f.await.unwrap().fetchone().unwrap().get::<_, i32>(0),
                i as i32
            );
        }
    });
}

#[test]
fn notifications_arrive_while_the_connection_is_idle() {
    run(async {
        let conn = connect().await;
        let other = connect().await;
        let got: Rc<RefCell<Vec<(String, String, i32)>>> = Rc::default();
        let g = got.clone();
        let channel = "Jobs \"quoted\"";
        conn.listen(channel, move |n: &Notification| {
            g.borrow_mut().push((
                n.channel().to_owned(),
                n.payload().to_owned(),
                n.process_id(),
            ));
        })
        .await
        .unwrap();
        let sender_pid = other.backend_pid().unwrap();
        other
            .execute("SELECT pg_notify(%s, %s)", (channel, "hello"))
            .await
            .unwrap();
        // Nothing is sent on `conn`: the idle socket is watched.
        wait_until(5, "the notification", || !got.borrow().is_empty()).await;
        assert_eq!(
            got.borrow()[0],
            (channel.to_owned(), "hello".to_owned(), sender_pid)
        );
        conn.unlisten(channel).await.unwrap();
        other
            .execute("SELECT pg_notify(%s, 'again')", (channel,))
            .await
            .unwrap();
        conn.ping().await.unwrap();
        sleep(Duration::from_millis(100)).await;
        assert_eq!(got.borrow().len(), 1);
    });
}

#[test]
fn a_storm_of_100000_notifications_is_delivered_whole_and_in_order() {
    run_for(120, async {
        let conn = connect().await;
        let sender = connect().await;
        let got: Rc<RefCell<Vec<u32>>> = Rc::default();
        let g = got.clone();
        conn.listen("storm", move |n: &Notification| {
            g.borrow_mut().push(n.payload().parse().unwrap());
        })
        .await
        .unwrap();
        // One transaction per 10,000: NOTIFY queues are delivered at commit.
        for batch in 0..10u32 {
            let from = batch * 10_000;
            sender
                .execute(
                    &format!(
                        "SELECT count(pg_notify('storm', i::text)) FROM generate_series({from}, {}) i",
                        from + 9_999
                    ),
                    (),
                )
                .await
                .unwrap();
        }
        wait_until(60, "100000 notifications", || got.borrow().len() >= 100_000).await;
        let got = got.borrow();
        assert_eq!(got.len(), 100_000);
        assert!(
            got.iter().enumerate().all(|(i, v)| *v == i as u32),
            "out of order"
        );
    });
}

#[test]
fn cancel_stops_a_ten_second_sleep_within_a_second_and_the_connection_stays_usable() {
    run(async {
        let conn = connect().await;
        let start = Instant::now();
        let slow = conn.execute("SELECT pg_sleep(10)", ());
        sleep(Duration::from_millis(100)).await;
        conn.cancel().await.unwrap();
        let err = slow.await.unwrap_err();
        assert_eq!(err.code(), Some("57014"));
        assert_eq!(err.kind(), ErrorKind::Db);
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        let mut c = conn.execute("SELECT 1", ()).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 1);
    });
}

#[test]
fn cancel_right_after_execute_cancels_that_query() {
    run(async {
        let conn = connect().await;
        let start = Instant::now();
        let slow = conn.execute("SELECT pg_sleep(10)", ());
        conn.cancel().await.unwrap();
        let err = slow.await.unwrap_err();
        assert_eq!(err.code(), Some("57014"));
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    });
}

#[test]
fn query_timeout_fails_with_timeout_keeps_57014_and_the_connection_works_after() {
    run(async {
        let conn = Connection::builder(&dsn())
            .query_timeout(Duration::from_millis(300))
            .connect()
            .await
            .unwrap();
        let start = Instant::now();
        let err = conn.execute("SELECT pg_sleep(5)", ()).await.unwrap_err();
        let took = start.elapsed();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert_eq!(err.code(), Some("57014"));
        assert!(
            took >= Duration::from_millis(290) && took < Duration::from_millis(1500),
            "{took:?}"
        );
        let mut c = conn.execute("SELECT 7", ()).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 7);
        assert!(!conn.closed());
    });
}

#[test]
fn pool_query_timeout_applies_to_pooled_connections() {
    run(async {
        let pool = Pool::builder(&dsn())
            .size(1)
            .query_timeout(Duration::from_millis(200))
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap();
        let err = pool.execute("SELECT pg_sleep(3)", ()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        pool.ping().await.unwrap();
        assert_eq!(pool.stats().busy, 0);
    });
}

/// The LISTEN connection is built like every other pooled connection: a query on it gets
/// the pool's `query_timeout`.
#[test]
fn pool_listen_connection_has_the_pools_query_timeout() {
    run(async {
        let pool = Pool::builder(&dsn())
            .size(1)
            .query_timeout(Duration::from_millis(200))
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap();
        pool.listen(&unique("tmpl"), |_| {}).await.unwrap();
        let listener = pool.listener_for_tests().expect("listening");
        let start = Instant::now();
        let err = listener
            .execute("SELECT pg_sleep(3)", ())
            .await
            .unwrap_err();
        let took = start.elapsed();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert!(took < Duration::from_millis(1500), "{took:?}");
    });
}

fn rows_text(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 16);
    for i in 0..n {
        out.extend_from_slice(format!("{i}\trow {i}\n").as_bytes());
    }
    out
}

#[test]
fn copy_a_million_rows_in_and_out_compares_equal() {
    run_for(120, async {
        let conn = connect().await;
        let table = unique("copy_big");
        conn.execute(&format!("CREATE TEMP TABLE {table} (a int, b text)"), ())
            .await
            .unwrap();
        let data = rows_text(1_000_000);
        // In chunks of 64 KiB: the source is pulled as the socket drains.
        let chunks: Vec<Vec<u8>> = data.chunks(65536).map(<[u8]>::to_vec).collect();
        let n = conn
            .copy_in_chunks(&format!("COPY {table} FROM STDIN"), chunks)
            .await
            .unwrap();
        assert_eq!(n, 1_000_000);
        let out: Rc<RefCell<Vec<u8>>> = Rc::default();
        let o = out.clone();
        let m = conn
            .copy_out(
                &format!("COPY (SELECT * FROM {table} ORDER BY a) TO STDOUT"),
                move |c| o.borrow_mut().extend_from_slice(c),
            )
            .await
            .unwrap();
        assert_eq!(m, 1_000_000);
        assert!(*out.borrow() == data, "COPY OUT differs from what went in");
    });
}

#[test]
fn a_bad_row_in_the_middle_of_a_copy_fails_that_call_and_the_connection_stays_usable() {
    run(async {
        let conn = connect().await;
        let table = unique("copy_bad");
        conn.execute(&format!("CREATE TEMP TABLE {table} (a int, b text)"), ())
            .await
            .unwrap();
        let mut data = rows_text(5000);
        data.extend_from_slice(b"not a number\tx\n");
        data.extend_from_slice(&rows_text(5000));
        // Queued behind the COPY: must wait for it, then run normally.
        let copy = conn.copy_in(&format!("COPY {table} FROM STDIN"), data);
        let after = conn.execute(&format!("SELECT count(*) FROM {table}"), ());
        let err = copy.await.unwrap_err();
        assert_eq!(err.code(), Some("22P02"));
        assert_eq!(after.await.unwrap().fetchone().unwrap().get::<_, i64>(0), 0);
        let n = conn
            .copy_in(
                &format!("COPY {table} FROM STDIN"),
                b"1\tone\n2\ttwo\n".to_vec(),
            )
            .await
            .unwrap();
        assert_eq!(n, 2);
    });
}

#[test]
fn a_failing_copy_source_aborts_the_copy_with_its_message() {
    run(async {
        let conn = connect().await;
        let table = unique("copy_abort");
        conn.execute(&format!("CREATE TEMP TABLE {table} (a int)"), ())
            .await
            .unwrap();
        let chunks = vec![
            Ok(bytes::Bytes::from_static(b"1\n")),
            Err("the producer gave up".to_owned()),
        ];
        let err = conn
            .copy_in_results(&format!("COPY {table} FROM STDIN"), chunks)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("57014"));
        assert!(err.to_string().contains("the producer gave up"), "{err}");
        conn.ping().await.unwrap();
    });
}

#[test]
fn copy_from_stdin_through_execute_is_refused_and_the_connection_stays_usable() {
    run(async {
        let conn = connect().await;
        let table = unique("copy_exec");
        conn.execute(&format!("CREATE TEMP TABLE {table} (a int)"), ())
            .await
            .unwrap();
        let err = conn
            .execute(&format!("COPY {table} FROM STDIN"), ())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("copy_in"), "{err}");
        conn.ping().await.unwrap();
    });
}

#[test]
fn pool_listener_keeps_receiving_across_a_server_restart_and_reports_the_gap() {
    let server = momoko_testpg::TestServer::start().expect("a private server");
    let dsn = server.info().dsn.clone();
    let server = Rc::new(server);
    run_for(90, async move {
        let pool = Pool::builder(&dsn)
            .size(1)
            .reconnect_interval(Duration::from_millis(200))
            .build()
            .unwrap()
            .connect()
            .await
            .unwrap();
        let got: Rc<RefCell<Vec<String>>> = Rc::default();
        let gaps = Rc::new(std::cell::Cell::new(0));
        let g = got.clone();
        pool.listen("events", move |n: &Notification| {
            g.borrow_mut().push(n.payload().to_owned())
        })
        .await
        .unwrap();
        let gp = gaps.clone();
        pool.on_notifications_missed(move || gp.set(gp.get() + 1));
        pool.execute("NOTIFY events, 'before'", ()).await.unwrap();
        wait_until(5, "the first notification", || got.borrow().len() == 1).await;

        server.restart(momoko_testpg::StopMode::Fast).unwrap();
        wait_until(20, "the listener to come back", || gaps.get() == 1).await;
        // The pool's own connection was found dead and reconnected too.
        wait_until(20, "the pool to reconnect", || pool.stats().free == 1).await;
        pool.execute("NOTIFY events, 'after'", ()).await.unwrap();
        wait_until(5, "the second notification", || got.borrow().len() == 2).await;
        assert_eq!(*got.borrow(), vec!["before".to_owned(), "after".to_owned()]);
        pool.close().unwrap();
    });
}

#[test]
fn a_batch_runs_every_statement_in_one_round_trip_all_or_nothing() {
    run(async {
        let conn = connect().await;
        let table = unique("batch");
        conn.execute(&format!("CREATE TEMP TABLE {table} (a int)"), ())
            .await
            .unwrap();
        let mut stmts: Vec<momoko::Statement> = (0..100i32)
            .map(|i| momoko::Statement::from((format!("INSERT INTO {table} VALUES (%s)"), (i,))))
            .collect();
        stmts.push(momoko::Statement::from(format!(
            "SELECT count(*), sum(a) FROM {table}"
        )));
        let cursors = conn.batch(stmts).await.unwrap();
        assert_eq!(cursors.len(), 101);
        assert_eq!(cursors[0].statusmessage(), Some("INSERT 0 1"));
        assert_eq!(cursors[0].rowcount(), 1);
        let mut last = cursors.into_iter().last().unwrap();
        let r = last.fetchone().unwrap();
        assert_eq!((r.get::<_, i64>(0), r.get::<_, i64>(1)), (100, 4950));

        // A failure anywhere rolls the whole batch back.
        let err = conn
            .batch(vec![
                format!("INSERT INTO {table} VALUES (1000)"),
                "SELECT 1/0".to_owned(),
                format!("INSERT INTO {table} VALUES (1001)"),
            ])
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("22012"));
        let mut c = conn
            .execute(&format!("SELECT count(*) FROM {table}"), ())
            .await
            .unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i64>(0), 100);
        assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
    });
}

#[test]
fn query_caches_prepared_statements_and_reprepares_when_the_result_type_changes() {
    run(async {
        let conn = connect().await;
        let table = unique("cached");
        conn.execute(&format!("CREATE TEMP TABLE {table} (a int)"), ())
            .await
            .unwrap();
        conn.execute(&format!("INSERT INTO {table} VALUES (1)"), ())
            .await
            .unwrap();
        let sql = format!("SELECT * FROM {table} WHERE a = $1");
        // First use: Parse and Bind pipelined, text results; then binary from the cache.
        for _ in 0..3 {
            let mut c = conn.query(&sql, (1i32,)).await.unwrap();
            let r = c.fetchone().unwrap();
            assert_eq!(r.len(), 1);
            assert_eq!(r.get::<_, i32>(0), 1);
        }
        conn.execute(
            &format!("ALTER TABLE {table} ADD COLUMN b text DEFAULT 'x'"),
            (),
        )
        .await
        .unwrap();
        // The cached plan's result type changed (0A000): prepared again, transparently.
        let mut c = conn.query(&sql, (1i32,)).await.unwrap();
        let r = c.fetchone().unwrap();
        assert_eq!(
            (r.get::<_, i32>(0), r.get::<_, String>(1)),
            (1, "x".to_owned())
        );
        // NULL parameters have no type of their own: the server infers it.
        let mut c = conn
            .query("SELECT $1::text IS NULL", (None::<String>,))
            .await
            .unwrap();
        assert!(c.fetchone().unwrap().get::<_, bool>(0));
        // A reconnect empties the server's statements; the cache notices.
        let mut c = conn.query("SELECT $1::int + 1", (1i32,)).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 2);
        conn.close();
        conn.connect().await.unwrap();
        let mut c = conn.query("SELECT $1::int + 1", (2i32,)).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 3);
        // The temporary table went with the old session: the statement's own error.
        let err = conn.query(&sql, (1i32,)).await.unwrap_err();
        assert_eq!(err.code(), Some("42P01"));
    });
}

#[test]
fn notices_reach_the_notice_handler_with_their_fields() {
    run(async {
        let got: Rc<RefCell<Vec<momoko::DbError>>> = Rc::default();
        let g = got.clone();
        let conn = Connection::builder(&dsn())
            .notice_handler(move |n| g.borrow_mut().push(n.clone()))
            .connect()
            .await
            .unwrap();
        conn.execute(
            "DO $$ BEGIN RAISE WARNING 'careful %', 42 USING HINT = 'look twice'; END $$",
            (),
        )
        .await
        .unwrap();
        let got = got.borrow();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].severity, "WARNING");
        assert_eq!(got[0].code, "01000");
        assert_eq!(got[0].message, "careful 42");
        assert_eq!(got[0].hint.as_deref(), Some("look twice"));
    });
}

#[test]
fn connect_timeout_fires_on_a_server_that_accepts_and_says_nothing() {
    // The kernel completes the handshake (backlog); nobody ever reads or writes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    run(async move {
        let start = Instant::now();
        let err = Connection::builder(&format!("host=127.0.0.1 port={port} user=u dbname=d"))
            .connect_timeout(Duration::from_millis(300))
            .connect()
            .await
            .unwrap_err();
        let took = start.elapsed();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert!(
            took >= Duration::from_millis(290) && took < Duration::from_secs(2),
            "{took:?}"
        );
        // libpq's keyword works the same way (whole seconds, at least 2).
        let start = Instant::now();
        let err = momoko::connect(&format!(
            "host=127.0.0.1 port={port} user=u dbname=d connect_timeout=2"
        ))
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(4),
            "{took:?}"
        );
        drop(listener);
    });
}
