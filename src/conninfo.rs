//! Connection strings, read exactly as libpq reads them.
//!
//! This module owns parsing and resolving connection parameters: `key=value` strings and
//! `postgresql://` URIs, the `PG*` environment variables that fill in whatever a string leaves
//! out, libpq's built-in defaults (the OS user, the socket directory, port 5432), the password
//! file, and pairing hosts, host addresses and ports into the list of places to try. It never
//! touches the network and never resolves names: a host name stays a string here, and the
//! Connection looks it up when it connects. The only files it reads are the password file
//! (when a password is asked for), and `/proc/self` and `/etc/passwd` to learn the OS user
//! when the environment does not name it.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::error::Error;

mod getters;
mod logging;
mod modes;
mod parse;
mod pgpass;
mod protocol;
mod tls;

pub use modes::{LoadBalanceHosts, SslMode, Target, TargetSessionAttrs};
pub use protocol::ProtocolVersion;
pub use tls::{ChannelBinding, RootCert, SslNegotiation, TlsSettings, TlsVersion};
#[cfg(test)]
mod tests;

/// Where the server's Unix socket lives when no host is given: Debian's libpq default
/// (`DEFAULT_PGSOCKET_DIR`), which is also where Debian and Ubuntu servers put it.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// The port when none is given (`DEF_PGPORT`).
pub const DEFAULT_PORT: u16 = 5432;

/// A connection string as it may be shown (a Debug, a log line): every keyword it gives,
/// in `key=value` form, with the passwords (`password`, `sslpassword`, a URI's
/// `user:password@`) as `***`; a string that does not parse is not shown at all, since
/// nobody can tell where a secret in it would be.
pub(crate) fn redacted(dsn: &str) -> String {
    let Ok(given) = parse::parse(dsn) else {
        return "<a connection string that does not parse>".to_owned();
    };
    given
        .iter()
        .map(|(kw, value)| {
            let shown = match kw {
                Kw::Password | Kw::Sslpassword => "***".to_owned(),
                _ if value.is_empty()
                    || value
                        .bytes()
                        .any(|b| b == b'\'' || b == b'\\' || parse::is_space(b)) =>
                {
                    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
                }
                _ => value.clone(),
            };
            format!("{}={shown}", kw.name())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a connection is told to connect with: a connection string, or a [`Config`] built in
/// code. Its Debug never shows a password.
#[derive(Clone)]
pub(crate) enum Dsn {
    Text(String),
    Config(Box<Config>),
}

impl Dsn {
    /// The configuration, parsed and checked as libpq would before connecting (no I/O but
    /// the environment, the OS user and, when a password is needed, the password file).
    pub(crate) fn config(&self) -> Result<Config, Error> {
        let config = match self {
            Dsn::Text(s) => Config::parse(s)?,
            Dsn::Config(c) => (**c).clone(),
        };
        config.targets()?;
        Ok(config)
    }
}

impl fmt::Debug for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dsn::Text(s) => fmt::Debug::fmt(&redacted(s), f),
            Dsn::Config(c) => fmt::Debug::fmt(c, f),
        }
    }
}

/// `sizeof(sun_path)`: a socket path must fit in it with its terminating NUL.
const UNIX_PATH_MAX: usize = 108;

/// The keywords momoko understands; the names, and the environment variables that stand in
/// for them, are libpq's (`PQconninfoOptions`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kw {
    Host,
    Hostaddr,
    Port,
    Dbname,
    User,
    Password,
    Passfile,
    ConnectTimeout,
    ClientEncoding,
    Options,
    ApplicationName,
    FallbackApplicationName,
    Keepalives,
    KeepalivesIdle,
    KeepalivesInterval,
    KeepalivesCount,
    TcpUserTimeout,
    LoadBalanceHosts,
    Sslmode,
    Sslrootcert,
    Sslcert,
    Sslkey,
    Sslpassword,
    Sslsni,
    SslMinProtocolVersion,
    SslMaxProtocolVersion,
    ChannelBinding,
    Sslnegotiation,
    Gssencmode,
    TargetSessionAttrs,
    MinProtocolVersion,
    MaxProtocolVersion,
    // momoko's own (see logging.rs).
    MomokoLogStatements,
    MomokoLogSlowStatements,
    MomokoSlowStatementMs,
    Replication,
}

