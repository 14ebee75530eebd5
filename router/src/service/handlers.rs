//! The seed API's endpoints on the data path: `/read`, `/write`, `/update`, `/del`,
//! `/read/<server>`, `/status` and `/metrics`, and the causality token (session) they carry.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value as Json_, json};
use tracing::warn;
use walshard_contract::answers::{openmetrics, parse_json};
use walshard_contract::batch::OpKind;
use walshard_contract::{ApiError, ErrorCode, Ident, KeyRange, Row, STATUS_SUCCESS};

use super::agents::{PRIMARY_SESSION_WAIT_MS, applied_of, message_of};
use super::state::RouterState;
use crate::requests::{self, Consistency};
use crate::session::{SESSION_HEADER, SessionToken};

/// Sends a one-row change (`/update` or `/del`) to the shard's primary in its next write batch,
/// and answers as the seed does, with the causality token it reached; this router remembers the
/// position.
async fn change_one_row(
    state: &Arc<RouterState>,
    headers: &HeaderMap,
    shard: &Ident,
    kind: OpKind,
    agent_body: Json_,
) -> Result<Json_, ApiError> {
    let agent_answer = &state.write_op(shard, kind, agent_body).await?;
    let lsn = applied_of(agent_answer);
    state.memory.raise(shard.as_str(), lsn);
    let mut token = session_of(headers, None)?;
    token.raise(shard.as_str(), lsn);
    let mut answer = json!({"message": message_of(agent_answer)});
    if !token.is_empty() {
        answer["session"] = token.to_string().into();
    }
    answer["status"] = STATUS_SUCCESS.into();
    Ok(answer)
}

/// The client's causality token: the `X-Walshard-Session` header, or a `"session"` field.
fn session_of(headers: &HeaderMap, body: Option<&Json_>) -> Result<SessionToken, ApiError> {
    let mut token = SessionToken::default();
    if let Some(h) = headers.get(SESSION_HEADER) {
        let text = h.to_str().map_err(|_| {
            ApiError::new(StatusCode::BAD_REQUEST, "the session header is not text")
        })?;
        token = SessionToken::parse(text)?;
    }
    if let Some(field) = body.and_then(|b| b.get("session")) {
        let text = field.as_str().ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "\"session\" must be a token string",
            )
        })?;
        let extra = SessionToken::parse(text)?;
        for shard in extra.shards() {
            token.raise(shard, extra.get(shard));
        }
    }
    Ok(token)
}

/// Runs a handler body and records its outcome in the metrics.
pub(super) async fn timed(
    state: &RouterState,
    endpoint: &str,
    work: impl Future<Output = Result<Json_, ApiError>>,
) -> Response {
    let started = Instant::now();
    let (status, response) = match work.await {
        Ok(v) => {
            let session = v["session"].as_str().map(str::to_owned);
            let mut response = Json(v).into_response();
            if let Some(value) = session.and_then(|t| HeaderValue::from_str(&t).ok()) {
                response.headers_mut().insert(SESSION_HEADER, value);
            }
            (StatusCode::OK, response)
        }
        Err(e) => (
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            e.into_response(),
        ),
    };
    state.metrics.record(endpoint, status, started);
    response
}

/// `GET /status`: the configuration with each shard's primary; before `/init`, as the seed does,
/// an empty configuration.
pub(super) async fn status(State(state): State<Arc<RouterState>>) -> Response {
    timed(&state, "/status", async {
        let mut v = match state.routes() {
            Ok(routes) => routes
                .layout
                .to_json(|s| state.primaries.primary(s.as_str())),
            Err(_) => json!({
                "N": 0,
                "schema": {"columns": [], "dtypes": []},
                "shards": [],
                "servers": {},
            }),
        };
        v["status"] = STATUS_SUCCESS.into();
        Ok(v)
    })
    .await
}

/// `GET /metrics`: the router's Prometheus metrics.
pub(super) async fn metrics(State(state): State<Arc<RouterState>>) -> Response {
    openmetrics(state.metrics.encode())
}

