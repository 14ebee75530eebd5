//! Exponential backoff with full jitter, for every retry loop of walshard.
//!
//! A [`Backoff`] is a policy: the first pause's ceiling and the cap. [`Backoff::start`] gives
//! the [`Pauses`] of one retry loop: pause `n` is drawn uniformly from `[0, min(cap, first·2ⁿ)]`
//! (so no pause is longer than an unjittered one would be, and peers that failed together do not
//! retry together). [`Pauses::reset`] starts over after a success.

use std::time::Duration;

/// A backoff policy: ceilings `first`, `2·first`, `4·first`, … up to `cap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
}

impl Backoff {
    /// Ceilings doubling from `first` up to `cap` (a `cap` below `first` is raised to it).
    pub const fn new(first: Duration, cap: Duration) -> Self {
        let cap = if cap.as_nanos() < first.as_nanos() {
            first
        } else {
            cap
        };
        Self { first, cap }
    }

    /// The ceiling of pause `n` (from 0): `first·2ⁿ`, at most the cap.
    pub fn ceiling(self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.cap)
    }

    /// The pauses of one retry loop.
    pub fn start(self) -> Pauses {
        Pauses {
            policy: self,
            ceiling: self.first,
            rng: fastrand::Rng::new(),
        }
    }
}

/// The pauses of one retry loop (see [`Backoff`]).
#[derive(Debug, Clone)]
pub struct Pauses {
    policy: Backoff,
    ceiling: Duration,
    rng: fastrand::Rng,
}

impl Pauses {
    /// The next pause; the ceiling doubles, up to the cap.
    pub fn next_pause(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (ceiling * 2).min(self.policy.cap);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.rng.u64(..=nanos))
    }

    /// The ceiling of the next pause.
    pub fn ceiling(&self) -> Duration {
        self.ceiling
    }

    /// Starts over from the first ceiling (after a success).
    pub fn reset(&mut self) {
        self.ceiling = self.policy.first;
    }
}

impl Iterator for Pauses {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.next_pause())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn pauses_stay_under_doubling_ceilings_up_to_the_cap() {
        let mut pauses = Backoff::new(5 * MS, 100 * MS).start();
        for ceiling in [5, 10, 20, 40, 80, 100, 100, 100] {
            assert_eq!(pauses.ceiling(), ceiling * MS);
            let pause = pauses.next_pause();
            assert!(pause <= ceiling * MS, "{pause:?} > {ceiling} ms");
        }
        pauses.reset();
        assert_eq!(pauses.ceiling(), 5 * MS);
    }

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let b = Backoff::new(1000 * MS, 300_000 * MS);
        let ceilings: Vec<u128> = (0..=10).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(
            ceilings,
            [
                1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 256000, 300000, 300000
            ]
        );
        assert_eq!(b.ceiling(u32::MAX), 300_000 * MS);
    }

    #[test]
    fn pauses_are_jittered() {
        let pauses: Vec<Duration> = Backoff::new(100 * MS, 100 * MS).start().take(64).collect();
        assert!(pauses.iter().any(|p| *p != pauses[0]), "{pauses:?}");
    }

    #[test]
    fn a_cap_below_the_first_ceiling_is_raised_to_it() {
        let mut pauses = Backoff::new(50 * MS, 10 * MS).start();
        pauses.next_pause();
        assert_eq!(pauses.ceiling(), 50 * MS);
    }
}
