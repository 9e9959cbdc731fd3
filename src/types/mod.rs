//! Values: the dynamic [`Value`], the [`ToSql`] and [`FromSql`] conversions, and the text
//! and binary codecs of the built-in types, hstore, json and arrays.
//!
//! This module owns the meaning of bytes in a DataRow field and of a Rust value in a query.
//! It never touches the network and never decides which format a connection asks for; it
//! only decodes what it is given and reports a Conversion error (never a panic) when the
//! bytes or the requested Rust type do not fit the column.

use std::collections::{BTreeMap, HashMap};

use bytes::{BufMut, BytesMut};
use postgres_protocol::types as pt;

use crate::error::Error;

mod binary;
#[cfg(feature = "serde")]
pub(crate) mod de;
mod decode;
mod interval;
mod net;
pub mod oid;
pub(crate) mod quote;
mod range;
mod special;
pub(crate) mod temporal;
mod text;
mod to_sql;
#[cfg(feature = "chrono")]
mod with_chrono;
#[cfg(feature = "rust_decimal")]
mod with_decimal;
#[cfg(feature = "time")]
mod with_time;
#[cfg(feature = "uuid")]
mod with_uuid;

#[cfg(test)]
mod tests;

pub use decode::FromSql;
pub(crate) use decode::{non_null, parse_i64, wrong_type};
pub use interval::Interval;
pub use net::{Cidr, Inet};
pub use range::Range;
pub use special::{Infinite, Numeric, SqlType};
pub use to_sql::ToSql;

/// PostgreSQL's MAXDIM: no array it sends has more dimensions. The decoders refuse deeper
/// nesting, because they recurse once per dimension and a hostile server could otherwise
/// overflow the stack (an abort, not a panic) with a few hundred kilobytes.
pub(crate) const MAX_ARRAY_DIMS: usize = 6;

fn too_many_dims() -> Error {
    Error::conversion(format!(
        "malformed array: more than {MAX_ARRAY_DIMS} dimensions"
    ))
}

/// How literals are written into client-side rendered queries.
///
/// The connection keeps it in step with the server's `standard_conforming_strings`
/// ParameterStatus reports.
///
/// ```
/// let ctx = momoko::QuoteContext::default();
/// assert!(ctx.standard_conforming_strings);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuoteContext {
    /// When off, string literals are written `E'...'` with doubled backslashes.
    pub standard_conforming_strings: bool,
}

impl Default for QuoteContext {
    fn default() -> QuoteContext {
        QuoteContext {
            standard_conforming_strings: true,
        }
    }
}

/// Whether an encoded parameter is SQL NULL (nothing was written) or a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsNull {
    /// The parameter is NULL; send length -1.
    Yes,
    /// The parameter's bytes were written.
    No,
}

/// The wire format of a parameter or a result column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The server's text input/output form (format code 0).
    Text = 0,
    /// The binary form (format code 1).
    Binary = 1,
}

