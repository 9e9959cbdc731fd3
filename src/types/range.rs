//! [`Range<T>`]: the built-in range types (int4range, int8range, numrange, daterange,
//! tsrange, tstzrange) in the text and binary formats, with empty ranges and inclusive,
//! exclusive and unbounded ends.
//!
//! Parameters are written as psycopg2 writes its `NumericRange` (`'[1,10)'`) and
//! `DateRange` / `DateTimeRange` / `DateTimeTZRange` (`daterange('…'::date, NULL, '[)')`).
//! This module reads bytes from the server and must never panic: malformed input is a
//! Conversion error, and no allocation is larger than the input.

use std::ops::Bound;

use crate::error::Error;
use crate::row::Column;

use super::decode::{non_null, wrong_type, FromSql};
use super::{oid, quote, QuoteContext, SqlType, ToSql, Value};

/// A PostgreSQL range of `T`: empty, or two ends, each inclusive, exclusive or unbounded.
///
/// `T` is `i32` (int4range), `i64` (int8range), `rust_decimal::Decimal` (numrange), a date
/// (daterange), a naive date-time (tsrange) or an aware one (tstzrange). The server
/// normalises discrete ranges on input: `[1,10]` of int4 reads back as `[1,11)`.
///
/// ```
/// use std::ops::Bound;
/// use momoko::{QuoteContext, Range, ToSql};
/// let r = Range::new(Bound::Included(1i32), Bound::Excluded(10));
/// let mut sql = String::new();
/// r.write_literal(&QuoteContext::default(), &mut sql).unwrap();
/// assert_eq!(sql, "'[1,10)'");
/// assert!(!r.is_empty());
/// assert!(Range::<i32>::Empty.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Range<T> {
    /// The empty range (`'empty'`).
    Empty,
    /// A range with a lower and an upper end.
    Bounds(Bound<T>, Bound<T>),
}

impl<T> Range<T> {
    /// A range between two ends.
    pub fn new(lower: Bound<T>, upper: Bound<T>) -> Range<T> {
        Range::Bounds(lower, upper)
    }

    /// True for the empty range.
    pub fn is_empty(&self) -> bool {
        matches!(self, Range::Empty)
    }

    /// The lower end, `None` for the empty range.
    pub fn lower(&self) -> Option<&Bound<T>> {
        match self {
            Range::Empty => None,
            Range::Bounds(l, _) => Some(l),
        }
    }

    /// The upper end, `None` for the empty range.
    pub fn upper(&self) -> Option<&Bound<T>> {
        match self {
            Range::Empty => None,
            Range::Bounds(_, u) => Some(u),
        }
    }
}

/// The element type of a built-in range type.
pub(crate) fn range_element(range_oid: u32) -> Option<u32> {
    Some(match range_oid {
        oid::INT4RANGE => oid::INT4,
        oid::INT8RANGE => oid::INT8,
        oid::NUMRANGE => oid::NUMERIC,
        oid::DATERANGE => oid::DATE,
        oid::TSRANGE => oid::TIMESTAMP,
        oid::TSTZRANGE => oid::TIMESTAMPTZ,
        _ => return None,
    })
}

/// The range type of a built-in element type.
pub(crate) fn range_of(element_oid: u32) -> Option<u32> {
    Some(match element_oid {
        oid::INT2 | oid::INT4 => oid::INT4RANGE,
        oid::INT8 => oid::INT8RANGE,
        oid::NUMERIC => oid::NUMRANGE,
        oid::DATE => oid::DATERANGE,
        oid::TIMESTAMP => oid::TSRANGE,
        oid::TIMESTAMPTZ => oid::TSTZRANGE,
        _ => return None,
    })
}

