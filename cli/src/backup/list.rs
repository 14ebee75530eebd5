//! `walshard backup list --store URL`: the complete base backups and the restorable time range.

use std::fmt::Write as _;

use walshard_backup::{BackupStore, Millis};

use super::BackupCliError;

/// An RFC 3339 time for a [`Millis`].
pub fn rfc3339(ms: Millis) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(|| format!("{ms} ms"), |t| t.to_string())
}

/// The listing, as printed.
pub async fn render(store: &BackupStore) -> Result<String, BackupCliError> {
    let catalog = store.catalog().await?;
    let (backups, marks) = (&catalog.backups, &catalog.marks);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<22} {:<30} {:>10} {:>12}  shards (lsn)",
        "id", "finished", "rows", "bytes"
    );
    for m in backups {
        let shards: Vec<String> = m
            .shards
            .iter()
            .map(|(s, c)| format!("{s}@{}", c.lsn))
            .collect();
        let _ = writeln!(
            out,
            "{:<22} {:<30} {:>10} {:>12}  {}",
            m.id.as_str(),
            rfc3339(m.finished_at_ms),
            m.total_rows(),
            m.total_bytes(),
            shards.join(" ")
        );
    }
    match catalog.range() {
        Some(r) => {
            let _ = writeln!(
                out,
                "restorable: {} .. {}",
                rfc3339(r.from_ms),
                rfc3339(r.to_ms)
            );
        }
        None => {
            let _ = writeln!(out, "restorable: nothing (no complete base backup yet)");
        }
    }
    for (shard, mark) in marks {
        let _ = writeln!(
            out,
            "archive {shard}: through LSN {}, complete at {}",
            mark.through_lsn,
            rfc3339(mark.at_ms)
        );
    }
    Ok(out)
}
