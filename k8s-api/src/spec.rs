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

pub mod layout;
mod pod;
pub mod rules;
mod status;
pub mod transition;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::{JsonSchema, Schema as JsonSchemaDoc, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use thiserror::Error;
use walshard_contract::{Ident, Quorum, Schema, ShardSpec};

pub use layout::{LayoutSource, LayoutSpec};
pub use pod::PodOptions;
pub use status::{
    CONDITION_DEGRADED, CONDITION_PROGRESSING, CONDITION_READY, ShardSummary,
    ShardedDatabaseStatus, primaries_summary,
};
use walshard_control_plane::placement::{Placement, PlacementError};

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
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new(rules::REPLICAS_FIT.rule).message(rules::REPLICAS_FIT.message))]
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
    /// Stop reconciling without touching the fleet.
    #[serde(default)]
    pub paused: bool,
}

fn default_replicas() -> i32 {
    3
}

/// The database engine.
#[derive(KubeSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new(transition::FLAVOR_FIXED.rule).message(transition::FLAVOR_FIXED.message))]
pub struct EngineSpec {
    /// The MySQL or MariaDB container image.
    #[serde(default = "default_image")]
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// `mysql` or `mariadb`; inferred from the image name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "flavor_schema")]
    pub flavor: Option<EngineFlavor>,
}

fn default_image() -> String {
    DEFAULT_IMAGE.to_owned()
}

impl Default for EngineSpec {
    fn default() -> Self {
        Self {
            image: default_image(),
            flavor: None,
        }
    }
}

/// Which server the engine image runs (their configuration and tooling differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EngineFlavor {
    Mysql,
    Mariadb,
}

impl EngineSpec {
    /// The flavor: explicit, or `mariadb` when the image's repository name starts with `mariadb`.
    pub fn flavor(&self) -> EngineFlavor {
        self.flavor.unwrap_or_else(|| {
            let name = self.image.split('@').next().unwrap_or_default();
            let repo = name.rsplit('/').next().unwrap_or_default();
            let repo = repo.split(':').next().unwrap_or_default();
            if repo.starts_with("mariadb") {
                EngineFlavor::Mariadb
            } else {
                EngineFlavor::Mysql
            }
        })
    }
}

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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Retention {
    /// Keep the claim (and its data).
    #[default]
    Retain,
    /// Delete the claim.
    Delete,
}

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

/// The router: a Deployment behind a Service.
#[derive(KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new(rules::ROUTER_TOKEN_EXPOSED.rule).message(rules::ROUTER_TOKEN_EXPOSED.message))]
pub struct RouterSpec {
    /// Router pods.
    #[serde(default = "default_router_replicas")]
    #[schemars(range(min = 1, max = MAX_ROUTER_REPLICAS))]
    pub replicas: i32,
    /// The router Service's type.
    #[serde(default)]
    pub service_type: ServiceType,
    /// A Secret key holding the API token clients must send (`Authorization: Bearer`); none:
    /// the API is open to anything that reaches the Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_token_secret_ref: Option<SecretKeyRef>,
    /// The router container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

fn default_router_replicas() -> i32 {
    2
}

impl Default for RouterSpec {
    fn default() -> Self {
        Self {
            replicas: default_router_replicas(),
            service_type: ServiceType::default(),
            api_token_secret_ref: None,
            resources: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

/// A key of a Secret in the database's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253), regex(pattern = rules::DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// The key; `password` for MySQL, `token` for tokens when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = rules::SECRET_KEY_PATTERN))]
    pub key: Option<String>,
}

impl SecretKeyRef {
    /// The key, or `default` when not set.
    pub fn key_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.key.as_deref().unwrap_or(default)
    }
}

/// Secrets to use instead of generated ones (generated Secrets are never overwritten).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialsSpec {
    /// The MySQL root password (key default `password`); the agent connects as root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mysql_secret_ref: Option<SecretKeyRef>,
    /// The cluster token the agents, the router and the control plane authenticate each other
    /// with (key default `token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_token_secret_ref: Option<SecretKeyRef>,
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
    pub fn as_str(self) -> &'static str {
        match self {
            WalFsync::Always => "always",
            WalFsync::Never => "never",
        }
    }
}

