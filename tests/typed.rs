//! Typed values against the real server, in both result formats: every type sent as a `%s`
//! parameter through `execute` (text results), and as `$1` through `query` (text on the
//! first call, binary once the statement is cached) and `execute_prepared` (binary), and
//! read back exactly, with edge values (0001-01-01, 9999-12-31, BC dates, microseconds,
//! negative intervals, 28-digit decimals, IPv6 with a prefix, empty and unbounded ranges,
//! NULL, arrays). Then the special values, the pinned DateStyle and IntervalStyle, a
//! timestamptz read under America/New_York, rows into structs with serde, and mogrify
//! against psycopg2 itself on cases psycopg2 generates.
//!
//! Each group needs its feature (`cargo test --all-features --test typed` runs them all);
//! momoko's own types (Interval, Inet, Cidr, Range) need none.

mod common;
#[path = "common/python.rs"]
mod python;

use std::fmt::Debug;
use std::net::IpAddr;
use std::ops::Bound;

use common::{dsn, run};
use momoko::{Cidr, Connection, ErrorKind, FromSql, Inet, Interval, Range, ToSql, Value};

async fn connect() -> Connection {
    momoko::connect(&dsn()).await.expect("connect")
}

/// Sends `v` as a parameter cast to `ty` every way momoko runs a query and reads it back as
/// `T`: it must come back as `want` every time, in the format each way gives.
async fn round_trip_as<T, W>(conn: &Connection, ty: &str, v: &T, want: &W)
where
    T: ToSql + Debug,
    W: FromSql + PartialEq + Debug,
{
    let pct = format!("SELECT %s::{ty} AS v");
    let dollar = format!("SELECT $1::{ty} AS v");
    // The first `query` of a statement reads text and a cached one binary; whether this
    // call is the first depends on the calls before it, so its format is not asserted.
    let one = |mut c: momoko::Cursor, how: &str, format: Option<i16>| {
        let row = c.fetchone().expect("a row");
        if let Some(format) = format {
            assert_eq!(
                row.columns()[0].format(),
                format,
                "{how} of {v:?} as {ty}: format"
            );
        }
        match row.try_get::<_, W>(0) {
            Ok(got) => assert_eq!(&got, want, "{how} of {v:?} as {ty}"),
            Err(e) => panic!("{how} of {v:?} as {ty}: {e}"),
        }
    };
    one(conn.execute(&pct, (v,)).await.unwrap(), "execute", Some(0));
    let values = vec![v.to_value()];
    one(
        conn.query(&dollar, values.clone()).await.unwrap(),
        "query",
        None,
    );
    one(
        conn.query(&dollar, values.clone()).await.unwrap(),
        "cached query",
        Some(1),
    );
    let st = conn.prepare(&dollar).await.unwrap();
    one(
        conn.execute_prepared(&st, values).await.unwrap(),
        "execute_prepared",
        Some(1),
    );
}

async fn round_trip<T>(conn: &Connection, ty: &str, v: T)
where
    T: ToSql + FromSql + PartialEq + Debug,
{
    round_trip_as(conn, ty, &v, &v).await;
    // NULL of the same type reads as None in every format.
    round_trip_as(conn, ty, &None::<T>, &None::<T>).await;
}

/// The first row of `sql` (no parameters) in the text format and in the binary one.
async fn both_formats(conn: &Connection, sql: &str) -> [momoko::Row; 2] {
    let text = conn.execute(sql, ()).await.unwrap().fetchone().unwrap();
    conn.query(sql, ()).await.unwrap();
    let binary = conn.query(sql, ()).await.unwrap().fetchone().unwrap();
    for c in binary.columns() {
        assert_eq!(
            c.format(),
            1,
            "{sql}: column {} is binary once cached",
            c.name()
        );
    }
    [text, binary]
}

#[test]
fn intervals_round_trip_with_months_days_and_microseconds_apart() {
    run(async {
        let conn = connect().await;
        for i in [
            Interval::new(0, 0, 0),
            Interval::new(0, 0, 1),
            Interval::new(0, 0, -1),
            Interval::new(14, 3, 14_706_789_000),
            Interval::new(-14, -3, -3_723_000_004),
            Interval::new(0, -1, 7_380_000_000),
            Interval::new(1, 0, 0),
            Interval::new(0, 1, 0),
            Interval::new(1200, 31, 86_399_999_999),
            Interval::new(0, 0, 100 * 86_400_000_000),
        ] {
            round_trip(&conn, "interval", i).await;
        }
        round_trip(
            &conn,
            "interval[]",
            vec![
                Some(Interval::new(1, 2, 3)),
                None,
                Some(Interval::new(-1, -2, -3)),
            ],
        )
        .await;
        // The server's own text for it is what Value holds, in both formats.
        for row in both_formats(
            &conn,
            "SELECT '-1 year -2 mons +3 days -04:05:06.5'::interval",
        )
        .await
        {
            assert_eq!(
                row.get::<_, Interval>(0),
                Interval::new(-14, 3, -14_706_500_000)
            );
            assert_eq!(
                row.get_value(0),
                Value::Unknown {
                    type_oid: momoko::oid::INTERVAL,
                    text: "-1 years -2 mons +3 days -04:05:06.5".into()
                }
            );
        }
    });
}

/// The months, days and microseconds the server holds for an `interval_send` result (read
/// as bytea, in either format): exact, whatever the session's IntervalStyle.
fn interval_fields(row: &momoko::Row) -> Interval {
    let b: Vec<u8> = row.get(0);
    assert_eq!(b.len(), 16, "interval_send gives 16 bytes");
    Interval::new(
        i32::from_be_bytes(b[12..16].try_into().unwrap()),
        i32::from_be_bytes(b[8..12].try_into().unwrap()),
        i64::from_be_bytes(b[..8].try_into().unwrap()),
    )
}

