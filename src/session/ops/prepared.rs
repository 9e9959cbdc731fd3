//! Prepared statements: `prepare`, `execute_prepared`, `close_prepared`, and `query` with its
//! per-connection cache.
//!
//! A [`Prepared`] holds a weak reference to the server session it was prepared in and a name
//! no other statement of the process has had, so it can only ever run as itself: used on
//! another connection, or on the same one after a reconnect, it is prepared again there,
//! pipelined just before the execution. Parameters go in binary where the type allows it;
//! results come back binary for the types momoko decodes. Nothing here touches a socket.

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::{placeholders, to_cursor, Done};
use crate::error::Error;
use crate::params::Params;
use crate::proto::{Request, Response};
use crate::row::{Column, Cursor};
use crate::session::cache::CachedStatement;
use crate::session::{statement_name, Callback, Core, Drive, RowSink};
use crate::types::{TypeRegistry, Value};

/// A statement prepared with `prepare`.
#[derive(Clone)]
pub struct Prepared(Rc<PreparedInner>);

struct PreparedInner {
    query: Arc<str>,
    param_types: Vec<u32>,
    columns: Option<Arc<[Column]>>,
    result_formats: Rc<[i16]>,
    /// Where it is prepared now: the server session (weakly) and the name there.
    at: RefCell<(Weak<()>, Rc<str>)>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("query", &self.0.query)
            .field("name", &self.0.at.borrow().1)
            .field("param_types", &self.0.param_types)
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// The query text.
    pub fn query(&self) -> &str {
        &self.0.query
    }
    /// The parameter types the server inferred (OIDs).
    pub fn param_types(&self) -> &[u32] {
        &self.0.param_types
    }
    /// The result columns, or `None` for a statement without a result set.
    pub fn columns(&self) -> Option<&[Column]> {
        self.0.columns.as_deref()
    }
    /// The statement's name on the server where it was last prepared.
    pub fn name(&self) -> String {
        self.0.at.borrow().1.to_string()
    }
}

/// Prepares `query` (with `$1`, `$2`… parameters) on the server.
pub(crate) fn prepare<D: Drive>(core: &Rc<Core<D>>, query: &str, done: Done<Prepared>) {
    let name = statement_name("s");
    let query = query.to_owned();
    let q = query.clone();
    let nm: Rc<str> = Rc::from(name.as_str());
    let c = core.clone();
    core.request(
        Request::Prepare {
            name,
            query,
            param_types: Vec::new(),
        },
        Box::new(move |r| {
            done.call(r.and_then(|resp| match resp {
                Response::Prepared {
                    param_types,
                    columns,
                } => {
                    let (owner, types) = c.with(|s| (s.identity(), s.types().snapshot()));
                    let columns = columns.map(|c| binary_columns(&c, &types));
                    Ok(Prepared(Rc::new(PreparedInner {
                        query: q.into(),
                        param_types,
                        result_formats: result_formats(&columns),
                        columns,
                        at: RefCell::new((owner, nm)),
                    })))
                }
                other => Err(Error::protocol(format!(
                    "expected a prepared statement, got {other:?}"
                ))),
            }))
        }),
    );
}

/// Runs a prepared statement with server-side parameters.
pub(crate) fn execute_prepared<D: Drive, P: Params + ?Sized>(
    core: &Rc<Core<D>>,
    statement: &Prepared,
    params: &P,
    done: Done<Cursor>,
) {
    let st = &statement.0;
    let values = match params.positional() {
        Ok(v) => v,
        Err(e) => return core.answer_later(done, Err(e)),
    };
    if values.len() != st.param_types.len() {
        let e = placeholders::mismatch(st.param_types.len(), values.len());
        return core.answer_later(done, Err(e));
    }
    // A statement run without parameters (the most frequent) skips the encoder's call.
    let (encoded, formats) = if values.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        match encode_params(&values, &st.param_types) {
            Ok(x) => x,
            Err(e) => return core.answer_later(done, Err(e)),
        }
    };
    let current = core.with(|s| s.is_current(&st.at.borrow().0));
    let mut reprepare_error: Option<Rc<RefCell<Option<Error>>>> = None;
    if !current {
        // Another connection or session: prepare it again under a new name, pipelined just
        // before the execution.
        let name = statement_name("s");
        *st.at.borrow_mut() = (core.with(|s| s.identity()), Rc::from(name.as_str()));
        let slot: Rc<RefCell<Option<Error>>> = Rc::default();
        reprepare_error = Some(slot.clone());
        core.request(
            Request::Prepare {
                name,
                query: st.query.to_string(),
                param_types: st.param_types.clone(),
            },
            Box::new(move |r| {
                if let Err(e) = r {
                    *slot.borrow_mut() = Some(e);
                }
            }),
        );
    }
    let query = st.query.clone();
    let name = st.at.borrow().1.clone();
    let request = Request::ExecutePrepared {
        statement: name,
        params: encoded,
        param_formats: formats,
        columns: st.columns.clone(),
        result_formats: st.result_formats.clone(),
        describe: false,
    };
    let Some(reprepare_error) = reprepare_error else {
        return core.request_cursor(request, query.into(), done);
    };
    core.request(
        request,
        Box::new(move |r| {
            if let Some(e) = reprepare_error.borrow_mut().take() {
                return done.call(Err(e));
            }
            done.call(r.and_then(|resp| to_cursor(query, resp)))
        }),
    );
}

