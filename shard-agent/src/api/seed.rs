//! The seed's server endpoints: `/config`, `/copy`, `/read`, `/write`, `/update` and `/del`. Data
//! answers carry the log position they reflect in [`LSN_HEADER`].

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value as Json_, json};
use walshard_contract::{
    ApiError, ErrorCode, Ident, RequestError, Row, STATUS_SUCCESS, Schema, ShardSpec, answers,
    duplicate_message,
};

use super::{AppState, JsonBody, LSN_HEADER, OP_ID_HEADER};
use crate::agent::Agent;
use crate::ops::{Op, Outcome};
use crate::requests;
use crate::shard::{Shard, ShardError};
use crate::wal::OpId;

/// A data answer: the JSON body, with the log position in [`LSN_HEADER`].
pub(super) fn at_position(lsn: u64, body: Json_) -> Response {
    ([(LSN_HEADER, lsn.to_string())], Json(body)).into_response()
}

/// `POST /config`: sets the schema (once) and adds shards; shards present already are kept.
pub(super) async fn config(
    State(agent): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Json<Json_>, ApiError> {
    let (schema, shards) = requests::parse_config(&body)?;
    let ids = agent.configure(schema, shards).await?;
    let name = &agent.config.server_name;
    let list: Vec<String> = ids.iter().map(|id| format!("{name}:{id}")).collect();
    Ok(Json(json!({
        "message": format!("{} configured", list.join(", ")),
        "status": STATUS_SUCCESS,
    })))
}

/// The schema and the named shard, or 400 (not configured) / 404 (unknown shard).
pub(super) async fn target(agent: &Agent, id: &Ident) -> Result<(Schema, Arc<Shard>), ApiError> {
    let schema = agent.schema().await.ok_or_else(|| {
        ApiError::coded(
            ErrorCode::NotConfigured,
            "this server is not configured yet: POST /config first",
        )
    })?;
    let shard = agent.shard(id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("shard {id} is not on this server"),
        )
    })?;
    Ok((schema, shard))
}

pub(super) fn rows_json(schema: &Schema, rows: &[Row]) -> Json_ {
    Json_::Array(
        rows.iter()
            .map(|r| Json_::Object(r.to_json(schema)))
            .collect(),
    )
}

/// `GET /copy`: every row of the named shards (from the body or the query string); with
/// `"min_lsn"`/`"wait_ms"`, each shard first waits to have applied its position.
pub(super) async fn copy(
    State(agent): State<AppState>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Json<Json_>, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(answers::parse_json(&body)?)
    };
    let ids = requests::parse_copy(body.as_ref(), query.as_deref())?;
    let positions = match &body {
        Some(b) => requests::copy_positions(b)?,
        None => None,
    };
    let mut out = Map::new();
    let mut applied = Map::new();
    // One wait for the whole request, however many shards it names.
    let deadline = positions.as_ref().map(|(_, wait)| Instant::now() + *wait);
    for id in ids {
        let (schema, shard) = target(&agent, &id).await?;
        if let (Some((min_lsn, _)), Some(deadline)) = (&positions, deadline) {
            let at = min_lsn.get(id.as_str()).copied().unwrap_or(0);
            let left = deadline.saturating_duration_since(Instant::now());
            applied.insert(id.to_string(), shard.read_position(at, left).await?.into());
        }
        let rows = agent_rows(&agent, &shard).await?;
        out.insert(id.to_string(), rows_json(&schema, &rows));
    }
    if positions.is_some() {
        out.insert("applied_lsn".into(), Json_::Object(applied));
    }
    out.insert("status".into(), STATUS_SUCCESS.into());
    Ok(Json(Json_::Object(out)))
}

async fn agent_rows(agent: &Agent, shard: &Shard) -> Result<Vec<Row>, ApiError> {
    agent
        .store()
        .read_all(&shard.table)
        .await
        .map_err(|e| ApiError::from(ShardError::from(e)))
}

/// `POST /read`: the rows of a key range in one shard, eventual, session (`"min_lsn"`) or
/// strong (read index on the primary).
pub(super) async fn read(
    State(agent): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let id = requests::shard_field(&body)?;
    let (schema, shard) = target(&agent, &id).await?;
    let range = requests::parse_read(&schema, &body)?;
    let applied = if requests::wants_strong(&body)? {
        shard.read_barrier().await?;
        shard.applied_lsn()
    } else {
        let (min_lsn, wait) = requests::read_position(&body)?;
        shard.read_position(min_lsn, wait).await?
    };
    let rows = agent
        .store()
        .read_range(&shard.table, range)
        .await
        .map_err(|e| ApiError::from(ShardError::from(e)))?;
    Ok(at_position(
        applied,
        json!({"data": rows_json(&schema, &rows), "status": STATUS_SUCCESS}),
    ))
}

