//! The key schedule: which keys the writes use and which ranges the reads ask for.

use rand::RngExt;
use rand::seq::SliceRandom;
use walshard_contract::ShardSpec;

use super::BenchError;

/// The keys the shards cover: sorted, disjoint `[low, end)` ranges, contiguous shards merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpace {
    ranges: Vec<(i64, i64)>,
    len: u64,
}

impl KeySpace {
    /// The union of the shards' ranges.
    pub fn new(shards: &[ShardSpec]) -> Result<KeySpace, BenchError> {
        let mut spans: Vec<(i64, i64)> = shards
            .iter()
            .filter(|s| s.size > 0)
            .map(|s| (s.low, s.end()))
            .collect();
        spans.sort_unstable();
        let mut ranges: Vec<(i64, i64)> = Vec::with_capacity(spans.len());
        for (low, end) in spans {
            match ranges.last_mut() {
                Some(last) if low <= last.1 => last.1 = last.1.max(end),
                _ => ranges.push((low, end)),
            }
        }
        let mut len: u64 = 0;
        for (low, end) in &ranges {
            len = len
                .checked_add(end.abs_diff(*low))
                .ok_or_else(|| BenchError::KeySpace("more than 2^64 keys".to_owned()))?;
        }
        if len == 0 {
            return Err(BenchError::KeySpace("no shards".to_owned()));
        }
        Ok(KeySpace { ranges, len })
    }

    /// How many keys there are (never 0).
    pub fn size(&self) -> u64 {
        self.len
    }

    /// The `i`-th key in ascending order (`i < len`).
    fn nth(&self, mut i: u64) -> i64 {
        for (low, end) in &self.ranges {
            let size = end.abs_diff(*low);
            if i < size {
                return low.saturating_add_unsigned(i);
            }
            i -= size;
        }
        self.ranges.last().map_or(0, |r| r.1 - 1)
    }

    /// The merged range holding `key`.
    fn range_of(&self, key: i64) -> (i64, i64) {
        self.ranges
            .iter()
            .copied()
            .find(|(low, end)| *low <= key && key < *end)
            .unwrap_or((key, key.saturating_add(1)))
    }

    /// `n` distinct keys evenly strided over the whole space, in shuffled order so that
    /// concurrent writes hit every shard.
    pub fn write_keys(&self, n: usize, rng: &mut impl rand::Rng) -> Result<Vec<i64>, BenchError> {
        let want = n as u64;
        if want > self.len {
            return Err(BenchError::KeySpaceTooSmall {
                have: self.len,
                want: n,
            });
        }
        let len = u128::from(self.len);
        let mut keys: Vec<i64> = (0..want)
            .map(|i| {
                // i * len / n < len, so it fits in u64.
                let idx = (u128::from(i) * len / u128::from(want)) as u64;
                self.nth(idx)
            })
            .collect();
        keys.shuffle(rng);
        Ok(keys)
    }

    /// A random inclusive range of `width` consecutive keys inside one merged range (shorter
    /// only if that range has fewer keys).
    pub fn read_range(&self, width: u64, rng: &mut impl rand::Rng) -> (i64, i64) {
        let width = width.max(1);
        let key = self.nth(rng.random_range(0..self.len));
        let (low, end) = self.range_of(key);
        let last_start = end.saturating_sub_unsigned(width).max(low);
        let start = key.min(last_start);
        let high = start.saturating_add_unsigned(width - 1).min(end - 1);
        (start, high)
    }

    /// `n` read ranges of `width` keys.
    pub fn read_ranges(&self, n: usize, width: u64, rng: &mut impl rand::Rng) -> Vec<(i64, i64)> {
        (0..n).map(|_| self.read_range(width, rng)).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use walshard_contract::Ident;

    use super::*;

    fn shards(list: &[(&str, i64, i64)]) -> Vec<ShardSpec> {
        list.iter()
            .map(|(id, low, size)| ShardSpec {
                id: Ident::new(id).expect("ident"),
                low: *low,
                size: *size,
            })
            .collect()
    }

    fn seed_default() -> KeySpace {
        let list: Vec<(String, i64, i64)> = (0..4)
            .map(|i| (format!("sh{}", i + 1), i * 4096, 4096))
            .collect();
        let refs: Vec<(&str, i64, i64)> =
            list.iter().map(|(a, b, c)| (a.as_str(), *b, *c)).collect();
        KeySpace::new(&shards(&refs)).expect("key space")
    }

    #[test]
    fn write_keys_are_distinct_inside_the_space_and_reach_every_shard() {
        let space = seed_default();
        assert_eq!(space.size(), 16_384);
        let mut rng = StdRng::seed_from_u64(7);
        let keys = space.write_keys(10_000, &mut rng).expect("keys");
        assert_eq!(keys.len(), 10_000);
        let distinct: BTreeSet<i64> = keys.iter().copied().collect();
        assert_eq!(distinct.len(), 10_000);
        assert!(keys.iter().all(|k| (0..16_384).contains(k)));
        for shard in 0..4 {
            let held = keys.iter().filter(|k| **k / 4096 == shard).count();
            assert!((2_400..=2_600).contains(&held), "shard {shard}: {held}");
        }
        // Shuffled: the first 64 in-flight writes already reach every shard.
        let early: BTreeSet<i64> = keys[..64].iter().map(|k| k / 4096).collect();
        assert_eq!(early.len(), 4);
    }

    #[test]
    fn the_whole_space_can_be_written_but_not_more() {
        let space = KeySpace::new(&shards(&[("sh1", 10, 5)])).expect("space");
        let mut rng = StdRng::seed_from_u64(1);
        let mut all = space.write_keys(5, &mut rng).expect("keys");
        all.sort_unstable();
        assert_eq!(all, [10, 11, 12, 13, 14]);
        let err = space.write_keys(6, &mut rng).expect_err("too many");
        assert!(err.to_string().contains("5 keys"), "{err}");
    }

    #[test]
    fn gaps_between_shards_are_skipped_and_contiguous_shards_merge() {
        let space = KeySpace::new(&shards(&[
            ("sh2", 100, 50),
            ("sh1", 0, 50),
            ("sh3", 150, 10),
        ]))
        .expect("space");
        assert_eq!(space.ranges, [(0, 50), (100, 160)]);
        assert_eq!(space.size(), 110);
        let mut rng = StdRng::seed_from_u64(3);
        let keys = space.write_keys(110, &mut rng).expect("keys");
        assert!(
            keys.iter()
                .all(|k| (0..50).contains(k) || (100..160).contains(k))
        );
        assert!(KeySpace::new(&[]).is_err());
    }

    #[test]
    fn read_ranges_are_ten_consecutive_keys_inside_one_range() {
        let space = KeySpace::new(&shards(&[("sh1", 0, 50), ("sh2", 100, 50)])).expect("space");
        let mut rng = StdRng::seed_from_u64(11);
        let ranges = space.read_ranges(5_000, 10, &mut rng);
        for (low, high) in &ranges {
            assert_eq!(high - low, 9, "{low}..={high}");
            assert!(
                (0..50).contains(low) && (0..50).contains(high)
                    || (100..150).contains(low) && (100..150).contains(high),
                "{low}..={high}"
            );
        }
        // Both ends of the space are reached.
        assert!(ranges.iter().any(|r| r.0 == 0));
        assert!(ranges.iter().any(|r| r.1 == 149));
        // A range narrower than the width is read whole.
        let tiny = KeySpace::new(&shards(&[("sh1", 5, 3)])).expect("space");
        assert_eq!(tiny.read_range(10, &mut rng), (5, 7));
    }
}
