//! PostgreSQL into Rust: the [`FromSql`] trait and its implementations, for the text and the
//! binary result formats.
//!
//! A decoder checks the column's type before it reads a byte, so that asking for the wrong
//! Rust type is a Conversion error naming both types, never a panic or a silent
//! reinterpretation (a text column is not parsed as an integer just because it looks like one).

use std::collections::HashMap;

use postgres_protocol::types as pt;

use crate::error::Error;
use crate::row::Column;

use super::binary::{self, conv};
use super::{oid, parse_float, text, Value};

/// A Rust type that a column's value can be decoded into.
///
/// `raw` is the field's bytes in the column's format (`column.format()`: 0 text, 1 binary),
/// `None` for SQL NULL. NULL decodes only into `Option<T>` (and `Value::Null`); anything
/// else gets a Conversion error.
///
/// ```
/// use momoko::{Column, FromSql};
/// let col = Column::new("n".into(), 0, 0, 23, 4, -1, 0);
/// assert_eq!(i64::from_sql(&col, Some(b"42")).unwrap(), 42);
/// assert_eq!(Option::<i32>::from_sql(&col, None).unwrap(), None);
/// assert!(i32::from_sql(&col, None).is_err());
/// ```
pub trait FromSql: Sized {
    /// Decodes one field of `column`.
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<Self, Error>;
}

fn type_name(type_oid: u32) -> String {
    let name = match type_oid {
        oid::BOOL => "boolean",
        oid::BYTEA => "bytea",
        oid::CHAR => "\"char\"",
        oid::NAME => "name",
        oid::INT8 => "bigint",
        oid::INT2 => "smallint",
        oid::INT4 => "integer",
        oid::TEXT => "text",
        oid::OID => "oid",
        oid::JSON => "json",
        oid::JSONB => "jsonb",
        oid::FLOAT4 => "real",
        oid::FLOAT8 => "double precision",
        oid::UNKNOWN => "unknown",
        oid::BPCHAR => "character",
        oid::VARCHAR => "character varying",
        oid::NUMERIC => "numeric",
        o => {
            return match oid::cast_name(o) {
                Some(n) => n.to_owned(),
                None if oid::array_element(o).is_some() => format!("array (oid {o})"),
                None => format!("oid {o}"),
            }
        }
    };
    name.to_owned()
}

pub(crate) fn wrong_type(column: &Column, rust: &str) -> Error {
    Error::conversion(format!(
        "cannot convert column \"{}\" of type {} to {rust}",
        column.name(),
        type_name(column.type_oid())
    ))
}

pub(crate) fn non_null<'a>(
    column: &Column,
    raw: Option<&'a [u8]>,
    rust: &str,
) -> Result<&'a [u8], Error> {
    raw.ok_or_else(|| {
        Error::conversion(format!(
            "column \"{}\" is NULL; decode it into Option<{rust}>",
            column.name()
        ))
    })
}

fn utf8<'a>(column: &Column, raw: &'a [u8]) -> Result<&'a str, Error> {
    std::str::from_utf8(raw)
        .map_err(|_| Error::conversion(format!("column \"{}\" is not valid UTF-8", column.name())))
}

fn is_binary(column: &Column) -> bool {
    column.format() == 1
}

fn parse_text<T: std::str::FromStr>(column: &Column, raw: &[u8], rust: &str) -> Result<T, Error> {
    let s = utf8(column, raw)?;
    s.parse().map_err(|_| {
        Error::conversion(format!(
            "column \"{}\": {s:?} is not a valid {rust}",
            column.name()
        ))
    })
}

/// The integer column types. Every Rust integer type reads every one of them, and a value
/// that does not fit is a Conversion error: PostgreSQL types a parameter or a literal as
/// `integer` even when it is small (`SELECT %s` with 5), so the column type says little about
/// the Rust type the caller wants.
fn is_int_column(type_oid: u32) -> bool {
    matches!(type_oid, oid::INT2 | oid::INT4 | oid::INT8 | oid::OID)
}

/// Any integer column, widened to i64 (which holds every int2, int4, int8 and oid).
fn int(column: &Column, raw: Option<&[u8]>, rust: &str) -> Result<i64, Error> {
    let t = column.type_oid();
    if !is_int_column(t) {
        return Err(wrong_type(column, rust));
    }
    let raw = non_null(column, raw, rust)?;
    if !is_binary(column) {
        return parse_text(column, raw, rust);
    }
    let name = column.name();
    let bad = |what: &'static str| {
        move |e: Box<dyn std::error::Error + Sync + Send>| {
            Error::conversion(format!("column \"{name}\": invalid binary {what}: {e}"))
        }
    };
    Ok(match t {
        oid::INT2 => i64::from(pt::int2_from_sql(raw).map_err(bad("int2"))?),
        oid::INT4 => i64::from(pt::int4_from_sql(raw).map_err(bad("int4"))?),
        oid::INT8 => pt::int8_from_sql(raw).map_err(bad("int8"))?,
        _ => i64::from(pt::oid_from_sql(raw).map_err(bad("oid"))?),
    })
}

