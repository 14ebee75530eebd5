//! Backups and point-in-time recovery of a live local fleet, black-box (docs/backup.md), against
//! a real S3-compatible server on loopback (`s3s-fs`): `walshard up --backup-store` archives while
//! it takes writes; `walshard backup create` takes a base backup; a switchover and a store outage
//! happen during archiving, while a schedule takes more base backups; then `walshard restore` builds new fleets that `walshard up` serves:
//! to the latest point (every acknowledged write), to a time between two batches (exactly the
//! writes before it), and refuses a store with a damaged object, naming it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{SEED_DEFAULT, Up, read_json, row};
use serde_json::Value;
use walshard_backup::{BackupStore, StoreOptions, now_ms};
use walshard_testkit::s3::{ACCESS_KEY, S3Server, SECRET_KEY};

/// Keys spread over the seed's four shards (`[0, 16384)`).
fn key(i: i64) -> i64 {
    i * 13
}

fn write(up: &Up, range: std::ops::Range<i64>, acked: &mut BTreeMap<i64, Value>) {
    let keys: Vec<i64> = range.map(key).collect();
    for batch in keys.chunks(10) {
        let rows: Vec<Value> = batch.iter().map(|k| row(*k)).collect();
        up.ok("POST", "/write", Some(serde_json::json!({"data": rows})));
        for k in batch {
            acked.insert(*k, row(*k));
        }
    }
}

struct Cli {
    store: Vec<String>,
    env: Vec<(String, String)>,
}

