//! Observing momoko: the statement log, the [`Observer`] hooks, and (with the `tracing`
//! feature) the spans, all fed from one place per operation.
//!
//! - The statement log: every statement at one level (default debug), slow ones at another
//!   (default warn from 1 s), at the target [`STATEMENT_TARGET`], through `log` (as
//!   `tracing` events with the feature); set on
//!   [`ConnectionBuilder`](crate::ConnectionBuilder) and [`PoolBuilder`](crate::PoolBuilder)
//!   or by the connection string's `momoko_log_statements`, `momoko_log_slow_statements`
//!   and `momoko_slow_statement_ms`.
//! - [`Observer`]: the start and end of each operation ([`Operation`],
//!   [`OperationOutcome`]), the pool's acquisitions and releases ([`PoolAcquire`],
//!   [`PoolRelease`]), from the driver's delivery.
//! - The pool's figures under OpenTelemetry's names: [`PoolStats::metrics`](crate::PoolStats::metrics).
//! - With the `tracing` feature: one span per operation (`execute`, `query`, `prepare`,
//!   `execute_prepared`, `close_prepared`, `transaction`, `batch`, `callproc`, `copy_in`,
//!   `copy_out`, `listen`, `unlisten`, `cancel`), per connect (`connect`, with a
//!   `connect_attempt` per host attempt), per pool acquisition (`pool.acquire`), per failed
//!   health check (`pool.health_check_failed`) and per retirement (`pool.retire`), at INFO,
//!   target `momoko`, with OpenTelemetry's database attribute names.
//!
//! What is recorded is the query as the caller wrote it (`%s`, `%(name)s`, `$n`): a
//! parameter value, a rendered query or an error message (which may quote a value) never
//! reaches a span, a log line or an observer, unless the caller turned on
//! [`ConnectionBuilder::log_rendered_sql`](crate::ConnectionBuilder::log_rendered_sql) for
//! the statement log.

// How it works: every operation a driver runs goes through `operation` (called from
// `driver/ops.rs`). When nothing observes (no observer registered, the statement log's
// levels disabled in the logger, no span enabled) it runs the operation untouched, at the
// cost of a few loads; otherwise it times the operation, tells the observer it started
// (from the driver's deferred path, never inside the call), and wraps the completion so
// that the span is closed, the statement logged and the observer told the outcome before
// the caller's callback runs, outside every span. It never decides anything about the
// operation itself. Files: `statement.rs` (the statement log on `log` or `tracing`),
// `spans.rs` (the spans; no-ops without the feature), `pool.rs` (the pool's acquisition and
// figures).

mod pool;
pub(crate) mod spans;
mod statement;

use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use log::LevelFilter;

use crate::error::Error;
use crate::row::Cursor;
use crate::session::ops::Done;
use crate::session::{Core, Drive};

pub(crate) use pool::{AcquireTrack, PoolObserving};
pub use pool::{PoolAcquire, PoolMetric, PoolRelease};
pub use statement::STATEMENT_TARGET;

/// What a program without `tracing` registers to be told about operations and the pool
/// (on [`ConnectionBuilder::observer`](crate::ConnectionBuilder::observer) or
/// [`PoolBuilder::observer`](crate::PoolBuilder::observer)): enough to build metrics
/// (`db.client.operation.duration`, returned rows, errors by SQLSTATE, pool wait and use
/// times).
///
/// Each method is called from the driver's delivery (the `IoLoop`'s turn, or
/// `MioConnection::dispatch`), never inside the call that queued the work and with no
/// borrow of the connection or the pool held: it may call into momoko. `operation_start`
/// comes before `operation_end` of the same operation, and `operation_end` before the
/// operation's own callback or future. Every method does nothing by default.
pub trait Observer {
    /// An operation was queued (its clock started then, not when this runs).
    fn operation_start(&self, op: &Operation) {
        let _ = op;
    }
    /// An operation finished: its outcome, then the caller's callback.
    fn operation_end(&self, op: &Operation, outcome: &OperationOutcome<'_>) {
        let _ = (op, outcome);
    }
    /// A pool request got a connection, or gave up waiting (see [`PoolAcquire`]).
    fn pool_acquire(&self, acquire: &PoolAcquire) {
        let _ = acquire;
    }
    /// A connection came back to the pool (see [`PoolRelease`]).
    fn pool_release(&self, release: &PoolRelease) {
        let _ = release;
    }
}

