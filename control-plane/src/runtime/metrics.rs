//! The control plane's Prometheus metrics (`walshard_operator_*`), per database scope.

use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use walshard_contract::{Phase, Topology};

use crate::election::ControllerEvent;

/// The label of per-shard series: `shard`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabels {
    /// The shard id.
    pub shard: String,
}

/// The labels of per-replica series: `shard`, `server`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplicaLabels {
    /// The shard id.
    pub shard: String,
    /// The server name.
    pub server: String,
}

/// The label of per-server series: `server`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    /// The server name.
    pub server: String,
}

/// The `database` label of a control plane that shares its metrics with others (the Kubernetes
/// operator runs one per `ShardedDatabase`); no label for a lone control plane.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq)]
pub struct Scope(Option<String>);

impl Scope {
    /// The series of the database `name`.
    pub fn database(name: impl Into<String>) -> Self {
        Self(Some(name.into()))
    }
}

impl EncodeLabelSet for Scope {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        match &self.0 {
            Some(db) => [("database", db.as_str())].encode(encoder),
            None => Ok(()),
        }
    }
}

/// The control plane's Prometheus metrics (prefix `walshard_operator_`). Handles share state;
/// [`Self::scoped`] handles share the families and label their series with a database.
#[derive(Clone, Debug)]
pub struct ControlPlaneMetrics {
    scope: Scope,
    /// `elections_started`: elections started (a shard lost its primary or a switchover began).
    pub elections_started: Family<(Scope, ShardLabels), Counter>,
    /// `elections_completed`: elections that ended with a promoted primary.
    pub elections_completed: Family<(Scope, ShardLabels), Counter>,
    /// `elections_no_quorum`: times a shard could not elect for lack of a fence quorum.
    pub elections_no_quorum: Family<(Scope, ShardLabels), Counter>,
    /// `election_duration_seconds`: from an election's start to the new primary's promotion.
    pub election_seconds: Family<Scope, Histogram>,
    /// `shard_epoch`: the current epoch of each shard.
    pub shard_epoch: Family<(Scope, ShardLabels), Gauge>,
    /// `shard_has_primary`: 1 when the shard has a healthy primary, else 0.
    pub shard_has_primary: Family<(Scope, ShardLabels), Gauge>,
    /// `replica_lag_entries`: the primary's `commit_lsn` minus the replica's `applied_lsn`, in entries.
    pub replica_lag: Family<(Scope, ReplicaLabels), Gauge>,
    /// `server_up`: 1 when the server's latest heartbeat succeeded, else 0.
    pub server_up: Family<(Scope, ServerLabels), Gauge>,
}

