//! Result sets: [`Column`] (one field of a RowDescription), the lazy [`Row`] (one DataRow),
//! and the psycopg2-style [`Cursor`] that a query resolves to.
//!
//! A `Row` keeps the DataRow bytes as they arrived and decodes a field only when asked, so
//! reading one column of a wide row costs one column. Everything here trusts nothing in
//! those bytes: a malformed DataRow is a Protocol error from `Row::new`, never a panic or
//! an allocation sized by a length the message merely claims.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::error::Error;
use crate::types::{FromSql, TypeRegistry, Value};

mod packed;
mod tag;

pub(crate) use packed::{RowBuf, Rows};

pub(crate) use tag::Tag;

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

/// A row's DataRow body: a short one copied into the row itself (no reference count to
/// touch when the row is made or dropped), a longer one shared.
#[derive(Clone)]
enum Body {
    Inline { len: u8, data: [u8; INLINE] },
    Shared(Bytes),
}

/// The longest body a row holds inline.
const INLINE: usize = 22;

impl std::ops::Deref for Body {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        match self {
            Body::Inline { len, data } => &data[..*len as usize],
            Body::Shared(b) => b,
        }
    }
}

/// One row of a result set, decoded on demand.
///
/// `Send`, cheap to clone (a short row's bytes are in the row, a longer one's shared).
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
pub struct Row {
    columns: Arc<[Column]>,
    body: Body,
    /// Where the next in-order read starts: the index of the field after the last one
    /// located in the high 32 bits, the offset of its length prefix in the low 32 (field 0
    /// at FIRST_FIELD before any read). Reading fields in order (the common case) reads each length prefix
    /// once, with no per-row allocation. Relaxed: it is only a hint, and any value it
    /// holds names a real field boundary of this (immutable) body.
    cursor: AtomicU64,
    /// Every field's span, built on the first backward access of a row too wide to walk
    /// from its start cheaply, so that random access stays O(1) amortized.
    spans: OnceLock<Box<[Span]>>,
}

impl Clone for Row {
    fn clone(&self) -> Row {
        Row {
            columns: self.columns.clone(),
            body: self.body.clone(),
            cursor: AtomicU64::new(self.cursor.load(Ordering::Relaxed)),
            spans: self.spans.clone(),
        }
    }
}

/// Rows up to this wide are walked from their first field on a backward access rather
/// than given a span table.
const WALK_MAX: usize = 8;

/// The offset of the first field's length prefix (after the i16 field count).
const FIRST_FIELD: usize = 2;

impl Row {
    /// A row from a DataRow message body (from the i16 field count on, without the tag
    /// and the length). The field count must match `columns` and every length must fit in
    /// the body, or this is an `ErrorKind::Protocol` error.
    pub fn new(columns: Arc<[Column]>, body: Bytes) -> Result<Row, Error> {
        validate(&body, columns.len())?;
        Ok(Row::trusted(columns, Body::Shared(body)))
    }

    /// A row from a body [`validate`] accepted for this many columns.
    #[inline]
    fn trusted(columns: Arc<[Column]>, body: Body) -> Row {
        Row {
            columns,
            body,
            cursor: AtomicU64::new(FIRST_FIELD as u64),
            spans: OnceLock::new(),
        }
    }

    /// Forgets what reading the last body learned (a new body was put in).
    #[inline]
    fn rewind(&mut self) {
        *self.cursor.get_mut() = FIRST_FIELD as u64;
        if self.spans.get().is_some() {
            self.spans = OnceLock::new();
        }
    }

    /// The number of columns.
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// True when the row has no columns (`SELECT` with an empty target list).
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
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
    #[inline]
    pub fn get<I: RowIndex, T: FromSql>(&self, idx: I) -> T {
        match self.try_get(&idx) {
            Ok(v) => v,
            Err(e) => panic!("error retrieving column {idx}: {e}"),
        }
    }

