//! A primary and its synchronous standby, each in a network namespace of its own:
//! [`NetnsCluster`], for failover under a partition (and replication across one).
//!
//! ```text
//!            test process (the client), root namespace
//!              10.213.a.1 │            │ 10.213.b.1
//!                 veth    │            │    veth
//!              10.213.a.2 │            │ 10.213.b.2
//!        ┌─────── primary ns ┐      ┌ standby ns ───────┐
//!        │ postgres (primary)│──────│ postgres (standby)│
//!        └───────────────────┘ veth └───────────────────┘
//!                  10.214.c.1          10.214.c.2
//! ```
//!
//! It owns the pair's set-up across namespaces (the base backup made as [`Replicated`]
//! makes it, then each server moved behind a [`NetnsServer`] link, a third veth pair
//! between the two namespaces, the standby's `primary_conninfo` pointed across it) and the
//! fault on that middle link. Each side's cleanup is its [`NetnsServer`]'s: the namespaces,
//! every link, the servers, also on a panic. It must never route through the root
//! namespace (no forwarding is turned on there): replication takes the middle link only.

use std::io;
use std::net::Ipv4Addr;

use crate::cmd;
use crate::netns::{ip, next_number, Fault, NetnsServer};
use crate::replica::{Replicated, REPLICATION_TIMEOUT, STANDBY_NAME};
use crate::server::{DBNAME, USER};

/// A primary and a synchronous standby (`synchronous_commit = remote_apply`), each in a
/// namespace of its own, joined to the test process by a link each and to each other by a
/// third. See the module documentation.
#[derive(Debug)]
pub struct NetnsCluster {
    // Dropped in this order: the standby first, as in [`Replicated`].
    standby: NetnsServer,
    primary: NetnsServer,
    /// The middle link's names on the primary's and the standby's side.
    middle: (String, String),
    middle_addrs: (Ipv4Addr, Ipv4Addr),
}

impl NetnsCluster {
    /// Starts the pair as [`Replicated::start`] with `sync`, moves each server into a
    /// namespace of its own, joins the namespaces, and returns once the standby streams
    /// again across the middle link (as the synchronous standby with `sync`).
    pub fn start(sync: bool) -> io::Result<NetnsCluster> {
        if let Some(why) = NetnsServer::unavailable() {
            return Err(io::Error::new(io::ErrorKind::Unsupported, why));
        }
        let (standby, primary) = Replicated::start(sync)?.into_parts();
        // Each is stopped here and dropped (namespace and all) on an early return.
        let primary = NetnsServer::around(primary)?;
        let standby = NetnsServer::around(standby)?;
        let n = next_number();
        let pid = std::process::id();
        let middle = (format!("mc{pid}x{n}p"), format!("mc{pid}x{n}q"));
        let (c, d) = ((n / 64 % 256) as u8, ((n % 64) * 4) as u8);
        let middle_addrs = (
            Ipv4Addr::new(10, 214, c, d + 1),
            Ipv4Addr::new(10, 214, c, d + 2),
        );
        let pair = NetnsCluster {
            standby,
            primary,
            middle,
            middle_addrs,
        };
        pair.join()?;
        pair.point_standby_at_primary()?;
        pair.primary.start_inside(&[pair.middle_addrs.0])?;
        pair.standby.start_inside(&[pair.middle_addrs.1])?;
        let want = if sync { "sync" } else { "async" };
        let sql = format!(
            "select state || ' ' || sync_state from pg_stat_replication \
             where application_name = '{STANDBY_NAME}'"
        );
        let server = pair.primary.server();
        server.wait_for(
            &format!("the standby to stream ({want}) across the middle link"),
            REPLICATION_TIMEOUT,
            || Ok(pair.psql_primary(&sql)? == format!("streaming {want}")),
        )?;
        Ok(pair)
    }

