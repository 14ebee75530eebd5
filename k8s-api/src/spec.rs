//! The `ShardedDatabase` custom resource (`walshard.io/v1alpha1`): what a user asks for, on
//! Kubernetes (the CRD, `crds/shardeddatabases.walshard.io.yaml`) and in local mode
//! (`walshard up --file`). [`ShardedDatabaseSpec::resolve`] validates a spec (the same rules as
//! the CRD's schema and CEL rules, see [`rules`]) and turns it into the seed configuration: the
//! schema, the shard ranges and the placement of shards on servers.
//!
//! ```yaml
//! apiVersion: walshard.io/v1alpha1
//! kind: ShardedDatabase
//! metadata: {name: studt}
//! spec:
//!   schema: {columns: [Stud_id, Stud_name, Stud_marks], dtypes: [Number, String, Number]}
//!   shards: {count: 4, size: 4096}        # or {list: [{id: sh1, low: 0, size: 4096}, ...]}
//!   replicasPerShard: 3
//!   servers: {count: 6}                   # or {placement: [{name: Server0, shards: [sh1, sh2]}, ...]}
//! ```

pub mod backup;
mod credentials;
mod document;
mod engine;
mod error;
pub mod layout;
mod pod;
mod resolve;
mod router;
pub mod rules;
mod server;
mod shards;
mod status;
mod storage;
mod tls;
pub mod transition;

use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, Schema as JsonSchemaDoc, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use walshard_contract::Schema;

pub use backup::{
    BackupRetentionSpec, BackupSpec, BackupStatus, RestoreSpec, S3Spec, SecretNameRef,
    ShardArchiveStatus,
};
pub use credentials::{CredentialsSpec, SecretKeyRef};
pub use document::crd_yaml;
pub use engine::{EngineFlavor, EngineSpec};
pub use error::SpecError;
pub use layout::{LayoutSource, LayoutSpec};
pub use pod::PodOptions;
pub use resolve::Resolved;
pub use router::{RouterSpec, ServiceType};
pub use server::{Durability, ResourcesSpec, WalFsync};
pub use shards::{ServerPlacement, ServersSpec, ShardsSpec};
pub use status::{
    CONDITION_ARCHIVE_LAGGING, CONDITION_DEGRADED, CONDITION_PROGRESSING, CONDITION_READY,
    ShardSummary, ShardedDatabaseStatus, primaries_summary,
};
pub use storage::{Retention, RetentionPolicy, StorageSpec};
pub use tls::{TlsSpec, keys as tls_keys};

/// The API group.
pub const GROUP: &str = "walshard.io";
/// The API version of the resource.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of the resource.
pub const API_VERSION: &str = "walshard.io/v1alpha1";
/// The resource kind.
pub const KIND: &str = "ShardedDatabase";
/// The engine image when `spec.engine.image` is not set.
pub const DEFAULT_IMAGE: &str = "mysql:8.4";
/// Most shards a database may have (bounds the cost of the CEL rules over the shard list).
pub const MAX_SHARDS: i32 = 128;
/// Most servers a database may have (bounds the cost of the CEL rules over the placement).
pub const MAX_SERVERS: i32 = 128;
/// Most columns a table may have in a spec (bounds the cost of the CEL rule over the columns).
pub const MAX_COLUMNS: usize = 128;
/// Most router replicas.
pub const MAX_ROUTER_REPLICAS: i32 = 16;
/// The key of the MySQL root password in its Secret when `key` is not set.
pub const MYSQL_PASSWORD_KEY: &str = "password";
/// The key of a token in its Secret when `key` is not set.
pub const TOKEN_KEY: &str = "token";

