//! Coalesced requests between the router and an agent (docs/benchmarks.md, "coalescing"): the
//! client operations that reach the router for one shard while its previous batch is in flight
//! travel as one request, and each is answered on its own, exactly as its single request would
//! be.
//!
//! - `POST /shards/{id}/writes` takes a [`WriteBatch`]: each op carries its own op id (a retried
//!   batch applies each op once) and the body its single endpoint (`/write`, `/update`, `/del`)
//!   takes.
//! - `POST /reads` takes a [`ReadBatch`] of key ranges of the server's shards, each at its own
//!   consistency.
//!
//! Both answer a [`BatchAnswer`]: one [`BatchedAnswer`] per item, in order. A failure of the
//! whole batch (not primary, no majority, a deadline) is the request's own error answer.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::{ApiError, Ident, KeyRange, STATUS_SUCCESS, code_of};

/// Which single endpoint a batched op stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// `POST /write`: rows to insert.
    Write,
    /// `PUT /update`: columns of one row.
    Update,
    /// `DELETE /del`: one row.
    Del,
}

/// One client operation inside a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchedOp {
    /// The operation id, 32 hex digits (the single endpoints' `x-walshard-op-id`).
    pub op_id: String,
    /// The endpoint it stands for.
    pub kind: OpKind,
    /// The body that endpoint takes (its `"shard"` field is the batch's and may be left out).
    pub body: Json,
}

/// `POST /shards/{id}/writes`: client operations of one shard, logged together.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WriteBatch {
    /// The operations, answered in this order.
    pub ops: Vec<BatchedOp>,
}

/// One key-range read inside a [`ReadBatch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchedRead {
    /// The shard read.
    pub shard: Ident,
    /// The keys, `low..=high`.
    pub range: KeyRange,
    /// A session read: the log position the replica must have applied (0: any committed state).
    #[serde(default)]
    pub min_lsn: u64,
    /// How long the replica may wait to reach `min_lsn`, in milliseconds.
    #[serde(default)]
    pub wait_ms: u64,
    /// A strong read: served by the primary after a read-index check (one for the batch).
    #[serde(default)]
    pub strong: bool,
}

/// `POST /reads`: key-range reads of one server's replicas, served by one SQL statement per
/// shard where they can be.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReadBatch {
    /// The reads, answered in this order.
    pub reads: Vec<BatchedRead>,
}

/// The answer to one item of a batch: the status and body its single request would have got.
/// A read's body is `{"data": [rows], "lsn": position}`; a write's that of its endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchedAnswer {
    /// The HTTP status of the single request (200 on success).
    pub status: u16,
    /// Its body (an error body: `{"message", "status": "failure", "code", ...}`).
    pub body: Json,
}

impl BatchedAnswer {
    /// A successful item; its body gets `"status": "success"`.
    pub fn ok(mut body: Json) -> Self {
        if let Some(obj) = body.as_object_mut() {
            obj.insert("status".into(), STATUS_SUCCESS.into());
        }
        Self { status: 200, body }
    }

    /// A failed item.
    pub fn failed(e: &ApiError) -> Self {
        Self {
            status: e.status,
            body: e.body(),
        }
    }

    /// The item's body, or its error with the agent's status, code and message.
    pub fn into_result(self) -> Result<Json, ApiError> {
        if self.status == 200 {
            return Ok(self.body);
        }
        let code = code_of(self.status, &self.body);
        let message = self.body["message"]
            .as_str()
            .map_or_else(|| self.body.to_string(), str::to_owned);
        let mut e = ApiError::new(self.status, message).with_code(code);
        if let Json::Object(fields) = self.body {
            for (k, v) in fields {
                if !matches!(k.as_str(), "message" | "status" | "code") {
                    e.extra.insert(k, v);
                }
            }
        }
        Err(e)
    }
}

/// The answer to a batch: one item answer per op or read, in order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BatchAnswer {
    /// The item answers.
    pub results: Vec<BatchedAnswer>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;
    use serde_json::json;

    #[test]
    fn an_item_error_comes_back_with_its_status_code_and_fields() {
        let e =
            ApiError::coded(ErrorCode::Conflict, "Stud_id 7 already present").with("shard", "sh1");
        let back = BatchedAnswer::failed(&e).into_result();
        assert_eq!(back, Err(e));
        let ok = BatchedAnswer::ok(json!({"message": "Data entries added"}));
        assert_eq!(
            ok.into_result(),
            Ok(json!({"message": "Data entries added", "status": "success"}))
        );
    }

    #[test]
    fn batches_read_the_documented_shape() {
        let w: WriteBatch = serde_json::from_value(json!({"ops": [
            {"op_id": "0123456789abcdef0123456789abcdef", "kind": "del", "body": {"Stud_id": 3}}
        ]}))
        .expect("write batch");
        assert_eq!(w.ops[0].kind, OpKind::Del);
        let r: ReadBatch = serde_json::from_value(
            json!({"reads": [{"shard": "sh2", "range": {"low": 1, "high": 9}}]}),
        )
        .expect("read batch");
        assert_eq!(
            r.reads[0],
            BatchedRead {
                shard: Ident::new("sh2").expect("id"),
                range: KeyRange { low: 1, high: 9 },
                min_lsn: 0,
                wait_ms: 0,
                strong: false
            }
        );
    }
}
