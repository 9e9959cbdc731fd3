//! The statement log, as sqlx keeps it: every statement at one level (default debug), those
//! slower than a threshold at another (default warn, 1 s), at the target
//! [`STATEMENT_TARGET`]. Through `log` without the `tracing` feature, as `tracing` events
//! (inside the operation's span) with it. A line carries the query as written, never its
//! values, and never an error's message (which may quote a value): the SQLSTATE or the kind
//! of error stands for it. The rendered SQL is added only when the caller asked for it.

use std::time::Duration;

use log::LevelFilter;

use super::{error_type, LogSettings, Operation, OperationOutcome};

/// The target of the statement log (`log` and `tracing` alike).
pub const STATEMENT_TARGET: &str = "momoko::statement";

/// What the log line of a slow statement says first, as sqlx.
const SLOW: &str = "slow statement: execution time exceeded alert threshold";

/// Whether the logger would take a line at `level` (or any more severe) of the statement
/// target.
#[inline]
pub(super) fn enabled(level: LevelFilter) -> bool {
    let Some(level) = level.to_level() else {
        return false;
    };
    #[cfg(feature = "tracing")]
    {
        tracing_enabled(level)
    }
    #[cfg(not(feature = "tracing"))]
    {
        level <= log::max_level() && log::log_enabled!(target: STATEMENT_TARGET, level)
    }
}

#[cfg(feature = "tracing")]
fn tracing_enabled(level: log::Level) -> bool {
    use tracing::Level as L;
    match level {
        log::Level::Error => tracing::enabled!(target: STATEMENT_TARGET, L::ERROR),
        log::Level::Warn => tracing::enabled!(target: STATEMENT_TARGET, L::WARN),
        log::Level::Info => tracing::enabled!(target: STATEMENT_TARGET, L::INFO),
        log::Level::Debug => tracing::enabled!(target: STATEMENT_TARGET, L::DEBUG),
        log::Level::Trace => tracing::enabled!(target: STATEMENT_TARGET, L::TRACE),
    }
}

/// Logs one finished operation, at the slow level when it took `slow_threshold` or more,
/// else at the statements level.
pub(super) fn log(
    settings: &LogSettings,
    op: &Operation,
    outcome: &OperationOutcome<'_>,
    rendered: Option<&str>,
) {
    let slow =
        settings.slow_statements != LevelFilter::Off && outcome.duration >= settings.slow_threshold;
    let level = if slow {
        settings.slow_statements
    } else {
        settings.statements
    };
    let Some(level) = level.to_level() else {
        return;
    };
    if !enabled(level.to_level_filter()) {
        return;
    }
    let threshold = slow.then_some(settings.slow_threshold);
    let rendered = rendered.filter(|_| settings.rendered_sql);
    #[cfg(feature = "tracing")]
    event(level, op, outcome, threshold, rendered);
    #[cfg(not(feature = "tracing"))]
    log::log!(target: STATEMENT_TARGET, level, "{}", line(op, outcome, threshold, rendered));
}

/// The `log` line: `execute: SELECT * FROM t WHERE id = %s; rows: 1; elapsed: 1.2ms`, with
/// `; sqlstate: 42P01` or `; error: timeout` on failure, the rendered SQL when asked for,
/// and for a slow statement the sqlx wording first and the threshold last.
#[cfg_attr(feature = "tracing", allow(dead_code))]
pub(super) fn line(
    op: &Operation,
    outcome: &OperationOutcome<'_>,
    threshold: Option<Duration>,
    rendered: Option<&str>,
) -> String {
    let mut s = String::new();
    if threshold.is_some() {
        s.push_str(SLOW);
        s.push_str(": ");
    }
    s.push_str(op.kind());
    if !op.query().is_empty() {
        s.push_str(": ");
        s.push_str(op.query());
    }
    if let Some(n) = outcome.rows {
        s.push_str(&format!("; rows: {n}"));
    }
    s.push_str(&format!("; elapsed: {:?}", outcome.duration));
    if let Some(e) = outcome.error {
        match e.code() {
            Some(code) => s.push_str(&format!("; sqlstate: {code}")),
            None => s.push_str(&format!("; error: {}", error_type(e))),
        }
    }
    if let Some(r) = rendered {
        s.push_str("; rendered: ");
        s.push_str(r);
    }
    if let Some(t) = threshold {
        s.push_str(&format!("; threshold: {t:?}"));
    }
    s
}

#[cfg(feature = "tracing")]
fn event(
    level: log::Level,
    op: &Operation,
    outcome: &OperationOutcome<'_>,
    threshold: Option<Duration>,
    rendered: Option<&str>,
) {
    macro_rules! at {
        ($level:expr) => {
            tracing::event!(
                target: STATEMENT_TARGET,
                $level,
                db.operation.name = op.operation_name(),
                db.query.text = op.query(),
                db.response.returned_rows = outcome.rows,
                db.response.status_code = outcome.sqlstate(),
                "error.type" = outcome.error_type(),
                elapsed_secs = outcome.duration.as_secs_f64(),
                slow_threshold_secs = threshold.map(|t| t.as_secs_f64()),
                rendered_sql = rendered,
                "{}",
                if threshold.is_some() { SLOW } else { op.kind() }
            )
        };
    }
    use tracing::Level as L;
    match level {
        log::Level::Error => at!(L::ERROR),
        log::Level::Warn => at!(L::WARN),
        log::Level::Info => at!(L::INFO),
        log::Level::Debug => at!(L::DEBUG),
        log::Level::Trace => at!(L::TRACE),
    }
}
