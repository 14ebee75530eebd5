//! The reconciler's Prometheus metrics (prefix `walshard_operator_`).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// One `ShardedDatabase`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DatabaseLabels {
    /// The database's namespace.
    pub namespace: String,
    /// The database's name.
    pub name: String,
}

/// What kind of error ended a reconciliation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// [`ReconcileError::metric_label`](super::ReconcileError::metric_label).
    pub error: &'static str,
}

/// Reconciliation counters, durations and per-database readiness. Clones share state.
#[derive(Clone, Debug)]
pub struct ReconcileMetrics {
    /// `walshard_operator_reconciliations_total`.
    pub reconciliations: Counter,
    /// `walshard_operator_reconcile_errors_total{error}`.
    pub errors: Family<ErrorLabels, Counter>,
    /// `walshard_operator_reconcile_duration_seconds`.
    pub duration: Histogram,
    /// `walshard_operator_database_ready{namespace, name}`.
    pub ready: Family<DatabaseLabels, Gauge>,
}

impl ReconcileMetrics {
    /// Creates the metrics and registers them into `registry` under `walshard_operator`.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self::unregistered();
        let r = registry.sub_registry_with_prefix("walshard_operator");
        r.register(
            "reconciliations",
            "ShardedDatabase reconciliations run",
            m.reconciliations.clone(),
        );
        r.register(
            "reconcile_errors",
            "Reconciliations that failed, by error kind (retried with backoff)",
            m.errors.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Time one reconciliation took",
            m.duration.clone(),
        );
        r.register(
            "database_ready",
            "1 when the ShardedDatabase's Ready condition is True",
            m.ready.clone(),
        );
        m
    }

    /// Metrics not exposed anywhere (tests).
    pub fn unregistered() -> Self {
        Self {
            reconciliations: Counter::default(),
            errors: Family::default(),
            duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            ready: Family::default(),
        }
    }

    pub(crate) fn finished(&self, took: Duration, error: Option<&'static str>) {
        self.reconciliations.inc();
        self.duration.observe(took.as_secs_f64());
        if let Some(error) = error {
            self.errors.get_or_create(&ErrorLabels { error }).inc();
        }
    }

    pub(crate) fn set_ready(&self, namespace: &str, name: &str, ready: bool) {
        self.ready
            .get_or_create(&labels(namespace, name))
            .set(i64::from(ready));
    }

    pub(crate) fn forget(&self, namespace: &str, name: &str) {
        self.ready.remove(&labels(namespace, name));
    }
}

fn labels(namespace: &str, name: &str) -> DatabaseLabels {
    DatabaseLabels {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}
