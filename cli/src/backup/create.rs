//! `walshard backup create --data-dir D`: a base backup of the running local fleet, then the
//! retention policy, if one is given.

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use walshard_backup::args::StoreArgs;
use walshard_backup::retention::{Retention, prune};
use walshard_backup::{BackupStore, now_ms};
use walshard_contract::http_client::ClientSettings;

use super::BackupCliError;
use super::take::{AgentRef, take_base_backup};
use crate::local::server::agent_url;
use crate::local::state::{DataDir, FleetState};

/// `walshard backup create`.
#[derive(clap::Args, Debug, Clone)]
pub struct CreateArgs {
    /// The data dir of the running fleet to back up.
    #[arg(long, default_value = "walshard-data")]
    pub data_dir: PathBuf,
    /// Another store than the fleet's own (`walshard up --backup-store`).
    #[command(flatten)]
    pub store: StoreArgs,
    /// Retention: keep the newest N backups (and whatever --keep-days keeps).
    #[arg(long)]
    pub keep_count: Option<usize>,
    /// Retention: keep backups younger than this many days.
    #[arg(long)]
    pub keep_days: Option<f64>,
}

/// Takes a base backup of every shard of the fleet in `data_dir` into its store (or `--store`), then applies the retention options.
pub async fn create(args: CreateArgs) -> Result<(), BackupCliError> {
    let dir = DataDir::new(&args.data_dir);
    let state = dir
        .load_fleet()
        .map_err(|e| BackupCliError::Usage(e.to_string()))?
        .ok_or_else(|| BackupCliError::Usage(format!("no fleet in {}", args.data_dir.display())))?;
    let store = open_store(&args.store, &state)?;
    let http = ClientSettings::default()
        .build()
        .map_err(|e| BackupCliError::Usage(e.to_string()))?;
    let agents: Vec<AgentRef> = state
        .servers
        .iter()
        .map(|(server, ports)| AgentRef {
            server: server.clone(),
            url: agent_url(*ports),
        })
        .collect();
    let fleet = json!({
        "config": state.config,
        "write_quorum": state.write_quorum,
        "wal_fsync": state.wal_fsync,
    });
    let progress = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("walshard: base backup [{bar:30}] {pos}/{len} shards {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let manifest = take_base_backup(&http, &state.token, &agents, fleet, &store, &progress).await?;
    progress.finish_and_clear();
    eprintln!(
        "walshard: backup {} of {} shards, {} rows, {} bytes, in {:.1} s",
        manifest.id,
        manifest.shards.len(),
        manifest.total_rows(),
        manifest.total_bytes(),
        (manifest.finished_at_ms - manifest.started_at_ms) as f64 / 1000.0
    );
    println!("{}", manifest.id);
    let policy = Retention {
        keep_count: args.keep_count,
        keep_age_ms: args.keep_days.map(|d| (d * 86_400_000.0) as u64),
    };
    let backups = store.manifests().await?;
    let chunks = store.chunks(None).await?;
    let gone = prune(&backups, &chunks, now_ms(), policy);
    for id in &gone.backups {
        store.delete_backup(id).await?;
        eprintln!("walshard: retention removed backup {id}");
    }
    for chunk in &gone.chunks {
        store.delete(&chunk.key()).await?;
    }
    if !gone.chunks.is_empty() {
        eprintln!(
            "walshard: retention removed {} archived chunks",
            gone.chunks.len()
        );
    }
    Ok(())
}

/// The store named on the command line, else the fleet's own.
fn open_store(args: &StoreArgs, state: &FleetState) -> Result<BackupStore, BackupCliError> {
    let settings = if args.url.is_some() {
        args
    } else {
        state.backup.as_ref().ok_or_else(|| {
            BackupCliError::Usage(
                "this fleet has no backup store: start it with `walshard up --backup-store URL` or pass --backup-store".into(),
            )
        })?
    };
    settings
        .open()?
        .ok_or_else(|| BackupCliError::Usage("no backup store URL".into()))
}
