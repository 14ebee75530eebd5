//! `walshard backup create --data-dir D`: a base backup of the running local fleet, then the
//! retention policy, if one is given. [`backup_now`] is also what a schedule runs.

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use walshard_backup::args::StoreArgs;
use walshard_backup::retention::Retention;
use walshard_backup::take::{AgentRef, TakeProgress, take_base_backup};
use walshard_backup::{BackupStore, Manifest, now_ms};
use walshard_contract::http_client::ClientSettings;

use super::BackupCliError;
use crate::local::state::{DataDir, FleetState};

/// `walshard backup create`.
#[derive(clap::Args, Debug, Clone)]
pub struct CreateArgs {
    /// The running fleet's data dir.
    #[arg(long, default_value = "walshard-data")]
    pub data_dir: PathBuf,
    /// Another store than the fleet's own (`walshard up --backup-store`).
    #[command(flatten)]
    pub store: StoreArgs,
    /// Retention after the backup.
    #[command(flatten)]
    pub retention: RetentionArgs,
}

/// How many base backups to keep (with neither flag, all).
#[derive(clap::Args, Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RetentionArgs {
    /// Keep the newest N backups (and whatever --keep-days keeps).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_count: Option<usize>,
    /// Keep backups younger than this many days.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_days: Option<f64>,
}

impl RetentionArgs {
    /// The policy these flags give.
    pub fn policy(&self) -> Retention {
        Retention {
            keep_count: self.keep_count,
            keep_age_ms: self.keep_days.map(|d| (d * 86_400_000.0) as u64),
        }
    }
}

/// `walshard backup create`: prints the new backup's id.
pub async fn create(args: CreateArgs) -> Result<(), BackupCliError> {
    let dir = DataDir::new(&args.data_dir);
    let state = dir
        .load_fleet()
        .map_err(|e| BackupCliError::Usage(e.to_string()))?
        .ok_or_else(|| BackupCliError::Usage(format!("no fleet in {}", args.data_dir.display())))?;
    let store = open_store(&args.store, &state)?;
    let manifest = backup_now(&state, &store, &args.retention, true).await?;
    println!("{}", manifest.id);
    Ok(())
}

/// Takes a base backup of the fleet described by `state` (its agents must be running) into
/// `store`, then applies `retention`; `progress` draws a bar and prints a summary on stderr.
pub async fn backup_now(
    state: &FleetState,
    store: &BackupStore,
    retention: &RetentionArgs,
    progress: bool,
) -> Result<Manifest, BackupCliError> {
    let http = state
        .client_settings(ClientSettings::default())
        .and_then(|s| s.build())
        .map_err(|e| BackupCliError::Usage(e.to_string()))?;
    let agents: Vec<AgentRef> = state
        .servers
        .iter()
        .map(|(server, ports)| AgentRef {
            server: server.clone(),
            url: state.agent_url(*ports),
        })
        .collect();
    let fleet = json!({
        "config": state.config,
        "write_quorum": state.write_quorum,
        "wal_fsync": state.wal_fsync,
    });
    let bar = if progress {
        ProgressBar::new(0).with_style(
            ProgressStyle::with_template(
                "walshard: base backup [{bar:30}] {pos}/{len} shards {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        )
    } else {
        ProgressBar::hidden()
    };
    let show = |p: TakeProgress<'_>| match p {
        TakeProgress::Planned { shards } => bar.set_length(shards as u64),
        TakeProgress::Copying { shard, server } => {
            bar.set_message(format!("{shard} from {server}"))
        }
        TakeProgress::Copied { .. } => bar.inc(1),
    };
    let manifest = take_base_backup(&http, &state.token, &agents, fleet, store, &show).await?;
    bar.finish_and_clear();
    let summary = format!(
        "backup {} of {} shards, {} rows, {} bytes, in {:.1} s",
        manifest.id,
        manifest.shards.len(),
        manifest.total_rows(),
        manifest.total_bytes(),
        (manifest.finished_at_ms - manifest.started_at_ms) as f64 / 1000.0
    );
    if progress {
        eprintln!("walshard: {summary}");
    }
    tracing::info!("{summary}");
    let gone = store.apply_retention(retention.policy(), now_ms()).await?;
    if !gone.backups.is_empty() || !gone.chunks.is_empty() {
        let said = format!(
            "retention removed {} backups and {} archived chunks",
            gone.backups.len(),
            gone.chunks.len()
        );
        if progress {
            eprintln!("walshard: {said}");
        }
        tracing::info!("{said}");
    }
    Ok(manifest)
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
