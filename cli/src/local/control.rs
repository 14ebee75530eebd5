//! The control API of a local fleet (loopback, bearer token = the cluster token):
//!
//! - `GET /v1/fleet?after=<version>&wait_ms=<ms>`: the [`FleetView`] routers follow (long poll:
//!   answers when the version is newer than `after`, or after `wait_ms`, at most 30 s);
//! - `GET /v1/servers`: each server's process ids and data dir;
//! - `POST /v1/init`, `POST /v1/add`, `DELETE /v1/rm`: the seed's administrative requests,
//!   forwarded by the router, with the seed's answers;
//! - `POST /v1/switchover` (`{"shard": "sh1", "to": "Server2"}`): a planned switchover, answered
//!   once `to` is primary (`walshard switchover`);
//! - `GET /metrics`: the control plane's and the supervisor's Prometheus metrics (no token).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;
use walshard_contract::ApiError;
use walshard_contract::answers::{self, openmetrics, parse_json};
use walshard_contract::bearer::{BearerToken, require_bearer};
use walshard_router::fleet::FleetView;

use super::shared::Shared;

/// The longest a `GET /v1/fleet` is held.
const MAX_WAIT: Duration = Duration::from_secs(30);

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/fleet", get(fleet))
        .route("/v1/servers", get(servers))
        .route("/v1/init", post(init))
        .route("/v1/add", post(add))
        .route("/v1/rm", delete(rm))
        .route("/v1/switchover", post(switchover))
        .layer(axum::middleware::from_fn_with_state(
            BearerToken::new(shared.token()),
            require_bearer,
        ))
        .route("/metrics", get(metrics))
        .fallback(answers::no_such_endpoint)
        .with_state(shared)
}

#[derive(Debug, Deserialize)]
struct FleetQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    wait_ms: u64,
}

async fn fleet(State(shared): State<Arc<Shared>>, Query(q): Query<FleetQuery>) -> Json<FleetView> {
    let mut views = shared.views();
    let wait = Duration::from_millis(q.wait_ms).min(MAX_WAIT);
    // A timeout just answers with the current view.
    let _ = tokio::time::timeout(wait, views.wait_for(|v| v.version > q.after)).await;
    let mut view = views.borrow().clone();
    // The version moves with what routers depend on (layout, URLs, primaries); the rest of the
    // topology (lag, roles, reachability) is answered as it is now.
    view.topology = shared.topology();
    Json(view)
}

async fn servers(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(shared.processes())
}

fn answer(result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn init(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    answer(async { shared.init(&parse_json(&body)?).await }.await)
}

async fn add(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    answer(async { shared.add(&parse_json(&body)?).await }.await)
}

async fn rm(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    answer(async { shared.rm(&parse_json(&body)?).await }.await)
}

async fn switchover(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    answer(async { shared.switchover(&parse_json(&body)?).await }.await)
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &shared.registry).is_err() {
        out.clear();
    }
    openmetrics(out)
}