const KEYWORDS: &[(&str, Kw, Option<&str>)] = &[
    ("host", Kw::Host, Some("PGHOST")),
    ("hostaddr", Kw::Hostaddr, Some("PGHOSTADDR")),
    ("port", Kw::Port, Some("PGPORT")),
    ("dbname", Kw::Dbname, Some("PGDATABASE")),
    ("user", Kw::User, Some("PGUSER")),
    ("password", Kw::Password, Some("PGPASSWORD")),
    ("passfile", Kw::Passfile, Some("PGPASSFILE")),
    (
        "connect_timeout",
        Kw::ConnectTimeout,
        Some("PGCONNECT_TIMEOUT"),
    ),
    (
        "client_encoding",
        Kw::ClientEncoding,
        Some("PGCLIENTENCODING"),
    ),
    ("options", Kw::Options, Some("PGOPTIONS")),
    ("application_name", Kw::ApplicationName, Some("PGAPPNAME")),
    (
        "fallback_application_name",
        Kw::FallbackApplicationName,
        None,
    ),
    ("keepalives", Kw::Keepalives, None),
    ("keepalives_idle", Kw::KeepalivesIdle, None),
    ("keepalives_interval", Kw::KeepalivesInterval, None),
    ("keepalives_count", Kw::KeepalivesCount, None),
    ("tcp_user_timeout", Kw::TcpUserTimeout, None),
    ("sslmode", Kw::Sslmode, Some("PGSSLMODE")),
    ("sslrootcert", Kw::Sslrootcert, Some("PGSSLROOTCERT")),
    ("sslcert", Kw::Sslcert, Some("PGSSLCERT")),
    ("sslkey", Kw::Sslkey, Some("PGSSLKEY")),
    ("sslpassword", Kw::Sslpassword, None),
    ("sslsni", Kw::Sslsni, Some("PGSSLSNI")),
    (
        "ssl_min_protocol_version",
        Kw::SslMinProtocolVersion,
        Some("PGSSLMINPROTOCOLVERSION"),
    ),
    (
        "ssl_max_protocol_version",
        Kw::SslMaxProtocolVersion,
        Some("PGSSLMAXPROTOCOLVERSION"),
    ),
    (
        "channel_binding",
        Kw::ChannelBinding,
        Some("PGCHANNELBINDING"),
    ),
    (
        "sslnegotiation",
        Kw::Sslnegotiation,
        Some("PGSSLNEGOTIATION"),
    ),
    ("gssencmode", Kw::Gssencmode, Some("PGGSSENCMODE")),
    (
        "target_session_attrs",
        Kw::TargetSessionAttrs,
        Some("PGTARGETSESSIONATTRS"),
    ),
    (
        "load_balance_hosts",
        Kw::LoadBalanceHosts,
        Some("PGLOADBALANCEHOSTS"),
    ),
    (
        "min_protocol_version",
        Kw::MinProtocolVersion,
        Some("PGMINPROTOCOLVERSION"),
    ),
    (
        "max_protocol_version",
        Kw::MaxProtocolVersion,
        Some("PGMAXPROTOCOLVERSION"),
    ),
    ("momoko_log_statements", Kw::MomokoLogStatements, None),
    (
        "momoko_log_slow_statements",
        Kw::MomokoLogSlowStatements,
        None,
    ),
    ("momoko_slow_statement_ms", Kw::MomokoSlowStatementMs, None),
    ("replication", Kw::Replication, None),
];

/// Keywords libpq knows but momoko does not implement. Refusing them by name tells the user
/// that the string is right but the feature is missing, rather than that it is misspelt.
const UNSUPPORTED: &[&str] = &[
    "service",
    "requirepeer",
    "require_auth",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "sslcompression",
    "sslcertmode",
    "sslcrl",
    "sslcrldir",
    "sslkeylogfile",
    "scram_client_key",
    "scram_server_key",
    "oauth_issuer",
    "oauth_client_id",
    "oauth_client_secret",
    "oauth_scope",
];

/// Environment variables of keywords in [`UNSUPPORTED`] that change what libpq connects to
/// or what it demands of the server, and the values that ask for nothing momoko does not
/// already do (empty means unset). Any other value is refused: ignoring `PGREQUIREAUTH` or
/// `PGCHANNELBINDING=require` would silently drop a safeguard the user asked for. The
/// variables of the TLS and GSSAPI settings are left alone, because momoko uses neither and
/// they have no effect without them.
const UNSUPPORTED_ENV: &[(&str, &str, &[&str])] = &[
    ("PGSERVICE", "service", &[]),
    ("PGREQUIREAUTH", "require_auth", &[]),
    ("PGREQUIREPEER", "requirepeer", &[]),
];

