//! What a caller asks of a walsender, and the command text it becomes: [`SlotOptions`]
//! (`CREATE_REPLICATION_SLOT`) and [`StreamOptions`] (`START_REPLICATION`), each checked
//! against the server's version before anything is sent.
//!
//! It owns the syntax of both commands on every server from PostgreSQL 10 (the option list
//! in parentheses from 15, the old keywords before) and the quoting of the names and values
//! in them. It never sends anything: the connection does, with the text built here.

use std::time::Duration;

use super::Lsn;
use crate::error::Error;
use crate::session::ops::quote_ident;

/// What a new slot's creation exports or uses as a snapshot (`SNAPSHOT` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshot {
    /// Exported until the next command on the connection: another connection's
    /// `SET TRANSACTION SNAPSHOT` copies the tables as of the slot's consistent point.
    Export,
    /// Used by the current transaction of this connection (which must have begun with
    /// `BEGIN ISOLATION LEVEL REPEATABLE READ` and done nothing else yet).
    Use,
    /// Neither: the slot only starts decoding at its consistent point.
    Nothing,
}

/// How to create a replication slot (`ReplicationConnection::create_slot`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotOptions {
    /// `Some(plugin)` for a logical slot, `None` for a physical one.
    plugin: Option<String>,
    temporary: bool,
    snapshot: Option<Snapshot>,
    two_phase: bool,
    failover: bool,
    reserve_wal: bool,
}

impl SlotOptions {
    /// A logical slot decoded by `plugin` (`pgoutput`, `test_decoding`, `wal2json`…).
    pub fn logical(plugin: &str) -> SlotOptions {
        SlotOptions {
            plugin: Some(plugin.to_owned()),
            ..SlotOptions::physical()
        }
    }

    /// A physical slot.
    pub fn physical() -> SlotOptions {
        SlotOptions {
            plugin: None,
            temporary: false,
            snapshot: None,
            two_phase: false,
            failover: false,
            reserve_wal: false,
        }
    }

    /// A temporary slot is dropped when the connection ends (or on any error).
    pub fn temporary(mut self, temporary: bool) -> SlotOptions {
        self.temporary = temporary;
        self
    }

    /// What the logical slot's creation does with its snapshot (the server's default is
    /// [`Snapshot::Export`]).
    pub fn snapshot(mut self, snapshot: Snapshot) -> SlotOptions {
        self.snapshot = Some(snapshot);
        self
    }

    /// Decodes prepared transactions at PREPARE TRANSACTION (logical, PostgreSQL 15+).
    pub fn two_phase(mut self, on: bool) -> SlotOptions {
        self.two_phase = on;
        self
    }

    /// Synchronizes the logical slot to standbys (PostgreSQL 17+).
    pub fn failover(mut self, on: bool) -> SlotOptions {
        self.failover = on;
        self
    }

    /// Reserves WAL for a physical slot at once instead of at its first use.
    pub fn reserve_wal(mut self, on: bool) -> SlotOptions {
        self.reserve_wal = on;
        self
    }

