//! Continuous WAL archiving (docs/backup.md): the shard's primary ships its committed entries to
//! the backup store in checksummed chunks at least every [`ArchiveOptions::interval`], then writes
//! the shard's mark. Archiving reads the WAL after the fact, so it never blocks a write; its cost
//! to writes is the reads and uploads it does beside them. Compaction keeps every entry that is
//! not archived yet ([`ArchiveProgress::hold`]); a store that is down makes the lag grow (metrics,
//! `/status`), and archiving catches up by itself when it returns.
//!
//! A secondary archives nothing: it reads the mark now and then, so its own compaction also
//! keeps what is not archived (it may become the primary).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, info, warn};
use walshard_backup::{ArchivedEntry, BackupStore, ShardArchiveMark, StoreError, now_ms};

use crate::metrics::Metrics;
use crate::ops::Op;
use crate::shard::Shard;
use crate::wal::WalError;

pub use crate::archive_progress::ArchiveProgress;
pub use crate::metrics::archive::ArchiveMetrics;

/// The archiver's timing and sizes (the defaults suit production: 1 s interval, 8192-entry
/// chunks).
#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    /// How often committed entries are shipped (the archive's lag under load).
    pub interval: Duration,
    /// How often the mark is rewritten while nothing new is committed.
    pub idle_mark: Duration,
    /// How often a secondary reads the mark.
    pub follow: Duration,
    /// Entries per chunk at most.
    pub max_chunk_entries: usize,
    /// The longest wait between retries while the store fails.
    pub max_backoff: Duration,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        ArchiveOptions {
            interval: Duration::from_secs(1),
            idle_mark: Duration::from_secs(5),
            follow: Duration::from_secs(5),
            max_chunk_entries: 8192,
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// Why one archiving step failed (the archiver retries with backoff).
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Writing a chunk or the mark, or reading the mark, failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading committed entries from the WAL failed.
    #[error("reading the WAL: {0}")]
    Wal(#[from] WalError),
}

/// Archives one shard until `stop`.
pub struct Archiver {
    shard: Arc<Shard>,
    store: BackupStore,
    progress: Arc<ArchiveProgress>,
    options: ArchiveOptions,
    /// The next LSN to ship, once known (reset when this replica stops being the primary).
    next: Option<u64>,
    /// The last mark written: `(through, when)`.
    marked: Option<(u64, tokio::time::Instant)>,
    followed: Option<tokio::time::Instant>,
}

impl Archiver {
    /// An archiver of `shard` into `store`, recording how far it got in `progress` (shared
    /// with the shard's compaction and `/status`). Does nothing until [`Archiver::run`].
    pub fn new(
        shard: Arc<Shard>,
        store: BackupStore,
        progress: Arc<ArchiveProgress>,
        options: ArchiveOptions,
    ) -> Archiver {
        Archiver {
            shard,
            store,
            progress,
            options,
            next: None,
            marked: None,
            followed: None,
        }
    }

    /// Archives (on the primary) or follows the mark (on a secondary) every interval, retrying
    /// failures with doubling pauses up to [`ArchiveOptions::max_backoff`], until `stop`
    /// changes.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut backoff = self.options.interval;
        loop {
            let wait = match self.step().await {
                Ok(()) => {
                    backoff = self.options.interval;
                    self.options.interval
                }
                Err(e) => {
                    let shard = self.shard.id().to_string();
                    warn!(shard, error = %e, retry_in = ?backoff, "archiving failed");
                    self.metrics()
                        .errors
                        .get_or_create(&Metrics::shard(&shard))
                        .inc();
                    self.progress.failed(e.to_string());
                    let this = backoff;
                    backoff = (backoff * 2).min(self.options.max_backoff);
                    this
                }
            };
            self.record_gauges();
            tokio::select! {
                _ = stop.changed() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn metrics(&self) -> &ArchiveMetrics {
        &self.shard.metrics().archive
    }

    fn record_gauges(&self) {
        let commit = self.shard.commit_lsn();
        let status = self.progress.status(commit, now_ms());
        let labels = Metrics::shard(self.shard.id().as_str());
        let m = self.metrics();
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        m.archived_lsn
            .get_or_create(&labels)
            .set(gauge(status.archived_lsn.unwrap_or(0)));
        m.lag_entries
            .get_or_create(&labels)
            .set(gauge(status.lag_entries));
        m.lag_seconds
            .get_or_create(&labels)
            .set(gauge(status.lag_seconds));
        let stats = self.shard.wal().stats();
        let mean = stats
            .bytes_appended
            .checked_div(stats.entries_appended)
            .unwrap_or(0);
        m.lag_bytes
            .get_or_create(&labels)
            .set(gauge(status.lag_entries.saturating_mul(mean)));
    }

    async fn step(&mut self) -> Result<(), ArchiveError> {
        if !self.shard.is_primary() {
            self.next = None;
            return self.follow().await;
        }
        let started_ms = now_ms();
        let commit = self.shard.commit_lsn();
        let mut next = match self.next {
            Some(next) => next,
            None => self.resume_point().await?,
        };
        while next <= commit {
            let entries = match self
                .shard
                .wal()
                .read(next, commit, self.options.max_chunk_entries)
                .await
            {
                Err(WalError::Compacted { first, .. }) => {
                    // Only before archiving was ever on (compaction waits for it otherwise):
                    // the archive starts here, and a restore needs a base backup from after it.
                    warn!(shard = %self.shard.id(), from = next, to = first - 1, "entries were compacted before they could be archived");
                    next = first;
                    continue;
                }
                other => other?,
            };
            let Some(last) = entries.last().map(|e| e.lsn) else {
                break;
            };
            let archived: Vec<ArchivedEntry> = entries
                .into_iter()
                .map(|e| ArchivedEntry {
                    epoch: e.epoch,
                    lsn: e.lsn,
                    op_id: e.op_id.0,
                    at_ms: Op::stamp(&e.payload).unwrap_or(0),
                    payload: e.payload,
                })
                .collect();
            let bytes: usize = archived.iter().map(|e| e.payload.len()).sum();
            let name = self
                .store
                .put_chunk(self.shard.id().as_str(), &archived)
                .await?;
            let labels = Metrics::shard(self.shard.id().as_str());
            self.metrics().chunks.get_or_create(&labels).inc();
            self.metrics()
                .bytes
                .get_or_create(&labels)
                .inc_by(bytes as u64);
            debug!(shard = %self.shard.id(), first = name.first, last = name.last, "archived WAL chunk");
            self.progress.archived(last);
            next = last + 1;
            self.next = Some(next);
        }
        self.next = Some(next);
        if next > commit {
            self.mark(commit, started_ms).await?;
        }
        Ok(())
    }

    /// Where a new primary continues: after the store's last chunk of this shard.
    async fn resume_point(&mut self) -> Result<u64, ArchiveError> {
        let chunks = self.store.chunks(Some(self.shard.id().as_str())).await?;
        let last = chunks.iter().map(|c| c.last).max().unwrap_or(0);
        info!(shard = %self.shard.id(), archived_through = last, "archiving as the primary");
        self.progress.archived(last);
        self.marked = None;
        Ok(last + 1)
    }

    /// Writes the mark when it moved, or now and then while idle.
    async fn mark(&mut self, through: u64, at_ms: u64) -> Result<(), ArchiveError> {
        let due = self
            .marked
            .is_none_or(|(t, when)| t != through || when.elapsed() >= self.options.idle_mark);
        if due {
            let mark = ShardArchiveMark {
                through_lsn: through,
                at_ms,
            };
            self.store.put_mark(self.shard.id().as_str(), mark).await?;
            self.marked = Some((through, tokio::time::Instant::now()));
        }
        self.progress.complete(through, at_ms);
        Ok(())
    }

    /// A secondary learns from the mark how far the archive is.
    async fn follow(&mut self) -> Result<(), ArchiveError> {
        if self
            .followed
            .is_some_and(|when| when.elapsed() < self.options.follow)
        {
            return Ok(());
        }
        match self.store.mark(self.shard.id().as_str()).await? {
            Some(mark) => self.progress.complete(mark.through_lsn, mark.at_ms),
            None => self.progress.archived(0),
        }
        self.followed = Some(tokio::time::Instant::now());
        Ok(())
    }
}
