//! Codec tests. Expected literals were produced by psycopg2 2.9.13 (`cursor.mogrify`) against
//! PostgreSQL 15; expected decodings by PostgreSQL 15's text output and binary COPY.

use std::collections::{BTreeMap, HashMap};

use bytes::BytesMut;

use super::*;
use crate::error::ErrorKind;
use crate::row::Column;

const ON: QuoteContext = QuoteContext {
    standard_conforming_strings: true,
};
const OFF: QuoteContext = QuoteContext {
    standard_conforming_strings: false,
};

fn lit<T: ToSql + ?Sized>(v: &T) -> String {
    let mut s = String::new();
    v.write_literal(&ON, &mut s).unwrap();
    // The Value path must agree with the type's own fast path.
    assert_eq!(v.to_value().to_literal(&ON).unwrap(), s);
    s
}

fn lit_off<T: ToSql + ?Sized>(v: &T) -> String {
    let mut s = String::new();
    v.write_literal(&OFF, &mut s).unwrap();
    s
}

fn col(type_oid: u32, format: i16) -> Column {
    Column::new("c".into(), 0, 0, type_oid, -1, -1, format)
}

fn hex(s: &str) -> Vec<u8> {
    s.split("\\x")
        .filter(|p| !p.is_empty())
        .map(|p| u8::from_str_radix(p, 16).unwrap())
        .collect()
}

fn text<T: FromSql>(type_oid: u32, raw: &str) -> Result<T, Error> {
    T::from_sql(&col(type_oid, 0), Some(raw.as_bytes()))
}

fn bin<T: FromSql>(type_oid: u32, raw: &str) -> Result<T, Error> {
    T::from_sql(&col(type_oid, 1), Some(&hex(raw)))
}

fn hstore_col(format: i16) -> Column {
    let mut reg = TypeRegistry::new();
    reg.register_hstore(16385, 16390);
    let mut c = col(16385, format);
    c.resolve(&reg);
    c
}

fn map(pairs: &[(&str, Option<&str>)]) -> HashMap<String, Option<String>> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
        .collect()
}

// ---- quoting, as psycopg2 ----

#[test]
fn null_and_bools_render_as_keywords() {
    assert_eq!(lit(&None::<i32>), "NULL");
    assert_eq!(lit(&true), "true");
    assert_eq!(lit(&false), "false");
}

#[test]
fn integers_render_as_digits_with_a_space_before_a_minus() {
    assert_eq!(lit(&42i32), "42");
    assert_eq!(lit(&0i64), "0");
    assert_eq!(lit(&-1i32), " -1");
    assert_eq!(lit(&-32768i16), " -32768");
    assert_eq!(lit(&i64::MIN), " -9223372036854775808");
}

#[test]
fn integers_beyond_i64_render_as_plain_digits() {
    assert_eq!(lit(&9223372036854775808u64), "9223372036854775808");
    assert_eq!(lit(&10u128.pow(30)), "1000000000000000000000000000000");
}

#[test]
fn floats_render_as_python_repr() {
    let cases: &[(f64, &str)] = &[
        (1.5, "1.5"),
        (0.1, "0.1"),
        (1.0, "1.0"),
        (1e16, "1e+16"),
        (1e-5, "1e-05"),
        (5e-324, "5e-324"),
        (1e300, "1e+300"),
        (1e15, "1000000000000000.0"),
        (-1.5, " -1.5"),
        (-0.0, " -0.0"),
        (123456789.123, "123456789.123"),
        (1e-4, "0.0001"),
        (3.4028234663852886e38, "3.4028234663852886e+38"),
        (0.30000000000000004, "0.30000000000000004"),
        (1e22, "1e+22"),
        (1.5e-7, "1.5e-07"),
        (2.5e16, "2.5e+16"),
        // A tie between two shortest forms: Python takes the even digit.
        (f64::from_bits(0xc2a0_03e0_9aab_ba20), " -8804419589597.062"),
    ];
    for (v, want) in cases {
        assert_eq!(lit(v), *want, "{v:e}");
    }
}

#[test]
fn non_finite_floats_render_as_quoted_casts() {
    assert_eq!(lit(&f64::NAN), "'NaN'::float");
    assert_eq!(lit(&f64::INFINITY), "'Infinity'::float");
    assert_eq!(lit(&f64::NEG_INFINITY), "'-Infinity'::float");
    assert_eq!(lit(&f32::NAN), "'NaN'::float");
}

#[test]
fn f32_renders_its_own_shortest_digits() {
    assert_eq!(lit(&1.1f32), "1.1");
    assert_eq!(lit(&-2.5f32), " -2.5");
}

#[test]
fn numerics_render_bare_and_anything_else_quoted() {
    let n = |s: &str| Value::Numeric(s.into()).to_literal(&ON).unwrap();
    assert_eq!(
        n("12345678901234567890.123456789"),
        "12345678901234567890.123456789"
    );
    assert_eq!(n("-1.5"), " -1.5");
    assert_eq!(n("1E+3"), "1E+3");
    assert_eq!(n("NaN"), "'NaN'::numeric");
    assert_eq!(n("Infinity"), "'Infinity'::numeric");
    assert_eq!(n("1; DROP TABLE t"), "'1; DROP TABLE t'::numeric");
}

#[test]
fn strings_double_quotes_and_keep_backslashes() {
    assert_eq!(lit("it's"), "'it''s'");
    assert_eq!(lit(""), "''");
    assert_eq!(lit("café"), "'café'");
    assert_eq!(lit("back\\slash"), "'back\\slash'");
    assert_eq!(lit(&String::from("'\"test\"'")), "'''\"test\"'''");
}

#[test]
fn string_with_nul_is_a_usage_error() {
    let e = Value::from("a\0b").to_literal(&ON).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Usage);
    assert_eq!(
        e.to_string(),
        "usage error: A string literal cannot contain NUL (0x00) characters."
    );
}

