//! The decoder on hand-built messages with exact bytes; tests/replication_decode.rs checks
//! it on what a real server sends.

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;

use super::*;
use crate::replication::ReplicaIdentity;
use crate::ErrorKind;

/// Builds a message field by field, big-endian as the protocol is.
#[derive(Default, Clone)]
struct Msg(Vec<u8>);

impl Msg {
    fn tag(t: u8) -> Msg {
        Msg(vec![t])
    }
    fn u8(mut self, v: u8) -> Msg {
        self.0.push(v);
        self
    }
    fn i16(mut self, v: i16) -> Msg {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(mut self, v: u32) -> Msg {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Msg {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn s(mut self, v: &str) -> Msg {
        self.0.extend_from_slice(v.as_bytes());
        self.0.push(0);
        self
    }
    fn text(self, v: &str) -> Msg {
        self.u8(b't').u32(v.len() as u32).raw(v.as_bytes())
    }
    fn bin(self, v: &[u8]) -> Msg {
        self.u8(b'b').u32(v.len() as u32).raw(v)
    }
    fn raw(mut self, v: &[u8]) -> Msg {
        self.0.extend_from_slice(v);
        self
    }
    fn bytes(&self) -> Bytes {
        Bytes::from(self.0.clone())
    }
}

fn at(us: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(946_684_800) + Duration::from_micros(us)
}

/// Relation 16384 public.items (id int4 key, note text, n int8), identity default.
fn items_relation() -> Msg {
    Msg::tag(b'R')
        .u32(16384)
        .s("public")
        .s("items")
        .u8(b'd')
        .i16(3)
        .u8(1)
        .s("id")
        .u32(23)
        .u32(u32::MAX) // typmod -1
        .u8(0)
        .s("note")
        .u32(25)
        .u32(u32::MAX)
        .u8(0)
        .s("n")
        .u32(20)
        .u32(u32::MAX)
}

fn decoder_with_items() -> Decoder {
    let mut d = Decoder::new();
    d.decode(items_relation().bytes()).unwrap();
    d
}

#[test]
fn relation_is_kept_and_described() {
    let mut d = Decoder::new();
    let Change::Relation { table, xid } = d.decode(items_relation().bytes()).unwrap() else {
        panic!()
    };
    assert_eq!(xid, None);
    assert_eq!(
        (table.oid(), table.schema(), table.name()),
        (16384, "public", "items")
    );
    assert_eq!(table.replica_identity(), ReplicaIdentity::Default);
    let cols: Vec<_> = table
        .columns()
        .iter()
        .map(|c| (c.name(), c.type_oid(), c.type_modifier(), c.is_key()))
        .collect();
    assert_eq!(
        cols,
        [
            ("id", 23, -1, true),
            ("note", 25, -1, false),
            ("n", 20, -1, false)
        ]
    );
    assert!(d.relation(16384).unwrap().same_description(&table));
}

#[test]
fn empty_namespace_is_pg_catalog() {
    let mut d = Decoder::new();
    let m = Msg::tag(b'R').u32(1259).s("").s("pg_class").u8(b'n').i16(0);
    let Change::Relation { table, .. } = d.decode(m.bytes()).unwrap() else {
        panic!()
    };
    assert_eq!(table.schema(), "pg_catalog");
    assert_eq!(table.replica_identity(), ReplicaIdentity::Nothing);
}

#[test]
fn insert_decodes_text_binary_null_and_unchanged_values() {
    let mut d = decoder_with_items();
    let m = Msg::tag(b'I')
        .u32(16384)
        .u8(b'N')
        .i16(3)
        .bin(&7i32.to_be_bytes())
        .u8(b'n')
        .text("-12");
    let Change::Insert { table, new, xid } = d.decode(m.bytes()).unwrap() else {
        panic!()
    };
    assert_eq!((table.name(), xid), ("items", None));
    assert_eq!(new.len(), 3);
    assert_eq!(new.get::<_, i32>("id"), 7);
    assert_eq!(new.get::<_, Option<String>>(1), None);
    assert!(new.is_null("note"));
    assert_eq!(new.get::<_, i64>("n"), -12);
    assert_eq!(new.get_raw("n"), Some((&b"-12"[..], false)));
    assert_eq!(new.get_raw(0), Some((&7i32.to_be_bytes()[..], true)));
    // A NULL into a non-Option is a Conversion error naming the column.
    let e = new.try_get::<_, String>("note").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conversion);
    assert!(e.to_string().contains("\"note\""), "{e}");
    // A missing column is a Usage error.
    assert_eq!(
        new.try_get::<_, i32>("nope").unwrap_err().kind(),
        ErrorKind::Usage
    );
    assert_eq!(
        new.try_get::<_, i32>(3).unwrap_err().kind(),
        ErrorKind::Usage
    );
}

#[test]
fn unchanged_toast_value_is_reported_and_never_read_as_a_value() {
    let mut d = decoder_with_items();
    let m = Msg::tag(b'U')
        .u32(16384)
        .u8(b'N')
        .i16(3)
        .text("1")
        .u8(b'u')
        .text("5");
    let Change::Update { key, old, new, .. } = d.decode(m.bytes()).unwrap() else {
        panic!()
    };
    assert!(key.is_none() && old.is_none());
    assert!(new.is_unchanged("note"));
    assert!(!new.is_null("note"));
    assert!(!new.is_unchanged("id"));
    for e in [
        new.try_get::<_, Option<String>>("note").unwrap_err(),
        new.try_get::<_, crate::Value>(1).unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(e.to_string().contains("unchanged TOASTed"), "{e}");
    }
    assert_eq!(new.get_raw("note"), None);
    let values = new.try_to_values().unwrap();
    assert_eq!(values[1], None);
    assert_eq!(values[2], Some(crate::Value::Int8(5)));
}

#[test]
#[should_panic(expected = "unchanged TOASTed")]
fn get_of_an_unchanged_value_panics_with_the_reason() {
    let mut d = decoder_with_items();
    let m = Msg::tag(b'I')
        .u32(16384)
        .u8(b'N')
        .i16(3)
        .text("1")
        .u8(b'u')
        .u8(b'n');
    let Change::Insert { new, .. } = d.decode(m.bytes()).unwrap() else {
        panic!()
    };
    let _: Option<String> = new.get("note");
}

#[test]
fn update_with_key_tuple_and_with_old_tuple() {
    let mut d = decoder_with_items();
    let key = Msg::tag(b'U')
        .u32(16384)
        .u8(b'K')
        .i16(3)
        .text("1")
        .u8(b'n')
        .u8(b'n')
        .u8(b'N')
        .i16(3)
        .text("2")
        .text("x")
        .u8(b'n');
    let Change::Update { key, old, new, .. } = d.decode(key.bytes()).unwrap() else {
        panic!()
    };
    assert!(old.is_none());
    assert_eq!(key.unwrap().get::<_, i32>("id"), 1);
    assert_eq!(new.get::<_, i32>("id"), 2);
    assert_eq!(new.get::<_, String>("note"), "x");

    let full = Msg::tag(b'U')
        .u32(16384)
        .u8(b'O')
        .i16(3)
        .text("2")
        .text("x")
        .text("9")
        .u8(b'N')
        .i16(3)
        .text("2")
        .text("y")
        .text("9");
    let Change::Update { key, old, new, .. } = d.decode(full.bytes()).unwrap() else {
        panic!()
    };
    assert!(key.is_none());
    let old = old.unwrap();
    assert_eq!(old.get::<_, String>("note"), "x");
    assert_eq!(old.get::<_, i64>("n"), 9);
    assert_eq!(new.get::<_, String>("note"), "y");
}

#[test]
fn delete_with_key_and_with_old() {
    let mut d = decoder_with_items();
    for (kind, is_key) in [(b'K', true), (b'O', false)] {
        let m = Msg::tag(b'D')
            .u32(16384)
            .u8(kind)
            .i16(3)
            .text("4")
            .u8(b'n')
            .u8(b'n');
        let Change::Delete { key, old, xid, .. } = d.decode(m.bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(xid, None);
        let t = if is_key { key.unwrap() } else { old.unwrap() };
        assert_eq!(t.get::<_, i32>(0), 4);
    }
    let bad = Msg::tag(b'D').u32(16384).u8(b'N').i16(3);
    assert_eq!(
        d.decode(bad.bytes()).unwrap_err().kind(),
        ErrorKind::Protocol
    );
}

#[test]
fn truncate_reads_its_option_bits_and_tables() {
    let mut d = decoder_with_items();
    for (opts, cascade, restart) in [
        (0, false, false),
        (1, true, false),
        (2, false, true),
        (3, true, true),
    ] {
        let m = Msg::tag(b'T').u32(2).u8(opts).u32(16384).u32(16384);
        let Change::Truncate {
            tables,
            cascade: c,
            restart_identity: r,
            xid,
        } = d.decode(m.bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!((c, r, xid), (cascade, restart, None));
        assert_eq!(tables.len(), 2);
        assert_eq!(tables[0].name(), "items");
    }
    // A count larger than the message: an error before any allocation of that size.
    let huge = Msg::tag(b'T').u32(0x7FFF_FFFF).u8(0).u32(16384);
    assert_eq!(
        d.decode(huge.bytes()).unwrap_err().kind(),
        ErrorKind::Protocol
    );
    let negative = Msg::tag(b'T').u32(u32::MAX).u8(0);
    assert_eq!(
        d.decode(negative.bytes()).unwrap_err().kind(),
        ErrorKind::Protocol
    );
}

#[test]
fn transaction_boundaries_origin_and_message() {
    let mut d = Decoder::new();
    let b = Msg::tag(b'B').u64(0x10_0000_0100).u64(1_000_000).u32(750);
    let Change::Begin {
        xid,
        final_lsn,
        commit_time,
    } = d.decode(b.bytes()).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (xid, final_lsn, commit_time),
        (750, Lsn::from(0x10_0000_0100), at(1_000_000))
    );

    let o = Msg::tag(b'O').u64(0x42).s("node_a");
    let Change::Origin { commit_lsn, name } = d.decode(o.bytes()).unwrap() else {
        panic!()
    };
    assert_eq!((commit_lsn, name.as_str()), (Lsn::from(0x42), "node_a"));

    let m = Msg::tag(b'M').u8(1).u64(0x99).s("pfx").u32(3).raw(b"a\0b");
    let Change::Message {
        transactional,
        lsn,
        prefix,
        content,
        xid,
    } = d.decode(m.bytes()).unwrap()
    else {
        panic!()
    };
    assert!(transactional);
    assert_eq!(
        (lsn, prefix.as_str(), &content[..], xid),
        (Lsn::from(0x99), "pfx", &b"a\0b"[..], None)
    );

    let c = Msg::tag(b'C')
        .u8(0)
        .u64(0x10_0000_0100)
        .u64(0x10_0000_0130)
        .u64(1_000_000);
    let Change::Commit {
        commit_lsn,
        end_lsn,
        commit_time,
    } = d.decode(c.bytes()).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (commit_lsn, end_lsn, commit_time),
        (
            Lsn::from(0x10_0000_0100),
            Lsn::from(0x10_0000_0130),
            at(1_000_000)
        )
    );
}

#[test]
fn streamed_block_prefixes_changes_with_the_xid() {
    let mut d = decoder_with_items();
    let Change::StreamStart { xid, first } =
        d.decode(Msg::tag(b'S').u32(900).u8(1).bytes()).unwrap()
    else {
        panic!()
    };
    assert_eq!((xid, first), (900, true));
    assert_eq!(d.streaming_xid(), Some(900));
    // Inside the block a Relation and an Insert start with the xid.
    let mut rel_bytes = vec![b'R'];
    rel_bytes.extend_from_slice(&900u32.to_be_bytes());
    rel_bytes.extend_from_slice(&items_relation().0[1..]);
    let Change::Relation { xid, table } = d.decode(Bytes::from(rel_bytes)).unwrap() else {
        panic!()
    };
    assert_eq!((xid, table.name()), (Some(900), "items"));
    let ins = Msg::tag(b'I')
        .u32(900)
        .u32(16384)
        .u8(b'N')
        .i16(3)
        .text("1")
        .text("a")
        .text("2");
    let Change::Insert { xid, new, .. } = d.decode(ins.bytes()).unwrap() else {
        panic!()
    };
    assert_eq!((xid, new.get::<_, i32>(0)), (Some(900), 1));
    let m = Msg::tag(b'M').u32(900).u8(1).u64(5).s("p").u32(0);
    assert!(matches!(
        d.decode(m.bytes()).unwrap(),
        Change::Message { xid: Some(900), .. }
    ));
    let t = Msg::tag(b'T').u32(900).u32(1).u8(0).u32(16384);
    assert!(matches!(
        d.decode(t.bytes()).unwrap(),
        Change::Truncate { xid: Some(900), .. }
    ));
    // A Begin inside a block is a broken stream.
    let b = Msg::tag(b'B').u64(1).u64(1).u32(1);
    assert_eq!(d.decode(b.bytes()).unwrap_err().kind(), ErrorKind::Protocol);
    assert!(matches!(
        d.decode(Msg::tag(b'E').bytes()).unwrap(),
        Change::StreamStop {}
    ));
    assert_eq!(d.streaming_xid(), None);
    // Outside it, an Insert has no xid again.
    let ins = Msg::tag(b'I')
        .u32(16384)
        .u8(b'N')
        .i16(3)
        .text("1")
        .text("a")
        .text("2");
    assert!(matches!(
        d.decode(ins.bytes()).unwrap(),
        Change::Insert { xid: None, .. }
    ));
    // A StreamStop outside a block, and a second StreamStart inside one, are errors.
    assert_eq!(
        d.decode(Msg::tag(b'E').bytes()).unwrap_err().kind(),
        ErrorKind::Protocol
    );
    d.decode(Msg::tag(b'S').u32(901).u8(0).bytes()).unwrap();
    assert_eq!(
        d.decode(Msg::tag(b'S').u32(901).u8(0).bytes())
            .unwrap_err()
            .kind(),
        ErrorKind::Protocol
    );
}

#[test]
fn stream_commit_and_both_forms_of_stream_abort() {
    let mut d = Decoder::new();
    let c = Msg::tag(b'c').u32(900).u8(0).u64(0x200).u64(0x230).u64(7);
    let Change::StreamCommit {
        xid,
        commit_lsn,
        end_lsn,
        commit_time,
    } = d.decode(c.bytes()).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (xid, commit_lsn, end_lsn, commit_time),
        (900, Lsn::from(0x200), Lsn::from(0x230), at(7))
    );

    let a = Msg::tag(b'A').u32(900).u32(901);
    let Change::StreamAbort {
        xid,
        subxid,
        abort_lsn,
        abort_time,
    } = d.decode(a.bytes()).unwrap()
    else {
        panic!()
    };
    assert_eq!((xid, subxid, abort_lsn, abort_time), (900, 901, None, None));

    let a4 = Msg::tag(b'A').u32(900).u32(900).u64(0x300).u64(9);
    let Change::StreamAbort {
        abort_lsn,
        abort_time,
        ..
    } = d.decode(a4.bytes()).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (abort_lsn, abort_time),
        (Some(Lsn::from(0x300)), Some(at(9)))
    );
    // Neither form: an error.
    let odd = Msg::tag(b'A').u32(900).u32(900).u64(0x300);
    assert_eq!(
        d.decode(odd.bytes()).unwrap_err().kind(),
        ErrorKind::Protocol
    );
}

