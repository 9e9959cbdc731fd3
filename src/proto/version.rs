//! Protocol versions 3.0 and 3.2 as libpq 18 speaks them: the version the StartupMessage
//! asks for, the server's NegotiateProtocolVersion answer, BackendKeyData's secret key of 4
//! to 256 bytes, and the CancelRequest that carries that key back whole.
//!
//! These are the messages postgres-protocol 0.6 cannot read or write (it knows only 3.0's
//! 4-byte key and has no NegotiateProtocolVersion), so they are done here, byte by byte, with
//! libpq 18's checks and words. Nothing here touches a socket; a secret key is never shown
//! in a Debug or an error.

use std::fmt;

use bytes::{BufMut, BytesMut};
use postgres_protocol::message::frontend;

use crate::conninfo::ProtocolVersion;
use crate::error::Error;

/// The CancelRequest code, in the place of a protocol version (1234.5678).
const CANCEL_REQUEST_CODE: i32 = 80_877_102;

/// libpq 18's bounds on the secret key (commit e411a8d, "Be strict about cancel key
/// lengths"): 4 bytes at least, at most 256, and exactly 4 under protocol 3.0.
const MIN_KEY: usize = 4;
const MAX_KEY: usize = 256;

/// The versions a connection may speak and the one it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Versions {
    min: ProtocolVersion,
    max: ProtocolVersion,
    /// Asked for (the maximum), until the server negotiates down.
    current: ProtocolVersion,
    /// A NegotiateProtocolVersion was received: a second one is an error.
    negotiated: bool,
    /// Authentication finished: the version can no longer change.
    settled: bool,
}

impl Default for Versions {
    /// libpq 18's default: 3.0 only.
    fn default() -> Versions {
        Versions::new(ProtocolVersion::V3_0, ProtocolVersion::V3_0)
    }
}

impl Versions {
    /// Speak at most `max` and at least `min`. A minimum above the maximum is refused when
    /// the StartupMessage is built (a usage error, before anything is sent).
    pub(crate) fn new(min: ProtocolVersion, max: ProtocolVersion) -> Versions {
        Versions {
            min,
            max,
            current: max,
            negotiated: false,
            settled: false,
        }
    }

    /// The version in use, once authentication made it final.
    pub(crate) fn settled(&self) -> Option<ProtocolVersion> {
        self.settled.then_some(self.current)
    }

    /// AuthenticationOk: from here on the version is the one in use.
    pub(crate) fn settle(&mut self) {
        self.settled = true;
    }

    /// NegotiateProtocolVersion: Int32 the newest version the server speaks (major << 16 |
    /// minor), Int32 a count, then that many names of `_pq_.` options it does not know.
    /// Checked in libpq 18's order and words: a version older than asked is accepted down to
    /// the minimum; anything else the message says is a protocol violation, since momoko
    /// asks for no options and the server cannot offer more than was asked.
    pub(crate) fn negotiate(&mut self, body: &[u8]) -> Result<(), Error> {
        let invalid = |why: &str| {
            Error::protocol(format!(
                "received invalid protocol negotiation message: {why}"
            ))
        };
        if self.negotiated {
            return Err(Error::protocol(
                "received duplicate protocol negotiation message",
            ));
        }
        let (Some(offered), Some(count)) = (int32(body, 0), int32(body, 4)) else {
            return Err(invalid("message too short"));
        };
        let asked = self.current.code();
        if offered > asked {
            return Err(invalid(
                "server requested downgrade to a higher-numbered version",
            ));
        }
        if offered < ProtocolVersion::V3_0.code() {
            return Err(invalid(
                "server requested downgrade to pre-3.0 protocol version",
            ));
        }
        let Some(version) = ProtocolVersion::from_code(offered) else {
            // Between 3.0 and what was asked, and not a version: only 3.1 is left.
            return Err(invalid(
                "server requested downgrade to non-existent 3.1 protocol version",
            ));
        };
        if count < 0 {
            return Err(invalid(
                "server reported negative number of unsupported parameters",
            ));
        }
        if offered == asked && count == 0 {
            return Err(invalid("server negotiated but asks for no changes"));
        }
        if version < self.min {
            // Not a violation: the server is simply older than the caller demands.
            return Err(Error::connection(format!(
                "server only supports protocol version {version}, but \
                 \"min_protocol_version\" was set to {}",
                self.min
            )));
        }
        if count > 0 {
            // momoko asks for no `_pq_.` option, so the server cannot lack one.
            let names = &body[8..];
            let Some(end) = names.iter().position(|&b| b == 0) else {
                return Err(invalid("message too short"));
            };
            let name = String::from_utf8_lossy(&names[..end]);
            return Err(invalid(&if name.starts_with("_pq_.") {
                format!(
                    "server reported an unsupported parameter that was not requested (\"{name}\")"
                )
            } else {
                format!(
                    "server reported unsupported parameter name without a \"_pq_.\" prefix \
                     (\"{name}\")"
                )
            }));
        }
        if body.len() != 8 {
            return Err(invalid("message contents do not agree with its length"));
        }
        log::debug!(
            "the server speaks protocol {version}, not {}: using {version}",
            self.current
        );
        self.current = version;
        self.negotiated = true;
        Ok(())
    }

