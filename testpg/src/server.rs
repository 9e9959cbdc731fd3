//! One throwaway PostgreSQL cluster: creating it (initdb, configuration, roles, database,
//! hstore), starting, stopping and restarting it on the same port, and removing every trace
//! of it. It owns the cluster directory it created and nothing else: it must never stop a
//! server or delete a directory it did not create (an existing server named by
//! `MOMOKO_TEST_DSN` is only described, see `shared`).

use std::fs;
use std::io::{self, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cmd::{self, sh_quote};
use crate::conninfo::{self, quote};
use crate::sys;
use crate::tls::{
    self, TlsInfo, CERT_USER, PLAIN_ONLY_USER, SCRAM_TLS_PASSWORD, SCRAM_TLS_USER, TLS_ONLY_USER,
};

/// The database every DSN names.
pub const DBNAME: &str = "momoko_test";
/// Trust login, superuser (tests may terminate backends and create extensions).
pub const USER: &str = "momoko";
/// Password login checked with MD5 (the password is stored as an MD5 hash).
pub const MD5_USER: &str = "momoko_md5";
/// `MD5_USER`'s password.
pub const MD5_PASSWORD: &str = "md5pass";
/// Password login checked with SCRAM-SHA-256.
pub const SCRAM_USER: &str = "momoko_scram";
/// `SCRAM_USER`'s password.
pub const SCRAM_PASSWORD: &str = "scrampass";

/// The name of the file, in a cluster's directory, that records its DSNs and paths as
/// `KEY='value'` lines (shell-sourceable).
pub const ENV_FILE: &str = "server.env";

const PG_CTL_WAIT_SECS: u64 = 30;
const READY_TIMEOUT: Duration = Duration::from_secs(30);
// Unix socket paths are limited to 107 bytes; the socket file name adds up to 16.
const MAX_SOCKET_DIR_LEN: usize = 90;

/// How to stop the server, as `pg_ctl stop -m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Wait for every client to disconnect (`stop` gives up after 30 s with an error).
    Smart,
    /// Terminate sessions, shut down cleanly.
    Fast,
    /// Kill everything at once; the next start runs crash recovery.
    Immediate,
}

impl StopMode {
    fn as_arg(self) -> &'static str {
        match self {
            StopMode::Smart => "smart",
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// Where a server is and how to log in to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// TCP host of the trust DSN, "127.0.0.1" for servers we start.
    pub host: String,
    pub port: u16,
    /// The Unix socket directory, when known.
    pub socket_dir: Option<PathBuf>,
    pub dbname: String,
    /// Trust login over TCP, keyword form: `host=127.0.0.1 port=N dbname=momoko_test user=momoko`.
    pub dsn: String,
    /// Trust login over the Unix socket.
    pub dsn_unix: Option<String>,
    /// MD5 password login over TCP (password included).
    pub dsn_md5: Option<String>,
    /// SCRAM-SHA-256 password login over TCP (password included).
    pub dsn_scram: Option<String>,
    /// The server's TLS side: certificates, TLS-only users and their DSNs. Some for the
    /// servers momoko-testpg starts (they run with `ssl = on`; every plain-text login above
    /// works over TLS too), also when they are handed down through `momoko-testpg run` or
    /// `server.env` (`MOMOKO_TEST_TLS_DIR`). None for a server named by `MOMOKO_TEST_DSN`
    /// alone: tests of TLS skip then.
    pub tls: Option<TlsInfo>,
    /// True when this process (or `momoko-testpg start`) created the server.
    pub own: bool,
}

impl ServerInfo {
    fn for_cluster(port: u16, socket_dir: &Path, tls_dir: Option<&Path>) -> ServerInfo {
        let tcp = |user: &str, password: Option<&str>| {
            let mut dsn = format!("host=127.0.0.1 port={port} dbname={DBNAME} user={user}");
            if let Some(p) = password {
                dsn.push_str(&format!(" password={}", quote(p)));
            }
            dsn
        };
        ServerInfo {
            host: "127.0.0.1".to_owned(),
            port,
            socket_dir: Some(socket_dir.to_path_buf()),
            dbname: DBNAME.to_owned(),
            dsn: tcp(USER, None),
            dsn_unix: Some(format!(
                "host={} port={port} dbname={DBNAME} user={USER}",
                quote(&socket_dir.to_string_lossy())
            )),
            dsn_md5: Some(tcp(MD5_USER, Some(MD5_PASSWORD))),
            dsn_scram: Some(tcp(SCRAM_USER, Some(SCRAM_PASSWORD))),
            tls: tls_dir.map(|dir| TlsInfo::in_dir(dir, port)),
            own: true,
        }
    }

