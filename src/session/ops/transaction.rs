//! `transaction` and `batch`: several statements as one unit of work.
//!
//! It owns the three ways a transaction goes out: BEGIN and the statements as one batch then
//! COMMIT (the default: two answers for the whole transaction), the simple way when a
//! statement holds several commands, and step by step when the caller asked for no
//! automatic rollback (Momoko's `auto_rollback=False`). Every parameter is rendered before
//! anything is sent; a failure is never silently replayed.

use std::cell::RefCell;
use std::rc::Rc;

use super::execute::simple;
use super::{result_cursor, to_cursor, Done, Statement};
use crate::error::Error;
use crate::proto::{Request, Response};
use crate::row::Cursor;
use crate::session::{Core, Drive};

/// Renders every statement, or fails before anything is sent.
fn render_all(statements: &[Statement]) -> Result<Vec<String>, Error> {
    statements.iter().map(Statement::render).collect()
}

/// The statements as one batch: one round trip, one implicit transaction.
pub(crate) fn batch<D: Drive>(
    core: &Rc<Core<D>>,
    statements: &[Statement],
    done: Done<Vec<Cursor>>,
) {
    let queries = match render_all(statements) {
        Ok(q) if q.is_empty() => return core.answer_later(done, Ok(Vec::new())),
        Ok(q) => q,
        Err(e) => return core.answer_later(done, Err(e)),
    };
    let texts = queries.clone();
    core.request(
        Request::Batch { queries },
        Box::new(move |r| {
            done.call(r.and_then(|resp| {
                match resp {
                    Response::Batch(results) => Ok(results
                        .into_iter()
                        .zip(texts)
                        .map(|(r, q)| result_cursor(q, r))
                        .collect()),
                    other => Err(Error::protocol(format!(
                        "expected a batch result, got {other:?}"
                    ))),
                }
            }))
        }),
    );
}

/// A transaction resolving to one cursor per statement.
pub(crate) fn transaction<D: Drive>(
    core: &Rc<Core<D>>,
    statements: &[Statement],
    auto_rollback: bool,
    done: Done<Vec<Cursor>>,
) {
    let rendered = match render_all(statements) {
        Ok(r) => r,
        Err(e) => return core.answer_later(done, Err(e)),
    };
    if auto_rollback {
        pipelined(core, rendered, done);
    } else {
        let tx = Rc::new(RefCell::new((rendered.into_iter(), Vec::new())));
        let c = core.clone();
        simple(
            core,
            "BEGIN".to_owned(),
            Done::new(move |r| match r {
                Ok(_) => step(c, tx, done),
                Err(e) => done.call(Err(e)),
            }),
        );
    }
}

/// Whether the server refused a statement because it holds several commands (the
/// extended protocol takes one per Parse).
fn is_multiple_commands(e: &Error) -> bool {
    e.as_db_error()
        .is_some_and(|d| d.code == "42601" && d.message.contains("cannot insert multiple commands"))
}

/// BEGIN and the statements as one batch (one Sync), then COMMIT as a query of its own. A
/// failing statement makes the server skip the rest of the batch; the COMMIT of the failed
/// transaction then rolls it back, so whatever is pipelined behind it runs outside it.
fn pipelined<D: Drive>(core: &Rc<Core<D>>, rendered: Vec<String>, done: Done<Vec<Cursor>>) {
    let mut queries = Vec::with_capacity(rendered.len() + 1);
    queries.push("BEGIN".to_owned());
    queries.extend(rendered.iter().cloned());
    let batch: Rc<RefCell<Option<Result<Response, Error>>>> = Rc::default();
    let slot = batch.clone();
    core.request(
        Request::Batch { queries },
        Box::new(move |r| *slot.borrow_mut() = Some(r)),
    );
    let c = core.clone();
    core.request(
        Request::Simple {
            query: "COMMIT".to_owned(),
        },
        Box::new(move |commit| {
            let batch = batch.borrow_mut().take().expect("answered before COMMIT");
            match (batch, commit) {
                (Err(e), _) if is_multiple_commands(&e) => one_by_one(&c, rendered, done),
                (Err(e), _) | (Ok(_), Err(e)) => done.call(Err(e)),
                (Ok(Response::Batch(results)), Ok(_)) => done.call(Ok(results
                    .into_iter()
                    .skip(1)
                    .zip(rendered)
                    .map(|(r, q)| result_cursor(q, r))
                    .collect())),
                (Ok(other), Ok(_)) => done.call(Err(Error::protocol(format!(
                    "expected a batch result, got {other:?}"
                )))),
            }
        }),
    );
}

