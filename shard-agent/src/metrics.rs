//! Prometheus metrics of the agent, served at `/metrics`.

pub mod archive;

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the HTTP metrics: one series per method, route and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The request method, e.g. `POST`.
    pub method: String,
    /// The matched route pattern (e.g. `/shards/{id}/append`, not the shard id), or
    /// `unmatched`: bounded cardinality.
    pub path: String,
    /// The answer's HTTP status code.
    pub status: u16,
}

/// Labels of a per-shard metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabels {
    /// The shard id.
    pub shard: String,
}

/// Labels of a per-secondary metric of a primary.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    /// The shard id.
    pub shard: String,
    /// The secondary's server name.
    pub peer: String,
}

/// Every metric the agent exports. Cheap to clone handles (they share state). Names below are
/// as exported, after the `walshard_agent_` prefix (counters also get `_total`).
pub struct Metrics {
    /// The registry all of them are registered in, encoded by [`Metrics::encode`].
    pub registry: Registry,
    /// `http_requests`: requests served, by method, route and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// `http_request_duration_seconds`: request latency (0.1 ms to ~13 s buckets).
    pub http_seconds: Family<HttpLabels, Histogram>,
    /// `applied_entries`: WAL entries applied to MySQL.
    pub applied_entries: Family<ShardLabels, Counter>,
    /// `apply_batches`: MySQL transactions that applied WAL entries.
    pub apply_batches: Family<ShardLabels, Counter>,
    /// `apply_batch_entries`: WAL entries per apply transaction.
    pub apply_batch_entries: Family<ShardLabels, Histogram>,
    /// `apply_errors`: apply transactions that failed (each is retried).
    pub apply_errors: Family<ShardLabels, Counter>,
    /// `applied_lsn`: the last LSN applied to MySQL.
    pub applied_lsn: Family<ShardLabels, Gauge>,
    /// `wal_last_lsn`: the last durable LSN of the WAL.
    pub wal_last_lsn: Family<ShardLabels, Gauge>,
    /// `wal_fsyncs`: fdatasync calls of the WAL since the agent started.
    pub wal_fsyncs: Family<ShardLabels, Gauge>,
    /// `wal_groups`: group commits of the WAL since the agent started.
    pub wal_groups: Family<ShardLabels, Gauge>,
    /// `wal_bytes`: bytes appended to the WAL since the agent started.
    pub wal_bytes: Family<ShardLabels, Gauge>,
    /// `wal_max_group`: the largest group commit since the agent started, in entries.
    pub wal_max_group: Family<ShardLabels, Gauge>,
    /// `commit_lsn`: the last LSN this replica knows committed.
    pub commit_lsn: Family<ShardLabels, Gauge>,
    /// 1 while this replica is the shard's primary taking writes.
    pub primary: Family<ShardLabels, Gauge>,
    /// `epoch`: the highest epoch this replica has promised.
    pub epoch: Family<ShardLabels, Gauge>,
    /// On a primary: entries its own WAL holds beyond what each secondary acknowledged.
    pub peer_lag: Family<PeerLabels, Gauge>,
    /// `appends_sent`, on a primary: append batches a secondary accepted.
    pub appends_sent: Family<PeerLabels, Counter>,
    /// `append_failures`, on a primary: append or snapshot sends that failed or were refused.
    pub append_failures: Family<PeerLabels, Counter>,
    /// `appends_received`, on a secondary: append batches accepted.
    pub appends_received: Family<ShardLabels, Counter>,
    /// `snapshots_installed`, on a secondary: snapshots installed.
    pub snapshots_installed: Family<ShardLabels, Counter>,
    /// `snapshots_sent`, on a primary: snapshots a secondary accepted.
    pub snapshots_sent: Family<PeerLabels, Counter>,
    /// Free bytes of the data dir's volume, and 1 while writes are refused for want of space.
    pub disk_free_bytes: Gauge,
    /// `disk_full`: 1 while writes are refused because the volume is below its reserve.
    pub disk_full: Gauge,
    /// The WAL archiving metrics (`archive_*`).
    pub archive: archive::ArchiveMetrics,
}

impl Metrics {
    /// Every metric, registered under the `walshard_agent` prefix, all at zero.
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

    /// The labels of `shard`'s secondary `peer`.
    pub fn peer(shard: &str, peer: &str) -> PeerLabels {
        PeerLabels {
            shard: shard.to_owned(),
            peer: peer.to_owned(),
        }
    }

    /// The labels of `shard`.
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