    /// Describes the server named by `MOMOKO_TEST_DSN` (and the optional
    /// `MOMOKO_TEST_DSN_UNIX`, `_MD5`, `_SCRAM`), or None when it is unset or empty.
    /// Host, port and database are read from the DSN (libpq defaults where absent).
    ///
    /// `tls` is Some only when `MOMOKO_TEST_TLS_DIR` names a momoko-testpg certificate
    /// directory (with its `ca.crt`), as `momoko-testpg run` exports it; the server is then
    /// taken to be a momoko-testpg server on 127.0.0.1 and the port of `MOMOKO_TEST_DSN`
    /// (`MOMOKO_TEST_DSN_TLS`, `_CERT`, `_SCRAM_TLS` override the derived DSNs).
    pub fn from_env() -> Option<ServerInfo> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let dsn = var("MOMOKO_TEST_DSN")?;
        let pairs = conninfo::parse(&dsn);
        let dsn_unix = var("MOMOKO_TEST_DSN_UNIX");
        let host = conninfo::get(&pairs, "host")
            .or(conninfo::get(&pairs, "hostaddr"))
            .map(|h| h.split(',').next().unwrap_or(h).to_owned())
            .unwrap_or_else(|| "127.0.0.1".to_owned());
        let unix_host = dsn_unix
            .as_deref()
            .and_then(|d| conninfo::get(&conninfo::parse(d), "host").map(str::to_owned))
            .or_else(|| Some(host.clone()))
            .filter(|h| h.starts_with('/'));
        let port = conninfo::get(&pairs, "port")
            .and_then(|p| p.split(',').next()?.parse().ok())
            .unwrap_or(5432);
        let tls = var("MOMOKO_TEST_TLS_DIR")
            .map(PathBuf::from)
            .filter(|dir| dir.join("ca.crt").is_file())
            .map(|dir| {
                let mut tls = TlsInfo::in_dir(&dir, port);
                for (name, field) in [
                    ("MOMOKO_TEST_DSN_TLS", &mut tls.dsn),
                    ("MOMOKO_TEST_DSN_CERT", &mut tls.cert_dsn),
                    ("MOMOKO_TEST_DSN_SCRAM_TLS", &mut tls.scram_tls_dsn),
                ] {
                    if let Some(v) = var(name) {
                        *field = v;
                    }
                }
                tls
            });
        Some(ServerInfo {
            port,
            dbname: conninfo::get(&pairs, "dbname")
                .or(conninfo::get(&pairs, "user"))
                .unwrap_or("postgres")
                .to_owned(),
            host,
            socket_dir: unix_host.map(PathBuf::from),
            dsn,
            dsn_unix,
            dsn_md5: var("MOMOKO_TEST_DSN_MD5"),
            dsn_scram: var("MOMOKO_TEST_DSN_SCRAM"),
            tls,
            own: false,
        })
    }

    /// The `MOMOKO_TEST_*` variables describing this server (those that are known), as
    /// exported by `momoko-testpg run` and read back by [`ServerInfo::from_env`]: the
    /// `MOMOKO_TEST_DSN*` DSNs and, with TLS, `MOMOKO_TEST_TLS_DIR` (the certificate
    /// directory) and the TLS DSNs `MOMOKO_TEST_DSN_TLS`, `_CERT` and `_SCRAM_TLS`.
    pub fn env_vars(&self) -> Vec<(&'static str, String)> {
        let mut vars = vec![("MOMOKO_TEST_DSN", self.dsn.clone())];
        for (name, value) in [
            ("MOMOKO_TEST_DSN_UNIX", &self.dsn_unix),
            ("MOMOKO_TEST_DSN_MD5", &self.dsn_md5),
            ("MOMOKO_TEST_DSN_SCRAM", &self.dsn_scram),
        ] {
            if let Some(v) = value {
                vars.push((name, v.clone()));
            }
        }
        if let Some(tls) = &self.tls {
            vars.push((
                "MOMOKO_TEST_TLS_DIR",
                tls.dir.to_string_lossy().into_owned(),
            ));
            vars.push(("MOMOKO_TEST_DSN_TLS", tls.dsn.clone()));
            vars.push(("MOMOKO_TEST_DSN_CERT", tls.cert_dsn.clone()));
            vars.push(("MOMOKO_TEST_DSN_SCRAM_TLS", tls.scram_tls_dsn.clone()));
        }
        vars
    }

    /// Runs an SQL script with psql over the trust DSN; see [`crate::psql`].
    pub fn psql(&self, sql: &str) -> io::Result<String> {
        cmd::psql(&self.dsn, sql, &[])
    }
}

#[derive(Debug, Default)]
struct State {
    /// Directory and server gone: nothing more to do.
    removed: bool,
    /// Handed over to outlive us (`momoko-testpg start`): Drop leaves it alone.
    kept: bool,
}

