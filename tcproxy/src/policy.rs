//! Momoko's tcproxy policy syntax: `[addr:]port -> [addr:]port`.
//!
//! It owns only the parsing of a policy string into two socket addresses; it must never
//! resolve host names or touch the network. Addresses are `localhost` (127.0.0.1), `any`
//! (0.0.0.0) or dotted IPv4, as in the C tcproxy's Ragel grammar. A missing listen address
//! means `any`, as there; a missing target address means 127.0.0.1 (the C relay connected to
//! 0.0.0.0, which Linux treats as the local host, so the meaning is the same). The C
//! grammar's `rr{..}` and `hash{..}` target lists were never implemented there and are
//! refused here.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// A parsed policy: where to listen and where to relay to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The address the relay listens on.
    pub listen: SocketAddr,
    /// The address every accepted connection is relayed to.
    pub upstream: SocketAddr,
}

/// Why a policy string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError(String);

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad proxy policy: {}", self.0)
    }
}

impl std::error::Error for PolicyError {}

impl std::str::FromStr for Policy {
    type Err = PolicyError;

    /// ```
    /// let p: tcproxy::Policy = "localhost:15432 -> 127.0.0.1:5432".parse().unwrap();
    /// assert_eq!(p.listen.to_string(), "127.0.0.1:15432");
    /// assert_eq!(p.upstream.to_string(), "127.0.0.1:5432");
    /// let p: tcproxy::Policy = "11212->11211".parse().unwrap();
    /// assert_eq!(p.listen.to_string(), "0.0.0.0:11212");
    /// ```
    fn from_str(s: &str) -> Result<Policy, PolicyError> {
        let (left, right) = s
            .split_once("->")
            .ok_or_else(|| PolicyError(format!("{s:?} has no \"->\"")))?;
        let right = right.trim();
        if right.starts_with("rr") || right.starts_with("hash") || right.contains('{') {
            return Err(PolicyError(format!(
                "{right:?}: rr{{..}} and hash{{..}} target lists are not supported"
            )));
        }
        Ok(Policy {
            listen: endpoint(left.trim(), Ipv4Addr::UNSPECIFIED)?,
            upstream: endpoint(right, Ipv4Addr::LOCALHOST)?,
        })
    }
}

fn endpoint(s: &str, default: Ipv4Addr) -> Result<SocketAddr, PolicyError> {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (Some(h.trim()), p.trim()),
        None => (None, s),
    };
    let port: u16 = port
        .parse()
        .map_err(|_| PolicyError(format!("{s:?}: {port:?} is not a port number")))?;
    let ip = match host {
        None => default,
        Some("localhost") => Ipv4Addr::LOCALHOST,
        Some("any") => Ipv4Addr::UNSPECIFIED,
        Some(h) => h
            .parse()
            .map_err(|_| PolicyError(format!("{s:?}: {h:?} is not localhost, any or IPv4")))?,
    };
    Ok(SocketAddr::V4(SocketAddrV4::new(ip, port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<(String, String), PolicyError> {
        s.parse::<Policy>()
            .map(|p| (p.listen.to_string(), p.upstream.to_string()))
    }

    #[test]
    fn momokos_and_the_readmes_policies_parse() {
        let ok = |a: &str, b: &str| Ok((a.to_owned(), b.to_owned()));
        assert_eq!(
            parse("127.0.0.1:15432 -> 127.0.0.1:5432"),
            ok("127.0.0.1:15432", "127.0.0.1:5432")
        );
        assert_eq!(
            parse("11212 -> 11211"),
            ok("0.0.0.0:11212", "127.0.0.1:11211")
        );
        assert_eq!(
            parse("192.168.0.1:11212 -> 192.168.0.2:11211"),
            ok("192.168.0.1:11212", "192.168.0.2:11211")
        );
        assert_eq!(parse("any:1->localhost:2"), ok("0.0.0.0:1", "127.0.0.1:2"));
        assert_eq!(parse("  0 ->  any:5 "), ok("0.0.0.0:0", "0.0.0.0:5"));
    }

    #[test]
    fn malformed_policies_are_refused_with_the_reason() {
        let err = |s: &str| parse(s).unwrap_err().to_string();
        assert_eq!(err("15432"), "bad proxy policy: \"15432\" has no \"->\"");
        assert!(err("x:1 -> 2").contains("is not localhost, any or IPv4"));
        assert!(err("1 -> 70000").contains("is not a port number"));
        assert!(err("1 -> rr{a:1 b:2}").contains("not supported"));
        assert!(err("1 -> hash{a:1}").contains("not supported"));
        assert!(err("1 -> ").contains("is not a port number"));
    }
}
