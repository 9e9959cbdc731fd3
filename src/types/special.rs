//! PostgreSQL's special values for the Rust types that cannot hold them: [`Infinite<T>`]
//! for `infinity` / `-infinity` dates and timestamps, [`Numeric<T>`] for `NaN` and
//! `±Infinity` numerics, and [`SqlType`], the PostgreSQL type a Rust type stands for (which
//! a special value or an empty range must be written with, having no value to ask).
//!
//! Reading a special value straight into a type without it (a chrono date, a
//! `rust_decimal::Decimal`) is a Conversion error naming the wrapper to use instead; this
//! module never maps an infinity to a sentinel such as a maximum date.

use bytes::BytesMut;

use crate::error::Error;
use crate::row::Column;

use super::decode::{non_null, wrong_type, FromSql};
use super::{oid, IsNull, QuoteContext, ToSql, Value};

/// The PostgreSQL type a Rust type is written as, for the values that carry no instance of
/// it: the infinities of [`Infinite<T>`], the specials of [`Numeric<T>`], the empty
/// [`Range<T>`](crate::Range).
pub trait SqlType {
    /// The type's OID (see [`oid`](crate::oid)).
    const TYPE_OID: u32;
}

impl SqlType for i32 {
    const TYPE_OID: u32 = oid::INT4;
}

impl SqlType for i64 {
    const TYPE_OID: u32 = oid::INT8;
}

/// A date or timestamp that may be `infinity` or `-infinity`, as postgres-types' `Date<T>`
/// and `Timestamp<T>`: `T` is any date or timestamp type momoko reads (chrono, time).
///
/// ```
/// use momoko::{Column, FromSql, Infinite};
/// let col = Column::new("d".into(), 0, 0, momoko::oid::DATE, 4, -1, 0);
/// let v: Infinite<String> = FromSql::from_sql(&col, Some(b"infinity")).unwrap();
/// assert_eq!(v, Infinite::Infinity);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Infinite<T> {
    /// `-infinity`: earlier than every date.
    NegInfinity,
    /// A finite value.
    Finite(T),
    /// `infinity`: later than every date.
    Infinity,
}

fn is_temporal(t: u32) -> bool {
    matches!(t, oid::DATE | oid::TIMESTAMP | oid::TIMESTAMPTZ)
}

impl<T: FromSql> FromSql for Infinite<T> {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<Infinite<T>, Error> {
        let t = column.type_oid();
        if !is_temporal(t) {
            return Err(wrong_type(column, "momoko::Infinite<T>"));
        }
        let raw = non_null(column, raw, "momoko::Infinite<T>")?;
        let (pos, neg): (&[u8], &[u8]) = match (column.format(), t) {
            (1, oid::DATE) => (&[0x7f, 0xff, 0xff, 0xff], &[0x80, 0, 0, 0]),
            (1, _) => (
                &[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                &[0x80, 0, 0, 0, 0, 0, 0, 0],
            ),
            _ => (b"infinity", b"-infinity"),
        };
        if raw == pos {
            Ok(Infinite::Infinity)
        } else if raw == neg {
            Ok(Infinite::NegInfinity)
        } else {
            T::from_sql(column, Some(raw)).map(Infinite::Finite)
        }
    }
}

fn special_value(type_oid: u32, text: &str) -> Value {
    Value::Unknown {
        type_oid,
        text: text.to_owned(),
    }
}

/// The infinities as `'infinity'::date` (or the type of `T`); a finite value as `T` writes
/// itself.
impl<T: ToSql + SqlType> ToSql for Infinite<T> {
    fn to_value(&self) -> Value {
        match self {
            Infinite::NegInfinity => special_value(T::TYPE_OID, "-infinity"),
            Infinite::Finite(v) => v.to_value(),
            Infinite::Infinity => special_value(T::TYPE_OID, "infinity"),
        }
    }
    fn write_literal(&self, ctx: &QuoteContext, out: &mut String) -> Result<(), Error> {
        match self {
            Infinite::Finite(v) => v.write_literal(ctx, out),
            _ => self.to_value().write_literal(ctx, out),
        }
    }
    fn encode_binary(&self, type_oid: u32, out: &mut BytesMut) -> Result<IsNull, Error> {
        match self {
            Infinite::Finite(v) => v.encode_binary(type_oid, out),
            _ => self.to_value().encode_binary(type_oid, out),
        }
    }
}

/// A `numeric` that may be `NaN`, `Infinity` or `-Infinity` (PostgreSQL 14 and later), for
/// a `T` that has none of them (`rust_decimal::Decimal`). It also reads an `int2`, `int4` or
/// `int8` column, as a `Finite` of whatever `T` makes of the integer.
///
/// ```
/// use momoko::{Column, FromSql, Numeric};
/// let col = Column::new("n".into(), 0, 0, momoko::oid::NUMERIC, -1, -1, 0);
/// let v: Numeric<String> = FromSql::from_sql(&col, Some(b"NaN")).unwrap();
/// assert_eq!(v, Numeric::NaN);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Numeric<T> {
    /// `NaN`.
    NaN,
    /// `-Infinity`.
    NegInfinity,
    /// A finite value.
    Finite(T),
    /// `Infinity`.
    Infinity,
}

