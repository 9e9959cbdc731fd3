//! Requests and their encoding: what the driver may ask of the server, written as frontend
//! messages into the transmit buffer (or, behind a COPY being sent, the held buffer), each
//! one sync unit.
//!
//! A request that cannot be encoded (a NUL byte in a query, a parameter too long) fails
//! before anything of it is queued: the buffer is cut back to where it was.

use std::rc::Rc;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use postgres_protocol::message::frontend;

use super::copy::Upload;
use super::in_flight::{Both, InFlight, Queued};
use super::{CopySource, Protocol, QueryResult, Stage};
use crate::error::Error;
use crate::row::Column;

/// A request the protocol can send: each is one sync unit.
#[derive(Debug)]
pub(crate) enum Request {
    /// A simple-protocol Query message (possibly several statements).
    Simple { query: String },
    /// Parse + Describe(statement) + Sync: prepares a named statement.
    Prepare {
        name: String,
        query: String,
        param_types: Vec<u32>,
    },
    /// Bind + Execute + Sync on a prepared statement whose result columns are known.
    ExecutePrepared {
        statement: Rc<str>,
        /// Already-encoded parameter values (None = NULL) and their formats.
        params: Vec<Option<Bytes>>,
        param_formats: Vec<i16>,
        /// Columns of the result, with the formats asked for in Bind.
        columns: Option<Arc<[Column]>>,
        /// One format per result column (0 text, 1 binary), as Bind sends them; shared by
        /// every execution of the statement.
        result_formats: Rc<[i16]>,
        /// Ask for the portal's columns (Describe), when `columns` is not known yet.
        describe: bool,
    },
    /// Parse + Bind + Describe + Execute + Sync on the unnamed statement, in one piece: a
    /// parameterized query with no statement kept on the server (for transaction poolers
    /// such as PgBouncer, where the next Sync may land on another server connection).
    /// Results come back as text.
    ExecuteUnnamed {
        query: String,
        /// Parameter types for Parse (0: the server infers it).
        param_types: Vec<u32>,
        params: Vec<Option<Bytes>>,
        param_formats: Vec<i16>,
    },
    /// Several statements, each Parse + Bind + Describe + Execute on the unnamed statement,
    /// and one Sync: one round trip, one implicit transaction (all or nothing).
    Batch { queries: Vec<String> },
    /// Close(statement) + Sync: drops a prepared statement on the server.
    CloseStatement { name: String },
    /// A COPY FROM STDIN; its data is pulled from `source` as the socket takes it.
    CopyIn { query: String, source: CopySource },
    /// A COPY TO STDOUT; its data comes out as [`Event::CopyData`](super::Event::CopyData)
    /// before the completion.
    CopyOut { query: String },
    /// A command answered with CopyBothResponse (START_REPLICATION on a walsender): its
    /// CopyData comes out as [`Event::CopyData`](super::Event::CopyData); the caller's
    /// CopyData and CopyDone go out with [`Protocol::copy_both_write`] and
    /// [`Protocol::copy_both_done`].
    CopyBoth { query: String },
}

impl Protocol {
    /// Queues a request. Fails (without queuing) when the connection is closed or not ready,
    /// or when the request cannot be encoded (e.g. a NUL byte in the query).
    pub(crate) fn send(&mut self, request: Request) -> Result<(), Error> {
        match &self.stage {
            Stage::Ready => {}
            Stage::Closed(e) => return Err(e.clone()),
            _ => {
                return Err(Error::usage(
                    "the connection is not ready: startup is in progress",
                ))
            }
        }
        let hold = self.copy_in_progress();
        let buf = if hold { &mut self.held } else { &mut self.out };
        let mark = buf.len();
        let encoded = encode(request, buf);
        if encoded.is_err() {
            buf.truncate(mark);
        }
        let len = (buf.len() - mark) as u64;
        let answers = encoded?;
        if matches!(answers, InFlight::CopyIn { .. }) {
            self.copy_flights += 1;
        }
        let start = if hold { 0 } else { self.queued_total() - len };
        let bytes_before = self.request_bytes;
        if !hold {
            self.request_bytes += len;
        }
        self.in_flight.push_back(Queued {
            answers,
            error: None,
            len,
            held: hold,
            start,
            bytes_before,
            stream: false,
        });
        Ok(())
    }
}

fn enc(e: std::io::Error) -> Error {
    Error::usage(format!("cannot encode the request: {e}"))
}

/// A Query message, written directly: the most frequent message, and postgres-protocol's
/// general writer (a length patched in afterwards, its overflow checked) costs several times
/// the copy itself. Refuses a query with a NUL byte, as that writer does.
fn query_message(query: &str, out: &mut BytesMut) -> Result<(), Error> {
    let sql = query.as_bytes();
    refuse_nul(sql)?;
    // The length counts itself (4), the text and its terminating NUL.
    let len = i32::try_from(sql.len() + 5).map_err(|_| too_large())?;
    out.reserve(1 + 4 + sql.len() + 1);
    out.put_u8(b'Q');
    out.put_i32(len);
    out.put_slice(sql);
    out.put_u8(0);
    Ok(())
}

