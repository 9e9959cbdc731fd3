//! Errors: one `Error` type for the whole crate, sorted by who caused it.
//!
//! An error says whether the server refused something (`Db`, with every field of the
//! ErrorResponse), the network or the connection failed (`Connection`), the server broke the
//! protocol (`Protocol`), the caller misused the API (`Usage`, `Conversion`), or the pool could
//! not serve (`Pool`, `PartiallyConnected`, `DatabaseNotAvailable`, `Timeout`), or a result
//! had another number of rows than the caller required (`RowCount`). This module
//! only describes errors; it never decides what to do about them.
//!
//! One rule for an error that wraps another (a failed connect behind a pool's error, the
//! `io::Error` behind a lost connection): **Display tells the whole story once**, the
//! error's own words then the cause's (`0 of 2 connections could be made: could not connect
//! to the server: Connection refused`), and so [`source`](std::error::Error::source) never
//! returns a cause whose text Display already gave: it returns what lies below that (for
//! momoko's errors, nothing). A chain printer (`anyhow`'s `{:#}` and `{:?}`) then prints each
//! fact once. Programs reach the cause itself through typed accessors instead:
//! [`Error::code`] and [`Error::as_db_error`] look through to it, [`Error::cause`] gives the
//! wrapped momoko error and [`Error::io_error`] the `io::Error`.

use std::fmt;
use std::sync::Arc;

/// What kind of failure an [`Error`] is: who caused it, and what the caller may do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The server answered with an ErrorResponse; the connection is still usable unless the
    /// severity was FATAL or PANIC. `Error::code()` gives the SQLSTATE.
    Db,
    /// The network or the connection failed: refused, reset, closed, or a failed connect.
    Connection,
    /// The server sent bytes that break the protocol; the connection was closed.
    Protocol,
    /// The caller's mistake: bad placeholders or parameters, misuse of the API.
    Usage,
    /// A value could not be converted between its PostgreSQL and Rust forms.
    Conversion,
    /// The pool is closed, or was not connected yet.
    Pool,
    /// `Pool::connect` with `raise_connect_errors` opened some of its connections but not
    /// all; the pool is usable. The message is the first failure's.
    PartiallyConnected,
    /// No live connection could be had from the pool, or `Pool::connect` with
    /// `raise_connect_errors` opened none of its connections. The message ends with the
    /// last connect error, which [`Error::cause`] gives.
    DatabaseNotAvailable,
    /// A connect, acquire or query timeout expired.
    Timeout,
    /// A statement returned another number of rows than the caller required:
    /// [`Cursor::one`](crate::Cursor::one) found none or more than one,
    /// [`Cursor::one_or_none`](crate::Cursor::one_or_none) more than one. The statement
    /// itself ran (and, outside a transaction, took effect).
    RowCount,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Db => "database error",
            ErrorKind::Connection => "connection error",
            ErrorKind::Protocol => "protocol error",
            ErrorKind::Usage => "usage error",
            ErrorKind::Conversion => "conversion error",
            ErrorKind::Pool => "pool error",
            ErrorKind::PartiallyConnected => "partially connected",
            ErrorKind::DatabaseNotAvailable => "database not available",
            ErrorKind::Timeout => "timeout",
            ErrorKind::RowCount => "unexpected row count",
        })
    }
}

/// Every field of a server ErrorResponse or NoticeResponse.
///
/// Field letters follow the protocol's "Error and Notice Message Fields" section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbError {
    /// `S`: ERROR, FATAL, PANIC (or WARNING, NOTICE… for notices), possibly localized.
    pub severity: String,
    /// `V`: the severity, never localized (PostgreSQL 9.6 and later).
    pub severity_nonlocalized: Option<String>,
    /// `C`: the SQLSTATE code.
    pub code: String,
    /// `M`: the primary message.
    pub message: String,
    /// `D`: detail.
    pub detail: Option<String>,
    /// `H`: hint.
    pub hint: Option<String>,
    /// `P`: 1-based character position in the query.
    pub position: Option<u32>,
    /// `p`: position in an internally generated query.
    pub internal_position: Option<u32>,
    /// `q`: the internally generated query.
    pub internal_query: Option<String>,
    /// `W`: context (call stack).
    pub where_: Option<String>,
    /// `s`: schema name.
    pub schema: Option<String>,
    /// `t`: table name.
    pub table: Option<String>,
    /// `c`: column name.
    pub column: Option<String>,
    /// `d`: data type name.
    pub datatype: Option<String>,
    /// `n`: constraint name.
    pub constraint: Option<String>,
    /// `F`: source file of the server.
    pub file: Option<String>,
    /// `L`: source line of the server.
    pub line: Option<u32>,
    /// `R`: source routine of the server.
    pub routine: Option<String>,
}