/// A shared observer observes as the one it shares (keep an `Rc` to read what it gathered).
impl<O: Observer + ?Sized> Observer for Rc<O> {
    fn operation_start(&self, op: &Operation) {
        (**self).operation_start(op)
    }
    fn operation_end(&self, op: &Operation, outcome: &OperationOutcome<'_>) {
        (**self).operation_end(op, outcome)
    }
    fn pool_acquire(&self, acquire: &PoolAcquire) {
        (**self).pool_acquire(acquire)
    }
    fn pool_release(&self, release: &PoolRelease) {
        (**self).pool_release(release)
    }
}

/// Declares the operations: the enum, each one's name (the span's name and
/// [`Operation::kind`]) and its span. A new operation is one line here.
macro_rules! operations {
    ($($variant:ident => $name:literal,)*) => {
        /// The operations momoko observes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum OpKind {
            $($variant,)*
        }

        impl OpKind {
            /// The operation's name: the span's name, [`Operation::kind`].
            pub(crate) fn name(self) -> &'static str {
                match self {
                    $(OpKind::$variant => $name,)*
                }
            }
        }

        #[cfg(feature = "tracing")]
        fn new_span(kind: OpKind) -> tracing::Span {
            match kind {
                $(OpKind::$variant => spans::operation_span!($name),)*
            }
        }
    };
}

operations! {
    Execute => "execute",
    Callproc => "callproc",
    Query => "query",
    Stream => "stream",
    Prepare => "prepare",
    ExecutePrepared => "execute_prepared",
    ClosePrepared => "close_prepared",
    Transaction => "transaction",
    Batch => "batch",
    CopyIn => "copy_in",
    CopyOut => "copy_out",
    Listen => "listen",
    Unlisten => "unlisten",
    Cancel => "cancel",
    Replication => "replication_command",
}

/// What the statement log does: sqlx's settings, with momoko's opt-in for the rendered SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogSettings {
    pub(crate) statements: LevelFilter,
    pub(crate) slow_statements: LevelFilter,
    pub(crate) slow_threshold: Duration,
    pub(crate) rendered_sql: bool,
}

impl LogSettings {
    /// Every statement at debug, statements of a second or more at warn, no rendered SQL.
    pub(crate) const DEFAULT: LogSettings = LogSettings {
        statements: LevelFilter::Debug,
        slow_statements: LevelFilter::Warn,
        slow_threshold: Duration::from_secs(1),
        rendered_sql: false,
    };

    /// The most verbose of the two levels: whether the logger could want any line.
    #[inline]
    fn enabled(&self) -> bool {
        statement::enabled(self.statements.max(self.slow_statements))
    }
}

/// Statement log settings given one by one (by the builder, or by the connection string's
/// `momoko_*` keywords); `None` leaves the setting to the next source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct LogOverrides {
    pub(crate) statements: Option<LevelFilter>,
    pub(crate) slow_statements: Option<LevelFilter>,
    pub(crate) slow_threshold: Option<Duration>,
    pub(crate) rendered_sql: Option<bool>,
}

impl LogOverrides {
    /// These settings over `base`.
    pub(crate) fn over(&self, base: LogSettings) -> LogSettings {
        LogSettings {
            statements: self.statements.unwrap_or(base.statements),
            slow_statements: self.slow_statements.unwrap_or(base.slow_statements),
            slow_threshold: self.slow_threshold.unwrap_or(base.slow_threshold),
            rendered_sql: self.rendered_sql.unwrap_or(base.rendered_sql),
        }
    }
}

/// What a connection is observed with, as its builder gave it.
#[derive(Clone, Default)]
pub(crate) struct ObserveOptions {
    pub(crate) observer: Option<Rc<dyn Observer>>,
    pub(crate) log: LogOverrides,
}

impl std::fmt::Debug for ObserveOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObserveOptions")
            .field("observer", &self.observer.as_ref().map(|_| "<observer>"))
            .field("log", &self.log)
            .finish()
    }
}

/// What a session is observed with once its connection string is read: the settings
/// resolved (defaults, then the string's keywords, then the builder's), the observer, and
/// the database name (`db.namespace`).
pub(crate) struct Observing {
    log: LogSettings,
    observer: Option<Rc<dyn Observer>>,
    namespace: Option<String>,
}

