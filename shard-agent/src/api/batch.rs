//! The router's coalesced requests (`walshard_contract::batch`): `POST /shards/{id}/writes`
//! logs the client ops of one shard as one WAL group, `POST /reads` serves key-range reads of
//! the server's shards with one SQL statement per shard and group of reads that can be served
//! at once. Each item is answered as its single request would be.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value as Json_, json};
use walshard_contract::batch::{BatchedAnswer, BatchedRead, OpKind, ReadBatch, WriteBatch};
use walshard_contract::{ApiError, Ident, KeyRange, STATUS_SUCCESS, Schema};

use super::extract::body_named;
use super::seed::{
    ParseOp, answer_of, at_position, nothing_written, parse_op_id, rows_json, target,
};
use super::{AppState, JsonBody};
use crate::agent::Agent;
use crate::ops::Op;
use crate::requests::{self, MAX_READ_WAIT};
use crate::shard::{Shard, ShardError};
use crate::wal::Lsn;

/// The batch's schema and shard, or 404 / 400 (not configured).
async fn batch_target(
    agent: &Agent,
    id: &str,
) -> Result<(Schema, std::sync::Arc<Shard>), ApiError> {
    let id = Ident::new(id).map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("shard {id} is not on this server"),
        )
    })?;
    target(agent, &id).await
}

/// Item answers in order; an item left unanswered (a bug) is answered 500.
fn in_order(answers: Vec<Option<BatchedAnswer>>) -> Json_ {
    let results: Vec<BatchedAnswer> = answers
        .into_iter()
        .map(|a| {
            a.unwrap_or_else(|| {
                BatchedAnswer::failed(&ApiError::new(500u16, "batch item left unanswered"))
            })
        })
        .collect();
    json!({"results": results, "status": STATUS_SUCCESS})
}

/// `POST /shards/{id}/writes`: a [`WriteBatch`]. Ops that do not parse are answered 400 alone;
/// the rest are logged as one WAL group and each answered with its own outcome (a duplicate key
/// fails its op only). A refusal of the whole shard (not primary, no majority) is the request's.
pub(super) async fn writes(
    State(agent): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let (schema, shard) = batch_target(&agent, &id).await?;
    let batch: WriteBatch = body_named(body, "write batch")?;
    let mut answers: Vec<Option<BatchedAnswer>> = vec![None; batch.ops.len()];
    let mut ops = Vec::new();
    let mut positions = Vec::new();
    for (i, item) in batch.ops.into_iter().enumerate() {
        let parse: ParseOp = match item.kind {
            OpKind::Write => requests::parse_write,
            OpKind::Update => requests::parse_update,
            OpKind::Del => requests::parse_delete,
        };
        let parsed = parse_op_id(Some(&item.op_id), "op_id")
            .and_then(|op_id| Ok((op_id, parse(&schema, shard.range.as_ref(), &item.body)?)));
        match parsed {
            Ok((_, Op::Write { rows, .. })) if rows.is_empty() => {
                answers[i] = Some(answered(&schema, nothing_written()));
            }
            Ok(op) => {
                ops.push(op);
                positions.push(i);
            }
            Err(e) => answers[i] = Some(BatchedAnswer::failed(&e)),
        }
    }
    if !ops.is_empty() {
        let outcomes = shard.submit_many(ops).await?;
        for (i, outcome) in positions.into_iter().zip(outcomes) {
            answers[i] = Some(answered(&schema, outcome));
        }
    }
    Ok(at_position(shard.applied_lsn(), in_order(answers)))
}

/// An op's outcome as its item answer.
fn answered(schema: &Schema, outcome: crate::ops::Outcome) -> BatchedAnswer {
    match answer_of(schema, outcome) {
        Ok(v) => BatchedAnswer::ok(v),
        Err(e) => BatchedAnswer::failed(&e),
    }
}

/// Reads whose positions are settled: `(index, range, position or why it cannot be served)`.
type Settled = Vec<(usize, KeyRange, Result<Lsn, ApiError>)>;

