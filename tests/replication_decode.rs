//! The pgoutput decoder on what a real server sends: a temporary pgoutput slot over an
//! ordinary connection, changes of every kind, and the slot's bytes read back with
//! `pg_logical_slot_peek_binary_changes` (the same messages a walsender puts in XLogData),
//! decoded by `momoko::replication::pgoutput::Decoder` and checked value by value: insert,
//! update and delete under the default identity, with a key change, under REPLICA IDENTITY
//! FULL; truncate with its options; logical messages in and out of transactions; NULLs and
//! an unchanged TOASTed value; text and binary values; a relation described again after
//! ALTER TABLE; a Type message; an origin; a 20,000-row transaction streamed in blocks and an
//! aborted one (protocol 2); two-phase transactions (protocol 3). And `Lsn` read from
//! `pg_lsn` columns in text and binary results.
//!
//! With `MOMOKO_PGOUTPUT_SEEDS=<dir>` each scenario also writes its messages, framed as
//! the fuzz target `pgoutput` reads them, into `<dir>` (how fuzz/seeds/pgoutput was made).

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{dsn, run_for, unique};
use momoko::replication::pgoutput::Decoder;
use momoko::replication::{Change, Lsn, ReplicaIdentity, Table, Tuple};
use momoko::{Connection, ErrorKind, Value};

/// A connection whose commits are flushed at once: the test servers run with
/// `synchronous_commit = off`, and a slot's functions read the WAL only up to the flush
/// position.
async fn connect() -> Connection {
    let conn = momoko::connect(&dsn()).await.expect("connect");
    sql(&conn, "SET synchronous_commit = on").await;
    conn
}

async fn sql(conn: &Connection, sql: &str) {
    if let Err(e) = conn.execute(sql, ()).await {
        panic!("{sql}: {e}");
    }
}

async fn server_version(conn: &Connection) -> i32 {
    let mut c = conn.execute("SHOW server_version_num", ()).await.unwrap();
    c.fetchone().unwrap().get::<_, String>(0).parse().unwrap()
}

/// A temporary pgoutput slot (dropped with the session), optionally two-phase.
async fn create_slot(conn: &Connection, slot: &str, two_phase: bool) -> Lsn {
    let sql = if two_phase {
        format!(
            "SELECT lsn FROM pg_create_logical_replication_slot('{slot}', 'pgoutput', true, true)"
        )
    } else {
        format!("SELECT lsn FROM pg_create_logical_replication_slot('{slot}', 'pgoutput', true)")
    };
    let mut c = conn.execute(&sql, ()).await.unwrap();
    c.fetchone().unwrap().get(0)
}