#[test]
fn negative_intervals_mean_the_same_under_every_interval_style() {
    run(async {
        let conn = connect().await;
        // (the parameter, the fields the server must hold); a Rust duration is written as
        // psycopg2 writes a timedelta: whole days rounded down, then the rest of the day.
        #[cfg_attr(not(any(feature = "chrono", feature = "time")), allow(unused_mut))]
        let mut cases: Vec<(Box<dyn ToSql>, Interval)> = [
            Interval::new(0, 0, -1_000_000),
            Interval::new(0, -1, 1_000_000),
            Interval::new(-1, 0, -1),
            Interval::new(-2, 1, 5_000_000),
            Interval::new(-14, -3, -3_723_000_004),
            Interval::new(0, -1, 7_380_000_000),
            Interval::new(1, -1, -1),
            Interval::new(0, 0, 1),
        ]
        .into_iter()
        .map(|i| (Box::new(i) as Box<dyn ToSql>, i))
        .collect();
        const DAY: i64 = 86_400_000_000;
        for (us, days, rest) in [
            (-1_000_000, -1, DAY - 1_000_000),
            (-DAY + 1_000_000, -1, 1_000_000),
            (-1, -1, DAY - 1),
            (-2 * DAY - 1, -3, DAY - 1),
            (-DAY, -1, 0),
        ] {
            let want = Interval::new(0, days, rest);
            #[cfg(feature = "chrono")]
            cases.push((Box::new(chrono::TimeDelta::microseconds(us)), want));
            #[cfg(feature = "time")]
            cases.push((Box::new(time::Duration::microseconds(us)), want));
            let _ = (us, want);
        }
        for style in ["postgres", "postgres_verbose", "sql_standard", "iso_8601"] {
            conn.execute(&format!("SET IntervalStyle = {style}"), ())
                .await
                .unwrap();
            let st = conn
                .prepare("SELECT interval_send($1::interval)")
                .await
                .unwrap();
            for (v, want) in &cases {
                let v: &dyn ToSql = &**v;
                let how = format!("{} under {style}", v.to_value().as_str().unwrap_or("?"));
                let mut c = conn
                    .execute("SELECT interval_send(%s::interval)", (v,))
                    .await
                    .unwrap();
                assert_eq!(
                    interval_fields(&c.fetchone().unwrap()),
                    *want,
                    "execute: {how}"
                );
                // The server's own comparison agrees: the same length as the fields say.
                let mut c = conn
                    .execute(
                        "SELECT %s::interval = make_interval(0, %s, 0, %s, 0, 0, %s)",
                        (v, want.months, want.days, want.microseconds as f64 / 1e6),
                    )
                    .await
                    .unwrap();
                assert!(c.fetchone().unwrap().get::<_, bool>(0), "equal: {how}");
                for call in ["query", "cached query"] {
                    let mut c = conn
                        .query("SELECT interval_send($1::interval)", vec![v.to_value()])
                        .await
                        .unwrap();
                    assert_eq!(
                        interval_fields(&c.fetchone().unwrap()),
                        *want,
                        "{call}: {how}"
                    );
                }
                let mut c = conn
                    .execute_prepared(&st, vec![v.to_value()])
                    .await
                    .unwrap();
                assert_eq!(
                    interval_fields(&c.fetchone().unwrap()),
                    *want,
                    "execute_prepared: {how}"
                );
            }
        }
    });
}

#[test]
fn network_addresses_round_trip_with_and_without_prefix() {
    run(async {
        let conn = connect().await;
        for a in [
            "10.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "2001:db8::ff",
            "::",
        ] {
            let addr: IpAddr = a.parse().unwrap();
            round_trip(&conn, "inet", addr).await;
        }
        let inet = Inet::new("2001:db8::1".parse().unwrap(), 64).unwrap();
        round_trip(&conn, "inet", inet).await;
        round_trip(
            &conn,
            "inet",
            Inet::new("192.168.7.9".parse().unwrap(), 24).unwrap(),
        )
        .await;
        for (a, p) in [
            ("10.0.0.0", 8u8),
            ("2001:db8::", 32),
            ("192.168.1.1", 32),
            ("::", 0),
        ] {
            round_trip(&conn, "cidr", Cidr::new(a.parse().unwrap(), p).unwrap()).await;
        }
        round_trip(
            &conn,
            "inet[]",
            vec![
                Some(inet),
                None,
                Some(Inet::from("::1".parse::<IpAddr>().unwrap())),
            ],
        )
        .await;
        // A prefix does not fit a bare IpAddr: an error naming the column, in both formats.
        for row in both_formats(
            &conn,
            "SELECT '10.1.2.3/8'::inet AS net, '10.1.2.3'::inet AS host",
        )
        .await
        {
            let e = row.try_get::<_, IpAddr>("net").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Conversion);
            assert!(e.to_string().contains("column \"net\""), "{e}");
            assert!(e.to_string().contains("momoko::Inet"), "{e}");
            assert_eq!(
                row.get::<_, IpAddr>("host"),
                "10.1.2.3".parse::<IpAddr>().unwrap()
            );
            assert_eq!(row.get::<_, Inet>("net").prefix(), 8);
            assert_eq!(row.get_value("net").as_str(), Some("10.1.2.3/8"));
            assert_eq!(row.get_value("host").as_str(), Some("10.1.2.3"));
        }
    });
}

#[test]
fn integer_ranges_round_trip_empty_bounded_and_unbounded() {
    run(async {
        let conn = connect().await;
        use Bound::{Excluded as Ex, Included as In, Unbounded as Un};
        for r in [
            Range::Empty,
            Range::new(In(1i32), Ex(10)),
            Range::new(In(-5), Un),
            Range::new(Un, Ex(5)),
            Range::new(Un, Un),
            Range::new(In(i32::MIN), Ex(i32::MAX)),
        ] {
            round_trip(&conn, "int4range", r).await;
        }
        // The server normalises a discrete range: [1,10] is [1,11), (1,10) is [2,10).
        round_trip_as(
            &conn,
            "int4range",
            &Range::new(In(1), In(10)),
            &Range::new(In(1), Ex(11)),
        )
        .await;
        round_trip_as(
            &conn,
            "int4range",
            &Range::new(Ex(1), Ex(10)),
            &Range::new(In(2), Ex(10)),
        )
        .await;
        round_trip_as(
            &conn,
            "int4range",
            &Range::new(In(3), Ex(3)),
            &Range::<i32>::Empty,
        )
        .await;
        round_trip(
            &conn,
            "int8range",
            Range::new(In(-(1i64 << 40)), Ex(1i64 << 50)),
        )
        .await;
        round_trip(
            &conn,
            "int4range[]",
            vec![Some(Range::new(In(1), Ex(2))), None, Some(Range::Empty)],
        )
        .await;
        for row in both_formats(
            &conn,
            "SELECT '[1,10)'::int4range, 'empty'::int8range, '(,)'::int4range",
        )
        .await
        {
            assert_eq!(row.get_value(0).as_str(), Some("[1,10)"));
            assert_eq!(row.get_value(1).as_str(), Some("empty"));
            assert_eq!(row.get::<_, Range<i64>>(1), Range::Empty);
            assert_eq!(row.get::<_, Range<i32>>(2), Range::new(Un, Un));
            // A range of another element type is an error, not a reinterpretation.
            assert!(row.try_get::<_, Range<String>>(0).is_err());
        }
    });
}

