//! The pgoutput decoder: one logical replication message (the data of one XLogData) in, one
//! typed [`Change`] out, protocol versions 1 to 4.
//!
//! Sans-IO. The [`Decoder`] owns what the protocol asks the client to remember: the
//! relations (a Relation message describes a table before its first change, and again when
//! it changes: the new description replaces the old one for the changes that follow), the
//! names of the types Type messages announce, and whether a streamed block (`S` … `E`) is
//! open, since inside one every change carries its transaction's xid.
//!
//! ```text
//!   outside a block ──S(xid)──▶ inside block xid ──E──▶ outside a block
//!   (no xid prefix)             (xid prefix on R Y I U D T M)
//! ```
//!
//! It trusts nothing it is given: a truncated message, a length past the end, bytes after
//! the last field, an unknown tag, a change of a relation no Relation message described, a
//! tuple whose column count differs from its relation's, a transaction boundary inside a
//! streamed block: each is a Protocol error, never a panic and never a change with wrong
//! values. Allocations are bounded by the message's own length.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::error::Error;
use crate::types::TypeRegistry;

use super::change::{ReplicaIdentity, TableColumn};
use super::tuple::Field;
use super::{from_pg_micros, Change, Lsn, Table, Tuple};

/// Reads the fields of one message, each read checked against the end.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn short(&self) -> Error {
        Error::protocol(format!(
            "pgoutput {} message truncated at byte {} of {}",
            self.what,
            self.pos,
            self.buf.len()
        ))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.buf.len() - self.pos < n {
            return Err(self.short());
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }

    fn i16(&mut self) -> Result<i16, Error> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Error> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i32(&mut self) -> Result<i32, Error> {
        self.u32().map(|v| v as i32)
    }

    fn u64(&mut self) -> Result<u64, Error> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn lsn(&mut self) -> Result<Lsn, Error> {
        self.u64().map(Lsn::from)
    }

    fn time(&mut self) -> Result<SystemTime, Error> {
        let us = self.u64()? as i64;
        from_pg_micros(us).ok_or_else(|| {
            Error::protocol(format!(
                "pgoutput {} message: timestamp {us} out of range",
                self.what
            ))
        })
    }

    /// A NUL-terminated string.
    fn string(&mut self) -> Result<String, Error> {
        let rest = &self.buf[self.pos..];
        let end = rest.iter().position(|&b| b == 0).ok_or_else(|| {
            Error::protocol(format!(
                "pgoutput {} message: string without its terminating NUL",
                self.what
            ))
        })?;
        let s = std::str::from_utf8(&rest[..end]).map_err(|_| {
            Error::protocol(format!("pgoutput {} message: string not UTF-8", self.what))
        })?;
        self.pos += end + 1;
        Ok(s.to_owned())
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The end of the message: anything left is an error, since a field this decoder does
    /// not know would make every later read wrong.
    fn done(&self) -> Result<(), Error> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(Error::protocol(format!(
                "pgoutput {} message has {} bytes after its last field",
                self.what,
                self.remaining()
            )))
        }
    }
}

/// Decodes the pgoutput messages of one replication session, in order.
///
/// ```
/// use momoko::replication::{pgoutput::Decoder, Change};
/// let mut d = Decoder::new();
/// // StreamStart of xid 7, first segment.
/// let c = d.decode(vec![b'S', 0, 0, 0, 7, 1]).unwrap();
/// assert!(matches!(c, Change::StreamStart { xid: 7, first: true, .. }));
/// assert_eq!(d.streaming_xid(), Some(7));
/// // A truncated message is an error, never a panic.
/// assert!(d.decode(vec![b'B', 0]).is_err());
/// ```
#[derive(Default)]
pub struct Decoder {
    relations: HashMap<u32, Table>,
    types: HashMap<u32, (String, String)>,
    /// The xid of the open streamed block, if one is open.
    stream: Option<u32>,
    /// hstore's and hstore[]'s OIDs once Type messages named them (0 until then), so that
    /// such columns read as [`Value::Hstore`](crate::Value::Hstore) as in query results.
    hstore: (u32, u32),
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("relations", &self.relations.len())
            .field("types", &self.types.len())
            .field("stream", &self.stream)
            .finish()
    }
}

impl Decoder {
    /// A decoder that knows no relation yet.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Forgets the relations, types and stream state: for a new session (after a
    /// reconnect the server describes every relation again).
    pub fn reset(&mut self) {
        *self = Decoder::default();
    }