/// A PostgreSQL value of any type, decoded by the column's type OID, in either result
/// format, with nothing lost.
///
/// Where each type lands:
///
/// | PostgreSQL type | variant |
/// |---|---|
/// | `boolean` | [`Bool`](Value::Bool) |
/// | `smallint`, `integer`, `bigint` and `oid` | [`Int2`](Value::Int2), [`Int4`](Value::Int4), [`Int8`](Value::Int8) |
/// | `real`, `double precision` | [`Float4`](Value::Float4), [`Float8`](Value::Float8) |
/// | `numeric` (`NaN` and `±Infinity` too) | [`Numeric`](Value::Numeric), its exact text |
/// | `text`, `varchar`, `char(n)`, `name`, `xml` | [`Text`](Value::Text) |
/// | `bytea` | [`Bytes`](Value::Bytes) |
/// | `json`, `jsonb` (feature `json`) | [`Json`](Value::Json) |
/// | hstore (after `register_hstore`) | [`Hstore`](Value::Hstore) |
/// | arrays of any of these | [`Array`](Value::Array), nested for more dimensions |
/// | `date`, `time`, `timestamp`, `timestamptz`, `interval`, `uuid`, `inet`, `cidr`, the range types, and every other type | [`Unknown`](Value::Unknown): the OID and the server's text (DateStyle ISO, IntervalStyle postgres), also for binary results, whose `timestamptz` is written in UTC (`+00`) |
///
/// The typed forms of the `Unknown` ones are read with [`Row::get`](crate::Row::get):
/// [`Interval`], [`Inet`] / [`Cidr`] / `IpAddr`, [`Range<T>`], and behind features chrono's
/// and time's dates and times, `uuid::Uuid` and `rust_decimal::Decimal`. Those types turn
/// into the same `Unknown` (or `Numeric`) values as parameters, with the text psycopg2 writes
/// for their Python counterparts.
///
/// ```
/// use momoko::Value;
/// assert_eq!(Value::from(3i32).as_i64(), Some(3));
/// assert_eq!(Value::from("x").as_str(), Some("x"));
/// assert!(Value::from(None::<i32>).is_null());
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// SQL NULL.
    Null,
    /// `boolean`.
    Bool(bool),
    /// `smallint`.
    Int2(i16),
    /// `integer`.
    Int4(i32),
    /// `bigint` (and `oid`).
    Int8(i64),
    /// `real`.
    Float4(f32),
    /// `double precision`.
    Float8(f64),
    /// `numeric`, in its exact text form (`"12.50"`, `"NaN"`); also integers too large for
    /// `i64`.
    Numeric(String),
    /// `text`, `varchar`, `char(n)`, `name`.
    Text(String),
    /// `bytea`.
    Bytes(Vec<u8>),
    /// An array; a multidimensional array holds nested `Array`s.
    Array(Vec<Value>),
    /// An hstore (after `register_hstore`).
    Hstore(HashMap<String, Option<String>>),
    /// `json` or `jsonb`.
    #[cfg(feature = "json")]
    Json(serde_json::Value),
    /// Any other type, as the server's text (`2024-02-29`, `1 day`, a uuid…).
    Unknown {
        /// The type's OID.
        type_oid: u32,
        /// The value in the server's text output form.
        text: String,
    },
}

