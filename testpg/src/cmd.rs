//! Finding the PostgreSQL binaries and running external commands. It owns the rules every
//! child process follows here: a time bound, captured output quoted in errors that name the
//! command, no inherited `PG*` variables, and (as root) running the server binaries as an
//! unprivileged account. It must never leave a child running past its bound.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::sys;

/// The account the server binaries run as when we are root (`MOMOKO_PG_USER`, default
/// `postgres`): initdb, pg_ctl and postgres refuse to run as root.
pub(crate) fn pg_os_user() -> String {
    std::env::var("MOMOKO_PG_USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres".to_owned())
}

/// The directory holding initdb, pg_ctl and postgres (and usually psql and pg_basebackup:
/// see `client_program` for builds without them).
///
/// `MOMOKO_PG_BIN` wins; otherwise the highest `/usr/lib/postgresql/*/bin` (Debian, Ubuntu),
/// then `/usr/pgsql-*/bin` (RPM), `/usr/local/pgsql/bin`, then `initdb` on `PATH` (with
/// symlinks resolved, so that its siblings are found too). The answer is computed once.
pub fn bin_dir() -> io::Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(find_bin_dir)
        .clone()
        .map_err(|msg| io::Error::new(io::ErrorKind::NotFound, msg))
}

fn find_bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("MOMOKO_PG_BIN").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return if dir.join("initdb").is_file() {
            Ok(dir)
        } else {
            Err(format!(
                "MOMOKO_PG_BIN={} has no initdb in it",
                dir.display()
            ))
        };
    }
    system_bin_dirs().into_iter().next().ok_or_else(|| {
        "PostgreSQL server binaries not found (no initdb under /usr/lib/postgresql/*/bin, \
         /usr/pgsql-*/bin, /usr/local/pgsql/bin or on PATH); install them (Debian/Ubuntu: \
         apt-get install postgresql postgresql-contrib) or set MOMOKO_PG_BIN"
            .to_owned()
    })
}

/// The installed PostgreSQL binary directories that hold initdb, best first: the highest
/// `/usr/lib/postgresql/*/bin`, then `/usr/pgsql-*/bin`, `/usr/local/pgsql/bin`, then the
/// directory of `initdb` on `PATH` (symlinks resolved, so that its siblings are found too).
fn system_bin_dirs() -> Vec<PathBuf> {
    let mut candidates: Vec<(Vec<u32>, PathBuf)> = Vec::new();
    for (parent, prefix) in [("/usr/lib/postgresql", ""), ("/usr", "pgsql-")] {
        let Ok(entries) = fs::read_dir(parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(version) = name.strip_prefix(prefix) else {
                continue;
            };
            let parsed: Option<Vec<u32>> = version.split('.').map(|p| p.parse().ok()).collect();
            let bin = entry.path().join("bin");
            if let Some(v) = parsed.filter(|_| bin.join("initdb").is_file()) {
                candidates.push((v, bin));
            }
        }
    }
    candidates.sort();
    let mut dirs: Vec<PathBuf> = candidates.into_iter().rev().map(|(_, bin)| bin).collect();
    if Path::new("/usr/local/pgsql/bin/initdb").is_file() {
        dirs.push(PathBuf::from("/usr/local/pgsql/bin"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let initdb = dir.join("initdb");
            if initdb.is_file() {
                let real = fs::canonicalize(&initdb).unwrap_or(initdb);
                if let Some(parent) = real.parent() {
                    dirs.push(parent.to_path_buf());
                    break;
                }
            }
        }
    }
    dirs
}

/// A client program (`psql`, `pg_basebackup`): the server's own from [`bin_dir`] when it has
/// one, else the first installed PostgreSQL's that does. Some builds are server-only (npm's
/// embedded-postgres has no psql and no pg_basebackup), and a newer client serves an older
/// server. Whether the answer is the server's own is the second value.
pub(crate) fn client_program(name: &str) -> io::Result<(PathBuf, bool)> {
    let bin = bin_dir()?;
    if bin.join(name).is_file() {
        return Ok((bin.join(name), true));
    }
    system_bin_dirs()
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .map(|p| (p, false))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{name} is neither in {} nor in an installed PostgreSQL (Debian/Ubuntu: \
                     apt-get install postgresql-client)",
                    bin.display()
                ),
            )
        })
}

/// A command for one of the server binaries (initdb, pg_ctl, postgres), wrapped in
/// `runuser -u postgres --` when we are root.
pub(crate) fn server_command(bin: &Path, name: &str) -> Command {
    as_server_user(&bin.join(name))
}

