//! Entry points for the fuzz targets in `fuzz/`: thin wrappers that feed arbitrary bytes to
//! the crate-private parts a hostile server or a hostile caller can reach (the protocol core,
//! the value decoders (the typed ones of each feature too), the connection-string parser,
//! the placeholder parser with mogrify, the certificate walk of the channel binding).
//!
//! Compiled only with the `fuzzing` feature and hidden from the documentation: it is not API.
//! Each function must never panic on any input *except* through the invariant assertions it
//! makes itself (those are the bugs the fuzzer looks for), must never do I/O, and must keep
//! its own allocations proportional to its input, so that the fuzzer's RSS limit measures the
//! code under test.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::conninfo::ProtocolVersion;
use crate::params::mogrify;
use crate::proto::{
    tls_server_end_point, Credentials, Event, Protocol, Request, Response, Versions,
};
use crate::row::{Column, Row};
use crate::types::{oid, FromSql, QuoteContext, TypeRegistry, Value};
use crate::Config;

/// The message bound used by the protocol targets: small, so that the length checks are
/// exercised with inputs the fuzzer can actually produce.
const FUZZ_MAX_MESSAGE: usize = 64 * 1024;

/// Feeds `data` to the protocol in pieces whose sizes come from `data` itself, so that every
/// split point of a message is tried (a server may deliver a message one byte at a time).
fn feed(p: &mut Protocol, data: &[u8], events: &mut Vec<Event>) {
    let (step, mut rest) = data.split_first().map_or((0, data), |(&s, r)| (s, r));
    // 0 means "all at once"; otherwise chunks of 1..=255 bytes.
    let step = if step == 0 {
        usize::MAX
    } else {
        usize::from(step)
    };
    while !rest.is_empty() {
        let n = step.min(rest.len());
        p.handle_input(&rest[..n]);
        rest = &rest[n..];
        drain(p, events);
        // Whatever the server said, the client keeps asking for the bytes it owes.
        let n = p.transmit_buf().len();
        p.advance_transmit(n);
    }
    p.handle_eof(None);
    drain(p, events);
}

fn drain(p: &mut Protocol, events: &mut Vec<Event>) {
    while let Some(e) = p.poll_event() {
        events.push(e);
    }
}

/// Checks what every run must satisfy: at most one `Closed`, and it is the last event;
/// no more completions than requests; a closed protocol keeps no input.
fn check_events(p: &Protocol, events: &[Event], requests: usize) {
    let closed: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Event::Closed(_)))
        .map(|(i, _)| i)
        .collect();
    assert!(closed.len() <= 1, "Closed reported {} times", closed.len());
    if let Some(&i) = closed.first() {
        assert_eq!(i, events.len() - 1, "an event followed Closed");
    }
    let completed = events
        .iter()
        .filter(|e| matches!(e, Event::Completed(_)))
        .count();
    assert!(
        completed <= requests,
        "{completed} completions for {requests} requests"
    );
    assert!(p.is_closed(), "end of stream must close the protocol");
    // Rows that came through are decodable or fail cleanly, never panic.
    for e in events {
        if let Event::Completed(Ok(Response::Query(r))) = e {
            if let Some(columns) = &r.columns {
                for row in r.rows.to_vec(columns) {
                    let _ = row.try_to_values();
                }
            }
        }
    }
}

fn credentials() -> Credentials {
    Credentials {
        user: "fuzz".to_owned(),
        password: Some(b"secret".to_vec()),
        ..Credentials::default()
    }
}

fn startup_params() -> Vec<(String, String)> {
    vec![
        ("user".to_owned(), "fuzz".to_owned()),
        ("client_encoding".to_owned(), "UTF8".to_owned()),
    ]
}