/// `POST /reads`: a [`ReadBatch`] of this server's shards. Each shard's reads are served in up
/// to three groups at once, each with one SQL statement: reads this replica may serve now,
/// strong reads (after one read-index check for all of them), and session reads that first wait
/// for their positions. A read of a shard this server does not hold is answered 404 alone.
pub(super) async fn reads(
    State(agent): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Json<Json_>, ApiError> {
    let batch: ReadBatch = body_named(body, "read batch")?;
    let mut per_shard: BTreeMap<&Ident, Vec<(usize, &BatchedRead)>> = BTreeMap::new();
    for (i, r) in batch.reads.iter().enumerate() {
        per_shard.entry(&r.shard).or_default().push((i, r));
    }
    let shards = per_shard
        .into_iter()
        .map(|(id, reads)| shard_reads(&agent, id, reads));
    let mut answers: Vec<Option<BatchedAnswer>> = vec![None; batch.reads.len()];
    for (i, answer) in futures::future::join_all(shards)
        .await
        .into_iter()
        .flatten()
    {
        answers[i] = Some(answer);
    }
    Ok(Json(in_order(answers)))
}

/// The reads of one shard of a read batch, answered by index.
async fn shard_reads(
    agent: &Agent,
    id: &Ident,
    reads: Vec<(usize, &BatchedRead)>,
) -> Vec<(usize, BatchedAnswer)> {
    let (schema, shard) = match target(agent, id).await {
        Ok(found) => found,
        Err(e) => {
            let failed = BatchedAnswer::failed(&e);
            return reads
                .into_iter()
                .map(|(i, _)| (i, failed.clone()))
                .collect();
        }
    };
    let applied = shard.applied_lsn();
    let strong: Vec<(usize, &BatchedRead)> =
        reads.iter().copied().filter(|(_, r)| r.strong).collect();
    let (ready, waiting): (Vec<_>, Vec<_>) = reads
        .iter()
        .copied()
        .filter(|(_, r)| !r.strong)
        .partition(|(_, r)| r.min_lsn <= applied);

    let ready_group = async {
        if ready.is_empty() {
            return Vec::new();
        }
        let needed = ready.iter().map(|(_, r)| r.min_lsn).max().unwrap_or(0);
        let at = shard
            .read_position(needed, Duration::ZERO)
            .await
            .map_err(ApiError::from);
        let settled = ready
            .iter()
            .map(|(i, r)| (*i, r.range, at.clone()))
            .collect();
        serve(agent, &schema, &shard, settled).await
    };
    let strong_group = async {
        if strong.is_empty() {
            return Vec::new();
        }
        let at = match shard.read_barrier().await {
            Ok(()) => Ok(shard.applied_lsn()),
            Err(e) => Err(ApiError::from(e)),
        };
        let settled = strong
            .iter()
            .map(|(i, r)| (*i, r.range, at.clone()))
            .collect();
        serve(agent, &schema, &shard, settled).await
    };
    let waiting_group = async {
        let waits = waiting.iter().map(|(i, r)| {
            let wait = Duration::from_millis(r.wait_ms).min(MAX_READ_WAIT);
            let shard = &shard;
            async move {
                let at = shard.read_position(r.min_lsn, wait).await;
                (*i, r.range, at.map_err(ApiError::from))
            }
        });
        let settled = futures::future::join_all(waits).await;
        serve(agent, &schema, &shard, settled).await
    };
    let (a, b, c) = tokio::join!(ready_group, strong_group, waiting_group);
    a.into_iter().chain(b).chain(c).collect()
}

/// One statement for the reads that may be served; the others answered with their error.
async fn serve(
    agent: &Agent,
    schema: &Schema,
    shard: &Shard,
    settled: Settled,
) -> Vec<(usize, BatchedAnswer)> {
    let mut out = Vec::with_capacity(settled.len());
    let mut servable = Vec::new();
    for (i, range, at) in settled {
        match at {
            Ok(lsn) => servable.push((i, range, lsn)),
            Err(e) => out.push((i, BatchedAnswer::failed(&e))),
        }
    }
    if servable.is_empty() {
        return out;
    }
    let ranges: Vec<KeyRange> = servable.iter().map(|(_, r, _)| *r).collect();
    match agent.store().read_ranges(&shard.table, &ranges).await {
        Ok(rows) => {
            for ((i, _, lsn), rows) in servable.into_iter().zip(rows) {
                let body = json!({"data": rows_json(schema, &rows), "lsn": lsn});
                out.push((i, BatchedAnswer::ok(body)));
            }
        }
        Err(e) => {
            let e = ApiError::from(ShardError::from(e));
            out.extend(
                servable
                    .into_iter()
                    .map(|(i, _, _)| (i, BatchedAnswer::failed(&e))),
            );
        }
    }
    out
}