#[test]
fn two_phase_messages() {
    let mut d = Decoder::new();
    let b = Msg::tag(b'b')
        .u64(0x100)
        .u64(0x180)
        .u64(3)
        .u32(77)
        .s("gid1");
    let Change::BeginPrepare {
        prepare_lsn,
        end_lsn,
        prepare_time,
        xid,
        gid,
    } = d.decode(b.bytes()).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (prepare_lsn, end_lsn, prepare_time, xid, gid.as_str()),
        (Lsn::from(0x100), Lsn::from(0x180), at(3), 77, "gid1")
    );
    for tag in [b'P', b'p'] {
        let m = Msg::tag(tag)
            .u8(0)
            .u64(0x100)
            .u64(0x180)
            .u64(3)
            .u32(77)
            .s("gid1");
        match d.decode(m.bytes()).unwrap() {
            Change::Prepare {
                prepare_lsn,
                end_lsn,
                xid,
                gid,
                ..
            } if tag == b'P' => {
                assert_eq!(
                    (prepare_lsn, end_lsn, xid, gid.as_str()),
                    (Lsn::from(0x100), Lsn::from(0x180), 77, "gid1")
                )
            }
            Change::StreamPrepare { xid, gid, .. } if tag == b'p' => {
                assert_eq!((xid, gid.as_str()), (77, "gid1"))
            }
            other => panic!("{other:?}"),
        }
    }
    let k = Msg::tag(b'K')
        .u8(0)
        .u64(0x200)
        .u64(0x230)
        .u64(4)
        .u32(77)
        .s("gid1");
    let Change::CommitPrepared {
        commit_lsn,
        end_lsn,
        commit_time,
        xid,
        gid,
    } = d.decode(k.bytes()).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (commit_lsn, end_lsn, commit_time, xid, gid.as_str()),
        (Lsn::from(0x200), Lsn::from(0x230), at(4), 77, "gid1")
    );
    let r = Msg::tag(b'r')
        .u8(0)
        .u64(0x180)
        .u64(0x260)
        .u64(3)
        .u64(5)
        .u32(77)
        .s("gid1");
    let Change::RollbackPrepared {
        prepare_end_lsn,
        rollback_end_lsn,
        prepare_time,
        rollback_time,
        xid,
        gid,
    } = d.decode(r.bytes()).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (
            prepare_end_lsn,
            rollback_end_lsn,
            prepare_time,
            rollback_time,
            xid,
            gid.as_str()
        ),
        (Lsn::from(0x180), Lsn::from(0x260), at(3), at(5), 77, "gid1")
    );
}