impl<T: FromSql> FromSql for Numeric<T> {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<Numeric<T>, Error> {
        let integer = matches!(column.type_oid(), oid::INT2 | oid::INT4 | oid::INT8);
        if column.type_oid() != oid::NUMERIC && !integer {
            return Err(wrong_type(column, "momoko::Numeric<T>"));
        }
        let raw = non_null(column, raw, "momoko::Numeric<T>")?;
        if integer {
            // An integer is always finite; `T` reads it as it reads any integer column.
            return T::from_sql(column, Some(raw)).map(Numeric::Finite);
        }
        // A binary special is checked whole (its digit count against its length), as the
        // other numeric readers check it.
        let binary_text;
        let text: &[u8] = if column.format() == 1 {
            binary_text = super::binary::numeric_to_string(raw)?;
            binary_text.as_bytes()
        } else {
            raw
        };
        let special = match text {
            b"NaN" => Some(Numeric::NaN),
            b"Infinity" => Some(Numeric::Infinity),
            b"-Infinity" => Some(Numeric::NegInfinity),
            _ => None,
        };
        match special {
            Some(s) => Ok(s),
            None => T::from_sql(column, Some(raw)).map(Numeric::Finite),
        }
    }
}

/// The specials as the server spells them (`'NaN'::numeric`, `'Infinity'::numeric`); a
/// finite value as `T` writes itself.
impl<T: ToSql> ToSql for Numeric<T> {
    fn to_value(&self) -> Value {
        match self {
            Numeric::NaN => Value::Numeric("NaN".into()),
            Numeric::NegInfinity => Value::Numeric("-Infinity".into()),
            Numeric::Finite(v) => v.to_value(),
            Numeric::Infinity => Value::Numeric("Infinity".into()),
        }
    }
    fn write_literal(&self, ctx: &QuoteContext, out: &mut String) -> Result<(), Error> {
        match self {
            Numeric::Finite(v) => v.write_literal(ctx, out),
            _ => self.to_value().write_literal(ctx, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infinities_read_in_both_formats_and_finite_values_pass_through() {
        let text = Column::new("d".into(), 0, 0, oid::DATE, 4, -1, 0);
        let bin = Column::new("d".into(), 0, 0, oid::DATE, 4, -1, 1);
        let ts = Column::new("t".into(), 0, 0, oid::TIMESTAMP, 8, -1, 1);
        let r = |c: &Column, raw: &[u8]| Infinite::<String>::from_sql(c, Some(raw)).unwrap();
        assert_eq!(r(&text, b"-infinity"), Infinite::NegInfinity);
        assert_eq!(
            r(&text, b"2024-01-01"),
            Infinite::Finite("2024-01-01".to_owned())
        );
        assert_eq!(r(&bin, &i32::MAX.to_be_bytes()), Infinite::Infinity);
        assert_eq!(r(&bin, &i32::MIN.to_be_bytes()), Infinite::NegInfinity);
        assert_eq!(r(&ts, &i64::MAX.to_be_bytes()), Infinite::Infinity);
        assert_eq!(
            r(&ts, &0i64.to_be_bytes()),
            Infinite::Finite("2000-01-01 00:00:00".into())
        );
        let int = Column::new("i".into(), 0, 0, oid::INT4, 4, -1, 0);
        assert!(Infinite::<String>::from_sql(&int, Some(b"1")).is_err());
        assert!(Infinite::<String>::from_sql(&text, None).is_err());
    }

    #[test]
    fn numeric_specials_read_in_both_formats() {
        let text = Column::new("n".into(), 0, 0, oid::NUMERIC, -1, -1, 0);
        let bin = Column::new("n".into(), 0, 0, oid::NUMERIC, -1, -1, 1);
        let r = |c: &Column, raw: &[u8]| Numeric::<String>::from_sql(c, Some(raw)).unwrap();
        assert_eq!(r(&text, b"-Infinity"), Numeric::NegInfinity);
        assert_eq!(r(&text, b"1.50"), Numeric::Finite("1.50".into()));
        assert_eq!(r(&bin, &[0, 0, 0, 0, 0xC0, 0, 0, 0]), Numeric::NaN);
        assert_eq!(r(&bin, &[0, 0, 0, 0, 0xD0, 0, 0, 0]), Numeric::Infinity);
        let mut sql = String::new();
        Numeric::<i32>::NaN
            .write_literal(&QuoteContext::default(), &mut sql)
            .unwrap();
        assert_eq!(sql, "'NaN'::numeric");
    }
}
