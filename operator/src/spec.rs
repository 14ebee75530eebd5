//! The `ShardedDatabase` resource: what a user asks for, in local mode (`walshard up --file`) and
//! (as the CRD's spec) on Kubernetes. [`ShardedDatabaseSpec::resolve`] turns it into the seed
//! configuration: the schema, the shard ranges and the placement of shards on servers.
//!
//! ```yaml
//! apiVersion: walshard.io/v1alpha1
//! kind: ShardedDatabase
//! metadata: {name: studt}
//! spec:
//!   schema: {columns: [Stud_id, Stud_name, Stud_marks], dtypes: [Number, String, Number]}
//!   shards: {count: 4, size: 4096}        # or {list: [{Stud_id_low: 0, Shard_id: sh1, Shard_size: 4096}]}
//!   replicasPerShard: 3
//!   servers: {count: 6}                   # or {placement: {Server0: [sh1, sh2], ...}}
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use thiserror::Error;
use walshard_contract::{Ident, Quorum, Schema, ShardSpec, validate_layout};

use crate::placement::{PlacementError, compute_placement, validate_placement};

/// The API group and version of the resource.
pub const API_VERSION: &str = "walshard.io/v1alpha1";
/// The resource kind.
pub const KIND: &str = "ShardedDatabase";

/// A `ShardedDatabase` document as read from a file (local mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardedDatabaseDocument {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: Metadata,
    pub spec: ShardedDatabaseSpec,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub name: String,
}

/// What the user asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShardedDatabaseSpec {
    /// The table: columns and dtypes; the first column is the integer shard key.
    pub schema: Schema,
    pub shards: ShardsSpec,
    /// Replicas of every shard (ignored with an explicit placement).
    #[serde(default = "default_replicas")]
    pub replicas_per_shard: usize,
    pub servers: ServersSpec,
    #[serde(default)]
    pub durability: Durability,
    /// Kubernetes only: the MySQL image, storage, resources and router replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Json>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Json>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Json>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<Json>,
    /// Stop reconciling (Kubernetes) without touching the fleet.
    #[serde(default)]
    pub paused: bool,
}

fn default_replicas() -> usize {
    3
}

/// The shards: equal ranges, or an explicit seed-style list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ShardsSpec {
    /// `count` shards of `size` keys from `low` (default 0), named `sh1`, `sh2`, …
    Ranges {
        count: usize,
        size: i64,
        #[serde(default)]
        low: i64,
    },
    /// Seed style: `[{"Stud_id_low": 0, "Shard_id": "sh1", "Shard_size": 4096}, ...]`.
    List { list: Vec<Json> },
}

/// The servers: a count (placement computed), or an explicit seed-style placement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ServersSpec {
    /// `count` servers named `Server0`, `Server1`, …
    Count { count: usize },
    /// `{"Server0": ["sh1", "sh2"], ...}`.
    Placement {
        placement: BTreeMap<String, Vec<String>>,
    },
}

/// How writes are made durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Durability {
    #[serde(default)]
    pub write_quorum: Quorum,
    #[serde(default)]
    pub wal_fsync: WalFsync,
}

