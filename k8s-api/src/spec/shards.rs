//! `spec.shards` and `spec.servers`: the user's form of the layout (a count, or explicit lists).

use kube::KubeSchema;
use serde::{Deserialize, Serialize};
use walshard_contract::{Ident, ShardSpec};

use super::{MAX_SERVERS, MAX_SHARDS, rules};

/// The shards: `count` + `size` (+ `low`), or `list`.
#[derive(KubeSchema, Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    validation = kube::core::Rule::new(rules::SHARDS_FORM.rule).message(rules::SHARDS_FORM.message),
    validation = kube::core::Rule::new(rules::KEY_SPACE_FITS.rule).message(rules::KEY_SPACE_FITS.message),
    validation = kube::core::Rule::new(rules::SHARD_IDS_UNIQUE.rule).message(rules::SHARD_IDS_UNIQUE.message),
    validation = kube::core::Rule::new(rules::SHARDS_DISJOINT.rule).message(rules::SHARDS_DISJOINT.message)
)]
pub struct ShardsSpec {
    /// How many shards (`sh1`, `sh2`, …), each of `size` keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_SHARDS))]
    pub count: Option<i32>,
    /// Keys per shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub size: Option<i64>,
    /// The first key of the first shard (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<i64>,
    /// Explicit shards: ids unique, ranges `[low, low + size)` disjoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_SHARDS))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["id".into()]))]
    pub list: Option<Vec<ShardSpec>>,
}

impl ShardsSpec {
    /// `count` shards of `size` keys from `low`.
    pub fn ranges(count: i32, size: i64, low: i64) -> Self {
        Self {
            count: Some(count),
            size: Some(size),
            low: (low != 0).then_some(low),
            list: None,
        }
    }

    /// Explicit shards.
    pub fn list(shards: Vec<ShardSpec>) -> Self {
        Self {
            list: Some(shards),
            ..Self::default()
        }
    }
}

/// The servers: `count`, or `placement`.
#[derive(KubeSchema, Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    validation = kube::core::Rule::new(rules::SERVERS_FORM.rule).message(rules::SERVERS_FORM.message),
    validation = kube::core::Rule::new(rules::SERVER_NAMES_UNIQUE.rule).message(rules::SERVER_NAMES_UNIQUE.message)
)]
pub struct ServersSpec {
    /// How many servers (`Server0`, `Server1`, …); shards are placed on them evenly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_SERVERS))]
    pub count: Option<i32>,
    /// Every server by name with the shards it holds (the seed's `servers` map as a list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_SERVERS))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub placement: Option<Vec<ServerPlacement>>,
}

/// One server of an explicit placement.
#[derive(KubeSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerPlacement {
    /// The server's name (unique, ignoring case: it names Kubernetes objects).
    pub name: Ident,
    /// The ids of the shards it holds a replica of.
    #[serde(default)]
    #[schemars(length(max = MAX_SHARDS))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    pub shards: Vec<Ident>,
}

impl ServersSpec {
    /// `count` servers.
    pub fn count(count: i32) -> Self {
        Self {
            count: Some(count),
            placement: None,
        }
    }

    /// An explicit placement.
    pub fn placement(placement: Vec<ServerPlacement>) -> Self {
        Self {
            count: None,
            placement: Some(placement),
        }
    }
}
