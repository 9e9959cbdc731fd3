//! Errors: one `Error` type for the whole crate, sorted by who caused it.
//!
//! An error says whether the server refused something (`Db`, with every field of the
//! ErrorResponse), the network or the connection failed (`Connection`), the server broke the
//! protocol (`Protocol`), the caller misused the API (`Usage`, `Conversion`), or the pool could
//! not serve (`Pool`, `PartiallyConnected`, `DatabaseNotAvailable`, `Timeout`), or a result
//! had another number of rows than the caller required (`RowCount`). This module
//! only describes errors; it never decides what to do about them.

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
    /// `Pool::connect` with `raise_connect_errors` could not open every connection.
    PartiallyConnected,
    /// No live connection could be had from the pool.
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
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
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
            source: None,
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
            source: None,
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
        Arc::get_mut(&mut e.0).expect("fresh").source = Some(Arc::new(err));
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
            source: self.0.source.clone(),
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

    /// The SQLSTATE, when the server sent one (`"42601"` for a syntax error).
    pub fn code(&self) -> Option<&str> {
        self.0
            .db
            .as_ref()
            .map(|d| d.code.as_str())
            .or(self.0.code.as_deref())
    }

    /// Every field of the server's ErrorResponse, for `ErrorKind::Db` errors.
    pub fn as_db_error(&self) -> Option<&DbError> {
        self.0.db.as_ref()
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
        if let (None, Some(code)) = (&self.0.db, &self.0.code) {
            write!(f, " (SQLSTATE {code})")?;
        }
        if self.0.outcome_unknown {
            f.write_str(" (the request was sent; whether it took effect is unknown)")?;
        }
        Ok(())
    }
}

/// An I/O failure as an `ErrorKind::Connection` error, with the `io::Error` as its
/// [`source`](std::error::Error::source), so that `?` works on socket calls in code that
/// returns momoko's errors.
impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Error {
        let mut e = Error::new(ErrorKind::Connection, err.to_string());
        Arc::get_mut(&mut e.0).expect("fresh").source = Some(Arc::new(err));
        e
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
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
    fn io_errors_convert_into_connection_errors_keeping_the_source() {
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
        let source = e.source().expect("the io::Error is the source");
        let io = source.downcast_ref::<io::Error>().expect("an io::Error");
        assert_eq!(io.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(io.to_string(), "peer went away");
        // A clone (the pool hands one error to many waiters) keeps the source too.
        assert!(e.clone().with_code("08006").source().is_some());
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
