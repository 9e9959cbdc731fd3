//! momoko: an asynchronous PostgreSQL client and connection pool for single-threaded,
//! callback-driven programs on mio, the Rust form of Momoko 2.2 (Tornado + psycopg2).
//!
//! This crate root only wires the modules together and re-exports the public surface; it
//! holds no logic of its own.

pub use momoko_loop as ioloop;

pub mod conninfo;
mod error;

pub use conninfo::Config;
pub use error::{DbError, Error, ErrorKind};

mod params;
mod row;
mod types;

pub use params::{mogrify, named, Named, ParamValues, Params};
pub use row::{Column, Cursor, Row, RowIndex};
pub use types::{oid, Format, FromSql, IsNull, QuoteContext, ToSql, Value};