#[test]
fn startup_pins_datestyle_and_intervalstyle_unless_options_set_them() {
    run(async {
        let conn = connect().await;
        let show = |c: &Connection, what: &'static str| {
            let c = c.clone();
            async move {
                let mut cur = c.execute(&format!("SHOW {what}"), ()).await.unwrap();
                cur.fetchone().unwrap().get::<_, String>(0)
            }
        };
        assert!(show(&conn, "DateStyle").await.starts_with("ISO"));
        assert_eq!(show(&conn, "IntervalStyle").await, "postgres");
        // Whatever the caller sets in options wins, as in libpq.
        let own = format!(
            "{} options='-c DateStyle=SQL,DMY -c IntervalStyle=iso_8601'",
            dsn()
        );
        let other = momoko::connect(&own).await.unwrap();
        assert_eq!(show(&other, "DateStyle").await, "SQL, DMY");
        assert_eq!(show(&other, "IntervalStyle").await, "iso_8601");
        // Text then says what is wrong; binary results do not depend on the style.
        let sql = "SELECT '2024-02-29'::date AS d, '1 day'::interval AS i";
        let row = other.execute(sql, ()).await.unwrap().fetchone().unwrap();
        let e = row.try_get::<_, Interval>("i").unwrap_err();
        assert!(e.to_string().contains("IntervalStyle"), "{e}");
        other.query(sql, ()).await.unwrap();
        let row = other.query(sql, ()).await.unwrap().fetchone().unwrap();
        assert_eq!(row.get::<_, Interval>("i"), Interval::new(0, 1, 0));
    });
}

#[cfg(feature = "chrono")]
mod with_chrono {
    use super::*;
    use chrono::{
        DateTime, FixedOffset, Local, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Utc,
    };
    use momoko::Infinite;
    use std::time::Duration;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn edge_dates() -> Vec<NaiveDate> {
        vec![
            d(1, 1, 1),
            d(9999, 12, 31),
            d(2024, 2, 29),
            d(2000, 1, 1),
            d(1999, 12, 31),
            d(0, 12, 31),
            d(-4712, 1, 1),
            d(10000, 1, 1),
        ]
    }

    fn edge_datetimes() -> Vec<NaiveDateTime> {
        vec![
            d(1, 1, 1).and_hms_opt(0, 0, 0).unwrap(),
            d(9999, 12, 31)
                .and_hms_micro_opt(23, 59, 59, 999_999)
                .unwrap(),
            d(2024, 2, 29).and_hms_micro_opt(12, 34, 56, 1).unwrap(),
            d(1970, 1, 1).and_hms_micro_opt(0, 0, 0, 500_000).unwrap(),
            d(0, 6, 15).and_hms_opt(1, 2, 3).unwrap(),
        ]
    }

