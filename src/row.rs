//! Result sets: [`Column`] (one field of a RowDescription), the lazy [`Row`] (one DataRow),
//! and the psycopg2-style [`Cursor`] that a query resolves to.
//!
//! A `Row` keeps the DataRow bytes as they arrived and decodes a field only when asked, so
//! reading one column of a wide row costs one column. Everything here trusts nothing in
//! those bytes: a malformed DataRow is a Protocol error from `Row::new`, never a panic or
//! an allocation sized by a length the message merely claims.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::Error;
use crate::types::{FromSql, TypeRegistry, Value};

/// Decoding hints for types whose OID is assigned at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Special {
    None,
    Hstore,
    HstoreArray,
}

/// One column of a result set, as the server describes it (psycopg2's
/// `cursor.description` entry).
///
/// ```
/// let col = momoko::Column::new("seven".into(), 0, 0, 23, 4, -1, 0);
/// assert_eq!(col.name(), "seven");
/// assert_eq!(col.type_oid(), 23);
/// ```
#[derive(Debug, Clone)]
pub struct Column {
    name: Arc<str>,
    table_oid: u32,
    column_id: i16,
    type_oid: u32,
    type_size: i16,
    type_modifier: i32,
    format: i16,
    special: Special,
}

impl Column {
    /// A column from the fields of a RowDescription entry.
    pub fn new(
        name: String,
        table_oid: u32,
        column_id: i16,
        type_oid: u32,
        type_size: i16,
        type_modifier: i32,
        format: i16,
    ) -> Column {
        Column {
            name: name.into(),
            table_oid,
            column_id,
            type_oid,
            type_size,
            type_modifier,
            format,
            special: Special::None,
        }
    }

    /// The column's name (its alias when the query gave one).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The OID of the table the column comes from, 0 for a computed column.
    pub fn table_oid(&self) -> u32 {
        self.table_oid
    }

    /// The column's attribute number in its table, 0 for a computed column.
    pub fn column_id(&self) -> i16 {
        self.column_id
    }

    /// The OID of the column's type.
    pub fn type_oid(&self) -> u32 {
        self.type_oid
    }

    /// The type's size in bytes (`pg_type.typlen`), negative for variable-width types.
    pub fn type_size(&self) -> i16 {
        self.type_size
    }

    /// The type modifier (`atttypmod`), -1 when none.
    pub fn type_modifier(&self) -> i32 {
        self.type_modifier
    }

    /// The format of the column's values: 0 text, 1 binary.
    pub fn format(&self) -> i16 {
        self.format
    }

    /// Marks the column as hstore (or hstore[]) when the registry knows its type, so that
    /// `Value` decoding yields `Value::Hstore`.
    #[allow(dead_code)] // called by the Connection on each RowDescription
    pub(crate) fn resolve(&mut self, reg: &TypeRegistry) {
        self.special = if reg.is_hstore(self.type_oid) {
            Special::Hstore
        } else if reg.is_hstore_array(self.type_oid) {
            Special::HstoreArray
        } else {
            Special::None
        };
    }

    pub(crate) fn is_hstore(&self) -> bool {
        self.special == Special::Hstore
    }

    pub(crate) fn is_hstore_array(&self) -> bool {
        self.special == Special::HstoreArray
    }

    /// The column that the elements of this array column are decoded as.
    pub(crate) fn element(&self, type_oid: u32, hstore: bool) -> Column {
        Column {
            name: self.name.clone(),
            type_oid: if hstore { self.type_oid } else { type_oid },
            type_size: -1,
            type_modifier: -1,
            special: if hstore {
                Special::Hstore
            } else {
                Special::None
            },
            ..*self
        }
    }
}

/// Something that picks a column of a [`Row`]: its position (`usize`) or its name (`&str`,
/// the first column of that name, as psycopg2's DictCursor does).
pub trait RowIndex: fmt::Display {
    /// The position of the column in `columns`, if there is one.
    fn index(&self, columns: &[Column]) -> Option<usize>;
}

impl RowIndex for usize {
    fn index(&self, columns: &[Column]) -> Option<usize> {
        (*self < columns.len()).then_some(*self)
    }
}

impl RowIndex for str {
    fn index(&self, columns: &[Column]) -> Option<usize> {
        columns.iter().position(|c| c.name() == self)
    }
}

impl RowIndex for String {
    fn index(&self, columns: &[Column]) -> Option<usize> {
        self.as_str().index(columns)
    }
}

impl<T: RowIndex + ?Sized> RowIndex for &T {
    fn index(&self, columns: &[Column]) -> Option<usize> {
        (**self).index(columns)
    }
}

/// Where a field's bytes sit in the DataRow body; `start == u32::MAX` marks NULL.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    len: u32,
}

