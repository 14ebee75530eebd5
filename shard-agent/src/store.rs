//! The MySQL side of a server: one table per shard plus two bookkeeping tables, reached through an
//! sqlx pool. Only SQL that MySQL 8.4 and MariaDB 10.11 both accept.
//!
//! - `shard_<id>`: the shard's rows; the key column is the primary key.
//! - `walshard_shards`: per shard, the `(epoch, lsn)` of the last applied WAL entry. It is updated in
//!   the same transaction as the data, so after any crash MySQL's data and `applied_lsn` agree, and
//!   replaying the WAL from `applied_lsn + 1` is exact.
//! - `walshard_ops`: per applied op id, its outcome, so a retried op is applied once and answered
//!   the same way. Rows older than [`OP_RETENTION`] LSNs are pruned.
//!
//! Identifiers reach SQL only as validated [`Ident`]s, backtick-quoted; every value is a bind.

use std::collections::HashMap;

use sqlx::mysql::{MySqlArguments, MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Executor, MySql, Row as _};
use walshard_contract::{Dtype, Ident, KeyRange, OnDuplicate, Patch, Row, Schema, Value};

use crate::ops::{Op, Outcome, plan_writes};
use crate::wal::{Entry, Epoch, Lsn, OpId};

mod copy;
pub use copy::CopyPoint;

/// The database the agent keeps everything in.
pub const DATABASE: &str = "walshard";
/// How many LSNs back a retried op id is still recognised.
pub const OP_RETENTION: u64 = 1_000_000;
/// MySQL allows 65,535 placeholders per statement; stay well below.
const MAX_PLACEHOLDERS: usize = 60_000;
/// Prepared statements kept per connection. Variable-length statements only come in power-of-two
/// sizes (see [`pow2_chunks`]), so every shape fits and the cache never churns. Churn costs more
/// than a prepare: sqlx does not set TCP_NODELAY, and an eviction's COM_STMT_CLOSE (no reply)
/// followed by the next prepare stalls ~40 ms on Nagle plus delayed ACK.
const STATEMENT_CACHE: usize = 1024;
/// ER_DUP_ENTRY.
const DUPLICATE_KEY: &str = "23000";

/// Why a store operation failed; a failed transaction changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// MySQL refused the connection or a statement.
    #[error("MySQL: {0}")]
    Sql(#[from] sqlx::Error),
    /// [`Store::apply`]'s compare-and-set failed: MySQL's `applied_lsn` is not the one the
    /// caller expected (nothing was applied).
    #[error("shard {shard}: MySQL has applied_lsn {found}, expected {expected}")]
    AppliedMismatch {
        /// The shard id.
        shard: String,
        /// The `applied_lsn` the caller expected.
        expected: Lsn,
        /// The `applied_lsn` MySQL has.
        found: Lsn,
    },
    /// An outcome recorded in `walshard_ops` does not decode, or one could not be encoded.
    #[error("stored outcome is unreadable: {0}")]
    Outcome(#[from] serde_json::Error),
}

/// A consistent copy of one shard at its applied point, for resyncing a replica.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// Epoch and LSN of the last entry the copy includes.
    pub epoch: Epoch,
    /// The LSN of that entry: the copy holds exactly the entries up to it.
    pub lsn: Lsn,
    /// Every row of the shard, ordered by key.
    pub rows: Vec<Row>,
    /// `(op id bytes, lsn, outcome JSON)` of the ops retained for retry detection.
    pub ops: Vec<(Vec<u8>, Lsn, String)>,
}

/// A shard's table, resolved once.
#[derive(Debug, Clone)]
pub struct ShardTable {
    /// The shard id; the table is `shard_<id>`.
    pub shard: Ident,
    /// The table's columns, the key first (its primary key).
    pub schema: Schema,
    /// `` `shard_<id>` ``
    table: String,
    /// `` `a`,`b`,`c` ``
    column_list: String,
}

impl ShardTable {
    /// The table of `shard` with `schema` (nothing is created in MySQL: see
    /// [`Store::ensure_shard`]).
    pub fn new(shard: Ident, schema: Schema) -> Self {
        let column_list = schema
            .columns()
            .iter()
            .map(Ident::quoted)
            .collect::<Vec<_>>()
            .join(",");
        Self {
            table: format!("`shard_{}`", shard.as_str()),
            shard,
            schema,
            column_list,
        }
    }

    fn key(&self) -> String {
        self.schema.key().quoted()
    }