/// Arbitrary server bytes from the very first byte: authentication, protocol negotiation,
/// parameters, keys. The client asks for 3.2 and accepts 3.0, so that both a negotiation
/// down and a long cancel key are reachable.
pub fn protocol_startup(data: &[u8]) {
    let versions = Versions::new(ProtocolVersion::V3_0, ProtocolVersion::V3_2);
    let mut p = Protocol::new(&startup_params(), credentials(), FUZZ_MAX_MESSAGE, versions);
    let mut events = Vec::new();
    feed(&mut p, data, &mut events);
    check_events(&p, &events, 0);
    // A key is kept only within libpq 18's bounds, and a CancelRequest carries it whole.
    if let Some(key) = p.backend_key() {
        let n = key.secret().len();
        assert!((4..=256).contains(&n), "a cancel key of {n} bytes was kept");
        if p.protocol_version() == Some((3, 0)) {
            assert_eq!(n, 4, "a long cancel key was kept under protocol 3.0");
        }
        let mut request = bytes::BytesMut::new();
        key.cancel_request(&mut request);
        assert_eq!(request.len(), 12 + n);
        assert_eq!(&request[12..], key.secret());
    }
}

fn msg(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
}

/// A valid startup as PostgreSQL sends it for a trust login.
fn valid_startup() -> Vec<u8> {
    let mut s = Vec::new();
    msg(&mut s, b'R', &0i32.to_be_bytes());
    for (k, v) in [
        ("server_version", "15.18"),
        ("client_encoding", "UTF8"),
        ("standard_conforming_strings", "on"),
    ] {
        let mut b = k.as_bytes().to_vec();
        b.push(0);
        b.extend_from_slice(v.as_bytes());
        b.push(0);
        msg(&mut s, b'S', &b);
    }
    msg(&mut s, b'K', &[0, 0, 0, 42, 0, 0, 0, 7]);
    msg(&mut s, b'Z', b"I");
    s
}

/// Arbitrary server bytes after a valid startup, with one request of every kind in flight,
/// so that every answer path (rows, COPY, prepare, close, errors) is reachable.
pub fn protocol_ready(data: &[u8]) {
    let mut p = Protocol::new(
        &startup_params(),
        credentials(),
        FUZZ_MAX_MESSAGE,
        Versions::default(),
    );
    p.handle_input(&valid_startup());
    let mut events = Vec::new();
    drain(&mut p, &mut events);
    assert!(
        matches!(events.as_slice(), [Event::Connected]),
        "the scripted startup must connect: {events:?}"
    );
    let cols: Arc<[Column]> = vec![Column::new("a".into(), 0, 0, oid::INT4, 4, -1, 1)].into();
    let requests = vec![
        Request::Simple {
            query: "SELECT 1".into(),
        },
        Request::Prepare {
            name: "s1".into(),
            query: "SELECT $1".into(),
            param_types: vec![oid::INT4],
        },
        Request::ExecutePrepared {
            statement: "s1".into(),
            params: vec![Some(Bytes::from_static(&[0, 0, 0, 1])), None],
            param_formats: vec![1],
            columns: Some(cols),
            result_formats: std::rc::Rc::from([1i16]),
            describe: false,
        },
        Request::Batch {
            queries: vec!["SELECT 1".into(), "SELECT 2".into()],
        },
        Request::CopyOut {
            query: "COPY t TO STDOUT".into(),
        },
        Request::CopyIn {
            query: "COPY t FROM STDIN".into(),
            source: crate::proto::CopySource(Box::new(std::iter::once(Ok(Bytes::from_static(
                b"1\n",
            ))))),
        },
        Request::CloseStatement { name: "s1".into() },
    ];
    let n = requests.len();
    for r in requests {
        p.send(r).expect("a ready protocol takes requests");
    }
    let n_out = p.transmit_buf().len();
    p.advance_transmit(n_out);
    events.clear();
    feed(&mut p, data, &mut events);
    check_events(&p, &events, n);
}

/// The types the decoder target picks from (by index from the input's first byte).
const TYPES: &[u32] = &[
    oid::BOOL,
    oid::BYTEA,
    oid::CHAR,
    oid::NAME,
    oid::INT8,
    oid::INT2,
    oid::INT4,
    oid::TEXT,
    oid::OID,
    oid::JSON,
    oid::FLOAT4,
    oid::FLOAT8,
    oid::UNKNOWN,
    oid::BPCHAR,
    oid::VARCHAR,
    oid::NUMERIC,
    oid::DATE,
    oid::TIMESTAMPTZ,
    oid::UUID,
    oid::JSONB,
    oid::BOOL_ARRAY,
    oid::BYTEA_ARRAY,
    oid::INT2_ARRAY,
    oid::INT4_ARRAY,
    oid::INT8_ARRAY,
    oid::TEXT_ARRAY,
    oid::FLOAT4_ARRAY,
    oid::FLOAT8_ARRAY,
    oid::NUMERIC_ARRAY,
    oid::JSONB_ARRAY,
    oid::DATE_ARRAY,
    HSTORE,
    HSTORE_ARRAY,
];

