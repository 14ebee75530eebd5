//! Every `ShardedDatabase` in `examples/` runs locally: `walshard up --file` brings up the fleet
//! it describes (servers, shards, placement, schema as `resolve` says), every shard elects a
//! primary, and a row written at each shard's first key reads back (strong read) through the router.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::Up;
use serde_json::{Value, json};
use walshard_contract::{Dtype, Schema};
use walshard_k8s_api::spec::ShardedDatabase;

fn examples() -> Vec<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"));
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths
}

/// A row of `schema` with key `key`.
fn row(schema: &Schema, key: i64) -> Value {
    let fields = schema.iter().enumerate().map(|(i, (column, dtype))| {
        let value = match dtype {
            _ if i == 0 => json!(key),
            Dtype::Number => json!(key % 100),
            Dtype::String => json!(format!("v{key}")),
            Dtype::Float => json!(1.5),
            Dtype::Boolean => json!(true),
        };
        (column.to_string(), value)
    });
    Value::Object(fields.collect())
}

#[test]
fn every_example_runs_locally() {
    let paths = examples();
    assert!(paths.len() >= 3, "{paths:?}");
    for path in paths {
        let text = std::fs::read_to_string(&path).expect("readable");
        let resolved = ShardedDatabase::from_yaml(&text)
            .and_then(|db| db.spec.resolve())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut up = Up::start(&tmp.path().join("fleet"), path.to_str());
        up.wait_primaries(Duration::from_secs(60));

        let status = up.ok("GET", "/status", None);
        let name = path.display();
        assert_eq!(status["N"], resolved.placement.len(), "{name}: {status}");
        assert_eq!(status["schema"], json!(resolved.schema), "{name}");
        assert_eq!(status["servers"], json!(resolved.placement), "{name}");
        let shards = status["shards"].as_array().expect("shards");
        assert_eq!(shards.len(), resolved.shards.len(), "{name}");

        let key = resolved.schema.key().to_string();
        let data: Vec<Value> = resolved
            .shards
            .iter()
            .map(|s| row(&resolved.schema, s.low))
            .collect();
        up.ok("POST", "/write", Some(json!({"data": data})));
        for (shard, written) in resolved.shards.iter().zip(&data) {
            let read = up.ok(
                "POST",
                "/read",
                Some(json!({key.as_str(): {"low": shard.low, "high": shard.low}, "consistency": "strong"})),
            );
            assert_eq!(read["data"], json!([written]), "{name}: shard {}", shard.id);
        }
        up.stop();
    }
}