    fn create_sql(&self) -> String {
        let cols: Vec<String> = self
            .schema
            .iter()
            .enumerate()
            .map(|(i, (c, d))| {
                let null = if i == 0 { " NOT NULL" } else { " NULL" };
                format!("{} {}{null}", c.quoted(), d.sql_type())
            })
            .collect();
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({})) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            self.table,
            cols.join(", "),
            self.key()
        )
    }

    fn insert_sql(&self, rows: usize) -> String {
        let one = format!("({})", placeholders(self.schema.columns().len()));
        format!(
            "INSERT INTO {} ({}) VALUES {}",
            self.table,
            self.column_list,
            vec![one; rows].join(",")
        )
    }

    /// Rows per INSERT statement that keep within the placeholder limit.
    fn rows_per_insert(&self) -> usize {
        (MAX_PLACEHOLDERS / self.schema.columns().len()).max(1)
    }
}

/// Splits `len` items into runs whose lengths are powers of two, largest first, each at most
/// `cap` (rounded down to a power of two): at most ~log2(len) statements of few distinct shapes.
fn pow2_chunks(len: usize, cap: usize) -> Vec<std::ops::Range<usize>> {
    let cap = if cap == 0 { 1 } else { 1usize << cap.ilog2() };
    let mut out = Vec::new();
    let mut start = 0;
    while start < len {
        let rest = len - start;
        let n = (1usize << rest.ilog2()).min(cap);
        out.push(start..start + n);
        start += n;
    }
    out
}

/// `items` padded to the next power of two by repeating the last one (harmless in `IN (...)`).
fn pad_pow2<T: Clone>(items: &[T]) -> Vec<T> {
    let mut v = items.to_vec();
    if let Some(last) = items.last() {
        v.resize(items.len().next_power_of_two(), last.clone());
    }
    v
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(",")
}

fn bind_value<'q>(
    q: Query<'q, MySql, MySqlArguments>,
    v: &Value,
) -> Query<'q, MySql, MySqlArguments> {
    match v {
        Value::Null => q.bind(None::<i64>),
        Value::Bool(b) => q.bind(*b),
        Value::Int(i) => q.bind(*i),
        Value::Float(f) => q.bind(*f),
        Value::Str(s) => q.bind(s.clone()),
    }
}

fn decode_row(schema: &Schema, r: &MySqlRow) -> Result<Row, sqlx::Error> {
    let mut cells = Vec::with_capacity(schema.columns().len());
    for (i, (_, dtype)) in schema.iter().enumerate() {
        let v = match dtype {
            Dtype::Number => r.try_get::<Option<i64>, _>(i)?.map(Value::Int),
            Dtype::String => r.try_get::<Option<String>, _>(i)?.map(Value::Str),
            Dtype::Float => r.try_get::<Option<f64>, _>(i)?.map(Value::Float),
            Dtype::Boolean => r.try_get::<Option<i8>, _>(i)?.map(|b| Value::Bool(b != 0)),
        };
        cells.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(cells))
}

fn is_duplicate_key(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some(DUPLICATE_KEY)
        && db.message().contains("Duplicate"))
}

/// The MySQL store of one server.
#[derive(Clone)]
pub struct Store {
    pool: MySqlPool,
}

impl Store {
    /// Connects to `server` (no database selected), creating the `walshard` database and
    /// bookkeeping tables.
    pub async fn connect(
        server: MySqlConnectOptions,
        max_connections: u32,
    ) -> Result<Store, StoreError> {
        {
            let admin = MySqlPoolOptions::new()
                .max_connections(1)
                .connect_with(server.clone())
                .await?;
            admin
                .execute("CREATE DATABASE IF NOT EXISTS `walshard` CHARACTER SET utf8mb4")
                .await?;
            admin.close().await;
        }
        let pool = MySqlPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(
                server
                    .database(DATABASE)
                    .statement_cache_capacity(STATEMENT_CACHE),
            )
            .await?;
        let store = Store { pool };
        store.ensure_bookkeeping().await?;
        Ok(store)
    }