    /// The value of a column decoded as `T`, or the error: a Usage error for a column that
    /// does not exist, a Conversion error for a value that does not convert.
    #[inline]
    pub fn try_get<I: RowIndex, T: FromSql>(&self, idx: I) -> Result<T, Error> {
        let i = self.position(&idx)?;
        let column = &self.columns[i];
        T::from_sql(column, self.field(i)).map_err(|e| e.in_column(column.name()))
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

    /// The row as a `T` with serde, as psycopg's `class_row` and sqlx's `FromRow` give it:
    /// struct fields by column name (serde's renames and `#[serde(flatten)]` apply),
    /// `Option` for a nullable column, tuples by position, a single-column row as a scalar.
    /// A value that does not fit, or a field without a column, is a Conversion error naming
    /// it.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use momoko::{Column, Row};
    /// #[derive(serde::Deserialize, Debug, PartialEq)]
    /// struct Account {
    ///     id: i64,
    ///     #[serde(rename = "owner_name")]
    ///     owner: String,
    ///     note: Option<String>,
    /// }
    /// let cols: Arc<[Column]> = Arc::from(vec![
    ///     Column::new("id".into(), 0, 0, 20, 8, -1, 0),
    ///     Column::new("owner_name".into(), 0, 0, 25, -1, -1, 0),
    ///     Column::new("note".into(), 0, 0, 25, -1, -1, 0),
    /// ]);
    /// // id "7", owner_name "ann", note NULL
    /// let body = bytes::Bytes::from_static(&[0, 3, 0, 0, 0, 1, b'7', 0, 0, 0, 3, b'a', b'n', b'n', 255, 255, 255, 255]);
    /// let row = Row::new(cols, body).unwrap();
    /// let a: Account = row.deserialize().unwrap();
    /// assert_eq!(a, Account { id: 7, owner: "ann".into(), note: None });
    /// ```
    #[cfg(feature = "serde")]
    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    pub fn deserialize<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        crate::types::de::from_row(self)
    }

    fn position<I: RowIndex>(&self, idx: &I) -> Result<usize, Error> {
        idx.index(&self.columns).ok_or_else(|| {
            Error::usage(format!(
                "no column {idx} in a row of {} columns",
                self.columns.len()
            ))
        })
    }

    /// The bytes of field `i` (`i < self.len()`), `None` for NULL.
    #[inline]
    fn field(&self, i: usize) -> Option<&[u8]> {
        let c = self.cursor.load(Ordering::Relaxed);
        if i == (c >> 32) as usize {
            // The next field in order: its length prefix is at the cursor.
            return self.field_at(i, (c as u32) as usize);
        }
        self.field_out_of_order(i)
    }

    #[inline(never)]
    fn field_out_of_order(&self, i: usize) -> Option<&[u8]> {
        let b = &self.body[..];
        let c = self.cursor.load(Ordering::Relaxed);
        let (mut at, mut pos) = ((c >> 32) as usize, (c as u32) as usize);
        if i < at {
            if self.columns.len() > WALK_MAX {
                let s = self.spans.get_or_init(|| self.span_table())[i];
                return (s.start != u32::MAX)
                    .then(|| &b[s.start as usize..s.start as usize + s.len as usize]);
            }
            (at, pos) = (0, FIRST_FIELD);
        }
        // Row::new checked every length, so the walk stays inside the body.
        while at < i {
            pos += 4 + usize::try_from(read_len(b, pos)).unwrap_or(0);
            at += 1;
        }
        self.field_at(i, pos)
    }

    /// Field `i`, whose length prefix is at `pos`; moves the cursor past it.
    #[inline]
    fn field_at(&self, i: usize, pos: usize) -> Option<&[u8]> {
        let b = &self.body[..];
        let len = read_len(b, pos);
        let start = pos + 4;
        let size = usize::try_from(len).unwrap_or(0);
        self.cursor.store(
            (((i + 1) as u64) << 32) | (start + size) as u64,
            Ordering::Relaxed,
        );
        (len >= 0).then(|| &b[start..start + size])
    }

    /// Every field's span, from the lengths `Row::new` validated.
    fn span_table(&self) -> Box<[Span]> {
        let b = &self.body[..];
        let mut pos = FIRST_FIELD;
        (0..self.columns.len())
            .map(|_| {
                let len = read_len(b, pos);
                pos += 4;
                match usize::try_from(len) {
                    Err(_) => NULL_SPAN,
                    Ok(len) => {
                        let s = Span {
                            start: pos as u32,
                            len: len as u32,
                        };
                        pos += len;
                        s
                    }
                }
            })
            .collect()
    }
}

/// The i32 length prefix at `pos` of a validated DataRow body (-1 for NULL).
#[inline]
fn read_len(b: &[u8], pos: usize) -> i32 {
    try_len(b, pos).expect("Row::new validated every length prefix")
}