    #[test]
    fn dates_times_and_timestamps_round_trip_at_the_edges() {
        run(async {
            let conn = connect().await;
            for v in edge_dates() {
                round_trip(&conn, "date", v).await;
            }
            for t in [
                NaiveTime::from_hms_opt(0, 0, 0).unwrap(),
                NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).unwrap(),
                NaiveTime::from_hms_micro_opt(12, 34, 56, 1).unwrap(),
            ] {
                round_trip(&conn, "time", t).await;
            }
            for v in edge_datetimes() {
                round_trip(&conn, "timestamp", v).await;
                round_trip(&conn, "timestamptz", v.and_utc()).await;
                let east = FixedOffset::east_opt(5 * 3600 + 30 * 60).unwrap();
                let aware = east.from_local_datetime(&v).unwrap();
                // Read back as the same instant, in the session's offset.
                round_trip_as(&conn, "timestamptz", &aware, &aware.with_timezone(&Utc)).await;
                round_trip_as(&conn, "timestamptz", &aware, &aware).await;
            }
            let now = Local::now();
            let now = now
                .with_timezone(&Local)
                .checked_sub_signed(TimeDelta::nanoseconds(i64::from(
                    now.timestamp_subsec_nanos() % 1000,
                )))
                .unwrap();
            round_trip(&conn, "timestamptz", now).await;
            for us in [
                0i64,
                1,
                -1,
                86_400_000_000 + 5_000_007,
                -3 * 86_400_000_000 - 7,
            ] {
                round_trip(&conn, "interval", TimeDelta::microseconds(us)).await;
            }
            round_trip(
                &conn,
                "date[]",
                edge_dates()
                    .into_iter()
                    .map(Some)
                    .chain([None])
                    .collect::<Vec<_>>(),
            )
            .await;
            round_trip(&conn, "timestamp[]", edge_datetimes()).await;
            round_trip(
                &conn,
                "timestamptz[]",
                edge_datetimes()
                    .into_iter()
                    .map(|v| Some(v.and_utc()))
                    .chain([None])
                    .collect::<Vec<_>>(),
            )
            .await;
            round_trip(
                &conn,
                "time[]",
                vec![NaiveTime::from_hms_opt(1, 2, 3).unwrap()],
            )
            .await;
        });
    }

    #[test]
    fn date_and_timestamp_ranges_round_trip() {
        run(async {
            let conn = connect().await;
            use Bound::{Excluded as Ex, Included as In, Unbounded as Un};
            for r in [
                Range::Empty,
                Range::new(In(d(2024, 1, 1)), Ex(d(2024, 2, 1))),
                Range::new(Un, Ex(d(1, 1, 1))),
                Range::new(In(d(9999, 12, 31)), Un),
            ] {
                round_trip(&conn, "daterange", r).await;
            }
            let a = d(2024, 1, 1).and_hms_micro_opt(0, 0, 0, 1).unwrap();
            let b = d(2024, 1, 2).and_hms_opt(12, 0, 0).unwrap();
            for r in [
                Range::Empty,
                Range::new(In(a), In(b)),
                Range::new(Ex(a), Un),
                Range::new(Un, Un),
            ] {
                round_trip(&conn, "tsrange", r.clone()).await;
                let utc = match r {
                    Range::Empty => Range::Empty,
                    Range::Bounds(l, u) => {
                        Range::Bounds(l.map(|v| v.and_utc()), u.map(|v| v.and_utc()))
                    }
                };
                round_trip(&conn, "tstzrange", utc).await;
            }
            // Inclusive ends of a discrete range move as the server normalises them.
            round_trip_as(
                &conn,
                "daterange",
                &Range::new(In(d(2024, 1, 1)), In(d(2024, 1, 31))),
                &Range::new(In(d(2024, 1, 1)), Ex(d(2024, 2, 1))),
            )
            .await;
        });
    }

    #[test]
    fn infinities_are_errors_for_chrono_and_values_of_infinite() {
        run(async {
            let conn = connect().await;
            let sql = "SELECT 'infinity'::date AS d, '-infinity'::timestamp AS t, 'infinity'::timestamptz AS z";
            for row in both_formats(&conn, sql).await {
                let e = row.try_get::<_, NaiveDate>("d").unwrap_err();
                assert_eq!(
                    e.to_string(),
                    "conversion error: column \"d\": infinity does not fit chrono::NaiveDate; read \
                     it as momoko::Infinite<chrono::NaiveDate>"
                );
                assert!(row
                    .try_get::<_, NaiveDateTime>("t")
                    .unwrap_err()
                    .to_string()
                    .contains("-infinity"));
                assert!(row.try_get::<_, DateTime<Utc>>("z").is_err());
                assert_eq!(row.get::<_, Infinite<NaiveDate>>("d"), Infinite::Infinity);
                assert_eq!(
                    row.get::<_, Infinite<NaiveDateTime>>("t"),
                    Infinite::NegInfinity
                );
                assert_eq!(
                    row.get::<_, Infinite<DateTime<Utc>>>("z"),
                    Infinite::Infinity
                );
                assert_eq!(row.get_value("d").as_str(), Some("infinity"));
            }
            round_trip(&conn, "date", Infinite::<NaiveDate>::Infinity).await;
            round_trip(&conn, "timestamp", Infinite::<NaiveDateTime>::NegInfinity).await;
            round_trip(
                &conn,
                "timestamptz",
                Infinite::Finite(d(2024, 2, 29).and_hms_opt(1, 2, 3).unwrap().and_utc()),
            )
            .await;
        });
    }

    #[test]
    fn a_timestamptz_is_the_same_instant_under_america_new_york() {
        run(async {
            let conn = Connection::builder(&dsn())
                .setsession(["SET TIME ZONE 'America/New_York'"])
                .connect_timeout(Duration::from_secs(10))
                .connect()
                .await
                .unwrap();
            let want = d(2024, 2, 29)
                .and_hms_micro_opt(13, 45, 1, 123_456)
                .unwrap()
                .and_utc();
            let summer = d(2024, 7, 4).and_hms_opt(16, 0, 0).unwrap().and_utc();
            let sql = "SELECT '2024-02-29 13:45:01.123456+00'::timestamptz, '2024-07-04 16:00:00Z'::timestamptz";
            let [text, binary] = both_formats(&conn, sql).await;
            assert_eq!(
                text.get_value(0).as_str(),
                Some("2024-02-29 08:45:01.123456-05")
            );
            assert_eq!(text.get_value(1).as_str(), Some("2024-07-04 12:00:00-04"));
            for row in [&text, &binary] {
                assert_eq!(row.get::<_, DateTime<Utc>>(0), want);
                assert_eq!(row.get::<_, DateTime<Local>>(0), want);
                assert_eq!(row.get::<_, DateTime<Utc>>(1), summer);
            }
            // Text keeps the session's offset; binary has none and is UTC.
            assert_eq!(
                text.get::<_, DateTime<FixedOffset>>(0)
                    .offset()
                    .local_minus_utc(),
                -5 * 3600
            );
            assert_eq!(
                text.get::<_, DateTime<FixedOffset>>(1)
                    .offset()
                    .local_minus_utc(),
                -4 * 3600
            );
            assert_eq!(
                binary
                    .get::<_, DateTime<FixedOffset>>(0)
                    .offset()
                    .local_minus_utc(),
                0
            );
            round_trip(&conn, "timestamptz", want).await;
        });
    }

    #[test]
    fn a_session_that_sets_another_datestyle_gets_a_clear_error_in_text() {
        run(async {
            let conn = connect().await;
            conn.execute("SET DateStyle = 'German'", ()).await.unwrap();
            let sql = "SELECT '2024-02-29'::date AS d";
            let row = conn.execute(sql, ()).await.unwrap().fetchone().unwrap();
            let e = row.try_get::<_, NaiveDate>("d").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Conversion);
            assert!(
                e.to_string()
                    .contains("\"29.02.2024\" is not a date in the ISO form"),
                "{e}"
            );
            let [_, binary] = both_formats(&conn, sql).await;
            assert_eq!(binary.get::<_, NaiveDate>("d"), d(2024, 2, 29));
        });
    }
}

#[cfg(feature = "time")]
mod with_time {
    use super::*;
    use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

    fn d(y: i32, m: u8, day: u8) -> Date {
        Date::from_calendar_date(y, Month::try_from(m).unwrap(), day).unwrap()
    }

    #[test]
    fn time_crate_values_round_trip_at_the_edges() {
        run(async {
            let conn = connect().await;
            let dates = [d(1, 1, 1), d(9999, 12, 31), d(2024, 2, 29), d(0, 12, 31)];
            for v in dates {
                round_trip(&conn, "date", v).await;
            }
            let times = [
                Time::MIDNIGHT,
                Time::from_hms_micro(23, 59, 59, 999_999).unwrap(),
                Time::from_hms_micro(0, 0, 0, 1).unwrap(),
            ];
            for t in times {
                round_trip(&conn, "time", t).await;
            }
            let east = UtcOffset::from_hms(9, 30, 0).unwrap();
            for date in dates {
                for t in times {
                    let p = PrimitiveDateTime::new(date, t);
                    round_trip(&conn, "timestamp", p).await;
                    round_trip(&conn, "timestamptz", p.assume_utc()).await;
                    round_trip(&conn, "timestamptz", p.assume_offset(east)).await;
                }
            }
            round_trip(
                &conn,
                "interval",
                time::Duration::microseconds(-86_400_000_001),
            )
            .await;
            round_trip(&conn, "date[]", vec![Some(d(2024, 1, 1)), None]).await;
            round_trip(&conn, "timestamptz[]", vec![OffsetDateTime::UNIX_EPOCH]).await;
            round_trip(
                &conn,
                "tsrange",
                Range::new(
                    Bound::Included(PrimitiveDateTime::new(d(1, 1, 1), Time::MIDNIGHT)),
                    Bound::Unbounded,
                ),
            )
            .await;
            // Past ±9999 the time crate has no dates: an error, not a clamp.
            for row in both_formats(&conn, "SELECT '10000-01-01'::date AS d").await {
                assert!(row
                    .try_get::<_, Date>("d")
                    .unwrap_err()
                    .to_string()
                    .contains("out of range"));
            }
        });
    }
}

