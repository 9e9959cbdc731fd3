//! Values read back from a real server in both result formats: the text of `execute` (simple
//! protocol) and of a first `query` call, and the binary of `execute_prepared` and of a
//! cached `query`. Text arrays must keep non-ASCII spaces, and integers of any width must
//! read into any Rust integer type that holds the value.

mod common;

use std::collections::HashMap;

use common::{dsn, run};
use momoko::{Connection, ErrorKind, Row, ToSql, Value};

async fn connect() -> Connection {
    momoko::connect(&dsn()).await.expect("connect")
}

/// The first row of one query run every way momoko runs a query, each with the format its
/// columns came in: `pct_sql` takes `%s` parameters (execute), `dollar_sql` the same ones as
/// `$1`, `$2`… (query, prepare).
async fn every_way(
    conn: &Connection,
    pct_sql: &str,
    dollar_sql: &str,
    params: &[&dyn ToSql],
) -> Vec<(&'static str, i16, Row)> {
    let values: Vec<Value> = params.iter().map(|p| p.to_value()).collect();
    let first = |mut c: momoko::Cursor| c.fetchone().expect("a row");
    let mut out = Vec::new();
    let text = first(conn.execute(pct_sql, values.clone()).await.unwrap());
    out.push(("execute", 0, text));
    let uncached = first(conn.query(dollar_sql, values.clone()).await.unwrap());
    out.push(("query (first call)", 0, uncached));
    let cached = first(conn.query(dollar_sql, values.clone()).await.unwrap());
    out.push(("query (cached)", 1, cached));
    let st = conn.prepare(dollar_sql).await.unwrap();
    let prepared = first(conn.execute_prepared(&st, values).await.unwrap());
    out.push(("execute_prepared", 1, prepared));
    for (how, format, row) in &out {
        for c in row.columns() {
            assert_eq!(
                c.format(),
                *format,
                "{how}: the format of column {}",
                c.name()
            );
        }
    }
    out
}

/// Strings with spaces PostgreSQL's array_out does not quote (every non-ASCII one), and some
/// it does (ASCII whitespace, `\v` included).
fn spaced() -> Vec<String> {
    [
        "\u{a0}x\u{a0}",
        "\u{2028}y",
        "z\u{3000}",
        " a ",
        "\u{85}nel\u{85}",
        "\u{feff}",
        "\u{2003}\u{2003}",
        "\x0bv\x0b",
        "\tt\n",
    ]
    .map(str::to_owned)
    .to_vec()
}

#[test]
fn text_array_elements_keep_non_ascii_spaces_in_both_formats() {
    run(async {
        let conn = connect().await;
        // The first four as the issue reported them, written by the server itself.
        let literal = "ARRAY[E'\\u00a0x\\u00a0', E'\\u2028y', E'z\\u3000', ' a ']::text[]";
        let want: Vec<String> = spaced()[..4].to_vec();
        let sql = format!("SELECT {literal}");
        for (how, _, row) in every_way(&conn, &sql, &sql, &[]).await {
            assert_eq!(row.get::<_, Vec<String>>(0), want, "{how}");
            let as_value = Value::Array(want.iter().map(|s| Value::from(s.as_str())).collect());
            assert_eq!(row.get_value(0), as_value, "{how}");
        }

        // Every string, built here and sent as a parameter: as an array, the first alone as
        // text, and some in a two-dimensional array.
        let all = spaced();
        let rows = every_way(
            &conn,
            "SELECT %s::text[], %s::text, %s::text[][]",
            "SELECT $1::text[], $2::text, $3::text[][]",
            &[&all, &all[0], &vec![all[..2].to_vec(), all[2..4].to_vec()]],
        )
        .await;
        for (how, _, row) in rows {
            assert_eq!(row.get::<_, Vec<String>>(0), all, "{how}");
            assert_eq!(row.get::<_, Vec<Option<String>>>(0).len(), all.len());
            assert_eq!(row.get::<_, String>(1), all[0], "{how}");
            assert_eq!(
                row.get::<_, Vec<Vec<String>>>(2),
                vec![all[..2].to_vec(), all[2..4].to_vec()],
                "{how}"
            );
        }
    });
}

