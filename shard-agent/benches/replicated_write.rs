//! Replicated write throughput: a 3-replica shard (majority commit: the primary's WAL fdatasync
//! plus one secondary's) next to a single standalone agent and a direct-MariaDB durable baseline
//! (single-row autocommit INSERTs, `innodb_flush_log_at_trx_commit=1`), all in the same run.
//!
//! Prints figures and ratios; asserts nothing about time. Every process shares this machine's
//! cores (3 agents + 3 MariaDB for the replicated shard), so the server CPU per row is printed too.
//! `WALSHARD_BENCH_SECS` sets the seconds per cell (default 3).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use common::*;
use serde_json::json;
use walshard_testkit::MariaDb;

#[tokio::main]
async fn main() -> BenchResult<()> {
    let secs = bench_secs();
    let tmp = tempfile::tempdir()?;
    let http = reqwest::Client::new();
    let base_db = baseline_db().await?;
    // A standalone agent.
    let single_db = mariadb(2)?;
    let (single, single_url) = start_agent(&single_db, &tmp.path().join("single"), "always")?;
    configure(&http, &single_url, "sh1").await?;
    // A 3-replica shard, primary elected by hand (fence at epoch 1, promote Server0).
    let dbs: Vec<MariaDb> = (0..3).map(|_| mariadb(2)).collect::<Result<_, _>>()?;
    let mut agents = Vec::new();
    for (i, db) in dbs.iter().enumerate() {
        let name = format!("Server{i}");
        let (child, url) = start_agent_with(
            db,
            &tmp.path().join(&name),
            &name,
            &[("WALSHARD_CONTROLLED", "true")],
        )?;
        configure(&http, &url, "sh1").await?;
        agents.push((name, child, url));
    }
    for (_, _, url) in &agents {
        http.post(format!("{url}/shards/sh1/fence"))
            .bearer_auth(TOKEN)
            .json(&json!({"epoch": 1}))
            .send()
            .await?
            .error_for_status()?;
    }
    let replicas: Vec<_> = agents
        .iter()
        .map(|(n, _, u)| json!({"name": n, "url": u}))
        .collect();
    let primary = agents[0].2.clone();
    http.post(format!("{primary}/shards/sh1/promote"))
        .bearer_auth(TOKEN)
        .json(&json!({"epoch": 1, "replicas": replicas}))
        .send()
        .await?
        .error_for_status()?;

    let single_pids: Vec<u32> = [Some(single.pid()), single_db.pid()]
        .into_iter()
        .flatten()
        .collect();
    let repl_pids: Vec<u32> = agents
        .iter()
        .map(|(_, c, _)| Some(c.pid()))
        .chain(dbs.iter().map(MariaDb::pid))
        .flatten()
        .collect();

    print_header("replicated write throughput");
    let keys = Arc::new(AtomicI64::new(0));
    let base_keys = Arc::new(AtomicI64::new(0));
    let mut results = Vec::new();
    for &conc in &[16usize, 64] {
        let baseline = baseline_row(&base_db, conc, secs, base_keys.clone()).await?;
        for &batch in &[1i64, 100] {
            let one = measured(
                &single_pids,
                agent_cell(&single_url, "sh1", conc, batch, secs, keys.clone()),
            )
            .await?;
            print_row(
                "single agent (standalone)",
                conc,
                batch,
                &one,
                Some(baseline.rows_per_sec()),
            );
            let three = measured(
                &repl_pids,
                agent_cell(&primary, "sh1", conc, batch, secs, keys.clone()),
            )
            .await?;
            print_row(
                "3 replicas, majority commit",
                conc,
                batch,
                &three,
                Some(baseline.rows_per_sec()),
            );
            results.push(json!({"concurrency": conc, "batch": batch,
                "baseline_rows_per_s": baseline.rows_per_sec(),
                "single_rows_per_s": one.rows_per_sec(),
                "replicated_rows_per_s": three.rows_per_sec(),
                "replicated_vs_single": three.rows_per_sec() / one.rows_per_sec()}));
        }
    }
    println!("{}", serde_json::to_string(&json!({"cells": results}))?);
    Ok(())
}
