//! walshard's backups, in the layout pgBackRest and WAL-G made standard: every shard's committed
//! WAL is archived continuously in checksummed chunks, base backups are consistent copies of each
//! shard at a known LSN with a manifest, and a restore is a base backup plus the archived entries
//! after it, up to a target (docs/backup.md).
//!
//! - [`names`]: where each object lives in the store (pure);
//! - [`chunk`]: the archived WAL chunk format (pure);
//! - [`manifest`]: a base backup's manifest and the archive's progress marks (pure);
//! - [`plan`]: which objects a restore to a target reads, and the restorable range (pure);
//! - [`retention`]: what a retention policy may delete (pure);
//! - [`args`] (feature `cli`): the flags that name a store;
//! - [`store`]: the object store (a local directory or S3-compatible), through `object_store`;
//! - [`target`]: a restore target from its text form;
//! - [`catalog`]: what a store holds (backups, marks, restorable range) and retention applied to it;
//! - [`take`] (feature `take`): a base backup of a running fleet, through its agents.

#![warn(missing_docs)]

#[cfg(feature = "cli")]
pub mod args;
pub mod catalog;
pub mod chunk;
pub mod manifest;
pub mod names;
pub mod plan;
pub mod retention;
pub mod store;
#[cfg(feature = "take")]
pub mod take;
pub mod target;

pub use catalog::Catalog;
pub use chunk::{ArchivedEntry, ChunkError};
pub use manifest::{Manifest, PartRef, ShardArchiveMark, ShardBackup};
pub use names::{BackupId, ChunkName};
pub use plan::{
    PlanError, RestorableRange, RestorePlan, ShardPlan, Stop, Target, plan_restore,
    restorable_range,
};
pub use retention::{Prune, Retention, prune};
pub use store::{BackupStore, StoreError, StoreOptions};

/// Milliseconds since the Unix epoch: the time stamps of archived entries and backups.
pub type Millis = u64;

/// This server's clock, in [`Millis`].
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