#[test]
fn text_array_elements_match_the_server_one_by_one() {
    run(async {
        let conn = connect().await;
        for s in spaced() {
            let arr = vec![s.clone()];
            let mut c = conn
                .execute(
                    "SELECT %s::text[], (%s::text[])[1] = %s, octet_length((%s::text[])[1])",
                    (&arr, &arr, &s, &arr),
                )
                .await
                .unwrap();
            let row = c.fetchone().unwrap();
            assert_eq!(row.get::<_, Vec<String>>(0), arr, "{s:?}");
            assert!(row.get::<_, bool>(1), "the server holds {s:?}");
            assert_eq!(row.get::<_, i32>(2) as usize, s.len(), "{s:?}");
        }
    });
}

#[test]
fn hstore_keys_and_values_keep_non_ascii_spaces() {
    run(async {
        let conn = connect().await;
        conn.register_hstore().await.unwrap();
        let mut sent: HashMap<String, Option<String>> = HashMap::new();
        for (i, s) in spaced().into_iter().enumerate() {
            sent.insert(format!("{s}{i}"), Some(s));
        }
        sent.insert("\u{a0}".to_owned(), None);
        let mut c = conn.execute("SELECT %s", (&sent,)).await.unwrap();
        let got: HashMap<String, Option<String>> = c.fetchone().unwrap().get(0);
        assert_eq!(got, sent, "execute");
        // Sent as a binary parameter; hstore's OID is assigned at run time, so its result
        // comes back as text.
        let st = conn.prepare("SELECT $1::hstore").await.unwrap();
        let mut c = conn.execute_prepared(&st, (&sent,)).await.unwrap();
        let got: HashMap<String, Option<String>> = c.fetchone().unwrap().get(0);
        assert_eq!(got, sent, "execute_prepared");
    });
}

/// `SELECT %s` with a small Rust integer: PostgreSQL types the literal `integer`, and the
/// caller reads it back into the type it sent.
#[test]
fn a_small_integer_parameter_reads_back_into_the_type_it_was_sent_as() {
    run(async {
        let conn = connect().await;
        let mut c = conn.execute("SELECT %s", (7i16,)).await.unwrap();
        let row = c.fetchone().unwrap();
        assert_eq!(
            row.columns()[0].type_oid(),
            23,
            "typed integer by the server"
        );
        assert_eq!(row.get::<_, i16>(0), 7);
        assert_eq!(row.get::<_, i8>(0), 7);
        assert_eq!(row.get::<_, u16>(0), 7);
        let mut c = conn.execute("SELECT %s", (-3i8,)).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, i8>(0), -3);
        let mut c = conn.execute("SELECT %s", (70000u32,)).await.unwrap();
        assert_eq!(c.fetchone().unwrap().get::<_, u32>(0), 70000);
    });
}

