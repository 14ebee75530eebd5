//! The applier: committed WAL entries into MySQL in LSN order, and WAL compaction.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, warn};
use walshard_replica::Role;

use super::{IDLE_CHECK, MAX_APPLY_BATCH, Shard, ShardError};
use crate::metrics::Metrics;
use crate::ops::Op;
use crate::store::StoreError;
use crate::wal::{Entry, Lsn};

impl Shard {
    /// Applies the next batch of committed, unapplied entries. `Ok(false)` when there was none.
    pub(super) async fn apply_step(&self) -> Result<bool, ShardError> {
        let applied = self.applied_lsn();
        let commit = self.commit_lsn();
        if applied >= commit {
            return Ok(false);
        }
        let entries = self.wal.read(applied + 1, commit, MAX_APPLY_BATCH).await?;
        if entries.is_empty() {
            return Ok(false);
        }
        let mut batch: Vec<(Entry, Op)> = Vec::with_capacity(entries.len());
        for e in entries {
            match Op::decode(&e.payload) {
                Ok(op) => batch.push((e, op)),
                Err(err) => {
                    let reason = format!("entry at LSN {} cannot be decoded: {err}", e.lsn);
                    self.halt(reason.clone());
                    return Err(ShardError::Halted {
                        shard: self.table.shard.to_string(),
                        reason,
                    });
                }
            }
        }
        let labels = Metrics::shard(self.table.shard.as_str());
        let started = std::time::Instant::now();
        match self.store.apply(&self.table, applied, &batch).await {
            Ok(outcomes) => {
                debug!(
                    entries = batch.len(),
                    apply_us = started.elapsed().as_micros() as u64,
                    "applied batch"
                );
                let last = batch.last().map_or(applied, |(e, _)| e.lsn);
                self.applied.send_replace(last);
                let m = &self.ctx.metrics;
                m.applied_entries
                    .get_or_create(&labels)
                    .inc_by(batch.len() as u64);
                m.apply_batches.get_or_create(&labels).inc();
                m.apply_batch_entries
                    .get_or_create(&labels)
                    .observe(batch.len() as f64);
                self.with_waiters(|w| {
                    for ((e, _), outcome) in batch.iter().zip(outcomes) {
                        if let Some(list) = w.remove(&e.op_id) {
                            for s in list {
                                let _ = s.send(outcome.clone());
                            }
                        }
                    }
                });
                Ok(true)
            }
            Err(StoreError::AppliedMismatch { found, .. }) => {
                self.rewind_to(found);
                Ok(true)
            }
            Err(e) => {
                self.ctx.metrics.apply_errors.get_or_create(&labels).inc();
                Err(e.into())
            }
        }
    }

    /// MySQL's `applied_lsn` differs from ours: it lost commits (crash with relaxed flushing)
    /// or was restored. Continue from what MySQL has; the WAL still holds everything after it.
    pub(super) fn rewind_to(&self, found: Lsn) {
        let (_, wal_last) = self.wal.last();
        if found > wal_last || found + 1 < self.wal.first_lsn() {
            self.halt(format!(
                "MySQL applied_lsn {found} is outside the WAL [{}, {wal_last}]",
                self.wal.first_lsn()
            ));
            return;
        }
        warn!(shard = %self.table.shard, ours = self.applied_lsn(), mysql = found, "MySQL applied_lsn moved; replaying WAL from it");
        self.applied.send_replace(found);
    }

    pub(super) fn record_gauges(&self) {
        let labels = Metrics::shard(self.table.shard.as_str());
        let stats = self.wal.stats();
        let m = &self.ctx.metrics;
        let set = |f: &prometheus_client::metrics::family::Family<
            crate::metrics::ShardLabels,
            prometheus_client::metrics::gauge::Gauge,
        >,
                   v: u64| {
            f.get_or_create(&labels)
                .set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        set(&m.applied_lsn, self.applied_lsn());
        set(&m.wal_last_lsn, self.wal.last().1);
        set(&m.wal_fsyncs, stats.fsyncs);
        set(&m.wal_groups, stats.groups);
        set(&m.wal_bytes, stats.bytes_appended);
        set(&m.wal_max_group, stats.max_group);
        set(&m.commit_lsn, self.commit_lsn());
        let v = self.view();
        let taking_writes =
            v.role == Role::Primary && v.replication.as_ref().is_some_and(|r| r.accepting());
        set(&m.primary, u64::from(taking_writes));
        set(&m.epoch, v.epoch);
        if let Some(r) = v.replication.filter(|_| v.role == Role::Primary) {
            let last = self.wal.last().1;
            for p in &r.peers {
                let lag = last.saturating_sub(r.matched(&p.name).unwrap_or(0));
                m.peer_lag
                    .get_or_create(&Metrics::peer(self.table.shard.as_str(), &p.name))
                    .set(i64::try_from(lag).unwrap_or(i64::MAX));
            }
        }
    }

    /// Refreshes the shard's gauges (called before `/metrics` is encoded).
    pub fn refresh_metrics(&self) {
        self.record_gauges();
    }

    /// The applier loop: applies committed entries as they come, retries MySQL failures with
    /// backoff, and re-checks MySQL's `applied_lsn` when idle. Ends when `stop` turns true.
    pub async fn run_applier(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut commit = self.commit.subscribe();
        let mut backoff = Duration::from_millis(50);
        let mut compacted = tokio::time::Instant::now();
        loop {
            if *stop.borrow() {
                return;
            }
            if compacted.elapsed() >= IDLE_CHECK {
                self.compact().await;
                compacted = tokio::time::Instant::now();
            }
            match self.apply_step().await {
                Ok(true) => {
                    backoff = Duration::from_millis(50);
                    continue;
                }
                Ok(false) => {}
                Err(ShardError::Halted { .. }) => return,
                Err(e) => {
                    warn!(shard = %self.table.shard, error = %e, retry_in_ms = backoff.as_millis() as u64, "apply failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    self.check_store().await;
                    continue;
                }
            }
            tokio::select! {
                r = commit.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(IDLE_CHECK) => self.check_store().await,
                _ = stop.changed() => return,
            }
        }
    }

    pub(super) async fn check_store(&self) {
        if let Ok((_, found)) = self.store.applied(&self.table).await
            && found != self.applied_lsn()
        {
            self.rewind_to(found);
        }
    }
}