    /// BackendKeyData: Int32 the process id, then the secret key to the end of the message.
    pub(crate) fn backend_key(&self, body: &[u8]) -> Result<BackendKey, Error> {
        let invalid = |why: String| {
            Error::protocol(format!("received invalid BackendKeyData message: {why}"))
        };
        let Some(pid) = int32(body, 0) else {
            return Err(invalid("message too short".to_owned()));
        };
        let key = &body[4..];
        let n = key.len();
        if self.current == ProtocolVersion::V3_0 && n != MIN_KEY {
            return Err(invalid(format!(
                "cancel key with length {n} not allowed in protocol version 3.0 (must be 4 bytes)"
            )));
        }
        if n < MIN_KEY {
            return Err(invalid(format!(
                "cancel key with length {n} is too short (minimum {MIN_KEY} bytes)"
            )));
        }
        if n > MAX_KEY {
            return Err(invalid(format!(
                "cancel key with length {n} is too long (maximum {MAX_KEY} bytes)"
            )));
        }
        Ok(BackendKey {
            pid,
            secret: key.into(),
        })
    }
}

fn int32(body: &[u8], at: usize) -> Option<i32> {
    let b = body.get(at..at + 4)?;
    Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Writes the StartupMessage: its length, the version asked for, then the parameters.
pub(crate) fn startup_message(
    params: &[(String, String)],
    versions: &Versions,
    out: &mut BytesMut,
) -> Result<(), Error> {
    if versions.min > versions.max {
        return Err(Error::usage(
            "\"min_protocol_version\" is greater than \"max_protocol_version\"",
        ));
    }
    let start = out.len();
    let pairs = params.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    frontend::startup_message(pairs, out)
        .map_err(|e| Error::usage(format!("bad startup parameter: {e}")))?;
    // postgres-protocol writes 3.0 (and checks the parameters for NUL bytes): the version
    // field, right after the length, is replaced by the one asked for.
    out[start + 4..start + 8].copy_from_slice(&versions.current.code().to_be_bytes());
    Ok(())
}

/// The backend's process id and secret key, kept whole as BackendKeyData gave them (4 bytes
/// under protocol 3.0; up to 256 under 3.2, PostgreSQL 18 sends 32): what a CancelRequest
/// must name. Debug shows the key's length, never the key.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct BackendKey {
    pid: i32,
    secret: Box<[u8]>,
}

impl BackendKey {
    /// The backend's process id.
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    /// The secret key's bytes.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// Writes the CancelRequest: Int32 length, Int32 80877102, Int32 process id, the key.
    pub(crate) fn cancel_request(&self, out: &mut BytesMut) {
        out.reserve(12 + self.secret.len());
        // The key is at most 256 bytes: the length always fits.
        out.put_i32((12 + self.secret.len()) as i32);
        out.put_i32(CANCEL_REQUEST_CODE);
        out.put_i32(self.pid);
        out.put_slice(&self.secret);
    }
}

impl fmt::Debug for BackendKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendKey")
            .field("pid", &self.pid)
            .field("secret_len", &self.secret.len())
            .finish()
    }
}
