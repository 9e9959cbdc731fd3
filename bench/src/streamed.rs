//! The streamed read (issue 26): W4s, W4a's one-int4-column result read row by row as it
//! arrives (momoko's `stream`, tokio-postgres's `query_raw`). The peak memory of a 1M-row
//! read held and streamed is count.rs's (each variant in a child, its `VmHWM`).

use futures_util::TryStreamExt;

use crate::env::Env;
use crate::measure::{Meter, Sample};
use crate::tokio_side;

fn series(rows: u64) -> String {
    format!("SELECT i FROM generate_series(1, {rows}) AS i")
}

/// W4s, tokio-postgres: `query_raw` on a prepared statement, rows read off the stream.
pub fn tokio_raw(env: &Env) -> Result<Sample, String> {
    let sql = series(env.sizes.w4_series);
    tokio_side::runtime()
        .block_on(async {
            let client = tokio_side::connect(env).await?;
            let st = client.prepare(&sql).await?;
            let m = Meter::start();
            let rows = client.query_raw(&st, std::iter::empty::<i32>()).await?;
            futures_util::pin_mut!(rows);
            let (mut n, mut sum) = (0u64, 0i64);
            while let Some(row) = rows.try_next().await? {
                sum += i64::from(row.get::<_, i32>(0));
                n += 1;
            }
            std::hint::black_box(sum);
            Ok(m.finish(n))
        })
        .map_err(|e: tokio_postgres::Error| e.to_string())
}