/// A PostgreSQL cluster of our own in a fresh directory. Dropping it stops the server
/// (`pg_ctl stop -m immediate`) and removes the directory.
///
/// Should the process die without dropping it (abort, SIGKILL), a small watchdog shell
/// started with the server notices within a second and does the same.
#[derive(Debug)]
pub struct TestServer {
    info: ServerInfo,
    bin: PathBuf,
    /// The directory we created and remove: data/, tls/, the log, server.env, usually sock/.
    base: PathBuf,
    data: PathBuf,
    log: PathBuf,
    /// A socket directory outside `base` (when `base` is too long for a socket path).
    outside_socket_dir: Option<PathBuf>,
    /// A symlink to `base` at the place the caller asked for (see `start_at`).
    link: Option<PathBuf>,
    /// Settings appended to the generated configuration (replication, see `replica`).
    extra_conf: String,
    state: Mutex<State>,
}

pub(crate) fn unique_temp_dir(tag: &str) -> io::Result<PathBuf> {
    static N: AtomicU64 = AtomicU64::new(0);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    for _ in 0..100 {
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "momoko-testpg-{tag}{}-{n}-{stamp:08x}",
            std::process::id()
        ));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("could not create {}: {e}", dir.display()),
                ))
            }
        }
    }
    Err(io::Error::other(
        "could not find an unused temporary directory name",
    ))
}

/// Hands a directory we created to the server's account (root only) and opens it for
/// traversal, so that root-run clients and the server can both reach the socket.
pub(crate) fn give_to_server(dir: &Path, ids: Option<(u32, u32)>) -> io::Result<()> {
    if let Some((uid, gid)) = ids {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))
            .map_err(|e| io::Error::new(e.kind(), format!("chown {}: {e}", dir.display())))?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
}

/// Whether the server's account can write `dir`: as root, a directory under /root (mode
/// 0700) is out of its reach however it is chowned.
fn server_can_write(bin: &Path, dir: &Path) -> bool {
    if !sys::is_root() {
        return true;
    }
    let mut words = cmd::server_command_words(bin, "initdb");
    words.pop(); // keep the runuser prefix only
    let mut c = Command::new(&words[0]);
    c.args(&words[1..]).arg("test").arg("-w").arg(dir);
    cmd::run(&mut c, "test -w", Duration::from_secs(10)).is_ok()
}

/// The PostgreSQL binary directory, checked to hold each of `names`.
fn checked_bin_dir(names: &[&str]) -> io::Result<PathBuf> {
    let bin = cmd::bin_dir()?;
    for name in names {
        if !bin.join(name).is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is missing", bin.join(name).display()),
            ));
        }
    }
    Ok(bin)
}

/// The server account's uid and gid when we are root (the directories we make are handed
/// to it), else None.
pub(crate) fn server_ids() -> io::Result<Option<(u32, u32)>> {
    if sys::is_root() {
        cmd::pg_os_ids().map(Some)
    } else {
        Ok(None)
    }
}

pub(crate) fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| io::Error::new(e.kind(), format!("could not bind 127.0.0.1:0: {e}")))?;
    Ok(listener.local_addr()?.port())
}

pub(crate) fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() || sys::send_signal(pid as i32, 0)
}

impl TestServer {
    /// Starts a private server in a fresh temporary directory. Takes a few seconds; use
    /// [`TestServer::shared`] unless the test stops or restarts the server.
    pub fn start() -> io::Result<TestServer> {
        Self::create(None, true, String::new())
    }

    /// Starts a server in `dir` (created; it must not exist or be empty) that is meant to
    /// outlive this process once [`TestServer::keep`] is called: no watchdog is attached.
    /// As root, when the server's account can't reach `dir` (e.g. under /root), the cluster
    /// goes to the temp dir and `dir` becomes a symlink to it.
    pub fn start_at(dir: &Path) -> io::Result<TestServer> {
        Self::create(Some(dir), false, String::new())
    }