impl Value {
    /// True for SQL NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value as an `i64`, for the integer variants.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int2(v) => Some(i64::from(v)),
            Value::Int4(v) => Some(i64::from(v)),
            Value::Int8(v) => Some(v),
            _ => None,
        }
    }

    /// The value as an `i32`, for integers that fit.
    pub fn as_i32(&self) -> Option<i32> {
        self.as_i64().and_then(|v| i32::try_from(v).ok())
    }

    /// The value as an `f64`: floats, integers that convert exactly, and numerics.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float4(v) => Some(f64::from(*v)),
            Value::Float8(v) => Some(*v),
            Value::Int2(v) => Some(f64::from(*v)),
            Value::Int4(v) => Some(f64::from(*v)),
            Value::Numeric(s) => parse_float(s),
            _ => None,
        }
    }

    /// The value as a `bool`.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The text of `Text`, `Numeric` and `Unknown` values.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) | Value::Numeric(s) => Some(s),
            Value::Unknown { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The bytes of a `Bytes` value.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The elements of an `Array` value.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The map of an `Hstore` value.
    pub fn as_hstore(&self) -> Option<&HashMap<String, Option<String>>> {
        match self {
            Value::Hstore(h) => Some(h),
            _ => None,
        }
    }

    /// The document of a `Json` value.
    #[cfg(feature = "json")]
    pub fn as_json(&self) -> Option<&serde_json::Value> {
        match self {
            Value::Json(j) => Some(j),
            _ => None,
        }
    }

    /// The type OID this value naturally has, `0` (let the server infer) for NULL, arrays of
    /// only NULLs, hstore (its OID is not fixed) and untyped text.
    pub fn type_oid(&self) -> u32 {
        match self {
            Value::Null | Value::Hstore(_) => 0,
            Value::Bool(_) => oid::BOOL,
            Value::Int2(_) => oid::INT2,
            Value::Int4(_) => oid::INT4,
            Value::Int8(_) => oid::INT8,
            Value::Float4(_) => oid::FLOAT4,
            Value::Float8(_) => oid::FLOAT8,
            Value::Numeric(_) => oid::NUMERIC,
            Value::Text(_) => oid::TEXT,
            Value::Bytes(_) => oid::BYTEA,
            #[cfg(feature = "json")]
            Value::Json(_) => oid::JSONB,
            Value::Unknown { type_oid, .. } => *type_oid,
            Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    Value::Array(_) => v.type_oid(),
                    v => oid::array_of(v.type_oid()).unwrap_or(0),
                })
                .find(|&o| o != 0)
                .unwrap_or(0),
        }
    }

    /// Appends the value as a SQL literal, exactly as psycopg2 renders it.
    ///
    /// ```
    /// use momoko::{QuoteContext, Value};
    /// let mut sql = String::new();
    /// Value::from("it's").write_literal(&QuoteContext::default(), &mut sql).unwrap();
    /// assert_eq!(sql, "'it''s'");
    /// ```
    pub fn write_literal(&self, ctx: &QuoteContext, out: &mut String) -> Result<(), Error> {
        match self {
            Value::Null => out.push_str("NULL"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int2(v) => quote::int(i64::from(*v), out),
            Value::Int4(v) => quote::int(i64::from(*v), out),
            Value::Int8(v) => quote::int(*v, out),
            Value::Float4(v) => quote::float4(*v, out),
            Value::Float8(v) => quote::float8(*v, out),
            Value::Numeric(s) => quote::numeric(s, ctx, out)?,
            Value::Text(s) => quote::string(s, ctx, out)?,
            Value::Bytes(b) => quote::bytea(b, ctx, out),
            Value::Array(items) => quote::array(items, ctx, out)?,
            Value::Hstore(map) => quote::hstore(
                map.iter().map(|(k, v)| (k.as_str(), v.as_deref())),
                ctx,
                out,
            )?,
            #[cfg(feature = "json")]
            Value::Json(j) => {
                let mut s = String::new();
                quote::python_json(j, &mut s);
                quote::string(&s, ctx, out)?;
            }
            Value::Unknown { type_oid, text } if range::range_element(*type_oid).is_some() => {
                range::write_literal(*type_oid, text, ctx, out)?
            }
            Value::Unknown { type_oid, text } => quote::typed_text(*type_oid, text, ctx, out)?,
        }
        Ok(())
    }

    /// The value as a SQL literal in a new string.
    pub fn to_literal(&self, ctx: &QuoteContext) -> Result<String, Error> {
        let mut s = String::new();
        self.write_literal(ctx, &mut s)?;
        Ok(s)
    }

    /// Encodes the value as a parameter of type `type_oid` in the binary format, for the
    /// extended protocol. Integers widen (and narrow when the value fits), floats convert,
    /// text goes to any text-like type or json/jsonb. A combination without a binary form
    /// (a numeric, a date as text…) is a Conversion error: send it with
    /// [`encode_text`](Value::encode_text), or let [`encode`](Value::encode) choose.
    pub fn encode_binary(&self, type_oid: u32, out: &mut BytesMut) -> Result<IsNull, Error> {
        let mismatch = || {
            Error::conversion(format!(
                "cannot encode {} as a binary parameter of type oid {type_oid}",
                self.kind_name()
            ))
        };
        let range = |v: i64| {
            Error::conversion(format!(
                "integer {v} out of range for a parameter of type oid {type_oid}"
            ))
        };
        match (self, type_oid) {
            (Value::Null, _) => return Ok(IsNull::Yes),
            (Value::Bool(b), oid::BOOL) => pt::bool_to_sql(*b, out),
            (Value::Int2(_) | Value::Int4(_) | Value::Int8(_), _) => {
                let v = self.as_i64().unwrap_or_default();
                match type_oid {
                    oid::INT2 => pt::int2_to_sql(i16::try_from(v).map_err(|_| range(v))?, out),
                    oid::INT4 => pt::int4_to_sql(i32::try_from(v).map_err(|_| range(v))?, out),
                    oid::INT8 => pt::int8_to_sql(v, out),
                    oid::OID => pt::oid_to_sql(u32::try_from(v).map_err(|_| range(v))?, out),
                    oid::FLOAT8 if v.unsigned_abs() < 1 << 53 => pt::float8_to_sql(v as f64, out),
                    oid::FLOAT4 if v.unsigned_abs() < 1 << 24 => pt::float4_to_sql(v as f32, out),
                    _ => return Err(mismatch()),
                }
            }
            (Value::Float4(v), oid::FLOAT4) => pt::float4_to_sql(*v, out),
            (Value::Float4(v), oid::FLOAT8) => pt::float8_to_sql(f64::from(*v), out),
            (Value::Float8(v), oid::FLOAT8) => pt::float8_to_sql(*v, out),
            (Value::Float8(v), oid::FLOAT4) => pt::float4_to_sql(*v as f32, out),
            (Value::Text(s), o) if oid::is_text_like(o) || o == oid::JSON || o == 0 => {
                check_nul(s)?;
                pt::text_to_sql(s, out)
            }
            (Value::Text(s), oid::JSONB) => {
                check_nul(s)?;
                out.put_u8(1);
                pt::text_to_sql(s, out)
            }
            (Value::Bytes(b), oid::BYTEA) => pt::bytea_to_sql(b, out),
            #[cfg(feature = "json")]
            (Value::Json(j), oid::JSON | oid::JSONB) => {
                if type_oid == oid::JSONB {
                    out.put_u8(1);
                }
                let s = serde_json::to_string(j).map_err(|e| Error::conversion(e.to_string()))?;
                pt::text_to_sql(&s, out);
            }
            (Value::Array(items), _) => {
                let elem = oid::array_element(type_oid).ok_or_else(mismatch)?;
                let dims = array_dims(items)?;
                let mut flat = Vec::new();
                if !dims.is_empty() {
                    flatten(items, dims.len(), &mut flat);
                }
                pt::array_to_sql(
                    dims.iter().map(|&len| pt::ArrayDimension {
                        len,
                        lower_bound: 1,
                    }),
                    elem,
                    flat,
                    |v: &Value, buf| match v.encode_binary(elem, buf) {
                        Ok(IsNull::Yes) => Ok(postgres_protocol::IsNull::Yes),
                        Ok(IsNull::No) => Ok(postgres_protocol::IsNull::No),
                        Err(e) => Err(Box::new(e)),
                    },
                    out,
                )
                .map_err(|e| match e.downcast::<Error>() {
                    Ok(e) => *e,
                    Err(e) => Error::conversion(e.to_string()),
                })?;
            }
            // hstore has no fixed OID: any OID outside the built-in range is taken as it.
            (Value::Hstore(map), o) if o >= 16384 => {
                for (k, v) in map {
                    check_nul(k)?;
                    if let Some(v) = v {
                        check_nul(v)?;
                    }
                }
                pt::hstore_to_sql(map.iter().map(|(k, v)| (k.as_str(), v.as_deref())), out)
                    .map_err(|e| Error::conversion(e.to_string()))?;
            }
            _ => return Err(mismatch()),
        }
        Ok(IsNull::No)
    }

    /// Encodes the value in the server's text input form (`t`, `12.5`, `\x00ff`,
    /// `{1,NULL}`, `"k"=>"v"`), valid for any parameter type that accepts it.
    pub fn encode_text(&self, out: &mut BytesMut) -> Result<IsNull, Error> {
        if self.is_null() {
            return Ok(IsNull::Yes);
        }
        let mut s = String::new();
        self.write_text(&mut s)?;
        out.put_slice(s.as_bytes());
        Ok(IsNull::No)
    }

    /// Encodes the value for a parameter of type `type_oid`: binary where momoko has a binary
    /// codec for the pair, the text form otherwise. Returns the format used.
    pub fn encode(&self, type_oid: u32, out: &mut BytesMut) -> Result<(Format, IsNull), Error> {
        let start = out.len();
        match self.encode_binary(type_oid, out) {
            Ok(n) => Ok((Format::Binary, n)),
            Err(_) => {
                out.truncate(start);
                Ok((Format::Text, self.encode_text(out)?))
            }
        }
    }

    fn write_text(&self, out: &mut String) -> Result<(), Error> {
        use std::fmt::Write as _;
        match self {
            Value::Null => out.push_str("NULL"),
            Value::Bool(b) => out.push(if *b { 't' } else { 'f' }),
            Value::Int2(v) => {
                let _ = write!(out, "{v}");
            }
            Value::Int4(v) => {
                let _ = write!(out, "{v}");
            }
            Value::Int8(v) => {
                let _ = write!(out, "{v}");
            }
            Value::Float4(v) => out.push_str(&float_text(f64::from(*v), format!("{v}"))),
            Value::Float8(v) => out.push_str(&float_text(*v, format!("{v}"))),
            Value::Numeric(s) | Value::Text(s) | Value::Unknown { text: s, .. } => {
                check_nul(s)?;
                out.push_str(s);
            }
            Value::Bytes(b) => {
                out.push_str("\\x");
                quote::push_hex(b, out);
            }
            Value::Array(items) => {
                if array_dims(items)?.is_empty() {
                    out.push_str("{}");
                    return Ok(());
                }
                out.push('{');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    match item {
                        Value::Null => out.push_str("NULL"),
                        Value::Array(_) => item.write_text(out)?,
                        _ => {
                            let mut s = String::new();
                            item.write_text(&mut s)?;
                            text::push_array_element(&s, out);
                        }
                    }
                }
                out.push('}');
            }
            Value::Hstore(map) => {
                let mut keys: Vec<_> = map.iter().collect();
                keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
                for (i, (k, v)) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    check_nul(k)?;
                    text::push_hstore_string(k, out);
                    out.push_str("=>");
                    match v {
                        Some(v) => {
                            check_nul(v)?;
                            text::push_hstore_string(v, out);
                        }
                        None => out.push_str("NULL"),
                    }
                }
            }
            #[cfg(feature = "json")]
            Value::Json(j) => out
                .push_str(&serde_json::to_string(j).map_err(|e| Error::conversion(e.to_string()))?),
        }
        Ok(())
    }

    fn kind_name(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Bool(_) => "a bool",
            Value::Int2(_) | Value::Int4(_) | Value::Int8(_) => "an integer",
            Value::Float4(_) | Value::Float8(_) => "a float",
            Value::Numeric(_) => "a numeric",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
            Value::Array(_) => "an array",
            Value::Hstore(_) => "an hstore",
            #[cfg(feature = "json")]
            Value::Json(_) => "json",
            Value::Unknown { .. } => "a value of another type",
        }
    }
}

