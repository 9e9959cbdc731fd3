//! PostgreSQL's text formats that need parsing or writing: arrays (`{1,"a b",NULL}`),
//! hstore (`"k"=>"v", "n"=>NULL`), bytea (`\x00ff` and the old escape form).
//!
//! Everything here reads bytes the server sent and so must never panic or allocate in
//! proportion to a length the input merely claims; malformed input is a Conversion error.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::error::Error;

/// One element at the top level of a text array: a nested array (its raw `{...}` text, to be
/// decoded by the element's reader), or a scalar, `None` for NULL.
#[derive(Debug, PartialEq)]
pub(crate) enum ArrayItem<'a> {
    Sub(&'a str),
    Scalar(Option<Cow<'a, str>>),
}

/// PostgreSQL's `scanner_isspace`: the only whitespace array_in skips around elements and
/// array_out quotes, and the only whitespace hstore's parser skips. Unlike
/// `u8::is_ascii_whitespace` it includes `\v`; unlike `char::is_whitespace` it excludes every
/// non-ASCII space (U+00A0, U+2028, U+3000…), which are data.
fn is_pg_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// `s` without the trailing [`is_pg_space`] bytes at or after byte `keep`.
fn trim_pg_space_end(s: &str, keep: usize) -> &str {
    let b = s.as_bytes();
    let mut end = b.len();
    while end > keep && is_pg_space(b[end - 1]) {
        end -= 1;
    }
    // Only ASCII bytes were dropped, so `end` is a character boundary.
    &s[..end]
}

fn bad(what: &str, input: &str) -> Error {
    let shown: String = input.chars().take(60).collect();
    Error::conversion(format!("malformed {what} literal: {shown:?}"))
}

/// Splits an array's text form into its top-level items. A leading dimension decoration
/// (`[0:1]={1,2}`) is skipped; the server writes one when a lower bound is not 1.
pub(crate) fn parse_array(input: &str) -> Result<Vec<ArrayItem<'_>>, Error> {
    let mut s = input;
    if s.starts_with('[') {
        match s.find('=') {
            Some(eq) => s = &s[eq + 1..],
            None => return Err(bad("array", input)),
        }
    }
    let b = s.as_bytes();
    if b.first() != Some(&b'{') {
        return Err(bad("array", input));
    }
    let mut items = Vec::new();
    let mut i = 1;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && is_pg_space(b[*i]) {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    if b.get(i) == Some(&b'}') {
        i += 1;
        skip_ws(&mut i);
        return if i == b.len() {
            Ok(items)
        } else {
            Err(bad("array", input))
        };
    }
    loop {
        skip_ws(&mut i);
        match b.get(i) {
            None => return Err(bad("array", input)),
            Some(b'{') => {
                let start = i;
                let mut depth = 0usize;
                let mut in_quotes = false;
                loop {
                    match b.get(i) {
                        None => return Err(bad("array", input)),
                        Some(b'\\') if in_quotes => i += 1,
                        Some(b'"') => in_quotes = !in_quotes,
                        Some(b'{') if !in_quotes => {
                            depth += 1;
                            // This brace opens dimension depth + 1: each is decoded by one
                            // more level of recursion, so the nesting is bounded here.
                            if depth + 1 > super::MAX_ARRAY_DIMS {
                                return Err(super::too_many_dims());
                            }
                        }
                        Some(b'}') if !in_quotes => {
                            depth -= 1;
                            if depth == 0 {
                                i += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                items.push(ArrayItem::Sub(&s[start..i]));
            }
            Some(b'"') => {
                i += 1;
                let start = i;
                let mut owned: Option<String> = None;
                loop {
                    match b.get(i) {
                        None => return Err(bad("array", input)),
                        Some(b'"') => break,
                        Some(b'\\') => {
                            let buf = owned.get_or_insert_with(|| s[start..i].to_owned());
                            let c = s[i + 1..]
                                .chars()
                                .next()
                                .ok_or_else(|| bad("array", input))?;
                            buf.push(c);
                            i += 1 + c.len_utf8();
                        }
                        Some(_) => {
                            let c = s[i..].chars().next().unwrap_or_default();
                            if let Some(buf) = owned.as_mut() {
                                buf.push(c);
                            }
                            i += c.len_utf8();
                        }
                    }
                }
                let text = match owned {
                    Some(o) => Cow::Owned(o),
                    None => Cow::Borrowed(&s[start..i]),
                };
                i += 1;
                items.push(ArrayItem::Scalar(Some(text)));
            }
            Some(_) => {
                // A bare element: array_in drops the whitespace after it, but not an escaped
                // character, so the owned text keeps everything up to its last escape.
                let start = i;
                let mut owned: Option<String> = None;
                let mut keep = 0;
                while let Some(&c) = b.get(i) {
                    if c == b',' || c == b'}' {
                        break;
                    }
                    if c == b'\\' {
                        let buf = owned.get_or_insert_with(|| s[start..i].to_owned());
                        let ch = s[i + 1..]
                            .chars()
                            .next()
                            .ok_or_else(|| bad("array", input))?;
                        buf.push(ch);
                        keep = buf.len();
                        i += 1 + ch.len_utf8();
                    } else {
                        let ch = s[i..].chars().next().unwrap_or_default();
                        if let Some(buf) = owned.as_mut() {
                            buf.push(ch);
                        }
                        i += ch.len_utf8();
                    }
                }
                let text = match owned {
                    Some(mut o) => {
                        let len = trim_pg_space_end(&o, keep).len();
                        o.truncate(len);
                        Cow::Owned(o)
                    }
                    None => Cow::Borrowed(trim_pg_space_end(&s[start..i], 0)),
                };
                if text.is_empty() {
                    return Err(bad("array", input));
                }
                if text.eq_ignore_ascii_case("NULL") && matches!(text, Cow::Borrowed(_)) {
                    items.push(ArrayItem::Scalar(None));
                } else {
                    items.push(ArrayItem::Scalar(Some(text)));
                }
            }
        }
        skip_ws(&mut i);
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => {
                i += 1;
                skip_ws(&mut i);
                return if i == b.len() {
                    Ok(items)
                } else {
                    Err(bad("array", input))
                };
            }
            _ => return Err(bad("array", input)),
        }
    }
}

/// Writes an array element in the array text form, quoted when the server would misread
/// it bare.
pub(crate) fn push_array_element(s: &str, out: &mut String) {
    let needs_quotes = s.is_empty()
        || s.eq_ignore_ascii_case("NULL")
        || s.bytes()
            .any(|c| matches!(c, b'{' | b'}' | b',' | b'"' | b'\\') || is_pg_space(c));
    if !needs_quotes {
        out.push_str(s);
        return;
    }
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// Parses hstore's text form. Keys and values may be quoted (with `\` escapes) or bare; a
/// bare `NULL` value is SQL NULL.
pub(crate) fn parse_hstore(input: &str) -> Result<HashMap<String, Option<String>>, Error> {
    let b = input.as_bytes();
    let mut map = HashMap::new();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && is_pg_space(b[*i]) {
            *i += 1;
        }
    };
    // Reads a quoted or bare token; returns it and whether it was quoted.
    let token = |i: &mut usize, stop_at_arrow: bool| -> Result<(String, bool), Error> {
        let mut out = String::new();
        if b.get(*i) == Some(&b'"') {
            *i += 1;
            loop {
                match b.get(*i) {
                    None => return Err(bad("hstore", input)),
                    Some(b'"') => {
                        *i += 1;
                        return Ok((out, true));
                    }
                    Some(b'\\') => {
                        let c = input[*i + 1..]
                            .chars()
                            .next()
                            .ok_or_else(|| bad("hstore", input))?;
                        out.push(c);
                        *i += 1 + c.len_utf8();
                    }
                    Some(_) => {
                        let c = input[*i..].chars().next().unwrap_or_default();
                        out.push(c);
                        *i += c.len_utf8();
                    }
                }
            }
        }
        while let Some(&c) = b.get(*i) {
            if is_pg_space(c) || c == b',' || (stop_at_arrow && c == b'=') {
                break;
            }
            if c == b'\\' {
                let ch = input[*i + 1..]
                    .chars()
                    .next()
                    .ok_or_else(|| bad("hstore", input))?;
                out.push(ch);
                *i += 1 + ch.len_utf8();
            } else {
                let ch = input[*i..].chars().next().unwrap_or_default();
                out.push(ch);
                *i += ch.len_utf8();
            }
        }
        if out.is_empty() {
            return Err(bad("hstore", input));
        }
        Ok((out, false))
    };
    skip_ws(&mut i);
    while i < b.len() {
        let (key, _) = token(&mut i, true)?;
        skip_ws(&mut i);
        if b.get(i..i + 2) != Some(b"=>") {
            return Err(bad("hstore", input));
        }
        i += 2;
        skip_ws(&mut i);
        let (value, quoted) = token(&mut i, false)?;
        let value = if !quoted && value.eq_ignore_ascii_case("NULL") {
            None
        } else {
            Some(value)
        };
        map.insert(key, value);
        skip_ws(&mut i);
        match b.get(i) {
            None => break,
            Some(b',') => {
                i += 1;
                skip_ws(&mut i);
            }
            Some(_) => return Err(bad("hstore", input)),
        }
    }
    Ok(map)
}

/// Writes one hstore key or value in the quoted text form.
pub(crate) fn push_hstore_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// Decodes bytea's text output: the hex form (`\x00ff`, the default since 9.0) or the escape
/// form (`\000\377a\\`, with `bytea_output = escape`).
pub(crate) fn parse_bytea(raw: &[u8]) -> Result<Vec<u8>, Error> {
    let err = || Error::conversion("malformed bytea literal");
    if let Some(hex) = raw.strip_prefix(b"\\x") {
        let mut out = Vec::with_capacity(hex.len() / 2);
        let mut it = hex.iter().filter(|c| !c.is_ascii_whitespace());
        while let Some(&hi) = it.next() {
            let lo = *it.next().ok_or_else(err)?;
            out.push((hex_digit(hi).ok_or_else(err)? << 4) | hex_digit(lo).ok_or_else(err)?);
        }
        return Ok(out);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'\\' {
            out.push(raw[i]);
            i += 1;
        } else if raw.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let oct = raw.get(i + 1..i + 4).ok_or_else(err)?;
            let mut v: u16 = 0;
            for &d in oct {
                if !(b'0'..=b'7').contains(&d) {
                    return Err(err());
                }
                v = v * 8 + u16::from(d - b'0');
            }
            out.push(u8::try_from(v).map_err(|_| err())?);
            i += 4;
        }
    }
    Ok(out)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}
