//! Prometheus metrics of the agent, served at `/metrics`.

pub mod archive;

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub path: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabels {
    pub shard: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    pub shard: String,
    pub peer: String,
}

/// Every metric the agent exports. Cheap to clone handles (they share state).
pub struct Metrics {
    pub registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_seconds: Family<HttpLabels, Histogram>,
    pub applied_entries: Family<ShardLabels, Counter>,
    pub apply_batches: Family<ShardLabels, Counter>,
    pub apply_batch_entries: Family<ShardLabels, Histogram>,
    pub apply_errors: Family<ShardLabels, Counter>,
    pub applied_lsn: Family<ShardLabels, Gauge>,
    pub wal_last_lsn: Family<ShardLabels, Gauge>,
    pub wal_fsyncs: Family<ShardLabels, Gauge>,
    pub wal_groups: Family<ShardLabels, Gauge>,
    pub wal_bytes: Family<ShardLabels, Gauge>,
    pub wal_max_group: Family<ShardLabels, Gauge>,
    pub commit_lsn: Family<ShardLabels, Gauge>,
    /// 1 while this replica is the shard's primary taking writes.
    pub primary: Family<ShardLabels, Gauge>,
    pub epoch: Family<ShardLabels, Gauge>,
    /// On a primary: entries its own WAL holds beyond what each secondary acknowledged.
    pub peer_lag: Family<PeerLabels, Gauge>,
    pub appends_sent: Family<PeerLabels, Counter>,
    pub append_failures: Family<PeerLabels, Counter>,
    pub appends_received: Family<ShardLabels, Counter>,
    pub snapshots_installed: Family<ShardLabels, Counter>,
    pub snapshots_sent: Family<PeerLabels, Counter>,
    /// Free bytes of the data dir's volume, and 1 while writes are refused for want of space.
    pub disk_free_bytes: Gauge,
    pub disk_full: Gauge,
    pub archive: archive::ArchiveMetrics,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("walshard_agent");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_seconds = Family::<HttpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        let applied_entries = Family::<ShardLabels, Counter>::default();
        let apply_batches = Family::<ShardLabels, Counter>::default();
        let apply_batch_entries = Family::<ShardLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(1.0, 2.0, 12))
        });
        let apply_errors = Family::<ShardLabels, Counter>::default();
        let applied_lsn = Family::<ShardLabels, Gauge>::default();
        let wal_last_lsn = Family::<ShardLabels, Gauge>::default();
        let wal_fsyncs = Family::<ShardLabels, Gauge>::default();
        let wal_groups = Family::<ShardLabels, Gauge>::default();
        let wal_bytes = Family::<ShardLabels, Gauge>::default();
        let wal_max_group = Family::<ShardLabels, Gauge>::default();
        let commit_lsn = Family::<ShardLabels, Gauge>::default();
        let primary = Family::<ShardLabels, Gauge>::default();
        let epoch = Family::<ShardLabels, Gauge>::default();
        let peer_lag = Family::<PeerLabels, Gauge>::default();
        let appends_sent = Family::<PeerLabels, Counter>::default();
        let append_failures = Family::<PeerLabels, Counter>::default();
        let appends_received = Family::<ShardLabels, Counter>::default();
        let snapshots_installed = Family::<ShardLabels, Counter>::default();
        let snapshots_sent = Family::<PeerLabels, Counter>::default();
        let disk_free_bytes = Gauge::default();
        let disk_full = Gauge::default();
        registry.register(
            "disk_free_bytes",
            "Free bytes of the data dir's volume",
            disk_free_bytes.clone(),
        );
        registry.register(
            "disk_full",
            "1 while writes are refused because the volume is below its reserve",
            disk_full.clone(),
        );
        registry.register("commit_lsn", "Last committed LSN known", commit_lsn.clone());
        registry.register(
            "primary",
            "1 while this replica is the primary taking writes",
            primary.clone(),
        );
        registry.register(
            "epoch",
            "Highest epoch this replica has promised",
            epoch.clone(),
        );
        registry.register(
            "replication_lag_entries",
            "Primary: entries a secondary has not acknowledged yet",
            peer_lag.clone(),
        );
        registry.register(
            "appends_sent",
            "Primary: append batches a secondary accepted",
            appends_sent.clone(),
        );
        registry.register(
            "append_failures",
            "Primary: append batches that failed or were refused",
            append_failures.clone(),
        );
        registry.register(
            "appends_received",
            "Secondary: append batches accepted",
            appends_received.clone(),
        );
        registry.register(
            "snapshots_installed",
            "Secondary: snapshots installed",
            snapshots_installed.clone(),
        );
        registry.register(
            "snapshots_sent",
            "Primary: snapshots sent to a secondary",
            snapshots_sent.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests served",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            http_seconds.clone(),
        );
        registry.register(
            "applied_entries",
            "WAL entries applied to MySQL",
            applied_entries.clone(),
        );
        registry.register(
            "apply_batches",
            "MySQL transactions that applied WAL entries",
            apply_batches.clone(),
        );
        registry.register(
            "apply_batch_entries",
            "WAL entries per apply transaction",
            apply_batch_entries.clone(),
        );
        registry.register(
            "apply_errors",
            "Failed apply transactions (retried)",
            apply_errors.clone(),
        );
        registry.register("applied_lsn", "Last applied LSN", applied_lsn.clone());
        registry.register("wal_last_lsn", "Last durable WAL LSN", wal_last_lsn.clone());
        registry.register(
            "wal_fsyncs",
            "fdatasync calls of the WAL since start",
            wal_fsyncs.clone(),
        );
        registry.register(
            "wal_groups",
            "Group commits of the WAL since start",
            wal_groups.clone(),
        );
        registry.register(
            "wal_bytes",
            "Bytes appended to the WAL since start",
            wal_bytes.clone(),
        );
        registry.register(
            "wal_max_group",
            "Largest group commit since start (entries)",
            wal_max_group.clone(),
        );
        let archive = archive::ArchiveMetrics::register(&mut registry);
        Arc::new(Self {
            archive,
            registry,
            http_requests,
            http_seconds,
            applied_entries,
            apply_batches,
            apply_batch_entries,
            apply_errors,
            applied_lsn,
            wal_last_lsn,
            wal_fsyncs,
            wal_groups,
            wal_bytes,
            wal_max_group,
            commit_lsn,
            primary,
            epoch,
            peer_lag,
            appends_sent,
            append_failures,
            appends_received,
            snapshots_installed,
            snapshots_sent,
            disk_free_bytes,
            disk_full,
        })
    }

    pub fn peer(shard: &str, peer: &str) -> PeerLabels {
        PeerLabels {
            shard: shard.to_owned(),
            peer: peer.to_owned(),
        }
    }

    pub fn shard(shard: &str) -> ShardLabels {
        ShardLabels {
            shard: shard.to_owned(),
        }
    }

    /// The registry in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
