//! `walshard bench --backup-rows N`: a base backup and a restore of N rows (the seed's table on
//! an A-1-shaped fleet, four shards of N/4 keys, three replicas each) against `mariadb-dump` and
//! a reload of the same rows into one MariaDB, in the same run. Seconds and MB/s are printed,
//! never asserted.
//!
//! What is compared: walshard's base backup copies each shard once (from a caught-up
//! secondary) into a local `file://` store; its restore builds a whole new fleet, every replica
//! of every shard (three copies of the data), each in its own MariaDB. The baseline dumps one
//! MariaDB holding the N rows once and reloads the dump into a fresh one.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::Instant;

use futures::StreamExt;
use serde::Serialize;
use serde_json::json;
use sqlx::Executor;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use walshard_backup::args::StoreArgs;
use walshard_contract::Schema;
use walshard_k8s_api::spec::{ServersSpec, ShardedDatabaseSpec, ShardsSpec};
use walshard_process::{MariaDb, MariaDbOptions};

use super::BenchError;
use super::archive::dir_bytes;
use super::driver::{chain, row};
use crate::backup::create::{RetentionArgs, backup_now};
use crate::backup::restore::{RestoreArgs, restore};
use crate::local::{Fleet, FleetOptions};

/// Rows per load request (and per baseline INSERT).
const LOAD_BATCH: u64 = 1000;
/// Load requests in flight.
const LOAD_CONCURRENCY: usize = 4;

/// One side's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    /// What was measured.
    pub system: String,
    /// Loading the rows (batched writes).
    pub load_secs: f64,
    /// Taking the backup.
    pub backup_secs: f64,
    /// The backup's size.
    pub backup_bytes: u64,
    /// Restoring it.
    pub restore_secs: f64,
}

/// The backup benchmark's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackupFigures {
    /// Rows backed up and restored.
    pub rows: u64,
    /// walshard: base backup and `walshard restore`.
    pub walshard: Side,
    /// `mariadb-dump` and a reload with `mariadb`.
    pub baseline: Side,
}

fn fail(what: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::Baseline(format!("backup benchmark: {what}: {e}"))
}

/// Measures both sides in `work` (removed afterwards unless `keep`).
pub async fn measure(
    rows: u64,
    work: &Path,
    keep: bool,
    quiet: bool,
) -> Result<BackupFigures, BenchError> {
    std::fs::create_dir_all(work).map_err(|e| fail("creating the work dir", e))?;
    let walshard = walshard_side(rows, work, quiet).await;
    let baseline = dump_side(rows, work).await;
    if !keep {
        let _ = std::fs::remove_dir_all(work);
    }
    Ok(BackupFigures {
        rows,
        walshard: walshard?,
        baseline: baseline?,
    })
}

async fn walshard_side(rows: u64, work: &Path, quiet: bool) -> Result<Side, BenchError> {
    let shard_size = i64::try_from(rows.div_ceil(4).max(1)).unwrap_or(i64::MAX);
    let spec = ShardedDatabaseSpec::new(
        Schema::seed(),
        ShardsSpec::ranges(4, shard_size, 0),
        3,
        ServersSpec::count(6),
    );
    let store_dir = work.join("store");
    let store_args = StoreArgs {
        url: Some(format!("file://{}", store_dir.display())),
        ..StoreArgs::default()
    };
    let fleet_dir = work.join("fleet");
    let fleet = Fleet::start(FleetOptions {
        data_dir: fleet_dir.clone(),
        port: 0,
        spec: Some(spec),
        progress: !quiet,
        backup: Some(store_args.clone()),
        backup_schedule: None,
        tls: false,
    })
    .await
    .map_err(|e| fail("starting the fleet", e))?;
    let measured = async {
        let started = Instant::now();
        load_through_router(fleet.router_url(), rows).await?;
        let load_secs = started.elapsed().as_secs_f64();
        let state = crate::local::state::DataDir::new(&fleet_dir)
            .load_fleet()
            .map_err(|e| fail("reading fleet.json", e))?
            .ok_or_else(|| fail("reading fleet.json", "no fleet"))?;
        let store = store_args
            .open()
            .map_err(|e| fail("opening the store", e))?
            .ok_or_else(|| fail("opening the store", "no URL"))?;
        let archive_bytes = dir_bytes(&store_dir);
        let started = Instant::now();
        backup_now(&state, &store, &RetentionArgs::default(), !quiet)
            .await
            .map_err(|e| fail("the base backup", e))?;
        let backup_secs = started.elapsed().as_secs_f64();
        // The store also holds the archived WAL of the load; the backup is what it added.
        let backup_bytes = dir_bytes(&store_dir).saturating_sub(archive_bytes);
        Ok::<_, BenchError>((load_secs, backup_secs, backup_bytes))
    }
    .await;
    fleet
        .shutdown()
        .await
        .map_err(|e| fail("stopping the fleet", e))?;
    let (load_secs, backup_secs, backup_bytes) = measured?;
    let _ = std::fs::remove_dir_all(&fleet_dir);

    let started = Instant::now();
    restore(RestoreArgs {
        store: store_args,
        data_dir: work.join("restored"),
        to_time: None,
        backup: None,
        to_lsn: None,
    })
    .await
    .map_err(|e| fail("the restore", e))?;
    let restore_secs = started.elapsed().as_secs_f64();
    Ok(Side {
        system: "walshard: base backup of 4 shards to file://, restore of 6 servers × their shards (3 replicas)".to_owned(),
        load_secs,
        backup_secs,
        backup_bytes,
        restore_secs,
    })
}

