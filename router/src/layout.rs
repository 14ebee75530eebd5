//! The fleet's configuration as the seed API sees it: the schema, the shards (key ranges) and the
//! placement of shards on servers. Lookups are pure and fast: a key's shard by binary search, a
//! range's shards by scanning the sorted ranges.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value as Json};
use walshard_contract::{Ident, KeyRange, Schema, ShardError, ShardSpec, validate_layout};

/// Servers and the shards each holds, seed style: `{"Server0": ["sh1", "sh2"], ...}`.
pub type Placement = BTreeMap<Ident, Vec<Ident>>;

/// Why a [`Layout`] is invalid; [`Layout::new`] checks them in this order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// The shard list itself is invalid: a repeated id, a non-positive size, overlapping ranges.
    #[error(transparent)]
    Shards(#[from] ShardError),
    /// A server of the placement holds a shard id missing from the shard list.
    #[error("server {server} holds shard {shard}, which is not defined")]
    UnknownShard {
        /// The server's name.
        server: String,
        /// The undefined shard id.
        shard: String,
    },
    /// A server lists the same shard more than once.
    #[error("server {server} lists shard {shard} twice")]
    RepeatedShard {
        /// The server's name.
        server: String,
        /// The repeated shard id.
        shard: String,
    },
    /// The named shard is held by no server of the placement.
    #[error("shard {0} has no replica on any server")]
    Unplaced(String),
}

/// A validated fleet configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// The columns and types every shard's table has; the first column is the key.
    pub schema: Schema,
    /// Sorted by their low key; ranges never overlap.
    shards: Vec<ShardSpec>,
    /// Which shards each server holds; every shard is held by at least one server and every
    /// held shard is defined.
    pub placement: Placement,
}

impl Layout {
    /// Checks shards (unique ids, no overlaps) and placement (only known shards, each once per
    /// server, every shard placed somewhere).
    pub fn new(
        schema: Schema,
        mut shards: Vec<ShardSpec>,
        placement: Placement,
    ) -> Result<Layout, LayoutError> {
        validate_layout(&shards)?;
        shards.sort_by_key(|s| s.low);
        let known: BTreeSet<&Ident> = shards.iter().map(|s| &s.id).collect();
        let mut placed = BTreeSet::new();
        for (server, held) in &placement {
            let mut seen = BTreeSet::new();
            for shard in held {
                if !known.contains(shard) {
                    return Err(LayoutError::UnknownShard {
                        server: server.to_string(),
                        shard: shard.to_string(),
                    });
                }
                if !seen.insert(shard) {
                    return Err(LayoutError::RepeatedShard {
                        server: server.to_string(),
                        shard: shard.to_string(),
                    });
                }
                placed.insert(shard);
            }
        }
        if let Some(s) = shards.iter().find(|s| !placed.contains(&s.id)) {
            return Err(LayoutError::Unplaced(s.id.to_string()));
        }
        Ok(Layout {
            schema,
            shards,
            placement,
        })
    }

    /// The shards, sorted by their low key (ranges never overlap).
    pub fn shards(&self) -> &[ShardSpec] {
        &self.shards
    }

    /// The shard with this id, if the layout defines it.
    pub fn shard(&self, id: &Ident) -> Option<&ShardSpec> {
        self.shards.iter().find(|s| s.id == *id)
    }

    /// The shard whose range holds `key`.
    pub fn shard_for(&self, key: i64) -> Option<&ShardSpec> {
        let i = self.shards.partition_point(|s| s.low <= key);
        i.checked_sub(1)
            .map(|i| &self.shards[i])
            .filter(|s| s.contains(key))
    }

    /// The shards a key range touches, each with the part of the range inside it, in key order.
    pub fn plan_read(&self, range: KeyRange) -> Vec<(&ShardSpec, KeyRange)> {
        self.shards
            .iter()
            .filter(|s| !range.is_empty() && s.low <= range.high && range.low < s.end())
            .map(|s| {
                let part = KeyRange {
                    low: range.low.max(s.low),
                    high: range.high.min(s.end() - 1),
                };
                (s, part)
            })
            .collect()
    }

    /// The servers holding `shard`, by name.
    pub fn replicas(&self, shard: &Ident) -> Vec<&Ident> {
        self.placement
            .iter()
            .filter(|(_, held)| held.contains(shard))
            .map(|(server, _)| server)
            .collect()
    }

