#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report
mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::main]
async fn main() -> BenchResult<()> {
    let secs = bench_secs();
    let tmp = tempfile::tempdir()?;
    let http = reqwest::Client::new();
    let agent_db = mariadb(2)?;
    let base_db = baseline_db().await?;
    let (mut agent, base) = start_agent(&agent_db, &tmp.path().join("agent"), "always")?;
    configure(&http, &base, "sh1").await?;
    let agent_pids: Vec<u32> = [Some(agent.pid()), agent_db.pid()]
        .into_iter()
        .flatten()
        .collect();
    let base_pids: Vec<u32> = base_db.pid().into_iter().collect();

    print_header("walshard agent write throughput");
    let agent_keys = Arc::new(AtomicI64::new(0));
    let base_keys = Arc::new(AtomicI64::new(0));
    let mut results = Vec::new();
    for &conc in &[1usize, 16, 64] {
        let baseline = baseline_row(&base_db, conc, secs, base_keys.clone()).await?;
        for &batch in &[1i64, 100] {
            let cell = measured(
                &agent_pids,
                agent_cell(&base, "sh1", conc, batch, secs, agent_keys.clone()),
            )
            .await?;
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
        let batched = measured(
            &base_pids,
            direct_cell(&base_db.url(), conc, 100, secs, base_keys.clone()),
        )
        .await?;
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
    configure(&http, &nosync_base, "sh2").await?;
    let fsync_on = results
        .iter()
        .find(|r| r["concurrency"] == 64 && r["batch"] == 1)
        .and_then(|r| r["agent_rows_per_s"].as_f64())
        .unwrap_or(0.0);
    let nosync_pids: Vec<u32> = [Some(nosync.pid()), agent_db.pid()]
        .into_iter()
        .flatten()
        .collect();
    let cell = measured(
        &nosync_pids,
        agent_cell(&nosync_base, "sh2", 64, 1, secs, agent_keys.clone()),
    )
    .await?;
    print_row("agent, WAL fsync off (never)", 64, 1, &cell, Some(fsync_on));
    println!("(ratio of the last row: against the agent with fsync at concurrency 64, batch 1)");
    nosync.terminate(Duration::from_secs(10))?;
    println!("{}", serde_json::to_string(&json!({"cells": results}))?);
    Ok(())
}