impl DbError {
    /// Whether the server will close the connection after this error.
    pub fn is_fatal(&self) -> bool {
        let sev = self
            .severity_nonlocalized
            .as_deref()
            .unwrap_or(&self.severity);
        sev == "FATAL" || sev == "PANIC"
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (SQLSTATE {})",
            self.severity, self.message, self.code
        )?;
        if let Some(d) = &self.detail {
            write!(f, "\nDETAIL: {d}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\nHINT: {h}")?;
        }
        Ok(())
    }
}

/// An error of momoko. Cheap to clone: the pool hands one failure to many waiters.
///
/// An error that wraps another (a pool's failed connect, a lost socket) says both in its
/// Display, once each: `database not available: 0 of 2 connections could be made: FATAL:
/// password authentication failed for user "app" (SQLSTATE 28P01)`. Since Display has said
/// the cause, [`source`](std::error::Error::source) does not return it again (a chain
/// printer such as `anyhow`'s would print it twice); a program reaches it through
/// [`Error::code`] and [`Error::as_db_error`] (which look through to it), [`Error::cause`]
/// and [`Error::io_error`].
#[derive(Clone)]
pub struct Error(Arc<Inner>);

struct Inner {
    kind: ErrorKind,
    message: String,
    db: Option<DbError>,
    /// SQLSTATE known without a full ErrorResponse, e.g. from the last notice before the
    /// server closed the connection (57P01 on an immediate shutdown).
    code: Option<String>,
    outcome_unknown: bool,
    /// The `io::Error` whose text the message ends with.
    io: Option<Arc<std::io::Error>>,
    /// The momoko error whose text Display ends with (see the module's rule).
    cause: Option<Error>,
}

