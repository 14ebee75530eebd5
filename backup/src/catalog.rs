//! What a store holds, read in one go ([`Catalog`]: the complete base backups, every shard's
//! archive mark, the restorable range), and a retention policy carried out on it
//! ([`BackupStore::apply_retention`]). `walshard backup list`, `walshard backup create` and the
//! operator all read and prune a store this way.

use std::collections::BTreeMap;

use crate::Millis;
use crate::manifest::{Manifest, ShardArchiveMark};
use crate::plan::{RestorableRange, restorable_range};
use crate::retention::{Prune, Retention, prune};
use crate::store::{BackupStore, StoreError};

/// The complete base backups and the archive marks of a store.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    /// Every complete base backup, oldest first.
    pub backups: Vec<Manifest>,
    /// Every shard's archive mark.
    pub marks: BTreeMap<String, ShardArchiveMark>,
}

impl Catalog {
    /// The span of times a restore from this store can reach; `None` without a complete backup.
    pub fn range(&self) -> Option<RestorableRange> {
        restorable_range(&self.backups, &self.marks)
    }

    /// The newest complete backup.
    pub fn newest(&self) -> Option<&Manifest> {
        self.backups.last()
    }
}

impl BackupStore {
    /// Reads the store's complete backups and archive marks.
    pub async fn catalog(&self) -> Result<Catalog, StoreError> {
        Ok(Catalog {
            backups: self.manifests().await?,
            marks: self.marks().await?,
        })
    }

    /// Deletes what `policy` lets go at `now_ms` ([`prune`]): the backups outside it (each
    /// manifest first, so a half-deleted backup is never listed), then the archived chunks only
    /// they could replay. Returns what was deleted.
    pub async fn apply_retention(
        &self,
        policy: Retention,
        now_ms: Millis,
    ) -> Result<Prune, StoreError> {
        let backups = self.manifests().await?;
        let chunks = self.chunks(None).await?;
        let gone = prune(&backups, &chunks, now_ms, policy);
        for id in &gone.backups {
            self.delete_backup(id).await?;
            tracing::info!(store = %self.url(), backup = %id, "retention removed a backup");
        }
        for chunk in &gone.chunks {
            self.delete(&chunk.key()).await?;
        }
        if !gone.chunks.is_empty() {
            tracing::info!(store = %self.url(), chunks = gone.chunks.len(), "retention removed archived chunks");
        }
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::chunk::ArchivedEntry;
    use crate::manifest::{PartRef, ShardBackup};
    use crate::names::BackupId;
    use crate::store::StoreOptions;

    fn entry(lsn: u64, at_ms: u64) -> ArchivedEntry {
        ArchivedEntry {
            epoch: 1,
            lsn,
            op_id: u128::from(lsn),
            at_ms,
            payload: Bytes::from_static(b"{}"),
        }
    }

    fn manifest(finished_at_ms: u64, lsn: u64) -> Manifest {
        let id = BackupId::at(finished_at_ms - 1);
        let part = PartRef {
            key: id.ops_key("sh1"),
            bytes: 0,
            crc32c: 0,
        };
        Manifest {
            id,
            started_at_ms: finished_at_ms - 1,
            finished_at_ms,
            fleet: serde_json::json!({}),
            shards: BTreeMap::from([(
                "sh1".to_owned(),
                ShardBackup {
                    epoch: 1,
                    lsn,
                    source: "Server0".to_owned(),
                    rows: 0,
                    parts: Vec::new(),
                    ops: part,
                },
            )]),
        }
    }

    #[tokio::test]
    async fn retention_deletes_old_backups_and_the_chunks_only_they_needed() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/store", dir.path().display());
        let store = BackupStore::open(&url, &StoreOptions::default()).unwrap();
        store
            .put_chunk("sh1", &[entry(1, 1_000), entry(2, 2_000)])
            .await
            .unwrap();
        store
            .put_chunk("sh1", &[entry(3, 3_000), entry(4, 4_000)])
            .await
            .unwrap();
        for (finished, lsn) in [(1_500, 1), (3_500, 3)] {
            store.put_manifest(&manifest(finished, lsn)).await.unwrap();
        }
        store
            .put_mark(
                "sh1",
                ShardArchiveMark {
                    through_lsn: 4,
                    at_ms: 4_500,
                },
            )
            .await
            .unwrap();
        let before = store.catalog().await.unwrap();
        assert_eq!(before.backups.len(), 2);
        let range = before.range().unwrap();
        assert_eq!((range.from_ms, range.to_ms), (1_500, 4_500));

        let gone = store
            .apply_retention(
                Retention {
                    keep_count: Some(1),
                    keep_age_ms: None,
                },
                10_000,
            )
            .await
            .unwrap();
        assert_eq!(gone.backups, vec![BackupId::at(1_499)]);
        assert_eq!(
            gone.chunks.len(),
            1,
            "the chunk 1..=2 is below the kept backup's LSN 3"
        );
        let after = store.catalog().await.unwrap();
        assert_eq!(after.backups.len(), 1);
        assert_eq!(after.newest().map(|m| m.finished_at_ms), Some(3_500));
        assert_eq!(store.chunks(None).await.unwrap().len(), 1);
        assert_eq!(after.range().unwrap().from_ms, 3_500);
    }
}
