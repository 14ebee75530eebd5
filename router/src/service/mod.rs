//! The router's seed API over HTTP.
//!
//! - Reads fan out over the shards a range touches, in parallel. An eventual read goes to the
//!   replica the shard's consistent-hash ring picks for the request, falling back around the ring
//!   if it fails; a strong read goes to the primary, which runs a read-index round.
//! - Writes are validated whole, grouped per shard, and sent to every shard's primary in
//!   parallel, each group with an operation id that stays the same across retries (so a retry
//!   after a timeout or a failover is applied once). A "not the primary" answer (421) is followed
//!   to the primary it names, or the topology is asked again; an in-doubt 503 or a lost
//!   connection is retried until [`WRITE_DEADLINE`]. If some shards fail, the answer says exactly
//!   which entries were written.
//!
//! Concurrent requests for the same shard primary or replica are coalesced (`batches`, over
//! [`crate::coalesce`]): one agent call carries them all, each answered on its own.
//!
//! Modules: `state` (the shared [`RouterState`] and the token check), `agents` (calls to the
//! agents, with retries), `batches` (the coalesced calls), `handlers` (the data-path endpoints), `admin` (`/init`, `/add`, `/rm`
//! and [`follow`]), `metrics`.

mod admin;
mod agents;
mod batches;
mod handlers;
mod metrics;
mod state;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use walshard_contract::answers;

pub use admin::follow;
pub use agents::WRITE_DEADLINE;
pub use metrics::RouterMetrics;
pub use state::RouterState;

/// The router's endpoints: the seed API (behind the tokens, if set) and `/metrics`.
pub fn router(state: Arc<RouterState>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/read", post(handlers::read))
        .route("/write", post(handlers::write))
        .route("/update", put(handlers::update))
        .route("/del", delete(handlers::del))
        .route("/read/{server}", get(handlers::read_server))
        .route("/status", get(handlers::status))
        .route("/init", post(admin::init))
        .route("/add", post(admin::add))
        .route("/rm", delete(admin::rm))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            state::check_tokens,
        ))
        .route("/metrics", get(handlers::metrics))
        .fallback(answers::no_such_endpoint)
        .method_not_allowed_fallback(answers::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}