/// A command for any program that must run as the server's account when we are root
/// (PgBouncer refuses root too), wrapped in `runuser -u postgres --` then.
pub(crate) fn as_server_user(program: &Path) -> Command {
    if sys::is_root() {
        let mut cmd = Command::new("runuser");
        cmd.arg("-u").arg(pg_os_user()).arg("--").arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// The shell words that run `name` the way [`server_command`] does, for scripts.
pub(crate) fn server_command_words(bin: &Path, name: &str) -> Vec<String> {
    let path = bin.join(name).to_string_lossy().into_owned();
    if sys::is_root() {
        vec![
            "runuser".into(),
            "-u".into(),
            pg_os_user(),
            "--".into(),
            path,
        ]
    } else {
        vec![path]
    }
}

/// The uid and gid of the account the server runs as (only needed as root, to hand it the
/// directories we create).
pub(crate) fn pg_os_ids() -> io::Result<(u32, u32)> {
    let user = pg_os_user();
    let id = |flag: &str| -> io::Result<u32> {
        let out = run(
            Command::new("id").arg(flag).arg(&user),
            "id",
            Duration::from_secs(10),
        )
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "running as root, PostgreSQL must run as the account `{user}` \
                         (MOMOKO_PG_USER), which could not be looked up: {e}"
                ),
            )
        })?;
        out.stdout.trim().parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("`id {flag} {user}` printed junk"),
            )
        })
    };
    Ok((id("-u")?, id("-g")?))
}

/// Removes every `PG*` variable (PGHOST, PGPORT, PGDATA, PGPASSWORD, PGSERVICE, ...) so
/// that the caller's environment can't redirect our commands to another server or cluster.
pub(crate) fn scrub_pg_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
}

pub(crate) struct Captured {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Captured {
    /// stdout and stderr together, trimmed, for error messages.
    pub fn text(&self) -> String {
        let mut s = self.stdout.trim().to_owned();
        if !self.stderr.trim().is_empty() {
            if !s.is_empty() {
                s.push('\n');
            }
            s.push_str(self.stderr.trim());
        }
        s
    }
}

/// A fresh scratch path in the temp dir (capture files, scripts).
pub(crate) fn scratch_path(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("momoko-testpg-{tag}-{}-{n}", std::process::id()))
}

/// Runs `cmd` to completion within `timeout`, capturing its output; any exit status.
///
/// Output goes to files rather than pipes on purpose: `pg_ctl start` leaves a daemon behind,
/// and a daemon that inherited a pipe would keep a reader waiting forever. The child gets
/// its own process group so that on timeout everything it started (runuser's child too)
/// can be killed at once.
pub(crate) fn run_any(cmd: &mut Command, what: &str, timeout: Duration) -> io::Result<Captured> {
    use std::os::unix::process::CommandExt;
    let out_path = scratch_path("out");
    let err_path = scratch_path("err");
    let result = (|| {
        let out = File::create(&out_path)?;
        let err = File::create(&err_path)?;
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("could not run {what}: {e}")))?;
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                sys::send_signal(-(child.id() as i32), sys::SIGKILL);
                let _ = child.kill();
                let _ = child.wait();
                let partial = fs::read_to_string(&out_path).unwrap_or_default()
                    + &fs::read_to_string(&err_path).unwrap_or_default();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{what} did not finish within {timeout:?}; output:\n{partial}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(Captured {
            status,
            stdout: String::from_utf8_lossy(&fs::read(&out_path)?).into_owned(),
            stderr: String::from_utf8_lossy(&fs::read(&err_path)?).into_owned(),
        })
    })();
    let _ = fs::remove_file(&out_path);
    let _ = fs::remove_file(&err_path);
    result
}

/// Like [`run_any`], but a non-zero exit is an error quoting the command's output.
pub(crate) fn run(cmd: &mut Command, what: &str, timeout: Duration) -> io::Result<Captured> {
    let captured = run_any(cmd, what, timeout)?;
    if captured.status.success() {
        Ok(captured)
    } else {
        Err(io::Error::other(format!(
            "{what} failed ({}):\n{}",
            captured.status,
            captured.text()
        )))
    }
}

/// Runs an SQL script with psql against `dsn` and returns its unaligned, tuples-only
/// output (one row per line, columns separated by `|`), trimmed.
///
/// `env` adds variables such as `PGPASSWORD`; any `PG*` variables of the caller are
/// dropped first. The script stops at the first error, which is returned with psql's
/// message. Bounded: 10 s to connect, 120 s in all.
pub fn psql(dsn: &str, sql: &str, env: &[(&str, &str)]) -> io::Result<String> {
    let script = scratch_path("sql");
    fs::write(&script, sql)?;
    let mut cmd = Command::new(client_program("psql")?.0);
    scrub_pg_env(&mut cmd);
    cmd.env("PGCONNECT_TIMEOUT", "10")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(dsn)
        .arg("-f")
        .arg(&script);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let result = run(
        &mut cmd,
        &format!("psql on \"{dsn}\""),
        Duration::from_secs(120),
    );
    let _ = fs::remove_file(&script);
    Ok(result?.stdout.trim().to_owned())
}

/// Quotes a word for `sh`.
pub(crate) fn sh_quote(s: impl AsRef<OsStr>) -> String {
    let s = s.as_ref().to_string_lossy();
    format!("'{}'", s.replace('\'', r"'\''"))
}