    /// The `CREATE_REPLICATION_SLOT` command for a server of `version` (PQserverVersion).
    pub(crate) fn command(&self, name: &str, version: i32) -> Result<String, Error> {
        let needs = |what: &str, min: i32, label: &str| -> Result<(), Error> {
            if version < min {
                return Err(Error::usage(format!(
                    "{what} needs PostgreSQL {label} or later; the server is {}",
                    version_label(version)
                )));
            }
            Ok(())
        };
        needs("a replication slot from momoko", 100000, "10")?;
        let mut cmd = format!("CREATE_REPLICATION_SLOT {}", quote_ident(name));
        if self.temporary {
            cmd.push_str(" TEMPORARY");
        }
        let new_syntax = version >= 150000;
        let mut options: Vec<String> = Vec::new();
        match &self.plugin {
            Some(plugin) => {
                if self.reserve_wal {
                    return Err(Error::usage(
                        "reserve_wal is for physical slots (a logical slot always reserves WAL)",
                    ));
                }
                if self.two_phase {
                    // 14 decodes two-phase only for slots made by SQL functions.
                    needs("a two_phase slot", 150000, "15")?;
                }
                if self.failover {
                    needs("a failover slot", 170000, "17")?;
                }
                cmd.push_str(" LOGICAL ");
                cmd.push_str(&quote_ident(plugin));
                if new_syntax {
                    if let Some(s) = self.snapshot {
                        let s = match s {
                            Snapshot::Export => "export",
                            Snapshot::Use => "use",
                            Snapshot::Nothing => "nothing",
                        };
                        options.push(format!("SNAPSHOT '{s}'"));
                    }
                    if self.two_phase {
                        options.push("TWO_PHASE true".into());
                    }
                    if self.failover {
                        options.push("FAILOVER true".into());
                    }
                } else {
                    match self.snapshot {
                        Some(Snapshot::Export) => cmd.push_str(" EXPORT_SNAPSHOT"),
                        Some(Snapshot::Use) => cmd.push_str(" USE_SNAPSHOT"),
                        Some(Snapshot::Nothing) => cmd.push_str(" NOEXPORT_SNAPSHOT"),
                        None => {}
                    }
                }
            }
            None => {
                if self.snapshot.is_some() || self.two_phase || self.failover {
                    return Err(Error::usage(
                        "snapshot, two_phase and failover are for logical slots; \
                         use SlotOptions::logical(plugin)",
                    ));
                }
                cmd.push_str(" PHYSICAL");
                if self.reserve_wal {
                    if new_syntax {
                        options.push("RESERVE_WAL true".into());
                    } else {
                        cmd.push_str(" RESERVE_WAL");
                    }
                }
            }
        }
        if !options.is_empty() {
            cmd.push_str(" (");
            cmd.push_str(&options.join(", "));
            cmd.push(')');
        }
        Ok(cmd)
    }
}

/// `150018` as `15.18`, for errors.
pub(crate) fn version_label(version: i32) -> String {
    if version >= 100000 {
        format!("{}.{}", version / 10000, version % 10000)
    } else {
        format!(
            "{}.{}.{}",
            version / 10000,
            version / 100 % 100,
            version % 100
        )
    }
}

/// What a stream decodes, with its plugin's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// pgoutput, decoded into changes.
    Pgoutput {
        publications: Vec<String>,
        proto_version: u32,
        streaming: Option<&'static str>,
        messages: bool,
        binary: bool,
        two_phase: bool,
        origin: Option<String>,
    },
    /// Any output plugin, its options as given, each XLogData as it came.
    Plugin(Vec<(String, String)>),
    /// Physical WAL.
    Physical,
}

/// How to stream: the plugin's options, how often momoko reports progress, and whether it
/// reconnects after a lost connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamOptions {
    pub(crate) kind: Kind,
    pub(crate) status_interval: Duration,
    pub(crate) reconnect: bool,
    pub(crate) reconnect_interval: Duration,
}

impl StreamOptions {
    /// The default `status_interval`, as psycopg2's and the server's
    /// (`wal_receiver_status_interval`).
    pub const DEFAULT_STATUS_INTERVAL: Duration = Duration::from_secs(10);
    /// The default wait before each reconnect attempt, as the pool's `reconnect_interval`.
    pub const DEFAULT_RECONNECT_INTERVAL: Duration = Duration::from_millis(500);

    fn of(kind: Kind) -> StreamOptions {
        StreamOptions {
            kind,
            status_interval: StreamOptions::DEFAULT_STATUS_INTERVAL,
            reconnect: false,
            reconnect_interval: StreamOptions::DEFAULT_RECONNECT_INTERVAL,
        }
    }

    /// pgoutput on `publications`, decoded into [`Change`](super::Change)s; protocol
    /// version 1 unless [`StreamOptions::proto_version`] says otherwise.
    pub fn pgoutput(publications: &[&str]) -> StreamOptions {
        StreamOptions::of(Kind::Pgoutput {
            publications: publications.iter().map(|p| (*p).to_owned()).collect(),
            proto_version: 1,
            streaming: None,
            messages: false,
            binary: false,
            two_phase: false,
            origin: None,
        })
    }

    /// Any output plugin (the slot's), with the options given by [`StreamOptions::option`].
    pub fn plugin() -> StreamOptions {
        StreamOptions::of(Kind::Plugin(Vec::new()))
    }

    /// Physical WAL.
    pub fn physical() -> StreamOptions {
        StreamOptions::of(Kind::Physical)
    }

    fn pgoutput_mut(&mut self) -> Option<&mut Kind> {
        match &mut self.kind {
            k @ Kind::Pgoutput { .. } => Some(k),
            _ => None,
        }
    }

