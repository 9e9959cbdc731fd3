//! The two syntaxes of a connection string, `key=value` pairs and `postgresql://` URIs, turned
//! into keyword/value pairs exactly as libpq's `conninfo_parse` and
//! `conninfo_uri_parse_options` do. Values are not checked here: libpq checks them only after
//! the environment has filled in what the string left out, and so does `Config`.

use std::collections::BTreeMap;

use super::Kw;
use crate::error::Error;

/// What a connection string gave, keyword by keyword; a later occurrence replaces an earlier
/// one, as in libpq.
pub(super) type Given = BTreeMap<Kw, String>;

/// libpq's `isspace()` in the C locale: `\v` counts, unlike `u8::is_ascii_whitespace`.
pub(super) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Where a keyword came from, because libpq words the error for an unknown one differently.
#[derive(Clone, Copy)]
enum Origin {
    KeyValue,
    UriQuery,
}

fn store(given: &mut Given, name: &str, value: String, origin: Origin) -> Result<(), Error> {
    match Kw::from_name(name) {
        Some(kw) => {
            given.insert(kw, value);
            Ok(())
        }
        None if super::UNSUPPORTED.contains(&name) => Err(Error::usage(format!(
            "connection option \"{name}\" is not supported by momoko"
        ))),
        None => Err(Error::usage(match origin {
            Origin::KeyValue => format!("invalid connection option \"{name}\""),
            Origin::UriQuery => format!("invalid URI query parameter: \"{name}\""),
        })),
    }
}

/// Parses either form; libpq takes a string as a URI only when it starts with one of the two
/// prefixes, case-sensitively.
pub(super) fn parse(s: &str) -> Result<Given, Error> {
    for prefix in ["postgresql://", "postgres://"] {
        if s.starts_with(prefix) {
            return parse_uri(s, prefix.len());
        }
    }
    parse_key_value(s)
}