/// Writes keys `0..rows` through the router in batches.
async fn load_through_router(router: &str, rows: u64) -> Result<(), BenchError> {
    let http = reqwest::Client::new();
    let schema = Schema::seed();
    let batches = (0..rows.div_ceil(LOAD_BATCH)).map(|b| {
        let (http, schema) = (http.clone(), schema.clone());
        let url = format!("{router}/write");
        async move {
            let low = b * LOAD_BATCH;
            let data: Vec<_> = (low..(low + LOAD_BATCH).min(rows))
                .map(|k| row(&schema, k as i64))
                .collect();
            let answer = http
                .post(&url)
                .json(&json!({ "data": data }))
                .send()
                .await
                .map_err(|e| fail("loading", e))?;
            if !answer.status().is_success() {
                let status = answer.status();
                let body = answer.text().await.unwrap_or_default();
                return Err(fail("loading", format!("HTTP {status}: {body}")));
            }
            Ok(())
        }
    });
    let mut results = futures::stream::iter(batches).buffer_unordered(LOAD_CONCURRENCY);
    while let Some(r) = results.next().await {
        r?;
    }
    Ok(())
}

async fn dump_side(rows: u64, work: &Path) -> Result<Side, BenchError> {
    let start = || {
        tokio::task::spawn_blocking(|| {
            MariaDb::start_with(MariaDbOptions {
                flush_log_at_trx_commit: 1,
                ..MariaDbOptions::default()
            })
        })
    };
    let source = start()
        .await
        .map_err(|e| fail("starting MariaDB", e))?
        .map_err(|e| fail("starting MariaDB", e))?;
    let sql = |what: &str, e: sqlx::Error| fail(what, chain(&e));
    let server = MySqlConnectOptions::from_str(&source.url()).map_err(|e| sql("the URL", e))?;
    let pool = MySqlPoolOptions::new()
        .max_connections(LOAD_CONCURRENCY as u32)
        .connect_with(server)
        .await
        .map_err(|e| sql("connecting", e))?;
    for ddl in [
        "CREATE DATABASE bench",
        "CREATE TABLE bench.t (id BIGINT NOT NULL PRIMARY KEY, name VARCHAR(255), marks VARCHAR(255)) ENGINE=InnoDB",
    ] {
        pool.execute(ddl).await.map_err(|e| sql(ddl, e))?;
    }
    let started = Instant::now();
    let batches = (0..rows.div_ceil(LOAD_BATCH)).map(|b| {
        let pool = pool.clone();
        async move {
            let low = b * LOAD_BATCH;
            let high = (low + LOAD_BATCH).min(rows);
            let mut insert = sqlx::QueryBuilder::new("INSERT INTO bench.t (id, name, marks) ");
            insert.push_values(low..high, |mut row, k| {
                row.push_bind(k as i64)
                    .push_bind(format!("student-{k}"))
                    .push_bind(format!("student-{k}"));
            });
            insert
                .build()
                .execute(&pool)
                .await
                .map(|_| ())
                .map_err(|e| sql("loading", e))
        }
    });
    let mut results = futures::stream::iter(batches).buffer_unordered(LOAD_CONCURRENCY);
    while let Some(r) = results.next().await {
        r?;
    }
    let load_secs = started.elapsed().as_secs_f64();
    pool.close().await;

    let dump = work.join("dump.sql");
    let started = Instant::now();
    run(
        tokio::process::Command::new("mariadb-dump")
            .args(client_args(&source))
            .args(["--single-transaction", "--databases", "bench"])
            .arg(format!("--result-file={}", dump.display())),
        "mariadb-dump",
    )
    .await?;
    let backup_secs = started.elapsed().as_secs_f64();
    let backup_bytes = std::fs::metadata(&dump).map_or(0, |m| m.len());
    let _ = tokio::task::spawn_blocking(move || drop(source)).await;

    // As walshard's restore, the reload's time includes starting its server.
    let started = Instant::now();
    let target = start()
        .await
        .map_err(|e| fail("starting MariaDB", e))?
        .map_err(|e| fail("starting MariaDB", e))?;
    run(
        tokio::process::Command::new("mariadb")
            .args(client_args(&target))
            .arg("-e")
            .arg(format!("source {}", dump.display())),
        "mariadb -e 'source dump.sql'",
    )
    .await?;
    let restore_secs = started.elapsed().as_secs_f64();
    let _ = tokio::task::spawn_blocking(move || drop(target)).await;
    let _ = std::fs::remove_file(&dump);
    Ok(Side {
        system: "mariadb-dump --single-transaction, reload with the mariadb client into a freshly started server (1 copy)".to_owned(),
        load_secs,
        backup_secs,
        backup_bytes,
        restore_secs,
    })
}

