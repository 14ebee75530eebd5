//! The `ShardedDatabase` status, written by the operator.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Every shard has a primary, and every server and the router are ready.
pub const CONDITION_READY: &str = "Ready";
/// Objects are being created, changed or drained towards the spec.
pub const CONDITION_PROGRESSING: &str = "Progressing";
/// Something needs attention: a shard without a primary, a spec the operator cannot apply.
pub const CONDITION_DEGRADED: &str = "Degraded";

/// What the operator observed.
#[derive(KubeSchema, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardedDatabaseStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`, with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Shards in the layout.
    #[serde(default)]
    pub shard_count: i32,
    /// Per shard: its primary, epoch and replicas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["id".into()]))]
    pub shards: Vec<ShardSummary>,
    /// Servers in the layout.
    #[serde(default)]
    pub servers: i32,
    /// Servers whose MySQL and agent are ready.
    #[serde(default)]
    pub servers_ready: i32,
    /// Ready router replicas.
    #[serde(default)]
    pub router_ready: i32,
    /// Shards with an elected primary / shards, e.g. `4/4` (the Primaries column).
    #[serde(default)]
    pub primaries: String,
}

/// One shard as the control plane sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardSummary {
    /// The shard id.
    pub id: String,
    /// The server holding the primary, if one is elected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// The primary's election epoch.
    #[serde(default)]
    pub epoch: i64,
    /// Replicas answering heartbeats.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Replicas in the shard's replica set.
    #[serde(default)]
    pub replicas: i32,
}

/// The Primaries column: `<shards with a primary>/<shards>`.
pub fn primaries_summary(shards: &[ShardSummary]) -> String {
    let elected = shards.iter().filter(|s| s.primary.is_some()).count();
    format!("{elected}/{}", shards.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_primaries_column_counts_elected_shards() {
        let shard = |id: &str, primary: Option<&str>| ShardSummary {
            id: id.to_owned(),
            primary: primary.map(str::to_owned),
            ..ShardSummary::default()
        };
        assert_eq!(primaries_summary(&[]), "0/0");
        assert_eq!(
            primaries_summary(&[shard("sh1", Some("Server0")), shard("sh2", None)]),
            "1/2"
        );
    }

    #[test]
    fn an_empty_status_serializes_to_its_counters() {
        let json = serde_json::to_value(ShardedDatabaseStatus::default()).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({"shardCount": 0, "servers": 0, "serversReady": 0, "routerReady": 0, "primaries": ""})
        );
    }
}
