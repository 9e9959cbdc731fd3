//! tokio-postgres's side: a fresh current-thread runtime per run (the single-threaded
//! shape momoko has), its connection task spawned on it, and the idiomatic calls:
//! `simple_query` for the simple protocol, `prepare` once then `query` for prepared. Over
//! TLS ([`Env::over_tls`]) it connects through tokio-postgres-rustls on the same rustls and
//! provider as momoko.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::try_join_all;
use futures_util::SinkExt;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage, Statement};

use crate::env::Env;
use crate::measure::{rss_bytes, Meter, Sample};
use crate::workloads::{Proto, IN_FLIGHT, MIXED_SQL, POOL_SIZE};

type Res<T> = Result<T, tokio_postgres::Error>;

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread tokio runtime")
}

/// A client of `env`'s server, its connection task spawned: plain text, or TLS when `env`
/// is the [`Env::over_tls`] one.
pub(crate) async fn connect(env: &Env) -> Res<Client> {
    let client = match &env.tls {
        None => {
            let (client, connection) = tokio_postgres::connect(&env.dsn, NoTls).await?;
            tokio::spawn(connection);
            client
        }
        Some(tls) => {
            let (client, connection) = tokio_postgres::connect(&tls.dsn, tls.make.clone()).await?;
            tokio::spawn(connection);
            client
        }
    };
    Ok(client)
}

fn with_client<F, Fut>(env: &Env, body: F) -> Result<Sample, String>
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = Res<Sample>>,
{
    runtime()
        .block_on(async {
            let client = connect(env).await?;
            body(client).await
        })
        .map_err(|e| e.to_string())
}

/// One `SELECT 1`, its value read, as momoko's side reads it.
async fn select1(client: &Client, st: Option<&Statement>) -> Res<i64> {
    Ok(match st {
        None => {
            let msgs = client.simple_query("SELECT 1").await?;
            match msgs.first() {
                Some(SimpleQueryMessage::Row(r)) => r.get(0).map_or(0, |v| v.len() as i64),
                _ => 0,
            }
        }
        Some(st) => {
            let rows = client.query(st, &[]).await?;
            rows.first().map_or(0, |r| i64::from(r.get::<_, i32>(0)))
        }
    })
}

async fn prepared_if(client: &Client, proto: Proto, sql: &str) -> Res<Option<Statement>> {
    Ok(match proto {
        Proto::Simple => None,
        Proto::Prepared => Some(client.prepare(sql).await?),
    })
}

pub fn w1(env: &Env, proto: Proto) -> Result<Sample, String> {
    let n = env.sizes.w1;
    with_client(env, |client| async move {
        let st = prepared_if(&client, proto, "SELECT 1").await?;
        let m = Meter::start();
        for _ in 0..n {
            select1(&client, st.as_ref()).await?;
        }
        Ok(m.finish(n))
    })
}

pub fn w2(env: &Env, proto: Proto) -> Result<Sample, String> {
    let n = env.sizes.w2;
    with_client(env, |client| async move {
        let st = prepared_if(&client, proto, "SELECT 1").await?;
        let per = n / IN_FLIGHT;
        let m = Meter::start();
        try_join_all((0..IN_FLIGHT).map(|_| async {
            for _ in 0..per {
                select1(&client, st.as_ref()).await?;
            }
            Res::Ok(())
        }))
        .await?;
        Ok(m.finish(per * IN_FLIGHT))
    })
}

/// W2b: tokio-postgres has no one-Sync pipeline; its one-round-trip form of 100 statements
/// is one simple Query holding all of them (one implicit transaction, as a batch).
pub fn w2b(env: &Env, reps: u64) -> Result<Sample, String> {
    let sql = vec!["SELECT 1"; 100].join("; ");
    with_client(env, |client| async move {
        let m = Meter::start();
        for _ in 0..reps {
            let msgs = client.simple_query(&sql).await?;
            std::hint::black_box(msgs.len());
        }
        Ok(m.finish(reps * 100))
    })
}

/// W3: `POOL_SIZE` connections, one caller each (the in-flight count of a momoko pool of
/// that size without pipelining).
pub fn w3(env: &Env, proto: Proto, per_conn: u64) -> Result<Sample, String> {
    let n = env.sizes.w3;
    runtime()
        .block_on(async {
            let clients = try_join_all((0..POOL_SIZE).map(|_| connect(env))).await?;
            let mut sts = Vec::new();
            for c in &clients {
                sts.push(prepared_if(c, proto, "SELECT 1").await?);
            }
            let callers = POOL_SIZE as u64 * per_conn;
            let per = n / callers;
            let m = Meter::start();
            try_join_all((0..callers as usize).map(|i| {
                let (client, st) = (&clients[i % POOL_SIZE], sts[i % POOL_SIZE].as_ref());
                async move {
                    for _ in 0..per {
                        select1(client, st).await?;
                    }
                    Res::Ok(())
                }
            }))
            .await?;
            Ok(m.finish(per * callers))
        })
        .map_err(|e: tokio_postgres::Error| e.to_string())
}

