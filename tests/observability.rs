//! Observing momoko (issue 28): the observer hooks and the statement log on the default
//! build (through `log`), and with `--features tracing` the spans with OpenTelemetry's
//! database names and the statement log as `tracing` events. Every test checks exact names
//! and values; the last ones show that no parameter value and no password reaches a span, an
//! event or a log line.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{dsn, run, server};
use momoko::observe::{Operation, OperationOutcome, PoolAcquire, PoolRelease};
use momoko::{Connection, LevelFilter, MioConnection, Observer, Pool};

// ---- an observer that writes down what it is told ----

/// What an observer heard, one line per call, in order.
#[derive(Clone, Default)]
struct Heard(Rc<RefCell<Vec<String>>>);

impl Heard {
    fn lines(&self) -> Vec<String> {
        self.0.borrow().clone()
    }
}

impl Observer for Heard {
    fn operation_start(&self, op: &Operation) {
        self.0.borrow_mut().push(format!(
            "start {} {:?} name={:?} batch={:?} db={:?}",
            op.kind(),
            op.query(),
            op.operation_name(),
            op.batch_size(),
            op.namespace(),
        ));
    }
    fn operation_end(&self, op: &Operation, outcome: &OperationOutcome<'_>) {
        assert!(outcome.duration() < Duration::from_secs(10));
        self.0.borrow_mut().push(format!(
            "end {} rows={:?} sqlstate={:?} error_type={:?} server={}",
            op.kind(),
            outcome.rows(),
            outcome.sqlstate(),
            outcome.error_type(),
            op.server().is_some(),
        ));
    }
    fn pool_acquire(&self, a: &PoolAcquire) {
        assert!(a.wait < Duration::from_secs(10));
        self.0.borrow_mut().push(format!(
            "acquire {} created={} error={:?} used={}",
            a.pool,
            a.created,
            a.error.as_ref().map(|e| e.kind()),
            a.stats.busy,
        ));
    }
    fn pool_release(&self, r: &PoolRelease) {
        assert!(r.use_time < Duration::from_secs(10));
        self.0
            .borrow_mut()
            .push(format!("release {} idle={}", r.pool, r.stats.free));
    }
}

fn database() -> String {
    server().dbname.clone()
}

#[test]
fn an_observer_hears_an_operation_start_and_end_from_the_loop_never_inside_the_call() {
    let heard = Heard::default();
    let h = heard.clone();
    run(async move {
        let conn = Connection::builder(&dsn())
            .observer(h.clone())
            .connect()
            .await
            .unwrap();
        let fut = conn.execute("SELECT %s::int AS n FROM generate_series(1, 3)", (7,));
        assert!(
            h.lines().is_empty(),
            "told inside the call: {:?}",
            h.lines()
        );
        let cursor = fut.await.unwrap();
        assert_eq!(cursor.len(), 3);
        // Told before the future resolved.
        assert_eq!(
            h.lines(),
            [
                format!(
                    "start execute \"SELECT %s::int AS n FROM generate_series(1, 3)\" \
                     name=Some(\"SELECT\") batch=None db=Some({:?})",
                    database()
                ),
                "end execute rows=Some(3) sqlstate=None error_type=None server=true".to_owned(),
            ]
        );
    });
}

#[test]
fn an_observer_hears_a_stream_with_the_rows_it_handed_out() {
    let heard = Heard::default();
    let h = heard.clone();
    run(async move {
        let conn = Connection::builder(&dsn())
            .observer(h.clone())
            .connect()
            .await
            .unwrap();
        let n = conn
            .stream("SELECT g FROM generate_series(1, $1) g", (5i32,), |_| {})
            .await
            .unwrap();
        assert_eq!(n, 5);
        assert_eq!(
            h.lines(),
            [
                format!(
                    "start stream \"SELECT g FROM generate_series(1, $1) g\" \
                     name=Some(\"SELECT\") batch=None db=Some({:?})",
                    database()
                ),
                "end stream rows=Some(5) sqlstate=None error_type=None server=true".to_owned(),
            ]
        );
    });
}

