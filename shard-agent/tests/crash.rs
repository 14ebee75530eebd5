//! Crash safety with real processes: concurrent writers stream writes while the agent or MariaDB
//! is killed with SIGKILL at random moments; afterwards every acknowledged write must be present
//! exactly once, with the content that was acknowledged. Writes cut off by a crash are retried
//! with their operation id after the restart and must not be applied twice.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{AgentProc, Client, mariadb, seed_schema, student};
use rand::RngExt;
use reqwest::Method;
use serde_json::{Value, json};

const WRITERS: usize = 16;

/// What the writers were told: acknowledged rows by key, and ops whose fate is unknown.
#[derive(Default)]
struct Ledger {
    acked: BTreeMap<i64, Value>,
    in_doubt: Vec<(String, Value)>,
    attempted: BTreeMap<i64, Value>,
    retried_ok: usize,
}

/// The writers' shared state across rounds.
#[derive(Clone, Default)]
struct Workload {
    ledger: Arc<Mutex<Ledger>>,
    next_key: Arc<AtomicI64>,
}

/// One round's writers; `stop` ends them at their next request.
struct Round {
    stop: Arc<AtomicBool>,
    writers: tokio::task::JoinHandle<()>,
}

impl Workload {
    fn new() -> Self {
        let w = Workload::default();
        w.next_key.store(1, Ordering::SeqCst);
        w
    }

    fn start(&self, c: Client) -> Round {
        let stop = Arc::new(AtomicBool::new(false));
        let writers = tokio::spawn(stream_writes(
            c,
            self.ledger.clone(),
            self.next_key.clone(),
            stop.clone(),
        ));
        Round { stop, writers }
    }

    fn acked(&self) -> usize {
        self.ledger.lock().expect("ledger").acked.len()
    }

    /// Retries what is still in doubt, then returns the ledger for checking.
    async fn finish(self, c: Client) -> Ledger {
        let stop = Arc::new(AtomicBool::new(true));
        stream_writes(c, self.ledger.clone(), self.next_key.clone(), stop).await;
        std::mem::take(&mut *self.ledger.lock().expect("ledger"))
    }
}

impl Round {
    /// Stops the writers and waits for them; a writer's panic fails the test with `log`.
    async fn end(self, log: impl FnOnce() -> String) {
        self.stop.store(true, Ordering::SeqCst);
        if let Err(e) = self.writers.await {
            panic!("writers failed: {e}\nagent log:\n{}", log());
        }
    }
}

impl Ledger {
    fn ack(&mut self, rows: &[Value]) {
        for r in rows {
            self.acked
                .insert(r["Stud_id"].as_i64().unwrap_or_default(), r.clone());
        }
    }
}

/// Rows of a `/write` body.
fn rows_of(body: &Value) -> Vec<Value> {
    body["data"].as_array().cloned().unwrap_or_default()
}

/// One `/write` carrying its operation id.
async fn send_write(c: &Client, body: &Value, op: &str) -> Result<(u16, Value), reqwest::Error> {
    c.call_with(
        Method::POST,
        "/write",
        Some(body.clone()),
        &[("x-walshard-op-id", op)],
    )
    .await
}

async fn configure(c: &Client) {
    let (code, v) = c
        .post("/config", json!({"schema": seed_schema(), "shards": [{"Stud_id_low": 0, "Shard_id": "sh1", "Shard_size": 1_000_000_000}]}))
        .await;
    assert_eq!(code, 200, "{v}");
}

