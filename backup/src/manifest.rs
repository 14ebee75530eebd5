//! What a base backup holds (its manifest) and how far a shard's archive is known complete.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::names::BackupId;

/// A complete base backup: written last, after every object it names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The backup's id (its start time), which names its objects.
    pub id: BackupId,
    /// When the backup began, before any shard copy was taken.
    pub started_at_ms: Millis,
    /// Every shard copy was taken before this moment.
    pub finished_at_ms: Millis,
    /// The fleet's own description (schema, shards, servers), as its owner wrote it; a restore
    /// builds the new fleet from it.
    pub fleet: serde_json::Value,
    /// Each shard's copy, by shard name.
    pub shards: BTreeMap<String, ShardBackup>,
}

/// One shard's copy, consistent at `lsn`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardBackup {
    /// The last entry the copy includes.
    pub epoch: u64,
    /// LSN of the last entry the copy includes; the restore replays the archive after it.
    pub lsn: u64,
    /// The server the copy was read from.
    pub source: String,
    /// Rows copied, over all parts.
    pub rows: u64,
    /// The objects holding the rows, in order.
    pub parts: Vec<PartRef>,
    /// The retained op outcomes (so a client's retry after a restore is still answered once).
    pub ops: PartRef,
}

/// One object of a backup, with what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRef {
    /// The object's key in the store.
    pub key: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// CRC-32C of its bytes.
    pub crc32c: u32,
}

/// The archiver's mark: at `at_ms` every entry acknowledged so far was at or below
/// `through_lsn`, and the archive held all of them. A restore to a time up to `at_ms` is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardArchiveMark {
    /// Every entry up to this LSN (inclusive) is archived.
    pub through_lsn: u64,
    /// When that held: nothing above `through_lsn` had been acknowledged yet.
    pub at_ms: Millis,
}

impl Manifest {
    /// Rows in the backup, over all shards.
    pub fn total_rows(&self) -> u64 {
        self.shards.values().map(|s| s.rows).sum()
    }

    /// Bytes the backup's objects hold (row parts and op outcomes; not the manifest).
    pub fn total_bytes(&self) -> u64 {
        self.shards
            .values()
            .flat_map(|s| s.parts.iter().chain(std::iter::once(&s.ops)))
            .map(|p| p.bytes)
            .sum()
    }
}