#[test]
fn an_observer_hears_a_failed_query_with_its_sqlstate_and_a_transaction_as_a_batch() {
    let heard = Heard::default();
    let h = heard.clone();
    run(async move {
        let conn = Connection::builder(&dsn())
            .observer(h.clone())
            .connect()
            .await
            .unwrap();
        let e = conn.query("SELECT 1/$1::int", (0,)).await.unwrap_err();
        assert_eq!(e.code(), Some("22012"));
        conn.transaction(vec![
            "INSERT INTO nowhere VALUES (1)",
            "INSERT INTO elsewhere VALUES (2)",
        ])
        .await
        .unwrap_err();
        let db = database();
        assert_eq!(
            h.lines(),
            [
                format!(
                    "start query \"SELECT 1/$1::int\" name=Some(\"SELECT\") batch=None db=Some({db:?})"
                ),
                "end query rows=None sqlstate=Some(\"22012\") error_type=Some(\"22012\") server=true"
                    .to_owned(),
                format!(
                    "start transaction \"INSERT INTO nowhere VALUES (1); INSERT INTO elsewhere VALUES (2)\" \
                     name=Some(\"BATCH INSERT\") batch=Some(2) db=Some({db:?})"
                ),
                "end transaction rows=None sqlstate=Some(\"42P01\") error_type=Some(\"42P01\") server=true"
                    .to_owned(),
            ]
        );
    });
}

#[test]
fn an_observer_on_a_mio_connection_is_told_from_dispatch() {
    use mio::{Events, Poll, Token};
    let heard = Heard::default();
    let mut poll = Poll::new().unwrap();
    let conn = MioConnection::builder(&dsn())
        .observer(heard.clone())
        .build_mio(|r| r.unwrap());
    conn.register(poll.registry(), Token(1)).unwrap();
    let got = Rc::new(RefCell::new(None));
    let g = got.clone();
    conn.execute("SELECT 42", (), move |r| {
        *g.borrow_mut() = Some(r.unwrap().len())
    });
    assert!(heard.lines().is_empty());
    let mut events = Events::with_capacity(16);
    let give_up = Instant::now() + Duration::from_secs(10);
    while got.borrow().is_none() {
        assert!(Instant::now() < give_up, "the query did not finish");
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .unwrap();
        for e in events.iter() {
            conn.handle_event(poll.registry(), e);
        }
        conn.handle_timeout(poll.registry(), Instant::now());
        conn.dispatch(poll.registry());
    }
    assert_eq!(*got.borrow(), Some(1));
    assert_eq!(
        heard.lines(),
        [
            format!(
                "start execute \"SELECT 42\" name=Some(\"SELECT\") batch=None db=Some({:?})",
                database()
            ),
            "end execute rows=Some(1) sqlstate=None error_type=None server=true".to_owned(),
        ]
    );
}

#[test]
fn a_pool_observer_hears_acquire_and_release_with_the_pools_figures() {
    let heard = Heard::default();
    let h = heard.clone();
    run(async move {
        let pool = Pool::builder(&dsn())
            .size(1)
            .name("orders")
            .observer(h.clone())
            .build()
            .unwrap();
        pool.connect().await.unwrap();
        pool.execute("SELECT 1", ()).await.unwrap();
        common::wait_until(5, "the release is told", || {
            h.lines().iter().any(|l| l.starts_with("release"))
        })
        .await;
        let lines = h.lines();
        assert_eq!(
            lines,
            [
                "acquire orders created=false error=None used=1".to_owned(),
                format!(
                    "start execute \"SELECT 1\" name=Some(\"SELECT\") batch=None db=Some({:?})",
                    database()
                ),
                "end execute rows=Some(1) sqlstate=None error_type=None server=true".to_owned(),
                "release orders idle=1".to_owned(),
            ]
        );
        assert_eq!(pool.name(), "orders");
    });
}

#[test]
fn a_pool_observer_hears_an_acquisition_that_opened_a_connection_and_one_that_timed_out() {
    let heard = Heard::default();
    let h = heard.clone();
    run(async move {
        let pool = Pool::builder(&dsn())
            .size(1)
            .max_size(2)
            .name("stretchy")
            .acquire_timeout(Duration::from_millis(50))
            .observer(h.clone())
            .build()
            .unwrap();
        pool.connect().await.unwrap();
        // Taking the last free connection stretches the pool by one (Momoko's rule: the
        // next request finds it opening).
        let first = pool.getconn(false).await.unwrap();
        let second = pool.getconn(false).await.unwrap();
        // Both held, at max_size: this one waits 50 ms and gives up.
        let e = pool.execute("SELECT 1", ()).await.unwrap_err();
        assert_eq!(e.kind(), momoko::ErrorKind::Timeout);
        common::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            h.lines(),
            [
                "acquire stretchy created=true error=None used=1",
                "acquire stretchy created=false error=None used=2",
                "acquire stretchy created=false error=Some(Timeout) used=2",
            ]
        );
        pool.putconn(first).unwrap();
        pool.putconn(second).unwrap();
    });
}

