//! What a caller gets back from a real server besides values: `Cursor::one` and
//! `Cursor::one_or_none` on results of 0, 1 and 2 rows, SQLSTATEs compared through
//! `momoko::sqlstate`, and the statement cache keeping the statements in use.

mod common;

use common::{dsn, run};
use momoko::{sqlstate, Connection, ErrorKind, Row};

async fn connect() -> Connection {
    momoko::connect(&dsn()).await.expect("connect")
}

const NO_ROWS: &str = "SELECT n FROM generate_series(1, 0) AS n";
const ONE_ROW: &str = "SELECT n FROM generate_series(1, 1) AS n";
const TWO_ROWS: &str = "SELECT n FROM generate_series(1, 2) AS n";

#[test]
fn one_returns_the_only_row_and_refuses_none_or_two() {
    run(async {
        let conn = connect().await;
        let row: Row = conn.execute("SELECT 1", ()).await.unwrap().one().unwrap();
        assert_eq!(row.get::<_, i32>(0), 1);
        let row = conn.query(ONE_ROW, ()).await.unwrap().one().unwrap();
        assert_eq!(row.get::<_, i32>("n"), 1);

        let e = conn.execute(NO_ROWS, ()).await.unwrap().one().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RowCount);
        assert_eq!(
            e.to_string(),
            "unexpected row count: expected exactly one row, got none"
        );
        let e = conn.execute(TWO_ROWS, ()).await.unwrap().one().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RowCount);
        assert_eq!(
            e.to_string(),
            "unexpected row count: expected exactly one row, got 2 rows, more than one"
        );
        // A statement without a result set has no row to give.
        let e = conn
            .execute("SET search_path = public", ())
            .await
            .unwrap()
            .one();
        assert_eq!(
            e.unwrap_err().to_string(),
            "unexpected row count: expected exactly one row, got none: the statement returns \
             no rows (SET)"
        );
        // The connection is untouched by these errors.
        assert_eq!(
            conn.execute("SELECT 7", ())
                .await
                .unwrap()
                .one()
                .unwrap()
                .get::<_, i32>(0),
            7
        );
    });
}

#[test]
fn one_or_none_returns_the_row_or_none_and_refuses_two() {
    run(async {
        let conn = connect().await;
        let none: Option<Row> = conn
            .execute("SELECT 1 WHERE false", ())
            .await
            .unwrap()
            .one_or_none()
            .unwrap();
        assert!(none.is_none());
        assert!(conn
            .query(NO_ROWS, ())
            .await
            .unwrap()
            .one_or_none()
            .unwrap()
            .is_none());
        let row = conn
            .execute(ONE_ROW, ())
            .await
            .unwrap()
            .one_or_none()
            .unwrap();
        assert_eq!(row.expect("a row").get::<_, i32>(0), 1);
        let e = conn
            .execute(TWO_ROWS, ())
            .await
            .unwrap()
            .one_or_none()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RowCount);
        assert_eq!(
            e.to_string(),
            "unexpected row count: expected at most one row, got 2 rows, more than one"
        );
    });
}

#[test]
fn one_counts_only_the_rows_not_fetched_yet() {
    run(async {
        let conn = connect().await;
        let mut c = conn.execute(TWO_ROWS, ()).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 1);
        assert_eq!(c.one().unwrap().get::<_, i32>(0), 2);
    });
}

#[test]
fn server_errors_compare_equal_to_their_sqlstate_names() {
    run(async {
        let conn = connect().await;
        let e = conn.execute("SELECT * FROM nowhere", ()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Db);
        assert_eq!(e.code(), Some(sqlstate::UNDEFINED_TABLE));
        assert_eq!(e.code(), Some("42P01"));
        let e = conn.query("SELECT 1/0", ()).await.unwrap_err();
        assert_eq!(e.code(), Some(sqlstate::DIVISION_BY_ZERO));
        let e = conn
            .execute("SELECT * FROM pg_class WHERE", ())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(sqlstate::SYNTAX_ERROR));
        let e = conn
            .execute("SET statement_timeout = '1ms'; SELECT pg_sleep(1)", ())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(sqlstate::QUERY_CANCELED));
    });
}

/// The name and text of each statement prepared in the connection's server session (read
/// with `execute`, which prepares nothing).
async fn prepared(conn: &Connection) -> Vec<(String, String)> {
    conn.execute(
        "SELECT name, statement FROM pg_prepared_statements ORDER BY prepare_time, name",
        (),
    )
    .await
    .unwrap()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[test]
fn a_hot_statement_stays_prepared_through_a_stream_of_one_off_statements() {
    run(async {
        let conn = Connection::builder(&dsn())
            .statement_cache_size(4)
            .connect()
            .await
            .unwrap();
        const HOT: &str = "SELECT $1::int + 1 AS hot";
        assert_eq!(
            conn.query(HOT, (1,))
                .await
                .unwrap()
                .one()
                .unwrap()
                .get::<_, i32>(0),
            2
        );
        let hot_name = |list: &[(String, String)]| {
            list.iter()
                .find(|(_, text)| text == HOT)
                .map(|(name, _)| name.clone())
        };
        let first = hot_name(&prepared(&conn).await).expect("the hot statement is prepared");
        // Twenty statements used once each, five times the cache, the hot one between them.
        for i in 0..20 {
            let one_off = format!("SELECT $1::int + {i} AS one_off");
            conn.query(&one_off, (i,)).await.unwrap();
            let got: i32 = conn.query(HOT, (i,)).await.unwrap().one().unwrap().get(0);
            assert_eq!(got, i + 1);
        }
        let now = prepared(&conn).await;
        assert_eq!(
            hot_name(&now).as_deref(),
            Some(first.as_str()),
            "the hot statement was never closed and prepared again: {now:?}"
        );
        assert_eq!(now.len(), 4, "the cache holds 4 statements: {now:?}");
        // The three others are the most recent one-offs.
        let mut others: Vec<&str> = now
            .iter()
            .filter(|(_, t)| t != HOT)
            .map(|(_, t)| t.as_str())
            .collect();
        others.sort_unstable();
        assert_eq!(
            others,
            [
                "SELECT $1::int + 17 AS one_off",
                "SELECT $1::int + 18 AS one_off",
                "SELECT $1::int + 19 AS one_off"
            ]
        );
    });
}
