//! Dates, times and timestamps without a calendar crate: the text (DateStyle ISO) and binary
//! forms of `date`, `time`, `timestamp` and `timestamptz` read into plain numbers (days and
//! microseconds since 2000-01-01, PostgreSQL's own epoch), and those numbers written as
//! psycopg2 writes Python's `isoformat()`.
//!
//! The chrono and time adapters sit on top of this, so both read exactly the same inputs and
//! both report the same errors. Everything here reads bytes the server sent: it must never
//! panic or overflow on any input, and a value it cannot read is a Conversion error that says
//! why (a non-ISO DateStyle, an infinity into a type without one).

// Only the calendar features read through this module; without them it is compiled (and
// unit-tested) all the same, so that it cannot rot.
#![cfg_attr(not(any(feature = "chrono", feature = "time")), allow(dead_code))]

use std::fmt::Write as _;

use crate::error::Error;
use crate::row::Column;

use super::oid;

/// Microseconds in a day.
pub(crate) const DAY_US: i64 = 86_400_000_000;

/// A value that may be one of PostgreSQL's infinities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inf<T> {
    Neg,
    Finite(T),
    Pos,
}

impl<T> Inf<T> {
    /// The finite value, or the Conversion error for an infinity read into `rust`.
    pub(crate) fn finite(self, column: &Column, rust: &str) -> Result<T, Error> {
        match self {
            Inf::Finite(v) => Ok(v),
            Inf::Neg | Inf::Pos => Err(Error::conversion(format!(
                "column \"{}\": {} does not fit {rust}; read it as momoko::Infinite<{rust}>",
                column.name(),
                if matches!(self, Inf::Pos) {
                    "infinity"
                } else {
                    "-infinity"
                }
            ))),
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
/// `year` is astronomical (0 is 1 BC).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (astronomical year, month, day) of a count of days since 1970-01-01.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
pub(crate) const PG_EPOCH_DAYS: i64 = 10_957;

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// A run of ASCII digits at the start of `s` (at most `max` of them) as a number, and the
/// rest of `s`.
fn digits(s: &str, min: usize, max: usize) -> Option<(i64, &str)> {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    if n < min || n > max {
        return None;
    }
    let v = s[..n].parse().ok()?;
    Some((v, &s[n..]))
}

/// `YYYY-MM-DD` (four or more year digits), the date part of every ISO value; the days
/// since PostgreSQL's epoch and the rest of the input. The year is as written (` BC` is
/// applied by the caller, who knows where it sits).
fn date_part(s: &str) -> Option<(i64, u32, u32, &str)> {
    // Seven year digits cover every date PostgreSQL accepts (5874897 AD).
    let (y, s) = digits(s, 4, 7)?;
    let s = s.strip_prefix('-')?;
    let (m, s) = digits(s, 2, 2)?;
    let s = s.strip_prefix('-')?;
    let (d, s) = digits(s, 2, 2)?;
    let (m, d) = (m as u32, d as u32);
    if !(1..=12).contains(&m) || d == 0 {
        return None;
    }
    Some((y, m, d, s))
}

fn to_days(written: i64, bc: bool, month: u32, day: u32) -> Option<i64> {
    let year = if bc { 1 - written } else { written };
    if written == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day) - PG_EPOCH_DAYS)
}

/// `HH:MM:SS[.ffffff]`: microseconds since midnight (24:00:00 allowed, as PostgreSQL's
/// `time` allows it) and the rest.
fn time_part(s: &str) -> Option<(i64, &str)> {
    let (h, s) = digits(s, 2, 2)?;
    let s = s.strip_prefix(':')?;
    let (m, s) = digits(s, 2, 2)?;
    let s = s.strip_prefix(':')?;
    let (sec, mut s) = digits(s, 2, 2)?;
    let mut us = 0;
    if let Some(rest) = s.strip_prefix('.') {
        let n = rest.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 6 {
            return None;
        }
        let f: i64 = rest[..n].parse().ok()?;
        us = f * 10i64.pow(6 - n as u32);
        s = &rest[n..];
    }
    if m > 59 || sec > 59 {
        return None;
    }
    let total = ((h * 60 + m) * 60 + sec) * 1_000_000 + us;
    (total <= DAY_US).then_some((total, s))
}

/// A UTC offset as PostgreSQL prints it: `+HH`, `+HH:MM`, `+HH:MM:SS`; seconds east of UTC.
fn offset_part(s: &str) -> Option<(i32, &str)> {
    let (neg, s) = match s.as_bytes().first()? {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => return None,
    };
    let (h, mut s) = digits(s, 2, 2)?;
    let mut secs = h * 3600;
    for mult in [60, 1] {
        match s.strip_prefix(':') {
            Some(rest) => {
                let (v, rest) = digits(rest, 2, 2)?;
                secs += v * mult;
                s = rest;
            }
            None => break,
        }
    }
    let secs = secs as i32;
    Some((if neg { -secs } else { secs }, s))
}

fn special(s: &str) -> Option<Inf<()>> {
    match s {
        "infinity" => Some(Inf::Pos),
        "-infinity" => Some(Inf::Neg),
        _ => None,
    }
}

/// A `date` in its ISO text form: days since 2000-01-01.
pub(crate) fn parse_date(s: &str) -> Option<Inf<i32>> {
    if let Some(inf) = special(s) {
        return Some(inf.map_unit());
    }
    let (y, m, d, rest) = date_part(s)?;
    let bc = match rest {
        "" => false,
        " BC" => true,
        _ => return None,
    };
    i32::try_from(to_days(y, bc, m, d)?).ok().map(Inf::Finite)
}

/// A `time` in its text form: microseconds since midnight.
pub(crate) fn parse_time(s: &str) -> Option<i64> {
    match time_part(s)? {
        (us, "") => Some(us),
        _ => None,
    }
}

/// A `timestamp` (`with_offset` false) or `timestamptz` in its ISO text form: microseconds
/// since 2000-01-01 00:00:00 (UTC for timestamptz) and the offset the text was written in.
pub(crate) fn parse_timestamp(s: &str, with_offset: bool) -> Option<Inf<(i64, i32)>> {
    if let Some(inf) = special(s) {
        return Some(inf.map_unit());
    }
    let (y, m, d, rest) = date_part(s)?;
    let rest = rest.strip_prefix([' ', 'T'])?;
    let (us, mut rest) = time_part(rest)?;
    let mut offset = 0;
    if with_offset {
        (offset, rest) = offset_part(rest)?;
    }
    let bc = match rest {
        "" => false,
        " BC" => true,
        _ => return None,
    };
    let days = to_days(y, bc, m, d)?;
    let local = days.checked_mul(DAY_US)?.checked_add(us)?;
    let utc = local.checked_sub(i64::from(offset) * 1_000_000)?;
    // The infinities are i64::MAX and MIN in binary: no finite value may be either.
    (utc != i64::MAX && utc != i64::MIN).then_some(Inf::Finite((utc, offset)))
}

impl Inf<()> {
    fn map_unit<T>(self) -> Inf<T> {
        match self {
            Inf::Neg => Inf::Neg,
            Inf::Pos => Inf::Pos,
            Inf::Finite(()) => unreachable!("special() gives only infinities"),
        }
    }
}

fn not_iso(column: &Column, s: &str, what: &str) -> Error {
    let shown: String = s.chars().take(40).collect();
    Error::conversion(format!(
        "column \"{}\": {shown:?} is not a {what} in the ISO form; momoko sends DateStyle=ISO at \
         connect, so a session that SETs another DateStyle cannot be read in the text format",
        column.name()
    ))
}

fn bad_binary(column: &Column, what: &str) -> Error {
    Error::conversion(format!(
        "column \"{}\": invalid binary {what}",
        column.name()
    ))
}

pub(crate) fn be_i64(raw: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(<[u8; 8]>::try_from(raw).ok()?))
}

