//! A single Connection against a real server: Momoko's MomokoConnection* tests ported with
//! strict assertions, plus logins, sockets, pipelining and the hangs Momoko had.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::{dsn, refused_port, run, server, unique};
use momoko::{Connection, ErrorKind, Statement, TransactionStatus, Value};

async fn connect() -> Connection {
    momoko::connect(&dsn()).await.expect("connect")
}

fn ints(row: &momoko::Row) -> Vec<i64> {
    (0..row.len()).map(|i| row.get::<_, i64>(i)).collect()
}

/// Momoko's build_transaction_query.
fn transaction_statements() -> Vec<Statement> {
    vec![
        Statement::from("SELECT 1, 2, 3, 4;"),
        Statement::from("SELECT 5, 6, 7, 8;"),
        Statement::from("SELECT 9, 10, 11, 12;"),
        Statement::from((
            "SELECT %s+10, %s+10, %s+10, %s+10;",
            (3i32, 4i32, 5i32, 6i32),
        )),
        Statement::from("SELECT 17, 18, 19, 20;"),
        Statement::from((
            "SELECT %s+20, %s+20, %s+20, %s+20;",
            (1i32, 2i32, 3i32, 4i32),
        )),
    ]
}

fn check_transaction_cursors(cursors: Vec<momoko::Cursor>) {
    let got: Vec<Vec<i64>> = cursors
        .into_iter()
        .map(|mut c| ints(&c.fetchone().expect("a row")))
        .collect();
    assert_eq!(
        got,
        vec![
            vec![1, 2, 3, 4],
            vec![5, 6, 7, 8],
            vec![9, 10, 11, 12],
            vec![13, 14, 15, 16],
            vec![17, 18, 19, 20],
            vec![21, 22, 23, 24],
        ]
    );
}

#[test]
fn connect_resolves_to_an_open_connection_with_the_server_version() {
    run(async {
        let conn = connect().await;
        assert!(!conn.closed());
        let v = conn.server_version().expect("server_version");
        assert!(v >= 90000, "{v}");
        let mut c = conn.execute("SHOW server_version_num", ()).await.unwrap();
        let s: String = c.fetchone().unwrap().get(0);
        assert_eq!(s.parse::<i32>().unwrap(), v);
    });
}

#[test]
fn connect_to_a_refused_port_fails_with_a_connection_error() {
    run(async {
        let dsn = format!(
            "host=127.0.0.1 port={} dbname=db user=user password=x",
            refused_port()
        );
        let err = momoko::connect(&dsn).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Connection);
        assert!(err.to_string().contains("could not connect"), "{err}");
    });
}

#[test]
fn connect_to_a_missing_unix_socket_fails_with_a_connection_error() {
    run(async {
        let dsn = "host=/nonexistent/momoko port=5999 dbname=db user=user";
        let err = momoko::connect(dsn).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Connection);
        assert!(
            err.to_string()
                .contains("/nonexistent/momoko/.s.PGSQL.5999"),
            "{err}"
        );
    });
}

#[test]
fn a_bad_connection_string_fails_the_connect_future() {
    run(async {
        let err = momoko::connect("host=localhost frobnicate=1")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage);
        assert!(err.to_string().contains("frobnicate"), "{err}");
    });
}

#[test]
fn a_failed_connect_with_setsession_fails_instead_of_hanging() {
    run(async {
        let dsn = format!("host=127.0.0.1 port={} dbname=db user=user", refused_port());
        let err = Connection::builder(&dsn)
            .setsession(["SET TIME ZONE 'UTC'"])
            .connect()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Connection);
    });
}

#[test]
fn md5_and_scram_logins_work_and_a_wrong_password_says_28p01() {
    let s = server();
    let (Some(md5), Some(scram)) = (s.dsn_md5.clone(), s.dsn_scram.clone()) else {
        eprintln!("skipped: MOMOKO_TEST_DSN_MD5 / MOMOKO_TEST_DSN_SCRAM not given");
        return;
    };
    run(async move {
        for dsn in [&md5, &scram] {
            let conn = momoko::connect(dsn).await.expect(dsn);
            let mut c = conn.execute("SELECT current_user", ()).await.unwrap();
            let user: String = c.fetchone().unwrap().get(0);
            assert!(user.starts_with("momoko_"), "{user}");
        }
        for dsn in [&md5, &scram] {
            let bad = format!("{dsn} password=wrong");
            let err = momoko::connect(&bad).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Db, "{err}");
            assert_eq!(err.code(), Some("28P01"));
            assert!(
                err.to_string().contains("password authentication failed"),
                "{err}"
            );
        }
        let no_pw: String = md5
            .split_whitespace()
            .filter(|kv| !kv.starts_with("password="))
            .collect::<Vec<_>>()
            .join(" ");
        let err = momoko::connect(&format!("{no_pw} passfile=/nonexistent"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("asked for a password"), "{err}");
    });
}

