//! The operations, one per file, over the one request seam [`Core::request`].
//!
//! Each operation renders what it sends before anything is sent (a bad parameter never
//! reaches the server), queues requests on a [`Core`] and turns the responses into what its
//! caller gets, through a [`Done`] callback. Operations are the same for every driver: they
//! are generic over [`Drive`] and never see a socket, a loop or the clock. A follow-up request
//! made from a response callback goes through the same seam; callbacks run only after the
//! driver has released every borrow of the session.
//!
//! [`Core::request`]: super::Core::request
//! [`Core`]: super::Core
//! [`Drive`]: super::Drive

pub(crate) mod copy;
pub(crate) mod execute;
pub(crate) mod listen;
pub(crate) mod placeholders;
pub(crate) mod prepared;
pub(crate) mod register;
pub(crate) mod stream;
pub(crate) mod transaction;

use crate::error::Error;
use crate::params::{ParamValues, Params};
use crate::proto::{QueryResult, Response};
use crate::row::{Cursor, QueryText};
use crate::types::QuoteContext;

/// Where a connection or pool operation's result goes: a callback of the library's, or a
/// caller's future set in place. The future is the common case (every `Connection` call
/// returns one), and holding it here spares the heap a boxed callback around it per call.
/// Either is run only from the driver's delivery, with no borrow held.
pub(crate) enum Done<T> {
    Call(Box<dyn FnOnce(Result<T, Error>)>),
    /// A one-shot cell: setting it only stores the value and wakes its waiters.
    Future(momoko_loop::Future<Result<T, Error>>),
}

impl<T: 'static> Done<T> {
    /// A callback.
    pub(crate) fn new(f: impl FnOnce(Result<T, Error>) + 'static) -> Done<T> {
        Done::Call(Box::new(f))
    }

    /// Delivers the result.
    #[inline]
    pub(crate) fn call(self, result: Result<T, Error>) {
        match self {
            Done::Call(f) => f(result),
            Done::Future(fut) => {
                // Set once: a future already resolved (it cannot be) keeps its value.
                let _ = fut.set_result(result);
            }
        }
    }
}

/// The quoting of what is sent: string literals as `E'…'`, which the server reads the same
/// whatever `standard_conforming_strings` is when the query runs. The setting the client
/// last heard of is not enough: a SET pipelined before the query (or run by a function)
/// changes it in between, and a backslash would then end a `'…'` literal early.
pub(crate) const SEND_CONTEXT: QuoteContext = QuoteContext {
    standard_conforming_strings: false,
};

/// Renders psycopg2 parameters for sending. With no parameters at all `%` is literal
/// (Momoko issue 136).
pub(crate) fn render<P: Params + ?Sized>(query: &str, params: &P) -> Result<String, Error> {
    if params.is_empty() {
        return Ok(query.to_owned());
    }
    params.render(query, &SEND_CONTEXT)
}

/// One statement of a transaction or batch: a query and its parameters.
#[derive(Debug, Clone)]
pub struct Statement {
    query: String,
    params: Option<ParamValues>,
}

impl Statement {
    /// A statement with parameters.
    pub fn new<P: Params>(query: impl Into<String>, params: P) -> Statement {
        Statement {
            query: query.into(),
            params: if params.is_empty() {
                None
            } else {
                Some(params.to_values())
            },
        }
    }

    /// The query text, before parameters are rendered.
    pub fn query(&self) -> &str {
        &self.query
    }

    pub(crate) fn render(&self) -> Result<String, Error> {
        match &self.params {
            None => Ok(self.query.clone()),
            Some(p) => p.render(&self.query, &SEND_CONTEXT),
        }
    }
}

impl From<&str> for Statement {
    fn from(query: &str) -> Statement {
        Statement {
            query: query.to_owned(),
            params: None,
        }
    }
}

impl From<String> for Statement {
    fn from(query: String) -> Statement {
        Statement {
            query,
            params: None,
        }
    }
}

impl<Q: Into<String>, P: Params> From<(Q, P)> for Statement {
    fn from((query, params): (Q, P)) -> Statement {
        Statement::new(query, params)
    }
}

/// Builds the cursor for one statement's result; `query` names it when the result does not
/// carry its own text (only simple queries do).
#[inline]
pub(crate) fn result_cursor(query: impl Into<QueryText>, mut r: QueryResult) -> Cursor {
    let query = if r.query.is_empty() {
        query.into()
    } else {
        QueryText::Owned(std::mem::take(&mut r.query))
    };
    Cursor::from_buf(query, r.columns, r.rows, r.tag)
}

/// Builds the cursor for a query's response.
#[inline]
pub(crate) fn to_cursor(query: impl Into<QueryText>, resp: Response) -> Result<Cursor, Error> {
    match resp {
        Response::Query(r) => Ok(result_cursor(query, r)),
        other => Err(Error::protocol(format!(
            "expected a query result, got {other:?}"
        ))),
    }
}

/// Quotes a name as an SQL identifier ("" doubled).
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