#[test]
fn bytes_render_as_hex_bytea() {
    assert_eq!(lit(&b"\x00\x01'\\"[..]), "'\\x0001275c'::bytea");
    assert_eq!(lit(&Vec::<u8>::new()), "'\\x'::bytea");
}

#[test]
fn lists_render_as_array_constructors() {
    assert_eq!(lit(&vec![Some(1i32), None, Some(3)]), "ARRAY[1,NULL,3]");
    assert_eq!(
        lit(&vec![vec![1i32, 2], vec![3, 4]]),
        "ARRAY[ARRAY[1,2],ARRAY[3,4]]"
    );
    assert_eq!(lit(&vec![Some("a'b"), None]), "ARRAY['a''b',NULL]");
    assert_eq!(lit(&vec![1.5f64, f64::NAN]), "ARRAY[1.5,'NaN'::float]");
    assert_eq!(lit(&Vec::<i32>::new()), "'{}'");
    assert_eq!(lit(&vec![-1i32, 2]), "ARRAY[ -1,2]");
    assert_eq!(lit(&vec![true, false]), "ARRAY[true,false]");
    assert_eq!(lit(&vec![Value::Bytes(vec![1])]), "ARRAY['\\x01'::bytea]");
    assert_eq!(lit(&vec![""]), "ARRAY['']");
    assert_eq!(lit(&vec!["a\\b"]), "ARRAY['a\\b']");
    assert_eq!(lit(&vec![f64::INFINITY]), "ARRAY['Infinity'::float]");
}

#[test]
fn lists_of_only_nulls_use_the_brace_form() {
    assert_eq!(lit(&vec![None::<i32>]), "'{NULL}'");
    assert_eq!(lit(&vec![None::<i32>, None]), "'{NULL,NULL}'");
    assert_eq!(lit(&vec![vec![None::<i32>]]), "'{{NULL}}'");
    assert_eq!(
        lit(&vec![vec![None::<i32>, None], vec![None, None]]),
        "'{{NULL,NULL},{NULL,NULL}}'"
    );
    // psycopg2's own (odd) rendering, kept byte for byte.
    assert_eq!(
        lit(&vec![vec![None], vec![Some(1i32)]]),
        "ARRAY['{NULL}',ARRAY[1]]"
    );
}

#[test]
fn nested_empty_lists_become_empty_array_constructors() {
    assert_eq!(lit(&vec![Vec::<i32>::new()]), "ARRAY[ARRAY[]]");
    assert_eq!(
        lit(&vec![Vec::<i32>::new(), vec![]]),
        "ARRAY[ARRAY[],ARRAY[]]"
    );
    assert_eq!(lit(&vec![vec![1i32], vec![]]), "ARRAY[ARRAY[1],ARRAY[]]");
    assert_eq!(
        lit(&vec![Value::from(vec![1i32, 2]), Value::Null]),
        "ARRAY[ARRAY[1,2],NULL]"
    );
}

#[test]
fn hstore_renders_with_the_hstore_function_sorted_by_key() {
    let h = map(&[("a", Some("b")), ("c", None), ("q'", Some("x\\y"))]);
    assert_eq!(
        lit(&h),
        "hstore(ARRAY['a','c','q'''], ARRAY['b',NULL,'x\\y'])"
    );
    assert_eq!(lit(&HashMap::<String, Option<String>>::new()), "''::hstore");
    assert_eq!(lit(&map(&[("a", None)])), "hstore(ARRAY['a'], '{NULL}')");
    assert_eq!(
        lit(&map(&[("a", None), ("b", None)])),
        "hstore(ARRAY['a','b'], '{NULL,NULL}')"
    );
    let bt: BTreeMap<String, Option<String>> = [("e".to_owned(), Some("f".to_owned()))].into();
    assert_eq!(lit(&bt), "hstore(ARRAY['e'], ARRAY['f'])");
    assert_eq!(
        lit(&vec![map(&[("a", Some("b"))])]),
        "ARRAY[hstore(ARRAY['a'], ARRAY['b'])]"
    );
}

#[cfg(feature = "json")]
#[test]
fn json_renders_as_python_json_dumps() {
    use serde_json::json;
    assert_eq!(lit(&json!({"a": [1, "x'"]})), "'{\"a\": [1, \"x''\"]}'");
    assert_eq!(lit(&json!("é\\")), "'\"\\u00e9\\\\\"'");
    assert_eq!(lit(&json!(null)), "'null'");
    assert_eq!(lit(&json!([1.5, "a\u{0}"])), "'[1.5, \"a\\u0000\"]'");
    assert_eq!(
        lit(&json!({"k": [1.0, 1e16, -0.0, 18446744073709551615u64, true, null, "\n\t\"\\/\u{2028}\u{1F600}\u{7f}"]})),
        "'{\"k\": [1.0, 1e+16, -0.0, 18446744073709551615, true, null, \"\\n\\t\\\"\\\\/\\u2028\\ud83d\\ude00\\u007f\"]}'"
    );
    assert_eq!(lit(&json!({})), "'{}'");
    assert_eq!(lit(&json!([])), "'[]'");
}

#[test]
fn other_types_render_as_their_text_with_a_cast() {
    let date = Value::Unknown {
        type_oid: oid::DATE,
        text: "2024-02-29".into(),
    };
    assert_eq!(date.to_literal(&ON).unwrap(), "'2024-02-29'::date");
    let other = Value::Unknown {
        type_oid: 99999,
        text: "x".into(),
    };
    assert_eq!(other.to_literal(&ON).unwrap(), "'x'");
}