fn check_unsupported_env(env: &dyn Fn(&str) -> Option<String>) -> Result<(), Error> {
    for &(var, keyword, harmless) in UNSUPPORTED_ENV {
        let Some(v) = env(var).filter(|v| !v.is_empty()) else {
            continue;
        };
        if harmless.contains(&v.as_str()) {
            continue;
        }
        let accepted = if harmless.is_empty() {
            "unset it".to_owned()
        } else {
            format!("unset it or set {}", harmless.join(" or "))
        };
        return Err(Error::usage(format!(
            "{var}=\"{v}\": connection option \"{keyword}\" is not supported by momoko; \
             {accepted}"
        )));
    }
    Ok(())
}

impl Kw {
    fn from_name(name: &str) -> Option<Kw> {
        KEYWORDS.iter().find(|k| k.0 == name).map(|k| k.1)
    }

    fn env_var(self) -> Option<&'static str> {
        KEYWORDS.iter().find(|k| k.1 == self).and_then(|k| k.2)
    }

    fn name(self) -> &'static str {
        KEYWORDS
            .iter()
            .find(|k| k.1 == self)
            .map(|k| k.0)
            .unwrap_or("?")
    }
}

/// Connection parameters, from a connection string, the environment and libpq's defaults.
///
/// Build one with [`Config::parse`] (or `str::parse`) from a libpq connection string, or with
/// [`Config::new`] and the builder methods. Getters are named `get_*` because the builder
/// methods take the plain names.
#[derive(Clone, PartialEq)]
pub struct Config {
    hosts: Vec<String>,
    hostaddrs: Vec<String>,
    ports: Vec<u16>,
    dbname: Option<String>,
    user: Option<String>,
    password: Option<String>,
    passfile: Option<PathBuf>,
    connect_timeout: Option<Duration>,
    application_name: Option<String>,
    fallback_application_name: Option<String>,
    options: Option<String>,
    ssl_mode: SslMode,
    tls: TlsSettings,
    keepalives: bool,
    keepalives_idle: Option<Duration>,
    keepalives_interval: Option<Duration>,
    keepalives_count: Option<u32>,
    tcp_user_timeout: Option<Duration>,
    target_session_attrs: TargetSessionAttrs,
    load_balance_hosts: LoadBalanceHosts,
    protocol: protocol::ProtocolRange,
    /// The statement log settings of the `momoko_*` keywords.
    pub(crate) statement_log: crate::observe::LogOverrides,
    /// The walsender mode asked for: `database` (logical) or `true` (physical); `None` for
    /// an ordinary session. Sent as the startup parameter `replication`, as libpq does.
    replication: Option<&'static str>,
}

impl fmt::Debug for Config {
    /// Like a derived Debug, but the password is shown as `"***"` so that logging a Config
    /// never leaks it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("hosts", &self.hosts)
            .field("hostaddrs", &self.hostaddrs)
            .field("ports", &self.ports)
            .field("dbname", &self.dbname)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("passfile", &self.passfile)
            .field("connect_timeout", &self.connect_timeout)
            .field("application_name", &self.application_name)
            .field("fallback_application_name", &self.fallback_application_name)
            .field("options", &self.options)
            .field("ssl_mode", &self.ssl_mode)
            .field("tls", &self.tls)
            .field("keepalives", &self.keepalives)
            .field("keepalives_idle", &self.keepalives_idle)
            .field("keepalives_interval", &self.keepalives_interval)
            .field("keepalives_count", &self.keepalives_count)
            .field("tcp_user_timeout", &self.tcp_user_timeout)
            .field("target_session_attrs", &self.target_session_attrs)
            .field("load_balance_hosts", &self.load_balance_hosts)
            .field("min_protocol_version", &self.get_min_protocol_version())
            .field("max_protocol_version", &self.get_max_protocol_version())
            .field("statement_log", &self.statement_log)
            .field("replication", &self.replication)
            .finish()
    }
}

impl Default for Config {
    /// Same as [`Config::new`].
    fn default() -> Config {
        Config::new()
    }
}

impl FromStr for Config {
    type Err = Error;

    /// Same as [`Config::parse`].
    fn from_str(s: &str) -> Result<Config, Error> {
        Config::parse(s)
    }
}

/// The `replication` keyword's values, as the server reads them: `database` for a logical
/// walsender, a boolean for a physical one (true) or none (false).
fn parse_replication(value: &str) -> Result<Option<&'static str>, Error> {
    match value.to_ascii_lowercase().as_str() {
        "database" => Ok(Some("database")),
        "true" | "on" | "yes" | "1" => Ok(Some("true")),
        "false" | "off" | "no" | "0" => Ok(None),
        _ => Err(Error::usage(format!(
            "invalid replication value: \"{value}\" (database, true or false)"
        ))),
    }
}