pub(crate) fn be_i32(raw: &[u8]) -> Option<i32> {
    Some(i32::from_be_bytes(<[u8; 4]>::try_from(raw).ok()?))
}

fn text<'a>(column: &Column, raw: &'a [u8]) -> Result<&'a str, Error> {
    std::str::from_utf8(raw)
        .map_err(|_| Error::conversion(format!("column \"{}\" is not valid UTF-8", column.name())))
}

/// The field of a `date` column: days since 2000-01-01, or an infinity.
pub(crate) fn read_date(column: &Column, raw: &[u8]) -> Result<Inf<i32>, Error> {
    if column.format() == 1 {
        return match be_i32(raw).ok_or_else(|| bad_binary(column, "date"))? {
            i32::MAX => Ok(Inf::Pos),
            i32::MIN => Ok(Inf::Neg),
            d => Ok(Inf::Finite(d)),
        };
    }
    let s = text(column, raw)?;
    parse_date(s).ok_or_else(|| not_iso(column, s, "date"))
}

/// The field of a `time` column: microseconds since midnight (up to 24:00:00).
pub(crate) fn read_time(column: &Column, raw: &[u8]) -> Result<i64, Error> {
    if column.format() == 1 {
        return be_i64(raw)
            .filter(|us| (0..=DAY_US).contains(us))
            .ok_or_else(|| bad_binary(column, "time"));
    }
    let s = text(column, raw)?;
    parse_time(s).ok_or_else(|| not_iso(column, s, "time"))
}

