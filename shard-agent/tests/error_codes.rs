//! Every error answer carries its `"code"` (walshard_contract::ErrorCode) beside the seed's
//! `message` and `status`: from a standalone agent, from replicas under the real control plane,
//! and through the router, which relays the agent's code (and answers `no-majority` at once).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{AgentProc, mariadb, seed_schema, spawn_control_plane, student};
use reqwest::Method;
use serde_json::{Value, json};
use walshard_contract::{ErrorCode, Ident, Schema, ShardSpec};
use walshard_control_plane::ClusterSpec;
use walshard_router::layout::Layout;
use walshard_testkit::{MariaDb, MariaDbOptions};

/// The answer is a failure with `code`, the code's status, and a message.
fn assert_code(answer: &(u16, Value), code: ErrorCode) {
    let (status, v) = answer;
    assert_eq!(v["code"], code.as_str(), "{status} {v}");
    assert_eq!(*status, code.status(), "{v}");
    assert_eq!(v["status"], "failure", "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_agent_names_every_refusal() {
    let db = mariadb(2);
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = AgentProc::start(&db.url(), &dir.path().join("agent"));
    let c = agent.client();

    let read = json!({"shard": "sh1", "Stud_id": {"low": 0, "high": 10}});
    assert_code(
        &c.post("/read", read.clone()).await,
        ErrorCode::NotConfigured,
    );
    let (code, v) = c
        .post(
            "/config",
            json!({"schema": seed_schema(), "shards": [{"Stud_id_low": 0, "Shard_id": "sh1", "Shard_size": 4096}]}),
        )
        .await;
    assert_eq!(code, 200, "{v}");

    let anonymous = reqwest::Client::new()
        .post(format!("{}/read", agent.base()))
        .json(&read)
        .send()
        .await
        .expect("request");
    let status = anonymous.status().as_u16();
    let body: Value = anonymous.json().await.expect("json");
    assert_code(&(status, body), ErrorCode::Unauthorized);

    assert_code(&c.post("/nowhere", json!({})).await, ErrorCode::NotFound);
    assert_code(
        &c.call(Method::GET, "/write", None).await,
        ErrorCode::MethodNotAllowed,
    );
    assert_code(
        &c.post("/write", json!({"shard": "sh1", "data": "rows"}))
            .await,
        ErrorCode::InvalidRequest,
    );
    assert_code(
        &c.post(
            "/read",
            json!({"shard": "sh9", "Stud_id": {"low": 0, "high": 1}}),
        )
        .await,
        ErrorCode::NotFound,
    );
    // (`on_duplicate: error`: a duplicate is refused rather than skipped.)
    let write = json!({"shard": "sh1", "data": [student(1)], "on_duplicate": "error"});
    assert_eq!(c.post("/write", write.clone()).await.0, 200);
    assert_code(&c.post("/write", write).await, ErrorCode::Conflict);
    assert_code(
        &c.call(
            Method::DELETE,
            "/del",
            Some(json!({"shard": "sh1", "Stud_id": 2})),
        )
        .await,
        ErrorCode::NotFound,
    );
    // A standalone shard is primary of epoch 1: a fence at 0 is stale.
    let stale = c.post("/shards/sh1/fence", json!({"epoch": 0})).await;
    assert_code(&stale, ErrorCode::StaleEpoch);
    assert_eq!(stale.1["epoch"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_and_the_router_name_every_refusal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dbs = MariaDb::start_many(3, &MariaDbOptions::default()).expect("MariaDB");
    let env = [("WALSHARD_CONTROLLED", "true")];
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
    let shards = json!([{"Stud_id_low": 0, "Shard_id": "sh1", "Shard_size": 4096}]);
    for a in &agents {
        let (code, v) = a
            .client()
            .post(
                "/config",
                json!({"schema": seed_schema(), "shards": shards}),
            )
            .await;
        assert_eq!(code, 200, "{v}");
    }
    let names: Vec<String> = agents.iter().map(|a| a.name.clone()).collect();
    let spec = ClusterSpec {
        servers: agents.iter().map(|a| (a.name.clone(), a.base())).collect(),
        shards: BTreeMap::from([("sh1".to_owned(), names.clone())]),
        write_quorum: Default::default(),
    };
    let (handle, stop_tx) = spawn_control_plane(spec);
    let ident = |s: &str| Ident::new(s).expect("ident");
    let specs = vec![ShardSpec::from_json("Stud_id", &shards[0]).expect("spec")];
    let placement = names
        .iter()
        .map(|n| (ident(n), vec![ident("sh1")]))
        .collect();
    let schema: Schema = serde_json::from_value(seed_schema()).expect("schema");
    let layout = Layout::new(schema, specs, placement).expect("layout");
    let lb = common::serve_router(layout, &agents, &handle).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let primary = loop {
        if let Some(p) = handle.topology().primary("sh1") {
            break p.to_owned();
        }
        assert!(Instant::now() < deadline, "no primary elected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (code, v) = lb.post("/write", json!({"data": [student(1)]})).await;
    assert_eq!(code, 200, "{v}");
    let p = agents
        .iter()
        .position(|a| a.name == primary)
        .expect("agent");
    let s = (p + 1) % 3;
    let secondary = agents[s].client();
    let epoch = secondary.status().await["shards"]["sh1"]["epoch"]
        .as_u64()
        .expect("epoch");

    // A secondary refuses writes with a hint, fences below its promise, and appends that do not
    // continue its log.
    let not_primary = secondary
        .post("/write", json!({"shard": "sh1", "data": [student(2)]}))
        .await;
    assert_code(&not_primary, ErrorCode::NotPrimary);
    assert_eq!(not_primary.1["primary"], primary.as_str());
    assert_code(
        &secondary
            .post("/shards/sh1/fence", json!({"epoch": epoch - 1}))
            .await,
        ErrorCode::StaleEpoch,
    );
    let epoch_header = epoch.to_string();
    let gap = secondary
        .call_with(
            Method::POST,
            "/shards/sh1/append",
            None,
            &[
                ("x-walshard-epoch", epoch_header.as_str()),
                ("x-walshard-primary", primary.as_str()),
                ("x-walshard-prev-lsn", "100000"),
                ("x-walshard-prev-epoch", epoch_header.as_str()),
                ("x-walshard-commit-lsn", "0"),
            ],
        )
        .await
        .expect("append");
    assert_code(&gap, ErrorCode::LogMismatch);

    // Through the router: a request error keeps its code.
    assert_code(
        &lb.post("/write", json!({"data": [student(9000)]})).await,
        ErrorCode::InvalidRequest,
    );
    assert_code(
        &lb.post(
            "/write",
            json!({"data": [student(1)], "on_duplicate": "error"}),
        )
        .await,
        ErrorCode::Conflict,
    );
    // Both secondaries down: the primary refuses at once with no-majority, the router relays it
    // at once (it branches on the code) instead of retrying until its deadline.
    for i in (0..3).filter(|i| *i != p) {
        agents[i].kill9();
    }
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let started = Instant::now();
    let refused = lb.post("/write", json!({"data": [student(3)]})).await;
    assert_code(&refused, ErrorCode::NoMajority);
    assert!(started.elapsed() < Duration::from_secs(5), "{refused:?}");
    let _ = stop_tx.send(());
}