/// W4: prepared (binary results, the way tokio-postgres's `query` always reads).
pub fn w4_series(env: &Env) -> Result<Sample, String> {
    let sql = format!(
        "SELECT i FROM generate_series(1, {}) AS i",
        env.sizes.w4_series
    );
    with_client(env, |client| async move {
        let st = client.prepare(&sql).await?;
        let m = Meter::start();
        let rows = client.query(&st, &[]).await?;
        let mut sum = 0i64;
        for r in &rows {
            sum += i64::from(r.get::<_, i32>(0));
        }
        std::hint::black_box(sum);
        Ok(m.finish(rows.len() as u64))
    })
}

pub fn w4_mixed(env: &Env) -> Result<Sample, String> {
    let sql = MIXED_SQL.replace("$N", &env.sizes.w4_mixed.to_string());
    with_client(env, |client| async move {
        let st = client.prepare(&sql).await?;
        let m = Meter::start();
        let rows = client.query(&st, &[]).await?;
        for row in &rows {
            let v = (
                row.get::<_, i16>(0),
                row.get::<_, i32>(1),
                row.get::<_, i64>(2),
                row.get::<_, f32>(3),
                row.get::<_, f64>(4),
                row.get::<_, bool>(5),
                row.get::<_, String>(6),
                row.get::<_, String>(7),
                row.get::<_, Vec<u8>>(8),
                row.get::<_, Option<String>>(9),
            );
            std::hint::black_box(v);
        }
        Ok(m.finish(rows.len() as u64))
    })
}

pub fn w5_insert(env: &Env, stmts: Arc<Vec<String>>, rows: u64) -> Result<Sample, String> {
    with_client(env, |client| async move {
        client.batch_execute(crate::workloads::TRUNCATE).await?;
        let m = Meter::start();
        for s in stmts.iter() {
            client.simple_query(s).await?;
        }
        Ok(m.finish(rows))
    })
}

pub fn w5_copy(env: &Env, chunks: Arc<Vec<Bytes>>, rows: u64) -> Result<Sample, String> {
    with_client(env, |client| async move {
        client.batch_execute(crate::workloads::TRUNCATE).await?;
        let m = Meter::start();
        let sink = client.copy_in(crate::workloads::COPY_SQL).await?;
        futures_util::pin_mut!(sink);
        for c in chunks.iter() {
            sink.feed(c.clone()).await?;
        }
        let n = sink.finish().await?;
        assert_eq!(n, rows, "COPY stored a different number of rows");
        Ok(m.finish(rows))
    })
}

pub fn w6(dsn: &str, n: u64) -> Result<Sample, String> {
    runtime()
        .block_on(async {
            let m = Meter::start();
            for _ in 0..n {
                let (client, connection) = tokio_postgres::connect(dsn, NoTls).await?;
                let task = tokio::spawn(connection);
                // Dropping the client makes the connection send Terminate and end.
                drop(client);
                let _ = task.await;
            }
            Ok(m.finish(n))
        })
        .map_err(|e: tokio_postgres::Error| e.to_string())
}

/// Memory: resident growth per idle connection of `n` clients, each having run a query.
pub fn idle_clients(env: &Env) -> Result<u64, String> {
    let n = env.sizes.idle as usize;
    runtime()
        .block_on(async {
            let warm = connect(env).await?;
            warm.simple_query("SELECT 1").await?;
            let before = rss_bytes();
            let clients = try_join_all((0..n).map(|_| connect(env))).await?;
            try_join_all(clients.iter().map(|c| c.simple_query("SELECT 1"))).await?;
            let after = rss_bytes();
            drop(clients);
            Ok(after.saturating_sub(before) / n as u64)
        })
        .map_err(|e: tokio_postgres::Error| e.to_string())
}

/// Over TLS: the protocol version and cipher the server reports for this client's
/// connection (`pg_stat_ssl`), or an error when it is not on TLS.
pub fn tls_check(env: &Env) -> Result<String, String> {
    runtime()
        .block_on(async {
            let client = connect(env).await?;
            let row = client
                .query_one(crate::workloads::TLS_STAT_SQL, &[])
                .await?;
            Ok(row.get::<_, String>(0))
        })
        .map_err(|e: tokio_postgres::Error| e.to_string())
        .and_then(|what| {
            if what.starts_with("TLS") {
                Ok(what)
            } else {
                Err(format!("tokio-postgres is not on TLS ({what})"))
            }
        })
}

/// The streamed read: `query_raw` on the prepared statement, each row read as it comes and
/// dropped (none kept).
pub fn w4_stream(env: &Env) -> Result<Sample, String> {
    use futures_util::TryStreamExt;
    let sql = format!(
        "SELECT i FROM generate_series(1, {}) AS i",
        env.sizes.w4_series
    );
    with_client(env, |client| async move {
        let st = client.prepare(&sql).await?;
        let m = Meter::start();
        let rows = client.query_raw(&st, std::iter::empty::<i32>()).await?;
        futures_util::pin_mut!(rows);
        let (mut n, mut sum) = (0u64, 0i64);
        while let Some(r) = rows.try_next().await? {
            sum += i64::from(r.get::<_, i32>(0));
            n += 1;
        }
        std::hint::black_box(sum);
        Ok(m.finish(n))
    })
}
