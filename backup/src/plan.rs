//! Which objects a restore reads: a base backup, then per shard the archived chunks after its
//! LSN up to the target. Pure, so every rule is tested without a store.
//!
//! What a restore contains (docs/backup.md):
//! - `Latest`: every archived entry;
//! - `Time(T)`: each shard's entries up to the first one stamped after `T` (a prefix of its log,
//!   so a committed state); every write acknowledged before `T` is in it, a write in flight at `T`
//!   may be;
//! - `Lsn`: each named shard up to that LSN, the others to the latest;
//! - `Backup(id)`: exactly that base backup.
//!
//! A missing chunk is an error naming the missing LSNs, never a silent shorter restore.

use std::collections::BTreeMap;

use crate::Millis;
use crate::manifest::{Manifest, ShardArchiveMark};
use crate::names::{BackupId, ChunkName};

/// What a restore restores to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every archived entry, from the newest complete backup.
    Latest,
    /// Each shard's entries stamped up to this time, from the newest backup finished by then.
    Time(Millis),
    /// The named shards up to these LSNs (inclusive), the others to the latest, from the newest
    /// backup whose copies of the named shards are at or below them.
    Lsn(BTreeMap<String, u64>),
    /// Exactly this base backup, no archived entries after it.
    Backup(BackupId),
}

/// Where a shard's replay ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After the last archived entry.
    End,
    /// Before the first entry stamped after this time.
    AfterTime(Millis),
    /// After this LSN.
    AtLsn(u64),
}

impl Stop {
    /// Whether replay takes an entry (`lsn`, stamped `at_ms`), given that it took every one before.
    pub fn takes(self, lsn: u64, at_ms: Millis) -> bool {
        match self {
            Stop::End => true,
            Stop::AfterTime(t) => at_ms <= t,
            Stop::AtLsn(n) => lsn <= n,
        }
    }
}

/// How one shard is restored: its base copy, then these chunks replayed up to `stop`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlan {
    /// The base copy's LSN: replay starts after it.
    pub base_lsn: u64,
    /// The chunks to replay, in LSN order, contiguous from `base_lsn + 1`; the last may hold
    /// entries past `stop`.
    pub chunks: Vec<ChunkName>,
    /// Where replay ends.
    pub stop: Stop,
}

/// What a restore reads: one base backup and, per shard, the chunks replayed on top of it.
#[derive(Debug, Clone, PartialEq)]
pub struct RestorePlan {
    /// The base backup restored from.
    pub backup: Manifest,
    /// The plan of each shard in the backup, by shard name.
    pub shards: BTreeMap<String, ShardPlan>,
}

/// The span of times a restore can reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestorableRange {
    /// When the earliest complete backup finished.
    pub from_ms: Millis,
    /// The latest time every shard's archive is known complete (never before the newest
    /// backup finished).
    pub to_ms: Millis,
}

/// Why no restore plan reaches the target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The store holds no complete base backup (none with a manifest).
    #[error("the store holds no complete base backup")]
    NoBackup,
    /// [`Target::Backup`] names a backup the store does not hold (complete).
    #[error("no base backup {0} in the store")]
    UnknownBackup(String),
    /// [`Target::Time`] is before the earliest backup finished.
    #[error(
        "no base backup finished before {target_ms} ms (the earliest finished at {earliest_ms} ms)"
    )]
    BeforeFirstBackup {
        /// The target time.
        target_ms: Millis,
        /// When the earliest complete backup finished.
        earliest_ms: Millis,
    },
    /// [`Target::Lsn`] names a shard no backup holds.
    #[error("shard {0} is not in the backups")]
    UnknownShard(String),
    /// [`Target::Lsn`] asks for a shard's LSN below every backup's copy of it.
    #[error("shard {shard}: no base backup at or before LSN {lsn}")]
    LsnBeforeBackups {
        /// The shard.
        shard: String,
        /// The LSN asked for.
        lsn: u64,
    },
    /// Entries the replay needs are missing: a later chunk exists, or the shard's mark says
    /// they were archived.
    #[error("shard {shard}: archived entries {from}..={to} are missing from the store")]
    Gap {
        /// The shard.
        shard: String,
        /// First missing LSN.
        from: u64,
        /// Last missing LSN (inclusive).
        to: u64,
    },
    /// The target is past what the archive holds: an LSN beyond its last chunk, or a time after
    /// the shard's archive is known complete.
    #[error("shard {shard}: the archive reaches {reached} but the target needs {needed}")]
    BeyondArchive {
        /// The shard.
        shard: String,
        /// How far the archive goes (an LSN, and for a time target how long it is complete).
        reached: String,
        /// What the target needs (an LSN or a time).
        needed: String,
    },
}

/// The plan for `target` over the complete backups, chunks and marks a store holds.
pub fn plan_restore(
    backups: &[Manifest],
    chunks: &[ChunkName],
    marks: &BTreeMap<String, ShardArchiveMark>,
    target: &Target,
) -> Result<RestorePlan, PlanError> {
    let backup = choose_backup(backups, target)?;
    let mut shards = BTreeMap::new();
    for (shard, copy) in &backup.shards {
        let stop = match target {
            Target::Latest => Stop::End,
            Target::Time(t) => Stop::AfterTime(*t),
            Target::Lsn(lsns) => lsns.get(shard).map_or(Stop::End, |n| Stop::AtLsn(*n)),
            Target::Backup(_) => Stop::AtLsn(copy.lsn),
        };
        let mine: Vec<&ChunkName> = chunks.iter().filter(|c| c.shard == *shard).collect();
        let plan = follow(shard, copy.lsn, &mine, marks.get(shard), stop)?;
        shards.insert(shard.clone(), plan);
    }
    Ok(RestorePlan {
        backup: backup.clone(),
        shards,
    })
}

