//! Replication between real agent processes (each with its own MariaDB), driven by a minimal
//! elector in the test that follows docs/replication.md: fence a quorum at a new epoch, promote
//! the replica with the highest (last_epoch, last_lsn). The control plane's own election logic is
//! tested in the operator crate and end to end there.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{AgentProc, Client, seed_schema, start_replicas, student};
use reqwest::Method;
use serde_json::{Value, json};
use walshard_testkit::MariaDb;

struct Cluster {
    dbs: Vec<MariaDb>,
    agents: Vec<AgentProc>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start(n: usize) -> Cluster {
        Self::start_with(n, &[]).await
    }

    async fn start_with(n: usize, env: &[(&str, &str)]) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let (dbs, agents) = start_replicas(n, dir.path(), env).await;
        Cluster {
            dbs,
            agents,
            _dir: dir,
        }
    }

    fn replicas(&self) -> Value {
        Value::Array(
            self.agents
                .iter()
                .map(|a| json!({"name": a.name, "url": a.base()}))
                .collect(),
        )
    }

    fn client(&self, i: usize) -> Client {
        self.agents[i].client()
    }

    /// Fences every live replica at `epoch` and promotes the best of a quorum; returns the
    /// winner's index. `alive` lists the replicas the elector can reach.
    async fn elect(&self, epoch: u64, alive: &[usize]) -> usize {
        let mut answers = Vec::new();
        for &i in alive {
            let (code, v) = self
                .client(i)
                .post("/shards/sh1/fence", json!({"epoch": epoch}))
                .await;
            assert_eq!(code, 200, "fence {i}: {v}");
            answers.push((
                v["last_epoch"].as_u64().unwrap_or(0),
                v["last_lsn"].as_u64().unwrap_or(0),
                i,
            ));
        }
        assert!(answers.len() > self.agents.len() / 2, "no fence quorum");
        answers.sort();
        let winner = answers.last().map(|a| a.2).expect("an answer");
        let (code, v) = self
            .client(winner)
            .post(
                "/shards/sh1/promote",
                json!({"epoch": epoch, "replicas": self.replicas()}),
            )
            .await;
        assert_eq!(code, 200, "promote {winner}: {v}");
        winner
    }

    async fn status(&self, i: usize) -> Value {
        self.client(i).status().await["shards"]["sh1"].clone()
    }

    /// Waits until every listed replica has applied `lsn`.
    async fn wait_applied(&self, replicas: &[usize], lsn: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for &i in replicas {
            loop {
                let s = self.status(i).await;
                if s["applied_lsn"].as_u64().unwrap_or(0) >= lsn {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "replica {i} never applied {lsn}: {s}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    async fn rows(&self, i: usize) -> Vec<Value> {
        self.client(i).copy("sh1").await
    }
}

fn write_body(keys: std::ops::Range<i64>) -> Value {
    json!({"shard": "sh1", "data": keys.map(student).collect::<Vec<_>>()})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_commit_by_majority_and_converge() {
    let c = Cluster::start(3).await;
    // Before any election nobody takes writes.
    let (code, v) = c.client(0).post("/write", write_body(0..1)).await;
    assert_eq!(code, 421, "{v}");
    let p = c.elect(1, &[0, 1, 2]).await;
    for i in 0..50 {
        let (code, v) = c
            .client(p)
            .post("/write", write_body(i * 10..i * 10 + 10))
            .await;
        assert_eq!(code, 200, "{v}");
    }
    let last = c.status(p).await["last_lsn"].as_u64().expect("lsn");
    assert_eq!(last, 51, "50 writes after the no-op");
    c.wait_applied(&[0, 1, 2], last).await;
    let want = c.rows(p).await;
    assert_eq!(want.len(), 500);
    for i in 0..3 {
        assert_eq!(c.rows(i).await, want, "replica {i} differs");
        let s = c.status(i).await;
        assert_eq!(s["epoch"], 1);
        assert_eq!(s["primary"], format!("Server{p}"));
        assert_eq!(s["role"], if i == p { "primary" } else { "secondary" });
    }
    // A secondary refuses writes with a hint to the primary.
    let s = (p + 1) % 3;
    let (code, v) = c.client(s).post("/write", write_body(10_000..10_001)).await;
    assert_eq!(code, 421, "{v}");
    assert_eq!(v["primary"], format!("Server{p}"));
    // Strong reads: served by the primary after a read-index round, refused by a secondary.
    let strong = json!({"shard": "sh1", "Stud_id": {"low": 0, "high": 9}, "consistency": "strong"});
    let (code, v) = c.client(p).post("/read", strong.clone()).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"].as_array().map(Vec::len), Some(10));
    let (code, _) = c.client(s).post("/read", strong).await;
    assert_eq!(code, 421);
    // Replication shows in the metrics.
    let m = reqwest::get(format!("{}/metrics", c.agents[p].base()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(m.contains("walshard_agent_primary{shard=\"sh1\"} 1"), "{m}");
    assert!(m.contains("walshard_agent_replication_lag_entries{"), "{m}");
    assert!(m.contains("walshard_agent_appends_sent_total{"), "{m}");
    let m = reqwest::get(format!("{}/metrics", c.agents[s].base()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(m.contains("walshard_agent_primary{shard=\"sh1\"} 0"), "{m}");
    assert!(
        m.contains("walshard_agent_appends_received_total{shard=\"sh1\"}"),
        "{m}"
    );
    // A stale fence is refused with the current epoch.
    let (code, v) = c
        .client(s)
        .post("/shards/sh1/fence", json!({"epoch": 1}))
        .await;
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["epoch"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_primary_is_replaced_and_rejoins_as_secondary() {
    let mut c = Cluster::start(3).await;
    let p = c.elect(1, &[0, 1, 2]).await;
    // A stream of writes; the primary is killed in the middle of it.
    let mut acked: BTreeMap<i64, Value> = BTreeMap::new();
    let client = c.client(p);
    let mut tasks = Vec::new();
    for w in 0..8i64 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = Vec::new();
            for i in 0..10_000i64 {
                let key = w * 1_000_000 + i;
                match client
                    .call_with(Method::POST, "/write", Some(write_body(key..key + 1)), &[])
                    .await
                {
                    Ok((200, _)) => ok.push(key),
                    _ => break,
                }
            }
            ok
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let killed_at = Instant::now();
    c.agents[p].kill9();
    for t in tasks {
        for key in t.await.expect("writer") {
            acked.insert(key, student(key));
        }
    }
    assert!(
        acked.len() > 20,
        "too few writes before the kill: {}",
        acked.len()
    );
    let alive: Vec<usize> = (0..3).filter(|&i| i != p).collect();
    let np = c.elect(2, &alive).await;
    let (code, v) = c
        .client(np)
        .post("/write", write_body(50_000_000..50_000_001))
        .await;
    assert_eq!(code, 200, "{v}");
    println!(
        "writes acknowledged again {:?} after the kill (manual election)",
        killed_at.elapsed()
    );
    acked.insert(50_000_000, student(50_000_000));

    // Every acknowledged write is on the new primary.
    let last = c.status(np).await["last_lsn"].as_u64().expect("lsn");
    c.wait_applied(&alive, last).await;
    let rows: BTreeMap<i64, Value> = c
        .rows(np)
        .await
        .into_iter()
        .map(|r| (r["Stud_id"].as_i64().unwrap_or_default(), r))
        .collect();
    for (k, v) in &acked {
        assert_eq!(rows.get(k), Some(v), "acknowledged row {k} lost");
    }
    // The old primary comes back fenced, follows the new one and converges.
    c.agents[p].restart();
    let s = c.status(p).await;
    assert_ne!(s["role"], "primary", "{s}");
    let (code, v) = c
        .client(np)
        .post("/write", write_body(50_000_001..50_000_002))
        .await;
    assert_eq!(code, 200, "{v}");
    let last = c.status(np).await["last_lsn"].as_u64().expect("lsn");
    c.wait_applied(&[0, 1, 2], last).await;
    let want = c.rows(np).await;
    for i in 0..3 {
        assert_eq!(c.rows(i).await, want, "replica {i} differs after rejoin");
    }
    assert_eq!(c.status(p).await["role"], "secondary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_majority_writes_are_refused_and_eventual_reads_served() {
    let mut c = Cluster::start(3).await;
    let p = c.elect(1, &[0, 1, 2]).await;
    let (code, _) = c.client(p).post("/write", write_body(0..5)).await;
    assert_eq!(code, 200);
    let last = c.status(p).await["last_lsn"].as_u64().expect("lsn");
    c.wait_applied(&[0, 1, 2], last).await;
    let others: Vec<usize> = (0..3).filter(|&i| i != p).collect();
    for &i in &others {
        c.agents[i].kill9();
    }
    // Give the primary's view of its peers time to go stale, then write: a clear 503 at once.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let started = Instant::now();
    let (code, v) = c.client(p).post("/write", write_body(100..101)).await;
    assert_eq!(code, 503, "{v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("no majority")),
        "{v}"
    );
    assert_eq!(v["code"], "no-majority", "{v}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let (code, v) = c
        .client(p)
        .post(
            "/read",
            json!({"shard": "sh1", "Stud_id": {"low": 0, "high": 10}}),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(v["data"].as_array().map(Vec::len), Some(5));
    // One comes back: writes resume.
    c.agents[others[0]].restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, v) = c.client(p).post("/write", write_body(200..201)).await;
        if code == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writes never resumed: {code} {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_replica_is_resynced_from_a_snapshot_while_writes_continue() {
    // Small segments and retention so the primary compacts and a wiped replica is too far behind.
    let mut c = Cluster::start_with(
        3,
        &[
            ("WALSHARD_WAL_SEGMENT_BYTES", "8192"),
            ("WALSHARD_WAL_RETAIN_ENTRIES", "50"),
        ],
    )
    .await;
    let p = c.elect(1, &[0, 1, 2]).await;
    for i in 0..300 {
        let (code, v) = c
            .client(p)
            .post("/write", write_body(i * 3..i * 3 + 3))
            .await;
        assert_eq!(code, 200, "{v}");
    }
    let s = (p + 1) % 3;
    // Wipe the secondary: its MySQL database and its data directory.
    c.agents[s].kill9();
    let pool = sqlx::MySqlPool::connect(&c.dbs[s].url())
        .await
        .expect("connect");
    sqlx::query("DROP DATABASE walshard")
        .execute(&pool)
        .await
        .expect("drop");
    pool.close().await;
    std::fs::remove_dir_all(&c.agents[s].data_dir).expect("wipe data dir");
    // Writes continue while it comes back empty and is configured again.
    let writer = {
        let client = c.client(p);
        tokio::spawn(async move {
            for i in 1000..1200i64 {
                let (code, v) = client.post("/write", write_body(i * 3..i * 3 + 3)).await;
                assert_eq!(code, 200, "{v}");
            }
        })
    };
    c.agents[s].restart();
    let (code, v) = c
        .client(s)
        .post(
            "/config",
            json!({"schema": seed_schema(), "shards": ["sh1"]}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    writer.await.expect("writer");
    let last = c.status(p).await["last_lsn"].as_u64().expect("lsn");
    c.wait_applied(&[0, 1, 2], last).await;
    let want = c.rows(p).await;
    assert_eq!(want.len(), 1500);
    for i in 0..3 {
        assert_eq!(c.rows(i).await, want, "replica {i} differs");
    }
    let st = c.status(s).await;
    assert!(
        st["first_lsn"].as_u64().unwrap_or(0) > 1,
        "the wiped replica was not resynced from a snapshot: {st}"
    );
    assert!(c.agents[s].log_text().contains("installed snapshot"));
    // The primary compacted its WAL too.
    assert!(c.status(p).await["first_lsn"].as_u64().unwrap_or(0) > 1);
}