impl Observing {
    /// From the builder's options and the connection string's keywords.
    pub(crate) fn new(options: &ObserveOptions, config: Option<&crate::Config>) -> Rc<Observing> {
        let from_string = config.map(|c| c.statement_log).unwrap_or_default();
        Rc::new(Observing {
            log: options.log.over(from_string.over(LogSettings::DEFAULT)),
            observer: options.observer.clone(),
            namespace: config.and_then(|c| c.get_dbname().or(c.get_user()).map(str::to_owned)),
        })
    }

    /// The database name (`db.namespace`).
    pub(crate) fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// Whether anything could want to hear of an operation (a span already told).
    #[inline]
    fn active(&self) -> bool {
        self.observer.is_some() || self.log.enabled()
    }
}

/// One operation as the observer, the span and the statement log see it. Nothing in it is a
/// parameter value.
#[derive(Debug, Clone)]
pub struct Operation {
    id: u64,
    kind: OpKind,
    query: String,
    name: Option<String>,
    batch_size: Option<usize>,
    namespace: Option<String>,
    server: Option<(String, u16)>,
}

impl Operation {
    /// A process-wide number pairing `operation_start` with its `operation_end`.
    pub fn id(&self) -> u64 {
        self.id
    }
    /// The operation: `execute`, `query`, `prepare`, `execute_prepared`, `close_prepared`,
    /// `transaction`, `batch`, `callproc`, `copy_in`, `copy_out`, `listen`, `unlisten`,
    /// `cancel` (the span's name too).
    pub fn kind(&self) -> &'static str {
        self.kind.name()
    }
    /// The query as the caller wrote it, placeholders and all (`db.query.text`); a
    /// transaction's or batch's statements joined by `"; "`; empty for `cancel`.
    pub fn query(&self) -> &str {
        &self.query
    }
    /// The query's first keyword, upper-cased (`db.operation.name`): `SELECT`, `INSERT`…;
    /// for a transaction or batch `BATCH SELECT` when every statement starts alike, else
    /// `BATCH`.
    pub fn operation_name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    /// The number of statements of a transaction or batch of two or more
    /// (`db.operation.batch.size`).
    pub fn batch_size(&self) -> Option<usize> {
        self.batch_size
    }
    /// The database name (`db.namespace`).
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }
    /// Where the connection went, host as given and port (`server.address`,
    /// `server.port`), once it is connected.
    pub fn server(&self) -> Option<(&str, u16)> {
        self.server.as_ref().map(|(h, p)| (h.as_str(), *p))
    }
}

/// How an operation ended.
#[derive(Debug, Clone, Copy)]
pub struct OperationOutcome<'a> {
    duration: Duration,
    rows: Option<u64>,
    error: Option<&'a Error>,
}

impl<'a> OperationOutcome<'a> {
    /// From the call that queued it to its answer (`db.client.operation.duration`).
    pub fn duration(&self) -> Duration {
        self.duration
    }
    /// The rows returned (`db.response.returned_rows`): a result's rows, a transaction's
    /// summed, the rows a COPY moved; `None` for a statement that returns none.
    pub fn rows(&self) -> Option<u64> {
        self.rows
    }
    /// The error, if it failed.
    pub fn error(&self) -> Option<&'a Error> {
        self.error
    }
    /// The SQLSTATE of a failure (`db.response.status_code`).
    pub fn sqlstate(&self) -> Option<&'a str> {
        self.error.and_then(Error::code)
    }
    /// `error.type`: the SQLSTATE when there is one, else the kind of error
    /// (`connection`, `timeout`, `usage`…).
    pub fn error_type(&self) -> Option<&'a str> {
        self.error.map(error_type)
    }
}

/// `error.type` of `e`: its SQLSTATE, else its kind in one word.
pub(crate) fn error_type(e: &Error) -> &str {
    if let Some(code) = e.code() {
        return code;
    }
    use crate::error::ErrorKind as K;
    match e.kind() {
        K::Db => "db",
        K::Connection => "connection",
        K::Protocol => "protocol",
        K::Usage => "usage",
        K::Conversion => "conversion",
        K::Pool => "pool",
        K::PartiallyConnected => "partially_connected",
        K::DatabaseNotAvailable => "database_not_available",
        K::Timeout => "timeout",
        K::RowCount => "row_count",
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}

/// What an operation answers, as far as returned rows go.
pub(crate) trait Returned: 'static {
    fn returned_rows(&self) -> Option<u64> {
        None
    }
}

