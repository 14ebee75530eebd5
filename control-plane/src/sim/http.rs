//! Simulated agents ([`SimCluster`]) behind real HTTP: the agent endpoints of
//! docs/replication.md plus `/config`, for control-plane tests over the network.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value, json};
use walshard_contract::{FenceRequest, PromoteRequest, StepDownRequest};

use super::SimCluster;
use crate::runtime::{AgentCallError, FenceReply};

/// The bearer token the simulated agents require.
pub const TOKEN: &str = "t0ken";

/// One simulated agent: server `name` of the shared cluster.
#[derive(Clone)]
pub struct Agent {
    /// The simulated server it serves as.
    pub name: String,
    /// The simulated cluster, shared with the other agents.
    pub sim: Arc<Mutex<SimCluster>>,
}

impl Agent {
    /// Locks the cluster (a poisoned lock is taken over).
    pub fn sim(&self) -> MutexGuard<'_, SimCluster> {
        self.sim.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A status and a JSON body.
pub type Answer = (StatusCode, Json<Value>);

fn failure(e: AgentCallError) -> Answer {
    match e {
        AgentCallError::Conflict {
            epoch,
            primary,
            message,
        } => (
            StatusCode::CONFLICT,
            Json(
                json!({"message": message, "status": "failure", "code": "stale-epoch", "epoch": epoch, "primary": primary}),
            ),
        ),
        AgentCallError::Status { status, message } => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            Json(
                json!({"message": message, "status": "failure", "code": walshard_contract::ErrorCode::from_status(status)}),
            ),
        ),
        AgentCallError::Unavailable(m) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"message": m, "status": "failure", "code": "not-ready"})),
        ),
        other => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"message": other.to_string(), "status": "failure", "code": "unavailable"})),
        ),
    }
}

/// 200 with `value`, or 500 when it does not serialize.
fn json_answer(value: &impl serde::Serialize) -> Answer {
    match serde_json::to_value(value) {
        Ok(v) => (StatusCode::OK, Json(v)),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"message": e.to_string(), "status": "failure", "code": "internal"})),
        ),
    }
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

fn unauthorized() -> Answer {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"message": "token", "status": "failure", "code": "unauthorized"})),
    )
}

async fn status(State(a): State<Agent>, headers: HeaderMap) -> Answer {
    if !authorized(&headers) {
        return unauthorized();
    }
    let mut sim = a.sim();
    if sim.mode(&a.name).is_none() {
        // A new agent: up, not configured.
        return (
            StatusCode::OK,
            Json(json!({"server": a.name, "shards": {}})),
        );
    }
    match sim.status(&a.name) {
        Ok(s) => json_answer(&s),
        Err(e) => failure(e),
    }
}

async fn config(State(a): State<Agent>, headers: HeaderMap, Json(body): Json<Value>) -> Answer {
    if !authorized(&headers) {
        return unauthorized();
    }
    let mut sim = a.sim();
    for shard in body["shards"].as_array().into_iter().flatten() {
        if let Some(id) = shard["Shard_id"].as_str() {
            sim.add_replica(&a.name, id);
        }
    }
    (StatusCode::OK, Json(json!({"status": "success"})))
}

async fn fence(
    State(a): State<Agent>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<FenceRequest>,
) -> Answer {
    if !authorized(&headers) {
        return unauthorized();
    }
    let result = a.sim().fence(&a.name, &id, body.epoch);
    match result {
        Ok(FenceReply::Accepted(acc)) => json_answer(&acc),
        Ok(FenceReply::Rejected { epoch, primary }) => failure(AgentCallError::Conflict {
            epoch,
            primary,
            message: "epoch already promised".into(),
        }),
        Err(e) => failure(e),
    }
}

async fn promote(
    State(a): State<Agent>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<PromoteRequest>,
) -> Answer {
    if !authorized(&headers) {
        return unauthorized();
    }
    let result = a
        .sim()
        .promote(&a.name, &id, body.epoch, &body.replicas, body.quorum);
    match result {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "success"}))),
        Err(e) => failure(e),
    }
}

async fn step_down(
    State(a): State<Agent>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<StepDownRequest>,
) -> Answer {
    if !authorized(&headers) {
        return unauthorized();
    }
    let result = a.sim().step_down(&a.name, &id, &body.to);
    match result {
        Ok(last_lsn) => (StatusCode::OK, Json(json!({"last_lsn": last_lsn}))),
        Err(e) => failure(e),
    }
}

/// Serves `agent` on a loopback port; its base URL.
pub async fn serve_agent(agent: Agent) -> std::io::Result<String> {
    serve(agent_router(agent)).await
}

/// The routes of a simulated agent (to serve some other way, e.g. over TLS).
pub fn agent_router(agent: Agent) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/config", post(config))
        .route("/shards/{id}/fence", post(fence))
        .route("/shards/{id}/promote", post(promote))
        .route("/shards/{id}/step-down", post(step_down))
        .with_state(agent)
}

/// Serves `app` on a loopback port; its base URL.
pub async fn serve(app: Router) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}"))
}