#[test]
fn pool_figures_carry_the_opentelemetry_names() {
    run(async move {
        let pool = Pool::builder(&dsn()).size(2).build().unwrap();
        pool.connect().await.unwrap();
        let held = pool.getconn(false).await.unwrap();
        let stats = pool.stats();
        let figures: Vec<(&str, Option<&str>, &str, f64)> = stats
            .metrics()
            .iter()
            .filter(|m| !m.name.ends_with("_time"))
            .map(|m| (m.name, m.state, m.unit, m.value))
            .collect();
        assert_eq!(
            figures,
            [
                (
                    "db.client.connection.count",
                    Some("idle"),
                    "{connection}",
                    1.0
                ),
                (
                    "db.client.connection.count",
                    Some("used"),
                    "{connection}",
                    1.0
                ),
                ("db.client.connection.idle.min", None, "{connection}", 2.0),
                ("db.client.connection.max", None, "{connection}", 2.0),
                (
                    "db.client.connection.pending_requests",
                    None,
                    "{request}",
                    0.0
                ),
                ("db.client.connection.timeouts", None, "{timeout}", 0.0),
            ]
        );
        assert_eq!(stats.connection_count("used"), 1);
        let names: Vec<&str> = stats.metrics().iter().map(|m| m.name).collect();
        assert!(names.contains(&"db.client.connection.wait_time"));
        assert!(names.contains(&"db.client.connection.use_time"));
        // The default name: the database at the first host.
        let s = server();
        assert_eq!(pool.name(), format!("{}@{}:{}", s.dbname, s.host, s.port));
        pool.putconn(held).unwrap();
    });
}

// ---- a logger and a subscriber that keep what they are given ----

/// Every log line of this test binary, `LEVEL target: message`.
fn log_lines() -> &'static Mutex<Vec<String>> {
    static LINES: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        struct Keep;
        impl log::Log for Keep {
            fn enabled(&self, _: &log::Metadata<'_>) -> bool {
                true
            }
            fn log(&self, r: &log::Record<'_>) {
                let line = format!("{} {}: {}", r.level(), r.target(), r.args());
                log_lines().lock().unwrap().push(line);
            }
            fn flush(&self) {}
        }
        static KEEP: Keep = Keep;
        log::set_logger(&KEEP).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    });
    LINES.get_or_init(Mutex::default)
}

/// The log lines that mention `marker` (tests run in parallel: each query carries its own).
#[cfg(not(feature = "tracing"))]
fn logged(marker: &str) -> Vec<String> {
    log_lines()
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(marker))
        .cloned()
        .collect()
}

/// The statement log through `log` (without the `tracing` feature).
#[cfg(not(feature = "tracing"))]
mod statement_log {
    use super::*;

    #[test]
    fn every_statement_is_logged_at_debug_and_a_slow_one_at_warn_with_the_template_only() {
        log_lines();
        run(async move {
            let conn = Connection::builder(&dsn())
                .log_slow_statements(LevelFilter::Warn, Duration::from_millis(10))
                .connect()
                .await
                .unwrap();
            conn.execute("SELECT %s::int /* fast-7f3 */", (5,))
                .await
                .unwrap();
            conn.execute("SELECT pg_sleep(%s) /* slow-7f3 */", (0.05,))
                .await
                .unwrap();
            conn.execute("SELECT 1/%s /* fails-7f3 */", (0,))
                .await
                .unwrap_err();
        });
        let fast = logged("fast-7f3");
        assert_eq!(fast.len(), 1, "{fast:?}");
        assert!(
            fast[0].starts_with(
                "DEBUG momoko::statement: execute: SELECT %s::int /* fast-7f3 */; rows: 1; elapsed: "
            ),
            "{fast:?}"
        );
        let slow = logged("slow-7f3");
        assert_eq!(slow.len(), 1, "{slow:?}");
        assert!(
            slow[0].starts_with(
                "WARN momoko::statement: slow statement: execution time exceeded alert threshold: \
                 execute: SELECT pg_sleep(%s) /* slow-7f3 */; rows: 1; elapsed: "
            ),
            "{slow:?}"
        );
        assert!(slow[0].ends_with("; threshold: 10ms"), "{slow:?}");
        let fails = logged("fails-7f3");
        assert_eq!(fails.len(), 1, "{fails:?}");
        assert!(fails[0].ends_with("; sqlstate: 22012"), "{fails:?}");
    }

