//! `walshard backup create | list` and `walshard restore` (docs/backup.md).
//!
//! - [`create`]: `walshard backup create` on a local fleet, then retention;
//! - [`list`]: what a store holds and the restorable range;
//! - [`restore`]: a new local fleet data dir from a store;
//! - [`schedule`]: base backups on a cron schedule while `walshard up` runs.

pub mod create;
pub mod list;
pub mod restore;
pub mod schedule;

use walshard_backup::take::TakeError;
use walshard_backup::{PlanError, StoreError};

/// Errors of `walshard backup`.
#[derive(Debug, thiserror::Error)]
pub enum BackupCliError {
    /// The backup store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No restore plan reaches the target.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Taking the base backup through the agents failed.
    #[error(transparent)]
    Take(#[from] TakeError),
    /// Bad arguments or fleet state (the message).
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
            BackupCliError::Take(e) => e.code(),
            BackupCliError::Usage(_) => "invalid-request",
        }
    }
}
