//! `HttpAgentApi` against a mock agent speaking docs/replication.md's endpoints.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value, json};
use walshard_contract::{Quorum, ReplicaRef, Role};
use walshard_control_plane::{AgentApi, AgentCallError, FenceReply, HttpAgentApi, HttpTimeouts};

const TOKEN: &str = "s3cret";

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, Value)>>>);

impl Seen {
    fn push(&self, what: String, body: Value) {
        self.0.lock().unwrap().push((what, body));
    }
    fn all(&self) -> Vec<(String, Value)> {
        self.0.lock().unwrap().clone()
    }
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer s3cret")
}

fn unauthorized() -> (StatusCode, Json<Value>) {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"message": "missing or wrong bearer token", "status": "failure"})),
    )
}

async fn status(headers: HeaderMap) -> (StatusCode, Json<Value>) {
    if !authorized(&headers) {
        return unauthorized();
    }
    (
        StatusCode::OK,
        Json(json!({
            "server": "Server0",
            "shards": {
                "sh1": {"role": "primary", "epoch": 3, "primary": "Server0", "last_epoch": 3,
                        "last_lsn": 10, "commit_lsn": 9, "applied_lsn": 9, "first_lsn": 1,
                        "halted": null},
                "sh2": {"role": "fenced", "epoch": 2, "primary": null, "last_epoch": 1,
                        "last_lsn": 4, "commit_lsn": 4, "applied_lsn": 4, "first_lsn": 1,
                        "halted": null}
            },
            "status": "success"
        })),
    )
}

async fn fence(
    State(seen): State<Seen>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if !authorized(&headers) {
        return unauthorized();
    }
    seen.push(format!("fence {id}"), body.clone());
    let epoch = body["epoch"].as_u64().unwrap_or(0);
    if epoch < 5 {
        (
            StatusCode::CONFLICT,
            Json(
                json!({"message": "stale epoch", "status": "failure", "epoch": 5, "primary": "Server1"}),
            ),
        )
    } else {
        (
            StatusCode::OK,
            Json(json!({"epoch": epoch, "last_epoch": 4, "last_lsn": 17, "status": "success"})),
        )
    }
}

async fn promote(
    State(seen): State<Seen>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if !authorized(&headers) {
        return unauthorized();
    }
    seen.push(format!("promote {id}"), body);
    match id.as_str() {
        "slow" => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"message": "no-op not committed yet", "status": "failure"})),
        ),
        "stale" => (
            StatusCode::CONFLICT,
            Json(
                json!({"message": "not fenced at this epoch", "status": "failure", "epoch": 9, "primary": null}),
            ),
        ),
        _ => (StatusCode::OK, Json(json!({"status": "success"}))),
    }
}

async fn step_down(
    State(seen): State<Seen>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if !authorized(&headers) {
        return unauthorized();
    }
    seen.push(format!("step-down {id}"), body);
    (
        StatusCode::OK,
        Json(json!({"last_lsn": 42, "status": "success"})),
    )
}

async fn mock_agent() -> (ReplicaRef, Seen) {
    let seen = Seen::default();
    let app = Router::new()
        .route("/status", get(status))
        .route("/shards/{id}/fence", post(fence))
        .route("/shards/{id}/promote", post(promote))
        .route("/shards/{id}/step-down", post(step_down))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (
        ReplicaRef {
            name: "Server0".into(),
            url: format!("http://{addr}"),
        },
        seen,
    )
}

fn api(token: &str) -> HttpAgentApi {
    HttpAgentApi::new(token, HttpTimeouts::default()).unwrap()
}

#[tokio::test]
async fn status_is_parsed_and_checked() {
    let (server, _) = mock_agent().await;
    let s = api(TOKEN).status(&server).await.unwrap();
    assert_eq!(s.shards["sh1"].role, Role::Primary);
    assert_eq!(s.shards["sh1"].commit_lsn, 9);
    assert_eq!(s.shards["sh2"].primary, None);

    let wrong_name = ReplicaRef {
        name: "Server7".into(),
        ..server.clone()
    };
    assert!(matches!(
        api(TOKEN).status(&wrong_name).await,
        Err(AgentCallError::WrongServer { .. })
    ));
    assert!(matches!(
        api("wrong").status(&server).await,
        Err(AgentCallError::Status { status: 401, .. })
    ));
}

#[tokio::test]
async fn fence_answers_and_conflicts() {
    let (server, seen) = mock_agent().await;
    let api = api(TOKEN);
    assert_eq!(
        api.fence(&server, "sh1", 3).await.unwrap(),
        FenceReply::Rejected {
            epoch: 5,
            primary: Some("Server1".into())
        }
    );
    match api.fence(&server, "sh1", 6).await.unwrap() {
        FenceReply::Accepted(a) => {
            assert_eq!((a.epoch, a.last_epoch, a.last_lsn), (6, 4, 17));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        seen.all(),
        vec![
            ("fence sh1".to_string(), json!({"epoch": 3})),
            ("fence sh1".to_string(), json!({"epoch": 6})),
        ]
    );
}

#[tokio::test]
async fn promote_sends_replicas_and_quorum() {
    let (server, seen) = mock_agent().await;
    let api = api(TOKEN);
    let replicas = vec![
        server.clone(),
        ReplicaRef {
            name: "Server1".into(),
            url: "http://127.0.0.1:1".into(),
        },
    ];
    api.promote(&server, "sh1", 7, replicas.clone(), Quorum::Majority)
        .await
        .unwrap();
    assert_eq!(
        api.promote(&server, "slow", 7, replicas.clone(), Quorum::All)
            .await,
        Err(AgentCallError::Unavailable(
            "no-op not committed yet".into()
        ))
    );
    assert!(matches!(
        api.promote(&server, "stale", 7, replicas, Quorum::All)
            .await,
        Err(AgentCallError::Conflict { epoch: 9, .. })
    ));
    let (what, body) = &seen.all()[0];
    assert_eq!(what, "promote sh1");
    assert_eq!(
        body,
        &json!({"epoch": 7, "quorum": "majority", "replicas": [
            {"name": "Server0", "url": server.url},
            {"name": "Server1", "url": "http://127.0.0.1:1"}
        ]})
    );
    assert_eq!(seen.all()[1].1["quorum"], "all");
}

#[tokio::test]
async fn step_down_returns_last_lsn() {
    let (server, seen) = mock_agent().await;
    assert_eq!(
        api(TOKEN).step_down(&server, "sh1", "Server2").await,
        Ok(42)
    );
    assert_eq!(
        seen.all(),
        vec![("step-down sh1".to_string(), json!({"to": "Server2"}))]
    );
}

#[tokio::test]
async fn refused_and_timed_out_connections_are_told_apart() {
    // A port with nothing listening.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let dead = ReplicaRef {
        name: "Server0".into(),
        url: format!("http://{addr}"),
    };
    assert_eq!(api(TOKEN).status(&dead).await, Err(AgentCallError::Refused));

    // A peer that accepts but never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let hung = ReplicaRef {
        name: "Server0".into(),
        url: format!("http://{addr}"),
    };
    let api = HttpAgentApi::new(
        TOKEN,
        HttpTimeouts {
            status: Duration::from_millis(100),
            ..HttpTimeouts::default()
        },
    )
    .unwrap();
    assert_eq!(api.status(&hung).await, Err(AgentCallError::Timeout));
}
