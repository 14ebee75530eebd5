//! `spec.engine`: the database engine image and its flavor (MySQL or MariaDB).

use kube::KubeSchema;
use schemars::{JsonSchema, Schema as JsonSchemaDoc, SchemaGenerator};
use serde::{Deserialize, Serialize};

use super::{DEFAULT_IMAGE, transition};

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
    /// MySQL (the official `mysql` images and compatible ones).
    Mysql,
    /// MariaDB (the official `mariadb` images).
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

/// An optional enum without `null` among its values (skipped when absent, never sent as null).
fn flavor_schema(generator: &mut SchemaGenerator) -> JsonSchemaDoc {
    EngineFlavor::json_schema(generator)
}
