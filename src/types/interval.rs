//! [`Interval`]: PostgreSQL's `interval` as its three fields, read from the text form
//! (IntervalStyle `postgres`) and the binary form, written as psycopg2 writes a `timedelta`.
//!
//! An interval is months, days and microseconds kept apart (a month is not 30 days and a day
//! is not 24 hours across a DST change), so no Rust duration type holds one without loss;
//! this module owns that type. It reads bytes from the server and so must never panic or
//! overflow: a value it cannot hold is a Conversion error.

use std::fmt::{self, Write as _};

use bytes::{BufMut, BytesMut};

use crate::error::Error;
use crate::row::Column;

use super::decode::{non_null, wrong_type, FromSql};
use super::{oid, IsNull, QuoteContext, ToSql, Value};

/// A PostgreSQL `interval`, nothing lost: months, days and microseconds, each with its own
/// sign, as the server keeps them.
///
/// Read it from either result format; as a `%s` parameter it is written as psycopg2 writes
/// the `timedelta` of the same days and microseconds (`'1 days 5.000007 seconds'::interval`),
/// with the months in front when there are any; after a negative first field the others
/// carry their sign (`'-1 days +1.000000 seconds'::interval`), so that the text reads as the
/// same interval under every IntervalStyle. `Display` gives the server's own text
/// (IntervalStyle `postgres`).
///
/// ```
/// use momoko::{Interval, QuoteContext, ToSql};
/// let i = Interval { months: 14, days: -3, microseconds: 3_723_000_004 };
/// assert_eq!(i.to_string(), "1 year 2 mons -3 days +01:02:03.000004");
/// let mut sql = String::new();
/// i.write_literal(&QuoteContext::default(), &mut sql).unwrap();
/// assert_eq!(sql, "'14 months -3 days 3723.000004 seconds'::interval");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Interval {
    /// Months (and years, twelve months each).
    pub months: i32,
    /// Days.
    pub days: i32,
    /// Microseconds (hours, minutes, seconds and fractions).
    pub microseconds: i64,
}

impl Interval {
    /// An interval of the three fields.
    pub const fn new(months: i32, days: i32, microseconds: i64) -> Interval {
        Interval {
            months,
            days,
            microseconds,
        }
    }

    /// The text psycopg2 writes for a `timedelta` (`1 days 5.000007 seconds`), months first
    /// when there are any, with the signs of [`write_fields`]: valid input for the server
    /// under every IntervalStyle.
    pub(crate) fn input_text(&self) -> String {
        let mut out = String::with_capacity(40);
        let mut fields = Vec::with_capacity(3);
        if self.months != 0 {
            fields.push(Field::whole(i64::from(self.months), "months"));
        }
        fields.push(Field::whole(i64::from(self.days), "days"));
        fields.push(Field::seconds(i128::from(self.microseconds)));
        write_fields(&fields, &mut out);
        out
    }

    /// Parses the server's text form under IntervalStyle `postgres`
    /// (`1 year 2 mons -3 days +04:05:06.789`), `None` for anything else.
    pub(crate) fn parse(s: &str) -> Option<Interval> {
        let mut months: i32 = 0;
        let mut days: i32 = 0;
        let mut us: i64 = 0;
        let mut words = s.split(' ').peekable();
        let mut seen_time = false;
        if s.is_empty() {
            return None;
        }
        while let Some(w) = words.next() {
            if seen_time {
                return None;
            }
            if w.contains(':') {
                us = parse_clock(w)?;
                seen_time = true;
                continue;
            }
            let n: i64 = w.parse().ok()?;
            let n = i32::try_from(n).ok()?;
            match words.next()? {
                "year" | "years" => months = months.checked_add(n.checked_mul(12)?)?,
                "mon" | "mons" => months = months.checked_add(n)?,
                "day" | "days" => days = days.checked_add(n)?,
                _ => return None,
            }
        }
        Some(Interval {
            months,
            days,
            microseconds: us,
        })
    }

