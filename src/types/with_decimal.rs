//! `rust_decimal::Decimal` (feature `rust_decimal`) for `numeric`, scale kept (`10.50` reads
//! back as `10.50`), and from `int2`, `int4` and `int8` (scale 0), from both result formats, written as psycopg2 writes a `Decimal`
//! (Python's `str()`: plain digits, or `1E-7` for the very small).
//!
//! A numeric a Decimal cannot hold (NaN, ±Infinity, more than 28 digits of scale or a value
//! past 2^96) is a Conversion error: never a rounding.

use rust_decimal::Decimal;

use crate::error::Error;
use crate::row::Column;

use super::binary::numeric_to_string;
use super::decode::{non_null, wrong_type, FromSql};
use super::{oid, SqlType, ToSql, Value};

/// The longest text of a value a Decimal may hold: `-0.` and 28 digits of scale, or a sign,
/// 29 digits and a point, with room to spare.
const MAX_TEXT: usize = 40;

#[cfg_attr(docsrs, doc(cfg(feature = "rust_decimal")))]
impl FromSql for Decimal {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<Decimal, Error> {
        const RUST: &str = "rust_decimal::Decimal";
        if matches!(column.type_oid(), oid::INT2 | oid::INT4 | oid::INT8) {
            // An integer of any width is a Decimal of scale 0: nothing is lost (`SELECT %s`
            // with Decimal::ZERO renders `SELECT 0`, an int4).
            let raw = non_null(column, raw, RUST)?;
            return i64::from_sql(column, Some(raw)).map(Decimal::from);
        }
        if column.type_oid() != oid::NUMERIC {
            return Err(wrong_type(column, RUST));
        }
        let raw = non_null(column, raw, RUST)?;
        let text = if column.format() == 1 {
            numeric_to_string(raw)?
        } else {
            String::from_utf8_lossy(raw).into_owned()
        };
        if matches!(text.as_str(), "NaN" | "Infinity" | "-Infinity") {
            return Err(Error::conversion(format!(
                "column \"{}\": {text} does not fit {RUST}; read it as \
                 momoko::Numeric<rust_decimal::Decimal>",
                column.name()
            )));
        }
        // No Decimal has more than 29 digits and a sign and a point; a longer text (a numeric
        // of thousands of digits) is refused before rust_decimal's parser, which recurses
        // once per character and would overflow the stack on it.
        if text.len() > MAX_TEXT {
            let shown: String = text.chars().take(40).collect();
            return Err(Error::conversion(format!(
                "column \"{}\": {shown}… ({} characters) does not fit {RUST}",
                column.name(),
                text.len()
            )));
        }
        Decimal::from_str_exact(&text).map_err(|e| {
            let shown: String = text.chars().take(60).collect();
            Error::conversion(format!(
                "column \"{}\": {shown} does not fit {RUST} ({e})",
                column.name()
            ))
        })
    }
}

/// Python's `str(Decimal)` of the same coefficient and exponent: the digits with the point
/// where the scale puts it, or scientific notation when the adjusted exponent is below -6.
pub(crate) fn python_str(d: &Decimal) -> String {
    let digits = d.mantissa().unsigned_abs().to_string();
    let scale = d.scale() as usize;
    let neg = d.is_sign_negative();
    let mut out = String::with_capacity(digits.len() + scale + 4);
    if neg {
        out.push('-');
    }
    let adjusted = digits.len() as i64 - 1 - scale as i64;
    if adjusted < -6 {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push_str(&format!("E{adjusted}"));
    } else if scale == 0 {
        out.push_str(&digits);
    } else if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else {
        out.push_str("0.");
        out.push_str(&"0".repeat(scale - digits.len()));
        out.push_str(&digits);
    }
    out
}

/// Bare digits, as psycopg2 writes a `Decimal` (` -3.50` with the space before a minus).
#[cfg_attr(docsrs, doc(cfg(feature = "rust_decimal")))]
impl ToSql for Decimal {
    fn to_value(&self) -> Value {
        Value::Numeric(python_str(self))
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "rust_decimal")))]
impl SqlType for Decimal {
    const TYPE_OID: u32 = oid::NUMERIC;
}

#[cfg_attr(docsrs, doc(cfg(feature = "rust_decimal")))]
impl From<Decimal> for Value {
    fn from(v: Decimal) -> Value {
        v.to_value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn python_str_forms() {
        for (s, py) in [
            ("10.50", "10.50"),
            ("0", "0"),
            ("0.00", "0.00"),
            ("-3.50", "-3.50"),
            ("0.000001", "0.000001"),
            ("0.0000001", "1E-7"),
            ("0.00000010", "1.0E-7"),
            ("0.00000000", "0E-8"),
            ("-0.00000123", "-0.00000123"),
            ("-0.000000123", "-1.23E-7"),
            (
                "1234567890123456789012345678",
                "1234567890123456789012345678",
            ),
            (
                "0.1234567890123456789012345678",
                "0.1234567890123456789012345678",
            ),
        ] {
            assert_eq!(python_str(&Decimal::from_str(s).unwrap()), py, "{s}");
        }
    }

    #[test]
    fn scale_is_kept_and_what_does_not_fit_is_an_error() {
        let text = Column::new("n".into(), 0, 0, oid::NUMERIC, -1, -1, 0);
        let d = Decimal::from_sql(&text, Some(b"10.50")).unwrap();
        assert_eq!((d.mantissa(), d.scale()), (1050, 2));
        // 10.50 in binary: 1 digit group before the point (10), one after (5000), dscale 2.
        let bin = Column::new("n".into(), 0, 0, oid::NUMERIC, -1, -1, 1);
        let raw = [0, 2, 0, 0, 0, 0, 0, 2, 0, 10, 0x13, 0x88];
        let d = Decimal::from_sql(&bin, Some(&raw)).unwrap();
        assert_eq!(d.to_string(), "10.50");
        for bad in [
            &b"NaN"[..],
            b"Infinity",
            b"1e400",
            b"0.00000000000000000000000000001",
            b"x",
        ] {
            assert!(Decimal::from_sql(&text, Some(bad)).is_err(), "{bad:?}");
        }
        assert!(Decimal::from_sql(&bin, Some(&[0, 0, 0, 0, 0xC0, 0, 0, 0])).is_err());
    }

    #[test]
    fn integer_columns_read_as_decimals_of_scale_zero() {
        for (type_oid, raw) in [
            (oid::INT2, (-7i16).to_be_bytes().to_vec()),
            (oid::INT4, (-7i32).to_be_bytes().to_vec()),
            (oid::INT8, (-7i64).to_be_bytes().to_vec()),
        ] {
            let bin = Column::new("i".into(), 0, 0, type_oid, -1, -1, 1);
            assert_eq!(
                Decimal::from_sql(&bin, Some(&raw)).unwrap(),
                Decimal::from(-7)
            );
            let text = Column::new("i".into(), 0, 0, type_oid, -1, -1, 0);
            let d = Decimal::from_sql(&text, Some(b"-7")).unwrap();
            assert_eq!((d.mantissa(), d.scale()), (-7, 0));
        }
        let int8 = Column::new("i".into(), 0, 0, oid::INT8, -1, -1, 1);
        let max = Decimal::from_sql(&int8, Some(&i64::MIN.to_be_bytes())).unwrap();
        assert_eq!(max.to_string(), i64::MIN.to_string());
        assert!(Decimal::from_sql(&int8, None).is_err());
        let float = Column::new("f".into(), 0, 0, oid::FLOAT8, -1, -1, 0);
        assert!(Decimal::from_sql(&float, Some(b"1.5")).is_err());
    }
}
