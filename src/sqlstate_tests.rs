//! The generated constants checked against the committed list itself: one constant per line
//! with a SQLSTATE, each with that line's code, and the names a user reaches for.

use super::*;

const LIST: &str = include_str!("../scripts/errcodes.txt");

/// (code, C macro name without ERRCODE_, condition name) of every SQLSTATE line.
fn lines() -> Vec<(&'static str, &'static str, Option<&'static str>)> {
    LIST.lines()
        .filter(|l| l.len() > 5 && l.as_bytes()[5].is_ascii_whitespace() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let macro_name = f[2].strip_prefix("ERRCODE_").expect("a macro name");
            (f[0], macro_name, f.get(3).copied())
        })
        .collect()
}

#[test]
fn one_constant_per_sqlstate_line_with_that_lines_code() {
    let lines = lines();
    assert_eq!(lines.len(), 268, "PostgreSQL 18.6 lists 268 SQLSTATE lines");
    assert_eq!(ALL.len(), lines.len());
    for ((code, macro_name, condition), (name, value)) in lines.iter().zip(ALL) {
        assert_eq!(value, code, "{name}");
        let by_condition = condition.map(str::to_uppercase);
        assert!(
            by_condition.as_deref() == Some(*name) || macro_name == name,
            "{code}: {name} is neither its condition name {condition:?} nor its macro name"
        );
    }
}

#[test]
fn the_names_users_reach_for_have_their_codes() {
    assert_eq!(UNIQUE_VIOLATION, "23505");
    assert_eq!(FOREIGN_KEY_VIOLATION, "23503");
    assert_eq!(SERIALIZATION_FAILURE, "40001");
    assert_eq!(DEADLOCK_DETECTED, "40P01");
    assert_eq!(QUERY_CANCELED, "57014");
    assert_eq!(ADMIN_SHUTDOWN, "57P01");
    assert_eq!(UNDEFINED_TABLE, "42P01");
    assert_eq!(INVALID_CATALOG_NAME, "3D000");
    assert_eq!(SYNTAX_ERROR, "42601");
    assert_eq!(READ_ONLY_SQL_TRANSACTION, "25006");
    // PostgreSQL 18's additions.
    assert_eq!(INVALID_ARGUMENT_FOR_XQUERY, "10608");
    assert_eq!(FILE_NAME_TOO_LONG, "58P03");
}

#[test]
fn repeated_condition_names_are_told_apart_as_tokio_postgres_does() {
    assert_eq!(WARNING_STRING_DATA_RIGHT_TRUNCATION, "01004");
    assert_eq!(STRING_DATA_RIGHT_TRUNCATION, "22001");
    assert_eq!(NULL_VALUE_NOT_ALLOWED, "22004");
    assert_eq!(E_R_I_E_NULL_VALUE_NOT_ALLOWED, "39004");
    assert_eq!(S_R_E_MODIFYING_SQL_DATA_NOT_PERMITTED, "2F002");
    assert_eq!(S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED, "2F003");
    assert_eq!(S_R_E_READING_SQL_DATA_NOT_PERMITTED, "2F004");
    assert_eq!(E_R_E_MODIFYING_SQL_DATA_NOT_PERMITTED, "38002");
    assert_eq!(E_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED, "38003");
    assert_eq!(E_R_E_READING_SQL_DATA_NOT_PERMITTED, "38004");
    // The second names of one code.
    assert_eq!(UNDEFINED_DATABASE, INVALID_CATALOG_NAME);
    assert_eq!(ARRAY_ELEMENT_ERROR, ARRAY_SUBSCRIPT_ERROR);
    let mut names: Vec<&str> = ALL.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), ALL.len(), "every name is unique");
}
