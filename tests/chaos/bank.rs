//! Scenario 1: TPC-B through a pool under loss (and delay with jitter through tcproxy, or
//! a cut of the link midway), with the bank's invariants and every transaction's fate
//! checked.

use super::*;
use momoko_testpg::{DBNAME, USER};

/// What the client learnt of one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Acknowledged,
    /// Failed, provably without effect.
    Failed,
    /// Failed after it was sent: it may or may not have been applied.
    Unknown,
}

/// Scenario 1: TPC-B transfers through a pool of 4 for `run` under `LOSS` % loss each way,
/// with each direction's bytes also held `delay` = (delay, jitter) by a tcproxy relay
/// between the pool and the link when given, and with the link also cut for `cut` =
/// (from, length) when given; then the invariants: the
/// balances of accounts, tellers, branches and history agree, and no acknowledged
/// transaction is lost or applied twice (history has no unique key, so a second application
/// would show), none that failed without effect is applied, none appears that was never sent.
async fn tpcb(
    net: Rc<NetnsServer>,
    keywords: &str,
    run: Duration,
    delay: Option<(Duration, Duration)>,
    cut: Option<(Duration, Duration)>,
) {
    const BRANCHES: i32 = 2;
    const TELLERS: i32 = 8;
    const ACCOUNTS: i32 = 200;
    const WORKERS: i64 = 4;
    const LOSS: u8 = 5;
    // The kernel has no netem: the delay comes from a relay in this process, in front of
    // the lossy link (its sockets to the server cross the veth pair).
    let proxy = delay.map(|_| {
        tcproxy::Proxy::start("127.0.0.1:0".parse().unwrap(), net.addr()).expect("the relay starts")
    });
    let dsn = match &proxy {
        Some(p) => format!(
            "host=127.0.0.1 port={} dbname={DBNAME} user={USER} sslmode=disable {keywords}",
            p.local_addr().port()
        ),
        None => format!("{} {keywords}", net.dsn()),
    };
    let pool = pool(&dsn, 4, true).await;
    pool.transaction(vec![
        "CREATE TABLE chaos_branches (bid int PRIMARY KEY, bbalance bigint NOT NULL DEFAULT 0)"
            .to_owned(),
        "CREATE TABLE chaos_tellers (tid int PRIMARY KEY, bid int NOT NULL, \
         tbalance bigint NOT NULL DEFAULT 0)"
            .to_owned(),
        "CREATE TABLE chaos_accounts (aid int PRIMARY KEY, bid int NOT NULL, \
         abalance bigint NOT NULL DEFAULT 0)"
            .to_owned(),
        // No unique key on txid: a transaction applied twice must show.
        "CREATE TABLE chaos_history (txid bigint NOT NULL, tid int, bid int, aid int, \
         delta int, mtime timestamptz NOT NULL DEFAULT now())"
            .to_owned(),
        format!("INSERT INTO chaos_branches (bid) SELECT generate_series(1, {BRANCHES})"),
        format!(
            "INSERT INTO chaos_tellers (tid, bid) SELECT t, 1 + t % {BRANCHES} \
             FROM generate_series(1, {TELLERS}) t"
        ),
        format!(
            "INSERT INTO chaos_accounts (aid, bid) SELECT a, 1 + a % {BRANCHES} \
             FROM generate_series(1, {ACCOUNTS}) a"
        ),
    ])
    .await
    .unwrap();
    net.apply(Fault::Loss(LOSS)).unwrap();
    if let (Some(p), Some((d, j))) = (&proxy, delay) {
        p.latency_jitter(d, j);
        // The delay is in force: a round trip takes at least twice the shortest hold.
        let (rtt, r) = timed(pool.execute("SELECT 1", ())).await;
        r.unwrap();
        assert!(rtt >= 2 * (d - j), "a round trip of {rtt:?}");
    }
    let start = Instant::now();
    let healed_at = std::rc::Rc::new(std::cell::Cell::new(None::<Instant>));
    let cut_at = std::rc::Rc::new(std::cell::Cell::new(None::<Instant>));
    let controller = {
        let (net, healed_at, cut_at) = (net.clone(), healed_at.clone(), cut_at.clone());
        spawn(async move {
            if let Some((from, length)) = cut {
                sleep(from).await;
                net.apply(Fault::Partition).unwrap();
                cut_at.set(Some(Instant::now()));
                sleep(length).await;
                net.heal().unwrap();
                healed_at.set(Some(Instant::now()));
                net.apply(Fault::Loss(LOSS)).unwrap();
            }
        })
    };
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let p = pool.clone();
            spawn(async move {
                let mut log: Vec<(i64, Outcome, Instant)> = Vec::new();
                let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (w as u64 + 1);
                let mut i = 0;
                while start.elapsed() < run {
                    seed = seed
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    let r = (seed >> 33) as i32;
                    let aid = 1 + r % ACCOUNTS;
                    let tid = 1 + (r / 7) % TELLERS;
                    let bid = 1 + tid % BRANCHES;
                    let delta = (r / 13) % 1999 - 999;
                    let txid = w * 1_000_000 + i;
                    i += 1;
                    let result = p
                        .transaction(vec![
                            momoko::Statement::from((
                                "UPDATE chaos_accounts SET abalance = abalance + %s \
                                 WHERE aid = %s",
                                (delta, aid),
                            )),
                            momoko::Statement::from((
                                "UPDATE chaos_tellers SET tbalance = tbalance + %s \
                                 WHERE tid = %s",
                                (delta, tid),
                            )),
                            momoko::Statement::from((
                                "UPDATE chaos_branches SET bbalance = bbalance + %s \
                                 WHERE bid = %s",
                                (delta, bid),
                            )),
                            momoko::Statement::from((
                                "INSERT INTO chaos_history (txid, tid, bid, aid, delta) \
                                 VALUES (%s, %s, %s, %s, %s)",
                                (txid, tid, bid, aid, delta),
                            )),
                        ])
                        .await;
                    log.push((
                        txid,
                        match result {
                            Ok(_) => Outcome::Acknowledged,
                            Err(e) if e.outcome_unknown() => Outcome::Unknown,
                            Err(_) => Outcome::Failed,
                        },
                        Instant::now(),
                    ));
                }
                log
            })
        })
        .collect();
    let timed_log: Vec<(i64, Outcome, Instant)> = momoko::ioloop::gather(workers)
        .await
        .into_iter()
        .flatten()
        .collect();
    let ran = start.elapsed();
    controller.await;
    net.heal().unwrap();
    // From the heal to the first transaction acknowledged after it.
    let recovered = healed_at.get().map(|h| {
        timed_log
            .iter()
            .filter(|(_, o, at)| *o == Outcome::Acknowledged && *at >= h)
            .map(|(_, _, at)| *at - h)
            .min()
            .expect("transactions are acknowledged after the heal")
    });
    // From the cut to the first transaction that failed after it.
    let detected = cut_at.get().and_then(|c| {
        timed_log
            .iter()
            .filter(|(_, o, at)| *o != Outcome::Acknowledged && *at >= c)
            .map(|(_, _, at)| *at - c)
            .min()
    });
    let log: Vec<(i64, Outcome)> = timed_log.iter().map(|(t, o, _)| (*t, *o)).collect();
    let sums = pool
        .execute(
            "SELECT (SELECT sum(abalance) FROM chaos_accounts)::bigint, \
             (SELECT sum(tbalance) FROM chaos_tellers)::bigint, \
             (SELECT sum(bbalance) FROM chaos_branches)::bigint, \
             (SELECT coalesce(sum(delta), 0) FROM chaos_history)::bigint",
            (),
        )
        .await
        .unwrap()
        .fetchone()
        .unwrap();
    let sums: [i64; 4] = [sums.get(0), sums.get(1), sums.get(2), sums.get(3)];
    let mut applied = std::collections::HashMap::new();
    for row in pool
        .execute("SELECT txid, count(*) FROM chaos_history GROUP BY txid", ())
        .await
        .unwrap()
        .fetchall()
    {
        applied.insert(row.get::<_, i64>(0), row.get::<_, i64>(1));
    }
    let count = |o: Outcome| log.iter().filter(|(_, x)| *x == o).count();
    let times = |txid: &i64| applied.get(txid).copied().unwrap_or(0);
    let lost = log
        .iter()
        .filter(|(t, o)| *o == Outcome::Acknowledged && times(t) == 0)
        .count();
    let duplicated = applied.values().filter(|&&n| n > 1).count();
    let failed_applied = log
        .iter()
        .filter(|(t, o)| *o == Outcome::Failed && times(t) > 0)
        .count();
    let unknown_applied = log
        .iter()
        .filter(|(t, o)| *o == Outcome::Unknown && times(t) > 0)
        .count();
    let phantom = applied
        .keys()
        .filter(|t| !log.iter().any(|(x, _)| x == *t))
        .count();
    let what = match (cut, delay) {
        (Some((_, length)), _) => format!(
            "cut for {:.0} s midway ({keywords}), first failure {:.1} s after the cut, first \
             ack {:.1} s after the heal",
            length.as_secs_f64(),
            detected.unwrap_or_default().as_secs_f64(),
            recovered.unwrap_or_default().as_secs_f64()
        ),
        (None, Some((d, j))) => format!(
            "{} ± {} ms delay each way (tcproxy), no keyword",
            d.as_millis(),
            j.as_millis()
        ),
        (None, None) => "no keyword".to_owned(),
    };
    table_row(
        &match (cut, delay) {
            (Some(_), _) => format!(
                "1 TPC-B, {LOSS} % loss, link cut {}s",
                cut.unwrap().1.as_secs()
            ),
            (None, Some((d, j))) => format!(
                "1 TPC-B, {LOSS} % loss, {} ± {} ms",
                d.as_millis(),
                j.as_millis()
            ),
            (None, None) => format!("1 TPC-B, {LOSS} % loss"),
        },
        count(Outcome::Acknowledged),
        lost,
        duplicated,
        count(Outcome::Unknown),
        detected,
        recovered,
    );
    println!(
        "scenario 1, TPC-B under {LOSS} % loss each way for {:.1} s through a pool of 4, \
         {what}: {} acknowledged ({:.0}/s), {} failed without effect, {} outcome unknown \
         ({unknown_applied} of them applied); lost {lost}, duplicated {duplicated}, \
         failed but applied {failed_applied}, applied but never sent {phantom}; \
         balances accounts/tellers/branches/history {sums:?}; connections lost {}",
        ran.as_secs_f64(),
        count(Outcome::Acknowledged),
        count(Outcome::Acknowledged) as f64 / ran.as_secs_f64(),
        count(Outcome::Failed),
        count(Outcome::Unknown),
        pool.stats().counters.connections_lost,
    );
    assert!(
        count(Outcome::Acknowledged) >= 100,
        "too few transactions went through"
    );
    assert_eq!(
        (lost, duplicated, failed_applied, phantom),
        (0, 0, 0, 0),
        "lost, duplicated, failed but applied, never sent"
    );
    assert!(
        sums.iter().all(|s| *s == sums[0]),
        "the balances disagree: {sums:?}"
    );
    let lost_connections = pool.stats().counters.connections_lost;
    match cut {
        // Loss alone never passes for a dead link.
        None => assert_eq!(lost_connections, 0),
        // Each connection dies at most once in the cut, with at most its one request in
        // doubt.
        Some(_) => {
            assert!(lost_connections >= 1, "the cut killed no connection");
            assert!(
                count(Outcome::Unknown) <= 4,
                "{} unknown",
                count(Outcome::Unknown)
            );
            assert!(
                recovered.unwrap() <= Duration::from_secs(4),
                "first ack {recovered:?} after the heal"
            );
        }
    }
    pool.close().unwrap();
    if let Some(p) = proxy {
        p.shutdown();
    }
}

#[test]
fn tpcb_through_a_pool_under_loss_with_delay_or_a_cut_keeps_every_acknowledged_transaction_exactly_once(
) {
    let Some(nets) = hosts(2) else { return };
    let nets: Vec<Rc<NetnsServer>> = nets.into_iter().map(Rc::new).collect();
    let (lossy, cut) = (nets[0].clone(), nets[1].clone());
    let (run, from, length) = if full() { (60, 20, 20) } else { (10, 2, 6) };
    run_for(180, async move {
        // The scenario 1: 5 % loss each way plus 20 ± 10 ms delay each way, with no
        // keyword: momoko's defaults must not mistake a lossy, slow link for a dead one.
        let a = spawn(tpcb(
            lossy,
            "",
            Duration::from_secs(run),
            Some((Duration::from_millis(20), Duration::from_millis(10))),
            None,
        ));
        // The link also cut long enough for the tight bounds to drop every connection.
        let b = spawn(tpcb(
            cut,
            TIGHT,
            Duration::from_secs(run),
            None,
            Some((Duration::from_secs(from), Duration::from_secs(length))),
        ));
        a.await;
        b.await;
    });
    for net in nets {
        finish(Rc::try_unwrap(net).unwrap());
    }
}
