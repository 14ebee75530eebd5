//! Shards are key ranges: `{"Stud_id_low": 0, "Shard_id": "sh1", "Shard_size": 4096}` covers
//! `[low, low + size)`. The low field is named after the schema's key column.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::ident::{Ident, IdentError};
use crate::row::json_kind;

/// One shard: its id and the half-open key range `[low, low + size)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ShardSpec {
    /// The shard id (`Shard_id`).
    pub id: Ident,
    /// The first key of the shard.
    pub low: i64,
    /// How many keys it covers: `[low, low + size)`.
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub size: i64,
}

/// Why a shard spec or a shard layout is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// The spec is not a JSON object; holds the JSON kind it was.
    #[error("shard spec must be an object, got {0}")]
    NotObject(&'static str),
    /// `Shard_id`, `Shard_size` or the `<key>_low` field is missing or not an integer (its name).
    #[error("shard spec is missing integer field {0:?}")]
    MissingField(String),
    /// `Shard_id` is not a valid identifier.
    #[error("Shard_id: {0}")]
    BadId(#[from] IdentError),
    /// `Shard_size` is zero or negative.
    #[error("shard {id}: Shard_size must be positive, got {size}")]
    BadSize {
        /// The shard id.
        id: String,
        /// The size given.
        size: i64,
    },
    /// `low + size` overflows `i64`.
    #[error("shard {id}: range end {low} + {size} overflows")]
    Overflow {
        /// The shard id.
        id: String,
        /// The first key.
        low: i64,
        /// The size given.
        size: i64,
    },
    /// Two shards have the same id (the id).
    #[error("shard id {0} appears twice")]
    DuplicateId(String),
    /// The key ranges of two shards overlap.
    #[error("shards {a} and {b} overlap")]
    Overlap {
        /// One shard id.
        a: String,
        /// The other shard id.
        b: String,
    },
}

impl ShardSpec {
    /// Name of the low-bound field for a key column, e.g. `Stud_id_low`.
    pub fn low_field(key: &str) -> String {
        format!("{key}_low")
    }

    /// Reads `{"<key>_low", "Shard_id", "Shard_size"}` and checks a positive size and no overflow.
    pub fn from_json(key: &str, v: &Json) -> Result<ShardSpec, ShardError> {
        let Json::Object(obj) = v else {
            return Err(ShardError::NotObject(json_kind(v)));
        };
        let low_field = Self::low_field(key);
        let int = |name: &str| {
            obj.get(name)
                .and_then(Json::as_i64)
                .ok_or_else(|| ShardError::MissingField(name.to_owned()))
        };
        let id = obj
            .get("Shard_id")
            .and_then(Json::as_str)
            .ok_or_else(|| ShardError::MissingField("Shard_id".to_owned()))?;
        let spec = ShardSpec {
            id: Ident::new(id)?,
            low: int(&low_field)?,
            size: int("Shard_size")?,
        };
        spec.check()?;
        Ok(spec)
    }

    fn check(&self) -> Result<(), ShardError> {
        if self.size <= 0 {
            return Err(ShardError::BadSize {
                id: self.id.to_string(),
                size: self.size,
            });
        }
        if self.low.checked_add(self.size).is_none() {
            return Err(ShardError::Overflow {
                id: self.id.to_string(),
                low: self.low,
                size: self.size,
            });
        }
        Ok(())
    }

    /// The wire form `{"<key>_low", "Shard_id", "Shard_size"}`, with `key` the key column name.
    pub fn to_json(&self, key: &str) -> Map<String, Json> {
        let mut m = Map::new();
        m.insert(Self::low_field(key), Json::from(self.low));
        m.insert("Shard_id".to_owned(), Json::from(self.id.as_str()));
        m.insert("Shard_size".to_owned(), Json::from(self.size));
        m
    }

    /// Exclusive upper bound (checked at construction not to overflow).
    pub fn end(&self) -> i64 {
        self.low.saturating_add(self.size)
    }

    /// Whether `key` is in `[low, low + size)`.
    pub fn contains(&self, key: i64) -> bool {
        self.low <= key && key < self.end()
    }
}

/// Checks a set of shards: unique ids, positive sizes, no overlapping ranges.
pub fn validate_layout(shards: &[ShardSpec]) -> Result<(), ShardError> {
    for s in shards {
        s.check()?;
    }
    let mut sorted: Vec<&ShardSpec> = shards.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    if let Some(w) = sorted.windows(2).find(|w| w[0].id == w[1].id) {
        return Err(ShardError::DuplicateId(w[0].id.to_string()));
    }
    sorted.sort_by_key(|s| s.low);
    if let Some(w) = sorted.windows(2).find(|w| w[0].end() > w[1].low) {
        return Err(ShardError::Overlap {
            a: w[0].id.to_string(),
            b: w[1].id.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn spec(id: &str, low: i64, size: i64) -> ShardSpec {
        ShardSpec {
            id: Ident::new(id).expect("id"),
            low,
            size,
        }
    }

    #[test]
    fn parses_seed_shard() {
        let s = ShardSpec::from_json(
            "Stud_id",
            &json!({"Stud_id_low": 4096, "Shard_id": "sh2", "Shard_size": 4096}),
        )
        .expect("valid");
        assert_eq!(s, spec("sh2", 4096, 4096));
        assert!(s.contains(4096) && s.contains(8191) && !s.contains(8192));
        assert_eq!(
            Json::Object(s.to_json("Stud_id")),
            json!({"Stud_id_low": 4096, "Shard_id": "sh2", "Shard_size": 4096})
        );
    }

    #[test]
    fn rejects_bad_specs() {
        for v in [
            json!({"Stud_id_low": 0, "Shard_id": "sh 1", "Shard_size": 1}),
            json!({"low": 0, "Shard_id": "sh1", "Shard_size": 1}),
            json!({"Stud_id_low": 0, "Shard_id": "sh1", "Shard_size": 0}),
            json!({"Stud_id_low": i64::MAX, "Shard_id": "sh1", "Shard_size": 2}),
            json!("sh1"),
        ] {
            assert!(ShardSpec::from_json("Stud_id", &v).is_err(), "{v}");
        }
    }

    #[test]
    fn layout_checks() {
        assert!(validate_layout(&[spec("a", 0, 10), spec("b", 10, 10)]).is_ok());
        assert!(matches!(
            validate_layout(&[spec("a", 0, 11), spec("b", 10, 10)]),
            Err(ShardError::Overlap { .. })
        ));
        assert!(matches!(
            validate_layout(&[spec("a", 0, 1), spec("a", 10, 10)]),
            Err(ShardError::DuplicateId(_))
        ));
    }

    proptest! {
        #[test]
        fn accepted_layouts_never_share_a_key(ranges in proptest::collection::vec((-1000i64..1000, 1i64..300), 1..6), probe in -1500i64..1500) {
            let shards: Vec<ShardSpec> = ranges.iter().enumerate().map(|(i, (l, s))| spec(&format!("s{i}"), *l, *s)).collect();
            if validate_layout(&shards).is_ok() {
                prop_assert!(shards.iter().filter(|s| s.contains(probe)).count() <= 1);
            }
        }
    }
}
