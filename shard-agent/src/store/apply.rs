//! The transactional apply of committed WAL entries, in two round trips to MySQL where it can
//! be (docs/benchmarks.md, "the apply"):
//!
//! 1. one multi-statement query opens the transaction, compare-and-sets `applied_lsn` (which
//!    also locks the shard's bookkeeping row), reads the outcomes of op ids applied before
//!    (retries, answered from `walshard_ops`) and, for a batch of writes, which of its keys are
//!    stored;
//! 2. the outcomes are decided here in log order ([`plan_writes`]), and one multi-statement
//!    query inserts the new rows, records the outcomes and commits.
//!
//! A batch with updates or deletes applies those op by op between the two. Values travel as
//! typed literals ([`super::literals`]); data-dependent failures become outcomes.

use std::collections::HashMap;

use futures::TryStreamExt;
use sqlx::Either;
use sqlx::mysql::MySqlRow;
use sqlx::pool::PoolConnection;
use sqlx::{AssertSqlSafe, Executor, MySql, Row as _};
use walshard_contract::{OnDuplicate, Patch, Row};

use super::literals;
use super::values::{bind_value, is_duplicate_key};
use super::{OP_RETENTION, ShardTable, Store, StoreError};
use crate::ops::{Op, Outcome, plan_writes};
use crate::wal::{Entry, Lsn, OpId};

/// Largest multi-statement query the applier sends (MySQL's `max_allowed_packet` is larger).
const MAX_QUERY_BYTES: usize = 4 << 20;

/// What the first round trip found.
struct Found {
    /// Rows the compare-and-set changed: 1, or 0 when `applied_lsn` was not the expected one.
    cas: u64,
    /// Outcomes recorded for op ids of the batch.
    known: HashMap<OpId, Outcome>,
    /// Keys of the batch's writes that are stored.
    stored: Vec<i64>,
}

/// A transaction on one pooled connection, opened by a multi-statement query. Unless it ends
/// with its `COMMIT` or `ROLLBACK` answered, its connection is closed, never pooled again (the
/// server rolls back what was left open).
struct OpenTx {
    conn: Option<PoolConnection<MySql>>,
}

impl OpenTx {
    fn conn(&mut self) -> Result<&mut sqlx::MySqlConnection, StoreError> {
        self.conn
            .as_deref_mut()
            .ok_or(StoreError::Sql(sqlx::Error::PoolClosed))
    }

    /// Runs `sql`, several statements; returns per statement its rows and rows affected.
    async fn run(&mut self, sql: String) -> Result<Vec<(Vec<MySqlRow>, u64)>, StoreError> {
        let conn = self.conn()?;
        let mut out = Vec::new();
        let mut rows = Vec::new();
        let mut results = sqlx::raw_sql(AssertSqlSafe(sql)).fetch_many(&mut *conn);
        while let Some(item) = results.try_next().await? {
            match item {
                Either::Left(done) => out.push((std::mem::take(&mut rows), done.rows_affected())),
                Either::Right(row) => rows.push(row),
            }
        }
        Ok(out)
    }

    /// Runs the closing statements (the last chunk ends with `COMMIT` or `ROLLBACK`) and
    /// returns the connection to the pool.
    async fn finish(mut self, chunks: Vec<String>) -> Result<(), StoreError> {
        for sql in chunks {
            self.run(sql).await?;
        }
        self.conn = None;
        Ok(())
    }
}

impl Drop for OpenTx {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
        }
    }
}

/// Statements sent together, cut into queries of at most [`MAX_QUERY_BYTES`].
#[derive(Default)]
struct Statements {
    chunks: Vec<String>,
}

impl Statements {
    fn push(&mut self, sql: String) {
        match self.chunks.last_mut() {
            Some(last) if last.len() + sql.len() < MAX_QUERY_BYTES => {
                last.push_str(";\n");
                last.push_str(&sql);
            }
            _ => self.chunks.push(sql),
        }
    }

