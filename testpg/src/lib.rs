//! A throwaway PostgreSQL cluster for momoko's tests, examples and benchmarks.
//!
//! [`TestServer::start`] creates a private cluster (initdb in a fresh temp directory,
//! 127.0.0.1 on a free port plus a private Unix socket directory) with the roles every test
//! expects, and removes it again on drop. [`TestServer::shared`] gives the whole test
//! process one server, or the existing one named by `MOMOKO_TEST_DSN`. The crate never
//! touches a server or directory it did not create, and depends on nothing but std and
//! rcgen (for the certificates of the TLS side).
//!
//! | role | login | over |
//! | --- | --- | --- |
//! | `momoko` | trust, superuser | TCP (plain text or TLS) and the Unix socket |
//! | `momoko_md5` | password `md5pass`, stored and checked as MD5 | all three |
//! | `momoko_scram` | password `scrampass`, SCRAM-SHA-256 | all three |
//! | `momoko_cert` | client certificate with CN `momoko_cert` (pg_hba `cert`) | TLS only |
//! | `momoko_scram_tls` | password `scramtlspass`, SCRAM-SHA-256 | TLS only |
//! | `momoko_tls_only` | trust | TLS only |
//! | `momoko_plain_only` | trust | plain-text TCP and the Unix socket only |
//!
//! The database `momoko_test` is owned by `momoko` and has the hstore extension. The
//! server runs with `ssl = on`, a certificate for `localhost` and `127.0.0.1` from a
//! throwaway CA made at start-up, and that CA as `ssl_ca_file` (client certificates it signed are trusted): see [`TlsInfo`] for the
//! files and DSNs ([`ServerInfo::tls`], None for a server named by `MOMOKO_TEST_DSN`
//! alone, in which case tests of TLS skip).
//!
//! For replication and pooling, [`Replicated::start`] makes a primary with a streaming
//! standby (two clusters, one `initdb` and one base backup), and [`Bouncer::start`] a
//! PgBouncer in front of any of these servers; both are private to the test that starts
//! them, and removed like a [`TestServer`]. For network faults (root only),
//! [`NetnsServer::start`] runs a server in a network namespace of its own behind a veth pair
//! whose faults the test applies and lifts (partition, half-open, loss, rate limit), and
//! [`NetnsCluster::start`] a primary and its synchronous standby so, joined by a link of
//! their own.
//!
//! ```no_run
//! let info = momoko_testpg::TestServer::shared();
//! assert_eq!(info.psql("select 1").unwrap(), "1");
//! ```

mod bouncer;
mod cmd;
mod conninfo;
mod netns;
mod netns_cluster;
mod replica;
mod server;
mod shared;
mod sys;
mod tls;

pub use bouncer::{pgbouncer_bin, pgbouncer_version, Bouncer, BouncerOptions, PoolMode};
pub use cmd::{bin_dir, psql};
pub use netns::{Fault, NetnsServer};
pub use netns_cluster::NetnsCluster;
pub use replica::{Replicated, REPLICATION_TIMEOUT, STANDBY_NAME};
pub use server::{
    running_in, stop_dir, ServerInfo, StopMode, TestServer, DBNAME, ENV_FILE, MD5_PASSWORD,
    MD5_USER, SCRAM_PASSWORD, SCRAM_USER, USER,
};
pub use tls::{
    TlsInfo, CERT_USER, PLAIN_ONLY_USER, SCRAM_TLS_PASSWORD, SCRAM_TLS_USER, SERVER_NAMES,
    TLS_ONLY_USER, WRONG_HOST_NAME,
};

#[doc(hidden)]
pub mod __private {
    //! For the momoko-testpg binary only.
    pub use crate::sys::{catch_termination_signals, send_signal, take_signal};
}
