//! `execute`, `callproc` and `ping`: one simple-protocol query, psycopg2's parameters
//! rendered on the client.
//!
//! It owns how a call becomes query text (callproc's `SELECT * FROM f(...)` included); it
//! never sends anything whose parameters failed to render.

use std::rc::Rc;

use super::{render, Done};
use crate::params::{ParamValues, Params};
use crate::proto::Request;
use crate::row::Cursor;
use crate::session::{Core, Drive};

/// Runs `query` with psycopg2 parameters; the cursor holds its last statement's result.
pub(crate) fn execute<D: Drive, P: Params + ?Sized>(
    core: &Rc<Core<D>>,
    query: &str,
    params: &P,
    done: Done<Cursor>,
) {
    match render(query, params) {
        Ok(sql) => simple(core, sql, done),
        Err(e) => core.answer_later(done, Err(e)),
    }
}

/// One simple query whose result becomes a cursor.
pub(crate) fn simple<D: Drive>(core: &Rc<Core<D>>, sql: String, done: Done<Cursor>) {
    core.request_cursor(Request::Simple { query: sql }, String::new().into(), done);
}

/// `SELECT 1 AS ping`: done once the server answered.
pub(crate) fn ping<D: Drive>(core: &Rc<Core<D>>, done: Done<()>) {
    core.request(
        Request::Simple {
            query: "SELECT 1 AS ping".to_owned(),
        },
        Box::new(move |r| done.call(r.map(drop))),
    );
}

/// psycopg2's `callproc`: `SELECT * FROM name(%s, …)`, or with named parameters
/// `SELECT * FROM name(a := %(a)s, …)`.
pub(crate) fn callproc<D: Drive, P: Params + ?Sized>(
    core: &Rc<Core<D>>,
    procname: &str,
    params: &P,
    done: Done<Cursor>,
) {
    let (query, values) = callproc_query(procname, params);
    execute(core, &query, &values, done);
}

/// The query and the parameter values psycopg2's callproc would build.
pub(crate) fn callproc_query<P: Params + ?Sized>(
    procname: &str,
    params: &P,
) -> (String, ParamValues) {
    let values = params.to_values();
    let args = match &values {
        ParamValues::Positional(v) => vec!["%s"; v.len()].join(","),
        ParamValues::Named(m) => m
            .keys()
            .map(|k| format!("{k}:=%({k})s"))
            .collect::<Vec<_>>()
            .join(","),
    };
    (format!("SELECT * FROM {procname}({args})"), values)
}
