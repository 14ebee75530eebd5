//! Request extraction: JSON bodies in the failure format, and the shard named in the path.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde_json::Value as Json_;
use walshard_contract::{ApiError, Ident, answers};

use crate::agent::Agent;
use crate::shard::Shard;

/// A JSON body; malformed JSON is a 400, an oversized body a 413, both in the failure format.
pub struct JsonBody(pub Json_);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            ApiError::new(e.status(), format!("cannot read body: {}", e.body_text()))
        })?;
        answers::parse_json(&bytes).map(JsonBody)
    }
}

/// The shard named in the path, or 404.
pub(super) fn shard_in_path(agent: &Agent, id: &str) -> Result<Arc<Shard>, ApiError> {
    Ident::new(id)
        .ok()
        .and_then(|id| agent.shard(&id))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("shard {id} is not on this server"),
            )
        })
}

/// A JSON body as `T`, or 400 `"<what>: <why>"`.
pub(super) fn body_named<T: serde::de::DeserializeOwned>(
    body: Json_,
    what: &str,
) -> Result<T, ApiError> {
    serde_json::from_value(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("{what}: {e}")))
}
