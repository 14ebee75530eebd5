//! What the server containers get besides the pod options: compute resources and durability.

use k8s_openapi::api::core::v1::ResourceRequirements;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use walshard_contract::Quorum;

/// Resources of the server pods' containers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourcesSpec {
    /// The MySQL container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mysql: Option<ResourceRequirements>,
    /// The agent container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<ResourceRequirements>,
}

/// How writes are made durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Durability {
    /// `majority` of a shard's replicas, or `all` of them, hold a write before it is acknowledged.
    #[serde(default)]
    pub write_quorum: Quorum,
    /// The agents' WAL fsync policy.
    #[serde(default)]
    pub wal_fsync: WalFsync,
}

/// The agents' WAL fsync policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum WalFsync {
    /// One fdatasync per group commit: acknowledged writes survive power loss.
    #[default]
    Always,
    /// No fsync: survives process crashes only.
    Never,
}

impl WalFsync {
    /// The agent's `--wal-fsync` value: `always` or `never`.
    pub fn as_str(self) -> &'static str {
        match self {
            WalFsync::Always => "always",
            WalFsync::Never => "never",
        }
    }
}
