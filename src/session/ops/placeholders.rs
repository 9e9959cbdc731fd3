//! How many `$n` parameters a statement takes, found on the client before anything is sent,
//! so that `query` can refuse a wrong number of values with a Usage error.
//!
//! The server cannot tell us: `query` sends the values' types with Parse, and a Parse that
//! names more types than the text uses makes a statement of that many parameters, so extra
//! values would pass silently (and too few would fail only at Bind, naming an internal
//! statement). This scan follows the server's lexer (`scan.l`) wherever a `$` can hide:
//! string constants of every kind (`'…'`, `E'…'`, `B'…'`, `X'…'`, `N'…'`, `U&'…'`, dollar
//! quotes), quoted identifiers, both kinds of comment, and identifiers, which may contain
//! `$` (`a$1` is a name). A statement takes as many parameters as the highest `$n` it
//! names. It never guesses: where the answer would depend on `standard_conforming_strings`
//! (a backslash in a plain literal), or the text does not lex (an unterminated literal), it
//! gives no answer and the server judges the statement as before.

/// The number of parameters `sql` takes, or `None` when the client cannot be sure.
pub(crate) fn count(sql: &str) -> Option<usize> {
    // Without a backslash both readings of a literal are the same: one pass tells.
    if !sql.as_bytes().contains(&b'\\') {
        return scan(sql.as_bytes(), true);
    }
    let standard = scan(sql.as_bytes(), true)?;
    let escaped = scan(sql.as_bytes(), false)?;
    (standard == escaped).then_some(standard)
}

fn ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn ident_cont(b: u8) -> bool {
    ident_start(b) || b.is_ascii_digit() || b == b'$'
}

