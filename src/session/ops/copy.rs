//! COPY in and out: `COPY … FROM STDIN` from a source pulled as the socket takes it, and
//! `COPY … TO STDOUT` into a sink.
//!
//! It owns turning the caller's data into a [`CopySource`] and the command tag into a row
//! count. It never pulls the source itself: the driver does, through `Core::pump`, with no
//! borrow held, so a source may call into its own connection.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;

use super::Done;
use crate::error::Error;
use crate::proto::{CopySource, Request, Response};
use crate::session::{Core, Drive};

/// `COPY … FROM STDIN` from fallible chunks: an `Err` aborts the COPY (CopyFail).
pub(crate) fn copy_in<D: Drive>(
    core: &Rc<Core<D>>,
    query: &str,
    source: CopySource,
    done: Done<u64>,
) {
    core.request(
        Request::CopyIn {
            query: query.to_owned(),
            source,
        },
        Box::new(move |r| done.call(r.and_then(copy_count))),
    );
}

/// A source of infallible chunks.
pub(crate) fn chunks<I>(chunks: I) -> CopySource
where
    I: IntoIterator + 'static,
    I::Item: Into<Bytes>,
{
    CopySource(Box::new(chunks.into_iter().map(|c| Ok(c.into()))))
}

/// `COPY … TO STDOUT`: `sink` gets the data as it arrives; done with the row count.
pub(crate) fn copy_out<D: Drive>(
    core: &Rc<Core<D>>,
    query: &str,
    sink: impl FnMut(&[u8]) + 'static,
    done: Done<u64>,
) {
    core.request_copy_out(
        Request::CopyOut {
            query: query.to_owned(),
        },
        Rc::new(RefCell::new(sink)),
        Box::new(move |r| done.call(r.and_then(copy_count))),
    );
}

/// The row count of a COPY from its command tag ("COPY 42").
fn copy_count(resp: Response) -> Result<u64, Error> {
    match resp {
        Response::Query(r) => Ok(r
            .tag
            .as_deref()
            .and_then(|t| t.strip_prefix("COPY "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)),
        other => Err(Error::protocol(format!(
            "expected a COPY result, got {other:?}"
        ))),
    }
}
