//! Network addresses: `inet` and `cidr` as [`std::net::IpAddr`], and the [`Inet`] / [`Cidr`]
//! pair that keeps the prefix length, in the text and the binary formats.
//!
//! Parameters are written as psycopg2 writes `ipaddress` objects after `register_ipaddress`
//! (the quoted `str()`, no cast). This module reads bytes from the server and must never
//! panic: a malformed address, a prefix longer than the address, or a prefix into a bare
//! `IpAddr` (which would lose it) is a Conversion error.

use std::fmt;
use std::net::IpAddr;

use bytes::{BufMut, BytesMut};

use crate::error::Error;
use crate::row::Column;

use super::decode::{non_null, wrong_type, FromSql};
use super::{quote, IsNull, QuoteContext, ToSql, Value};

/// `inet`'s OID.
pub(crate) const INET: u32 = 869;
/// `cidr`'s OID.
pub(crate) const CIDR: u32 = 650;

fn max_prefix(addr: &IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

/// An `inet` value: a host address and the prefix length of its network
/// (`192.168.0.1/24`; `/32` or `/128` for a bare host).
///
/// ```
/// use momoko::Inet;
/// let i = Inet::new("2001:db8::1".parse().unwrap(), 64).unwrap();
/// assert_eq!(i.to_string(), "2001:db8::1/64");
/// assert!(Inet::new("10.0.0.1".parse().unwrap(), 33).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Inet {
    addr: IpAddr,
    prefix: u8,
}

/// A `cidr` value: a network address with no bits set past its prefix (`10.0.0.0/8`).
///
/// ```
/// use momoko::Cidr;
/// assert!(Cidr::new("10.0.0.0".parse().unwrap(), 8).is_ok());
/// assert!(Cidr::new("10.0.0.1".parse().unwrap(), 8).is_err()); // host bits set
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Inet {
    /// An address with a prefix length, which must not exceed the address's bits.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Inet, Error> {
        if prefix > max_prefix(&addr) {
            return Err(Error::usage(format!(
                "prefix /{prefix} is longer than the address {addr}"
            )));
        }
        Ok(Inet { addr, prefix })
    }

    /// The address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

/// Whether `addr` has a bit set past `prefix`.
fn host_bits(addr: &IpAddr, prefix: u8) -> bool {
    let (bits, width) = match addr {
        IpAddr::V4(a) => (u128::from(u32::from(*a)), 32u32),
        IpAddr::V6(a) => (u128::from(*a), 128),
    };
    let keep = u32::from(prefix);
    if keep >= width {
        return false;
    }
    let host = width - keep;
    let mask = if host >= 128 {
        u128::MAX
    } else {
        (1u128 << host) - 1
    };
    bits & mask != 0
}

