//! Object keys inside a store's prefix. Keys sort by LSN and by time, so a listing is in order.
//!
//! ```text
//! wal/<shard>/<first lsn:020>-<last lsn:020>-<max at ms:013>.chunk   archived entries
//! wal/<shard>/mark.json                                              how far the archive is known complete
//! base/<backup id>/<shard>/<part:06>.rows                            a base backup's rows of one shard
//! base/<backup id>/<shard>/ops.json                                  ... and its op outcomes
//! base/<backup id>/manifest.json                                     written last: the backup is complete
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Millis;

/// Top-level directory of the archived WAL (`wal/<shard>/...`).
pub const WAL: &str = "wal";
/// Top-level directory of base backups (`base/<backup id>/...`).
pub const BASE: &str = "base";
/// File name of a base backup's manifest, under its directory.
pub const MANIFEST: &str = "manifest.json";
/// File name of a shard's archive mark, under its WAL directory.
pub const MARK: &str = "mark.json";
const CHUNK_SUFFIX: &str = ".chunk";

/// One archived chunk: entries `first..=last` of a shard, the largest entry time stamp in it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChunkName {
    /// The shard whose entries it holds.
    pub shard: String,
    /// LSN of its first entry (at least 1).
    pub first: u64,
    /// LSN of its last entry (inclusive; at least `first`).
    pub last: u64,
    /// The latest time stamp of its entries.
    pub max_at_ms: Millis,
}

impl ChunkName {
    /// Its object key, `wal/<shard>/<first>-<last>-<max at ms>.chunk` (zero-padded).
    pub fn key(&self) -> String {
        format!(
            "{WAL}/{}/{:020}-{:020}-{:013}{CHUNK_SUFFIX}",
            self.shard, self.first, self.last, self.max_at_ms
        )
    }

    /// The chunk a key names, or `None` for any other object.
    pub fn parse(key: &str) -> Option<ChunkName> {
        let rest = key.strip_prefix(WAL)?.strip_prefix('/')?;
        let (shard, file) = rest.split_once('/')?;
        let stem = file.strip_suffix(CHUNK_SUFFIX)?;
        let mut parts = stem.split('-');
        let first = parts.next()?.parse().ok()?;
        let last = parts.next()?.parse().ok()?;
        let max_at_ms = parts.next()?.parse().ok()?;
        if parts.next().is_some() || shard.is_empty() || first > last || first == 0 {
            return None;
        }
        Some(ChunkName {
            shard: shard.to_owned(),
            first,
            last,
            max_at_ms,
        })
    }
}

/// Key of a shard's archive mark, `wal/<shard>/mark.json`.
pub fn mark_key(shard: &str) -> String {
    format!("{WAL}/{shard}/{MARK}")
}

/// A base backup's id: its start time, `YYYYMMDDTHHMMSSmmmZ`, so ids sort by time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BackupId(String);

impl BackupId {
    /// The id of a backup started at `ms` (UTC).
    pub fn at(ms: Millis) -> BackupId {
        let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
        let stamp = jiff::Timestamp::from_second(secs)
            .map(|t| t.strftime("%Y%m%dT%H%M%S").to_string())
            .unwrap_or_else(|_| format!("{secs}"));
        BackupId(format!("{stamp}{:03}Z", ms % 1000))
    }

    /// Accepts what [`BackupId::at`] makes (and nothing that could escape a key).
    pub fn parse(s: &str) -> Option<BackupId> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| BackupId(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Key of its manifest, `base/<id>/manifest.json`.
    pub fn manifest_key(&self) -> String {
        format!("{BASE}/{}/{MANIFEST}", self.0)
    }

    /// Key of a shard's row part number `part` (from 0), `base/<id>/<shard>/<part:06>.rows`.
    pub fn part_key(&self, shard: &str, part: usize) -> String {
        format!("{BASE}/{}/{shard}/{part:06}.rows", self.0)
    }

    /// Key of a shard's op outcomes, `base/<id>/<shard>/ops.json`.
    pub fn ops_key(&self, shard: &str) -> String {
        format!("{BASE}/{}/{shard}/ops.json", self.0)
    }

    /// The prefix of every object of this backup.
    pub fn dir(&self) -> String {
        format!("{BASE}/{}", self.0)
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn backup_ids_sort_by_time() {
        let a = BackupId::at(1_765_067_112_345);
        assert_eq!(a.as_str(), "20251207T002512345Z");
        assert!(a < BackupId::at(1_765_067_112_346));
        assert_eq!(BackupId::parse(a.as_str()), Some(a));
        assert_eq!(BackupId::parse("../x"), None);
    }

    #[test]
    fn other_keys_are_not_chunks() {
        for key in [
            "wal/sh1/mark.json",
            "wal/sh1/1-2.chunk",
            "base/x/manifest.json",
            "wal//1-2-3.chunk",
        ] {
            assert_eq!(ChunkName::parse(key), None, "{key}");
        }
    }

    proptest! {
        #[test]
        fn chunk_keys_round_trip_and_sort_by_lsn(first in 1u64..1 << 50, len in 0u64..1000, at in 0u64..1 << 42, at2 in 0u64..1 << 42) {
            let a = ChunkName { shard: "sh1".into(), first, last: first + len, max_at_ms: at };
            prop_assert_eq!(ChunkName::parse(&a.key()), Some(a.clone()));
            let b = ChunkName { shard: "sh1".into(), first: first + len + 1, last: first + len + 1, max_at_ms: at2 };
            prop_assert!(a.key() < b.key());
        }
    }
}