impl Returned for Cursor {
    fn returned_rows(&self) -> Option<u64> {
        self.description().map(|_| self.len() as u64)
    }
}

impl Returned for Vec<Cursor> {
    fn returned_rows(&self) -> Option<u64> {
        self.iter()
            .filter_map(Returned::returned_rows)
            .reduce(|a, b| a + b)
    }
}

impl Returned for u64 {
    fn returned_rows(&self) -> Option<u64> {
        Some(*self)
    }
}

impl Returned for () {}
impl Returned for crate::Prepared {}

/// What a call site says of its operation, asked only when something observes: the
/// query text, and the rendered SQL only when the statement log asks for it.
pub(crate) struct Text {
    pub(crate) query: String,
    pub(crate) rendered: Option<String>,
    pub(crate) statements: Option<Vec<String>>,
}

impl Text {
    /// One query.
    pub(crate) fn query(query: &str) -> Text {
        Text {
            query: query.to_owned(),
            rendered: None,
            statements: None,
        }
    }

    /// One query and, when asked for, its rendering.
    pub(crate) fn rendered(query: &str, rendered: Option<String>) -> Text {
        Text {
            rendered,
            ..Text::query(query)
        }
    }

    /// No query (`cancel`).
    pub(crate) fn none() -> Text {
        Text::query("")
    }

    /// A transaction's or batch's statements.
    pub(crate) fn statements(statements: Vec<String>, rendered: Option<String>) -> Text {
        Text {
            query: statements.join("; "),
            rendered,
            statements: Some(statements),
        }
    }
}

/// Numbers operations across the process.
fn next_operation_id() -> u64 {
    crate::session::next_id()
}

/// Runs one operation under observation: see the module documentation. `describe` is asked
/// only when something observes (its argument: whether the rendered SQL is wanted); `run`
/// queues the operation with the completion it is given.
#[inline]
pub(crate) fn operation<D: Drive, T: Returned>(
    core: &Rc<Core<D>>,
    kind: OpKind,
    describe: impl FnOnce(bool) -> Text,
    done: Done<T>,
    run: impl FnOnce(Done<T>),
) {
    let span = spans::OpSpan::new(kind);
    let observing = core.with(|s| {
        let o = s.observing();
        (span.is_enabled() || o.active()).then(|| o.clone())
    });
    match observing {
        // Nothing observes: the operation as it is, inlined into its caller.
        None => run(done),
        Some(observing) => observed(core, kind, span, observing, describe, done, run),
    }
}

/// [`operation`] when something observes it: kept out of line, so that the path where
/// nothing does stays as short as the operation itself.
#[inline(never)]
fn observed<D: Drive, T: Returned>(
    core: &Rc<Core<D>>,
    kind: OpKind,
    span: spans::OpSpan,
    observing: Rc<Observing>,
    describe: impl FnOnce(bool) -> Text,
    done: Done<T>,
    run: impl FnOnce(Done<T>),
) {
    let started = core.driver.now();
    let text = describe(observing.log.rendered_sql);
    let (name, batch_size) = match &text.statements {
        Some(list) => (batch_name(list), (list.len() >= 2).then_some(list.len())),
        None => (first_keyword(&text.query), None),
    };
    let op = Rc::new(Operation {
        id: next_operation_id(),
        kind,
        query: text.query,
        name,
        batch_size,
        namespace: observing.namespace.clone(),
        server: core.with(|s| s.reached()),
    });
    span.start(&op);
    if let Some(observer) = observing.observer.clone() {
        let op = op.clone();
        core.answer_later(
            Done::new(move |_: Result<(), Error>| observer.operation_start(&op)),
            Ok(()),
        );
    }
    let weak = Rc::downgrade(core);
    let rendered = text.rendered;
    let wrapped_span = span.clone();
    let wrapped = Done::new(move |r| {
        finish(
            Finish {
                op,
                span: wrapped_span,
                observing,
                started,
                rendered,
                core: weak,
            },
            &r,
        );
        done.call(r)
    });
    let _entered = span.enter();
    run(wrapped);
}

