//! A throwaway PgBouncer in front of a test server: [`Bouncer`]. It owns its temp directory
//! (pgbouncer.ini, the auth file, the log, the pid file) and the PgBouncer process it runs
//! in the foreground as a child (as the server's account when we are root: PgBouncer
//! refuses root), stopped on drop and by a watchdog should this process die first. It must
//! never touch a PgBouncer it did not start (a system one on 6432 included), nor wait on
//! one without a bound.

use std::fs::{self, File};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cmd::{self, sh_quote};
use crate::server::{
    free_port, give_to_server, pid_alive, server_ids, unique_temp_dir, with_log_tail, ServerInfo,
    DBNAME, MD5_PASSWORD, MD5_USER, SCRAM_PASSWORD, SCRAM_USER, USER,
};
use crate::sys;
use crate::tls::PLAIN_ONLY_USER;

const START_TIMEOUT: Duration = Duration::from_secs(15);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The PgBouncer binary: `MOMOKO_PGBOUNCER` if set, else `pgbouncer` in /usr/sbin,
/// /usr/bin, /usr/local/sbin, /usr/local/bin, then on `PATH`.
pub fn pgbouncer_bin() -> io::Result<PathBuf> {
    if let Some(path) = std::env::var_os("MOMOKO_PGBOUNCER").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("MOMOKO_PGBOUNCER={} is not a file", path.display()),
            ))
        };
    }
    let dirs = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .into_iter()
        .map(PathBuf::from)
        .chain(
            std::env::var_os("PATH")
                .into_iter()
                .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>()),
        );
    for dir in dirs {
        let path = dir.join("pgbouncer");
        if path.is_file() {
            return Ok(path);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "pgbouncer not found (not in /usr/sbin, /usr/bin, /usr/local/{sbin,bin} nor on PATH); \
         install it (Debian/Ubuntu: apt-get install pgbouncer, or `make pgbouncer` as root) \
         or set MOMOKO_PGBOUNCER",
    ))
}

/// The version of [`pgbouncer_bin`], as `pgbouncer -V` prints it (`1.18.0`).
pub fn pgbouncer_version() -> io::Result<String> {
    let out = cmd::run(
        Command::new(pgbouncer_bin()?).arg("-V"),
        "pgbouncer -V",
        Duration::from_secs(10),
    )?;
    let first = out.stdout.lines().next().unwrap_or_default();
    first
        .strip_prefix("PgBouncer ")
        .map(|v| v.trim().to_owned())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("pgbouncer -V printed {first:?}"),
            )
        })
}

/// PgBouncer's `pool_mode`: when a server connection goes back to the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolMode {
    /// When the client disconnects.
    Session,
    /// After each transaction (outside one, after each statement): what breaks session
    /// state, named prepared statements (before PgBouncer 1.21), LISTEN and advisory locks.
    #[default]
    Transaction,
    /// After each statement; multi-statement transactions are refused.
    Statement,
}

impl PoolMode {
    fn as_ini(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
        }
    }
}

/// What [`Bouncer::start`] configures. The default is the one issue 14's tests want:
/// transaction pooling over a single server connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BouncerOptions {
    /// `pool_mode` (default [`PoolMode::Transaction`]).
    pub pool_mode: PoolMode,
    /// `default_pool_size`: server connections per (database, user) pair (default 1).
    pub default_pool_size: u32,
    /// `max_client_conn` (default 200).
    pub max_client_conn: u32,
    /// `query_wait_timeout` in seconds: how long a client waits for a server connection
    /// before PgBouncer gives up on it (default 30, PgBouncer's own is 120).
    pub query_wait_timeout: u32,
    /// More `key = value` lines for the `[pgbouncer]` section, written after ours (so
    /// they override them).
    pub extra: Vec<(String, String)>,
}

impl Default for BouncerOptions {
    fn default() -> BouncerOptions {
        BouncerOptions {
            pool_mode: PoolMode::Transaction,
            default_pool_size: 1,
            max_client_conn: 200,
            query_wait_timeout: 30,
            extra: Vec::new(),
        }
    }
}

/// A PgBouncer of our own on 127.0.0.1 and a free port, in front of one test server,
/// running in the foreground as our child. Dropping it stops it (SIGTERM, SIGKILL after
/// 5 s) and removes its directory; a watchdog does the same should the process die first.
///
/// Its `pgbouncer.ini`: every database (`* =`) goes to the upstream's host and port in
/// plain text (`server_tls_sslmode = disable`); clients log in without TLS and with
/// `auth_type = trust` as any user of the auth file: [`USER`], `momoko_plain_only`, and
/// `momoko_md5` and `momoko_scram` (whose passwords the file holds for PgBouncer's own
/// login to the server). `ignore_startup_parameters = extra_float_digits,options`
/// (PgBouncer refuses a startup packet with a parameter it does not know; momoko sends
/// `user`, `database`, `application_name` and `client_encoding`, which it knows, and
/// `options` when the DSN has one, which it then drops). `server_login_retry = 1` so that
/// the pool reconnects within a second after the server comes back. The admin console
/// (database `pgbouncer`, [`Bouncer::admin_dsn`]) is open to `momoko`. No Unix socket.
///
/// ```no_run
/// use momoko_testpg::{Bouncer, BouncerOptions, TestServer};
/// let bouncer = Bouncer::start(TestServer::shared(), &BouncerOptions::default()).unwrap();
/// assert_eq!(momoko_testpg::psql(bouncer.dsn(), "select 1", &[]).unwrap(), "1");
/// ```
#[derive(Debug)]
pub struct Bouncer {
    port: u16,
    dsn: String,
    admin_dsn: String,
    dir: PathBuf,
    log: PathBuf,
    pidfile: PathBuf,
    options: BouncerOptions,
    upstream: ServerInfo,
    /// runuser (as root) or pgbouncer itself, leader of its own process group.
    child: Mutex<Option<Child>>,
}

