//! [`Tuple`]: one row image of a pgoutput change (TupleData), decoded on demand.
//!
//! A tuple keeps the message's bytes and where each value sits; a value is decoded only when
//! read, through the same [`FromSql`] as query results, with the column's type and the format
//! pgoutput sent that value in (`t` text, `b` binary). It trusts nothing: the decoder checks
//! every length when it builds the tuple, and a value the server did not send (an unchanged
//! TOASTed value) is an error to read, never a wrong value.

use std::fmt;

use bytes::Bytes;

use crate::error::Error;
use crate::row::RowIndex;
use crate::types::{FromSql, Value};

use super::Table;

/// How one value of a TupleData was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    /// `n`: SQL NULL.
    Null,
    /// `u`: an unchanged TOASTed value, not sent.
    Unchanged,
    /// `t`: text, at `start..start+len` of the message.
    Text(u32, u32),
    /// `b`: binary, at `start..start+len` of the message.
    Binary(u32, u32),
}

/// A row image of an Insert, Update or Delete: the new row, the old key, or the whole old
/// row. Read it like a [`Row`](crate::Row): by position or column name.
///
/// Cheap to clone (the bytes and the table are shared).
#[derive(Clone)]
pub struct Tuple {
    table: Table,
    body: Bytes,
    fields: Box<[Field]>,
}

impl Tuple {
    /// A tuple of `table` whose values are `fields` of `body`; the caller has checked that
    /// every field lies within `body` and that there is one per column.
    pub(crate) fn new(table: Table, body: Bytes, fields: Box<[Field]>) -> Tuple {
        debug_assert_eq!(fields.len(), table.columns().len());
        Tuple {
            table,
            body,
            fields,
        }
    }

    /// The table the row belongs to.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The number of columns.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when the tuple has no columns (a table published with no columns).
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The value of a column, decoded as `T`.
    ///
    /// # Panics
    /// When the column does not exist, is an unchanged TOASTed value
    /// ([`is_unchanged`](Tuple::is_unchanged)), or does not convert to `T`; the message
    /// names the column and the error. Use [`try_get`](Tuple::try_get) to get the error
    /// instead.
    #[track_caller]
    pub fn get<I: RowIndex, T: FromSql>(&self, idx: I) -> T {
        match self.try_get(&idx) {
            Ok(v) => v,
            Err(e) => panic!("error retrieving column {idx}: {e}"),
        }
    }

    /// The value of a column decoded as `T`, or the error: a Usage error for a column that
    /// does not exist or an unchanged TOASTed value (the server did not send it: keep the
    /// value you had), a Conversion error for a value that does not convert.
    pub fn try_get<I: RowIndex, T: FromSql>(&self, idx: I) -> Result<T, Error> {
        let i = self.position(&idx)?;
        let (columns, raw) = match self.fields[i] {
            Field::Null => (&self.table.0.text, None),
            Field::Unchanged => {
                return Err(Error::usage(format!(
                    "column \"{}\" is an unchanged TOASTed value, which the server does not \
                     send; check Tuple::is_unchanged and keep the value you had",
                    self.table.columns()[i].name()
                )))
            }
            Field::Text(s, l) => (&self.table.0.text, Some(self.slice(s, l))),
            Field::Binary(s, l) => (&self.table.0.binary, Some(self.slice(s, l))),
        };
        let column = &columns[i];
        T::from_sql(column, raw).map_err(|e| e.in_column(column.name()))
    }

    /// Whether a column holds an unchanged TOASTed value (`u`): a large value that an
    /// Update did not change and the server therefore did not send.
    ///
    /// # Panics
    /// When the column does not exist.
    #[track_caller]
    pub fn is_unchanged<I: RowIndex>(&self, idx: I) -> bool {
        self.field(&idx) == Field::Unchanged
    }

    /// Whether a column is SQL NULL.
    ///
    /// # Panics
    /// When the column does not exist.
    #[track_caller]
    pub fn is_null<I: RowIndex>(&self, idx: I) -> bool {
        self.field(&idx) == Field::Null
    }

    /// The raw bytes of a column as pgoutput sent them and whether they are binary
    /// (`Some((bytes, false))` for text); `None` for NULL, an unchanged value or a column that
    /// does not exist.
    pub fn get_raw<I: RowIndex>(&self, idx: I) -> Option<(&[u8], bool)> {
        let i = idx.index(&self.table.0.text)?;
        match self.fields[i] {
            Field::Text(s, l) => Some((self.slice(s, l), false)),
            Field::Binary(s, l) => Some((self.slice(s, l), true)),
            Field::Null | Field::Unchanged => None,
        }
    }

    /// Every value as a [`Value`], in column order; `None` for an unchanged TOASTed value.
    pub fn try_to_values(&self) -> Result<Vec<Option<Value>>, Error> {
        (0..self.len())
            .map(|i| {
                if self.fields[i] == Field::Unchanged {
                    Ok(None)
                } else {
                    self.try_get(i).map(Some)
                }
            })
            .collect()
    }

    #[track_caller]
    fn field<I: RowIndex>(&self, idx: &I) -> Field {
        match self.position(idx) {
            Ok(i) => self.fields[i],
            Err(e) => panic!("error retrieving column {idx}: {e}"),
        }
    }

    fn position<I: RowIndex>(&self, idx: &I) -> Result<usize, Error> {
        idx.index(&self.table.0.text).ok_or_else(|| {
            Error::usage(format!(
                "no column {idx} in a tuple of {}.{} with {} columns",
                self.table.schema(),
                self.table.name(),
                self.fields.len()
            ))
        })
    }

    fn slice(&self, start: u32, len: u32) -> &[u8] {
        // In range by construction (the decoder checked it); `get` keeps even a broken
        // invariant from panicking.
        let (s, l) = (start as usize, len as usize);
        self.body.get(s..s + l).unwrap_or_default()
    }
}

impl fmt::Debug for Tuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (c, field) in self.table.columns().iter().zip(self.fields.iter()) {
            match field {
                Field::Null => m.entry(&c.name(), &"NULL"),
                Field::Unchanged => m.entry(&c.name(), &"(unchanged)"),
                Field::Text(s, l) => {
                    m.entry(&c.name(), &String::from_utf8_lossy(self.slice(*s, *l)))
                }
                Field::Binary(s, l) => m.entry(&c.name(), &self.slice(*s, *l)),
            };
        }
        m.finish()
    }
}
