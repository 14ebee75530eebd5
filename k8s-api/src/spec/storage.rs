//! `spec.storage`: the claim of every server and what happens to it.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{rules, transition};

/// The PersistentVolumeClaim of every server.
#[derive(KubeSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    validation = kube::core::Rule::new(transition::STORAGE_GROWS.rule).message(transition::STORAGE_GROWS.message),
    validation = kube::core::Rule::new(transition::STORAGE_CLASS_FIXED.rule).message(transition::STORAGE_CLASS_FIXED.message)
)]
pub struct StorageSpec {
    /// Requested size: a positive quantity such as `10Gi`.
    #[serde(default = "default_storage_size")]
    #[schemars(length(max = 64), regex(pattern = rules::STORAGE_SIZE_PATTERN))]
    pub size: String,
    /// The StorageClass; the cluster's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = rules::DNS_SUBDOMAIN_PATTERN))]
    pub storage_class_name: Option<String>,
    /// What happens to the claims when the database is deleted or a server removed.
    #[serde(default)]
    pub retention: RetentionPolicy,
}

fn default_storage_size() -> String {
    "10Gi".to_owned()
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
            retention: RetentionPolicy::default(),
        }
    }
}

/// Claim retention, as for a StatefulSet's `persistentVolumeClaimRetentionPolicy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetentionPolicy {
    /// When the `ShardedDatabase` is deleted.
    #[serde(default)]
    pub when_deleted: Retention,
    /// When a server is removed from the spec (after it was drained).
    #[serde(default)]
    pub when_removed: Retention,
}

/// Keep or delete a claim.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Retention {
    /// Keep the claim (and its data).
    #[default]
    Retain,
    /// Delete the claim.
    Delete,
}
