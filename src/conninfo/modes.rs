//! The values of the keywords that choose a server and how to reach it: `sslmode`,
//! `target_session_attrs`, `load_balance_hosts`, and the places to try (`Target`). Each
//! parses libpq's spelling and says in libpq's words what it does not know; none of them
//! touches the network.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::error::Error;

/// `sslmode`: whether and how TLS is used.
///
/// As libpq: over a Unix socket every mode connects in plain text; `require` with a root
/// certificate file present verifies the certificate as `verify-ca` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SslMode {
    /// Plain text only.
    Disable,
    /// Plain text first, TLS if the server insists.
    Allow,
    /// TLS if the server offers it, else plain text. libpq's default.
    #[default]
    Prefer,
    /// TLS without checking the certificate.
    Require,
    /// TLS with a certificate signed by a trusted authority.
    VerifyCa,
    /// TLS with a trusted certificate that names the host.
    VerifyFull,
}

impl SslMode {
    /// The keyword's value, as written in a connection string (`"verify-full"`).
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    pub(super) fn parse(s: &str) -> Result<SslMode, Error> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return Err(Error::usage(format!("invalid sslmode value: \"{s}\""))),
        })
    }
}

/// `target_session_attrs`: what kind of server a connection must reach to be kept.
///
/// Decided from the `in_hot_standby` and `default_transaction_read_only` values the server
/// reports at startup (PostgreSQL 14 and later), else from `SHOW transaction_read_only` and
/// `pg_is_in_recovery()`. A server that does not fit is left and the next host is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TargetSessionAttrs {
    /// Any server will do. The default.
    #[default]
    Any,
    /// A server that accepts writes (`default_transaction_read_only` off, not in recovery).
    ReadWrite,
    /// A server that refuses writes by default.
    ReadOnly,
    /// A server not in hot standby.
    Primary,
    /// A server in hot standby.
    Standby,
    /// A standby if one answers, else any server.
    PreferStandby,
}

impl TargetSessionAttrs {
    /// The keyword's value, as written in a connection string (`"read-write"`).
    pub fn as_str(self) -> &'static str {
        match self {
            TargetSessionAttrs::Any => "any",
            TargetSessionAttrs::ReadWrite => "read-write",
            TargetSessionAttrs::ReadOnly => "read-only",
            TargetSessionAttrs::Primary => "primary",
            TargetSessionAttrs::Standby => "standby",
            TargetSessionAttrs::PreferStandby => "prefer-standby",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<TargetSessionAttrs, Error> {
        Ok(match s {
            "any" => TargetSessionAttrs::Any,
            "read-write" => TargetSessionAttrs::ReadWrite,
            "read-only" => TargetSessionAttrs::ReadOnly,
            "primary" => TargetSessionAttrs::Primary,
            "standby" => TargetSessionAttrs::Standby,
            "prefer-standby" => TargetSessionAttrs::PreferStandby,
            _ => {
                return Err(Error::usage(format!(
                    "invalid target_session_attrs value: \"{s}\""
                )))
            }
        })
    }
}

/// `load_balance_hosts`: the order in which hosts are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LoadBalanceHosts {
    /// In the order given. The default.
    #[default]
    Disable,
    /// Hosts shuffled at every connect, then each host's addresses shuffled.
    Random,
}

impl LoadBalanceHosts {
    /// The keyword's value, as written in a connection string.
    pub fn as_str(self) -> &'static str {
        match self {
            LoadBalanceHosts::Disable => "disable",
            LoadBalanceHosts::Random => "random",
        }
    }

    pub(super) fn parse(s: &str) -> Result<LoadBalanceHosts, Error> {
        match s {
            "disable" => Ok(LoadBalanceHosts::Disable),
            "random" => Ok(LoadBalanceHosts::Random),
            _ => Err(Error::usage(format!(
                "invalid load_balance_hosts value: \"{s}\""
            ))),
        }
    }
}

/// One place to try connecting to, in the order libpq tries them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A TCP connection.
    Tcp {
        /// The host name to resolve, or, when only `hostaddr` was given, that address as
        /// written. It is also the name looked up in the password file.
        host: String,
        /// From `hostaddr`: connect to this address and do not resolve `host`.
        addr: Option<IpAddr>,
        /// The server's port.
        port: u16,
    },
    /// A Unix-domain socket.
    Unix {
        /// The socket file: `<directory>/.s.PGSQL.<port>`.
        path: PathBuf,
        /// The port, which only names the socket file.
        port: u16,
    },
}

impl Target {
    /// The port, whichever the kind.
    pub fn port(&self) -> u16 {
        match self {
            Target::Tcp { port, .. } | Target::Unix { port, .. } => *port,
        }
    }
}

impl fmt::Display for Target {
    /// `host:port`, `[v6addr]:port` or the socket path, for messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp { host, addr, port } => {
                let shown = addr.map(|a| a.to_string());
                let h = shown.as_deref().unwrap_or(host);
                if h.contains(':') {
                    write!(f, "[{h}]:{port}")
                } else {
                    write!(f, "{h}:{port}")
                }
            }
            Target::Unix { path, .. } => write!(f, "{}", path.display()),
        }
    }
}
