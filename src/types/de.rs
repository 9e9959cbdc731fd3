//! Rows into structs with serde (feature `serde`): a [`Deserializer`] over one [`Row`],
//! the machinery of [`Row::deserialize`] and the cursor's `fetch*_as`.
//!
//! A row is a map of column names to values (so fields match columns by name, renames and
//! `#[serde(flatten)]` work as for any map); each value is the column's [`Value`], decoded
//! by its type in either result format, with NULL as serde's `None`. This module never
//! decodes bytes itself: it reads `Value`s, and every error it gives names the column (or
//! the field that has no column) and the type it was read into.

use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};

use crate::error::Error;
use crate::row::Row;

use super::{oid, parse_float, Value};

/// The error of a row's deserialization; it becomes a Conversion [`Error`].
#[derive(Debug)]
pub(crate) struct DeError(String);

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> DeError {
        DeError(msg.to_string())
    }

    fn missing_field(field: &'static str) -> DeError {
        DeError(format!(
            "missing field `{field}`: the row has no column of that name"
        ))
    }
}

/// Deserializes `row` into `T`: the body of [`Row::deserialize`].
pub(crate) fn from_row<T: de::DeserializeOwned>(row: &Row) -> Result<T, Error> {
    T::deserialize(RowDe { row }).map_err(|e| {
        Error::conversion(format!(
            "cannot read the row as {}: {e}",
            std::any::type_name::<T>()
        ))
    })
}

struct RowDe<'a> {
    row: &'a Row,
}

impl RowDe<'_> {
    /// The one column of a single-column row, for a scalar `T` (psycopg's `scalar_row`).
    fn single(&self) -> Result<ValueDe, DeError> {
        if self.row.len() != 1 {
            return Err(DeError(format!(
                "a row of {} columns is not a single value; read it into a struct, a map or a \
                 tuple",
                self.row.len()
            )));
        }
        column(self.row, 0)
    }
}

fn column(row: &Row, i: usize) -> Result<ValueDe, DeError> {
    let name = row.columns()[i].name().to_owned();
    match row.try_get::<_, Value>(i) {
        Ok(value) => Ok(ValueDe { value, name }),
        Err(e) => Err(DeError(e.to_string())),
    }
}

macro_rules! single {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.single()?.$method(visitor)
        }
    )*};
}

impl<'de> Deserializer<'de> for RowDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_map(Columns {
            row: self.row,
            next: 0,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    /// Tuples and sequences take the columns by position.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_seq(Positional {
            row: self.row,
            next: 0,
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.row.len() == 1 {
            self.single()?.deserialize_option(visitor)
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.single()?.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    single! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_unit
        deserialize_identifier
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

/// The row as a map: each column's name, then its value.
struct Columns<'a> {
    row: &'a Row,
    next: usize,
}

impl<'de> MapAccess<'de> for Columns<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        if self.next >= self.row.len() {
            return Ok(None);
        }
        let name = self.row.columns()[self.next].name();
        seed.deserialize(name.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let i = self.next;
        self.next += 1;
        let value = column(self.row, i)?;
        let name = value.name.clone();
        seed.deserialize(value).map_err(|e| in_column(&name, e))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.row.len() - self.next)
    }
}

fn in_column(name: &str, e: DeError) -> DeError {
    if e.0.starts_with("column \"") {
        e
    } else {
        DeError(format!("column \"{name}\": {}", e.0))
    }
}

/// The row as a sequence, for tuples.
struct Positional<'a> {
    row: &'a Row,
    next: usize,
}

impl<'de> SeqAccess<'de> for Positional<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        if self.next >= self.row.len() {
            return Ok(None);
        }
        let i = self.next;
        self.next += 1;
        let value = column(self.row, i)?;
        let name = value.name.clone();
        seed.deserialize(value)
            .map(Some)
            .map_err(|e| in_column(&name, e))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.row.len() - self.next)
    }
}

/// One column's value (or an array element of it).
pub(crate) struct ValueDe {
    value: Value,
    name: String,
}

