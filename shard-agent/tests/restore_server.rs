//! `walshard-agent restore-server` (the restore init container of a Kubernetes server pod) on a
//! real backup: an agent with two shards archives under writes, a base backup is taken through
//! it with `take_base_backup` (what the operator runs), then the binary rebuilds one server of a
//! new layout (holding one of the two shards) into a fresh MariaDB to a time between two batches;
//! an agent started on that data dir serves exactly the writes before that time and takes new
//! ones. A second run on the restored dir touches nothing; a layout of other key ranges and a
//! damaged chunk are refused, naming them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{AgentProc, Client, TOKEN, mariadb, seed_schema, student};
use serde_json::{Value, json};
use walshard_backup::take::{AgentRef, take_base_backup};
use walshard_backup::{BackupStore, StoreOptions, now_ms};

/// The fleet's `/init` body: sh1 = [0, 100), sh2 = [100, 200); `servers` as given.
fn layout(servers: Value, sh2_size: i64) -> Value {
    json!({
        "N": servers.as_object().map_or(0, |m| m.len()),
        "schema": seed_schema(),
        "shards": [
            {"Stud_id_low": 0, "Shard_id": "sh1", "Shard_size": 100},
            {"Stud_id_low": 100, "Shard_id": "sh2", "Shard_size": sh2_size}
        ],
        "servers": servers,
    })
}

async fn write(c: &Client, shard: &str, keys: std::ops::Range<i64>) {
    for chunk in keys.collect::<Vec<_>>().chunks(10) {
        let rows: Vec<Value> = chunk.iter().map(|k| student(*k)).collect();
        let (code, v) = c
            .post("/write", json!({"shard": shard, "data": rows}))
            .await;
        assert_eq!(code, 200, "{v}");
    }
}

