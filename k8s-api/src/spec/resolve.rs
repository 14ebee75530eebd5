//! A spec resolved into the seed configuration: the schema, the shard ranges and the placement.

use serde_json::Value as Json;
use walshard_contract::{Ident, Schema, ShardSpec};
use walshard_control_plane::placement::Placement;

use super::{ShardedDatabaseSpec, SpecError, rules};

/// The seed configuration a spec stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The table: columns and dtypes.
    pub schema: Schema,
    /// Every shard with its key range, in layout order.
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

impl ShardedDatabaseSpec {
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
