//! Scripted byte exchanges with the protocol core: what a server would send, byte for byte.

use super::*;
use crate::conninfo::ChannelBinding;

/// Builds backend messages the way a server writes them.
pub(crate) struct Script(pub(crate) Vec<u8>);

impl Script {
    pub(crate) fn new() -> Script {
        Script(Vec::new())
    }
    pub(crate) fn msg(mut self, tag: u8, body: &[u8]) -> Script {
        self.0.push(tag);
        self.0
            .extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        self.0.extend_from_slice(body);
        self
    }
    pub(crate) fn auth_ok(self) -> Script {
        self.msg(b'R', &0i32.to_be_bytes())
    }
    pub(crate) fn param(self, name: &str, value: &str) -> Script {
        let mut b = cstr(name);
        b.extend(cstr(value));
        self.msg(b'S', &b)
    }
    pub(crate) fn key(self, pid: i32, secret: i32) -> Script {
        let mut b = pid.to_be_bytes().to_vec();
        b.extend_from_slice(&secret.to_be_bytes());
        self.msg(b'K', &b)
    }
    pub(crate) fn ready(self, status: u8) -> Script {
        self.msg(b'Z', &[status])
    }
    pub(crate) fn row_description(self, cols: &[(&str, u32)]) -> Script {
        let mut b = (cols.len() as i16).to_be_bytes().to_vec();
        for (name, oid) in cols {
            b.extend(cstr(name));
            b.extend_from_slice(&0u32.to_be_bytes()); // table oid
            b.extend_from_slice(&0i16.to_be_bytes()); // column id
            b.extend_from_slice(&oid.to_be_bytes());
            b.extend_from_slice(&(-1i16).to_be_bytes());
            b.extend_from_slice(&(-1i32).to_be_bytes());
            b.extend_from_slice(&0i16.to_be_bytes());
        }
        self.msg(b'T', &b)
    }
    pub(crate) fn data_row(self, fields: &[Option<&str>]) -> Script {
        let mut b = (fields.len() as i16).to_be_bytes().to_vec();
        for f in fields {
            match f {
                Some(v) => {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v.as_bytes());
                }
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        self.msg(b'D', &b)
    }
    pub(crate) fn complete(self, tag: &str) -> Script {
        self.msg(b'C', &cstr(tag))
    }
    pub(crate) fn error(self, severity: &str, code: &str, message: &str) -> Script {
        let mut b = Vec::new();
        for (t, v) in [
            (b'S', severity),
            (b'V', severity),
            (b'C', code),
            (b'M', message),
        ] {
            b.push(t);
            b.extend(cstr(v));
        }
        b.push(0);
        self.msg(b'E', &b)
    }
    pub(crate) fn startup_done(self) -> Script {
        self.auth_ok()
            .param("server_version", "15.18")
            .param("client_encoding", "UTF8")
            .param("standard_conforming_strings", "on")
            .key(4242, 77)
            .ready(b'I')
    }
}

/// The kept key as (process id, secret key bytes).
fn key_of(p: &Protocol) -> Option<(i32, Vec<u8>)> {
    p.backend_key().map(|k| (k.pid(), k.secret().to_vec()))
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn creds(password: Option<&str>) -> Credentials {
    Credentials {
        user: "alice".into(),
        password: password.map(|p| p.as_bytes().to_vec()),
        ..Credentials::default()
    }
}

fn new_protocol(password: Option<&str>) -> Protocol {
    protocol_with(creds(password))
}

fn protocol_with(creds: Credentials) -> Protocol {
    let params = vec![
        ("user".to_owned(), "alice".to_owned()),
        ("database".to_owned(), "db".to_owned()),
        ("client_encoding".to_owned(), "UTF8".to_owned()),
    ];
    Protocol::new(
        &params,
        creds,
        DEFAULT_MAX_MESSAGE_SIZE,
        Versions::default(),
    )
}

pub(crate) fn connected() -> Protocol {
    let mut p = new_protocol(None);
    let n = p.transmit_buf().len();
    p.advance_transmit(n);
    p.handle_input(&Script::new().startup_done().0);
    assert!(matches!(p.poll_event(), Some(Event::Connected)));
    p
}

/// Takes the startup message, asks for MD5 with the salt 1 2 3 4, and returns the answer.
fn md5_challenge(p: &mut Protocol) -> Vec<u8> {
    take_out(p);
    let mut body = 5i32.to_be_bytes().to_vec();
    body.extend_from_slice(&[1, 2, 3, 4]);
    p.handle_input(&Script::new().msg(b'R', &body).0);
    take_out(p)
}

fn drain(p: &mut Protocol) -> Vec<Event> {
    std::iter::from_fn(|| p.poll_event()).collect()
}

fn take_out(p: &mut Protocol) -> Vec<u8> {
    let v = p.transmit_buf().to_vec();
    p.advance_transmit(v.len());
    v
}

#[test]
fn startup_message_names_user_database_and_utf8() {
    let mut p = new_protocol(None);
    let out = take_out(&mut p);
    let len = i32::from_be_bytes(out[0..4].try_into().unwrap()) as usize;
    assert_eq!(len, out.len());
    assert_eq!(&out[4..8], &0x0003_0000i32.to_be_bytes());
    let body = String::from_utf8_lossy(&out[8..]);
    assert_eq!(body, "user\0alice\0database\0db\0client_encoding\0UTF8\0\0");
}

#[test]
fn startup_records_parameters_backend_key_and_version() {
    let p = connected();
    assert!(p.is_ready());
    assert_eq!(p.server_version(), Some(150018));
    assert_eq!(p.parameter("standard_conforming_strings"), Some("on"));
    assert_eq!(key_of(&p), Some((4242, 77i32.to_be_bytes().to_vec())));
    assert_eq!(p.transaction_status(), b'I');
}

#[test]
fn startup_bytes_split_one_at_a_time_give_the_same_result() {
    let mut p = new_protocol(None);
    take_out(&mut p);
    for b in Script::new().startup_done().0 {
        p.handle_input(&[b]);
    }
    assert!(matches!(p.poll_event(), Some(Event::Connected)));
    assert_eq!(key_of(&p), Some((4242, 77i32.to_be_bytes().to_vec())));
}

#[test]
fn md5_authentication_sends_the_salted_hash() {
    let mut p = new_protocol(Some("secret"));
    let out = md5_challenge(&mut p);
    let hash = postgres_protocol::authentication::md5_hash(b"alice", b"secret", [1, 2, 3, 4]);
    assert_eq!(out[0], b'p');
    assert_eq!(&out[5..out.len() - 1], hash.as_bytes());
    p.handle_input(&Script::new().startup_done().0);
    assert!(matches!(p.poll_event(), Some(Event::Connected)));
}

#[test]
fn cleartext_authentication_without_a_password_fails_clearly() {
    let mut p = new_protocol(None);
    take_out(&mut p);
    p.handle_input(&Script::new().msg(b'R', &3i32.to_be_bytes()).0);
    let ev = drain(&mut p);
    let Some(Event::Closed(e)) = ev.last() else {
        panic!("{ev:?}")
    };
    assert_eq!(e.kind(), crate::ErrorKind::Connection);
    assert!(
        e.to_string()
            .contains("asked for a password (cleartext password"),
        "{e}"
    );
}

#[test]
fn unsupported_authentication_method_is_named() {
    let mut p = new_protocol(Some("x"));
    take_out(&mut p);
    p.handle_input(&Script::new().msg(b'R', &7i32.to_be_bytes()).0);
    let ev = drain(&mut p);
    let Some(Event::Closed(e)) = ev.last() else {
        panic!("{ev:?}")
    };
    assert!(e.to_string().contains("GSSAPI"), "{e}");
}

#[test]
fn sasl_without_scram_sha_256_is_refused_naming_the_offer() {
    let mut p = new_protocol(Some("x"));
    take_out(&mut p);
    let mut body = 10i32.to_be_bytes().to_vec();
    body.extend(cstr("SCRAM-SHA-256-PLUS"));
    body.push(0);
    p.handle_input(&Script::new().msg(b'R', &body).0);
    let ev = drain(&mut p);
    let Some(Event::Closed(e)) = ev.last() else {
        panic!("{ev:?}")
    };
    assert!(e.to_string().contains("SCRAM-SHA-256-PLUS"), "{e}");
}

#[test]
fn scram_ended_by_the_server_without_its_proof_is_refused() {
    let mut p = new_protocol(Some("x"));
    take_out(&mut p);
    let mut body = 10i32.to_be_bytes().to_vec();
    body.extend(cstr("SCRAM-SHA-256"));
    body.push(0);
    p.handle_input(&Script::new().msg(b'R', &body).auth_ok().0);
    let ev = drain(&mut p);
    let Some(Event::Closed(e)) = ev.last() else {
        panic!("{ev:?}")
    };
    assert!(e.to_string().contains("without proving"), "{e}");
}

#[test]
fn endless_authentication_requests_are_cut_off() {
    let mut p = new_protocol(Some("x"));
    take_out(&mut p);
    let mut s = Script::new();
    let mut body = 5i32.to_be_bytes().to_vec();
    body.extend_from_slice(&[1, 2, 3, 4]);
    for _ in 0..20 {
        s = s.msg(b'R', &body);
    }
    p.handle_input(&s.0);
    let ev = drain(&mut p);
    assert!(matches!(ev.last(), Some(Event::Closed(_))), "{ev:?}");
    assert!(p.is_closed());
}

#[test]
fn wrong_password_error_keeps_sqlstate_and_message() {
    let mut p = new_protocol(Some("x"));
    take_out(&mut p);
    p.handle_input(
        &Script::new()
            .error(
                "FATAL",
                "28P01",
                "password authentication failed for user \"alice\"",
            )
            .0,
    );
    let ev = drain(&mut p);
    let Some(Event::Closed(e)) = ev.last() else {
        panic!("{ev:?}")
    };
    assert_eq!(e.code(), Some("28P01"));
    assert_eq!(
        e.as_db_error().unwrap().message,
        "password authentication failed for user \"alice\""
    );
}

#[test]
fn simple_query_collects_rows_and_tag() {
    let mut p = connected();
    p.send(Request::Simple {
        query: "SELECT 1, NULL".into(),
    })
    .unwrap();
    let out = take_out(&mut p);
    assert_eq!(out, b"Q\0\0\0\x13SELECT 1, NULL\0");
    p.handle_input(
        &Script::new()
            .row_description(&[("a", 23), ("b", 25)])
            .data_row(&[Some("1"), None])
            .complete("SELECT 1")
            .ready(b'I')
            .0,
    );
    let Some(Event::Completed(Ok(Response::Query(r)))) = p.poll_event() else {
        panic!()
    };
    assert_eq!(r.tag.as_deref(), Some("SELECT 1"));
    assert_eq!(r.rows.len(), 1);
    assert_eq!(rows_of(&r)[0].get_raw(0), Some(&b"1"[..]));
    assert_eq!(rows_of(&r)[0].get_raw(1), None);
    assert_eq!(r.columns.unwrap()[1].name(), "b");
}

#[test]
fn multi_statement_query_keeps_only_the_last_result() {
    let mut p = connected();
    p.send(Request::Simple {
        query: "SELECT 1; UPDATE t SET a = 1".into(),
    })
    .unwrap();
    p.handle_input(
        &Script::new()
            .row_description(&[("a", 23)])
            .data_row(&[Some("1")])
            .complete("SELECT 1")
            .complete("UPDATE 3")
            .ready(b'I')
            .0,
    );
    let Some(Event::Completed(Ok(Response::Query(r)))) = p.poll_event() else {
        panic!()
    };
    assert_eq!(r.tag.as_deref(), Some("UPDATE 3"));
    assert!(r.columns.is_none());
    assert!(r.rows.is_empty());
}

#[test]
fn pipelined_requests_are_answered_in_order_and_an_error_disturbs_only_its_own() {
    let mut p = connected();
    for q in ["SELECT 1", "SELECT bad", "SELECT 3"] {
        p.send(Request::Simple { query: q.into() }).unwrap();
    }
    assert_eq!(p.in_flight(), 3);
    p.handle_input(
        &Script::new()
            .row_description(&[("a", 23)])
            .data_row(&[Some("1")])
            .complete("SELECT 1")
            .ready(b'I')
            .error("ERROR", "42703", "column \"bad\" does not exist")
            .ready(b'I')
            .row_description(&[("a", 23)])
            .data_row(&[Some("3")])
            .complete("SELECT 1")
            .ready(b'I')
            .0,
    );
    let ev = drain(&mut p);
    assert_eq!(ev.len(), 3);
    let Event::Completed(Ok(Response::Query(r))) = &ev[0] else {
        panic!()
    };
    assert_eq!(rows_of(r)[0].get_raw(0), Some(&b"1"[..]));
    let Event::Completed(Err(e)) = &ev[1] else {
        panic!()
    };
    assert_eq!(e.code(), Some("42703"));
    let Event::Completed(Ok(Response::Query(r))) = &ev[2] else {
        panic!()
    };
    assert_eq!(rows_of(r)[0].get_raw(0), Some(&b"3"[..]));
    assert!(p.is_ready());
}

/// What a conversation's events say, as text: the same bytes must say the same however
/// the reads cut them.
fn summary(ev: &[Event]) -> Vec<String> {
    ev.iter()
        .map(|e| match e {
            Event::Completed(Ok(Response::Query(r))) => format!(
                "{:?} {:?}",
                r.tag.as_deref(),
                rows_of(r)
                    .iter()
                    .map(|row| row
                        .get_raw(0)
                        .map(|v| String::from_utf8_lossy(v).into_owned()))
                    .collect::<Vec<_>>()
            ),
            Event::Completed(Err(e)) => format!("error {:?}", e.code()),
            Event::Notice(n) => format!("notice {}", n.code),
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn answers_cut_anywhere_by_the_reads_give_the_same_events_as_one_read() {
    let long = "x".repeat(300);
    let mut notice = Vec::new();
    for (t, v) in [(b'S', "WARNING"), (b'C', "01000"), (b'M', "careful")] {
        notice.push(t);
        notice.extend(cstr(v));
    }
    notice.push(0);
    let bytes = Script::new()
        .row_description(&[("a", 25)])
        .data_row(&[Some("1")])
        .data_row(&[Some(long.as_str())])
        .data_row(&[None])
        .complete("SELECT 3")
        .ready(b'I')
        .msg(b'N', &notice)
        .error("ERROR", "42703", "column \"bad\" does not exist")
        .ready(b'I')
        .row_description(&[("a", 25)])
        .data_row(&[Some("3")])
        .complete("SELECT 1")
        .ready(b'I')
        .0;
    let fresh = || {
        let mut p = connected();
        for q in ["SELECT 1", "SELECT bad", "SELECT 3"] {
            p.send(Request::Simple { query: q.into() }).unwrap();
        }
        p
    };
    let mut p = fresh();
    p.handle_input(&bytes);
    let whole = summary(&drain(&mut p));
    assert_eq!(whole.len(), 4, "{whole:?}");
    assert!(
        whole[0].contains("SELECT 3") && whole[0].contains(&long),
        "{whole:?}"
    );
    // Cut in two at every byte, and in pieces of every size up to 7.
    for at in 0..=bytes.len() {
        let mut p = fresh();
        p.handle_input(&bytes[..at]);
        p.handle_input(&bytes[at..]);
        assert_eq!(summary(&drain(&mut p)), whole, "cut at {at}");
        assert!(p.is_ready());
    }
    for size in 1..=7 {
        let mut p = fresh();
        for piece in bytes.chunks(size) {
            p.handle_input(piece);
        }
        assert_eq!(summary(&drain(&mut p)), whole, "pieces of {size}");
    }
}

#[test]
fn notices_notifications_and_parameter_changes_are_reported_between_results() {
    let mut p = connected();
    p.send(Request::Simple {
        query: "SET TIME ZONE 'UTC'".into(),
    })
    .unwrap();
    let mut notif = 99i32.to_be_bytes().to_vec();
    notif.extend(cstr("jobs"));
    notif.extend(cstr("hello"));
    let mut notice = Vec::new();
    for (t, v) in [(b'S', "WARNING"), (b'C', "01000"), (b'M', "careful")] {
        notice.push(t);
        notice.extend(cstr(v));
    }
    notice.push(0);
    p.handle_input(
        &Script::new()
            .msg(b'N', &notice)
            .param("TimeZone", "UTC")
            .complete("SET")
            .ready(b'I')
            .msg(b'A', &notif)
            .0,
    );
    let ev = drain(&mut p);
    assert!(matches!(&ev[0], Event::Notice(n) if n.code == "01000" && n.message == "careful"));
    assert!(
        matches!(&ev[1], Event::ParameterChanged { name, value } if name == "TimeZone" && value == "UTC")
    );
    assert!(matches!(&ev[2], Event::Completed(Ok(_))));
    assert!(
        matches!(&ev[3], Event::Notification { process_id: 99, channel, payload } if channel == "jobs" && payload == "hello")
    );
    assert_eq!(p.parameter("TimeZone"), Some("UTC"));
}

#[test]
fn fatal_error_while_idle_closes_the_connection_with_its_sqlstate() {
    let mut p = connected();
    p.handle_input(
        &Script::new()
            .error(
                "FATAL",
                "57P01",
                "terminating connection due to administrator command",
            )
            .0,
    );
    let ev = drain(&mut p);
    let [Event::Closed(e)] = &ev[..] else {
        panic!("{ev:?}")
    };
    assert_eq!(e.code(), Some("57P01"));
    assert!(e.is_connection_lost());
    assert!(p
        .send(Request::Simple {
            query: "SELECT 1".into()
        })
        .is_err());
}

#[test]
fn eof_fails_in_flight_requests_as_outcome_unknown_with_last_notice_code() {
    let mut p = connected();
    p.send(Request::Simple {
        query: "INSERT".into(),
    })
    .unwrap();
    take_out(&mut p);
    let mut notice = Vec::new();
    for (t, v) in [(b'S', "WARNING"), (b'C', "57P01"), (b'M', "terminating")] {
        notice.push(t);
        notice.extend(cstr(v));
    }
    notice.push(0);
    p.handle_input(&Script::new().msg(b'N', &notice).0);
    p.handle_eof(None);
    let ev = drain(&mut p);
    let Event::Completed(Err(e)) = &ev[1] else {
        panic!("{ev:?}")
    };
    assert!(e.outcome_unknown());
    assert_eq!(e.code(), Some("57P01"));
    assert!(matches!(ev[2], Event::Closed(_)));
}

#[test]
fn a_length_under_four_is_lost_sync() {
    let mut p = connected();
    p.handle_input(b"Z\0\0\0\x02I");
    let ev = drain(&mut p);
    let [Event::Closed(e)] = &ev[..] else {
        panic!("{ev:?}")
    };
    assert_eq!(e.kind(), crate::ErrorKind::Protocol);
    assert!(e.to_string().contains("lost synchronization"), "{e}");
}

#[test]
fn a_huge_declared_length_fails_without_allocating() {
    let mut p = connected();
    p.send(Request::Simple {
        query: "SELECT 1".into(),
    })
    .unwrap();
    p.handle_input(b"D\x7f\xff\xff\xff\0\x01");
    // Under the 1 GiB bound for rows? No: 2^31-1 is over it, so it fails at once.
    let ev = drain(&mut p);
    assert!(matches!(ev.last(), Some(Event::Closed(e)) if e.kind() == crate::ErrorKind::Protocol));
    let mut p = connected();
    p.handle_input(b"C\0\x01\0\0");
    let ev = drain(&mut p);
    let Some(Event::Closed(e)) = ev.last() else {
        panic!()
    };
    assert!(e.to_string().contains("over the bound of 30000"), "{e}");
}

#[test]
fn unknown_message_type_fails_the_connection() {
    let mut p = connected();
    p.handle_input(&Script::new().msg(b'!', b"").0);
    let ev = drain(&mut p);
    assert!(matches!(ev.last(), Some(Event::Closed(e)) if e.kind() == crate::ErrorKind::Protocol));
}

#[test]
fn data_row_with_the_wrong_number_of_fields_fails_the_connection() {
    let mut p = connected();
    p.send(Request::Simple {
        query: "SELECT 1".into(),
    })
    .unwrap();
    p.handle_input(
        &Script::new()
            .row_description(&[("a", 23)])
            .data_row(&[Some("1"), Some("2")])
            .0,
    );
    let ev = drain(&mut p);
    assert!(matches!(&ev[0], Event::Completed(Err(e)) if e.kind() == crate::ErrorKind::Protocol));
    assert!(matches!(ev.last(), Some(Event::Closed(_))));
}

#[test]
fn data_row_before_row_description_is_a_protocol_error() {
    let mut p = connected();
    p.send(Request::Simple {
        query: "SELECT 1".into(),
    })
    .unwrap();
    p.handle_input(&Script::new().data_row(&[Some("1")]).0);
    assert!(p.is_closed());
}

#[test]
fn a_nul_in_the_query_is_refused_before_anything_is_sent() {
    let mut p = connected();
    let e = p
        .send(Request::Simple {
            query: "SELECT '\0'".into(),
        })
        .unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::Usage);
    assert!(!p.wants_write());
    assert_eq!(p.in_flight(), 0);
}

#[test]
fn prepare_reports_parameter_types_and_columns() {
    let mut p = connected();
    p.send(Request::Prepare {
        name: "s1".into(),
        query: "SELECT $1::int8 + 1".into(),
        param_types: vec![],
    })
    .unwrap();
    let mut pd = 1i16.to_be_bytes().to_vec();
    pd.extend_from_slice(&20u32.to_be_bytes());
    p.handle_input(
        &Script::new()
            .msg(b'1', b"")
            .msg(b't', &pd)
            .row_description(&[("?column?", 20)])
            .ready(b'I')
            .0,
    );
    let Some(Event::Completed(Ok(Response::Prepared {
        param_types,
        columns,
    }))) = p.poll_event()
    else {
        panic!()
    };
    assert_eq!(param_types, vec![20]);
    assert_eq!(columns.unwrap()[0].type_oid(), 20);
}

#[test]
fn server_version_follows_libpq() {
    assert_eq!(parse_server_version("15.18"), Some(150018));
    assert_eq!(
        parse_server_version("15.18 (Debian 15.18-0+deb12u1)"),
        Some(150018)
    );
    assert_eq!(parse_server_version("9.6.24"), Some(90624));
    assert_eq!(parse_server_version("16beta1"), Some(160000));
    assert_eq!(parse_server_version("x"), None);
}

#[test]
fn a_request_never_written_is_not_of_unknown_outcome() {
    let mut p = connected();
    p.send(Request::Simple {
        query: "INSERT 1".into(),
    })
    .unwrap();
    let first = p.transmit_buf().len();
    p.send(Request::Simple {
        query: "INSERT 2".into(),
    })
    .unwrap();
    // Only the first request reached the socket.
    p.advance_transmit(first);
    p.handle_eof(None);
    let ev = drain(&mut p);
    let Event::Completed(Err(e1)) = &ev[0] else {
        panic!("{ev:?}")
    };
    let Event::Completed(Err(e2)) = &ev[1] else {
        panic!("{ev:?}")
    };
    assert!(e1.outcome_unknown());
    assert!(!e2.outcome_unknown());
}

#[test]
fn a_fatal_answer_means_the_request_did_not_take_effect() {
    let mut p = connected();
    p.send(Request::Simple {
        query: "INSERT 1".into(),
    })
    .unwrap();
    take_out(&mut p);
    p.handle_input(
        &Script::new()
            .error(
                "FATAL",
                "57P01",
                "terminating connection due to administrator command",
            )
            .0,
    );
    let ev = drain(&mut p);
    let Event::Completed(Err(e)) = &ev[0] else {
        panic!("{ev:?}")
    };
    assert!(!e.outcome_unknown());
    assert!(e.is_connection_lost());
    assert_eq!(e.code(), Some("57P01"));
}

/// Feeds `msg` to a connection with one query in flight and returns the error that closed it.
fn closing_error(msg: Script) -> Error {
    let mut p = connected();
    p.send(Request::Simple {
        query: "SELECT 1".into(),
    })
    .unwrap();
    p.handle_input(&msg.0);
    let ev = drain(&mut p);
    match ev.last() {
        Some(Event::Closed(e)) => e.clone(),
        other => panic!("the connection stayed open: {other:?}"),
    }
}

#[test]
fn invalid_utf8_in_server_names_and_tags_is_a_protocol_error() {
    let bad = b"\xc0\x27\xff";
    let mut status = bad.to_vec();
    status.push(0);
    status.extend(cstr("on"));
    let mut notif = 1i32.to_be_bytes().to_vec();
    notif.extend(cstr("chan"));
    notif.extend_from_slice(bad);
    notif.push(0);
    let mut tag = bad.to_vec();
    tag.push(0);
    let mut rd = 1i16.to_be_bytes().to_vec();
    rd.extend_from_slice(bad);
    rd.push(0);
    rd.extend_from_slice(&[0; 4 + 2]);
    rd.extend_from_slice(&23u32.to_be_bytes());
    rd.extend_from_slice(&[0; 2 + 4 + 2]);
    for (what, script) in [
        ("ParameterStatus", Script::new().msg(b'S', &status)),
        ("NotificationResponse", Script::new().msg(b'A', &notif)),
        ("CommandComplete", Script::new().msg(b'C', &tag)),
        ("RowDescription", Script::new().msg(b'T', &rd)),
    ] {
        let e = closing_error(script);
        assert_eq!(e.kind(), crate::ErrorKind::Protocol, "{what}: {e}");
        assert!(e.to_string().contains(what), "{what}: {e}");
    }
}

#[test]
fn invalid_utf8_in_error_fields_is_kept_lossily_not_fatal() {
    // An SQL_ASCII database passes bytes through unchecked: the message must still arrive.
    let mut b = Vec::new();
    for (t, v) in [
        (b'S', &b"ERROR"[..]),
        (b'C', b"22021"),
        (b'M', b"invalid byte sequence \xc0\x27"),
    ] {
        b.push(t);
        b.extend_from_slice(v);
        b.push(0);
    }
    b.push(0);
    let mut p = connected();
    p.send(Request::Simple {
        query: "SELECT 1".into(),
    })
    .unwrap();
    p.handle_input(&Script::new().msg(b'E', &b).ready(b'I').0);
    let ev = drain(&mut p);
    let [Event::Completed(Err(e))] = &ev[..] else {
        panic!("{ev:?}")
    };
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code, "22021");
    assert_eq!(db.message, "invalid byte sequence \u{fffd}'");
    assert!(!p.is_closed());
}

#[test]
fn truncated_server_strings_are_protocol_errors() {
    // Strings without their terminating NUL, and an ErrorResponse without its final NUL.
    for (what, script) in [
        ("ParameterStatus", Script::new().msg(b'S', b"TimeZone\0UTC")),
        ("CommandComplete", Script::new().msg(b'C', b"SELECT 1")),
        (
            "NotificationResponse",
            Script::new().msg(b'A', b"\0\0\0\x01chan"),
        ),
        ("ErrorResponse", Script::new().msg(b'E', b"SERROR\0C42601")),
        ("RowDescription", Script::new().msg(b'T', b"\0\x01a\0\0")),
    ] {
        let e = closing_error(script);
        assert_eq!(e.kind(), crate::ErrorKind::Protocol, "{what}: {e}");
    }
}

/// Runs a SCRAM exchange up to the server-first-message, with `iterations` in it, and returns
/// the protocol with that message handled.
fn scram_with_iterations(iterations: &str) -> Protocol {
    let mut p = new_protocol(Some("secret"));
    take_out(&mut p);
    let mut body = 10i32.to_be_bytes().to_vec();
    body.extend(cstr("SCRAM-SHA-256"));
    body.push(0);
    p.handle_input(&Script::new().msg(b'R', &body).0);
    // SASLInitialResponse: 'p', length, mechanism, data length, "n,,n=,r=<client nonce>".
    let out = take_out(&mut p);
    let data = String::from_utf8_lossy(&out[5 + "SCRAM-SHA-256\0".len() + 4..]).into_owned();
    let nonce = data.split("r=").nth(1).expect("client nonce").to_owned();
    let mut cont = 11i32.to_be_bytes().to_vec();
    cont.extend_from_slice(format!("r={nonce}srv,s=c2FsdHNhbHQ=,i={iterations}").as_bytes());
    p.handle_input(&Script::new().msg(b'R', &cont).0);
    p
}

#[test]
fn a_scram_iteration_count_over_the_bound_is_refused_before_deriving_the_key() {
    // 2^32-1 iterations would block the loop for about half an hour (release build).
    for (count, says) in [
        (
            "4294967295",
            "asks for 4294967295 iterations, more than momoko's bound of 1000000",
        ),
        (
            "1000001",
            "asks for 1000001 iterations, more than momoko's bound of 1000000",
        ),
        // Beyond u64 (and u32): postgres-protocol's own parser refuses it.
        ("99999999999999999999", "SCRAM authentication failed"),
    ] {
        let started = std::time::Instant::now();
        let mut p = scram_with_iterations(count);
        let ev = drain(&mut p);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{count} iterations took {:?}",
            started.elapsed()
        );
        let [Event::Closed(e)] = &ev[..] else {
            panic!("{count}: {ev:?}")
        };
        assert_eq!(e.kind(), crate::ErrorKind::Connection, "{e}");
        assert!(e.to_string().contains(says), "{count}: {e}");
    }
}

#[test]
fn a_scram_iteration_count_within_the_bound_is_accepted() {
    let mut p = scram_with_iterations("4096");
    assert!(drain(&mut p).is_empty());
    assert!(!p.is_closed());
    // The client-final-message (with its proof) was queued.
    let out = take_out(&mut p);
    assert_eq!(out[0], b'p');
    assert!(String::from_utf8_lossy(&out).contains(",p="));
}

#[test]
fn a_repeated_row_description_reuses_its_columns() {
    let mut p = connected();
    let types = std::rc::Rc::new(Types::default());
    p.set_types(types.clone());
    let answer = Script::new()
        .row_description(&[("a", 23)])
        .data_row(&[Some("1")])
        .complete("SELECT 1")
        .ready(b'I')
        .0;
    let mut columns = Vec::new();
    for _ in 0..2 {
        p.send(Request::Simple {
            query: "SELECT 1".into(),
        })
        .unwrap();
        p.handle_input(&answer);
        let Some(Event::Completed(Ok(Response::Query(r)))) = p.poll_event() else {
            panic!()
        };
        columns.push(r.columns.unwrap());
    }
    assert!(Arc::ptr_eq(&columns[0], &columns[1]));
    // A type registered since (hstore) invalidates them.
    types.register_hstore(16_000, 16_001);
    p.send(Request::Simple {
        query: "SELECT 1".into(),
    })
    .unwrap();
    p.handle_input(&answer);
    let Some(Event::Completed(Ok(Response::Query(r)))) = p.poll_event() else {
        panic!()
    };
    assert!(!Arc::ptr_eq(&columns[0], &r.columns.unwrap()));
}

// ---- SCRAM-SHA-256-PLUS: channel binding (libpq's channel_binding) ----

use super::auth::{CB_NOT_OFFERED, CB_NOT_SUPPORTED_BY_REQUEST, CB_NO_TLS, CB_SERVER_DID_NOT_BIND};
use super::cert_hash::tests::{hex, ED25519_CERT, RSA_SHA256};

const PLUS: &str = "SCRAM-SHA-256-PLUS";
const SCRAM: &str = "SCRAM-SHA-256";
/// Stands for a certificate hash where its value does not matter.
const BINDING: &[u8] = b"\x01\x02\x03 not a real hash \xfe\xff";

fn tls_creds(cb: ChannelBinding, data: Option<&[u8]>) -> Credentials {
    Credentials {
        channel_binding: cb,
        tls_server_end_point: data.map(<[u8]>::to_vec),
        ..creds(Some("pencil"))
    }
}

fn sasl_offer(mechanisms: &[&str]) -> Script {
    let mut body = 10i32.to_be_bytes().to_vec();
    for m in mechanisms {
        body.extend(cstr(m));
    }
    body.push(0);
    Script::new().msg(b'R', &body)
}

/// The SASLInitialResponse that is `out`: its mechanism and its client-first-message.
fn initial_response(out: &[u8]) -> (String, String) {
    assert_eq!(out[0], b'p', "{out:?}");
    assert_eq!(
        i32::from_be_bytes(out[1..5].try_into().unwrap()) as usize,
        out.len() - 1
    );
    let body = &out[5..];
    let nul = body.iter().position(|&b| b == 0).unwrap();
    let len = i32::from_be_bytes(body[nul + 1..nul + 5].try_into().unwrap()) as usize;
    assert_eq!(nul + 5 + len, body.len());
    (
        String::from_utf8(body[..nul].to_vec()).unwrap(),
        String::from_utf8(body[nul + 5..].to_vec()).unwrap(),
    )
}

/// The error that closed `p`, and that nothing was sent in answer to what closed it.
fn refused(p: &mut Protocol) -> Error {
    let ev = drain(p);
    let [Event::Closed(e)] = &ev[..] else {
        panic!("{ev:?}")
    };
    assert!(p.transmit_buf().is_empty(), "sent {:?}", p.transmit_buf());
    e.clone()
}

/// The answer of a client with `creds` to a server offering `mechanisms`: the mechanism and
/// the client-first-message, or the error that closed the connection.
fn first_answer(creds: Credentials, mechanisms: &[&str]) -> Result<(String, String), Error> {
    let mut p = protocol_with(creds);
    take_out(&mut p);
    p.handle_input(&sasl_offer(mechanisms).0);
    if !p.transmit_buf().is_empty() {
        assert!(drain(&mut p).is_empty());
        return Ok(initial_response(&take_out(&mut p)));
    }
    Err(refused(&mut p))
}

fn assert_gs2(answer: Result<(String, String), Error>, mechanism: &str, gs2: &str) {
    let (m, first) = answer.unwrap();
    assert_eq!(m, mechanism);
    assert!(first.starts_with(&format!("{gs2}n=,r=")), "{first}");
}

fn assert_refused(e: Error, message: &str) {
    assert_eq!(e.kind(), crate::ErrorKind::Connection, "{e}");
    assert_eq!(e.to_string(), format!("connection error: {message}"));
}

#[test]
fn plus_is_chosen_when_offered_on_tls_wherever_it_is_listed() {
    for cb in [ChannelBinding::Prefer, ChannelBinding::Require] {
        for offer in [[PLUS, SCRAM], [SCRAM, PLUS]] {
            let answer = first_answer(tls_creds(cb, Some(BINDING)), &offer);
            assert_gs2(answer, PLUS, "p=tls-server-end-point,,");
        }
        // PLUS alone is enough.
        let answer = first_answer(tls_creds(cb, Some(BINDING)), &[PLUS]);
        assert_gs2(answer, PLUS, "p=tls-server-end-point,,");
    }
}

#[test]
fn on_tls_without_plus_on_offer_the_client_says_it_could_bind() {
    let answer = first_answer(tls_creds(ChannelBinding::Prefer, Some(BINDING)), &[SCRAM]);
    assert_gs2(answer, SCRAM, "y,,");
}

#[test]
fn without_tls_or_with_binding_disabled_the_client_says_it_cannot_bind() {
    for offer in [&[SCRAM][..], &[PLUS, SCRAM]] {
        let answer = first_answer(tls_creds(ChannelBinding::Prefer, None), offer);
        assert_gs2(answer, SCRAM, "n,,");
        let answer = first_answer(tls_creds(ChannelBinding::Disable, Some(BINDING)), offer);
        assert_gs2(answer, SCRAM, "n,,");
        let answer = first_answer(tls_creds(ChannelBinding::Disable, None), offer);
        assert_gs2(answer, SCRAM, "n,,");
    }
    // The default credentials are today's: prefer, no TLS.
    assert_gs2(first_answer(creds(Some("x")), &[PLUS, SCRAM]), SCRAM, "n,,");
}

#[test]
fn plus_alone_without_binding_data_is_refused_saying_why() {
    let e = first_answer(tls_creds(ChannelBinding::Prefer, None), &[PLUS]).unwrap_err();
    assert!(
        e.to_string().contains("needs TLS channel binding data"),
        "{e}"
    );
    let e = first_answer(tls_creds(ChannelBinding::Disable, Some(BINDING)), &[PLUS]);
    let e = e.unwrap_err().to_string();
    assert!(e.contains("excluded by channel_binding=disable"), "{e}");
}

#[test]
fn require_refuses_sasl_without_tls_before_sending_anything() {
    for offer in [&[SCRAM][..], &[PLUS, SCRAM], &[PLUS]] {
        let e = first_answer(tls_creds(ChannelBinding::Require, None), offer).unwrap_err();
        assert_refused(e, CB_NO_TLS);
    }
    assert_eq!(CB_NO_TLS, "channel binding required, but SSL not in use");
}

#[test]
fn require_refuses_a_server_that_does_not_offer_plus() {
    let e = first_answer(tls_creds(ChannelBinding::Require, Some(BINDING)), &[SCRAM]);
    assert_refused(e.unwrap_err(), CB_NOT_OFFERED);
    assert_eq!(
        CB_NOT_OFFERED,
        "channel binding is required, but server did not offer an authentication method that \
         supports channel binding"
    );
}

#[test]
fn require_refuses_trust_cleartext_and_md5_without_giving_the_password() {
    let mut md5 = 5i32.to_be_bytes().to_vec();
    md5.extend_from_slice(&[1, 2, 3, 4]);
    for data in [None, Some(BINDING)] {
        // Trust: AuthenticationOk straight away.
        let mut p = protocol_with(tls_creds(ChannelBinding::Require, data));
        take_out(&mut p);
        p.handle_input(&Script::new().startup_done().0);
        assert_refused(refused(&mut p), CB_SERVER_DID_NOT_BIND);
        // Cleartext and MD5: refused before the password is sent.
        for request in [
            Script::new().msg(b'R', &3i32.to_be_bytes()),
            Script::new().msg(b'R', &md5),
        ] {
            let mut p = protocol_with(tls_creds(ChannelBinding::Require, data));
            take_out(&mut p);
            p.handle_input(&request.0);
            assert_refused(refused(&mut p), CB_NOT_SUPPORTED_BY_REQUEST);
        }
    }
    assert_eq!(
        CB_SERVER_DID_NOT_BIND,
        "channel binding required, but server authenticated client without channel binding"
    );
    assert_eq!(
        CB_NOT_SUPPORTED_BY_REQUEST,
        "channel binding required but not supported by server's authentication request"
    );
    // Without require, the same requests are answered as before.
    let mut p = protocol_with(tls_creds(ChannelBinding::Prefer, Some(BINDING)));
    take_out(&mut p);
    p.handle_input(&Script::new().msg(b'R', &md5).0);
    assert_eq!(take_out(&mut p)[0], b'p');
    p.handle_input(&Script::new().startup_done().0);
    assert!(matches!(p.poll_event(), Some(Event::Connected)));
}

#[test]
fn require_refuses_a_plus_exchange_the_server_cut_short() {
    let mut p = protocol_with(tls_creds(ChannelBinding::Require, Some(BINDING)));
    take_out(&mut p);
    p.handle_input(&sasl_offer(&[PLUS]).auth_ok().0);
    let ev = drain(&mut p);
    let Some(Event::Closed(e)) = ev.last() else {
        panic!("{ev:?}")
    };
    assert!(e.to_string().contains("without proving"), "{e}");
}

// A server's side of SCRAM, for the full exchanges: RFC 5802 with SHA-256 from `sha2`.

fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&sha256(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let mut inner = pad(0x36);
    inner.extend_from_slice(data);
    let mut outer = pad(0x5c);
    outer.extend_from_slice(&sha256(&inner));
    sha256(&outer)
}

/// PBKDF2-HMAC-SHA-256 with one block: SCRAM's Hi().
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut u = hmac(password, &[salt, &[0, 0, 0, 1]].concat());
    let mut out = u;
    for _ in 1..iterations {
        u = hmac(password, &u);
        out.iter_mut().zip(u).for_each(|(o, x)| *o ^= x);
    }
    out
}

fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(char::from(A[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[test]
fn the_test_base64_and_hmac_are_right() {
    // RFC 4648 section 10 and RFC 4231 test case 2.
    let pairs = [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
    ];
    for (plain, coded) in pairs {
        assert_eq!(b64(plain.as_bytes()), coded);
    }
    assert_eq!(
        hmac(b"Jefe", b"what do ya want for nothing?").to_vec(),
        hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    );
    // The well-known c= of a client without channel binding.
    assert_eq!(b64(b"n,,"), "biws");
}

const SALT: &[u8] = b"salt of the earth";
const ITERATIONS: u32 = 4096;

/// Plays PostgreSQL's side of a SCRAM exchange with `p`, whose SASLInitialResponse is queued:
/// the server's password is "pencil" and it binds the exchange to `server_cbind` (the c= it
/// expects: base64 of its gs2 header and its own certificate hash). It checks the client's
/// proof over the client's own messages, signs its view of the exchange, and ends the
/// startup. Returns the client-final-message and the events after it.
fn scram_server(p: &mut Protocol, server_cbind: &str) -> (String, Vec<Event>) {
    let (_, first) = initial_response(&take_out(p));
    let bare = &first[first.find("n=").unwrap()..];
    let client_nonce = bare.strip_prefix("n=,r=").unwrap();
    let nonce = format!("{client_nonce}3rfcNHYJY1ZVvWVs7j");
    let server_first = format!("r={nonce},s={},i={ITERATIONS}", b64(SALT));
    let mut cont = 11i32.to_be_bytes().to_vec();
    cont.extend_from_slice(server_first.as_bytes());
    p.handle_input(&Script::new().msg(b'R', &cont).0);
    assert!(drain(p).is_empty());

    let out = take_out(p);
    assert_eq!(out[0], b'p');
    let client_final = String::from_utf8(out[5..].to_vec()).unwrap();
    let (without_proof, proof) = client_final.rsplit_once(",p=").unwrap();
    let salted = hi(b"pencil", SALT, ITERATIONS);
    // What the client proved: its own messages.
    let client_key = hmac(&salted, b"Client Key");
    let client_auth = format!("{bare},{server_first},{without_proof}");
    let signature = hmac(&sha256(&client_key), client_auth.as_bytes());
    let expected: Vec<u8> = client_key
        .iter()
        .zip(signature)
        .map(|(k, s)| k ^ s)
        .collect();
    assert_eq!(proof, b64(&expected), "the client's proof");
    // What the server signs: the exchange as it saw it, with its own channel binding.
    let server_auth = format!("{bare},{server_first},c={server_cbind},r={nonce}");
    let server_signature = hmac(&hmac(&salted, b"Server Key"), server_auth.as_bytes());
    let mut fin = 12i32.to_be_bytes().to_vec();
    fin.extend_from_slice(format!("v={}", b64(&server_signature)).as_bytes());
    p.handle_input(&Script::new().msg(b'R', &fin).startup_done().0);
    (client_final, drain(p))
}

#[test]
fn a_plus_exchange_binds_the_certificate_hash_and_verifies_the_server() {
    let data = super::tls_server_end_point(&hex(RSA_SHA256)).unwrap();
    let cbind = b64(&[&b"p=tls-server-end-point,,"[..], &data].concat());
    for cb in [ChannelBinding::Prefer, ChannelBinding::Require] {
        let mut p = protocol_with(tls_creds(cb, Some(&data)));
        take_out(&mut p);
        p.handle_input(&sasl_offer(&[SCRAM, PLUS]).0);
        let (client_final, ev) = scram_server(&mut p, &cbind);
        assert!(
            client_final.starts_with(&format!("c={cbind},r=")),
            "{client_final}"
        );
        assert!(matches!(&ev[..], [Event::Connected]), "{ev:?}");
    }
}

#[test]
fn unbound_exchanges_still_verify_the_server() {
    for (data, cbind) in [(Some(BINDING), b64(b"y,,")), (None, "biws".to_owned())] {
        let mut p = protocol_with(tls_creds(ChannelBinding::Prefer, data));
        take_out(&mut p);
        p.handle_input(&sasl_offer(&[SCRAM]).0);
        let (client_final, ev) = scram_server(&mut p, &cbind);
        assert!(client_final.starts_with(&format!("c={cbind},r=")));
        assert!(matches!(&ev[..], [Event::Connected]), "{ev:?}");
    }
}

#[test]
fn a_server_signature_over_another_channel_is_refused() {
    // A man in the middle with his own certificate: the real server signs the exchange as
    // bound to the certificate it presented, not to the one the client saw.
    let client_saw = super::tls_server_end_point(&hex(RSA_SHA256)).unwrap();
    let server_has = sha256(b"another certificate");
    let server_cbind = b64(&[&b"p=tls-server-end-point,,"[..], &server_has].concat());
    let mut p = protocol_with(tls_creds(ChannelBinding::Require, Some(&client_saw)));
    take_out(&mut p);
    p.handle_input(&sasl_offer(&[PLUS]).0);
    let (_, ev) = scram_server(&mut p, &server_cbind);
    let [Event::Closed(e)] = &ev[..] else {
        panic!("{ev:?}")
    };
    assert_eq!(e.kind(), crate::ErrorKind::Connection);
    assert!(
        e.to_string().contains("server's signature is invalid"),
        "{e}"
    );
}

#[test]
fn set_server_certificate_takes_the_hash_or_fails_only_under_require() {
    let mut c = tls_creds(ChannelBinding::Prefer, None);
    c.set_server_certificate(&hex(RSA_SHA256)).unwrap();
    assert_eq!(
        c.tls_server_end_point,
        Some(super::tls_server_end_point(&hex(RSA_SHA256)).unwrap())
    );
    // No binding for an Ed25519 certificate: prefer goes on without it ("n,,").
    c.set_server_certificate(&hex(ED25519_CERT)).unwrap();
    assert_eq!(c.tls_server_end_point, None);
    assert_gs2(first_answer(c, &[PLUS, SCRAM]), SCRAM, "n,,");
    // require stops there, before connecting.
    let mut c = tls_creds(ChannelBinding::Require, None);
    let e = c.set_server_certificate(&hex(ED25519_CERT)).unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::Connection);
    assert!(
        e.to_string().starts_with(
            "connection error: channel binding is required, but client does not support it"
        ),
        "{e}"
    );
    assert!(e.to_string().contains("Ed25519"), "{e}");
    let e = c.set_server_certificate(b"\x30\x03garbage").unwrap_err();
    assert!(e.to_string().contains("DER"), "{e}");
}

#[test]
fn channel_binding_values_are_libpqs() {
    assert_eq!(
        ChannelBinding::parse("disable"),
        Some(ChannelBinding::Disable)
    );
    assert_eq!(
        ChannelBinding::parse("prefer"),
        Some(ChannelBinding::Prefer)
    );
    assert_eq!(
        ChannelBinding::parse("require"),
        Some(ChannelBinding::Require)
    );
    assert_eq!(ChannelBinding::parse("Require"), None);
    assert_eq!(ChannelBinding::parse(""), None);
    assert_eq!(ChannelBinding::default(), ChannelBinding::Prefer);
    let d = Credentials::default();
    assert_eq!(
        (d.channel_binding, d.tls_server_end_point),
        (ChannelBinding::Prefer, None)
    );
}

#[test]
fn credentials_debug_shows_no_secret() {
    let c = tls_creds(ChannelBinding::Require, Some(BINDING));
    let s = format!("{c:?}");
    assert!(!s.contains("pencil"), "{s}");
    assert!(s.contains("Require") && s.contains("Some(22)"), "{s}");
}

#[test]
fn a_deep_pipeline_holds_new_requests_until_it_drains_below_the_mark_or_a_batch_is_full() {
    holds_like_a_batch(connected());
}

#[test]
fn after_password_authentication_a_deep_pipeline_still_batches() {
    // The password message is queued bytes too: the request bounds stay exact.
    let mut p = new_protocol(Some("secret"));
    md5_challenge(&mut p);
    p.handle_input(&Script::new().startup_done().0);
    assert!(matches!(p.poll_event(), Some(Event::Connected)));
    holds_like_a_batch(p);
}

fn holds_like_a_batch(mut p: Protocol) {
    let select = || Request::Simple {
        query: "SELECT 1".into(),
    };
    let answer = Script::new()
        .row_description(&[("a", 23)])
        .data_row(&[Some("1")])
        .complete("SELECT 1")
        .ready(b'I')
        .0;
    // A shallow pipeline never waits.
    p.send(select()).unwrap();
    assert!(!p.holds_for_batch());
    take_out(&mut p);
    for _ in 1..PIPELINE_HOLD + 4 {
        p.send(select()).unwrap();
    }
    take_out(&mut p);
    assert_eq!(p.in_flight(), PIPELINE_HOLD + 4);
    // Deep enough: one more waits, and so do more, until a batch is full.
    p.send(select()).unwrap();
    assert!(p.holds_for_batch());
    for _ in 1..PIPELINE_HOLD - 1 {
        p.send(select()).unwrap();
    }
    assert!(p.holds_for_batch());
    p.send(select()).unwrap();
    assert!(!p.holds_for_batch(), "a full batch goes out");
    take_out(&mut p);
    // A request written in part counts as sent, and the rest of it is no request of its
    // own: the buffer goes out at once.
    p.send(select()).unwrap();
    assert!(p.holds_for_batch());
    p.advance_transmit(3);
    assert!(!p.holds_for_batch());
    take_out(&mut p);
    // Again one waiting; answers bring the sent ones below the mark and it goes out.
    p.send(select()).unwrap();
    let sent = p.in_flight() - 1;
    assert!(sent >= PIPELINE_HOLD && p.holds_for_batch());
    for _ in 0..sent - PIPELINE_HOLD {
        p.handle_input(&answer);
    }
    assert!(p.holds_for_batch());
    p.handle_input(&answer);
    assert!(!p.holds_for_batch());
    assert_eq!(drain(&mut p).len(), sent - PIPELINE_HOLD + 1);
}

// ---- protocol 3.2: versions, negotiation, long cancel keys (as libpq 18) ----

use crate::conninfo::ProtocolVersion::{self, V3_0, V3_2};

/// A protocol that may speak `min` to `max`, its StartupMessage already written.
fn versioned(min: ProtocolVersion, max: ProtocolVersion) -> Protocol {
    let params = vec![("user".to_owned(), "alice".to_owned())];
    let mut p = Protocol::new(
        &params,
        creds(None),
        DEFAULT_MAX_MESSAGE_SIZE,
        Versions::new(min, max),
    );
    take_out(&mut p);
    p
}

/// NegotiateProtocolVersion: the newest version the server speaks, and option names.
fn negotiate(version: i32, options: &[&str]) -> Script {
    let mut b = version.to_be_bytes().to_vec();
    b.extend_from_slice(&(options.len() as i32).to_be_bytes());
    for o in options {
        b.extend(cstr(o));
    }
    Script::new().msg(b'v', &b)
}

/// BackendKeyData with a key of `len` bytes 1, 2, 3, … (wrapping).
fn long_key(pid: i32, len: usize) -> (Script, Vec<u8>) {
    let key: Vec<u8> = (1..=len).map(|i| i as u8).collect();
    let mut b = pid.to_be_bytes().to_vec();
    b.extend_from_slice(&key);
    (Script::new().msg(b'K', &b), key)
}

/// AuthenticationOk and parameters, then `key` and ReadyForQuery.
fn startup_with_key(key: Script) -> Vec<u8> {
    let mut s = Script::new()
        .auth_ok()
        .param("server_version", "18.1")
        .param("client_encoding", "UTF8")
        .0;
    s.extend(key.0);
    s.extend(Script::new().ready(b'I').0);
    s
}

/// The error that closed `p`, after checking nothing connected.
fn closed_with(p: &mut Protocol) -> Error {
    let ev = drain(p);
    assert!(!ev.iter().any(|e| matches!(e, Event::Connected)), "{ev:?}");
    match ev.last() {
        Some(Event::Closed(e)) => e.clone(),
        other => panic!("expected Closed, got {other:?}"),
    }
}

fn connects(p: &mut Protocol) {
    let ev = drain(p);
    assert!(matches!(ev.as_slice(), [Event::Connected]), "{ev:?}");
}

#[test]
fn the_startup_message_carries_the_version_asked_for() {
    let params = vec![("user".to_owned(), "alice".to_owned())];
    for (min, max, code) in [
        (V3_0, V3_0, 0x0003_0000i32),
        (V3_0, V3_2, 0x0003_0002),
        (V3_2, V3_2, 196_610),
    ] {
        let mut p = Protocol::new(
            &params,
            creds(None),
            DEFAULT_MAX_MESSAGE_SIZE,
            Versions::new(min, max),
        );
        let out = take_out(&mut p);
        let mut expected = 20i32.to_be_bytes().to_vec();
        expected.extend_from_slice(&code.to_be_bytes());
        expected.extend_from_slice(b"user\0alice\0\0");
        assert_eq!(out, expected, "{min}..{max}");
    }
}

#[test]
fn a_minimum_above_the_maximum_sends_nothing_and_is_a_usage_error() {
    let params = vec![("user".to_owned(), "alice".to_owned())];
    let mut p = Protocol::new(
        &params,
        creds(None),
        DEFAULT_MAX_MESSAGE_SIZE,
        Versions::new(V3_2, V3_0),
    );
    assert!(p.transmit_buf().is_empty());
    let e = closed_with(&mut p);
    assert_eq!(e.kind(), crate::ErrorKind::Usage);
    assert_eq!(
        e.to_string(),
        "usage error: \"min_protocol_version\" is greater than \"max_protocol_version\""
    );
}

#[test]
fn a_32_byte_key_is_kept_whole_and_sent_whole_in_the_cancel_request() {
    let mut p = versioned(V3_0, V3_2);
    let (k, key) = long_key(4242, 32);
    p.handle_input(&startup_with_key(k));
    connects(&mut p);
    assert_eq!(p.protocol_version(), Some((3, 2)));
    assert_eq!(key_of(&p), Some((4242, key.clone())));
    let mut request = BytesMut::new();
    p.backend_key().unwrap().cancel_request(&mut request);
    let mut expected = 44i32.to_be_bytes().to_vec();
    expected.extend_from_slice(&80_877_102i32.to_be_bytes());
    expected.extend_from_slice(&4242i32.to_be_bytes());
    expected.extend_from_slice(&key);
    assert_eq!(&request[..], &expected[..]);
    // Debug shows the key's length, never the key.
    let shown = format!("{:?}", p.backend_key().unwrap());
    assert_eq!(shown, "BackendKey { pid: 4242, secret_len: 32 }");
}

#[test]
fn a_256_byte_key_is_kept_and_encoded_byte_for_byte() {
    let mut p = versioned(V3_2, V3_2);
    let (k, key) = long_key(-7, 256);
    p.handle_input(&startup_with_key(k));
    connects(&mut p);
    let mut request = BytesMut::new();
    p.backend_key().unwrap().cancel_request(&mut request);
    assert_eq!(request.len(), 268);
    assert_eq!(&request[..4], &268i32.to_be_bytes());
    assert_eq!(&request[4..8], &[0x04, 0xd2, 0x16, 0x2e]); // 1234.5678
    assert_eq!(&request[8..12], &(-7i32).to_be_bytes());
    assert_eq!(&request[12..], &key[..]);
}

#[test]
fn a_4_byte_key_on_3_0_is_the_classic_16_byte_cancel_request() {
    let p = connected();
    let mut request = BytesMut::new();
    p.backend_key().unwrap().cancel_request(&mut request);
    let mut classic = BytesMut::new();
    frontend::cancel_request(4242, 77, &mut classic);
    assert_eq!(request, classic);
    assert_eq!(p.protocol_version(), Some((3, 0)));
}

#[test]
fn keys_shorter_than_4_or_longer_than_256_bytes_are_refused() {
    for (len, words) in [
        (3, "cancel key with length 3 is too short (minimum 4 bytes)"),
        (0, "cancel key with length 0 is too short (minimum 4 bytes)"),
        (
            257,
            "cancel key with length 257 is too long (maximum 256 bytes)",
        ),
    ] {
        let mut p = versioned(V3_0, V3_2);
        p.handle_input(&startup_with_key(long_key(1, len).0));
        let e = closed_with(&mut p);
        assert_eq!(e.kind(), crate::ErrorKind::Protocol, "{e}");
        assert_eq!(
            e.to_string(),
            format!("protocol error: received invalid BackendKeyData message: {words}")
        );
        assert!(p.backend_key().is_none());
    }
    // Not even a process id.
    let mut p = versioned(V3_0, V3_2);
    p.handle_input(&startup_with_key(Script::new().msg(b'K', &[0, 0, 1])));
    let e = closed_with(&mut p);
    assert!(
        e.to_string()
            .ends_with("BackendKeyData message: message too short"),
        "{e}"
    );
}

#[test]
fn a_long_key_on_a_3_0_connection_is_refused() {
    // Asked for 3.0 only: PostgreSQL 18 sends 4 bytes then; 32 is a violation.
    let mut p = versioned(V3_0, V3_0);
    p.handle_input(&startup_with_key(long_key(1, 32).0));
    let e = closed_with(&mut p);
    assert_eq!(e.kind(), crate::ErrorKind::Protocol);
    assert_eq!(
        e.to_string(),
        "protocol error: received invalid BackendKeyData message: cancel key with length 32 \
         not allowed in protocol version 3.0 (must be 4 bytes)"
    );
    // Asked for 3.2 and negotiated down to 3.0: the same.
    let mut p = versioned(V3_0, V3_2);
    let mut s = negotiate(0x0003_0000, &[]).0;
    s.extend(startup_with_key(long_key(1, 32).0));
    p.handle_input(&s);
    let e = closed_with(&mut p);
    assert!(
        e.to_string()
            .contains("length 32 not allowed in protocol version 3.0"),
        "{e}"
    );
}

#[test]
fn a_server_offering_3_0_is_accepted_when_the_minimum_allows_it() {
    let mut p = versioned(V3_0, V3_2);
    let mut s = negotiate(0x0003_0000, &[]).0;
    s.extend(Script::new().startup_done().0);
    p.handle_input(&s);
    connects(&mut p);
    assert_eq!(p.protocol_version(), Some((3, 0)));
    assert_eq!(key_of(&p), Some((4242, 77i32.to_be_bytes().to_vec())));
}

#[test]
fn negotiation_may_come_after_an_authentication_request() {
    let mut p = Protocol::new(
        &[("user".to_owned(), "alice".to_owned())],
        creds(Some("secret")),
        DEFAULT_MAX_MESSAGE_SIZE,
        Versions::new(V3_0, V3_2),
    );
    md5_challenge(&mut p);
    let mut s = negotiate(0x0003_0000, &[]).0;
    s.extend(Script::new().startup_done().0);
    p.handle_input(&s);
    connects(&mut p);
    assert_eq!(p.protocol_version(), Some((3, 0)));
}

#[test]
fn a_server_offering_less_than_the_minimum_is_refused_naming_both_versions() {
    let mut p = versioned(V3_2, V3_2);
    p.handle_input(&negotiate(0x0003_0000, &[]).0);
    let e = closed_with(&mut p);
    assert_eq!(e.kind(), crate::ErrorKind::Connection);
    assert_eq!(
        e.to_string(),
        "connection error: server only supports protocol version 3.0, but \
         \"min_protocol_version\" was set to 3.2"
    );
    assert_eq!(p.protocol_version(), None);
}

#[test]
fn a_second_negotiation_is_refused() {
    let mut p = versioned(V3_0, V3_2);
    let mut s = negotiate(0x0003_0000, &[]).0;
    s.extend(negotiate(0x0003_0000, &[]).0);
    s.extend(Script::new().startup_done().0);
    p.handle_input(&s);
    let e = closed_with(&mut p);
    assert_eq!(e.kind(), crate::ErrorKind::Protocol);
    assert_eq!(
        e.to_string(),
        "protocol error: received duplicate protocol negotiation message"
    );
}

#[test]
fn negotiation_messages_libpq_18_refuses_are_protocol_violations() {
    let invalid = "protocol error: received invalid protocol negotiation message: ";
    for (min, max, script, words) in [
        (V3_0, V3_0, negotiate(0x0003_0002, &[]), "server requested downgrade to a higher-numbered version"),
        (V3_0, V3_2, negotiate(0x0003_0003, &[]), "server requested downgrade to a higher-numbered version"),
        (V3_0, V3_2, negotiate(0x0002_0000, &[]), "server requested downgrade to pre-3.0 protocol version"),
        (V3_0, V3_2, negotiate(0, &[]), "server requested downgrade to pre-3.0 protocol version"),
        (V3_0, V3_2, negotiate(0x0003_0001, &[]), "server requested downgrade to non-existent 3.1 protocol version"),
        (V3_0, V3_0, negotiate(0x0003_0000, &[]), "server negotiated but asks for no changes"),
        (V3_2, V3_2, negotiate(0x0003_0002, &[]), "server negotiated but asks for no changes"),
        (
            V3_0,
            V3_2,
            negotiate(0x0003_0000, &["_pq_.compression"]),
            "server reported an unsupported parameter that was not requested (\"_pq_.compression\")",
        ),
        (
            V3_0,
            V3_0,
            negotiate(0x0003_0000, &["_pq_.x"]),
            "server reported an unsupported parameter that was not requested (\"_pq_.x\")",
        ),
        (
            V3_0,
            V3_2,
            negotiate(0x0003_0000, &["compression"]),
            "server reported unsupported parameter name without a \"_pq_.\" prefix (\"compression\")",
        ),
        (
            V3_0,
            V3_2,
            Script::new().msg(b'v', &[0, 3, 0, 0, 0xff, 0xff, 0xff, 0xff]),
            "server reported negative number of unsupported parameters",
        ),
        (V3_0, V3_2, Script::new().msg(b'v', &[0, 3, 0, 0]), "message too short"),
        (V3_0, V3_2, Script::new().msg(b'v', &[0, 3, 0, 0, 0, 0, 0, 1, b'_']), "message too short"),
        (
            V3_0,
            V3_2,
            Script::new().msg(b'v', &[0, 3, 0, 0, 0, 0, 0, 0, b'x']),
            "message contents do not agree with its length",
        ),
    ] {
        let mut p = versioned(min, max);
        p.handle_input(&script.0);
        let e = closed_with(&mut p);
        assert_eq!(e.kind(), crate::ErrorKind::Protocol, "{e}");
        assert_eq!(e.to_string(), format!("{invalid}{words}"));
    }
}

#[test]
fn negotiation_and_keys_are_refused_where_they_cannot_come() {
    // NegotiateProtocolVersion after AuthenticationOk.
    let mut p = versioned(V3_0, V3_2);
    let mut s = Script::new().auth_ok().0;
    s.extend(negotiate(0x0003_0000, &[]).0);
    p.handle_input(&s);
    let e = closed_with(&mut p);
    assert!(
        e.to_string()
            .contains("NegotiateProtocolVersion received after startup"),
        "{e}"
    );
    // BackendKeyData before AuthenticationOk, and once the connection is ready.
    let mut p = versioned(V3_0, V3_2);
    p.handle_input(&long_key(1, 32).0 .0);
    let e = closed_with(&mut p);
    assert!(
        e.to_string()
            .contains("unexpected BackendKeyData during authentication"),
        "{e}"
    );
    let mut p = connected();
    p.handle_input(&Script::new().key(1, 2).0);
    let e = closed_with(&mut p);
    assert!(
        e.to_string()
            .contains("unexpected BackendKeyData after startup"),
        "{e}"
    );
}

#[test]
fn the_version_is_known_only_once_authenticated() {
    let mut p = versioned(V3_0, V3_2);
    assert_eq!(p.protocol_version(), None);
    p.handle_input(&negotiate(0x0003_0000, &[]).0);
    assert_eq!(
        p.protocol_version(),
        None,
        "authentication is still going on"
    );
    p.handle_input(&Script::new().auth_ok().0);
    assert_eq!(p.protocol_version(), Some((3, 0)));
}

/// A result's rows, made as a cursor makes them.
fn rows_of(r: &QueryResult) -> Vec<crate::row::Row> {
    r.rows
        .to_vec(r.columns.as_ref().expect("a result with rows has columns"))
}

/// The answers read straight from their bytes (`Protocol::quick`) take only well-formed
/// ones: anything else still goes through postgres-protocol's parser and fails the
/// connection as a Protocol error, as before.
#[test]
fn malformed_answers_of_a_query_still_fail_the_connection() {
    for (tag, body) in [
        (b'C', &b"SELECT 1"[..]),     // no terminating NUL
        (b'C', &b"SEL\0ECT 1\0"[..]), // bytes after the NUL
        (b'Z', &b"II"[..]),           // ReadyForQuery of two bytes
        (b'2', &b"x"[..]),            // BindComplete with a body
    ] {
        let mut p = connected();
        p.send(Request::Simple {
            query: "SELECT 1".into(),
        })
        .unwrap();
        take_out(&mut p);
        p.handle_input(
            &Script::new()
                .row_description(&[("a", 23)])
                .data_row(&[Some("1")])
                .msg(tag, body)
                .0,
        );
        let ev = drain(&mut p);
        let Some(Event::Closed(e)) = ev.last() else {
            panic!("{:?} {body:?}: {ev:?}", char::from(tag))
        };
        assert_eq!(e.kind(), crate::ErrorKind::Protocol, "{e}");
    }
}

/// A RowDescription the same byte for byte as the last one reuses its columns (the same
/// `Arc`), and a different one is read anew.
#[test]
fn a_repeated_row_description_shares_its_columns() {
    let mut p = connected();
    let mut columns = Vec::new();
    for name in ["a", "a", "b"] {
        p.send(Request::Simple {
            query: "SELECT 1".into(),
        })
        .unwrap();
        take_out(&mut p);
        p.handle_input(
            &Script::new()
                .row_description(&[(name, 23)])
                .data_row(&[Some("1")])
                .complete("SELECT 1")
                .ready(b'I')
                .0,
        );
        let Some(Event::Completed(Ok(Response::Query(r)))) = p.poll_event() else {
            panic!()
        };
        columns.push(r.columns.unwrap());
    }
    assert!(Arc::ptr_eq(&columns[0], &columns[1]));
    assert!(!Arc::ptr_eq(&columns[1], &columns[2]));
    assert_eq!(columns[2][0].name(), "b");
}