/// A range's parts: empty, or the bound characters and the two ends (`None` unbounded).
#[derive(Debug, PartialEq)]
pub(crate) enum Parts<B> {
    Empty,
    Bounds {
        lower_inc: bool,
        upper_inc: bool,
        lower: Option<B>,
        upper: Option<B>,
    },
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Parses a range's text form as the server's range_in does.
pub(crate) fn parse_text(input: &str) -> Option<Parts<String>> {
    let s = input.trim_matches(|c: char| c.is_ascii() && is_space(c as u8));
    if s.eq_ignore_ascii_case("empty") {
        return Some(Parts::Empty);
    }
    let b = s.as_bytes();
    let lower_inc = match b.first()? {
        b'[' => true,
        b'(' => false,
        _ => return None,
    };
    let mut i = 1;
    let lower = bound(s, &mut i)?;
    if b.get(i) != Some(&b',') {
        return None;
    }
    i += 1;
    let upper = bound(s, &mut i)?;
    let upper_inc = match b.get(i)? {
        b']' => true,
        b')' => false,
        _ => return None,
    };
    if i + 1 != b.len() {
        return None;
    }
    Some(Parts::Bounds {
        lower_inc,
        upper_inc,
        lower,
        upper,
    })
}

/// One end at byte `i`: `None` when unbounded (nothing before the `,` or closing bracket).
fn bound(s: &str, i: &mut usize) -> Option<Option<String>> {
    let b = s.as_bytes();
    if matches!(b.get(*i), Some(b',' | b')' | b']')) {
        return Some(None);
    }
    let mut out = String::new();
    let mut in_quotes = false;
    loop {
        let c = s[*i..].chars().next()?;
        if !in_quotes && matches!(c, ',' | ')' | ']') {
            return Some(Some(out));
        }
        *i += c.len_utf8();
        match c {
            '\\' => {
                let n = s[*i..].chars().next()?;
                out.push(n);
                *i += n.len_utf8();
            }
            '"' if !in_quotes => in_quotes = true,
            '"' if b.get(*i) == Some(&b'"') => {
                out.push('"');
                *i += 1;
            }
            '"' => in_quotes = false,
            c => out.push(c),
        }
    }
}

/// Writes one end as the server's range_out does: quoted when empty or holding a space,
/// a quote, a backslash, a comma, a parenthesis or a bracket; quotes and backslashes doubled.
fn push_bound(s: &str, out: &mut String) {
    let quote = s.is_empty()
        || s.bytes()
            .any(|c| matches!(c, b'"' | b'\\' | b'(' | b')' | b'[' | b']' | b',') || is_space(c));
    if !quote {
        out.push_str(s);
        return;
    }
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push(c);
        }
        out.push(c);
    }
    out.push('"');
}

/// The text form of parts whose ends are already text.
pub(crate) fn to_text(parts: &Parts<String>) -> String {
    match parts {
        Parts::Empty => "empty".to_owned(),
        Parts::Bounds {
            lower_inc,
            upper_inc,
            lower,
            upper,
        } => {
            let mut out = String::new();
            out.push(if *lower_inc { '[' } else { '(' });
            if let Some(l) = lower {
                push_bound(l, &mut out);
            }
            out.push(',');
            if let Some(u) = upper {
                push_bound(u, &mut out);
            }
            out.push(if *upper_inc { ']' } else { ')' });
            out
        }
    }
}

const EMPTY: u8 = 0x01;
const LB_INC: u8 = 0x02;
const UB_INC: u8 = 0x04;
const LB_INF: u8 = 0x08;
const UB_INF: u8 = 0x10;

/// Parses the binary range: a flags byte, then each bounded end as a length and its bytes.
pub(crate) fn parse_binary(raw: &[u8]) -> Option<Parts<&[u8]>> {
    let (&flags, mut rest) = raw.split_first()?;
    if flags & EMPTY != 0 {
        return rest.is_empty().then_some(Parts::Empty);
    }
    let mut take = |inf: bool| -> Option<Option<&[u8]>> {
        if inf {
            return Some(None);
        }
        let (len, r) = rest.split_first_chunk::<4>()?;
        let len = usize::try_from(i32::from_be_bytes(*len)).ok()?;
        if len > r.len() {
            return None;
        }
        let (v, r) = r.split_at(len);
        rest = r;
        Some(Some(v))
    };
    let lower = take(flags & LB_INF != 0)?;
    let upper = take(flags & UB_INF != 0)?;
    rest.is_empty().then_some(Parts::Bounds {
        lower_inc: flags & LB_INC != 0,
        upper_inc: flags & UB_INC != 0,
        lower,
        upper,
    })
}

fn bad(column: &Column) -> Error {
    Error::conversion(format!("column \"{}\": malformed range", column.name()))
}

/// The text form of a binary range of `range_oid`, as the server prints it.
pub(crate) fn binary_to_string(range_oid: u32, raw: &[u8]) -> Result<String, Error> {
    let elem = range_element(range_oid).ok_or_else(|| Error::conversion("not a range type"))?;
    let col = Column::new(String::new(), 0, 0, elem, -1, -1, 1);
    let parts = parse_binary(raw).ok_or_else(|| Error::conversion("malformed binary range"))?;
    let text = |b: Option<&[u8]>| -> Result<Option<String>, Error> {
        b.map(|b| {
            let mut s = String::new();
            Value::from_sql(&col, Some(b))?.write_text(&mut s)?;
            Ok(s)
        })
        .transpose()
    };
    Ok(to_text(&match parts {
        Parts::Empty => Parts::Empty,
        Parts::Bounds {
            lower_inc,
            upper_inc,
            lower,
            upper,
        } => Parts::Bounds {
            lower_inc,
            upper_inc,
            lower: text(lower)?,
            upper: text(upper)?,
        },
    }))
}