#[test]
fn type_message_is_kept() {
    let mut d = Decoder::new();
    let y = Msg::tag(b'Y').u32(16500).s("public").s("mood");
    let Change::Type {
        oid,
        schema,
        name,
        xid,
    } = d.decode(y.bytes()).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (oid, schema.as_str(), name.as_str(), xid),
        (16500, "public", "mood", None)
    );
    assert_eq!(d.type_name(16500), Some(("public", "mood")));
}

#[test]
fn relation_sent_again_replaces_the_old_description_for_later_changes_only() {
    let mut d = decoder_with_items();
    let ins = Msg::tag(b'I')
        .u32(16384)
        .u8(b'N')
        .i16(3)
        .text("1")
        .text("a")
        .text("2");
    let Change::Insert { new: before, .. } = d.decode(ins.bytes()).unwrap() else {
        panic!()
    };
    // ALTER TABLE items ADD COLUMN extra bool: the relation is described again.
    let mut again = items_relation().0;
    // ncols 3 → 4, then the extra column.
    let ncols_at = 1 + 4 + "public\0items\0".len() + 1;
    again[ncols_at..ncols_at + 2].copy_from_slice(&4i16.to_be_bytes());
    let again = Msg(again).u8(0).s("extra").u32(16).u32(u32::MAX);
    d.decode(again.bytes()).unwrap();
    // The old tuple still reads with its own description; a 3-column tuple is now an error.
    assert_eq!(before.len(), 3);
    assert_eq!(before.get::<_, String>("note"), "a");
    assert_eq!(
        d.decode(ins.bytes()).unwrap_err().kind(),
        ErrorKind::Protocol
    );
    let ins4 = Msg::tag(b'I')
        .u32(16384)
        .u8(b'N')
        .i16(4)
        .text("1")
        .text("a")
        .text("2")
        .text("t");
    let Change::Insert { new, .. } = d.decode(ins4.bytes()).unwrap() else {
        panic!()
    };
    assert!(new.get::<_, bool>("extra"));
}

