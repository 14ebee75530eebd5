//! `spec.pod`: scheduling, identity and stopping of the server pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, Toleration, TopologySpreadConstraint};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Shortest grace period accepted: room for a planned switchover (well under a second) plus
/// MySQL's shutdown.
pub const MIN_GRACE_SECONDS: i64 = 10;
/// Longest grace period accepted.
pub const MAX_GRACE_SECONDS: i64 = 3600;

/// Options of the server pods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodOptions {
    /// Seconds a server pod gets to stop (default 60). On SIGTERM the agent keeps serving until
    /// the control plane has switched its primaries over (at most half of this), then exits;
    /// MySQL's `preStop` hook keeps it up until the agent has stopped.
    #[serde(default = "default_grace")]
    #[schemars(range(min = MIN_GRACE_SECONDS, max = MAX_GRACE_SECONDS))]
    pub termination_grace_period_seconds: i64,
    /// Node labels the server pods require.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the server pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Replaces the default affinity (a preferred one-server-pod-per-node anti-affinity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Replaces the default spread (server pods over `topology.kubernetes.io/zone`, maxSkew 1,
    /// ScheduleAnyway: a shard's replicas are on distinct servers, so spreading servers over
    /// zones spreads every shard when the cluster has zones, and changes nothing otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// The server pods' PriorityClass (a high one keeps them from being preempted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,
    /// Extra labels of the server pods (the operator's own labels win on a clash).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations of the server pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The MySQL container's user (default 999, the official images' `mysql`; other images use
    /// 27 or 1001).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub run_as_user: Option<i64>,
    /// The pods' fsGroup, which makes the claim writable by both containers (default: the
    /// MySQL user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub fs_group: Option<i64>,
}

fn default_grace() -> i64 {
    60
}

impl Default for PodOptions {
    fn default() -> Self {
        Self {
            termination_grace_period_seconds: default_grace(),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            affinity: None,
            topology_spread_constraints: Vec::new(),
            priority_class_name: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            run_as_user: None,
            fs_group: None,
        }
    }
}

impl PodOptions {
    /// How long the agent waits on SIGTERM for its primaries to be switched over.
    pub fn handover_seconds(&self) -> i64 {
        self.termination_grace_period_seconds / 2
    }
}
