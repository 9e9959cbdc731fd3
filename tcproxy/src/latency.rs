//! The latency fault's timing: when a chunk read now may be written on, for a delay with
//! jitter (`delay ± jitter`, drawn uniformly per chunk) that never reorders a stream.
//!
//! It owns only that rule and its random source (a seeded xorshift, so a relay's timings
//! are reproducible and no dependency is needed); it takes the time as an argument and must
//! never read a clock, sleep or touch a socket. The relay stamps each chunk it reads with
//! [`Latency::release_at`] and writes nothing before that instant.
//!
//! The order is kept by never releasing a chunk before the one read before it in the same
//! direction: a draw that would overtake is raised to the earlier chunk's instant, as a
//! packet behind a slower one in a FIFO queue waits for it. Jitter larger than the delay
//! is clamped at "now" (a chunk never leaves before it arrived).

use std::time::{Duration, Instant};

/// A delay with jitter: each chunk is held `delay ± jitter`, order kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Latency {
    pub(crate) delay: Duration,
    pub(crate) jitter: Duration,
}

/// The random source of the draws (xorshift64*): not cryptographic, only spread.
#[derive(Debug, Clone)]
pub(crate) struct Draws(u64);

impl Draws {
    /// A source seeded with `seed` (any value; 0 is replaced, xorshift must not start at 0).
    pub(crate) fn new(seed: u64) -> Draws {
        Draws(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// A number uniform in `0..=max`.
    fn upto(&mut self, max: u64) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        if max == u64::MAX {
            r
        } else {
            r % (max + 1)
        }
    }
}

impl Latency {
    /// When a chunk read at `now` may be written: `now + delay ± jitter` (drawn from
    /// `draws`, whole microseconds), never before `now`, and never before `after`, the
    /// instant of the chunk read before it in the same direction (None when there is none
    /// waiting).
    pub(crate) fn release_at(
        &self,
        now: Instant,
        draws: &mut Draws,
        after: Option<Instant>,
    ) -> Instant {
        let jitter = self.jitter.as_micros().min(u64::MAX as u128 / 4) as u64;
        let offset = draws.upto(2 * jitter);
        // delay - jitter + offset, in 0.. (a negative total is clamped at now).
        let base = now + self.delay + Duration::from_micros(offset);
        let at = base
            .checked_sub(Duration::from_micros(jitter))
            .unwrap_or(now)
            .max(now);
        after.map_or(at, |a| at.max(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn without_jitter_every_chunk_is_held_exactly_the_delay() {
        let lat = Latency {
            delay: 20 * MS,
            jitter: Duration::ZERO,
        };
        let mut d = Draws::new(1);
        let now = Instant::now();
        for i in 0..100 {
            let t = now + i * MS;
            assert_eq!(lat.release_at(t, &mut d, None), t + 20 * MS);
        }
    }

    #[test]
    fn draws_spread_over_the_whole_window_and_stay_inside_it() {
        let lat = Latency {
            delay: 20 * MS,
            jitter: 10 * MS,
        };
        let mut d = Draws::new(42);
        let now = Instant::now();
        let held: Vec<Duration> = (0..10_000)
            .map(|_| lat.release_at(now, &mut d, None) - now)
            .collect();
        let (min, max) = (*held.iter().min().unwrap(), *held.iter().max().unwrap());
        assert!(min >= 10 * MS && max <= 30 * MS, "{min:?}..{max:?}");
        // Uniform: the extremes are reached within 0.2 ms, and the mean is the delay.
        assert!(
            min < 10 * MS + MS / 5 && max > 30 * MS - MS / 5,
            "{min:?}..{max:?}"
        );
        let mean = held.iter().sum::<Duration>() / held.len() as u32;
        assert!(mean > 19 * MS && mean < 21 * MS, "mean {mean:?}");
        // Each tenth of the window gets its share (1000 ± 20 %).
        let mut bins = [0u32; 10];
        for h in &held {
            bins[(((*h - 10 * MS).as_micros() * 10 / 20_001) as usize).min(9)] += 1;
        }
        assert!(bins.iter().all(|&b| (800..1200).contains(&b)), "{bins:?}");
    }

    #[test]
    fn a_chunk_never_overtakes_the_one_read_before_it() {
        let lat = Latency {
            delay: 20 * MS,
            jitter: 10 * MS,
        };
        let mut d = Draws::new(7);
        let start = Instant::now();
        let mut last: Option<Instant> = None;
        let mut raised = 0;
        // Chunks read 1 ms apart: a draw 10 ms short after one 10 ms long would overtake.
        for i in 0..1000 {
            let now = start + i * MS;
            let free = lat.release_at(now, &mut d.clone(), None);
            let at = lat.release_at(now, &mut d, last);
            assert_eq!(at, free.max(last.unwrap_or(free)));
            assert!(at >= now + 10 * MS && at <= now + 30 * MS, "{i}");
            if let Some(l) = last {
                assert!(at >= l, "chunk {i} released before chunk {}", i - 1);
                raised += usize::from(free < l);
            }
            last = Some(at);
        }
        // The rule did have to act.
        assert!(raised > 100, "{raised}");
    }

    #[test]
    fn jitter_beyond_the_delay_is_clamped_at_now() {
        let lat = Latency {
            delay: 2 * MS,
            jitter: 10 * MS,
        };
        let mut d = Draws::new(3);
        let now = Instant::now();
        let held: Vec<Duration> = (0..1000)
            .map(|_| lat.release_at(now, &mut d, None) - now)
            .collect();
        assert!(held.iter().all(|h| *h <= 12 * MS));
        // The draws below zero (8 ms of the 20 ms window: 40 %) leave at once.
        let at_once = held.iter().filter(|h| h.is_zero()).count();
        assert!((300..500).contains(&at_once), "{at_once}");
    }

    #[test]
    fn the_same_seed_gives_the_same_timings() {
        let lat = Latency {
            delay: 20 * MS,
            jitter: 10 * MS,
        };
        let now = Instant::now();
        let run = |seed| {
            let mut d = Draws::new(seed);
            (0..50)
                .map(|_| lat.release_at(now, &mut d, None))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }
}