/// The process environment, as the lookup function of [`Config::parse_with_env`].
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Config {
    /// Idle time before the first keepalive probe when `keepalives_idle` is not given.
    pub const DEFAULT_KEEPALIVES_IDLE: Duration = Duration::from_secs(15);
    /// Time between keepalive probes when `keepalives_interval` is not given.
    pub const DEFAULT_KEEPALIVES_INTERVAL: Duration = Duration::from_secs(5);
    /// Unanswered probes before the link counts as dead when `keepalives_count` is not
    /// given: 15 s + 3 × 5 s finds a vanished peer of an idle connection in 30 s.
    pub const DEFAULT_KEEPALIVES_COUNT: u32 = 3;
    /// `TCP_USER_TIMEOUT` when `tcp_user_timeout` is not given: a request written to a link
    /// that died fails after 30 s instead of the kernel's retransmission limit (about 15
    /// minutes on Linux). The kernel counts only sent data left unacknowledged and
    /// unanswered keepalive probes, so a long query on a live link (whose server
    /// acknowledges the query and answers the probes) never hits it. One case does: a
    /// server that stops reading for longer than this while the client still has data to
    /// send (its receive window stays closed), e.g. a large COPY into a server stalled for
    /// 30 s; set `tcp_user_timeout` higher (or 0, the system's behaviour) for such loads.
    pub const DEFAULT_TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

    /// libpq's built-in defaults, without any `PG*` environment variable: the Unix socket in
    /// [`DEFAULT_SOCKET_DIR`], port 5432, the OS user as user and database name, `~/.pgpass`
    /// as password file, sslmode `prefer`. The OS user is found as libpq would (see
    /// [`Config::parse_with_env`]); if it cannot be found, no user is set.
    pub fn new() -> Config {
        let base = Config::base(&process_env);
        Config {
            user: os_user(&process_env).map(|u| u.name),
            ..base
        }
    }

    /// Nothing set but the password file, which libpq always consults.
    fn base(env: &dyn Fn(&str) -> Option<String>) -> Config {
        Config {
            hosts: Vec::new(),
            hostaddrs: Vec::new(),
            ports: Vec::new(),
            dbname: None,
            user: None,
            password: None,
            passfile: home_dir(env).map(|h| h.join(".pgpass")),
            connect_timeout: None,
            application_name: None,
            fallback_application_name: None,
            options: None,
            ssl_mode: SslMode::Prefer,
            tls: TlsSettings::defaults(env),
            keepalives: true,
            keepalives_idle: Some(Config::DEFAULT_KEEPALIVES_IDLE),
            keepalives_interval: Some(Config::DEFAULT_KEEPALIVES_INTERVAL),
            keepalives_count: Some(Config::DEFAULT_KEEPALIVES_COUNT),
            tcp_user_timeout: Some(Config::DEFAULT_TCP_USER_TIMEOUT),
            target_session_attrs: TargetSessionAttrs::Any,
            load_balance_hosts: LoadBalanceHosts::Disable,
            protocol: protocol::ProtocolRange::default(),
            statement_log: Default::default(),
            replication: None,
        }
    }

    /// Parses a libpq connection string (`key=value` pairs or a `postgresql://` URI) and
    /// fills in what it leaves out from the process's `PG*` environment variables and libpq's
    /// defaults. See [`Config::parse_with_env`].
    pub fn parse(s: &str) -> Result<Config, Error> {
        Config::parse_with_env(s, &process_env)
    }

    /// Parses a connection string as [`Config::parse`] does, reading environment variables
    /// through `env` instead of the process environment.
    ///
    /// A keyword the string does not give takes its variable's value (`PGHOST`,
    /// `PGHOSTADDR`, `PGPORT`, `PGDATABASE`, `PGUSER`, `PGPASSWORD`, `PGPASSFILE`,
    /// `PGCONNECT_TIMEOUT`, `PGCLIENTENCODING`, `PGOPTIONS`, `PGAPPNAME`, `PGSSLMODE`,
    /// `PGGSSENCMODE`, `PGTARGETSESSIONATTRS`, `PGMINPROTOCOLVERSION`, `PGMAXPROTOCOLVERSION`).
    /// A keyword given as an empty string blocks its variable and, as in libpq, then means
    /// the default (except the two protocol versions, which libpq 18 requires to be
    /// `3.0`, `3.2` or `latest`). The user defaults to `USER`, else
    /// `LOGNAME`, else the name of this process's uid in `/etc/passwd`; the password file to
    /// `$HOME/.pgpass` (the home directory from `/etc/passwd` when `HOME` is unset).
    ///
    /// Errors, all of kind `Usage`, use libpq's wording: `invalid connection option "foo"`,
    /// `missing "=" after "foo" in connection info string`, and so on.
    ///
    /// The environment variables of a few keywords momoko lacks, which it would otherwise
    /// ignore without a word, are refused: `PGSERVICE`, `PGREQUIREAUTH` and `PGREQUIREPEER`.
    /// Values are checked here, before any connect:
    ///
    /// ```
    /// let e = momoko::Config::parse("host=h target_session_attrs=read-wrote").unwrap_err();
    /// assert_eq!(e.kind(), momoko::ErrorKind::Usage);
    /// assert_eq!(e.to_string(), "usage error: invalid target_session_attrs value: \"read-wrote\"");
    /// ```
    pub fn parse_with_env(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Error> {
        let given = parse::parse(s)?;
        check_unsupported_env(env)?;
        // A keyword present in the string, even empty, hides its environment variable:
        // libpq's conninfo_add_defaults only fills options that are still unset.
        let value = |kw: Kw| -> Option<String> {
            match given.get(&kw) {
                Some(v) => Some(v.clone()),
                None => kw.env_var().and_then(env),
            }
        };
        let non_empty = |kw: Kw| value(kw).filter(|v| !v.is_empty());

        let mut config = Config::base(env);
        config.hosts = split_list(value(Kw::Host));
        config.hostaddrs = split_list(value(Kw::Hostaddr));
        config.ports = split_list(value(Kw::Port))
            .iter()
            .map(|p| parse_port(p))
            .collect::<Result<_, _>>()?;
        config.user = match non_empty(Kw::User) {
            Some(u) => Some(u),
            None => Some(
                os_user(env)
                    .ok_or_else(|| {
                        Error::usage(
                            "could not determine the local user name; give user in the \
                             connection string or set PGUSER",
                        )
                    })?
                    .name,
            ),
        };
        config.dbname = non_empty(Kw::Dbname);
        config.password = non_empty(Kw::Password);
        if let Some(p) = non_empty(Kw::Passfile) {
            config.passfile = Some(PathBuf::from(p));
        }
        config.connect_timeout = match value(Kw::ConnectTimeout) {
            Some(t) => parse_connect_timeout(&t)?,
            None => None,
        };
        if let Some(enc) = value(Kw::ClientEncoding) {
            check_client_encoding(&enc)?;
        }
        config.options = non_empty(Kw::Options);
        config.application_name = non_empty(Kw::ApplicationName);
        config.fallback_application_name = non_empty(Kw::FallbackApplicationName);
        // The TCP settings, as libpq reads them: any nonzero keepalives means on, a zero or
        // negative time or count means the system's value. Unlike libpq, a keyword left out
        // (or empty) keeps momoko's bounded default, so that a dead link is found within a
        // minute without the caller knowing these keywords (see DEFAULT_TCP_USER_TIMEOUT).
        if let Some(v) = non_empty(Kw::Keepalives) {
            config.keepalives = parse_int(&v, "keepalives")? != 0;
        }
        let given = |kw: Kw| -> Result<Option<Option<u64>>, Error> {
            match non_empty(kw) {
                Some(v) => {
                    let n = parse_int(&v, kw.name())?;
                    Ok(Some((n > 0).then_some(n as u64)))
                }
                None => Ok(None),
            }
        };
        if let Some(n) = given(Kw::KeepalivesIdle)? {
            config.keepalives_idle = n.map(Duration::from_secs);
        }
        if let Some(n) = given(Kw::KeepalivesInterval)? {
            config.keepalives_interval = n.map(Duration::from_secs);
        }
        if let Some(n) = given(Kw::KeepalivesCount)? {
            config.keepalives_count = n.map(|n| n as u32);
        }
        if let Some(n) = given(Kw::TcpUserTimeout)? {
            // Milliseconds, as libpq.
            config.tcp_user_timeout = n.map(Duration::from_millis);
        }
        if let Some(m) = value(Kw::Sslmode) {
            config.ssl_mode = SslMode::parse(&m)?;
        }
        config.ssl_mode = config.tls.apply(&value, &non_empty, config.ssl_mode)?;
        if let Some(m) = value(Kw::Gssencmode) {
            match m.as_str() {
                // Without GSSAPI, libpq's "prefer" quietly falls back to no encryption too.
                "disable" | "prefer" => {}
                "require" => {
                    return Err(Error::usage(
                        "GSSAPI encryption is not supported (gssencmode=require)",
                    ))
                }
                _ => return Err(Error::usage(format!("invalid gssencmode value: \"{m}\""))),
            }
        }
        if let Some(t) = non_empty(Kw::TargetSessionAttrs) {
            config.target_session_attrs = TargetSessionAttrs::parse(&t)?;
        }
        if let Some(t) = non_empty(Kw::LoadBalanceHosts) {
            config.load_balance_hosts = LoadBalanceHosts::parse(&t)?;
        }
        // Not `non_empty`: libpq 18 refuses an empty version rather than taking the default.
        config.protocol = protocol::ProtocolRange::parse(
            value(Kw::MinProtocolVersion),
            value(Kw::MaxProtocolVersion),
        )?;
        config.statement_log = logging::parse(&non_empty)?;
        if let Some(r) = non_empty(Kw::Replication) {
            config.replication = parse_replication(&r)?;
        }
        // libpq only finds a mismatched host list or a bad address when it connects; finding
        // it here reports a bad string where it was written.
        config.targets()?;
        Ok(config)
    }

    /// Adds a host to try: a name or IP address for TCP, or a directory (starting with `/`)
    /// holding the server's Unix socket. Several calls give several hosts, tried in order.
    pub fn host(mut self, host: impl Into<String>) -> Config {
        self.hosts.push(host.into());
        self
    }

    /// Adds a numeric address for the host at the same position (libpq's `hostaddr`): the
    /// connection goes there without resolving the host name.
    pub fn hostaddr(mut self, addr: IpAddr) -> Config {
        self.hostaddrs.push(addr.to_string());
        self
    }

    /// Adds a port: give one for all hosts, or one per host.
    pub fn port(mut self, port: u16) -> Config {
        self.ports.push(port);
        self
    }

    /// Sets the user name.
    pub fn user(mut self, user: impl Into<String>) -> Config {
        self.user = Some(user.into());
        self
    }

    /// Sets the password; an empty one means none, as in libpq.
    pub fn password(mut self, password: impl Into<String>) -> Config {
        self.password = Some(password.into()).filter(|p| !p.is_empty());
        self
    }

    /// Sets the password file used when no password is set.
    pub fn passfile(mut self, path: impl Into<PathBuf>) -> Config {
        self.passfile = Some(path.into());
        self
    }

    /// Sets the database name (by default the user name).
    pub fn dbname(mut self, dbname: impl Into<String>) -> Config {
        self.dbname = Some(dbname.into()).filter(|d| !d.is_empty());
        self
    }

    /// Sets how long each connection attempt may take; zero means no limit. Unlike the
    /// string form, which counts whole seconds with a minimum of two, this is used as given.
    pub fn connect_timeout(mut self, timeout: Duration) -> Config {
        self.connect_timeout = Some(timeout).filter(|t| !t.is_zero());
        self
    }

    /// Sets `application_name`, shown in `pg_stat_activity`.
    pub fn application_name(mut self, name: impl Into<String>) -> Config {
        self.application_name = Some(name.into()).filter(|n| !n.is_empty());
        self
    }

    /// Sets the application name used when `application_name` is not set.
    pub fn fallback_application_name(mut self, name: impl Into<String>) -> Config {
        self.fallback_application_name = Some(name.into()).filter(|n| !n.is_empty());
        self
    }

    /// Sets command-line options for the server backend (`-c work_mem=64MB`).
    pub fn options(mut self, options: impl Into<String>) -> Config {
        self.options = Some(options.into()).filter(|o| !o.is_empty());
        self
    }

    /// Sets `sslmode`.
    pub fn ssl_mode(mut self, mode: SslMode) -> Config {
        self.ssl_mode = mode;
        self
    }

    /// Sets `target_session_attrs`: what kind of server a connection must reach.
    pub fn target_session_attrs(mut self, attrs: TargetSessionAttrs) -> Config {
        self.target_session_attrs = attrs;
        self
    }

    /// Sets whether TCP keepalives are on (libpq's default: on).
    pub fn keepalives(mut self, on: bool) -> Config {
        self.keepalives = on;
        self
    }

    /// Sets the idle time before TCP keepalive probes start; zero keeps the system's value.
    pub fn keepalives_idle(mut self, idle: Duration) -> Config {
        self.keepalives_idle = Some(idle).filter(|t| !t.is_zero());
        self
    }

    /// Sets the time between TCP keepalive probes; zero keeps the system's value.
    pub fn keepalives_interval(mut self, interval: Duration) -> Config {
        self.keepalives_interval = Some(interval).filter(|t| !t.is_zero());
        self
    }

    /// Sets how many unanswered keepalive probes make the link dead; zero keeps the
    /// system's value.
    pub fn keepalives_count(mut self, count: u32) -> Config {
        self.keepalives_count = Some(count).filter(|&n| n != 0);
        self
    }

    /// Sets `TCP_USER_TIMEOUT`; zero keeps the system's behaviour (retransmit for about 15
    /// minutes on Linux).
    pub fn tcp_user_timeout(mut self, timeout: Duration) -> Config {
        self.tcp_user_timeout = Some(timeout).filter(|t| !t.is_zero());
        self
    }

    /// The places to try, in order, pairing hosts, host addresses and ports as libpq does:
    /// there are as many places as `hostaddr` entries, else as `host` entries, else one (the
    /// default socket); `host` must then have that many entries too; `port` may have one entry
    /// for all or one per place. Fails on mismatched counts, an unparsable `hostaddr`, an
    /// abstract-namespace socket (`@name`, not supported) or a socket path too long for
    /// `sun_path`.
    pub fn targets(&self) -> Result<Vec<Target>, Error> {
        Ok(self.slots()?.into_iter().map(|s| s.target).collect())
    }

    /// The password to send to `target`: the one set, else the password file's first line
    /// matching the target's host, port, database and user (libpq reads the file per host, so
    /// each target may get its own). `None` when there is none; the file is read on each
    /// call, at connect time, as libpq reads it.
    pub fn password_for(&self, target: &Target) -> Option<String> {
        if let Some(p) = &self.password {
            return Some(p.clone());
        }
        let passfile = self.passfile.as_deref()?;
        // The file is matched against the host as written, so find the slot this target came
        // from; a target built elsewhere is matched by what it holds.
        let host = self
            .slots()
            .ok()
            .and_then(|slots| slots.into_iter().find(|s| &s.target == target))
            .map(|s| s.pass_host)
            .unwrap_or_else(|| match target {
                Target::Tcp { host, .. } => host.clone(),
                Target::Unix { path, .. } => path
                    .parent()
                    .map(|d| d.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            });
        pgpass::lookup(
            passfile,
            &host,
            target.port(),
            self.get_dbname().unwrap_or(""),
            self.get_user().unwrap_or(""),
        )
    }

    /// The parameters of the StartupMessage, in libpq's order: `user`, `database`,
    /// `options`, `application_name` (else `fallback_application_name`), and
    /// `client_encoding` = `UTF8`, which momoko always uses. Empty values are left out.
    pub fn startup_params(&self) -> Vec<(String, String)> {
        let mut params = Vec::new();
        let mut add = |k: &str, v: Option<&str>| {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                params.push((k.to_owned(), v.to_owned()));
            }
        };
        add("user", self.get_user());
        add("database", self.get_dbname());
        add("options", self.get_options());
        add(
            "application_name",
            self.get_application_name()
                .or(self.get_fallback_application_name()),
        );
        add("client_encoding", Some("UTF8"));
        add("replication", self.replication);
        params
    }

    /// Asks for a walsender session: `"database"` (logical replication: replication
    /// commands and SQL, on `dbname`) or `"true"` (physical); `"false"` (or any value the
    /// `replication` keyword takes for off) asks for an ordinary session. Other values are
    /// a Usage error. Only the simple protocol works on a walsender session.
    pub fn replication(mut self, mode: &str) -> Result<Config, Error> {
        self.replication = parse_replication(mode)?;
        Ok(self)
    }

    fn slots(&self) -> Result<Vec<Slot>, Error> {
        let n = if !self.hostaddrs.is_empty() {
            self.hostaddrs.len()
        } else if !self.hosts.is_empty() {
            self.hosts.len()
        } else {
            1
        };
        if !self.hostaddrs.is_empty() && !self.hosts.is_empty() && self.hosts.len() != n {
            return Err(Error::usage(format!(
                "could not match {} host names to {n} hostaddr values",
                self.hosts.len()
            )));
        }
        let port_of = |i: usize| -> Result<u16, Error> {
            match self.ports.len() {
                0 => Ok(DEFAULT_PORT),
                1 => Ok(self.ports[0]),
                k if k == n => Ok(self.ports[i]),
                k => Err(Error::usage(format!(
                    "could not match {k} port numbers to {n} hosts"
                ))),
            }
        };
        let mut slots = Vec::with_capacity(n);
        for i in 0..n {
            let port = port_of(i)?;
            let host = self.hosts.get(i).map(String::as_str).unwrap_or("");
            let hostaddr = self.hostaddrs.get(i).map(String::as_str).unwrap_or("");
            let slot = if !hostaddr.is_empty() {
                let addr = hostaddr.parse::<IpAddr>().map_err(|_| {
                    Error::usage(format!("could not parse network address \"{hostaddr}\""))
                })?;
                // libpq matches the password file against the host name when there is one.
                let name = if host.is_empty() { hostaddr } else { host };
                Slot {
                    target: Target::Tcp {
                        host: name.to_owned(),
                        addr: Some(addr),
                        port,
                    },
                    pass_host: name.to_owned(),
                }
            } else if host.is_empty() {
                unix_slot(DEFAULT_SOCKET_DIR, port)?
            } else if host.starts_with('/') {
                unix_slot(host, port)?
            } else if host.starts_with('@') {
                return Err(Error::usage(format!(
                    "abstract Unix-domain sockets are not supported (host \"{host}\")"
                )));
            } else {
                Slot {
                    target: Target::Tcp {
                        host: host.to_owned(),
                        addr: None,
                        port,
                    },
                    pass_host: host.to_owned(),
                }
            };
            slots.push(slot);
        }
        Ok(slots)
    }
}

/// A target together with the host text the password file is matched against.
struct Slot {
    target: Target,
    pass_host: String,
}

fn unix_slot(dir: &str, port: u16) -> Result<Slot, Error> {
    let path = Path::new(dir).join(format!(".s.PGSQL.{port}"));
    if path.as_os_str().len() >= UNIX_PATH_MAX {
        return Err(Error::usage(format!(
            "Unix-domain socket path \"{}\" is too long (maximum {} bytes)",
            path.display(),
            UNIX_PATH_MAX - 1
        )));
    }
    Ok(Slot {
        target: Target::Unix { path, port },
        pass_host: dir.to_owned(),
    })
}

/// libpq's comma-separated lists (host, hostaddr, port): no escapes, no trimming, and an
/// empty string is no list at all.
fn split_list(value: Option<String>) -> Vec<String> {
    match value {
        Some(v) if !v.is_empty() => v.split(',').map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// libpq's `parse_int_param`: an `int` in decimal with an optional sign, whitespace allowed
/// around it, nothing else.
fn parse_int(value: &str, keyword: &str) -> Result<i32, Error> {
    let trimmed = value.trim_matches(|c: char| c.is_ascii() && parse::is_space(c as u8));
    trimmed.parse::<i32>().map_err(|_| {
        Error::usage(format!(
            "invalid integer value \"{value}\" for connection option \"{keyword}\""
        ))
    })
}

/// A port entry: empty means the default, else an integer in 1..=65535.
fn parse_port(value: &str) -> Result<u16, Error> {
    if value.is_empty() {
        return Ok(DEFAULT_PORT);
    }
    let port = parse_int(value, "port")?;
    u16::try_from(port)
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| Error::usage(format!("invalid port number: \"{value}\"")))
}

/// `connect_timeout` in whole seconds: zero, negative or empty means no timeout, and 1 is
/// raised to 2 because libpq's rounding could otherwise give up almost at once.
fn parse_connect_timeout(value: &str) -> Result<Option<Duration>, Error> {
    if value.is_empty() {
        return Ok(None);
    }
    let secs = parse_int(value, "connect_timeout")?;
    Ok(match secs {
        s if s <= 0 => None,
        1 => Some(Duration::from_secs(2)),
        s => Some(Duration::from_secs(s as u64)),
    })
}

/// momoko decodes every text value as UTF-8, so only that client encoding is possible.
/// Encoding names compare as the server compares them (case and punctuation ignored, so
/// `utf-8` and `unicode` are UTF8 too); `auto` (take it from the locale) is taken as UTF8;
/// empty means the default, which is UTF8.
fn check_client_encoding(value: &str) -> Result<(), Error> {
    let norm: String = value
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if value.is_empty() || matches!(norm.as_str(), "utf8" | "unicode" | "auto") {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "client_encoding \"{value}\" is not supported: momoko always uses UTF8"
        )))
    }
}

