//! A primary with one streaming standby, for tests of host lists, `target_session_attrs`
//! and failover: [`Replicated`]. It owns the pair's replication set-up (the primary's WAL
//! and synchronous-replication settings, the base backup, the slot, the standby's settings)
//! and the waits on replication state (streaming, replay, promotion). Each side is an
//! ordinary [`TestServer`] with its own directory, watchdog and cleanup; this module must
//! never reach into a server it did not create, nor wait on anything without a bound.

use std::io;
use std::time::Duration;

use crate::server::{ServerInfo, StopMode, TestServer, DBNAME, USER};

/// The standby's `application_name` as the primary sees it (`pg_stat_replication`), and
/// the name of its physical replication slot on the primary.
pub const STANDBY_NAME: &str = "momoko_standby";

/// How long the waits of [`Replicated`] last at most (streaming at start, promotion,
/// [`Replicated::wait_for_replay`]).
pub const REPLICATION_TIMEOUT: Duration = Duration::from_secs(30);

// Both sides: WAL for a standby, and room to make another one (the standby, once promoted,
// can have standbys too).
const WAL_CONF: &str = "wal_level = replica\n\
                        max_wal_senders = 10\n\
                        max_replication_slots = 10\n";

/// A primary and a streaming standby of it, each a [`TestServer`] of its own (its own temp
/// directory, port, socket directory and watchdog). Dropping it stops both and removes
/// both directories; so does the watchdog of each should the process die first.
///
/// The primary runs with `wal_level = replica`, `max_wal_senders = 10` and pg_hba's
/// `replication` lines (trust over the socket and 127.0.0.1). The standby is a
/// `pg_basebackup -R` of it over a physical slot named [`STANDBY_NAME`] (so the primary
/// keeps the WAL a stopped standby still needs), with `hot_standby = on`: every login of
/// [`TestServer`] works on it for reading. It has its own copy of the primary's
/// certificates, so `ssl = on` there too and one CA (`tls.ca_file` of either side)
/// verifies both servers.
///
/// With `sync`, the primary has `synchronous_standby_names = 'momoko_standby'` and
/// `synchronous_commit = remote_apply`: a commit is acknowledged only once the standby has
/// replayed it, so it is visible there right away and survives a promotion. Mind that
/// such a primary then blocks every commit while the standby is down. The standby itself
/// runs with `synchronous_standby_names = ''`, so that it commits at once after promotion.
///
/// ```no_run
/// let pair = momoko_testpg::Replicated::start(true).unwrap();
/// pair.primary_info().psql("create table t (x int); insert into t values (1)").unwrap();
/// assert_eq!(pair.standby_info().psql("select x from t").unwrap(), "1");
/// pair.stop_primary(momoko_testpg::StopMode::Immediate).unwrap();
/// pair.promote_standby().unwrap();
/// pair.standby_info().psql("insert into t values (2)").unwrap();
/// ```
#[derive(Debug)]
pub struct Replicated {
    // Dropped in this order: the standby first, so that it does not log reconnect attempts
    // to a primary that is already gone.
    standby: TestServer,
    primary: TestServer,
    sync: bool,
}

impl Replicated {
    /// Starts a primary (initdb, the usual roles and database) and a streaming standby of
    /// it (base backup), and returns once the standby is streaming (with `sync`, as the
    /// primary's synchronous standby). Takes about twice as long as [`TestServer::start`].
    pub fn start(sync: bool) -> io::Result<Replicated> {
        let mut primary_conf = String::from(WAL_CONF);
        if sync {
            primary_conf.push_str(&format!(
                "synchronous_standby_names = '{STANDBY_NAME}'\n\
                 synchronous_commit = remote_apply\n"
            ));
        }
        let primary = TestServer::create(None, true, primary_conf)?;
        // A quick reconnect after the primary restarts (the default waits 5 s).
        let standby_conf = format!(
            "{WAL_CONF}\
             hot_standby = on\n\
             synchronous_standby_names = ''\n\
             wal_retrieve_retry_interval = '100ms'\n"
        );
        let standby = TestServer::create_standby(&primary, STANDBY_NAME, standby_conf)?;
        let pair = Replicated {
            standby,
            primary,
            sync,
        };
        let want = if sync { "sync" } else { "async" };
        let sql = format!(
            "select state || ' ' || sync_state from pg_stat_replication \
             where application_name = '{STANDBY_NAME}'"
        );
        pair.primary.wait_for(
            &format!("the standby to stream ({want}), per pg_stat_replication"),
            REPLICATION_TIMEOUT,
            || Ok(pair.primary.info().psql(&sql)? == format!("streaming {want}")),
        )?;
        Ok(pair)
    }