#[test]
fn without_standard_conforming_strings_literals_use_e_and_double_backslashes() {
    assert_eq!(lit_off("it's a \\ back"), "E'it''s a \\\\ back'");
    assert_eq!(lit_off("plain"), "E'plain'");
    assert_eq!(lit_off(&b"\x00\x01'\\"[..]), "E'\\\\x0001275c'::bytea");
    assert_eq!(lit_off(&vec!["a", "b\\"]), "ARRAY[E'a',E'b\\\\']");
    assert_eq!(
        lit_off(&map(&[("a", Some("b\\"))])),
        "hstore(ARRAY[E'a'], ARRAY[E'b\\\\'])"
    );
    assert_eq!(
        lit_off(&HashMap::<String, Option<String>>::new()),
        "''::hstore"
    );
    #[cfg(feature = "json")]
    assert_eq!(
        lit_off(&serde_json::json!({"a": "\\"})),
        "E'{\"a\": \"\\\\\\\\\"}'"
    );
}

#[test]
fn typed_text_without_backslashes_has_no_e_prefix_as_in_psycopg2() {
    // psycopg2 2.9.13 on a connection opened with standard_conforming_strings off:
    // mogrify("%s", [date(2024, 2, 29)]) == "'2024-02-29'::date" (no E).
    let date = Value::Unknown {
        type_oid: oid::DATE,
        text: "2024-02-29".into(),
    };
    assert_eq!(date.to_literal(&OFF).unwrap(), "'2024-02-29'::date");
    assert_eq!(date.to_literal(&ON).unwrap(), "'2024-02-29'::date");
    let quoted = Value::Unknown {
        type_oid: oid::INTERVAL,
        text: "it's".into(),
    };
    assert_eq!(quoted.to_literal(&OFF).unwrap(), "'it''s'::interval");
    // A backslash still needs the E form to mean itself under the setting off.
    let slash = Value::Unknown {
        type_oid: oid::DATE,
        text: "a\\b".into(),
    };
    assert_eq!(slash.to_literal(&OFF).unwrap(), "E'a\\\\b'::date");
    assert_eq!(slash.to_literal(&ON).unwrap(), "'a\\b'::date");
}

// ---- text decoding ----

#[test]
fn text_scalars_decode_by_type() {
    assert!(text::<bool>(oid::BOOL, "t").unwrap());
    assert!(!text::<bool>(oid::BOOL, "f").unwrap());
    assert_eq!(text::<i16>(oid::INT2, "-32768").unwrap(), -32768);
    assert_eq!(text::<i32>(oid::INT4, "7").unwrap(), 7);
    assert_eq!(
        text::<i64>(oid::INT8, "9223372036854775807").unwrap(),
        i64::MAX
    );
    assert_eq!(text::<String>(oid::TEXT, "café").unwrap(), "café");
    assert_eq!(text::<String>(oid::VARCHAR, "x").unwrap(), "x");
    assert_eq!(text::<f64>(oid::FLOAT8, "1.5").unwrap(), 1.5);
    assert_eq!(text::<f32>(oid::FLOAT4, "1.1").unwrap(), 1.1f32);
}

#[test]
fn text_floats_decode_nan_and_infinities() {
    assert!(text::<f64>(oid::FLOAT8, "NaN").unwrap().is_nan());
    assert_eq!(text::<f64>(oid::FLOAT8, "Infinity").unwrap(), f64::INFINITY);
    assert_eq!(
        text::<f32>(oid::FLOAT4, "-Infinity").unwrap(),
        f32::NEG_INFINITY
    );
}

#[test]
fn integers_convert_between_widths_when_they_fit_but_never_parse_text() {
    assert_eq!(text::<i64>(oid::INT2, "5").unwrap(), 5);
    assert_eq!(text::<i64>(oid::INT4, "5").unwrap(), 5);
    assert_eq!(text::<i32>(oid::INT2, "5").unwrap(), 5);
    assert_eq!(text::<i32>(oid::INT8, "5").unwrap(), 5);
    assert_eq!(text::<i16>(oid::INT4, "-5").unwrap(), -5);
    let e = text::<i16>(oid::INT4, "40000").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conversion);
    assert_eq!(
        e.to_string(),
        "conversion error: column \"c\" of type integer: 40000 is out of range for i16"
    );
    let e = text::<i64>(oid::TEXT, "5").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conversion);
    assert_eq!(
        e.to_string(),
        "conversion error: cannot convert column \"c\" of type text to i64"
    );
    assert_eq!(
        text::<String>(oid::INT4, "5").unwrap_err().kind(),
        ErrorKind::Conversion
    );
}