/// The field of a `timestamp` or `timestamptz` column: microseconds since 2000-01-01 (UTC
/// for timestamptz), and the offset of the text form (0 in binary, which is UTC).
pub(crate) fn read_timestamp(column: &Column, raw: &[u8]) -> Result<Inf<(i64, i32)>, Error> {
    let tz = column.type_oid() == oid::TIMESTAMPTZ;
    if column.format() == 1 {
        return match be_i64(raw).ok_or_else(|| bad_binary(column, "timestamp"))? {
            i64::MAX => Ok(Inf::Pos),
            i64::MIN => Ok(Inf::Neg),
            us => Ok(Inf::Finite((us, 0))),
        };
    }
    let s = text(column, raw)?;
    parse_timestamp(s, tz).ok_or_else(|| not_iso(column, s, "timestamp"))
}

/// Writes an astronomical year, month and day as Python's `date.isoformat()` does
/// (`0001-01-01`), and the years Python has not as PostgreSQL reads them: more digits past
/// 9999, and ` BC` (returned, for the caller to place) before year 1.
fn push_ymd(year: i64, month: u32, day: u32, out: &mut String) -> bool {
    let bc = year <= 0;
    let y = if bc { 1 - year } else { year };
    let _ = write!(out, "{y:04}-{month:02}-{day:02}");
    bc
}

/// Python's `time.isoformat()`: `HH:MM:SS`, then `.ffffff` when there are microseconds.
/// Nanoseconds (which Python has not) are written in full, and the server rounds them; a
/// leap second (`sec` 60) is written as such, which PostgreSQL reads as the next minute.
pub(crate) fn push_hms(h: u32, m: u32, s: u32, nanos: u32, out: &mut String) {
    let _ = write!(out, "{h:02}:{m:02}:{s:02}");
    if nanos % 1000 != 0 {
        let _ = write!(out, ".{nanos:09}");
    } else if nanos != 0 {
        let _ = write!(out, ".{:06}", nanos / 1000);
    }
}

/// `'YYYY-MM-DD'` as psycopg2's date adapter writes it (without the quotes and cast).
pub(crate) fn date_iso(year: i64, month: u32, day: u32) -> String {
    let mut out = String::with_capacity(13);
    if push_ymd(year, month, day, &mut out) {
        out.push_str(" BC");
    }
    out
}

/// Python's `datetime.isoformat()`: the date, `T`, the time, then the offset
/// (`+HH:MM`, `:SS` when it has seconds) for an aware one.
#[allow(clippy::too_many_arguments)]
pub(crate) fn datetime_iso(
    (year, month, day): (i64, u32, u32),
    (h, m, s, nanos): (u32, u32, u32, u32),
    offset: Option<i32>,
) -> String {
    let mut out = String::with_capacity(32);
    let bc = push_ymd(year, month, day, &mut out);
    out.push('T');
    push_hms(h, m, s, nanos, &mut out);
    if let Some(off) = offset {
        push_offset(off, &mut out);
    }
    if bc {
        out.push_str(" BC");
    }
    out
}