#[test]
fn unix_socket_and_uri_forms_connect() {
    let s = server();
    let mut dsns = vec![format!(
        "postgresql://{}@{}:{}/{}",
        "momoko", s.host, s.port, s.dbname
    )];
    if let Some(u) = &s.dsn_unix {
        dsns.push(u.clone());
    }
    if !s.own {
        dsns.truncate(0);
        dsns.extend(s.dsn_unix.clone());
    }
    run(async move {
        for dsn in dsns {
            let conn = momoko::connect(&dsn).await.expect(&dsn);
            let mut c = conn.execute("SELECT 41 + 1", ()).await.unwrap();
            assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 42);
        }
    });
}

#[test]
fn execute_returns_the_row() {
    run(async {
        let conn = connect().await;
        let mut c = conn.execute("SELECT 1, 2, 3", ()).await.unwrap();
        let rows = c.fetchall();
        assert_eq!(rows.len(), 1);
        assert_eq!(ints(&rows[0]), vec![1, 2, 3]);
    });
}

#[test]
fn percent_sign_is_literal_without_parameters() {
    run(async {
        let conn = connect().await;
        let mut c = conn.execute("SELECT 'a%s'", ()).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, String>(0), "a%s");
        let mut c = conn.execute("SELECT 'a%%' || %s", ("b",)).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, String>(0), "a%b");
    });
}

#[test]
fn ping_resolves() {
    run(async {
        let conn = connect().await;
        conn.ping().await.unwrap();
    });
}

#[test]
fn large_query_round_trips_100k_characters_five_times() {
    run(async {
        let conn = connect().await;
        let table = unique("large_query");
        conn.execute(
            &format!("CREATE TEMP TABLE {table} (id serial NOT NULL, name varchar, data text)"),
            (),
        )
        .await
        .unwrap();
        let alphabet: Vec<char> =
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
                .chars()
                .collect();
        let mut seed = 0x2545F4914F6CDD1Du64;
        for _ in 0..5 {
            let data: String = (0..100_000)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    alphabet[(seed % alphabet.len() as u64) as usize]
                })
                .collect();
            let mut c = conn
                .execute(
                    &format!("INSERT INTO {table} (data) VALUES (%s) RETURNING data;"),
                    (data.as_str(),),
                )
                .await
                .unwrap();
            assert_eq!(c.fetchone().unwrap().get::<_, String>(0), data);
        }
        let mut c = conn
            .execute(&format!("SELECT COUNT(*) FROM {table}"), ())
            .await
            .unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i64>(0), 5);
    });
}

#[test]
fn transaction_returns_one_cursor_per_statement() {
    run(async {
        let conn = connect().await;
        let cursors = conn.transaction(transaction_statements()).await.unwrap();
        check_transaction_cursors(cursors);
        assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
    });
}

#[test]
fn unicode_transaction_returns_one_cursor_per_statement() {
    run(async {
        let conn = connect().await;
        let cursors = conn
            .transaction(vec![
                Statement::from("SELECT 'ünïcödé', '日本語'"),
                Statement::from(("SELECT %s", ("€uro",))),
            ])
            .await
            .unwrap();
        let got: Vec<Vec<String>> = cursors
            .into_iter()
            .map(|mut c| {
                let r = c.fetchone().unwrap();
                (0..r.len()).map(|i| r.get::<_, String>(i)).collect()
            })
            .collect();
        assert_eq!(
            got,
            vec![
                vec!["ünïcödé".to_owned(), "日本語".to_owned()],
                vec!["€uro".to_owned()]
            ]
        );
    });
}