impl Bouncer {
    /// Starts PgBouncer in front of `upstream` (which need not be running yet) and returns
    /// once it listens; at most 15 s per attempt, a few attempts when the free port probed
    /// was taken before PgBouncer bound it. A failure quotes PgBouncer's log.
    pub fn start(upstream: &ServerInfo, options: &BouncerOptions) -> io::Result<Bouncer> {
        let bin = pgbouncer_bin()?;
        let ids = server_ids()?;
        let dir = unique_temp_dir("bouncer-")?;
        let mut bouncer = Bouncer {
            port: 0,
            dsn: String::new(),
            admin_dsn: String::new(),
            log: dir.join("pgbouncer.log"),
            pidfile: dir.join("pgbouncer.pid"),
            dir,
            options: options.clone(),
            upstream: upstream.clone(),
            child: Mutex::new(None),
        };
        // From here on an early return drops `bouncer`, which removes what we made.
        give_to_server(&bouncer.dir, ids)?;
        let users = [
            (USER, ""),
            (PLAIN_ONLY_USER, ""),
            (MD5_USER, MD5_PASSWORD),
            (SCRAM_USER, SCRAM_PASSWORD),
        ];
        let auth: String = users
            .iter()
            .map(|(u, p)| format!("\"{u}\" \"{p}\"\n"))
            .collect();
        fs::write(bouncer.dir.join("userlist.txt"), auth)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let _ = fs::remove_file(&bouncer.log);
            let _ = fs::remove_file(&bouncer.pidfile);
            bouncer.port = free_port()?;
            bouncer.write_ini()?;
            match bouncer.spawn(&bin) {
                Ok(()) => break,
                Err(_) if attempt < 5 && bouncer.log_mentions_bind_failure() => {
                    bouncer.kill_child();
                }
                Err(e) => return Err(e),
            }
        }
        bouncer.dsn = format!(
            "host=127.0.0.1 port={} dbname={DBNAME} user={USER} sslmode=disable",
            bouncer.port
        );
        bouncer.admin_dsn = format!(
            "host=127.0.0.1 port={} dbname=pgbouncer user={USER} sslmode=disable",
            bouncer.port
        );
        bouncer.spawn_watchdog()?;
        Ok(bouncer)
    }

    /// The port PgBouncer listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// "127.0.0.1".
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// Trust login through PgBouncer, keyword form:
    /// `host=127.0.0.1 port=N dbname=momoko_test user=momoko sslmode=disable`; append
    /// `user=...` to log in as another user of the auth file.
    pub fn dsn(&self) -> &str {
        &self.dsn
    }

    /// PgBouncer's admin console (`dbname=pgbouncer`, as `momoko`): `SHOW POOLS`,
    /// `SHOW SERVERS`, `RECONNECT`, `PAUSE`/`RESUME` (simple queries only).
    pub fn admin_dsn(&self) -> &str {
        &self.admin_dsn
    }

    /// The server behind it.
    pub fn upstream(&self) -> &ServerInfo {
        &self.upstream
    }

    /// What it was started with.
    pub fn options(&self) -> &BouncerOptions {
        &self.options
    }

    /// Its directory (pgbouncer.ini, userlist.txt, the log, the pid file), removed on drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// PgBouncer's log.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The PgBouncer process's pid, from its pid file; None once it is gone.
    pub fn pid(&self) -> Option<u32> {
        let pid: u32 = fs::read_to_string(&self.pidfile)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        pid_alive(pid).then_some(pid)
    }

    fn write_ini(&self) -> io::Result<()> {
        let o = &self.options;
        let path = |name: &str| self.dir.join(name).to_string_lossy().into_owned();
        let mut ini = format!(
            "; Written by momoko-testpg.\n\
             [databases]\n\
             * = host={host} port={up}\n\
             \n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {auth}\n\
             admin_users = {USER}\n\
             stats_users = {USER}\n\
             pool_mode = {mode}\n\
             default_pool_size = {size}\n\
             min_pool_size = 0\n\
             reserve_pool_size = 0\n\
             max_client_conn = {max}\n\
             query_wait_timeout = {wait}\n\
             ignore_startup_parameters = extra_float_digits,options\n\
             server_tls_sslmode = disable\n\
             client_tls_sslmode = disable\n\
             server_login_retry = 1\n\
             server_connect_timeout = 5\n\
             logfile = {log}\n\
             pidfile = {pid}\n",
            host = self.upstream.host,
            up = self.upstream.port,
            port = self.port,
            auth = path("userlist.txt"),
            mode = o.pool_mode.as_ini(),
            size = o.default_pool_size,
            max = o.max_client_conn,
            wait = o.query_wait_timeout,
            log = self.log.display(),
            pid = self.pidfile.display(),
        );
        for (k, v) in &o.extra {
            ini.push_str(&format!("{k} = {v}\n"));
        }
        fs::write(self.dir.join("pgbouncer.ini"), ini)
    }

    /// Starts the child and waits until PgBouncer listens on `self.port` (its log says so,
    /// and a TCP connect works).
    fn spawn(&self, bin: &Path) -> io::Result<()> {
        use std::os::unix::process::CommandExt;
        let out = File::create(self.dir.join("pgbouncer.out"))?;
        let mut c = cmd::as_server_user(bin);
        cmd::scrub_pg_env(&mut c);
        c.arg(self.dir.join("pgbouncer.ini"))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            // Its own group: one signal reaches runuser and PgBouncer, and a Ctrl-C aimed
            // at the tests does not (Drop or the watchdog stops it).
            .process_group(0);
        let child = c
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("could not run pgbouncer: {e}")))?;
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        let listening = format!("listening on 127.0.0.1:{}", self.port);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child_exited() {
                return Err(self.with_log(io::Error::other(format!(
                    "pgbouncer exited at start-up ({status})"
                ))));
            }
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            if log.contains(&listening)
                && TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.with_log(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("pgbouncer not listening on {addr} after {START_TIMEOUT:?}"),
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn child_exited(&self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        child.as_mut()?.try_wait().ok().flatten()
    }

    fn log_mentions_bind_failure(&self) -> bool {
        let log = fs::read_to_string(&self.log).unwrap_or_default()
            + &fs::read_to_string(self.dir.join("pgbouncer.out")).unwrap_or_default();
        log.contains("Address already in use")
    }

    /// The error with PgBouncer's log tail (and what it printed before it had a log).
    fn with_log(&self, e: io::Error) -> io::Error {
        let out = fs::read_to_string(self.dir.join("pgbouncer.out")).unwrap_or_default();
        let e = if out.trim().is_empty() {
            e
        } else {
            io::Error::new(e.kind(), format!("{e}\n--- its output ---\n{}", out.trim()))
        };
        with_log_tail(e, &self.log)
    }

    /// Stops the child: SIGTERM to its group (PgBouncer's immediate shutdown), SIGKILL
    /// after 5 s, then reaps it. Idempotent.
    fn kill_child(&self) {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut child) = guard.take() else {
            return;
        };
        let pgid = -(child.id() as i32);
        let pgbouncer = self.pid();
        if child.try_wait().ok().flatten().is_none() {
            sys::send_signal(pgid, sys::SIGTERM);
            let deadline = Instant::now() + STOP_TIMEOUT;
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() >= deadline {
                    sys::send_signal(pgid, sys::SIGKILL);
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = child.wait();
        // As root the child is runuser: make sure PgBouncer went with it.
        if let Some(pid) = pgbouncer {
            let deadline = Instant::now() + STOP_TIMEOUT;
            while pid_alive(pid) {
                if Instant::now() >= deadline {
                    sys::send_signal(pid as i32, sys::SIGKILL);
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// A detached shell that waits for this process to end and then, if the directory is
    /// still there (no Drop: abort or SIGKILL), kills PgBouncer (the pid in its pid file,
    /// if that still is a pgbouncer) and removes the directory. As for the servers'.
    fn spawn_watchdog(&self) -> io::Result<()> {
        use std::os::unix::process::CommandExt;
        let dir = sh_quote(&self.dir);
        let pidfile = sh_quote(&self.pidfile);
        let script = format!(
            "( while kill -0 {pid} 2>/dev/null && [ -d {dir} ]; do sleep 1; done; \
               if [ -d {dir} ]; then p=$(cat {pidfile} 2>/dev/null); \
                 if [ -n \"$p\" ] && grep -q pgbouncer /proc/$p/cmdline 2>/dev/null; then \
                   kill -TERM $p; sleep 1; kill -KILL $p 2>/dev/null; fi; \
                 rm -rf {dir}; fi ) </dev/null >/dev/null 2>&1 &",
            pid = std::process::id(),
        );
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(script)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        cmd::run(
            &mut c,
            "the pgbouncer watchdog shell",
            Duration::from_secs(10),
        )
        .map(drop)
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        self.kill_child();
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            if e.kind() != io::ErrorKind::NotFound {
                eprintln!(
                    "momoko-testpg: could not remove {}: {e}",
                    self.dir.display()
                );
            }
        }
    }
}