    fn from_binary(raw: &[u8]) -> Option<Interval> {
        let raw = <&[u8; 16]>::try_from(raw).ok()?;
        let (us, rest) = raw.split_at(8);
        let (d, m) = rest.split_at(4);
        Some(Interval {
            microseconds: i64::from_be_bytes(us.try_into().ok()?),
            days: i32::from_be_bytes(d.try_into().ok()?),
            months: i32::from_be_bytes(m.try_into().ok()?),
        })
    }
}

/// `[+-]H+:MM:SS[.ffffff]`: microseconds, the sign applying to the whole clock.
fn parse_clock(w: &str) -> Option<i64> {
    let (neg, w) = match w.as_bytes().first()? {
        b'-' => (true, &w[1..]),
        b'+' => (false, &w[1..]),
        _ => (false, w),
    };
    let mut parts = w.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || h.is_empty() || !h.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    fn two(p: &str) -> Option<&str> {
        (p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit())).then_some(p)
    }
    let h: i64 = h.parse().ok()?;
    let m: i64 = two(m)?.parse().ok()?;
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    let sec: i64 = two(sec)?.parse().ok()?;
    let mut f: i64 = 0;
    if !frac.is_empty() {
        if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        f = frac.parse::<i64>().ok()? * 10i64.pow(6 - frac.len() as u32);
    }
    if m > 59 || sec > 59 {
        return None;
    }
    // In i128, so that i64::MIN (whose magnitude no i64 holds) reads back.
    let total = i128::from(h) * 3_600_000_000 + i128::from(m * 60_000_000 + sec * 1_000_000 + f);
    i64::try_from(if neg { -total } else { total }).ok()
}

/// The server's output under IntervalStyle `postgres` (PostgreSQL's EncodeInterval).
impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        let mut is_zero = true;
        let mut is_before = false;
        let mut part = |out: &mut String, v: i64, unit: &str| {
            if v == 0 {
                return;
            }
            let _ = write!(
                out,
                "{}{}{v} {unit}{}",
                if is_zero { "" } else { " " },
                if is_before && v > 0 { "+" } else { "" },
                if v != 1 { "s" } else { "" }
            );
            is_before = v < 0;
            is_zero = false;
        };
        part(&mut out, i64::from(self.months / 12), "year");
        part(&mut out, i64::from(self.months % 12), "mon");
        part(&mut out, i64::from(self.days), "day");
        let t = self.microseconds;
        if is_zero || t != 0 {
            let a = t.unsigned_abs();
            let sign = if t < 0 {
                "-"
            } else if is_before {
                "+"
            } else {
                ""
            };
            let _ = write!(
                out,
                "{}{sign}{:02}:{:02}:{:02}",
                if is_zero { "" } else { " " },
                a / 3_600_000_000,
                (a / 60_000_000) % 60,
                (a / 1_000_000) % 60
            );
            let frac = a % 1_000_000;
            if frac != 0 {
                let digits = format!("{frac:06}");
                let _ = write!(out, ".{}", digits.trim_end_matches('0'));
            }
        }
        f.write_str(&out)
    }
}

/// The text form of a binary interval, as the server prints it.
pub(crate) fn binary_to_string(raw: &[u8]) -> Result<String, Error> {
    Interval::from_binary(raw)
        .map(|i| i.to_string())
        .ok_or_else(|| Error::conversion("invalid binary interval"))
}

impl FromSql for Interval {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<Interval, Error> {
        if column.type_oid() != oid::INTERVAL {
            return Err(wrong_type(column, "momoko::Interval"));
        }
        let raw = non_null(column, raw, "momoko::Interval")?;
        if column.format() == 1 {
            return Interval::from_binary(raw).ok_or_else(|| {
                Error::conversion(format!(
                    "column \"{}\": invalid binary interval",
                    column.name()
                ))
            });
        }
        let s = std::str::from_utf8(raw).unwrap_or("");
        Interval::parse(s).ok_or_else(|| {
            let shown: String = s.chars().take(60).collect();
            Error::conversion(format!(
                "column \"{}\": {shown:?} is not an interval in the postgres IntervalStyle; \
                 momoko sends IntervalStyle=postgres at connect, so a session that SETs \
                 another cannot be read in the text format",
                column.name()
            ))
        })
    }
}