/// `POST /read`: each shard the range touches, in parallel, at the requested consistency
/// (docs/consistency.md); a session read sees at least the client's token and what this router
/// acknowledged or served, and answers the token it reached.
pub(super) async fn read(
    State(state): State<Arc<RouterState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    timed(&state, "/read", async {
        let body = parse_json(&body)?;
        let routes = state.routes()?;
        let (range, consistency) = requests::parse_read(&routes.layout, &body)?;
        let mut token = session_of(&headers, Some(&body))?;
        let plan = routes.layout.plan_read(range);
        let request_id = uuid::Uuid::new_v4().as_u128() as u64;
        let calls = plan.iter().map(|(shard, part)| {
            let state = state.clone();
            let (shard, part) = (shard.id.clone(), *part);
            let needed = token
                .get(shard.as_str())
                .max(state.memory.get(shard.as_str()));
            async move {
                let read = match consistency {
                    Consistency::Eventual => state.read_from(&shard, part, request_id, None).await,
                    Consistency::Session => {
                        state
                            .read_from(&shard, part, request_id, Some(needed))
                            .await
                    }
                    Consistency::Strong => state.read_strong(&shard, part).await,
                };
                (shard, read)
            }
        });
        let results = futures::future::join_all(calls).await;
        let mut data = Vec::new();
        for (shard, r) in results {
            let (rows, served_at) = r?;
            data.extend(rows);
            if consistency != Consistency::Eventual {
                state.memory.raise(shard.as_str(), served_at);
                token.raise(shard.as_str(), served_at);
            }
        }
        let queried: Vec<&str> = plan.iter().map(|(s, _)| s.id.as_str()).collect();
        let mut answer = json!({"shards_queried": queried, "data": data});
        if !token.is_empty() {
            answer["session"] = token.to_string().into();
        }
        answer["status"] = STATUS_SUCCESS.into();
        Ok(answer)
    })
    .await
}

pub(super) async fn write(
    State(state): State<Arc<RouterState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    timed(&state, "/write", async {
        let body = parse_json(&body)?;
        let mut token = session_of(&headers, None)?;
        let routes = state.routes()?;
        let schema = routes.layout.schema.clone();
        let plan = requests::parse_write(&routes.layout, &body)?;
        let total: usize = plan.groups.values().map(Vec::len).sum();
        let on_duplicate = plan.on_duplicate;
        let calls = plan.groups.into_iter().map(|(shard, rows)| {
            let state = state.clone();
            let schema = schema.clone();
            async move {
                let data: Vec<Json_> = rows
                    .iter()
                    .map(|r| Json_::Object(r.to_json(&schema)))
                    .collect();
                let body = json!({"data": data, "on_duplicate": on_duplicate});
                let result = state.write_op(&shard, OpKind::Write, body).await;
                (shard, rows, result)
            }
        });
        let results = futures::future::join_all(calls).await;
        let mut written: Vec<i64> = Vec::new();
        let mut skipped: Vec<i64> = Vec::new();
        let mut failures: Vec<(Ident, Vec<i64>, ApiError)> = Vec::new();
        for (shard, rows, result) in results {
            let keys: Vec<i64> = rows.iter().map(Row::key).collect();
            match result {
                Ok(v) => {
                    state.memory.raise(shard.as_str(), applied_of(&v));
                    token.raise(shard.as_str(), applied_of(&v));
                    let stored: Vec<i64> = v["skipped"]
                        .as_array()
                        .map(|a| a.iter().filter_map(Json_::as_i64).collect())
                        .unwrap_or_default();
                    written.extend(keys.iter().filter(|k| !stored.contains(k)));
                    skipped.extend(stored);
                }
                Err(e) => failures.push((shard, keys, e)),
            }
        }
        skipped.sort_unstable();
        if failures.is_empty() {
            let mut answer = json!({"message": format!("{} Data entries added", written.len())});
            if !skipped.is_empty() {
                answer["skipped"] = json!(skipped);
            }
            if !token.is_empty() {
                answer["session"] = token.to_string().into();
            }
            answer["status"] = STATUS_SUCCESS.into();
            return Ok(answer);
        }
        let (status, code) = failures.first().map_or(
            (StatusCode::BAD_GATEWAY.as_u16(), ErrorCode::BadGateway),
            |(_, _, e)| (e.status, e.code),
        );
        let detail: Vec<String> = failures
            .iter()
            .map(|(s, _, e)| format!("{s}: {}", e.message))
            .collect();
        let failed: Map<String, Json_> = failures
            .iter()
            .map(|(s, keys, _)| (s.to_string(), json!(keys)))
            .collect();
        warn!(written = written.len(), total, "write partly failed");
        let mut err = ApiError::new(
            status,
            format!(
                "{} of {total} entries written; failed: {}",
                written.len(),
                detail.join("; ")
            ),
        )
        .with_code(code);
        err.extra.insert("written".into(), json!(written));
        if !skipped.is_empty() {
            err.extra.insert("skipped".into(), json!(skipped));
        }
        err.extra.insert("failed".into(), Json_::Object(failed));
        if !token.is_empty() {
            err.extra.insert("session".into(), token.to_string().into());
        }
        Err(err)
    })
    .await
}