    /// The relation with this OID as last described, if any.
    pub fn relation(&self, oid: u32) -> Option<&Table> {
        self.relations.get(&oid)
    }

    /// The schema and name a Type message gave this type OID, if any.
    pub fn type_name(&self, oid: u32) -> Option<(&str, &str)> {
        self.types.get(&oid).map(|(s, n)| (s.as_str(), n.as_str()))
    }

    /// The xid of the streamed transaction whose block is open (between `StreamStart` and
    /// `StreamStop`).
    pub fn streaming_xid(&self) -> Option<u32> {
        self.stream
    }

    /// Decodes one message (the data of one XLogData, or one row of
    /// `pg_logical_slot_get_binary_changes`): `Bytes` (shared by the tuples it returns,
    /// without a copy) or a `Vec<u8>`.
    pub fn decode(&mut self, data: impl Into<Bytes>) -> Result<Change, Error> {
        let data: Bytes = data.into();
        let Some(&tag) = data.first() else {
            return Err(Error::protocol("empty pgoutput message"));
        };
        let what = match tag {
            b'B' => "Begin",
            b'C' => "Commit",
            b'O' => "Origin",
            b'R' => "Relation",
            b'Y' => "Type",
            b'I' => "Insert",
            b'U' => "Update",
            b'D' => "Delete",
            b'T' => "Truncate",
            b'M' => "Message",
            b'S' => "Stream Start",
            b'E' => "Stream Stop",
            b'c' => "Stream Commit",
            b'A' => "Stream Abort",
            b'b' => "Begin Prepare",
            b'P' => "Prepare",
            b'K' => "Commit Prepared",
            b'r' => "Rollback Prepared",
            b'p' => "Stream Prepare",
            t => {
                return Err(Error::protocol(format!(
                    "unknown pgoutput message {:?} (0x{t:02x})",
                    char::from(t)
                )))
            }
        };
        let mut r = Reader {
            buf: &data,
            pos: 1,
            what,
        };
        let in_block_only = matches!(tag, b'E');
        let outside_block_only = matches!(
            tag,
            b'B' | b'C' | b'S' | b'c' | b'A' | b'b' | b'P' | b'K' | b'r' | b'p'
        );
        if outside_block_only && self.stream.is_some() {
            return Err(Error::protocol(format!(
                "pgoutput {what} message inside a streamed block"
            )));
        }
        if in_block_only && self.stream.is_none() {
            return Err(Error::protocol(
                "pgoutput Stream Stop message outside a streamed block",
            ));
        }
        // Inside a streamed block, the messages of a change begin with the xid.
        let xid = if self.stream.is_some() {
            match tag {
                b'R' | b'Y' | b'I' | b'U' | b'D' | b'T' | b'M' => Some(r.u32()?),
                _ => None,
            }
        } else {
            None
        };
        let change = match tag {
            b'B' => Change::Begin {
                final_lsn: r.lsn()?,
                commit_time: r.time()?,
                xid: r.u32()?,
            },
            b'C' => {
                let _flags = r.u8()?;
                Change::Commit {
                    commit_lsn: r.lsn()?,
                    end_lsn: r.lsn()?,
                    commit_time: r.time()?,
                }
            }
            b'O' => Change::Origin {
                commit_lsn: r.lsn()?,
                name: r.string()?,
            },
            b'R' => {
                let mut types = TypeRegistry::new();
                if self.hstore.0 != 0 {
                    types.register_hstore(self.hstore.0, self.hstore.1);
                }
                let table = read_relation(&mut r, &types)?;
                r.done()?;
                self.relations.insert(table.oid(), table.clone());
                return Ok(Change::Relation { table, xid });
            }
            b'Y' => {
                let oid = r.u32()?;
                let schema = r.string()?;
                let name = r.string()?;
                r.done()?;
                match name.as_str() {
                    "hstore" => self.hstore.0 = oid,
                    "_hstore" => self.hstore.1 = oid,
                    _ => {}
                }
                self.types.insert(oid, (schema.clone(), name.clone()));
                return Ok(Change::Type {
                    oid,
                    schema,
                    name,
                    xid,
                });
            }
            b'I' => {
                let table = self.table(r.u32()?)?;
                if r.u8()? != b'N' {
                    return Err(Error::protocol(
                        "pgoutput Insert message without its 'N' tuple",
                    ));
                }
                let new = read_tuple(&mut r, &table, &data)?;
                Change::Insert { table, new, xid }
            }
            b'U' => {
                let table = self.table(r.u32()?)?;
                let (mut key, mut old) = (None, None);
                let mut kind = r.u8()?;
                if kind == b'K' || kind == b'O' {
                    let t = read_tuple(&mut r, &table, &data)?;
                    if kind == b'K' {
                        key = Some(t);
                    } else {
                        old = Some(t);
                    }
                    kind = r.u8()?;
                }
                if kind != b'N' {
                    return Err(Error::protocol(format!(
                        "pgoutput Update message: tuple kind {:?} where 'N' was expected",
                        char::from(kind)
                    )));
                }
                let new = read_tuple(&mut r, &table, &data)?;
                Change::Update {
                    table,
                    key,
                    old,
                    new,
                    xid,
                }
            }
            b'D' => {
                let table = self.table(r.u32()?)?;
                let kind = r.u8()?;
                if kind != b'K' && kind != b'O' {
                    return Err(Error::protocol(format!(
                        "pgoutput Delete message: tuple kind {:?} where 'K' or 'O' was expected",
                        char::from(kind)
                    )));
                }
                let t = read_tuple(&mut r, &table, &data)?;
                let (key, old) = if kind == b'K' {
                    (Some(t), None)
                } else {
                    (None, Some(t))
                };
                Change::Delete {
                    table,
                    key,
                    old,
                    xid,
                }
            }
            b'T' => {
                let n = r.i32()?;
                let n = usize::try_from(n).map_err(|_| {
                    Error::protocol(format!("pgoutput Truncate message: {n} relations"))
                })?;
                let options = r.u8()?;
                if r.remaining() / 4 < n {
                    return Err(r.short());
                }
                let mut tables = Vec::with_capacity(n);
                for _ in 0..n {
                    tables.push(self.table(r.u32()?)?);
                }
                Change::Truncate {
                    tables,
                    cascade: options & 1 != 0,
                    restart_identity: options & 2 != 0,
                    xid,
                }
            }
            b'M' => {
                let flags = r.u8()?;
                let lsn = r.lsn()?;
                let prefix = r.string()?;
                let len = r.i32()?;
                let len = usize::try_from(len).map_err(|_| {
                    Error::protocol(format!("pgoutput Message: content length {len}"))
                })?;
                Change::Message {
                    transactional: flags & 1 != 0,
                    lsn,
                    prefix,
                    content: r.take(len)?.to_vec(),
                    xid,
                }
            }
            b'S' => {
                let xid = r.u32()?;
                let first = match r.u8()? {
                    0 => false,
                    1 => true,
                    f => {
                        return Err(Error::protocol(format!(
                            "pgoutput Stream Start message: first-segment flag {f}"
                        )))
                    }
                };
                r.done()?;
                self.stream = Some(xid);
                return Ok(Change::StreamStart { xid, first });
            }
            b'E' => {
                r.done()?;
                self.stream = None;
                return Ok(Change::StreamStop {});
            }
            b'c' => {
                let xid = r.u32()?;
                let _flags = r.u8()?;
                Change::StreamCommit {
                    xid,
                    commit_lsn: r.lsn()?,
                    end_lsn: r.lsn()?,
                    commit_time: r.time()?,
                }
            }
            b'A' => {
                let xid = r.u32()?;
                let subxid = r.u32()?;
                // Protocol 4 with streaming = parallel adds the abort's LSN and time; the
                // length says which form this is.
                let (abort_lsn, abort_time) = if r.remaining() == 0 {
                    (None, None)
                } else {
                    (Some(r.lsn()?), Some(r.time()?))
                };
                Change::StreamAbort {
                    xid,
                    subxid,
                    abort_lsn,
                    abort_time,
                }
            }
            b'b' => Change::BeginPrepare {
                prepare_lsn: r.lsn()?,
                end_lsn: r.lsn()?,
                prepare_time: r.time()?,
                xid: r.u32()?,
                gid: r.string()?,
            },
            b'P' | b'p' => {
                let _flags = r.u8()?;
                let (prepare_lsn, end_lsn, prepare_time) = (r.lsn()?, r.lsn()?, r.time()?);
                let (xid, gid) = (r.u32()?, r.string()?);
                if tag == b'P' {
                    Change::Prepare {
                        prepare_lsn,
                        end_lsn,
                        prepare_time,
                        xid,
                        gid,
                    }
                } else {
                    Change::StreamPrepare {
                        prepare_lsn,
                        end_lsn,
                        prepare_time,
                        xid,
                        gid,
                    }
                }
            }
            b'K' => {
                let _flags = r.u8()?;
                Change::CommitPrepared {
                    commit_lsn: r.lsn()?,
                    end_lsn: r.lsn()?,
                    commit_time: r.time()?,
                    xid: r.u32()?,
                    gid: r.string()?,
                }
            }
            b'r' => {
                let _flags = r.u8()?;
                Change::RollbackPrepared {
                    prepare_end_lsn: r.lsn()?,
                    rollback_end_lsn: r.lsn()?,
                    prepare_time: r.time()?,
                    rollback_time: r.time()?,
                    xid: r.u32()?,
                    gid: r.string()?,
                }
            }
            _ => unreachable!("every tag was matched above"),
        };
        r.done()?;
        Ok(change)
    }