impl<T: FromSql> FromSql for Range<T> {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<Range<T>, Error> {
        let elem =
            range_element(column.type_oid()).ok_or_else(|| wrong_type(column, "Range<T>"))?;
        let raw = non_null(column, raw, "Range<T>")?;
        let elem = column.element(elem, false);
        let end = |b: Option<&[u8]>, inc: bool| -> Result<Bound<T>, Error> {
            Ok(match b {
                None => Bound::Unbounded,
                Some(b) if inc => Bound::Included(T::from_sql(&elem, Some(b))?),
                Some(b) => Bound::Excluded(T::from_sql(&elem, Some(b))?),
            })
        };
        let build = |parts: Parts<&[u8]>| -> Result<Range<T>, Error> {
            Ok(match parts {
                Parts::Empty => Range::Empty,
                Parts::Bounds {
                    lower_inc,
                    upper_inc,
                    lower,
                    upper,
                } => Range::Bounds(end(lower, lower_inc)?, end(upper, upper_inc)?),
            })
        };
        if column.format() == 1 {
            return build(parse_binary(raw).ok_or_else(|| bad(column))?);
        }
        let s = std::str::from_utf8(raw).map_err(|_| bad(column))?;
        match parse_text(s).ok_or_else(|| bad(column))? {
            Parts::Empty => Ok(Range::Empty),
            Parts::Bounds {
                lower_inc,
                upper_inc,
                lower,
                upper,
            } => build(Parts::Bounds {
                lower_inc,
                upper_inc,
                lower: lower.as_deref().map(str::as_bytes),
                upper: upper.as_deref().map(str::as_bytes),
            }),
        }
    }
}

/// The range's text form from its ends' own text forms.
impl<T: ToSql + SqlType> ToSql for Range<T> {
    fn to_value(&self) -> Value {
        let range_oid = range_of(T::TYPE_OID).unwrap_or(0);
        let text = |b: &Bound<T>| -> (bool, Option<String>) {
            match b {
                Bound::Unbounded => (false, None),
                Bound::Included(v) | Bound::Excluded(v) => {
                    let mut s = String::new();
                    // A value whose text form fails (a NUL) fails again, with its error,
                    // when the literal is written.
                    let _ = v.to_value().write_text(&mut s);
                    (matches!(b, Bound::Included(_)), Some(s))
                }
            }
        };
        let parts = match self {
            Range::Empty => Parts::Empty,
            Range::Bounds(l, u) => {
                let ((lower_inc, lower), (upper_inc, upper)) = (text(l), text(u));
                Parts::Bounds {
                    lower_inc,
                    upper_inc,
                    lower,
                    upper,
                }
            }
        };
        Value::Unknown {
            type_oid: range_oid,
            text: to_text(&parts),
        }
    }
}