    /// The server shared by the whole process: the one named by `MOMOKO_TEST_DSN` if set,
    /// else one started on first use and stopped and removed at process exit.
    ///
    /// Panics if that server can't be started (the message says why).
    pub fn shared() -> &'static ServerInfo {
        crate::shared::shared()
    }

    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    /// The directory holding everything of this cluster (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.base
    }

    /// The server log, kept in the cluster directory.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The postmaster's pid, from `postmaster.pid`; None when the server is not running.
    pub fn pid(&self) -> Option<u32> {
        let text = fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Stops the server (`pg_ctl stop -m MODE`, waiting up to 30 s); the directory stays.
    pub fn stop(&self, mode: StopMode) -> io::Result<()> {
        let mut c = cmd::server_command(&self.bin, "pg_ctl");
        cmd::scrub_pg_env(&mut c);
        c.current_dir(&self.base)
            .arg("stop")
            .arg("-D")
            .arg(&self.data)
            .args([
                "-m",
                mode.as_arg(),
                "-w",
                "-s",
                "-t",
                &PG_CTL_WAIT_SECS.to_string(),
            ]);
        let what = format!("pg_ctl stop -m {}", mode.as_arg());
        cmd::run(&mut c, &what, Duration::from_secs(PG_CTL_WAIT_SECS + 15)).map(drop)
    }

    /// Starts the stopped server again, on the same port and socket directory, and waits
    /// until it accepts logins.
    pub fn start_again(&self) -> io::Result<()> {
        self.pg_ctl_start()?;
        self.wait_ready()
    }

    /// Stops the server with `mode` and starts it again on the same port.
    pub fn restart(&self, mode: StopMode) -> io::Result<()> {
        self.stop(mode)?;
        self.start_again()
    }

    /// Hands the running server over to outlive this value (Drop no longer stops it) and
    /// returns its description; `stop_dir` removes it later.
    pub fn keep(self) -> ServerInfo {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).kept = true;
        self.info.clone()
    }

    /// Creates and starts a cluster; `extra_conf` is appended to its configuration.
    pub(crate) fn create(
        dir: Option<&Path>,
        watchdog: bool,
        extra_conf: String,
    ) -> io::Result<TestServer> {
        let bin = checked_bin_dir(&["initdb", "pg_ctl", "postgres"])?;
        cmd::client_program("psql")?;
        let ids = server_ids()?;

        let (base, link) = match dir {
            None => (unique_temp_dir("")?, None),
            Some(dir) => {
                let dir = std::env::current_dir()?.join(dir);
                if fs::read_dir(&dir)
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(false)
                    || fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink())
                {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} already exists and is not empty", dir.display()),
                    ));
                }
                fs::create_dir_all(&dir).map_err(|e| {
                    io::Error::new(e.kind(), format!("could not create {}: {e}", dir.display()))
                })?;
                give_to_server(&dir, ids)?;
                if server_can_write(&bin, &dir) {
                    (dir, None)
                } else {
                    fs::remove_dir(&dir)?;
                    let base = unique_temp_dir("")?;
                    std::os::unix::fs::symlink(&base, &dir)?;
                    (base, Some(dir))
                }
            }
        };
        // From here on, an early return drops `server`, which removes what we created.
        let mut server = TestServer {
            info: ServerInfo::for_cluster(0, &base, None),
            data: base.join("data"),
            log: base.join("postgres.log"),
            bin,
            base,
            outside_socket_dir: None,
            link,
            extra_conf,
            state: Mutex::new(State::default()),
        };
        give_to_server(&server.base, ids)?;
        let socket_dir = server.make_socket_dir(ids)?;
        let tls_dir = server.base.join(tls::TLS_DIR);
        tls::write_files(&tls_dir, ids)?;

        server.initdb()?;
        server.configure_hba()?;
        server.start_on_free_port(&socket_dir, &tls_dir)?;
        server.create_roles_and_db()?;
        server.wait_ready()?;
        server.write_env_file()?;
        if watchdog {
            server.spawn_watchdog()?;
        }
        Ok(server)
    }

    /// Makes the Unix socket directory: `sock/` in the cluster directory, or a directory of
    /// its own in the temp dir when that path would be too long for a socket.
    fn make_socket_dir(&mut self, ids: Option<(u32, u32)>) -> io::Result<PathBuf> {
        let mut socket_dir = self.base.join("sock");
        if socket_dir.as_os_str().len() > MAX_SOCKET_DIR_LEN {
            socket_dir = unique_temp_dir("sock-")?;
            self.outside_socket_dir = Some(socket_dir.clone());
        } else {
            fs::create_dir(&socket_dir)?;
        }
        give_to_server(&socket_dir, ids)?;
        Ok(socket_dir)
    }

    /// Writes the configuration for a free port and starts the server there, trying
    /// another port when the one probed was taken before the server could bind it.
    fn start_on_free_port(&mut self, socket_dir: &Path, tls_dir: &Path) -> io::Result<()> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            if attempt > 1 {
                // So that only this attempt's failure is judged below.
                let _ = fs::remove_file(&self.log);
            }
            let port = free_port()?;
            self.info = ServerInfo::for_cluster(port, socket_dir, Some(tls_dir));
            self.write_conf(port, socket_dir, tls_dir)?;
            match self.pg_ctl_start() {
                Ok(()) => return Ok(()),
                // Another process took the port between our probe and the server's bind.
                Err(_) if attempt < 5 && self.log_mentions_bind_failure() => {
                    let _ = self.stop(StopMode::Immediate);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Creates and starts a streaming standby of `primary` in a fresh temp directory: a
    /// `pg_basebackup -R` over a new physical replication slot named `name` (also the
    /// standby's `application_name`), its own copy of the primary's certificates (so one
    /// CA verifies both servers), its own port and socket directory. `extra_conf` is
    /// appended to its configuration. Returns once it accepts logins.
    pub(crate) fn create_standby(
        primary: &TestServer,
        name: &str,
        extra_conf: String,
    ) -> io::Result<TestServer> {
        let bin = checked_bin_dir(&["pg_ctl", "postgres"])?;
        let (basebackup, _) = cmd::client_program("pg_basebackup")?;
        let ids = server_ids()?;
        let base = unique_temp_dir("standby-")?;
        let mut server = TestServer {
            info: ServerInfo::for_cluster(0, &base, None),
            data: base.join("data"),
            log: base.join("postgres.log"),
            bin,
            base,
            outside_socket_dir: None,
            link: None,
            extra_conf,
            state: Mutex::new(State::default()),
        };
        give_to_server(&server.base, ids)?;
        let socket_dir = server.make_socket_dir(ids)?;
        let tls_dir = server.base.join(tls::TLS_DIR);
        let primary_tls = primary.base.join(tls::TLS_DIR);
        tls::copy_files(&primary_tls, &tls_dir, ids)?;

        let source = format!(
            "host=127.0.0.1 port={} user=postgres application_name={name} sslmode=disable",
            primary.info.port
        );
        let mut c = cmd::as_server_user(&basebackup);
        cmd::scrub_pg_env(&mut c);
        c.current_dir(&server.base)
            .arg("-D")
            .arg(&server.data)
            .args(["-R", "-X", "stream", "-c", "fast", "-C", "-S", name])
            .args(["--no-sync", "-w", "-d", &source]);
        cmd::run(&mut c, "pg_basebackup", Duration::from_secs(120))
            .map_err(|e| primary.with_log(e))?;
        // `-R` writes the connection options of pg_basebackup's own libpq, which a server
        // of another version may refuse (a newer pg_basebackup's `channel_binding` or
        // `sslnegotiation` against an older server): the standby gets a plain one instead,
        // the last setting in the file winning.
        let mut auto = fs::OpenOptions::new()
            .append(true)
            .open(server.data.join("postgresql.auto.conf"))?;
        writeln!(
            auto,
            "# Written by momoko-testpg: the options every server version knows.\n\
             primary_conninfo = '{}'",
            source.replace('\'', "''")
        )?;
        server.start_on_free_port(&socket_dir, &tls_dir)?;
        server.wait_ready()?;
        server.write_env_file()?;
        server.spawn_watchdog()?;
        Ok(server)
    }

    /// Promotes a standby (`pg_ctl promote -w`), then waits until a login over TCP sees
    /// `pg_is_in_recovery()` false (at most 30 s).
    pub(crate) fn promote(&self) -> io::Result<()> {
        let mut c = cmd::server_command(&self.bin, "pg_ctl");
        cmd::scrub_pg_env(&mut c);
        c.current_dir(&self.base)
            .arg("promote")
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-s", "-t", &PG_CTL_WAIT_SECS.to_string()]);
        cmd::run(
            &mut c,
            "pg_ctl promote",
            Duration::from_secs(PG_CTL_WAIT_SECS + 15),
        )
        .map_err(|e| self.with_log(e))?;
        self.wait_for("pg_is_in_recovery() to become false", READY_TIMEOUT, || {
            Ok(cmd::psql(&self.info.dsn, "select pg_is_in_recovery()", &[])? == "f")
        })
    }

    /// Polls `check` every 50 ms until it answers true, for at most `timeout`; the error
    /// names `what` was waited for, the last failure of `check` and the log's tail.
    pub(crate) fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> io::Result<bool>,
    ) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match check() {
                Ok(true) => return Ok(()),
                Ok(false) => String::from("not yet"),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                let e = io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "timed out after {timeout:?} waiting for {what} on 127.0.0.1:{} \
                         (last check: {last})",
                        self.info.port
                    ),
                );
                return Err(self.with_log(e));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn initdb(&self) -> io::Result<()> {
        let mut c = cmd::server_command(&self.bin, "initdb");
        cmd::scrub_pg_env(&mut c);
        c.current_dir(&self.base).arg("-D").arg(&self.data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        cmd::run(&mut c, "initdb", Duration::from_secs(180)).map(drop)
    }

    fn configure_hba(&self) -> io::Result<()> {
        let mut hba = String::from(
            "# Written by momoko-testpg: first the users bound to TLS or to plain text (the\n\
             # first line matching type, user and address decides), then the password users\n\
             # by method; everyone else is trusted, with or without TLS.\n",
        );
        let mut line = |kind: &str, db: &str, user: &str, addr: &str, method: &str| {
            hba.push_str(&format!(
                "{kind:<9} {db:<11} {user:<17} {addr:<13} {method}\n"
            ));
        };
        for (local, addr) in [(true, ""), (false, "127.0.0.1/32"), (false, "::1/128")] {
            if local {
                // No TLS on a Unix socket.
                for user in [CERT_USER, SCRAM_TLS_USER, TLS_ONLY_USER] {
                    line("local", "all", user, addr, "reject");
                }
            } else {
                for (ssl, user, method) in [
                    ("hostssl", CERT_USER, "cert"),
                    ("hostssl", SCRAM_TLS_USER, "scram-sha-256"),
                    ("hostssl", TLS_ONLY_USER, "trust"),
                    ("hostnossl", PLAIN_ONLY_USER, "trust"),
                ] {
                    line(ssl, "all", user, addr, method);
                    line("host", "all", user, addr, "reject");
                }
            }
            let kind = if local { "local" } else { "host" };
            for (user, method) in [
                (MD5_USER, "md5"),
                (SCRAM_USER, "scram-sha-256"),
                ("all", "trust"),
            ] {
                line(kind, "all", user, addr, method);
            }
            line(kind, "replication", "all", addr, "trust");
        }
        fs::write(self.data.join("pg_hba.conf"), hba)?;
        let mut conf = fs::OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))?;
        writeln!(conf, "\ninclude 'momoko-testpg.conf'")
    }

    fn write_conf(&self, port: u16, socket_dir: &Path, tls_dir: &Path) -> io::Result<()> {
        let conf_path = |p: &Path| p.to_string_lossy().replace('\'', "''");
        let socket_dir = conf_path(socket_dir);
        let tls = TlsInfo::in_dir(tls_dir, port);
        let (cert, key, ca) = (
            conf_path(&tls.server_cert),
            conf_path(&tls.server_key),
            conf_path(&tls.ca_file),
        );
        // Speed over durability: the cluster is thrown away. max_connections is high so
        // pool tests can open many connections at once. Logical WAL, replication slots and
        // prepared transactions, so that the replication tests (logical decoding, two-phase)
        // run on any server without more set-up.
        let conf = format!(
            "# Written by momoko-testpg.\n\
             listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = '{socket_dir}'\n\
             max_connections = 300\n\
             shared_buffers = 16MB\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             huge_pages = off\n\
             wal_level = logical\n\
             max_wal_senders = 10\n\
             max_replication_slots = 10\n\
             max_prepared_transactions = 10\n\
             timezone = 'UTC'\n\
             lc_messages = 'C'\n\
             logging_collector = off\n\
             log_line_prefix = '%m [%p] %q%u@%d '\n\
             ssl = on\n\
             ssl_cert_file = '{cert}'\n\
             ssl_key_file = '{key}'\n\
             ssl_ca_file = '{ca}'\n\
             {extra}",
            extra = self.extra_conf,
        );
        fs::write(self.data.join("momoko-testpg.conf"), conf)
    }

    fn pg_ctl_start(&self) -> io::Result<()> {
        let mut c = cmd::server_command(&self.bin, "pg_ctl");
        cmd::scrub_pg_env(&mut c);
        c.current_dir(&self.base)
            .arg("start")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-s", "-t", &PG_CTL_WAIT_SECS.to_string()]);
        cmd::run(
            &mut c,
            "pg_ctl start",
            Duration::from_secs(PG_CTL_WAIT_SECS + 15),
        )
        .map(drop)
        .map_err(|e| self.with_log(e))
    }

    fn log_mentions_bind_failure(&self) -> bool {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        log.contains("could not bind") || log.contains("Address already in use")
    }

    /// Adds the server log's tail and path to an error.
    fn with_log(&self, e: io::Error) -> io::Error {
        with_log_tail(e, &self.log)
    }

    fn superuser_dsn(&self) -> String {
        let sock = self.info.socket_dir.as_deref().unwrap_or(&self.base);
        format!(
            "host={} port={} dbname=postgres user=postgres",
            quote(&sock.to_string_lossy()),
            self.info.port
        )
    }

    fn create_roles_and_db(&self) -> io::Result<()> {
        // password_encryption decides how CREATE ROLE stores the password, and so which
        // exchange a password-checking pg_hba method can use for that role.
        let sql = format!(
            "CREATE ROLE {USER} LOGIN SUPERUSER;\n\
             SET password_encryption = 'md5';\n\
             SET client_min_messages = error;\n\
             CREATE ROLE {MD5_USER} LOGIN PASSWORD '{MD5_PASSWORD}';\n\
             RESET client_min_messages;\n\
             SET password_encryption = 'scram-sha-256';\n\
             CREATE ROLE {SCRAM_USER} LOGIN PASSWORD '{SCRAM_PASSWORD}';\n\
             CREATE ROLE {SCRAM_TLS_USER} LOGIN PASSWORD '{SCRAM_TLS_PASSWORD}';\n\
             CREATE ROLE {CERT_USER} LOGIN;\n\
             CREATE ROLE {TLS_ONLY_USER} LOGIN;\n\
             CREATE ROLE {PLAIN_ONLY_USER} LOGIN;\n\
             CREATE DATABASE {DBNAME} OWNER {USER};\n\
             \\connect {DBNAME}\n\
             CREATE EXTENSION hstore;\n\
             GRANT CONNECT, TEMPORARY ON DATABASE {DBNAME} TO {others};\n\
             GRANT USAGE, CREATE ON SCHEMA public TO {others};\n",
            others = [
                MD5_USER,
                SCRAM_USER,
                SCRAM_TLS_USER,
                CERT_USER,
                TLS_ONLY_USER,
                PLAIN_ONLY_USER
            ]
            .join(", "),
        );
        // Local commits only: a primary of `Replicated` starts with its synchronous standby
        // named but not there yet, and a synchronous commit would wait for it forever.
        let env = [("PGOPTIONS", "-c synchronous_commit=local")];
        cmd::psql(&self.superuser_dsn(), &sql, &env)
            .map(drop)
            .map_err(|e| self.with_log(e))
    }

    /// Polls a trust login over TCP until it works (at most 30 s): pg_ctl -w only says the
    /// postmaster is up, and after an immediate stop recovery may still be running.
    fn wait_ready(&self) -> io::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match cmd::psql(&self.info.dsn, "select 1", &[]) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    let e = io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("server not accepting logins after {READY_TIMEOUT:?}: {e}"),
                    );
                    return Err(self.with_log(e));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn write_env_file(&self) -> io::Result<()> {
        let mut vars: Vec<(&str, String)> = self.info.env_vars();
        let path = |p: &Path| p.to_string_lossy().into_owned();
        vars.push(("MOMOKO_PG_BIN", path(&self.bin)));
        vars.push(("MOMOKO_TESTPG_DIR", path(&self.base)));
        vars.push(("MOMOKO_TESTPG_DATA", path(&self.data)));
        vars.push(("MOMOKO_TESTPG_LOG", path(&self.log)));
        if let Some(sock) = &self.info.socket_dir {
            vars.push(("MOMOKO_TESTPG_SOCKET_DIR", path(sock)));
        }
        if let Some(sock) = &self.outside_socket_dir {
            vars.push(("MOMOKO_TESTPG_OUTSIDE_SOCKET_DIR", path(sock)));
        }
        let mut text =
            String::from("# Written by momoko-testpg; `set -a; . THIS; set +a` exports it.\n");
        for (k, v) in vars {
            text.push_str(&format!("{k}={}\n", sh_quote(v)));
        }
        fs::write(self.base.join(ENV_FILE), text)
    }

    /// A detached shell that waits for this process to end and, if the cluster is still
    /// there (no Drop, no atexit: abort or SIGKILL), stops it and removes it. It exits by
    /// itself within a second of the directory going away. Double-forked so that it is
    /// never our zombie, and in its own process group so that a Ctrl-C aimed at the tests
    /// does not kill it first.
    fn spawn_watchdog(&self) -> io::Result<()> {
        use std::os::unix::process::CommandExt;
        let pg_ctl: Vec<String> = cmd::server_command_words(&self.bin, "pg_ctl")
            .iter()
            .map(sh_quote)
            .collect();
        let mut remove = sh_quote(&self.base);
        for extra in self.outside_socket_dir.iter().chain(self.link.iter()) {
            remove.push(' ');
            remove.push_str(&sh_quote(extra));
        }
        let data = sh_quote(&self.data);
        let script = format!(
            "( while kill -0 {pid} 2>/dev/null && [ -d {data} ]; do sleep 1; done; \
               if [ -d {data} ]; then {pg_ctl} stop -D {data} -m immediate -w -t 30; \
               rm -rf {remove}; fi ) </dev/null >/dev/null 2>&1 &",
            pid = std::process::id(),
            pg_ctl = pg_ctl.join(" "),
        );
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(script)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        cmd::scrub_pg_env(&mut c);
        cmd::run(&mut c, "the watchdog shell", Duration::from_secs(10)).map(drop)
    }

    /// Stops the server (immediate) and removes its directories; idempotent. Used by Drop
    /// and by the atexit hook of the shared server.
    pub(crate) fn shutdown(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.removed || state.kept {
            return;
        }
        state.removed = true;
        let pid = self.pid();
        if self.stop(StopMode::Immediate).is_err() {
            // pg_ctl failed (not running, or broken): make sure no postmaster is left, but
            // only kill a pid that still is a postgres process.
            if let Some(pid) = pid {
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains("postgres") {
                    sys::send_signal(pid as i32, sys::SIGKILL);
                }
            }
        }
        if let Some(pid) = pid {
            let deadline = Instant::now() + Duration::from_secs(10);
            while pid_alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        remove_all(
            &self.base,
            self.outside_socket_dir.as_deref(),
            self.link.as_deref(),
        );
    }
}

