//! `walshard restore --store URL --data-dir NEW [--to-time T | --to-lsn sh1=N,.. | --backup ID]`:
//! a new local fleet data dir rebuilt from a base backup plus the archived WAL (docs/backup.md),
//! which `walshard up --data-dir NEW` then serves. Every object is checked; any damaged or missing
//! one stops the restore with its name.

use std::collections::BTreeMap;
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use walshard_agent::mysql::MySqlEndpoint;
use walshard_agent::restore::restore_shards;
use walshard_agent::store::Store;
use walshard_agent::wal::WalOptions;
use walshard_backup::args::StoreArgs;
use walshard_backup::{Target, plan_restore};
use walshard_contract::ShardSpec;
use walshard_process::MariaDb;

use super::BackupCliError;
use super::list::rfc3339;
use crate::local::config::parse_layout;
use crate::local::fleet::new_token;
use crate::local::ports::new_ports;
use crate::local::server::mysql_options;
use crate::local::state::{DataDir, FleetState};

/// `walshard backup restore`.
#[derive(clap::Args, Debug, Clone)]
pub struct RestoreArgs {
    /// The backup store to restore from.
    #[command(flatten)]
    pub store: StoreArgs,
    /// The new fleet's data dir (must not hold a fleet).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Restore to this moment (RFC 3339, e.g. 2026-12-07T10:00:00Z).
    #[arg(long, conflicts_with_all = ["backup", "to_lsn"])]
    pub to_time: Option<String>,
    /// Restore exactly this base backup.
    #[arg(long, conflicts_with = "to_lsn")]
    pub backup: Option<String>,
    /// Restore shards to LSNs: `sh1=120,sh2=80` (other shards to the latest).
    #[arg(long)]
    pub to_lsn: Option<String>,
}

fn fail(e: impl std::fmt::Display) -> BackupCliError {
    BackupCliError::Usage(e.to_string())
}

impl RestoreArgs {
    /// The restore target the options name: a time, a backup, per-shard LSNs or, by default,
    /// the latest.
    pub fn target(&self) -> Result<Target, BackupCliError> {
        Target::from_options(
            self.to_time.as_deref(),
            self.backup.as_deref(),
            self.to_lsn.as_deref(),
        )
        .map_err(|e| fail(format!("--{e}")))
    }
}

/// Restores the store's backups and WAL into a new fleet in `data_dir`.
pub async fn restore(args: RestoreArgs) -> Result<(), BackupCliError> {
    let store = args
        .store
        .open()?
        .ok_or_else(|| fail("--backup-store URL is required"))?;
    let target = args.target()?;
    let dir = DataDir::new(&args.data_dir);
    if dir.load_fleet().map_err(fail)?.is_some() {
        return Err(fail(format!(
            "{} already holds a fleet: restore into a new data dir",
            args.data_dir.display()
        )));
    }
    let backups = store.manifests().await?;
    let chunks = store.chunks(None).await?;
    let marks = store.marks().await?;
    let plan = plan_restore(&backups, &chunks, &marks, &target)?;
    eprintln!(
        "walshard: restoring base backup {} (finished {}) + {} archived chunks",
        plan.backup.id,
        rfc3339(plan.backup.finished_at_ms),
        plan.shards.values().map(|s| s.chunks.len()).sum::<usize>()
    );

    let fleet = &plan.backup.fleet;
    let config = fleet
        .get("config")
        .cloned()
        .filter(|c| !c.is_null())
        .ok_or_else(|| {
            fail(format!(
                "backup {}: its manifest holds no fleet configuration",
                plan.backup.id
            ))
        })?;
    let layout = parse_layout(&config).map_err(fail)?;
    let mut state = FleetState::new(new_token());
    state.config = Some(config);
    if let Some(q) = fleet.get("write_quorum") {
        state.write_quorum = serde_json::from_value(q.clone()).map_err(fail)?;
    }
    if let Some(f) = fleet.get("wal_fsync") {
        state.wal_fsync = serde_json::from_value(f.clone()).map_err(fail)?;
    }
    for server in layout.placement.keys() {
        let ports = new_ports(&state.servers).map_err(fail)?;
        state.servers.insert(server.to_string(), ports);
    }
    std::fs::create_dir_all(dir.root()).map_err(fail)?;

    let replicas: usize = layout.placement.values().map(Vec::len).sum();
    let bar = ProgressBar::new(replicas as u64).with_style(
        ProgressStyle::with_template("walshard: restore [{bar:30}] {pos}/{len} replicas {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut ends: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (server, held) in &layout.placement {
        let ports = state.servers[server.as_str()];
        let root = dir.server(server.as_str());
        let mysql_dir = root.join("mysql");
        let mut mysql = tokio::task::spawn_blocking(move || {
            MariaDb::open(&mysql_dir, Some(ports.mysql), mysql_options())
        })
        .await
        .map_err(fail)?
        .map_err(fail)?;
        let endpoint = MySqlEndpoint::from_url(&mysql.url()).map_err(fail)?;
        let mysql_store = Store::connect(endpoint.connect_options(), 4)
            .await
            .map_err(fail)?;
        let shards: Vec<ShardSpec> = held
            .iter()
            .map(|shard| {
                layout
                    .shards()
                    .iter()
                    .find(|s| s.id == *shard)
                    .cloned()
                    .ok_or_else(|| fail(format!("the backup's layout has no range for {shard}")))
            })
            .collect::<Result<_, _>>()?;
        bar.set_message(format!("{server}"));
        let restored = restore_shards(
            &mysql_store,
            &store,
            &plan,
            &layout.schema,
            &shards,
            &root.join("agent"),
            &WalOptions::default(),
        )
        .await
        .map_err(|e| match e {
            walshard_agent::restore::RestoreError::Store(s) => BackupCliError::Store(s),
            other => fail(format!("{server}: {other}")),
        })?;
        for (shard, at) in restored {
            if let Some(prev) = ends.insert(shard.clone(), at)
                && prev != at
            {
                return Err(fail(format!(
                    "shard {shard}: replicas restored to different points ({prev:?}, {at:?})"
                )));
            }
            bar.inc(1);
        }
        mysql_store.close().await;
        tokio::task::spawn_blocking(move || mysql.stop())
            .await
            .map_err(fail)?
            .map_err(fail)?;
    }
    bar.finish_and_clear();
    dir.save_fleet(&state).map_err(fail)?;
    let points: Vec<String> = ends
        .iter()
        .map(|(s, (_, lsn))| format!("{s}@{lsn}"))
        .collect();
    eprintln!("walshard: restored {}", points.join(" "));
    eprintln!(
        "walshard: serve it with: walshard up --data-dir {}",
        args.data_dir.display()
    );
    println!(
        "{}",
        serde_json::to_string(&ends_json(&ends)).map_err(fail)?
    );
    Ok(())
}

/// `{"sh1": {"epoch": E, "lsn": N}, ...}`: where each shard was restored to.
fn ends_json(ends: &BTreeMap<String, (u64, u64)>) -> Value {
    ends.iter()
        .map(|(s, (epoch, lsn))| (s.clone(), serde_json::json!({"epoch": epoch, "lsn": lsn})))
        .collect::<serde_json::Map<_, _>>()
        .into()
}