/// The OS user, as libpq's `pg_fe_getauthname` would find it.
struct OsUser {
    name: String,
    home: Option<PathBuf>,
}

/// `USER`, else `LOGNAME`, else this process's uid (the owner of `/proc/self`) looked up in
/// `/etc/passwd`; read directly because momoko has no libc binding.
fn os_user(env: &dyn Fn(&str) -> Option<String>) -> Option<OsUser> {
    for var in ["USER", "LOGNAME"] {
        if let Some(name) = env(var).filter(|n| !n.is_empty()) {
            return Some(OsUser { name, home: None });
        }
    }
    passwd_entry()
}

fn passwd_entry() -> Option<OsUser> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.as_slice() {
            [name, _, id, _, _, home, ..] if id.parse() == Ok(uid) && !name.is_empty() => {
                Some(OsUser {
                    name: (*name).to_owned(),
                    home: Some(PathBuf::from(home)).filter(|h| !h.as_os_str().is_empty()),
                })
            }
            _ => None,
        }
    })
}

/// `HOME`, else the home directory in `/etc/passwd` (libpq's `pqGetHomeDirectory`).
fn home_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    match env("HOME").filter(|h| !h.is_empty()) {
        Some(h) => Some(PathBuf::from(h)),
        None => passwd_entry().and_then(|u| u.home),
    }
}