#[test]
fn transaction_rollback_undoes_the_insert_and_returns_the_error() {
    run(async {
        let conn = connect().await;
        let table = unique("tx");
        conn.execute(
            &format!("CREATE TEMP TABLE {table} (id serial, data text)"),
            (),
        )
        .await
        .unwrap();
        let err = conn
            .transaction(vec![
                Statement::from((
                    format!("INSERT INTO {table} (data) VALUES (%s);"),
                    ("x".repeat(100),),
                )),
                Statement::from("SELECT DOES NOT WORK!;"),
            ])
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Db);
        assert_eq!(err.code(), Some("42601"));
        let mut c = conn
            .execute(&format!("SELECT COUNT(*) FROM {table}"), ())
            .await
            .unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i64>(0), 0);
        assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
    });
}

#[test]
fn a_bad_parameter_in_a_transaction_fails_it_before_anything_is_sent() {
    run(async {
        let conn = connect().await;
        let err = conn
            .transaction(vec![
                Statement::from("SELECT 1"),
                Statement::from(("SELECT %s, %s", (1i32,))),
            ])
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage);
        assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
        assert_eq!(conn.in_flight(), 0);
        conn.ping().await.unwrap();
    });
}

#[test]
fn transaction_without_auto_rollback_leaves_the_failed_transaction_open() {
    run(async {
        let conn = connect().await;
        let err = conn
            .transaction_with(
                vec![Statement::from("SELECT 1"), Statement::from("SELECT nope")],
                false,
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("42703"));
        assert_eq!(conn.transaction_status(), TransactionStatus::InError);
        conn.execute("ROLLBACK", ()).await.unwrap();
        let cursors = conn
            .transaction_with(transaction_statements(), false)
            .await
            .unwrap();
        check_transaction_cursors(cursors);
    });
}

#[test]
fn hstore_decodes_and_encodes_maps() {
    run(async {
        let conn = connect().await;
        conn.register_hstore().await.unwrap();
        let mut c = conn
            .execute("SELECT 'a=>b, c=>d'::hstore;", ())
            .await
            .unwrap();
        let h: HashMap<String, Option<String>> = c.fetchone().unwrap().get(0);
        let expected: HashMap<String, Option<String>> = [("a", "b"), ("c", "d")]
            .map(|(k, v)| (k.to_owned(), Some(v.to_owned())))
            .into();
        assert_eq!(h, expected);
        let sent: HashMap<String, Option<String>> = [("e", Some("f")), ("g", None)]
            .map(|(k, v)| (k.to_owned(), v.map(str::to_owned)))
            .into();
        let mut c = conn.execute("SELECT %s;", (sent.clone(),)).await.unwrap();
        let got: HashMap<String, Option<String>> = c.fetchone().unwrap().get(0);
        assert_eq!(got, sent);
    });
}

#[cfg(feature = "json")]
#[test]
fn json_decodes_to_serde_values() {
    run(async {
        let conn = connect().await;
        conn.register_json().await.unwrap();
        let mut c = conn
            .execute(
                r#"SELECT '{"a": "b", "c": "d"}'::json, '[1, null]'::jsonb"#,
                (),
            )
            .await
            .unwrap();
        let row = c.fetchone().unwrap();
        let j: serde_json::Value = row.get(0);
        assert_eq!(j, serde_json::json!({"a": "b", "c": "d"}));
        let jb: serde_json::Value = row.get(1);
        assert_eq!(jb, serde_json::json!([1, null]));
    });
}

async fn create_functions(conn: &Connection) {
    conn.transaction(vec![
        "SELECT pg_advisory_xact_lock(4242)",
        "CREATE OR REPLACE FUNCTION unit_test_callproc(n integer) RETURNS integer AS $$ BEGIN RETURN n*n; END; $$ LANGUAGE plpgsql",
        "CREATE OR REPLACE FUNCTION unit_test_callproc_noparams() RETURNS integer AS $$ BEGIN RETURN 42; END; $$ LANGUAGE plpgsql",
    ])
    .await
    .unwrap();
}

#[test]
fn callproc_calls_the_function_with_parameters_and_without() {
    run(async {
        let conn = connect().await;
        create_functions(&conn).await;
        let mut c = conn.callproc("unit_test_callproc", (64i32,)).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 4096);
        let mut c = conn
            .callproc("unit_test_callproc_noparams", ())
            .await
            .unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 42);
        let named = momoko::named([("n", Value::from(3i32))]);
        let mut c = conn.callproc("unit_test_callproc", named).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 9);
    });
}

