//! Rust values into PostgreSQL: the [`ToSql`] trait, its implementations, and the `From`
//! conversions into [`Value`].
//!
//! Every implementation agrees with `Value`'s own rendering; the overrides exist only to
//! skip building a `Value` for the common scalar cases, never to render differently.

use std::collections::{BTreeMap, HashMap};

use bytes::BytesMut;

use crate::error::Error;

use super::{quote, IsNull, QuoteContext, Value};

/// A Rust value that can be a query parameter: rendered as a psycopg2 literal for
/// client-side parameters (`%s`), or encoded in binary for prepared statements.
///
/// The trait is object safe, so mixed parameters can be passed as `&[&dyn ToSql]`:
///
/// ```
/// use momoko::{QuoteContext, ToSql};
/// let params: &[&dyn ToSql] = &[&1i32, &"s", &None::<i64>];
/// let sql = momoko::mogrify("SELECT %s, %s, %s", &params, &QuoteContext::default()).unwrap();
/// assert_eq!(sql, "SELECT 1, 's', NULL");
/// ```
pub trait ToSql {
    /// The value as a dynamic [`Value`].
    fn to_value(&self) -> Value;

    /// Appends the value as a SQL literal, exactly as psycopg2 would.
    fn write_literal(&self, ctx: &QuoteContext, out: &mut String) -> Result<(), Error> {
        self.to_value().write_literal(ctx, out)
    }

    /// Encodes the value as a binary parameter of type `type_oid`
    /// (see [`Value::encode_binary`]).
    fn encode_binary(&self, type_oid: u32, out: &mut BytesMut) -> Result<IsNull, Error> {
        self.to_value().encode_binary(type_oid, out)
    }
}

impl ToSql for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
    fn write_literal(&self, ctx: &QuoteContext, out: &mut String) -> Result<(), Error> {
        Value::write_literal(self, ctx, out)
    }
    fn encode_binary(&self, type_oid: u32, out: &mut BytesMut) -> Result<IsNull, Error> {
        Value::encode_binary(self, type_oid, out)
    }
}

impl<T: ToSql + ?Sized> ToSql for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
    fn write_literal(&self, ctx: &QuoteContext, out: &mut String) -> Result<(), Error> {
        (**self).write_literal(ctx, out)
    }
    fn encode_binary(&self, type_oid: u32, out: &mut BytesMut) -> Result<IsNull, Error> {
        (**self).encode_binary(type_oid, out)
    }
}

impl<T: ToSql + ?Sized> ToSql for Box<T> {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
    fn write_literal(&self, ctx: &QuoteContext, out: &mut String) -> Result<(), Error> {
        (**self).write_literal(ctx, out)
    }
    fn encode_binary(&self, type_oid: u32, out: &mut BytesMut) -> Result<IsNull, Error> {
        (**self).encode_binary(type_oid, out)
    }
}

impl<T: ToSql> ToSql for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToSql::to_value)
    }
    fn write_literal(&self, ctx: &QuoteContext, out: &mut String) -> Result<(), Error> {
        match self {
            Some(v) => v.write_literal(ctx, out),
            None => {
                out.push_str("NULL");
                Ok(())
            }
        }
    }
    fn encode_binary(&self, type_oid: u32, out: &mut BytesMut) -> Result<IsNull, Error> {
        match self {
            Some(v) => v.encode_binary(type_oid, out),
            None => Ok(IsNull::Yes),
        }
    }
}

macro_rules! scalar {
    ($($t:ty => $variant:ident as $conv:ty),* $(,)?) => {$(
        impl ToSql for $t {
            fn to_value(&self) -> Value {
                Value::$variant(<$conv>::from(*self))
            }
        }
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::$variant(<$conv>::from(v))
            }
        }
    )*};
}

scalar! {
    bool => Bool as bool,
    i8 => Int2 as i16,
    i16 => Int2 as i16,
    u16 => Int4 as i32,
    i32 => Int4 as i32,
    u32 => Int8 as i64,
    i64 => Int8 as i64,
    f32 => Float4 as f32,
    f64 => Float8 as f64,
}

macro_rules! wide {
    ($($t:ty),*) => {$(
        /// Integers beyond `i64` become `Numeric`, written as plain digits as psycopg2 does.
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                match i64::try_from(v) {
                    Ok(v) => Value::Int8(v),
                    Err(_) => Value::Numeric(v.to_string()),
                }
            }
        }
        impl ToSql for $t {
            fn to_value(&self) -> Value {
                Value::from(*self)
            }
        }
    )*};
}

wide!(u64, i128, u128, usize, isize);

impl ToSql for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_owned())
    }
    fn write_literal(&self, ctx: &QuoteContext, out: &mut String) -> Result<(), Error> {
        quote::string(self, ctx, out)
    }
}

impl ToSql for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
    fn write_literal(&self, ctx: &QuoteContext, out: &mut String) -> Result<(), Error> {
        quote::string(self, ctx, out)
    }
}

impl ToSql for [u8] {
    fn to_value(&self) -> Value {
        Value::Bytes(self.to_vec())
    }
    fn write_literal(&self, ctx: &QuoteContext, out: &mut String) -> Result<(), Error> {
        quote::bytea(self, ctx, out);
        Ok(())
    }
}

impl ToSql for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Bytes(self.clone())
    }
    fn write_literal(&self, ctx: &QuoteContext, out: &mut String) -> Result<(), Error> {
        quote::bytea(self, ctx, out);
        Ok(())
    }
}

impl<T: ToSql> ToSql for [T] {
    fn to_value(&self) -> Value {
        Value::Array(self.iter().map(ToSql::to_value).collect())
    }
}

impl<T: ToSql> ToSql for Vec<T> {
    fn to_value(&self) -> Value {
        Value::Array(self.iter().map(ToSql::to_value).collect())
    }
}

impl<T: ToSql, const N: usize> ToSql for [T; N] {
    fn to_value(&self) -> Value {
        Value::Array(self.iter().map(ToSql::to_value).collect())
    }
}

impl ToSql for HashMap<String, Option<String>> {
    fn to_value(&self) -> Value {
        Value::Hstore(self.clone())
    }
    fn write_literal(&self, ctx: &QuoteContext, out: &mut String) -> Result<(), Error> {
        quote::hstore(
            self.iter().map(|(k, v)| (k.as_str(), v.as_deref())),
            ctx,
            out,
        )
    }
}

impl ToSql for BTreeMap<String, Option<String>> {
    fn to_value(&self) -> Value {
        Value::Hstore(self.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
    fn write_literal(&self, ctx: &QuoteContext, out: &mut String) -> Result<(), Error> {
        quote::hstore(
            self.iter().map(|(k, v)| (k.as_str(), v.as_deref())),
            ctx,
            out,
        )
    }
}

#[cfg(feature = "json")]
impl ToSql for serde_json::Value {
    fn to_value(&self) -> Value {
        Value::Json(self.clone())
    }
}

#[cfg(feature = "json")]
impl From<serde_json::Value> for Value {
    fn from(v: serde_json::Value) -> Value {
        Value::Json(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Bytes(v)
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Value {
        Value::Bytes(v.to_vec())
    }
}

/// A vector becomes an array; `Vec<u8>` is bytea instead.
impl<T: ToSql> From<Vec<T>> for Value {
    fn from(v: Vec<T>) -> Value {
        Value::Array(v.iter().map(ToSql::to_value).collect())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

impl From<HashMap<String, Option<String>>> for Value {
    fn from(v: HashMap<String, Option<String>>) -> Value {
        Value::Hstore(v)
    }
}