impl Error {
    /// A new error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error(Arc::new(Inner {
            kind,
            message: message.into(),
            db: None,
            code: None,
            outcome_unknown: false,
            io: None,
            cause: None,
        }))
    }

    /// The server's error, as an `ErrorKind::Db` error.
    pub fn db(db: DbError) -> Error {
        Error(Arc::new(Inner {
            kind: ErrorKind::Db,
            message: String::new(),
            db: Some(db),
            code: None,
            outcome_unknown: false,
            io: None,
            cause: None,
        }))
    }

    pub(crate) fn usage(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Usage, message)
    }

    pub(crate) fn conversion(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Conversion, message)
    }

    pub(crate) fn protocol(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Protocol, message)
    }

    pub(crate) fn connection(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Connection, message)
    }

    pub(crate) fn io(context: &str, err: std::io::Error) -> Error {
        let mut e = Error::new(ErrorKind::Connection, format!("{context}: {err}"));
        Arc::get_mut(&mut e.0).expect("fresh").io = Some(Arc::new(err));
        e
    }

    /// An error of `kind` saying `message` because of `cause`: Display gives both, once
    /// each (`message: cause`, the cause without its kind in front); [`Error::code`] is the
    /// cause's SQLSTATE; [`Error::cause`] gives the cause back.
    pub(crate) fn caused_by(kind: ErrorKind, message: impl Into<String>, cause: &Error) -> Error {
        let mut e = Error::new(kind, message);
        Arc::get_mut(&mut e.0).expect("fresh").cause = Some(cause.clone());
        e
    }

    /// A Conversion error that names `column`: the same error when its message does
    /// already (every decoder that knows the column says so), else one whose message starts
    /// with `column "name": `, so that `Row::try_get` never reports a failure that the reader
    /// cannot place.
    pub(crate) fn in_column(self, column: &str) -> Error {
        if self.0.kind != ErrorKind::Conversion
            || self.0.message.contains(&format!("column \"{column}\""))
        {
            return self;
        }
        let message = format!("column \"{column}\": {}", self.0.message);
        self.map(|i| i.message = message)
    }

    /// The same error with the given kind, keeping everything else.
    pub fn with_kind(&self, kind: ErrorKind) -> Error {
        self.map(|i| i.kind = kind)
    }

    /// The same error, marked as one after which nobody knows whether the request took
    /// effect on the server (the connection died after it was sent).
    pub fn with_outcome_unknown(&self) -> Error {
        self.map(|i| i.outcome_unknown = true)
    }

    /// The same error with a SQLSTATE attached (when no ErrorResponse carried one).
    pub fn with_code(&self, code: impl Into<String>) -> Error {
        let code = code.into();
        self.map(move |i| i.code = Some(code))
    }

    fn map(&self, f: impl FnOnce(&mut Inner)) -> Error {
        let mut inner = Inner {
            kind: self.0.kind,
            message: self.0.message.clone(),
            db: self.0.db.clone(),
            code: self.0.code.clone(),
            outcome_unknown: self.0.outcome_unknown,
            io: self.0.io.clone(),
            cause: self.0.cause.clone(),
        };
        f(&mut inner);
        Error(Arc::new(inner))
    }

    /// The error's text without its kind ("connection error: ") in front: for a list of
    /// several failures of one kind, such as the hosts a connect tried.
    pub(crate) fn without_kind(&self) -> String {
        let all = self.to_string();
        let prefix = format!("{}: ", self.0.kind);
        match all.strip_prefix(&prefix) {
            Some(rest) if self.0.db.is_none() => rest.to_owned(),
            _ => all,
        }
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The SQLSTATE, when the server sent one (`"42601"` for a syntax error); for an error
    /// that wraps another (a pool's failed connect), the cause's.
    pub fn code(&self) -> Option<&str> {
        self.0
            .db
            .as_ref()
            .map(|d| d.code.as_str())
            .or(self.0.code.as_deref())
            .or_else(|| self.0.cause.as_ref().and_then(Error::code))
    }

    /// Every field of the server's ErrorResponse: for `ErrorKind::Db` errors, and for an
    /// error whose cause is one (a pool that could not log in).
    pub fn as_db_error(&self) -> Option<&DbError> {
        self.0
            .db
            .as_ref()
            .or_else(|| self.0.cause.as_ref().and_then(Error::as_db_error))
    }

    /// The momoko error this one wraps, whose text its Display already ends with: the
    /// first failed connect of a `Pool::connect`, the last connect error behind a
    /// `DatabaseNotAvailable`, the failed connect behind a request on a connection that
    /// never connected. (Not [`source`](std::error::Error::source): see the module docs.)
    pub fn cause(&self) -> Option<&Error> {
        self.0.cause.as_ref()
    }

    /// The operating system's error behind a `Connection` error (refused, reset, a failed
    /// name lookup), here or in the error this one wraps.
    pub fn io_error(&self) -> Option<&std::io::Error> {
        self.0
            .io
            .as_deref()
            .or_else(|| self.0.cause.as_ref().and_then(Error::io_error))
    }

    /// True when the request may or may not have taken effect on the server: the connection
    /// was lost after the request was sent and before its answer arrived.
    pub fn outcome_unknown(&self) -> bool {
        self.0.outcome_unknown
    }

    /// Whether the connection that produced this error is gone.
    pub fn is_connection_lost(&self) -> bool {
        match self.0.kind {
            ErrorKind::Connection | ErrorKind::Protocol => true,
            ErrorKind::Db => self.0.db.as_ref().is_some_and(DbError::is_fatal),
            _ => false,
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.0.kind);
        if !self.0.message.is_empty() {
            d.field("message", &self.0.message);
        }
        if let Some(db) = &self.0.db {
            d.field("db", db);
        }
        if let Some(code) = &self.0.code {
            d.field("code", code);
        }
        if self.0.outcome_unknown {
            d.field("outcome_unknown", &true);
        }
        if let Some(cause) = &self.0.cause {
            d.field("cause", cause);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.db {
            Some(db) if self.0.message.is_empty() => write!(f, "{db}")?,
            Some(db) => write!(f, "{}: {db}", self.0.message)?,
            None => write!(f, "{}: {}", self.0.kind, self.0.message)?,
        }
        if let Some(cause) = &self.0.cause {
            write!(f, ": {}", cause.without_kind())?;
        }
        if let (None, Some(code)) = (&self.0.db, &self.0.code) {
            write!(f, " (SQLSTATE {code})")?;
        }
        if self.0.outcome_unknown {
            f.write_str(" (the request was sent; whether it took effect is unknown)")?;
        }
        Ok(())
    }
}

/// An I/O failure as an `ErrorKind::Connection` error saying the `io::Error`'s text, which
/// [`Error::io_error`] gives back, so that `?` works on socket calls in code that returns
/// momoko's errors.
impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Error {
        let mut e = Error::new(ErrorKind::Connection, err.to_string());
        Arc::get_mut(&mut e.0).expect("fresh").io = Some(Arc::new(err));
        e
    }
}