/// The i32 length prefix at `pos`, `None` when the body ends first.
#[inline]
fn try_len(b: &[u8], pos: usize) -> Option<i32> {
    let chunk = b.get(pos..)?.first_chunk::<4>()?;
    Some(i32::from_be_bytes(*chunk))
}

/// Checks a DataRow body (from the i16 field count on) for `columns` columns: the field
/// count must match and every length must fit, or this is an `ErrorKind::Protocol` error.
/// One pass, without allocation.
fn validate(b: &[u8], columns: usize) -> Result<(), Error> {
    if b.len() > u32::MAX as usize || !well_formed(b, columns) {
        return Err(bad_row(b, columns));
    }
    Ok(())
}

/// Whether `b` has exactly `columns` fields, each length inside the body and nothing after
/// the last: the slices shrink as the fields are walked, so each check is one comparison.
#[inline]
fn well_formed(b: &[u8], columns: usize) -> bool {
    let Some((count, mut rest)) = b.split_first_chunk::<2>() else {
        return false;
    };
    if i16::from_be_bytes(*count) as usize != columns {
        return false;
    }
    for _ in 0..columns {
        let Some((len, after)) = rest.split_first_chunk::<4>() else {
            return false;
        };
        rest = match i32::from_be_bytes(*len) {
            -1 => after,
            len if len >= 0 => match after.get(len as usize..) {
                Some(r) => r,
                None => return false,
            },
            _ => return false,
        };
    }
    rest.is_empty()
}