/// Made-up OIDs for hstore, as `register_hstore` would find them in a database.
const HSTORE: u32 = 90_001;
const HSTORE_ARRAY: u32 = 90_002;

fn try_all(col: &Column, raw: Option<&[u8]>) {
    macro_rules! each {
        ($($t:ty),*) => {$( let _ = <$t as FromSql>::from_sql(col, raw); )*};
    }
    each!(
        i16,
        i32,
        i64,
        u32,
        bool,
        f32,
        f64,
        String,
        Vec<u8>,
        Value,
        Option<i32>,
        Option<String>,
        Vec<i16>,
        Vec<i32>,
        Vec<i64>,
        Vec<f64>,
        Vec<bool>,
        Vec<String>,
        Vec<Vec<u8>>,
        Vec<Option<i32>>,
        Vec<Option<String>>,
        Vec<Vec<i32>>,
        Vec<Vec<Option<String>>>,
        Vec<Value>,
        HashMap<String, Option<String>>,
        Vec<HashMap<String, Option<String>>>
    );
    #[cfg(feature = "json")]
    each!(serde_json::Value, Vec<serde_json::Value>);
}

/// Every decoder on arbitrary bytes: byte 0 picks the type, byte 1 the format (text or
/// binary) and whether the field is NULL; the rest is the field. Then the same rest is read
/// as a whole DataRow body for a row of 1 to 4 such columns.
pub fn decode(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let type_oid = TYPES[usize::from(data[0]) % TYPES.len()];
    let format = i16::from(data[1] & 1);
    let null = data[1] & 2 != 0;
    let ncols = usize::from((data[1] >> 2) & 3) + 1;
    let rest = &data[2..];
    let mut reg = TypeRegistry::new();
    reg.register_hstore(HSTORE, HSTORE_ARRAY);
    let mut col = Column::new("c".into(), 0, 0, type_oid, -1, -1, format);
    col.resolve(&reg);
    try_all(&col, if null { None } else { Some(rest) });

    let cols: Arc<[Column]> = vec![col; ncols].into();
    if let Ok(row) = Row::new(cols, Bytes::copy_from_slice(rest)) {
        for i in 0..row.len() {
            let _ = row.try_get::<_, Value>(i);
            let _ = row.try_get::<_, String>(i);
            let _ = row.try_get::<_, Vec<Option<String>>>(i);
        }
        let _ = format!("{row:?}");
    }
}

/// A replication session on arbitrary bytes: CopyData payloads (each after its u32 length)
/// through the CopyBoth parser, the pgoutput decoder and the feedback rule, whose invariants
/// it asserts (see src/replication/fuzz.rs).
pub fn pgoutput(data: &[u8]) {
    crate::replication::fuzz::session(data);
}

/// The tls-server-end-point hash of arbitrary bytes taken for the server's certificate (the
/// handshake delivers them before anything authenticated them): an error, or a hash of one
/// of the SHA-2 lengths over exactly those bytes, never a panic.
pub fn cert_hash(data: &[u8]) {
    if let Ok(hash) = tls_server_end_point(data) {
        assert!(
            matches!(hash.len(), 28 | 32 | 48 | 64),
            "a {}-byte hash",
            hash.len()
        );
    }
}

/// The connection-string parser (key=value and URI forms) with an environment that holds
/// only `USER` and `HOME`: with them set the parser never reads `/etc/passwd`, so the target
/// does no I/O.
pub fn conninfo(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let env = |k: &str| match k {
        "USER" => Some("fuzz".to_owned()),
        "HOME" => Some("/nonexistent".to_owned()),
        _ => None,
    };
    if let Ok(c) = Config::parse_with_env(s, &env) {
        let _ = c.targets();
        let _ = c.startup_params();
        let _ = c.get_tls();
        let _ = format!("{c:?}");
    }
}

