//! The requests in flight: one variant per kind of request, each collecting the answers its
//! kind may receive and refusing the rest.
//!
//! It owns what a request has gathered between being queued and its ReadyForQuery (rows,
//! command tags, parameter types, the COPY FROM STDIN upload) and where its bytes sit in the
//! stream to the server. It never writes to the server, never raises events and never drops
//! a COPY source (user code) itself: it tells the protocol core what to do ([`Effect`]) and
//! hands sources back.

use std::sync::Arc;

use bytes::Bytes;

use super::copy::Upload;
use super::{QueryResult, Response};
use crate::error::Error;
use crate::row::{Column, RowBuf, Rows, Tag};

/// A request queued for the server and not yet answered by its ReadyForQuery.
#[derive(Debug)]
pub(super) struct Queued {
    pub(super) answers: InFlight,
    /// The first error the server (or a refused COPY) gave it: its answer, once it is over.
    pub(super) error: Option<Error>,
    /// The request's encoded length; its bytes wait in the held buffer while a COPY is being
    /// sent (`held`).
    pub(super) len: u64,
    pub(super) held: bool,
    /// Where the request starts in the stream of bytes written to the server: if the writes
    /// never got that far, the server never saw it.
    pub(super) start: u64,
    /// The bytes of every request written to the transmit buffer before this one
    /// (`Protocol::request_bytes` then), set when it joins that buffer: the bytes of a run of
    /// requests are a difference of two of these, not a sum over the run.
    pub(super) bytes_before: u64,
    /// Its rows go out read by read as events ([`Event::Rows`](super::Event::Rows)) instead of
    /// being collected: `stream`, which keeps none.
    pub(super) stream: bool,
}

/// One request in flight, by kind, with what it has collected so far.
#[derive(Debug)]
pub(super) enum InFlight {
    /// A simple Query (possibly several statements): the last statement's result.
    Simple(QueryResult),
    /// Several statements and one Sync: the result of the statement running, and those of
    /// the statements already complete.
    Batch {
        current: QueryResult,
        done: Vec<QueryResult>,
    },
    /// Parse + Describe(statement): the parameter types and result columns.
    Prepare {
        param_types: Vec<u32>,
        columns: Option<Arc<[Column]>>,
    },
    /// Bind + Execute on a prepared statement.
    Execute(QueryResult),
    /// Parse + Bind + Describe + Execute on the unnamed statement: Execute with a
    /// ParseComplete first.
    Unnamed(QueryResult),
    /// Close(statement).
    Close,
    /// A COPY FROM STDIN: the data still to send, and the command's result.
    CopyIn { upload: Upload, result: QueryResult },
    /// A COPY TO STDOUT: its data goes out as events; the command's result.
    CopyOut(QueryResult),
    /// A command answered with CopyBothResponse (START_REPLICATION): data both ways until
    /// CopyDone; then the command's result (a physical stream may end with a row).
    CopyBoth { result: QueryResult, both: Both },
}

/// Where a CopyBoth exchange stands, on our side of it.
///
/// ```text
///   Waiting ──CopyBothResponse──▶ Open ──our CopyDone (stop, or the server's CopyDone)──▶ Over
///      │  (stop asked: CopyDone sent at CopyBothResponse)                                  ▲
///      └────────────────────────ErrorResponse────────────────────────────────────────────┘
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Both {
    /// Sent; the server has not started the copy. `stop`: the caller already asked to end it.
    Waiting { stop: bool },
    /// CopyData flows both ways.
    Open,
    /// Our CopyDone is sent (or the server refused the command): nothing more goes out.
    Over,
}

/// A server message that answers the oldest request, as the protocol core read it.
#[derive(Debug)]
pub(super) enum Answer {
    /// RowDescription, its columns resolved.
    Columns(Arc<[Column]>),
    NoData,
    /// ParameterDescription.
    ParameterTypes(Vec<u32>),
    ParseComplete,
    BindComplete,
    CloseComplete,
    /// CommandComplete's tag.
    Tag(Tag),
    EmptyQuery,
    PortalSuspended,
    CopyInResponse,
    CopyOutResponse,
    CopyBothResponse,
    CopyData(Bytes),
    CopyDone,
}

impl Answer {
    fn name(&self) -> &'static str {
        match self {
            Answer::Columns(_) => "RowDescription",
            Answer::NoData => "NoData",
            Answer::ParameterTypes(_) => "ParameterDescription",
            Answer::ParseComplete => "ParseComplete",
            Answer::BindComplete => "BindComplete",
            Answer::CloseComplete => "CloseComplete",
            Answer::Tag(_) => "CommandComplete",
            Answer::EmptyQuery => "EmptyQueryResponse",
            Answer::PortalSuspended => "PortalSuspended",
            Answer::CopyInResponse => "CopyInResponse",
            Answer::CopyOutResponse => "CopyOutResponse",
            Answer::CopyBothResponse => "CopyBothResponse",
            Answer::CopyData(_) => "CopyData",
            Answer::CopyDone => "CopyDone",
        }
    }
}

