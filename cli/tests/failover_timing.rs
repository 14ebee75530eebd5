//! Write unavailability when a shard's primary agent is frozen (SIGSTOP: the shape of a partition
//! or a stuck disk) and when it is killed (`kill -9`), measured through the router under a
//! steady write load, ten times each. The figures are printed, never asserted (docs/consistency.md);
//! what is asserted: no acknowledged write is lost, a thawed primary rejoins as a secondary, and
//! strong reads after it see every acknowledged write.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

mod common;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Up;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// Faults of each kind (`FAILOVER_ROUNDS` changes it).
fn rounds() -> usize {
    std::env::var("FAILOVER_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

const WRITERS: usize = 3;

/// One shard of a million keys on three servers: every write goes to its primary.
fn init_body() -> Value {
    json!({
        "N": 3,
        "schema": {"columns": ["Stud_id", "Stud_name", "Stud_marks"], "dtypes": ["Number", "String", "String"]},
        "shards": [{"Stud_id_low": 0, "Shard_id": "sh1", "Shard_size": 1_000_000}],
        "servers": {"Server0": ["sh1"], "Server1": ["sh1"], "Server2": ["sh1"]}
    })
}

struct Load {
    stop: Arc<AtomicBool>,
    /// Every acknowledged write: (key, when).
    acks: Arc<Mutex<Vec<(i64, Instant)>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(router: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let next = Arc::new(AtomicI64::new(1));
        let threads = (0..WRITERS)
            .map(|_| {
                let (stop, acks, next) = (stop.clone(), acks.clone(), next.clone());
                let url = format!("{router}/write");
                std::thread::spawn(move || {
                    let http = reqwest::blocking::Client::builder()
                        .timeout(Duration::from_secs(30))
                        .build()
                        .expect("client");
                    while !stop.load(Ordering::Relaxed) {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let row = json!({"Stud_id": k, "Stud_name": "x", "Stud_marks": "1"});
                        let ok = http
                            .post(&url)
                            .json(&json!({"data": [row]}))
                            .send()
                            .is_ok_and(|r| r.status().is_success());
                        if ok && let Ok(mut a) = acks.lock() {
                            a.push((k, Instant::now()));
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            acks,
            threads,
        }
    }

    /// The longest time without any acknowledged write inside `[from, to]`.
    fn longest_gap(&self, from: Instant, to: Instant) -> Duration {
        let acks = self.acks.lock().map(|a| a.clone()).unwrap_or_default();
        let mut times: Vec<Instant> = acks
            .iter()
            .map(|(_, t)| *t)
            .filter(|t| *t >= from && *t <= to)
            .collect();
        times.sort();
        let mut last = from;
        let mut gap = Duration::ZERO;
        for t in times.into_iter().chain([to]) {
            gap = gap.max(t.duration_since(last));
            last = t;
        }
        gap
    }

    fn finish(self) -> Vec<i64> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("writer");
        }
        let mut keys: Vec<i64> = self
            .acks
            .lock()
            .map(|a| a.iter().map(|(k, _)| *k).collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }
}

/// A client writing a key and reading it back at once (default `session` reads) until stopped:
/// `(pairs, reads that missed the write acknowledged before them)`.
fn read_your_writes(
    router: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(usize, usize)> {
    std::thread::spawn(move || {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let (mut pairs, mut misses) = (0, 0);
        let mut k = 500_000i64;
        while !stop.load(Ordering::Relaxed) {
            k += 1;
            let row = json!({"Stud_id": k, "Stud_name": "ryw", "Stud_marks": "1"});
            let written = http
                .post(format!("{router}/write"))
                .json(&json!({"data": [row]}))
                .send()
                .is_ok_and(|r| r.status().is_success());
            if !written {
                continue;
            }
            let read = http
                .post(format!("{router}/read"))
                .json(&json!({"Stud_id": {"low": k, "high": k}}))
                .send()
                .ok()
                .filter(|r| r.status().is_success())
                .and_then(|r| r.json::<Value>().ok());
            if let Some(v) = read {
                pairs += 1;
                misses += usize::from(v["data"] != json!([row]));
            }
        }
        (pairs, misses)
    })
}

fn agent_pid(up: &Up, server: &str) -> i32 {
    up.servers()[server]["agent_pid"]
        .as_i64()
        .expect("agent pid") as i32
}

/// Waits until the shard's published primary is another server than `old`.
fn wait_new_primary(up: &Up, old: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(p) = up.primary("sh1").filter(|p| p != old) {
            return p;
        }
        assert!(Instant::now() < deadline, "no new primary after {old}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn summary(name: &str, gaps: &[Duration]) {
    let mut ms: Vec<f64> = gaps.iter().map(|g| g.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let median = ms.get(ms.len() / 2).copied().unwrap_or(0.0);
    let list: Vec<String> = ms.iter().map(|m| format!("{m:.0}")).collect();
    println!(
        "{name}: write unavailability over {} faults: median {median:.0} ms, max {:.0} ms (all, ms: {})",
        ms.len(),
        ms.last().copied().unwrap_or(0.0),
        list.join(", ")
    );
}

#[test]
fn frozen_and_killed_primaries_are_replaced_under_writes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let up = Up::start(&tmp.path().join("fleet"), None);
    up.ok("POST", "/init", Some(init_body()));
    up.wait_primaries(Duration::from_secs(30));
    let load = Load::start(&up.router);
    let ryw = read_your_writes(up.router.clone(), load.stop.clone());
    std::thread::sleep(Duration::from_millis(500));

    for (signal, name) in [
        (Signal::SIGSTOP, "frozen primary"),
        (Signal::SIGKILL, "killed primary"),
    ] {
        let mut gaps = Vec::new();
        for _ in 0..rounds() {
            let victim = up.primary("sh1").expect("primary");
            let pid = agent_pid(&up, &victim);
            let fault = Instant::now();
            kill(Pid::from_raw(pid), signal).expect("signal");
            wait_new_primary(&up, &victim);
            if signal == Signal::SIGSTOP {
                kill(Pid::from_raw(pid), Signal::SIGCONT).expect("SIGCONT");
            }
            // Writes flow again; the gap is measured up to a second after the new primary.
            std::thread::sleep(Duration::from_millis(1000));
            gaps.push(load.longest_gap(fault, Instant::now()));
            // The old primary is back (thawed, or respawned) and follows the new one.
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let status = up.status_json();
                let roles = &status["topology"]["shards"]["sh1"]["replicas"];
                let back = roles.as_array().is_some_and(|rs| {
                    rs.iter()
                        .any(|r| r["server"] == victim.as_str() && r["role"] == "secondary")
                });
                if back {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{victim} did not rejoin: {status}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        summary(name, &gaps);
    }

    let acked = load.finish();
    let (pairs, misses) = ryw.join().expect("read-your-writes client");
    println!(
        "read-your-writes through the faults: {misses} of {pairs} reads missed the write before them"
    );
    assert_eq!(misses, 0);
    assert!(
        acked.len() > 100,
        "the load did not run: {} writes",
        acked.len()
    );
    let last = acked.last().copied().unwrap_or(0);
    let v = up.ok(
        "POST",
        "/read",
        Some(json!({"Stud_id": {"low": 0, "high": last}, "consistency": "strong"})),
    );
    let stored: std::collections::BTreeSet<i64> = v["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|r| r["Stud_id"].as_i64())
        .collect();
    let lost: Vec<i64> = acked
        .iter()
        .copied()
        .filter(|k| !stored.contains(k))
        .collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    println!("{} acknowledged writes, none lost", acked.len());
}
