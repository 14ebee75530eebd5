//! The agent's HTTP API: the seed's server endpoints plus `/status` and `/metrics`.
//!
//! Every answer is JSON with a `status` word; every failure is a 4xx/5xx with
//! `{"message": ..., "status": "failure", "code": ...}` (codes: `walshard_contract::ErrorCode`). All endpoints but `/heartbeat` and `/metrics` need
//! `Authorization: Bearer <token>`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{FromRequest, MatchedPath, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde_json::{Map, Value as Json_, json};
use walshard_contract::answers;
use walshard_contract::bearer::{BearerToken, require_bearer};
use walshard_contract::{
    AgentStatus, ApiError, DiskReport, ErrorCode, FenceAccepted, FenceRequest, Ident,
    PromoteRequest, ReplicaRef, RequestError, Row, STATUS_SUCCESS, Schema, ShardSpec,
    StepDownReply, StepDownRequest, Success, duplicate_message,
};

use crate::agent::{Agent, AgentError};
use crate::ops::{Op, Outcome};
use crate::replication::{
    AppendRequest, H_COMMIT, H_EPOCH, H_PREV_EPOCH, H_PREV_LSN, H_PRIMARY, decode_entries,
};
use crate::requests;
use crate::shard::{Shard, ShardError};
use crate::store::Snapshot;
use crate::wal::OpId;

/// Header carrying the operation id that makes a retried write idempotent.
pub const OP_ID_HEADER: &str = "x-walshard-op-id";
/// Header of data answers: the log position the answer reflects (a write: this replica applied it
/// at or below this LSN; a read: the state read had applied this LSN). Session reads wait for it.
pub const LSN_HEADER: &str = "x-walshard-lsn";

/// A data answer: the JSON body, with the log position in [`LSN_HEADER`].
fn at_position(lsn: u64, body: Json_) -> Response {
    ([(LSN_HEADER, lsn.to_string())], Json(body)).into_response()
}

impl From<ShardError> for ApiError {
    fn from(e: ShardError) -> Self {
        let message = e.to_string();
        let code = match &e {
            ShardError::NotAppliedYet { .. } => ErrorCode::NotCommitted,
            ShardError::Halted { .. } => ErrorCode::Halted,
            ShardError::ShuttingDown => ErrorCode::ShuttingDown,
            ShardError::NotReady { .. } => ErrorCode::NotReady,
            ShardError::NoQuorum { .. } => ErrorCode::NoMajority,
            ShardError::Store(_) => ErrorCode::Unavailable,
            ShardError::NotPrimary { .. } => ErrorCode::NotPrimary,
            ShardError::Stale { .. } => ErrorCode::StaleEpoch,
            ShardError::Mismatch { .. } => ErrorCode::LogMismatch,
            ShardError::BadRequest(_) => ErrorCode::InvalidRequest,
            ShardError::Behind { .. } => ErrorCode::ReplicaBehind,
            ShardError::CatchingUp { .. } => ErrorCode::CatchingUp,
            ShardError::DiskFull { .. } => ErrorCode::DiskFull,
            _ => ErrorCode::Internal,
        };
        let err = ApiError::coded(code, message);
        match e {
            ShardError::NotPrimary { primary, epoch, .. } => {
                err.with("primary", primary).with("epoch", epoch)
            }
            ShardError::Stale { epoch, primary } => {
                err.with("epoch", epoch).with("primary", primary)
            }
            ShardError::Mismatch {
                last_lsn,
                last_epoch,
            } => err
                .with("last_lsn", last_lsn)
                .with("last_epoch", last_epoch),
            ShardError::Behind {
                applied, wanted, ..
            } => err.with("applied_lsn", applied).with("wanted_lsn", wanted),
            ShardError::DiskFull { server, shard, .. } => {
                err.with("server", server).with("shard", shard)
            }
            _ => err,
        }
    }
}