#[cfg(feature = "uuid")]
mod with_uuid {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn uuids_round_trip_in_both_formats() {
        run(async {
            let conn = connect().await;
            let some = Uuid::from_u128(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
            for u in [Uuid::nil(), Uuid::max(), some] {
                round_trip(&conn, "uuid", u).await;
            }
            round_trip(&conn, "uuid[]", vec![Some(some), None, Some(Uuid::nil())]).await;
            for row in
                both_formats(&conn, "SELECT '01234567-89AB-CDEF-FEDC-BA9876543210'::uuid").await
            {
                assert_eq!(row.get::<_, Uuid>(0), some);
                assert_eq!(
                    row.get_value(0).as_str(),
                    Some("01234567-89ab-cdef-fedc-ba9876543210")
                );
            }
        });
    }
}

#[cfg(feature = "rust_decimal")]
mod with_decimal {
    use super::*;
    use momoko::Numeric;
    use rust_decimal::Decimal;
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn decimals_round_trip_with_their_scale() {
        run(async {
            let conn = connect().await;
            for s in [
                "10.50",
                "0",
                "0.00",
                "-3.50",
                "1234567890123456789012345678",
                "-1234567890123456789012345678",
                "0.0000000000000000000000000001",
                "7922816251426433759354395033.5",
                "0.0000001",
                "0.00000010",
                "79228162514264337593543950335",
            ] {
                let v = dec(s);
                round_trip(&conn, "numeric", v).await;
                // The scale survives every format, not only the value.
                let row = conn
                    .execute("SELECT %s::numeric", (v,))
                    .await
                    .unwrap()
                    .fetchone()
                    .unwrap();
                assert_eq!(row.get::<_, Decimal>(0).scale(), v.scale(), "{s}");
                conn.query("SELECT $1::numeric", vec![v.to_value()])
                    .await
                    .unwrap();
                let row = conn
                    .query("SELECT $1::numeric", vec![v.to_value()])
                    .await
                    .unwrap()
                    .fetchone()
                    .unwrap();
                assert_eq!(row.get::<_, Decimal>(0).scale(), v.scale(), "{s} in binary");
                assert_eq!(row.get::<_, Decimal>(0).to_string(), s, "{s} in binary");
            }
            round_trip(
                &conn,
                "numeric[]",
                vec![Some(dec("1.5")), None, Some(dec("-0.001"))],
            )
            .await;
            round_trip(
                &conn,
                "numrange",
                Range::new(Bound::Included(dec("-1.5")), Bound::Excluded(dec("2.25"))),
            )
            .await;
            round_trip(
                &conn,
                "numrange",
                Range::new(Bound::Unbounded, Bound::Included(dec("0.10"))),
            )
            .await;
        });
    }

    #[test]
    fn integer_columns_read_as_decimal_and_numeric_in_both_formats() {
        run(async {
            let conn = connect().await;
            // Decimal::ZERO renders as `0`, so `SELECT %s` is an int4 column.
            let mut c = conn.execute("SELECT %s", (Decimal::ZERO,)).await.unwrap();
            let row = c.fetchone().unwrap();
            assert_eq!(row.columns()[0].type_oid(), momoko::oid::INT4);
            assert_eq!(row.get::<_, Decimal>(0), Decimal::ZERO);
            let sql = "SELECT (-32768)::int2 AS i2, 2147483647::int4 AS i4, \
                       (-9223372036854775808)::int8 AS i8, NULL::int4 AS none";
            for row in both_formats(&conn, sql).await {
                let how = format!("format {}", row.columns()[0].format());
                assert_eq!(row.get::<_, Decimal>("i2"), Decimal::from(-32768), "{how}");
                assert_eq!(
                    row.get::<_, Decimal>("i4"),
                    Decimal::from(i32::MAX),
                    "{how}"
                );
                assert_eq!(
                    row.get::<_, Decimal>("i8"),
                    Decimal::from(i64::MIN),
                    "{how}"
                );
                assert_eq!(row.get::<_, Decimal>("i8").scale(), 0, "{how}");
                assert_eq!(
                    row.get::<_, Numeric<Decimal>>("i4"),
                    Numeric::Finite(Decimal::from(i32::MAX)),
                    "{how}"
                );
                assert_eq!(
                    row.get::<_, Numeric<i64>>("i8"),
                    Numeric::Finite(i64::MIN),
                    "{how}"
                );
                assert_eq!(row.get::<_, Option<Decimal>>("none"), None, "{how}");
                assert_eq!(
                    row.get::<_, Option<Numeric<Decimal>>>("none"),
                    None,
                    "{how}"
                );
            }
            // And through every way a parameter comes back.
            round_trip_as(&conn, "int8", &42i64, &Decimal::from(42)).await;
            round_trip_as(&conn, "int2", &-5i16, &Numeric::Finite(Decimal::from(-5))).await;
        });
    }

