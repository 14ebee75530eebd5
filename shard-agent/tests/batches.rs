//! The router's coalesced requests against a real agent and MariaDB: each op of a write batch is
//! answered exactly as its single request would be, a retried batch applies each op once, and a
//! read batch serves overlapping, empty and waiting ranges each with its own rows.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

mod common;

use common::{AgentProc, mariadb, seed_schema, student};
use serde_json::{Value, json};

fn op(id: u128, kind: &str, body: Value) -> Value {
    json!({"op_id": format!("{id:032x}"), "kind": kind, "body": body})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_op_and_read_of_a_batch_is_answered_on_its_own() {
    let db = mariadb(2);
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = AgentProc::start(&db.url(), &dir.path().join("agent"));
    let c = agent.client();
    let (code, v) = c
        .post(
            "/config",
            json!({"schema": seed_schema(), "shards": [{"Stud_id_low": 0, "Shard_id": "sh1", "Shard_size": 100}]}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = c
        .post("/write", json!({"shard": "sh1", "data": [student(5)]}))
        .await;
    assert_eq!(code, 200, "{v}");

    let batch = json!({"ops": [
        op(1, "write", json!({"data": [student(1), student(2)]})),
        op(2, "write", json!({"data": [student(5)], "on_duplicate": "error"})),
        op(3, "write", json!({"data": [student(3), student(5)]})),
        op(4, "update", json!({"Stud_id": 1, "data": {"Stud_marks": 99}})),
        op(5, "del", json!({"Stud_id": 77})),
        op(6, "write", json!({"data": [student(500)]})),
        op(7, "write", json!({"data": []})),
        op(0, "del", json!({"Stud_id": 2})),
    ]});
    let (code, v) = c.post("/shards/sh1/writes", batch.clone()).await;
    assert_eq!(code, 200, "{v}");
    let results = v["results"].as_array().expect("results").clone();
    let status: Vec<u64> = results
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(status, vec![200, 409, 200, 200, 404, 400, 200, 400], "{v}");
    assert_eq!(
        results[0]["body"],
        json!({"message": "Data entries added", "count": 2, "status": "success"})
    );
    assert_eq!(results[1]["body"]["code"], "conflict");
    assert_eq!(
        results[2]["body"],
        json!({"message": "Data entries added", "count": 1, "skipped": [5], "status": "success"})
    );
    assert_eq!(
        results[3]["body"]["message"],
        "Data entry for Stud_id:1 updated"
    );
    assert_eq!(results[4]["body"]["code"], "not-found");
    assert_eq!(results[5]["body"]["code"], "invalid-request");
    assert_eq!(results[6]["body"]["count"], 0);
    assert!(
        results[7]["body"]["message"]
            .as_str()
            .unwrap()
            .contains("op_id"),
        "{v}"
    );

    // The same batch again (a router's retry after a lost answer): the same answers, nothing
    // applied twice (op 1 would now skip both keys if it ran again).
    let (code, again) = c.post("/shards/sh1/writes", batch).await;
    assert_eq!(code, 200, "{again}");
    assert_eq!(again["results"], v["results"]);
    let rows = c.copy("sh1").await;
    let keys: Vec<i64> = rows
        .iter()
        .map(|r| r["Stud_id"].as_i64().unwrap())
        .collect();
    assert_eq!(keys, vec![1, 2, 3, 5]);
    assert_eq!(rows[0]["Stud_marks"], 99);

    // Reads: overlapping, empty and single ranges each get exactly their rows; a session read
    // past the applied position waits its `wait_ms` and fails alone.
    let lsn = c.status().await["shards"]["sh1"]["applied_lsn"].as_u64();
    let reads = json!({"reads": [
        {"shard": "sh1", "range": {"low": 1, "high": 3}},
        {"shard": "sh1", "range": {"low": 2, "high": 5}},
        {"shard": "sh1", "range": {"low": 9, "high": 4}},
        {"shard": "sh1", "range": {"low": 5, "high": 5}, "min_lsn": 1},
        {"shard": "sh1", "range": {"low": 1, "high": 1}, "min_lsn": 1_000_000, "wait_ms": 50},
        {"shard": "sh9", "range": {"low": 1, "high": 1}},
    ]});
    let (code, v) = c.post("/reads", reads).await;
    assert_eq!(code, 200, "{v}");
    let keys = |i: usize| -> Vec<i64> {
        v["results"][i]["body"]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["Stud_id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(keys(0), vec![1, 2, 3]);
    assert_eq!(keys(1), vec![2, 3, 5]);
    assert_eq!(keys(2), Vec::<i64>::new());
    assert_eq!(keys(3), vec![5]);
    assert_eq!(v["results"][4]["status"], 503, "{v}");
    assert_eq!(v["results"][4]["body"]["code"], "replica-behind");
    // A shard this server does not hold fails its reads alone.
    assert_eq!(v["results"][5]["status"], 404, "{v}");
    if let Some(lsn) = lsn {
        assert!(v["results"][0]["body"]["lsn"].as_u64().unwrap() >= lsn);
    }

    // A batch that does not parse changes nothing and is one 400.
    let (code, v) = c
        .post("/shards/sh1/writes", json!({"ops": [{"kind": "write"}]}))
        .await;
    assert_eq!((code, v["code"].as_str()), (400, Some("invalid-request")));
    let (code, _) = c.post("/shards/nope/writes", json!({"ops": []})).await;
    assert_eq!(code, 404);
}

/// Cells reach MySQL as typed literals in the applier's multi-statement queries: every value a
/// client can send comes back exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_value_is_stored_exactly() {
    let db = mariadb(2);
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = AgentProc::start(&db.url(), &dir.path().join("agent"));
    let c = agent.client();
    let schema = json!({"columns": ["k", "s", "f", "b"], "dtypes": ["Number", "String", "Float", "Boolean"]});
    let (code, v) = c
        .post("/config", json!({"schema": schema, "shards": ["sh1"]}))
        .await;
    assert_eq!(code, 200, "{v}");
    let rows = vec![
        json!({"k": i64::MIN, "s": "it's a \"quote\" \\ backslash; DROP TABLE x; --", "f": 0.1, "b": true}),
        json!({"k": i64::MAX, "s": "ünïcødé 🦀 \u{0} nul", "f": 1e300, "b": false}),
        json!({"k": 0, "s": "", "f": -0.0, "b": null}),
        json!({"k": 1, "s": null, "f": 5e-324, "b": true}),
        json!({"k": 2, "s": "X'00'", "f": -1.7976931348623157e308, "b": false}),
    ];
    let (code, v) = c
        .post("/write", json!({"shard": "sh1", "data": rows}))
        .await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = c
        .post(
            "/read",
            json!({"shard": "sh1", "k": {"low": i64::MIN, "high": i64::MAX}}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let mut want = rows.clone();
    want.sort_by_key(|r| r["k"].as_i64());
    assert_eq!(v["data"], Value::Array(want));
}
