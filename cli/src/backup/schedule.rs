//! Scheduled base backups of a local fleet (`walshard up --backup-schedule CRON`): a cron
//! expression in UTC, with optional seconds (`*/30 * * * * *`), and the retention after each.

use std::str::FromStr;

use croner::Cron;
use tokio::sync::watch;
use tracing::{info, warn};
use walshard_backup::BackupId;

use super::BackupCliError;
use super::create::{RetentionArgs, backup_now};
use crate::local::state::DataDir;

/// When to take base backups, and what to keep.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BackupSchedule {
    /// A cron expression (5 fields, or 6 with seconds first), in UTC.
    pub cron: String,
    /// Retention after each scheduled backup.
    #[serde(default)]
    pub retention: RetentionArgs,
}

impl BackupSchedule {
    /// The parsed expression, or why it is not one.
    pub fn parse(&self) -> Result<Cron, BackupCliError> {
        walshard_k8s_api::spec::backup::parse_schedule(&self.cron)
            .map_err(|e| BackupCliError::Usage(format!("--backup-schedule: {e}")))
    }
}

impl FromStr for BackupSchedule {
    type Err = BackupCliError;

    fn from_str(cron: &str) -> Result<Self, Self::Err> {
        let schedule = BackupSchedule {
            cron: cron.to_owned(),
            retention: RetentionArgs::default(),
        };
        schedule.parse()?;
        Ok(schedule)
    }
}

/// Takes a base backup of the fleet in `dir` (as `fleet.json` describes it then) at every
/// occurrence of `schedule` until `stop`; a failed backup is logged and the next one tried.
pub async fn run(schedule: BackupSchedule, dir: DataDir, mut stop: watch::Receiver<bool>) {
    let cron = match schedule.parse() {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "backup schedule unusable");
            return;
        }
    };
    loop {
        let now = chrono::Utc::now();
        let Ok(next) = cron.find_next_occurrence(&now, false) else {
            warn!(cron = %schedule.cron, "the backup schedule has no next occurrence");
            return;
        };
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        match scheduled_backup(&schedule, &dir).await {
            Ok(id) => info!(backup = %id, "scheduled base backup taken"),
            Err(e) => warn!(error = %e, code = e.code(), "scheduled base backup failed"),
        }
    }
}

async fn scheduled_backup(
    schedule: &BackupSchedule,
    dir: &DataDir,
) -> Result<BackupId, BackupCliError> {
    let state = dir
        .load_fleet()
        .map_err(|e| BackupCliError::Usage(e.to_string()))?
        .ok_or_else(|| BackupCliError::Usage("the fleet's fleet.json is gone".into()))?;
    let store = state
        .backup
        .as_ref()
        .and_then(|b| b.open().transpose())
        .transpose()?
        .ok_or_else(|| BackupCliError::Usage("a backup schedule needs a backup store".into()))?;
    Ok(backup_now(&state, &store, &schedule.retention, false)
        .await?
        .id)
}
