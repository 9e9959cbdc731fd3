//! The pool's own errors, worded in one place: closed, not connected, nothing available (with
//! the last connect error as the cause), a connect that made only some connections, a wait
//! that timed out. Constructors only; they never log and never decide when to fail.

use std::time::Duration;

use crate::error::{Error, ErrorKind};

pub(super) fn pool_closed() -> Error {
    Error::new(ErrorKind::Pool, "the connection pool is closed")
}

pub(super) fn not_connected() -> Error {
    Error::new(
        ErrorKind::Pool,
        "the connection pool is not connected: call connect() first",
    )
}

/// A request found no live connection: the last connect error says why, when there was one.
pub(super) fn not_available(last_connect_error: Option<&Error>) -> Error {
    const NONE: &str = "no database connection available";
    match last_connect_error {
        Some(e) => Error::caused_by(
            ErrorKind::DatabaseNotAvailable,
            format!("{NONE}; the last connect failed"),
            e,
        ),
        None => Error::new(ErrorKind::DatabaseNotAvailable, NONE),
    }
}

/// `connect()`'s failure with `raise_connect_errors`: how many of how many opened, and why
/// the first that failed did. "Partially" only when some did open.
pub(super) fn connect_failed(opened: usize, tried: usize, first: &Error) -> Error {
    let kind = if opened > 0 {
        ErrorKind::PartiallyConnected
    } else {
        ErrorKind::DatabaseNotAvailable
    };
    let noun = if tried == 1 {
        "connection"
    } else {
        "connections"
    };
    Error::caused_by(
        kind,
        format!("{opened} of {tried} {noun} could be made"),
        first,
    )
}

pub(super) fn timed_out(t: Duration) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!("no connection became available within {t:?}"),
    )
}