/// Every integer column into every Rust integer type, in both formats: the value when it
/// fits, else a Conversion error naming the column, its type, the value and the Rust type.
#[test]
fn every_integer_column_reads_into_every_integer_type_that_holds_the_value() {
    fn check<T>(t: u32, v: i64)
    where
        T: FromSql + TryFrom<i64> + PartialEq + std::fmt::Debug,
    {
        let raw_text = v.to_string();
        let raw_bin = match t {
            oid::INT2 => (v as i16).to_be_bytes().to_vec(),
            oid::INT4 => (v as i32).to_be_bytes().to_vec(),
            oid::INT8 => v.to_be_bytes().to_vec(),
            _ => (v as u32).to_be_bytes().to_vec(),
        };
        let rust = std::any::type_name::<T>();
        for (format, raw) in [(0, raw_text.as_bytes()), (1, &raw_bin[..])] {
            let c = Column::new("n".into(), 0, 0, t, -1, -1, format);
            let got = T::from_sql(&c, Some(raw));
            match T::try_from(v) {
                Ok(want) => assert_eq!(got.unwrap(), want, "{v} oid {t} format {format}"),
                Err(_) => {
                    let e = got.unwrap_err();
                    assert_eq!(e.kind(), ErrorKind::Conversion);
                    let msg = e.to_string();
                    assert!(
                        msg.contains("column \"n\" of type ")
                            && msg.contains(&format!("{v} is out of range for {rust}")),
                        "{msg}"
                    );
                }
            }
            assert_eq!(
                Option::<T>::from_sql(&c, None).unwrap(),
                None,
                "NULL into Option"
            );
            assert!(T::from_sql(&c, None).is_err());
        }
    }
    let cases: &[(u32, &[i64])] = &[
        (
            oid::INT2,
            &[0, 1, -1, 127, 128, -128, -129, 255, 256, 32767, -32768],
        ),
        (
            oid::INT4,
            &[
                0,
                5,
                -5,
                40000,
                -40000,
                65535,
                65536,
                i64::from(i32::MAX),
                i64::from(i32::MIN),
            ],
        ),
        (
            oid::INT8,
            &[
                0,
                7,
                -7,
                i64::from(i32::MAX) + 1,
                i64::from(u32::MAX),
                i64::from(u32::MAX) + 1,
                i64::MAX,
                i64::MIN,
            ],
        ),
        (
            oid::OID,
            &[0, 1, 32767, 32768, 2_147_483_648, i64::from(u32::MAX)],
        ),
    ];
    for &(t, values) in cases {
        for &v in values {
            check::<i8>(t, v);
            check::<i16>(t, v);
            check::<u16>(t, v);
            check::<i32>(t, v);
            check::<u32>(t, v);
            check::<i64>(t, v);
            check::<u64>(t, v);
        }
    }
    // Not an integer column: refused before a byte is read, whatever the bytes.
    for t in [oid::TEXT, oid::FLOAT8, oid::NUMERIC, oid::BOOL] {
        let e = text::<i16>(t, "1").unwrap_err();
        assert!(e.to_string().contains("cannot convert column \"c\""), "{e}");
    }
    // A malformed binary field names the column too.
    let c = Column::new("n".into(), 0, 0, oid::INT4, -1, -1, 1);
    let e = i16::from_sql(&c, Some(&[0, 1])).unwrap_err();
    assert!(
        e.to_string().contains("column \"n\": invalid binary int4"),
        "{e}"
    );
}

#[test]
fn numeric_decodes_as_exact_string_and_as_f64() {
    assert_eq!(text::<String>(oid::NUMERIC, "12.50").unwrap(), "12.50");
    assert_eq!(text::<f64>(oid::NUMERIC, "12.50").unwrap(), 12.5);
    assert!(text::<f64>(oid::NUMERIC, "NaN").unwrap().is_nan());
    assert_eq!(
        text::<Value>(oid::NUMERIC, "1.0").unwrap(),
        Value::Numeric("1.0".into())
    );
}

#[test]
fn null_decodes_only_into_option() {
    let c = col(oid::INT4, 0);
    assert_eq!(Option::<i32>::from_sql(&c, None).unwrap(), None);
    assert_eq!(Option::<i32>::from_sql(&c, Some(b"3")).unwrap(), Some(3));
    let e = i32::from_sql(&c, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conversion);
    assert_eq!(Value::from_sql(&c, None).unwrap(), Value::Null);
}

#[test]
fn bytea_decodes_from_hex_and_escape_forms() {
    assert_eq!(
        text::<Vec<u8>>(oid::BYTEA, "\\x00ff").unwrap(),
        vec![0, 255]
    );
    assert_eq!(
        text::<Vec<u8>>(oid::BYTEA, "\\x").unwrap(),
        Vec::<u8>::new()
    );
    assert_eq!(
        text::<Vec<u8>>(oid::BYTEA, "\\000\\377a\\\\").unwrap(),
        vec![0, 255, b'a', b'\\']
    );
    assert!(text::<Vec<u8>>(oid::BYTEA, "\\x0").is_err());
    assert!(text::<Vec<u8>>(oid::BYTEA, "\\9").is_err());
    assert!(text::<Vec<u8>>(oid::BYTEA, "\\777").is_err());
}

#[test]
fn text_arrays_decode_quoted_elements_and_nulls() {
    let v: Vec<Option<String>> = text(
        oid::TEXT_ARRAY,
        r#"{"a,b","c\"d","e\\f",NULL,"NULL",""," x "}"#,
    )
    .unwrap();
    assert_eq!(
        v,
        vec![
            Some("a,b".into()),
            Some("c\"d".into()),
            Some("e\\f".into()),
            None,
            Some("NULL".into()),
            Some(String::new()),
            Some(" x ".into())
        ]
    );
    let e = text::<Vec<String>>(oid::TEXT_ARRAY, "{a,NULL}").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conversion);
}

/// array_out quotes an element only for ASCII whitespace (scanner_isspace), so non-ASCII
/// spaces arrive bare at either end of an element, and they are data.
#[test]
fn text_arrays_keep_non_ascii_spaces_around_bare_elements() {
    let elems = [
        "\u{a0}x\u{a0}",
        "\u{2028}y",
        "z\u{3000}",
        "\u{85}w\u{85}",
        "\u{feff}",
    ];
    let raw = format!("{{{}}}", elems.join(","));
    let v: Vec<String> = text(oid::TEXT_ARRAY, &raw).unwrap();
    assert_eq!(v, elems);
    // ASCII whitespace around a bare element is layout, \v included; inside it is kept.
    let v: Vec<String> = text(oid::TEXT_ARRAY, "{ a b ,\x0bc\x0b,\t\u{a0}\n}").unwrap();
    assert_eq!(v, ["a b", "c", "\u{a0}"]);
    // An escaped trailing space is not layout.
    let v: Vec<String> = text(oid::TEXT_ARRAY, r"{a\ ,b\  ,\ ,x\\ }").unwrap();
    assert_eq!(v, ["a ", "b ", " ", "x\\"]);
    // The text input form quotes what array_in would trim, \v included, and nothing else.
    let mut out = String::new();
    text::push_array_element("\x0bv", &mut out);
    assert_eq!(out, "\"\x0bv\"");
    out.clear();
    text::push_array_element("\u{a0}x\u{3000}", &mut out);
    assert_eq!(out, "\u{a0}x\u{3000}");
    // And what it writes reads back unchanged.
    for s in ["\u{a0}x\u{a0}", " a ", "\x0b", "\x0c\r\n\t", "\u{2028}"] {
        let mut lit = String::from("{");
        text::push_array_element(s, &mut lit);
        lit.push('}');
        let v: Vec<String> = text(oid::TEXT_ARRAY, &lit).unwrap();
        assert_eq!(v, [s], "{lit:?}");
    }
}