    /// Closes the pool's connections.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The connection pool, on the `walshard` database.
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// Creates the bookkeeping tables if missing (idempotent).
    async fn ensure_bookkeeping(&self) -> Result<(), StoreError> {
        self.pool
            .execute(
                "CREATE TABLE IF NOT EXISTS walshard_shards (
                shard VARCHAR(64) NOT NULL PRIMARY KEY,
                applied_lsn BIGINT UNSIGNED NOT NULL,
                applied_epoch BIGINT UNSIGNED NOT NULL
            ) ENGINE=InnoDB",
            )
            .await?;
        self.pool
            .execute(
                "CREATE TABLE IF NOT EXISTS walshard_ops (
                shard VARCHAR(64) NOT NULL,
                op_id BINARY(16) NOT NULL,
                lsn BIGINT UNSIGNED NOT NULL,
                outcome TEXT NOT NULL,
                PRIMARY KEY (shard, op_id),
                KEY by_lsn (shard, lsn)
            ) ENGINE=InnoDB",
            )
            .await?;
        Ok(())
    }

    /// Creates the shard's table and bookkeeping row if missing (idempotent).
    pub async fn ensure_shard(&self, t: &ShardTable) -> Result<(), StoreError> {
        self.ensure_bookkeeping().await?;
        self.pool.execute(AssertSqlSafe(t.create_sql())).await?;
        sqlx::query("INSERT IGNORE INTO walshard_shards (shard, applied_lsn, applied_epoch) VALUES (?, 0, 0)")
            .bind(t.shard.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// `(epoch, lsn)` of the last entry applied to the shard. If MySQL has lost the shard's
    /// table or bookkeeping row (a crash with relaxed flushing right after `/config`), they are
    /// recreated and `(0, 0)` is returned: the WAL replays everything.
    pub async fn applied(&self, t: &ShardTable) -> Result<(Epoch, Lsn), StoreError> {
        let row =
            sqlx::query("SELECT applied_epoch, applied_lsn FROM walshard_shards WHERE shard = ?")
                .bind(t.shard.as_str())
                .fetch_optional(&self.pool)
                .await?;
        match row {
            Some(r) => Ok((r.try_get::<u64, _>(0)?, r.try_get::<u64, _>(1)?)),
            None => {
                self.ensure_shard(t).await?;
                Ok((0, 0))
            }
        }
    }

    /// Rows with keys in `range` (inclusive), ordered by key.
    pub async fn read_range(
        &self,
        t: &ShardTable,
        range: KeyRange,
    ) -> Result<Vec<Row>, StoreError> {
        let sql = format!(
            "SELECT {} FROM {} WHERE {k} BETWEEN ? AND ? ORDER BY {k}",
            t.column_list,
            t.table,
            k = t.key()
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(range.low)
            .bind(range.high)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| decode_row(&t.schema, r))
            .collect::<Result<_, _>>()?)
    }

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

    /// Every row of the shard, ordered by key.
    pub async fn read_all(&self, t: &ShardTable) -> Result<Vec<Row>, StoreError> {
        self.read_range(
            t,
            KeyRange {
                low: i64::MIN,
                high: i64::MAX,
            },
        )
        .await
    }

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

    async fn insert_rows(
        &self,
        tx: &mut sqlx::MySqlConnection,
        t: &ShardTable,
        rows: &[&Row],
    ) -> Result<(), StoreError> {
        for range in pow2_chunks(rows.len(), t.rows_per_insert()) {
            let chunk = &rows[range];
            let mut q = sqlx::query(AssertSqlSafe(t.insert_sql(chunk.len())));
            for row in chunk {
                for v in &row.0 {
                    q = bind_value(q, v);
                }
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

    async fn existing_keys(
        &self,
        tx: &mut sqlx::MySqlConnection,
        t: &ShardTable,
        keys: &[i64],
    ) -> Result<Vec<i64>, StoreError> {
        let mut found = Vec::new();
        for chunk in keys.chunks(MAX_PLACEHOLDERS / 2) {
            let chunk = pad_pow2(chunk);
            let sql = format!(
                "SELECT DISTINCT {k} FROM {} WHERE {k} IN ({}) ORDER BY {k}",
                t.table,
                placeholders(chunk.len()),
                k = t.key()
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for k in &chunk {
                q = q.bind(*k);
            }
            for r in q.fetch_all(&mut *tx).await? {
                found.push(r.try_get::<i64, _>(0)?);
            }
        }
        Ok(found)
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pow2_chunks_examples() {
        assert!(pow2_chunks(0, 8).is_empty());
        assert_eq!(pow2_chunks(37, 64), vec![0..32, 32..36, 36..37]);
        assert_eq!(pow2_chunks(20, 6), vec![0..4, 4..8, 8..12, 12..16, 16..20]);
        assert_eq!(pad_pow2(&[1, 2, 3]), vec![1, 2, 3, 3]);
        assert_eq!(pad_pow2::<i32>(&[]), Vec::<i32>::new());
    }

    proptest! {
        #[test]
        fn pow2_chunks_cover_exactly_in_order(len in 0usize..5000, cap in 1usize..3000) {
            let chunks = pow2_chunks(len, cap);
            let mut next = 0;
            for c in &chunks {
                prop_assert_eq!(c.start, next);
                prop_assert!(c.len().is_power_of_two() && c.len() <= cap);
                next = c.end;
            }
            prop_assert_eq!(next, len);
        }
    }
}
