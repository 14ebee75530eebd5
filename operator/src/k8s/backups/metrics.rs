//! The backup manager's Prometheus metrics (prefix `walshard_operator_`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::k8s::reconcile::DatabaseLabels;

/// Base backups per database: taken, failed, and when the last one succeeded. Clones share
/// state.
#[derive(Clone, Debug, Default)]
pub struct BackupMetrics {
    /// `walshard_operator_backups_total{namespace, name}`: base backups run to an end.
    pub backups: Family<DatabaseLabels, Counter>,
    /// `walshard_operator_backups_failed_total{namespace, name}`: of those, failed.
    pub failed: Family<DatabaseLabels, Counter>,
    /// `walshard_operator_backup_last_success_timestamp_seconds{namespace, name}`.
    pub last_success: Family<DatabaseLabels, Gauge>,
}

impl BackupMetrics {
    /// Creates the metrics and registers them into `registry` under `walshard_operator`.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("walshard_operator");
        r.register(
            "backups",
            "Base backups run to an end (succeeded or failed), per ShardedDatabase",
            m.backups.clone(),
        );
        r.register(
            "backups_failed",
            "Base backups that failed, per ShardedDatabase",
            m.failed.clone(),
        );
        r.register(
            "backup_last_success_timestamp_seconds",
            "When the last base backup of the ShardedDatabase succeeded (Unix time)",
            m.last_success.clone(),
        );
        m
    }

    pub(crate) fn finished(&self, namespace: &str, name: &str, ok: bool, at_ms: i64) {
        let labels = DatabaseLabels {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        self.backups.get_or_create(&labels).inc();
        if ok {
            self.last_success.get_or_create(&labels).set(at_ms / 1000);
        } else {
            self.failed.get_or_create(&labels).inc();
        }
    }
}