/// The slot's messages from its start: (lsn, pgoutput bytes).
async fn peek(conn: &Connection, slot: &str, options: &[(&str, &str)]) -> Vec<(Lsn, Vec<u8>)> {
    let mut q =
        format!("SELECT lsn, data FROM pg_logical_slot_peek_binary_changes('{slot}', NULL, NULL");
    for (k, v) in options {
        q.push_str(&format!(", '{k}', '{v}'"));
    }
    q.push(')');
    let mut c = match conn.execute(&q, ()).await {
        Ok(c) => c,
        Err(e) => panic!("{q}: {e}"),
    };
    c.fetchall()
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Decodes every message in order with one decoder; any error fails the test.
fn decode_all(msgs: &[(Lsn, Vec<u8>)]) -> Vec<Change> {
    let mut d = Decoder::new();
    msgs.iter()
        .map(|(lsn, b)| {
            d.decode(b.clone())
                .unwrap_or_else(|e| panic!("message at {lsn}: {e}: {b:?}"))
        })
        .collect()
}

/// Writes the messages as XLogData CopyData payloads, each after its u32 length, into
/// `$MOMOKO_PGOUTPUT_SEEDS/<name>` when that is set.
fn save_seed(name: &str, msgs: &[(Lsn, Vec<u8>)]) {
    let Some(dir) = std::env::var_os("MOMOKO_PGOUTPUT_SEEDS") else {
        return;
    };
    let mut out = Vec::new();
    // Messages of a few kilobytes at most: small inputs make fast fuzzing.
    for (lsn, data) in msgs.iter().filter(|(_, d)| d.len() <= 4096) {
        let len = u32::try_from(25 + data.len()).unwrap();
        out.extend_from_slice(&len.to_be_bytes());
        out.push(b'w');
        out.extend_from_slice(&u64::from(*lsn).to_be_bytes());
        out.extend_from_slice(&u64::from(*lsn).to_be_bytes());
        out.extend_from_slice(&789_000_000_000i64.to_be_bytes());
        out.extend_from_slice(data);
    }
    std::fs::write(std::path::Path::new(&dir).join(name), out).unwrap();
}

/// The changes without Relation and Type messages. The server describes a relation again
/// whenever its cache entry was invalidated, which the DDL of the tests running beside this
/// one (same database) does at any moment; so those are checked on their own, and the rest
/// is compared exactly.
fn dml(changes: &[Change]) -> Vec<Change> {
    changes
        .iter()
        .filter(|c| !matches!(c, Change::Relation { .. } | Change::Type { .. }))
        .cloned()
        .collect()
}

/// The tag letters of a run of changes, for a readable first assertion.
fn tags(changes: &[Change]) -> String {
    changes.iter().map(|c| char::from(c.tag())).collect()
}

fn table_of(c: &Change) -> &Table {
    match c {
        Change::Relation { table, .. }
        | Change::Insert { table, .. }
        | Change::Update { table, .. }
        | Change::Delete { table, .. } => table,
        other => panic!("no table in {other:?}"),
    }
}

fn insert_of(c: &Change) -> &Tuple {
    match c {
        Change::Insert { new, .. } => new,
        other => panic!("not an Insert: {other:?}"),
    }
}

/// Every transaction is Begin … Commit with matching LSNs; the peek's LSN of a Commit row
/// is its end LSN (a walsender's XLogData start for it).
fn check_transactions(msgs: &[(Lsn, Vec<u8>)], changes: &[Change]) {
    let mut open: Option<Lsn> = None;
    for ((lsn, _), c) in msgs.iter().zip(changes) {
        match c {
            Change::Begin {
                final_lsn,
                commit_time,
                ..
            } => {
                assert!(open.is_none(), "nested Begin");
                assert!(*commit_time > UNIX_EPOCH + Duration::from_secs(1_600_000_000));
                assert!(*commit_time < SystemTime::now() + Duration::from_secs(60));
                open = Some(*final_lsn);
            }
            Change::Commit {
                commit_lsn,
                end_lsn,
                ..
            } => {
                assert_eq!(open.take(), Some(*commit_lsn), "Commit without its Begin");
                assert!(end_lsn > commit_lsn);
                assert_eq!(lsn, end_lsn, "the Commit row's LSN is the end LSN");
            }
            _ => {}
        }
    }
    assert!(open.is_none(), "a transaction without its Commit");
}

/// The first row of the items table, as inserted, in either format.
fn check_first_item(t: &Tuple, binary: bool) {
    assert_eq!(t.len(), 11);
    assert_eq!(t.get::<_, i32>("id"), 1);
    assert_eq!(t.get::<_, String>("note"), "first");
    assert_eq!(t.get::<_, i64>("n"), 10_000_000_000);
    assert_eq!(t.get::<_, f64>("f"), 1.5);
    assert!(t.get::<_, bool>("flag"));
    assert_eq!(t.get::<_, Vec<u8>>("raw"), vec![0, 255]);
    assert_eq!(t.get::<_, String>("amount"), "12.50");
    assert_eq!(t.get::<_, String>("doc"), r#"{"a": [1, 2]}"#);
    assert_eq!(
        t.get::<_, Vec<Option<i32>>>("tags"),
        vec![Some(1), None, Some(3)]
    );
    assert_eq!(t.get::<_, String>("at"), "2024-02-29 12:34:56.789+00");
    assert_eq!(
        t.get::<_, Lsn>("pos"),
        "16/B374D848".parse::<Lsn>().unwrap()
    );
    assert_eq!(t.get::<_, Value>(0), Value::Int4(1));
    for i in 0..t.len() {
        let (_, is_binary) = t.get_raw(i).unwrap();
        assert_eq!(is_binary, binary, "column {i}");
    }
}

/// Checks the whole run of the first scenario; `binary` says which format values came in.
fn check_every_kind(changes: &[Change], items: &str, full: &str, binary: bool) {
    // Each table is described before its first change.
    assert!(tags(changes).starts_with("BRI"), "{}", tags(changes));
    let changes = &dml(changes);
    assert_eq!(
        tags(changes),
        // items: insert, insert with NULLs, update, key update, delete;
        // full: insert, update, delete; a transaction with a message and an insert;
        // a message alone; two truncates.
        "BICBICBUCBUCBDCBICBUCBDCBMICMBTCBTC",
        "{changes:#?}"
    );
    let rel = table_of(&changes[1]);
    assert_eq!((rel.schema(), rel.name()), ("public", items));
    assert_eq!(rel.replica_identity(), ReplicaIdentity::Default);
    let cols: Vec<_> = rel
        .columns()
        .iter()
        .map(|c| (c.name(), c.type_oid(), c.type_modifier(), c.is_key()))
        .collect();
    assert_eq!(
        cols,
        [
            ("id", 23, -1, true),
            ("note", 25, -1, false),
            ("n", 20, -1, false),
            ("f", 701, -1, false),
            ("flag", 16, -1, false),
            ("raw", 17, -1, false),
            ("amount", 1700, (10 << 16 | 2) + 4, false),
            ("doc", 3802, -1, false),
            ("tags", 1007, -1, false),
            ("at", 1184, -1, false),
            ("pos", 3220, -1, false),
        ]
    );
    let Change::Insert { new, xid, .. } = &changes[1] else {
        unreachable!()
    };
    assert_eq!(*xid, None);
    check_first_item(new, binary);

    // Only the key given: every other column NULL.
    let nulls = insert_of(&changes[4]);
    assert_eq!(nulls.get::<_, i32>("id"), 2);
    for name in [
        "note", "n", "f", "flag", "raw", "amount", "doc", "tags", "at", "pos",
    ] {
        assert!(nulls.is_null(name), "{name}");
        assert!(!nulls.is_unchanged(name), "{name}");
    }
    assert_eq!(nulls.get::<_, Option<String>>("note"), None);
    assert_eq!(nulls.get::<_, Option<Lsn>>("pos"), None);
    assert_eq!(
        nulls.try_get::<_, i64>("n").unwrap_err().kind(),
        ErrorKind::Conversion
    );

    // An update that keeps the key: no old image under the default identity.
    let Change::Update { key, old, new, .. } = &changes[7] else {
        unreachable!()
    };
    assert!(key.is_none() && old.is_none());
    assert_eq!(new.get::<_, String>("note"), "second");
    assert_eq!(new.get::<_, i32>("id"), 1);

    // A key change: the old key ('K'), the key column only.
    let Change::Update { key, old, new, .. } = &changes[10] else {
        unreachable!()
    };
    assert!(old.is_none());
    let key = key.as_ref().expect("the old key");
    assert_eq!(key.get::<_, i32>("id"), 1);
    assert!(key.is_null("note"));
    assert_eq!(new.get::<_, i32>("id"), 3);
    assert_eq!(new.get::<_, String>("note"), "second");

    let Change::Delete { key, old, .. } = &changes[13] else {
        unreachable!()
    };
    assert!(old.is_none());
    assert_eq!(key.as_ref().unwrap().get::<_, i32>("id"), 2);

    // REPLICA IDENTITY FULL: every column is a key column, and the old row comes whole.
    let full_rel = table_of(&changes[16]);
    assert_eq!(full_rel.name(), full);
    assert_eq!(full_rel.replica_identity(), ReplicaIdentity::Full);
    assert!(full_rel.columns().iter().all(|c| c.is_key()));
    assert_eq!(insert_of(&changes[16]).get::<_, String>("v"), "x");
    let Change::Update { key, old, new, .. } = &changes[19] else {
        unreachable!()
    };
    assert!(key.is_none());
    let old = old.as_ref().unwrap();
    assert_eq!(
        (old.get::<_, i32>(0), old.get::<_, String>(1)),
        (1, "x".into())
    );
    assert_eq!(new.get::<_, String>("v"), "y");
    let Change::Delete { key, old, .. } = &changes[22] else {
        unreachable!()
    };
    assert!(key.is_none());
    assert_eq!(old.as_ref().unwrap().get::<_, String>("v"), "y");

    // A transactional message inside its transaction, before the insert.
    let Change::Message {
        transactional,
        lsn,
        prefix,
        content,
        xid,
        ..
    } = &changes[25]
    else {
        unreachable!()
    };
    assert!(*transactional);
    assert_eq!(
        (prefix.as_str(), &content[..], *xid),
        ("tx", &b"in"[..], None)
    );
    assert!(*lsn > Lsn::ZERO);
    assert_eq!(insert_of(&changes[26]).get::<_, i32>("id"), 2);

    // A message on its own, outside any transaction.
    let Change::Message {
        transactional,
        prefix,
        content,
        ..
    } = &changes[28]
    else {
        unreachable!()
    };
    assert!(!*transactional);
    assert_eq!((prefix.as_str(), &content[..]), ("nontx", &[0u8, 1][..]));

    let Change::Truncate {
        tables,
        cascade,
        restart_identity,
        ..
    } = &changes[30]
    else {
        unreachable!()
    };
    assert_eq!(tables.len(), 1);
    assert_eq!(tables[0].name(), full);
    assert_eq!(tables[0].oid(), full_rel.oid());
    assert_eq!((*cascade, *restart_identity), (false, true));
    let Change::Truncate {
        tables,
        cascade,
        restart_identity,
        ..
    } = &changes[33]
    else {
        unreachable!()
    };
    assert_eq!(tables[0].name(), items);
    assert_eq!((*cascade, *restart_identity), (true, false));
}

#[test]
fn every_change_kind_decodes_with_exact_values_in_text_and_binary() {
    run_for(60, async {
        let conn = connect().await;
        let (items, full, publ, slot) = (
            unique("rd_items"),
            unique("rd_full"),
            unique("rd_pub"),
            unique("rd_slot"),
        );
        sql(
            &conn,
            &format!(
                "CREATE TABLE {items} (id int PRIMARY KEY, note text, n bigint, f float8, \
                 flag boolean, raw bytea, amount numeric(10,2), doc jsonb, tags int[], \
                 at timestamptz, pos pg_lsn)"
            ),
        )
        .await;
        sql(&conn, &format!("CREATE TABLE {full} (id int, v text)")).await;
        sql(&conn, &format!("ALTER TABLE {full} REPLICA IDENTITY FULL")).await;
        sql(
            &conn,
            &format!("CREATE PUBLICATION {publ} FOR TABLE {items}, {full}"),
        )
        .await;
        create_slot(&conn, &slot, false).await;

        sql(
            &conn,
            &format!(
                "INSERT INTO {items} VALUES (1, 'first', 10000000000, 1.5, true, '\\x00ff', \
                 12.50, '{{\"a\": [1, 2]}}', '{{1,NULL,3}}', '2024-02-29 12:34:56.789+00', \
                 '16/B374D848')"
            ),
        )
        .await;
        sql(&conn, &format!("INSERT INTO {items} (id) VALUES (2)")).await;
        sql(
            &conn,
            &format!("UPDATE {items} SET note = 'second' WHERE id = 1"),
        )
        .await;
        sql(&conn, &format!("UPDATE {items} SET id = 3 WHERE id = 1")).await;
        sql(&conn, &format!("DELETE FROM {items} WHERE id = 2")).await;
        sql(&conn, &format!("INSERT INTO {full} VALUES (1, 'x')")).await;
        sql(&conn, &format!("UPDATE {full} SET v = 'y'")).await;
        sql(&conn, &format!("DELETE FROM {full}")).await;
        sql(&conn, "BEGIN").await;
        sql(&conn, "SELECT pg_logical_emit_message(true, 'tx', 'in')").await;
        sql(&conn, &format!("INSERT INTO {full} VALUES (2, 'z')")).await;
        sql(&conn, "COMMIT").await;
        sql(
            &conn,
            "SELECT pg_logical_emit_message(false, 'nontx', '\\x0001'::bytea)",
        )
        .await;
        sql(&conn, &format!("TRUNCATE {full} RESTART IDENTITY")).await;
        sql(&conn, &format!("TRUNCATE {items} CASCADE")).await;

        let base = [
            ("proto_version", "1"),
            ("publication_names", publ.as_str()),
            ("messages", "true"),
        ];
        let text = peek(&conn, &slot, &base).await;
        let changes = decode_all(&text);
        check_transactions(&text, &changes);
        check_every_kind(&changes, &items, &full, false);
        save_seed("every_kind_text", &text);

        let mut with_binary = base.to_vec();
        with_binary.push(("binary", "true"));
        let bin = peek(&conn, &slot, &with_binary).await;
        let changes = decode_all(&bin);
        check_transactions(&bin, &changes);
        check_every_kind(&changes, &items, &full, true);
        save_seed("every_kind_binary", &bin);

        // Without `messages`, the logical messages are not sent.
        let quiet = decode_all(&peek(&conn, &slot, &base[..2]).await);
        assert_eq!(tags(&dml(&quiet)), "BICBICBUCBUCBDCBICBUCBDCBICBTCBTC");
        sql(&conn, &format!("DROP PUBLICATION {publ}")).await;
    });
}

#[test]
fn unchanged_toasted_value_is_reported_and_never_read() {
    run_for(60, async {
        let conn = connect().await;
        let (t, publ, slot) = (unique("rd_toast"), unique("rd_pub"), unique("rd_slot"));
        sql(
            &conn,
            &format!("CREATE TABLE {t} (id int PRIMARY KEY, big text, n int)"),
        )
        .await;
        // Out of line and uncompressed, so that the value is TOASTed for sure.
        sql(
            &conn,
            &format!("ALTER TABLE {t} ALTER big SET STORAGE EXTERNAL"),
        )
        .await;
        sql(&conn, &format!("CREATE PUBLICATION {publ} FOR TABLE {t}")).await;
        create_slot(&conn, &slot, false).await;
        sql(
            &conn,
            &format!("INSERT INTO {t} VALUES (1, repeat('abcdefghij', 10000), 1)"),
        )
        .await;
        sql(&conn, &format!("UPDATE {t} SET n = 2")).await;
        sql(&conn, &format!("UPDATE {t} SET big = 'small', n = 3")).await;
        for binary in ["false", "true"] {
            let msgs = peek(
                &conn,
                &slot,
                &[
                    ("proto_version", "1"),
                    ("publication_names", &publ),
                    ("binary", binary),
                ],
            )
            .await;
            let changes = decode_all(&msgs);
            check_transactions(&msgs, &changes);
            assert!(tags(&changes).starts_with("BRI"));
            let changes = dml(&changes);
            assert_eq!(tags(&changes), "BICBUCBUC");
            let inserted = insert_of(&changes[1]);
            assert_eq!(inserted.get::<_, String>("big"), "abcdefghij".repeat(10000));
            let Change::Update { new, .. } = &changes[4] else {
                unreachable!()
            };
            assert!(new.is_unchanged("big"));
            assert!(!new.is_null("big"));
            assert_eq!(new.get::<_, i32>("n"), 2);
            for e in [
                new.try_get::<_, Option<String>>("big").unwrap_err(),
                new.try_get::<_, Value>(1).unwrap_err(),
            ] {
                assert_eq!(e.kind(), ErrorKind::Usage);
                assert!(e.to_string().contains("unchanged TOASTed"), "{e}");
            }
            assert_eq!(new.try_to_values().unwrap()[1], None);
            let Change::Update { new, .. } = &changes[7] else {
                unreachable!()
            };
            assert!(!new.is_unchanged("big"));
            assert_eq!(new.get::<_, String>("big"), "small");
            if binary == "false" {
                save_seed("toast", &msgs);
            }
        }
        sql(&conn, &format!("DROP PUBLICATION {publ}")).await;
    });
}

#[test]
fn relation_sent_again_after_alter_table_and_type_message_for_an_enum() {
    run_for(60, async {
        let conn = connect().await;
        let (t, mood, publ, slot) = (
            unique("rd_alter"),
            unique("rd_mood"),
            unique("rd_pub"),
            unique("rd_slot"),
        );
        sql(
            &conn,
            &format!("CREATE TYPE {mood} AS ENUM ('sad', 'happy')"),
        )
        .await;
        sql(
            &conn,
            &format!("CREATE TABLE {t} (id int PRIMARY KEY, m {mood})"),
        )
        .await;
        sql(&conn, &format!("CREATE PUBLICATION {publ} FOR TABLE {t}")).await;
        create_slot(&conn, &slot, false).await;
        sql(&conn, &format!("INSERT INTO {t} VALUES (1, 'happy')")).await;
        sql(
            &conn,
            &format!("ALTER TABLE {t} ADD COLUMN extra text DEFAULT 'e'"),
        )
        .await;
        sql(&conn, &format!("INSERT INTO {t} VALUES (2, 'sad', 'x')")).await;
        let msgs = peek(
            &conn,
            &slot,
            &[("proto_version", "1"), ("publication_names", &publ)],
        )
        .await;
        let changes = decode_all(&msgs);
        check_transactions(&msgs, &changes);
        // The enum is described (Y) before the Relation that uses it, and both again
        // before the first change after ALTER TABLE.
        let all = tags(&changes);
        assert!(
            all.starts_with("BYRI") && all.contains("CBYRI"),
            "{changes:#?}"
        );
        let Change::Type {
            oid,
            schema,
            name,
            xid,
            ..
        } = &changes[1]
        else {
            unreachable!()
        };
        assert_eq!(
            (schema.as_str(), name.as_str(), *xid),
            ("public", mood.as_str(), None)
        );
        let first = table_of(&changes[2]);
        assert_eq!(first.columns()[1].type_oid(), *oid);
        for c in &changes {
            if let Change::Type {
                oid: o, name: n, ..
            } = c
            {
                assert_eq!((o, n), (oid, name));
            }
        }

        let changes = dml(&changes);
        assert_eq!(tags(&changes), "BICBIC");
        let (before, after) = (insert_of(&changes[1]), insert_of(&changes[4]));
        assert_eq!(before.get::<_, String>("m"), "happy");
        assert!(before.table().same_description(first));
        let second = after.table();
        assert!(!second.same_description(first));
        assert_eq!(second.oid(), first.oid());
        let names: Vec<_> = second.columns().iter().map(|c| c.name()).collect();
        assert_eq!(names, ["id", "m", "extra"]);
        assert_eq!(
            (after.len(), after.get::<_, String>("extra")),
            (3, "x".into())
        );
        // The first insert keeps its own description.
        assert_eq!(before.len(), 2);
        save_seed("alter_and_type", &msgs);
        sql(&conn, &format!("DROP PUBLICATION {publ}")).await;
    });
}

#[test]
fn hstore_columns_read_as_hstore_once_its_type_message_named_it() {
    run_for(60, async {
        let conn = connect().await;
        let (t, publ, slot) = (unique("rd_hstore"), unique("rd_pub"), unique("rd_slot"));
        sql(
            &conn,
            &format!("CREATE TABLE {t} (id int PRIMARY KEY, h hstore, hs hstore[])"),
        )
        .await;
        sql(&conn, &format!("CREATE PUBLICATION {publ} FOR TABLE {t}")).await;
        create_slot(&conn, &slot, false).await;
        sql(
            &conn,
            &format!("INSERT INTO {t} VALUES (1, 'a=>1, b=>NULL', ARRAY['c=>2']::hstore[])"),
        )
        .await;
        let msgs = peek(
            &conn,
            &slot,
            &[("proto_version", "1"), ("publication_names", &publ)],
        )
        .await;
        let changes = decode_all(&msgs);
        let names: Vec<&str> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Type { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(names, ["hstore", "_hstore"]);
        let row = insert_of(dml(&changes).get(1).unwrap()).clone();
        let want: std::collections::HashMap<String, Option<String>> = [
            ("a".to_owned(), Some("1".to_owned())),
            ("b".to_owned(), None),
        ]
        .into();
        assert_eq!(
            row.get::<_, std::collections::HashMap<String, Option<String>>>("h"),
            want
        );
        assert_eq!(
            row.get::<_, Value>("h"),
            Value::Hstore(want.into_iter().collect())
        );
        let Value::Array(items) = row.get::<_, Value>("hs") else {
            panic!("{:?}", row.get::<_, Value>("hs"))
        };
        assert_eq!(
            items,
            [Value::Hstore(
                [("c".to_owned(), Some("2".to_owned()))]
                    .into_iter()
                    .collect()
            )]
        );
        save_seed("hstore", &msgs);
        sql(&conn, &format!("DROP PUBLICATION {publ}")).await;
    });
}

#[test]
fn origin_of_a_replicated_transaction_is_decoded() {
    run_for(60, async {
        let conn = connect().await;
        let (t, origin, publ, slot) = (
            unique("rd_origin"),
            unique("rd_node"),
            unique("rd_pub"),
            unique("rd_slot"),
        );
        sql(&conn, &format!("CREATE TABLE {t} (id int PRIMARY KEY)")).await;
        sql(&conn, &format!("CREATE PUBLICATION {publ} FOR TABLE {t}")).await;
        sql(
            &conn,
            &format!("SELECT pg_replication_origin_create('{origin}')"),
        )
        .await;
        create_slot(&conn, &slot, false).await;
        sql(
            &conn,
            &format!("SELECT pg_replication_origin_session_setup('{origin}')"),
        )
        .await;
        sql(&conn, "BEGIN").await;
        sql(
            &conn,
            "SELECT pg_replication_origin_xact_setup('0/ABCDEF', now())",
        )
        .await;
        sql(&conn, &format!("INSERT INTO {t} VALUES (1)")).await;
        sql(&conn, "COMMIT").await;
        sql(&conn, "SELECT pg_replication_origin_session_reset()").await;
        let msgs = peek(
            &conn,
            &slot,
            &[("proto_version", "1"), ("publication_names", &publ)],
        )
        .await;
        let changes = decode_all(&msgs);
        check_transactions(&msgs, &changes);
        assert!(tags(&changes).starts_with("BOR"), "{changes:#?}");
        assert_eq!(tags(&dml(&changes)), "BOIC");
        let Change::Origin {
            commit_lsn, name, ..
        } = &changes[1]
        else {
            unreachable!()
        };
        assert_eq!(
            (*commit_lsn, name.as_str()),
            (Lsn::from(0xAB_CDEF), origin.as_str())
        );
        save_seed("origin", &msgs);
        sql(&conn, &format!("DROP PUBLICATION {publ}")).await;
        sql(
            &conn,
            &format!("SELECT pg_replication_origin_drop('{origin}')"),
        )
        .await;
    });
}

/// The messages without the streamed transactions that carry no change of this test: the
/// slot decodes the whole database, and with `logical_decoding_work_mem` at 64 kB the large
/// transactions of the tests running beside this one are streamed too, as blocks with no
/// published change in them.
fn own_streams(
    msgs: Vec<(Lsn, Vec<u8>)>,
    changes: Vec<Change>,
) -> (Vec<(Lsn, Vec<u8>)>, Vec<Change>) {
    let mut ours = std::collections::HashSet::new();
    for c in &changes {
        match c {
            Change::Insert { xid: Some(x), .. }
            | Change::Update { xid: Some(x), .. }
            | Change::Delete { xid: Some(x), .. }
            | Change::Relation { xid: Some(x), .. }
            // No other test aborts a large transaction.
            | Change::StreamAbort { xid: x, .. } => {
                ours.insert(*x);
            }
            _ => {}
        }
    }
    let mut block: Option<u32> = None;
    msgs.into_iter()
        .zip(changes)
        .filter(|(_, c)| match c {
            Change::StreamStart { xid, .. } => {
                block = Some(*xid);
                ours.contains(xid)
            }
            Change::StreamStop { .. } => block.take().is_some_and(|x| ours.contains(&x)),
            Change::StreamCommit { xid, .. }
            | Change::StreamAbort { xid, .. }
            | Change::StreamPrepare { xid, .. } => ours.contains(xid),
            _ => true,
        })
        .unzip()
}

/// The streamed blocks of one transaction: its xid, the number of blocks, the inserts.
fn streamed(changes: &[Change], xid: u32) -> (usize, Vec<i32>) {
    let (mut blocks, mut ids, mut inside) = (0, Vec::new(), false);
    for c in changes {
        match c {
            Change::StreamStart { xid: x, first, .. } if *x == xid => {
                assert!(!inside);
                assert_eq!(*first, blocks == 0, "first-segment flag of block {blocks}");
                blocks += 1;
                inside = true;
            }
            Change::StreamStop { .. } if inside => inside = false,
            Change::Insert { new, xid: x, .. } if inside => {
                assert_eq!(*x, Some(xid));
                ids.push(new.get("id"));
            }
            Change::Relation { xid: x, .. } if inside => assert_eq!(*x, Some(xid)),
            _ => assert!(!inside, "{c:?} inside a block of {xid}"),
        }
    }
    (blocks, ids)
}

#[test]
fn large_transactions_stream_in_blocks_and_an_aborted_one_ends_with_stream_abort() {
    run_for(120, async {
        let conn = connect().await;
        let version = server_version(&conn).await;
        if version < 140000 {
            eprintln!("skipped: streaming of in-progress transactions needs PostgreSQL 14");
            return;
        }
        let (t, publ, slot) = (unique("rd_stream"), unique("rd_pub"), unique("rd_slot"));
        sql(
            &conn,
            &format!("CREATE TABLE {t} (id int PRIMARY KEY, pad text)"),
        )
        .await;
        sql(&conn, &format!("CREATE PUBLICATION {publ} FOR TABLE {t}")).await;
        create_slot(&conn, &slot, false).await;
        sql(
            &conn,
            &format!("INSERT INTO {t} SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g"),
        )
        .await;
        sql(&conn, "BEGIN").await;
        sql(
            &conn,
            &format!(
                "INSERT INTO {t} SELECT g, repeat('y', 100) FROM generate_series(20001, 25000) g"
            ),
        )
        .await;
        sql(&conn, "ROLLBACK").await;
        sql(&conn, &format!("INSERT INTO {t} VALUES (0, 'small')")).await;
        // Decoded changes past 64 kB stream the largest transaction at once.
        sql(&conn, "SET logical_decoding_work_mem = '64kB'").await;
        let msgs = peek(
            &conn,
            &slot,
            &[
                ("proto_version", "2"),
                ("publication_names", &publ),
                ("streaming", "on"),
            ],
        )
        .await;
        let changes = decode_all(&msgs);
        let (msgs, changes) = own_streams(msgs, changes);
        let ends: Vec<&Change> = changes
            .iter()
            .filter(|c| matches!(c, Change::StreamCommit { .. } | Change::StreamAbort { .. }))
            .collect();
        // PostgreSQL 18 no longer streams a transaction it already knows aborted (it checks
        // the commit log before streaming or spilling one): only the commit may end a block.
        let abort_streamed = ends.len() == 2;
        if version >= 180000 {
            assert!((1..=2).contains(&ends.len()), "{ends:?}");
        } else {
            assert_eq!(ends.len(), 2, "{ends:?}");
        }
        let Change::StreamCommit {
            xid,
            commit_lsn,
            end_lsn,
            ..
        } = ends[0]
        else {
            panic!("{:?}", ends[0])
        };
        let (blocks, ids) = streamed(&changes, *xid);
        assert!(blocks > 1, "{blocks} blocks");
        assert_eq!(ids, (1..=20000).collect::<Vec<i32>>());
        assert!(end_lsn > commit_lsn);
        let commit_row = msgs
            .iter()
            .zip(&changes)
            .find(|(_, c)| matches!(c, Change::StreamCommit { .. }))
            .unwrap();
        assert_eq!(commit_row.0 .0, *end_lsn);

        if abort_streamed {
            let Change::StreamAbort {
                xid: aborted,
                subxid,
                abort_lsn,
                abort_time,
                ..
            } = ends[1]
            else {
                panic!("{:?}", ends[1])
            };
            assert_eq!(subxid, aborted);
            // Protocol 2: no abort LSN and time (protocol 4 with streaming = parallel).
            assert_eq!((*abort_lsn, *abort_time), (None, None));
            // Its blocks carry its first rows, or none: the transaction had aborted before
            // the server decoded it, and a server that has to read the catalog for it (the
            // tests beside this one change the catalog) finds that out and stops sending
            // its changes ("concurrent abort"); either way it ends with StreamAbort.
            let (blocks, ids) = streamed(&changes, *aborted);
            assert!(blocks >= 1);
            assert!(ids.len() <= 5000, "{}", ids.len());
            assert_eq!(ids, (20001..20001 + ids.len() as i32).collect::<Vec<i32>>());
        } else {
            // Skipped whole: none of its rows arrived, inside a block or out of one.
            let inserted: Vec<i32> = changes
                .iter()
                .filter_map(|c| match c {
                    Change::Insert { new, .. } => Some(new.get::<_, i32>("id")),
                    _ => None,
                })
                .filter(|id| *id > 20000)
                .collect();
            assert_eq!(inserted, Vec::<i32>::new());
        }
        // The small transaction after it is not streamed: Begin … Commit, no xid.
        let plain = dml(&changes);
        let small = plain
            .iter()
            .position(|c| matches!(c, Change::Insert { xid: None, .. }))
            .unwrap();
        let last = &plain[small - 1..small + 2];
        assert_eq!(tags(last), "BIC");
        let Change::Insert { xid, new, .. } = &last[1] else {
            unreachable!()
        };
        assert_eq!((*xid, new.get::<_, i32>("id")), (None, 0));
        save_seed("streamed_v2", &msgs[..msgs.len().min(60)]);
        if abort_streamed {
            save_seed("streamed_abort_v2", &msgs[msgs.len().saturating_sub(60)..]);
        }
        sql(&conn, &format!("DROP PUBLICATION {publ}")).await;
    });
}

#[test]
fn two_phase_transactions_decode_with_protocol_3() {
    run_for(120, async {
        let conn = connect().await;
        if server_version(&conn).await < 150000 {
            eprintln!("skipped: two-phase decoding of pgoutput needs PostgreSQL 15");
            return;
        }
        let (t, publ, slot) = (unique("rd_2pc"), unique("rd_pub"), unique("rd_slot"));
        let (ga, gb, gc) = (unique("gid_a"), unique("gid_b"), unique("gid_c"));
        sql(&conn, &format!("CREATE TABLE {t} (id int PRIMARY KEY)")).await;
        sql(&conn, &format!("CREATE PUBLICATION {publ} FOR TABLE {t}")).await;
        create_slot(&conn, &slot, true).await;
        for (gid, id, end) in [(&ga, 1, "COMMIT"), (&gb, 2, "ROLLBACK")] {
            sql(&conn, "BEGIN").await;
            sql(&conn, &format!("INSERT INTO {t} VALUES ({id})")).await;
            sql(&conn, &format!("PREPARE TRANSACTION '{gid}'")).await;
            sql(&conn, &format!("{end} PREPARED '{gid}'")).await;
        }
        // A large prepared transaction, streamed.
        sql(&conn, "BEGIN").await;
        sql(
            &conn,
            &format!("INSERT INTO {t} SELECT g FROM generate_series(100, 5099) g"),
        )
        .await;
        sql(&conn, &format!("PREPARE TRANSACTION '{gc}'")).await;
        sql(&conn, &format!("COMMIT PREPARED '{gc}'")).await;
        sql(&conn, "SET logical_decoding_work_mem = '64kB'").await;
        let msgs = peek(
            &conn,
            &slot,
            &[
                ("proto_version", "3"),
                ("publication_names", &publ),
                ("two_phase", "on"),
                ("streaming", "on"),
            ],
        )
        .await;
        let changes = decode_all(&msgs);
        let (msgs, changes) = own_streams(msgs, changes);
        assert!(tags(&changes).starts_with("bRI"), "{}", tags(&changes));
        let changes = dml(&changes);
        let head: String = tags(&changes).chars().take(8).collect();
        assert_eq!(head, "bIPKbIPr", "{:#?}", &changes[..changes.len().min(12)]);

        let Change::BeginPrepare {
            prepare_lsn,
            end_lsn,
            xid,
            gid,
            ..
        } = &changes[0]
        else {
            unreachable!()
        };
        assert_eq!(gid, &ga);
        assert_eq!(insert_of(&changes[1]).get::<_, i32>("id"), 1);
        let Change::Prepare {
            prepare_lsn: p_lsn,
            end_lsn: p_end,
            xid: p_xid,
            gid: p_gid,
            ..
        } = &changes[2]
        else {
            unreachable!()
        };
        assert_eq!(
            (p_lsn, p_end, p_xid, p_gid),
            (prepare_lsn, end_lsn, xid, gid)
        );
        let Change::CommitPrepared {
            commit_lsn,
            end_lsn: c_end,
            xid: c_xid,
            gid: c_gid,
            ..
        } = &changes[3]
        else {
            unreachable!()
        };
        assert_eq!((c_xid, c_gid), (xid, gid));
        assert!(commit_lsn >= p_end && c_end > commit_lsn);

        let Change::Prepare {
            end_lsn: b_end,
            gid: b_gid,
            ..
        } = &changes[6]
        else {
            unreachable!()
        };
        assert_eq!(b_gid, &gb);
        let Change::RollbackPrepared {
            prepare_end_lsn,
            rollback_end_lsn,
            prepare_time,
            rollback_time,
            gid: r_gid,
            ..
        } = &changes[7]
        else {
            unreachable!()
        };
        assert_eq!((prepare_end_lsn, r_gid), (b_end, &gb));
        assert!(rollback_end_lsn > prepare_end_lsn);
        assert!(rollback_time >= prepare_time);

        // The large one: streamed blocks, then StreamPrepare, then CommitPrepared.
        let rest = &changes[8..];
        let Some(Change::StreamPrepare {
            xid, gid, end_lsn, ..
        }) = rest
            .iter()
            .find(|c| matches!(c, Change::StreamPrepare { .. }))
        else {
            panic!("no StreamPrepare in {}", tags(rest))
        };
        assert_eq!(gid, &gc);
        let (blocks, ids) = streamed(rest, *xid);
        assert!(blocks >= 1);
        assert_eq!(ids, (100..5100).collect::<Vec<i32>>());
        let Some(Change::CommitPrepared {
            gid: last_gid,
            commit_lsn,
            ..
        }) = rest.last()
        else {
            panic!("{:?}", rest.last())
        };
        assert_eq!(last_gid, &gc);
        assert!(commit_lsn >= end_lsn);
        save_seed("two_phase_v3", &msgs[..msgs.len().min(60)]);
        sql(&conn, &format!("DROP PUBLICATION {publ}")).await;
    });
}

#[test]
fn lsn_reads_from_pg_lsn_columns_in_text_and_binary_results() {
    run_for(30, async {
        let conn = connect().await;
        let sql = "SELECT pg_current_wal_lsn(), pg_current_wal_lsn()::text, '16/B374D848'::pg_lsn";
        let check = |row: momoko::Row, format: i16| {
            assert_eq!(row.columns()[0].format(), format);
            let at: Lsn = row.get(0);
            let text: String = row.get(1);
            // Compared as values: servers before 19 do not pad the low half.
            assert_eq!(text.parse::<Lsn>().unwrap(), at);
            assert_eq!(at.to_string().parse::<Lsn>().unwrap(), at);
            assert!(at > Lsn::ZERO);
            assert_eq!(row.get::<_, Lsn>(2), Lsn::from(0x16_B374_D848));
            // As a Value: the server's text, in either format.
            assert_eq!(
                row.get::<_, Value>(2),
                Value::Unknown {
                    type_oid: 3220,
                    text: "16/B374D848".into()
                }
            );
        };
        check(conn.execute(sql, ()).await.unwrap().fetchone().unwrap(), 0);
        let st = conn.prepare(sql).await.unwrap();
        check(
            conn.execute_prepared(&st, ())
                .await
                .unwrap()
                .fetchone()
                .unwrap(),
            1,
        );
        // An LSN as a parameter, both ways.
        let l = Lsn::from(0x1_0000_00AB);
        let mut c = conn
            .execute("SELECT %s::pg_lsn = '1/AB'::pg_lsn", (l,))
            .await
            .unwrap();
        assert!(c.fetchone().unwrap().get::<_, bool>(0));
        let mut c = conn
            .query(
                "SELECT $1::pg_lsn = '1/AB'",
                vec![momoko::ToSql::to_value(&l)],
            )
            .await
            .unwrap();
        assert!(c.fetchone().unwrap().get::<_, bool>(0));
        // Malformed text in a column is a Conversion error, not a wrong LSN.
        let mut c = conn.execute("SELECT 'nope'::text", ()).await.unwrap();
        assert_eq!(
            c.fetchone()
                .unwrap()
                .try_get::<_, Lsn>(0)
                .unwrap_err()
                .kind(),
            ErrorKind::Conversion
        );
    });
}

/// The contract's uses of this half's types (`../shared/contract/replication.rs`), compiled
/// with exactly its signatures: the callback's match on `Change`, and `lsns`.
#[allow(dead_code, unused_variables, clippy::all)]
mod contract {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::time::SystemTime;

    use momoko::ioloop::IoLoop;
    use momoko::replication::{Change, Lsn, Table, Tuple, XLogData};
    use momoko::Error;

    fn callback(confirm: impl Fn(Lsn), change: Change) {
        let applied: Rc<RefCell<Vec<i32>>> = Rc::default();
        let sink = applied.clone();
        match change {
            Change::Begin {
                xid,
                final_lsn,
                commit_time,
                ..
            } => {
                let _: (u32, Lsn, SystemTime) = (xid, final_lsn, commit_time);
            }
            Change::Relation { table, .. } => {
                let t: &Table = &table;
            }
            Change::Insert {
                table, new, xid, ..
            } => {
                let (schema, name, oid): (&str, &str, u32) =
                    (table.schema(), table.name(), table.oid());
                let keys: Vec<&str> = table
                    .columns()
                    .iter()
                    .filter(|c| c.is_key())
                    .map(|c| c.name())
                    .collect();
                let type_oid: u32 = table.columns()[0].type_oid();
                let id: i32 = new.get("id");
                let note: Option<String> = new.get(1);
                let tried: Result<Option<String>, Error> = new.try_get("note");
                let toasted: bool = new.is_unchanged("body");
                let n: usize = new.len();
                let _: Option<u32> = xid;
                sink.borrow_mut().push(id);
            }
            Change::Update {
                table,
                key,
                old,
                new,
                ..
            } => {
                let _: (Option<Tuple>, Option<Tuple>, Tuple) = (key, old, new);
            }
            Change::Delete {
                table, key, old, ..
            } => {
                let _: (Option<Tuple>, Option<Tuple>) = (key, old);
            }
            Change::Truncate {
                tables,
                cascade,
                restart_identity,
                ..
            } => {
                let _: (Vec<Table>, bool, bool) = (tables, cascade, restart_identity);
            }
            Change::Message {
                transactional,
                lsn,
                prefix,
                content,
                ..
            } => {
                let _: (bool, Lsn, String, Vec<u8>) = (transactional, lsn, prefix, content);
            }
            Change::Commit {
                commit_lsn,
                end_lsn,
                commit_time,
                ..
            } => confirm(end_lsn),
            Change::StreamStart { xid, first, .. } => {
                let _: (u32, bool) = (xid, first);
            }
            Change::StreamStop { .. } => {}
            Change::StreamCommit {
                xid,
                commit_lsn,
                end_lsn,
                ..
            } => confirm(end_lsn),
            Change::StreamAbort { xid, subxid, .. } => {
                let _: (u32, u32) = (xid, subxid);
            }
            _ => {}
        }
    }

    fn raw(msg: XLogData) {
        let (start, end, at, data): (Lsn, Lsn, SystemTime, &[u8]) =
            (msg.data_start(), msg.wal_end(), msg.send_time(), msg.data());
    }

    pub fn lsns(conn: &momoko::Connection) -> Result<(), Error> {
        let a: Lsn = "16/B374D848".parse()?;
        let b: Lsn = Lsn::from(0x16_B374_D848u64);
        let raw: u64 = u64::from(a);
        let text: String = a.to_string();
        let ordered: bool = Lsn::ZERO < a && a == b;
        let conn = conn.clone();
        IoLoop::current().run_sync(async move {
            let mut c = conn.execute("SELECT pg_current_wal_lsn()", ()).await?;
            let at: Lsn = c.fetchone().unwrap().get(0);
            Ok(())
        })
    }
}