/// Splits `data` into values of every kind the caller can pass.
fn values(mut data: &[u8]) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some((&kind, rest)) = data.split_first() {
        let len = usize::from(rest.first().copied().unwrap_or(0) % 64);
        let body = rest.get(1..).unwrap_or(&[]);
        let take = len.min(body.len());
        let (chunk, tail) = body.split_at(take);
        data = tail;
        let int = |c: &[u8]| {
            let mut b = [0u8; 8];
            b[..c.len().min(8)].copy_from_slice(&c[..c.len().min(8)]);
            i64::from_le_bytes(b)
        };
        let text = String::from_utf8_lossy(chunk).into_owned();
        let v = match kind % 12 {
            0 => Value::Null,
            1 => Value::Bool(kind & 16 != 0),
            2 => Value::Int8(int(chunk)),
            3 => Value::Float8(f64::from_bits(int(chunk) as u64)),
            4 => Value::Float4(f32::from_bits(int(chunk) as u32)),
            5 => Value::Numeric(text),
            6 => Value::Bytes(chunk.to_vec()),
            7 => Value::Array(text.chars().map(|c| Value::Text(c.to_string())).collect()),
            8 => Value::Array(vec![
                Value::Array(vec![Value::Int4(int(chunk) as i32), Value::Null]),
                Value::Array(vec![Value::Text(text), Value::Null]),
            ]),
            9 => Value::Hstore(
                [(text.clone(), Some(text)), (String::new(), None)]
                    .into_iter()
                    .collect(),
            ),
            10 => Value::Unknown {
                type_oid: oid::DATE,
                text,
            },
            _ => Value::Text(text),
        };
        out.push(v);
    }
    out
}

/// Reads back one SQL string literal as the server's lexer would: `'…'` with `''`, plus
/// backslash escapes for `E'…'` or when standard_conforming_strings is off. Returns the
/// string and what follows the literal.
fn read_literal(lit: &str, scs: bool) -> Option<(String, &str)> {
    let (escapes, rest) = match lit.strip_prefix('E') {
        Some(r) => (true, r),
        None => (!scs, lit),
    };
    let mut chars = rest.strip_prefix('\'')?.char_indices().peekable();
    let body = rest.strip_prefix('\'')?;
    let mut s = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' => {
                if let Some(&(_, '\'')) = chars.peek() {
                    chars.next();
                    s.push('\'');
                } else {
                    return Some((s, &body[i + 1..]));
                }
            }
            '\\' if escapes => {
                // Only the escapes momoko writes are needed: `\\` and `\'`.
                let (_, e) = chars.next()?;
                s.push(e);
            }
            c => s.push(c),
        }
    }
    None
}

/// The placeholder parser and mogrify on arbitrary queries and values; for strings and bytes
/// the rendered literal must read back, under the same setting, as exactly the value.
pub fn params(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let ctx = QuoteContext {
        standard_conforming_strings: flags & 1 == 0,
    };
    // The query is everything up to the first 0xff; the values come after it.
    let split = rest.iter().position(|&b| b == 0xff).unwrap_or(rest.len());
    let query = String::from_utf8_lossy(&rest[..split]);
    let vals = values(rest.get(split + 1..).unwrap_or(&[]));
    let _ = mogrify(&query, &vals, &ctx);
    let named: crate::Named = vals
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("p{i}"), v.clone()))
        .collect();
    let _ = mogrify(&query, &named, &ctx);

    for v in &vals {
        let Ok(lit) = v.to_literal(&ctx) else {
            if let Value::Text(s) = v {
                assert!(s.contains('\0'), "only NUL may refuse a string: {s:?}");
            }
            continue;
        };
        match v {
            Value::Text(s) => {
                let (back, after) = read_literal(&lit, ctx.standard_conforming_strings)
                    .unwrap_or_else(|| panic!("unreadable literal {lit:?}"));
                assert_eq!(&back, s, "literal {lit:?} reads back differently");
                assert_eq!(after, "", "text after the literal {lit:?}");
            }
            Value::Bytes(b) => {
                let (back, after) = read_literal(&lit, ctx.standard_conforming_strings)
                    .unwrap_or_else(|| panic!("unreadable literal {lit:?}"));
                assert_eq!(after, "::bytea", "bytea literal {lit:?}");
                let hex = back.strip_prefix("\\x").expect("hex bytea");
                let decoded: Vec<u8> = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digits"))
                    .collect();
                assert_eq!(&decoded, b, "bytea literal {lit:?}");
            }
            Value::Int8(_) | Value::Float8(_) | Value::Float4(_) => {
                // `1-%s` must never become `1--…`, a comment.
                assert!(!lit.starts_with('-'), "a bare negative number {lit:?}");
            }
            _ => {}
        }
    }
}