    /// The two servers, standby first (the order they must be dropped in).
    pub(crate) fn into_parts(self) -> (TestServer, TestServer) {
        (self.standby, self.primary)
    }

    /// The primary (stop, restart, log, pid, ...).
    pub fn primary(&self) -> &TestServer {
        &self.primary
    }

    /// The standby (stop, restart, log, pid, ...); after [`Replicated::promote_standby`]
    /// a primary of its own.
    pub fn standby(&self) -> &TestServer {
        &self.standby
    }

    /// Where the primary is and how to log in to it (host, port, DSNs, TLS).
    pub fn primary_info(&self) -> &ServerInfo {
        self.primary.info()
    }

    /// Where the standby is and how to log in to it (host, port, DSNs, TLS).
    pub fn standby_info(&self) -> &ServerInfo {
        self.standby.info()
    }

    /// Whether the pair was started with synchronous replication.
    pub fn is_sync(&self) -> bool {
        self.sync
    }

    /// A trust DSN over TCP naming both servers, primary first, as host and port lists:
    /// `host=127.0.0.1,127.0.0.1 port=P,S dbname=momoko_test user=momoko`.
    pub fn hosts_dsn(&self) -> String {
        format!(
            "host=127.0.0.1,127.0.0.1 port={},{} dbname={DBNAME} user={USER}",
            self.primary.info().port,
            self.standby.info().port
        )
    }

    /// Promotes the standby (`pg_ctl promote -w`) and returns once a new login sees
    /// `pg_is_in_recovery()` false: it takes writes from then on. The primary is left as
    /// it is: stop it first (see [`Replicated::stop_primary`]) unless the test wants two
    /// primaries. Bounded by [`REPLICATION_TIMEOUT`] (and pg_ctl's own 30 s).
    pub fn promote_standby(&self) -> io::Result<()> {
        self.standby.promote()
    }

    /// Stops the primary (`pg_ctl stop -m MODE`); its directory stays until drop, and
    /// `primary().start_again()` starts it again. The standby keeps retrying to reconnect.
    pub fn stop_primary(&self, mode: StopMode) -> io::Result<()> {
        self.primary.stop(mode)
    }

    /// Stops the standby (`pg_ctl stop -m MODE`). With synchronous replication, commits on
    /// the primary block until it is back (`standby().start_again()`).
    pub fn stop_standby(&self, mode: StopMode) -> io::Result<()> {
        self.standby.stop(mode)
    }

    /// Waits until the standby has replayed everything committed on the primary so far
    /// (up to a WAL record of its own written on the primary and flushed), at most
    /// [`REPLICATION_TIMEOUT`]. Both servers must be running, the standby still a standby.
    pub fn wait_for_replay(&self) -> io::Result<()> {
        self.wait_for_replay_within(REPLICATION_TIMEOUT)
    }

    /// [`Replicated::wait_for_replay`] with a bound of the caller's choosing.
    pub fn wait_for_replay_within(&self, timeout: Duration) -> io::Result<()> {
        // A WAL record of our own in a transaction committed with a local flush (whatever
        // `sync` says: not waiting on the standby): the flush covers every commit before
        // it, asynchronous ones too, and the record's end is a position the standby's
        // replay reaches exactly. (A transaction that writes no WAL, `txid_current()`
        // alone, commits without a flush.)
        let out = self.primary.info().psql(
            "set synchronous_commit = local; \
             select pg_logical_emit_message(true, 'momoko-testpg', 'wait_for_replay')",
        )?;
        let lsn = out.trim().to_owned();
        if lsn.is_empty() || !lsn.contains('/') {
            return Err(io::Error::other(format!(
                "the primary answered {out:?} for the position of its WAL record"
            )));
        }
        let sql = format!("select coalesce(pg_last_wal_replay_lsn() >= '{lsn}', false)");
        self.standby.wait_for(
            &format!("the standby to replay the primary's WAL up to {lsn}"),
            timeout,
            || Ok(self.standby.info().psql(&sql)? == "t"),
        )
    }
}