/// Adds the last 20 lines of the log at `log` (and its path) to an error.
pub(crate) fn with_log_tail(e: io::Error, log: &Path) -> io::Error {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    io::Error::new(
        e.kind(),
        format!("{e}\n--- last lines of {} ---\n{tail}", log.display()),
    )
}

fn remove_all(base: &Path, outside_socket_dir: Option<&Path>, link: Option<&Path>) {
    for dir in std::iter::once(base).chain(outside_socket_dir) {
        if let Err(e) = fs::remove_dir_all(dir) {
            if e.kind() != io::ErrorKind::NotFound {
                let _ = writeln!(
                    io::stderr(),
                    "momoko-testpg: could not remove {}: {e}",
                    dir.display()
                );
            }
        }
    }
    if let Some(link) = link {
        let _ = fs::remove_file(link);
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Reads a cluster directory's `server.env` into its variables.
fn read_env_file(dir: &Path) -> io::Result<Vec<(String, String)>> {
    let path = dir.join(ENV_FILE);
    let text = fs::read_to_string(&path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "{} is not a momoko-testpg server directory ({}: {e})",
                dir.display(),
                path.display()
            ),
        )
    })?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let (k, v) = line.split_once('=')?;
            let v = v
                .strip_prefix('\'')?
                .strip_suffix('\'')?
                .replace(r"'\''", "'");
            Some((k.to_owned(), v))
        })
        .collect())
}

