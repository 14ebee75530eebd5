//! `walshard backup create | list` and `walshard restore` (docs/backup.md).
//!
//! - [`take`]: a base backup of a running fleet, through its agents;
//! - [`create`]: `walshard backup create` on a local fleet, then retention;
//! - [`list`]: what a store holds and the restorable range;
//! - [`restore`]: a new local fleet data dir from a store;
//! - [`schedule`]: base backups on a cron schedule while `walshard up` runs.

pub mod create;
pub mod list;
pub mod restore;
pub mod schedule;
pub mod take;

use walshard_backup::{PlanError, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum BackupCliError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("server {server}: {reason}")]
    Agent { server: String, reason: String },
    #[error("shard {0} has no primary right now: retry when it has one")]
    NoPrimary(String),
    #[error("{0}")]
    Usage(String),
}

impl BackupCliError {
    /// A machine-readable code, printed with the message.
    pub fn code(&self) -> &'static str {
        match self {
            BackupCliError::Store(e) => e.code(),
            BackupCliError::Plan(PlanError::Gap { .. }) => "backup-object-missing",
            BackupCliError::Plan(_) => "restore-target-unreachable",
            BackupCliError::Agent { .. } | BackupCliError::NoPrimary(_) => "fleet-unavailable",
            BackupCliError::Usage(_) => "invalid-request",
        }
    }
}
