//! A statement's rows as they are collected: [`RowBuf`], every DataRow copied into one
//! buffer as it came, and [`Rows`], what a cursor has not handed out yet, each `Row` made
//! only as it is fetched.
//!
//! It owns the layout of that buffer (each DataRow's big-endian length, counting itself,
//! then its body) and nothing else: a row is validated before it goes in, so reading one
//! back never fails, and nothing here decodes a value.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use super::{validate, Body, Column, Row};
use crate::error::Error;

/// The buffer's size when its rows first outgrow the inline room: a handful of short rows.
const FIRST_CAPACITY: usize = 128;

/// The bytes held in the buffer itself, before any allocation: a result of one short row
/// (a `SELECT 1`, a count, a flag, an int4 key: up to 5 bytes of value in one column) costs
/// no allocation at all. No more than fits beside a `Vec`'s own bytes, so that a `RowBuf`
/// (and every result and event that carries one) is no bigger for it.
const SMALL: usize = 15;

/// The rows of one statement as they arrive: every DataRow copied, validated, into one
/// buffer as it came (its length, big-endian and counting itself, then its body), nothing
/// else per row. A million int4 rows take 14 bytes each here, instead of a `Row` (80 bytes,
/// a share of the read buffer and an `Arc` of the columns) each. Rows are made from it only
/// as the cursor hands them out.
#[derive(Debug, Default, Clone)]
pub(crate) struct RowBuf {
    data: Buf,
    count: usize,
}

/// A [`RowBuf`]'s bytes: inline while they fit, then on the heap.
#[derive(Debug, Clone)]
enum Buf {
    Heap(Vec<u8>),
    Small { len: u8, bytes: [u8; SMALL] },
}

impl Default for Buf {
    fn default() -> Buf {
        Buf::Small {
            len: 0,
            bytes: [0; SMALL],
        }
    }
}

impl Buf {
    #[inline]
    fn bytes(&self) -> &[u8] {
        match self {
            Buf::Heap(v) => v,
            Buf::Small { len, bytes } => &bytes[..usize::from(*len)],
        }
    }
}

impl RowBuf {
    /// Appends a DataRow (`message`: its length, then its body, as framed), the body
    /// validated for `columns` columns.
    #[inline]
    pub(crate) fn push(&mut self, columns: usize, message: &[u8]) -> Result<(), Error> {
        let body = message.get(4..).unwrap_or_default();
        validate(body, columns)?;
        match &mut self.data {
            Buf::Heap(v) => v.extend_from_slice(message),
            Buf::Small { len, bytes } if usize::from(*len) + message.len() <= SMALL => {
                let at = usize::from(*len);
                bytes[at..at + message.len()].copy_from_slice(message);
                *len += message.len() as u8;
            }
            _ => self.spill(message),
        }
        self.count += 1;
        Ok(())
    }

    /// The rows outgrew the inline room: the buffer moves to the heap, sized at once so
    /// that a few more short rows skip the growth path.
    #[cold]
    fn spill(&mut self, message: &[u8]) {
        let held = self.data.bytes();
        let mut v = Vec::with_capacity((held.len() + message.len()).max(FIRST_CAPACITY));
        v.extend_from_slice(held);
        v.extend_from_slice(message);
        self.data = Buf::Heap(v);
    }

