//! momoko's `Connection::mogrify` against psycopg2's `cursor.mogrify`, byte for byte, for a
//! table of values (NULL, booleans, integers small and big, floats with NaN and infinities,
//! strings with quotes, backslashes and non-ASCII text, bytes, nested lists with NULLs,
//! hstore maps, JSON, dates), on connections to the same throwaway server, with
//! `standard_conforming_strings` on and with it off from the connection's start.
//!
//! psycopg2 comes from PyPI (psycopg2-binary) into a virtualenv under the target directory
//! when the system Python lacks it. Without Python, or when the install fails (no network),
//! the test prints why it skipped and passes: it must never be the reason a machine without
//! Python cannot run the suite.
//!
//! It needs the default `json` feature (JSON cases, and the script's answer is JSON).
#![cfg(feature = "json")]

mod common;
#[path = "common/python.rs"]
mod python;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::run_for;
use momoko::{Connection, Value};
use python::{python_with_psycopg2, run_bounded, target_dir};

/// The psycopg2 side: every case's rendering (or its error), one JSON object per pass.
const SCRIPT: &str = r#"
import datetime, decimal, json, sys
import psycopg2, psycopg2.extras

dsn = sys.argv[1]
scs_off = sys.argv[2] == "off"
conn = psycopg2.connect(dsn, options="-c standard_conforming_strings=off" if scs_off else "")
conn.autocommit = True
psycopg2.extras.register_hstore(conn)
cur = conn.cursor()
nan, inf = float("nan"), float("inf")
D = decimal.Decimal
J = psycopg2.extras.Json

cases = {
    "null": None,
    "true": True,
    "false": False,
    "zero": 0,
    "int": 42,
    "neg_int": -1,
    "i64_max": 9223372036854775807,
    "i64_min": -9223372036854775808,
    "big_int": 9223372036854775808,
    "huge_int": 10**30,
    "float": 1.5,
    "float_tenth": 0.1,
    "float_one": 1.0,
    "float_1e16": 1e16,
    "float_1e15": 1000000000000000.0,
    "float_small": 1e-05,
    "float_denormal": 5e-324,
    "float_big": 1e300,
    "float_neg": -1.5,
    "float_neg_zero": -0.0,
    "float_sum": 0.1 + 0.2,
    "float_pi": 3.141592653589793,
    "nan": nan,
    "inf": inf,
    "neg_inf": -inf,
    "decimal": D("12345678901234567890.123456789"),
    "neg_decimal": D("-3.50"),
    "empty_str": "",
    "quote": "it's",
    "backslash": "back\\slash",
    "quote_backslash": "a\\'b",
    "unicode": "café 💥 \u2028",
    "sql_comment": "--; /* */ $$ E'x' U&'\\0041'",
    "newlines": "a\nb\r\nc\td",
    "bytes": b"\x00\x01'\\",
    "empty_bytes": b"",
    "all_bytes": bytes(range(256)),
    "list": [1, None, 3],
    "nested": [[1, 2], [3, 4]],
    "nested_nulls": [[1, None], [None, 4]],
    "str_list": ["a'b", None, "c\\d"],
    "float_list": [1.5, nan, -inf],
    "bool_list": [True, False, None],
    "empty_list": [],
    "null_list": [None, None],
    "hstore": {"a": "b", "c": None, "q'": "x\\y"},
    "empty_hstore": {},
    "json": J({"a": [1, "x'"]}),
    "json_nested": J({"a": None, "b": 1.5, "c": [True, False], "u": "é💥", "z": {"k": "\\"}}),
    "date": datetime.date(2024, 2, 29),
    "timestamp": datetime.datetime(2024, 2, 29, 13, 45, 1, 123456),
    "time": datetime.time(1, 2, 3),
    "interval": datetime.timedelta(days=1, seconds=5, microseconds=7),
    "nul": "a\x00b",
}
out = {}
for name, value in cases.items():
    try:
        out[name] = cur.mogrify("SELECT %s", (value,)).decode("utf-8")
    except Exception as e:
        out[name] = "ERROR: " + str(e).strip()