/// Waits until every shard's archive holds everything committed.
async fn wait_archived(c: &Client) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = c.status().await;
        let done = ["sh1", "sh2"].iter().all(|sh| {
            let commit = s["shards"][sh]["commit_lsn"].as_u64();
            s["archive"][sh]["lag_entries"] == 0
                && s["archive"][sh]["archived_lsn"].as_u64() == commit
        });
        if done {
            return;
        }
        assert!(Instant::now() < deadline, "archive never caught up: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `walshard-agent restore-server` with the init container's environment.
fn restore_server(
    data_dir: &Path,
    server: &str,
    layout_file: &Path,
    mysql_url: &str,
    env: &[(&str, &str)],
) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_walshard-agent"));
    cmd.arg("restore-server")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("WALSHARD_DATA_DIR", data_dir)
        .env("WALSHARD_SERVER_NAME", server)
        .env("WALSHARD_RESTORE_LAYOUT", layout_file)
        .env("WALSHARD_MYSQL_URL", mysql_url)
        .env("WALSHARD_MYSQL_WAIT_SECONDS", "30")
        .env("RUST_LOG", "info,sqlx=warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("runs walshard-agent restore-server")
}

fn keys(rows: &[Value]) -> Vec<i64> {
    let mut keys: Vec<i64> = rows
        .iter()
        .map(|r| r["Stud_id"].as_i64().unwrap())
        .collect();
    keys.sort_unstable();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_server_rebuilds_one_server_of_a_new_layout_from_a_real_backup() {
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("file://{}/store", dir.path().display());
    let source_db = mariadb(1);
    let agent = AgentProc::start_with(
        &source_db.url(),
        &dir.path().join("source"),
        &[
            ("WALSHARD_BACKUP_STORE", store_url.as_str()),
            ("WALSHARD_ARCHIVE_INTERVAL_MS", "100"),
        ],
    );
    let c = agent.client();
    let (code, v) = c
        .post(
            "/config",
            json!({"schema": seed_schema(), "shards": ["sh1", "sh2"]}),
        )
        .await;
    assert_eq!(code, 200, "{v}");

    // Batch A, then a base backup through the agents, as the operator takes it.
    write(&c, "sh1", 0..50).await;
    write(&c, "sh2", 100..150).await;
    let source_layout = layout(json!({"Server0": ["sh1", "sh2"]}), 100);
    let fleet = json!({"config": source_layout, "write_quorum": "majority", "wal_fsync": "always"});
    let backups = BackupStore::open(&store_url, &StoreOptions::default()).unwrap();
    let http = reqwest::Client::new();
    let manifest = take_base_backup(
        &http,
        TOKEN,
        &[AgentRef {
            server: "Server0".to_owned(),
            url: agent.base(),
        }],
        fleet,
        &backups,
        &|_| {},
    )
    .await
    .unwrap();
    assert_eq!(manifest.shards.len(), 2);
    assert_eq!(manifest.shards["sh2"].rows, 50);

    // Batch B; the moment between B and C; batch C.
    write(&c, "sh2", 150..170).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between = jiff::Timestamp::from_millisecond(i64::try_from(now_ms()).unwrap()).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    write(&c, "sh2", 170..190).await;
    write(&c, "sh1", 50..60).await;
    wait_archived(&c).await;

    // The new database's layout: Server1 holds sh2 only.
    let new_layout = layout(json!({"Server0": ["sh1", "sh2"], "Server1": ["sh2"]}), 100);
    let layout_file = dir.path().join("layout.json");
    std::fs::write(&layout_file, new_layout.to_string()).unwrap();
    let target_db = mariadb(1);
    let restored_dir = dir.path().join("restored");
    let to_time = between.to_string();
    let store_env = [
        ("WALSHARD_BACKUP_STORE", store_url.as_str()),
        ("WALSHARD_RESTORE_TO_TIME", to_time.as_str()),
    ];
    let out = restore_server(
        &restored_dir,
        "Server1",
        &layout_file,
        &target_db.url(),
        &store_env,
    );
    let stderr =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "restore-server failed: {stderr}");
    assert!(restored_dir.join("state.json").exists(), "{stderr}");
    assert!(restored_dir.join("shards/sh2").is_dir() && !restored_dir.join("shards/sh1").exists());

    // A second run leaves the restored dir alone (it would fail to open this store).
    let out = restore_server(
        &restored_dir,
        "Server1",
        &layout_file,
        &target_db.url(),
        &[("WALSHARD_BACKUP_STORE", "http://not-a-store")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // An agent on the restored dir serves exactly batches A and B of sh2, and takes writes.
    let restored = AgentProc::start_named(&target_db.url(), &restored_dir, "Server1", &[]);
    let rc = restored.client();
    assert_eq!(keys(&rc.copy("sh2").await), (100..170).collect::<Vec<_>>());
    write(&rc, "sh2", 190..195).await;
    assert_eq!(rc.copy("sh2").await.len(), 75);
    let status = rc.status().await;
    assert!(
        status["shards"].get("sh1").is_none(),
        "Server1 holds sh2 only: {status}"
    );

    // A layout whose sh2 covers other keys is refused, naming the difference.
    let other = dir.path().join("other-layout.json");
    std::fs::write(&other, layout(json!({"Server1": ["sh2"]}), 50).to_string()).unwrap();
    let out = restore_server(
        &dir.path().join("other"),
        "Server1",
        &other,
        &target_db.url(),
        &store_env,
    );
    let stderr =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stderr.contains("restore-layout-mismatch")
            && stderr.contains("shard sh2 covers [100, 200) there"),
        "{stderr}"
    );

    // A damaged chunk of sh2 is refused by name; nothing is left as restored.
    let base_lsn = manifest.shards["sh2"].lsn;
    let chunk = backups
        .chunks(Some("sh2"))
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.last > base_lsn)
        .expect("a chunk after the base backup (what the restore replays)");
    let path = dir.path().join("store").join(chunk.key());
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    let damaged_dir = dir.path().join("damaged");
    let fresh_db = mariadb(1);
    let out = restore_server(
        &damaged_dir,
        "Server1",
        &layout_file,
        &fresh_db.url(),
        &store_env,
    );
    let stderr =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "a damaged chunk was restored: {stderr}"
    );
    assert!(
        stderr.contains(&chunk.key()) && stderr.contains("backup-object-damaged"),
        "{stderr}"
    );
    assert!(
        !damaged_dir.join("state.json").exists(),
        "no state: the next attempt restores again"
    );
}