/// The text of a date-time in the form chrono's, time's and most serde readers take:
/// ISO 8601 with a `T`, and an offset with minutes (`+00:00`) for timestamptz.
fn iso8601(type_oid: u32, text: String) -> String {
    if !matches!(type_oid, oid::TIMESTAMP | oid::TIMESTAMPTZ) || text.ends_with(" BC") {
        return text;
    }
    let mut s = text.replacen(' ', "T", 1);
    if type_oid == oid::TIMESTAMPTZ {
        // The offset is the last [+-]HH, [+-]HH:MM or [+-]HH:MM:SS after the time.
        if let Some(at) = s.rfind(['+', '-']).filter(|&i| i > 10) {
            if s.len() - at == 3 {
                s.push_str(":00");
            }
        }
    }
    s
}

impl ValueDe {
    fn any<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Value::Null => visitor.visit_none(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Int2(v) => visitor.visit_i16(v),
            Value::Int4(v) => visitor.visit_i32(v),
            Value::Int8(v) => visitor.visit_i64(v),
            Value::Float4(v) => visitor.visit_f32(v),
            Value::Float8(v) => visitor.visit_f64(v),
            Value::Numeric(s) | Value::Text(s) => visitor.visit_string(s),
            Value::Bytes(b) => visitor.visit_byte_buf(b),
            Value::Array(items) => {
                let name = self.name;
                visitor.visit_seq(Elements {
                    items: items.into_iter(),
                    name,
                })
            }
            Value::Hstore(map) => {
                let name = self.name;
                let entries = map.into_iter().map(move |(k, v)| {
                    let value = v.map_or(Value::Null, Value::Text);
                    (
                        k,
                        ValueDe {
                            value,
                            name: name.clone(),
                        },
                    )
                });
                visitor.visit_map(de::value::MapDeserializer::new(entries))
            }
            #[cfg(feature = "json")]
            Value::Json(j) => {
                de::Deserializer::deserialize_any(j, visitor).map_err(|e| DeError(e.to_string()))
            }
            Value::Unknown { type_oid, text } => visitor.visit_string(iso8601(type_oid, text)),
        }
    }
}

macro_rules! via_numeric {
    ($($method:ident => $t:ty, $visit:ident;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            match &self.value {
                Value::Numeric(s) => match s.parse::<$t>() {
                    Ok(v) => visitor.$visit(v),
                    Err(_) => Err(DeError(format!(
                        "the numeric {s} does not fit {}",
                        stringify!($t)
                    ))),
                },
                _ => self.any(visitor),
            }
        }
    )*};
}

impl<'de> IntoDeserializer<'de, DeError> for ValueDe {
    type Deserializer = ValueDe;
    fn into_deserializer(self) -> ValueDe {
        self
    }
}

impl<'de> Deserializer<'de> for ValueDe {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.any(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.value {
            Value::Numeric(s) => match parse_float(s) {
                Some(v) => visitor.visit_f64(v),
                None => Err(DeError(format!("the numeric {s} is not a number"))),
            },
            _ => self.any(visitor),
        }
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    via_numeric! {
        deserialize_i64 => i64, visit_i64;
        deserialize_i128 => i128, visit_i128;
        deserialize_u64 => u64, visit_u64;
        deserialize_u128 => u128, visit_u128;
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Value::Null => visitor.visit_unit(),
            _ => self.any(visitor),
        }
    }

    /// A text column into a unit variant of the enum's (a PostgreSQL enum type, or text).
    // The name and the variants are only passed on to a json document's own deserializer.
    #[cfg_attr(not(feature = "json"), allow(unused_variables))]
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.value {
            Value::Text(s) | Value::Unknown { text: s, .. } => {
                visitor.visit_enum(IntoDeserializer::<DeError>::into_deserializer(s))
            }
            #[cfg(feature = "json")]
            Value::Json(j) => j
                .deserialize_enum(name, variants, visitor)
                .map_err(|e| DeError(e.to_string())),
            _ => self.any(visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 u8 u16 u32 char str string bytes byte_buf unit_struct seq
        tuple tuple_struct map struct identifier ignored_any
    }
}

/// The elements of an array column.
struct Elements {
    items: std::vec::IntoIter<Value>,
    name: String,
}

impl<'de> SeqAccess<'de> for Elements {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            None => Ok(None),
            Some(value) => seed
                .deserialize(ValueDe {
                    value,
                    name: self.name.clone(),
                })
                .map(Some),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}
