//! libpq's TLS keywords: `sslrootcert`, `sslcert`, `sslkey`, `sslpassword`, `sslsni`,
//! `ssl_min_protocol_version`, `ssl_max_protocol_version`, `channel_binding` and
//! `sslnegotiation`, with libpq's defaults (files under `~/.postgresql/`) and its checks.
//!
//! It only reads strings and decides what they mean; it never opens a file (whether a
//! default file exists is decided at connect time, as libpq decides it) and never touches
//! TLS itself.

use std::path::PathBuf;

use super::{Kw, SslMode};
use crate::error::Error;

/// Which certificate authorities are trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file. `explicit` is false for the default `~/.postgresql/root.crt`, which is
    /// used only if it exists.
    File {
        /// The file.
        path: PathBuf,
        /// Whether the connection string named it.
        explicit: bool,
    },
    /// `sslrootcert=system`: the operating system's trust store. Forces `verify-full`.
    System,
    /// No file given and no home directory to find the default in.
    None,
}

/// A TLS protocol version, as `ssl_min_protocol_version` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// `TLSv1` (not offered by rustls: as a minimum it means TLS 1.2).
    V1_0,
    /// `TLSv1.1` (likewise).
    V1_1,
    /// `TLSv1.2`, libpq's default minimum.
    V1_2,
    /// `TLSv1.3`.
    V1_3,
}

impl TlsVersion {
    fn parse(kw: &str, s: &str) -> Result<TlsVersion, Error> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "tlsv1" => TlsVersion::V1_0,
            "tlsv1.1" => TlsVersion::V1_1,
            "tlsv1.2" => TlsVersion::V1_2,
            "tlsv1.3" => TlsVersion::V1_3,
            _ => return Err(Error::usage(format!("invalid {kw} value: \"{s}\""))),
        })
    }

    /// The name libpq uses (`"TLSv1.3"`).
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::V1_0 => "TLSv1",
            TlsVersion::V1_1 => "TLSv1.1",
            TlsVersion::V1_2 => "TLSv1.2",
            TlsVersion::V1_3 => "TLSv1.3",
        }
    }
}

/// `channel_binding`: whether SCRAM binds the authentication to the TLS channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelBinding {
    /// Never: SCRAM-SHA-256 even when the server offers SCRAM-SHA-256-PLUS.
    Disable,
    /// When the connection is TLS and the server offers SCRAM-SHA-256-PLUS. libpq's default.
    #[default]
    Prefer,
    /// Always: any other authentication fails the connect.
    Require,
}

impl ChannelBinding {
    /// The value as libpq spells it; None if invalid.
    pub(crate) fn parse(value: &str) -> Option<ChannelBinding> {
        match value {
            "disable" => Some(ChannelBinding::Disable),
            "prefer" => Some(ChannelBinding::Prefer),
            "require" => Some(ChannelBinding::Require),
            _ => None,
        }
    }
}

/// `sslnegotiation`: how TLS starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslNegotiation {
    /// An SSLRequest first, as every PostgreSQL server understands. libpq's default.
    #[default]
    Postgres,
    /// A TLS handshake at once, with ALPN `postgresql` (PostgreSQL 17 and later).
    Direct,
}

/// The TLS settings of a [`Config`](super::Config).
#[derive(Debug, Clone, PartialEq)]
pub struct TlsSettings {
    root_cert: RootCert,
    cert: Option<(PathBuf, bool)>,
    key: Option<(PathBuf, bool)>,
    sni: bool,
    min_version: TlsVersion,
    max_version: Option<TlsVersion>,
    channel_binding: ChannelBinding,
    negotiation: SslNegotiation,
}

impl TlsSettings {
    /// libpq's defaults: the files under `~/.postgresql/`, SNI on, TLS 1.2 at least.
    pub(super) fn defaults(env: &dyn Fn(&str) -> Option<String>) -> TlsSettings {
        let dir = super::home_dir(env).map(|h| h.join(".postgresql"));
        let file = |name: &str| dir.as_ref().map(|d| (d.join(name), false));
        TlsSettings {
            root_cert: match file("root.crt") {
                Some((path, explicit)) => RootCert::File { path, explicit },
                None => RootCert::None,
            },
            cert: file("postgresql.crt"),
            key: file("postgresql.key"),
            sni: true,
            min_version: TlsVersion::V1_2,
            max_version: None,
            channel_binding: ChannelBinding::Prefer,
            negotiation: SslNegotiation::Postgres,
        }
    }

