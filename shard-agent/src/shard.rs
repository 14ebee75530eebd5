//! One shard on this server: its WAL, its MySQL table, and the applier that moves committed WAL
//! entries into MySQL in LSN order.
//!
//! Write path: the op is appended to the WAL (group commit), becomes committed (here: durable on
//! this replica; with replication: durable on a majority), the applier applies it in a MySQL
//! transaction that also advances `applied_lsn`, and only then is the writer answered with the
//! op's outcome. Reads go to MySQL, which holds committed entries only.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tracing::{debug, error, info, warn};
use walshard_contract::{Ident, ShardSpec};

use crate::metrics::Metrics;
use crate::ops::{Op, Outcome};
use crate::store::{ShardTable, Store, StoreError};
use crate::wal::{Entry, Epoch, Lsn, OpId, Wal, WalError, WalOptions};

/// Most entries applied in one MySQL transaction.
const MAX_APPLY_BATCH: usize = 1024;
/// How long a writer waits for its committed op to be applied before answering 503.
const APPLY_WAIT: Duration = Duration::from_secs(30);
/// How often an idle applier re-checks MySQL's `applied_lsn` (MySQL may have lost commits).
const IDLE_CHECK: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("operation could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(
        "shard {shard}: MySQL has applied LSN {applied} but the WAL ends at {wal_last}; the WAL lost acknowledged entries, refusing to serve this shard"
    )]
    WalBehindStore {
        shard: String,
        applied: Lsn,
        wal_last: Lsn,
    },
    #[error(
        "shard {shard}: MySQL has applied LSN {applied} but the WAL starts at {wal_first}; entries in between are gone"
    )]
    StoreBehindWal {
        shard: String,
        applied: Lsn,
        wal_first: Lsn,
    },
    #[error("shard {shard} is halted: {reason}")]
    Halted { shard: String, reason: String },
    #[error(
        "the write is durable in the WAL at LSN {lsn} but not applied yet (MySQL unavailable?); retry with the same operation id"
    )]
    NotAppliedYet { lsn: Lsn },
    #[error("the agent is shutting down")]
    ShuttingDown,
}

/// The shard's state as `/status` reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ShardStatus {
    pub role: &'static str,
    pub epoch: Epoch,
    pub last_epoch: Epoch,
    pub last_lsn: Lsn,
    pub applied_lsn: Lsn,
    pub first_lsn: Lsn,
    pub halted: Option<String>,
}

pub struct Shard {
    pub table: ShardTable,
    pub range: Option<ShardSpec>,
    wal: Wal,
    store: Store,
    epoch: AtomicU64,
    /// LSN up to which entries are committed (may be applied).
    commit: watch::Receiver<Lsn>,
    applied: watch::Sender<Lsn>,
    waiters: Mutex<HashMap<OpId, Vec<oneshot::Sender<Outcome>>>>,
    halted: Mutex<Option<String>>,
    metrics: Arc<Metrics>,
}

