//! The endpoints of replication and elections (docs/replication.md): the control plane's fence,
//! promote and step-down, a primary's read-index confirmation, appends and snapshot installs.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value as Json_, json};
use walshard_contract::{
    ApiError, FenceAccepted, FenceRequest, PromoteRequest, ReplicaRef, STATUS_SUCCESS,
    StepDownReply, StepDownRequest, Success,
};

use super::extract::{body_named, shard_in_path};
use super::{AppState, JsonBody};
use crate::replication::{
    AppendRequest, H_COMMIT, H_EPOCH, H_PREV_EPOCH, H_PREV_LSN, H_PRIMARY, decode_entries,
};
use crate::store::Snapshot;

/// The JSON body as `T`, or 400 with `message`.
fn body_as<T: serde::de::DeserializeOwned>(body: Json_, message: &str) -> Result<T, ApiError> {
    serde_json::from_value(body).map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, message))
}

fn epoch_field(body: &Json_) -> Result<u64, ApiError> {
    body.get("epoch").and_then(Json_::as_u64).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "\"epoch\" must be a non-negative integer",
        )
    })
}

/// `POST /shards/{id}/fence`: promises `"epoch"`; answers the last entry of this replica's log.
pub(super) async fn fence(
    State(agent): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Success<FenceAccepted>>, ApiError> {
    let shard = shard_in_path(&agent, &id)?;
    let req: FenceRequest = body_as(body, "\"epoch\" must be a non-negative integer")?;
    Ok(Json(Success::new(shard.fence(req.epoch).await?)))
}

/// `POST /shards/{id}/promote`: becomes primary of `"epoch"` over `"replicas"` (this server
/// left out of its peers) with `"quorum"`.
pub(super) async fn promote(
    State(agent): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Json_>, ApiError> {
    let shard = shard_in_path(&agent, &id)?;
    let req: PromoteRequest = body_named(body, "promote")?;
    let me = &agent.config.server_name;
    let peers: Vec<ReplicaRef> = req.replicas.into_iter().filter(|p| &p.name != me).collect();
    shard.promote(req.epoch, peers, req.quorum).await?;
    Ok(Json(
        json!({"message": format!("{me} is primary of {id} in epoch {}", req.epoch), "status": STATUS_SUCCESS}),
    ))
}

/// `POST /shards/{id}/confirm`: a primary's read-index check that this replica still follows
/// it in `"epoch"`.
pub(super) async fn confirm(
    State(agent): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Json_>, ApiError> {
    let shard = shard_in_path(&agent, &id)?;
    let primary = body
        .get("primary")
        .and_then(Json_::as_str)
        .unwrap_or_default();
    shard.confirm_primary(epoch_field(&body)?, primary).await?;
    Ok(Json(json!({"status": STATUS_SUCCESS})))
}

/// `POST /shards/{id}/step-down`: a planned switchover to `"to"`; answers once it holds every
/// entry.
pub(super) async fn step_down(
    State(agent): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Success<StepDownReply>>, ApiError> {
    let shard = shard_in_path(&agent, &id)?;
    let req: StepDownRequest = body_as(body, "\"to\" must name a replica")?;
    let last_lsn = shard.step_down(&req.to).await?;
    Ok(Json(Success::new(StepDownReply { last_lsn })))
}

/// The sending primary's name (`x-walshard-primary`).
fn primary_header(headers: &HeaderMap) -> Result<String, ApiError> {
    headers
        .get(H_PRIMARY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("header {H_PRIMARY} is required"),
            )
        })
}

fn header_u64(headers: &HeaderMap, name: &str) -> Result<u64, ApiError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("header {name} must be an integer"),
            )
        })
}

/// `POST /shards/{id}/append`: WAL frames from the primary, with its epoch, name, previous
/// entry and commit point in headers; answers the last LSN held.
pub(super) async fn append(
    State(agent): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Json_>, ApiError> {
    let shard = shard_in_path(&agent, &id)?;
    let primary = primary_header(&headers)?;
    let entries = decode_entries(&body).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let req = AppendRequest {
        epoch: header_u64(&headers, H_EPOCH)?,
        primary,
        prev_lsn: header_u64(&headers, H_PREV_LSN)?,
        prev_epoch: header_u64(&headers, H_PREV_EPOCH)?,
        commit_lsn: header_u64(&headers, H_COMMIT)?,
        entries,
    };
    let last_lsn = shard.append(req).await?;
    Ok(Json(
        json!({"last_lsn": last_lsn, "status": STATUS_SUCCESS}),
    ))
}

/// `POST /shards/{id}/install-snapshot`: replaces this replica's state by the primary's
/// [`Snapshot`] (no body limit); answers the snapshot's LSN.
pub(super) async fn install_snapshot(
    State(agent): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Json_>, ApiError> {
    let shard = shard_in_path(&agent, &id)?;
    let primary = primary_header(&headers)?;
    let snap: Snapshot = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("snapshot: {e}")))?;
    let last_lsn = shard
        .install_snapshot(header_u64(&headers, H_EPOCH)?, &primary, snap)
        .await?;
    Ok(Json(
        json!({"last_lsn": last_lsn, "status": STATUS_SUCCESS}),
    ))
}
