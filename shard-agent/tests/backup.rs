//! Archiving, base copies and restores of one shard with real processes (docs/backup.md): an
//! agent with a directory backup store archives while it takes writes; a base copy is taken;
//! restores into fresh MariaDB servers give exactly the latest state, the state at a time between
//! two batches, and the state at an LSN; a damaged chunk is refused by name; an agent started on
//! a restored data dir serves the restored rows and takes new writes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{AgentProc, Client, mariadb, seed_schema, student};
use serde_json::{Value, json};
use walshard_agent::mysql::MySqlEndpoint;
use walshard_agent::restore::{RestoredShard, prepare_agent_dir, restore_shard};
use walshard_agent::state::ShardState;
use walshard_agent::store::{ShardTable, Store};
use walshard_agent::wal::WalOptions;
use walshard_backup::{
    BackupId, BackupStore, Manifest, ShardBackup, StoreOptions, Target, now_ms, plan_restore,
};
use walshard_contract::{Ident, Schema};

async fn write_batch(c: &Client, keys: std::ops::Range<i64>) {
    for chunk in keys.collect::<Vec<_>>().chunks(10) {
        let rows: Vec<Value> = chunk.iter().map(|k| student(*k)).collect();
        let (code, v) = c
            .post("/write", json!({"shard": "sh1", "data": rows}))
            .await;
        assert_eq!(code, 200, "{v}");
    }
}

/// Waits until the shard's archive holds everything committed.
async fn wait_archived(c: &Client) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = c.status().await;
        let archive = &s["archive"]["sh1"];
        let commit = s["shards"]["sh1"]["commit_lsn"].as_u64().unwrap_or(0);
        if archive["lag_entries"] == 0 && archive["archived_lsn"].as_u64() == Some(commit) {
            return commit;
        }
        assert!(Instant::now() < deadline, "archive never caught up: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn table() -> ShardTable {
    let schema: Schema = serde_json::from_value(seed_schema()).unwrap();
    ShardTable::new(Ident::new("sh1").unwrap(), schema)
}

async fn connect(url: &str) -> Store {
    let endpoint = MySqlEndpoint::from_url(url).unwrap();
    Store::connect(endpoint.connect_options(), 2).await.unwrap()
}

fn keys(rows: &[walshard_contract::Row]) -> Vec<i64> {
    rows.iter()
        .map(|r| match &r.0[0] {
            walshard_contract::Value::Int(k) => *k,
            other => panic!("key {other:?}"),
        })
        .collect()
}

async fn restore_into(
    url: &str,
    backups: &BackupStore,
    target: Target,
) -> Result<(Vec<i64>, (u64, u64)), String> {
    let manifests = backups.manifests().await.unwrap();
    let chunks = backups.chunks(None).await.unwrap();
    let marks = backups.marks().await.unwrap();
    let plan = plan_restore(&manifests, &chunks, &marks, &target).map_err(|e| e.to_string())?;
    let store = connect(url).await;
    let t = table();
    let at = restore_shard(
        &store,
        &t,
        backups,
        &plan.backup.shards["sh1"],
        &plan.shards["sh1"],
        &|_| {},
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok((keys(&store.read_all(&t).await.unwrap()), at))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_base_copy_and_restores_to_latest_time_and_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("file://{}/store", dir.path().display());
    let db = mariadb(1);
    let agent = AgentProc::start_with(
        &db.url(),
        &dir.path().join("agent"),
        &[
            ("WALSHARD_BACKUP_STORE", store_url.as_str()),
            ("WALSHARD_ARCHIVE_INTERVAL_MS", "100"),
        ],
    );
    let c = agent.client();
    let (code, v) = c
        .post(
            "/config",
            json!({"schema": seed_schema(), "shards": ["sh1"]}),
        )
        .await;
    assert_eq!(code, 200, "{v}");

    // Batch A, then a base copy of it.
    write_batch(&c, 0..200).await;
    let started = now_ms();
    let id = BackupId::at(started);
    let (code, copy) = c
        .post(
            "/shards/sh1/base-backup",
            json!({"backup_id": id.as_str(), "min_lsn": 0}),
        )
        .await;
    assert_eq!(code, 200, "{copy}");
    let copy: ShardBackup = serde_json::from_value(copy).unwrap();
    assert_eq!(copy.rows, 200);
    let backups = BackupStore::open(&store_url, &StoreOptions::default()).unwrap();
    backups
        .put_manifest(&Manifest {
            id: id.clone(),
            started_at_ms: started,
            finished_at_ms: now_ms(),
            fleet: Value::Null,
            shards: BTreeMap::from([("sh1".to_owned(), copy.clone())]),
        })
        .await
        .unwrap();

    // Batch B; the moment between B and C; batch C.
    write_batch(&c, 200..400).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between = now_ms();
    tokio::time::sleep(Duration::from_millis(20)).await;
    write_batch(&c, 400..600).await;
    let commit = wait_archived(&c).await;
    let metrics = reqwest::get(format!("{}/metrics", agent.base()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("walshard_agent_archive_archived_lsn{shard=\"sh1\"}"),
        "{metrics}"
    );

    let db2 = mariadb(1);
    let (latest, at) = restore_into(&db2.url(), &backups, Target::Latest)
        .await
        .unwrap();
    assert_eq!(
        latest,
        (0..600).collect::<Vec<_>>(),
        "latest: every acknowledged write"
    );
    assert_eq!(at.1, commit);

    let (to_time, _) = restore_into(&db2.url(), &backups, Target::Time(between))
        .await
        .unwrap();
    assert_eq!(
        to_time,
        (0..400).collect::<Vec<_>>(),
        "to a time: exactly batches A and B"
    );

    let lsn = copy.lsn + 5;
    let target = Target::Lsn(BTreeMap::from([("sh1".to_owned(), lsn)]));
    let (to_lsn, at) = restore_into(&db2.url(), &backups, target).await.unwrap();
    assert_eq!(at.1, lsn);
    assert_eq!(
        to_lsn,
        (0..250).collect::<Vec<_>>(),
        "to an LSN: A and five writes of B"
    );

    // An agent on the restored state serves it and takes new writes.
    let (_, at) = restore_into(&db2.url(), &backups, Target::Latest)
        .await
        .unwrap();
    let restored_dir = dir.path().join("restored");
    prepare_agent_dir(
        &restored_dir,
        &table().schema,
        &[RestoredShard {
            state: ShardState {
                id: Ident::new("sh1").unwrap(),
                range: None,
                epoch: at.0,
            },
            epoch: at.0,
            lsn: at.1,
        }],
        &WalOptions::default(),
    )
    .await
    .unwrap();
    let restored = AgentProc::start(&db2.url(), &restored_dir);
    let rc = restored.client();
    assert_eq!(rc.copy("sh1").await.len(), 600);
    write_batch(&rc, 600..610).await;
    assert_eq!(rc.copy("sh1").await.len(), 610);

    // A damaged chunk is refused, by name.
    let chunk = backups.chunks(Some("sh1")).await.unwrap().pop().unwrap();
    let path = dir.path().join("store").join(chunk.key());
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    let db3 = mariadb(1);
    let err = restore_into(&db3.url(), &backups, Target::Latest)
        .await
        .unwrap_err();
    assert!(
        err.contains(&chunk.key()) && err.contains("checksum"),
        "{err}"
    );
}
