//! [`Lsn`]: a position in the write-ahead log, PostgreSQL's `pg_lsn`.
//!
//! This module owns the LSN's three forms (the 64-bit number, PostgreSQL's text `16/B374D848`,
//! and the 8-byte big-endian binary of a `pg_lsn` column) and nothing else. It never decides
//! what a position means for a stream; it reads text a caller or a server gave it, so
//! malformed text is an error, never a panic.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;
use crate::row::Column;
use crate::types::{oid, FromSql, ToSql, Value};

/// A WAL position (log sequence number): PostgreSQL's `pg_lsn`.
///
/// Ordered like the WAL; `Display` and `FromStr` use PostgreSQL's text form, two hexadecimal
/// numbers of at most 8 digits each (the high and low 32 bits). `Display` writes upper case
/// and pads the low half to 8 digits (`0/01A371A0`), as psycopg2 and PostgreSQL 19 do
/// (servers before 19 print `0/1A371A0`); `FromStr` reads both. It reads from `pg_lsn`
/// columns in text and binary results.
///
/// ```
/// use momoko::replication::Lsn;
/// let a: Lsn = "16/B374D848".parse().unwrap();
/// assert_eq!(u64::from(a), 0x16_B374_D848);
/// assert_eq!(a.to_string(), "16/B374D848");
/// assert!(Lsn::ZERO < a);
/// assert!("16/".parse::<Lsn>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(u64);

impl Lsn {
    /// `0/0`: no position. As a start position it asks the server for the slot's
    /// `confirmed_flush_lsn`.
    pub const ZERO: Lsn = Lsn(0);

    /// The LSN as a number.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// This LSN moved `bytes` forward, or `None` past the end of the WAL's address space.
    pub fn checked_add(self, bytes: u64) -> Option<Lsn> {
        self.0.checked_add(bytes).map(Lsn)
    }
}

impl From<u64> for Lsn {
    fn from(v: u64) -> Lsn {
        Lsn(v)
    }
}

impl From<Lsn> for u64 {
    fn from(l: Lsn) -> u64 {
        l.0
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:08X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl fmt::Debug for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lsn({self})")
    }
}

/// One half of the text form: 1 to 8 hexadecimal digits, nothing else (no sign, no space).
fn half(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

impl FromStr for Lsn {
    type Err = Error;

    /// Parses `X/X` as PostgreSQL's `pg_lsn_in` does; anything else is a Usage error.
    fn from_str(s: &str) -> Result<Lsn, Error> {
        s.split_once('/')
            .and_then(|(hi, lo)| Some(Lsn(half(hi)? << 32 | half(lo)?)))
            .ok_or_else(|| {
                Error::usage(format!(
                    "invalid LSN {s:?}: expected two hexadecimal numbers of at most 8 digits \
                     each, such as 16/B374D848"
                ))
            })
    }
}

/// A `pg_lsn` column (also `text`, for an LSN stored as text), in either result format.
impl FromSql for Lsn {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<Lsn, Error> {
        let t = column.type_oid();
        if t != oid::PG_LSN && !oid::is_text_like(t) {
            return Err(crate::types::wrong_type(column, "Lsn"));
        }
        let raw = crate::types::non_null(column, raw, "Lsn")?;
        if column.format() == 1 && t == oid::PG_LSN {
            return <[u8; 8]>::try_from(raw)
                .map(|b| Lsn(u64::from_be_bytes(b)))
                .map_err(|_| {
                    Error::conversion(format!(
                        "column \"{}\": invalid binary pg_lsn of {} bytes",
                        column.name(),
                        raw.len()
                    ))
                });
        }
        std::str::from_utf8(raw)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                Error::conversion(format!(
                    "column \"{}\": {:?} is not a valid LSN",
                    column.name(),
                    String::from_utf8_lossy(raw)
                ))
            })
    }
}