pub(super) async fn update(
    State(state): State<Arc<RouterState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    timed(&state, "/update", async {
        let body = parse_json(&body)?;
        let routes = state.routes()?;
        let (shard, key, patch) = requests::parse_update(&routes.layout, &body)?;
        let key_name = routes.layout.schema.key().to_string();
        let data = Json_::Object(patch.to_json(&routes.layout.schema, key));
        let agent_body = json!({key_name: key, "data": data});
        change_one_row(&state, &headers, &shard, OpKind::Update, agent_body).await
    })
    .await
}

pub(super) async fn del(
    State(state): State<Arc<RouterState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    timed(&state, "/del", async {
        let body = parse_json(&body)?;
        let routes = state.routes()?;
        let (shard, key) = requests::parse_delete(&routes.layout, &body)?;
        let key_name = routes.layout.schema.key().to_string();
        let agent_body = json!({key_name: key});
        change_one_row(&state, &headers, &shard, OpKind::Del, agent_body).await
    })
    .await
}

/// `GET /read/<server>`: every shard the server holds, `{"sh1": [...], ..., "status": "success"}`.
pub(super) async fn read_server(
    State(state): State<Arc<RouterState>>,
    axum::extract::Path(server): axum::extract::Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: HeaderMap,
) -> Response {
    timed(&state, "/read/{server}", async {
        let routes = state.routes()?;
        let name = Ident::new(&server)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("server name: {e}")))?;
        let held = routes.layout.placement.get(&name).ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, format!("no server named {name}"))
        })?;
        let url = routes.url(name.as_str()).ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{name} has no URL"),
            )
        })?;
        let consistency = requests::consistency(
            query_param(query.as_deref(), "consistency")
                .map(Json_::from)
                .as_ref(),
        )?;
        let mut token = session_of(&headers, None)?;
        let shards: Vec<&str> = held.iter().map(Ident::as_str).collect();
        let mut body = json!({"shards": shards});
        if consistency != Consistency::Eventual {
            // This server must reach the positions itself: the session's, or for a strong read
            // each shard's read index taken on its primary (an empty strong read).
            let mut min = Map::new();
            for shard in held {
                let at = match consistency {
                    Consistency::Strong => {
                        state
                            .read_strong(shard, KeyRange { low: 1, high: 0 })
                            .await?
                            .1
                    }
                    _ => token
                        .get(shard.as_str())
                        .max(state.memory.get(shard.as_str())),
                };
                min.insert(shard.to_string(), at.into());
            }
            body["min_lsn"] = Json_::Object(min);
            body["wait_ms"] = PRIMARY_SESSION_WAIT_MS.into();
        }
        let v = state
            .call_once(name.as_str(), url, reqwest::Method::GET, "/copy", &body)
            .await?;
        let mut out = Map::new();
        for shard in &shards {
            out.insert((*shard).to_owned(), v[*shard].clone());
            if let Some(at) = v["applied_lsn"][*shard].as_u64() {
                state.memory.raise(shard, at);
                token.raise(shard, at);
            }
        }
        if !token.is_empty() {
            out.insert("session".into(), token.to_string().into());
        }
        out.insert("status".into(), STATUS_SUCCESS.into());
        Ok(Json_::Object(out))
    })
    .await
}

/// A query string parameter's value (`a=1&b=2`), undecoded.
fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}