impl Cidr {
    /// A network, which must have no bits set past the prefix (PostgreSQL refuses those).
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Cidr, Error> {
        Inet::new(addr, prefix)?;
        if host_bits(&addr, prefix) {
            return Err(Error::usage(format!(
                "{addr}/{prefix} has bits set to the right of the mask"
            )));
        }
        Ok(Cidr { addr, prefix })
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

/// `addr/prefix`, as Python's `str(ip_interface)` writes it.
impl fmt::Display for Inet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `addr/prefix`, as Python's `str(ip_network)` and the server write it.
impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A field of an `inet` or `cidr` column: the address, the prefix, and whether it was cidr.
fn read(column: &Column, raw: &[u8]) -> Result<(IpAddr, u8), Error> {
    let bad = || {
        let shown: String = String::from_utf8_lossy(raw).chars().take(60).collect();
        Error::conversion(format!(
            "column \"{}\": {shown:?} is not a valid network address",
            column.name()
        ))
    };
    if column.format() == 1 {
        return parse_binary(raw).ok_or_else(bad);
    }
    let s = std::str::from_utf8(raw).map_err(|_| bad())?;
    parse_text(s).ok_or_else(bad)
}

pub(crate) fn parse_text(s: &str) -> Option<(IpAddr, u8)> {
    let (a, p) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = a.parse().ok()?;
    let prefix = match p {
        None => max_prefix(&addr),
        Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse().ok()?
        }
        Some(_) => return None,
    };
    (prefix <= max_prefix(&addr)).then_some((addr, prefix))
}

/// The binary `inet`/`cidr`: family (2 IPv4, 3 IPv6), bits, is_cidr, length, address.
fn parse_binary(raw: &[u8]) -> Option<(IpAddr, u8)> {
    let (&[family, bits, _is_cidr, len], addr) = raw.split_first_chunk::<4>()?;
    let addr: IpAddr = match (family, len, addr.len()) {
        (2, 4, 4) => IpAddr::from(<[u8; 4]>::try_from(addr).ok()?),
        (3, 16, 16) => IpAddr::from(<[u8; 16]>::try_from(addr).ok()?),
        _ => return None,
    };
    (bits <= max_prefix(&addr)).then_some((addr, bits))
}

/// The text form of a binary `inet` (`cidr` when `cidr`), as the server prints it: the
/// prefix is left out for an inet host address.
pub(crate) fn binary_to_string(raw: &[u8], cidr: bool) -> Result<String, Error> {
    let (addr, prefix) =
        parse_binary(raw).ok_or_else(|| Error::conversion("invalid binary network address"))?;
    Ok(if !cidr && prefix == max_prefix(&addr) {
        addr.to_string()
    } else {
        format!("{addr}/{prefix}")
    })
}

fn is_net(column: &Column) -> bool {
    matches!(column.type_oid(), INET | CIDR)
}

impl FromSql for IpAddr {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<IpAddr, Error> {
        if !is_net(column) {
            return Err(wrong_type(column, "IpAddr"));
        }
        let (addr, prefix) = read(column, non_null(column, raw, "IpAddr")?)?;
        if prefix != max_prefix(&addr) {
            return Err(Error::conversion(format!(
                "column \"{}\": {addr}/{prefix} has a prefix an IpAddr cannot keep; read it as \
                 momoko::Inet or momoko::Cidr",
                column.name()
            )));
        }
        Ok(addr)
    }
}

impl FromSql for Inet {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<Inet, Error> {
        if !is_net(column) {
            return Err(wrong_type(column, "momoko::Inet"));
        }
        let (addr, prefix) = read(column, non_null(column, raw, "momoko::Inet")?)?;
        Ok(Inet { addr, prefix })
    }
}

impl FromSql for Cidr {
    fn from_sql(column: &Column, raw: Option<&[u8]>) -> Result<Cidr, Error> {
        if column.type_oid() != CIDR {
            return Err(wrong_type(column, "momoko::Cidr"));
        }
        let (addr, prefix) = read(column, non_null(column, raw, "momoko::Cidr")?)?;
        Cidr::new(addr, prefix).map_err(|e| e.with_kind(crate::error::ErrorKind::Conversion))
    }
}

/// Writes `text` as psycopg2's `adapt_ipaddress` does: `QuotedString(str(obj))`.
fn literal(text: &str, ctx: &QuoteContext, out: &mut String) -> Result<(), Error> {
    quote::string(text, ctx, out)
}

fn encode(
    addr: IpAddr,
    prefix: u8,
    as_oid: u32,
    type_oid: u32,
    out: &mut BytesMut,
) -> Result<IsNull, Error> {
    if type_oid != INET && type_oid != CIDR {
        return Value::Unknown {
            type_oid: as_oid,
            text: format!("{addr}/{prefix}"),
        }
        .encode_binary(type_oid, out);
    }
    match addr {
        IpAddr::V4(a) => {
            out.put_slice(&[2, prefix, u8::from(type_oid == CIDR), 4]);
            out.put_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out.put_slice(&[3, prefix, u8::from(type_oid == CIDR), 16]);
            out.put_slice(&a.octets());
        }
    }
    Ok(IsNull::No)
}

/// As psycopg2 writes `ip_interface(addr)`: `'10.0.0.1/32'`.
impl ToSql for IpAddr {
    fn to_value(&self) -> Value {
        Inet::from(*self).to_value()
    }
    fn write_literal(&self, ctx: &QuoteContext, out: &mut String) -> Result<(), Error> {
        Inet::from(*self).write_literal(ctx, out)
    }
    fn encode_binary(&self, type_oid: u32, out: &mut BytesMut) -> Result<IsNull, Error> {
        encode(*self, max_prefix(self), INET, type_oid, out)
    }
}

impl From<IpAddr> for Inet {
    fn from(addr: IpAddr) -> Inet {
        Inet {
            addr,
            prefix: max_prefix(&addr),
        }
    }
}

impl ToSql for Inet {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
    fn write_literal(&self, ctx: &QuoteContext, out: &mut String) -> Result<(), Error> {
        literal(&self.to_string(), ctx, out)
    }
    fn encode_binary(&self, type_oid: u32, out: &mut BytesMut) -> Result<IsNull, Error> {
        encode(self.addr, self.prefix, INET, type_oid, out)
    }
}

impl ToSql for Cidr {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
    fn write_literal(&self, ctx: &QuoteContext, out: &mut String) -> Result<(), Error> {
        literal(&self.to_string(), ctx, out)
    }
    fn encode_binary(&self, type_oid: u32, out: &mut BytesMut) -> Result<IsNull, Error> {
        encode(self.addr, self.prefix, CIDR, type_oid, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_with_and_without_prefix() {
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(parse_text("10.0.0.1"), Some((v4, 32)));
        assert_eq!(parse_text("10.0.0.1/8"), Some((v4, 8)));
        assert_eq!(parse_text("2001:db8::1/64"), Some((v6, 64)));
        assert_eq!(parse_text("2001:db8::1"), Some((v6, 128)));
        for bad in [
            "",
            "10.0.0.1/33",
            "10.0.0.1/",
            "x",
            "fe80::1%eth0",
            "::1/129",
            "1/1/1",
        ] {
            assert_eq!(parse_text(bad), None, "{bad}");
        }
    }

    #[test]
    fn binary_round_trips_and_prints_as_the_server() {
        let i = Inet::new("2001:db8::1".parse().unwrap(), 64).unwrap();
        let mut b = BytesMut::new();
        i.encode_binary(INET, &mut b).unwrap();
        assert_eq!(binary_to_string(&b, false).unwrap(), "2001:db8::1/64");
        let mut b = BytesMut::new();
        "10.1.2.3"
            .parse::<IpAddr>()
            .unwrap()
            .encode_binary(INET, &mut b)
            .unwrap();
        assert_eq!(binary_to_string(&b, false).unwrap(), "10.1.2.3");
        assert_eq!(binary_to_string(&b, true).unwrap(), "10.1.2.3/32");
        assert!(binary_to_string(&b[..7], false).is_err());
        assert!(binary_to_string(&[2, 33, 0, 4, 1, 2, 3, 4], false).is_err());
        assert!(Cidr::new("::".parse().unwrap(), 0).is_ok());
        assert!(Cidr::new("::1".parse().unwrap(), 0).is_err());
        assert!(Cidr::new("0.0.0.0".parse().unwrap(), 0).is_ok());
    }
}
