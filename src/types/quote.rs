//! psycopg2's SQL literals: how every `Value` is written into a query on the client side.
//!
//! The renderings follow psycopg2 2.9 byte for byte (checked against it; see the tests),
//! because `mogrify` output is compared with psycopg2's by users porting Momoko code. This
//! module must never produce text that changes the meaning of the surrounding SQL: every
//! string goes through `string()`, and numbers are checked before they are written bare.

use std::fmt::Write as _;

use crate::error::Error;

use super::{oid, QuoteContext, Value};

/// Appends `s` as a string literal: `'it''s'`, or `E'a \\ b'` when the server does not use
/// standard conforming strings (the `E` form with doubled backslashes is right under either
/// setting, so it is the one written whenever the setting is off).
pub(crate) fn string(s: &str, ctx: &QuoteContext, out: &mut String) -> Result<(), Error> {
    if s.contains('\0') {
        return Err(Error::usage(
            "A string literal cannot contain NUL (0x00) characters.",
        ));
    }
    out.reserve(s.len() + 3);
    if !ctx.standard_conforming_strings {
        out.push('E');
    }
    out.push('\'');
    let doubled: &[char] = if ctx.standard_conforming_strings {
        &['\'']
    } else {
        &['\'', '\\']
    };
    let mut rest = s;
    // Copy runs between characters that need doubling in one go: large parameters
    // (100 kB strings in Momoko's own tests) are mostly such runs.
    while let Some(i) = rest.find(doubled) {
        let c = &rest[i..=i];
        out.push_str(&rest[..=i]);
        out.push_str(c);
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
    out.push('\'');
    Ok(())
}

/// Appends bytes as psycopg2 writes bytea: `'\x0001'::bytea`, and no bytes as `'\x'::bytea`,
/// which is what psycopg2 2.9 writes on a connection (its `''::bytea` is what its adapter
/// writes with no connection, in the escape form, which momoko never writes; see
/// tests/psycopg2_compat.rs's `empty_bytes`).
pub(crate) fn bytea(b: &[u8], ctx: &QuoteContext, out: &mut String) {
    out.reserve(b.len() * 2 + 12);
    out.push_str(if ctx.standard_conforming_strings {
        "'\\x"
    } else {
        "E'\\\\x"
    });
    push_hex(b, out);
    out.push_str("'::bytea");
}

pub(crate) fn push_hex(b: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &byte in b {
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 15)] as char);
    }
}

/// psycopg2 puts a space before a negative number so that `1-%s` never becomes `1--1`, the
/// start of a comment.
pub(crate) fn signed(text: &str, out: &mut String) {
    if text.starts_with('-') {
        out.push(' ');
    }
    out.push_str(text);
}

pub(crate) fn int(v: i64, out: &mut String) {
    if v < 0 {
        out.push(' ');
    }
    let _ = write!(out, "{v}");
}

pub(crate) fn float8(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("'NaN'::float");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 {
            "'Infinity'::float"
        } else {
            "'-Infinity'::float"
        });
    } else {
        signed(&python_repr(&shortest_e(v)), out);
    }
}

/// The shortest digits that round-trip, in `{:e}` form, choosing among equally short
/// candidates the one nearest the exact value (ties to even) as Python's `repr` does. Rust's
/// own shortest form may pick the other candidate of a tie (`…597.063` for `…597.0625`),
/// so the digit count is taken from it and the digits from exact, correctly rounded
/// formatting at that precision.
pub(crate) fn shortest_e(v: f64) -> String {
    let short = format!("{v:e}");
    let digits = short
        .split('e')
        .next()
        .map_or(1, |m| m.bytes().filter(u8::is_ascii_digit).count());
    format!("{:.*e}", digits.saturating_sub(1), v)
}

fn shortest_e32(v: f32) -> String {
    let short = format!("{v:e}");
    let digits = short
        .split('e')
        .next()
        .map_or(1, |m| m.bytes().filter(u8::is_ascii_digit).count());
    format!("{:.*e}", digits.saturating_sub(1), v)
}

pub(crate) fn float4(v: f32, out: &mut String) {
    if v.is_finite() {
        // The f32's own shortest digits: 1.1f32 is written 1.1, not 1.100000023841858.
        signed(&python_repr(&shortest_e32(v)), out);
    } else {
        float8(f64::from(v), out);
    }
}

/// Python's `repr(float)` from Rust's shortest round-trip digits in `{:e}` form (`1.5e-7`):
/// fixed notation while the decimal point sits within 16 digits of the first digit and
/// the number is at least 1e-4, exponent notation (`1e+16`, `1e-05`) otherwise.
pub(crate) fn python_repr(sci: &str) -> String {
    let (neg, sci) = match sci.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, sci),
    };
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::with_capacity(digits.len() + 8);
    if neg {
        out.push('-');
    }
    let decpt = exp + 1;
    let ndigits = digits.len() as i32;
    if (-3..=16).contains(&decpt) {
        if decpt <= 0 {
            out.push_str("0.");
            out.push_str(&"0".repeat((-decpt) as usize));
            out.push_str(&digits);
        } else if decpt < ndigits {
            out.push_str(&digits[..decpt as usize]);
            out.push('.');
            out.push_str(&digits[decpt as usize..]);
        } else {
            out.push_str(&digits);
            out.push_str(&"0".repeat((decpt - ndigits) as usize));
            out.push_str(".0");
        }
    } else {
        out.push_str(&digits[..1]);
        if ndigits > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    out
}