/// Streams writes (1–3 rows each, fresh keys) from `WRITERS` tasks until a request fails or
/// `stop` is set. Ops left in doubt by a previous crash are retried first with their op id.
async fn stream_writes(
    c: Client,
    ledger: Arc<Mutex<Ledger>>,
    next_key: Arc<AtomicI64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let retry: Vec<(String, Value)> = std::mem::take(&mut ledger.lock().expect("ledger").in_doubt);
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let c = c.clone();
        let ledger = ledger.clone();
        let next_key = next_key.clone();
        let stop = stop.clone();
        let mine: Vec<(String, Value)> = retry.iter().skip(w).step_by(WRITERS).cloned().collect();
        tasks.push(tokio::spawn(async move {
            for (op, body) in mine {
                match send_write(&c, &body, &op).await {
                    Ok((200, _)) => {
                        let mut l = ledger.lock().expect("ledger");
                        l.ack(&rows_of(&body));
                        l.retried_ok += 1;
                    }
                    Ok((code, v)) => panic!("retry of in-doubt op {op} answered {code} {v}"),
                    Err(_) => {
                        ledger.lock().expect("ledger").in_doubt.push((op, body));
                        return;
                    }
                }
            }
            while !stop.load(Ordering::SeqCst) {
                let n = rand::rng().random_range(1..=3);
                let first = next_key.fetch_add(n, Ordering::SeqCst);
                let rows: Vec<Value> = (first..first + n).map(student).collect();
                let body = json!({"shard": "sh1", "data": rows});
                let op = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
                {
                    let mut l = ledger.lock().expect("ledger");
                    for r in &rows {
                        l.attempted
                            .insert(r["Stud_id"].as_i64().unwrap_or_default(), r.clone());
                    }
                }
                match send_write(&c, &body, &op).await {
                    Ok((200, _)) => ledger.lock().expect("ledger").ack(&rows),
                    Ok((503, _)) | Err(_) => {
                        ledger.lock().expect("ledger").in_doubt.push((op, body));
                        if w % 2 == 0 {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Ok((code, v)) => panic!("write answered {code} {v}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer task");
    }
}

/// Every acknowledged row present with its content; nothing present that was never attempted.
async fn verify(c: &Client, ledger: &Ledger) {
    c.wait_applied("sh1").await;
    let rows = c.copy("sh1").await;
    let present: BTreeMap<i64, Value> = rows
        .into_iter()
        .map(|r| (r["Stud_id"].as_i64().unwrap_or_default(), r))
        .collect();
    let missing: Vec<i64> = ledger
        .acked
        .keys()
        .filter(|k| !present.contains_key(k))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged rows lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    for (k, v) in &ledger.acked {
        assert_eq!(
            present.get(k),
            Some(v),
            "row {k} differs from what was acknowledged"
        );
    }
    for (k, v) in &present {
        assert_eq!(
            ledger.attempted.get(k),
            Some(v),
            "row {k} was never written by a client"
        );
    }
    println!(
        "verified: {} acknowledged rows present, {} rows in total, {} in-doubt ops retried ok",
        ledger.acked.len(),
        present.len(),
        ledger.retried_ok
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_at_random_moments_loses_no_acknowledged_write() {
    let db = mariadb(2);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut agent = AgentProc::start(&db.url(), &dir.path().join("agent"));
    configure(&agent.client()).await;
    let work = Workload::new();
    for round in 0..20 {
        let r = work.start(agent.client());
        let pause = rand::rng().random_range(30..400);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        agent.kill9();
        r.end(|| agent.log_text()).await;
        println!(
            "round {round}: killed after {pause} ms, {} rows acknowledged so far",
            work.acked()
        );
        agent.restart();
    }
    let ledger = work.finish(agent.client()).await;
    assert!(
        ledger.acked.len() > 100,
        "too few writes acknowledged to mean anything: {}",
        ledger.acked.len()
    );
    verify(&agent.client(), &ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_killed_at_random_moments_loses_no_acknowledged_write() {
    // innodb_flush_log_at_trx_commit=0: a killed MariaDB really loses its last commits, so only
    // the WAL replay from applied_lsn can bring them back.
    let mut db = mariadb(0);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut agent = AgentProc::start(&db.url(), &dir.path().join("agent"));
    configure(&agent.client()).await;
    let work = Workload::new();
    for round in 0..8 {
        let r = work.start(agent.client());
        let pause = rand::rng().random_range(100..600);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        db.kill9().expect("kill MariaDB");
        let both = round % 3 == 2;
        if both {
            agent.kill9();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        db.restart().expect("restart MariaDB");
        r.end(|| agent.log_text()).await;
        if both {
            agent.restart();
        }
        println!(
            "round {round}: MariaDB killed after {pause} ms (agent too: {both}), {} rows acknowledged so far",
            work.acked()
        );
    }
    let ledger = work.finish(agent.client()).await;
    verify(&agent.client(), &ledger).await;
    let log = agent.log_text();
    let replays = log.matches("replaying WAL from it").count()
        + log.matches("replayed WAL into MySQL").count();
    println!("MySQL lost commits and the WAL replayed them {replays} times");
}

fn last_segment(shard_dir: &std::path::Path) -> std::path::PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(shard_dir)
        .expect("shard dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segs.sort();
    segs.pop().expect("a segment")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_wal_tail_is_cut_and_acknowledged_writes_survive() {
    let db = mariadb(2);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("agent");
    let mut agent = AgentProc::start(&db.url(), &data);
    let c = agent.client();
    configure(&c).await;
    for i in 0..20 {
        let (code, v) = c
            .post("/write", json!({"shard": "sh1", "data": [student(i)]}))
            .await;
        assert_eq!(code, 200, "{v}");
    }
    agent.kill9();
    // A torn append: a frame header promising more bytes than follow.
    let seg = last_segment(&data.join("shards/sh1"));
    let mut bytes = std::fs::read(&seg).expect("segment");
    bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9]);
    std::fs::write(&seg, &bytes).expect("write segment");
    agent.restart();
    assert!(
        agent.log_text().contains("cut torn WAL tail"),
        "{}",
        agent.log_text()
    );
    let c = agent.client();
    assert_eq!(c.copy("sh1").await.len(), 20);
    let (code, v) = c
        .post("/write", json!({"shard": "sh1", "data": [student(100)]}))
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(c.status().await["shards"]["sh1"]["last_lsn"], 21);

    // Corrupting an entry MySQL already applied is not silently papered over: the agent refuses
    // to serve a shard whose WAL lost acknowledged entries.
    agent.kill9();
    let seg = last_segment(&data.join("shards/sh1"));
    let mut bytes = std::fs::read(&seg).expect("segment");
    // Segments are preallocated with zeros: flip a byte inside the last frame, not the padding.
    let at = walshard_agent::wal::codec::nonzero_end(&bytes) - 3;
    bytes[at] ^= 0xff;
    std::fs::write(&seg, &bytes).expect("write segment");
    let status = agent
        .start_expect_exit(Duration::from_secs(20))
        .expect("agent must refuse to start");
    assert!(!status.success());
    assert!(
        agent.log_text().contains("WAL lost acknowledged entries"),
        "{}",
        agent.log_text()
    );
}
