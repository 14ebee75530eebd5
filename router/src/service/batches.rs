//! The router's coalesced calls (crate::coalesce): client writes of one shard go to its primary
//! as one `POST /shards/{id}/writes`; reads of one server's replicas as one `POST /reads`, and
//! reads of one shard's primary likewise.
//! An agent that does not know the batch endpoints (an older version, during a rolling upgrade)
//! answers 404, and the batch is then sent as single requests.

use std::sync::Arc;

use serde_json::{Value as Json_, json};
use walshard_contract::batch::{
    BatchAnswer, BatchedOp, BatchedRead, OpKind, ReadBatch, WriteBatch,
};
use walshard_contract::{ApiError, Ident};

use super::state::RouterState;
use crate::coalesce::BatchResult;

/// Most client ops in one write batch.
pub(super) const MAX_WRITE_BATCH: usize = 256;
/// Most reads in one read batch.
pub(super) const MAX_READ_BATCH: usize = 128;

/// Whose reads a read batch holds: one server's (its replicas of any shard), or a shard's primary
/// (strong reads, and session reads no replica could serve), wherever it is when the batch is
/// sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReadKey {
    /// The server at this base URL.
    Server(String),
    /// The shard's primary.
    Primary(Ident),
}

impl RouterState {
    /// One client op on `shard`, sent to its primary in the next write batch; its answer carries
    /// the position it was applied at as `"lsn"`.
    pub(super) async fn write_op(
        self: &Arc<Self>,
        shard: &Ident,
        kind: OpKind,
        body: Json_,
    ) -> Result<Json_, ApiError> {
        let op = BatchedOp {
            op_id: new_op_id(),
            kind,
            body,
        };
        let state = self.clone();
        let id = shard.clone();
        let send = move |ops: Vec<BatchedOp>| {
            let (state, id) = (state.clone(), id.clone());
            async move { state.send_writes(&id, ops).await }
        };
        self.writes.submit(shard.clone(), op, send).await
    }

    /// Sends a write batch to the shard's primary (following failovers, retrying in-doubt
    /// failures: each op keeps its id); each item answer gets the batch's `"lsn"`.
    async fn send_writes(&self, shard: &Ident, ops: Vec<BatchedOp>) -> BatchResult {
        self.metrics.batch("write", ops.len());
        let path = format!("/shards/{shard}/writes");
        let body = serde_json::to_value(WriteBatch { ops: ops.clone() }).unwrap_or_default();
        match self
            .to_primary(shard, reqwest::Method::POST, &path, &body, None)
            .await
        {
            Ok(v) => item_answers(v),
            Err(e) if e.status == 404 => Ok(self.writes_one_by_one(shard, ops).await),
            Err(e) => Err(e),
        }
    }

    /// A write batch as single requests, for an agent without `/shards/{id}/writes`.
    async fn writes_one_by_one(
        &self,
        shard: &Ident,
        ops: Vec<BatchedOp>,
    ) -> Vec<Result<Json_, ApiError>> {
        self.metrics.retry("batch-unsupported");
        let calls = ops.into_iter().map(|op| async move {
            let (method, path) = match op.kind {
                OpKind::Write => (reqwest::Method::POST, "/write"),
                OpKind::Update => (reqwest::Method::PUT, "/update"),
                OpKind::Del => (reqwest::Method::DELETE, "/del"),
            };
            let mut body = op.body;
            body["shard"] = shard.as_str().into();
            self.to_primary(shard, method, path, &body, Some(&op.op_id))
                .await
        });
        futures::future::join_all(calls).await
    }

    /// One read, sent in the next read batch of `key`; answers `{"data": rows, "lsn": position}`.
    pub(super) async fn read_op(
        self: &Arc<Self>,
        key: ReadKey,
        read: BatchedRead,
    ) -> Result<Json_, ApiError> {
        let state = self.clone();
        let batch_key = key.clone();
        let send = move |reads: Vec<BatchedRead>| {
            let (state, key) = (state.clone(), batch_key.clone());
            async move { state.send_reads(&key, reads).await }
        };
        self.reads.submit(key, read, send).await
    }

    /// Sends a read batch: to one server once, or to the shard's primary following failovers.
    async fn send_reads(&self, key: &ReadKey, reads: Vec<BatchedRead>) -> BatchResult {
        self.metrics.batch("read", reads.len());
        let body = serde_json::to_value(ReadBatch {
            reads: reads.clone(),
        })
        .unwrap_or_default();
        let answer = match key {
            ReadKey::Server(url) => {
                self.call_once(url, url, reqwest::Method::POST, "/reads", &body)
                    .await
            }
            ReadKey::Primary(shard) => {
                self.to_primary(shard, reqwest::Method::POST, "/reads", &body, None)
                    .await
            }
        };
        match answer {
            Ok(v) => item_answers(v),
            Err(e) if e.status == 404 => Ok(self.reads_one_by_one(key, reads).await),
            Err(e) => Err(e),
        }
    }

    /// A read batch as single `/read` requests, for an agent without `/shards/{id}/reads`.
    async fn reads_one_by_one(
        &self,
        key: &ReadKey,
        reads: Vec<BatchedRead>,
    ) -> Vec<Result<Json_, ApiError>> {
        self.metrics.retry("batch-unsupported");
        let key_name = match self.routes() {
            Ok(routes) => routes.layout.schema.key().to_string(),
            Err(e) => return reads.iter().map(|_| Err(e.clone())).collect(),
        };
        let calls = reads.into_iter().map(|r| {
            let key_name = key_name.clone();
            async move {
                let shard = &r.shard;
                let mut body = json!({"shard": shard.as_str(), key_name: {"low": r.range.low, "high": r.range.high}});
                if r.strong {
                    body["consistency"] = "strong".into();
                } else if r.min_lsn > 0 {
                    body["min_lsn"] = r.min_lsn.into();
                    body["wait_ms"] = r.wait_ms.into();
                }
                match key {
                    ReadKey::Server(url) => {
                        self.call_once(url, url, reqwest::Method::POST, "/read", &body)
                            .await
                    }
                    ReadKey::Primary(_) => {
                        self.to_primary(shard, reqwest::Method::POST, "/read", &body, None)
                            .await
                    }
                }
            }
        });
        futures::future::join_all(calls).await
    }
}

/// The item answers of a batch answer, each with the batch's `"lsn"` unless it has its own.
fn item_answers(v: Json_) -> BatchResult {
    let lsn = v.get("lsn").cloned();
    let message = v.get("message").and_then(Json_::as_str).map(str::to_owned);
    let answer: BatchAnswer = serde_json::from_value(v).map_err(|e| {
        ApiError::new(
            502u16,
            format!(
                "unusable batch answer ({e}){}",
                message.map(|m| format!(": {m}")).unwrap_or_default()
            ),
        )
    })?;
    Ok(answer
        .results
        .into_iter()
        .map(|item| {
            let mut body = item.into_result()?;
            if let (Some(lsn), Some(obj)) = (&lsn, body.as_object_mut()) {
                obj.entry("lsn").or_insert_with(|| lsn.clone());
            }
            Ok(body)
        })
        .collect())
}

/// A new operation id (the same across a write's retries).
pub(super) fn new_op_id() -> String {
    format!("{:032x}", uuid::Uuid::new_v4().as_u128())
}
