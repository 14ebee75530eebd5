//! Observing the agent: `/heartbeat`, `/metrics`, `/status`, and the middleware that counts and
//! times every request.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use walshard_contract::{AgentStatus, DiskReport, Success, answers};

use super::AppState;
use crate::agent::Agent;

/// Middleware: counts and times every request by method, matched route and status.
pub(super) async fn record_metrics(
    State(agent): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
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

/// `GET /heartbeat`: 200 while the process serves HTTP (no auth, no state read).
pub(super) async fn heartbeat() -> StatusCode {
    StatusCode::OK
}

/// `GET /metrics`: refreshes the shard and disk gauges, then answers every metric in the
/// OpenMetrics text format (no auth).
pub(super) async fn metrics(State(agent): State<AppState>) -> Response {
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

/// `GET /status`: the server, its schema, every shard's role and log positions, the disk and
/// (with a backup store) the archive.
pub(super) async fn status(State(agent): State<AppState>) -> Json<Success<AgentStatus>> {
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
