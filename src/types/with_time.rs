//! The time crate's dates and times (feature `time`): `Date` (date), `Time` (time),
//! `PrimitiveDateTime` (timestamp), `OffsetDateTime` (timestamptz) and `Duration` (interval
//! without months), read from both result formats through [`temporal`](super::temporal),
//! written as psycopg2 writes `date`, `time`, `datetime` and `timedelta`.
//!
//! Like the chrono adapter, this module only converts between the crate's types and the
//! neutral numbers of `temporal`; a value the crate cannot hold (an infinity, a year past
//! ±9999, `24:00:00`) is a Conversion error, never a clamp.

use time::{Date, Duration, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use crate::error::Error;
use crate::row::Column;

use super::decode::{non_null, wrong_type, FromSql};
use super::interval::{interval_micros, timedelta_text};
use super::temporal::{self, DAY_US};
use super::{oid, SqlType, ToSql, Value};

/// The Julian day of 2000-01-01.
const PG_EPOCH_JULIAN: i64 = 2_451_545;

fn out_of_range(column: &Column, rust: &str) -> Error {
    Error::conversion(format!(
        "column \"{}\": the value is out of range for {rust}",
        column.name()
    ))
}

fn check(column: &Column, want: u32, rust: &str) -> Result<(), Error> {
    if column.type_oid() == want {
        Ok(())
    } else {
        Err(wrong_type(column, rust))
    }
}

fn date_of_days(days: i64) -> Option<Date> {
    Date::from_julian_day(i32::try_from(days.checked_add(PG_EPOCH_JULIAN)?).ok()?).ok()
}

fn time_of_us(us: i64) -> Option<Time> {
    if !(0..DAY_US).contains(&us) {
        return None;
    }
    let secs = us / 1_000_000;
    Time::from_hms_micro(
        (secs / 3600) as u8,
        ((secs / 60) % 60) as u8,
        (secs % 60) as u8,
        (us % 1_000_000) as u32,
    )
    .ok()
}

fn primitive_of_us(us: i64) -> Option<PrimitiveDateTime> {
    let date = date_of_days(us.div_euclid(DAY_US))?;
    Some(PrimitiveDateTime::new(
        date,
        time_of_us(us.rem_euclid(DAY_US))?,
    ))
}

#[cfg_attr(docsrs, doc(cfg(feature = "time")))]
impl FromSql for Date {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<Date, Error> {
        const RUST: &str = "time::Date";
        check(column, oid::DATE, RUST)?;
        let d = temporal::read_date(column, non_null(column, raw, RUST)?)?.finite(column, RUST)?;
        date_of_days(i64::from(d)).ok_or_else(|| out_of_range(column, RUST))
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "time")))]
impl FromSql for Time {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<Time, Error> {
        const RUST: &str = "time::Time";
        check(column, oid::TIME, RUST)?;
        let us = temporal::read_time(column, non_null(column, raw, RUST)?)?;
        time_of_us(us).ok_or_else(|| out_of_range(column, RUST))
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "time")))]
impl FromSql for PrimitiveDateTime {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<PrimitiveDateTime, Error> {
        const RUST: &str = "time::PrimitiveDateTime";
        check(column, oid::TIMESTAMP, RUST)?;
        let (us, _) =
            temporal::read_timestamp(column, non_null(column, raw, RUST)?)?.finite(column, RUST)?;
        primitive_of_us(us).ok_or_else(|| out_of_range(column, RUST))
    }
}

/// The offset is the one the server wrote the value in (the session's TimeZone) for text
/// results, and UTC for binary ones; the instant is the same.
#[cfg_attr(docsrs, doc(cfg(feature = "time")))]
impl FromSql for OffsetDateTime {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<OffsetDateTime, Error> {
        const RUST: &str = "time::OffsetDateTime";
        check(column, oid::TIMESTAMPTZ, RUST)?;
        let (us, offset) =
            temporal::read_timestamp(column, non_null(column, raw, RUST)?)?.finite(column, RUST)?;
        let utc = primitive_of_us(us)
            .ok_or_else(|| out_of_range(column, RUST))?
            .assume_utc();
        let offset =
            UtcOffset::from_whole_seconds(offset).map_err(|_| out_of_range(column, RUST))?;
        utc.checked_to_offset(offset)
            .ok_or_else(|| out_of_range(column, RUST))
    }
}

/// An interval without months; a day counts 24 hours.
#[cfg_attr(docsrs, doc(cfg(feature = "time")))]
impl FromSql for Duration {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<Duration, Error> {
        const RUST: &str = "time::Duration";
        let us = interval_micros(column, raw, RUST)?;
        let us = i64::try_from(us).map_err(|_| out_of_range(column, RUST))?;
        Ok(Duration::microseconds(us))
    }
}

fn ymd(d: Date) -> (i64, u32, u32) {
    (
        i64::from(d.year()),
        u32::from(u8::from(d.month())),
        u32::from(d.day()),
    )
}

fn hmsn(t: Time) -> (u32, u32, u32, u32) {
    (
        u32::from(t.hour()),
        u32::from(t.minute()),
        u32::from(t.second()),
        t.nanosecond(),
    )
}

fn unknown(type_oid: u32, text: String) -> Value {
    Value::Unknown { type_oid, text }
}

/// `'2024-02-29'::date`, as psycopg2 writes a `date`.
#[cfg_attr(docsrs, doc(cfg(feature = "time")))]
impl ToSql for Date {
    fn to_value(&self) -> Value {
        let (y, m, d) = ymd(*self);
        unknown(oid::DATE, temporal::date_iso(y, m, d))
    }
}

