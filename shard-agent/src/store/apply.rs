//! The transactional apply of committed WAL entries: a compare-and-set of `applied_lsn`, retried
//! op ids answered from `walshard_ops`, fresh writes in one multi-row INSERT when they can be,
//! else op by op; data-dependent failures become outcomes.

use std::collections::HashMap;

use sqlx::{AssertSqlSafe, Executor, Row as _};
use walshard_contract::{OnDuplicate, Patch, Row};

use super::statements::{MAX_PLACEHOLDERS, pad_pow2, placeholders, pow2_chunks};
use super::values::{bind_value, is_duplicate_key};
use super::{OP_RETENTION, ShardTable, Store, StoreError};
use crate::ops::{Op, Outcome, plan_writes};
use crate::wal::{Entry, Lsn, OpId};

impl Store {
    /// Applies committed entries in LSN order in ONE transaction, advancing `applied_lsn` from
    /// `expected` to the last entry's LSN. Fails with [`StoreError::AppliedMismatch`] (changing
    /// nothing) if MySQL's `applied_lsn` is not `expected` — e.g. MySQL lost its last commits in a
    /// crash, so the caller must replay from what MySQL really has.
    pub async fn apply(
        &self,
        t: &ShardTable,
        expected: Lsn,
        entries: &[(Entry, Op)],
    ) -> Result<Vec<Outcome>, StoreError> {
        let Some((last, _)) = entries.last() else {
            return Ok(Vec::new());
        };
        let shard = t.shard.as_str();
        let mut tx = self.pool.begin().await?;
        // Compare-and-set first: it also locks the shard's bookkeeping row for the transaction.
        let cas = sqlx::query(
            "UPDATE walshard_shards SET applied_lsn = ?, applied_epoch = ? WHERE shard = ? AND applied_lsn = ?",
        )
        .bind(last.lsn)
        .bind(last.epoch)
        .bind(shard)
        .bind(expected)
        .execute(&mut *tx)
        .await?;
        if cas.rows_affected() != 1 {
            drop(tx);
            let (_, found) = self.applied(t).await?;
            return Err(StoreError::AppliedMismatch {
                shard: shard.to_owned(),
                expected,
                found,
            });
        }

        let (mut outcomes, repeats) = self.known_outcomes(&mut tx, shard, entries).await?;
        let fresh: Vec<usize> = (0..entries.len())
            .filter(|&i| outcomes[i].is_none())
            .collect();

        // Fast path: all fresh writes in one multi-row INSERT; any duplicate key sends us to the
        // exact per-op path (rolled back to the savepoint first).
        let writes: Vec<usize> = fresh
            .iter()
            .copied()
            .filter(|&i| matches!(&entries[i].1, Op::Write { rows, .. } if !rows.is_empty()))
            .collect();
        let only_writes = writes.len() == fresh.len();
        let mut fast_done = false;
        if only_writes && writes.len() > 1 {
            tx.execute("SAVEPOINT fast_path").await?;
            let rows: Vec<&Row> = writes
                .iter()
                .flat_map(|&i| match &entries[i].1 {
                    Op::Write { rows, .. } => rows.iter().collect::<Vec<_>>(),
                    _ => Vec::new(),
                })
                .collect();
            match self.insert_rows(&mut tx, t, &rows).await {
                Ok(()) => {
                    for &i in &writes {
                        if let Op::Write { rows, .. } = &entries[i].1 {
                            outcomes[i] = Some(Outcome::Written {
                                count: rows.len(),
                                skipped: Vec::new(),
                            });
                        }
                    }
                    fast_done = true;
                }
                Err(StoreError::Sql(e)) if is_duplicate_key(&e) => {
                    tx.execute("ROLLBACK TO SAVEPOINT fast_path").await?;
                }
                Err(e) => return Err(e),
            }
        }
        if !fast_done && only_writes && !writes.is_empty() {
            // Some keys are stored already: one lookup, the outcomes decided in log order, one
            // INSERT (a batch of retried seed writes costs one query, not one per write).
            let batch: Vec<(&[Row], OnDuplicate)> = writes
                .iter()
                .filter_map(|&i| match &entries[i].1 {
                    Op::Write { rows, on_duplicate } => Some((rows.as_slice(), *on_duplicate)),
                    _ => None,
                })
                .collect();
            let keys: Vec<i64> = batch
                .iter()
                .flat_map(|(rows, _)| rows.iter().map(Row::key))
                .collect();
            let stored = self.existing_keys(&mut tx, t, &keys).await?;
            let (planned, insert) = plan_writes(&batch, stored);
            self.insert_rows(&mut tx, t, &insert).await?;
            for (&i, outcome) in writes.iter().zip(planned) {
                outcomes[i] = Some(outcome);
            }
            fast_done = true;
        }
        if !fast_done {
            for &i in &fresh {
                outcomes[i] = Some(self.apply_one(&mut tx, t, &entries[i].1).await?);
            }
        }

        let mut done: Vec<Outcome> = outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Outcome::Nothing))
            .collect();
        for (repeat, first) in repeats {
            done[repeat] = done[first].clone();
        }
        self.record_outcomes(&mut tx, shard, entries, &fresh, &done)
            .await?;
        if last.lsn / 4096 != expected / 4096 && last.lsn > OP_RETENTION {
            sqlx::query("DELETE FROM walshard_ops WHERE shard = ? AND lsn < ?")
                .bind(shard)
                .bind(last.lsn - OP_RETENTION)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Outcomes of ops already applied (a retried op id), and the in-batch repeats of an op id as
    /// `(repeat, first)` index pairs: a repeat gets its first copy's outcome and is not applied.
    async fn known_outcomes(
        &self,
        tx: &mut sqlx::MySqlConnection,
        shard: &str,
        entries: &[(Entry, Op)],
    ) -> Result<(Vec<Option<Outcome>>, Vec<(usize, usize)>), StoreError> {
        let mut out: Vec<Option<Outcome>> = vec![None; entries.len()];
        let mut repeats = Vec::new();
        let ids: Vec<OpId> = entries
            .iter()
            .filter(|(e, _)| e.op_id != OpId::default())
            .map(|(e, _)| e.op_id)
            .collect();
        if ids.is_empty() {
            return Ok((out, repeats));
        }
        let ids = pad_pow2(&ids);
        let sql = format!(
            "SELECT op_id, outcome FROM walshard_ops WHERE shard = ? AND op_id IN ({})",
            placeholders(ids.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(shard);
        for id in &ids {
            q = q.bind(id.0.to_be_bytes().to_vec());
        }
        let mut known = HashMap::new();
        for r in q.fetch_all(&mut *tx).await? {
            let raw: Vec<u8> = r.try_get(0)?;
            let text: String = r.try_get(1)?;
            if let Ok(bytes) = <[u8; 16]>::try_from(raw.as_slice()) {
                known.insert(
                    OpId(u128::from_be_bytes(bytes)),
                    serde_json::from_str::<Outcome>(&text)?,
                );
            }
        }
        let mut first_in_batch = HashMap::new();
        for (i, (e, _)) in entries.iter().enumerate() {
            if e.op_id == OpId::default() {
                continue;
            }
            if let Some(o) = known.get(&e.op_id) {
                out[i] = Some(o.clone());
            } else if let Some(&first) = first_in_batch.get(&e.op_id) {
                out[i] = Some(Outcome::Nothing); // replaced by the first copy's outcome
                repeats.push((i, first));
            } else {
                first_in_batch.insert(e.op_id, i);
            }
        }
        Ok((out, repeats))
    }

    async fn record_outcomes(
        &self,
        tx: &mut sqlx::MySqlConnection,
        shard: &str,
        entries: &[(Entry, Op)],
        fresh: &[usize],
        outcomes: &[Outcome],
    ) -> Result<(), StoreError> {
        let fresh: Vec<usize> = fresh
            .iter()
            .copied()
            .filter(|&i| entries[i].0.op_id != OpId::default())
            .collect();
        for range in pow2_chunks(fresh.len(), MAX_PLACEHOLDERS / 4) {
            let chunk = &fresh[range];
            let sql = format!(
                "INSERT INTO walshard_ops (shard, op_id, lsn, outcome) VALUES {}",
                vec!["(?,?,?,?)"; chunk.len()].join(",")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for &i in chunk {
                q = q
                    .bind(shard)
                    .bind(entries[i].0.op_id.0.to_be_bytes().to_vec())
                    .bind(entries[i].0.lsn)
                    .bind(serde_json::to_string(&outcomes[i])?);
            }
            q.execute(&mut *tx).await?;
        }
        Ok(())
    }

    /// Applies one op exactly; data-dependent failures become outcomes.
    async fn apply_one(
        &self,
        tx: &mut sqlx::MySqlConnection,
        t: &ShardTable,
        op: &Op,
    ) -> Result<Outcome, StoreError> {
        match op {
            Op::Noop => Ok(Outcome::Nothing),
            Op::Write {
                rows,
                on_duplicate: OnDuplicate::Skip,
            } => {
                let keys: Vec<i64> = rows.iter().map(Row::key).collect();
                let mut skipped = self.existing_keys(tx, t, &keys).await?;
                skipped.sort_unstable();
                skipped.dedup();
                let new: Vec<&Row> = rows
                    .iter()
                    .filter(|r| skipped.binary_search(&r.key()).is_err())
                    .collect();
                self.insert_rows(tx, t, &new).await?;
                Ok(Outcome::Written {
                    count: new.len(),
                    skipped,
                })
            }
            Op::Write {
                rows,
                on_duplicate: OnDuplicate::Error,
            } => {
                tx.execute("SAVEPOINT one_op").await?;
                let refs: Vec<&Row> = rows.iter().collect();
                match self.insert_rows(tx, t, &refs).await {
                    Ok(()) => Ok(Outcome::Written {
                        count: rows.len(),
                        skipped: Vec::new(),
                    }),
                    Err(StoreError::Sql(e)) if is_duplicate_key(&e) => {
                        tx.execute("ROLLBACK TO SAVEPOINT one_op").await?;
                        let keys: Vec<i64> = rows.iter().map(Row::key).collect();
                        Ok(Outcome::Conflict {
                            keys: self.existing_keys(tx, t, &keys).await?,
                        })
                    }
                    Err(e) => Err(e),
                }
            }
            Op::Update { key, row } => self.patch(tx, t, *key, &Patch::whole(row)).await,
            Op::Patch { key, patch } => self.patch(tx, t, *key, patch).await,
            Op::Delete { key } => {
                let sql = format!("DELETE FROM {} WHERE {} = ?", t.table, t.key());
                let r = sqlx::query(AssertSqlSafe(sql))
                    .bind(*key)
                    .execute(&mut *tx)
                    .await?;
                Ok(if r.rows_affected() == 0 {
                    Outcome::NotFound { key: *key }
                } else {
                    Outcome::Deleted { key: *key }
                })
            }
        }
    }

    /// Sets the patch's columns of the row with `key`; an empty patch only confirms the row.
    async fn patch(
        &self,
        tx: &mut sqlx::MySqlConnection,
        t: &ShardTable,
        key: i64,
        patch: &Patch,
    ) -> Result<Outcome, StoreError> {
        let columns = t.schema.columns();
        let sets: Vec<String> = patch
            .cells
            .iter()
            .filter_map(|(i, _)| columns.get(*i).filter(|_| *i > 0))
            .map(|c| format!("{} = ?", c.quoted()))
            .collect();
        let found = if sets.is_empty() {
            !self.existing_keys(tx, t, &[key]).await?.is_empty()
        } else {
            let sql = format!(
                "UPDATE {} SET {} WHERE {} = ?",
                t.table,
                sets.join(", "),
                t.key()
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (_, v) in patch
                .cells
                .iter()
                .filter(|(i, _)| *i > 0 && *i < columns.len())
            {
                q = bind_value(q, v);
            }
            // sqlx-mysql sets CLIENT_FOUND_ROWS: rows_affected counts matched rows.
            q.bind(key).execute(&mut *tx).await?.rows_affected() > 0
        };
        Ok(if found {
            Outcome::Updated { key }
        } else {
            Outcome::NotFound { key }
        })
    }
}