/// Writes `request` into `out` and returns what its answers will be collected in.
fn encode(request: Request, out: &mut BytesMut) -> Result<InFlight, Error> {
    Ok(match request {
        Request::Simple { query } => {
            query_message(&query, out)?;
            InFlight::Simple(QueryResult {
                query,
                ..QueryResult::default()
            })
        }
        Request::Prepare {
            name,
            query,
            param_types,
        } => {
            frontend::parse(&name, &query, param_types.iter().copied(), out).map_err(enc)?;
            frontend::describe(b'S', &name, out).map_err(enc)?;
            frontend::sync(out);
            InFlight::Prepare {
                param_types: Vec::new(),
                columns: None,
            }
        }
        Request::ExecutePrepared {
            statement,
            params,
            param_formats,
            columns,
            result_formats,
            describe,
        } => {
            bind(
                &statement,
                param_formats,
                &params,
                result_formats.iter().copied(),
                out,
            )?;
            if describe {
                frontend::describe(b'P', "", out).map_err(enc)?;
            }
            execute_sync(out);
            InFlight::Execute(QueryResult {
                columns,
                ..QueryResult::default()
            })
        }
        Request::ExecuteUnnamed {
            query,
            param_types,
            params,
            param_formats,
        } => {
            frontend::parse("", &query, param_types.iter().copied(), out).map_err(enc)?;
            bind("", param_formats, &params, std::iter::empty(), out)?;
            frontend::describe(b'P', "", out).map_err(enc)?;
            execute_sync(out);
            InFlight::Unnamed(QueryResult {
                query,
                ..QueryResult::default()
            })
        }
        Request::Batch { queries } => {
            for q in &queries {
                frontend::parse("", q, std::iter::empty(), out).map_err(enc)?;
                bind("", Vec::new(), &[], std::iter::empty(), out)?;
                frontend::describe(b'P', "", out).map_err(enc)?;
                frontend::execute("", 0, out).map_err(enc)?;
            }
            frontend::sync(out);
            InFlight::Batch {
                current: QueryResult::default(),
                done: Vec::new(),
            }
        }
        Request::CloseStatement { name } => {
            frontend::close(b'S', &name, out).map_err(enc)?;
            frontend::sync(out);
            InFlight::Close
        }
        Request::CopyIn { query, source } => {
            query_message(&query, out)?;
            InFlight::CopyIn {
                upload: Upload::Waiting(source),
                result: QueryResult::default(),
            }
        }
        Request::CopyOut { query } => {
            query_message(&query, out)?;
            InFlight::CopyOut(QueryResult::default())
        }
        Request::CopyBoth { query } => {
            query_message(&query, out)?;
            InFlight::CopyBoth {
                result: QueryResult::default(),
                both: Both::Waiting { stop: false },
            }
        }
    })
}

/// Bind on the unnamed portal: parameters already encoded (None is NULL).
/// A Bind message, written directly (see [`query_message`]): the portal unnamed, the
/// values already encoded. Checked as postgres-protocol checks it: no NUL in the statement
/// name, counts that fit in 16 bits and lengths in 31.
fn bind(
    statement: &str,
    param_formats: Vec<i16>,
    params: &[Option<Bytes>],
    result_formats: impl ExactSizeIterator<Item = i16>,
    out: &mut BytesMut,
) -> Result<(), Error> {
    let name = statement.as_bytes();
    // A statement name is a few bytes: a plain loop, cheaper here than memchr's setup.
    #[allow(clippy::manual_contains)]
    if name.iter().any(|&b| b == 0) {
        refuse_nul(name)?;
    }
    let count = |n: usize| u16::try_from(n).map_err(|_| too_large());
    let (n_formats, n_params, n_results) = (
        count(param_formats.len())?,
        count(params.len())?,
        count(result_formats.len())?,
    );
    let values: usize = params.iter().flatten().map(Bytes::len).sum();
    let body = 1
        + name.len()
        + 1
        + 2
        + 2 * param_formats.len()
        + 2
        + 4 * params.len()
        + values
        + 2
        + 2 * result_formats.len();
    let len = i32::try_from(body + 4).map_err(|_| too_large())?;
    if params.is_empty() && param_formats.is_empty() && 1 + 4 + body <= SMALL_BIND {
        small_bind(len, name, n_results, result_formats, out);
        return Ok(());
    }
    out.reserve(1 + 4 + body);
    out.put_u8(b'B');
    out.put_i32(len);
    out.put_u8(0);
    out.put_slice(name);
    out.put_u8(0);
    out.put_u16(n_formats);
    for f in param_formats {
        out.put_i16(f);
    }
    out.put_u16(n_params);
    for v in params {
        match v {
            // Each fits: the whole message's length did.
            Some(b) => {
                out.put_i32(b.len() as i32);
                out.put_slice(b);
            }
            None => out.put_i32(-1),
        }
    }
    out.put_u16(n_results);
    for f in result_formats {
        out.put_i16(f);
    }
    Ok(())
}

/// The longest Bind [`small_bind`] assembles.
const SMALL_BIND: usize = 64;

