//! `/read`: a key range and how consistent the read must be.

use serde_json::Value as Json;
use walshard_contract::body;
use walshard_contract::{KeyRange, RequestError};

use super::fields::invalid;
use crate::layout::Layout;

/// How a read may be served (docs/consistency.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Any replica, committed data only: may be stale, never wrong.
    Eventual,
    /// The default: the client's own acknowledged writes and nothing older than what it (or
    /// this router) already saw; any replica that has applied far enough.
    #[default]
    Session,
    /// Linearizable: through the shard's primary after a read-index round.
    Strong,
}

/// `"consistency": "eventual" | "session" | "strong"`, `session` when absent.
pub fn consistency(v: Option<&Json>) -> Result<Consistency, RequestError> {
    match v.and_then(Json::as_str) {
        None if v.is_none() => Ok(Consistency::default()),
        Some("eventual") => Ok(Consistency::Eventual),
        Some("session") => Ok(Consistency::Session),
        Some("strong") => Ok(Consistency::Strong),
        _ => Err(invalid(format!(
            "\"consistency\" must be \"eventual\", \"session\" or \"strong\", got {}",
            v.map_or_else(String::new, Json::to_string)
        ))),
    }
}

/// `/read`: `{"Stud_id": {"low": 1000, "high": 8889}}`, optionally `"consistency"`.
/// The bounds may be strings or integral floats; `low > high` reads nothing.
pub fn parse_read(layout: &Layout, body: &Json) -> Result<(KeyRange, Consistency), RequestError> {
    let range = body::range_field(&layout.schema, body)?;
    Ok((range, consistency(body.get("consistency"))?))
}
