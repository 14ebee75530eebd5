//! The status fields the control plane owns (`shards`, `shardCount`, `primaries`), built from its
//! topology, and the server-side apply body that writes them.

use serde_json::{Value as Json, json};

use walshard_contract::Topology;
use walshard_k8s_api::spec::{API_VERSION, KIND, Resolved, ShardSummary, primaries_summary};

/// One summary per shard of `layout`, in its order: the primary and epoch the control plane
/// sees, replicas answering heartbeats, the replica-set size (the desired one until the control
/// plane reports the shard).
pub fn shard_summaries(topology: &Topology, layout: &Resolved) -> Vec<ShardSummary> {
    let replicas_wanted = |id: &str| {
        layout
            .placement
            .values()
            .filter(|held| held.iter().any(|s| s == id))
            .count()
    };
    layout
        .shards
        .iter()
        .map(|shard| {
            let id = shard.id.as_str();
            match topology.shards.get(id) {
                Some(info) => ShardSummary {
                    id: id.to_owned(),
                    primary: info.primary.clone(),
                    epoch: i64::try_from(info.epoch).unwrap_or(i64::MAX),
                    ready_replicas: count(info.replicas.iter().filter(|r| r.reachable).count()),
                    replicas: count(info.replicas.len()),
                },
                None => ShardSummary {
                    id: id.to_owned(),
                    replicas: count(replicas_wanted(id)),
                    ..ShardSummary::default()
                },
            }
        })
        .collect()
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The server-side apply body of the status subresource with the control plane's fields.
pub fn status_patch(topology: &Topology, layout: &Resolved) -> Json {
    let shards = shard_summaries(topology, layout);
    json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "status": {
            "shardCount": count(shards.len()),
            "primaries": primaries_summary(&shards),
            "shards": shards,
        },
    })
}
