//! A managed database as the clouds hand it out: TLS with the server's certificate checked
//! against the provider's CA file and its name (`sslmode=verify-full sslrootcert=...`), and
//! a SCRAM login bound to that TLS session (`channel_binding=require`: SCRAM-SHA-256-PLUS,
//! so a man in the middle holding another valid certificate cannot relay the login). A
//! pool on the same DSN, so its reconnects are just as strict.
//!
//! The DSN comes from `MOMOKO_DSN`, else `MOMOKO_TEST_DSN`, e.g.
//! `MOMOKO_DSN="host=db.example.com dbname=app user=app password=... sslmode=verify-full
//! sslrootcert=/etc/ssl/db-ca.pem channel_binding=require"`. The tests run it against
//! momoko-testpg's TLS server with its throwaway CA.

use momoko::ioloop::IoLoop;
use momoko::{Error, Pool};

fn main() -> Result<(), Error> {
    let dsn = std::env::var("MOMOKO_DSN")
        .or_else(|_| std::env::var("MOMOKO_TEST_DSN"))
        .unwrap_or_default();
    IoLoop::current().run_sync(async move {
        let conn = momoko::connect(&dsn).await?;
        println!("TLS in use: {}", conn.ssl_in_use());
        for attr in ["protocol", "cipher", "key_bits", "library", "alpn"] {
            let value = conn.ssl_attribute(attr);
            println!("  {attr}: {}", value.as_deref().unwrap_or("(none)"));
        }
        let mut c = conn
            .execute(
                "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                (),
            )
            .await?;
        let row = c.fetchone().expect("one row");
        let (ssl, version): (bool, String) = (row.get(0), row.get(1));
        println!("the server says: ssl {ssl}, {version}");
        conn.close();

        let pool = Pool::builder(&dsn).size(2).build()?.connect().await?;
        let mut c = pool.execute("SELECT current_user", ()).await?;
        let user: String = c.fetchone().expect("one row").get(0);
        println!("pool of 2 over TLS, logged in as {user}");
        pool.close()?;
        Ok(())
    })
}
