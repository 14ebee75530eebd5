//! Metrics of WAL archiving, per shard (registered with the agent's other metrics).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::ShardLabels;

/// The `walshard_agent_archive_*` metrics, per shard.
#[derive(Debug, Default)]
pub struct ArchiveMetrics {
    /// The last LSN known to be in the store.
    pub archived_lsn: Family<ShardLabels, Gauge>,
    /// Committed entries not archived yet (on the archiving primary).
    pub lag_entries: Family<ShardLabels, Gauge>,
    /// The same, in bytes (estimated from the WAL's mean entry size).
    pub lag_bytes: Family<ShardLabels, Gauge>,
    /// Seconds since the archive was last known complete (0 while it is).
    pub lag_seconds: Family<ShardLabels, Gauge>,
    /// WAL chunks written to the store.
    pub chunks: Family<ShardLabels, Counter>,
    /// Entry payload bytes in those chunks.
    pub bytes: Family<ShardLabels, Counter>,
    /// Failed store operations (each retried).
    pub errors: Family<ShardLabels, Counter>,
}

impl ArchiveMetrics {
    /// Registers every archive metric in `registry` under the sub-prefix `archive`.
    pub fn register(registry: &mut Registry) -> ArchiveMetrics {
        let m = ArchiveMetrics::default();
        let archive = registry.sub_registry_with_prefix("archive");
        archive.register(
            "archived_lsn",
            "Last LSN known archived",
            m.archived_lsn.clone(),
        );
        archive.register(
            "lag_entries",
            "Committed entries not archived yet",
            m.lag_entries.clone(),
        );
        archive.register(
            "lag_bytes",
            "Committed bytes not archived yet (estimated)",
            m.lag_bytes.clone(),
        );
        archive.register(
            "lag_seconds",
            "Seconds since the archive was last known complete",
            m.lag_seconds.clone(),
        );
        archive.register("chunks", "WAL chunks archived", m.chunks.clone());
        archive.register("bytes", "Bytes archived", m.bytes.clone());
        archive.register(
            "errors",
            "Failed archive store operations (retried)",
            m.errors.clone(),
        );
        m
    }
}