fn out_of_range(column: &Column, v: i64, rust: &str) -> Error {
    Error::conversion(format!(
        "column \"{}\" of type {}: {v} is out of range for {rust}",
        column.name(),
        type_name(column.type_oid())
    ))
}

/// Decimal text (an optional sign, then digits) straight into `T`, `None` for anything else
/// or an overflow, which the general path then reports. Up to 18 digits (every int2, int4
/// and nearly every int8) are summed in a u64 that cannot overflow, the digits checked
/// together at the end; longer ones go digit by digit with checked arithmetic.
macro_rules! parse_dec {
    ($t:ty, $raw:expr) => {{
        let raw: &[u8] = $raw;
        let (neg, digits) = match raw.split_first() {
            Some((b'-', rest)) => (true, rest),
            Some((b'+', rest)) => (false, rest),
            _ => (false, raw),
        };
        if !digits.is_empty() && digits.len() <= 18 {
            let (mut acc, mut bad) = (0u64, false);
            for &d in digits {
                let d = d.wrapping_sub(b'0');
                bad |= d > 9;
                acc = acc.wrapping_mul(10).wrapping_add(u64::from(d));
            }
            // Below 10^18 when every byte is a digit, so it fits an i64 either way.
            let v = if neg { -(acc as i64) } else { acc as i64 };
            if bad {
                None
            } else {
                <$t>::try_from(v).ok()
            }
        } else {
            let mut acc: Option<$t> = (!digits.is_empty()).then_some(0);
            for &d in digits {
                let d = d.wrapping_sub(b'0');
                acc = if d > 9 {
                    None
                } else if neg {
                    acc.and_then(|a| a.checked_mul(10)?.checked_sub(d as $t))
                } else {
                    acc.and_then(|a| a.checked_mul(10)?.checked_add(d as $t))
                };
                if acc.is_none() {
                    break;
                }
            }
            acc
        }
    }};
}

pub(crate) fn parse_i64(raw: &[u8]) -> Option<i64> {
    parse_dec!(i64, raw)
}

/// A binary integer column's value, when its bytes are its type's width (anything else goes
/// down the general path, which reports it).
#[inline]
fn binary_int(t: u32, raw: &[u8]) -> Option<i64> {
    Some(match t {
        oid::INT4 => i64::from(i32::from_be_bytes(raw.try_into().ok()?)),
        oid::INT8 => i64::from_be_bytes(raw.try_into().ok()?),
        oid::INT2 => i64::from(i16::from_be_bytes(raw.try_into().ok()?)),
        oid::OID => i64::from(u32::from_be_bytes(raw.try_into().ok()?)),
        _ => return None,
    })
}

/// The integer decoders. The fast path reads any integer column, in text or binary, into
/// any integer type the value fits; anything else goes down the general path, which gives
/// the same value or the error.
macro_rules! int_from_sql {
    ($($t:ty),* $(,)?) => {$(
        impl FromSql for $t {
            #[inline]
            fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<$t, Error> {
                if let Some(raw) = raw {
                    let fast = if !is_binary(column) {
                        if is_int_column(column.type_oid()) {
                            parse_dec!($t, raw)
                        } else {
                            None
                        }
                    } else {
                        binary_int(column.type_oid(), raw).and_then(|v| <$t>::try_from(v).ok())
                    };
                    if let Some(v) = fast {
                        return Ok(v);
                    }
                }
                let v = int(column, raw, stringify!($t))?;
                <$t>::try_from(v).map_err(|_| out_of_range(column, v, stringify!($t)))
            }
        }
    )*};
}

int_from_sql! {
    i8,
    i16,
    u16,
    i32,
    u32,
    i64,
    u64,
    i128,
    u128,
    isize,
    usize,
}

impl FromSql for bool {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<bool, Error> {
        if column.type_oid() != oid::BOOL {
            return Err(wrong_type(column, "bool"));
        }
        let raw = non_null(column, raw, "bool")?;
        if is_binary(column) {
            return pt::bool_from_sql(raw).map_err(conv("bool"));
        }
        match raw {
            b"t" => Ok(true),
            b"f" => Ok(false),
            _ => Err(Error::conversion(format!(
                "column \"{}\": invalid boolean",
                column.name()
            ))),
        }
    }
}