/// `source()` is what lies below the text Display already gave (see the module docs): the
/// wrapped `io::Error`'s own source, which for the operating system's errors is none.
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match (&self.0.cause, &self.0.io) {
            (Some(cause), _) => cause.source(),
            (None, Some(io)) => io.source(),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_error_exposes_sqlstate_and_prints_message() {
        let e = Error::db(DbError {
            severity: "ERROR".into(),
            code: "42601".into(),
            message: "syntax error at or near \"DOES\"".into(),
            ..DbError::default()
        });
        assert_eq!(e.kind(), ErrorKind::Db);
        assert_eq!(e.code(), Some("42601"));
        assert_eq!(
            e.to_string(),
            "ERROR: syntax error at or near \"DOES\" (SQLSTATE 42601)"
        );
        assert!(!e.is_connection_lost());
    }

    #[test]
    fn connection_lost_error_keeps_the_last_notice_code() {
        let e = Error::connection("connection lost").with_code("57P01");
        assert_eq!(e.code(), Some("57P01"));
        assert_eq!(
            e.to_string(),
            "connection error: connection lost (SQLSTATE 57P01)"
        );
        assert!(e.with_outcome_unknown().outcome_unknown());
        assert!(!e.outcome_unknown());
    }

    #[test]
    fn io_errors_convert_into_connection_errors_keeping_the_io_error() {
        use std::error::Error as _;
        use std::io;
        fn fails() -> Result<(), Error> {
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "peer went away",
            ))?;
            Ok(())
        }
        let e = fails().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Connection);
        assert!(e.is_connection_lost());
        assert_eq!(e.to_string(), "connection error: peer went away");
        let io = e.io_error().expect("the io::Error is kept");
        assert_eq!(io.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(io.to_string(), "peer went away");
        // Display said it already: a chain printer must not say it again.
        assert!(e.source().is_none());
        // A clone (the pool hands one error to many waiters) keeps it too.
        assert!(e.clone().with_code("08006").io_error().is_some());
    }

    #[test]
    fn a_wrapped_error_is_said_once_and_reachable_by_accessors() {
        use std::error::Error as _;
        let refused = Error::io(
            "could not connect to the server",
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        );
        let login = Error::db(DbError {
            severity: "FATAL".into(),
            code: "28P01".into(),
            message: "password authentication failed for user \"me\"".into(),
            ..DbError::default()
        });
        let e = Error::caused_by(
            ErrorKind::DatabaseNotAvailable,
            "0 of 2 connections could be made",
            &refused,
        );
        assert_eq!(
            e.to_string(),
            "database not available: 0 of 2 connections could be made: \
             could not connect to the server: connection refused"
        );
        assert!(e.source().is_none());
        assert_eq!(
            e.io_error().map(std::io::Error::kind),
            Some(std::io::ErrorKind::ConnectionRefused)
        );
        assert_eq!(e.cause().map(Error::kind), Some(ErrorKind::Connection));
        let e = Error::caused_by(
            ErrorKind::PartiallyConnected,
            "1 of 2 connections could be made",
            &login,
        );
        assert_eq!(e.code(), Some("28P01"));
        assert_eq!(e.as_db_error().map(|d| d.severity.as_str()), Some("FATAL"));
        assert_eq!(
            e.to_string(),
            "partially connected: 1 of 2 connections could be made: FATAL: password \
             authentication failed for user \"me\" (SQLSTATE 28P01)"
        );
    }

    #[test]
    fn in_column_names_the_column_once() {
        let e = Error::conversion("invalid binary bool").in_column("flag");
        assert_eq!(
            e.to_string(),
            "conversion error: column \"flag\": invalid binary bool"
        );
        let e = e.in_column("flag");
        assert_eq!(
            e.to_string(),
            "conversion error: column \"flag\": invalid binary bool"
        );
        let e = Error::usage("no column 3").in_column("x");
        assert_eq!(e.to_string(), "usage error: no column 3");
    }
}
