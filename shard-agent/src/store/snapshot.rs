//! [`Snapshot`]: a consistent copy of a shard in memory, taken by a primary and installed on a
//! replica that must be resynced.

use sqlx::{AssertSqlSafe, Executor};
use walshard_contract::Row;

use super::statements::{MAX_PLACEHOLDERS, pow2_chunks};
use super::{ShardTable, Store, StoreError};
use crate::wal::{Epoch, Lsn};

/// A consistent copy of one shard at its applied point, for resyncing a replica.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// The epoch of the last entry the copy includes.
    pub epoch: Epoch,
    /// The LSN of that entry: the copy holds exactly the entries up to it.
    pub lsn: Lsn,
    /// Every row of the shard, ordered by key.
    pub rows: Vec<Row>,
    /// `(op id bytes, lsn, outcome JSON)` of the ops retained for retry detection.
    pub ops: Vec<(Vec<u8>, Lsn, String)>,
}

impl Store {
    /// A consistent copy of the shard in memory: its rows and op outcomes exactly as of its
    /// applied point, all read in one InnoDB read view ([`Store::stream_copy`], collected).
    pub async fn snapshot(&self, t: &ShardTable) -> Result<Snapshot, StoreError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Row>>(4);
        let copy = self.stream_copy(t, 4096, tx);
        let collect = async {
            let mut rows = Vec::new();
            while let Some(batch) = rx.recv().await {
                rows.extend(batch);
            }
            rows
        };
        let (point, rows) = tokio::join!(copy, collect);
        let point = point?;
        Ok(Snapshot {
            epoch: point.epoch,
            lsn: point.lsn,
            rows,
            ops: point.ops,
        })
    }

    /// Replaces the shard's rows, op outcomes and applied point by a snapshot, in one
    /// transaction (the bookkeeping row first, so a concurrent apply waits and then fails its
    /// compare-and-set).
    pub async fn install_snapshot(
        &self,
        t: &ShardTable,
        snap: &Snapshot,
    ) -> Result<(), StoreError> {
        let shard = t.shard.as_str();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE walshard_shards SET applied_lsn = ?, applied_epoch = ? WHERE shard = ?",
        )
        .bind(snap.lsn)
        .bind(snap.epoch)
        .bind(shard)
        .execute(&mut *tx)
        .await?;
        tx.execute(AssertSqlSafe(format!("DELETE FROM {}", t.table)))
            .await?;
        let rows: Vec<&Row> = snap.rows.iter().collect();
        self.insert_rows(&mut tx, t, &rows).await?;
        sqlx::query("DELETE FROM walshard_ops WHERE shard = ?")
            .bind(shard)
            .execute(&mut *tx)
            .await?;
        for range in pow2_chunks(snap.ops.len(), MAX_PLACEHOLDERS / 4) {
            let chunk = &snap.ops[range];
            let sql = format!(
                "INSERT INTO walshard_ops (shard, op_id, lsn, outcome) VALUES {}",
                vec!["(?,?,?,?)"; chunk.len()].join(",")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (op_id, lsn, outcome) in chunk {
                q = q
                    .bind(shard)
                    .bind(op_id.clone())
                    .bind(*lsn)
                    .bind(outcome.clone());
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
