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

use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::{AssertSqlSafe, Executor};
use walshard_testkit::{ChildGuard, MariaDb, MariaDbOptions, free_port, wait_for_tcp};

const TOKEN: &str = "bench";

/// CPU seconds (user + system) used so far by these processes, from /proc/<pid>/stat.
fn cpu_secs(pids: &[u32]) -> f64 {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
            let rest = stat.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
        })
        .sum::<f64>()
        / ticks
}

struct Cell {
    server_cpu: f64,
    rows: u64,
    requests: u64,
    secs: f64,
    latencies: Vec<Duration>,
}

impl Cell {
    fn cpu_us_per_row(&self) -> f64 {
        if self.rows == 0 {
            return 0.0;
        }
        self.server_cpu * 1e6 / self.rows as f64
    }
    fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.secs
    }
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let mut l = self.latencies.clone();
        l.sort();
        let i = ((l.len() as f64 - 1.0) * p).round() as usize;
        l[i].as_secs_f64() * 1000.0
    }
}

fn mariadb(flush: u8) -> Result<MariaDb, Box<dyn std::error::Error>> {
    Ok(MariaDb::start_with(MariaDbOptions {
        flush_log_at_trx_commit: flush,
        buffer_pool_mb: 128,
        ..Default::default()
    })?)
}

fn start_agent(
    db: &MariaDb,
    dir: &std::path::Path,
    fsync: &str,
) -> Result<(ChildGuard, String), Box<dyn std::error::Error>> {
    let port = free_port()?;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_walshard-agent"));
    cmd.env("WALSHARD_LISTEN", format!("127.0.0.1:{port}"))
        .env("WALSHARD_MYSQL_URL", db.url())
        .env("WALSHARD_DATA_DIR", dir)
        .env("WALSHARD_SERVER_NAME", "Server0")
        .env("WALSHARD_TOKEN", TOKEN)
        .env("WALSHARD_WAL_FSYNC", fsync)
        .env("RUST_LOG", "warn");
    let child = ChildGuard::spawn(cmd)?;
    wait_for_tcp(([127, 0, 0, 1], port).into(), Duration::from_secs(30))?;
    Ok((child, format!("http://127.0.0.1:{port}")))
}

async fn agent_cell(
    base: &str,
    shard: &str,
    concurrency: usize,
    batch: i64,
    secs: f64,
    next: Arc<AtomicI64>,
) -> Cell {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let http = http.clone();
        let url = format!("{base}/write");
        let next = next.clone();
        let shard = shard.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut rows = 0u64;
            while Instant::now() < deadline {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                let data: Vec<_> = (first..first + batch)
                    .map(|i| json!({"Stud_id": i, "Stud_name": "bench", "Stud_marks": i % 100}))
                    .collect();
                let t = Instant::now();
                let ok = http
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .json(&json!({"shard": shard, "data": data}))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    lat.push(t.elapsed());
                    rows += batch as u64;
                }
            }
            (rows, lat)
        }));
    }
    collect(tasks, start).await
}

async fn collect(
    tasks: Vec<tokio::task::JoinHandle<(u64, Vec<Duration>)>>,
    start: Instant,
) -> Cell {
    let mut cell = Cell {
        server_cpu: 0.0,
        rows: 0,
        requests: 0,
        secs: 0.0,
        latencies: Vec::new(),
    };
    for t in tasks {
        if let Ok((rows, lat)) = t.await {
            cell.rows += rows;
            cell.requests += lat.len() as u64;
            cell.latencies.extend(lat);
        }
    }
    cell.secs = start.elapsed().as_secs_f64();
    cell
}

async fn direct_cell(
    url: &str,
    concurrency: usize,
    batch: i64,
    secs: f64,
    next: Arc<AtomicI64>,
) -> Result<Cell, Box<dyn std::error::Error>> {
    let pool = MySqlPoolOptions::new()
        .max_connections(concurrency as u32)
        .connect_with(MySqlConnectOptions::from_str(url)?.database("bench"))
        .await?;
    let one = format!("({})", ["?"; 3].join(","));
    let sql = Arc::new(format!(
        "INSERT INTO t (id, name, marks) VALUES {}",
        vec![one; batch as usize].join(",")
    ));
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let pool = pool.clone();
        let next = next.clone();
        let sql = sql.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut rows = 0u64;
            while Instant::now() < deadline {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                let mut q = sqlx::query(AssertSqlSafe(sql.as_str().to_owned()));
                for i in first..first + batch {
                    q = q.bind(i).bind("bench").bind(i % 100);
                }
                let t = Instant::now();
                if q.execute(&pool).await.is_ok() {
                    lat.push(t.elapsed());
                    rows += batch as u64;
                }
            }
            (rows, lat)
        }));
    }
    let cell = collect(tasks, start).await;
    pool.close().await;
    Ok(cell)
}

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

fn print_row(name: &str, conc: usize, batch: i64, c: &Cell, baseline: Option<f64>) {
    let ratio = baseline.map_or("-".to_owned(), |b| format!("{:.2}x", c.rows_per_sec() / b));
    println!(
        "{:<44} {:>5} {:>6} {:>10.0} {:>8.2} {:>8.2} {:>8} {:>10.1}",
        name,
        conc,
        batch,
        c.rows_per_sec(),
        c.percentile(0.5),
        c.percentile(0.99),
        ratio,
        c.cpu_us_per_row()
    );
}