    /// pgoutput's protocol version: 1 (PostgreSQL 10+), 2 (14+, streamed transactions), 3
    /// (15+, two-phase), 4 (16+, parallel streaming). Checked against the server at start.
    pub fn proto_version(mut self, version: u32) -> StreamOptions {
        if let Some(Kind::Pgoutput { proto_version, .. }) = self.pgoutput_mut() {
            *proto_version = version;
        }
        self
    }

    /// Large in-progress transactions arrive in StreamStart..StreamStop blocks (version 2+).
    pub fn streaming(mut self, on: bool) -> StreamOptions {
        if let Some(Kind::Pgoutput { streaming, .. }) = self.pgoutput_mut() {
            *streaming = on.then_some("on");
        }
        self
    }

    /// `streaming 'parallel'` (version 4, PostgreSQL 16+): StreamAbort carries its LSN and time.
    pub fn streaming_parallel(mut self) -> StreamOptions {
        if let Some(Kind::Pgoutput { streaming, .. }) = self.pgoutput_mut() {
            *streaming = Some("parallel");
        }
        self
    }

    /// Logical messages (`pg_logical_emit_message`) are sent.
    pub fn messages(mut self, on: bool) -> StreamOptions {
        if let Some(Kind::Pgoutput { messages, .. }) = self.pgoutput_mut() {
            *messages = on;
        }
        self
    }

    /// Column values in binary (each type's send format) instead of text.
    pub fn binary(mut self, on: bool) -> StreamOptions {
        if let Some(Kind::Pgoutput { binary, .. }) = self.pgoutput_mut() {
            *binary = on;
        }
        self
    }

    /// Prepared transactions decoded at PREPARE (version 3+).
    pub fn two_phase(mut self, on: bool) -> StreamOptions {
        if let Some(Kind::Pgoutput { two_phase, .. }) = self.pgoutput_mut() {
            *two_phase = on;
        }
        self
    }

    /// `origin`: `"none"` (only changes with no replication origin) or `"any"` (PostgreSQL
    /// 16+).
    pub fn origin(mut self, value: &str) -> StreamOptions {
        if let Some(Kind::Pgoutput { origin, .. }) = self.pgoutput_mut() {
            *origin = Some(value.to_owned());
        }
        self
    }

    /// One option of a plugin's stream ([`StreamOptions::plugin`]), sent as given.
    pub fn option(mut self, name: &str, value: &str) -> StreamOptions {
        if let Kind::Plugin(options) = &mut self.kind {
            options.push((name.to_owned(), value.to_owned()));
        }
        self
    }

    /// How often momoko sends a standby status update by itself (default 10 s; zero: only
    /// when the server asks, when `send_feedback` is called, and before a clean stop).
    pub fn status_interval(mut self, interval: Duration) -> StreamOptions {
        self.status_interval = interval;
        self
    }

    /// After a lost connection, reconnect (through the host list, every
    /// `reconnect_interval`) and start again from the confirmed position. Delivery is then
    /// at least once: see [`ReplicationStream`](super::ReplicationStream). A start after a
    /// loss that finds the slot still in use (55006: the lost session's walsender, which
    /// after a partition holds the slot until it learns its client is gone) is tried again
    /// every `reconnect_interval` too, until the stream is stopped.
    pub fn reconnect(mut self, on: bool) -> StreamOptions {
        self.reconnect = on;
        self
    }

    /// The wait before each reconnect attempt (default 500 ms, as the pool's).
    pub fn reconnect_interval(mut self, interval: Duration) -> StreamOptions {
        self.reconnect_interval = interval;
        self
    }

    /// Whether the stream decodes pgoutput into changes.
    pub(crate) fn is_pgoutput(&self) -> bool {
        matches!(self.kind, Kind::Pgoutput { .. })
    }

