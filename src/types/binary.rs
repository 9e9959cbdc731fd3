//! Binary wire formats that postgres-protocol does not cover (numeric, date and time as
//! text, uuid as text; interval, inet and ranges through their own modules) and the array
//! walker used by the decoders.
//!
//! Input comes from the server: nothing here may panic or allocate in proportion to a
//! count the input declares but does not back with bytes.

use std::fmt::Write as _;

use postgres_protocol::types as pt;

use crate::error::Error;

pub(crate) fn conv<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> Error {
    move |e| Error::conversion(format!("invalid binary {what}: {e}"))
}

/// A binary array, its dimensions, and its elements in row-major order.
pub(crate) struct BinArray<'a> {
    pub(crate) element_type: u32,
    pub(crate) dims: Vec<pt::ArrayDimension>,
    pub(crate) elements: Vec<Option<&'a [u8]>>,
}

pub(crate) fn parse_array(raw: &[u8]) -> Result<BinArray<'_>, Error> {
    use fallible_iterator::FallibleIterator;
    let arr = pt::array_from_sql(raw).map_err(conv("array"))?;
    // Each dimension beyond the first is decoded by one more level of recursion.
    if arr.dimensions().count().map_err(conv("array"))? > super::MAX_ARRAY_DIMS {
        return Err(super::too_many_dims());
    }
    let dims: Vec<pt::ArrayDimension> = arr.dimensions().collect().map_err(conv("array"))?;
    // Each element takes at least four bytes, so the buffer bounds the count, not the header.
    let mut elements = Vec::with_capacity(raw.len() / 4);
    let mut values = arr.values();
    while let Some(v) = values.next().map_err(conv("array"))? {
        elements.push(v);
    }
    elements.shrink_to_fit();
    Ok(BinArray {
        element_type: arr.element_type(),
        dims,
        elements,
    })
}

/// Re-encodes the elements of one sub-array of a multidimensional array as an array value
/// of one dimension less, so that an element type can be decoded by its own reader.
pub(crate) fn sub_array(
    element_type: u32,
    dims: &[pt::ArrayDimension],
    elements: &[Option<&[u8]>],
) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(dims.len() as i32).to_be_bytes());
    out.extend_from_slice(&i32::from(elements.iter().any(Option::is_none)).to_be_bytes());
    out.extend_from_slice(&element_type.to_be_bytes());
    for d in dims {
        out.extend_from_slice(&d.len.to_be_bytes());
        out.extend_from_slice(&d.lower_bound.to_be_bytes());
    }
    for e in elements {
        match e {
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(b) => {
                out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                out.extend_from_slice(b);
            }
        }
    }
    out
}

