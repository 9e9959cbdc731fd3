//! A throwaway PostgreSQL cluster for momoko's tests, examples and benchmarks.
//!
//! [`TestServer::start`] creates a private cluster (initdb in a fresh temp directory,
//! 127.0.0.1 on a free port plus a private Unix socket directory) with the roles every test
//! expects, and removes it again on drop. [`TestServer::shared`] gives the whole test
//! process one server, or the existing one named by `MOMOKO_TEST_DSN`. The crate never
//! touches a server or directory it did not create, and depends on nothing but std.
//!
//! | role | login | over |
//! | --- | --- | --- |
//! | `momoko` | trust, superuser | TCP and the Unix socket |
//! | `momoko_md5` | password `md5pass`, stored and checked as MD5 | both |
//! | `momoko_scram` | password `scrampass`, SCRAM-SHA-256 | both |
//!
//! The database `momoko_test` is owned by `momoko` and has the hstore extension.
//!
//! ```no_run
//! let info = momoko_testpg::TestServer::shared();
//! assert_eq!(info.psql("select 1").unwrap(), "1");
//! ```

mod cmd;
mod conninfo;
mod server;
mod shared;
mod sys;

pub use cmd::{bin_dir, psql};
pub use server::{
    running_in, stop_dir, ServerInfo, StopMode, TestServer, DBNAME, ENV_FILE, MD5_PASSWORD,
    MD5_USER, SCRAM_PASSWORD, SCRAM_USER, USER,
};

#[doc(hidden)]
pub mod __private {
    //! For the momoko-testpg binary only.
    pub use crate::sys::{catch_termination_signals, send_signal, take_signal};
}
