//! Single-agent write throughput next to a direct-MariaDB baseline measured in the same run.
//!
//! Prints figures and ratios; asserts nothing about time. Cells: concurrency 1, 16, 64 × batches
//! of 1 and 100 rows through the agent's `/write` (WAL fsync per group commit, MariaDB with
//! `innodb_flush_log_at_trx_commit=2`), against single-row autocommit INSERTs straight into a
//! MariaDB with `innodb_flush_log_at_trx_commit=1` at the same concurrency (the durable baseline).
//! One more row shows the agent with WAL fsync off, to price the fsync.
//!
//! Load generator and servers share this machine's cores, so each row also shows the server CPU
//! spent per row (agent + its MariaDB, or the baseline MariaDB alone, from /proc), which does not
//! depend on what the load generator costs.
//!
//! `WALSHARD_BENCH_SECS` sets the seconds per cell (default 3).

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use common::*;
use serde_json::json;
use sqlx::Executor;
use sqlx::mysql::MySqlPoolOptions;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secs: f64 = std::env::var("WALSHARD_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let tmp = tempfile::tempdir()?;
    let agent_db = mariadb(2)?;
    let base_db = mariadb(1)?;
    {
        let admin = MySqlPoolOptions::new()
            .max_connections(1)
            .connect(&base_db.url())
            .await?;
        admin.execute("CREATE DATABASE bench").await?;
        admin
            .execute("CREATE TABLE bench.t (id BIGINT NOT NULL PRIMARY KEY, name TEXT, marks BIGINT) ENGINE=InnoDB")
            .await?;
        admin.close().await;
    }
    let (mut agent, base) = start_agent(&agent_db, &tmp.path().join("agent"), "always")?;
    let http = reqwest::Client::new();
    http.post(format!("{base}/config"))
        .bearer_auth(TOKEN)
        .json(&json!({"schema": {"columns": ["Stud_id", "Stud_name", "Stud_marks"], "dtypes": ["Number", "String", "Number"]},
                      "shards": [{"Stud_id_low": 0, "Shard_id": "sh1", "Shard_size": 1_000_000_000_000i64}]}))
        .send()
        .await?
        .error_for_status()?;

    let agent_pids: Vec<u32> = [Some(agent.pid()), agent_db.pid()]
        .into_iter()
        .flatten()
        .collect();
    let base_pids: Vec<u32> = base_db.pid().into_iter().collect();
    println!("walshard agent write throughput, {secs} s per cell");
    println!(
        "(rows/s; latency ms p50/p99; ratio of rows/s to the single-row durable baseline at the same concurrency; server CPU µs per row)"
    );
    println!(
        "{:<44} {:>5} {:>6} {:>10} {:>8} {:>8} {:>8} {:>10}",
        "system", "conc", "batch", "rows/s", "p50", "p99", "ratio", "srv µs/row"
    );
    let agent_keys = Arc::new(AtomicI64::new(0));
    let base_keys = Arc::new(AtomicI64::new(0));
    let mut results = Vec::new();
    for &conc in &[1usize, 16, 64] {
        let c0 = cpu_secs(&base_pids);
        let mut baseline = direct_cell(&base_db.url(), conc, 1, secs, base_keys.clone()).await?;
        baseline.server_cpu = cpu_secs(&base_pids) - c0;
        print_row(
            "direct MariaDB, autocommit, flush=1",
            conc,
            1,
            &baseline,
            None,
        );
        for &batch in &[1i64, 100] {
            let c0 = cpu_secs(&agent_pids);
            let mut cell = agent_cell(&base, "sh1", conc, batch, secs, agent_keys.clone()).await;
            cell.server_cpu = cpu_secs(&agent_pids) - c0;
            print_row(
                "agent (WAL fdatasync, MariaDB flush=2)",
                conc,
                batch,
                &cell,
                Some(baseline.rows_per_sec()),
            );
            results.push(json!({"concurrency": conc, "batch": batch, "agent_rows_per_s": cell.rows_per_sec(),
                "agent_server_cpu_us_per_row": cell.cpu_us_per_row(), "baseline_server_cpu_us_per_row": baseline.cpu_us_per_row(),
                "baseline_rows_per_s": baseline.rows_per_sec(), "ratio": cell.rows_per_sec() / baseline.rows_per_sec()}));
        }
        let c0 = cpu_secs(&base_pids);
        let mut batched = direct_cell(&base_db.url(), conc, 100, secs, base_keys.clone()).await?;
        batched.server_cpu = cpu_secs(&base_pids) - c0;
        print_row(
            "direct MariaDB, 100-row INSERT, flush=1",
            conc,
            100,
            &batched,
            Some(baseline.rows_per_sec()),
        );
    }
    agent.terminate(Duration::from_secs(10))?;

    // The price of the fsync: the same agent with the WAL's fdatasync off.
    let (mut nosync, nosync_base) =
        start_agent(&agent_db, &tmp.path().join("agent-nosync"), "never")?;
    http.post(format!("{nosync_base}/config"))
        .bearer_auth(TOKEN)
        .json(&json!({"schema": {"columns": ["Stud_id", "Stud_name", "Stud_marks"], "dtypes": ["Number", "String", "Number"]},
                      "shards": [{"Stud_id_low": 0, "Shard_id": "sh2", "Shard_size": 1_000_000_000_000i64}]}))
        .send()
        .await?
        .error_for_status()?;
    let fsync_on = results
        .iter()
        .find(|r| r["concurrency"] == 64 && r["batch"] == 1)
        .and_then(|r| r["agent_rows_per_s"].as_f64())
        .unwrap_or(0.0);
    let nosync_pids: Vec<u32> = [Some(nosync.pid()), agent_db.pid()]
        .into_iter()
        .flatten()
        .collect();
    let c0 = cpu_secs(&nosync_pids);
    let mut cell = agent_cell(&nosync_base, "sh2", 64, 1, secs, agent_keys.clone()).await;
    cell.server_cpu = cpu_secs(&nosync_pids) - c0;
    print_row("agent, WAL fsync off (never)", 64, 1, &cell, Some(fsync_on));
    println!("(ratio of the last row: against the agent with fsync at concurrency 64, batch 1)");
    nosync.terminate(Duration::from_secs(10))?;
    println!("{}", serde_json::to_string(&json!({"cells": results}))?);
    Ok(())
}