/// The server `momoko-testpg start --dir DIR` left in `dir`, if one is there and running.
pub fn running_in(dir: &Path) -> io::Result<Option<ServerInfo>> {
    if !dir.join(ENV_FILE).exists() {
        return Ok(None);
    }
    let vars = read_env_file(dir)?;
    let get = |k: &str| {
        vars.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let (Some(data), Some(bin)) = (get("MOMOKO_TESTPG_DATA"), get("MOMOKO_PG_BIN")) else {
        return Ok(None);
    };
    let mut c = cmd::server_command(Path::new(&bin), "pg_ctl");
    cmd::scrub_pg_env(&mut c);
    c.current_dir("/").arg("status").arg("-D").arg(&data);
    if !cmd::run_any(&mut c, "pg_ctl status", Duration::from_secs(15))?
        .status
        .success()
    {
        return Ok(None);
    }
    let Some(dsn) = get("MOMOKO_TEST_DSN") else {
        return Ok(None);
    };
    let pairs = conninfo::parse(&dsn);
    let port = conninfo::get(&pairs, "port")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    Ok(Some(ServerInfo {
        host: conninfo::get(&pairs, "host")
            .unwrap_or("127.0.0.1")
            .to_owned(),
        port,
        socket_dir: get("MOMOKO_TESTPG_SOCKET_DIR").map(PathBuf::from),
        dbname: DBNAME.to_owned(),
        dsn,
        dsn_unix: get("MOMOKO_TEST_DSN_UNIX"),
        dsn_md5: get("MOMOKO_TEST_DSN_MD5"),
        dsn_scram: get("MOMOKO_TEST_DSN_SCRAM"),
        tls: get("MOMOKO_TEST_TLS_DIR").map(|d| TlsInfo::in_dir(Path::new(&d), port)),
        own: true,
    }))
}

/// Stops the server `momoko-testpg start --dir DIR` left in `dir` (fast, then immediate)
/// and removes it. Refuses directories without our `server.env`.
pub fn stop_dir(dir: &Path) -> io::Result<()> {
    let vars = read_env_file(dir)?;
    let get = |k: &str| {
        vars.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| PathBuf::from(v))
    };
    let (Some(data), Some(bin), Some(base)) = (
        get("MOMOKO_TESTPG_DATA"),
        get("MOMOKO_PG_BIN"),
        get("MOMOKO_TESTPG_DIR"),
    ) else {
        return Err(io::Error::other(format!(
            "{} is incomplete",
            dir.join(ENV_FILE).display()
        )));
    };
    if data.join("postmaster.pid").exists() {
        let stop = |mode: &str| {
            let mut c = cmd::server_command(&bin, "pg_ctl");
            cmd::scrub_pg_env(&mut c);
            c.current_dir("/")
                .arg("stop")
                .arg("-D")
                .arg(&data)
                .args(["-m", mode, "-w", "-s", "-t", "30"]);
            cmd::run(
                &mut c,
                &format!("pg_ctl stop -m {mode}"),
                Duration::from_secs(45),
            )
        };
        if stop("fast").is_err() {
            stop("immediate")?;
        }
    }
    let outside = get("MOMOKO_TESTPG_OUTSIDE_SOCKET_DIR");
    let is_link = fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink());
    remove_all(&base, outside.as_deref(), is_link.then_some(dir));
    Ok(())
}