fn float(column: &Column, raw: Option<&[u8]>, rust: &str, accept: &[u32]) -> Result<f64, Error> {
    let t = column.type_oid();
    if !accept.contains(&t) {
        return Err(wrong_type(column, rust));
    }
    let raw = non_null(column, raw, rust)?;
    if is_binary(column) {
        return Ok(match t {
            oid::FLOAT4 => f64::from(pt::float4_from_sql(raw).map_err(conv("float4"))?),
            oid::FLOAT8 => pt::float8_from_sql(raw).map_err(conv("float8"))?,
            oid::INT2 => f64::from(pt::int2_from_sql(raw).map_err(conv("int2"))?),
            oid::INT4 => f64::from(pt::int4_from_sql(raw).map_err(conv("int4"))?),
            _ => {
                let s = binary::numeric_to_string(raw)?;
                parse_float(&s).ok_or_else(|| Error::conversion("invalid numeric"))?
            }
        });
    }
    let s = utf8(column, raw)?;
    parse_float(s).ok_or_else(|| {
        Error::conversion(format!(
            "column \"{}\": {s:?} is not a valid {rust}",
            column.name()
        ))
    })
}

impl FromSql for f64 {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<f64, Error> {
        if let (Some(raw), oid::FLOAT8, true) = (raw, column.type_oid(), is_binary(column)) {
            if let Ok(b) = <[u8; 8]>::try_from(raw) {
                return Ok(f64::from_be_bytes(b));
            }
        }
        float(
            column,
            raw,
            "f64",
            &[oid::FLOAT4, oid::FLOAT8, oid::NUMERIC, oid::INT2, oid::INT4],
        )
    }
}

impl FromSql for f32 {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<f32, Error> {
        if column.type_oid() == oid::FLOAT4 && is_binary(column) {
            let raw = non_null(column, raw, "f32")?;
            return pt::float4_from_sql(raw).map_err(conv("float4"));
        }
        // The text of a real is the shortest f32 form, so parsing it as f32 is exact.
        if column.type_oid() == oid::FLOAT4 {
            let raw = non_null(column, raw, "f32")?;
            let s = utf8(column, raw)?;
            return parse_float(s).map(|v| v as f32).ok_or_else(|| {
                Error::conversion(format!(
                    "column \"{}\": {s:?} is not a valid f32",
                    column.name()
                ))
            });
        }
        float(column, raw, "f32", &[oid::INT2]).map(|v| v as f32)
    }
}

/// Types with a Rust type of their own, which `String` does not take.
fn has_own_type(column: &Column) -> bool {
    let t = column.type_oid();
    matches!(
        t,
        oid::BOOL
            | oid::INT2
            | oid::INT4
            | oid::INT8
            | oid::OID
            | oid::FLOAT4
            | oid::FLOAT8
            | oid::BYTEA
    ) || oid::array_element(t).is_some()
        || column.is_hstore()
        || column.is_hstore_array()
}

impl FromSql for String {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<String, Error> {
        // Text-like types are never hstore nor arrays, and read the same in both formats.
        if let (Some(raw), true) = (raw, oid::is_text_like(column.type_oid())) {
            return utf8(column, raw).map(str::to_owned);
        }
        if has_own_type(column) {
            return Err(wrong_type(column, "String"));
        }
        let raw = non_null(column, raw, "String")?;
        let t = column.type_oid();
        if !is_binary(column) || oid::is_text_like(t) || t == oid::JSON {
            return utf8(column, raw).map(str::to_owned);
        }
        match t {
            oid::JSONB => match raw.split_first() {
                Some((1, rest)) => utf8(column, rest).map(str::to_owned),
                _ => Err(Error::conversion("unsupported jsonb version")),
            },
            oid::NUMERIC => binary::numeric_to_string(raw),
            t => binary::temporal_to_string(t, raw)?.ok_or_else(|| {
                Error::conversion(format!(
                    "column \"{}\": the binary format of type {} is not supported",
                    column.name(),
                    type_name(t)
                ))
            }),
        }
    }
}

impl FromSql for Vec<u8> {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<Vec<u8>, Error> {
        if column.type_oid() != oid::BYTEA {
            return Err(wrong_type(column, "Vec<u8>"));
        }
        let raw = non_null(column, raw, "Vec<u8>")?;
        if is_binary(column) {
            Ok(raw.to_vec())
        } else {
            text::parse_bytea(raw)
        }
    }
}

impl<T: FromSql> FromSql for Option<T> {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<Option<T>, Error> {
        match raw {
            None => Ok(None),
            Some(raw) => T::from_sql(column, Some(raw)).map(Some),
        }
    }
}

/// The column of the elements of an array column, or `None` when it is not an array.
fn element_column(column: &Column) -> Option<Column> {
    if column.is_hstore_array() {
        return Some(column.element(0, true));
    }
    oid::array_element(column.type_oid()).map(|e| column.element(e, false))
}