    #[test]
    fn nan_infinity_and_too_many_digits_are_errors_for_decimal() {
        run(async {
            let conn = connect().await;
            let sql = "SELECT 'NaN'::numeric AS nan, '-Infinity'::numeric AS ninf, \
                       0.00000000000000000000000000001 AS tiny, 1e30::numeric AS big";
            for row in both_formats(&conn, sql).await {
                let e = row.try_get::<_, Decimal>("nan").unwrap_err();
                assert!(e.to_string().contains("column \"nan\": NaN does not fit rust_decimal::Decimal; read it as momoko::Numeric<rust_decimal::Decimal>"), "{e}");
                assert_eq!(row.get::<_, Numeric<Decimal>>("nan"), Numeric::NaN);
                assert_eq!(row.get::<_, Numeric<Decimal>>("ninf"), Numeric::NegInfinity);
                assert!(row
                    .try_get::<_, Decimal>("tiny")
                    .unwrap_err()
                    .to_string()
                    .contains("column \"tiny\""));
                assert!(row.try_get::<_, Decimal>("big").is_err());
                assert_eq!(
                    row.get_value("big").as_str(),
                    Some("1000000000000000000000000000000")
                );
            }
            round_trip(&conn, "numeric", Numeric::<Decimal>::Infinity).await;
            round_trip(&conn, "numeric", Numeric::<Decimal>::NaN).await;
            round_trip(&conn, "numeric", Numeric::Finite(dec("2.50"))).await;
        });
    }
}

#[test]
fn any_integer_column_reads_into_any_integer_type_that_holds_it() {
    run(async {
        let conn = connect().await;
        let sql = "SELECT 7::int2 AS a, 70000::int4 AS b, 5000000000::int8 AS c, -1::int4 AS d";
        for row in both_formats(&conn, sql).await {
            assert_eq!(row.get::<_, i8>("a"), 7);
            assert_eq!(row.get::<_, u64>("a"), 7);
            assert_eq!(row.get::<_, i64>("b"), 70000);
            assert_eq!(row.get::<_, u32>("b"), 70000);
            assert_eq!(row.get::<_, i128>("c"), 5_000_000_000);
            assert_eq!(row.get::<_, usize>("c"), 5_000_000_000);
            let e = row.try_get::<_, i32>("c").unwrap_err();
            assert_eq!(
                e.to_string(),
                "conversion error: column \"c\" of type bigint: 5000000000 is out of range for i32"
            );
            assert!(row
                .try_get::<_, u16>("d")
                .unwrap_err()
                .to_string()
                .contains("column \"d\""));
        }
    });
}

#[cfg(all(
    feature = "serde",
    feature = "chrono",
    feature = "uuid",
    feature = "rust_decimal"
))]
mod with_serde {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Audit {
        created: chrono::NaiveDateTime,
        seen: chrono::DateTime<chrono::Utc>,
        day: chrono::NaiveDate,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Account {
        id: i64,
        #[serde(rename = "owner_name")]
        owner: String,
        note: Option<String>,
        small: u8,
        token: uuid::Uuid,
        balance: rust_decimal::Decimal,
        ratio: f64,
        tags: Vec<String>,
        active: bool,
        #[serde(flatten)]
        audit: Audit,
    }

    const SQL: &str = "SELECT 1::int8 AS id, 'ann' AS owner_name, NULL::text AS note, 200::int4 AS small, \
         '01234567-89ab-cdef-fedc-ba9876543210'::uuid AS token, 10.50::numeric AS balance, \
         0.25::numeric AS ratio, ARRAY['a','b c']::text[] AS tags, true AS active, \
         '2024-02-29 13:45:01.5'::timestamp AS created, '2024-02-29 13:45:01+00'::timestamptz AS seen, \
         '0001-01-01'::date AS day, 'ignored' AS extra";

    fn want() -> Account {
        let day = chrono::NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
        Account {
            id: 1,
            owner: "ann".into(),
            note: None,
            small: 200,
            token: uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210),
            balance: rust_decimal::Decimal::new(1050, 2),
            ratio: 0.25,
            tags: vec!["a".into(), "b c".into()],
            active: true,
            audit: Audit {
                created: day.and_hms_milli_opt(13, 45, 1, 500).unwrap(),
                seen: day.and_hms_opt(13, 45, 1).unwrap().and_utc(),
                day: chrono::NaiveDate::from_ymd_opt(1, 1, 1).unwrap(),
            },
        }
    }

    #[test]
    fn rows_map_into_structs_by_column_name_in_both_formats() {
        run(async {
            let conn = connect().await;
            for row in both_formats(&conn, SQL).await {
                let got: Account = row.deserialize().unwrap();
                assert_eq!(got, want());
                assert_eq!(got.balance.scale(), 2);
            }
            let mut c = conn
                .execute(&format!("{SQL} UNION ALL {SQL} UNION ALL {SQL}"), ())
                .await
                .unwrap();
            assert_eq!(c.fetchone_as::<Account>().unwrap(), Some(want()));
            assert_eq!(c.fetchmany_as::<Account>(1).unwrap(), vec![want()]);
            assert_eq!(c.fetchall_as::<Account>().unwrap(), vec![want()]);
            assert_eq!(c.fetchone_as::<Account>().unwrap(), None);
            // Tuples by position and single-column rows as scalars.
            let mut c = conn
                .execute("SELECT 1::int4, 'x'::text, NULL::int8", ())
                .await
                .unwrap();
            let t: (i32, String, Option<i64>) = c.fetchone().unwrap().deserialize().unwrap();
            assert_eq!(t, (1, "x".into(), None));
            let mut c = conn
                .execute("SELECT n FROM generate_series(1, 3) AS n", ())
                .await
                .unwrap();
            assert_eq!(c.fetchall_as::<i64>().unwrap(), vec![1, 2, 3]);
        });
    }

    #[test]
    fn errors_name_the_column_or_the_missing_field() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Narrow {
            small: u8,
        }
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Missing {
            absent: i32,
        }
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct NotNull {
            note: String,
        }
        run(async {
            let conn = connect().await;
            let row = conn
                .execute("SELECT 300 AS small, NULL::text AS note", ())
                .await
                .unwrap()
                .fetchone()
                .unwrap();
            let e = row.deserialize::<Narrow>().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Conversion);
            assert!(
                e.to_string()
                    .contains("column \"small\": invalid value: integer `300`, expected u8"),
                "{e}"
            );
            let e = row.deserialize::<Missing>().unwrap_err();
            assert!(e.to_string().contains("missing field `absent`"), "{e}");
            let e = row.deserialize::<NotNull>().unwrap_err();
            assert!(e.to_string().contains("column \"note\""), "{e}");
            let e = row.deserialize::<i32>().unwrap_err();
            assert!(e.to_string().contains("a row of 2 columns"), "{e}");
        });
    }
}

/// The psycopg2 side: random cases of every typed parameter, built and rendered by psycopg2,
/// printed as JSON (each case's fields, then its mogrify output).
#[cfg(all(
    feature = "chrono",
    feature = "time",
    feature = "uuid",
    feature = "rust_decimal"
))]
const SCRIPT: &str = r#"
import datetime as dt, decimal, ipaddress, json, random, sys, uuid
import psycopg2, psycopg2.extras
from psycopg2.extras import NumericRange, DateRange, DateTimeRange, DateTimeTZRange

conn = psycopg2.connect(sys.argv[1])
psycopg2.extras.register_uuid(conn_or_curs=conn)
psycopg2.extras.register_ipaddress(conn)
cur = conn.cursor()
rnd = random.Random(int(sys.argv[2]))
N = int(sys.argv[3])

def date():
    return dt.date.fromordinal(rnd.choice([1, 3652059, rnd.randint(1, 3652059)]))
def time():
    return dt.time(rnd.randint(0, 23), rnd.randint(0, 59), rnd.randint(0, 59), rnd.choice([0, 1, 999999, rnd.randint(0, 999999)]))
