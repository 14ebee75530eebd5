//! What a base backup holds (its manifest) and how far a shard's archive is known complete.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::names::BackupId;

/// A complete base backup: written last, after every object it names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub id: BackupId,
    pub started_at_ms: Millis,
    /// Every shard copy was taken before this moment.
    pub finished_at_ms: Millis,
    /// The fleet's own description (schema, shards, servers), as its owner wrote it; a restore
    /// builds the new fleet from it.
    pub fleet: serde_json::Value,
    pub shards: BTreeMap<String, ShardBackup>,
}

/// One shard's copy, consistent at `lsn`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardBackup {
    /// The last entry the copy includes.
    pub epoch: u64,
    pub lsn: u64,
    /// The server the copy was read from.
    pub source: String,
    pub rows: u64,
    pub parts: Vec<PartRef>,
    /// The retained op outcomes (so a client's retry after a restore is still answered once).
    pub ops: PartRef,
}

/// One object of a backup, with what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRef {
    pub key: String,
    pub bytes: u64,
    pub crc32c: u32,
}

/// The archiver's mark: at `at_ms` every entry acknowledged so far was at or below
/// `through_lsn`, and the archive held all of them. A restore to a time up to `at_ms` is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardArchiveMark {
    pub through_lsn: u64,
    pub at_ms: Millis,
}

impl Manifest {
    pub fn total_rows(&self) -> u64 {
        self.shards.values().map(|s| s.rows).sum()
    }

    pub fn total_bytes(&self) -> u64 {
        self.shards
            .values()
            .flat_map(|s| s.parts.iter().chain(std::iter::once(&s.ops)))
            .map(|p| p.bytes)
            .sum()
    }
}