impl ToSql for Interval {
    fn to_value(&self) -> Value {
        Value::Unknown {
            type_oid: oid::INTERVAL,
            text: self.input_text(),
        }
    }
    fn write_literal(&self, _ctx: &QuoteContext, out: &mut String) -> Result<(), Error> {
        out.push('\'');
        out.push_str(&self.input_text());
        out.push_str("'::interval");
        Ok(())
    }
    fn encode_binary(&self, type_oid: u32, out: &mut BytesMut) -> Result<IsNull, Error> {
        if type_oid != oid::INTERVAL {
            return self.to_value().encode_binary(type_oid, out);
        }
        out.put_i64(self.microseconds);
        out.put_i32(self.days);
        out.put_i32(self.months);
        Ok(IsNull::No)
    }
}

impl From<Interval> for Value {
    fn from(i: Interval) -> Value {
        i.to_value()
    }
}

/// One field of an interval's input text: its sign, its magnitude as written, its unit.
struct Field {
    negative: bool,
    magnitude: String,
    unit: &'static str,
}

impl Field {
    fn whole(v: i64, unit: &'static str) -> Field {
        Field {
            negative: v < 0,
            magnitude: v.unsigned_abs().to_string(),
            unit,
        }
    }

    fn seconds(us: i128) -> Field {
        let a = us.unsigned_abs();
        Field {
            negative: us < 0,
            magnitude: format!("{}.{:06}", a / 1_000_000, a % 1_000_000),
            unit: "seconds",
        }
    }
}

/// Writes `fields` as psycopg2 does (`-1 days 86399.000000 seconds`), except that after a
/// negative first field every other field carries its sign, `+` included
/// (`-1 days +86399.000000 seconds`). Under IntervalStyle `sql_standard` the server applies a
/// leading minus to every field when no other field has a sign of its own, so psycopg2's text
/// reads there as -(1 day 23:59:59); with the signs written it reads as -1 day +23:59:59 under
/// every style. A text whose first field is not negative is psycopg2's own.
fn write_fields(fields: &[Field], out: &mut String) {
    let lead_negative = fields.first().is_some_and(|f| f.negative);
    for (i, f) in fields.iter().enumerate() {
        let sign = match (f.negative, i > 0 && lead_negative) {
            (true, _) => "-",
            (false, true) => "+",
            (false, false) => "",
        };
        let gap = if i > 0 { " " } else { "" };
        let _ = write!(out, "{gap}{sign}{} {}", f.magnitude, f.unit);
    }
}

#[cfg_attr(not(any(feature = "chrono", feature = "time")), allow(dead_code))]
/// Python's `timedelta` normalisation of a count of microseconds: whole days (rounded
/// down), then the microseconds left in the day, as psycopg2's adapter writes it, with the
/// signs of [`write_fields`].
pub(crate) fn timedelta_text(total_us: i128) -> Option<String> {
    let day = i128::from(super::temporal::DAY_US);
    let days = i32::try_from(total_us.div_euclid(day)).ok()?;
    let rest = total_us.rem_euclid(day);
    let mut out = String::with_capacity(40);
    write_fields(
        &[Field::whole(i64::from(days), "days"), Field::seconds(rest)],
        &mut out,
    );
    Some(out)
}

