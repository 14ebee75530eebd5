//! The router's Prometheus metrics: requests and latency per endpoint and status, calls to agents
//! retried, per reason, and client requests per coalesced call.

use std::time::Instant;

use axum::http::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BatchLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RetryLabels {
    reason: String,
}

/// The router's Prometheus metrics.
pub struct RouterMetrics {
    registry: Registry,
    requests: Family<EndpointLabels, Counter>,
    seconds: Family<EndpointLabels, Histogram>,
    retries: Family<RetryLabels, Counter>,
    batch_items: Family<BatchLabels, Histogram>,
}

impl RouterMetrics {
    pub(super) fn new() -> Self {
        let mut registry = Registry::with_prefix("walshard_router");
        let requests = Family::<EndpointLabels, Counter>::default();
        let seconds = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        let retries = Family::<RetryLabels, Counter>::default();
        let batch_items = Family::<BatchLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(1.0, 2.0, 10))
        });
        registry.register(
            "batch_items",
            "Client requests per coalesced call to an agent, by kind (write, read)",
            batch_items.clone(),
        );
        registry.register("requests", "Seed API requests answered", requests.clone());
        registry.register(
            "request_duration_seconds",
            "Seed API latency",
            seconds.clone(),
        );
        registry.register(
            "agent_retries",
            "Calls to agents retried, by reason",
            retries.clone(),
        );
        Self {
            registry,
            requests,
            seconds,
            retries,
            batch_items,
        }
    }

    pub(super) fn batch(&self, kind: &str, items: usize) {
        self.batch_items
            .get_or_create(&BatchLabels {
                kind: kind.to_owned(),
            })
            .observe(items as f64);
    }

    pub(super) fn record(&self, endpoint: &str, status: StatusCode, started: Instant) {
        let labels = EndpointLabels {
            endpoint: endpoint.to_owned(),
            status: status.as_u16(),
        };
        self.requests.get_or_create(&labels).inc();
        self.seconds
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
    }

    pub(super) fn retry(&self, reason: &str) {
        self.retries
            .get_or_create(&RetryLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The metrics in the OpenMetrics text format (empty if encoding fails).
    pub(super) fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