const NULL_SPAN: Span = Span {
    start: u32::MAX,
    len: 0,
};

/// One row of a result set, decoded on demand.
///
/// `Send`, cheap to clone (the bytes are shared).
///
/// ```
/// use std::sync::Arc;
/// use momoko::{Column, Row};
/// let cols: Arc<[Column]> = Arc::from(vec![Column::new("a".into(), 0, 0, 23, 4, -1, 0)]);
/// // field count 1, length 2, "42"
/// let body = bytes::Bytes::from_static(&[0, 1, 0, 0, 0, 2, b'4', b'2']);
/// let row = Row::new(cols, body).unwrap();
/// let a: i32 = row.get("a");
/// assert_eq!(a, 42);
/// ```
#[derive(Clone)]
pub struct Row {
    columns: Arc<[Column]>,
    body: Bytes,
    spans: Box<[Span]>,
}

impl Row {
    /// A row from a DataRow message body (from the i16 field count on, without the tag
    /// and the length). The field count must match `columns` and every length must fit in
    /// the body, or this is an `ErrorKind::Protocol` error.
    pub fn new(columns: Arc<[Column]>, body: Bytes) -> Result<Row, Error> {
        let b = &body[..];
        if b.len() < 2 {
            return Err(Error::protocol("DataRow too short for its field count"));
        }
        let count = i16::from_be_bytes([b[0], b[1]]);
        if usize::try_from(count).ok() != Some(columns.len()) {
            return Err(Error::protocol(format!(
                "DataRow has {count} fields but the RowDescription has {} columns",
                columns.len()
            )));
        }
        if b.len() > u32::MAX as usize {
            return Err(Error::protocol("DataRow too long"));
        }
        let mut spans = Vec::with_capacity(columns.len());
        let mut pos = 2usize;
        for i in 0..columns.len() {
            let len_bytes = b
                .get(pos..pos + 4)
                .ok_or_else(|| Error::protocol(format!("DataRow ends before field {i}")))?;
            let len = i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
            pos += 4;
            if len == -1 {
                spans.push(NULL_SPAN);
                continue;
            }
            let len = usize::try_from(len).map_err(|_| {
                Error::protocol(format!("DataRow field {i} has a negative length {len}"))
            })?;
            if len > b.len() - pos {
                return Err(Error::protocol(format!(
                    "DataRow field {i} of {len} bytes runs past the end of the message"
                )));
            }
            spans.push(Span {
                start: pos as u32,
                len: len as u32,
            });
            pos += len;
        }
        if pos != b.len() {
            return Err(Error::protocol("DataRow has bytes after its last field"));
        }
        Ok(Row {
            columns,
            body,
            spans: spans.into_boxed_slice(),
        })
    }

    /// The number of columns.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// True when the row has no columns (`SELECT` with an empty target list).
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The row's columns.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The value of a column, decoded as `T`.
    ///
    /// # Panics
    /// When the column does not exist or does not convert to `T` (NULL into a non-`Option`,
    /// a text column as an integer…); the message names the column and the error. Use
    /// [`try_get`](Row::try_get) to get the error instead.
    #[track_caller]
    pub fn get<I: RowIndex, T: FromSql>(&self, idx: I) -> T {
        match self.try_get(&idx) {
            Ok(v) => v,
            Err(e) => panic!("error retrieving column {idx}: {e}"),
        }
    }

    /// The value of a column decoded as `T`, or the error: a Usage error for a column that
    /// does not exist, a Conversion error for a value that does not convert.
    pub fn try_get<I: RowIndex, T: FromSql>(&self, idx: I) -> Result<T, Error> {
        let i = self.position(&idx)?;
        T::from_sql(&self.columns[i], self.field(i))
    }

    /// The raw bytes of a column in its wire format, `None` for NULL or a column that does
    /// not exist.
    pub fn get_raw<I: RowIndex>(&self, idx: I) -> Option<&[u8]> {
        idx.index(&self.columns).and_then(|i| self.field(i))
    }

    /// The value of a column as a [`Value`], decoded by its type.
    ///
    /// # Panics
    /// When the column does not exist or its bytes are malformed.
    #[track_caller]
    pub fn get_value<I: RowIndex>(&self, idx: I) -> Value {
        self.get(idx)
    }