/// psycopg2's range literals for a range value in its text form: `'[1,10)'` for the
/// numeric ranges, `daterange('…'::date, NULL, '[)')` for the others, `'empty'` (with a cast
/// for the latter).
pub(crate) fn write_literal(
    range_oid: u32,
    text: &str,
    ctx: &QuoteContext,
    out: &mut String,
) -> Result<(), Error> {
    let (Some(elem), Some(parts)) = (range_element(range_oid), parse_text(text)) else {
        return quote::string(text, ctx, out);
    };
    let numeric = matches!(elem, oid::INT4 | oid::INT8 | oid::NUMERIC);
    let name = oid::cast_name(range_oid).unwrap_or("");
    let (lower_inc, upper_inc, lower, upper) = match parts {
        Parts::Empty if numeric => {
            out.push_str("'empty'");
            return Ok(());
        }
        Parts::Empty => {
            out.push_str("'empty'::");
            out.push_str(name);
            return Ok(());
        }
        Parts::Bounds {
            lower_inc,
            upper_inc,
            lower,
            upper,
        } => (lower_inc, upper_inc, lower, upper),
    };
    let lb = if lower_inc { '[' } else { '(' };
    let ub = if upper_inc { ']' } else { ')' };
    if numeric
        && [&lower, &upper]
            .iter()
            .all(|b| b.as_deref().is_none_or(quote::is_plain_number))
    {
        out.push('\'');
        out.push(lb);
        if let Some(l) = &lower {
            quote::signed(l, out);
        }
        out.push(',');
        if let Some(u) = &upper {
            quote::signed(u, out);
        }
        out.push(ub);
        out.push('\'');
        return Ok(());
    }
    if numeric {
        // Not a number (NaN, or text the server should judge): the range's own text.
        quote::string(text, ctx, out)?;
        out.push_str("::");
        out.push_str(name);
        return Ok(());
    }
    out.push_str(name);
    out.push('(');
    for (i, b) in [lower, upper].into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        match b {
            None => out.push_str("NULL"),
            Some(s) => quote::typed_text(elem, &s, ctx, out)?,
        }
    }
    out.push_str(", '");
    out.push(lb);
    out.push(ub);
    out.push_str("')");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(lower_inc: bool, upper_inc: bool, l: Option<&str>, u: Option<&str>) -> Parts<String> {
        Parts::Bounds {
            lower_inc,
            upper_inc,
            lower: l.map(str::to_owned),
            upper: u.map(str::to_owned),
        }
    }

    #[test]
    fn text_ranges_parse_as_range_in_does() {
        assert_eq!(parse_text("empty"), Some(Parts::Empty));
        assert_eq!(parse_text(" EMPTY "), Some(Parts::Empty));
        assert_eq!(
            parse_text("[1,10)"),
            Some(b(true, false, Some("1"), Some("10")))
        );
        assert_eq!(parse_text("(,)"), Some(b(false, false, None, None)));
        assert_eq!(parse_text("(,5]"), Some(b(false, true, None, Some("5"))));
        assert_eq!(
            parse_text(r#"["2024-01-01 00:00:00","a""b\\c")"#),
            Some(b(true, false, Some("2024-01-01 00:00:00"), Some("a\"b\\c")))
        );
        assert_eq!(
            parse_text(r#"[a\,b,"")"#),
            Some(b(true, false, Some("a,b"), Some("")))
        );
        for bad in [
            "", "[", "[1", "[1,", "[1,2", "{1,2}", "[1,2)x", "[1;2)", "[\"1,2)",
        ] {
            assert_eq!(parse_text(bad), None, "{bad}");
        }
    }

    #[test]
    fn text_form_round_trips() {
        for s in [
            "empty",
            "[1,10)",
            "(,)",
            r#"["2024-01-01 00:00:00","2024-01-02 00:00:00")"#,
            r#"["a""b","c\\d"]"#,
            r#"("",x)"#,
        ] {
            let p = parse_text(s).unwrap();
            assert_eq!(to_text(&p), s);
        }
    }

    #[test]
    fn binary_ranges_are_checked_against_their_lengths() {
        let mut raw = vec![LB_INC];
        raw.extend_from_slice(&4i32.to_be_bytes());
        raw.extend_from_slice(&1i32.to_be_bytes());
        raw.extend_from_slice(&4i32.to_be_bytes());
        raw.extend_from_slice(&10i32.to_be_bytes());
        assert_eq!(binary_to_string(oid::INT4RANGE, &raw).unwrap(), "[1,10)");
        assert!(parse_binary(&raw[..raw.len() - 1]).is_none());
        assert!(parse_binary(&[EMPTY, 0]).is_none());
        assert_eq!(parse_binary(&[EMPTY]), Some(Parts::Empty));
        assert_eq!(
            binary_to_string(oid::INT4RANGE, &[LB_INF | UB_INF]).unwrap(),
            "(,)"
        );
        let mut huge = vec![0u8];
        huge.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(parse_binary(&huge).is_none());
    }

    #[test]
    fn literals_follow_psycopg2s_range_adapters() {
        let ctx = QuoteContext::default();
        let lit = |oid, t: &str| {
            let mut s = String::new();
            write_literal(oid, t, &ctx, &mut s).unwrap();
            s
        };
        assert_eq!(lit(oid::INT4RANGE, "[-1,10)"), "'[ -1,10)'");
        assert_eq!(lit(oid::NUMRANGE, "(,1.5]"), "'(,1.5]'");
        assert_eq!(lit(oid::INT8RANGE, "empty"), "'empty'");
        assert_eq!(lit(oid::DATERANGE, "empty"), "'empty'::daterange");
        assert_eq!(
            lit(oid::DATERANGE, "[2024-01-01,)"),
            "daterange('2024-01-01'::date, NULL, '[)')"
        );
        assert_eq!(
            lit(oid::TSTZRANGE, "(,\"2024-01-01T00:00:00+00:00\"]"),
            "tstzrange(NULL, '2024-01-01T00:00:00+00:00'::timestamptz, '(]')"
        );
    }
}