#[test]
fn unknown_relation_unknown_tag_trailing_bytes_and_bad_lengths_are_errors() {
    let mut d = decoder_with_items();
    let unknown = Msg::tag(b'I').u32(99).u8(b'N').i16(0);
    let e = d.decode(unknown.bytes()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
    assert!(e.to_string().contains("relation 99"), "{e}");
    for bad in [
        Msg::default(),
        Msg::tag(b'Z'),
        Msg::tag(b'w'),
        // Trailing byte after a Commit.
        Msg::tag(b'C').u8(0).u64(1).u64(2).u64(3).u8(0),
        // Negative and too-long value lengths.
        Msg::tag(b'I')
            .u32(16384)
            .u8(b'N')
            .i16(3)
            .u8(b't')
            .u32(u32::MAX),
        Msg::tag(b'I')
            .u32(16384)
            .u8(b'N')
            .i16(3)
            .u8(b't')
            .u32(1000)
            .raw(b"x"),
        // Unknown column kind.
        Msg::tag(b'I').u32(16384).u8(b'N').i16(3).u8(b'x'),
        // Wrong tuple count, negative column count.
        Msg::tag(b'I')
            .u32(16384)
            .u8(b'N')
            .i16(2)
            .text("1")
            .text("2"),
        Msg::tag(b'R').u32(1).s("a").s("b").u8(b'd').i16(-1),
        // Message content length past the end, negative.
        Msg::tag(b'M').u8(0).u64(1).s("p").u32(10).raw(b"abc"),
        Msg::tag(b'M').u8(0).u64(1).s("p").u32(u32::MAX),
        // A string without its NUL, a bad first-segment flag.
        Msg::tag(b'O').u64(1).raw(b"abc"),
        Msg::tag(b'S').u32(1).u8(2),
        // Insert without 'N'.
        Msg::tag(b'I').u32(16384).u8(b'K').i16(3),
    ] {
        let e = d.decode(bad.bytes()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol, "{:?}: {e}", bad.0);
    }
}

#[test]
fn every_truncation_of_valid_messages_is_an_error_not_a_panic() {
    let msgs = [
        items_relation(),
        Msg::tag(b'B').u64(1).u64(2).u32(3),
        Msg::tag(b'C').u8(0).u64(1).u64(2).u64(3),
        Msg::tag(b'I')
            .u32(16384)
            .u8(b'N')
            .i16(3)
            .text("1")
            .u8(b'n')
            .bin(&[0; 8]),
        Msg::tag(b'U')
            .u32(16384)
            .u8(b'O')
            .i16(3)
            .text("1")
            .u8(b'n')
            .u8(b'u')
            .u8(b'N')
            .i16(3)
            .text("1")
            .u8(b'n')
            .u8(b'u'),
        Msg::tag(b'D')
            .u32(16384)
            .u8(b'K')
            .i16(3)
            .text("1")
            .u8(b'n')
            .u8(b'n'),
        Msg::tag(b'T').u32(1).u8(3).u32(16384),
        Msg::tag(b'M').u8(1).u64(1).s("p").u32(2).raw(b"xy"),
        Msg::tag(b'Y').u32(1).s("s").s("n"),
        Msg::tag(b'O').u64(1).s("o"),
        Msg::tag(b'c').u32(1).u8(0).u64(1).u64(2).u64(3),
        Msg::tag(b'b').u64(1).u64(2).u64(3).u32(4).s("g"),
        Msg::tag(b'K').u8(0).u64(1).u64(2).u64(3).u32(4).s("g"),
        Msg::tag(b'r')
            .u8(0)
            .u64(1)
            .u64(2)
            .u64(3)
            .u64(4)
            .u32(5)
            .s("g"),
    ];
    for m in msgs {
        let mut d = decoder_with_items();
        d.decode(m.bytes()).unwrap();
        for cut in 0..m.0.len() {
            let mut d = decoder_with_items();
            let e = d.decode(Bytes::copy_from_slice(&m.0[..cut])).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Protocol, "{:?} cut at {cut}", m.0);
        }
    }
}