#[test]
fn query_error_is_a_db_error_with_sqlstate_and_the_connection_stays_usable() {
    run(async {
        let conn = connect().await;
        let err = conn
            .execute("SELECT DOES NOT WORK!;", ())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Db);
        assert_eq!(err.code(), Some("42601"));
        let db = err.as_db_error().unwrap();
        assert_eq!(db.severity, "ERROR");
        assert!(db.position.is_some());
        conn.ping().await.unwrap();
    });
}

#[test]
fn mogrify_quotes_as_psycopg2_and_the_result_runs() {
    run(async {
        let conn = connect().await;
        let sql = conn
            .mogrify("SELECT %s, %s;", ("'\"test\"'", "SELECT 1;"))
            .unwrap();
        assert_eq!(sql, "SELECT '''\"test\"''', 'SELECT 1;';");
        let mut c = conn.execute(&sql, ()).await.unwrap();
        let row = c.fetchone().unwrap();
        assert_eq!(row.get::<_, String>(0), "'\"test\"'");
        assert_eq!(row.get::<_, String>(1), "SELECT 1;");
    });
}

#[test]
fn mogrify_with_a_malformed_placeholder_is_a_usage_error() {
    run(async {
        let conn = connect().await;
        let mut m = BTreeMap::new();
        m.insert("foo".to_owned(), Value::from("bar"));
        let err = conn.mogrify("SELECT %(foos;", m).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage);
    });
}

#[test]
fn server_side_cursor_fetches_in_chunks_of_ten() {
    run(async {
        let conn = connect().await;
        let table = unique("ints");
        conn.execute(&format!("CREATE TEMP TABLE {table} (id integer)"), ())
            .await
            .unwrap();
        let values: Vec<String> = (0..1000).map(|i| format!("({i})")).collect();
        conn.transaction(vec![format!(
            "INSERT INTO {table} VALUES {}",
            values.join(",")
        )])
        .await
        .unwrap();
        common::fetch_all_ints_in_chunks(&conn, &table).await;
    });
}

#[test]
fn every_setsession_statement_runs_wherever_the_set_is() {
    run(async {
        let mut setsession: std::collections::VecDeque<String> =
            ["", "SELECT 1", "SELECT 2"].map(str::to_owned).into();
        for (i, tz) in ["UTC", "Israel", "Australia/Melbourne"].iter().enumerate() {
            setsession[i] = format!("SET TIME ZONE '{tz}'");
            let conn = Connection::builder(&dsn())
                .setsession(setsession.iter().cloned())
                .connect()
                .await
                .unwrap();
            let mut c = conn
                .execute("SELECT current_setting('TIMEZONE');", ())
                .await
                .unwrap();
            assert_eq!(c.fetchone().unwrap().get::<_, String>(0), *tz);
            conn.close();
            setsession.rotate_right(1);
        }
    });
}

#[test]
fn a_failing_setsession_statement_fails_the_connect_with_its_error() {
    run(async {
        let err = Connection::builder(&dsn())
            .setsession(["SET TIME ZONE 'UTC'", "SELECT no_such_column"])
            .connect()
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("42703"));
    });
}

#[test]
fn row_to_map_is_the_real_dict_cursor_row() {
    run(async {
        let conn = connect().await;
        let mut c = conn
            .execute("SELECT 1 AS a, 'x' AS b, NULL::int AS c", ())
            .await
            .unwrap();
        let m = c.fetchone().unwrap().to_map();
        let mut expected = BTreeMap::new();
        expected.insert("a".to_owned(), Value::from(1i32));
        expected.insert("b".to_owned(), Value::from("x"));
        expected.insert("c".to_owned(), Value::Null);
        assert_eq!(m, expected);
    });
}

#[test]
fn cursor_reports_description_rowcount_and_status() {
    run(async {
        let conn = connect().await;
        let mut c = conn
            .execute("SELECT generate_series(1, 10) AS i", ())
            .await
            .unwrap();
        assert_eq!(c.rowcount(), 10);
        assert_eq!(c.statusmessage(), Some("SELECT 10"));
        let d = c.description().unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].name(), "i");
        assert_eq!(d[0].type_oid(), 23);
        assert_eq!(c.fetchone().unwrap().get::<_, i32>("i"), 1);
        assert_eq!(c.fetchmany(3).len(), 3);
        assert_eq!(c.fetchall().len(), 6);
        assert!(c.fetchone().is_none());
        let c = conn
            .execute("SET application_name = 'x'", ())
            .await
            .unwrap();
        assert!(c.description().is_none());
        assert_eq!(c.statusmessage(), Some("SET"));
        assert_eq!(c.rowcount(), -1);
    });
}