    /// The bytes the rows take.
    #[cfg(test)]
    fn byte_len(&self) -> usize {
        self.data.bytes().len()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Forgets every row, keeping the buffer.
    pub(crate) fn clear(&mut self) {
        match &mut self.data {
            Buf::Heap(v) => v.clear(),
            Buf::Small { len, .. } => *len = 0,
        }
        self.count = 0;
    }

    /// The rows, made against `columns` (the ones they were validated for).
    pub(crate) fn into_rows(self, columns: Arc<[Column]>) -> Rows {
        if self.count == 0 {
            return Rows::Owned(Vec::new().into_iter());
        }
        Rows::Packed {
            columns,
            data: match self.data {
                Buf::Heap(v) => Store::Owned(v),
                Buf::Small { len, bytes } => Store::Small { len, bytes },
            },
            pos: 0,
            left: self.count,
        }
    }

    /// The rows as `Row`s, for the library's own readers of a result.
    pub(crate) fn to_vec(&self, columns: &Arc<[Column]>) -> Vec<Row> {
        self.clone().into_rows(columns.clone()).collect()
    }
}

/// A cursor's rows not fetched yet: the `Row`s it was given ([`Cursor::new`]) or a
/// [`RowBuf`], each row made as it is fetched.
pub(crate) enum Rows {
    Owned(std::vec::IntoIter<Row>),
    Packed {
        columns: Arc<[Column]>,
        data: Store,
        pos: usize,
        left: usize,
    },
}

/// The buffer of a cursor's rows: inline while they fit, owned once they do not, and shared
/// once a row too long to hold inline first needs a share of it (a result of short rows
/// never pays for the sharing).
#[derive(Debug, Clone)]
pub(crate) enum Store {
    Small { len: u8, bytes: [u8; SMALL] },
    Owned(Vec<u8>),
    Shared(Bytes),
}

impl Store {
    #[inline]
    fn bytes(&self) -> &[u8] {
        match self {
            Store::Small { len, bytes } => &bytes[..usize::from(*len)],
            Store::Owned(v) => v,
            Store::Shared(b) => b,
        }
    }

    fn share(&mut self) -> &Bytes {
        match self {
            Store::Owned(v) => *self = Store::Shared(Bytes::from(std::mem::take(v))),
            Store::Small { .. } => *self = Store::Shared(Bytes::copy_from_slice(self.bytes())),
            Store::Shared(_) => {}
        }
        match self {
            Store::Shared(b) => b,
            _ => unreachable!("made shared above"),
        }
    }
}

impl fmt::Debug for Rows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rows::Owned(rows) => f.debug_list().entries(rows.as_slice()).finish(),
            Rows::Packed { left, .. } => write!(f, "[{left} rows]"),
        }
    }
}

/// The body at `start..end` of the buffer: copied into the row when short, shared when
/// not.
#[inline(always)]
fn body_at(data: &mut Store, start: usize, end: usize) -> Body {
    let len = end - start;
    if len > super::INLINE {
        return Body::Shared(data.share().slice(start..end));
    }
    let mut inline = [0u8; super::INLINE];
    // Copies of fixed size, which need no call: the bytes after the body come along and
    // are never read (the body's length says where it ends).
    if let Store::Small { bytes, .. } = data {
        // The whole inline store, padded, so that any body in it has a full window.
        let mut padded = [0u8; SMALL + super::INLINE];
        padded[..SMALL].copy_from_slice(bytes);
        inline.copy_from_slice(&padded[start..start + super::INLINE]);
    } else {
        let b = data.bytes();
        match b.get(start..start + super::INLINE) {
            Some(window) => inline.copy_from_slice(window),
            None => inline[..len].copy_from_slice(&b[start..end]),
        }
    }
    Body::Inline {
        len: len as u8,
        data: inline,
    }
}

/// The body of the row at `*pos` (its length first, counting itself), `None` when `*left`
/// rows were read; moves past it. RowBuf::push validated every body for its columns.
#[inline(always)]
fn next_body(data: &mut Store, pos: &mut usize, left: &mut usize) -> Option<Body> {
    if *left == 0 {
        return None;
    }
    let at = *pos;
    let head: [u8; 4] = data.bytes().get(at..at + 4)?.try_into().ok()?;
    let end = at + u32::from_be_bytes(head) as usize;
    *pos = end;
    *left -= 1;
    Some(body_at(data, at + 4, end))
}

impl Rows {
    /// Hands every row to `f` by reference, in order. A packed buffer's rows are read into
    /// one `Row`, made once: no share of the columns is taken per row and nothing is
    /// allocated for a short one (`f` cannot keep the reference; a clone is its own row).
    pub(crate) fn for_each_ref(self, mut f: impl FnMut(&Row)) {
        let Rows::Packed {
            columns,
            mut data,
            mut pos,
            mut left,
        } = self
        else {
            self.for_each(|row| f(&row));
            return;
        };
        let mut row = Row::trusted(
            columns,
            Body::Inline {
                len: 0,
                data: [0; super::INLINE],
            },
        );
        while let Some(body) = next_body(&mut data, &mut pos, &mut left) {
            row.body = body;
            row.rewind();
            f(&row);
        }
    }
}