    /// The third veth pair, one end in each namespace, with its addresses.
    fn join(&self) -> io::Result<()> {
        let (p, q) = (&self.middle.0, &self.middle.1);
        // Recorded first, so that a failure half-way still removes the links.
        self.primary.add_peer(p);
        self.standby.add_peer(q);
        ip(&["link", "add", p, "type", "veth", "peer", "name", q])?;
        ip(&["link", "set", p, "netns", self.primary.namespace()])?;
        ip(&["link", "set", q, "netns", self.standby.namespace()])?;
        for (net, iface, addr) in [
            (&self.primary, p, self.middle_addrs.0),
            (&self.standby, q, self.middle_addrs.1),
        ] {
            net.ip_netns_exec("ip", &["addr", "add", &format!("{addr}/30"), "dev", iface])?;
            net.ip_netns_exec("ip", &["link", "set", iface, "up"])?;
        }
        Ok(())
    }

    /// The standby's `primary_conninfo` names the primary's side of the middle link (the
    /// last setting in postgresql.auto.conf wins).
    fn point_standby_at_primary(&self) -> io::Result<()> {
        let auto = self
            .standby
            .server()
            .dir()
            .join("data")
            .join("postgresql.auto.conf");
        let mut f = std::fs::OpenOptions::new().append(true).open(auto)?;
        io::Write::write_all(
            &mut f,
            format!(
                "# Written by momoko-testpg's NetnsCluster: the primary across the middle link.\n\
                 primary_conninfo = 'host={} port={} user=postgres \
                 application_name={STANDBY_NAME} sslmode=disable'\n",
                self.middle_addrs.0,
                self.primary.addr().port()
            )
            .as_bytes(),
        )
    }

    /// The primary behind its link (its address, faults on the client's link, the server).
    pub fn primary(&self) -> &NetnsServer {
        &self.primary
    }

    /// The standby behind its link; a primary of its own after [`NetnsCluster::promote`].
    pub fn standby(&self) -> &NetnsServer {
        &self.standby
    }

    /// A trust DSN over the client links naming both servers, primary first:
    /// `host=10.213.a.2,10.213.b.2 port=P,S dbname=momoko_test user=momoko sslmode=disable`.
    pub fn hosts_dsn(&self) -> String {
        let (p, s) = (self.primary.addr(), self.standby.addr());
        format!(
            "host={},{} port={},{} dbname={DBNAME} user={USER} sslmode=disable",
            p.ip(),
            s.ip(),
            p.port(),
            s.port()
        )
    }

    /// Applies `fault` on the middle link, from the primary's side ("to server" is into
    /// the primary's namespace): [`Fault::Partition`] cuts replication both ways.
    pub fn apply_between(&self, fault: Fault) -> io::Result<()> {
        self.primary.apply_on(Some(&self.middle.0), fault)
    }

    /// Cuts the primary off from everyone: its client link and the middle link.
    pub fn isolate_primary(&self) -> io::Result<()> {
        self.primary.apply(Fault::Partition)?;
        self.apply_between(Fault::Partition)
    }

    /// Lifts every fault on every link of both namespaces.
    pub fn heal(&self) -> io::Result<()> {
        self.primary.heal()?;
        self.standby.heal()
    }

    /// Promotes the standby (`pg_ctl promote -w`) and returns once a login over its Unix
    /// socket sees `pg_is_in_recovery()` false.
    pub fn promote(&self) -> io::Result<()> {
        self.standby.server().promote()
    }

    /// Runs `sql` on the primary over its Unix socket (unaffected by any fault).
    pub fn psql_primary(&self, sql: &str) -> io::Result<String> {
        psql_unix(&self.primary, sql)
    }

    /// Runs `sql` on the standby over its Unix socket (unaffected by any fault).
    pub fn psql_standby(&self, sql: &str) -> io::Result<String> {
        psql_unix(&self.standby, sql)
    }

    /// Removes both namespaces, every link and both servers, and returns what is still
    /// there afterwards, which should be nothing.
    pub fn close(self) -> Vec<String> {
        let mut left = self.standby.close();
        left.extend(self.primary.close());
        left
    }
}

fn psql_unix(net: &NetnsServer, sql: &str) -> io::Result<String> {
    let info = net.server().info();
    let dsn = info.dsn_unix.as_ref().ok_or_else(|| {
        io::Error::other(format!(
            "the server on port {} has no Unix socket",
            info.port
        ))
    })?;
    cmd::psql(dsn, sql, &[])
}