fn choose_backup<'a>(backups: &'a [Manifest], target: &Target) -> Result<&'a Manifest, PlanError> {
    let latest = |ok: &dyn Fn(&Manifest) -> bool| {
        backups.iter().filter(|m| ok(m)).max_by(|a, b| {
            a.finished_at_ms
                .cmp(&b.finished_at_ms)
                .then(a.id.cmp(&b.id))
        })
    };
    match target {
        Target::Latest => latest(&|_| true).ok_or(PlanError::NoBackup),
        Target::Backup(id) => backups
            .iter()
            .find(|m| m.id == *id)
            .ok_or_else(|| PlanError::UnknownBackup(id.to_string())),
        Target::Time(t) => latest(&|m| m.finished_at_ms <= *t).ok_or_else(|| {
            match backups.iter().map(|m| m.finished_at_ms).min() {
                Some(earliest_ms) => PlanError::BeforeFirstBackup {
                    target_ms: *t,
                    earliest_ms,
                },
                None => PlanError::NoBackup,
            }
        }),
        Target::Lsn(lsns) => {
            if backups.is_empty() {
                return Err(PlanError::NoBackup);
            }
            if let Some(shard) = lsns
                .keys()
                .find(|s| !backups.iter().any(|m| m.shards.contains_key(*s)))
            {
                return Err(PlanError::UnknownShard(shard.clone()));
            }
            let fits = |m: &Manifest| {
                lsns.iter()
                    .all(|(s, n)| m.shards.get(s).is_some_and(|c| c.lsn <= *n))
            };
            latest(&fits).ok_or_else(|| {
                let (shard, lsn) = lsns
                    .iter()
                    .find(|(s, n)| {
                        !backups
                            .iter()
                            .any(|m| m.shards.get(*s).is_some_and(|c| c.lsn <= **n))
                    })
                    .map(|(s, n)| (s.clone(), *n))
                    .unwrap_or_default();
                PlanError::LsnBeforeBackups { shard, lsn }
            })
        }
    }
}

/// The chunks of one shard after `base_lsn` that replay up to `stop` needs, in order.
fn follow(
    shard: &str,
    base_lsn: u64,
    chunks: &[&ChunkName],
    mark: Option<&ShardArchiveMark>,
    stop: Stop,
) -> Result<ShardPlan, PlanError> {
    let mut next = base_lsn + 1;
    let mut out = Vec::new();
    let mut stopped = false;
    loop {
        if let Stop::AtLsn(n) = stop
            && next > n
        {
            stopped = true;
            break;
        }
        let covering = chunks
            .iter()
            .filter(|c| c.first <= next && next <= c.last)
            .max_by_key(|c| c.last);
        let Some(chunk) = covering else {
            let archived_later = chunks.iter().map(|c| c.first).filter(|f| *f > next).min();
            let marked = mark.map(|m| m.through_lsn).filter(|t| *t >= next);
            if let Some(to) = archived_later.map(|f| f - 1).or(marked) {
                return Err(PlanError::Gap {
                    shard: shard.to_owned(),
                    from: next,
                    to,
                });
            }
            break;
        };
        out.push((*chunk).clone());
        next = chunk.last + 1;
        if let Stop::AfterTime(t) = stop
            && chunk.max_at_ms > t
        {
            stopped = true;
            break;
        }
    }
    let reached = next - 1;
    match stop {
        Stop::AtLsn(n) if !stopped => Err(PlanError::BeyondArchive {
            shard: shard.to_owned(),
            reached: format!("LSN {reached}"),
            needed: format!("LSN {n}"),
        }),
        Stop::AfterTime(t) if !stopped && mark.is_none_or(|m| m.at_ms < t) => {
            Err(PlanError::BeyondArchive {
                shard: shard.to_owned(),
                reached: format!(
                    "LSN {reached}, complete until {} ms",
                    mark.map_or(0, |m| m.at_ms)
                ),
                needed: format!("{t} ms"),
            })
        }
        _ => Ok(ShardPlan {
            base_lsn,
            chunks: out,
            stop,
        }),
    }
}

/// From the earliest complete backup to the moment every shard's archive is known complete.
pub fn restorable_range(
    backups: &[Manifest],
    marks: &BTreeMap<String, ShardArchiveMark>,
) -> Option<RestorableRange> {
    let from_ms = backups.iter().map(|m| m.finished_at_ms).min()?;
    let latest = backups.iter().map(|m| m.finished_at_ms).max()?;
    let shards = backups.iter().flat_map(|m| m.shards.keys());
    let archived = shards
        .map(|s| marks.get(s).map(|m| m.at_ms))
        .min()
        .flatten()
        .unwrap_or(latest);
    Some(RestorableRange {
        from_ms,
        to_ms: archived.max(latest),
    })
}

#[cfg(test)]
pub(crate) mod tests;