impl From<AgentError> for ApiError {
    fn from(e: AgentError) -> Self {
        let code = match e {
            AgentError::SchemaMismatch | AgentError::RangeMismatch(_) => ErrorCode::Conflict,
            AgentError::Layout(_) => ErrorCode::InvalidRequest,
            AgentError::Shard(ShardError::Store(_)) | AgentError::Store(_) => {
                ErrorCode::Unavailable
            }
            _ => ErrorCode::Internal,
        };
        ApiError::coded(code, e.to_string())
    }
}

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

mod backup;

/// The state every handler gets: the agent.
pub type AppState = Arc<Agent>;

/// The agent's router with auth, metrics and body-limit layers.
pub fn router(agent: AppState, token: String, max_body_bytes: usize) -> Router {
    let protected = Router::new()
        .route("/config", post(config))
        .route("/copy", get(copy))
        .route("/read", post(read))
        .route("/write", post(write))
        .route("/update", put(update))
        .route("/del", delete(del))
        .route("/status", get(status))
        .route("/shards/{id}/fence", post(fence))
        .route("/shards/{id}/promote", post(promote))
        .route("/shards/{id}/confirm", post(confirm))
        .route("/shards/{id}/step-down", post(step_down))
        .route("/shards/{id}/base-backup", post(backup::base_backup))
        .route(
            "/shards/{id}/install-snapshot",
            post(install_snapshot).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route(
            "/shards/{id}/append",
            post(append).layer(axum::extract::DefaultBodyLimit::max(
                crate::replication::MAX_BATCH_BYTES + (64 << 20),
            )),
        )
        .route_layer(middleware::from_fn_with_state(
            BearerToken::new(token),
            require_bearer,
        ));
    Router::new()
        .route("/heartbeat", get(heartbeat))
        .route("/metrics", get(metrics))
        .merge(protected)
        .fallback(answers::no_such_endpoint)
        .method_not_allowed_fallback(answers::method_not_allowed)
        .layer(middleware::from_fn_with_state(
            agent.clone(),
            record_metrics,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .with_state(agent)
}

async fn record_metrics(State(agent): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    let labels = crate::metrics::HttpLabels {
        method,
        path,
        status: resp.status().as_u16(),
    };
    agent.metrics.http_requests.get_or_create(&labels).inc();
    agent
        .metrics
        .http_seconds
        .get_or_create(&labels)
        .observe(start.elapsed().as_secs_f64());
    resp
}

async fn heartbeat() -> StatusCode {
    StatusCode::OK
}

async fn metrics(State(agent): State<AppState>) -> Response {
    for shard in agent.shards() {
        shard.refresh_metrics();
    }
    let disk = disk_report(&agent);
    let m = &agent.metrics;
    m.disk_free_bytes.set(
        disk.free_bytes
            .and_then(|b| i64::try_from(b).ok())
            .unwrap_or(-1),
    );
    m.disk_full.set(i64::from(disk.full));
    answers::openmetrics(agent.metrics.encode())
}

async fn config(
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
async fn target(agent: &Agent, id: &Ident) -> Result<(Schema, Arc<Shard>), ApiError> {
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

fn rows_json(schema: &Schema, rows: &[Row]) -> Json_ {
    Json_::Array(
        rows.iter()
            .map(|r| Json_::Object(r.to_json(schema)))
            .collect(),
    )
}

async fn copy(
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

async fn read(
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

fn op_id(headers: &HeaderMap) -> Result<OpId, ApiError> {
    match headers.get(OP_ID_HEADER) {
        None => Ok(OpId(uuid::Uuid::new_v4().as_u128())),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.parse::<OpId>().ok())
            .filter(|id| *id != OpId::default())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("{OP_ID_HEADER} must be 32 hex digits, not all zero"),
                )
            }),
    }
}

/// Submits an op and turns its outcome into the seed's answer. A write of no rows changes nothing
/// and is answered at once.
async fn run_op(
    shard: &Shard,
    schema: &Schema,
    headers: &HeaderMap,
    op: Op,
) -> Result<(u64, Json_), ApiError> {
    let key = schema.key();
    let outcome = match &op {
        Op::Write { rows, .. } if rows.is_empty() => Outcome::Written {
            count: 0,
            skipped: Vec::new(),
        },
        _ => shard.submit(op_id(headers)?, op).await?,
    };
    let answer = match outcome {
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
                duplicate_message(schema.key().as_str(), &keys, "already present"),
            ));
        }
        Outcome::NotFound { key: k } => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no data entry with {key}:{k}"),
            ));
        }
    };
    let mut answer = answer;
    answer["status"] = STATUS_SUCCESS.into();
    // The op is applied here: a read that waits for this position sees it (a causality token).
    Ok((shard.applied_lsn(), answer))
}