/// A socket made of the fuzzer's bytes, arriving in chunks of `step`: reads take from the
/// current chunk; once it is used up, one read sees WouldBlock (the next packet has not
/// arrived) and the next starts the next chunk. End of input is end of stream.
/// Writes are taken whole and dropped (the client's ClientHello and alerts).
#[cfg(feature = "tls")]
struct Wire<'a> {
    input: &'a [u8],
    step: usize,
    /// Bytes left in the current chunk.
    avail: usize,
    blocked: bool,
}

#[cfg(feature = "tls")]
impl std::io::Read for Wire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.avail == 0 {
            if self.input.is_empty() {
                return Ok(0);
            }
            if !self.blocked {
                self.blocked = true;
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            self.blocked = false;
            self.avail = self.step.min(self.input.len());
        }
        let n = self.avail.min(buf.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        self.avail -= n;
        Ok(n)
    }
}

#[cfg(feature = "tls")]
impl std::io::Write for Wire<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The server's side of the SSL negotiation and the TLS handshake, as the session reads it:
/// the answer to the SSLRequest (with the CVE-2021-23222 check), then every byte after it
/// into the handshake through the same functions the session uses, in chunks whose size
/// comes from the input. Byte 0 picks the options (bit 0: prefer's fallback, bit 1:
/// direct TLS, which skips the SSLRequest; bits 2..: chunk size). Asserts: every failure
/// is a Connection, Protocol or I/O error with a message; no answer is both accepted and
/// followed by bytes in the clear; a handshake that completes has a server certificate.
#[cfg(feature = "tls")]
pub fn ssl_negotiation(data: &[u8]) {
    use crate::conninfo::SslMode;
    use crate::error::ErrorKind;
    use crate::session::transport::tls;

    static PLAN: std::sync::OnceLock<(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )> = std::sync::OnceLock::new();
    let (config, name) = PLAN.get_or_init(|| {
        // require with no root file: the handshake is not verified, so the fuzzer reaches
        // as far into it as forged bytes can.
        let c = Config::parse(
            "host=localhost sslmode=require sslrootcert=/nonexistent/momoko-fuzz/root.crt",
        )
        .expect("a valid DSN");
        match tls::plan(&c, "localhost", false, &tls::ConfigCache::default()).expect("a TLS plan") {
            tls::Plan::Tls { config, name, .. } => (config, name),
            tls::Plan::Plain => unreachable!("sslmode=require plans TLS"),
        }
    });
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let fallback = flags & 1 != 0;
    let direct = flags & 2 != 0;
    let step = usize::from(flags >> 2).max(1);
    let mut wire = Wire {
        input: rest,
        step,
        avail: 0,
        blocked: false,
    };
    let check = |e: &crate::Error| {
        assert!(
            matches!(e.kind(), ErrorKind::Connection | ErrorKind::Protocol),
            "unexpected kind: {e:?}"
        );
        assert!(!e.to_string().is_empty());
    };
    if !direct {
        let answer = loop {
            match tls::read_ssl_answer(&mut wire, fallback, SslMode::Require) {
                Ok(None) => continue,
                Ok(Some(a)) => break a,
                Err(e) => return check(&e),
            }
        };
        match answer {
            tls::SslAnswer::Plain => {
                assert!(fallback, "plain text without a fallback");
                return;
            }
            // Accepted only when the S ended its chunk: bytes after it in the same read
            // would be injected (CVE-2021-23222).
            tls::SslAnswer::Tls => assert!(rest[0] == b'S' && (step == 1 || rest.len() == 1)),
        }
    }
    let mut conn =
        rustls::ClientConnection::new(config.clone(), name.clone()).expect("a client session");
    // Each round consumes a chunk, or ends: two rounds per byte bound it.
    for _ in 0..2 * rest.len() + 4 {
        match tls::drive_handshake(&mut wire, &mut conn, direct) {
            Ok(tls::Handshake::Blocked { .. }) => continue,
            Ok(tls::Handshake::Done { server_cert }) => {
                assert!(server_cert.is_some(), "a handshake without a certificate");
                return;
            }
            Err(e) => return check(&e),
        }
    }
}

