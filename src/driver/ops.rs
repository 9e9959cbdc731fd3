//! The operations as both drivers call them: each one is the session's operation
//! (`session/ops/`) run inside its observation (`observe::operation`: span, statement log,
//! observer). This is the one place an operation is observed, for `Connection` and
//! `MioConnection` alike; a new operation is observed by one call of the same shape here.
//!
//! It never changes what an operation sends or answers; what it describes is the query as
//! the caller wrote it (the rendered SQL only when the statement log asks for it).

use std::rc::Rc;

use crate::error::Error;
use crate::observe::{operation, OpKind, Text};
use crate::params::Params;
use crate::proto::CopySource;
use crate::row::Cursor;
use crate::session::ops::{self, Done, Statement};
use crate::session::{Core, Notification};
use crate::types::QuoteContext;
use crate::Prepared;

use super::Driver;

/// How the statement log shows values when the caller asked for them: standard strings.
const SHOW: QuoteContext = QuoteContext {
    standard_conforming_strings: true,
};

/// The parameters as a list of literals, for a `$n` query's log line.
fn values<P: Params + ?Sized>(params: &P) -> Option<String> {
    if params.is_empty() {
        return None;
    }
    let template = if params.is_named() {
        params
            .names()
            .iter()
            .map(|n| format!("{n} = %({n})s"))
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        vec!["%s"; params.len()].join(", ")
    };
    params.render(&template, &SHOW).ok()
}

/// A psycopg2 query and, when asked for, its rendering.
fn psycopg<P: Params + ?Sized>(query: &str, params: &P, rendered: bool) -> Text {
    let r = (rendered && !params.is_empty())
        .then(|| params.render(query, &SHOW).ok())
        .flatten();
    Text::rendered(query, r)
}

/// A `$n` query and, when asked for, its values.
fn server_side<P: Params + ?Sized>(query: &str, params: &P, rendered: bool) -> Text {
    let r = rendered
        .then(|| values(params).map(|v| format!("{query} -- parameters: {v}")))
        .flatten();
    Text::rendered(query, r)
}

/// A transaction's or batch's statements and, when asked for, their rendering.
fn statements(list: &[Statement], rendered: bool) -> Text {
    let r = rendered
        .then(|| {
            list.iter()
                .map(Statement::render)
                .collect::<Result<Vec<_>, Error>>()
                .ok()
                .map(|v| v.join("; "))
        })
        .flatten();
    Text::statements(list.iter().map(|s| s.query().to_owned()).collect(), r)
}

pub(crate) fn execute<D: Driver, P: Params + ?Sized>(
    core: &Rc<Core<D>>,
    query: &str,
    params: &P,
    done: Done<Cursor>,
) {
    let describe = |r| psycopg(query, params, r);
    operation(core, OpKind::Execute, describe, done, |done| {
        ops::execute::execute(core, query, params, done)
    });
}

pub(crate) fn callproc<D: Driver, P: Params + ?Sized>(
    core: &Rc<Core<D>>,
    procname: &str,
    params: &P,
    done: Done<Cursor>,
) {
    let describe = |_| Text::query(&ops::execute::callproc_query(procname, params).0);
    operation(core, OpKind::Callproc, describe, done, |done| {
        ops::execute::callproc(core, procname, params, done)
    });
}

pub(crate) fn query<D: Driver, P: Params + ?Sized>(
    core: &Rc<Core<D>>,
    sql: &str,
    params: &P,
    done: Done<Cursor>,
) {
    let describe = |r| server_side(sql, params, r);
    operation(core, OpKind::Query, describe, done, |done| {
        ops::prepared::query(core, sql, params, done)
    });
}

pub(crate) fn stream<D: Driver, P: Params + ?Sized>(
    core: &Rc<Core<D>>,
    sql: &str,
    params: &P,
    f: impl FnMut(&crate::Row) + 'static,
    done: Done<u64>,
) {
    let describe = |r| server_side(sql, params, r);
    operation(core, OpKind::Stream, describe, done, |done| {
        ops::stream::stream(core, sql, params, f, done)
    });
}