/// A sharded, replicated MySQL database: a table split into key-range shards, each replicated on
/// several servers (MySQL + the walshard agent each), behind a router.
// The printer columns repeat `type_`, which this lint takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "walshard.io",
    version = "v1alpha1",
    kind = "ShardedDatabase",
    namespaced,
    shortname = "sdb",
    status = "ShardedDatabaseStatus",
    derive = "PartialEq",
    doc = "A sharded, replicated MySQL database managed by walshard.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether every shard has a primary and every server and the router are ready"
    ),
    printcolumn(
        name = "Shards",
        type_ = "integer",
        json_path = ".status.shardCount",
        description = "Shards in the layout"
    ),
    printcolumn(
        name = "Servers",
        type_ = "integer",
        json_path = ".status.servers",
        description = "Servers (MySQL + agent pods)"
    ),
    printcolumn(
        name = "Primaries",
        type_ = "string",
        json_path = ".status.primaries",
        description = "Shards with an elected primary / shards"
    ),
    printcolumn(
        name = "Last Backup",
        type_ = "date",
        json_path = ".status.backup.lastBackupTime",
        description = "When the newest base backup in spec.backup.store finished"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    validation = kube::core::Rule::new(rules::REPLICAS_FIT.rule).message(rules::REPLICAS_FIT.message),
    validation = kube::core::Rule::new(backup::BACKUP_STORE_DIFFERS.rule).message(backup::BACKUP_STORE_DIFFERS.message),
    validation = kube::core::Rule::new(backup::RESTORE_FIXED.rule).message(backup::RESTORE_FIXED.message)
)]
pub struct ShardedDatabaseSpec {
    /// The database engine: MySQL 8.4 by default; MariaDB images work too.
    #[serde(default)]
    pub engine: EngineSpec,
    /// The table: columns and dtypes; the first column is the integer shard key.
    #[schemars(schema_with = "table_schema")]
    #[x_kube(
        validation = kube::core::Rule::new(rules::DTYPES_LENGTH.rule).message(rules::DTYPES_LENGTH.message),
        validation = kube::core::Rule::new(rules::KEY_NUMBER.rule).message(rules::KEY_NUMBER.message),
        validation = kube::core::Rule::new(rules::COLUMNS_UNIQUE.rule).message(rules::COLUMNS_UNIQUE.message),
        validation = kube::core::Rule::new(transition::SCHEMA_FIXED.rule).message(transition::SCHEMA_FIXED.message)
    )]
    pub schema: Schema,
    /// The shards: `count` equal ranges of `size` keys from `low`, or an explicit `list`.
    pub shards: ShardsSpec,
    /// Replicas of every shard (ignored with an explicit placement).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = MAX_SERVERS))]
    pub replicas_per_shard: i32,
    /// The servers: a `count` (placement computed evenly), or an explicit `placement`.
    pub servers: ServersSpec,
    /// The explicit layout the router owns after a seed `/add` or `/rm` (field manager
    /// `walshard-router`); when set it wins over `shards`, `servers` and `replicasPerShard`.
    /// Remove it to hand the layout back to them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<LayoutSpec>,
    /// One PersistentVolumeClaim per server (MySQL data and the agent's WAL).
    #[serde(default)]
    pub storage: StorageSpec,
    /// Compute resources of the server containers.
    #[serde(default)]
    pub resources: ResourcesSpec,
    /// How the server pods stop (grace period).
    #[serde(default)]
    pub pod: PodOptions,
    /// The router Deployment and Service.
    #[serde(default)]
    pub router: RouterSpec,
    /// How writes are made durable.
    #[serde(default)]
    pub durability: Durability,
    /// Secrets to use instead of generated ones.
    #[serde(default)]
    pub credentials: CredentialsSpec,
    /// HTTPS between the router, the agents and the control plane; off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// Stop reconciling without touching the fleet.
    #[serde(default)]
    pub paused: bool,
    /// Continuous WAL archiving and base backups (docs/backup.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,
    /// Create the database from a backup store (only when it is created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreSpec>,
}

fn default_replicas() -> i32 {
    3
}

/// The table schema with the CRD's bound on its length.
fn table_schema(generator: &mut SchemaGenerator) -> JsonSchemaDoc {
    let mut schema = Schema::json_schema(generator);
    for list in ["columns", "dtypes"] {
        if let Some(prop) = schema
            .get_mut("properties")
            .and_then(|p| p.get_mut(list))
            .and_then(Json::as_object_mut)
        {
            prop.insert("maxItems".to_owned(), MAX_COLUMNS.into());
        }
    }
    schema
}

impl ShardedDatabaseSpec {
    /// A spec with the defaults for everything but the table, shards, replicas and servers.
    pub fn new(
        schema: Schema,
        shards: ShardsSpec,
        replicas_per_shard: i32,
        servers: ServersSpec,
    ) -> Self {
        Self {
            engine: EngineSpec::default(),
            schema,
            shards,
            replicas_per_shard,
            servers,
            layout: None,
            storage: StorageSpec::default(),
            resources: ResourcesSpec::default(),
            pod: PodOptions::default(),
            router: RouterSpec::default(),
            durability: Durability::default(),
            credentials: CredentialsSpec::default(),
            tls: None,
            paused: false,
            backup: None,
            restore: None,
        }
    }

    /// Where the layout comes from: the user's form, or the router's `layout`.
    pub fn layout_source(&self) -> LayoutSource {
        layout::source(self)
    }

    /// Checks everything the CRD's schema and CEL rules check (see [`rules`]).
    pub fn validate(&self) -> Result<(), SpecError> {
        rules::validate(self)
    }
}

#[cfg(test)]
mod tests;