#[test]
fn hstore_text_keeps_non_ascii_spaces() {
    let m: HashMap<String, Option<String>> = HashMap::from_sql(
        &hstore_col(0),
        Some("\"\u{a0}k\"=>\"v\u{3000}\", \x0b\"n\"=>NULL".as_bytes()),
    )
    .unwrap();
    assert_eq!(m, map(&[("\u{a0}k", Some("v\u{3000}")), ("n", None)]));
}

#[test]
fn text_arrays_decode_nested_and_empty_and_lower_bounds() {
    let v: Vec<Vec<Option<i32>>> = text(oid::INT4_ARRAY, "{{1,2},{3,NULL}}").unwrap();
    assert_eq!(v, vec![vec![Some(1), Some(2)], vec![Some(3), None]]);
    assert_eq!(
        text::<Vec<i32>>(oid::INT4_ARRAY, "{}").unwrap(),
        Vec::<i32>::new()
    );
    assert_eq!(
        text::<Vec<i32>>(oid::INT4_ARRAY, "[0:1]={1,2}").unwrap(),
        vec![1, 2]
    );
    assert_eq!(
        text::<Value>(oid::INT4_ARRAY, "{{1},{2}}").unwrap(),
        Value::Array(vec![
            Value::Array(vec![Value::Int4(1)]),
            Value::Array(vec![Value::Int4(2)])
        ])
    );
    assert_eq!(
        text::<Vec<Vec<u8>>>(oid::BYTEA_ARRAY, r#"{"\\x01ff"}"#).unwrap(),
        vec![vec![1, 255]]
    );
    assert_eq!(
        text::<Vec<bool>>(oid::BOOL_ARRAY, "{t,f}").unwrap(),
        vec![true, false]
    );
    assert_eq!(
        text::<Vec<String>>(oid::TEXT_ARRAY, r#"{"{}"}"#).unwrap(),
        vec!["{}"]
    );
}

#[test]
fn malformed_text_arrays_are_conversion_errors() {
    for bad in [
        "", "{", "{1,", "{1,2", "1,2}", "{1}x", "{\"a}", "{,}", "{{1}", "[0:1]",
    ] {
        let e = text::<Vec<Option<i32>>>(oid::INT4_ARRAY, bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conversion, "{bad:?}");
    }
}

#[test]
fn hstore_text_decodes_escapes_and_nulls() {
    let c = hstore_col(0);
    let h = HashMap::<String, Option<String>>::from_sql(
        &c,
        Some(br#""a"=>"b", "c"=>NULL, "d\"e"=>"f\\g", "n"=>"NULL""#),
    )
    .unwrap();
    assert_eq!(
        h,
        map(&[
            ("a", Some("b")),
            ("c", None),
            ("d\"e", Some("f\\g")),
            ("n", Some("NULL"))
        ])
    );
    assert_eq!(
        HashMap::<String, Option<String>>::from_sql(&c, Some(b"")).unwrap(),
        map(&[])
    );
    assert_eq!(
        HashMap::<String, Option<String>>::from_sql(&c, Some(b"a=>b,c => NULL")).unwrap(),
        map(&[("a", Some("b")), ("c", None)])
    );
    assert_eq!(
        Value::from_sql(&c, Some(b"\"a\"=>\"b\"")).unwrap(),
        Value::Hstore(map(&[("a", Some("b"))]))
    );
    for bad in ["\"a\"", "\"a\"=>", "\"a\"=>\"b", "a=>b c=>d"] {
        assert!(
            HashMap::<String, Option<String>>::from_sql(&c, Some(bad.as_bytes())).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn hstore_is_not_decoded_from_builtin_columns() {
    let e = text::<HashMap<String, Option<String>>>(oid::TEXT, "a=>b").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conversion);
}

#[cfg(feature = "json")]
#[test]
fn json_and_jsonb_decode_from_text_and_binary() {
    let want = serde_json::json!({"a": [1, "x"]});
    assert_eq!(
        text::<serde_json::Value>(oid::JSON, r#"{"a": [1, "x"]}"#).unwrap(),
        want
    );
    assert_eq!(
        bin::<serde_json::Value>(
            oid::JSONB,
            r"\x01\x7b\x22\x61\x22\x3a\x20\x5b\x31\x2c\x20\x22\x78\x22\x5d\x7d"
        )
        .unwrap(),
        want
    );
    assert!(bin::<serde_json::Value>(oid::JSONB, r"\x02\x7b\x7d").is_err());
    assert_eq!(
        text::<Value>(oid::JSONB, "[]").unwrap(),
        Value::Json(serde_json::json!([]))
    );
    assert!(text::<serde_json::Value>(oid::JSON, "{").is_err());
}

#[test]
fn values_of_other_types_keep_the_server_text() {
    assert_eq!(
        text::<Value>(oid::DATE, "2024-02-29").unwrap(),
        Value::Unknown {
            type_oid: oid::DATE,
            text: "2024-02-29".into()
        }
    );
    assert_eq!(
        text::<String>(oid::UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
            .unwrap()
            .len(),
        36
    );
}

// ---- binary decoding (bytes from PostgreSQL 15's binary COPY) ----

#[test]
fn binary_numerics_print_as_the_server_does() {
    let cases = [
        (r"\x00\x02\x00\x00\x00\x00\x00\x02\x00\x0c\x13\x88", "12.50"),
        (r"\x00\x01\xff\xfe\x40\x00\x00\x08\x04\xd2", "-0.00001234"),
        (r"\x00\x00\x00\x00\x00\x00\x00\x00", "0"),
        (r"\x00\x00\x00\x00\xc0\x00\x00\x00", "NaN"),
        (
            r"\x00\x07\x00\x05\x00\x00\x00\x01\x04\xd2\x16\x2e\x23\x34\x0d\x80\x1e\xd2\x04\xd2\x13\x88",
            "123456789012345678901234.5",
        ),
        (r"\x00\x01\x00\x01\x00\x00\x00\x00\x00\x01", "10000"),
        (r"\x00\x00\x00\x00\xd0\x00\x00\x20", "Infinity"),
    ];
    for (raw, want) in cases {
        assert_eq!(bin::<String>(oid::NUMERIC, raw).unwrap(), want);
    }
    assert_eq!(bin::<f64>(oid::NUMERIC, cases[0].0).unwrap(), 12.5);
    assert!(bin::<String>(oid::NUMERIC, r"\x00\x05\x00\x00").is_err());
}

#[test]
fn binary_scalars_decode() {
    assert_eq!(bin::<f32>(oid::FLOAT4, r"\x3f\xc0\x00\x00").unwrap(), 1.5);
    assert_eq!(bin::<f64>(oid::FLOAT4, r"\x3f\xc0\x00\x00").unwrap(), 1.5);
    assert_eq!(
        bin::<f64>(oid::FLOAT8, r"\xff\xf0\x00\x00\x00\x00\x00\x00").unwrap(),
        f64::NEG_INFINITY
    );
    assert_eq!(bin::<i64>(oid::INT4, r"\x00\x00\x00\x07").unwrap(), 7);
    assert_eq!(bin::<i16>(oid::INT2, r"\xff\xff").unwrap(), -1);
    assert!(bin::<bool>(oid::BOOL, r"\x01").unwrap());
    assert_eq!(
        bin::<Vec<u8>>(oid::BYTEA, r"\x00\xff").unwrap(),
        vec![0, 255]
    );
    assert_eq!(bin::<String>(oid::TEXT, r"\x61").unwrap(), "a");
    assert!(bin::<i32>(oid::INT4, r"\x00\x00\x07").is_err());
}

#[test]
fn binary_dates_times_and_uuids_print_as_the_server_does() {
    let cases = [
        (oid::DATE, r"\x00\x00\x22\x79", "2024-02-29"),
        (oid::DATE, r"\xff\xff\xff\xff", "1999-12-31"),
        (oid::DATE, r"\xff\xf4\x9d\x7b", "0044-03-15 BC"),
        (
            oid::TIMESTAMP,
            r"\x00\x02\xb5\x84\x3c\x0b\x93\x80",
            "2024-02-29 13:45:01.123456",
        ),
        (
            oid::TIMESTAMPTZ,
            r"\x00\x02\xb5\x84\x3c\x09\xb1\x40",
            "2024-02-29 13:45:01+00",
        ),
        (oid::TIME, r"\x00\x00\x00\x00\xdd\xf0\x19\xe0", "01:02:03.5"),
        (
            oid::UUID,
            r"\xa0\xee\xbc\x99\x9c\x0b\x4e\xf8\xbb\x6d\x6b\xb9\xbd\x38\x0a\x11",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        ),
    ];
    for (t, raw, want) in cases {
        assert_eq!(bin::<String>(t, raw).unwrap(), want);
        assert_eq!(
            bin::<Value>(t, raw).unwrap(),
            Value::Unknown {
                type_oid: t,
                text: want.into()
            }
        );
    }
}

#[test]
fn binary_arrays_decode_with_nulls_and_dimensions() {
    let two_d = r"\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00\x17\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00\x04\x00\x00\x00\x01\xff\xff\xff\xff\x00\x00\x00\x04\x00\x00\x00\x03\x00\x00\x00\x04\x00\x00\x00\x04";
    let v: Vec<Vec<Option<i32>>> = bin(oid::INT4_ARRAY, two_d).unwrap();
    assert_eq!(v, vec![vec![Some(1), None], vec![Some(3), Some(4)]]);
    assert_eq!(
        bin::<Value>(oid::INT4_ARRAY, two_d).unwrap(),
        Value::Array(vec![
            Value::Array(vec![Value::Int4(1), Value::Null]),
            Value::Array(vec![Value::Int4(3), Value::Int4(4)])
        ])
    );
    let texts = r"\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x19\x00\x00\x00\x03\x00\x00\x00\x01\x00\x00\x00\x03\x61\x2c\x62\xff\xff\xff\xff\x00\x00\x00\x02\x71\x22";
    let v: Vec<Option<String>> = bin(oid::TEXT_ARRAY, texts).unwrap();
    assert_eq!(v, vec![Some("a,b".into()), None, Some("q\"".into())]);
    assert!(bin::<Vec<String>>(oid::TEXT_ARRAY, texts).is_err());
    let empty = r"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17";
    assert_eq!(
        bin::<Vec<i32>>(oid::INT4_ARRAY, empty).unwrap(),
        Vec::<i32>::new()
    );
    let bytea = r"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x11\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x02\x01\xff";
    assert_eq!(
        bin::<Vec<Vec<u8>>>(oid::BYTEA_ARRAY, bytea).unwrap(),
        vec![vec![1, 255]]
    );
}

#[test]
fn binary_array_with_a_huge_declared_count_fails_without_allocating() {
    // One dimension of 2^31-1 elements, no element bytes.
    let raw = r"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x17\x7f\xff\xff\xff\x00\x00\x00\x01";
    assert_eq!(
        bin::<Vec<i32>>(oid::INT4_ARRAY, raw).unwrap_err().kind(),
        ErrorKind::Conversion
    );
    let raw = r"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x17\x00\x00\x00\x01\x00\x00\x00\x01\x7f\xff\xff\xff";
    assert!(bin::<Vec<i32>>(oid::INT4_ARRAY, raw).is_err());
}

#[test]
fn binary_hstore_decodes() {
    let raw = hex(
        r"\x00\x00\x00\x02\x00\x00\x00\x01\x61\x00\x00\x00\x01\x62\x00\x00\x00\x01\x63\xff\xff\xff\xff",
    );
    let h = HashMap::<String, Option<String>>::from_sql(&hstore_col(1), Some(&raw)).unwrap();
    assert_eq!(h, map(&[("a", Some("b")), ("c", None)]));
}

// ---- encoding parameters ----

#[test]
fn binary_encoding_round_trips_through_the_decoders() {
    fn rt(v: Value, t: u32) -> Value {
        let mut buf = BytesMut::new();
        assert_eq!(v.encode_binary(t, &mut buf).unwrap(), IsNull::No);
        Value::from_sql(&col(t, 1), Some(&buf)).unwrap()
    }
    assert_eq!(rt(Value::Int4(41), oid::INT8), Value::Int8(41));
    assert_eq!(rt(Value::Int8(-2), oid::INT2), Value::Int2(-2));
    assert_eq!(rt(Value::Bool(true), oid::BOOL), Value::Bool(true));
    assert_eq!(rt(Value::Float8(1.5), oid::FLOAT8), Value::Float8(1.5));
    assert_eq!(rt(Value::from("é"), oid::TEXT), Value::from("é"));
    assert_eq!(
        rt(Value::from(vec![1u8, 2]), oid::BYTEA),
        Value::Bytes(vec![1, 2])
    );
    let arr = Value::from(vec![vec![Some(1i32), None], vec![Some(3), Some(4)]]);
    assert_eq!(rt(arr.clone(), oid::INT4_ARRAY), arr);
    assert_eq!(
        rt(Value::Array(vec![]), oid::INT4_ARRAY),
        Value::Array(vec![])
    );
    assert_eq!(
        rt(
            Value::from(vec![Vec::<i32>::new(), vec![]]),
            oid::INT4_ARRAY
        ),
        Value::Array(vec![])
    );
    #[cfg(feature = "json")]
    assert_eq!(
        rt(Value::Json(serde_json::json!({"a": 1})), oid::JSONB),
        Value::Json(serde_json::json!({"a": 1}))
    );
}

#[test]
fn binary_encoding_rejects_mismatches_and_out_of_range() {
    let mut buf = BytesMut::new();
    assert_eq!(
        Value::Null.encode_binary(oid::INT4, &mut buf).unwrap(),
        IsNull::Yes
    );
    assert!(Value::Int8(1 << 40)
        .encode_binary(oid::INT4, &mut buf)
        .is_err());
    assert!(Value::from("x").encode_binary(oid::INT4, &mut buf).is_err());
    assert!(Value::from(vec![vec![1i32], vec![1, 2]])
        .encode_binary(oid::INT4_ARRAY, &mut buf)
        .is_err());
}

#[test]
fn text_encoding_is_the_server_input_form() {
    fn t(v: Value) -> String {
        let mut buf = BytesMut::new();
        v.encode_text(&mut buf).unwrap();
        String::from_utf8(buf.to_vec()).unwrap()
    }
    assert_eq!(t(Value::Bool(true)), "t");
    assert_eq!(t(Value::Float8(f64::NEG_INFINITY)), "-Infinity");
    assert_eq!(t(Value::Bytes(vec![0, 255])), "\\x00ff");
    assert_eq!(
        t(Value::from(vec![Some("a,b"), None, Some("NULL"), Some("")])),
        r#"{"a,b",NULL,"NULL",""}"#
    );
    assert_eq!(
        t(Value::from(vec![vec![1i32, 2], vec![3, 4]])),
        "{{1,2},{3,4}}"
    );
    // PostgreSQL has one empty array, of no dimensions, whatever the nesting.
    assert_eq!(t(Value::from(Vec::<i32>::new())), "{}");
    assert_eq!(t(Value::from(vec![Vec::<i32>::new()])), "{}");
    assert_eq!(t(Value::from(vec![vec![Vec::<i32>::new()]; 2])), "{}");
    assert_eq!(
        t(Value::Hstore(map(&[("b", None), ("a", Some("x\"y"))]))),
        r#""a"=>"x\"y", "b"=>NULL"#
    );
    let mut buf = BytesMut::new();
    let (format, _) = Value::Numeric("1.5".into())
        .encode(oid::NUMERIC, &mut buf)
        .unwrap();
    assert_eq!((format, &buf[..]), (Format::Text, &b"1.5"[..]));
}

#[test]
fn value_accessors_and_conversions() {
    assert_eq!(Value::from(3i16), Value::Int2(3));
    assert_eq!(Value::from(3u32), Value::Int8(3));
    assert_eq!(
        Value::from(u64::MAX),
        Value::Numeric("18446744073709551615".into())
    );
    assert_eq!(Value::from(Some("x")), Value::Text("x".into()));
    assert_eq!(Value::from(&b"ab"[..]), Value::Bytes(b"ab".to_vec()));
    assert_eq!(Value::from(vec![1i64]), Value::Array(vec![Value::Int8(1)]));
    assert_eq!(Value::from(2.5f64).as_f64(), Some(2.5));
    assert_eq!(Value::Numeric("2.5".into()).as_f64(), Some(2.5));
    assert_eq!(Value::from(true).as_bool(), Some(true));
    assert_eq!(Value::from(vec![1i32]).type_oid(), oid::INT4_ARRAY);
    assert_eq!(Value::from("x").as_i64(), None);
}

/// A binary array of `dims` dimensions of length 1 holding one int4.
fn binary_array_of_dims(dims: i32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&dims.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.extend_from_slice(&oid::INT4.to_be_bytes());
    for _ in 0..dims {
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
    }
    b.extend_from_slice(&4i32.to_be_bytes());
    b.extend_from_slice(&7i32.to_be_bytes());
    b
}

#[test]
fn deeply_nested_arrays_are_refused_instead_of_overflowing_the_stack() {
    // Both crashed the whole process (stack overflow, an abort no caller can catch): a
    // hostile server needed 200 kB of text or 160 kB of binary array in one DataRow field.
    let depth = 100_000;
    let text = format!("{}1{}", "{".repeat(depth), "}".repeat(depth));
    let e = Value::from_sql(&col(oid::INT4_ARRAY, 0), Some(text.as_bytes())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conversion);
    assert!(e.to_string().contains("more than 6 dimensions"), "{e}");
    let e = Vec::<Value>::from_sql(&col(oid::INT4_ARRAY, 0), Some(text.as_bytes())).unwrap_err();
    assert!(e.to_string().contains("more than 6 dimensions"), "{e}");

    let binary = binary_array_of_dims(20_000);
    let e = Value::from_sql(&col(oid::INT4_ARRAY, 1), Some(&binary)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conversion);
    assert!(e.to_string().contains("more than 6 dimensions"), "{e}");
}

#[test]
fn six_dimensions_are_still_decoded() {
    // PostgreSQL's MAXDIM is 6: the deepest array a real server sends.
    let text = "{{{{{{7}}}}}}";
    let v = Value::from_sql(&col(oid::INT4_ARRAY, 0), Some(text.as_bytes())).unwrap();
    let mut expect = Value::Array(vec![Value::Int4(7)]);
    for _ in 0..5 {
        expect = Value::Array(vec![expect]);
    }
    assert_eq!(v, expect);
    let v = Value::from_sql(&col(oid::INT4_ARRAY, 1), Some(&binary_array_of_dims(6))).unwrap();
    assert_eq!(v, expect);
    let seven = "{{{{{{{1}}}}}}}";
    assert!(Value::from_sql(&col(oid::INT4_ARRAY, 0), Some(seven.as_bytes())).is_err());
    assert!(Value::from_sql(&col(oid::INT4_ARRAY, 1), Some(&binary_array_of_dims(7))).is_err());
}

#[test]
fn text_integers_decode_like_str_parse_at_the_edges() {
    let inputs = [
        "0",
        "-0",
        "+0",
        "+7",
        "-1",
        "12",
        "",
        "-",
        "+",
        " 1",
        "1 ",
        "1a",
        "٣",
        "--1",
        "32767",
        "32768",
        "-32768",
        "-32769",
        "2147483647",
        "2147483648",
        "-2147483648",
        "-2147483649",
        "4294967295",
        "4294967296",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "00000000000000000000000042",
        // The fast path's edge: 18 digits, a bad byte among them, and 19.
        "999999999999999999",
        "-999999999999999999",
        "99999999999999999z",
        "z99999999999999999",
        "1000000000000000000",
        "-000000000000000001",
    ];
    fn check<T>(o: u32, s: &str)
    where
        T: FromSql + TryFrom<i64> + PartialEq + std::fmt::Debug,
    {
        let got = text::<T>(o, s);
        match s.parse::<i64>().ok().map(T::try_from) {
            Some(Ok(want)) => assert_eq!(got.unwrap(), want, "{s:?}"),
            _ => assert_eq!(got.unwrap_err().kind(), ErrorKind::Conversion, "{s:?}"),
        }
    }
    for s in inputs {
        check::<i16>(oid::INT2, s);
        check::<i32>(oid::INT2, s);
        check::<i32>(oid::INT4, s);
        check::<i64>(oid::INT8, s);
        check::<i64>(oid::INT4, s);
        check::<u32>(oid::OID, s);
    }
    // Binary of the column's own width, and a wrong width.
    let col = |t| Column::new("c".into(), 0, 0, t, -1, -1, 1);
    assert_eq!(
        i32::from_sql(&col(oid::INT4), Some(&(-5i32).to_be_bytes())).unwrap(),
        -5
    );
    assert_eq!(
        i16::from_sql(&col(oid::INT2), Some(&(-5i16).to_be_bytes())).unwrap(),
        -5
    );
    assert_eq!(
        i64::from_sql(&col(oid::INT8), Some(&(-5i64).to_be_bytes())).unwrap(),
        -5
    );
    assert_eq!(
        i64::from_sql(&col(oid::INT2), Some(&(-5i16).to_be_bytes())).unwrap(),
        -5
    );
    assert_eq!(
        u32::from_sql(&col(oid::OID), Some(&7u32.to_be_bytes())).unwrap(),
        7
    );
    assert_eq!(
        f64::from_sql(&col(oid::FLOAT8), Some(&1.5f64.to_be_bytes())).unwrap(),
        1.5
    );
    assert!(i32::from_sql(&col(oid::INT4), Some(&[0, 0, 1])).is_err());
    // Across widths: whatever fits is the value, the rest the general path's error.
    assert_eq!(
        i64::from_sql(&col(oid::INT4), Some(&(-7i32).to_be_bytes())).unwrap(),
        -7
    );
    assert_eq!(
        u64::from_sql(&col(oid::OID), Some(&u32::MAX.to_be_bytes())).unwrap(),
        4294967295
    );
    assert_eq!(
        i16::from_sql(&col(oid::INT8), Some(&300i64.to_be_bytes())).unwrap(),
        300
    );
    let e = i16::from_sql(&col(oid::INT4), Some(&70000i32.to_be_bytes())).unwrap_err();
    assert_eq!(
        e.to_string(),
        "conversion error: column \"c\" of type integer: 70000 is out of range for i16"
    );
    let e = u32::from_sql(&col(oid::INT4), Some(&(-1i32).to_be_bytes())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conversion);
    assert!(i64::from_sql(&col(oid::INT8), Some(&[0; 4])).is_err());
    assert!(f64::from_sql(&col(oid::FLOAT8), Some(&[0; 4])).is_err());
    assert!(String::from_sql(&col(oid::TEXT), Some(&[0xff])).is_err());
}