#[test]
fn multi_statement_query_yields_the_last_result() {
    run(async {
        let conn = connect().await;
        let mut c = conn.execute("SELECT 1; SELECT 2, 3", ()).await.unwrap();
        assert_eq!(ints(&c.fetchone().unwrap()), vec![2, 3]);
    });
}

#[test]
fn a_thousand_pipelined_executes_are_answered_in_order_with_one_failure_among_them() {
    run(async {
        let conn = connect().await;
        let futures: Vec<_> = (0..1000i32)
            .map(|i| {
                if i == 500 {
                    conn.execute("SELECT 1/0", ())
                } else {
                    conn.execute("SELECT %s", (i,))
                }
            })
            .collect();
        assert!(conn.in_flight() >= 999);
        for (i, f) in futures.into_iter().enumerate() {
            match f.await {
                Ok(mut c) => assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), i as i32),
                Err(e) => {
                    assert_eq!(i, 500);
                    assert_eq!(e.code(), Some("22012"));
                }
            }
        }
    });
}

#[test]
fn close_fails_requests_in_flight_and_later_ones() {
    run(async {
        let conn = connect().await;
        let slow = conn.execute("SELECT pg_sleep(5)", ());
        conn.close();
        assert!(conn.closed());
        let err = slow.await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Connection);
        let err = conn.execute("SELECT 1", ()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Connection);
        assert!(err.to_string().contains("closed"), "{err}");
        // Closing twice is harmless; reconnecting works.
        conn.close();
        conn.connect().await.unwrap();
        conn.ping().await.unwrap();
    });
}

#[test]
fn close_answers_what_was_in_flight_from_the_loop_not_inside_the_call() {
    run(async {
        let conn = connect().await;
        let slow = conn.execute("SELECT pg_sleep(5)", ());
        conn.close();
        // The socket is gone at once, but the answer comes from the loop's next turn, like
        // every other answer: code after `close()` runs before any completion does.
        assert!(conn.closed());
        assert!(!slow.done(), "close() answered the request inside the call");
        let err = slow.await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Connection);
    });
}

#[test]
fn execute_before_connect_is_a_usage_error() {
    run(async {
        let conn = Connection::new(&dsn());
        let err = conn.execute("SELECT 1", ()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage);
        assert!(conn.closed());
    });
}

#[test]
fn requests_made_while_connecting_wait_for_the_connection() {
    run(async {
        let conn = Connection::new(&dsn());
        let connecting = conn.connect();
        let f = conn.execute("SELECT %s::int", (5i32,));
        connecting.await.unwrap();
        assert_eq!(f.await.unwrap().fetchone().unwrap().get::<_, i32>(0), 5);
    });
}

#[test]
fn placeholder_mistakes_are_usage_errors_and_send_nothing() {
    run(async {
        let conn = connect().await;
        for (q, n) in [
            ("SELECT %s, %s", 1usize),
            ("SELECT %s", 2),
            ("SELECT %d", 1),
        ] {
            let params: Vec<Value> = (0..n as i64).map(Value::from).collect();
            let err = conn.execute(q, params).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Usage, "{q}: {err}");
        }
        let err = conn.execute("SELECT %s", ("a\0b",)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage);
        assert_eq!(conn.in_flight(), 0);
        conn.ping().await.unwrap();
    });
}

#[test]
fn a_server_side_termination_fails_the_request_and_closes_the_connection() {
    run(async {
        let conn = connect().await;
        let killer = connect().await;
        let pid = conn.backend_pid().unwrap();
        let slow = conn.execute("SELECT pg_sleep(10)", ());
        // Give the sleep time to start.
        killer.execute("SELECT pg_sleep(0.2)", ()).await.unwrap();
        killer
            .execute("SELECT pg_terminate_backend(%s)", (pid,))
            .await
            .unwrap();
        let err = slow.await.unwrap_err();
        assert!(err.is_connection_lost(), "{err:?}");
        assert_eq!(err.code(), Some("57P01"));
        assert!(conn.closed());
    });
}