out["__placeholders__"] = cur.mogrify("SELECT %s, %%, %s", (1, "a")).decode()
out["__named__"] = cur.mogrify("SELECT %(a)s, %(b)s, %(a)s", {"a": "x'y", "b": None}).decode()
out["__minus__"] = cur.mogrify("SELECT 1-%s", (-1,)).decode()
print(json.dumps(out))
"#;

/// The same cases as momoko values, by name.
fn cases() -> Vec<(&'static str, Value)> {
    use momoko::oid;
    let text = |s: &str| Value::Text(s.to_owned());
    let json: serde_json::Value = serde_json::json!({"a": [1, "x'"]});
    let json_nested: serde_json::Value = serde_json::json!(
        {"a": null, "b": 1.5, "c": [true, false], "u": "é💥", "z": {"k": "\\"}}
    );
    let hstore: BTreeMap<String, Option<String>> = [
        ("a".to_owned(), Some("b".to_owned())),
        ("c".to_owned(), None),
        ("q'".to_owned(), Some("x\\y".to_owned())),
    ]
    .into_iter()
    .collect();
    let typed = |type_oid: u32, s: &str| Value::Unknown {
        type_oid,
        text: s.to_owned(),
    };
    vec![
        ("null", Value::Null),
        ("true", Value::Bool(true)),
        ("false", Value::Bool(false)),
        ("zero", Value::Int4(0)),
        ("int", Value::Int4(42)),
        ("neg_int", Value::Int4(-1)),
        ("i64_max", Value::Int8(i64::MAX)),
        ("i64_min", Value::Int8(i64::MIN)),
        ("big_int", Value::Numeric("9223372036854775808".into())),
        (
            "huge_int",
            Value::Numeric("1000000000000000000000000000000".into()),
        ),
        ("float", Value::Float8(1.5)),
        ("float_tenth", Value::Float8(0.1)),
        ("float_one", Value::Float8(1.0)),
        ("float_1e16", Value::Float8(1e16)),
        ("float_1e15", Value::Float8(1e15)),
        ("float_small", Value::Float8(1e-5)),
        ("float_denormal", Value::Float8(5e-324)),
        ("float_big", Value::Float8(1e300)),
        ("float_neg", Value::Float8(-1.5)),
        ("float_neg_zero", Value::Float8(-0.0)),
        ("float_sum", Value::Float8(0.1 + 0.2)),
        ("float_pi", Value::Float8(std::f64::consts::PI)),
        ("nan", Value::Float8(f64::NAN)),
        ("inf", Value::Float8(f64::INFINITY)),
        ("neg_inf", Value::Float8(f64::NEG_INFINITY)),
        (
            "decimal",
            Value::Numeric("12345678901234567890.123456789".into()),
        ),
        ("neg_decimal", Value::Numeric("-3.50".into())),
        ("empty_str", text("")),
        ("quote", text("it's")),
        ("backslash", text("back\\slash")),
        ("quote_backslash", text("a\\'b")),
        ("unicode", text("café 💥 \u{2028}")),
        ("sql_comment", text("--; /* */ $$ E'x' U&'\\0041'")),
        ("newlines", text("a\nb\r\nc\td")),
        ("bytes", Value::Bytes(b"\x00\x01'\\".to_vec())),
        ("empty_bytes", Value::Bytes(Vec::new())),
        ("all_bytes", Value::Bytes((0..=255u8).collect())),
        (
            "list",
            Value::Array(vec![Value::Int4(1), Value::Null, Value::Int4(3)]),
        ),
        (
            "nested",
            Value::Array(vec![
                Value::Array(vec![Value::Int4(1), Value::Int4(2)]),
                Value::Array(vec![Value::Int4(3), Value::Int4(4)]),
            ]),
        ),
        (
            "nested_nulls",
            Value::Array(vec![
                Value::Array(vec![Value::Int4(1), Value::Null]),
                Value::Array(vec![Value::Null, Value::Int4(4)]),
            ]),
        ),
        (
            "str_list",
            Value::Array(vec![text("a'b"), Value::Null, text("c\\d")]),
        ),
        (
            "float_list",
            Value::Array(vec![
                Value::Float8(1.5),
                Value::Float8(f64::NAN),
                Value::Float8(f64::NEG_INFINITY),
            ]),
        ),
        (
            "bool_list",
            Value::Array(vec![Value::Bool(true), Value::Bool(false), Value::Null]),
        ),
        ("empty_list", Value::Array(Vec::new())),
        ("null_list", Value::Array(vec![Value::Null, Value::Null])),
        ("hstore", Value::from(hstore)),
        ("empty_hstore", Value::from(BTreeMap::new())),
        ("json", Value::Json(json)),
        ("json_nested", Value::Json(json_nested)),
        ("date", typed(oid::DATE, "2024-02-29")),
        (
            "timestamp",
            typed(oid::TIMESTAMP, "2024-02-29T13:45:01.123456"),
        ),
        ("time", typed(oid::TIME, "01:02:03")),
        ("interval", typed(oid::INTERVAL, "1 days 5.000007 seconds")),
        ("nul", text("a\0b")),
    ]
}

