//! The `ShardedDatabaseBackup` custom resource (`walshard.io/v1alpha1`, short name `sdbb`): one
//! base backup of a `ShardedDatabase` in the same namespace, into its `spec.backup.store`.
//! Created by a user (on demand) or by the operator (`spec.backup.schedule`, label
//! [`LABEL_SCHEDULED`]); the operator takes the backup and writes the status.
//!
//! ```yaml
//! apiVersion: walshard.io/v1alpha1
//! kind: ShardedDatabaseBackup
//! metadata: {name: studt-before-migration}
//! spec: {database: studt}
//! ```
//!
//! `status.phase` goes `Pending` → `Running` → `Succeeded` (with `backupId`) or `Failed` (with
//! `message`); a finished backup is never run again. The spec cannot change
//! ([`SPEC_FIXED`]).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::spec::SpecError;
use crate::spec::rules::{self, CelRule};

/// The resource kind.
pub const KIND: &str = "ShardedDatabaseBackup";
/// Label of the backups the operator creates on `spec.backup.schedule` (value `"true"`).
pub const LABEL_SCHEDULED: &str = "walshard.io/scheduled";
/// Label naming the database a backup is of (on every backup the operator creates).
pub const LABEL_DATABASE: &str = "walshard.io/database";
/// The condition that tells a finished backup: `True` once it succeeded, `False` once it failed.
pub const CONDITION_COMPLETE: &str = "Complete";

/// A backup object is one request: what it asks for never changes.
pub const SPEC_FIXED: CelRule = CelRule {
    at: "spec",
    rule: "self == oldSelf",
    message: "a ShardedDatabaseBackup's spec is immutable: create another one",
};

/// One base backup of a `ShardedDatabase` into its `spec.backup.store`.
// The printer columns repeat `type_`, which this lint takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[kube(
    group = "walshard.io",
    version = "v1alpha1",
    kind = "ShardedDatabaseBackup",
    namespaced,
    shortname = "sdbb",
    status = "ShardedDatabaseBackupStatus",
    derive = "PartialEq",
    doc = "A base backup of a walshard ShardedDatabase, taken by the operator.",
    printcolumn(
        name = "Database",
        type_ = "string",
        json_path = ".spec.database",
        description = "The ShardedDatabase backed up"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Pending, Running, Succeeded or Failed"
    ),
    printcolumn(
        name = "Backup",
        type_ = "string",
        json_path = ".status.backupId",
        description = "The backup's id in the store (walshard backup list)"
    ),
    printcolumn(
        name = "Completed",
        type_ = "date",
        json_path = ".status.completedAt",
        description = "When it finished"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new(SPEC_FIXED.rule).message(SPEC_FIXED.message))]
pub struct ShardedDatabaseBackupSpec {
    /// The `ShardedDatabase` to back up (same namespace); it needs `spec.backup`.
    #[schemars(length(min = 1, max = 253), regex(pattern = rules::DNS_SUBDOMAIN_PATTERN))]
    pub database: String,
}

/// Where a backup stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BackupPhase {
    /// Not started yet.
    Pending,
    /// The shards are being copied.
    Running,
    /// The manifest is in the store: the backup exists.
    Succeeded,
    /// It failed (see `message`); it is not retried: create another one.
    Failed,
}

impl BackupPhase {
    /// The phase's name, as in the status.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupPhase::Pending => "Pending",
            BackupPhase::Running => "Running",
            BackupPhase::Succeeded => "Succeeded",
            BackupPhase::Failed => "Failed",
        }
    }

    /// `Succeeded` or `Failed`: nothing more happens.
    pub fn is_finished(self) -> bool {
        matches!(self, BackupPhase::Succeeded | BackupPhase::Failed)
    }
}

/// What the operator did with a backup request.
#[derive(KubeSchema, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardedDatabaseBackupStatus {
    /// `Pending`, `Running`, `Succeeded` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupPhase>,
    /// The backup's id in the store (set when it succeeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    /// The store it went to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// When the operator started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When it succeeded or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// Shards copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<i32>,
    /// Rows copied, over all shards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<i64>,
    /// Bytes the backup's objects hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
    /// Why it failed, or a summary of what it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `Complete`: `True` once the backup succeeded, `False` once it failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

impl ShardedDatabaseBackup {
    /// The phase, `Pending` until the operator wrote one.
    pub fn phase(&self) -> BackupPhase {
        self.status
            .as_ref()
            .and_then(|s| s.phase)
            .unwrap_or(BackupPhase::Pending)
    }
}

/// The CRD as YAML: what `walshard crd ShardedDatabaseBackup` prints and `crds/` holds.
pub fn crd_yaml() -> Result<String, SpecError> {
    let body = serde_yaml_ng::to_string(&ShardedDatabaseBackup::crd())
        .map_err(|e| SpecError::Crd(e.to_string()))?;
    Ok(format!(
        "# Generated by `walshard crd ShardedDatabaseBackup` from k8s-api/src/backup.rs; do not edit.\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crd_has_its_names_columns_and_status() {
        let crd = ShardedDatabaseBackup::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("shardeddatabasebackups.walshard.io")
        );
        assert_eq!(crd.spec.names.short_names, Some(vec!["sdbb".to_owned()]));
        let version = &crd.spec.versions[0];
        let columns: Vec<&str> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(columns, ["Database", "Phase", "Backup", "Completed", "Age"]);
        assert!(
            version
                .subresources
                .as_ref()
                .is_some_and(|s| s.status.is_some())
        );
    }

    #[test]
    fn phases() {
        let mut b = ShardedDatabaseBackup::new(
            "b",
            ShardedDatabaseBackupSpec {
                database: "studt".into(),
            },
        );
        assert_eq!(b.phase(), BackupPhase::Pending);
        b.status = Some(ShardedDatabaseBackupStatus {
            phase: Some(BackupPhase::Failed),
            ..Default::default()
        });
        assert!(b.phase().is_finished());
        assert!(!BackupPhase::Running.is_finished());
        assert_eq!(
            serde_json::to_value(BackupPhase::Succeeded).unwrap(),
            serde_json::json!("Succeeded")
        );
    }
}