/// `'01:02:03.000004'::time`, as psycopg2 writes a `time`.
#[cfg_attr(docsrs, doc(cfg(feature = "time")))]
impl ToSql for Time {
    fn to_value(&self) -> Value {
        let (h, m, s, n) = hmsn(*self);
        let mut text = String::with_capacity(18);
        temporal::push_hms(h, m, s, n, &mut text);
        unknown(oid::TIME, text)
    }
}

/// `'2024-02-29T13:45:01.123456'::timestamp`, as psycopg2 writes a naive `datetime`.
#[cfg_attr(docsrs, doc(cfg(feature = "time")))]
impl ToSql for PrimitiveDateTime {
    fn to_value(&self) -> Value {
        unknown(
            oid::TIMESTAMP,
            temporal::datetime_iso(ymd(self.date()), hmsn(self.time()), None),
        )
    }
}

/// `'2024-02-29T13:45:01+00:00'::timestamptz`, as psycopg2 writes an aware `datetime`.
#[cfg_attr(docsrs, doc(cfg(feature = "time")))]
impl ToSql for OffsetDateTime {
    fn to_value(&self) -> Value {
        unknown(
            oid::TIMESTAMPTZ,
            temporal::datetime_iso(
                ymd(self.date()),
                hmsn(self.time()),
                Some(self.offset().whole_seconds()),
            ),
        )
    }
}

/// `'1 days 5.000007 seconds'::interval`, as psycopg2 writes the `timedelta` of the same
/// length (nanoseconds are dropped). A negative one differs from psycopg2 by one sign:
/// `'-1 days +86399.000000 seconds'::interval` for -1 s, where psycopg2 leaves out the `+`
/// and the server reads its text as -(1 day 23:59:59) under IntervalStyle `sql_standard`.
#[cfg_attr(docsrs, doc(cfg(feature = "time")))]
impl ToSql for Duration {
    fn to_value(&self) -> Value {
        let us = self.whole_nanoseconds().div_euclid(1000);
        match timedelta_text(us) {
            Some(text) => unknown(oid::INTERVAL, text),
            None => unknown(oid::INTERVAL, format!("{us} microseconds")),
        }
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "time")))]
impl SqlType for Date {
    const TYPE_OID: u32 = oid::DATE;
}

#[cfg_attr(docsrs, doc(cfg(feature = "time")))]
impl SqlType for Time {
    const TYPE_OID: u32 = oid::TIME;
}

#[cfg_attr(docsrs, doc(cfg(feature = "time")))]
impl SqlType for PrimitiveDateTime {
    const TYPE_OID: u32 = oid::TIMESTAMP;
}

#[cfg_attr(docsrs, doc(cfg(feature = "time")))]
impl SqlType for OffsetDateTime {
    const TYPE_OID: u32 = oid::TIMESTAMPTZ;
}

macro_rules! into_value {
    ($($t:ty),*) => {$(
        #[cfg_attr(docsrs, doc(cfg(feature = "time")))]
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                v.to_value()
            }
        }
    )*};
}

into_value!(Date, Time, PrimitiveDateTime, OffsetDateTime, Duration);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::QuoteContext;
    use time::Month;

    fn lit<T: ToSql>(v: T) -> String {
        let mut s = String::new();
        v.write_literal(&QuoteContext::default(), &mut s).unwrap();
        s
    }

    fn col(type_oid: u32, format: i16) -> Column {
        Column::new("c".into(), 0, 0, type_oid, -1, -1, format)
    }

    #[test]
    fn literals_match_psycopg2() {
        let d = Date::from_calendar_date(2024, Month::February, 29).unwrap();
        assert_eq!(lit(d), "'2024-02-29'::date");
        let t = Time::from_hms_micro(13, 45, 1, 123_456).unwrap();
        assert_eq!(
            lit(PrimitiveDateTime::new(d, t)),
            "'2024-02-29T13:45:01.123456'::timestamp"
        );
        let at = PrimitiveDateTime::new(d, Time::from_hms(13, 45, 1).unwrap());
        assert_eq!(
            lit(at.assume_utc()),
            "'2024-02-29T13:45:01+00:00'::timestamptz"
        );
        assert_eq!(lit(Time::from_hms(1, 2, 3).unwrap()), "'01:02:03'::time");
        assert_eq!(
            lit(Duration::microseconds(86_400_000_000 + 5_000_007)),
            "'1 days 5.000007 seconds'::interval"
        );
        assert_eq!(
            lit(Duration::seconds(-1)),
            "'-1 days +86399.000000 seconds'::interval"
        );
    }

    #[test]
    fn both_formats_read_the_same_values() {
        let d = Date::from_calendar_date(1, Month::January, 1).unwrap();
        assert_eq!(
            Date::from_sql(&col(oid::DATE, 0), Some(b"0001-01-01")).unwrap(),
            d
        );
        let days = i32::try_from(i64::from(d.to_julian_day()) - PG_EPOCH_JULIAN).unwrap();
        assert_eq!(
            Date::from_sql(&col(oid::DATE, 1), Some(&days.to_be_bytes())).unwrap(),
            d
        );
        let ny =
            OffsetDateTime::from_sql(&col(oid::TIMESTAMPTZ, 0), Some(b"2024-02-29 08:45:01.5-05"))
                .unwrap();
        assert_eq!(ny.offset().whole_seconds(), -5 * 3600);
        assert_eq!(ny.unix_timestamp_nanos(), 1_709_214_301_500_000_000);
        assert!(Time::from_sql(&col(oid::TIME, 0), Some(b"24:00:00")).is_err());
        assert!(Date::from_sql(&col(oid::DATE, 0), Some(b"10000-01-01")).is_err());
        assert!(Date::from_sql(&col(oid::DATE, 0), Some(b"-infinity")).is_err());
    }
}