    /// The `START_REPLICATION` command, checked against the server's `version`.
    pub(crate) fn command(
        &self,
        slot: Option<&str>,
        start: Lsn,
        timeline: Option<u32>,
        version: i32,
    ) -> Result<String, Error> {
        let mut cmd = String::from("START_REPLICATION");
        if let Some(slot) = slot {
            cmd.push_str(" SLOT ");
            cmd.push_str(&quote_ident(slot));
        }
        let options = match &self.kind {
            Kind::Physical => {
                cmd.push_str(&format!(" PHYSICAL {start}"));
                if let Some(tl) = timeline {
                    cmd.push_str(&format!(" TIMELINE {tl}"));
                }
                return Ok(cmd);
            }
            Kind::Plugin(options) => options.clone(),
            Kind::Pgoutput {
                publications,
                proto_version,
                streaming,
                messages,
                binary,
                two_phase,
                origin,
            } => pgoutput_options(
                publications,
                *proto_version,
                *streaming,
                *messages,
                *binary,
                *two_phase,
                origin.as_deref(),
                version,
            )?,
        };
        let slot = slot.ok_or_else(|| Error::usage("a logical stream needs a slot"))?;
        let _ = slot;
        cmd.push_str(&format!(" LOGICAL {start}"));
        if !options.is_empty() {
            let list: Vec<String> = options
                .iter()
                .map(|(k, v)| format!("{} {}", quote_ident(k), quote_literal(v)))
                .collect();
            cmd.push_str(" (");
            cmd.push_str(&list.join(", "));
            cmd.push(')');
        }
        Ok(cmd)
    }
}

/// pgoutput's options, refused clearly when the server cannot honour them.
#[allow(clippy::too_many_arguments)]
fn pgoutput_options(
    publications: &[String],
    proto_version: u32,
    streaming: Option<&'static str>,
    messages: bool,
    binary: bool,
    two_phase: bool,
    origin: Option<&str>,
    version: i32,
) -> Result<Vec<(String, String)>, Error> {
    if publications.is_empty() {
        return Err(Error::usage("pgoutput needs at least one publication"));
    }
    let server = version_label(version);
    let (min_server, label) = match proto_version {
        1 => (100000, "10"),
        2 => (140000, "14"),
        3 => (150000, "15"),
        4 => (160000, "16"),
        v => {
            return Err(Error::usage(format!(
                "pgoutput protocol version {v} does not exist (1 to 4)"
            )))
        }
    };
    if version < min_server {
        return Err(Error::usage(format!(
            "pgoutput protocol version {proto_version} needs PostgreSQL {label} or later; \
             the server is {server}"
        )));
    }
    let mut options = vec![
        ("proto_version".to_owned(), proto_version.to_string()),
        (
            "publication_names".to_owned(),
            publications
                .iter()
                .map(|p| quote_ident(p))
                .collect::<Vec<_>>()
                .join(","),
        ),
    ];
    if let Some(s) = streaming {
        let min = if s == "parallel" { 4 } else { 2 };
        if proto_version < min {
            return Err(Error::usage(format!(
                "streaming '{s}' needs pgoutput protocol version {min} or later \
                 (proto_version is {proto_version})"
            )));
        }
        options.push(("streaming".into(), s.into()));
    }
    if messages {
        options.push(("messages".into(), "true".into()));
    }
    if binary {
        if version < 140000 {
            return Err(Error::usage(format!(
                "binary pgoutput needs PostgreSQL 14 or later; the server is {server}"
            )));
        }
        options.push(("binary".into(), "true".into()));
    }
    if two_phase {
        if proto_version < 3 {
            return Err(Error::usage(format!(
                "two_phase needs pgoutput protocol version 3 or later (proto_version is \
                 {proto_version})"
            )));
        }
        options.push(("two_phase".into(), "true".into()));
    }
    if let Some(o) = origin {
        if version < 160000 {
            return Err(Error::usage(format!(
                "origin needs PostgreSQL 16 or later; the server is {server}"
            )));
        }
        if o != "none" && o != "any" {
            return Err(Error::usage(format!(
                "invalid origin \"{o}\" (none or any)"
            )));
        }
        options.push(("origin".into(), o.into()));
    }
    Ok(options)
}