/// Round-trips every value through `SELECT %s` and checks the decoded value equals it.
async fn round_trip_table(conn: &Connection) {
    let big = "x".repeat(1 << 20);
    let big_bytes: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
    let strings = [
        "",
        "plain",
        "ünïcødé ✓ 日本語 🎉",
        "it's",
        "''",
        "back\\slash",
        "\\x41",
        "E'\\''",
        "$$dollar$$",
        "-- comment",
        "/* c */",
        "tab\tnew\nline\r",
        big.as_str(),
    ];
    for s in strings {
        let mut c = conn.execute("SELECT %s", (s,)).await.unwrap();
        let got: String = c.fetchone().unwrap().get(0);
        assert!(got == s, "string of {} bytes did not round-trip", s.len());
    }
    for b in [Vec::new(), vec![0u8, 39, 92, 255], big_bytes] {
        let mut c = conn.execute("SELECT %s", (b.clone(),)).await.unwrap();
        let got: Vec<u8> = c.fetchone().unwrap().get(0);
        assert!(got == b, "bytea of {} bytes did not round-trip", b.len());
    }
    let mut c = conn
        .execute("SELECT %s::int", (None::<i32>,))
        .await
        .unwrap();
    assert_eq!(c.fetchone().unwrap().get::<_, Option<i32>>(0), None);
    for v in [i64::MIN, -1, 0, i64::MAX] {
        let mut c = conn.execute("SELECT %s", (v,)).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i64>(0), v);
    }
    for v in [0.1f64, -2.5e300, f64::INFINITY, f64::NEG_INFINITY] {
        let mut c = conn.execute("SELECT %s", (v,)).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, f64>(0), v);
    }
    let mut c = conn.execute("SELECT %s", (f64::NAN,)).await.unwrap();
    assert!(c.fetchone().unwrap().get::<_, f64>(0).is_nan());
    let arr = vec![Some(1i32), None, Some(3)];
    let mut c = conn
        .execute("SELECT %s::int[]", (arr.clone(),))
        .await
        .unwrap();
    assert_eq!(c.fetchone().unwrap().get::<_, Vec<Option<i32>>>(0), arr);
    let nested = Value::Array(vec![
        Value::Array(vec![Value::from(1i32), Value::from(2i32)]),
        Value::Array(vec![Value::Null, Value::from(4i32)]),
    ]);
    let mut c = conn
        .execute("SELECT %s::int[]", (nested.clone(),))
        .await
        .unwrap();
    assert_eq!(c.fetchone().unwrap().get::<_, Value>(0), nested);
    let texts = vec![
        Some("a,b".to_owned()),
        None,
        Some("q\"uote\\".to_owned()),
        Some(String::new()),
    ];
    let mut c = conn
        .execute("SELECT %s::text[]", (texts.clone(),))
        .await
        .unwrap();
    assert_eq!(
        c.fetchone().unwrap().get::<_, Vec<Option<String>>>(0),
        texts
    );
    let h: HashMap<String, Option<String>> = [
        ("k".to_owned(), Some("v".to_owned())),
        ("null".to_owned(), None),
        ("q\"'\\".to_owned(), Some("=>,".to_owned())),
    ]
    .into();
    let mut c = conn.execute("SELECT %s", (h.clone(),)).await.unwrap();
    assert_eq!(
        c.fetchone()
            .unwrap()
            .get::<_, HashMap<String, Option<String>>>(0),
        h
    );
}

#[test]
fn values_round_trip_with_standard_conforming_strings_on_and_off() {
    run(async {
        let conn = connect().await;
        conn.register_hstore().await.unwrap();
        round_trip_table(&conn).await;
        conn.execute("SET standard_conforming_strings = off", ())
            .await
            .unwrap();
        assert_eq!(
            conn.parameter("standard_conforming_strings").as_deref(),
            Some("off")
        );
        round_trip_table(&conn).await;
        let off = Connection::builder(&dsn())
            .setsession(["SET standard_conforming_strings = off"])
            .connect()
            .await
            .unwrap();
        off.register_hstore().await.unwrap();
        round_trip_table(&off).await;
    });
}

#[test]
fn a_transaction_statement_with_several_commands_still_works() {
    run(async {
        let conn = connect().await;
        let cursors = conn
            .transaction(vec!["SELECT 1; SELECT 2", "SELECT 3"])
            .await
            .unwrap();
        let got: Vec<i32> = cursors
            .into_iter()
            .map(|mut c| c.fetchone().unwrap().get(0))
            .collect();
        assert_eq!(got, vec![2, 3]);
        assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
    });
}