    #[test]
    fn the_connection_strings_keywords_set_the_statement_log_and_the_builder_wins() {
        log_lines();
        run(async move {
            let conn = momoko::connect(&format!(
                "{} momoko_log_statements=info momoko_slow_statement_ms=60000",
                dsn()
            ))
            .await
            .unwrap();
            conn.execute("SELECT 1 /* kw-info-7f3 */", ())
                .await
                .unwrap();
            let quiet = Connection::builder(&format!("{} momoko_log_statements=info", dsn()))
                .disable_statement_logging()
                .connect()
                .await
                .unwrap();
            quiet
                .execute("SELECT 1 /* kw-off-7f3 */", ())
                .await
                .unwrap();
        });
        let info = logged("kw-info-7f3");
        assert_eq!(info.len(), 1, "{info:?}");
        assert!(
            info[0].starts_with("INFO momoko::statement: execute: SELECT 1"),
            "{info:?}"
        );
        assert!(logged("kw-off-7f3").is_empty());
    }

    #[test]
    fn the_rendered_sql_is_logged_only_when_asked_for() {
        log_lines();
        run(async move {
            let conn = Connection::builder(&dsn())
                .log_statements(LevelFilter::Info)
                .log_rendered_sql(true)
                .connect()
                .await
                .unwrap();
            conn.execute("SELECT %s::text /* rendered-7f3 */", ("it's",))
                .await
                .unwrap();
            conn.query("SELECT $1::text /* values-7f3 */", ("abc",))
                .await
                .unwrap();
        });
        let line = logged("rendered-7f3");
        assert_eq!(line.len(), 1, "{line:?}");
        assert!(
            line[0].ends_with("; rendered: SELECT 'it''s'::text /* rendered-7f3 */"),
            "{line:?}"
        );
        let line = logged("values-7f3");
        assert!(
            line[0].ends_with("; rendered: SELECT $1::text /* values-7f3 */ -- parameters: 'abc'"),
            "{line:?}"
        );
    }
}

/// A value and a password that must never be seen, and what was seen.
const SECRET_VALUE: &str = "s3cr3t-value-q9z";

/// Runs queries whose parameters hold [`SECRET_VALUE`] (one fails, and the server's message
/// quotes it), and connects with a password, the right one and a wrong one.
async fn use_secrets() -> Option<String> {
    let conn = Connection::builder(&dsn())
        .log_statements(LevelFilter::Trace)
        .log_slow_statements(LevelFilter::Warn, Duration::ZERO)
        .connect()
        .await
        .unwrap();
    conn.execute("SELECT %s::text", (SECRET_VALUE,))
        .await
        .unwrap();
    conn.query("SELECT $1::text", (SECRET_VALUE,))
        .await
        .unwrap();
    let e = conn
        .execute("SELECT %s::int", (SECRET_VALUE,))
        .await
        .unwrap_err();
    assert!(e.to_string().contains(SECRET_VALUE), "{e}");
    conn.transaction(vec![("SELECT %s::text", (SECRET_VALUE,))])
        .await
        .unwrap();
    let scram = server().dsn_scram.clone()?;
    let c = momoko::connect(&scram).await.unwrap();
    c.execute("SELECT 1", ()).await.unwrap();
    momoko::connect(&format!("{scram} password=not-the-{SECRET_VALUE}"))
        .await
        .unwrap_err();
    Some(momoko_testpg::SCRAM_PASSWORD.to_owned())
}

#[cfg(not(feature = "tracing"))]
#[test]
fn no_parameter_value_and_no_password_reaches_a_log_line() {
    log_lines();
    let password = run(use_secrets());
    assert!(
        password.is_some() || !server().own,
        "the SCRAM login was tried"
    );
    let lines = log_lines().lock().unwrap().clone();
    assert!(
        lines.iter().any(|l| l.contains("SELECT %s::int")),
        "the statements were logged"
    );
    for l in &lines {
        assert!(!l.contains(SECRET_VALUE), "a value was logged: {l}");
        if let Some(p) = &password {
            assert!(!l.contains(p.as_str()), "a password was logged: {l}");
        }
    }
}

