//! The secondary side: accepting appends from the primary and installing snapshots.

use std::collections::HashMap;
use std::sync::Arc;

use tracing::{debug, info, warn};
use walshard_replica::primary::{compactable_through, keep_unarchived, needs_snapshot};
use walshard_replica::{Append, EntryId, LogFacts, Refusal, append_lookups, plan_append};

use super::effects::EffectData;
use super::{Control, Shard, ShardError};
use crate::metrics::Metrics;
use crate::replication::AppendRequest;
use crate::store::Snapshot;
use crate::wal::{Epoch, Lsn};

impl Shard {
    /// Accepts `primary` as the sender for `epoch`, or refuses it as stale (the rule book's
    /// `accept_primary`: one primary per epoch, nothing below the promise).
    pub(super) async fn accept_primary(
        self: &Arc<Self>,
        c: &mut Control,
        epoch: Epoch,
        primary: &str,
    ) -> Result<(), ShardError> {
        let ready = c
            .node
            .accept_primary(epoch, primary)
            .map_err(|r| self.refused(r))?;
        if !ready.effects.is_empty() {
            info!(shard = %self.id(), epoch, primary, "following");
        }
        self.take(c, ready, &mut EffectData::default()).await?;
        Ok(())
    }

    /// An append from a primary (docs/replication.md, write path 3): the rule book plans it
    /// (continuity, truncation, commit point) from the epochs it asks for; this executes the
    /// plan. Returns the last LSN held.
    pub async fn append(self: &Arc<Self>, req: AppendRequest) -> Result<Lsn, ShardError> {
        if let Some(e) = self.halted_error() {
            return Err(e);
        }
        let mut c = self.control.lock().await;
        self.accept_primary(&mut c, req.epoch, &req.primary).await?;

        let (last_epoch, last_lsn) = self.wal.last();
        let facts = LogFacts {
            first_lsn: self.wal.first_lsn(),
            last_epoch,
            last_lsn,
            commit_floor: self.applied_lsn().max(self.commit_lsn()),
        };
        let ids: Vec<EntryId> = req
            .entries
            .iter()
            .map(|e| EntryId {
                epoch: e.epoch,
                lsn: e.lsn,
            })
            .collect();
        let append = Append {
            prev_lsn: req.prev_lsn,
            prev_epoch: req.prev_epoch,
            commit_lsn: req.commit_lsn,
            entries: &ids,
        };
        let mut ours = HashMap::new();
        for lsn in append_lookups(&append, &facts) {
            ours.insert(lsn, self.wal.epoch_at(lsn).await?);
        }
        let plan =
            plan_append(&append, &facts, |lsn| ours.get(&lsn).copied().flatten()).map_err(|r| {
                match r {
                    Refusal::Committed { .. } => {
                        let reason = format!("primary {} of epoch {} {r}", req.primary, req.epoch);
                        self.halt(reason.clone());
                        ShardError::Halted {
                            shard: self.table.shard.to_string(),
                            reason,
                        }
                    }
                    r => self.refused(r),
                }
            })?;
        let mut data = EffectData {
            entries: req.entries,
            ..EffectData::default()
        };
        let next = c.node.clone();
        let matched = plan.matched;
        self.execute(&mut c, next, plan.effects, &mut data).await?;
        drop(c);
        self.ctx
            .metrics
            .appends_received
            .get_or_create(&Metrics::shard(self.table.shard.as_str()))
            .inc();
        self.reads.learn(req.commit_lsn);
        // Not the WAL's last LSN: a tail beyond what this append checked is not answered.
        Ok(matched)
    }

    /// Replaces this replica's state by the primary's snapshot (a wiped replica, or one behind
    /// what the primary's WAL still holds): MySQL first, then the WAL restarts after the
    /// snapshot's LSN; the primary streams the rest.
    pub async fn install_snapshot(
        self: &Arc<Self>,
        epoch: Epoch,
        primary: &str,
        snap: Snapshot,
    ) -> Result<Lsn, ShardError> {
        if let Some(e) = self.halted_error() {
            return Err(e);
        }
        let mut c = self.control.lock().await;
        self.accept_primary(&mut c, epoch, primary).await?;
        // Mid-install the table is no committed prefix: no reads until an install completes.
        self.reads.installing(true);
        self.store.install_snapshot(&self.table, &snap).await?;
        self.wal.reset(snap.epoch, snap.lsn).await?;
        self.applied.send_replace(snap.lsn);
        self.reads.installing(false);
        self.raise_commit(snap.lsn);
        self.ctx
            .metrics
            .snapshots_installed
            .get_or_create(&Metrics::shard(self.table.shard.as_str()))
            .inc();
        info!(shard = %self.id(), lsn = snap.lsn, rows = snap.rows.len(), primary, "installed snapshot");
        Ok(snap.lsn)
    }

    /// Deletes WAL segments nobody needs: entries this replica has applied and, on a primary,
    /// that every secondary holds, unless a secondary lags more than `retain_entries` behind
    /// (it will get a snapshot instead).
    pub(super) async fn compact(&self) {
        let held = self
            .current_replication()
            .map(|r| r.min_held(self.wal.last().1));
        let through = compactable_through(self.applied_lsn(), held, self.ctx.retain_entries);
        let through = keep_unarchived(through, self.archive.get().map(|a| a.hold()));
        match self.wal.compact_through(through).await {
            Ok(0) => {}
            Ok(n) => debug!(shard = %self.id(), through, segments = n, "compacted WAL"),
            Err(e) => warn!(shard = %self.id(), error = %e, "WAL compaction failed"),
        }
    }

    /// Whether a secondary at `next` is better served by a snapshot than by the WAL.
    pub fn needs_snapshot(&self, next: Lsn) -> bool {
        needs_snapshot(
            next,
            self.wal.first_lsn(),
            self.applied_lsn(),
            self.ctx.retain_entries,
        )
    }
}