impl Iterator for Rows {
    type Item = Row;

    #[inline]
    fn next(&mut self) -> Option<Row> {
        match self {
            Rows::Owned(rows) => rows.next(),
            Rows::Packed {
                columns,
                data,
                pos,
                left,
            } => {
                let body = next_body(data, pos, left)?;
                Some(Row::trusted(columns.clone(), body))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = match self {
            Rows::Owned(rows) => rows.len(),
            Rows::Packed { left, .. } => *left,
        };
        (n, Some(n))
    }
}

impl ExactSizeIterator for Rows {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn cols(n: usize) -> Arc<[Column]> {
        (0..n)
            .map(|i| Column::new(format!("c{i}"), 0, 0, 25, -1, -1, 0))
            .collect::<Vec<_>>()
            .into()
    }

    /// A DataRow as framed: its length (counting itself), then the body.
    fn message(fields: &[Option<&[u8]>]) -> Vec<u8> {
        let mut body = (fields.len() as i16).to_be_bytes().to_vec();
        for f in fields {
            match f {
                None => body.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    body.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    body.extend_from_slice(v);
                }
            }
        }
        let mut m = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn a_million_int4_rows_take_fourteen_bytes_each() {
        let mut buf = RowBuf::default();
        let m = message(&[Some(&7i32.to_be_bytes())]);
        for _ in 0..1_000_000 {
            buf.push(1, &m).unwrap();
        }
        assert_eq!(buf.len(), 1_000_000);
        assert_eq!(buf.byte_len(), 14 * 1_000_000);
    }

    #[test]
    fn short_results_stay_inline_and_spill_to_the_heap_in_order() {
        // The inline room costs the buffer no size over a Vec's (where rustc lays the two
        // out together, as it does today).
        assert!(std::mem::size_of::<RowBuf>() <= 32);
        // A 15-byte message (one 5-byte value) is exactly the room; a second spills.
        let m = |v: &[u8; 5]| message(&[Some(&v[..])]);
        assert_eq!(m(b"12345").len(), 15);
        let mut buf = RowBuf::default();
        buf.push(1, &m(b"aaaaa")).unwrap();
        assert!(matches!(buf.data, Buf::Small { len: 15, .. }));
        buf.push(1, &m(b"bbbbb")).unwrap();
        assert!(matches!(&buf.data, Buf::Heap(v) if v.capacity() >= FIRST_CAPACITY));
        buf.push(1, &m(b"ccccc")).unwrap();
        let got: Vec<Vec<u8>> = buf
            .clone()
            .into_rows(cols(1))
            .map(|r| r.get_raw(0usize).unwrap().to_vec())
            .collect();
        assert_eq!(
            got,
            [b"aaaaa".to_vec(), b"bbbbb".to_vec(), b"ccccc".to_vec()]
        );
        buf.clear();
        assert!(matches!(&buf.data, Buf::Heap(v) if v.is_empty() && v.capacity() > 0));

        // Inline, read back by reference, as owned rows, and shared.
        let mut buf = RowBuf::default();
        buf.push(1, &m(b"xyzzy")).unwrap();
        let mut kept = None;
        buf.clone()
            .into_rows(cols(1))
            .for_each_ref(|r| kept = Some(r.clone()));
        assert_eq!(kept.unwrap().get_raw(0usize), Some(&b"xyzzy"[..]));
        let mut rows = buf.into_rows(cols(1));
        if let Rows::Packed { data, .. } = &mut rows {
            assert_eq!(&data.share()[..], &m(b"xyzzy")[..]);
        }
        assert_eq!(rows.next().unwrap().get_raw(0usize), Some(&b"xyzzy"[..]));
    }

    #[test]
    fn rows_come_back_in_order_short_and_long_bodies_and_nulls_alike() {
        let long = vec![b'x'; 300];
        let mut buf = RowBuf::default();
        buf.push(2, &message(&[Some(b"1"), None])).unwrap();
        buf.push(2, &message(&[Some(&long), Some(b"two")])).unwrap();
        buf.push(2, &message(&[None, Some(b"")])).unwrap();
        let rows: Vec<Row> = buf.into_rows(cols(2)).collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].get_raw(0usize), Some(&b"1"[..]));
        assert_eq!(rows[0].get_raw(1usize), None);
        assert_eq!(rows[1].get_raw(0usize), Some(&long[..]));
        assert_eq!(rows[1].get::<_, String>(1usize), "two");
        assert_eq!(rows[2].get_raw(0usize), None);
        assert_eq!(rows[2].get_raw(1usize), Some(&b""[..]));
        // A clone of an inline row and of a shared one reads the same.
        assert_eq!(rows[0].clone().get_raw(0usize), Some(&b"1"[..]));
        assert_eq!(rows[1].clone().get_raw(0usize), Some(&long[..]));
    }