impl ControlPlaneMetrics {
    /// Creates the metrics and registers them into `registry` under `walshard_operator`.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            scope: Scope::default(),
            elections_started: Family::default(),
            elections_completed: Family::default(),
            elections_no_quorum: Family::default(),
            election_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.01, 2.0, 12))
            }),
            shard_epoch: Family::default(),
            shard_has_primary: Family::default(),
            replica_lag: Family::default(),
            server_up: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("walshard_operator");
        r.register(
            "elections_started",
            "Elections started (a shard lost its primary or a switchover began)",
            m.elections_started.clone(),
        );
        r.register(
            "elections_completed",
            "Elections that ended with a promoted primary",
            m.elections_completed.clone(),
        );
        r.register(
            "elections_no_quorum",
            "Times a shard could not elect for lack of a fence quorum",
            m.elections_no_quorum.clone(),
        );
        r.register(
            "election_duration_seconds",
            "Time from the start of an election to the new primary's promotion",
            m.election_seconds.clone(),
        );
        r.register(
            "shard_epoch",
            "Current epoch of each shard",
            m.shard_epoch.clone(),
        );
        r.register(
            "shard_has_primary",
            "1 when the shard has a healthy primary",
            m.shard_has_primary.clone(),
        );
        r.register(
            "replica_lag_entries",
            "Primary commit_lsn minus the replica's applied_lsn",
            m.replica_lag.clone(),
        );
        r.register(
            "server_up",
            "1 when the server's latest heartbeat succeeded",
            m.server_up.clone(),
        );
        m
    }

    /// A handle on the same families whose series carry `scope` (one registry, many clusters:
    /// registering the families once per cluster would repeat their names, which Prometheus
    /// refuses).
    pub fn scoped(&self, scope: Scope) -> Self {
        Self {
            scope,
            ..self.clone()
        }
    }

    fn shard(&self, shard: &str) -> (Scope, ShardLabels) {
        (
            self.scope.clone(),
            ShardLabels {
                shard: shard.to_owned(),
            },
        )
    }

    fn replica(&self, shard: &str, server: &str) -> (Scope, ReplicaLabels) {
        (
            self.scope.clone(),
            ReplicaLabels {
                shard: shard.to_owned(),
                server: server.to_owned(),
            },
        )
    }

    fn server(&self, server: &str) -> (Scope, ServerLabels) {
        (
            self.scope.clone(),
            ServerLabels {
                server: server.to_owned(),
            },
        )
    }

    pub(super) fn record(&self, event: &ControllerEvent) {
        match event {
            ControllerEvent::ElectionStarted { shard, .. } => {
                self.elections_started
                    .get_or_create(&self.shard(shard))
                    .inc();
            }
            ControllerEvent::ElectionCompleted {
                shard, duration, ..
            } => {
                self.elections_completed
                    .get_or_create(&self.shard(shard))
                    .inc();
                self.election_seconds
                    .get_or_create(&self.scope)
                    .observe(duration.as_secs_f64());
            }
            ControllerEvent::NoQuorum { shard, .. } => {
                self.elections_no_quorum
                    .get_or_create(&self.shard(shard))
                    .inc();
            }
        }
    }

    /// Drops the series of a removed shard.
    pub(super) fn forget_shard(&self, shard: &str, replicas: &[String]) {
        let labels = self.shard(shard);
        self.shard_epoch.remove(&labels);
        self.shard_has_primary.remove(&labels);
        for server in replicas {
            self.forget_replica(shard, server);
        }
    }

    /// Drops the series of a replica that left its shard.
    pub(super) fn forget_replica(&self, shard: &str, server: &str) {
        self.replica_lag.remove(&self.replica(shard, server));
    }

    /// Drops the series of a removed server.
    pub(super) fn forget_server(&self, server: &str) {
        self.server_up.remove(&self.server(server));
    }

    /// Drops every series of a cluster that is gone (counters too), for a scoped handle.
    pub(super) fn forget_cluster<'a>(
        &self,
        shards: impl IntoIterator<Item = (&'a String, &'a [String])>,
        servers: impl IntoIterator<Item = &'a String>,
    ) {
        for (shard, replicas) in shards {
            self.forget_shard(shard, replicas);
            let labels = self.shard(shard);
            self.elections_started.remove(&labels);
            self.elections_completed.remove(&labels);
            self.elections_no_quorum.remove(&labels);
        }
        for server in servers {
            self.forget_server(server);
        }
        self.election_seconds.remove(&self.scope);
    }

    pub(super) fn update(&self, topology: &Topology) {
        for (shard, info) in &topology.shards {
            let labels = self.shard(shard);
            self.shard_epoch
                .get_or_create(&labels)
                .set(i64::try_from(info.epoch).unwrap_or(i64::MAX));
            self.shard_has_primary
                .get_or_create(&labels)
                .set(i64::from(info.state == Phase::Healthy));
            for r in &info.replicas {
                if let Some(lag) = r.lag {
                    self.replica_lag
                        .get_or_create(&self.replica(shard, &r.server))
                        .set(i64::try_from(lag).unwrap_or(i64::MAX));
                }
            }
        }
        for (server, info) in &topology.servers {
            self.server_up
                .get_or_create(&self.server(server))
                .set(i64::from(info.reachable));
        }
    }
}