/// The spans and events, with a subscriber of the test's own.
#[cfg(feature = "tracing")]
mod spans {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Subscriber};
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
    use tracing_subscriber::registry::LookupSpan;

    /// One span as recorded: its name, its parent's name, every field given a value.
    #[derive(Debug, Clone, Default)]
    pub(super) struct SpanRec {
        pub name: String,
        pub parent: Option<String>,
        pub fields: BTreeMap<String, String>,
        pub closed: bool,
    }

    /// One event: level, target, the span it was in, its fields (`message` among them).
    #[derive(Debug, Clone)]
    pub(super) struct EventRec {
        pub level: String,
        pub target: String,
        pub span: Option<String>,
        pub fields: BTreeMap<String, String>,
    }

    #[derive(Default)]
    pub(super) struct Seen {
        pub spans: Vec<(u64, SpanRec)>,
        pub events: Vec<EventRec>,
    }

    /// Records every span and event given to it.
    #[derive(Clone, Default)]
    pub(super) struct Recorder(pub Arc<Mutex<Seen>>);

    struct Fields<'a>(&'a mut BTreeMap<String, String>);

    impl Visit for Fields<'_> {
        fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
            self.0.insert(f.name().to_owned(), format!("{v:?}"));
        }
        fn record_str(&mut self, f: &Field, v: &str) {
            self.0.insert(f.name().to_owned(), v.to_owned());
        }
    }

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
            let mut rec = SpanRec {
                name: attrs.metadata().name().to_owned(),
                parent: ctx
                    .span(id)
                    .and_then(|s| s.parent())
                    .map(|p| p.name().to_owned()),
                ..Default::default()
            };
            attrs.record(&mut Fields(&mut rec.fields));
            self.0.lock().unwrap().spans.push((id.into_u64(), rec));
        }
        fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
            let mut seen = self.0.lock().unwrap();
            if let Some((_, rec)) = seen
                .spans
                .iter_mut()
                .rev()
                .find(|(i, _)| *i == id.into_u64())
            {
                values.record(&mut Fields(&mut rec.fields));
            }
        }
        fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
            let mut fields = BTreeMap::new();
            event.record(&mut Fields(&mut fields));
            let span = ctx.lookup_current().map(|s| s.name().to_owned());
            self.0.lock().unwrap().events.push(EventRec {
                level: event.metadata().level().to_string(),
                target: event.metadata().target().to_owned(),
                span,
                fields,
            });
        }
        fn on_close(&self, id: Id, _: Context<'_, S>) {
            let mut seen = self.0.lock().unwrap();
            if let Some((_, rec)) = seen
                .spans
                .iter_mut()
                .rev()
                .find(|(i, _)| *i == id.into_u64())
            {
                rec.closed = true;
            }
        }
    }

    /// Runs `f` with a subscriber of its own on this thread (the loop runs here too), and
    /// returns what it recorded.
    pub(super) fn record<T>(f: impl FnOnce() -> T) -> (T, Seen) {
        let recorder = Recorder::default();
        let subscriber = tracing_subscriber::registry().with(recorder.clone());
        let out = tracing::subscriber::with_default(subscriber, f);
        let seen = std::mem::take(&mut *recorder.0.lock().unwrap());
        (out, seen)
    }

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn named<'a>(seen: &'a Seen, name: &str) -> Vec<&'a SpanRec> {
        seen.spans
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.name == name)
            .collect()
    }

    #[test]
    fn a_query_has_one_client_span_with_the_conventions_attributes() {
        let s = server();
        let ((), seen) = record(|| {
            run(async {
                let conn = Connection::builder(&dsn())
                    .disable_statement_logging()
                    .connect()
                    .await
                    .unwrap();
                let mut c = conn.query("SELECT $1::int + 1 AS n", (41,)).await.unwrap();
                // The span is closed before the caller's code runs.
                assert!(tracing::Span::current().is_none());
                assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 42);
            })
        });
        let spans = named(&seen, "query");
        assert_eq!(spans.len(), 1, "{:?}", seen.spans);
        assert!(spans[0].closed);
        assert_eq!(
            spans[0].fields,
            fields(&[
                ("otel.kind", "client"),
                ("otel.name", "SELECT"),
                ("db.system.name", "postgresql"),
                ("db.namespace", &s.dbname),
                ("db.query.text", "SELECT $1::int + 1 AS n"),
                ("db.query.summary", "SELECT"),
                ("db.operation.name", "SELECT"),
                ("server.address", &s.host),
                ("server.port", &s.port.to_string()),
                ("db.response.returned_rows", "1"),
            ])
        );
    }

    #[test]
    fn a_replication_command_has_a_client_span_of_its_own() {
        let s = server();
        let ((), seen) = record(|| {
            run(async {
                let repl = momoko::replication::ReplicationConnection::connect(&dsn())
                    .await
                    .unwrap();
                let sys = repl.identify_system().await.unwrap();
                assert_eq!(sys.dbname(), Some(s.dbname.as_str()));
                repl.close();
            })
        });
        let spans = named(&seen, "replication_command");
        assert_eq!(spans.len(), 1, "{:?}", seen.spans);
        assert!(spans[0].closed);
        let f = &spans[0].fields;
        assert_eq!(f["otel.kind"], "client");
        assert_eq!(f["db.system.name"], "postgresql");
        assert_eq!(f["db.query.text"], "IDENTIFY_SYSTEM");
        assert_eq!(f["db.operation.name"], "IDENTIFY_SYSTEM");
        assert_eq!(f["db.response.returned_rows"], "1");
    }

    #[test]
    fn a_failed_query_records_its_sqlstate_and_error_type() {
        let ((), seen) = record(|| {
            run(async {
                let conn = momoko::connect(&dsn()).await.unwrap();
                conn.execute("SELECT * FROM no_such_table WHERE a = %s", (1,))
                    .await
                    .unwrap_err();
            })
        });
        let spans = named(&seen, "execute");
        assert_eq!(spans.len(), 1);
        let f = &spans[0].fields;
        assert_eq!(f["db.response.status_code"], "42P01");
        assert_eq!(f["error.type"], "42P01");
        assert_eq!(
            f["db.query.text"],
            "SELECT * FROM no_such_table WHERE a = %s"
        );
        assert!(!f.contains_key("db.response.returned_rows"));
        // The statement's event is inside the span, with the same attributes.
        let ev: Vec<_> = seen
            .events
            .iter()
            .filter(|e| e.target == "momoko::statement")
            .collect();
        assert_eq!(ev.len(), 1, "{:?}", seen.events);
        assert_eq!(ev[0].level, "DEBUG");
        assert_eq!(ev[0].span.as_deref(), Some("execute"));
        assert_eq!(ev[0].fields["db.response.status_code"], "42P01");
        assert_eq!(ev[0].fields["message"], "execute");
    }

    #[test]
    fn a_pooled_query_records_its_acquisition_and_wait() {
        let ((), seen) = record(|| {
            run(async {
                let pool = Pool::builder(&dsn())
                    .size(1)
                    .name("checkout")
                    .build()
                    .unwrap();
                pool.connect().await.unwrap();
                let held = pool.getconn(false).await.unwrap();
                let p = pool.clone();
                let waiting = momoko::ioloop::IoLoop::current().spawn(async move {
                    p.execute("SELECT 2", ()).await.unwrap();
                });
                common::sleep(Duration::from_millis(30)).await;
                pool.putconn(held).unwrap();
                waiting.await;
            })
        });
        let acquires = named(&seen, "pool.acquire");
        assert_eq!(acquires.len(), 2, "{:?}", seen.spans);
        for a in &acquires {
            assert_eq!(a.fields["db.client.connection.pool.name"], "checkout");
            assert_eq!(a.fields["db.system.name"], "postgresql");
            assert_eq!(a.fields["momoko.pool.created"], "false");
            assert!(a.closed);
        }
        let waited: f64 = acquires[1].fields["db.client.connection.wait_time"]
            .parse()
            .unwrap();
        assert!((0.025..5.0).contains(&waited), "{waited}");
        let exec = named(&seen, "execute");
        assert_eq!(exec.len(), 1);
        assert_eq!(exec[0].fields["db.query.text"], "SELECT 2");
        assert_eq!(exec[0].fields["db.response.returned_rows"], "1");
    }

    #[test]
    fn a_connect_over_a_host_list_records_the_attempt_that_failed_and_the_one_that_worked() {
        let s = server();
        let bad = common::refused_port();
        let ((), seen) = record(|| {
            run(async move {
                let dsn = format!(
                    "host=127.0.0.1,127.0.0.1 port={bad},{} dbname={} user={}",
                    s.port,
                    s.dbname,
                    momoko_testpg::USER
                );
                momoko::connect(&dsn).await.unwrap();
            })
        });
        let connects = named(&seen, "connect");
        assert_eq!(connects.len(), 1, "{:?}", seen.spans);
        assert_eq!(
            connects[0].fields,
            fields(&[
                ("otel.kind", "client"),
                ("db.system.name", "postgresql"),
                ("db.namespace", &s.dbname),
                ("momoko.reconnect", "false"),
                ("momoko.attempts", "2"),
                ("server.address", "127.0.0.1"),
                ("server.port", &s.port.to_string()),
            ])
        );
        let attempts = named(&seen, "connect_attempt");
        assert_eq!(attempts.len(), 2, "{:?}", seen.spans);
        let mut failed = attempts[0].fields.clone();
        let why = failed.remove("momoko.error").unwrap();
        assert!(why.contains("could not connect to the server"), "{why}");
        assert_eq!(
            failed,
            fields(&[
                ("otel.kind", "client"),
                ("server.address", "127.0.0.1"),
                ("server.port", &bad.to_string()),
                ("network.peer.address", "127.0.0.1"),
                ("momoko.second_try", "false"),
                ("error.type", "connection"),
            ])
        );
        let worked = &attempts[1].fields;
        assert_eq!(worked["server.port"], s.port.to_string());
        assert_eq!(
            worked["momoko.tls"], "true",
            "sslmode=prefer on a TLS server"
        );
        assert!(!worked.contains_key("error.type"));
        assert_eq!(attempts[1].parent.as_deref(), Some("connect"));
    }

    #[test]
    fn a_scram_login_records_its_method_and_a_wrong_password_its_sqlstate() {
        let Some(scram) = server().dsn_scram.clone() else {
            eprintln!("skipped: no SCRAM login on this server");
            return;
        };
        let ((), seen) = record(|| {
            run(async move {
                momoko::connect(&scram).await.unwrap();
                momoko::connect(&format!("{scram} password=wrong"))
                    .await
                    .unwrap_err();
            })
        });
        let attempts = named(&seen, "connect_attempt");
        // The wrong password is tried over TLS, then (sslmode=prefer, as libpq) without.
        assert_eq!(attempts.len(), 3, "{:?}", seen.spans);
        assert_eq!(attempts[0].fields["momoko.auth"], "SCRAM-SHA-256-PLUS");
        assert!(!attempts[0].fields.contains_key("error.type"));
        assert_eq!(attempts[1].fields["momoko.auth"], "SCRAM-SHA-256-PLUS");
        assert_eq!(attempts[1].fields["error.type"], "28P01");
        assert_eq!(attempts[2].fields["momoko.second_try"], "true");
        assert_eq!(attempts[2].fields["momoko.auth"], "SCRAM-SHA-256");
        assert_eq!(attempts[2].fields["error.type"], "28P01");
        let connects = named(&seen, "connect");
        assert_eq!(connects[1].fields["error.type"], "28P01");
    }

    #[test]
    fn a_reconnect_is_marked_and_one_that_lands_elsewhere_is_a_failover() {
        let (_relay, through_relay) = common::relay();
        let ((), seen) = record(|| {
            run(async move {
                let conn = momoko::connect(&dsn()).await.unwrap();
                conn.close();
                conn.connect().await.unwrap();
                conn.close();
                conn.set_dsn(&through_relay);
                conn.connect().await.unwrap();
            })
        });
        let connects: Vec<_> = named(&seen, "connect")
            .iter()
            .map(|s| {
                (
                    s.fields["momoko.reconnect"].clone(),
                    s.fields.get("momoko.failover").cloned(),
                )
            })
            .collect();
        assert_eq!(
            connects,
            [
                ("false".to_owned(), None),
                ("true".to_owned(), Some("false".to_owned())),
                ("true".to_owned(), Some("true".to_owned())),
            ]
        );
    }

    #[test]
    fn a_failed_health_check_and_a_retirement_have_spans_of_their_own() {
        let ((), seen) = record(|| {
            run(async {
                let pool = Pool::builder(&dsn())
                    .size(1)
                    .name("aging")
                    .health_check_after(Duration::ZERO)
                    .build()
                    .unwrap();
                pool.connect().await.unwrap();
                let pid: i32 = pool
                    .execute("SELECT pg_backend_pid()", ())
                    .await
                    .unwrap()
                    .fetchone()
                    .unwrap()
                    .get(0);
                // Terminated from another thread while this loop does not poll: the pool
                // has not seen the socket close when it hands the connection out.
                let dsn = dsn();
                std::thread::spawn(move || {
                    momoko::ioloop::IoLoop::new()
                        .run_sync_timeout(
                            async move {
                                let admin = momoko::connect(&dsn).await.unwrap();
                                admin
                                    .execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
                                    .await
                                    .unwrap();
                            },
                            Duration::from_secs(20),
                        )
                        .unwrap()
                })
                .join()
                .unwrap();
                // The idle connection is found dead by its check, replaced, and the query
                // runs on the new one.
                pool.execute("SELECT 1", ()).await.unwrap();
                pool.drain().unwrap();
                common::sleep(Duration::from_millis(50)).await;
            })
        });
        let checks = named(&seen, "pool.health_check_failed");
        let retired = named(&seen, "pool.retire");
        assert_eq!(checks.len(), 1, "{:?}", seen.spans);
        assert_eq!(checks[0].fields["db.client.connection.pool.name"], "aging");
        // The server's goodbye (57P01) when it was read first, else the closed socket.
        let t = &checks[0].fields["error.type"];
        assert!(t == "57P01" || t == "connection", "{t}");
        assert_eq!(retired.len(), 1, "{:?}", seen.spans);
        assert_eq!(retired[0].fields["momoko.reason"], "drained");
        assert_eq!(retired[0].fields["db.client.connection.pool.name"], "aging");
    }

    #[test]
    fn a_slow_statement_is_a_warn_event_inside_its_span() {
        let ((), seen) = record(|| {
            run(async {
                let conn = Connection::builder(&dsn())
                    .log_statements(LevelFilter::Off)
                    .log_slow_statements(LevelFilter::Warn, Duration::from_millis(10))
                    .connect()
                    .await
                    .unwrap();
                conn.execute("SELECT 1", ()).await.unwrap();
                conn.execute("SELECT pg_sleep(%s)", (0.05,)).await.unwrap();
            })
        });
        let ev: Vec<_> = seen
            .events
            .iter()
            .filter(|e| e.target == "momoko::statement")
            .collect();
        assert_eq!(ev.len(), 1, "only the slow one: {:?}", seen.events);
        let e = ev[0];
        assert_eq!(e.level, "WARN");
        assert_eq!(e.span.as_deref(), Some("execute"));
        assert_eq!(
            e.fields["message"],
            "slow statement: execution time exceeded alert threshold"
        );
        assert_eq!(e.fields["db.query.text"], "SELECT pg_sleep(%s)");
        assert_eq!(e.fields["db.operation.name"], "SELECT");
        assert_eq!(e.fields["db.response.returned_rows"], "1");
        assert_eq!(e.fields["slow_threshold_secs"], "0.01");
        let elapsed: f64 = e.fields["elapsed_secs"].parse().unwrap();
        assert!((0.05..5.0).contains(&elapsed), "{elapsed}");
    }

    #[test]
    fn no_parameter_value_and_no_password_reaches_a_span_an_event_or_a_log_line() {
        log_lines();
        let (password, seen) = record(|| run(use_secrets()));
        assert!(named(&seen, "execute").len() >= 2);
        assert!(named(&seen, "connect_attempt").len() >= 2);
        let mut texts: Vec<String> = seen
            .spans
            .iter()
            .flat_map(|(_, s)| s.fields.values().cloned())
            .collect();
        texts.extend(seen.events.iter().flat_map(|e| e.fields.values().cloned()));
        texts.extend(log_lines().lock().unwrap().iter().cloned());
        for t in &texts {
            assert!(!t.contains(SECRET_VALUE), "a value was seen: {t}");
            if let Some(p) = &password {
                assert!(!t.contains(p.as_str()), "a password was seen: {t}");
            }
        }
    }
}