fn float_text(v: f64, display: String) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
    } else {
        display
    }
}

pub(crate) fn check_nul(s: &str) -> Result<(), Error> {
    if s.contains('\0') {
        Err(Error::usage(
            "A string literal cannot contain NUL (0x00) characters.",
        ))
    } else {
        Ok(())
    }
}

/// The dimensions of a (possibly nested) array, which must be rectangular as PostgreSQL
/// requires, outermost first; none for an array without elements
/// at any depth (`[]`, `[[]]`, `[[], []]`), which PostgreSQL holds as the one empty array of
/// no dimensions (`{}`): `{{}}` is not valid input.
fn array_dims(items: &[Value]) -> Result<Vec<i32>, Error> {
    let dims = nested_dims(items)?;
    Ok(if dims.contains(&0) { Vec::new() } else { dims })
}

/// The dimensions as the nesting gives them, a length of 0 included (`[[]]` is 1 by 0).
fn nested_dims(items: &[Value]) -> Result<Vec<i32>, Error> {
    let len =
        |n: usize| i32::try_from(n).map_err(|_| Error::usage("array too large for PostgreSQL"));
    if items.is_empty() {
        return Ok(vec![0]);
    }
    let mut dims = vec![len(items.len())?];
    if let Some(Value::Array(first)) = items.first() {
        let inner = nested_dims(first)?;
        for item in items {
            match item {
                Value::Array(sub) if nested_dims(sub)? == inner => {}
                _ => {
                    return Err(Error::usage(
                        "multidimensional arrays must have sub-arrays with matching dimensions",
                    ))
                }
            }
        }
        dims.extend(inner);
    } else if items.iter().any(|v| matches!(v, Value::Array(_))) {
        return Err(Error::usage(
            "multidimensional arrays must have sub-arrays with matching dimensions",
        ));
    }
    Ok(dims)
}