/// What the protocol core must do for an answer a request took.
#[derive(Debug)]
pub(super) enum Effect {
    None,
    /// A COPY FROM STDIN this request cannot feed (one sent through execute()): the core
    /// answers CopyFail, the server fails the statement and the connection stays usable.
    RefuseCopyIn,
    /// The request fails with this error (the first one it gets is kept), the server's
    /// answer going on to its end.
    Fail(Error),
    /// COPY TO STDOUT data, for the driver.
    CopyData(Bytes),
    /// The core sends CopyDone: the CopyBoth exchange is over on our side (the caller asked
    /// before it started, or the server ended it first), or nobody can feed it (a
    /// START_REPLICATION sent through execute(): the request also fails with the error).
    EndCopyBoth(Option<Error>),
}

impl InFlight {
    /// The kind's name, for errors.
    pub(super) fn name(&self) -> &'static str {
        match self {
            InFlight::Simple(_) => "Simple",
            InFlight::Batch { .. } => "Batch",
            InFlight::Prepare { .. } => "Prepare",
            InFlight::Execute(_) => "Execute",
            InFlight::Unnamed(_) => "Unnamed",
            InFlight::Close => "Close",
            InFlight::CopyIn { .. } => "CopyIn",
            InFlight::CopyOut(_) => "CopyOut",
            InFlight::CopyBoth { .. } => "CopyBoth",
        }
    }

    /// Takes one message of the answer; `Err` for a message this kind of request is never
    /// answered with (a protocol violation).
    pub(super) fn take(&mut self, answer: Answer) -> Result<Effect, Error> {
        use InFlight as F;
        match (self, answer) {
            // The server ended a CopyBoth first: ours ends it too.
            (F::CopyBoth { both, .. }, Answer::CopyDone) if *both == Both::Open => {
                *both = Both::Over;
                return Ok(Effect::EndCopyBoth(None));
            }
            // Any request may have run a COPY it cannot serve (see Effect); CopyDone ends
            // either direction and needs nothing.
            (_, Answer::CopyDone) => {}
            (F::CopyBoth { both, .. }, Answer::CopyBothResponse) => match *both {
                Both::Waiting { stop: false } => *both = Both::Open,
                Both::Waiting { stop: true } => {
                    *both = Both::Over;
                    return Ok(Effect::EndCopyBoth(None));
                }
                Both::Open | Both::Over => {
                    return Err(Error::protocol("a second CopyBothResponse for one command"))
                }
            },
            (_, Answer::CopyBothResponse) => {
                return Ok(Effect::EndCopyBoth(Some(Error::usage(
                    "START_REPLICATION is only supported through ReplicationConnection",
                ))))
            }
            (F::CopyBoth { .. }, Answer::CopyData(data)) => return Ok(Effect::CopyData(data)),
            (F::CopyIn { upload, .. }, Answer::CopyInResponse) => {
                if !upload.start() {
                    return Ok(Effect::RefuseCopyIn);
                }
            }
            (_, Answer::CopyInResponse) => return Ok(Effect::RefuseCopyIn),
            (F::CopyOut(_), Answer::CopyOutResponse) => {}
            (_, Answer::CopyOutResponse) => {
                return Ok(Effect::Fail(Error::usage(
                    "COPY TO STDOUT is only supported through copy_out()",
                )))
            }
            (F::CopyOut(_), Answer::CopyData(data)) => return Ok(Effect::CopyData(data)),
            // Discarded: the CopyOutResponse was already refused.
            (_, Answer::CopyData(_)) => {}

            (F::Prepare { .. }, Answer::ParseComplete) => {}
            (F::Prepare { param_types, .. }, Answer::ParameterTypes(types)) => *param_types = types,
            (F::Prepare { columns, .. }, Answer::Columns(c)) => *columns = Some(c),
            (F::Prepare { columns, .. }, Answer::NoData) => *columns = None,

            (F::Close, Answer::CloseComplete) => {}

            (F::Simple(result), Answer::Columns(c)) => result.describe(c),
            (F::Simple(result), Answer::Tag(tag)) => {
                if result.tag.is_some() {
                    // The previous statement produced no RowDescription: a new, row-less
                    // result (psycopg2 keeps only the last).
                    result.columns = None;
                    result.rows.clear();
                }
                result.tag = Some(tag);
            }

            (F::Batch { .. }, Answer::ParseComplete | Answer::BindComplete) => {}
            (F::Batch { current, .. }, Answer::Columns(c)) => current.describe(c),
            (F::Batch { current, .. }, Answer::NoData) => current.columns = None,
            (F::Batch { current, done }, Answer::Tag(tag)) => {
                current.tag = Some(tag);
                done.push(std::mem::take(current));
            }
            (F::Batch { current, done }, Answer::EmptyQuery) => {
                current.empty();
                done.push(QueryResult::default());
            }

            (F::Execute(_), Answer::BindComplete) => {}
            (F::Unnamed(_), Answer::ParseComplete | Answer::BindComplete) => {}
            (F::Execute(result) | F::Unnamed(result), Answer::Columns(c)) => result.describe(c),
            (F::Execute(result) | F::Unnamed(result), Answer::NoData) => result.columns = None,

            (F::CopyOut(result), Answer::Columns(c)) => result.describe(c),
            (F::CopyBoth { result, .. }, Answer::Columns(c)) => result.describe(c),

            // Every statement-running request ends a statement the same way.
            (
                F::Simple(result)
                | F::Execute(result)
                | F::Unnamed(result)
                | F::CopyIn { result, .. }
                | F::CopyOut(result)
                | F::CopyBoth { result, .. },
                answer @ (Answer::Tag(_) | Answer::EmptyQuery),
            ) => match answer {
                Answer::Tag(tag) => result.tag = Some(tag),
                _ => result.empty(),
            },

            (flight, answer) => {
                return Err(Error::protocol(format!(
                    "unexpected {} in answer to a {} request",
                    answer.name(),
                    flight.name()
                )))
            }
        }
        Ok(Effect::None)
    }

    /// Where DataRows go (each its length and body, copied as received into the result's
    /// one buffer, validated, decoded lazily), with the column count they are validated
    /// against: no share of the columns is taken per row.
    #[inline]
    pub(super) fn row_buf(&mut self) -> Result<(usize, &mut RowBuf), Error> {
        let result = self.row_result()?;
        match &result.columns {
            Some(columns) => Ok((columns.len(), &mut result.rows)),
            None => Err(no_description()),
        }
    }

    /// The rows collected so far, taken out: a streamed result hands them out read by
    /// read and keeps none. `None` when there are none.
    pub(super) fn take_rows(&mut self) -> Option<Rows> {
        let result = self.row_result().ok()?;
        let columns = result.columns.clone()?;
        let rows = std::mem::take(&mut result.rows);
        (!rows.is_empty()).then(|| rows.into_rows(columns))
    }

    /// The result that takes a DataRow.
    fn row_result(&mut self) -> Result<&mut QueryResult, Error> {
        match self {
            InFlight::Simple(r)
            | InFlight::Execute(r)
            | InFlight::Unnamed(r)
            | InFlight::CopyIn { result: r, .. }
            | InFlight::CopyOut(r)
            | InFlight::CopyBoth { result: r, .. }
            | InFlight::Batch { current: r, .. } => Ok(r),
            InFlight::Prepare { .. } | InFlight::Close => Err(Error::protocol(format!(
                "unexpected DataRow in answer to a {} request",
                self.name()
            ))),
        }
    }

    /// The server failed the request: the rows of the failed statement go, and a COPY FROM
    /// STDIN stops producing data (the server drops whatever still comes). Its source, if
    /// any, is handed back for the core to drop outside every borrow.
    pub(super) fn failed(&mut self) -> Option<super::CopySource> {
        match self {
            InFlight::Simple(r)
            | InFlight::Execute(r)
            | InFlight::Unnamed(r)
            | InFlight::CopyOut(r)
            | InFlight::Batch { current: r, .. } => {
                r.rows = RowBuf::default();
                None
            }
            InFlight::CopyBoth { result, both } => {
                result.rows = RowBuf::default();
                *both = Both::Over;
                None
            }
            InFlight::CopyIn { upload, result } => {
                result.rows = RowBuf::default();
                upload.stop()
            }
            InFlight::Prepare { .. } | InFlight::Close => None,
        }
    }

    /// The CopyBoth exchange's state, if the request is one.
    pub(super) fn both(&mut self) -> Option<&mut Both> {
        match self {
            InFlight::CopyBoth { both, .. } => Some(both),
            _ => None,
        }
    }

    /// The request's upload, if it is a COPY FROM STDIN.
    pub(super) fn upload(&mut self) -> Option<&mut Upload> {
        match self {
            InFlight::CopyIn { upload, .. } => Some(upload),
            _ => None,
        }
    }

    /// What the request produced, once its ReadyForQuery came; a source it still held is
    /// handed back, to be dropped outside every borrow.
    pub(super) fn finish(self) -> (Response, Option<super::CopySource>) {
        let response = match self {
            InFlight::Simple(r)
            | InFlight::Execute(r)
            | InFlight::Unnamed(r)
            | InFlight::CopyOut(r)
            | InFlight::CopyBoth { result: r, .. } => Response::Query(r),
            InFlight::Batch { done, .. } => Response::Batch(done),
            InFlight::Prepare {
                param_types,
                columns,
            } => Response::Prepared {
                param_types,
                columns,
            },
            InFlight::Close => Response::Closed,
            InFlight::CopyIn { mut upload, result } => {
                return (Response::Query(result), upload.stop());
            }
        };
        (response, None)
    }
}

impl QueryResult {
    /// A RowDescription: a new statement's rows begin (a multi-statement query keeps only
    /// the last).
    fn describe(&mut self, columns: Arc<[Column]>) {
        self.rows.clear();
        self.tag = None;
        self.columns = Some(columns);
    }

    /// An EmptyQueryResponse: a statement with no result at all.
    fn empty(&mut self) {
        self.columns = None;
        self.rows.clear();
        self.tag = None;
    }
}

fn no_description() -> Error {
    Error::protocol("DataRow received before RowDescription")
}