/// The types the typed target picks from: every type with a typed decoder of its own, and
/// arrays of some.
const TYPED: &[u32] = &[
    oid::DATE,
    oid::TIME,
    oid::TIMESTAMP,
    oid::TIMESTAMPTZ,
    oid::INTERVAL,
    oid::UUID,
    oid::NUMERIC,
    oid::INET,
    oid::CIDR,
    oid::INT4RANGE,
    oid::INT8RANGE,
    oid::NUMRANGE,
    oid::DATERANGE,
    oid::TSRANGE,
    oid::TSTZRANGE,
    oid::DATE_ARRAY,
    oid::TIMESTAMPTZ_ARRAY,
    oid::INTERVAL_ARRAY,
    oid::UUID_ARRAY,
    oid::INET_ARRAY,
    oid::NUMERIC_ARRAY,
    oid::INT4RANGE_ARRAY,
];

/// Every typed decoder (Interval, the network types, ranges, the special-value wrappers,
/// and each feature's chrono, time, uuid and rust_decimal types) on arbitrary bytes: byte 0
/// picks the type, byte 1 the format and NULL, the rest is the field. What decodes must
/// agree across formats: a binary value, printed as the server's text by the `Value` path,
/// reads back from that text as the same value. Then the rest as a row into serde.
pub fn typed(data: &[u8]) {
    use crate::types::{Cidr, Inet, Infinite, Interval, Numeric, Range};
    use std::net::IpAddr;
    if data.len() < 2 {
        return;
    }
    let type_oid = TYPED[usize::from(data[0]) % TYPED.len()];
    let format = i16::from(data[1] & 1);
    let raw = if data[1] & 2 != 0 {
        None
    } else {
        Some(&data[2..])
    };
    let col = Column::new("c".into(), 0, 0, type_oid, -1, -1, format);
    let text_col = Column::new("c".into(), 0, 0, type_oid, -1, -1, 0);
    let _ = String::from_sql(&col, raw);
    // The server's text form of the field, by the dynamic path (arrays included).
    let text = Value::from_sql(&col, raw).ok().and_then(|v| {
        let mut b = bytes::BytesMut::new();
        v.encode_text(&mut b).ok()?;
        String::from_utf8(b.to_vec()).ok()
    });

    /// Decodes `$t` from the field; when that works and the field was binary, the server
    /// text the String path printed for it must decode to the same value.
    macro_rules! agree {
        ($($t:ty),* $(,)?) => {$(
            if let Ok(v) = <$t as FromSql>::from_sql(&col, raw) {
                if format == 1 && raw.is_some() {
                    let s = text.as_deref().unwrap_or_else(|| {
                        panic!("{} decoded but its text did not", stringify!($t))
                    });
                    let back = <$t as FromSql>::from_sql(&text_col, Some(s.as_bytes()));
                    assert_eq!(back.ok(), Some(v), "{} through its text {s:?}", stringify!($t));
                }
            }
        )*};
    }
    agree!(
        Interval,
        IpAddr,
        Inet,
        Cidr,
        Range<i32>,
        Range<i64>,
        Option<Interval>,
        Vec<Option<Interval>>,
        Vec<Option<Inet>>,
        Vec<Option<Range<i32>>>,
    );
    let _ = Infinite::<String>::from_sql(&col, raw);
    let _ = Numeric::<String>::from_sql(&col, raw);
    // A text interval prints back as the same text the server would send.
    if let (0, Ok(i)) = (format, Interval::from_sql(&col, raw)) {
        assert_eq!(Interval::parse(&i.to_string()), Some(i), "{i:?}");
    }
    #[cfg(feature = "chrono")]
    {
        use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc};
        agree!(
            NaiveDate,
            NaiveTime,
            NaiveDateTime,
            DateTime<Utc>,
            TimeDelta,
            Infinite<NaiveDate>,
            Range<NaiveDate>,
            Range<DateTime<Utc>>,
            Vec<Option<NaiveDate>>,
        );
        let _ = DateTime::<FixedOffset>::from_sql(&col, raw);
        // What chrono reads, written as a parameter, is text the decoder reads back.
        if let Ok(d) = NaiveDate::from_sql(&col, raw) {
            let back = crate::ToSql::to_value(&d);
            let s = back.as_str().unwrap_or_default();
            let c = Column::new("c".into(), 0, 0, oid::DATE, -1, -1, 0);
            assert_eq!(
                NaiveDate::from_sql(&c, Some(s.as_bytes())).ok(),
                Some(d),
                "{s}"
            );
        }
    }
    #[cfg(feature = "time")]
    {
        agree!(
            time::Date,
            time::Time,
            time::PrimitiveDateTime,
            time::Duration,
            Range<time::Date>,
        );
        let _ = time::OffsetDateTime::from_sql(&col, raw);
    }
    #[cfg(feature = "uuid")]
    agree!(uuid::Uuid, Vec<Option<uuid::Uuid>>);
    #[cfg(feature = "rust_decimal")]
    agree!(
        rust_decimal::Decimal,
        Numeric<rust_decimal::Decimal>,
        Range<rust_decimal::Decimal>,
        Vec<Option<rust_decimal::Decimal>>,
    );
    #[cfg(all(feature = "serde", feature = "json"))]
    {
        let cols: Arc<[Column]> = vec![col.clone(), col].into();
        if let Ok(row) = Row::new(cols, Bytes::copy_from_slice(&data[2..])) {
            let _ = row.deserialize::<std::collections::BTreeMap<String, serde_json::Value>>();
            let _ = row.deserialize::<(Option<String>, serde_json::Value)>();
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every committed seed runs through its entry point without tripping an invariant: the
    /// seeds stay valid inputs, and the targets stay runnable without cargo-fuzz.
    #[test]
    fn every_committed_seed_passes_its_target() {
        let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
        // A target's seed folder and its entry point.
        type Target = (&'static str, fn(&[u8]));
        let targets: &[Target] = &[
            ("protocol_startup", super::protocol_startup),
            ("protocol_ready", super::protocol_ready),
            ("decode", super::decode),
            ("conninfo", super::conninfo),
            ("params", super::params),
            ("cert_hash", super::cert_hash),
            ("typed", super::typed),
            ("pgoutput", super::pgoutput),
            #[cfg(feature = "tls")]
            ("ssl_negotiation", super::ssl_negotiation),
        ];
        let mut ran = 0;
        for (name, target) in targets {
            for entry in std::fs::read_dir(seeds.join(name)).unwrap() {
                let path = entry.unwrap().path();
                target(&std::fs::read(&path).unwrap());
                ran += 1;
            }
        }
        assert!(ran >= targets.len(), "{ran} seeds");
    }

    /// The typed target on its seeds and on random bytes around them, so that its
    /// invariants are checked by `cargo test --all-features` even without libFuzzer.
    #[test]
    fn the_typed_target_holds_on_seeds_and_random_mutations() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/typed");
        let seeds: Vec<Vec<u8>> = std::fs::read_dir(dir)
            .expect("fuzz/seeds/typed")
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        assert!(seeds.len() > 20);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for seed in &seeds {
            super::typed(seed);
            for _ in 0..2000 {
                let mut m = seed.clone();
                for _ in 0..1 + next() % 4 {
                    let r = next();
                    let i = (r as usize >> 8) % m.len();
                    match r % 4 {
                        0 => m[i] = (r >> 32) as u8,
                        1 => m[i] ^= 1 << ((r >> 40) % 8),
                        2 if m.len() > 2 => {
                            m.remove(i);
                        }
                        _ => m.insert(i, (r >> 24) as u8),
                    }
                }
                // Any type, any format: byte 0 and 1 are mutated too.
                if std::env::var_os("FUZZ_TRACE").is_some() {
                    eprintln!("INPUT {m:?}");
                }
                super::typed(&m);
            }
        }
    }
}
