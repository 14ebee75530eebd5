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
//! Identifiers reach SQL only as validated [`Ident`](walshard_contract::Ident)s, backtick-quoted;
//! every value is a bind.
//!
//! This file holds the [`Store`] handle and the bookkeeping tables; beside it: `table` (a shard's
//! table and its SQL text), `statements` (statement shapes within MySQL's placeholder limit),
//! `values` (values to and from MySQL), `rows` (reading and inserting rows), `snapshot` and `copy`
//! (consistent copies of a shard), `apply` (the transactional apply of WAL entries).

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::{AssertSqlSafe, Executor, Row as _};

use crate::wal::{Epoch, Lsn};

mod apply;
mod copy;
mod literals;
mod ranges;
mod rows;
mod snapshot;
mod statements;
mod table;
mod values;

pub use copy::CopyPoint;
pub use snapshot::Snapshot;
pub use table::ShardTable;

/// The database the agent keeps everything in.
pub const DATABASE: &str = "walshard";
/// How many LSNs back a retried op id is still recognised.
pub const OP_RETENTION: u64 = 1_000_000;
/// Prepared statements kept per connection. Variable-length statements only come in power-of-two
/// sizes (see [`pow2_chunks`](statements::pow2_chunks)), so every shape fits and the cache never churns. Churn costs more
/// than a prepare: sqlx does not set TCP_NODELAY, and an eviction's COM_STMT_CLOSE (no reply)
/// followed by the next prepare stalls ~40 ms on Nagle plus delayed ACK.
const STATEMENT_CACHE: usize = 1024;

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
        // No ping before each use (a round trip per statement or transaction): a connection that
        // broke fails its statement, which the applier retries and a read answers 503 for.
        let pool = MySqlPoolOptions::new()
            .max_connections(max_connections)
            .test_before_acquire(false)
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
}

#[cfg(test)]
mod tests;