/// A Bind without parameters (a prepared statement run as it is, the most frequent), put
/// together on the stack and written with one copy of fixed size: cheaper than a dozen
/// writes of a few bytes, each checking the buffer's room. `len` is its length field.
fn small_bind(
    len: i32,
    name: &[u8],
    n_results: u16,
    result_formats: impl Iterator<Item = i16>,
    out: &mut BytesMut,
) {
    let mut m = [0u8; SMALL_BIND];
    m[0] = b'B';
    m[1..5].copy_from_slice(&len.to_be_bytes());
    // The unnamed portal's NUL is m[5].
    let mut at = 6 + name.len();
    m[6..at].copy_from_slice(name);
    // The name's NUL, then no parameter formats and no parameters (four zero bytes).
    at += 5;
    m[at..at + 2].copy_from_slice(&n_results.to_be_bytes());
    at += 2;
    for f in result_formats {
        m[at..at + 2].copy_from_slice(&f.to_be_bytes());
        at += 2;
    }
    let start = out.len();
    out.extend_from_slice(&m);
    out.truncate(start + at);
}

/// Execute (the unnamed portal, every row) and Sync: the same ten and five bytes for every
/// statement run.
fn execute_sync(out: &mut BytesMut) {
    out.put_slice(b"E\0\0\0\x09\0\0\0\0\0S\0\0\0\x04");
}

/// postgres-protocol's refusal of a C string with a NUL byte inside, in its words.
fn refuse_nul(text: &[u8]) -> Result<(), Error> {
    if text.contains(&0) {
        return Err(Error::usage(
            "cannot encode the request: string contains embedded null",
        ));
    }
    Ok(())
}

/// postgres-protocol's refusal of a count or length past what the message can say.
fn too_large() -> Error {
    Error::usage("cannot encode the request: value too large to transmit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_message_is_byte_for_byte_what_postgres_protocol_writes() {
        for sql in ["SELECT 1", "", "SELECT 'é', $$x$$; SELECT 2"] {
            let mut ours = BytesMut::new();
            query_message(sql, &mut ours).unwrap();
            let mut theirs = BytesMut::new();
            frontend::query(sql, &mut theirs).unwrap();
            assert_eq!(ours, theirs, "{sql:?}");
        }
    }

    #[test]
    fn bind_execute_and_sync_are_byte_for_byte_what_postgres_protocol_writes() {
        let params = vec![
            Some(Bytes::from_static(b"\x00\x00\x00\x2a")),
            None,
            Some(Bytes::new()),
            Some(Bytes::from_static("é".as_bytes())),
        ];
        // Without parameters up to 64 bytes (small_bind), at 64 and just past it.
        let (n49, n50) = ("n".repeat(49), "n".repeat(50));
        for (name, formats, values, results) in [
            ("", vec![], vec![], vec![]),
            ("momoko_s12", vec![1], params.clone(), vec![1, 0, 1]),
            ("x", vec![1, 0, 1, 0], params.clone(), vec![0]),
            ("s1", vec![], vec![], vec![1]),
            ("s_1234", vec![], vec![], vec![1, 0, 1, 1, 0]),
            ("s2", vec![1], vec![], vec![1]),
            (n49.as_str(), vec![], vec![], vec![1]),
            (n50.as_str(), vec![], vec![], vec![1]),
        ] {
            let mut ours = BytesMut::new();
            bind(
                name,
                formats.clone(),
                &values,
                results.iter().copied(),
                &mut ours,
            )
            .unwrap();
            execute_sync(&mut ours);
            let mut theirs = BytesMut::new();
            frontend::bind(
                "",
                name,
                formats,
                values.iter(),
                |v, buf| match v {
                    Some(b) => {
                        buf.extend_from_slice(b);
                        Ok(postgres_protocol::IsNull::No)
                    }
                    None => Ok(postgres_protocol::IsNull::Yes),
                },
                results,
                &mut theirs,
            )
            .unwrap_or_else(|_| panic!("postgres-protocol's bind failed"));
            frontend::execute("", 0, &mut theirs).unwrap();
            frontend::sync(&mut theirs);
            assert_eq!(ours, theirs, "{name}");
        }
    }

    #[test]
    fn a_bind_past_the_protocols_counts_is_refused() {
        let many = vec![None; 65_536];
        let mut out = BytesMut::new();
        let e = bind("s", vec![], &many, std::iter::empty(), &mut out).unwrap_err();
        assert_eq!(
            e.to_string(),
            "usage error: cannot encode the request: value too large to transmit"
        );
        let e = bind("s\0", vec![], &[], std::iter::empty(), &mut out).unwrap_err();
        assert!(
            e.to_string().ends_with("string contains embedded null"),
            "{e}"
        );
    }

    #[test]
    fn a_query_with_a_nul_byte_is_refused_and_writes_nothing() {
        let mut out = BytesMut::from(&b"kept"[..]);
        let e = query_message("SELECT '\0'", &mut out).unwrap_err();
        assert_eq!(
            e.to_string(),
            "usage error: cannot encode the request: string contains embedded null"
        );
        assert_eq!(&out[..], b"kept");
    }
}