/// What the completion of an observed operation holds.
struct Finish<D> {
    op: Rc<Operation>,
    span: spans::OpSpan,
    observing: Rc<Observing>,
    started: Instant,
    rendered: Option<String>,
    core: Weak<Core<D>>,
}

/// The operation is answered: the span records the outcome and closes, the statement is
/// logged inside it, then the observer is told, outside it.
fn finish<D: Drive, T: Returned>(f: Finish<D>, r: &Result<T, Error>) {
    // The driver's clock, as the start was read; a connection already gone reads the system's.
    let now = f
        .core
        .upgrade()
        .map_or_else(Instant::now, |c| c.driver.now());
    let duration = now.saturating_duration_since(f.started);
    let mut op = f.op;
    let server_known = op.server.is_some();
    if !server_known {
        // Queued before the connection was up: where it went is known now.
        if let Some(server) = f.core.upgrade().and_then(|c| c.with(|s| s.reached())) {
            Rc::make_mut(&mut op).server = Some(server);
        }
    }
    let outcome = OperationOutcome {
        duration,
        rows: r.as_ref().ok().and_then(Returned::returned_rows),
        error: r.as_ref().err(),
    };
    {
        let _entered = f.span.enter();
        f.span.end(&op, &outcome, !server_known);
        statement::log(&f.observing.log, &op, &outcome, f.rendered.as_deref());
    }
    f.span.close();
    if let Some(observer) = &f.observing.observer {
        observer.operation_end(&op, &outcome);
    }
}

/// `db.operation.name` of a batch: `BATCH SELECT` when every statement starts with the same
/// keyword, else `BATCH`.
fn batch_name(statements: &[String]) -> Option<String> {
    let mut names = statements.iter().map(|s| first_keyword(s));
    let first = names.next()??;
    if names.all(|n| n.as_deref() == Some(first.as_str())) {
        Some(format!("BATCH {first}"))
    } else {
        Some("BATCH".to_owned())
    }
}

/// The first keyword of a query, upper-cased, after blanks, comments and opening
/// parentheses (`db.operation.name`). Walsender commands are one word with underscores
/// (`IDENTIFY_SYSTEM`, `CREATE_REPLICATION_SLOT`).
pub(crate) fn first_keyword(query: &str) -> Option<String> {
    let mut rest = query;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '(');
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |(_, after)| after);
        } else {
            break;
        }
    }
    let word: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphabetic() || *c == '_')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (!word.is_empty()).then_some(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_keyword_skips_blanks_comments_and_parentheses() {
        assert_eq!(first_keyword("select 1").as_deref(), Some("SELECT"));
        assert_eq!(
            first_keyword("  -- why\n /* a */ (SELECT 1) UNION (SELECT 2)").as_deref(),
            Some("SELECT")
        );
        assert_eq!(
            first_keyword("\tinsert into t values (%s)").as_deref(),
            Some("INSERT")
        );
        assert_eq!(
            first_keyword("CREATE_REPLICATION_SLOT s LOGICAL pgoutput").as_deref(),
            Some("CREATE_REPLICATION_SLOT")
        );
        assert_eq!(first_keyword("").as_deref(), None);
        assert_eq!(first_keyword("-- only a comment").as_deref(), None);
        assert_eq!(first_keyword("/* unterminated").as_deref(), None);
    }

    #[test]
    fn a_batch_is_named_after_its_statements_when_they_agree() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            batch_name(&s(&[
                "INSERT INTO a VALUES (1)",
                "insert into b values (2)"
            ]))
            .as_deref(),
            Some("BATCH INSERT")
        );
        assert_eq!(
            batch_name(&s(&["INSERT INTO a VALUES (1)", "SELECT 1"])).as_deref(),
            Some("BATCH")
        );
    }

    #[test]
    fn builder_settings_win_over_the_strings_which_win_over_the_defaults() {
        let string = LogOverrides {
            statements: Some(LevelFilter::Info),
            slow_threshold: Some(Duration::from_millis(10)),
            ..Default::default()
        };
        let builder = LogOverrides {
            statements: Some(LevelFilter::Off),
            ..Default::default()
        };
        assert_eq!(
            builder.over(string.over(LogSettings::DEFAULT)),
            LogSettings {
                statements: LevelFilter::Off,
                slow_statements: LevelFilter::Warn,
                slow_threshold: Duration::from_millis(10),
                rendered_sql: false,
            }
        );
    }
}