/// An optional enum without `null` among its values (skipped when absent, never sent as null).
fn flavor_schema(generator: &mut SchemaGenerator) -> JsonSchemaDoc {
    EngineFlavor::json_schema(generator)
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

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    #[error("not a ShardedDatabase document: {0}")]
    Parse(String),
    #[error("apiVersion must be {API_VERSION}, got {0:?}")]
    ApiVersion(String),
    #[error("kind must be {KIND}, got {0:?}")]
    Kind(String),
    #[error("spec.{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("spec.servers: {0}")]
    Placement(#[from] PlacementError),
    #[error("serializing the CRD: {0}")]
    Crd(String),
}

impl SpecError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        SpecError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// The seed configuration a spec stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub schema: Schema,
    pub shards: Vec<ShardSpec>,
    /// Server → the shards it holds.
    pub placement: Placement,
}

impl Resolved {
    /// The seed's `/init` body for this configuration.
    pub fn init_body(&self) -> Json {
        let key = self.schema.key().as_str();
        let shards: Vec<Json> = self
            .shards
            .iter()
            .map(|s| Json::Object(s.to_json(key)))
            .collect();
        serde_json::json!({
            "N": self.placement.len(),
            "schema": self.schema,
            "shards": shards,
            "servers": self.placement,
        })
    }
}

impl ShardedDatabase {
    /// Parses a YAML (or JSON) document and checks its `apiVersion` and `kind`.
    pub fn from_yaml(text: &str) -> Result<Self, SpecError> {
        let doc: Json =
            serde_yaml_ng::from_str(text).map_err(|e| SpecError::Parse(e.to_string()))?;
        let field = |name: &str| doc.get(name).and_then(Json::as_str).unwrap_or_default();
        if field("apiVersion") != API_VERSION {
            return Err(SpecError::ApiVersion(field("apiVersion").to_owned()));
        }
        if field("kind") != KIND {
            return Err(SpecError::Kind(field("kind").to_owned()));
        }
        serde_json::from_value(doc).map_err(|e| SpecError::Parse(e.to_string()))
    }
}

/// The CRD as YAML: what `walshard crd` prints and `crds/` holds.
pub fn crd_yaml() -> Result<String, SpecError> {
    let body = serde_yaml_ng::to_string(&ShardedDatabase::crd())
        .map_err(|e| SpecError::Crd(e.to_string()))?;
    Ok(format!(
        "# Generated by `walshard crd` from k8s-api/src/spec.rs; do not edit.\n{body}"
    ))
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
            paused: false,
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

    /// The shard ranges and placement this spec asks for, validated: [`Self::validate`], then
    /// what only Rust checks (an explicit placement names known shards and gives each a replica).
    /// `layout`, when set, wins over the user's form.
    pub fn resolve(&self) -> Result<Resolved, SpecError> {
        self.validate()?;
        if let Some(layout) = &self.layout {
            let shard_ids: Vec<String> = layout.shards.iter().map(|s| s.id.to_string()).collect();
            let placement = rules::placement_map_at("layout.servers", &layout.servers)?;
            walshard_control_plane::placement::validate_placement(&placement, &shard_ids)?;
            return Ok(Resolved {
                schema: self.schema.clone(),
                shards: layout.shards.clone(),
                placement,
            });
        }
        let shards = self.shard_layout()?;
        let shard_ids: Vec<String> = shards.iter().map(|s| s.id.to_string()).collect();
        let placement = match (&self.servers.count, &self.servers.placement) {
            (Some(count), _) => {
                let names: Vec<String> = (0..*count).map(|i| format!("Server{i}")).collect();
                walshard_control_plane::placement::compute_placement(
                    &names,
                    &shard_ids,
                    to_usize(self.replicas_per_shard),
                )?
            }
            (None, Some(list)) => {
                let placement = rules::placement_map(list)?;
                walshard_control_plane::placement::validate_placement(&placement, &shard_ids)?;
                placement
            }
            (None, None) => return Err(SpecError::invalid("servers", rules::SERVERS_FORM.message)),
        };
        Ok(Resolved {
            schema: self.schema.clone(),
            shards,
            placement,
        })
    }

    /// The shards, in order: `sh1..shN` of the count form, or the explicit list.
    fn shard_layout(&self) -> Result<Vec<ShardSpec>, SpecError> {
        let s = &self.shards;
        if let Some(list) = &s.list {
            return Ok(list.clone());
        }
        let (Some(count), Some(size)) = (s.count, s.size) else {
            return Err(SpecError::invalid("shards", rules::SHARDS_FORM.message));
        };
        let low = s.low.unwrap_or(0);
        (0..i64::from(count))
            .map(|i| {
                let id = Ident::new(&format!("sh{}", i + 1))
                    .map_err(|e| SpecError::invalid("shards", e.to_string()))?;
                // validate() checked that low + count * size fits.
                let start = i
                    .checked_mul(size)
                    .and_then(|o| o.checked_add(low))
                    .ok_or_else(|| SpecError::invalid("shards", rules::KEY_SPACE_FITS.message))?;
                Ok(ShardSpec {
                    id,
                    low: start,
                    size,
                })
            })
            .collect()
    }
}

