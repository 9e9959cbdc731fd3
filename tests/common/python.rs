//! A Python that can import psycopg2, for the tests that compare momoko with psycopg2
//! itself (psycopg2_compat, typed): the system's, or a virtualenv under the target directory
//! with psycopg2-binary from PyPI. Every command runs with a deadline.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Runs `cmd` with a deadline; `None` when it could not start, failed or ran too long.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Option<String> {
    run_bounded_quiet(cmd, limit, false)
}

/// `run_bounded`, saying nothing when the command fails (for probes expected to fail).
fn run_bounded_quiet(cmd: &mut Command, limit: Duration, quiet: bool) -> Option<String> {
    use std::io::Read;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    // Both pipes are drained while the child runs: one that printed more than a pipe holds
    // (64 KiB) would otherwise block on its write and never exit.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = drain(Box::new(child.stdout.take()?));
    let stderr = drain(Box::new(child.stderr.take()?));
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                eprintln!("psycopg2: {cmd:?} ran over {limit:?}; killed");
                return None;
            }
        }
    };
    let (stdout, stderr) = (stdout.join().ok()?, stderr.join().ok()?);
    if !status.success() {
        if quiet {
            return None;
        }
        eprintln!(
            "psycopg2: {cmd:?} failed: {}",
            String::from_utf8_lossy(&stderr).trim()
        );
        return None;
    }
    Some(String::from_utf8_lossy(&stdout).into_owned())
}

fn has_psycopg2(python: &Path) -> bool {
    run_bounded_quiet(
        Command::new(python).args(["-c", "import psycopg2"]),
        Duration::from_secs(30),
        true,
    )
    .is_some()
}

/// A Python that can import psycopg2, or the reason there is none.
pub fn python_with_psycopg2() -> Result<PathBuf, String> {
    let system = PathBuf::from("python3");
    if run_bounded(
        Command::new(&system).arg("--version"),
        Duration::from_secs(10),
    )
    .is_none()
    {
        return Err("python3 is not installed".into());
    }
    if has_psycopg2(&system) {
        return Ok(system);
    }
    let venv = target_dir().join("psycopg2-venv");
    let python = venv.join("bin/python");
    if python.exists() && has_psycopg2(&python) {
        return Ok(python);
    }
    eprintln!("psycopg2: installing psycopg2-binary into {venv:?}");
    if !python.exists()
        && run_bounded(
            Command::new(&system).args(["-m", "venv"]).arg(&venv),
            Duration::from_secs(120),
        )
        .is_none()
    {
        return Err(format!(
            "could not create a virtualenv in {venv:?} (python3-venv missing?)"
        ));
    }
    if run_bounded(
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "psycopg2-binary",
        ]),
        Duration::from_secs(300),
    )
    .is_none()
    {
        return Err("pip could not install psycopg2-binary (no network?)".into());
    }
    if has_psycopg2(&python) {
        Ok(python)
    } else {
        Err("psycopg2 does not import after installing psycopg2-binary".into())
    }
}
