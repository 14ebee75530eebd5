//! `/write`, `/update` and `/del`: the requests that change data, validated whole and routed to
//! the shards that hold their keys.

use std::collections::BTreeMap;

use serde_json::Value as Json;
use walshard_contract::body;
use walshard_contract::{Ident, OnDuplicate, Patch, RequestError, Row};

use super::fields::invalid;
use crate::layout::Layout;

/// A validated `/write`: rows grouped per shard in request order, and what to do with stored keys.
#[derive(Debug, Clone, PartialEq)]
pub struct WritePlan {
    /// Per shard, its rows in request order; only shards that get at least one row.
    pub groups: BTreeMap<Ident, Vec<Row>>,
    /// What to do with a row whose key is already stored (`"on_duplicate"`, `skip` when
    /// absent).
    pub on_duplicate: OnDuplicate,
}

/// `/write`: `{"data": [rows]}`, validated whole (types coerced, every key in some shard, no key
/// twice), then grouped per shard. `"data": []` is a valid write of nothing.
pub fn parse_write(layout: &Layout, body: &Json) -> Result<WritePlan, RequestError> {
    let key = layout.schema.key().as_str();
    let rows = body::rows_field(&layout.schema, body)?;
    let on_duplicate = body::on_duplicate(body)?;
    let mut groups: BTreeMap<Ident, Vec<Row>> = BTreeMap::new();
    let mut outside = Vec::new();
    for row in rows {
        match layout.shard_for(row.key()) {
            Some(s) => groups.entry(s.id.clone()).or_default().push(row),
            None => outside.push(row.key()),
        }
    }
    if !outside.is_empty() {
        let list: Vec<String> = outside.iter().map(i64::to_string).collect();
        return Err(invalid(format!(
            "{key} {} outside every shard; nothing was written",
            list.join(", ")
        )));
    }
    Ok(WritePlan {
        groups,
        on_duplicate,
    })
}

/// The shard of a single key, or 400 naming it.
fn shard_of(layout: &Layout, key: i64) -> Result<Ident, RequestError> {
    layout.shard_for(key).map(|s| s.id.clone()).ok_or_else(|| {
        invalid(format!(
            "{}:{key} is outside every shard",
            layout.schema.key()
        ))
    })
}

/// `/update`: `{"Stud_id": 2255, "data": {...}}`: `data` is the whole row or only the columns to
/// change, with or without the key (which cannot change).
pub fn parse_update(layout: &Layout, body: &Json) -> Result<(Ident, i64, Patch), RequestError> {
    let key = body::key_field(&layout.schema, body)?;
    let patch = body::patch_field(&layout.schema, key, body)?;
    Ok((shard_of(layout, key)?, key, patch))
}

/// `/del`: `{"Stud_id": 2255}`.
pub fn parse_delete(layout: &Layout, body: &Json) -> Result<(Ident, i64), RequestError> {
    let key = body::key_field(&layout.schema, body)?;
    Ok((shard_of(layout, key)?, key))
}