/// A validated, positive count as usize.
fn to_usize(n: i32) -> usize {
    usize::try_from(n).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_DEFAULT: &str = include_str!("../../examples/seed-default.yaml");

    fn parse(yaml: &str) -> ShardedDatabase {
        ShardedDatabase::from_yaml(yaml).expect("parses")
    }

    #[test]
    fn the_seed_default_example_resolves_to_six_servers_four_shards_three_replicas() {
        let doc = parse(SEED_DEFAULT);
        assert_eq!(doc.metadata.name.as_deref(), Some("studt"));
        let r = doc.spec.resolve().expect("resolves");
        assert_eq!(r.placement.len(), 6);
        assert_eq!(r.shards.len(), 4);
        assert_eq!(r.shards[3].low, 3 * 4096);
        for shard in ["sh1", "sh2", "sh3", "sh4"] {
            let holders = r
                .placement
                .values()
                .filter(|held| held.iter().any(|s| s == shard))
                .count();
            assert_eq!(holders, 3, "{shard}");
        }
        let body = r.init_body();
        assert_eq!(body["N"], 6);
        assert_eq!(body["shards"][0]["Stud_id_low"], 0);
        assert_eq!(body["shards"][3]["Shard_id"], "sh4");
    }

    #[test]
    fn defaults_fill_the_kubernetes_fields() {
        let spec = parse(SEED_DEFAULT).spec;
        assert_eq!(spec.engine.image, DEFAULT_IMAGE);
        assert_eq!(spec.engine.flavor(), EngineFlavor::Mysql);
        assert_eq!(spec.storage.size, "10Gi");
        assert_eq!(spec.storage.retention.when_deleted, Retention::Retain);
        assert_eq!(spec.router.replicas, 2);
        assert_eq!(spec.router.service_type, ServiceType::ClusterIP);
        assert_eq!(spec.durability, Durability::default());
        assert!(!spec.paused);
        assert_eq!(
            spec,
            ShardedDatabaseSpec::new(
                Schema::seed(),
                ShardsSpec::ranges(4, 4096, 0),
                3,
                ServersSpec::count(6)
            )
        );
    }

    #[test]
    fn an_explicit_list_and_placement_are_kept() {
        let yaml = r#"
apiVersion: walshard.io/v1alpha1
kind: ShardedDatabase
metadata: {name: t}
spec:
  schema: {columns: [Stud_id, Stud_name], dtypes: [Number, String]}
  shards: {list: [{id: sh1, low: 0, size: 10}, {id: sh2, low: 10, size: 10}]}
  servers:
    placement:
    - {name: Server0, shards: [sh1, sh2]}
    - {name: Server1, shards: [sh2]}
"#;
        let r = parse(yaml).spec.resolve().expect("resolves");
        assert_eq!(r.placement["Server0"], ["sh1", "sh2"]);
        assert_eq!(r.placement["Server1"], ["sh2"]);
        assert_eq!(r.shards[1].low, 10);
    }

    #[test]
    fn a_low_offsets_the_count_form() {
        let mut spec = parse(SEED_DEFAULT).spec;
        spec.shards = ShardsSpec::ranges(2, 100, -50);
        let r = spec.resolve().expect("resolves");
        assert_eq!(
            r.shards.iter().map(|s| (s.low, s.size)).collect::<Vec<_>>(),
            [(-50, 100), (50, 100)]
        );
    }

    #[test]
    fn the_document_header_is_checked() {
        let body = "metadata: {name: t}\nspec:\n  schema: {columns: [a], dtypes: [Number]}\n  shards: {count: 1, size: 1}\n  servers: {count: 3}\n";
        let cases = [
            (
                "apiVersion: walshard.io/v1alpha1\nkind: Foo",
                "kind must be",
            ),
            (
                "apiVersion: v1\nkind: ShardedDatabase",
                "apiVersion must be",
            ),
            ("kind: ShardedDatabase", "apiVersion must be"),
        ];
        for (header, expected) in cases {
            let err = ShardedDatabase::from_yaml(&format!("{header}\n{body}")).expect_err(header);
            assert!(err.to_string().contains(expected), "{header}: {err}");
        }
        let typo = format!(
            "apiVersion: walshard.io/v1alpha1\nkind: ShardedDatabase\n{body}  colour: blue\n"
        );
        let err = ShardedDatabase::from_yaml(&typo).expect_err("unknown field");
        assert!(err.to_string().contains("unknown field `colour`"), "{err}");
        let ok = format!("apiVersion: walshard.io/v1alpha1\nkind: ShardedDatabase\n{body}");
        assert!(ShardedDatabase::from_yaml(&ok).is_ok());
    }

    #[test]
    fn the_engine_flavor_follows_the_image() {
        let flavor = |image: &str| {
            EngineSpec {
                image: image.to_owned(),
                flavor: None,
            }
            .flavor()
        };
        assert_eq!(flavor("mysql:8.4"), EngineFlavor::Mysql);
        assert_eq!(flavor("mariadb:11.4"), EngineFlavor::Mariadb);
        assert_eq!(
            flavor("docker.io/library/mariadb:lts"),
            EngineFlavor::Mariadb
        );
        assert_eq!(
            flavor("localhost:5000/mariadb@sha256:abc"),
            EngineFlavor::Mariadb
        );
        assert_eq!(
            flavor("registry:5000/team/mysql-server:8.4"),
            EngineFlavor::Mysql
        );
        assert_eq!(flavor("percona/percona-server:8.4"), EngineFlavor::Mysql);
        let explicit = EngineSpec {
            image: "registry.example/db:1".to_owned(),
            flavor: Some(EngineFlavor::Mariadb),
        };
        assert_eq!(explicit.flavor(), EngineFlavor::Mariadb);
    }

    #[test]
    fn secret_keys_default_per_use() {
        let r = SecretKeyRef {
            name: "db".to_owned(),
            key: None,
        };
        assert_eq!(r.key_or(MYSQL_PASSWORD_KEY), "password");
        let r = SecretKeyRef {
            key: Some("pw".to_owned()),
            ..r
        };
        assert_eq!(r.key_or(MYSQL_PASSWORD_KEY), "pw");
    }

    #[test]
    fn the_crd_has_the_names_columns_and_status() {
        let crd = ShardedDatabase::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("shardeddatabases.walshard.io")
        );
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["sdb".to_owned()]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, VERSION);
        assert!(
            version
                .subresources
                .as_ref()
                .is_some_and(|s| s.status.is_some())
        );
        let columns: Vec<&str> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(columns, ["Ready", "Shards", "Servers", "Primaries", "Age"]);
        let yaml = crd_yaml().expect("serializes");
        assert!(yaml.contains("x-kubernetes-validations"));
    }
}