    /// `head` followed by one value tuple per item (written by `value`), cut into statements of
    /// about half [`MAX_QUERY_BYTES`] each.
    fn values<T>(
        &mut self,
        head: &str,
        items: impl IntoIterator<Item = T>,
        mut value: impl FnMut(&mut String, T) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut sql = String::new();
        for item in items {
            if sql.len() > MAX_QUERY_BYTES / 2 {
                self.push(std::mem::take(&mut sql));
            }
            sql.push_str(if sql.is_empty() { head } else { "," });
            value(&mut sql, item)?;
        }
        if !sql.is_empty() {
            self.push(sql);
        }
        Ok(())
    }

    /// `INSERT`s of `rows`.
    fn insert_rows(&mut self, t: &ShardTable, rows: &[&Row]) -> Result<(), StoreError> {
        let head = format!("INSERT INTO {} ({}) VALUES ", t.table, t.column_list);
        self.values(&head, rows, |sql, r| {
            literals::row(sql, r);
            Ok(())
        })
    }

    /// Records the outcome of every fresh op with an op id, so a retry gets the same answer.
    fn record_outcomes(
        &mut self,
        shard: &str,
        entries: &[(Entry, Op)],
        fresh: &[usize],
        outcomes: &[Outcome],
    ) -> Result<(), StoreError> {
        let head = "INSERT INTO walshard_ops (shard, op_id, lsn, outcome) VALUES ";
        let recorded = fresh
            .iter()
            .map(|&i| (&entries[i].0, &outcomes[i]))
            .filter(|(entry, _)| entry.op_id != OpId::default());
        self.values(head, recorded, |sql, (entry, outcome)| {
            sql.push('(');
            literals::text(sql, shard);
            sql.push(',');
            literals::bytes(sql, &entry.op_id.0.to_be_bytes());
            sql.push_str(&format!(",{},", entry.lsn));
            literals::text(sql, &serde_json::to_string(outcome)?);
            sql.push(')');
            Ok(())
        })
    }
}

/// The first round trip: opens the transaction, compare-and-sets `applied_lsn` from `expected`
/// to `last`, reads the recorded outcomes of `ids` and which of `keys` are stored.
async fn first_round(
    tx: &mut OpenTx,
    t: &ShardTable,
    last: &Entry,
    expected: Lsn,
    ids: &[OpId],
    keys: &[i64],
) -> Result<Found, StoreError> {
    let mut shard = String::new();
    literals::text(&mut shard, t.shard.as_str());
    let mut sql = format!(
        "START TRANSACTION;\nUPDATE walshard_shards SET applied_lsn = {}, applied_epoch = {} WHERE shard = {shard} AND applied_lsn = {expected}",
        last.lsn, last.epoch
    );
    if !ids.is_empty() {
        sql.push_str(";\nSELECT op_id, outcome FROM walshard_ops WHERE shard = ");
        sql.push_str(&shard);
        sql.push_str(" AND op_id IN (");
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            literals::bytes(&mut sql, &id.0.to_be_bytes());
        }
        sql.push(')');
    }
    if !keys.is_empty() {
        sql.push_str(&format!(
            ";\nSELECT {k} FROM {} WHERE {k} IN (",
            t.table,
            k = t.key()
        ));
        literals::ints(&mut sql, keys.iter().copied());
        sql.push(')');
    }
    let mut results = tx.run(sql).await?.into_iter().skip(1);
    let cas = results.next().map_or(0, |(_, affected)| affected);
    let mut known = HashMap::new();
    if !ids.is_empty() {
        for r in results.next().map(|(rows, _)| rows).unwrap_or_default() {
            let raw: Vec<u8> = r.try_get(0)?;
            let text: String = r.try_get(1)?;
            if let Ok(bytes) = <[u8; 16]>::try_from(raw.as_slice()) {
                known.insert(
                    OpId(u128::from_be_bytes(bytes)),
                    serde_json::from_str::<Outcome>(&text)?,
                );
            }
        }
    }
    let mut stored = Vec::new();
    if !keys.is_empty() {
        for r in results.next().map(|(rows, _)| rows).unwrap_or_default() {
            stored.push(r.try_get::<i64, _>(0)?);
        }
    }
    Ok(Found { cas, known, stored })
}

