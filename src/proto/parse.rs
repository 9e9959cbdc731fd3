//! Reading what the server sends, past the framing: the columns of a RowDescription, the
//! fields of an ErrorResponse or NoticeResponse, the server version, and the words of the
//! protocol errors ("malformed …", "unexpected …").
//!
//! Everything here is a pure function of a message body: no state, no I/O, and no panic or
//! unbounded allocation on anything a hostile server sends.

use std::sync::Arc;

use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::{self, Message};

use crate::error::{DbError, Error};
use crate::row::Column;
use crate::types::TypeRegistry;

pub(super) fn parse_columns(
    body: &backend::RowDescriptionBody,
    types: &TypeRegistry,
) -> Result<Arc<[Column]>, Error> {
    let mut columns = Vec::new();
    let mut fields = body.fields();
    while let Some(f) = fields.next().map_err(bad("RowDescription"))? {
        let mut c = Column::new(
            f.name().to_owned(),
            f.table_oid(),
            f.column_id(),
            f.type_oid(),
            f.type_size(),
            f.type_modifier(),
            f.format(),
        );
        c.resolve(types);
        columns.push(c);
    }
    Ok(columns.into())
}

/// Reads every field of an ErrorResponse or NoticeResponse; text is checked UTF-8 (lossy
/// where the server sent something else, so that the message is never lost).
pub(crate) fn parse_db_error(fields: &mut backend::ErrorFields<'_>) -> Result<DbError, Error> {
    let mut e = DbError::default();
    while let Some(f) = fields.next().map_err(bad("ErrorResponse"))? {
        let v = String::from_utf8_lossy(f.value_bytes()).into_owned();
        match f.type_() {
            b'S' => e.severity = v,
            b'V' => e.severity_nonlocalized = Some(v),
            b'C' => e.code = v,
            b'M' => e.message = v,
            b'D' => e.detail = Some(v),
            b'H' => e.hint = Some(v),
            b'P' => e.position = v.parse().ok(),
            b'p' => e.internal_position = v.parse().ok(),
            b'q' => e.internal_query = Some(v),
            b'W' => e.where_ = Some(v),
            b's' => e.schema = Some(v),
            b't' => e.table = Some(v),
            b'c' => e.column = Some(v),
            b'd' => e.datatype = Some(v),
            b'n' => e.constraint = Some(v),
            b'F' => e.file = Some(v),
            b'L' => e.line = v.parse().ok(),
            b'R' => e.routine = Some(v),
            _ => {} // the protocol says unknown fields must be ignored
        }
    }
    if e.code.is_empty() || e.severity.is_empty() {
        return Err(Error::protocol(
            "ErrorResponse without a severity or SQLSTATE",
        ));
    }
    Ok(e)
}

/// libpq's PQserverVersion: "15.18" → 150018, "9.6.24" → 90624, "16beta1" → 160000.
pub(crate) fn parse_server_version(s: &str) -> Option<i32> {
    let digits_then = |s: &str| -> (Option<i32>, usize) {
        let n = s.bytes().take_while(u8::is_ascii_digit).count();
        (s[..n].parse().ok(), n)
    };
    let (major, n) = digits_then(s);
    let major = major?;
    let rest = &s[n..];
    let (minor, n2) = match rest.strip_prefix('.') {
        Some(r) => {
            let (m, k) = digits_then(r);
            (m, k + 1)
        }
        None => (None, 0),
    };
    if major >= 10 {
        return Some(major * 10000 + minor.unwrap_or(0));
    }
    let rest = &rest[n2..];
    let patch = rest.strip_prefix('.').and_then(|r| digits_then(r).0);
    Some(major * 10000 + minor.unwrap_or(0) * 100 + patch.unwrap_or(0))
}

pub(super) fn bad(what: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |e| Error::protocol(format!("malformed {what} message: {e}"))
}

pub(super) fn unexpected(msg: &Message, when: &str) -> Error {
    Error::protocol(format!("unexpected {} {when}", message_name(msg)))
}

fn message_name(msg: &Message) -> &'static str {
    match msg {
        Message::AuthenticationCleartextPassword
        | Message::AuthenticationGss
        | Message::AuthenticationKerberosV5
        | Message::AuthenticationMd5Password(_)
        | Message::AuthenticationOk
        | Message::AuthenticationScmCredential
        | Message::AuthenticationSspi
        | Message::AuthenticationGssContinue(_)
        | Message::AuthenticationSasl(_)
        | Message::AuthenticationSaslContinue(_)
        | Message::AuthenticationSaslFinal(_) => "Authentication message",
        Message::BackendKeyData(_) => "BackendKeyData",
        Message::BindComplete => "BindComplete",
        Message::CloseComplete => "CloseComplete",
        Message::CommandComplete(_) => "CommandComplete",
        Message::CopyData(_) => "CopyData",
        Message::CopyDone => "CopyDone",
        Message::CopyInResponse(_) => "CopyInResponse",
        Message::CopyOutResponse(_) => "CopyOutResponse",
        Message::DataRow(_) => "DataRow",
        Message::EmptyQueryResponse => "EmptyQueryResponse",
        Message::ErrorResponse(_) => "ErrorResponse",
        Message::NoData => "NoData",
        Message::NoticeResponse(_) => "NoticeResponse",
        Message::NotificationResponse(_) => "NotificationResponse",
        Message::ParameterDescription(_) => "ParameterDescription",
        Message::ParameterStatus(_) => "ParameterStatus",
        Message::ParseComplete => "ParseComplete",
        Message::PortalSuspended => "PortalSuspended",
        Message::ReadyForQuery(_) => "ReadyForQuery",
        Message::RowDescription(_) => "RowDescription",
        _ => "message",
    }
}
