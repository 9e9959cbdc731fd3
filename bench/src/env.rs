//! The run's settings: the servers' DSNs (from momoko-testpg's `MOMOKO_TEST_DSN*`), the
//! parts the protocol floor and pgbench need, and the size of every workload.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

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
    /// The TLS side of the run, from `MOMOKO_TEST_DSN_TLS`; None skips the TLS workloads.
    pub tls_dsn: Option<TlsDsn>,
    /// Set in the [`Env::over_tls`] copy only: `dsn` is then the TLS DSN, and tokio-postgres
    /// connects with this instead of `NoTls`.
    pub tls: Option<TokioTls>,
}

/// `MOMOKO_TEST_DSN_TLS` in the two forms the clients take.
#[derive(Debug, Clone)]
pub struct TlsDsn {
    /// As momoko-testpg gives it: `sslmode=verify-full sslrootcert=CA`, for momoko.
    pub momoko: String,
    /// For tokio-postgres, which knows neither verify-full nor sslrootcert: the same DSN
    /// with `sslmode=require`; the verification is its rustls configuration's.
    pub tokio: String,
    /// The CA file (`sslrootcert`).
    pub root_cert: PathBuf,
}

/// tokio-postgres's TLS: one rustls configuration (0.23, the ring provider, the CA of
/// `sslrootcert`, the certificate and host name checked: verify-full) shared by every
/// connection of the process, as an application would hold it.
#[derive(Clone)]
pub struct TokioTls {
    pub dsn: String,
    /// Holds the configuration in an `Arc`: cloning it per connection shares it.
    pub make: tokio_postgres_rustls::MakeRustlsConnect,
}

impl std::fmt::Debug for TokioTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokioTls")
            .field("dsn", &self.dsn)
            .finish_non_exhaustive()
    }
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
    /// R1: rows committed (in transactions of 1,000) and consumed from a slot per run.
    pub repl: u64,
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
            repl: 1_000_000,
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
            repl: 100_000,
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
            tls_dsn: match std::env::var("MOMOKO_TEST_DSN_TLS") {
                Ok(d) => Some(TlsDsn::parse(&d)?),
                Err(_) => None,
            },
            tls: None,
        })
    }

    /// This environment with `dsn` the TLS DSN and tokio-postgres's rustls configuration
    /// built; None without `MOMOKO_TEST_DSN_TLS`.
    pub fn over_tls(&self) -> Result<Option<Env>, String> {
        let Some(t) = &self.tls_dsn else {
            return Ok(None);
        };
        Ok(Some(Env {
            dsn: t.momoko.clone(),
            tls: Some(TokioTls {
                dsn: t.tokio.clone(),
                make: tokio_postgres_rustls::MakeRustlsConnect::new(rustls_config(&t.root_cert)?),
            }),
            ..self.clone()
        }))
    }
}

impl TlsDsn {
    fn parse(dsn: &str) -> Result<TlsDsn, String> {
        let kv = parse_kv(dsn);
        if kv.get("sslmode").map(String::as_str) != Some("verify-full") {
            return Err(format!(
                "MOMOKO_TEST_DSN_TLS must say sslmode=verify-full (both clients then verify \
                 alike): {dsn}"
            ));
        }
        let root_cert = kv
            .get("sslrootcert")
            .map(PathBuf::from)
            .ok_or_else(|| format!("MOMOKO_TEST_DSN_TLS has no sslrootcert: {dsn}"))?;
        let tokio = dsn
            .split_whitespace()
            .filter(|p| !p.starts_with("sslmode=") && !p.starts_with("sslrootcert="))
            .chain(["sslmode=require"])
            .collect::<Vec<_>>()
            .join(" ");
        Ok(TlsDsn {
            momoko: dsn.to_owned(),
            tokio,
            root_cert,
        })
    }
}

/// What momoko builds for `sslmode=verify-full sslrootcert=CA` (src/session/tls.rs): the ring
/// provider, TLS 1.2 and 1.3, rustls's WebPKI verifier (chain and host name) over the CA.
fn rustls_config(ca: &std::path::Path) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let bad = |e: &dyn std::fmt::Display| format!("sslrootcert {}: {e}", ca.display());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| bad(&e))? {
        roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    }
    // The process's crypto provider (ring, from the rustls features), as momoko takes it.
    let verifier = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|e| bad(&e))?;
    Ok(rustls::ClientConfig::builder_with_protocol_versions(&[
        &rustls::version::TLS12,
        &rustls::version::TLS13,
    ])
    .with_webpki_verifier(verifier)
    .with_no_client_auth())
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
