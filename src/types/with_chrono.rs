//! chrono's dates and times (feature `chrono`): `NaiveDate` (date), `NaiveTime` (time),
//! `NaiveDateTime` (timestamp), `DateTime<Utc>` / `DateTime<FixedOffset>` /
//! `DateTime<Local>` (timestamptz) and `TimeDelta` (interval without months), read from both
//! result formats through [`temporal`](super::temporal), written as psycopg2 writes
//! `date`, `time`, `datetime` and `timedelta`.
//!
//! This module only converts between chrono's types and the neutral numbers of
//! `temporal`; it never parses server text itself, so both calendar crates read exactly the
//! same inputs. A value chrono cannot hold (an infinity, a year past its range, `24:00:00`)
//! is a Conversion error, never a clamp.

use chrono::{
    DateTime, Datelike, FixedOffset, Local, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta,
    TimeZone, Timelike, Utc,
};

use crate::error::Error;
use crate::row::Column;

use super::decode::{non_null, wrong_type, FromSql};
use super::interval::{interval_micros, timedelta_text};
use super::temporal::{self, DAY_US};
use super::{oid, SqlType, ToSql, Value};

/// Days from 0001-01-01 (chrono's day 1) to 2000-01-01.
const CE_TO_PG_EPOCH: i64 = 730_119;

fn out_of_range(column: &Column, rust: &str) -> Error {
    Error::conversion(format!(
        "column \"{}\": the value is out of range for {rust}",
        column.name()
    ))
}

fn date_of_days(days: i64) -> Option<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt(i32::try_from(days.checked_add(CE_TO_PG_EPOCH + 1)?).ok()?)
}

fn naive_of_us(us: i64) -> Option<NaiveDateTime> {
    let days = us.div_euclid(DAY_US);
    let rest = us.rem_euclid(DAY_US);
    let date = date_of_days(days)?;
    let time = NaiveTime::from_num_seconds_from_midnight_opt(
        (rest / 1_000_000) as u32,
        (rest % 1_000_000) as u32 * 1000,
    )?;
    Some(date.and_time(time))
}

fn check(column: &Column, want: u32, rust: &str) -> Result<(), Error> {
    if column.type_oid() == want {
        Ok(())
    } else {
        Err(wrong_type(column, rust))
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "chrono")))]
impl FromSql for NaiveDate {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<NaiveDate, Error> {
        const RUST: &str = "chrono::NaiveDate";
        check(column, oid::DATE, RUST)?;
        let d = temporal::read_date(column, non_null(column, raw, RUST)?)?.finite(column, RUST)?;
        date_of_days(i64::from(d)).ok_or_else(|| out_of_range(column, RUST))
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "chrono")))]
impl FromSql for NaiveTime {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<NaiveTime, Error> {
        const RUST: &str = "chrono::NaiveTime";
        check(column, oid::TIME, RUST)?;
        let us = temporal::read_time(column, non_null(column, raw, RUST)?)?;
        NaiveTime::from_num_seconds_from_midnight_opt(
            (us / 1_000_000) as u32,
            (us % 1_000_000) as u32 * 1000,
        )
        .filter(|_| us < DAY_US)
        .ok_or_else(|| out_of_range(column, RUST))
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "chrono")))]
impl FromSql for NaiveDateTime {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<NaiveDateTime, Error> {
        const RUST: &str = "chrono::NaiveDateTime";
        check(column, oid::TIMESTAMP, RUST)?;
        let (us, _) =
            temporal::read_timestamp(column, non_null(column, raw, RUST)?)?.finite(column, RUST)?;
        naive_of_us(us).ok_or_else(|| out_of_range(column, RUST))
    }
}

/// The instant of a timestamptz field and the offset its text was written in.
fn instant(column: &Column, raw: Option<&[u8]>, rust: &str) -> Result<(DateTime<Utc>, i32), Error> {
    check(column, oid::TIMESTAMPTZ, rust)?;
    let (us, offset) =
        temporal::read_timestamp(column, non_null(column, raw, rust)?)?.finite(column, rust)?;
    let at = naive_of_us(us).ok_or_else(|| out_of_range(column, rust))?;
    Ok((Utc.from_utc_datetime(&at), offset))
}

#[cfg_attr(docsrs, doc(cfg(feature = "chrono")))]
impl FromSql for DateTime<Utc> {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<DateTime<Utc>, Error> {
        instant(column, raw, "chrono::DateTime<Utc>").map(|(at, _)| at)
    }
}

/// The offset is the one the server wrote the value in (the session's TimeZone) for text
/// results, and UTC for binary ones, which carry no offset; the instant is the same.
#[cfg_attr(docsrs, doc(cfg(feature = "chrono")))]
impl FromSql for DateTime<FixedOffset> {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<DateTime<FixedOffset>, Error> {
        const RUST: &str = "chrono::DateTime<FixedOffset>";
        let (at, offset) = instant(column, raw, RUST)?;
        let tz = FixedOffset::east_opt(offset).ok_or_else(|| out_of_range(column, RUST))?;
        Ok(at.with_timezone(&tz))
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "chrono")))]
impl FromSql for DateTime<Local> {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<DateTime<Local>, Error> {
        instant(column, raw, "chrono::DateTime<Local>").map(|(at, _)| at.with_timezone(&Local))
    }
}

