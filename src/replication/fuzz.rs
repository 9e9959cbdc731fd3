//! The body of the `pgoutput` fuzz target (entry point `momoko::fuzzing::pgoutput`): a
//! replication session on arbitrary bytes, through the CopyBoth parser, the pgoutput decoder
//! and the feedback rule, as the stream driver would call them.
//!
//! Input: frames of a u32 big-endian length and a CopyData payload; a length past the end
//! makes the rest one last frame. One decoder and one feedback state live across the frames,
//! so that relations, streamed blocks and open transactions carry from one to the next. It
//! never does I/O and allocates in proportion to its input; it asserts the feedback rule's
//! invariants and reads every value of every tuple (any outcome but a panic is fine).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::copy_both::{parse_server_message, ServerMessage};
use super::feedback::{Feedback, Tracking};
use super::pgoutput::Decoder;
use super::{Change, Lsn, Tuple};
use crate::types::Value;

fn read_all(t: &Tuple) {
    for i in 0..t.len() {
        let _ = t.try_get::<_, Value>(i);
        let _ = t.try_get::<_, Option<String>>(i);
        let _ = t.try_get::<_, Option<i64>>(i);
        let _ = t.try_get::<_, Option<Lsn>>(i);
        let _ = (t.is_null(i), t.is_unchanged(i), t.get_raw(i));
        let name = t.table().columns()[i].name().to_owned();
        let _ = t.try_get::<_, Value>(name.as_str());
    }
    let _ = t.try_to_values();
    let _ = format!("{t:?}");
}

fn exercise(change: &Change) {
    let _ = format!("{change:?}");
    let _ = change.tag();
    match change {
        Change::Insert { new, .. } => read_all(new),
        Change::Update { key, old, new, .. } => {
            key.iter().chain(old.iter()).for_each(read_all);
            read_all(new);
        }
        Change::Delete { key, old, .. } => key.iter().chain(old.iter()).for_each(read_all),
        _ => {}
    }
}

/// Runs one session over `data`.
pub(crate) fn session(data: &[u8]) {
    let t0 = Instant::now();
    let mut decoder = Decoder::new();
    let mut feedback = Feedback::new(
        Tracking::Transactions,
        Lsn::ZERO,
        Duration::from_secs(10),
        t0,
    );
    let mut raw = Feedback::new(Tracking::Messages, Lsn::ZERO, Duration::from_secs(10), t0);
    let mut rest = data;
    let mut now = t0;
    while !rest.is_empty() {
        let (frame, tail) = match rest.split_first_chunk::<4>() {
            Some((len, body)) => {
                let n = u32::from_be_bytes(*len) as usize;
                if n <= body.len() {
                    body.split_at(n)
                } else {
                    (body, &[][..])
                }
            }
            None => (rest, &[][..]),
        };
        rest = tail;
        now += Duration::from_millis(1500);
        let before = (feedback.status(), raw.status());
        match parse_server_message(Bytes::copy_from_slice(frame)) {
            Ok(ServerMessage::XLogData(x)) => {
                feedback.on_xlogdata(x.data_start(), x.data_start());
                raw.on_xlogdata(x.data_start(), x.data_start());
                if let Ok(change) = decoder.decode(x.data_bytes()) {
                    feedback.on_change(&change);
                    exercise(&change);
                    // A consumer that confirms each transaction as it ends.
                    if let Change::Commit { end_lsn, .. } | Change::StreamCommit { end_lsn, .. } =
                        change
                    {
                        feedback.confirm(end_lsn);
                        raw.confirm(x.data_start());
                    }
                }
            }
            Ok(ServerMessage::Keepalive(k)) => {
                for f in [&mut feedback, &mut raw] {
                    let held = f.has_unconfirmed();
                    let flushed = f.status().flushed;
                    f.on_keepalive(k.wal_end, k.reply_requested, now);
                    if held {
                        // The idle rule never passes unconfirmed work.
                        assert_eq!(f.status().flushed, flushed);
                    }
                    if k.reply_requested {
                        assert!(f.poll_status(now).is_some());
                    }
                }
            }
            Err(_) => {}
        }
        for (f, was) in [(&mut feedback, before.0), (&mut raw, before.1)] {
            let st = f.status();
            assert!(st.flushed >= was.flushed, "flushed went backward");
            assert!(st.written >= was.written, "written went backward");
            assert!(st.written >= st.flushed);
            assert_eq!(st.applied, st.flushed);
            assert!(
                st.flushed <= f.confirmed() || !f.has_unconfirmed() || st.flushed == was.flushed
            );
            let _ = f.poll_status(now);
        }
    }
}

#[cfg(test)]
mod tests {
    /// The target on its seeds and on random mutations of them, so that its invariants
    /// are checked by `cargo test --features fuzzing` even without libFuzzer.
    #[test]
    fn the_pgoutput_target_holds_on_seeds_and_random_mutations() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/pgoutput");
        let seeds: Vec<Vec<u8>> = std::fs::read_dir(dir)
            .expect("fuzz/seeds/pgoutput")
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        assert!(seeds.len() >= 8);
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for seed in &seeds {
            super::session(seed);
            for _ in 0..300 {
                let mut m = seed.clone();
                for _ in 0..1 + next() % 4 {
                    let r = next();
                    let i = (r as usize >> 8) % m.len().max(1);
                    match r % 4 {
                        0 if !m.is_empty() => m[i] = (r >> 32) as u8,
                        1 if !m.is_empty() => m[i] ^= 1 << ((r >> 40) % 8),
                        2 if m.len() > 2 => {
                            m.remove(i);
                        }
                        _ => m.insert(i.min(m.len()), (r >> 24) as u8),
                    }
                }
                super::session(&m);
            }
        }
    }
}
