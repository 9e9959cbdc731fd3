//! What a [`Config`] holds, read back: the `get_*` accessors (each the value the connection
//! will use, defaults applied where libpq applies them) and a summary for people. Reading
//! only: nothing here parses, changes or checks a configuration, and nothing here returns
//! the password except `get_password`, whose caller asked for it.

use super::*;

impl Config {
    /// The hosts as given, in order; an empty entry means the default socket directory.
    /// Empty when no host was given.
    pub fn get_hosts(&self) -> &[String] {
        &self.hosts
    }

    /// The `hostaddr` entries as given, in order; an empty entry means "use the host".
    pub fn get_hostaddrs(&self) -> &[String] {
        &self.hostaddrs
    }

    /// The ports as given (an empty entry already replaced by 5432); empty when none was
    /// given.
    pub fn get_ports(&self) -> &[u16] {
        &self.ports
    }

    /// The user name.
    pub fn get_user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The database name: the one given, else the user name.
    pub fn get_dbname(&self) -> Option<&str> {
        self.dbname.as_deref().or(self.user.as_deref())
    }

    /// The password given in the string, `PGPASSWORD` or [`Config::password`]; the
    /// password file is consulted by [`Config::password_for`], not here.
    pub fn get_password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The password file that [`Config::password_for`] reads.
    pub fn get_passfile(&self) -> Option<&Path> {
        self.passfile.as_deref()
    }

    /// How long each connection attempt may take; `None` means no limit.
    pub fn get_connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout
    }

    /// `application_name` as given.
    pub fn get_application_name(&self) -> Option<&str> {
        self.application_name.as_deref()
    }

    /// `fallback_application_name` as given.
    pub fn get_fallback_application_name(&self) -> Option<&str> {
        self.fallback_application_name.as_deref()
    }

    /// Backend command-line options.
    pub fn get_options(&self) -> Option<&str> {
        self.options.as_deref()
    }

    /// `sslmode`.
    pub fn get_ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// Whether TCP keepalives are on (`SO_KEEPALIVE` on every TCP socket).
    pub fn get_keepalives(&self) -> bool {
        self.keepalives
    }

    /// Idle time before keepalive probes: [`Config::DEFAULT_KEEPALIVES_IDLE`] unless given;
    /// `None` (given as 0) leaves the system's value.
    pub fn get_keepalives_idle(&self) -> Option<Duration> {
        self.keepalives_idle
    }

    /// Time between keepalive probes: [`Config::DEFAULT_KEEPALIVES_INTERVAL`] unless given;
    /// `None` (given as 0) leaves the system's value.
    pub fn get_keepalives_interval(&self) -> Option<Duration> {
        self.keepalives_interval
    }

    /// Lost keepalive probes before the connection counts as dead:
    /// [`Config::DEFAULT_KEEPALIVES_COUNT`] unless given; `None` (given as 0) leaves the
    /// system's value.
    pub fn get_keepalives_count(&self) -> Option<u32> {
        self.keepalives_count
    }

    /// `TCP_USER_TIMEOUT`: [`Config::DEFAULT_TCP_USER_TIMEOUT`] unless given; `None`
    /// (given as 0) leaves the system's behaviour.
    pub fn get_tcp_user_timeout(&self) -> Option<Duration> {
        self.tcp_user_timeout
    }

    /// `target_session_attrs`.
    pub fn get_target_session_attrs(&self) -> TargetSessionAttrs {
        self.target_session_attrs
    }

    /// `load_balance_hosts`.
    pub fn get_load_balance_hosts(&self) -> LoadBalanceHosts {
        self.load_balance_hosts
    }

    /// What this configuration connects to, for people to read and without the password:
    /// `database D as U on HOST:PORT, ...` (or the reason the targets are unusable).
    pub fn summary(&self) -> String {
        let user = self.get_user().unwrap_or("?");
        let targets = match self.targets() {
            Ok(t) => t
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            Err(e) => e.to_string(),
        };
        format!(
            "database {} as {user} on {targets}",
            self.get_dbname().unwrap_or(user)
        )
    }

    /// The TLS settings: sslrootcert, sslcert, sslkey, sslsni, the protocol versions,
    /// channel_binding and sslnegotiation.
    pub fn get_tls(&self) -> &TlsSettings {
        &self.tls
    }

    /// The walsender mode asked for, as sent to the server: `Some("database")` (logical),
    /// `Some("true")` (physical) or `None` (an ordinary session).
    pub fn get_replication(&self) -> Option<&str> {
        self.replication
    }
}
