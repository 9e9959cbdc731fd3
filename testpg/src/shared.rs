//! The process-wide server behind [`crate::TestServer::shared`]: the one named by
//! `MOMOKO_TEST_DSN`, or one started on first use and torn down by an atexit hook, so that
//! a test binary leaves nothing behind even when tests failed. It must never stop a server
//! it did not start.

use std::sync::OnceLock;

use crate::server::{ServerInfo, TestServer};
use crate::sys;

static SHARED: OnceLock<Result<ServerInfo, String>> = OnceLock::new();
static SHARED_SERVER: OnceLock<TestServer> = OnceLock::new();

pub(crate) fn shared() -> &'static ServerInfo {
    let result = SHARED.get_or_init(|| {
        if let Some(info) = ServerInfo::from_env() {
            return Ok(info);
        }
        let server = TestServer::start().map_err(|e| e.to_string())?;
        let info = server.info().clone();
        if SHARED_SERVER.set(server).is_ok() {
            sys::at_exit(stop_shared);
        }
        Ok(info)
    });
    // The error is kept rather than retried: every test would otherwise spend seconds
    // failing the same way.
    match result {
        Ok(info) => info,
        Err(e) => panic!(
            "momoko-testpg: could not start the shared test server: {e}\n\
             (set MOMOKO_TEST_DSN to use an existing server instead)"
        ),
    }
}

// Runs from libc's exit(), i.e. after main returned or std::process::exit (the test
// harness's exit path when tests failed). A panic must not unwind into C.
extern "C" fn stop_shared() {
    let _ = std::panic::catch_unwind(|| {
        if let Some(server) = SHARED_SERVER.get() {
            server.shutdown();
        }
    });
}
