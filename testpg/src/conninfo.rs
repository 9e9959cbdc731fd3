//! Just enough of libpq's connection-string syntax to build our own DSNs and to read host,
//! port and database back out of one handed to us in `MOMOKO_TEST_DSN`. It must never try
//! to be a full conninfo parser: momoko's own parser lives in the momoko crate.

/// Quotes a conninfo value when it needs it (empty, or containing spaces, quotes or
/// backslashes).
pub(crate) fn quote(value: &str) -> String {
    if !value.is_empty() && !value.contains([' ', '\'', '\\', '\t', '\n']) {
        return value.to_owned();
    }
    let mut out = String::from("'");
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// The `key=value` pairs of a DSN in either keyword form or `postgres://` URI form.
/// Malformed input yields whatever pairs could be read.
pub(crate) fn parse(dsn: &str) -> Vec<(String, String)> {
    let dsn = dsn.trim();
    for scheme in ["postgresql://", "postgres://"] {
        if let Some(rest) = dsn.strip_prefix(scheme) {
            return parse_uri(rest);
        }
    }
    parse_keywords(dsn)
}

fn parse_keywords(dsn: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut chars = dsn.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        if key.is_empty() {
            return pairs;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return pairs;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

fn parse_uri(rest: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, db) = main.split_once('/').unwrap_or((main, ""));
    let hostport = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            if !user.is_empty() {
                pairs.push(("user".to_owned(), user.to_owned()));
            }
            if !password.is_empty() {
                pairs.push(("password".to_owned(), password.to_owned()));
            }
            hostport
        }
        None => authority,
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']').unwrap_or((v6, ""));
        (h, after.strip_prefix(':').unwrap_or(""))
    } else {
        hostport.split_once(':').unwrap_or((hostport, ""))
    };
    for (key, value) in [("host", host), ("port", port), ("dbname", db)] {
        if !value.is_empty() {
            pairs.push((key.to_owned(), value.to_owned()));
        }
    }
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        pairs.push((k.to_owned(), v.to_owned()));
    }
    pairs
}

/// The last value given for `key` (libpq lets later keywords override earlier ones).
pub(crate) fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_with_quotes_round_trip() {
        let dsn = format!("host={} port=5 dbname=x", quote("/tmp/a b's"));
        let pairs = parse(&dsn);
        assert_eq!(get(&pairs, "host"), Some("/tmp/a b's"));
        assert_eq!(get(&pairs, "port"), Some("5"));
        assert_eq!(get(&pairs, "dbname"), Some("x"));
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn uri_form() {
        let pairs = parse("postgres://u:p@[::1]:6543/db?sslmode=disable");
        assert_eq!(get(&pairs, "user"), Some("u"));
        assert_eq!(get(&pairs, "password"), Some("p"));
        assert_eq!(get(&pairs, "host"), Some("::1"));
        assert_eq!(get(&pairs, "port"), Some("6543"));
        assert_eq!(get(&pairs, "dbname"), Some("db"));
        assert_eq!(get(&pairs, "sslmode"), Some("disable"));
    }

    #[test]
    fn later_keywords_win_and_junk_stops() {
        let pairs = parse("port=1 port = 2 junk");
        assert_eq!(get(&pairs, "port"), Some("2"));
    }
}
