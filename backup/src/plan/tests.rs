use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::manifest::{PartRef, ShardBackup};

/// Entry `lsn` (1-based) of the modelled log was stamped `times[lsn - 1]`.
fn replay(plan: &ShardPlan, times: &[Millis]) -> u64 {
    let mut applied = plan.base_lsn;
    'chunks: for c in &plan.chunks {
        for lsn in c.first..=c.last {
            if lsn <= applied {
                continue;
            }
            if !plan.stop.takes(lsn, times[lsn as usize - 1]) {
                break 'chunks;
            }
            assert_eq!(lsn, applied + 1, "replay is consecutive");
            applied = lsn;
        }
    }
    applied
}

/// A one-shard (`sh1`) base backup at `lsn`, finished at `finished_at_ms` (tests of this crate).
pub(crate) fn backup(id: u64, lsn: u64, finished_at_ms: Millis) -> Manifest {
    let part = PartRef {
        key: String::new(),
        bytes: 0,
        crc32c: 0,
    };
    Manifest {
        id: BackupId::at(id),
        started_at_ms: finished_at_ms,
        finished_at_ms,
        fleet: serde_json::Value::Null,
        shards: BTreeMap::from([(
            "sh1".to_owned(),
            ShardBackup {
                epoch: 1,
                lsn,
                source: "s0".into(),
                rows: 0,
                parts: vec![],
                ops: part,
            },
        )]),
    }
}

/// Cuts `1..=n` into chunks at the given cut points.
fn chunks(times: &[Millis], cuts: &[usize]) -> Vec<ChunkName> {
    let n = times.len();
    let mut bounds: Vec<usize> = cuts
        .iter()
        .map(|c| c % n.max(1))
        .filter(|c| *c > 0)
        .collect();
    bounds.push(0);
    bounds.push(n);
    bounds.sort_unstable();
    bounds.dedup();
    bounds
        .windows(2)
        .map(|w| ChunkName {
            shard: "sh1".into(),
            first: w[0] as u64 + 1,
            last: w[1] as u64,
            max_at_ms: times[w[0]..w[1]].iter().copied().max().unwrap_or(0),
        })
        .collect()
}

fn history() -> impl Strategy<Value = (Vec<Millis>, Vec<usize>, usize)> {
    (
        prop::collection::vec(0u64..50, 1..60),
        prop::collection::vec(any::<usize>(), 0..8),
        any::<usize>(),
    )
        .prop_map(|(steps, cuts, base)| {
            let mut t = 1_000;
            let times: Vec<Millis> = steps
                .iter()
                .map(|s| {
                    t += s;
                    t
                })
                .collect();
            let base = base % (times.len() + 1);
            (times, cuts, base)
        })
}

proptest! {
    /// A restore to time T holds exactly the entries stamped at or before T (times increase).
    #[test]
    fn a_restore_to_a_time_is_exactly_the_prefix_stamped_before_it((times, cuts, base) in history(), t_off in 0u64..3000) {
        let finished = if base == 0 { 999 } else { times[base - 1] };
        let backups = [backup(1, base as u64, finished)];
        let all = chunks(&times, &cuts);
        let last = *times.last().unwrap();
        let marks = BTreeMap::from([("sh1".to_owned(), ShardArchiveMark { through_lsn: times.len() as u64, at_ms: last + 10 })]);
        let target = finished + t_off;
        let plan = plan_restore(&backups, &all, &marks, &Target::Time(target));
        if target > last + 10 {
            prop_assert!(matches!(plan, Err(PlanError::BeyondArchive { .. })), "{plan:?}");
        } else {
            let plan = plan.map_err(|e| TestCaseError::fail(e.to_string()))?;
            let expected = times.iter().take_while(|at| **at <= target).count() as u64;
            prop_assert_eq!(replay(&plan.shards["sh1"], &times), expected);
        }
    }

    /// Latest replays every archived entry; a missing chunk is named, never skipped.
    #[test]
    fn latest_is_everything_and_a_missing_chunk_is_an_error((times, cuts, base) in history(), drop in any::<usize>()) {
        let backups = [backup(1, base as u64, 0)];
        let all = chunks(&times, &cuts);
        let marks = BTreeMap::from([("sh1".to_owned(), ShardArchiveMark { through_lsn: times.len() as u64, at_ms: u64::MAX })]);
        let plan = plan_restore(&backups, &all, &marks, &Target::Latest).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(replay(&plan.shards["sh1"], &times), times.len() as u64);

        let gone = drop % all.len();
        let mut fewer = all.clone();
        let removed = fewer.remove(gone);
        let result = plan_restore(&backups, &fewer, &marks, &Target::Latest);
        if removed.last as usize <= base {
            prop_assert!(result.is_ok(), "a chunk before the base is not needed");
        } else {
            let missing_from = removed.first.max(base as u64 + 1);
            prop_assert!(
                matches!(&result, Err(PlanError::Gap { from, .. }) if *from == missing_from),
                "{result:?}"
            );
        }
    }

    /// A restore to an LSN stops exactly there.
    #[test]
    fn a_restore_to_an_lsn_stops_there((times, cuts, base) in history(), at in any::<usize>()) {
        let backups = [backup(1, base as u64, 0)];
        let all = chunks(&times, &cuts);
        let lsn = (base + at % (times.len() - base + 1)) as u64;
        let target = Target::Lsn(BTreeMap::from([("sh1".to_owned(), lsn)]));
        let plan = plan_restore(&backups, &all, &BTreeMap::new(), &target).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(replay(&plan.shards["sh1"], &times), lsn);
    }
}

#[test]
fn the_latest_backup_that_finished_before_the_target_is_the_base() {
    let backups = [backup(1, 10, 100), backup(2, 20, 200), backup(3, 30, 300)];
    let marks = BTreeMap::from([(
        "sh1".to_owned(),
        ShardArchiveMark {
            through_lsn: 30,
            at_ms: 1000,
        },
    )]);
    let all = vec![ChunkName {
        shard: "sh1".into(),
        first: 1,
        last: 40,
        max_at_ms: 400,
    }];
    let plan = plan_restore(&backups, &all, &marks, &Target::Time(250)).unwrap();
    assert_eq!(plan.backup.id, BackupId::at(2));
    assert_eq!(
        plan_restore(&backups, &all, &marks, &Target::Time(50)),
        Err(PlanError::BeforeFirstBackup {
            target_ms: 50,
            earliest_ms: 100
        })
    );
    let plan = plan_restore(&backups, &all, &marks, &Target::Backup(BackupId::at(1))).unwrap();
    assert_eq!(plan.shards["sh1"].stop, Stop::AtLsn(10));
    assert_eq!(
        restorable_range(&backups, &marks),
        Some(RestorableRange {
            from_ms: 100,
            to_ms: 1000
        })
    );
}

#[test]
fn a_mark_beyond_the_last_chunk_reveals_a_missing_tail() {
    let backups = [backup(1, 0, 0)];
    let all = vec![ChunkName {
        shard: "sh1".into(),
        first: 1,
        last: 5,
        max_at_ms: 10,
    }];
    let marks = BTreeMap::from([(
        "sh1".to_owned(),
        ShardArchiveMark {
            through_lsn: 9,
            at_ms: 50,
        },
    )]);
    assert_eq!(
        plan_restore(&backups, &all, &marks, &Target::Latest),
        Err(PlanError::Gap {
            shard: "sh1".into(),
            from: 6,
            to: 9
        })
    );
}
