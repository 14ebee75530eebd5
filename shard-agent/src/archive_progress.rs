//! How far one shard's WAL archive is known complete: shared by the archiver (`archive`, which
//! advances it), WAL compaction in `shard` (which never deletes what is not archived) and
//! `/status`.

use std::sync::Mutex;

use walshard_backup::Millis;
use walshard_contract::ArchiveReport;

/// One shard's archive progress, behind a lock; it only moves forward. The default: the
/// archiver has not looked yet (compaction keeps everything).
#[derive(Debug, Default)]
pub struct ArchiveProgress {
    inner: Mutex<Progress>,
}

#[derive(Debug, Default, Clone)]
struct Progress {
    /// Every entry up to here is in the store; `None` until the archiver has looked.
    through: Option<u64>,
    /// When the archive was last known complete (the mark's time).
    complete_at_ms: Millis,
    error: Option<String>,
}

impl ArchiveProgress {
    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Entries up to `lsn` are in the store.
    pub fn archived(&self, lsn: u64) {
        let mut p = self.lock();
        p.through = Some(p.through.map_or(lsn, |t| t.max(lsn)));
        p.error = None;
    }

    /// At `at_ms` the archive held every acknowledged entry.
    pub fn complete(&self, through: u64, at_ms: Millis) {
        self.archived(through);
        let mut p = self.lock();
        p.complete_at_ms = p.complete_at_ms.max(at_ms);
    }

    /// The last archiving step failed with `error` (shown by `/status` until entries are
    /// archived again).
    pub fn failed(&self, error: String) {
        self.lock().error = Some(error);
    }

    /// What WAL compaction must keep: nothing after this LSN may be deleted (0 before the
    /// archiver has looked: keep everything).
    pub fn hold(&self) -> u64 {
        self.lock().through.unwrap_or(0)
    }

    /// The shard's archive as `/status` reports it.
    pub fn status(&self, commit: u64, now_ms: Millis) -> ArchiveReport {
        let p = self.lock().clone();
        let lag_entries = commit.saturating_sub(p.through.unwrap_or(0));
        let lag_seconds = if lag_entries == 0 && p.error.is_none() {
            0
        } else {
            now_ms.saturating_sub(p.complete_at_ms) / 1000
        };
        ArchiveReport {
            archived_lsn: p.through,
            lag_entries,
            lag_seconds,
            error: p.error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_released_before_the_archiver_has_looked_and_progress_never_goes_back() {
        let p = ArchiveProgress::default();
        assert_eq!(p.hold(), 0);
        p.complete(10, 5_000);
        p.archived(7);
        assert_eq!(p.hold(), 10);
        assert_eq!(p.status(10, 9_000).lag_seconds, 0);
        p.failed("store down".into());
        let s = p.status(15, 9_000);
        assert_eq!((s.lag_entries, s.lag_seconds), (5, 4));
        assert_eq!(s.error.as_deref(), Some("store down"));
    }
}
