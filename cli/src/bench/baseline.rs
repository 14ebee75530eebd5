//! The direct-MariaDB baseline: the same writes and reads as single statements on one durable
//! MariaDB (`innodb_flush_log_at_trx_commit=1`), through a pool of `concurrency` connections.

use std::str::FromStr;
use std::sync::Arc;

use sqlx::Executor;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use walshard_process::{MariaDb, MariaDbOptions};

use super::driver::{chain, drive};
use super::stats::PhaseOutcome;
use super::{BenchError, Progress};

/// What the baseline is, as reported.
pub const SYSTEM: &str = "direct MariaDB: autocommit single-row INSERT / 10-key SELECT, innodb_flush_log_at_trx_commit=1";

const INSERT: &str = "INSERT INTO t (id, name, marks) VALUES (?, ?, ?)";
const SELECT: &str = "SELECT id, name, marks FROM t WHERE id BETWEEN ? AND ?";

/// The baseline's two phases and the server's version.
pub struct BaselineRun {
    pub writes: PhaseOutcome,
    pub reads: PhaseOutcome,
    /// The server's CPU per request.
    pub cpu: Option<super::cpu::PhaseCpu>,
    pub mariadb: Option<String>,
}

/// Starts a throwaway MariaDB, writes `keys` one per INSERT, then reads `ranges`.
pub async fn measure(
    keys: Arc<Vec<i64>>,
    ranges: Arc<Vec<(i64, i64)>>,
    concurrency: usize,
    progress: &Progress,
) -> Result<BaselineRun, BenchError> {
    let (db, version) = tokio::task::spawn_blocking(|| {
        let db = MariaDb::start_with(MariaDbOptions {
            flush_log_at_trx_commit: 1,
            ..Default::default()
        })?;
        Ok::<_, walshard_process::ProcessError>((db, walshard_process::mariadb_version().ok()))
    })
    .await
    .map_err(|e| BenchError::Baseline(format!("starting MariaDB: {e}")))?
    .map_err(|e| BenchError::Baseline(format!("starting MariaDB: {e}")))?;

    let sql = |what: &str, e: sqlx::Error| BenchError::Baseline(format!("{what}: {}", chain(&e)));
    let server = MySqlConnectOptions::from_str(&db.url()).map_err(|e| sql("the server URL", e))?;
    {
        let admin = MySqlPoolOptions::new()
            .max_connections(1)
            .connect_with(server.clone())
            .await
            .map_err(|e| sql("connecting", e))?;
        for ddl in [
            "CREATE DATABASE bench",
            "CREATE TABLE bench.t (id BIGINT NOT NULL PRIMARY KEY, name VARCHAR(255), marks BIGINT) ENGINE=InnoDB",
        ] {
            admin.execute(ddl).await.map_err(|e| sql(ddl, e))?;
        }
        admin.close().await;
    }
    let max = u32::try_from(concurrency).unwrap_or(u32::MAX);
    let pool = MySqlPoolOptions::new()
        .max_connections(max)
        .connect_with(server.database("bench"))
        .await
        .map_err(|e| sql("connecting the pool", e))?;

    let pids: Vec<(&'static str, u32)> = db.pid().map(|p| ("mysql", p)).into_iter().collect();
    let start = super::cpu::sample(&pids);
    let writes = {
        let pool = pool.clone();
        let bar = progress.bar("baseline writes", keys.len());
        let out = drive(keys.len(), concurrency, &bar, move |i| {
            let pool = pool.clone();
            let key = keys[i];
            async move {
                sqlx::query(INSERT)
                    .bind(key)
                    .bind(format!("student-{key}"))
                    .bind(key.rem_euclid(100))
                    .execute(&pool)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("INSERT id={key}: {}", chain(&e)))
            }
        })
        .await;
        bar.finish();
        out
    };
    let between = super::cpu::sample(&pids);
    let reads = {
        let pool = pool.clone();
        let bar = progress.bar("baseline reads", ranges.len());
        let out = drive(ranges.len(), concurrency, &bar, move |i| {
            let pool = pool.clone();
            let (low, high) = ranges[i];
            async move {
                sqlx::query(SELECT)
                    .bind(low)
                    .bind(high)
                    .fetch_all(&pool)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("SELECT id {low}..={high}: {}", chain(&e)))
            }
        })
        .await;
        bar.finish();
        out
    };
    let end = super::cpu::sample(&pids);
    let cpu = (!pids.is_empty()).then(|| super::cpu::PhaseCpu {
        writes: super::cpu::CpuPerRequest::between(&start, &between, writes.requests),
        reads: super::cpu::CpuPerRequest::between(&between, &end, reads.requests),
    });
    pool.close().await;
    // Killing the server and removing its files block.
    let _ = tokio::task::spawn_blocking(move || drop(db)).await;
    Ok(BaselineRun {
        writes,
        reads,
        cpu,
        mariadb: version,
    })
}