/// Whether `s` is a decimal number that may be written bare into SQL: optional sign, digits
/// with at most one point, an optional exponent. Anything else is quoted, so that a
/// `Value::Numeric` built from untrusted text can never inject SQL.
pub(crate) fn is_plain_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let start = i;
    let mut digits = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
        digits += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 || i == start {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        let exp_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return false;
        }
    }
    i == b.len()
}

pub(crate) fn numeric(s: &str, ctx: &QuoteContext, out: &mut String) -> Result<(), Error> {
    if is_plain_number(s) {
        signed(s.strip_prefix('+').unwrap_or(s), out);
        Ok(())
    } else {
        // NaN and ±Infinity (PostgreSQL 14+), and anything the server should judge itself.
        // psycopg2 writes 'NaN'::numeric even for Decimal('Infinity'), which changes the
        // value; the server's own spelling is kept here instead.
        string(s, ctx, out)?;
        out.push_str("::numeric");
        Ok(())
    }
}

/// psycopg2's list adapter: `ARRAY[...]`, `'{}'` when empty, and the `'{NULL,...}'` form when
/// every element is NULL (or an array of only NULLs), which `ARRAY[]` cannot type.
pub(crate) fn array(items: &[Value], ctx: &QuoteContext, out: &mut String) -> Result<(), Error> {
    if items.is_empty() {
        out.push_str("'{}'");
        return Ok(());
    }
    let mut parts: Vec<String> = Vec::with_capacity(items.len());
    let mut all_nulls = true;
    for item in items {
        let mut s = String::new();
        match item {
            Value::Null => s.push_str("NULL"),
            Value::Array(_) => {
                item.write_literal(ctx, &mut s)?;
                if s.starts_with('A') {
                    all_nulls = false;
                } else if s == "'{}'" {
                    // '{{}}' is not valid input, but ARRAY[ARRAY[]] is (psycopg2 #788).
                    all_nulls = false;
                    s = "ARRAY[]".to_owned();
                }
            }
            _ => {
                item.write_literal(ctx, &mut s)?;
                all_nulls = false;
            }
        }
        parts.push(s);
    }
    if all_nulls {
        out.push_str("'{");
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            // Nested all-NULL arrays come quoted ('{NULL}'); their quotes go.
            match p.strip_prefix('\'').and_then(|p| p.strip_suffix('\'')) {
                Some(inner) => out.push_str(inner),
                None => out.push_str(p),
            }
        }
        out.push_str("}'");
    } else {
        out.push_str("ARRAY[");
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(p);
        }
        out.push(']');
    }
    Ok(())
}

/// psycopg2's hstore adapter (PostgreSQL 9.0 and later):
/// `hstore(ARRAY['k1','k2'], ARRAY['v1',NULL])`, and `''::hstore` when empty. Keys are
/// written sorted so that the same map always gives the same SQL.
pub(crate) fn hstore<'a, I>(entries: I, ctx: &QuoteContext, out: &mut String) -> Result<(), Error>
where
    I: IntoIterator<Item = (&'a str, Option<&'a str>)>,
{
    let mut entries: Vec<(&str, Option<&str>)> = entries.into_iter().collect();
    if entries.is_empty() {
        out.push_str("''::hstore");
        return Ok(());
    }
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let keys: Vec<Value> = entries
        .iter()
        .map(|(k, _)| Value::Text((*k).to_owned()))
        .collect();
    let values: Vec<Value> = entries
        .iter()
        .map(|(_, v)| v.map_or(Value::Null, |v| Value::Text(v.to_owned())))
        .collect();
    out.push_str("hstore(");
    array(&keys, ctx, out)?;
    out.push_str(", ");
    array(&values, ctx, out)?;
    out.push(')');
    Ok(())
}

/// The literal of a value of a type without a variant of its own: the server's text, with a
/// cast for the well-known types so that the literal has the type the value came with.
///
/// psycopg2's adapters for these types (dates, times, intervals, uuids…) write `'…'` without
/// the `E` even when standard_conforming_strings is off. Without a backslash the two forms
/// mean the same under either setting, so the plain one is written then; text with a
/// backslash keeps the `E'…'` form with doubled backslashes, the only one safe under both.
pub(crate) fn typed_text(
    type_oid: u32,
    text: &str,
    ctx: &QuoteContext,
    out: &mut String,
) -> Result<(), Error> {
    let ctx = if text.contains('\\') {
        *ctx
    } else {
        QuoteContext {
            standard_conforming_strings: true,
        }
    };
    string(text, &ctx, out)?;
    if let Some(name) = oid::cast_name(type_oid) {
        out.push_str("::");
        out.push_str(name);
    }
    Ok(())
}

/// `json.dumps` as psycopg2's `Json` adapter calls it: `", "` and `": "` separators, ASCII
/// only (`\u00e9`, surrogate pairs above the BMP), floats as Python's `repr`.
#[cfg(feature = "json")]
pub(crate) fn python_json(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value as J;
    match v {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Number(n) => {
            if n.is_f64() {
                let f = n.as_f64().unwrap_or(0.0);
                out.push_str(&python_repr(&shortest_e(f)));
            } else {
                let _ = write!(out, "{n}");
            }
        }
        J::String(s) => json_string(s, out),
        J::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_json(item, out);
            }
            out.push(']');
        }
        J::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                json_string(k, out);
                out.push_str(": ");
                python_json(item, out);
            }
            out.push('}');
        }
    }
}

#[cfg(feature = "json")]
fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
    }
    out.push('"');
}
