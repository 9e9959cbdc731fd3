//! tls_handshake: N TLS connects of momoko, full handshakes or resumed ones, for counting
//! their instructions under callgrind (issue 26: a resumed reconnect should cost at most
//! half of a full one).
//!
//! ```text
//! momoko-testpg run -- valgrind --tool=callgrind --separate-threads=yes \
//!     target/release/tls_handshake full|resumed|unresumed|plain N
//! ```
//!
//! PostgreSQL never resumes a TLS session (it turns tickets and its session cache off), so
//! the connects go through a TLS end point of this process's own (tcproxy's `TlsRelay`,
//! rustls's server with its default session tickets) in front of the throwaway server,
//! presenting momoko-testpg's server certificate; the relay runs on threads of its own, so
//! the client's count is the main thread's alone (`--separate-threads=yes`, file `-01`).
//! `full`: each connect is a new connection (a configuration of its own, nothing to
//! resume); `resumed`: one connection connected again and again (its configuration, and so
//! its session cache, is kept); `plain`: the same through the relay's upstream in plain text,
//! for what a connect costs without TLS; `unresumed`: one connection connected again and
//! again to PostgreSQL itself over TLS (its configuration kept, every handshake full). One warm connect comes first in every mode. Each
//! connect runs `SELECT 1` and closes. Counts per connect are the difference of two runs
//! of different N, so that start-up cancels out.

use std::net::ToSocketAddrs;
use std::process::ExitCode;

use momoko::ioloop::IoLoop;
use momoko::{Connection, Error};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, n) = match args.as_slice() {
        [m, n] if ["full", "resumed", "plain", "unresumed"].contains(&m.as_str()) => {
            match n.parse::<u32>() {
                Ok(n) => (m.clone(), n),
                Err(_) => return usage(),
            }
        }
        _ => return usage(),
    };
    match run(&mode, n) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tls_handshake: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: tls_handshake full|resumed|unresumed|plain N   (under momoko-testpg run)");
    ExitCode::from(2)
}

fn run(mode: &str, n: u32) -> Result<(), String> {
    let plain = std::env::var("MOMOKO_TEST_DSN").map_err(|_| "MOMOKO_TEST_DSN is not set")?;
    let dir = std::env::var("MOMOKO_TEST_TLS_DIR").map_err(|_| "MOMOKO_TEST_TLS_DIR is not set")?;
    let dir = std::path::Path::new(&dir);
    let config = momoko::Config::parse(&plain).map_err(|e| e.to_string())?;
    let host = config
        .get_hosts()
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let upstream = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("the server's address does not resolve")?;
    let read = |f: &str| std::fs::read(dir.join(f)).map_err(|e| format!("{f}: {e}"));
    let relay = tcproxy::TlsRelay::start(
        "127.0.0.1:0".parse().unwrap(),
        upstream,
        &read("server.crt")?,
        &read("server.key")?,
        tcproxy::Negotiation::Postgres,
    )
    .map_err(|e| e.to_string())?;
    let user = config.get_user().unwrap_or("postgres").to_owned();
    let dbname = config.get_dbname().unwrap_or("postgres").to_owned();
    let dsn = if mode == "unresumed" {
        // PostgreSQL itself, which never resumes: the configuration is kept (built once),
        // every handshake is a full one.
        format!(
            "host=localhost hostaddr={} port={} user={user} dbname={dbname} \
             sslmode=verify-full sslrootcert='{}'",
            upstream.ip(),
            upstream.port(),
            dir.join("ca.crt").display()
        )
    } else if mode == "plain" {
        format!(
            "hostaddr={} port={} user={user} dbname={dbname} sslmode=disable",
            upstream.ip(),
            upstream.port()
        )
    } else {
        format!(
            "host=localhost hostaddr=127.0.0.1 port={} user={user} dbname={dbname} \
             sslmode=verify-full sslrootcert='{}'",
            relay.local_addr().port(),
            dir.join("ca.crt").display()
        )
    };
    let mode = mode.to_owned();
    IoLoop::new().run_sync(async move {
        let kept = Connection::new(&dsn);
        once(&kept, None).await?;
        for _ in 0..n {
            match mode.as_str() {
                "resumed" => once(&kept, Some(true)).await?,
                "full" => once(&Connection::new(&dsn), Some(false)).await?,
                _ => once(&Connection::new(&dsn), None).await?,
            }
        }
        Ok::<(), String>(())
    })?;
    let st = relay.stats();
    eprintln!("tls_handshake: {} connects ({st:?})", n + 1);
    Ok(())
}

/// Connects `conn`, checks how its TLS session began, runs `SELECT 1`, closes it.
async fn once(conn: &Connection, resumed: Option<bool>) -> Result<(), String> {
    let text = |e: Error| e.to_string();
    conn.connect().await.map_err(text)?;
    if resumed.is_some() && conn.tls_resumed() != resumed {
        return Err(format!(
            "expected tls_resumed {resumed:?}, got {:?}",
            conn.tls_resumed()
        ));
    }
    conn.execute("SELECT 1", ()).await.map_err(text)?;
    conn.close();
    Ok(())
}