fn flatten<'a>(items: &'a [Value], depth: usize, out: &mut Vec<&'a Value>) {
    for item in items {
        match item {
            Value::Array(sub) if depth > 1 => flatten(sub, depth - 1, out),
            v => out.push(v),
        }
    }
}

/// Parses a float as the server prints it (`NaN`, `Infinity`, `-Infinity`, digits).
pub(crate) fn parse_float(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        s if s
            .bytes()
            .all(|c| c.is_ascii_digit() || b"+-.eE".contains(&c)) =>
        {
            s.parse().ok()
        }
        _ => None,
    }
}

/// The startup parameters of [`pin_text_styles`], and their values.
pub(crate) const PINNED_STYLES: [(&str, &str); 2] =
    [("DateStyle", "ISO"), ("IntervalStyle", "postgres")];

/// Adds `DateStyle=ISO` and `IntervalStyle=postgres` to the StartupMessage, the styles the
/// text decoders read, so that a server or role configured otherwise does not break them.
/// As in libpq, what the caller asked for wins: a style already named in the parameters or
/// set in `options` (`-c DateStyle=…`, `--datestyle=…`) is left to them (the decoders then
/// report a non-ISO value as such).
///
/// A server that refuses one of them at startup (PgBouncer before 1.20 refuses
/// IntervalStyle) is asked again without it; the decoders then read what the server uses,
/// and say so when that is another style.
pub(crate) fn pin_text_styles(params: &mut Vec<(String, String)>) {
    let options = params
        .iter()
        .find(|(k, _)| k == "options")
        .map(|(_, v)| v.to_ascii_lowercase())
        .unwrap_or_default();
    for (name, value) in PINNED_STYLES {
        let lower = name.to_ascii_lowercase();
        let named = params.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
        if !named && !options.contains(&lower) {
            params.push((name.to_owned(), value.to_owned()));
        }
    }
}