/// An interval without months; a day counts 24 hours.
#[cfg_attr(docsrs, doc(cfg(feature = "chrono")))]
impl FromSql for TimeDelta {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<TimeDelta, Error> {
        const RUST: &str = "chrono::TimeDelta";
        let us = interval_micros(column, raw, RUST)?;
        i64::try_from(us)
            .map(TimeDelta::microseconds)
            .map_err(|_| out_of_range(column, RUST))
    }
}

fn ymd(d: &NaiveDate) -> (i64, u32, u32) {
    (i64::from(d.year()), d.month(), d.day())
}

/// chrono keeps a leap second as nanoseconds past 1e9; written as second 60.
fn hmsn(t: &NaiveTime) -> (u32, u32, u32, u32) {
    let n = t.nanosecond();
    (
        t.hour(),
        t.minute(),
        t.second() + n / 1_000_000_000,
        n % 1_000_000_000,
    )
}

fn unknown(type_oid: u32, text: String) -> Value {
    Value::Unknown { type_oid, text }
}

/// `'2024-02-29'::date`, as psycopg2 writes a `date`.
#[cfg_attr(docsrs, doc(cfg(feature = "chrono")))]
impl ToSql for NaiveDate {
    fn to_value(&self) -> Value {
        let (y, m, d) = ymd(self);
        unknown(oid::DATE, temporal::date_iso(y, m, d))
    }
}

/// `'01:02:03.000004'::time`, as psycopg2 writes a `time`.
#[cfg_attr(docsrs, doc(cfg(feature = "chrono")))]
impl ToSql for NaiveTime {
    fn to_value(&self) -> Value {
        let (h, m, s, n) = hmsn(self);
        let mut text = String::with_capacity(18);
        temporal::push_hms(h, m, s, n, &mut text);
        unknown(oid::TIME, text)
    }
}

/// `'2024-02-29T13:45:01.123456'::timestamp`, as psycopg2 writes a naive `datetime`.
#[cfg_attr(docsrs, doc(cfg(feature = "chrono")))]
impl ToSql for NaiveDateTime {
    fn to_value(&self) -> Value {
        unknown(
            oid::TIMESTAMP,
            temporal::datetime_iso(ymd(&self.date()), hmsn(&self.time()), None),
        )
    }
}

/// `'2024-02-29T13:45:01+00:00'::timestamptz`, as psycopg2 writes an aware `datetime`: the
/// local time and the offset of the value's own time zone.
#[cfg_attr(docsrs, doc(cfg(feature = "chrono")))]
impl<Tz: TimeZone> ToSql for DateTime<Tz> {
    fn to_value(&self) -> Value {
        let local = self.naive_local();
        let offset = self.fixed_offset().offset().local_minus_utc();
        unknown(
            oid::TIMESTAMPTZ,
            temporal::datetime_iso(ymd(&local.date()), hmsn(&local.time()), Some(offset)),
        )
    }
}

/// `'1 days 5.000007 seconds'::interval`, as psycopg2 writes the `timedelta` of the same
/// length (whole days, then the microseconds left; nanoseconds are dropped). A negative one differs from psycopg2 by one sign:
/// `'-1 days +86399.000000 seconds'::interval` for -1 s, where psycopg2 leaves out the `+`
/// and the server reads its text as -(1 day 23:59:59) under IntervalStyle `sql_standard`.
#[cfg_attr(docsrs, doc(cfg(feature = "chrono")))]
impl ToSql for TimeDelta {
    fn to_value(&self) -> Value {
        let us = i128::from(self.num_seconds()) * 1_000_000
            + i128::from(self.subsec_nanos().div_euclid(1000));
        match timedelta_text(us) {
            Some(text) => unknown(oid::INTERVAL, text),
            // Past i32 days no interval holds it: the server's own error says so.
            None => unknown(oid::INTERVAL, format!("{} microseconds", us)),
        }
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "chrono")))]
impl SqlType for NaiveDate {
    const TYPE_OID: u32 = oid::DATE;
}

#[cfg_attr(docsrs, doc(cfg(feature = "chrono")))]
impl SqlType for NaiveTime {
    const TYPE_OID: u32 = oid::TIME;
}

#[cfg_attr(docsrs, doc(cfg(feature = "chrono")))]
impl SqlType for NaiveDateTime {
    const TYPE_OID: u32 = oid::TIMESTAMP;
}

#[cfg_attr(docsrs, doc(cfg(feature = "chrono")))]
impl<Tz: TimeZone> SqlType for DateTime<Tz> {
    const TYPE_OID: u32 = oid::TIMESTAMPTZ;
}

