//! A full disk (docs/consistency.md): a fleet whose data dir is a small tmpfs mounted for this
//! test. Once the volume is filled below the agents' reserve, writes are answered at once with a
//! 507 `disk-full` naming the server and shard, the agents' metrics show it, nothing acknowledged
//! is lost, and writes resume by themselves once space is freed. Needs root (mount), as CI has.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::Up;
use serde_json::{Value, json};

/// A tmpfs mounted for the test, unmounted when dropped (also when the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a tmpfs and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_owned())
    }

    fn free(&self) -> u64 {
        let s = nix::sys::statvfs::statvfs(&self.0).expect("statvfs");
        s.blocks_available() * s.fragment_size()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The agents refuse writes at or below this many free bytes (the agent's default).
const RESERVE: u64 = 64 << 20;

fn row(k: i64) -> Value {
    json!({"Stud_id": k, "Stud_name": "x", "Stud_marks": "1"})
}

#[test]
fn a_full_disk_is_answered_at_once_and_writes_resume_when_space_returns() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let volume = Tmpfs::mount(&tmp.path().join("volume"), "1200m");
    let mut up = Up::start(&volume.0.join("fleet"), None);
    up.ok(
        "POST",
        "/init",
        Some(json!({
            "N": 3,
            "schema": {"columns": ["Stud_id", "Stud_name", "Stud_marks"], "dtypes": ["Number", "String", "String"]},
            "shards": [{"Stud_id_low": 0, "Shard_id": "sh1", "Shard_size": 4096}],
            "servers": {"Server0": ["sh1"], "Server1": ["sh1"], "Server2": ["sh1"]}
        })),
    );
    up.wait_primaries(Duration::from_secs(60));
    let mut acked: Vec<i64> = (1..=20).collect();
    up.ok(
        "POST",
        "/write",
        Some(json!({"data": acked.iter().map(|k| row(*k)).collect::<Vec<_>>()})),
    );

    // Fill the volume to just below the reserve.
    let filler = volume.0.join("filler");
    let fill = volume.free().saturating_sub(RESERVE / 2);
    std::fs::write(&filler, vec![0u8; usize::try_from(fill).expect("size")]).expect("fill");
    println!("volume filled: {} bytes free", volume.free());
    // The agents read the free space again at most every 100 ms.
    std::thread::sleep(Duration::from_millis(300));

    // Writes are refused at once, naming the server and shard; nothing hangs.
    let started = Instant::now();
    let (code, v) = up.call("POST", "/write", Some(json!({"data": [row(100)]})));
    let answered = started.elapsed();
    println!("write on a full disk answered {code} in {answered:?}: {v}");
    assert_eq!(code, 507, "{v}");
    assert_eq!(v["code"], "disk-full", "{v}");
    assert_eq!(v["status"], "failure", "{v}");
    assert!(
        v["message"].as_str().is_some_and(|m| m.contains("sh1")),
        "{v}"
    );
    // The agents' metrics and status show it.
    let fleet: Value = serde_json::from_str(
        &std::fs::read_to_string(volume.0.join("fleet/fleet.json")).expect("fleet.json"),
    )
    .expect("fleet json");
    let port = fleet["servers"]["Server0"]["agent"]
        .as_u64()
        .expect("agent port");
    let metrics = up
        .http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .and_then(|r| r.text())
        .expect("metrics");
    assert!(metrics.contains("walshard_agent_disk_full 1"), "{metrics}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = up.status_json();
        if status["topology"]["servers"]["Server0"]["disk_full"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "walshard status shows no full disk: {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Reads still work.
    let v = up.ok(
        "POST",
        "/read",
        Some(json!({"Stud_id": {"low": 0, "high": 4095}})),
    );
    assert_eq!(v["data"].as_array().map(Vec::len), Some(acked.len()));

    // Space returns: writes resume by themselves.
    std::fs::remove_file(&filler).expect("free space");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, v) = up.call("POST", "/write", Some(json!({"data": [row(100)]})));
        if code == 200 {
            acked.push(100);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writes did not resume: {code} {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let v = up.ok(
        "POST",
        "/read",
        Some(json!({"Stud_id": {"low": 0, "high": 4095}, "consistency": "strong"})),
    );
    let mut stored: Vec<i64> = v["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|r| r["Stud_id"].as_i64())
        .collect();
    stored.sort();
    assert_eq!(stored, acked, "every acknowledged write, nothing else");
    up.stop();
}