/// What the connection knows about types with OIDs assigned at run time.
///
/// `register_hstore` fills it in; columns consult it through `Column::resolve` so that
/// decoding yields `Value::Hstore`.
#[derive(Debug, Clone, Default)]
#[allow(dead_code)] // used by the Connection's register_hstore
pub(crate) struct TypeRegistry {
    hstore: Option<(u32, u32)>,
}

#[allow(dead_code)] // used by the Connection's register_hstore
impl TypeRegistry {
    /// A registry that knows only the built-in types.
    pub(crate) fn new() -> TypeRegistry {
        TypeRegistry::default()
    }

    /// Records the OIDs of hstore and hstore[] in this database.
    pub(crate) fn register_hstore(&mut self, oid: u32, array_oid: u32) {
        self.hstore = Some((oid, array_oid));
    }

    /// Whether `oid` is hstore's.
    pub(crate) fn is_hstore(&self, oid: u32) -> bool {
        self.hstore.is_some_and(|(h, _)| h == oid)
    }

    /// Whether `oid` is hstore[]'s.
    pub(crate) fn is_hstore_array(&self, oid: u32) -> bool {
        self.hstore.is_some_and(|(_, a)| a == oid)
    }

    /// hstore's OID, once registered.
    pub(crate) fn hstore_oid(&self) -> Option<u32> {
        self.hstore.map(|(h, _)| h)
    }
}

/// A map of names to values, turned into an hstore.
impl From<BTreeMap<String, Option<String>>> for Value {
    fn from(m: BTreeMap<String, Option<String>>) -> Value {
        Value::Hstore(m.into_iter().collect())
    }
}