/// A request parser for one of the mutating endpoints.
type ParseOp = fn(&Schema, Option<&ShardSpec>, &Json_) -> Result<Op, RequestError>;

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
async fn write(
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

async fn update(
    State(agent): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    mutate(&agent, &headers, &body, requests::parse_update)
        .await
        .map(|(lsn, answer)| at_position(lsn, answer))
}

async fn del(
    State(agent): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    mutate(&agent, &headers, &body, requests::parse_delete)
        .await
        .map(|(lsn, answer)| at_position(lsn, answer))
}

async fn status(State(agent): State<AppState>) -> Json<Success<AgentStatus>> {
    let schema = agent.schema().await;
    let shards = agent
        .shards()
        .iter()
        .map(|s| (s.id().to_string(), s.status()))
        .collect();
    Json(Success::new(AgentStatus {
        server: Some(agent.config.server_name.clone()),
        schema,
        shards,
        disk: Some(disk_report(&agent)),
        archive: archive_report(&agent),
    }))
}

/// The volume's free space against its reserve; `"full"` while writes are refused.
fn disk_report(agent: &Agent) -> DiskReport {
    DiskReport {
        free_bytes: agent.disk.free(),
        reserve_bytes: agent.config.disk_reserve_bytes,
        full: agent.disk.check().is_err(),
    }
}

/// Per shard, how far its WAL archive is (`None` without a backup store).
fn archive_report(agent: &Agent) -> Option<BTreeMap<String, walshard_contract::ArchiveReport>> {
    agent.config.backup.as_ref()?;
    let now = walshard_backup::now_ms();
    Some(
        agent
            .shards()
            .iter()
            .filter_map(|s| {
                let progress = s.archive.get()?;
                Some((s.id().to_string(), progress.status(s.commit_lsn(), now)))
            })
            .collect(),
    )
}

// ---- replication and elections (docs/replication.md) -----------------------------------------

/// The shard named in the path, or 404.
fn shard_in_path(agent: &Agent, id: &str) -> Result<Arc<Shard>, ApiError> {
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

async fn fence(
    State(agent): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Success<FenceAccepted>>, ApiError> {
    let shard = shard_in_path(&agent, &id)?;
    let req: FenceRequest = body_as(body, "\"epoch\" must be a non-negative integer")?;
    Ok(Json(Success::new(shard.fence(req.epoch).await?)))
}

async fn promote(
    State(agent): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Json_>, ApiError> {
    let shard = shard_in_path(&agent, &id)?;
    let req: PromoteRequest = serde_json::from_value(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("promote: {e}")))?;
    let me = &agent.config.server_name;
    let peers: Vec<ReplicaRef> = req.replicas.into_iter().filter(|p| &p.name != me).collect();
    shard.promote(req.epoch, peers, req.quorum).await?;
    Ok(Json(
        json!({"message": format!("{me} is primary of {id} in epoch {}", req.epoch), "status": STATUS_SUCCESS}),
    ))
}

async fn confirm(
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

async fn step_down(
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

async fn append(
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

async fn install_snapshot(
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