impl Cli {
    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_walshard"));
        cmd.args(args).args(&self.store);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.output().expect("walshard")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "walshard {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Waits until every shard's archive mark is at or after `t` (the archive holds every write
/// acknowledged before `t`).
fn wait_marks(rt: &tokio::runtime::Runtime, store: &BackupStore, t: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let marks = rt.block_on(store.marks()).unwrap_or_default();
        let done = marks.len() == 4 && marks.values().all(|m| m.at_ms >= t);
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "archive never caught up: {marks:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The largest `walshard_agent_archive_lag_entries` over the fleet's agents.
fn max_lag(up: &Up) -> i64 {
    let fleet = read_json(&up.dir.join("fleet.json"));
    let mut max = 0;
    for ports in fleet["servers"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, p)| p)
    {
        let url = format!("http://127.0.0.1:{}/metrics", ports["agent"]);
        let Ok(text) = up.http.get(url).send().and_then(|r| r.text()) else {
            continue;
        };
        for line in text
            .lines()
            .filter(|l| l.starts_with("walshard_agent_archive_lag_entries{"))
        {
            let v = line.rsplit(' ').next().and_then(|v| v.parse::<i64>().ok());
            max = max.max(v.unwrap_or(0));
        }
    }
    max
}

fn keys_of(rows: &[Value]) -> Vec<i64> {
    rows.iter().filter_map(|r| r["Stud_id"].as_i64()).collect()
}

fn serve_and_read(dir: &std::path::Path) -> Vec<i64> {
    let mut up = Up::start(dir, None);
    up.wait_primaries(Duration::from_secs(60));
    let keys = keys_of(&up.rows(0, 16383, Some("strong")));
    // A restored fleet takes writes too.
    up.ok(
        "POST",
        "/write",
        Some(serde_json::json!({"data": [row(16383)]})),
    );
    up.stop();
    keys
}

#[test]
fn archive_backup_and_point_in_time_restores_through_s3() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut s3 =
        S3Server::start("walshard").expect("s3s-fs (scripts/install-test-deps.sh installs it)");
    let url = s3.url("fleet1");
    let endpoint = s3.endpoint();
    let cli = Cli {
        store: vec![],
        env: vec![
            ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), SECRET_KEY.into()),
        ],
    };
    let up_flags = ["--backup-schedule", "*/2 * * * * *"];
    let store_flags = [
        "--backup-store",
        url.as_str(),
        "--backup-s3-endpoint",
        endpoint.as_str(),
        "--backup-s3-region",
        "us-east-1",
    ];
    let env: Vec<(&str, &str)> = cli
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let dir = tmp.path().join("fleet");
    let flags: Vec<&str> = store_flags.iter().chain(&up_flags).copied().collect();
    let mut up = Up::start_with(&dir, Some(SEED_DEFAULT), &flags, &env);
    up.wait_primaries(Duration::from_secs(30));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let store = BackupStore::open(
        &url,
        &StoreOptions {
            endpoint: Some(endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(SECRET_KEY.into()),
        },
    )
    .expect("store");
    let mut acked = BTreeMap::new();

    // Batch A, a base backup, batch B.
    write(&up, 0..150, &mut acked);
    let id = cli.ok(&["backup", "create", "--data-dir", dir.to_str().unwrap()]);
    let id = id.trim().to_owned();
    write(&up, 150..300, &mut acked);
    let before_c = acked.clone();
    std::thread::sleep(Duration::from_millis(30));
    let between = now_ms();
    std::thread::sleep(Duration::from_millis(30));

    // Batch C, with a switchover of sh1 in the middle (archiving moves to the new primary).
    write(&up, 300..400, &mut acked);
    let from = up.primary("sh1").expect("sh1 primary");
    let status = up.ok("GET", "/status", None);
    let to = status["servers"]
        .as_object()
        .expect("servers")
        .iter()
        .map(|(name, _)| name.clone())
        .find(|name| {
            *name != from
                && status["servers"][name]
                    .as_array()
                    .is_some_and(|s| s.contains(&Value::from("sh1")))
        })
        .expect("another sh1 replica");
    let out = Command::new(env!("CARGO_BIN_EXE_walshard"))
        .args([
            "switchover",
            "--data-dir",
            dir.to_str().unwrap(),
            &format!("sh1={to}"),
        ])
        .output()
        .expect("switchover");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    write(&up, 400..500, &mut acked);

    // The store goes down: writes go on, the archive lag rises; it catches up when back.
    s3.stop().expect("stop s3");
    write(&up, 500..600, &mut acked);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lag = 0;
    while lag == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        lag = max_lag(&up);
    }
    assert!(
        lag > 0,
        "the archive lag never rose while the store was down"
    );
    eprintln!("archive lag while the store was down: {lag} entries");
    s3.resume().expect("resume s3");
    let after_all = now_ms();
    wait_marks(&rt, &store, after_all);
    // `walshard status` shows each shard's archive, caught up.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let archive = up.status_json()["topology"]["archive"].clone();
        let caught_up = archive.as_object().is_some_and(|a| {
            a.len() == 4
                && a.values()
                    .all(|r| r["lag_entries"] == 0 && r["archived_lsn"].is_u64())
        });
        if caught_up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "status never showed the archive caught up: {archive}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    up.stop();

    // The schedule took base backups besides the one asked for.
    let backups = rt.block_on(store.manifests()).expect("manifests");
    assert!(backups.len() >= 2, "no scheduled backup: {backups:?}");
    eprintln!("base backups in the store: {}", backups.len());

    let listing = cli.ok(&["backup", "list"]
        .iter()
        .copied()
        .chain(store_flags)
        .collect::<Vec<_>>());
    assert!(
        listing.contains(&id) && listing.contains("restorable:"),
        "{listing}"
    );

    // Latest: every acknowledged write.
    let latest_dir = tmp.path().join("latest");
    let mut args = vec!["restore", "--data-dir", latest_dir.to_str().unwrap()];
    args.extend(store_flags);
    cli.ok(&args);
    let all: Vec<i64> = acked.keys().copied().collect();
    assert_eq!(
        serve_and_read(&latest_dir),
        all,
        "restore to the latest point"
    );

    // A time between batches B and C: exactly A and B.
    let time_dir = tmp.path().join("to-time");
    let t = jiff::Timestamp::from_millisecond(between as i64)
        .unwrap()
        .to_string();
    let mut args = vec![
        "restore",
        "--data-dir",
        time_dir.to_str().unwrap(),
        "--to-time",
        t.as_str(),
    ];
    args.extend(store_flags);
    cli.ok(&args);
    let expected: Vec<i64> = before_c.keys().copied().collect();
    assert_eq!(serve_and_read(&time_dir), expected, "restore to {t}");

    // A damaged object of the newest base backup (what a restore to the latest point reads):
    // the restore refuses and names it. (Damaged chunks: shard-agent/tests/backup.rs.)
    let newest = rt
        .block_on(store.manifests())
        .expect("manifests")
        .pop()
        .expect("a backup");
    let part = newest.shards["sh1"].parts[0].key.clone();
    let path = s3.bucket_dir().join("fleet1").join(&part);
    let mut bytes = std::fs::read(&path).expect("part file");
    let i = bytes.len() / 2;
    bytes[i] ^= 0x10;
    std::fs::write(&path, bytes).expect("damage");
    let bad_dir = tmp.path().join("damaged");
    let mut args = vec!["restore", "--data-dir", bad_dir.to_str().unwrap()];
    args.extend(store_flags);
    let out = cli.run(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a damaged archive restored: {stderr}"
    );
    assert!(
        stderr.contains(&part) && stderr.contains("backup-object-damaged"),
        "{stderr}"
    );
}