def naive():
    return dt.datetime.combine(date(), time())
def offset():
    secs = rnd.choice([0, 3600 * rnd.randint(-14, 14), 60 * rnd.randint(-14 * 60, 14 * 60), rnd.randint(-50000, 50000)])
    return dt.timezone(dt.timedelta(seconds=secs))
def aware():
    return naive().replace(tzinfo=offset())
def delta():
    return dt.timedelta(microseconds=rnd.choice([0, -1, 1, rnd.randint(-10**17, 10**17)]))
def dec():
    digits = rnd.randint(1, 28)
    coeff = rnd.randint(0, 10**digits - 1)
    return decimal.Decimal((rnd.randint(0, 1), tuple(int(c) for c in str(coeff)), -rnd.randint(0, 28)))
def uid():
    return uuid.UUID(int=rnd.getrandbits(128))
def net():
    if rnd.random() < 0.5:
        a = ipaddress.IPv4Address(rnd.getrandbits(32)); bits = 32
    else:
        a = ipaddress.IPv6Address(rnd.getrandbits(128)); bits = 128
    return a, rnd.randint(0, bits)

def fields(v):
    if v is None: return None
    if isinstance(v, dt.datetime):
        f = [v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond]
        if v.tzinfo is not None: f.append(int(v.utcoffset().total_seconds()))
        return f
    if isinstance(v, dt.date): return [v.year, v.month, v.day]
    if isinstance(v, dt.time): return [v.hour, v.minute, v.second, v.microsecond]
    if isinstance(v, dt.timedelta): return (v.days * 86400 + v.seconds) * 10**6 + v.microseconds
    if isinstance(v, decimal.Decimal):
        t = v.as_tuple()
        return [t.sign, "".join(map(str, t.digits)), -t.exponent]
    if isinstance(v, uuid.UUID): return str(v)
    if isinstance(v, int): return v
    raise TypeError(v)

cases = []
def add(kind, value, f):
    cases.append({"kind": kind, "fields": f, "sql": cur.mogrify("%s", (value,)).decode()})

makers = {"date": date, "time": time, "timestamp": naive, "timestamptz": aware, "interval": delta,
          "numeric": dec, "uuid": uid}
for kind, make in makers.items():
    for _ in range(N):
        v = make()
        add(kind, v, fields(v))
    vs = [make() if rnd.random() < 0.8 else None for _ in range(rnd.randint(1, 4))]
    add(kind + "[]", vs, [fields(v) for v in vs])
for _ in range(N):
    a, bits = net()
    i = ipaddress.ip_interface((a, bits))
    add("inet", i, [str(i.ip), bits])
    n = ipaddress.ip_network((a, bits), strict=False)
    add("cidr", n, [str(n.network_address), bits])
    h = ipaddress.ip_interface(a)
    add("ipaddr", h, [str(a), h.network.prefixlen])
ranges = {"int4range": (NumericRange, lambda: rnd.randint(-2**31, 2**31 - 1)),
          "int8range": (NumericRange, lambda: rnd.randint(-2**63, 2**63 - 1)),
          "numrange": (NumericRange, dec), "daterange": (DateRange, date),
          "tsrange": (DateTimeRange, naive), "tstzrange": (DateTimeTZRange, aware)}
for kind, (cls, make) in ranges.items():
    add(kind, cls(empty=True), "empty")
    for _ in range(N):
        lo = make() if rnd.random() < 0.8 else None
        hi = make() if rnd.random() < 0.8 else None
        b = ("(" if lo is None else rnd.choice("[(")) + (")" if hi is None else rnd.choice("])"))
        add(kind, cls(lo, hi, b), [fields(lo), fields(hi), b])
print(json.dumps(cases))
"#;