/// `key = value` pairs, as libpq's `conninfo_parse`.
fn parse_key_value(s: &str) -> Result<Given, Error> {
    let b = s.as_bytes();
    let mut given = Given::new();
    let mut i = 0;
    while i < b.len() {
        if is_space(b[i]) {
            i += 1;
            continue;
        }
        // The name runs up to '=' or whitespace; whitespace may then precede the '='.
        let name_start = i;
        while i < b.len() && b[i] != b'=' && !is_space(b[i]) {
            i += 1;
        }
        let name = &s[name_start..i];
        while i < b.len() && is_space(b[i]) {
            i += 1;
        }
        if b.get(i) != Some(&b'=') {
            return Err(Error::usage(format!(
                "missing \"=\" after \"{name}\" in connection info string"
            )));
        }
        i += 1;
        while i < b.len() && is_space(b[i]) {
            i += 1;
        }
        // Only ASCII bytes (quotes, backslashes) are ever dropped, so the value stays UTF-8.
        let mut value = Vec::new();
        if b.get(i) != Some(&b'\'') {
            // Unquoted: up to whitespace; a backslash takes the next byte literally.
            while i < b.len() {
                if is_space(b[i]) {
                    i += 1;
                    break;
                }
                if b[i] == b'\\' {
                    i += 1;
                    if i < b.len() {
                        value.push(b[i]);
                        i += 1;
                    }
                } else {
                    value.push(b[i]);
                    i += 1;
                }
            }
        } else {
            i += 1;
            loop {
                match b.get(i) {
                    None => {
                        return Err(Error::usage(
                            "unterminated quoted string in connection info string",
                        ))
                    }
                    Some(b'\\') => {
                        i += 1;
                        if let Some(&c) = b.get(i) {
                            value.push(c);
                            i += 1;
                        }
                    }
                    Some(b'\'') => {
                        // libpq needs no whitespace after the closing quote.
                        i += 1;
                        break;
                    }
                    Some(&c) => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
        }
        let value = String::from_utf8(value).expect("only ASCII bytes were removed");
        store(&mut given, name, value, Origin::KeyValue)?;
    }
    Ok(given)
}

/// [`decode`] for a secret: an error says libpq's words with the value as `***`.
fn decode_secret(raw: &str, what: &str) -> Result<String, Error> {
    decode(raw).map_err(|e| {
        let said = e.without_kind().replace(&format!("\"{raw}\""), "\"***\"");
        Error::usage(format!("{said} (the {what})"))
    })
}

/// The URI as an error may quote it: the password of `user:password@` and the values of
/// `password=` and `sslpassword=` in the query as `***`.
fn shown_uri(s: &str, prefix_len: usize) -> String {
    let (head, query) = match s.find('?') {
        Some(q) => (&s[..q], Some(&s[q + 1..])),
        None => (s, None),
    };
    let rest = &head[prefix_len..];
    let end = rest.find(['@', '/']).unwrap_or(rest.len());
    let mut out = match rest[..end].find(':') {
        Some(colon) if rest[end..].starts_with('@') => {
            format!("{}{}:***{}", &s[..prefix_len], &rest[..colon], &rest[end..])
        }
        _ => head.to_owned(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|part| match part.split_once('=') {
                Some((k, _)) if k == "password" || k == "sslpassword" => format!("{k}=***"),
                _ => part.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

/// Percent-decoding as libpq's `conninfo_uri_decode`: `+` stays `+`, `%00` is refused, and
/// the result must be UTF-8 because every value here is a Rust string.
fn decode(raw: &str) -> Result<String, Error> {
    fn hex(c: Option<&u8>) -> Option<u8> {
        (*c? as char).to_digit(16).map(|d| d as u8)
    }
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (hex(b.get(i + 1)), hex(b.get(i + 2))) else {
            return Err(Error::usage(format!(
                "invalid percent-encoded token: \"{raw}\""
            )));
        };
        let c = (hi << 4) | lo;
        if c == 0 {
            return Err(Error::usage(format!(
                "forbidden value %00 in percent-encoded value: \"{raw}\""
            )));
        }
        out.push(c);
        i += 3;
    }
    String::from_utf8(out).map_err(|_| {
        Error::usage(format!(
            "percent-encoded value is not valid UTF-8: \"{raw}\""
        ))
    })
}

/// `postgresql://[user[:password]@][netloc][:port][,...][/dbname][?param=value&...]`, as
/// libpq's `conninfo_uri_parse_options`.
fn parse_uri(s: &str, prefix_len: usize) -> Result<Given, Error> {
    let shown = shown_uri(s, prefix_len);
    let b = s.as_bytes();
    let len = b.len();
    let mut given = Given::new();
    let mut p = prefix_len;

    // Credentials exist only if an '@' comes before the first '/'.
    let mut q = p;
    while q < len && b[q] != b'@' && b[q] != b'/' {
        q += 1;
    }
    if q < len && b[q] == b'@' {
        let mut r = p;
        while b[r] != b':' && b[r] != b'@' {
            r += 1;
        }
        let user = &s[p..r];
        if !user.is_empty() {
            given.insert(Kw::User, decode(user)?);
        }
        if b[r] == b':' {
            // The password runs to that first '@'; an '@' inside must be percent-encoded.
            let password = &s[r + 1..q];
            if !password.is_empty() {
                given.insert(Kw::Password, decode_secret(password, "password")?);
            }
        }
        p = q + 1;
    }

    // One or more netloc[:port], separated by commas. The lists are decoded as a whole, so an
    // encoded comma (%2C) separates hosts just as a plain one does, as in libpq.
    let mut hosts = String::new();
    let mut ports = String::new();
    let mut term;
    loop {
        if b.get(p) == Some(&b'[') {
            p += 1;
            let start = p;
            while p < len && b[p] != b']' {
                p += 1;
            }
            if p == len {
                return Err(Error::usage(format!(
                    "end of string reached when looking for matching \"]\" in IPv6 host \
                     address in URI: \"{shown}\""
                )));
            }
            if p == start {
                return Err(Error::usage(format!(
                    "IPv6 host address may not be empty in URI: \"{shown}\""
                )));
            }
            hosts.push_str(&s[start..p]);
            p += 1;
            if p < len && !matches!(b[p], b':' | b'/' | b'?' | b',') {
                let c = s[p..].chars().next().unwrap_or('?');
                return Err(Error::usage(format!(
                    "unexpected character \"{c}\" at position {} in URI (expected \":\" or \
                     \"/\"): \"{shown}\"",
                    p + 1
                )));
            }
        } else {
            let start = p;
            while p < len && !matches!(b[p], b':' | b'/' | b'?' | b',') {
                p += 1;
            }
            hosts.push_str(&s[start..p]);
        }
        term = b.get(p).copied();
        if term == Some(b':') {
            p += 1;
            let start = p;
            while p < len && !matches!(b[p], b'/' | b'?' | b',') {
                p += 1;
            }
            ports.push_str(&s[start..p]);
            term = b.get(p).copied();
        }
        if term != Some(b',') {
            break;
        }
        p += 1;
        hosts.push(',');
        ports.push(',');
    }
    if !hosts.is_empty() {
        given.insert(Kw::Host, decode(&hosts)?);
    }
    if !ports.is_empty() {
        given.insert(Kw::Port, decode(&ports)?);
    }

    if term.is_some() && term != Some(b'?') {
        p += 1;
        let start = p;
        while p < len && b[p] != b'?' {
            p += 1;
        }
        // An empty path sets nothing, so that PGDATABASE still applies.
        let dbname = &s[start..p];
        if !dbname.is_empty() {
            given.insert(Kw::Dbname, decode(dbname)?);
        }
        term = b.get(p).copied();
    }

    if term.is_some() {
        parse_uri_params(&s[p + 1..], &mut given)?;
    }
    Ok(given)
}

/// The query part: `key=value` joined by `&`, keys and values percent-decoded.
fn parse_uri_params(mut rest: &str, given: &mut Given) -> Result<(), Error> {
    while !rest.is_empty() {
        let (part, next) = match rest.find('&') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        rest = next;
        let Some(eq) = part.find('=') else {
            return Err(Error::usage(format!(
                "missing key/value separator \"=\" in URI query parameter: \"{part}\""
            )));
        };
        let (key, value) = (&part[..eq], &part[eq + 1..]);
        if value.contains('=') {
            return Err(Error::usage(format!(
                "extra key/value separator \"=\" in URI query parameter: \"{key}\""
            )));
        }
        let key = decode(key)?;
        let value = match key.as_str() {
            "password" | "sslpassword" => decode_secret(value, &key)?,
            _ => decode(value)?,
        };
        // libpq's one concession to JDBC URIs.
        if key == "ssl" && value == "true" {
            given.insert(Kw::Sslmode, "require".to_owned());
            continue;
        }
        store(given, &key, value, Origin::UriQuery)?;
    }
    Ok(())
}
