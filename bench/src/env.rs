//! The run's settings: the servers' DSNs (from momoko-testpg's `MOMOKO_TEST_DSN*`), the
//! parts the protocol floor and pgbench need, and the size of every workload.

use std::collections::HashMap;
use std::path::PathBuf;

/// Where the server is and how big the work is; shared by every contender.
#[derive(Debug, Clone)]
pub struct Env {
    pub dsn: String,
    pub dsn_md5: Option<String>,
    pub dsn_scram: Option<String>,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
    pub pgbench: Option<PathBuf>,
    pub sizes: Sizes,
}

/// How much work one run of each workload does.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// W1: sequential queries per run.
    pub w1: u64,
    /// W2: queries per run (100 in flight).
    pub w2: u64,
    /// W2b: round trips of 100 statements per run.
    pub w2b: u64,
    /// W3: queries per run through 4 connections.
    pub w3: u64,
    /// W4: rows of the `generate_series` result.
    pub w4_series: u64,
    /// W4: rows of the 10-column result.
    pub w4_mixed: u64,
    /// W5: rows inserted per run.
    pub w5: u64,
    /// W6: connections per run (trust and MD5; SCRAM does a third).
    pub w6: u64,
    /// Memory: idle pooled connections.
    pub idle: u64,
    /// pgbench's `-T`, in seconds.
    pub pgbench_secs: u32,
}

impl Sizes {
    /// The sizes.
    pub fn full() -> Sizes {
        Sizes {
            w1: 20_000,
            w2: 200_000,
            w2b: 2_000,
            w3: 100_000,
            w4_series: 1_000_000,
            w4_mixed: 100_000,
            w5: 1_000_000,
            w6: 300,
            idle: 100,
            pgbench_secs: 2,
        }
    }

    /// About a tenth of the work: a smoke run, not a measurement.
    pub fn quick() -> Sizes {
        Sizes {
            w1: 2_000,
            w2: 20_000,
            w2b: 200,
            w3: 10_000,
            w4_series: 100_000,
            w4_mixed: 10_000,
            w5: 100_000,
            w6: 60,
            idle: 100,
            pgbench_secs: 1,
        }
    }
}

impl Env {
    /// Reads the DSNs momoko-testpg exports; `MOMOKO_TEST_DSN` is required.
    pub fn from_environment(sizes: Sizes) -> Result<Env, String> {
        let dsn = std::env::var("MOMOKO_TEST_DSN").map_err(|_| {
            "MOMOKO_TEST_DSN is not set: run under `momoko-testpg run --` (make bench does) \
             or point it at a server (trust login, a database you may create tables in)"
                .to_owned()
        })?;
        let kv = parse_kv(&dsn);
        let get = |k: &str, d: &str| kv.get(k).cloned().unwrap_or_else(|| d.to_owned());
        let port = get("port", "5432")
            .parse()
            .map_err(|_| format!("MOMOKO_TEST_DSN has a bad port: {dsn}"))?;
        // The plain-text workloads: the peers (tokio-postgres with NoTls, the floor) speak
        // plain text, so momoko must too, though the test server offers TLS.
        let plain = |d: String| format!("{d} sslmode=disable");
        Ok(Env {
            host: get("host", "127.0.0.1"),
            port,
            user: get("user", "postgres"),
            dbname: get("dbname", "postgres"),
            dsn_md5: std::env::var("MOMOKO_TEST_DSN_MD5").ok().map(plain),
            dsn_scram: std::env::var("MOMOKO_TEST_DSN_SCRAM").ok().map(plain),
            pgbench: find_pgbench(),
            sizes,
            dsn: plain(dsn),
        })
    }
}

/// `key=value key=value` DSN pairs (no quoting: momoko-testpg's DSNs have none).
fn parse_kv(dsn: &str) -> HashMap<String, String> {
    dsn.split_whitespace()
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect()
}

/// pgbench from `MOMOKO_PG_BIN` (momoko-testpg exports it), the usual Debian place, or PATH.
fn find_pgbench() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(bin) = std::env::var_os("MOMOKO_PG_BIN") {
        candidates.push(PathBuf::from(bin).join("pgbench"));
    }
    candidates.push("/usr/lib/postgresql/15/bin/pgbench".into());
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("pgbench")));
    }
    candidates.into_iter().find(|p| p.is_file())
}
