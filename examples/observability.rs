//! Observing momoko: spans with OpenTelemetry's database names, printed by
//! `tracing-subscriber`'s fmt layer, the statement log (slow statements at warn), an
//! [`Observer`] that builds a tiny metric, and the pool's figures under the conventions'
//! names. Needs the `tracing` feature:
//! `cargo run --example observability --features tracing`.
//!
//! The server comes from `MOMOKO_DSN`, else `MOMOKO_TEST_DSN`, else libpq's defaults and the
//! `PG*` variables. To export the same spans to an OpenTelemetry collector, put
//! `tracing_opentelemetry::layer().with_tracer(tracer)` beside (or instead of) the fmt layer
//! below: the span fields are the conventions' attribute names already, and `otel.kind` /
//! `otel.name` give the span kind and name.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use momoko::observe::{Operation, OperationOutcome, PoolAcquire};
use momoko::{Error, LevelFilter, Observer, Pool};
use tracing_subscriber::fmt::format::FmtSpan;

/// Counts operations and sums their time: what a metrics exporter would do with
/// `db.client.operation.duration`.
#[derive(Default)]
struct Timing {
    operations: Cell<u32>,
    total: Cell<Duration>,
    acquisitions: Cell<u32>,
}

impl Observer for Timing {
    fn operation_end(&self, op: &Operation, outcome: &OperationOutcome<'_>) {
        self.operations.set(self.operations.get() + 1);
        self.total.set(self.total.get() + outcome.duration());
        if let Some(code) = outcome.sqlstate() {
            println!("observer: {} failed with SQLSTATE {code}", op.kind());
        }
    }
    fn pool_acquire(&self, _: &PoolAcquire) {
        self.acquisitions.set(self.acquisitions.get() + 1);
    }
}

fn main() -> Result<(), Error> {
    // Every span printed when it closes, with its fields; events (the statement log) as
    // they happen. No colours: the output is read by tests too.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_span_events(FmtSpan::CLOSE)
        .with_ansi(false)
        .without_time()
        .init();

    let timing = Rc::new(Timing::default());
    let pool = Pool::builder(&dsn())
        .size(2)
        .name("example")
        .observer(timing.clone())
        // Statements at info, those over 20 ms at warn.
        .log_statements(LevelFilter::Info)
        .log_slow_statements(LevelFilter::Warn, Duration::from_millis(20))
        .build()?;
    let ioloop = pool.ioloop().clone();
    let p = pool.clone();
    ioloop.run_sync(async move {
        p.connect().await?;
        let mut c = p.query("SELECT $1::int * 2 AS doubled", (21,)).await?;
        println!(
            "query: doubled = {}",
            c.fetchone().unwrap().get::<_, i32>(0)
        );
        p.execute("SELECT pg_sleep(%s)", (0.03,)).await?;
        let e = p.execute("SELECT 1/%s", (0,)).await.unwrap_err();
        println!("execute: failed as expected: {}", e.code().unwrap_or("?"));
        p.transaction(vec!["SELECT 1", "SELECT 2"]).await?;
        Ok::<_, Error>(())
    })?;

    println!(
        "observer: {} operations, {} acquisitions, {:?} in all",
        timing.operations.get(),
        timing.acquisitions.get(),
        timing.total.get() > Duration::ZERO
    );
    for m in pool.stats().metrics() {
        let state = m
            .state
            .map(|s| format!("{{state={s}}}"))
            .unwrap_or_default();
        println!("metric: {}{state} = {} {}", m.name, m.value, m.unit);
    }
    pool.close()?;
    Ok(())
}

fn dsn() -> String {
    std::env::var("MOMOKO_DSN")
        .or_else(|_| std::env::var("MOMOKO_TEST_DSN"))
        .unwrap_or_default()
}