/// Integer columns of every width, in both formats, into every Rust integer type: the value
/// when it fits; else a Conversion error from `try_get`, and a panic from `get`, naming the
/// column, its type, the value and the Rust type.
#[test]
fn integer_columns_read_into_any_integer_type_that_holds_the_value() {
    run(async {
        let conn = connect().await;
        let sql = "SELECT 5::int2 AS small, 40000 AS big, (-1)::int8 AS neg, \
                   4294967295::oid AS o, 5000000000 AS huge, NULL::int4 AS nothing, \
                   32767::int4 AS edge";
        for (how, _, row) in every_way(&conn, sql, sql, &[]).await {
            let types: Vec<u32> = row.columns().iter().map(|c| c.type_oid()).collect();
            assert_eq!(types, [21, 23, 20, 26, 20, 23, 23], "{how}");

            assert_eq!(row.get::<_, i8>("small"), 5, "{how}");
            assert_eq!(row.get::<_, i16>("small"), 5, "{how}");
            assert_eq!(row.get::<_, u16>("small"), 5, "{how}");
            assert_eq!(row.get::<_, i32>("small"), 5, "{how}");
            assert_eq!(row.get::<_, u32>("small"), 5, "{how}");
            assert_eq!(row.get::<_, i64>("small"), 5, "{how}");
            assert_eq!(row.get::<_, u64>("small"), 5, "{how}");
            assert_eq!(row.get::<_, i16>("edge"), 32767, "{how}");

            assert_eq!(row.get::<_, i32>("big"), 40000, "{how}");
            assert_eq!(row.get::<_, u16>("big"), 40000, "{how}");
            assert_eq!(row.get::<_, i64>("neg"), -1, "{how}");
            assert_eq!(row.get::<_, i16>("neg"), -1, "{how}");
            assert_eq!(row.get::<_, u32>("o"), u32::MAX, "{how}");
            assert_eq!(row.get::<_, i64>("o"), i64::from(u32::MAX), "{how}");
            assert_eq!(row.get::<_, u64>("huge"), 5_000_000_000, "{how}");

            for (column, rust, v, e) in [
                ("big", "i16", "40000", row.try_get::<_, i16>("big").err()),
                ("big", "i8", "40000", row.try_get::<_, i8>(1).err()),
                ("neg", "u32", "-1", row.try_get::<_, u32>("neg").err()),
                ("neg", "u64", "-1", row.try_get::<_, u64>("neg").err()),
                ("o", "i32", "4294967295", row.try_get::<_, i32>("o").err()),
                (
                    "huge",
                    "i32",
                    "5000000000",
                    row.try_get::<_, i32>("huge").err(),
                ),
                ("huge", "u32", "5000000000", row.try_get::<_, u32>(4).err()),
            ] {
                let e = e.unwrap_or_else(|| panic!("{how}: {column} as {rust} must fail"));
                assert_eq!(e.kind(), ErrorKind::Conversion, "{how}: {e}");
                let msg = e.to_string();
                assert!(
                    msg.contains(&format!("column \"{column}\""))
                        && msg.contains(&format!("{v} is out of range for {rust}")),
                    "{how}: {msg}"
                );
            }
            let msg = row.try_get::<_, i16>("big").unwrap_err().to_string();
            assert_eq!(
                msg,
                "conversion error: column \"big\" of type integer: 40000 is out of range for i16",
                "{how}"
            );

            assert_eq!(row.get::<_, Option<i16>>("nothing"), None, "{how}");
            assert_eq!(row.get::<_, Option<i16>>("small"), Some(5), "{how}");
            assert!(row.try_get::<_, Option<i16>>("big").is_err(), "{how}");
            let e = row.try_get::<_, i16>("nothing").unwrap_err();
            assert!(
                e.to_string().contains("column \"nothing\" is NULL"),
                "{how}: {e}"
            );

            // get panics with the same message, naming the column however it was picked.
            for idx in ["big".to_owned(), "1".to_owned()] {
                let r = row.clone();
                let panic = std::panic::catch_unwind(move || match idx.parse::<usize>() {
                    Ok(i) => r.get::<_, i16>(i),
                    Err(_) => r.get::<_, i16>(idx.as_str()),
                })
                .expect_err("get must panic");
                let text = panic.downcast_ref::<String>().cloned().unwrap_or_default();
                assert!(
                    text.contains("column \"big\" of type integer: 40000 is out of range for i16"),
                    "{how}: {text}"
                );
            }
        }
    });
}

