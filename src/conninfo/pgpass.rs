//! The password file (`~/.pgpass` or `PGPASSFILE`), read as libpq's `passwordFromFile` reads
//! it: `hostname:port:database:username:password` lines, a field of exactly `*` matching
//! anything, `\:` and `\\` escapes, `#` comment lines, the first matching line wins.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::DEFAULT_SOCKET_DIR;

/// The password for one place to connect to, or `None` when the file is missing, unsafe, or
/// has no matching line (or the matching line's password is empty, which libpq also treats
/// as no password).
pub(super) fn lookup(
    path: &Path,
    host: &str,
    port: u16,
    dbname: &str,
    user: &str,
) -> Option<String> {
    if dbname.is_empty() || user.is_empty() {
        return None;
    }
    // A connection through the default socket directory is "localhost" in the file, so one
    // line serves both the socket and 127.0.0.1, as libpq arranges.
    let host = if host.is_empty() || host == DEFAULT_SOCKET_DIR {
        "localhost"
    } else {
        host
    };
    // libpq says nothing when the file simply does not exist.
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        log::warn!("password file \"{}\" is not a plain file", path.display());
        return None;
    }
    // Any group or other bit at all (not only read) makes libpq ignore the file.
    if meta.permissions().mode() & 0o077 != 0 {
        log::warn!(
            "password file \"{}\" has group or world access; permissions should be u=rw \
             (0600) or less",
            path.display()
        );
        return None;
    }
    let content = std::fs::read(path).ok()?;
    find(&content, host, &port.to_string(), dbname, user)
}

/// The first line whose four fields match; separate from `lookup` so that the matching can
/// be tested without files.
pub(super) fn find(
    content: &[u8],
    host: &str,
    port: &str,
    dbname: &str,
    user: &str,
) -> Option<String> {
    for line in content.split(|&c| c == b'\n') {
        if line.first() == Some(&b'#') {
            continue;
        }
        let mut line = line;
        while let Some((&last, head)) = line.split_last() {
            if last != b'\r' && last != b'\n' {
                break;
            }
            line = head;
        }
        if line.is_empty() {
            continue;
        }
        let rest = Some(line)
            .and_then(|t| field_matches(t, host.as_bytes()))
            .and_then(|t| field_matches(t, port.as_bytes()))
            .and_then(|t| field_matches(t, dbname.as_bytes()))
            .and_then(|t| field_matches(t, user.as_bytes()));
        if let Some(rest) = rest {
            return password(rest);
        }
    }
    None
}

/// libpq's `pwdfMatchesString`: whether the field at the start of `buf` matches `token`; on a
/// match, what follows the field's closing ':'.
fn field_matches<'a>(buf: &'a [u8], token: &[u8]) -> Option<&'a [u8]> {
    if buf.starts_with(b"*:") {
        return Some(&buf[2..]);
    }
    let (mut i, mut t) = (0, 0);
    while i < buf.len() {
        let mut escaped = false;
        if buf[i] == b'\\' {
            i += 1;
            escaped = true;
        }
        let c = buf.get(i).copied();
        if c == Some(b':') && t == token.len() && !escaped {
            return Some(&buf[i + 1..]);
        }
        if t == token.len() || c != Some(token[t]) {
            return None;
        }
        i += 1;
        t += 1;
    }
    None
}

/// The password field: up to an unescaped ':' or the end of the line, escapes removed.
fn password(rest: &[u8]) -> Option<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < rest.len() && rest[i] != b':' {
        if rest[i] == b'\\' && i + 1 < rest.len() {
            i += 1;
        }
        out.push(rest[i]);
        i += 1;
    }
    if out.is_empty() {
        return None;
    }
    match String::from_utf8(out) {
        Ok(p) => Some(p),
        Err(_) => {
            log::warn!("password file: the matching line's password is not valid UTF-8");
            None
        }
    }
}