/// psycopg2's renderings, by case name.
fn psycopg2_renderings(python: &Path, scs_off: bool) -> BTreeMap<String, String> {
    let script = target_dir().join("psycopg2_compat_mogrify.py");
    std::fs::write(&script, SCRIPT).expect("write the Python script");
    let out = run_bounded(
        Command::new(python)
            .arg(&script)
            .arg(common::dsn())
            .arg(if scs_off { "off" } else { "on" }),
        Duration::from_secs(60),
    )
    .expect("the psycopg2 script runs (psycopg2 imports, so it must)");
    serde_json::from_str(&out).expect("the script prints one JSON object")
}

/// momoko's renderings for the same cases, from a connection to the same server.
fn momoko_renderings(scs_off: bool) -> BTreeMap<String, String> {
    run_for(30, async move {
        let setsession: Vec<&str> = if scs_off {
            vec!["SET standard_conforming_strings = off"]
        } else {
            vec![]
        };
        let conn = Connection::builder(&common::dsn())
            .setsession(setsession)
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .expect("connect");
        conn.register_hstore().await.expect("register_hstore");
        let mut out = BTreeMap::new();
        for (name, value) in cases() {
            let r = match conn.mogrify("SELECT %s", (value,)) {
                Ok(s) => s,
                Err(e) => format!(
                    "ERROR: {}",
                    e.to_string().trim_start_matches("usage error: ")
                ),
            };
            out.insert(name.to_owned(), r);
        }
        out.insert(
            "__placeholders__".into(),
            conn.mogrify("SELECT %s, %%, %s", (1i32, "a")).unwrap(),
        );
        let named = momoko::named([("a", Value::Text("x'y".into())), ("b", Value::Null)]);
        out.insert(
            "__named__".into(),
            conn.mogrify("SELECT %(a)s, %(b)s, %(a)s", named).unwrap(),
        );
        out.insert(
            "__minus__".into(),
            conn.mogrify("SELECT 1-%s", (-1i32,)).unwrap(),
        );
        conn.close();
        out
    })
}

fn compare(python: &Path, scs_off: bool) -> usize {
    let theirs = psycopg2_renderings(python, scs_off);
    let ours = momoko_renderings(scs_off);
    assert_eq!(
        theirs.keys().collect::<Vec<_>>(),
        ours.keys().collect::<Vec<_>>(),
        "the two tables name the same cases"
    );
    let mut diffs = Vec::new();
    for (name, want) in &theirs {
        let got = &ours[name];
        if got != want {
            diffs.push(format!(
                "  {name}:\n    psycopg2: {want}\n    momoko:   {got}"
            ));
        }
    }
    let setting = if scs_off { "off" } else { "on" };
    assert!(
        diffs.is_empty(),
        "mogrify differs from psycopg2 with standard_conforming_strings {setting}:\n{}",
        diffs.join("\n")
    );
    println!(
        "psycopg2_compat: {} renderings identical to psycopg2's with standard_conforming_strings {setting}",
        theirs.len()
    );
    theirs.len()
}

#[test]
fn mogrify_matches_psycopg2_byte_for_byte() {
    let python = match python_with_psycopg2() {
        Ok(p) => p,
        Err(why) => {
            println!("psycopg2_compat: SKIPPED, {why}; the comparison with psycopg2 did not run");
            return;
        }
    };
    compare(&python, false);
    compare(&python, true);
}
