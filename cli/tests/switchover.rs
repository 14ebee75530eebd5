//! `walshard switchover` on a live local fleet (real MariaDB and agents): a planned switchover
//! under writes moves the primary to the named replica, loses no acknowledged write, and the
//! longest write during it is printed next to the writes' usual latency (the planned pause;
//! not asserted: timing on a shared machine). A refused target fails with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{SEED_DEFAULT, Up, row};
use serde_json::json;

fn switchover(up: &Up, target: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_walshard"))
        .arg("switchover")
        .arg("--data-dir")
        .arg(&up.dir)
        .arg(target)
        .output()
        .expect("walshard switchover")
}

#[test]
fn a_planned_switchover_moves_the_primary_under_writes_and_loses_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("fleet");
    let up = Up::start(&dir, Some(SEED_DEFAULT));
    up.wait_primaries(Duration::from_secs(30));
    let from = up.primary("sh1").expect("sh1 primary");
    let status = up.ok("GET", "/status", None);
    let to = status["servers"]
        .as_object()
        .expect("servers")
        .iter()
        .find(|(name, shards)| {
            **name != from && shards.as_array().is_some_and(|s| s.contains(&json!("sh1")))
        })
        .map(|(name, _)| name.clone())
        .expect("another replica of sh1");

    // One writer on sh1's keys (0..4096), recording each acknowledged key and its latency.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (router, stop) = (up.router.clone(), stop.clone());
        std::thread::spawn(move || {
            let http = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client");
            let mut acked = Vec::new();
            let mut latencies = Vec::new();
            for k in 0..4000i64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let started = Instant::now();
                let r = http
                    .post(format!("{router}/write"))
                    .json(&json!({"data": [row(k)]}))
                    .send();
                if r.is_ok_and(|r| r.status().is_success()) {
                    acked.push(k);
                    latencies.push(started.elapsed());
                }
            }
            (acked, latencies)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let out = switchover(&up, &format!("sh1={to}"));
    assert!(
        out.status.success(),
        "walshard switchover: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains(&format!("primary {from} -> {to}")), "{said}");
    assert_eq!(up.primary("sh1").as_deref(), Some(to.as_str()));
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (acked, mut latencies) = writer.join().expect("writer");
    assert!(!acked.is_empty());
    let rows = up.rows(0, 4095, Some("strong"));
    let stored: std::collections::BTreeSet<i64> =
        rows.iter().filter_map(|r| r["Stud_id"].as_i64()).collect();
    for k in &acked {
        assert!(stored.contains(k), "acknowledged key {k} lost");
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    let worst = latencies[latencies.len() - 1];
    println!(
        "planned switchover sh1 {from} -> {to}: {said}; {} writes, median {median:?}, longest {worst:?} (the write pause)",
        acked.len()
    );

    // Refused: not a replica, unknown shard, malformed.
    for bad in ["sh1=Nobody", "sh9=Server0", "sh1"] {
        let out = switchover(&up, bad);
        assert!(!out.status.success(), "{bad} accepted");
        assert!(!out.stderr.is_empty(), "{bad}: no reason given");
    }
}