/// The agents' WAL fsync policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Error)]
pub enum SpecError {
    #[error("not a ShardedDatabase document: {0}")]
    Parse(String),
    #[error("apiVersion must be {API_VERSION}, got {0:?}")]
    ApiVersion(String),
    #[error("kind must be {KIND}, got {0:?}")]
    Kind(String),
    #[error("shards: {0}")]
    Shards(String),
    #[error("servers: {0}")]
    Servers(String),
    #[error(transparent)]
    Placement(#[from] PlacementError),
}

/// The seed configuration a spec stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub schema: Schema,
    pub shards: Vec<ShardSpec>,
    /// Server → the shards it holds.
    pub placement: BTreeMap<String, Vec<String>>,
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

impl ShardedDatabaseDocument {
    /// Parses a YAML (or JSON) document and checks its kind.
    pub fn from_yaml(text: &str) -> Result<Self, SpecError> {
        let doc: Self =
            serde_yaml_ng::from_str(text).map_err(|e| SpecError::Parse(e.to_string()))?;
        if doc.api_version != API_VERSION {
            return Err(SpecError::ApiVersion(doc.api_version));
        }
        if doc.kind != KIND {
            return Err(SpecError::Kind(doc.kind));
        }
        Ok(doc)
    }
}

impl ShardedDatabaseSpec {
    /// The shard ranges and placement this spec asks for, validated.
    pub fn resolve(&self) -> Result<Resolved, SpecError> {
        let key = self.schema.key().as_str();
        let shards = match &self.shards {
            ShardsSpec::Ranges { count, size, low } => {
                if *count == 0 || *size <= 0 {
                    return Err(SpecError::Shards(
                        "count and size must be positive".to_owned(),
                    ));
                }
                (0..*count)
                    .map(|i| {
                        let start = (i as i64)
                            .checked_mul(*size)
                            .and_then(|o| o.checked_add(*low))
                            .ok_or_else(|| SpecError::Shards("key space overflows i64".into()))?;
                        let id = Ident::new(&format!("sh{}", i + 1))
                            .map_err(|e| SpecError::Shards(e.to_string()))?;
                        Ok(ShardSpec {
                            id,
                            low: start,
                            size: *size,
                        })
                    })
                    .collect::<Result<Vec<_>, SpecError>>()?
            }
            ShardsSpec::List { list } => list
                .iter()
                .map(|s| ShardSpec::from_json(key, s).map_err(|e| SpecError::Shards(e.to_string())))
                .collect::<Result<Vec<_>, _>>()?,
        };
        validate_layout(&shards).map_err(|e| SpecError::Shards(e.to_string()))?;
        let shard_ids: Vec<String> = shards.iter().map(|s| s.id.to_string()).collect();
        let placement = match &self.servers {
            ServersSpec::Count { count } => {
                let names: Vec<String> = (0..*count).map(|i| format!("Server{i}")).collect();
                compute_placement(&names, &shard_ids, self.replicas_per_shard)?
            }
            ServersSpec::Placement { placement } => {
                for name in placement.keys() {
                    Ident::new(name).map_err(|e| SpecError::Servers(e.to_string()))?;
                }
                validate_placement(placement, &shard_ids)?;
                placement.clone()
            }
        };
        Ok(Resolved {
            schema: self.schema.clone(),
            shards,
            placement,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_DEFAULT: &str = include_str!("../../examples/seed-default.yaml");

    #[test]
    fn the_seed_default_example_resolves_to_six_servers_four_shards_three_replicas() {
        let doc = ShardedDatabaseDocument::from_yaml(SEED_DEFAULT).expect("example parses");
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
    }

    #[test]
    fn an_explicit_seed_placement_is_kept() {
        let yaml = r#"
apiVersion: walshard.io/v1alpha1
kind: ShardedDatabase
spec:
  schema: {columns: [Stud_id, Stud_name], dtypes: [Number, String]}
  shards: {list: [{Stud_id_low: 0, Shard_id: sh1, Shard_size: 10}, {Stud_id_low: 10, Shard_id: sh2, Shard_size: 10}]}
  servers: {placement: {Server0: [sh1, sh2], Server1: [sh2]}}
"#;
        let r = ShardedDatabaseDocument::from_yaml(yaml)
            .expect("parses")
            .spec
            .resolve()
            .expect("resolves");
        assert_eq!(r.placement["Server0"], ["sh1", "sh2"]);
        assert_eq!(r.placement["Server1"], ["sh2"]);
    }

    #[test]
    fn bad_documents_are_refused_with_the_reason() {
        let schema = "schema: {columns: [Stud_id, Stud_name], dtypes: [Number, String]}";
        let good = "shards: {count: 4, size: 4096}\n  servers: {count: 6}";
        let cases = [
            ("walshard.io/v1alpha1", "Foo", good, "kind must be"),
            ("v1", KIND, good, "apiVersion must be"),
            (
                API_VERSION,
                KIND,
                "shards: {count: 0, size: 10}\n  servers: {count: 6}",
                "count and size must be positive",
            ),
            (
                API_VERSION,
                KIND,
                "shards: {count: 4, size: 10}\n  servers: {count: 2}",
                "3 replicas per shard need at least 3 servers",
            ),
            (
                API_VERSION,
                KIND,
                "shards: {count: 4, size: 10}\n  servers: {count: 6}\n  replicasPerShard: 0",
                "at least one replica",
            ),
            (
                API_VERSION,
                KIND,
                "shards: {count: 4, size: 10}\n  servers: {count: 6}\n  colour: blue",
                "unknown field",
            ),
            (
                API_VERSION,
                KIND,
                "shards: {list: [{Stud_id_low: 0, Shard_id: sh1, Shard_size: 10}, {Stud_id_low: 5, Shard_id: sh2, Shard_size: 10}]}\n  servers: {count: 3}",
                "overlap",
            ),
        ];
        for (api, kind, body, expected) in cases {
            let yaml = format!("apiVersion: {api}\nkind: {kind}\nspec:\n  {schema}\n  {body}\n");
            let err = ShardedDatabaseDocument::from_yaml(&yaml)
                .and_then(|d| d.spec.resolve())
                .expect_err(body);
            assert!(
                err.to_string().contains(expected),
                "{body}: {err} should mention {expected:?}"
            );
        }
    }
}