macro_rules! into_value {
    ($($t:ty),*) => {$(
        #[cfg_attr(docsrs, doc(cfg(feature = "chrono")))]
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                v.to_value()
            }
        }
    )*};
}

into_value!(NaiveDate, NaiveTime, NaiveDateTime, TimeDelta);

#[cfg_attr(docsrs, doc(cfg(feature = "chrono")))]
impl<Tz: TimeZone> From<DateTime<Tz>> for Value {
    fn from(v: DateTime<Tz>) -> Value {
        v.to_value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::QuoteContext;

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
        let d = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
        assert_eq!(lit(d), "'2024-02-29'::date");
        let at = d.and_hms_micro_opt(13, 45, 1, 123_456).unwrap();
        assert_eq!(lit(at), "'2024-02-29T13:45:01.123456'::timestamp");
        assert_eq!(
            lit(d.and_hms_opt(13, 45, 1).unwrap().and_utc()),
            "'2024-02-29T13:45:01+00:00'::timestamptz"
        );
        let tz = FixedOffset::west_opt(5 * 3600).unwrap();
        assert_eq!(
            lit(tz.from_local_datetime(&at).unwrap()),
            "'2024-02-29T13:45:01.123456-05:00'::timestamptz"
        );
        assert_eq!(
            lit(NaiveTime::from_hms_opt(1, 2, 3).unwrap()),
            "'01:02:03'::time"
        );
        assert_eq!(
            lit(TimeDelta::microseconds(86_400_000_000 + 5_000_007)),
            "'1 days 5.000007 seconds'::interval"
        );
        assert_eq!(
            lit(TimeDelta::microseconds(-1)),
            "'-1 days +86399.999999 seconds'::interval"
        );
        assert_eq!(
            lit(vec![d, d]),
            "ARRAY['2024-02-29'::date,'2024-02-29'::date]"
        );
    }

    #[test]
    fn both_formats_read_the_same_values() {
        let d = NaiveDate::from_ymd_opt(1, 1, 1).unwrap();
        assert_eq!(
            NaiveDate::from_sql(&col(oid::DATE, 0), Some(b"0001-01-01")).unwrap(),
            d
        );
        let days = (d - NaiveDate::from_ymd_opt(2000, 1, 1).unwrap()).num_days() as i32;
        assert_eq!(
            NaiveDate::from_sql(&col(oid::DATE, 1), Some(&days.to_be_bytes())).unwrap(),
            d
        );
        let at = NaiveDate::from_ymd_opt(9999, 12, 31)
            .unwrap()
            .and_hms_micro_opt(23, 59, 59, 999_999)
            .unwrap();
        let text =
            NaiveDateTime::from_sql(&col(oid::TIMESTAMP, 0), Some(b"9999-12-31 23:59:59.999999"))
                .unwrap();
        assert_eq!(text, at);
        let us = (at
            - NaiveDate::from_ymd_opt(2000, 1, 1)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap())
        .num_microseconds()
        .unwrap();
        assert_eq!(
            NaiveDateTime::from_sql(&col(oid::TIMESTAMP, 1), Some(&us.to_be_bytes())).unwrap(),
            at
        );
        let ny = DateTime::<FixedOffset>::from_sql(
            &col(oid::TIMESTAMPTZ, 0),
            Some(b"2024-02-29 08:45:01-05"),
        )
        .unwrap();
        assert_eq!(ny.offset().local_minus_utc(), -5 * 3600);
        let utc =
            DateTime::<Utc>::from_sql(&col(oid::TIMESTAMPTZ, 0), Some(b"2024-02-29 08:45:01-05"))
                .unwrap();
        assert_eq!(utc, ny);
        assert_eq!(utc.to_rfc3339(), "2024-02-29T13:45:01+00:00");
    }

    #[test]
    fn values_chrono_cannot_hold_are_errors() {
        let e = NaiveDate::from_sql(&col(oid::DATE, 0), Some(b"infinity")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "conversion error: column \"c\": infinity does not fit chrono::NaiveDate; read it \
             as momoko::Infinite<chrono::NaiveDate>"
        );
        assert!(NaiveTime::from_sql(&col(oid::TIME, 0), Some(b"24:00:00")).is_err());
        assert!(NaiveDate::from_sql(&col(oid::DATE, 0), Some(b"5874897-12-31")).is_err());
        assert!(NaiveDate::from_sql(&col(oid::DATE, 0), Some(b"02/29/2024")).is_err());
        assert!(NaiveDate::from_sql(&col(oid::TIMESTAMP, 0), Some(b"2024-02-29")).is_err());
        assert!(DateTime::<Utc>::from_sql(&col(oid::TIMESTAMP, 0), Some(b"x")).is_err());
        assert!(NaiveDate::from_sql(&col(oid::DATE, 1), Some(b"abc")).is_err());
        let e = TimeDelta::from_sql(&col(oid::INTERVAL, 0), Some(b"1 mon")).unwrap_err();
        assert!(e.to_string().contains("has months"), "{e}");
    }
}
