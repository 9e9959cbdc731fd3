//! `uuid::Uuid` (feature `uuid`), read from both result formats and written as psycopg2
//! writes a `UUID` after `register_uuid()`: `'…'::uuid`, lowercase and hyphenated.
//!
//! This module only converts; a field that is not 16 bytes (binary) or a uuid's text is a
//! Conversion error, never a panic.

use uuid::Uuid;

use crate::error::Error;
use crate::row::Column;

use super::decode::{non_null, wrong_type, FromSql};
use super::{oid, SqlType, ToSql, Value};

#[cfg_attr(docsrs, doc(cfg(feature = "uuid")))]
impl FromSql for Uuid {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<Uuid, Error> {
        if column.type_oid() != oid::UUID {
            return Err(wrong_type(column, "uuid::Uuid"));
        }
        let raw = non_null(column, raw, "uuid::Uuid")?;
        let parsed = if column.format() == 1 {
            Uuid::from_slice(raw).ok()
        } else {
            Uuid::try_parse_ascii(raw).ok()
        };
        parsed
            .ok_or_else(|| Error::conversion(format!("column \"{}\": invalid uuid", column.name())))
    }
}

/// `'00000000-0000-0000-0000-000000000000'::uuid`.
#[cfg_attr(docsrs, doc(cfg(feature = "uuid")))]
impl ToSql for Uuid {
    fn to_value(&self) -> Value {
        Value::Unknown {
            type_oid: oid::UUID,
            text: self.hyphenated().to_string(),
        }
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "uuid")))]
impl SqlType for Uuid {
    const TYPE_OID: u32 = oid::UUID;
}

#[cfg_attr(docsrs, doc(cfg(feature = "uuid")))]
impl From<Uuid> for Value {
    fn from(v: Uuid) -> Value {
        v.to_value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::QuoteContext;

    #[test]
    fn both_formats_and_the_psycopg2_literal() {
        let u = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let text = Column::new("u".into(), 0, 0, oid::UUID, 16, -1, 0);
        let bin = Column::new("u".into(), 0, 0, oid::UUID, 16, -1, 1);
        let s = b"01234567-89ab-cdef-0123-456789abcdef";
        assert_eq!(Uuid::from_sql(&text, Some(s)).unwrap(), u);
        assert_eq!(Uuid::from_sql(&bin, Some(u.as_bytes())).unwrap(), u);
        assert!(Uuid::from_sql(&bin, Some(&s[..15])).is_err());
        assert!(Uuid::from_sql(&text, Some(b"not a uuid")).is_err());
        let mut sql = String::new();
        u.write_literal(&QuoteContext::default(), &mut sql).unwrap();
        assert_eq!(sql, "'01234567-89ab-cdef-0123-456789abcdef'::uuid");
    }
}
