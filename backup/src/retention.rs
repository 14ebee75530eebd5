//! What a retention policy deletes: base backups outside it, and archived chunks that only a
//! deleted backup could use. Every point from the oldest kept backup on stays restorable.

use crate::Millis;
use crate::manifest::Manifest;
use crate::names::{BackupId, ChunkName};

/// Keep a backup if it is among the newest `keep_count` or younger than `keep_age_ms`; with
/// neither set, keep everything. The newest backup is always kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep the newest this many backups.
    pub keep_count: Option<usize>,
    /// Keep backups that finished at most this long ago (milliseconds).
    pub keep_age_ms: Option<Millis>,
}

/// What a retention policy deletes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prune {
    /// The base backups outside the policy, newest first.
    pub backups: Vec<BackupId>,
    /// The chunks whose entries the oldest kept backup's copy already includes (no restore
    /// from a kept backup replays them).
    pub chunks: Vec<ChunkName>,
}

/// What `policy` deletes at `now_ms` among a store's complete backups and archived chunks:
/// every backup older than the oldest kept one, and the chunks only those could replay.
pub fn prune(
    backups: &[Manifest],
    chunks: &[ChunkName],
    now_ms: Millis,
    policy: Retention,
) -> Prune {
    if policy.keep_count.is_none() && policy.keep_age_ms.is_none() {
        return Prune::default();
    }
    let mut newest_first: Vec<&Manifest> = backups.iter().collect();
    newest_first.sort_by(|a, b| {
        b.finished_at_ms
            .cmp(&a.finished_at_ms)
            .then(b.id.cmp(&a.id))
    });
    let kept = |i: usize, m: &Manifest| {
        i == 0
            || policy.keep_count.is_some_and(|n| i < n)
            || policy
                .keep_age_ms
                .is_some_and(|age| now_ms.saturating_sub(m.finished_at_ms) <= age)
    };
    // Kept backups form a prefix of the newest-first order: everything older than the oldest
    // kept one goes, so the window is contiguous.
    let keep = newest_first
        .iter()
        .enumerate()
        .take_while(|(i, m)| kept(*i, m))
        .count();
    let Some(oldest_kept) = newest_first.get(keep.saturating_sub(1)) else {
        return Prune::default();
    };
    let backups = newest_first[keep..].iter().map(|m| m.id.clone()).collect();
    let chunks = chunks
        .iter()
        .filter(|c| {
            oldest_kept
                .shards
                .get(&c.shard)
                .is_some_and(|copy| c.last <= copy.lsn)
        })
        .cloned()
        .collect();
    Prune { backups, chunks }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::manifest::ShardArchiveMark;
    use crate::plan::tests::backup;
    use crate::plan::{Target, plan_restore};

    proptest! {
        /// After pruning, every time from the oldest kept backup to the archive's end still
        /// plans, and the policy's backups are kept.
        #[test]
        fn every_point_in_the_window_stays_restorable(n in 1u64..8, count in prop::option::of(1usize..5), age in prop::option::of(0u64..900), t in 0u64..1000) {
            // Backup i finishes at i*100 holding lsn 10*i; entry k is stamped 10*k; chunks of 5.
            let backups: Vec<Manifest> = (1..=n).map(|i| backup(i, 10 * i, i * 100)).collect();
            let end = 10 * n + 20;
            let chunks: Vec<ChunkName> = (0..end / 5).map(|c| ChunkName { shard: "sh1".into(), first: c * 5 + 1, last: c * 5 + 5, max_at_ms: (c * 5 + 5) * 10 }).collect();
            let marks = BTreeMap::from([("sh1".to_owned(), ShardArchiveMark { through_lsn: end, at_ms: end * 10 })]);
            let now = n * 100 + 50;
            let pruned = prune(&backups, &chunks, now, Retention { keep_count: count, keep_age_ms: age });
            let left: Vec<Manifest> = backups.iter().filter(|m| !pruned.backups.contains(&m.id)).cloned().collect();
            let chunks_left: Vec<ChunkName> = chunks.iter().filter(|c| !pruned.chunks.contains(c)).cloned().collect();
            prop_assert!(!left.is_empty());
            if let Some(k) = count {
                prop_assert!(left.len() >= k.min(backups.len()));
            }
            if let Some(a) = age {
                prop_assert!(backups.iter().filter(|m| now - m.finished_at_ms <= a).all(|m| left.contains(m)));
            }
            let oldest = left.iter().map(|m| m.finished_at_ms).min().unwrap_or(0);
            let target = oldest + t % (end * 10 - oldest + 1);
            prop_assert!(plan_restore(&left, &chunks_left, &marks, &Target::Time(target)).is_ok());
            prop_assert!(plan_restore(&left, &chunks_left, &marks, &Target::Latest).is_ok());
        }
    }
}