/// Drops a prepared statement on the server (nothing to do where it is not prepared).
pub(crate) fn close_prepared<D: Drive>(core: &Rc<Core<D>>, statement: &Prepared, done: Done<()>) {
    let current = core.with(|s| s.is_current(&statement.0.at.borrow().0));
    if !current {
        return core.answer_later(done, Ok(()));
    }
    let name = {
        let mut at = statement.0.at.borrow_mut();
        // Executing it again prepares it anew.
        at.0 = Weak::new();
        at.1.to_string()
    };
    core.request(
        Request::CloseStatement { name },
        Box::new(move |r| done.call(r.map(drop))),
    );
}

/// Runs `sql` with server-side parameters, preparing it on first use and caching it. A
/// cached statement that the server no longer accepts (0A000, 26000) is prepared again once.
pub(crate) fn query<D: Drive, P: Params + ?Sized>(
    core: &Rc<Core<D>>,
    sql: &str,
    params: &P,
    done: Done<Cursor>,
) {
    query_into(core, sql, params, None, done);
}

/// `query`, its rows handed to `sink` as they arrive when there is one (`stream`): the
/// cursor it completes with then holds none.
pub(crate) fn query_into<D: Drive, P: Params + ?Sized>(
    core: &Rc<Core<D>>,
    sql: &str,
    params: &P,
    sink: Option<RowSink>,
    done: Done<Cursor>,
) {
    let values = match params.positional() {
        Ok(v) => v,
        Err(e) => return core.answer_later(done, Err(e)),
    };
    let types: Vec<u32> = values.iter().map(Value::type_oid).collect();
    let capacity = core.with(|s| s.options().statement_cache_size);
    if capacity == Some(0) {
        if let Err(e) = placeholders::check(sql, values.len()) {
            return core.answer_later(done, Err(e));
        }
        return query_unnamed(core, sql, &values, types, sink, done);
    }
    query_values(core, sql.to_owned(), values, types, true, sink, done);
}

/// `query` with the statement cache off: Parse, Bind, Describe, Execute and Sync on the
/// unnamed statement in one message train, so that nothing depends on a statement surviving
/// past its own Sync (PgBouncer's transaction pooling, any version). Results come back as
/// text, since the columns are not known before Bind.
fn query_unnamed<D: Drive>(
    core: &Rc<Core<D>>,
    sql: &str,
    values: &[Value],
    types: Vec<u32>,
    sink: Option<RowSink>,
    done: Done<Cursor>,
) {
    let (encoded, formats) = match encode_params(values, &types) {
        Ok(x) => x,
        Err(e) => return core.answer_later(done, Err(e)),
    };
    let query = sql.to_owned();
    send(
        core,
        Request::ExecuteUnnamed {
            query: query.clone(),
            param_types: types,
            params: encoded,
            param_formats: formats,
        },
        sink,
        Box::new(move |r| done.call(r.and_then(|resp| to_cursor(query, resp)))),
    );
}