/// What is wrong with a body [`validate`] refused (the slow path, walked again to say it).
#[cold]
#[inline(never)]
fn bad_row(b: &[u8], columns: usize) -> Error {
    if b.len() < 2 {
        return Error::protocol("DataRow too short for its field count");
    }
    let count = i16::from_be_bytes([b[0], b[1]]);
    if usize::try_from(count).ok() != Some(columns) {
        return Error::protocol(format!(
            "DataRow has {count} fields but the RowDescription has {columns} columns"
        ));
    }
    if b.len() > u32::MAX as usize {
        return Error::protocol("DataRow too long");
    }
    let mut pos = FIRST_FIELD;
    for i in 0..columns {
        let Some(len) = try_len(b, pos) else {
            return Error::protocol(format!("DataRow ends before field {i}"));
        };
        pos += 4;
        if len == -1 {
            continue;
        }
        let Ok(len) = usize::try_from(len) else {
            return Error::protocol(format!("DataRow field {i} has a negative length {len}"));
        };
        if len > b.len() - pos {
            return Error::protocol(format!(
                "DataRow field {i} of {len} bytes runs past the end of the message"
            ));
        }
        pos += len;
    }
    Error::protocol("DataRow has bytes after its last field")
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
pub(crate) fn rowcount_from_tag(tag: &[u8]) -> i64 {
    // Byte-wise, the count read as integer columns are: this runs for every statement.
    let rest = match tag {
        [b'I', b'N', b'S', b'E', b'R', b'T', b' ', rest @ ..] => {
            // `INSERT oid rows`: the oid (always 0 now) comes first.
            match rest.iter().position(|c| *c == b' ') {
                Some(i) => &rest[i + 1..],
                None => return -1,
            }
        }
        [b'S', b'E', b'L', b'E', b'C', b'T', b' ', rest @ ..]
        | [b'U', b'P', b'D', b'A', b'T', b'E', b' ', rest @ ..]
        | [b'D', b'E', b'L', b'E', b'T', b'E', b' ', rest @ ..]
        | [b'F', b'E', b'T', b'C', b'H', b' ', rest @ ..]
        | [b'M', b'E', b'R', b'G', b'E', b' ', rest @ ..]
        | [b'M', b'O', b'V', b'E', b' ', rest @ ..]
        | [b'C', b'O', b'P', b'Y', b' ', rest @ ..] => rest,
        _ => return -1,
    };
    crate::types::parse_i64(rest).unwrap_or(-1)
}

/// A cursor's query text: its own, or a prepared statement's, shared rather than copied
/// for every execution.
#[derive(Debug)]
pub(crate) enum QueryText {
    Owned(String),
    Shared(Arc<str>),
}

impl From<String> for QueryText {
    fn from(s: String) -> QueryText {
        QueryText::Owned(s)
    }
}

impl From<Arc<str>> for QueryText {
    fn from(s: Arc<str>) -> QueryText {
        QueryText::Shared(s)
    }
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
    query: QueryText,
    description: Option<Arc<[Column]>>,
    rows: Rows,
    rownumber: usize,
    /// The row count given, or `None` to read it from the command tag when asked (most
    /// callers never ask, and reading it was most of the cost of a small result's cursor).
    rowcount: Option<i64>,
    statusmessage: Option<Tag>,
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
            query: QueryText::Owned(query),
            description,
            rows: Rows::Owned(rows.into_iter()),
            rownumber: 0,
            rowcount: Some(rowcount),
            statusmessage: statusmessage.map(Tag::from),
        }
    }

    /// A cursor over a statement's collected result: its rows made as they are fetched,
    /// its row count read from its command tag when asked.
    #[inline]
    pub(crate) fn from_buf(
        query: QueryText,
        description: Option<Arc<[Column]>>,
        rows: RowBuf,
        statusmessage: Option<Tag>,
    ) -> Cursor {
        let rows = match &description {
            Some(columns) => rows.into_rows(columns.clone()),
            None => Rows::Owned(Vec::new().into_iter()),
        };
        Cursor {
            query,
            description,
            rows,
            rownumber: 0,
            rowcount: None,
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

    /// The one row of the result (SQLAlchemy's `Result.one()`): every remaining row is
    /// taken, and anything but exactly one is an [`ErrorKind::RowCount`] error saying how
    /// many there were ("none", or "3 rows, more than one").
    ///
    /// ```
    /// use momoko::{Column, Cursor, ErrorKind};
    /// let cols: std::sync::Arc<[Column]> = vec![Column::new("n".into(), 0, 0, 23, 4, -1, 0)].into();
    /// let none = Cursor::new("SELECT 1 WHERE false".into(), Some(cols), Vec::new(), 0, None);
    /// let e = none.one().unwrap_err();
    /// assert_eq!(e.kind(), ErrorKind::RowCount);
    /// assert!(e.to_string().contains("none"), "{e}");
    /// ```
    ///
    /// [`ErrorKind::RowCount`]: crate::ErrorKind::RowCount
    pub fn one(mut self) -> Result<Row, Error> {
        match self.rows.len() {
            1 => Ok(self.fetchone().expect("one row left")),
            0 => Err(self.row_count_error("exactly one", "none")),
            n => Err(self.row_count_error("exactly one", &format!("{n} rows, more than one"))),
        }
    }

    /// The row of the result if there is one, `None` if there is none (SQLAlchemy's
    /// `Result.one_or_none()`): every remaining row is taken, and more than one is an
    /// [`ErrorKind::RowCount`] error saying how many there were.
    ///
    /// [`ErrorKind::RowCount`]: crate::ErrorKind::RowCount
    pub fn one_or_none(mut self) -> Result<Option<Row>, Error> {
        match self.rows.len() {
            0 | 1 => Ok(self.fetchone()),
            n => Err(self.row_count_error("at most one", &format!("{n} rows, more than one"))),
        }
    }

    fn row_count_error(&self, wanted: &str, got: &str) -> Error {
        let what = if self.description.is_none() {
            format!(
                "none: the statement returns no rows ({})",
                self.statusmessage.as_deref().unwrap_or("no command tag")
            )
        } else {
            got.to_owned()
        };
        // The query is left out: its parameters are quoted into it, and may be secrets.
        Error::new(
            crate::error::ErrorKind::RowCount,
            format!("expected {wanted} row, got {what}"),
        )
    }

    /// The next row as a `T` (see [`Row::deserialize`]), `None` when every row was fetched.
    #[cfg(feature = "serde")]
    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    pub fn fetchone_as<T: serde::de::DeserializeOwned>(&mut self) -> Result<Option<T>, Error> {
        self.fetchone().map(|r| r.deserialize()).transpose()
    }

    /// Up to `n` next rows as `T`s; the first row that does not fit is the error (the rows
    /// are fetched all the same).
    #[cfg(feature = "serde")]
    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    pub fn fetchmany_as<T: serde::de::DeserializeOwned>(
        &mut self,
        n: usize,
    ) -> Result<Vec<T>, Error> {
        self.fetchmany(n).iter().map(Row::deserialize).collect()
    }

    /// Every remaining row as a `T`; the first row that does not fit is the error (the rows
    /// are fetched all the same).
    #[cfg(feature = "serde")]
    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    pub fn fetchall_as<T: serde::de::DeserializeOwned>(&mut self) -> Result<Vec<T>, Error> {
        self.fetchall().iter().map(Row::deserialize).collect()
    }

    /// The number of rows the statement returned or affected, -1 when unknown.
    pub fn rowcount(&self) -> i64 {
        match (self.rowcount, &self.statusmessage) {
            (Some(n), _) => n,
            (None, Some(tag)) => rowcount_from_tag(tag.as_bytes()),
            (None, None) => -1,
        }
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
        match &self.query {
            QueryText::Owned(s) => s,
            QueryText::Shared(s) => s,
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn cols() -> Arc<[Column]> {
        Arc::from(vec![
            Column::new("a".into(), 0, 0, 23, 4, -1, 0),
            Column::new("b".into(), 0, 0, 25, -1, -1, 0),
            Column::new("c".into(), 0, 0, 20, 8, -1, 0),
        ])
    }

    /// A DataRow body: the field count, then each field (None for NULL).
    fn body(fields: &[Option<&[u8]>]) -> Bytes {
        let mut b = (fields.len() as i16).to_be_bytes().to_vec();
        for f in fields {
            match f {
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(f) => {
                    b.extend_from_slice(&(f.len() as i32).to_be_bytes());
                    b.extend_from_slice(f);
                }
            }
        }
        Bytes::from(b)
    }

    fn row() -> Row {
        Row::new(cols(), body(&[Some(b"1"), Some(b"two"), None])).unwrap()
    }

    #[test]
    fn fields_decode_by_index_and_by_name() {
        let r = row();
        assert_eq!(r.len(), 3);
        assert!(!r.is_empty());
        let a: i32 = r.get(0);
        let b: String = r.get("b");
        let c: Option<i64> = r.get(2);
        assert_eq!((a, b.as_str(), c), (1, "two", None));
        assert_eq!(r.get_raw(1), Some(&b"two"[..]));
        assert_eq!(r.get_raw(2), None);
        assert_eq!(r.get_value("a"), Value::Int4(1));
        assert_eq!(r.columns()[1].name(), "b");
    }

    #[test]
    fn try_get_reports_errors_without_panicking() {
        let r = row();
        assert_eq!(
            r.try_get::<_, i64>(1).unwrap_err().kind(),
            ErrorKind::Conversion
        );
        assert_eq!(
            r.try_get::<_, i64>(2).unwrap_err().kind(),
            ErrorKind::Conversion
        );
        assert_eq!(r.try_get::<_, i32>(3).unwrap_err().kind(), ErrorKind::Usage);
        assert_eq!(
            r.try_get::<_, i32>("zz").unwrap_err().kind(),
            ErrorKind::Usage
        );
        assert_eq!(r.get_raw("zz"), None);
    }

    #[test]
    #[should_panic(
        expected = "error retrieving column b: conversion error: cannot convert column \"b\" of type text to i64"
    )]
    fn get_panics_naming_the_column_and_the_error() {
        let _: i64 = row().get("b");
    }

    #[test]
    fn conversion_errors_always_name_the_column() {
        // A malformed binary bool: the decoder's own message does not know the column.
        let cols: Arc<[Column]> = Arc::from(vec![
            Column::new("flag".into(), 0, 0, 16, 1, -1, 1),
            Column::new("n".into(), 0, 0, 23, 4, -1, 0),
        ]);
        let r = Row::new(cols, body(&[Some(&[1, 2]), Some(b"40000")])).unwrap();
        let e = r.try_get::<_, bool>(0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conversion);
        assert!(e.to_string().contains("column \"flag\": "), "{e}");
        // One that does is left as it is.
        let e = r.try_get::<_, i16>("n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "conversion error: column \"n\" of type integer: 40000 is out of range for i16"
        );
        assert_eq!(r.get::<_, i32>(1), 40000);
    }

    #[test]
    #[should_panic(
        expected = "error retrieving column 1: conversion error: column \"n\" of type integer: \
                    40000 is out of range for i16"
    )]
    fn get_panics_naming_the_column_picked_by_position() {
        let cols: Arc<[Column]> = Arc::from(vec![
            Column::new("m".into(), 0, 0, 23, 4, -1, 0),
            Column::new("n".into(), 0, 0, 23, 4, -1, 0),
        ]);
        let r = Row::new(cols, body(&[Some(b"1"), Some(b"40000")])).unwrap();
        let _: i16 = r.get(1);
    }

    #[test]
    fn to_map_and_to_values_give_every_column() {
        let r = row();
        let m = r.to_map();
        assert_eq!(m["a"], Value::Int4(1));
        assert_eq!(m["b"], Value::from("two"));
        assert_eq!(m["c"], Value::Null);
        assert_eq!(
            r.to_values(),
            vec![Value::Int4(1), Value::from("two"), Value::Null]
        );
        assert_eq!(
            format!("{r:?}"),
            r#"{"a": Int4(1), "b": Text("two"), "c": Null}"#
        );
    }

    #[test]
    fn malformed_data_rows_are_protocol_errors() {
        let bad: Vec<Bytes> = vec![
            Bytes::new(),
            Bytes::from_static(&[0]),
            body(&[Some(b"1"), Some(b"2")]), // too few fields
            body(&[Some(b"1"), Some(b"2"), None, None]), // too many
            Bytes::from_static(&[0, 3, 0, 0, 0, 1, b'1']), // ends early
            Bytes::from_static(&[0xff, 0xff]), // negative count
        ];
        for b in bad {
            let e = Row::new(cols(), b.clone()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Protocol, "{b:?}");
        }
        // A negative length other than -1.
        let mut b = body(&[Some(b"1"), Some(b"2"), None]).to_vec();
        let n = b.len();
        b[n - 4..].copy_from_slice(&(-2i32).to_be_bytes());
        assert_eq!(
            Row::new(cols(), b.into()).unwrap_err().kind(),
            ErrorKind::Protocol
        );
        // Trailing bytes after the last field.
        let mut b = body(&[Some(b"1"), Some(b"2"), None]).to_vec();
        b.push(0);
        assert_eq!(
            Row::new(cols(), b.into()).unwrap_err().kind(),
            ErrorKind::Protocol
        );
    }

    #[test]
    fn a_huge_declared_length_is_rejected_without_allocating() {
        let b = Bytes::from_static(&[0, 1, 0x7f, 0xff, 0xff, 0xff, b'x']);
        let one: Arc<[Column]> = Arc::from(vec![Column::new("a".into(), 0, 0, 25, -1, -1, 0)]);
        assert_eq!(Row::new(one, b).unwrap_err().kind(), ErrorKind::Protocol);
    }

    #[test]
    fn rows_are_send_and_cheap_to_clone() {
        fn is_send<T: Send + Sync>() {}
        is_send::<Row>();
        is_send::<Column>();
        let r = row();
        let r2 = r.clone();
        assert_eq!(r2.get::<_, String>(1), "two");
    }

    #[test]
    fn hstore_columns_decode_as_hstore_once_resolved() {
        let mut reg = TypeRegistry::new();
        reg.register_hstore(16385, 16390);
        let mut c = Column::new("h".into(), 0, 0, 16385, -1, -1, 0);
        let raw = body(&[Some(br#""a"=>"b""#)]);
        let unresolved = Row::new(Arc::from(vec![c.clone()]), raw.clone()).unwrap();
        assert!(matches!(
            unresolved.get_value(0),
            Value::Unknown {
                type_oid: 16385,
                ..
            }
        ));
        c.resolve(&reg);
        let r = Row::new(Arc::from(vec![c]), raw).unwrap();
        let mut want = std::collections::HashMap::new();
        want.insert("a".to_owned(), Some("b".to_owned()));
        assert_eq!(r.get_value(0), Value::Hstore(want.clone()));
        let h: std::collections::HashMap<String, Option<String>> = r.get(0);
        assert_eq!(h, want);
        // hstore[] decodes element by element.
        let mut ac = Column::new("ha".into(), 0, 0, 16390, -1, -1, 0);
        ac.resolve(&reg);
        let f: &[u8] = br#"{"\"a\"=>\"b\"",NULL}"#;
        let r = Row::new(Arc::from(vec![ac]), body(&[Some(f)])).unwrap();
        let v: Vec<Option<std::collections::HashMap<String, Option<String>>>> = r.get(0);
        assert_eq!(v, vec![Some(want), None]);
    }

    #[test]
    fn fields_read_in_any_order_narrow_and_wide() {
        for n in [1usize, 3, WALK_MAX, WALK_MAX + 1, 20] {
            let c: Arc<[Column]> = (0..n)
                .map(|i| Column::new(format!("c{i}"), 0, 0, 25, -1, -1, 0))
                .collect::<Vec<_>>()
                .into();
            let vals: Vec<Option<String>> = (0..n)
                .map(|i| (i % 3 != 1).then(|| "x".repeat(i)))
                .collect();
            let fields: Vec<Option<&[u8]>> = vals
                .iter()
                .map(|v| v.as_deref().map(str::as_bytes))
                .collect();
            let r = Row::new(c, body(&fields)).unwrap();
            let mut order: Vec<usize> = (0..n).collect();
            order.extend((0..n).rev());
            order.extend((0..n).map(|i| (i * 7) % n));
            order.extend([n - 1, n - 1, 0, 0]);
            for i in order {
                assert_eq!(r.get::<_, Option<String>>(i), vals[i], "n {n} field {i}");
                assert_eq!(r.clone().get_raw(i), fields[i], "n {n} field {i}");
            }
        }
    }

    #[test]
    fn rowcount_is_parsed_from_command_tags() {
        assert_eq!(rowcount_from_tag(b"SELECT 10"), 10);
        assert_eq!(rowcount_from_tag(b"INSERT 0 1"), 1);
        assert_eq!(rowcount_from_tag(b"UPDATE 3"), 3);
        assert_eq!(rowcount_from_tag(b"DELETE 0"), 0);
        assert_eq!(rowcount_from_tag(b"MOVE 5"), 5);
        assert_eq!(rowcount_from_tag(b"FETCH 5"), 5);
        assert_eq!(rowcount_from_tag(b"COPY 7"), 7);
        assert_eq!(rowcount_from_tag(b"MERGE 2"), 2);
        assert_eq!(rowcount_from_tag(b"INSERT 0 1000000"), 1_000_000);
        assert_eq!(rowcount_from_tag(b"SELECT 123456789012"), 123_456_789_012);
        assert_eq!(rowcount_from_tag(b"SELECT x"), -1);
        assert_eq!(rowcount_from_tag(b"INSERT 0"), -1);
        assert_eq!(rowcount_from_tag(b"CREATE TABLE"), -1);
        assert_eq!(rowcount_from_tag(b"BEGIN"), -1);
        assert_eq!(rowcount_from_tag(b"SELECT"), -1);
        assert_eq!(rowcount_from_tag(b""), -1);
    }

    #[test]
    fn cursor_fetches_each_row_once_in_order() {
        let rows: Vec<Row> = (1..=10)
            .map(|i: i32| {
                let s = i.to_string();
                Row::new(cols(), body(&[Some(s.as_bytes()), None, None])).unwrap()
            })
            .collect();
        let mut c = Cursor::new(
            "SELECT generate_series(1, 10) AS i".into(),
            Some(cols()),
            rows,
            10,
            Some("SELECT 10".into()),
        );
        assert_eq!(c.rowcount(), 10);
        assert_eq!(c.statusmessage(), Some("SELECT 10"));
        assert_eq!(c.query(), "SELECT generate_series(1, 10) AS i");
        assert_eq!(c.description().unwrap().len(), 3);
        assert_eq!(c.len(), 10);
        assert_eq!(c.fetchone().unwrap().get::<_, i32>(0), 1);
        let three: Vec<i32> = c.fetchmany(3).iter().map(|r| r.get(0)).collect();
        assert_eq!(three, vec![2, 3, 4]);
        assert_eq!(c.rownumber(), 4);
        assert_eq!(c.next().unwrap().get::<_, i32>(0), 5);
        let rest: Vec<i32> = c.fetchall().iter().map(|r| r.get(0)).collect();
        assert_eq!(rest, vec![6, 7, 8, 9, 10]);
        assert!(c.fetchone().is_none());
        assert!(c.fetchmany(2).is_empty());
        assert!(c.is_empty());
        assert_eq!(c.rownumber(), 10);
    }

    #[test]
    fn cursor_without_result_set_has_no_description() {
        let mut c = Cursor::new("SET x = 1".into(), None, Vec::new(), -1, Some("SET".into()));
        assert!(c.description().is_none());
        assert_eq!(c.rowcount(), -1);
        assert!(c.fetchall().is_empty());
        assert_eq!(c.count(), 0);
    }
}
