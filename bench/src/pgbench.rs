//! pgbench, libpq's own load generator, as the "as fast as C" contender: custom scripts
//! (`-f`), `-M simple|extended|prepared`, `\startpipeline` for the one-Sync batch, `-T`
//! seconds. Its throughput is its own "tps … without initial connection time"; its CPU is
//! the child's rusage.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::env::Env;
use crate::measure::{cpu_time, Sample};

/// One pgbench invocation.
pub struct Run {
    /// The script's text.
    pub script: String,
    /// Statements per transaction of the script (ops = transactions × this).
    pub stmts: u64,
    /// `-M`.
    pub mode: &'static str,
    /// `-c`.
    pub clients: u32,
    /// `-j`.
    pub threads: u32,
}

fn script_path(text: &str) -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("momoko-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // One file per distinct script: the name is the text's hash.
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    let p = dir.join(format!("{:016x}.sql", h.finish()));
    if !p.exists() {
        std::fs::write(&p, text)?;
    }
    Ok(p)
}

/// Removes the scripts' directory.
pub fn cleanup() {
    let dir = std::env::temp_dir().join(format!("momoko-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(dir);
}

/// The `SELECT 1` script.
pub fn select1() -> String {
    "SELECT 1;\n".to_owned()
}

/// 100 `SELECT 1` in one pipeline: one Sync at `\endpipeline`.
pub fn pipeline100() -> String {
    let mut s = String::from("\\startpipeline\n");
    for _ in 0..100 {
        s.push_str("SELECT 1;\n");
    }
    s.push_str("\\endpipeline\n");
    s
}

/// pgbench's built-in select-only transaction (`-S`), as a script.
pub fn select_only() -> String {
    "\\set aid random(1, 100000)\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n"
        .to_owned()
}

/// `pgbench -i -s 1`: the tables select-only reads (100,000 accounts), made once per run.
pub fn init(env: &Env) -> Result<(), String> {
    let Some(pgbench) = &env.pgbench else {
        return Err("pgbench not found (MOMOKO_PG_BIN, /usr/lib/postgresql/15/bin, PATH)".into());
    };
    let out = Command::new(pgbench)
        .env("PGSSLMODE", "disable")
        .args([
            "-i",
            "-s",
            "1",
            "-q",
            "-h",
            &env.host,
            "-p",
            &env.port.to_string(),
        ])
        .args(["-U", &env.user, &env.dbname])
        .output()
        .map_err(|e| format!("pgbench -i: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pgbench -i failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

pub fn run(env: &Env, r: &Run) -> Result<Sample, String> {
    let Some(pgbench) = &env.pgbench else {
        return Err("pgbench not found (MOMOKO_PG_BIN, /usr/lib/postgresql/15/bin, PATH)".into());
    };
    let script = script_path(&r.script).map_err(|e| format!("pgbench script: {e}"))?;
    let before = cpu_time(libc::RUSAGE_CHILDREN);
    let out = Command::new(pgbench)
        // Plain text, as every other contender of these workloads.
        .env("PGSSLMODE", "disable")
        .args(["-n", "-h", &env.host, "-p", &env.port.to_string()])
        .args(["-U", &env.user, "-M", r.mode])
        .args(["-c", &r.clients.to_string(), "-j", &r.threads.to_string()])
        .args(["-T", &env.sizes.pgbench_secs.to_string()])
        .arg("-f")
        .arg(&script)
        .arg(&env.dbname)
        .output()
        .map_err(|e| format!("pgbench: {e}"))?;
    let after = cpu_time(libc::RUSAGE_CHILDREN);
    let sys = after.1.saturating_sub(before.1);
    let cpu = after.0.saturating_sub(before.0) + sys;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "pgbench failed: {}{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let field = |prefix: &str| -> Option<f64> {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    let tx = field("number of transactions actually processed:")
        .ok_or_else(|| format!("pgbench output without a transaction count: {stdout}"))?;
    let tps = field("tps =").ok_or_else(|| format!("pgbench output without tps: {stdout}"))?;
    let ops = (tx as u64) * r.stmts;
    Ok(Sample {
        ops,
        // pgbench's own clock: the time its transactions took, connection time excluded.
        wall: Duration::from_secs_f64(tx / tps.max(1e-9)),
        cpu,
        sys,
    })
}