#[cfg(all(
    feature = "chrono",
    feature = "time",
    feature = "uuid",
    feature = "rust_decimal"
))]
mod against_psycopg2 {
    use super::*;
    use chrono::{FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
    use momoko::QuoteContext;
    use serde_json::Value as J;
    use std::time::Duration;

    fn ints(f: &J) -> Vec<i64> {
        f.as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect()
    }

    fn chrono_date(f: &[i64]) -> NaiveDate {
        NaiveDate::from_ymd_opt(f[0] as i32, f[1] as u32, f[2] as u32).unwrap()
    }

    fn chrono_time(f: &[i64]) -> NaiveTime {
        NaiveTime::from_hms_micro_opt(f[0] as u32, f[1] as u32, f[2] as u32, f[3] as u32).unwrap()
    }

    fn chrono_naive(f: &[i64]) -> NaiveDateTime {
        chrono_date(&f[..3]).and_time(chrono_time(&f[3..7]))
    }

    fn chrono_aware(f: &[i64]) -> chrono::DateTime<FixedOffset> {
        FixedOffset::east_opt(f[7] as i32)
            .unwrap()
            .from_local_datetime(&chrono_naive(f))
            .unwrap()
    }

    fn time_date(f: &[i64]) -> time::Date {
        time::Date::from_calendar_date(
            f[0] as i32,
            time::Month::try_from(f[1] as u8).unwrap(),
            f[2] as u8,
        )
        .unwrap()
    }

    fn time_naive(f: &[i64]) -> time::PrimitiveDateTime {
        let t =
            time::Time::from_hms_micro(f[3] as u8, f[4] as u8, f[5] as u8, f[6] as u32).unwrap();
        time::PrimitiveDateTime::new(time_date(f), t)
    }

    /// Python's (sign, digits, -exponent) of a Decimal: the coefficient as text, since 28
    /// digits do not fit a JSON number.
    fn decimal(f: &J) -> rust_decimal::Decimal {
        let n: i128 = f[1].as_str().unwrap().parse().unwrap();
        let mut d = rust_decimal::Decimal::from_i128_with_scale(n, f[2].as_u64().unwrap() as u32);
        d.set_sign_negative(f[0].as_i64() == Some(1));
        d
    }

    /// Every way momoko can build the case's value, each as a parameter (chrono and time
    /// both, where both have the type).
    fn ours(kind: &str, f: &J) -> Vec<Box<dyn ToSql>> {
        let opt = |f: &J, g: &dyn Fn(&J) -> Box<dyn ToSql>| {
            if f.is_null() {
                Box::new(None::<i32>) as Box<dyn ToSql>
            } else {
                g(f)
            }
        };
        match kind {
            "date" => vec![
                Box::new(chrono_date(&ints(f))),
                Box::new(time_date(&ints(f))),
            ],
            "time" => {
                let v = ints(f);
                vec![
                    Box::new(chrono_time(&v)),
                    Box::new(
                        time::Time::from_hms_micro(v[0] as u8, v[1] as u8, v[2] as u8, v[3] as u32)
                            .unwrap(),
                    ),
                ]
            }
            "timestamp" => vec![
                Box::new(chrono_naive(&ints(f))),
                Box::new(time_naive(&ints(f))),
            ],
            "timestamptz" => {
                let v = ints(f);
                let t = time_naive(&v)
                    .assume_offset(time::UtcOffset::from_whole_seconds(v[7] as i32).unwrap());
                vec![Box::new(chrono_aware(&v)), Box::new(t)]
            }
            "interval" => {
                // psycopg2's timedelta can exceed i64 microseconds only past 292 000 years.
                let us = f.as_i64().unwrap();
                vec![
                    Box::new(chrono::TimeDelta::microseconds(us)),
                    Box::new(time::Duration::microseconds(us)),
                ]
            }
            "numeric" => vec![Box::new(decimal(f))],
            "uuid" => vec![Box::new(
                uuid::Uuid::parse_str(f.as_str().unwrap()).unwrap(),
            )],
            "inet" | "ipaddr" | "cidr" => {
                let addr: IpAddr = f[0].as_str().unwrap().parse().unwrap();
                let bits = f[1].as_u64().unwrap() as u8;
                match kind {
                    "inet" => vec![Box::new(Inet::new(addr, bits).unwrap())],
                    "cidr" => vec![Box::new(Cidr::new(addr, bits).unwrap())],
                    _ => vec![Box::new(addr)],
                }
            }
            k if k.ends_with("[]") => {
                let elem = &k[..k.len() - 2];
                let items = f.as_array().unwrap();
                let n = items
                    .iter()
                    .find(|i| !i.is_null())
                    .map_or(1, |i| ours(elem, i).len());
                (0..n)
                    .map(|which| {
                        let v: Vec<Value> = items
                            .iter()
                            .map(|i| opt(i, &|i| ours(elem, i).remove(which)).to_value())
                            .collect();
                        Box::new(Value::Array(v)) as Box<dyn ToSql>
                    })
                    .collect()
            }
            _ => ranges(kind, f),
        }
    }

    fn ranges(kind: &str, f: &J) -> Vec<Box<dyn ToSql>> {
        fn build<T: Clone>(f: &J, make: &dyn Fn(&J) -> T) -> Option<Range<T>> {
            if f.as_str() == Some("empty") {
                return Some(Range::Empty);
            }
            let b = f[2].as_str()?.as_bytes().to_vec();
            let end = |v: &J, inc: bool| match v {
                J::Null => Bound::Unbounded,
                v if inc => Bound::Included(make(v)),
                v => Bound::Excluded(make(v)),
            };
            Some(Range::new(
                end(&f[0], b[0] == b'['),
                end(&f[1], b[1] == b']'),
            ))
        }
        let bx = |r: Option<Box<dyn ToSql>>| vec![r.unwrap()];
        match kind {
            "int4range" => bx(build(f, &|v| v.as_i64().unwrap() as i32).map(|r| Box::new(r) as _)),
            "int8range" => bx(build(f, &|v| v.as_i64().unwrap()).map(|r| Box::new(r) as _)),
            "numrange" => bx(build(f, &decimal).map(|r| Box::new(r) as _)),
            "daterange" => vec![
                Box::new(build(f, &|v| chrono_date(&ints(v))).unwrap()),
                Box::new(build(f, &|v| time_date(&ints(v))).unwrap()),
            ],
            "tsrange" => vec![
                Box::new(build(f, &|v| chrono_naive(&ints(v))).unwrap()),
                Box::new(build(f, &|v| time_naive(&ints(v))).unwrap()),
            ],
            "tstzrange" => vec![Box::new(build(f, &|v| chrono_aware(&ints(v))).unwrap())],
            k => panic!("unknown case kind {k}"),
        }
    }

    /// psycopg2's text of a negative timedelta with the one difference momoko makes on
    /// purpose: the seconds after negative days carry their `+` (`'-1 days +86399.000000
    /// seconds'`), without which IntervalStyle sql_standard reads another value.
    fn with_interval_signs(psycopg2: &str) -> String {
        let parts: Vec<String> = psycopg2
            .split('\'')
            .map(|p| match p.split_once(" days ") {
                Some((days, rest)) if days.starts_with('-') && !rest.starts_with('-') => {
                    format!("{days} days +{rest}")
                }
                _ => p.to_owned(),
            })
            .collect();
        parts.join("'")
    }

    #[test]
    fn mogrify_of_every_typed_parameter_matches_psycopg2_on_its_own_cases() {
        let python = match python::python_with_psycopg2() {
            Ok(p) => p,
            Err(why) => {
                println!("typed: SKIPPED, {why}; the comparison with psycopg2 did not run");
                return;
            }
        };
        let script = python::target_dir().join("typed_psycopg2_cases.py");
        std::fs::write(&script, SCRIPT).unwrap();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            % 100_000;
        let out = python::run_bounded(
            std::process::Command::new(&python)
                .arg(&script)
                .arg(dsn())
                .arg(seed.to_string())
                .arg("40"),
            Duration::from_secs(120),
        )
        .expect("the psycopg2 script runs");
        let cases: Vec<J> = serde_json::from_str(&out).unwrap();
        let ctx = QuoteContext::default();
        let mut diffs = Vec::new();
        let mut compared = 0;
        for case in &cases {
            let kind = case["kind"].as_str().unwrap();
            let psycopg2 = case["sql"].as_str().unwrap();
            let want = &if kind.starts_with("interval") {
                with_interval_signs(psycopg2)
            } else {
                psycopg2.to_owned()
            };
            for v in ours(kind, &case["fields"]) {
                let got = momoko::mogrify("%s", &[&*v as &dyn ToSql], &ctx).unwrap();
                compared += 1;
                if got != *want {
                    diffs.push(format!(
                        "  {kind} {}:\n    psycopg2: {want}\n    momoko:   {got}",
                        case["fields"]
                    ));
                }
            }
        }
        assert!(
            diffs.is_empty(),
            "seed {seed}: {} of {compared} renderings differ from psycopg2:\n{}",
            diffs.len(),
            diffs
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(cases.len() > 500, "psycopg2 made {} cases", cases.len());
        println!(
            "typed: {compared} renderings of {} psycopg2 cases identical (seed {seed})",
            cases.len()
        );
    }
}