impl Shard {
    /// Opens the shard's WAL under `dir`, makes sure its table exists, checks that the WAL and
    /// MySQL agree, and replays every committed entry MySQL has not applied yet.
    pub async fn open(
        dir: &Path,
        table: ShardTable,
        range: Option<ShardSpec>,
        epoch: Epoch,
        store: Store,
        wal_options: WalOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Shard>, ShardError> {
        let shard = table.shard.to_string();
        let (wal, report) = Wal::open(dir, wal_options)?;
        if let Some(cut) = &report.cut {
            warn!(shard, segment = %cut.segment.display(), offset = cut.offset, bytes_cut = cut.bytes_cut, reason = %cut.reason, "cut torn WAL tail");
        }
        store.ensure_shard(&table).await?;
        let (_, applied) = store.applied(&table).await?;
        let (_, wal_last) = wal.last();
        if applied > wal_last {
            return Err(ShardError::WalBehindStore {
                shard,
                applied,
                wal_last,
            });
        }
        if applied + 1 < wal.first_lsn() {
            return Err(ShardError::StoreBehindWal {
                shard,
                applied,
                wal_first: wal.first_lsn(),
            });
        }
        info!(
            shard,
            applied,
            wal_last,
            segments = report.segments,
            "shard opened"
        );
        // Standalone: a durable entry is committed. Replication replaces this commit point.
        let commit = wal.subscribe();
        let this = Arc::new(Shard {
            table,
            range,
            wal,
            store,
            epoch: AtomicU64::new(epoch),
            commit,
            applied: watch::Sender::new(applied),
            waiters: Mutex::new(HashMap::new()),
            halted: Mutex::new(None),
            metrics,
        });
        let replay_from = applied;
        while this.apply_step().await? {}
        if wal_last > replay_from {
            info!(shard = %this.table.shard, replayed = wal_last - replay_from, "replayed WAL into MySQL");
        }
        this.record_gauges();
        Ok(this)
    }

    pub fn id(&self) -> &Ident {
        &self.table.shard
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch.load(Ordering::SeqCst)
    }

    pub fn applied_lsn(&self) -> Lsn {
        *self.applied.borrow()
    }

    pub fn status(&self) -> ShardStatus {
        let (last_epoch, last_lsn) = self.wal.last();
        ShardStatus {
            role: "primary",
            epoch: self.epoch(),
            last_epoch,
            last_lsn,
            applied_lsn: self.applied_lsn(),
            first_lsn: self.wal.first_lsn(),
            halted: self.halted_reason(),
        }
    }

    fn halted_reason(&self) -> Option<String> {
        self.halted.lock().ok().and_then(|h| h.clone())
    }

    fn halt(&self, reason: String) {
        error!(shard = %self.table.shard, %reason, "halting shard");
        if let Ok(mut h) = self.halted.lock() {
            *h = Some(reason);
        }
    }

    /// Logs `op`, waits until it is committed and applied, and returns its outcome. A retried
    /// op id gets the first attempt's outcome and is not applied again.
    pub async fn submit(&self, op_id: OpId, op: Op) -> Result<Outcome, ShardError> {
        if let Some(reason) = self.halted_reason() {
            return Err(ShardError::Halted {
                shard: self.table.shard.to_string(),
                reason,
            });
        }
        let payload = op.encode()?;
        let (tx, rx) = oneshot::channel();
        self.with_waiters(|w| w.entry(op_id).or_default().push(tx));
        let started = std::time::Instant::now();
        let entry = match self.wal.propose(self.epoch(), op_id, payload).await {
            Ok(entry) => entry,
            Err(e) => {
                self.prune_waiters(op_id);
                return Err(e.into());
            }
        };
        let durable = started.elapsed();
        match tokio::time::timeout(APPLY_WAIT, rx).await {
            Ok(Ok(outcome)) => {
                debug!(
                    lsn = entry.lsn,
                    durable_us = durable.as_micros() as u64,
                    applied_us = started.elapsed().as_micros() as u64,
                    "op done"
                );
                Ok(outcome)
            }
            Ok(Err(_)) => Err(ShardError::ShuttingDown),
            Err(_) => {
                self.prune_waiters(op_id);
                Err(ShardError::NotAppliedYet { lsn: entry.lsn })
            }
        }
    }

    fn with_waiters<R>(
        &self,
        f: impl FnOnce(&mut HashMap<OpId, Vec<oneshot::Sender<Outcome>>>) -> R,
    ) -> R {
        let mut guard = match self.waiters.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    fn prune_waiters(&self, op_id: OpId) {
        self.with_waiters(|w| {
            if let Some(list) = w.get_mut(&op_id) {
                list.retain(|s| !s.is_closed());
                if list.is_empty() {
                    w.remove(&op_id);
                }
            }
        });
    }

    /// Applies the next batch of committed, unapplied entries. `Ok(false)` when there was none.
    async fn apply_step(&self) -> Result<bool, ShardError> {
        let applied = self.applied_lsn();
        let commit = *self.commit.borrow();
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
                self.metrics
                    .applied_entries
                    .get_or_create(&labels)
                    .inc_by(batch.len() as u64);
                self.metrics.apply_batches.get_or_create(&labels).inc();
                self.metrics
                    .apply_batch_entries
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
                self.metrics.apply_errors.get_or_create(&labels).inc();
                Err(e.into())
            }
        }
    }

    /// MySQL's `applied_lsn` differs from ours: it lost commits (crash with relaxed flushing)
    /// or was restored. Continue from what MySQL has; the WAL still holds everything after it.
    fn rewind_to(&self, found: Lsn) {
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

    fn record_gauges(&self) {
        let labels = Metrics::shard(self.table.shard.as_str());
        let stats = self.wal.stats();
        let m = &self.metrics;
        let set = |f: &prometheus_client::metrics::family::Family<
            _,
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
    }

    /// Refreshes the shard's gauges (called before `/metrics` is encoded).
    pub fn refresh_metrics(&self) {
        self.record_gauges();
    }

    /// The applier loop: applies committed entries as they come, retries MySQL failures with
    /// backoff, and re-checks MySQL's `applied_lsn` when idle. Ends when `stop` turns true.
    pub async fn run_applier(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut commit = self.commit.clone();
        let mut backoff = Duration::from_millis(50);
        loop {
            if *stop.borrow() {
                return;
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

    async fn check_store(&self) {
        if let Ok((_, found)) = self.store.applied(&self.table).await
            && found != self.applied_lsn()
        {
            self.rewind_to(found);
        }
    }

    /// Stops accepting appends; queued ones are flushed first.
    pub async fn close(&self) -> Result<(), ShardError> {
        self.wal.close().await?;
        Ok(())
    }
}