    fn table(&self, oid: u32) -> Result<Table, Error> {
        self.relations.get(&oid).cloned().ok_or_else(|| {
            Error::protocol(format!(
                "pgoutput change of relation {oid}, which no Relation message described"
            ))
        })
    }
}

fn read_relation(r: &mut Reader<'_>, types: &TypeRegistry) -> Result<Table, Error> {
    let oid = r.u32()?;
    let mut schema = r.string()?;
    if schema.is_empty() {
        // pgoutput sends pg_catalog as the empty string.
        schema = "pg_catalog".to_owned();
    }
    let name = r.string()?;
    let identity = ReplicaIdentity::from_byte(r.u8()?);
    let n = r.i16()?;
    let n = usize::try_from(n)
        .map_err(|_| Error::protocol(format!("pgoutput Relation message: {n} columns")))?;
    // Each column takes at least 10 bytes: never reserve more than the message can hold.
    let mut columns = Vec::with_capacity(n.min(r.remaining() / 10));
    for _ in 0..n {
        let flags = r.u8()?;
        let name: Arc<str> = r.string()?.into();
        let type_oid = r.u32()?;
        let type_modifier = r.i32()?;
        columns.push(TableColumn {
            name,
            type_oid,
            type_modifier,
            is_key: flags & 1 != 0,
        });
    }
    Ok(Table::new(oid, schema, name, identity, columns, types))
}