#[test]
fn requests_pipelined_behind_a_failed_transaction_run_outside_it() {
    run(async {
        let conn = connect().await;
        let tx = conn.transaction(vec!["SELECT 1", "SELECT 1/0", "SELECT 3"]);
        let after = conn.execute("SELECT 4", ());
        assert_eq!(tx.await.unwrap_err().code(), Some("22012"));
        assert_eq!(after.await.unwrap().fetchone().unwrap().get::<_, i32>(0), 4);
        assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
    });
}

/// The message of a future's error, once the loop completed it.
async fn error_of<T: 'static>(f: momoko::ioloop::Future<Result<T, momoko::Error>>) -> String {
    match f.await {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("{:?}: {e}", e.kind()),
    }
}

#[test]
fn requests_that_fail_before_they_are_sent_complete_from_the_loop_not_inside_the_call() {
    run(async {
        let conn = connect().await;
        let st = conn.prepare("SELECT $1::int").await.unwrap();
        conn.close_prepared(&st).await.unwrap();
        let execute = conn.execute("SELECT %d", (1,));
        let callproc = conn.callproc("f%d", (1,));
        let transaction = conn.transaction(vec![Statement::from(("SELECT %s", (1, 2)))]);
        let batch = conn.batch(Vec::<Statement>::new());
        let query = conn.query("SELECT $1::int", (1, 2));
        let prepared = conn.execute_prepared(&st, (1, 2));
        let closed_again = conn.close_prepared(&st);
        // None is done inside its call: each completes from the loop, in request order.
        let done = [
            execute.done(),
            callproc.done(),
            transaction.done(),
            batch.done(),
            query.done(),
            prepared.done(),
            closed_again.done(),
        ];
        assert_eq!(done, [false; 7]);
        let usage = "Usage: usage error:";
        assert_eq!(
            error_of(execute).await,
            format!("{usage} unsupported format character 'd' (0x64) at index 8")
        );
        assert_eq!(
            error_of(callproc).await,
            format!("{usage} unsupported format character 'd' (0x64) at index 16")
        );
        assert_eq!(
            error_of(transaction).await,
            format!("{usage} not all arguments converted during string formatting: 2 parameters given, 1 placeholders")
        );
        assert_eq!(batch.await.unwrap().len(), 0);
        let count = format!("{usage} the statement takes 1 parameter but 2 were given");
        assert_eq!(error_of(query).await, count);
        assert_eq!(error_of(prepared).await, count);
        closed_again.await.unwrap();

        // Closed: requests and a cancel fail from the loop too.
        conn.close();
        let execute = conn.execute("SELECT 1", ());
        let ping = conn.ping();
        let cancel = conn.cancel();
        assert_eq!([execute.done(), ping.done(), cancel.done()], [false; 3]);
        let closed = "Connection: connection error: the connection is closed: the connection was closed by the client";
        assert_eq!(error_of(execute).await, closed);
        assert_eq!(error_of(ping).await, closed);
        assert_eq!(
            error_of(cancel).await,
            "Connection: connection error: the connection is not established: nothing to cancel"
        );
    });
}

#[test]
fn requests_on_a_connection_whose_connect_failed_complete_from_the_loop() {
    run(async {
        let dsn = format!("host=127.0.0.1 port={} user=u dbname=d", refused_port());
        let conn = Connection::new(&dsn);
        assert!(conn.connect().await.is_err());
        let execute = conn.execute("SELECT 1", ());
        let bad = conn.execute("SELECT %d", (1,));
        assert_eq!([execute.done(), bad.done()], [false; 2]);
        let e = error_of(execute).await;
        assert!(
            e.starts_with("Connection: connection error: the connection failed to connect"),
            "{e}"
        );
        assert_eq!(
            error_of(bad).await,
            "Usage: usage error: unsupported format character 'd' (0x64) at index 8"
        );
    });
}

#[test]
fn a_connection_string_refused_before_any_io_fails_the_connect_future_from_the_loop() {
    run(async {
        let fut = Connection::new("host=localhost frobnicate=1").connect();
        assert!(!fut.done());
        let err = fut.await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage);
        assert!(err.to_string().contains("frobnicate"), "{err}");
    });
}
