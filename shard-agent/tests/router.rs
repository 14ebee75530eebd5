//! The router's data path end to end: real agents (two ranged shards on three servers, each with
//! its own MariaDB), the real control plane electing primaries, and the router service on a
//! port. Lives here because only this package can start the agent binary.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{AgentProc, spawn_control_plane, student};
use reqwest::Method;
use serde_json::{Value, json};
use walshard_contract::{Ident, Schema, ShardSpec};
use walshard_control_plane::ClusterSpec;
use walshard_router::layout::Layout;
use walshard_testkit::{MariaDb, MariaDbOptions};

fn ident(s: &str) -> Ident {
    Ident::new(s).expect("ident")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_data_path_through_the_router_with_failover() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dbs = MariaDb::start_many(3, &MariaDbOptions::default()).expect("MariaDB");
    let env = [
        ("WALSHARD_CONTROLLED", "true"),
        ("WALSHARD_WAL_SEGMENT_BYTES", "1048576"),
    ];
    let mut agents: Vec<AgentProc> = dbs
        .iter()
        .enumerate()
        .map(|(i, db)| {
            AgentProc::start_named(
                &db.url(),
                &dir.path().join(format!("a{i}")),
                &format!("Server{i}"),
                &env,
            )
        })
        .collect();
    let shards = json!([
        {"Stud_id_low": 0, "Shard_id": "sh1", "Shard_size": 4096},
        {"Stud_id_low": 4096, "Shard_id": "sh2", "Shard_size": 4096}
    ]);
    let schema = json!({"columns": ["Stud_id", "Stud_name", "Stud_marks"], "dtypes": ["Number", "String", "Number"]});
    for a in &agents {
        let (code, v) = a
            .client()
            .post("/config", json!({"schema": schema, "shards": shards}))
            .await;
        assert_eq!(code, 200, "{v}");
    }
    // Control plane.
    let names: Vec<String> = agents.iter().map(|a| a.name.clone()).collect();
    let spec = ClusterSpec {
        servers: agents.iter().map(|a| (a.name.clone(), a.base())).collect(),
        shards: BTreeMap::from([
            ("sh1".to_owned(), names.clone()),
            ("sh2".to_owned(), names.clone()),
        ]),
        write_quorum: Default::default(),
    };
    let (handle, stop_tx) = spawn_control_plane(spec);
    // Router.
    let specs: Vec<ShardSpec> = shards
        .as_array()
        .expect("array")
        .iter()
        .map(|s| ShardSpec::from_json("Stud_id", s).expect("spec"))
        .collect();
    let placement = names
        .iter()
        .map(|n| (ident(n), vec![ident("sh1"), ident("sh2")]))
        .collect();
    let schema: Schema = serde_json::from_value(schema).expect("schema");
    let layout = Layout::new(schema, specs, placement).expect("layout");
    let lb = common::serve_router(layout, &agents, &handle).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while handle.topology().primary("sh1").is_none() || handle.topology().primary("sh2").is_none() {
        assert!(Instant::now() < deadline, "no primaries elected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // /write spanning both shards, validated whole.
    let rows: Vec<Value> = [1, 2, 4095, 4096, 5000, 8191]
        .into_iter()
        .map(student)
        .collect();
    let (code, mut v) = lb.post("/write", json!({"data": rows})).await;
    assert!(v["session"].is_string(), "a causality token: {v}");
    v.as_object_mut().map(|o| o.remove("session"));
    assert_eq!(
        (code, v),
        (
            200,
            json!({"message": "6 Data entries added", "status": "success"})
        )
    );
    for (body, want, needle) in [
        (
            json!({"data": [student(7), student(9000)]}),
            400,
            "9000 outside every shard",
        ),
        (json!({"data": [student(8), student(8)]}), 409, "Stud_id: 8"),
        (
            json!({"data": [student(1)], "on_duplicate": "error"}),
            409,
            "Stud_id: 1 already present",
        ),
        (
            json!({"data": [{"Stud_id": 9, "Stud_name": [3], "Stud_marks": 1}]}),
            400,
            "must be String",
        ),
    ] {
        let (code, v) = lb.post("/write", body.clone()).await;
        assert!(
            code == want && v["message"].as_str().is_some_and(|m| m.contains(needle)),
            "{body}: {code} {v}"
        );
    }
    // Nothing of the refused batches was written (7 would have been in sh1).
    // /read: strong is exact at once; eventual converges.
    let strong = json!({"Stud_id": {"low": 0, "high": 10_000}, "consistency": "strong"});
    let (code, v) = lb.post("/read", strong.clone()).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["shards_queried"], json!(["sh1", "sh2"]));
    assert_eq!(v["data"].as_array().map(Vec::len), Some(6));
    let eventual = json!({"Stud_id": {"low": 1, "high": 4096}});
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, v) = lb.post("/read", eventual.clone()).await;
        assert_eq!(code, 200, "{v}");
        if v["data"].as_array().map(Vec::len) == Some(4) {
            assert_eq!(v["shards_queried"], json!(["sh1", "sh2"]));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "eventual reads never caught up: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // /update and /del with the seed's messages.
    let mut changed = student(2);
    changed["Stud_marks"] = json!(77);
    let (code, v) = lb
        .call(
            Method::PUT,
            "/update",
            Some(json!({"Stud_id": 2, "data": changed})),
        )
        .await;
    let v = without_session(v);
    assert_eq!(
        (code, v),
        (
            200,
            json!({"message": "Data entry for Stud_id:2 updated", "status": "success"})
        )
    );
    let (code, v) = lb
        .call(Method::DELETE, "/del", Some(json!({"Stud_id": 5000})))
        .await;
    let v = without_session(v);
    assert_eq!(
        (code, v),
        (
            200,
            json!({"message": "Data entry with Stud_id:5000 removed", "status": "success"})
        )
    );
    let (code, v) = lb
        .call(Method::DELETE, "/del", Some(json!({"Stud_id": 5000})))
        .await;
    let v = without_session(v);
    assert_eq!(code, 404, "{v}");
    // /status: the configuration with each shard's primary.
    let (code, s) = lb.call(Method::GET, "/status", None).await;
    assert_eq!(code, 200);
    assert_eq!(s["N"], 3);
    assert!(
        s["shards"][0]["primary"]
            .as_str()
            .is_some_and(|p| p.starts_with("Server")),
        "{s}"
    );

    // Kill sh1's primary: a write to sh1 waits through the failover and succeeds once.
    let p = handle
        .topology()
        .primary("sh1")
        .map(str::to_owned)
        .expect("primary");
    let i = agents.iter().position(|a| a.name == p).expect("agent");
    agents[i].kill9();
    let started = Instant::now();
    let (code, v) = lb
        .post("/write", json!({"data": [student(100), student(6000)]}))
        .await;
    assert_eq!(code, 200, "{v}");
    println!(
        "write through the router during a failover of sh1 took {:?}",
        started.elapsed()
    );
    let (code, v) = lb.post("/read", strong).await;
    assert_eq!(code, 200, "{v}");
    let keys: Vec<i64> = v["data"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["Stud_id"].as_i64())
        .collect();
    assert_eq!(keys, [1, 2, 100, 4095, 4096, 6000, 8191]);
    let m = reqwest::get(format!("{}/metrics", lb.base))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(m.contains("walshard_router_requests_total"), "{m}");
    let _ = stop_tx.send(());
}

/// A router answer without its causality token (whose log positions depend on elections).
fn without_session(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("session");
    }
    v
}