    /// Reads the keywords; returns the sslmode in force (`sslrootcert=system` makes
    /// `verify-full` the default).
    pub(super) fn apply(
        &mut self,
        value: &dyn Fn(Kw) -> Option<String>,
        non_empty: &dyn Fn(Kw) -> Option<String>,
        mut mode: SslMode,
    ) -> Result<SslMode, Error> {
        let mode_given = value(Kw::Sslmode).is_some();
        if let Some(r) = non_empty(Kw::Sslrootcert) {
            self.root_cert = if r == "system" {
                RootCert::System
            } else {
                RootCert::File {
                    path: PathBuf::from(r),
                    explicit: true,
                }
            };
        }
        if self.root_cert == RootCert::System {
            if !mode_given {
                mode = SslMode::VerifyFull;
            } else if mode != SslMode::VerifyFull {
                return Err(Error::usage(format!(
                    "weak sslmode \"{}\" may not be used with sslrootcert=system \
                     (use \"verify-full\")",
                    mode.as_str()
                )));
            }
        }
        if let Some(c) = non_empty(Kw::Sslcert) {
            self.cert = Some((PathBuf::from(c), true));
        }
        if let Some(k) = non_empty(Kw::Sslkey) {
            self.key = Some((PathBuf::from(k), true));
        }
        if non_empty(Kw::Sslpassword).is_some() {
            return Err(Error::usage(
                "sslpassword is not supported: momoko reads only unencrypted client keys \
                 (decrypt it once, e.g. `openssl pkey -in client.key -out client-plain.key`, \
                 and keep that file at mode 0600)",
            ));
        }
        if let Some(v) = non_empty(Kw::Sslsni) {
            self.sni = match v.as_str() {
                "1" => true,
                "0" => false,
                _ => return Err(Error::usage(format!("invalid sslsni value: \"{v}\""))),
            };
        }
        if let Some(v) = non_empty(Kw::SslMinProtocolVersion) {
            self.min_version = TlsVersion::parse("ssl_min_protocol_version", &v)?;
        }
        if let Some(v) = non_empty(Kw::SslMaxProtocolVersion) {
            self.max_version = Some(TlsVersion::parse("ssl_max_protocol_version", &v)?);
        }
        if let Some(max) = self.max_version {
            if max < TlsVersion::V1_2 {
                return Err(Error::usage(format!(
                    "ssl_max_protocol_version={} cannot be met: momoko's TLS (rustls) speaks \
                     TLSv1.2 and TLSv1.3 only",
                    max.as_str()
                )));
            }
            if max < self.min_version {
                return Err(Error::usage("invalid SSL protocol version range"));
            }
        }
        if let Some(v) = non_empty(Kw::ChannelBinding) {
            self.channel_binding = ChannelBinding::parse(&v)
                .ok_or_else(|| Error::usage(format!("invalid channel_binding value: \"{v}\"")))?;
        }
        if let Some(v) = non_empty(Kw::Sslnegotiation) {
            self.negotiation = match v.as_str() {
                "postgres" => SslNegotiation::Postgres,
                "direct" => SslNegotiation::Direct,
                _ => {
                    return Err(Error::usage(format!(
                        "invalid sslnegotiation value: \"{v}\""
                    )))
                }
            };
        }
        if self.negotiation == SslNegotiation::Direct
            && !matches!(
                mode,
                SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
            )
        {
            return Err(Error::usage(format!(
                "weak sslmode \"{}\" may not be used with sslnegotiation=direct \
                 (use \"require\", \"verify-ca\", or \"verify-full\")",
                mode.as_str()
            )));
        }
        Ok(mode)
    }

    /// The trusted authorities.
    pub fn root_cert(&self) -> &RootCert {
        &self.root_cert
    }
    /// The client certificate file, and whether it was named (else it is the default,
    /// used only if it exists).
    pub fn cert(&self) -> Option<(&std::path::Path, bool)> {
        self.cert.as_ref().map(|(p, e)| (p.as_path(), *e))
    }
    /// The client key file, and whether it was named.
    pub fn key(&self) -> Option<(&std::path::Path, bool)> {
        self.key.as_ref().map(|(p, e)| (p.as_path(), *e))
    }
    /// Whether the host name is sent as SNI (`sslsni`, default on).
    pub fn sni(&self) -> bool {
        self.sni
    }
    /// `ssl_min_protocol_version` (default TLSv1.2).
    pub fn min_version(&self) -> TlsVersion {
        self.min_version
    }
    /// `ssl_max_protocol_version` (default: the newest).
    pub fn max_version(&self) -> Option<TlsVersion> {
        self.max_version
    }
    /// `channel_binding`.
    pub fn channel_binding(&self) -> ChannelBinding {
        self.channel_binding
    }
    /// `sslnegotiation`.
    pub fn negotiation(&self) -> SslNegotiation {
        self.negotiation
    }
}