/// A Rust duration (`chrono::TimeDelta`, `time::Duration`) from an interval without months:
/// days count 24 hours. An interval with months is a Conversion error, a month having no
/// fixed length.
#[cfg_attr(not(any(feature = "chrono", feature = "time")), allow(dead_code))]
pub(crate) fn interval_micros(
    column: &Column,
    raw: Option<&[u8]>,
    rust: &str,
) -> Result<i128, Error> {
    let i = Interval::from_sql(column, raw).map_err(|e| {
        if column.type_oid() != oid::INTERVAL {
            wrong_type(column, rust)
        } else {
            e
        }
    })?;
    if i.months != 0 {
        return Err(Error::conversion(format!(
            "column \"{}\": the interval {i} has months, which have no fixed length; read it \
             as momoko::Interval",
            column.name()
        )));
    }
    Ok(i128::from(i.days) * i128::from(super::temporal::DAY_US) + i128::from(i.microseconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_servers_postgres_style() {
        let cases = [
            (Interval::new(0, 0, 0), "00:00:00"),
            (
                Interval::new(14, 3, 14_706_789_000),
                "1 year 2 mons 3 days 04:05:06.789",
            ),
            (
                Interval::new(-14, -3, -14_706_000_000),
                "-1 years -2 mons -3 days -04:05:06",
            ),
            (Interval::new(0, -1, 7_380_000_000), "-1 days +02:03:00"),
            (Interval::new(1, 0, 0), "1 mon"),
            (Interval::new(0, 1, 0), "1 day"),
            (Interval::new(0, 0, -1), "-00:00:00.000001"),
            (Interval::new(12, 0, 0), "1 year"),
            (Interval::new(0, 0, i64::MAX), "2562047788:00:54.775807"),
            (Interval::new(0, 0, i64::MIN), "-2562047788:00:54.775808"),
        ];
        for (i, text) in cases {
            assert_eq!(i.to_string(), text);
            assert_eq!(Interval::parse(text), Some(i), "{text}");
        }
    }

    #[test]
    fn other_styles_and_garbage_do_not_parse() {
        for bad in [
            "",
            "P1Y2M3DT4H5M6S",
            "@ 1 year 2 mons",
            "1-2 3 4:05:06",
            "1 week",
            "1 year 2",
            "01:02:03 1 day",
            "01:2:03",
            "01:02:03.1234567",
            "99999999999 days",
            "3000000000:00:00:00",
            "99999999999999:00:00",
        ] {
            assert_eq!(Interval::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn parameters_are_written_as_psycopg2_writes_a_timedelta() {
        assert_eq!(
            Interval::new(0, 1, 5_000_007).input_text(),
            "1 days 5.000007 seconds"
        );
        assert_eq!(
            Interval::new(2, -1, -1).input_text(),
            "2 months -1 days -0.000001 seconds"
        );
        assert_eq!(
            Interval::new(0, 0, -1_000_000).input_text(),
            "0 days -1.000000 seconds"
        );
    }

    #[test]
    fn after_a_negative_first_field_every_field_carries_its_sign() {
        assert_eq!(
            timedelta_text(-1).as_deref(),
            Some("-1 days +86399.999999 seconds")
        );
        assert_eq!(
            timedelta_text(-86_400_000_000).as_deref(),
            Some("-1 days +0.000000 seconds")
        );
        assert_eq!(
            Interval::new(0, -1, 1_000_000).input_text(),
            "-1 days +1.000000 seconds"
        );
        assert_eq!(
            Interval::new(-1, 0, -1).input_text(),
            "-1 months +0 days -0.000001 seconds"
        );
        assert_eq!(
            Interval::new(-14, 3, 0).input_text(),
            "-14 months +3 days +0.000000 seconds"
        );
        assert_eq!(
            timedelta_text(86_400_000_000 + 5_000_007).as_deref(),
            Some("1 days 5.000007 seconds")
        );
    }

    #[test]
    fn binary_intervals_are_sixteen_bytes() {
        let mut b = BytesMut::new();
        let i = Interval::new(-7, 8, -9);
        i.encode_binary(oid::INTERVAL, &mut b).unwrap();
        assert_eq!(Interval::from_binary(&b), Some(i));
        assert_eq!(Interval::from_binary(&b[..15]), None);
        assert_eq!(
            binary_to_string(&b).unwrap(),
            "-7 mons +8 days -00:00:00.000009"
        );
    }
}
