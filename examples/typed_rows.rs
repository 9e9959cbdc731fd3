//! Typed values both ways: chrono dates and timestamps, `rust_decimal::Decimal` (scale
//! kept), `uuid::Uuid`, intervals and arrays as `%s` parameters rendered as psycopg2 renders
//! them, and rows read into structs with serde (`fetchall_as`). The same values come back
//! from `execute` (text results) and from `query` (binary results).
//!
//! Needs the features it uses:
//! `cargo run --example typed_rows --features chrono,rust_decimal,uuid,serde`.
//! The server comes from `MOMOKO_DSN`, else `MOMOKO_TEST_DSN`, else libpq's defaults.

use chrono::{DateTime, NaiveDate, Utc};
use momoko::ioloop::IoLoop;
use momoko::{Error, Interval};
use rust_decimal::Decimal;
use uuid::Uuid;

#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)] // the fields are printed through Debug
struct Invoice {
    id: Uuid,
    issued: NaiveDate,
    paid_at: Option<DateTime<Utc>>,
    amount: Decimal,
    tags: Vec<String>,
}

fn main() -> Result<(), Error> {
    let dsn = std::env::var("MOMOKO_DSN")
        .or_else(|_| std::env::var("MOMOKO_TEST_DSN"))
        .unwrap_or_default();
    IoLoop::current().run_sync(async move {
        let conn = momoko::connect(&dsn).await?;
        conn.execute(
            "CREATE TEMP TABLE invoice (id uuid PRIMARY KEY, issued date NOT NULL, \
             paid_at timestamptz, amount numeric(12, 2) NOT NULL, tags text[] NOT NULL)",
            (),
        )
        .await?;
        let first = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let second = Uuid::from_u128(0xfedc_ba98_7654_3210_fedc_ba98_7654_3210);
        let issued = NaiveDate::from_ymd_opt(2026, 12, 1).expect("a date");
        let paid = issued.and_hms_opt(9, 30, 0).expect("a time").and_utc();
        let amount = Decimal::new(123_450, 2); // 1234.50
                                               // psycopg2's rendering, visible before anything is sent:
        println!(
            "{}",
            conn.mogrify(
                "INSERT INTO invoice VALUES (%s, %s, %s, %s, %s)",
                (first, issued, Some(paid), amount, vec!["a", "b"]),
            )?
        );
        conn.execute(
            "INSERT INTO invoice VALUES (%s, %s, %s, %s, %s), (%s, %s, %s, %s, %s)",
            (
                first,
                issued,
                Some(paid),
                amount,
                vec!["a", "b"],
                second,
                issued.succ_opt().expect("a date"),
                None::<DateTime<Utc>>,
                Decimal::new(-5, 2),
                Vec::<String>::new(),
            ),
        )
        .await?;

        let sql = "SELECT id, issued, paid_at, amount, tags FROM invoice ORDER BY issued";
        let text: Vec<Invoice> = conn.execute(sql, ()).await?.fetchall_as()?;
        let binary: Vec<Invoice> = conn.query(sql, ()).await?.fetchall_as()?;
        for invoice in &text {
            println!("{invoice:?}");
        }
        println!(
            "text and binary results agree: {}",
            format!("{text:?}") == format!("{binary:?}")
        );

        let mut c = conn
            .execute(
                "SELECT %s::interval + interval '1 day'",
                (Interval::new(1, 2, 3_000_000),),
            )
            .await?;
        let i: Interval = c.fetchone().expect("one row").get(0);
        println!(
            "interval: {} months, {} days, {} µs",
            i.months, i.days, i.microseconds
        );
        conn.close();
        Ok(())
    })
}
