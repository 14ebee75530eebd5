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

/// Errors of `walshard backup`.
#[derive(Debug, thiserror::Error)]
pub enum BackupCliError {
    /// The backup store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No restore plan reaches the target.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// An agent call failed.
    #[error("server {server}: {reason}")]
    Agent {
        /// The server name.
        server: String,
        /// What went wrong.
        reason: String,
    },
    /// The shard (its id) has no primary to back up from.
    #[error("shard {0} has no primary right now: retry when it has one")]
    NoPrimary(String),
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
            BackupCliError::Agent { .. } | BackupCliError::NoPrimary(_) => "fleet-unavailable",
            BackupCliError::Usage(_) => "invalid-request",
        }
    }
}
