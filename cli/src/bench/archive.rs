//! What WAL archiving did during a scenario that archives (A-1+arch): the entries and bytes it
//! shipped to the local backup store, and how long after the load the archive was complete.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use walshard_backup::args::StoreArgs;

use crate::local::Fleet;

/// How long the archive may take to catch up after the load.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(60);

/// Archiving figures of one scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArchiveFigures {
    /// Entries in the archive (the sum of every shard's archived LSN).
    pub entries: u64,
    /// Bytes of the archive's objects in the store.
    pub bytes: u64,
    /// Time from the end of the load until every shard's archive was complete; `None` if it
    /// was not within a minute.
    pub caught_up_ms: Option<u64>,
}

/// The store a scenario's fleet in `dir` archives to.
pub fn store_for(dir: &Path) -> StoreArgs {
    StoreArgs {
        url: Some(format!("file://{}", dir.join("backup-store").display())),
        ..StoreArgs::default()
    }
}

/// Waits until every shard of `fleet` has archived all it committed, then measures the store.
pub async fn measure(fleet: &Fleet, dir: &Path) -> ArchiveFigures {
    let started = Instant::now();
    let mut caught_up_ms = None;
    let mut entries = 0;
    while started.elapsed() < CATCH_UP_LIMIT {
        let topology = fleet.topology();
        let complete = !topology.archive.is_empty()
            && topology.shards.keys().all(|shard| {
                topology
                    .archive
                    .get(shard)
                    .is_some_and(|a| a.archived_lsn.is_some() && a.lag_entries == 0)
            });
        entries = topology
            .archive
            .values()
            .filter_map(|a| a.archived_lsn)
            .sum();
        if complete {
            caught_up_ms = Some(started.elapsed().as_millis() as u64);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ArchiveFigures {
        entries,
        bytes: dir_bytes(&dir.join("backup-store")),
        caught_up_ms,
    }
}

/// The bytes of the files under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}