    /// The seed's configuration JSON (`/status`), with each shard's current primary from
    /// `primary_of`.
    pub fn to_json(&self, primary_of: impl Fn(&Ident) -> Option<String>) -> Json {
        let key = self.schema.key().as_str();
        let shards: Vec<Json> = self
            .shards
            .iter()
            .map(|s| {
                let mut m = s.to_json(key);
                let primary = primary_of(&s.id).map_or(Json::Null, Json::String);
                // The seed's name for it is `primary_server`; both are answered.
                m.insert("primary".into(), primary.clone());
                m.insert("primary_server".into(), primary);
                Json::Object(m)
            })
            .collect();
        let servers: Map<String, Json> = self
            .placement
            .iter()
            .map(|(server, held)| {
                let list = held.iter().map(|s| Json::String(s.to_string())).collect();
                (server.to_string(), Json::Array(list))
            })
            .collect();
        serde_json::json!({
            "N": self.placement.len(),
            "schema": self.schema,
            "shards": shards,
            "servers": servers,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn id(s: &str) -> Ident {
        Ident::new(s).expect("ident")
    }

    pub(crate) fn spec(name: &str, low: i64, size: i64) -> ShardSpec {
        ShardSpec {
            id: id(name),
            low,
            size,
        }
    }

    /// The seed's default: 4 shards of 4096 keys on 6 servers, 3 replicas each.
    pub(crate) fn seed_layout() -> Layout {
        let shards = (0..4)
            .map(|i| spec(&format!("sh{}", i + 1), i * 4096, 4096))
            .collect();
        let placement: Placement = [
            ("Server0", ["sh1", "sh2"]),
            ("Server1", ["sh3", "sh4"]),
            ("Server2", ["sh1", "sh3"]),
            ("Server3", ["sh4", "sh2"]),
            ("Server4", ["sh1", "sh4"]),
            ("Server5", ["sh2", "sh3"]),
        ]
        .into_iter()
        .map(|(s, held)| (id(s), held.iter().map(|h| id(h)).collect()))
        .collect();
        Layout::new(Schema::seed_default(), shards, placement).expect("valid layout")
    }

    #[test]
    fn key_lookup_and_read_planning() {
        let l = seed_layout();
        assert_eq!(l.shard_for(0).map(|s| s.id.as_str()), Some("sh1"));
        assert_eq!(l.shard_for(4095).map(|s| s.id.as_str()), Some("sh1"));
        assert_eq!(l.shard_for(4096).map(|s| s.id.as_str()), Some("sh2"));
        assert_eq!(l.shard_for(16383).map(|s| s.id.as_str()), Some("sh4"));
        assert_eq!(l.shard_for(16384), None);
        assert_eq!(l.shard_for(-1), None);
        let plan = l.plan_read(KeyRange {
            low: 1000,
            high: 8889,
        });
        let got: Vec<(&str, i64, i64)> = plan
            .iter()
            .map(|(s, r)| (s.id.as_str(), r.low, r.high))
            .collect();
        assert_eq!(
            got,
            [
                ("sh1", 1000, 4095),
                ("sh2", 4096, 8191),
                ("sh3", 8192, 8889)
            ]
        );
        assert!(
            l.plan_read(KeyRange {
                low: 20000,
                high: 30000
            })
            .is_empty()
        );
        assert_eq!(l.replicas(&id("sh1")).len(), 3);
    }

    #[test]
    fn rejects_bad_placements() {
        let shards = vec![spec("sh1", 0, 10), spec("sh2", 10, 10)];
        let bad = |placement: &[(&str, &[&str])]| {
            let p: Placement = placement
                .iter()
                .map(|(s, held)| (id(s), held.iter().map(|h| id(h)).collect()))
                .collect();
            Layout::new(Schema::seed_default(), shards.clone(), p)
        };
        assert!(matches!(
            bad(&[("S0", &["sh1", "sh9"])]),
            Err(LayoutError::UnknownShard { .. })
        ));
        assert!(matches!(
            bad(&[("S0", &["sh1", "sh1", "sh2"])]),
            Err(LayoutError::RepeatedShard { .. })
        ));
        assert!(matches!(
            bad(&[("S0", &["sh1"])]),
            Err(LayoutError::Unplaced(_))
        ));
        assert!(bad(&[("S0", &["sh1"]), ("S1", &["sh2"])]).is_ok());
    }

    #[test]
    fn status_json_is_the_seed_shape() {
        let l = seed_layout();
        let v = l.to_json(|s| (s.as_str() == "sh1").then(|| "Server0".to_owned()));
        assert_eq!(v["N"], 6);
        assert_eq!(
            v["shards"][0],
            serde_json::json!({"Stud_id_low": 0, "Shard_id": "sh1", "Shard_size": 4096, "primary": "Server0", "primary_server": "Server0"})
        );
        assert_eq!(v["shards"][1]["primary"], Json::Null);
        assert_eq!(v["servers"]["Server0"], serde_json::json!(["sh1", "sh2"]));
    }

    proptest! {
        #[test]
        fn shard_for_agrees_with_a_scan(key in -100i64..20000) {
            let l = seed_layout();
            let scan = l.shards().iter().find(|s| s.contains(key)).map(|s| s.id.clone());
            prop_assert_eq!(l.shard_for(key).map(|s| s.id.clone()), scan);
        }

        #[test]
        fn read_plans_cover_exactly_the_keys_in_shards(low in -100i64..17000, len in 0i64..9000) {
            let l = seed_layout();
            let range = KeyRange { low, high: low + len };
            let plan = l.plan_read(range);
            let covered: i64 = plan.iter().map(|(_, r)| r.high - r.low + 1).sum();
            let expected = (range.low..=range.high).filter(|k| l.shard_for(*k).is_some()).count() as i64;
            prop_assert_eq!(covered, expected);
            for (s, r) in plan {
                prop_assert!(s.contains(r.low) && s.contains(r.high) && r.low <= r.high);
            }
        }
    }
}