fn client_args(db: &MariaDb) -> Vec<String> {
    vec![
        "--protocol=tcp".to_owned(),
        "-h".to_owned(),
        "127.0.0.1".to_owned(),
        "-P".to_owned(),
        db.port().to_string(),
        "-u".to_owned(),
        "root".to_owned(),
    ]
}

async fn run(cmd: &mut tokio::process::Command, what: &str) -> Result<(), BenchError> {
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(|e| fail(what, e))?;
    if !out.status.success() {
        return Err(fail(
            what,
            format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(())
}

/// The benchmark's lines under the table.
pub fn render(f: &BackupFigures) -> String {
    let mb = |b: u64| b as f64 / 1e6;
    let line = |label: &str, s: &Side| {
        format!(
            "  {label:<9} load {:>7.2} s | backup {:>7.2} s, {:>8.1} MB, {:>6.1} MB/s | restore {:>7.2} s, {:>6.1} MB/s\n",
            s.load_secs,
            s.backup_secs,
            mb(s.backup_bytes),
            mb(s.backup_bytes) / s.backup_secs.max(1e-9),
            s.restore_secs,
            mb(s.backup_bytes) / s.restore_secs.max(1e-9),
        )
    };
    let mut out = format!(
        "backup and restore of {} rows:\n",
        super::report::thousands(f.rows)
    );
    out.push_str(&line("walshard", &f.walshard));
    out.push_str(&line("baseline", &f.baseline));
    out.push_str(&format!(
        "  walshard / baseline: backup {:.2}x the time, restore {:.2}x the time ({} ; {})\n",
        f.walshard.backup_secs / f.baseline.backup_secs.max(1e-9),
        f.walshard.restore_secs / f.baseline.restore_secs.max(1e-9),
        f.walshard.system,
        f.baseline.system,
    ));
    out
}

/// Where the backup benchmark works: `run_dir/backup`.
pub fn work_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("backup")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lines_give_seconds_rates_and_the_ratio() {
        let side = |system: &str, backup_secs: f64, restore_secs: f64| Side {
            system: system.to_owned(),
            load_secs: 10.0,
            backup_secs,
            backup_bytes: 50_000_000,
            restore_secs,
        };
        let text = render(&BackupFigures {
            rows: 1_000_000,
            walshard: side("w", 5.0, 20.0),
            baseline: side("b", 2.5, 40.0),
        });
        assert!(
            text.starts_with("backup and restore of 1,000,000 rows:"),
            "{text}"
        );
        assert!(
            text.contains("backup    5.00 s,     50.0 MB,   10.0 MB/s"),
            "{text}"
        );
        assert!(
            text.contains("backup 2.00x the time, restore 0.50x the time"),
            "{text}"
        );
    }
}
