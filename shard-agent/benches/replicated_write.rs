//! Replicated write throughput: a 3-replica shard (majority commit: the primary's WAL fdatasync
//! plus one secondary's) next to a single standalone agent and a direct-MariaDB durable baseline
//! (single-row autocommit INSERTs, `innodb_flush_log_at_trx_commit=1`), all in the same run.
//!
//! Prints figures and ratios; asserts nothing about time. Every process shares this machine's
//! cores (3 agents + 3 MariaDB for the replicated shard), so the server CPU per row is printed too.
//! `WALSHARD_BENCH_SECS` sets the seconds per cell (default 3).

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use common::*;
use serde_json::json;
use sqlx::Executor;
use sqlx::mysql::MySqlPoolOptions;
use walshard_testkit::MariaDb;

const SCHEMA: &str = r#"{"columns": ["Stud_id", "Stud_name", "Stud_marks"], "dtypes": ["Number", "String", "Number"]}"#;

async fn post(
    http: &reqwest::Client,
    url: String,
    body: serde_json::Value,
) -> Result<(), Box<dyn std::error::Error>> {
    http.post(url)
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secs: f64 = std::env::var("WALSHARD_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let tmp = tempfile::tempdir()?;
    let http = reqwest::Client::new();
    let schema: serde_json::Value = serde_json::from_str(SCHEMA)?;
    let shard = json!([{"Stud_id_low": 0, "Shard_id": "sh1", "Shard_size": 1_000_000_000_000i64}]);

    // Baseline MariaDB.
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
    // A standalone agent.
    let single_db = mariadb(2)?;
    let (single, single_url) = start_agent(&single_db, &tmp.path().join("single"), "always")?;
    post(
        &http,
        format!("{single_url}/config"),
        json!({"schema": schema, "shards": shard}),
    )
    .await?;
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
        post(
            &http,
            format!("{url}/config"),
            json!({"schema": schema, "shards": shard}),
        )
        .await?;
        agents.push((name, child, url));
    }
    for (_, _, url) in &agents {
        post(
            &http,
            format!("{url}/shards/sh1/fence"),
            json!({"epoch": 1}),
        )
        .await?;
    }
    let replicas: Vec<_> = agents
        .iter()
        .map(|(n, _, u)| json!({"name": n, "url": u}))
        .collect();
    post(
        &http,
        format!("{}/shards/sh1/promote", agents[0].2),
        json!({"epoch": 1, "replicas": replicas}),
    )
    .await?;
    let primary = agents[0].2.clone();

    let base_pids: Vec<u32> = base_db.pid().into_iter().collect();
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

    println!("replicated write throughput, {secs} s per cell");
    println!(
        "(rows/s; latency ms p50/p99; ratio of rows/s to the single-row durable baseline at the same concurrency; server CPU µs per row)"
    );
    println!(
        "{:<44} {:>5} {:>6} {:>10} {:>8} {:>8} {:>8} {:>10}",
        "system", "conc", "batch", "rows/s", "p50", "p99", "ratio", "srv µs/row"
    );
    let keys = Arc::new(AtomicI64::new(0));
    let base_keys = Arc::new(AtomicI64::new(0));
    let mut results = Vec::new();
    for &conc in &[16usize, 64] {
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
            let c0 = cpu_secs(&single_pids);
            let mut one = agent_cell(&single_url, "sh1", conc, batch, secs, keys.clone()).await;
            one.server_cpu = cpu_secs(&single_pids) - c0;
            print_row(
                "single agent (standalone)",
                conc,
                batch,
                &one,
                Some(baseline.rows_per_sec()),
            );
            let c0 = cpu_secs(&repl_pids);
            let mut three = agent_cell(&primary, "sh1", conc, batch, secs, keys.clone()).await;
            three.server_cpu = cpu_secs(&repl_pids) - c0;
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