/// The highest `$n` outside literals, comments and names, lexing plain `'…'` literals with
/// backslash escapes unless `standard_strings`.
fn scan(b: &[u8], standard_strings: bool) -> Option<usize> {
    let mut max = 0usize;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        match c {
            b'-' if next == Some(b'-') => {
                while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
                    i += 1;
                }
            }
            b'/' if next == Some(b'*') => i = block_comment(b, i)?,
            b'\'' => i = literal(b, i + 1, !standard_strings)?,
            b'"' => i = quoted_ident(b, i + 1)?,
            b'$' => match next {
                Some(d) if d.is_ascii_digit() => {
                    let start = i + 1;
                    i = start;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    // Out of any sane range: let the server say what it thinks.
                    let n: usize = std::str::from_utf8(&b[start..i]).ok()?.parse().ok()?;
                    if n > 65535 {
                        return None;
                    }
                    max = max.max(n);
                }
                _ => i = dollar_quote(b, i)?,
            },
            _ if ident_start(c) => {
                let prefixed = |p: &[u8]| {
                    b[i..]
                        .get(..p.len())
                        .is_some_and(|s| s.eq_ignore_ascii_case(p))
                };
                if prefixed(b"e'") {
                    i = literal(b, i + 2, true)?;
                } else if prefixed(b"n'") {
                    i = literal(b, i + 2, !standard_strings)?;
                } else if prefixed(b"b'") || prefixed(b"x'") || prefixed(b"u&'") {
                    let skip = if prefixed(b"u&'") { 3 } else { 2 };
                    i = literal(b, i + skip, false)?;
                } else if prefixed(b"u&\"") {
                    i = quoted_ident(b, i + 3)?;
                } else {
                    while i < b.len() && ident_cont(b[i]) {
                        i += 1;
                    }
                }
            }
            // A number is never followed by a `$` that belongs to it.
            _ if c.is_ascii_digit() => {
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    Some(max)
}

/// Past the end of a literal whose text starts at `i`: `''` is a quote; with `escapes` a
/// backslash takes the next byte.
fn literal(b: &[u8], mut i: usize, escapes: bool) -> Option<usize> {
    loop {
        match *b.get(i)? {
            b'\\' if escapes => i += 2,
            b'\'' if b.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// Past the end of a quoted identifier whose text starts at `i` (`""` is a quote).
fn quoted_ident(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        match *b.get(i)? {
            b'"' if b.get(i + 1) == Some(&b'"') => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// Past the end of a `/* … */` comment at `i`; they nest.
fn block_comment(b: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match (b.get(i)?, b.get(i + 1)) {
            (b'/', Some(b'*')) => {
                depth += 1;
                i += 2;
            }
            (b'*', Some(b'/')) => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => i += 1,
        }
    }
}

/// At a `$` that is not a parameter: past the end of the dollar-quoted string it opens
/// (`$$…$$`, `$tag$…$tag$`), or past the `$` alone when it opens none (an operator).
fn dollar_quote(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if j < b.len() && ident_start(b[j]) {
        j += 1;
        while j < b.len() && (ident_start(b[j]) || b[j].is_ascii_digit()) {
            j += 1;
        }
    }
    if b.get(j) != Some(&b'$') {
        return Some(i + 1);
    }
    let delimiter = &b[i..=j];
    let body = j + 1;
    let end = b[body..]
        .windows(delimiter.len())
        .position(|w| w == delimiter)?;
    Some(body + end + delimiter.len())
}

/// Before anything is sent: the server would take extra values silently and refuse missing
/// ones only at Bind. A statement found in a cache needs no check: it is cached under its
/// parameter types, as many as the values that passed this check when it was prepared.
pub(crate) fn check(sql: &str, values: usize) -> Result<(), crate::error::Error> {
    match count(sql) {
        Some(takes) if takes != values => Err(mismatch(takes, values)),
        _ => Ok(()),
    }
}

/// "the statement takes 1 parameter but 2 were given".
pub(crate) fn mismatch(takes: usize, given: usize) -> crate::error::Error {
    let noun = if takes == 1 {
        "parameter"
    } else {
        "parameters"
    };
    let verb = if given == 1 { "was" } else { "were" };
    crate::error::Error::usage(format!(
        "the statement takes {takes} {noun} but {given} {verb} given"
    ))
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn counts_the_highest_parameter_outside_literals_comments_and_names() {
        assert_eq!(count("SELECT 1"), Some(0));
        assert_eq!(count("SELECT $1::int"), Some(1));
        assert_eq!(count("SELECT $2, $1, $2"), Some(2));
        assert_eq!(count("SELECT $3"), Some(3));
        assert_eq!(count("SELECT '$1', $1"), Some(1));
        assert_eq!(count("SELECT 'it''s $2', $1"), Some(1));
        assert_eq!(count("SELECT E'\\' $2', $1"), Some(1));
        assert_eq!(count("SELECT B'0101', X'ff', N'$2', U&'$3', $1"), Some(1));
        assert_eq!(count("SELECT \"$2\", U&\"$3\", $1"), Some(1));
        assert_eq!(count("SELECT $1 -- and $2\n"), Some(1));
        assert_eq!(count("SELECT /* $2 /* $3 */ $4 */ $1"), Some(1));
        assert_eq!(count("SELECT $$ $2 $$, $1"), Some(1));
        assert_eq!(count("SELECT $f$ $$ $2 $f$, $1"), Some(1));
        assert_eq!(count("SELECT a$1 FROM t"), Some(0));
        assert_eq!(count("SELECT 1$2"), Some(2));
        assert_eq!(count("SELECT e'x', $1"), Some(1));
        assert_eq!(count("SELECT some'x'"), Some(0));
    }

    #[test]
    fn gives_no_answer_where_it_could_be_wrong() {
        // A backslash before a quote in a plain literal: the answer would depend on
        // standard_conforming_strings.
        assert_eq!(count("SELECT 'a\\', $1, '$2'"), None);
        assert_eq!(count("SELECT 'unterminated $1"), None);
        assert_eq!(count("SELECT $$ open"), None);
        assert_eq!(count("SELECT $99999999999999999999"), None);
    }
}