/// Python's `utcoffset` in `isoformat()`: `+HH:MM`, with `:SS` only when there are seconds.
pub(crate) fn push_offset(secs: i32, out: &mut String) {
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.unsigned_abs();
    let _ = write!(out, "{sign}{:02}:{:02}", a / 3600, (a / 60) % 60);
    if a % 60 != 0 {
        let _ = write!(out, ":{:02}", a % 60);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trips_over_the_whole_range() {
        for days in (-2_500_000..3_000_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(2000, 1, 1), PG_EPOCH_DAYS);
        assert_eq!(civil_from_days(PG_EPOCH_DAYS), (2000, 1, 1));
    }

    #[test]
    fn iso_dates_parse_with_bc_and_long_years() {
        assert_eq!(parse_date("2000-01-01"), Some(Inf::Finite(0)));
        assert_eq!(parse_date("2000-01-02"), Some(Inf::Finite(1)));
        assert_eq!(parse_date("1999-12-31"), Some(Inf::Finite(-1)));
        assert_eq!(parse_date("infinity"), Some(Inf::Pos));
        assert_eq!(parse_date("-infinity"), Some(Inf::Neg));
        let d = |s| match parse_date(s) {
            Some(Inf::Finite(d)) => civil_from_days(i64::from(d) + PG_EPOCH_DAYS),
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(d("0001-01-01"), (1, 1, 1));
        assert_eq!(d("0001-12-31 BC"), (0, 12, 31));
        assert_eq!(d("4713-01-01 BC"), (-4712, 1, 1));
        assert_eq!(d("5874897-12-31"), (5_874_897, 12, 31));
        for bad in [
            "",
            "2024-02-30",
            "2023-02-29",
            "2024-13-01",
            "0000-01-01",
            "24-01-01",
            "2024-01-01 AD",
            "02/29/2024",
            "29.02.2024",
            "Thu Feb 29 2024",
            "99999999-01-01",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn iso_timestamps_parse_with_offsets_and_fractions() {
        let us = |s, tz| match parse_timestamp(s, tz) {
            Some(Inf::Finite(v)) => v,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(us("2000-01-01 00:00:00", false), (0, 0));
        assert_eq!(us("2000-01-01 00:00:00.5", false), (500_000, 0));
        assert_eq!(us("2000-01-01T00:00:00.000001", false), (1, 0));
        assert_eq!(us("2000-01-01 01:00:00+01", true), (0, 3600));
        assert_eq!(us("1999-12-31 19:00:00-05", true), (0, -18000));
        assert_eq!(
            us("2000-01-01 05:30:15+05:30:15", true),
            (0, 5 * 3600 + 30 * 60 + 15)
        );
        assert_eq!(
            us("0001-01-01 00:00:00 BC", false).0,
            (days_from_civil(0, 1, 1) - PG_EPOCH_DAYS) * DAY_US
        );
        assert!(matches!(
            parse_timestamp("0001-12-31 19:03:58-04:56:02 BC", true),
            Some(Inf::Finite(_))
        ));
        for bad in [
            "2000-01-01",
            "2000-01-01 00:00",
            "2000-01-01 00:00:60",
            "2000-01-01 00:00:00.1234567",
            "2000-01-01 00:00:00+",
            "Sat Jan 01 00:00:00 2000 PST",
            "01/01/2000 00:00:00",
        ] {
            assert_eq!(parse_timestamp(bad, true), None, "{bad}");
        }
        // No offset where one is needed, and one where none may be.
        assert_eq!(parse_timestamp("2000-01-01 00:00:00", true), None);
        assert_eq!(parse_timestamp("2000-01-01 00:00:00+00", false), None);
    }

    #[test]
    fn times_parse_up_to_midnight_inclusive() {
        assert_eq!(parse_time("00:00:00"), Some(0));
        assert_eq!(parse_time("01:02:03.000004"), Some(3_723_000_004));
        assert_eq!(parse_time("24:00:00"), Some(DAY_US));
        assert_eq!(parse_time("24:00:00.000001"), None);
        assert_eq!(parse_time("1:02:03"), None);
    }

    #[test]
    fn python_isoformat_forms() {
        assert_eq!(date_iso(2024, 2, 29), "2024-02-29");
        assert_eq!(date_iso(1, 1, 1), "0001-01-01");
        assert_eq!(date_iso(0, 12, 31), "0001-12-31 BC");
        assert_eq!(date_iso(10000, 1, 1), "10000-01-01");
        assert_eq!(
            datetime_iso((2024, 2, 29), (13, 45, 1, 123_456_000), None),
            "2024-02-29T13:45:01.123456"
        );
        assert_eq!(
            datetime_iso((2024, 2, 29), (13, 45, 1, 0), Some(0)),
            "2024-02-29T13:45:01+00:00"
        );
        assert_eq!(
            datetime_iso(
                (2024, 2, 29),
                (13, 45, 1, 1),
                Some(-(5 * 3600 + 30 * 60 + 7))
            ),
            "2024-02-29T13:45:01.000000001-05:30:07"
        );
    }
}