impl<T: FromSql> FromSql for Vec<T> {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<Vec<T>, Error> {
        let elem = element_column(column).ok_or_else(|| wrong_type(column, "Vec<T>"))?;
        let raw = non_null(column, raw, "Vec<T>")?;
        if !is_binary(column) {
            let s = utf8(column, raw)?;
            return text::parse_array(s)?
                .into_iter()
                .map(|item| match item {
                    text::ArrayItem::Sub(sub) => T::from_sql(column, Some(sub.as_bytes())),
                    text::ArrayItem::Scalar(None) => T::from_sql(&elem, None),
                    text::ArrayItem::Scalar(Some(s)) => T::from_sql(&elem, Some(s.as_bytes())),
                })
                .collect();
        }
        let arr = binary::parse_array(raw)?;
        let elem = if column.is_hstore_array() {
            elem
        } else {
            column.element(arr.element_type, false)
        };
        if arr.dims.len() <= 1 {
            return arr
                .elements
                .iter()
                .map(|e| T::from_sql(&elem, *e))
                .collect();
        }
        if arr.elements.is_empty() {
            return Ok(Vec::new());
        }
        let chunk: usize = arr.dims[1..].iter().map(|d| d.len as usize).product();
        arr.elements
            .chunks(chunk)
            .map(|part| {
                let sub = binary::sub_array(arr.element_type, &arr.dims[1..], part);
                T::from_sql(column, Some(&sub))
            })
            .collect()
    }
}

impl FromSql for HashMap<String, Option<String>> {
    fn from_sql(
        column: &Column,
        raw: Option<&[u8]>,
    ) -> Result<HashMap<String, Option<String>>, Error> {
        // Before register_hstore the OID is unknown; any non-built-in type is tried.
        if !(column.is_hstore() || column.type_oid() >= 16384) {
            return Err(wrong_type(
                column,
                "HashMap<String, Option<String>> (hstore)",
            ));
        }
        let raw = non_null(column, raw, "HashMap")?;
        if !is_binary(column) {
            return text::parse_hstore(utf8(column, raw)?);
        }
        use fallible_iterator::FallibleIterator;
        let mut entries = pt::hstore_from_sql(raw).map_err(conv("hstore"))?;
        let mut map = HashMap::new();
        while let Some((k, v)) = entries.next().map_err(conv("hstore"))? {
            map.insert(k.to_owned(), v.map(str::to_owned));
        }
        Ok(map)
    }
}

#[cfg(feature = "json")]
impl FromSql for serde_json::Value {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<serde_json::Value, Error> {
        let t = column.type_oid();
        if t != oid::JSON && t != oid::JSONB {
            return Err(wrong_type(column, "serde_json::Value"));
        }
        let mut raw = non_null(column, raw, "serde_json::Value")?;
        if is_binary(column) && t == oid::JSONB {
            match raw.split_first() {
                Some((1, rest)) => raw = rest,
                _ => return Err(Error::conversion("unsupported jsonb version")),
            }
        }
        serde_json::from_slice(raw).map_err(|e| {
            Error::conversion(format!("column \"{}\": invalid json: {e}", column.name()))
        })
    }
}

impl FromSql for Value {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<Value, Error> {
        if raw.is_none() {
            return Ok(Value::Null);
        }
        if column.is_hstore() {
            return HashMap::from_sql(column, raw).map(Value::Hstore);
        }
        if column.is_hstore_array() || oid::array_element(column.type_oid()).is_some() {
            return Vec::<Value>::from_sql(column, raw).map(Value::Array);
        }
        Ok(match column.type_oid() {
            oid::BOOL => Value::Bool(bool::from_sql(column, raw)?),
            oid::INT2 => Value::Int2(i16::from_sql(column, raw)?),
            oid::INT4 => Value::Int4(i32::from_sql(column, raw)?),
            oid::INT8 | oid::OID => Value::Int8(i64::from_sql(column, raw)?),
            oid::FLOAT4 => Value::Float4(f32::from_sql(column, raw)?),
            oid::FLOAT8 => Value::Float8(f64::from_sql(column, raw)?),
            oid::NUMERIC => Value::Numeric(String::from_sql(column, raw)?),
            oid::BYTEA => Value::Bytes(Vec::from_sql(column, raw)?),
            #[cfg(feature = "json")]
            oid::JSON | oid::JSONB => Value::Json(serde_json::Value::from_sql(column, raw)?),
            t if oid::is_text_like(t) || t == oid::JSON || t == oid::JSONB => {
                Value::Text(String::from_sql(column, raw)?)
            }
            t => Value::Unknown {
                type_oid: t,
                text: String::from_sql(column, raw)?,
            },
        })
    }
}