/// An LSN parameter is a `pg_lsn` (`'16/B374D848'::pg_lsn` when rendered client-side).
impl ToSql for Lsn {
    fn to_value(&self) -> Value {
        Value::Unknown {
            type_oid: oid::PG_LSN,
            text: self.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn text_form_round_trips_in_upper_case() {
        let a: Lsn = "16/b374d848".parse().unwrap();
        assert_eq!(a, Lsn::from(0x16_B374_D848));
        assert_eq!(a.to_string(), "16/B374D848");
        assert_eq!(Lsn::ZERO.to_string(), "0/00000000");
        assert_eq!(Lsn::from(u64::MAX).to_string(), "FFFFFFFF/FFFFFFFF");
        assert_eq!(
            "FFFFFFFF/FFFFFFFF".parse::<Lsn>().unwrap(),
            Lsn::from(u64::MAX)
        );
        assert_eq!("0/1".parse::<Lsn>().unwrap(), Lsn::from(1));
        // The low half padded as psycopg2 and PostgreSQL 19 write it; unpadded input (servers
        // before 19) reads the same.
        assert_eq!(Lsn::from(0x1_0000_00AB).to_string(), "1/000000AB");
        assert_eq!("1/AB".parse::<Lsn>().unwrap(), Lsn::from(0x1_0000_00AB));
        assert_eq!(format!("{:?}", Lsn::from(0x1_0000_00AB)), "Lsn(1/000000AB)");
    }

    #[test]
    fn malformed_text_is_a_usage_error() {
        for bad in [
            "",
            "/",
            "1/",
            "/1",
            "1",
            "1/2/3",
            "123456789/0",
            "0/123456789",
            "g/0",
            "+1/0",
            " 1/0",
            "1/0 ",
            "-1/0",
            "1//0",
        ] {
            let e = bad.parse::<Lsn>().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Usage, "{bad:?}");
            assert!(e.to_string().contains("invalid LSN"), "{e}");
        }
    }

    #[test]
    fn ordered_as_numbers() {
        let a: Lsn = "0/FFFFFFFF".parse().unwrap();
        let b: Lsn = "1/0".parse().unwrap();
        assert!(a < b);
        assert_eq!(u64::from(b), 1 << 32);
        assert_eq!(Lsn::default(), Lsn::ZERO);
    }

    #[test]
    fn reads_pg_lsn_columns_in_both_formats() {
        let text = Column::new("l".into(), 0, 0, oid::PG_LSN, 8, -1, 0);
        let bin = Column::new("l".into(), 0, 0, oid::PG_LSN, 8, -1, 1);
        let want = Lsn::from(0x16_B374_D848);
        assert_eq!(Lsn::from_sql(&text, Some(b"16/B374D848")).unwrap(), want);
        let raw = 0x16_B374_D848u64.to_be_bytes();
        assert_eq!(Lsn::from_sql(&bin, Some(&raw)).unwrap(), want);
        assert_eq!(Option::<Lsn>::from_sql(&bin, None).unwrap(), None);
        assert_eq!(
            Lsn::from_sql(&bin, Some(&raw[..7])).unwrap_err().kind(),
            ErrorKind::Conversion
        );
        assert_eq!(
            Lsn::from_sql(&text, Some(b"nope")).unwrap_err().kind(),
            ErrorKind::Conversion
        );
        let int = Column::new("i".into(), 0, 0, oid::INT8, 8, -1, 1);
        assert_eq!(
            Lsn::from_sql(&int, Some(&raw)).unwrap_err().kind(),
            ErrorKind::Conversion
        );
        assert_eq!(String::from_sql(&bin, Some(&raw)).unwrap(), "16/B374D848");
    }

    #[test]
    fn parameter_is_a_pg_lsn_literal() {
        let ctx = crate::QuoteContext::default();
        assert_eq!(
            Lsn::from(0x16_B374_D848)
                .to_value()
                .to_literal(&ctx)
                .unwrap(),
            "'16/B374D848'::pg_lsn"
        );
    }
}
