//! The load generator and helpers the benchmarks share.
#![allow(dead_code)]

use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::AssertSqlSafe;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use walshard_testkit::{ChildGuard, MariaDb, MariaDbOptions, free_port, wait_for_tcp};

pub const TOKEN: &str = "bench";

/// CPU seconds (user + system) used so far by these processes, from /proc/<pid>/stat.
pub fn cpu_secs(pids: &[u32]) -> f64 {
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

pub type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Seconds per cell: `WALSHARD_BENCH_SECS`, default 3.
pub fn bench_secs() -> f64 {
    std::env::var("WALSHARD_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0)
}

/// The durable baseline: a MariaDB with `innodb_flush_log_at_trx_commit=1` and table `bench.t`.
pub async fn baseline_db() -> BenchResult<MariaDb> {
    use sqlx::Executor;
    let db = mariadb(1)?;
    let admin = MySqlPoolOptions::new()
        .max_connections(1)
        .connect(&db.url())
        .await?;
    admin.execute("CREATE DATABASE bench").await?;
    admin
        .execute("CREATE TABLE bench.t (id BIGINT NOT NULL PRIMARY KEY, name TEXT, marks BIGINT) ENGINE=InnoDB")
        .await?;
    admin.close().await;
    Ok(db)
}

/// Runs a cell and records the CPU the server processes `pids` spent on it.
pub async fn measured(
    pids: &[u32],
    cell: impl std::future::Future<Output = BenchResult<Cell>>,
) -> BenchResult<Cell> {
    let before = cpu_secs(pids);
    let mut c = cell.await?;
    c.server_cpu = cpu_secs(pids) - before;
    Ok(c)
}

/// Configures a standalone or controlled agent with one shard `shard` covering every key.
pub async fn configure(http: &reqwest::Client, url: &str, shard: &str) -> BenchResult<()> {
    http.post(format!("{url}/config"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({
            "schema": {"columns": ["Stud_id", "Stud_name", "Stud_marks"], "dtypes": ["Number", "String", "Number"]},
            "shards": [{"Stud_id_low": 0, "Shard_id": shard, "Shard_size": 1_000_000_000_000i64}]
        }))
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

/// Measures and prints the durable baseline (single-row autocommit INSERTs) at `conc`.
pub async fn baseline_row(
    db: &MariaDb,
    conc: usize,
    secs: f64,
    keys: Arc<AtomicI64>,
) -> BenchResult<Cell> {
    let pids: Vec<u32> = db.pid().into_iter().collect();
    let cell = measured(&pids, direct_cell(&db.url(), conc, 1, secs, keys)).await?;
    print_row("direct MariaDB, autocommit, flush=1", conc, 1, &cell, None);
    Ok(cell)
}

/// The table header every benchmark prints.
pub fn print_header(title: &str) {
    println!("{title}, {} s per cell", bench_secs());
    println!(
        "(rows/s; latency ms p50/p99; ratio of rows/s to the single-row durable baseline at the same concurrency; server CPU µs per row)"
    );
    println!(
        "{:<44} {:>5} {:>6} {:>10} {:>8} {:>8} {:>8} {:>10}",
        "system", "conc", "batch", "rows/s", "p50", "p99", "ratio", "srv µs/row"
    );
}

pub struct Cell {
    pub server_cpu: f64,
    pub rows: u64,
    pub requests: u64,
    pub secs: f64,
    pub latencies: Vec<Duration>,
}

impl Cell {
    pub fn cpu_us_per_row(&self) -> f64 {
        if self.rows == 0 {
            return 0.0;
        }
        self.server_cpu * 1e6 / self.rows as f64
    }
    pub fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.secs
    }
    pub fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let mut l = self.latencies.clone();
        l.sort();
        let i = ((l.len() as f64 - 1.0) * p).round() as usize;
        l[i].as_secs_f64() * 1000.0
    }
}

pub fn mariadb(flush: u8) -> Result<MariaDb, Box<dyn std::error::Error>> {
    Ok(MariaDb::start_with(MariaDbOptions {
        flush_log_at_trx_commit: flush,
        buffer_pool_mb: 128,
        ..Default::default()
    })?)
}

pub fn start_agent(
    db: &MariaDb,
    dir: &std::path::Path,
    fsync: &str,
) -> Result<(ChildGuard, String), Box<dyn std::error::Error>> {
    start_agent_with(db, dir, "Server0", &[("WALSHARD_WAL_FSYNC", fsync)])
}

/// An agent process named `name` with extra environment.
pub fn start_agent_with(
    db: &MariaDb,
    dir: &std::path::Path,
    name: &str,
    env: &[(&str, &str)],
) -> Result<(ChildGuard, String), Box<dyn std::error::Error>> {
    let port = free_port()?;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_walshard-agent"));
    cmd.env("WALSHARD_LISTEN", format!("127.0.0.1:{port}"))
        .env("WALSHARD_MYSQL_URL", db.url())
        .env("WALSHARD_DATA_DIR", dir)
        .env("WALSHARD_SERVER_NAME", name)
        .env("WALSHARD_TOKEN", TOKEN)
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = ChildGuard::spawn(cmd)?;
    wait_for_tcp(([127, 0, 0, 1], port).into(), Duration::from_secs(30))?;
    Ok((child, format!("http://127.0.0.1:{port}")))
}

pub async fn agent_cell(
    base: &str,
    shard: &str,
    concurrency: usize,
    batch: i64,
    secs: f64,
    next: Arc<AtomicI64>,
) -> BenchResult<Cell> {
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
    Ok(collect(tasks, start).await)
}

pub async fn collect(
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

/// Single-row or batched autocommit INSERTs straight into the baseline MariaDB.
pub async fn direct_cell(
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

pub fn print_row(name: &str, conc: usize, batch: i64, c: &Cell, baseline: Option<f64>) {
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