/// The same through parameters: `$1` typed by what is sent, and the server's choice for a
/// bare `%s` literal.
#[test]
fn integer_parameters_read_back_in_both_formats() {
    run(async {
        let conn = connect().await;
        let rows = every_way(
            &conn,
            "SELECT %s::int4, %s::int8, %s::int2, %s::int4",
            "SELECT $1::int4, $2::int8, $3::int2, $4::int4",
            &[&7i32, &-9i64, &300i16, &None::<i32>],
        )
        .await;
        for (how, _, row) in rows {
            assert_eq!(row.get::<_, i16>(0), 7, "{how}");
            assert_eq!(row.get::<_, i8>(1), -9, "{how}");
            assert_eq!(row.get::<_, u16>(2), 300, "{how}");
            assert!(row.try_get::<_, i8>(2).is_err(), "{how}");
            assert_eq!(row.get::<_, Option<i16>>(3), None, "{how}");
            assert_eq!(row.get::<_, Option<u64>>(3), None, "{how}");
        }
    });
}

/// psycopg2 2.9 on a connection writes no bytes as `'\x'::bytea` (PQescapeByteaConn's hex
/// form; `''::bytea` is what its adapter writes with no connection, in the escape form momoko
/// never writes), and the server reads it back empty every way.
#[test]
fn an_empty_bytea_is_written_as_psycopg2_writes_it_and_reads_back_empty() {
    run(async {
        let conn = connect().await;
        let empty: Vec<u8> = Vec::new();
        for (setting, literal) in [("on", "'\\x'::bytea"), ("off", "E'\\\\x'::bytea")] {
            conn.execute(&format!("SET standard_conforming_strings = {setting}"), ())
                .await
                .unwrap();
            assert_eq!(
                conn.mogrify("%s", (&empty,)).unwrap(),
                literal,
                "standard_conforming_strings {setting}"
            );
            // A statement text of its own per setting: every_way expects a first query
            // uncached.
            let rows = every_way(
                &conn,
                &format!(
                    "SELECT %s AS b, octet_length(%s) AS n, pg_typeof(%s)::text AS t, '{setting}'"
                ),
                &format!(
                    "SELECT $1::bytea AS b, octet_length($2::bytea) AS n, \
                     pg_typeof($3::bytea)::text AS t, '{setting}'"
                ),
                &[&empty, &empty, &empty],
            )
            .await;
            for (how, _, row) in rows {
                assert_eq!(row.get::<_, Vec<u8>>("b"), empty, "{how}, {setting}");
                assert_eq!(row.get::<_, i32>("n"), 0, "{how}, {setting}");
                assert_eq!(row.get::<_, String>("t"), "bytea", "{how}, {setting}");
            }
        }
    });
}

#[test]
fn an_empty_nested_array_is_the_empty_array_every_way() {
    run(async {
        let conn = connect().await;
        let nested: Vec<Vec<i32>> = vec![vec![]];
        let deeper: Vec<Vec<Vec<i32>>> =
            vec![vec![], vec![]].into_iter().map(|v| vec![v]).collect();
        for (name, v) in [
            ("[[]]", &nested as &dyn ToSql),
            ("[[[]], [[]]]", &deeper as &dyn ToSql),
        ] {
            let rows = every_way(
                &conn,
                &format!(
                    "SELECT %s::int[] = '{{}}' AS empty, cardinality(%s::int[]) AS n, '{name}'"
                ),
                &format!(
                    "SELECT $1::int[] = '{{}}' AS empty, cardinality($2::int[]) AS n, '{name}'"
                ),
                &[v, v],
            )
            .await;
            for (how, _, row) in rows {
                assert!(row.get::<_, bool>("empty"), "{how}: {name} is '{{}}'");
                assert_eq!(row.get::<_, i32>("n"), 0, "{how}: {name}");
            }
        }
        // A statement that declares the type reads it in the binary format.
        let st = conn.prepare("SELECT $1::int[]").await.unwrap();
        let mut c = conn
            .execute_prepared(&st, vec![nested.to_value()])
            .await
            .unwrap();
        assert_eq!(
            c.fetchone().unwrap().get::<_, Vec<i32>>(0),
            Vec::<i32>::new()
        );
    });
}
