//! The field checks the requests share: a request error for an invalid value, counts, identifiers
//! and shard lists; a layout that fails validation is an invalid request.

use serde_json::Value as Json;
use walshard_contract::body::field;
use walshard_contract::row::json_kind;
use walshard_contract::{Ident, RequestError, ShardSpec};

use crate::layout::LayoutError;

impl From<LayoutError> for RequestError {
    fn from(e: LayoutError) -> Self {
        RequestError::Invalid(e.to_string())
    }
}

/// An invalid request (400) with this message.
pub(super) fn invalid(msg: impl Into<String>) -> RequestError {
    RequestError::Invalid(msg.into())
}

/// The non-negative integer field `name`.
pub(super) fn count(body: &Json, name: &str) -> Result<usize, RequestError> {
    let v = field(body, name)?;
    v.as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| invalid(format!("{name:?} must be a non-negative integer, got {v}")))
}

/// `v` as an identifier; `what` names it in the error.
pub(super) fn ident(what: &str, v: &Json) -> Result<Ident, RequestError> {
    let s = v
        .as_str()
        .ok_or_else(|| invalid(format!("{what} must be a string, got {}", json_kind(v))))?;
    Ident::new(s).map_err(|e| invalid(format!("{what}: {e}")))
}

/// The array `v` (the field `name`) of shard specs keyed by the column `key`.
pub(super) fn shard_specs(key: &str, v: &Json, name: &str) -> Result<Vec<ShardSpec>, RequestError> {
    let list = v
        .as_array()
        .ok_or_else(|| invalid(format!("{name:?} must be an array of shards")))?;
    list.iter()
        .map(|s| ShardSpec::from_json(key, s).map_err(|e| invalid(format!("{name}: {e}"))))
        .collect()
}
