//! The seed's configurations (A-1..A-3) and what a benchmark target looks like.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde_json::Value as Json;
use walshard_contract::{Schema, ShardSpec};
use walshard_k8s_api::spec::{ServersSpec, ShardedDatabaseSpec, ShardsSpec};

use super::BenchError;
use super::keys::KeySpace;

/// Keys per shard in every seed scenario.
const SHARD_SIZE: i64 = 4096;

/// One of the seed's analysis configurations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScenarioId {
    /// The seed default: 6 servers, 4 shards, 3 replicas.
    A1,
    /// A-1 with continuous WAL archiving to a local backup store (docs/backup.md): what
    /// archiving costs the writes.
    A1Archive,
    /// Shard replicas raised to 7: 7 servers, 4 shards.
    A2,
    /// More servers and shards: 10 servers, 6 shards, 8 replicas.
    A3,
}

impl ScenarioId {
    /// Every scenario, in order.
    pub const ALL: [ScenarioId; 4] = [
        ScenarioId::A1,
        ScenarioId::A1Archive,
        ScenarioId::A2,
        ScenarioId::A3,
    ];

    /// The seed's name: `A-1`, `A-2` or `A-3`.
    pub fn name(self) -> &'static str {
        match self {
            ScenarioId::A1 => "A-1",
            ScenarioId::A1Archive => "A-1+arch",
            ScenarioId::A2 => "A-2",
            ScenarioId::A3 => "A-3",
        }
    }

    /// Whether the fleet archives its WAL while measured.
    pub fn archives(self) -> bool {
        self == ScenarioId::A1Archive
    }

    /// `(servers, shards, replicas per shard)`.
    fn shape(self) -> (i32, i32, i32) {
        match self {
            ScenarioId::A1 | ScenarioId::A1Archive => (6, 4, 3),
            ScenarioId::A2 => (7, 4, 7),
            ScenarioId::A3 => (10, 6, 8),
        }
    }

    /// The fleet this scenario runs: the seed's table and schema, `SHARD_SIZE`-key shards from 0, the
    /// default durability (majority quorum, WAL fsync on).
    pub fn spec(self) -> ShardedDatabaseSpec {
        let (servers, shards, replicas) = self.shape();
        ShardedDatabaseSpec::new(
            Schema::seed(),
            ShardsSpec::ranges(shards, SHARD_SIZE, 0),
            replicas,
            ServersSpec::count(servers),
        )
    }
}

impl FromStr for ScenarioId {
    type Err = BenchError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        ScenarioId::ALL
            .into_iter()
            .find(|id| id.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| BenchError::UnknownScenario(s.to_owned()))
    }
}

/// Where the workload goes.
#[derive(Debug, Clone)]
pub enum Source {
    /// A fresh local fleet with this configuration.
    Fleet(Box<ShardedDatabaseSpec>),
    /// An already running router.
    Router(String),
}

/// A configuration to measure.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub servers: usize,
    pub shards: usize,
    /// The most replicas any shard has.
    pub replicas: usize,
    pub schema: Schema,
    pub key_space: KeySpace,
    pub source: Source,
    /// The fleet archives its WAL to a local backup store while measured.
    pub archives: bool,
}

impl Target {
    /// A seed scenario on a fresh local fleet.
    pub fn scenario(id: ScenarioId) -> Result<Target, BenchError> {
        let spec = id.spec();
        let resolved = spec.resolve()?;
        Ok(Target {
            name: id.name().to_owned(),
            servers: resolved.placement.len(),
            shards: resolved.shards.len(),
            replicas: max_replicas(&resolved.placement),
            schema: resolved.schema,
            key_space: KeySpace::new(&resolved.shards)?,
            source: Source::Fleet(Box::new(spec)),
            archives: id.archives(),
        })
    }