/// The op id of a single request: its header, or a new one.
fn op_id(headers: &HeaderMap) -> Result<OpId, ApiError> {
    match headers.get(OP_ID_HEADER) {
        None => Ok(OpId(uuid::Uuid::new_v4().as_u128())),
        Some(v) => parse_op_id(v.to_str().ok(), OP_ID_HEADER),
    }
}

/// An op id as 32 hex digits, not all zero; else 400 naming `field`.
pub(super) fn parse_op_id(text: Option<&str>, field: &str) -> Result<OpId, ApiError> {
    text.and_then(|s| s.parse::<OpId>().ok())
        .filter(|id| *id != OpId::default())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("{field} must be 32 hex digits, not all zero"),
            )
        })
}

/// Submits an op and turns its outcome into the seed's answer. A write of no rows changes nothing
/// and is answered at once.
async fn run_op(
    shard: &Shard,
    schema: &Schema,
    headers: &HeaderMap,
    op: Op,
) -> Result<(u64, Json_), ApiError> {
    let outcome = match &op {
        Op::Write { rows, .. } if rows.is_empty() => nothing_written(),
        _ => shard.submit(op_id(headers)?, op).await?,
    };
    let mut answer = answer_of(schema, outcome)?;
    answer["status"] = STATUS_SUCCESS.into();
    // The op is applied here: a read that waits for this position sees it (a causality token).
    Ok((shard.applied_lsn(), answer))
}

/// The outcome of a write of no rows, which is not logged.
pub(super) fn nothing_written() -> Outcome {
    Outcome::Written {
        count: 0,
        skipped: Vec::new(),
    }
}

/// An op's outcome as its endpoint answers it (without the `status` word): a success body, or
/// 409 (duplicate keys) / 404 (no such row).
pub(super) fn answer_of(schema: &Schema, outcome: Outcome) -> Result<Json_, ApiError> {
    let key = schema.key();
    Ok(match outcome {
        Outcome::Written { count, skipped } => {
            let mut v = json!({"message": "Data entries added", "count": count});
            if !skipped.is_empty() {
                v["skipped"] = json!(skipped);
            }
            v
        }
        Outcome::Updated { key: k } => {
            json!({"message": format!("Data entry for {key}:{k} updated")})
        }
        Outcome::Deleted { key: k } => {
            json!({"message": format!("Data entry with {key}:{k} removed")})
        }
        Outcome::Nothing => json!({"message": "nothing to do"}),
        Outcome::Conflict { keys } => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                duplicate_message(key.as_str(), &keys, "already present"),
            ));
        }
        Outcome::NotFound { key: k } => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no data entry with {key}:{k}"),
            ));
        }
    })
}

/// A request parser for one of the mutating endpoints.
pub(super) type ParseOp = fn(&Schema, Option<&ShardSpec>, &Json_) -> Result<Op, RequestError>;

/// `/write`, `/update` and `/del`: find the shard, parse the op, run it.
async fn mutate(
    agent: &Agent,
    headers: &HeaderMap,
    body: &Json_,
    parse: ParseOp,
) -> Result<(u64, Json_), ApiError> {
    let id = requests::shard_field(body)?;
    let (schema, shard) = target(agent, &id).await?;
    let op = parse(&schema, shard.range.as_ref(), body)?;
    run_op(&shard, &schema, headers, op).await
}

/// `/write`; the seed's `"curr_idx"` is answered as `"current_idx"` (`curr_idx` + rows added).
pub(super) async fn write(
    State(agent): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let curr_idx = requests::curr_idx(&body)?;
    let (lsn, mut answer) = mutate(&agent, &headers, &body, requests::parse_write).await?;
    if let Some(idx) = curr_idx {
        let added = answer["count"].as_i64().unwrap_or(0);
        answer["current_idx"] = json!(idx.saturating_add(added));
    }
    Ok(at_position(lsn, answer))
}

/// `PUT /update`: sets columns of one row, through the WAL.
pub(super) async fn update(
    State(agent): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    mutate(&agent, &headers, &body, requests::parse_update)
        .await
        .map(|(lsn, answer)| at_position(lsn, answer))
}

/// `DELETE /del`: removes one row, through the WAL.
pub(super) async fn del(
    State(agent): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    mutate(&agent, &headers, &body, requests::parse_delete)
        .await
        .map(|(lsn, answer)| at_position(lsn, answer))
}
