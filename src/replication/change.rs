//! What a logical stream delivers: [`Change`], one decoded pgoutput message, and [`Table`],
//! a relation as the server last described it.
//!
//! This module only describes changes; the decoder (`pgoutput.rs`) builds them and keeps the
//! relations. A `Table` is shared, never copied per change: the decoder builds one per
//! Relation message and every change of that relation holds a handle to it, so that a
//! relation sent again (its definition changed) never alters the changes already delivered.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use crate::row::Column;
use crate::types::TypeRegistry;

use super::{Lsn, Tuple};

/// A table's `REPLICA IDENTITY`: which old values Update and Delete carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReplicaIdentity {
    /// `DEFAULT` (`d`): the primary key's columns.
    Default,
    /// `NOTHING` (`n`): no old values.
    Nothing,
    /// `FULL` (`f`): the whole old row.
    Full,
    /// `USING INDEX` (`i`): the columns of the chosen unique index.
    Index,
    /// A setting this version of momoko does not know, as its letter.
    Other(u8),
}

impl ReplicaIdentity {
    pub(crate) fn from_byte(b: u8) -> ReplicaIdentity {
        match b {
            b'd' => ReplicaIdentity::Default,
            b'n' => ReplicaIdentity::Nothing,
            b'f' => ReplicaIdentity::Full,
            b'i' => ReplicaIdentity::Index,
            b => ReplicaIdentity::Other(b),
        }
    }
}

/// One column of a replicated [`Table`], as its Relation message describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableColumn {
    pub(crate) name: Arc<str>,
    pub(crate) type_oid: u32,
    pub(crate) type_modifier: i32,
    pub(crate) is_key: bool,
}

impl TableColumn {
    /// The column's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The OID of the column's type.
    pub fn type_oid(&self) -> u32 {
        self.type_oid
    }

    /// The type modifier (`atttypmod`), -1 when none.
    pub fn type_modifier(&self) -> i32 {
        self.type_modifier
    }

    /// Whether the column is part of the replica identity key (the primary key, or the
    /// index of `REPLICA IDENTITY USING INDEX`; every column under `FULL`).
    pub fn is_key(&self) -> bool {
        self.is_key
    }
}

/// A replicated table (a relation), as the server last described it in a Relation message.
///
/// Cheap to clone: every change of the table shares one description. Only the published
/// columns are listed (a publication's column list, PostgreSQL 15 and later), in the order
/// the tuples carry them.
#[derive(Clone)]
pub struct Table(pub(crate) Arc<TableInner>);

pub(crate) struct TableInner {
    pub(crate) oid: u32,
    pub(crate) schema: String,
    pub(crate) name: String,
    pub(crate) replica_identity: ReplicaIdentity,
    pub(crate) columns: Box<[TableColumn]>,
    /// The columns as `FromSql` sees them, one set per format a tuple may send a value in,
    /// built once per Relation message so that decoding a value allocates nothing.
    pub(crate) text: Arc<[Column]>,
    pub(crate) binary: Arc<[Column]>,
}

impl Table {
    pub(crate) fn new(
        oid: u32,
        schema: String,
        name: String,
        replica_identity: ReplicaIdentity,
        columns: Vec<TableColumn>,
        types: &TypeRegistry,
    ) -> Table {
        let described = |format: i16| -> Arc<[Column]> {
            columns
                .iter()
                .map(|c| {
                    let mut col = Column::new(
                        c.name.to_string(),
                        oid,
                        0,
                        c.type_oid,
                        -1,
                        c.type_modifier,
                        format,
                    );
                    col.resolve(types);
                    col
                })
                .collect()
        };
        let text = described(0);
        let binary = described(1);
        Table(Arc::new(TableInner {
            oid,
            schema,
            name,
            replica_identity,
            columns: columns.into_boxed_slice(),
            text,
            binary,
        }))
    }

    /// The table's schema (`pg_catalog` when the server sent an empty namespace).
    pub fn schema(&self) -> &str {
        &self.0.schema
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The table's OID (the relation id every change of it carries).
    pub fn oid(&self) -> u32 {
        self.0.oid
    }

    /// The published columns, in tuple order.
    pub fn columns(&self) -> &[TableColumn] {
        &self.0.columns
    }

    /// The table's replica identity setting.
    pub fn replica_identity(&self) -> ReplicaIdentity {
        self.0.replica_identity
    }

    /// Whether both handles come from the same Relation message.
    pub fn same_description(&self, other: &Table) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("oid", &self.0.oid)
            .field("schema", &self.0.schema)
            .field("name", &self.0.name)
            .field("replica_identity", &self.0.replica_identity)
            .field("columns", &self.0.columns)
            .finish()
    }
}

