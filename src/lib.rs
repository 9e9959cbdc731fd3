//! momoko: an asynchronous PostgreSQL client and connection pool for single-threaded,
//! callback-driven programs on mio, the Rust form of Momoko 2.2 (Tornado + psycopg2).
//!
//! This crate root only wires the modules together and re-exports the public surface; it
//! holds no logic of its own.

pub use momoko_loop as ioloop;

pub mod conninfo;
mod error;

mod connection;
mod params;
mod pool;
mod proto;
mod raw;
mod row;
mod types;

// Entry points for the fuzz targets in fuzz/; not API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use connection::{connect, Connection, ConnectionBuilder, Statement};
pub use conninfo::Config;
pub use error::{DbError, Error, ErrorKind};
pub use params::{mogrify, named, Named, ParamValues, Params};
pub use pool::{Managed, Pool, PoolBuilder, PoolStats, RetryPolicy};
pub use raw::Notification;
pub use row::{Column, Cursor, Row, RowIndex};
pub use types::{oid, Format, FromSql, IsNull, QuoteContext, ToSql, Value};