    /// The fleet behind a running router, from its `GET /status` answer.
    pub fn external(url: &str, status: &Json) -> Result<Target, BenchError> {
        let bad = |reason: String| BenchError::Router {
            url: url.to_owned(),
            reason: format!("GET /status: {reason}"),
        };
        let schema: Schema = serde_json::from_value(status["schema"].clone())
            .map_err(|e| bad(format!("no usable schema (is the fleet initialised?): {e}")))?;
        let key = schema.key().as_str();
        let shards = status["shards"]
            .as_array()
            .ok_or_else(|| bad("no shards list".to_owned()))?
            .iter()
            .map(|s| ShardSpec::from_json(key, s).map_err(|e| bad(format!("shards: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let placement: BTreeMap<String, Vec<String>> =
            serde_json::from_value(status["servers"].clone())
                .map_err(|e| bad(format!("servers: {e}")))?;
        Ok(Target {
            name: "external".to_owned(),
            servers: placement.len(),
            shards: shards.len(),
            replicas: max_replicas(&placement),
            key_space: KeySpace::new(&shards)?,
            schema,
            source: Source::Router(url.to_owned()),
            archives: false,
        })
    }
}

/// The most servers holding any one shard.
fn max_replicas(placement: &BTreeMap<String, Vec<String>>) -> usize {
    let mut holders: BTreeMap<&str, usize> = BTreeMap::new();
    for held in placement.values() {
        for shard in held {
            *holders.entry(shard.as_str()).or_default() += 1;
        }
    }
    holders.values().copied().max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use walshard_k8s_api::spec::ShardedDatabase;

    use super::*;

    #[test]
    fn a1_is_the_seed_default_example() {
        let example = include_str!("../../../examples/seed-default.yaml");
        let doc = ShardedDatabase::from_yaml(example).expect("example parses");
        assert_eq!(ScenarioId::A1.spec(), doc.spec);
        assert_eq!(ScenarioId::A1Archive.spec(), doc.spec);
        assert!(ScenarioId::A1Archive.archives() && !ScenarioId::A1.archives());
    }

    #[test]
    fn the_scenarios_have_the_seed_analysis_shapes() {
        let shapes: Vec<(String, usize, usize, usize, u64)> = ScenarioId::ALL
            .into_iter()
            .map(|id| {
                let t = Target::scenario(id).expect("resolves");
                (t.name, t.servers, t.shards, t.replicas, t.key_space.size())
            })
            .collect();
        assert_eq!(
            shapes,
            [
                ("A-1".to_owned(), 6, 4, 3, 4 * 4096),
                ("A-1+arch".to_owned(), 6, 4, 3, 4 * 4096),
                ("A-2".to_owned(), 7, 4, 7, 4 * 4096),
                ("A-3".to_owned(), 10, 6, 8, 6 * 4096),
            ]
        );
    }

    #[test]
    fn scenario_names_parse_case_insensitively() {
        assert_eq!("a-2".parse::<ScenarioId>().ok(), Some(ScenarioId::A2));
        assert_eq!(" A-3 ".parse::<ScenarioId>().ok(), Some(ScenarioId::A3));
        let err = "A-4".parse::<ScenarioId>().expect_err("unknown");
        assert!(err.to_string().contains("A-1, A-1+arch, A-2, A-3"), "{err}");
    }

    #[test]
    fn an_external_router_is_read_from_its_status() {
        let status = json!({
            "N": 3,
            "schema": {"columns": ["id", "v"], "dtypes": ["Number", "String"]},
            "shards": [
                {"id_low": 0, "Shard_id": "sh1", "Shard_size": 100, "primary": "Server0"},
                {"id_low": 100, "Shard_id": "sh2", "Shard_size": 100, "primary": null}
            ],
            "servers": {"Server0": ["sh1", "sh2"], "Server1": ["sh1"], "Server2": ["sh2", "sh1"]},
            "status": "success"
        });
        let t = Target::external("http://r:5000", &status).expect("parses");
        assert_eq!((t.servers, t.shards, t.replicas), (3, 2, 3));
        assert_eq!(t.key_space.size(), 200);
        assert_eq!(t.schema.key().as_str(), "id");
        assert!(matches!(t.source, Source::Router(ref u) if u == "http://r:5000"));

        let err = Target::external("http://r:5000", &json!({"message": "not configured"}))
            .expect_err("no schema");
        assert!(err.to_string().contains("initialised"), "{err}");
    }
}