    /// The row as a map of column names to values, like psycopg2's RealDictCursor (a later
    /// column of the same name wins, as in a dict).
    ///
    /// # Panics
    /// When a field's bytes are malformed for its type.
    pub fn to_map(&self) -> BTreeMap<String, Value> {
        self.columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name().to_owned(), self.get(i)))
            .collect()
    }

    /// Every column's value, in order.
    ///
    /// # Panics
    /// When a field's bytes are malformed for its type.
    pub fn to_values(&self) -> Vec<Value> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }

    /// Like [`to_values`](Row::to_values), returning the first error instead of panicking.
    pub fn try_to_values(&self) -> Result<Vec<Value>, Error> {
        (0..self.len()).map(|i| self.try_get(i)).collect()
    }

    fn position<I: RowIndex>(&self, idx: &I) -> Result<usize, Error> {
        idx.index(&self.columns).ok_or_else(|| {
            Error::usage(format!(
                "no column {idx} in a row of {} columns",
                self.columns.len()
            ))
        })
    }

    fn field(&self, i: usize) -> Option<&[u8]> {
        let s = self.spans[i];
        if s.start == u32::MAX {
            None
        } else {
            Some(&self.body[s.start as usize..(s.start + s.len) as usize])
        }
    }
}

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (i, c) in self.columns.iter().enumerate() {
            match self.try_get::<_, Value>(i) {
                Ok(v) => m.entry(&c.name(), &v),
                Err(_) => m.entry(&c.name(), &self.field(i)),
            };
        }
        m.finish()
    }
}

/// The number of rows a command tag reports: `SELECT 10`, `INSERT 0 1`, `UPDATE 3`,
/// `DELETE 2`, `MOVE 5`, `FETCH 5`, `COPY 7`, `MERGE 1`; -1 for any other command.
#[allow(dead_code)] // used by the Connection to build cursors
pub(crate) fn rowcount_from_tag(tag: &str) -> i64 {
    let mut words = tag.split(' ');
    let n = match words.next() {
        Some("INSERT") => words.nth(1),
        Some("SELECT" | "UPDATE" | "DELETE" | "MOVE" | "FETCH" | "COPY" | "MERGE") => words.next(),
        _ => None,
    };
    n.and_then(|n| n.parse().ok()).unwrap_or(-1)
}

/// The result of one statement, with psycopg2's cursor semantics: rows are fetched in
/// order, each once.
///
/// ```
/// let mut c = momoko::Cursor::new("SELECT 1".into(), None, Vec::new(), -1, None);
/// assert!(c.fetchone().is_none());
/// assert_eq!(c.rowcount(), -1);
/// ```
#[derive(Debug)]
pub struct Cursor {
    query: String,
    description: Option<Arc<[Column]>>,
    rows: std::vec::IntoIter<Row>,
    rownumber: usize,
    rowcount: i64,
    statusmessage: Option<String>,
}

impl Cursor {
    /// A cursor over a statement's result: its columns (`None` for a statement without a
    /// result set), its rows, the row count (-1 when unknown) and its command tag.
    pub fn new(
        query: String,
        description: Option<Arc<[Column]>>,
        rows: Vec<Row>,
        rowcount: i64,
        statusmessage: Option<String>,
    ) -> Cursor {
        Cursor {
            query,
            description,
            rows: rows.into_iter(),
            rownumber: 0,
            rowcount,
            statusmessage,
        }
    }

    /// The next row, `None` when every row was fetched.
    pub fn fetchone(&mut self) -> Option<Row> {
        let r = self.rows.next();
        if r.is_some() {
            self.rownumber += 1;
        }
        r
    }

    /// Up to `n` next rows.
    pub fn fetchmany(&mut self, n: usize) -> Vec<Row> {
        let rows: Vec<Row> = self.rows.by_ref().take(n).collect();
        self.rownumber += rows.len();
        rows
    }

    /// Every remaining row.
    pub fn fetchall(&mut self) -> Vec<Row> {
        let rows: Vec<Row> = self.rows.by_ref().collect();
        self.rownumber += rows.len();
        rows
    }

    /// The number of rows the statement returned or affected, -1 when unknown.
    pub fn rowcount(&self) -> i64 {
        self.rowcount
    }

    /// The result's columns, `None` for a statement that returns no rows (`INSERT` without
    /// `RETURNING`, `SET`…).
    pub fn description(&self) -> Option<&[Column]> {
        self.description.as_deref()
    }

    /// The command tag: `"SELECT 10"`, `"INSERT 0 1"`.
    pub fn statusmessage(&self) -> Option<&str> {
        self.statusmessage.as_deref()
    }

    /// The query as it was sent (with the parameters quoted in).
    pub fn query(&self) -> &str {
        &self.query
    }

    /// The index of the next row to fetch (psycopg2's `rownumber`).
    pub fn rownumber(&self) -> usize {
        self.rownumber
    }

    /// The number of rows not fetched yet.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when every row was fetched.
    pub fn is_empty(&self) -> bool {
        self.rows.len() == 0
    }
}

impl Iterator for Cursor {
    type Item = Row;
    fn next(&mut self) -> Option<Row> {
        self.fetchone()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.rows.size_hint()
    }
}

impl ExactSizeIterator for Cursor {}
