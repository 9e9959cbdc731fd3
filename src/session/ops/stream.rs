//! `stream`: a query whose rows go to a callback as they are read, none kept.
//!
//! It owns counting the rows handed out and turning the completion into that count. It
//! runs the query exactly as `query` does (the same statement cache, the same binary result
//! formats, the same row constructor in the protocol core); only where the rows go differs.
//! It never runs the callback itself: the driver does, with no borrow of the session held,
//! one read's rows at a time, each row dropped once the callback has seen it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::{prepared, Done};
use crate::params::Params;
use crate::row::Row;
use crate::session::{Core, Drive, RowSink};

/// Runs `sql` like `query`, handing each row to `f`; done with the number of rows handed
/// out. An error mid-stream fails `done` once; the rows before it stay delivered.
pub(crate) fn stream<D: Drive, P: Params + ?Sized>(
    core: &Rc<Core<D>>,
    sql: &str,
    params: &P,
    mut f: impl FnMut(&Row) + 'static,
    done: Done<u64>,
) {
    let count = Rc::new(Cell::new(0u64));
    let seen = count.clone();
    let sink: RowSink = Rc::new(RefCell::new(move |row: &Row| {
        seen.set(seen.get() + 1);
        f(row);
    }));
    prepared::query_into(
        core,
        sql,
        params,
        Some(sink),
        Done::new(move |r| done.call(r.map(|_| count.get()))),
    );
}
