//! The agent's HTTP API: the seed's server endpoints plus `/status` and `/metrics`.
//!
//! Every answer is JSON with a `status` word; every failure is a 4xx/5xx with
//! `{"message": ..., "status": "failure", "code": ...}` (codes: `walshard_contract::ErrorCode`). All endpoints but `/heartbeat` and `/metrics` need
//! `Authorization: Bearer <token>`.
//!
//! This file holds the routing; beside it: `seed` (the seed's server endpoints), `replica` (the
//! endpoints of replication and elections), `batch` (the router's coalesced writes and reads), `backup` (base backups), `observe` (`/heartbeat`,
//! `/metrics`, `/status` and the request metrics), `extract` (request bodies and path
//! parameters) and `errors` (shard and agent errors as API errors).

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::{delete, get, post, put};
use walshard_contract::answers;
use walshard_contract::bearer::{BearerToken, require_bearer};

use crate::agent::Agent;

mod backup;
mod batch;
mod errors;
mod extract;
mod observe;
mod replica;
mod seed;

pub use extract::JsonBody;

/// Header carrying the operation id that makes a retried write idempotent.
pub const OP_ID_HEADER: &str = "x-walshard-op-id";
/// Header of data answers: the log position the answer reflects (a write: this replica applied it
/// at or below this LSN; a read: the state read had applied this LSN). Session reads wait for it.
pub const LSN_HEADER: &str = "x-walshard-lsn";

/// The state every handler gets: the agent.
pub type AppState = Arc<Agent>;

/// The agent's router with auth, metrics and body-limit layers.
pub fn router(agent: AppState, token: String, max_body_bytes: usize) -> Router {
    let protected = Router::new()
        .route("/config", post(seed::config))
        .route("/copy", get(seed::copy))
        .route("/read", post(seed::read))
        .route("/write", post(seed::write))
        .route("/update", put(seed::update))
        .route("/del", delete(seed::del))
        .route("/status", get(observe::status))
        .route("/shards/{id}/writes", post(batch::writes))
        .route("/reads", post(batch::reads))
        .route("/shards/{id}/fence", post(replica::fence))
        .route("/shards/{id}/promote", post(replica::promote))
        .route("/shards/{id}/confirm", post(replica::confirm))
        .route("/shards/{id}/step-down", post(replica::step_down))
        .route("/shards/{id}/base-backup", post(backup::base_backup))
        .route(
            "/shards/{id}/install-snapshot",
            post(replica::install_snapshot).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route(
            "/shards/{id}/append",
            post(replica::append).layer(axum::extract::DefaultBodyLimit::max(
                crate::replication::MAX_BATCH_BYTES + (64 << 20),
            )),
        )
        .route_layer(middleware::from_fn_with_state(
            BearerToken::new(token),
            require_bearer,
        ));
    Router::new()
        .route("/heartbeat", get(observe::heartbeat))
        .route("/metrics", get(observe::metrics))
        .merge(protected)
        .fallback(answers::no_such_endpoint)
        .method_not_allowed_fallback(answers::method_not_allowed)
        .layer(middleware::from_fn_with_state(
            agent.clone(),
            observe::record_metrics,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .with_state(agent)
}