/// The transaction as separate simple queries, pipelined: BEGIN, each statement, COMMIT.
fn one_by_one<D: Drive>(core: &Rc<Core<D>>, rendered: Vec<String>, done: Done<Vec<Cursor>>) {
    struct Tx {
        cursors: Vec<Option<Cursor>>,
        error: Option<Error>,
    }
    let n = rendered.len();
    let tx = Rc::new(RefCell::new(Tx {
        cursors: (0..n).map(|_| None).collect(),
        error: None,
    }));
    let t = tx.clone();
    core.request(
        Request::Simple {
            query: "BEGIN".to_owned(),
        },
        Box::new(move |r| {
            if let Err(e) = r {
                t.borrow_mut().error.get_or_insert(e);
            }
        }),
    );
    for (i, sql) in rendered.into_iter().enumerate() {
        let t = tx.clone();
        let query = sql.clone();
        core.request(
            Request::Simple { query: sql },
            Box::new(move |r| match r.and_then(|resp| to_cursor(query, resp)) {
                Ok(c) => t.borrow_mut().cursors[i] = Some(c),
                Err(e) => {
                    t.borrow_mut().error.get_or_insert(e);
                }
            }),
        );
    }
    let c = core.clone();
    core.request(
        Request::Simple {
            query: "COMMIT".to_owned(),
        },
        Box::new(move |r| {
            let mut t = tx.borrow_mut();
            if let Err(e) = r {
                t.error.get_or_insert(e);
            }
            let result = match t.error.take() {
                Some(e) => Err(e),
                None => Ok(t
                    .cursors
                    .drain(..)
                    .map(|c| c.expect("every statement answered"))
                    .collect()),
            };
            drop(t);
            if result.is_err() {
                // COMMIT of a failed transaction rolls it back; if the connection is somehow
                // still inside one (the server never saw COMMIT), roll back.
                let inside = c.with(|s| !s.is_closed() && s.transaction_status() != b'I');
                if inside {
                    c.request(
                        Request::Simple {
                            query: "ROLLBACK".to_owned(),
                        },
                        Box::new(|_| {}),
                    );
                }
            }
            done.call(result);
        }),
    );
}

/// Momoko's `auto_rollback=False`: one statement after the other; a failure leaves the
/// failed transaction open for the caller.
fn step<D: Drive>(
    core: Rc<Core<D>>,
    tx: Rc<RefCell<(std::vec::IntoIter<String>, Vec<Cursor>)>>,
    done: Done<Vec<Cursor>>,
) {
    let next = tx.borrow_mut().0.next();
    match next {
        Some(sql) => {
            let query = sql.clone();
            let c = core.clone();
            core.request(
                Request::Simple { query: sql },
                Box::new(move |r| match r.and_then(|resp| to_cursor(query, resp)) {
                    Ok(cursor) => {
                        tx.borrow_mut().1.push(cursor);
                        step(c, tx, done);
                    }
                    Err(e) => done.call(Err(e)),
                }),
            );
        }
        None => simple(
            &core,
            "COMMIT".to_owned(),
            Done::new(move |r| {
                let cursors = std::mem::take(&mut tx.borrow_mut().1);
                done.call(r.map(|_| cursors));
            }),
        ),
    }
}
