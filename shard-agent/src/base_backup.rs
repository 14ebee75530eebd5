//! A base backup of one shard (docs/backup.md): a consistent copy at this replica's applied
//! point, streamed from MySQL in parts of [`ROWS_PER_PART`] rows straight to the backup store, so
//! a shard of any size is never held in memory whole.

use bytes::Bytes;
use tokio::sync::mpsc;
use walshard_backup::{BackupId, BackupStore, ShardBackup, StoreError};

use crate::shard::Shard;
use crate::store::StoreError as MySqlError;

/// Rows per part object of a base backup (a part is one JSON array of rows).
pub const ROWS_PER_PART: usize = 10_000;

/// Why a base backup failed; parts already uploaded stay in the store, unreferenced.
#[derive(Debug, thiserror::Error)]
pub enum BaseBackupError {
    /// Uploading a part or the op outcomes to the backup store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading the consistent copy from MySQL failed.
    #[error("reading the shard's copy from MySQL: {0}")]
    MySql(#[from] MySqlError),
    /// Rows or op outcomes could not be encoded as JSON.
    #[error("encoding rows: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Copies `shard` into backup `id` and returns its entry for the manifest.
pub async fn take(
    shard: &Shard,
    store: &BackupStore,
    id: &BackupId,
    rows_per_part: usize,
) -> Result<ShardBackup, BaseBackupError> {
    let name = shard.id().as_str();
    let (tx, mut rx) = mpsc::channel::<Vec<walshard_contract::Row>>(2);
    let copy = shard
        .store()
        .stream_copy(&shard.table, rows_per_part.max(1), tx);
    let upload = async {
        let mut parts = Vec::new();
        let mut rows = 0u64;
        while let Some(batch) = rx.recv().await {
            rows += batch.len() as u64;
            let bytes = Bytes::from(serde_json::to_vec(&batch)?);
            parts.push(
                store
                    .put_part(&id.part_key(name, parts.len()), bytes)
                    .await?,
            );
        }
        Ok::<_, BaseBackupError>((parts, rows))
    };
    let (point, uploaded) = tokio::join!(copy, upload);
    // An upload failure stops the copy (its channel closes): report the upload's error first.
    let (parts, rows) = uploaded?;
    let point = point?;
    let ops = store
        .put_part(
            &id.ops_key(name),
            Bytes::from(serde_json::to_vec(&point.ops)?),
        )
        .await?;
    Ok(ShardBackup {
        epoch: point.epoch,
        lsn: point.lsn,
        source: shard.server_name().to_owned(),
        rows,
        parts,
        ops,
    })
}