/// Outcomes of ops applied before (a retried op id), and the in-batch repeats of an op id as
/// `(repeat, first)` index pairs: a repeat gets its first copy's outcome and is not applied.
fn known_outcomes(
    entries: &[(Entry, Op)],
    known: &HashMap<OpId, Outcome>,
) -> (Vec<Option<Outcome>>, Vec<(usize, usize)>) {
    let mut out: Vec<Option<Outcome>> = vec![None; entries.len()];
    let mut repeats = Vec::new();
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
    (out, repeats)
}

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
        let only_writes = entries
            .iter()
            .all(|(_, op)| matches!(op, Op::Write { .. } | Op::Noop));
        let ids: Vec<OpId> = entries
            .iter()
            .map(|(e, _)| e.op_id)
            .filter(|id| *id != OpId::default())
            .collect();
        let keys: Vec<i64> = if only_writes {
            entries
                .iter()
                .flat_map(|(_, op)| match op {
                    Op::Write { rows, .. } => rows.iter().map(Row::key).collect(),
                    _ => Vec::new(),
                })
                .collect()
        } else {
            Vec::new()
        };

        let started = std::time::Instant::now();
        let mut tx = OpenTx {
            conn: Some(self.pool.acquire().await?),
        };
        let acquired = started.elapsed();
        let found = first_round(&mut tx, t, last, expected, &ids, &keys).await?;
        let first = started.elapsed();
        if found.cas != 1 {
            tx.finish(vec!["ROLLBACK".to_owned()]).await?;
            let (_, found) = self.applied(t).await?;
            return Err(StoreError::AppliedMismatch {
                shard: shard.to_owned(),
                expected,
                found,
            });
        }

        let (mut outcomes, repeats) = known_outcomes(entries, &found.known);
        let fresh: Vec<usize> = (0..entries.len())
            .filter(|&i| outcomes[i].is_none())
            .collect();
        let mut closing = Statements::default();
        if only_writes {
            // The outcomes in log order against the stored keys; one INSERT of the new rows.
            let writes: Vec<(usize, &[Row], OnDuplicate)> = fresh
                .iter()
                .filter_map(|&i| match &entries[i].1 {
                    Op::Write { rows, on_duplicate } => Some((i, rows.as_slice(), *on_duplicate)),
                    _ => None,
                })
                .collect();
            let batch: Vec<(&[Row], OnDuplicate)> =
                writes.iter().map(|(_, rows, d)| (*rows, *d)).collect();
            let (planned, insert) = plan_writes(&batch, found.stored);
            for (&(i, _, _), outcome) in writes.iter().zip(planned) {
                outcomes[i] = Some(outcome);
            }
            closing.insert_rows(t, &insert)?;
        } else {
            for &i in &fresh {
                outcomes[i] = Some(self.apply_one(tx.conn()?, t, &entries[i].1).await?);
            }
        }

        let mut done: Vec<Outcome> = outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Outcome::Nothing))
            .collect();
        for (repeat, first) in repeats {
            done[repeat] = done[first].clone();
        }
        closing.record_outcomes(shard, entries, &fresh, &done)?;
        if last.lsn / 4096 != expected / 4096 && last.lsn > OP_RETENTION {
            let mut sql = String::from("DELETE FROM walshard_ops WHERE shard = ");
            literals::text(&mut sql, shard);
            sql.push_str(&format!(" AND lsn < {}", last.lsn - OP_RETENTION));
            closing.push(sql);
        }
        closing.push("COMMIT".to_owned());
        tx.finish(closing.chunks).await?;
        tracing::debug!(
            shard,
            entries = entries.len(),
            acquire_us = acquired.as_micros() as u64,
            first_us = first.as_micros() as u64,
            total_us = started.elapsed().as_micros() as u64,
            "apply round trips"
        );
        Ok(done)
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