/// A string literal (standard_conforming_strings, always on in a walsender's grammar).
pub(crate) fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_commands_use_the_option_list_from_15_and_the_old_keywords_before() {
        let logical = SlotOptions::logical("pgoutput")
            .temporary(true)
            .snapshot(Snapshot::Export)
            .two_phase(true);
        assert_eq!(
            logical.command("cdc", 150004).unwrap(),
            "CREATE_REPLICATION_SLOT \"cdc\" TEMPORARY LOGICAL \"pgoutput\" \
             (SNAPSHOT 'export', TWO_PHASE true)"
        );
        assert_eq!(
            logical
                .clone()
                .two_phase(false)
                .command("cdc", 140010)
                .unwrap(),
            "CREATE_REPLICATION_SLOT \"cdc\" TEMPORARY LOGICAL \"pgoutput\" EXPORT_SNAPSHOT"
        );
        assert_eq!(
            logical.command("cdc", 140010).unwrap_err().kind(),
            crate::ErrorKind::Usage
        );
        assert_eq!(
            SlotOptions::logical("test_decoding")
                .snapshot(Snapshot::Nothing)
                .command("a\"b", 130000)
                .unwrap(),
            "CREATE_REPLICATION_SLOT \"a\"\"b\" LOGICAL \"test_decoding\" NOEXPORT_SNAPSHOT"
        );
        assert_eq!(
            SlotOptions::physical()
                .reserve_wal(true)
                .command("p", 160000)
                .unwrap(),
            "CREATE_REPLICATION_SLOT \"p\" PHYSICAL (RESERVE_WAL true)"
        );
        assert_eq!(
            SlotOptions::physical()
                .reserve_wal(true)
                .command("p", 120000)
                .unwrap(),
            "CREATE_REPLICATION_SLOT \"p\" PHYSICAL RESERVE_WAL"
        );
        assert_eq!(
            SlotOptions::logical("pgoutput")
                .failover(true)
                .command("f", 170000)
                .unwrap(),
            "CREATE_REPLICATION_SLOT \"f\" LOGICAL \"pgoutput\" (FAILOVER true)"
        );
    }

    #[test]
    fn slot_options_a_server_cannot_honour_are_usage_errors() {
        let e = SlotOptions::logical("pgoutput")
            .failover(true)
            .command("f", 150004)
            .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Usage);
        assert_eq!(
            e.to_string(),
            "usage error: a failover slot needs PostgreSQL 17 or later; the server is 15.4"
        );
        let e = SlotOptions::logical("pgoutput")
            .two_phase(true)
            .command("t", 130000)
            .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Usage);
        let e = SlotOptions::physical()
            .snapshot(Snapshot::Use)
            .command("p", 150000)
            .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Usage);
        let e = SlotOptions::logical("x")
            .reserve_wal(true)
            .command("p", 150000)
            .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Usage);
    }

    #[test]
    fn start_commands_quote_names_and_values_and_check_the_protocol_version() {
        let at: Lsn = "16/B374D848".parse().unwrap();
        let o = StreamOptions::pgoutput(&["pub", "it's"])
            .proto_version(2)
            .streaming(true)
            .messages(true)
            .binary(true);
        assert_eq!(
            o.command(Some("s"), at, None, 150004).unwrap(),
            "START_REPLICATION SLOT \"s\" LOGICAL 16/B374D848 (\"proto_version\" '2', \
             \"publication_names\" '\"pub\",\"it''s\"', \"streaming\" 'on', \
             \"messages\" 'true', \"binary\" 'true')"
        );
        let e = StreamOptions::pgoutput(&["p"])
            .proto_version(4)
            .command(Some("s"), at, None, 150004)
            .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Usage);
        assert_eq!(
            e.to_string(),
            "usage error: pgoutput protocol version 4 needs PostgreSQL 16 or later; the server is 15.4"
        );
        let e = StreamOptions::pgoutput(&["p"])
            .proto_version(1)
            .streaming(true)
            .command(Some("s"), at, None, 150004)
            .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Usage);
        let e = StreamOptions::pgoutput(&["p"])
            .proto_version(3)
            .streaming_parallel()
            .command(Some("s"), at, None, 160000)
            .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Usage);
        let e = StreamOptions::pgoutput(&["p"])
            .origin("none")
            .command(Some("s"), at, None, 150004)
            .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Usage);
        assert_eq!(
            StreamOptions::plugin()
                .option("include-xids", "0")
                .command(Some("td"), Lsn::ZERO, None, 150004)
                .unwrap(),
            "START_REPLICATION SLOT \"td\" LOGICAL 0/00000000 (\"include-xids\" '0')"
        );
        assert_eq!(
            StreamOptions::physical()
                .command(None, at, Some(1), 150004)
                .unwrap(),
            "START_REPLICATION PHYSICAL 16/B374D848 TIMELINE 1"
        );
    }
}
