//! Copies of a shard for base backups and restores, streamed in batches so a large shard never
//! sits in memory whole.

use futures::TryStreamExt;
use sqlx::{AssertSqlSafe, Row as _};
use tokio::sync::mpsc;
use walshard_contract::Row;

use super::values::decode_row;
use super::{ShardTable, Store, StoreError};
use crate::wal::{Epoch, Lsn};

/// The point a streamed copy is consistent at, and the op outcomes retained there.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CopyPoint {
    /// The epoch of the last entry applied in the copy.
    pub epoch: Epoch,
    /// The LSN of that entry: the copy holds exactly the entries up to it.
    pub lsn: Lsn,
    /// `(op id bytes, lsn, outcome JSON)`, as in a [`super::Snapshot`].
    pub ops: Vec<(Vec<u8>, Lsn, String)>,
}

impl Store {
    /// Streams the shard's rows, in key order and in batches of at most `batch`, to `rows`, all
    /// read in one consistent InnoDB read view; returns the applied point of that view. Ends early
    /// (with what it has) only by error.
    pub async fn stream_copy(
        &self,
        t: &ShardTable,
        batch: usize,
        rows: mpsc::Sender<Vec<Row>>,
    ) -> Result<CopyPoint, StoreError> {
        let mut tx = self.pool.begin().await?;
        let applied =
            sqlx::query("SELECT applied_epoch, applied_lsn FROM walshard_shards WHERE shard = ?")
                .bind(t.shard.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let (epoch, lsn) = match applied {
            Some(r) => (r.try_get::<u64, _>(0)?, r.try_get::<u64, _>(1)?),
            None => (0, 0),
        };
        let ops = sqlx::query("SELECT op_id, lsn, outcome FROM walshard_ops WHERE shard = ?")
            .bind(t.shard.as_str())
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {}",
            t.column_list,
            t.table,
            t.key()
        );
        {
            let query = sqlx::query(AssertSqlSafe(sql));
            let mut stream = query.fetch(&mut *tx);
            let mut pending = Vec::with_capacity(batch);
            while let Some(r) = stream.try_next().await? {
                pending.push(decode_row(&t.schema, &r)?);
                if pending.len() >= batch {
                    let full = std::mem::replace(&mut pending, Vec::with_capacity(batch));
                    if rows.send(full).await.is_err() {
                        break;
                    }
                }
            }
            if !pending.is_empty() {
                let _ = rows.send(pending).await;
            }
        }
        tx.commit().await?;
        Ok(CopyPoint { epoch, lsn, ops })
    }

    /// Empties the shard and sets its applied point and op outcomes: the start of a restore.
    pub async fn begin_restore(&self, t: &ShardTable, point: &CopyPoint) -> Result<(), StoreError> {
        let snap = super::Snapshot {
            epoch: point.epoch,
            lsn: point.lsn,
            rows: Vec::new(),
            ops: point.ops.clone(),
        };
        self.install_snapshot(t, &snap).await
    }

    /// Adds restored rows (one transaction per call).
    pub async fn restore_rows(&self, t: &ShardTable, rows: &[Row]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let refs: Vec<&Row> = rows.iter().collect();
        self.insert_rows(&mut tx, t, &refs).await?;
        tx.commit().await?;
        Ok(())
    }
}