fn query_values<D: Drive>(
    core: &Rc<Core<D>>,
    sql: String,
    values: Vec<Value>,
    types: Vec<u32>,
    may_retry: bool,
    sink: Option<RowSink>,
    done: Done<Cursor>,
) {
    // The cache belongs to the current session only if the session is ready: before that
    // (a reconnect under way) it still holds the last session's statements.
    let cached = core.with_mut(|s| {
        (s.stage() == crate::session::Stage::Ready)
            .then(|| s.cache.get(&sql, &types))
            .flatten()
    });
    match cached {
        Some(st) => {
            let (encoded, formats) = match encode_params(&values, &st.param_types) {
                Ok(x) => x,
                Err(e) => return core.answer_later(done, Err(e)),
            };
            let c = core.clone();
            send(
                core,
                Request::ExecutePrepared {
                    statement: st.name.clone(),
                    params: encoded,
                    param_formats: formats,
                    columns: st.columns.clone(),
                    result_formats: st.result_formats.clone(),
                    describe: false,
                },
                sink.clone(),
                // Both errors come at Bind, before any row: a streamed query delivered none.
                Box::new(move |r| match r {
                    Err(e) if may_retry && matches!(e.code(), Some("0A000" | "26000")) => {
                        c.with_mut(|s| s.cache.remove(&sql, &types));
                        query_values(&c, sql, values, types, false, sink, done);
                    }
                    r => done.call(r.and_then(|resp| to_cursor(sql, resp))),
                }),
            );
        }
        None => {
            if let Err(e) = placeholders::check(&sql, values.len()) {
                return core.answer_later(done, Err(e));
            }
            // Parse with the parameter types the values carry; unknown ones (NULL) are left
            // for the server to infer and sent as text.
            let (encoded, formats) = match encode_params(&values, &types) {
                Ok(x) => x,
                Err(e) => return core.answer_later(done, Err(e)),
            };
            let name = statement_name("q");
            let (key_sql, key_types, stmt_name) = (sql.clone(), types.clone(), name.clone());
            let prepare_error: Rc<RefCell<Option<Error>>> = Rc::default();
            let slot = prepare_error.clone();
            let c = core.clone();
            core.request(
                Request::Prepare {
                    name: name.clone(),
                    query: sql.clone(),
                    param_types: types.clone(),
                },
                Box::new(move |r| {
                    let r = match r {
                        Err(e) => {
                            *slot.borrow_mut() = Some(e);
                            return;
                        }
                        Ok(r) => r,
                    };
                    let Response::Prepared {
                        param_types,
                        columns,
                    } = r
                    else {
                        return;
                    };
                    // A success is answered by the session it was sent in, the current one.
                    let evicted = c.with_mut(|s| {
                        let capacity = s
                            .options()
                            .statement_cache_size
                            .unwrap_or(crate::session::cache::STATEMENT_CACHE_SIZE);
                        let columns =
                            columns.map(|cols| binary_columns(&cols, &s.types().snapshot()));
                        s.cache.insert(
                            key_sql,
                            key_types,
                            CachedStatement {
                                name: Rc::from(stmt_name),
                                param_types: param_types.into(),
                                result_formats: result_formats(&columns),
                                columns,
                            },
                            capacity,
                        )
                    });
                    if let Some(old) = evicted {
                        c.request(Request::CloseStatement { name: old }, Box::new(|_| {}));
                    }
                }),
            );
            send(
                core,
                Request::ExecutePrepared {
                    statement: Rc::from(name),
                    params: encoded,
                    param_formats: formats,
                    columns: None,
                    result_formats: Rc::from([]),
                    describe: true,
                },
                sink,
                Box::new(move |r| {
                    // The statement's own error says more than "does not exist".
                    if let Some(e) = prepare_error.borrow_mut().take() {
                        return done.call(Err(e));
                    }
                    done.call(r.and_then(|resp| to_cursor(sql, resp)))
                }),
            );
        }
    }
}

/// Queues a query's execution: its rows collected, or handed to `sink` as they arrive.
fn send<D: Drive>(core: &Rc<Core<D>>, req: Request, sink: Option<RowSink>, cb: Callback) {
    match sink {
        Some(sink) => core.request_rows(req, sink, cb),
        None => core.request(req, cb),
    }
}

/// The result formats Bind asks for: one per column, computed once per statement.
fn result_formats(columns: &Option<Arc<[Column]>>) -> Rc<[i16]> {
    columns
        .as_ref()
        .map(|c| c.iter().map(Column::format).collect())
        .unwrap_or_else(|| Rc::from([]))
}

/// Types whose binary form momoko decodes: results of prepared statements come back binary
/// for these and as text for everything else. The values layer owns the list.
fn binary_decodable(oid: u32) -> bool {
    crate::types::oid::binary_decodable(oid)
}

fn binary_columns(columns: &[Column], types: &TypeRegistry) -> Arc<[Column]> {
    columns
        .iter()
        .map(|c| {
            let format = i16::from(binary_decodable(c.type_oid()));
            let mut col = Column::new(
                c.name().to_owned(),
                c.table_oid(),
                c.column_id(),
                c.type_oid(),
                c.type_size(),
                c.type_modifier(),
                format,
            );
            col.resolve(types);
            col
        })
        .collect()
}

/// Encodes parameters for Bind: binary where the type allows it, text otherwise.
#[allow(clippy::type_complexity)]
fn encode_params(values: &[Value], types: &[u32]) -> Result<(Vec<Option<Bytes>>, Vec<i16>), Error> {
    let mut buf = BytesMut::new();
    let mut out = Vec::with_capacity(values.len());
    let mut formats = Vec::with_capacity(values.len());
    for (v, &oid) in values.iter().zip(types) {
        let (format, is_null) = v.encode(oid, &mut buf)?;
        let bytes = buf.split().freeze();
        formats.push(format as i16);
        out.push(match is_null {
            crate::types::IsNull::Yes => None,
            crate::types::IsNull::No => Some(bytes),
        });
    }
    Ok((out, formats))
}