/// A walsender command (`IDENTIFY_SYSTEM`, `CREATE_REPLICATION_SLOT` …) as a simple Query.
pub(crate) fn replication_command<D: Driver>(
    core: &Rc<Core<D>>,
    command: String,
    done: Done<Cursor>,
) {
    let text = Text::query(&command);
    operation(
        core,
        OpKind::Replication,
        |_| text,
        done,
        |done| ops::execute::simple(core, command, done),
    );
}

pub(crate) fn prepare<D: Driver>(core: &Rc<Core<D>>, sql: &str, done: Done<Prepared>) {
    operation(
        core,
        OpKind::Prepare,
        |_| Text::query(sql),
        done,
        |done| ops::prepared::prepare(core, sql, done),
    );
}

pub(crate) fn execute_prepared<D: Driver, P: Params + ?Sized>(
    core: &Rc<Core<D>>,
    statement: &Prepared,
    params: &P,
    done: Done<Cursor>,
) {
    let describe = |r| server_side(statement.query(), params, r);
    operation(core, OpKind::ExecutePrepared, describe, done, |done| {
        ops::prepared::execute_prepared(core, statement, params, done)
    });
}

pub(crate) fn close_prepared<D: Driver>(core: &Rc<Core<D>>, statement: &Prepared, done: Done<()>) {
    let describe = |_| Text::query(statement.query());
    operation(core, OpKind::ClosePrepared, describe, done, |done| {
        ops::prepared::close_prepared(core, statement, done)
    });
}

pub(crate) fn transaction<D: Driver>(
    core: &Rc<Core<D>>,
    list: &[Statement],
    auto_rollback: bool,
    done: Done<Vec<Cursor>>,
) {
    let describe = |r| statements(list, r);
    operation(core, OpKind::Transaction, describe, done, |done| {
        ops::transaction::transaction(core, list, auto_rollback, done)
    });
}

pub(crate) fn batch<D: Driver>(core: &Rc<Core<D>>, list: &[Statement], done: Done<Vec<Cursor>>) {
    let describe = |r| statements(list, r);
    operation(core, OpKind::Batch, describe, done, |done| {
        ops::transaction::batch(core, list, done)
    });
}

pub(crate) fn copy_in<D: Driver>(
    core: &Rc<Core<D>>,
    query: &str,
    source: CopySource,
    done: Done<u64>,
) {
    operation(
        core,
        OpKind::CopyIn,
        |_| Text::query(query),
        done,
        |done| ops::copy::copy_in(core, query, source, done),
    );
}

pub(crate) fn copy_out<D: Driver>(
    core: &Rc<Core<D>>,
    query: &str,
    sink: impl FnMut(&[u8]) + 'static,
    done: Done<u64>,
) {
    operation(
        core,
        OpKind::CopyOut,
        |_| Text::query(query),
        done,
        |done| ops::copy::copy_out(core, query, sink, done),
    );
}

pub(crate) fn listen<D: Driver>(
    core: &Rc<Core<D>>,
    channel: &str,
    callback: impl FnMut(&Notification) + 'static,
    done: Done<()>,
) {
    let describe = |_| Text::query(&format!("LISTEN {}", ops::quote_ident(channel)));
    operation(core, OpKind::Listen, describe, done, |done| {
        ops::listen::listen(core, channel, callback, done)
    });
}

pub(crate) fn unlisten<D: Driver>(core: &Rc<Core<D>>, channel: &str, done: Done<()>) {
    let describe = |_| Text::query(&format!("UNLISTEN {}", ops::quote_ident(channel)));
    operation(core, OpKind::Unlisten, describe, done, |done| {
        ops::listen::unlisten(core, channel, done)
    });
}

pub(crate) fn cancel<D: Driver>(core: &Rc<Core<D>>, done: Done<()>) {
    operation(
        core,
        OpKind::Cancel,
        |_| Text::none(),
        done,
        |done| core.cancel(done),
    );
}