/// The binary numeric (`ndigits, weight, sign, dscale`, then base-10000 digits) as the text
/// the server would print: `-12.50`, `NaN`, `Infinity`.
pub(crate) fn numeric_to_string(raw: &[u8]) -> Result<String, Error> {
    let err = || Error::conversion("invalid binary numeric");
    let word = |i: usize| -> Result<u16, Error> {
        raw.get(i..i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(err)
    };
    let ndigits = usize::from(word(0)?);
    let weight = word(2)? as i16;
    let sign = word(4)?;
    let dscale = usize::from(word(6)?);
    if raw.len() != 8 + 2 * ndigits {
        return Err(err());
    }
    match sign {
        0xC000 => return Ok("NaN".to_owned()),
        0xD000 => return Ok("Infinity".to_owned()),
        0xF000 => return Ok("-Infinity".to_owned()),
        0x0000 | 0x4000 => {}
        _ => return Err(err()),
    }
    let digit = |k: i32| -> Result<u16, Error> {
        if k < 0 || k as usize >= ndigits {
            Ok(0)
        } else {
            let d = word(8 + 2 * k as usize)?;
            if d > 9999 {
                Err(err())
            } else {
                Ok(d)
            }
        }
    };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    let weight = i32::from(weight);
    if weight < 0 {
        out.push('0');
    } else {
        for k in 0..=weight {
            let d = digit(k)?;
            if k == 0 {
                let _ = write!(out, "{d}");
            } else {
                let _ = write!(out, "{d:04}");
            }
        }
    }
    if dscale > 0 {
        out.push('.');
        let mut frac = String::with_capacity(dscale + 4);
        let mut k = weight + 1;
        while frac.len() < dscale {
            let _ = write!(frac, "{:04}", digit(k)?);
            k += 1;
        }
        frac.truncate(dscale);
        out.push_str(&frac);
    }
    Ok(out)
}

/// Days since 2000-01-01 as `YYYY-MM-DD` (proleptic Gregorian, as PostgreSQL prints it,
/// with ` BC` for years before 1).
fn push_date(days: i64, out: &mut String) {
    let (y, m, d) = super::temporal::civil_from_days(days + super::temporal::PG_EPOCH_DAYS);
    if y <= 0 {
        let _ = write!(out, "{:04}-{m:02}-{d:02} BC", 1 - y);
    } else {
        let _ = write!(out, "{y:04}-{m:02}-{d:02}");
    }
}

fn push_time(micros: i64, out: &mut String) {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    );
    if frac != 0 {
        let f = format!("{frac:06}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
}

/// The binary forms of date, time, timestamp, timestamptz (as UTC), interval, uuid, inet,
/// cidr and the built-in ranges, as the text the server prints with `DateStyle = ISO` and
/// `IntervalStyle = postgres`; `None` for a type without a binary reader here.
pub(crate) fn temporal_to_string(type_oid: u32, raw: &[u8]) -> Result<Option<String>, Error> {
    use super::oid;
    let mut out = String::new();
    match type_oid {
        oid::DATE => match pt::date_from_sql(raw).map_err(conv("date"))? {
            i32::MAX => out.push_str("infinity"),
            i32::MIN => out.push_str("-infinity"),
            d => push_date(i64::from(d), &mut out),
        },
        oid::TIME => push_time(pt::time_from_sql(raw).map_err(conv("time"))?, &mut out),
        oid::TIMESTAMP | oid::TIMESTAMPTZ => {
            match pt::timestamp_from_sql(raw).map_err(conv("timestamp"))? {
                i64::MAX => out.push_str("infinity"),
                i64::MIN => out.push_str("-infinity"),
                us => {
                    let day = us.div_euclid(86_400_000_000);
                    push_date(day, &mut out);
                    // Keep " BC" after the time, as the server does.
                    let bc = out.ends_with(" BC");
                    if bc {
                        out.truncate(out.len() - 3);
                    }
                    out.push(' ');
                    push_time(us.rem_euclid(86_400_000_000), &mut out);
                    if type_oid == oid::TIMESTAMPTZ {
                        out.push_str("+00");
                    }
                    if bc {
                        out.push_str(" BC");
                    }
                }
            }
        }
        oid::UUID => {
            let u = pt::uuid_from_sql(raw).map_err(conv("uuid"))?;
            for (i, chunk) in [&u[0..4], &u[4..6], &u[6..8], &u[8..10], &u[10..16]]
                .iter()
                .enumerate()
            {
                if i > 0 {
                    out.push('-');
                }
                super::quote::push_hex(chunk, &mut out);
            }
        }
        oid::PG_LSN => {
            let b = <[u8; 8]>::try_from(raw).map_err(|_| conv("pg_lsn")("not 8 bytes"))?;
            out = crate::replication::Lsn::from(u64::from_be_bytes(b)).to_string();
        }
        oid::INTERVAL => out = super::interval::binary_to_string(raw)?,
        oid::INET | oid::CIDR => out = super::net::binary_to_string(raw, type_oid == oid::CIDR)?,
        t if super::range::range_element(t).is_some() => {
            out = super::range::binary_to_string(t, raw)?
        }
        _ => return Ok(None),
    }
    Ok(Some(out))
}