/// Reads a TupleData of `table`, recording where each value sits in `data` (the whole
/// message, which the tuple keeps).
fn read_tuple(r: &mut Reader<'_>, table: &Table, data: &Bytes) -> Result<Tuple, Error> {
    let n = r.i16()?;
    if usize::try_from(n).ok() != Some(table.columns().len()) {
        return Err(Error::protocol(format!(
            "pgoutput {} message: a tuple of {n} columns for relation {}.{} of {}",
            r.what,
            table.schema(),
            table.name(),
            table.columns().len()
        )));
    }
    if u32::try_from(r.buf.len()).is_err() {
        return Err(Error::protocol(format!(
            "pgoutput {} message too long",
            r.what
        )));
    }
    let mut fields = Vec::with_capacity(table.columns().len());
    for i in 0..table.columns().len() {
        let field = match r.u8()? {
            b'n' => Field::Null,
            b'u' => Field::Unchanged,
            kind @ (b't' | b'b') => {
                let len = r.i32()?;
                let len = usize::try_from(len).map_err(|_| {
                    Error::protocol(format!(
                        "pgoutput {} message: column {i} has length {len}",
                        r.what
                    ))
                })?;
                let start = r.pos;
                r.take(len)?;
                // Both fit in u32: the message length was checked above.
                let (start, len) = (start as u32, len as u32);
                if kind == b't' {
                    Field::Text(start, len)
                } else {
                    Field::Binary(start, len)
                }
            }
            k => {
                return Err(Error::protocol(format!(
                    "pgoutput {} message: column {i} of unknown kind {:?}",
                    r.what,
                    char::from(k)
                )))
            }
        };
        fields.push(field);
    }
    Ok(Tuple::new(table.clone(), data.clone(), fields.into()))
}

#[cfg(test)]
#[path = "pgoutput_tests.rs"]
mod tests;