    #[test]
    fn a_malformed_row_is_refused_with_the_error_row_new_gives_and_nothing_is_kept() {
        let mut buf = RowBuf::default();
        let cases: [(Vec<u8>, &str); 4] = [
            (
                message(&[Some(b"1")]),
                "DataRow has 1 fields but the RowDescription has 2",
            ),
            (
                {
                    let mut m = message(&[Some(b"1"), Some(b"22")]);
                    m.pop();
                    m
                },
                "DataRow field 1 of 2 bytes runs past the end of the message",
            ),
            (
                {
                    let mut m = message(&[Some(b"1"), Some(b"2")]);
                    m.push(0);
                    m
                },
                "DataRow has bytes after its last field",
            ),
            (
                {
                    let mut m = message(&[Some(b"1"), None]);
                    let at = m.len() - 4;
                    m[at..].copy_from_slice(&(-2i32).to_be_bytes());
                    m
                },
                "DataRow field 1 has a negative length -2",
            ),
        ];
        for (m, want) in cases {
            let e = buf.push(2, &m).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Protocol);
            assert!(e.to_string().contains(want), "{e}");
            let old = Row::new(cols(2), Bytes::copy_from_slice(&m[4..])).unwrap_err();
            assert_eq!(e.to_string(), old.to_string());
        }
        assert!(buf.is_empty());
        assert_eq!(buf.byte_len(), 0);
    }

    #[test]
    fn rows_handed_by_reference_read_as_collected_ones_and_a_clone_outlives_the_call() {
        let long = [b'y'; 100];
        let wide: Vec<Option<&[u8]>> = (0..10).map(|_| Some(&b"w"[..])).collect();
        let mut wide_last = wide.clone();
        wide_last[9] = Some(b"last");
        let mut buf = RowBuf::default();
        buf.push(2, &message(&[Some(b"12"), None])).unwrap();
        buf.push(2, &message(&[Some(&long), Some(b"z")])).unwrap();
        buf.push(2, &message(&[None, Some(b"")])).unwrap();
        let collected: Vec<Row> = buf.clone().into_rows(cols(2)).collect();
        let mut seen = Vec::new();
        let mut kept = None;
        buf.into_rows(cols(2)).for_each_ref(|row| {
            // Read out of order, so that the next row must start from its first field.
            seen.push((
                row.get_raw(1usize).map(<[u8]>::to_vec),
                row.get_raw(0usize).map(<[u8]>::to_vec),
            ));
            kept.get_or_insert_with(|| row.clone());
        });
        let want: Vec<_> = collected
            .iter()
            .map(|r| {
                (
                    r.get_raw(1usize).map(<[u8]>::to_vec),
                    r.get_raw(0usize).map(<[u8]>::to_vec),
                )
            })
            .collect();
        assert_eq!(seen, want);
        assert_eq!(kept.unwrap().get_raw(0usize), Some(&b"12"[..]));

        // A row wide enough for a span table: the next row does not read the last one's.
        let mut buf = RowBuf::default();
        buf.push(10, &message(&wide)).unwrap();
        buf.push(10, &message(&wide_last)).unwrap();
        let mut lasts = Vec::new();
        buf.into_rows(cols(10)).for_each_ref(|row| {
            let _ = row.get_raw(9usize);
            let _ = row.get_raw(0usize);
            lasts.push(row.get_raw(9usize).unwrap().to_vec());
        });
        assert_eq!(lasts, [b"w".to_vec(), b"last".to_vec()]);
    }
}