/// One message of a pgoutput stream, decoded: a transaction boundary, a relation's
/// description, a row change, a logical message, or a streamed or two-phase transaction's
/// boundary.
///
/// Messages come in WAL order. A transaction is `Begin` … `Commit`; a large transaction
/// streamed while in progress (protocol 2 and later, `streaming` on) comes as blocks
/// `StreamStart` … `StreamStop`, its changes carrying `xid: Some(..)`, and ends with
/// `StreamCommit` or `StreamAbort` (or `StreamPrepare`); a two-phase transaction (protocol
/// 3, `two_phase` on) is `BeginPrepare` … `Prepare`, then later `CommitPrepared` or
/// `RollbackPrepared`.
///
/// Match it with a `_` arm and `..` in each pattern: new variants and fields may come.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Change {
    /// A transaction starts (`B`).
    #[non_exhaustive]
    Begin {
        /// The transaction's id.
        xid: u32,
        /// The LSN of its commit record.
        final_lsn: Lsn,
        /// When it committed.
        commit_time: SystemTime,
    },
    /// A transaction committed (`C`): everything up to `end_lsn` has been delivered.
    #[non_exhaustive]
    Commit {
        /// The LSN of the commit record.
        commit_lsn: Lsn,
        /// The end of the transaction's WAL: what to [`confirm`] once its work is durable.
        ///
        /// [`confirm`]: crate::replication::ReplicationStream::confirm
        end_lsn: Lsn,
        /// When it committed.
        commit_time: SystemTime,
    },
    /// The transaction's changes came from another node (`O`), as replication origins
    /// record it.
    #[non_exhaustive]
    Origin {
        /// The LSN of the commit on the origin server.
        commit_lsn: Lsn,
        /// The origin's name.
        name: String,
    },
    /// A relation's description (`R`), before its first change and again whenever it
    /// changes; momoko keeps it and hands it out with each change.
    #[non_exhaustive]
    Relation {
        /// The relation as now described.
        table: Table,
        /// The streamed transaction it belongs to, inside a `StreamStart` block.
        xid: Option<u32>,
    },
    /// A type's name (`Y`), sent before a Relation that uses a type outside `pg_catalog`.
    #[non_exhaustive]
    Type {
        /// The type's OID.
        oid: u32,
        /// Its schema.
        schema: String,
        /// Its name.
        name: String,
        /// The streamed transaction it belongs to, inside a `StreamStart` block.
        xid: Option<u32>,
    },
    /// A row was inserted (`I`).
    #[non_exhaustive]
    Insert {
        /// The table.
        table: Table,
        /// The new row.
        new: Tuple,
        /// The streamed transaction it belongs to, inside a `StreamStart` block.
        xid: Option<u32>,
    },
    /// A row was updated (`U`).
    #[non_exhaustive]
    Update {
        /// The table.
        table: Table,
        /// The old replica-identity key (`K`), sent when the update changed it.
        key: Option<Tuple>,
        /// The whole old row (`O`), under `REPLICA IDENTITY FULL`. At most one of `key`
        /// and `old` is `Some`.
        old: Option<Tuple>,
        /// The new row; a TOASTed value the update did not change is not sent
        /// ([`Tuple::is_unchanged`]).
        new: Tuple,
        /// The streamed transaction it belongs to, inside a `StreamStart` block.
        xid: Option<u32>,
    },
    /// A row was deleted (`D`).
    #[non_exhaustive]
    Delete {
        /// The table.
        table: Table,
        /// The replica-identity key of the deleted row (`K`); its other columns are NULL.
        key: Option<Tuple>,
        /// The whole deleted row (`O`), under `REPLICA IDENTITY FULL`.
        old: Option<Tuple>,
        /// The streamed transaction it belongs to, inside a `StreamStart` block.
        xid: Option<u32>,
    },
    /// Tables were truncated (`T`), in one statement.
    #[non_exhaustive]
    Truncate {
        /// The tables (those in the publication).
        tables: Vec<Table>,
        /// `TRUNCATE … CASCADE`.
        cascade: bool,
        /// `TRUNCATE … RESTART IDENTITY`.
        restart_identity: bool,
        /// The streamed transaction it belongs to, inside a `StreamStart` block.
        xid: Option<u32>,
    },
    /// A logical message (`M`) from `pg_logical_emit_message` (option `messages`).
    #[non_exhaustive]
    Message {
        /// Emitted inside a transaction (and delivered at its commit), or on its own.
        transactional: bool,
        /// The message's LSN.
        lsn: Lsn,
        /// Its prefix.
        prefix: String,
        /// Its content.
        content: Vec<u8>,
        /// The streamed transaction it belongs to, inside a `StreamStart` block.
        xid: Option<u32>,
    },
    /// A block of a streamed in-progress transaction begins (`S`, protocol 2).
    #[non_exhaustive]
    StreamStart {
        /// The transaction's id.
        xid: u32,
        /// Whether this is its first block.
        first: bool,
    },
    /// The current streamed block ends (`E`, protocol 2).
    #[non_exhaustive]
    StreamStop {},
    /// A streamed transaction committed (`c`, protocol 2).
    #[non_exhaustive]
    StreamCommit {
        /// The transaction's id.
        xid: u32,
        /// The LSN of the commit record.
        commit_lsn: Lsn,
        /// The end of the transaction's WAL: what to confirm once its work is durable.
        end_lsn: Lsn,
        /// When it committed.
        commit_time: SystemTime,
    },
    /// A streamed transaction, or one of its subtransactions, aborted (`A`, protocol 2):
    /// discard its changes (those of `subxid` only, when it differs from `xid`).
    #[non_exhaustive]
    StreamAbort {
        /// The top-level transaction's id.
        xid: u32,
        /// The aborted (sub)transaction's id; equal to `xid` for the whole transaction.
        subxid: u32,
        /// The abort's LSN (protocol 4 with `streaming = parallel`).
        abort_lsn: Option<Lsn>,
        /// When it aborted (protocol 4 with `streaming = parallel`).
        abort_time: Option<SystemTime>,
    },
    /// A prepared transaction starts (`b`, protocol 3 with `two_phase`).
    #[non_exhaustive]
    BeginPrepare {
        /// The LSN of the prepare record.
        prepare_lsn: Lsn,
        /// The end of the prepared transaction's WAL.
        end_lsn: Lsn,
        /// When it was prepared.
        prepare_time: SystemTime,
        /// The transaction's id.
        xid: u32,
        /// Its global identifier (`PREPARE TRANSACTION 'gid'`).
        gid: String,
    },
    /// A transaction was prepared (`P`, protocol 3 with `two_phase`).
    #[non_exhaustive]
    Prepare {
        /// The LSN of the prepare record.
        prepare_lsn: Lsn,
        /// The end of the prepared transaction's WAL.
        end_lsn: Lsn,
        /// When it was prepared.
        prepare_time: SystemTime,
        /// The transaction's id.
        xid: u32,
        /// Its global identifier.
        gid: String,
    },
    /// A prepared transaction committed (`K`, protocol 3 with `two_phase`).
    #[non_exhaustive]
    CommitPrepared {
        /// The LSN of the commit record.
        commit_lsn: Lsn,
        /// The end of the commit's WAL.
        end_lsn: Lsn,
        /// When it committed.
        commit_time: SystemTime,
        /// The transaction's id.
        xid: u32,
        /// Its global identifier.
        gid: String,
    },
    /// A prepared transaction was rolled back (`r`, protocol 3 with `two_phase`).
    #[non_exhaustive]
    RollbackPrepared {
        /// The end of the prepared transaction's WAL.
        prepare_end_lsn: Lsn,
        /// The end of the rollback's WAL.
        rollback_end_lsn: Lsn,
        /// When it was prepared.
        prepare_time: SystemTime,
        /// When it was rolled back.
        rollback_time: SystemTime,
        /// The transaction's id.
        xid: u32,
        /// Its global identifier.
        gid: String,
    },
    /// A streamed transaction was prepared (`p`, protocol 3 with `two_phase` and
    /// `streaming`).
    #[non_exhaustive]
    StreamPrepare {
        /// The LSN of the prepare record.
        prepare_lsn: Lsn,
        /// The end of the prepared transaction's WAL.
        end_lsn: Lsn,
        /// When it was prepared.
        prepare_time: SystemTime,
        /// The transaction's id.
        xid: u32,
        /// Its global identifier.
        gid: String,
    },
}

impl Change {
    /// The tag letter of the pgoutput message this change came from (`B`, `I`, `c`…).
    pub fn tag(&self) -> u8 {
        match self {
            Change::Begin { .. } => b'B',
            Change::Commit { .. } => b'C',
            Change::Origin { .. } => b'O',
            Change::Relation { .. } => b'R',
            Change::Type { .. } => b'Y',
            Change::Insert { .. } => b'I',
            Change::Update { .. } => b'U',
            Change::Delete { .. } => b'D',
            Change::Truncate { .. } => b'T',
            Change::Message { .. } => b'M',
            Change::StreamStart { .. } => b'S',
            Change::StreamStop { .. } => b'E',
            Change::StreamCommit { .. } => b'c',
            Change::StreamAbort { .. } => b'A',
            Change::BeginPrepare { .. } => b'b',
            Change::Prepare { .. } => b'P',
            Change::CommitPrepared { .. } => b'K',
            Change::RollbackPrepared { .. } => b'r',
            Change::StreamPrepare { .. } => b'p',
        }
    }
}
