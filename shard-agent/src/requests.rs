//! Pure parsing and validation of the seed server API's request bodies. Nothing here touches
//! state: a request that fails here changes nothing.

use std::time::Duration;

use serde_json::Value as Json;
use walshard_contract::body::{self, field};
use walshard_contract::row::{json_kind, parse_key};
use walshard_contract::{Ident, KeyRange, RequestError, Schema, ShardSpec};

use crate::ops::Op;

/// The `"shard"` field, validated as an identifier.
pub fn shard_field(body: &Json) -> Result<Ident, RequestError> {
    let raw = field(body, "shard")?;
    let name = raw.as_str().ok_or_else(|| {
        RequestError::Invalid(format!(
            "\"shard\" must be a string, got {}",
            json_kind(raw)
        ))
    })?;
    Ident::new(name).map_err(|e| RequestError::Invalid(format!("shard: {e}")))
}

/// A shard named in `/config`, with its key range when one was given.
pub type NamedShard = (Ident, Option<ShardSpec>);

/// `/config`: `{"schema": {...}, "shards": ["sh1", ...]}`; a shard may also be given with its
/// range, as `{"Stud_id_low": 0, "Shard_id": "sh1", "Shard_size": 4096}`.
pub fn parse_config(body: &Json) -> Result<(Schema, Vec<NamedShard>), RequestError> {
    let schema: Schema = serde_json::from_value(field(body, "schema")?.clone())
        .map_err(|e| RequestError::Invalid(format!("schema: {e}")))?;
    let Some(list) = field(body, "shards")?.as_array() else {
        return Err(RequestError::Invalid("\"shards\" must be an array".into()));
    };
    if list.is_empty() {
        return Err(RequestError::Invalid("\"shards\" must not be empty".into()));
    }
    let mut shards = Vec::with_capacity(list.len());
    for item in list {
        let shard = match item {
            Json::String(name) => (
                Ident::new(name).map_err(|e| RequestError::Invalid(format!("shard: {e}")))?,
                None,
            ),
            other => {
                let spec = ShardSpec::from_json(schema.key().as_str(), other)?;
                (spec.id.clone(), Some(spec))
            }
        };
        if shards.iter().any(|(id, _)| *id == shard.0) {
            return Err(RequestError::Invalid(format!(
                "shard {} listed twice",
                shard.0
            )));
        }
        shards.push(shard);
    }
    Ok((schema, shards))
}

fn check_in_range(
    schema: &Schema,
    range: Option<&ShardSpec>,
    key: i64,
) -> Result<(), RequestError> {
    match range {
        Some(r) if !r.contains(key) => Err(RequestError::Invalid(format!(
            "{}:{key} is outside shard {} [{}, {})",
            schema.key(),
            r.id,
            r.low,
            r.end()
        ))),
        _ => Ok(()),
    }
}

/// `/write`: `{"shard": "sh1", "data": [rows], "on_duplicate": "skip"|"error"}` → one
/// [`Op::Write`] (an empty `data` is a valid batch of nothing).
pub fn parse_write(
    schema: &Schema,
    range: Option<&ShardSpec>,
    body: &Json,
) -> Result<Op, RequestError> {
    let rows = body::rows_field(schema, body)?;
    for row in &rows {
        check_in_range(schema, range, row.key())?;
    }
    Ok(Op::Write {
        rows,
        on_duplicate: body::on_duplicate(body)?,
    })
}

/// The key field (e.g. `"Stud_id": 7`), checked against the shard's range.
fn key_field(schema: &Schema, range: Option<&ShardSpec>, body: &Json) -> Result<i64, RequestError> {
    let key = body::key_field(schema, body)?;
    check_in_range(schema, range, key)?;
    Ok(key)
}

/// `/update`: `{"shard": .., "Stud_id": k, "data": {columns to set}}`; `data` may hold the whole
/// row or some columns, with or without the key (which cannot change).
pub fn parse_update(
    schema: &Schema,
    range: Option<&ShardSpec>,
    body: &Json,
) -> Result<Op, RequestError> {
    let key = key_field(schema, range, body)?;
    Ok(Op::Patch {
        key,
        patch: body::patch_field(schema, key, body)?,
    })
}

/// `/del`: `{"shard": .., "Stud_id": k}`.
pub fn parse_delete(
    schema: &Schema,
    range: Option<&ShardSpec>,
    body: &Json,
) -> Result<Op, RequestError> {
    Ok(Op::Delete {
        key: key_field(schema, range, body)?,
    })
}

/// `/read`: `{"shard": .., "Stud_id": {"low": a, "high": b}}`, inclusive at both ends.
pub fn parse_read(schema: &Schema, body: &Json) -> Result<KeyRange, RequestError> {
    body::range_field(schema, body)
}

/// The seed's `"curr_idx"` of a server `/write`, echoed as `current_idx` plus the rows added.
pub fn curr_idx(body: &Json) -> Result<Option<i64>, RequestError> {
    match body.get("curr_idx") {
        None | Some(Json::Null) => Ok(None),
        Some(v) => parse_key("curr_idx", v)
            .map(Some)
            .map_err(RequestError::from),
    }
}

/// Longest a read may wait for this replica to reach the position it needs.
pub const MAX_READ_WAIT: Duration = Duration::from_secs(5);

/// A non-negative integer field (`0` when absent).
fn position_field(body: &Json, name: &str) -> Result<u64, RequestError> {
    match body.get(name) {
        None | Some(Json::Null) => Ok(0),
        Some(v) => position(name, v),
    }
}

/// A non-negative integer value, named `name` in errors.
fn position(name: &str, v: &Json) -> Result<u64, RequestError> {
    let n = parse_key(name, v)?;
    u64::try_from(n).map_err(|_| RequestError::Invalid(format!("{name:?} must not be negative")))
}

/// `"wait_ms"`: how long a read may wait for its position (at most [`MAX_READ_WAIT`]).
fn wait_field(body: &Json) -> Result<Duration, RequestError> {
    Ok(Duration::from_millis(position_field(body, "wait_ms")?).min(MAX_READ_WAIT))
}

/// A session read's position: `"min_lsn"` (the replica must have applied at least this LSN;
/// default 0) and `"wait_ms"` (how long it may wait for it; default 0).
pub fn read_position(body: &Json) -> Result<(u64, Duration), RequestError> {
    Ok((position_field(body, "min_lsn")?, wait_field(body)?))
}

/// A session `/copy`'s positions: `"min_lsn": {"sh1": 12, ...}` and `"wait_ms"`, or `None` when
/// the body asks for none (the seed's plain `/copy`).
pub type CopyPositions = (std::collections::BTreeMap<String, u64>, Duration);

/// The [`CopyPositions`] of a `/copy` body: `None` when it has neither `"min_lsn"` nor
/// `"wait_ms"`; a shard missing from `"min_lsn"` needs position 0.
pub fn copy_positions(body: &Json) -> Result<Option<CopyPositions>, RequestError> {
    if body.get("min_lsn").is_none() && body.get("wait_ms").is_none() {
        return Ok(None);
    }
    let mut min = std::collections::BTreeMap::new();
    match body.get("min_lsn") {
        None | Some(Json::Null) => {}
        Some(Json::Object(m)) => {
            for (shard, v) in m {
                min.insert(shard.clone(), position(shard, v)?);
            }
        }
        Some(_) => {
            return Err(RequestError::Invalid(
                "\"min_lsn\" must map shard ids to log positions".into(),
            ));
        }
    }
    Ok(Some((min, wait_field(body)?)))
}

/// `"consistency": "strong"` asks for a linearizable read; `"eventual"` (the default) for any
/// committed state.
pub fn wants_strong(body: &Json) -> Result<bool, RequestError> {
    match body.get("consistency") {
        None => Ok(false),
        Some(Json::String(s)) if s == "eventual" => Ok(false),
        Some(Json::String(s)) if s == "strong" => Ok(true),
        Some(other) => Err(RequestError::Invalid(format!(
            "\"consistency\" must be \"strong\" or \"eventual\", got {other}"
        ))),
    }
}

/// `/copy`: shard names from the body (`{"shards": [..]}`) or the query string
/// (`?shards=sh1,sh2` or `?shards=sh1&shards=sh2`).
pub fn parse_copy(body: Option<&Json>, query: Option<&str>) -> Result<Vec<Ident>, RequestError> {
    let mut names: Vec<String> = Vec::new();
    if let Some(b) = body {
        let Some(list) = field(b, "shards")?.as_array() else {
            return Err(RequestError::Invalid(
                "\"shards\" must be an array of names".into(),
            ));
        };
        for v in list {
            let name = v.as_str().ok_or_else(|| {
                RequestError::Invalid(format!("shard names must be strings, got {}", json_kind(v)))
            })?;
            names.push(name.to_owned());
        }
    }
    for pair in query.unwrap_or("").split('&') {
        if let Some(v) = pair.strip_prefix("shards=") {
            names.extend(v.split(',').filter(|s| !s.is_empty()).map(str::to_owned));
        }
    }
    if names.is_empty() {
        return Err(RequestError::Invalid(
            "name the shards: {\"shards\": [\"sh1\"]} or ?shards=sh1".into(),
        ));
    }
    names
        .iter()
        .map(|n| Ident::new(n).map_err(|e| RequestError::Invalid(format!("shard: {e}"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use walshard_contract::OnDuplicate;

    fn range() -> ShardSpec {
        ShardSpec::from_json(
            "Stud_id",
            &json!({"Stud_id_low": 0, "Shard_id": "sh1", "Shard_size": 4096}),
        )
        .expect("spec")
    }

    #[test]
    fn write_checks_range_and_duplicates() {
        let s = Schema::seed_default();
        let ok =
            json!({"shard": "sh1", "data": [{"Stud_id": 1, "Stud_name": "a", "Stud_marks": 2}]});
        assert!(
            matches!(parse_write(&s, Some(&range()), &ok), Ok(Op::Write { rows, on_duplicate: OnDuplicate::Skip }) if rows.len() == 1)
        );
        let out =
            json!({"shard": "sh1", "data": [{"Stud_id": 4096, "Stud_name": "a", "Stud_marks": 2}]});
        assert!(
            matches!(parse_write(&s, Some(&range()), &out), Err(RequestError::Invalid(m)) if m.contains("outside shard sh1 [0, 4096)"))
        );
        let dup = json!({"shard": "sh1", "data": [
            {"Stud_id": 7, "Stud_name": "a", "Stud_marks": 2},
            {"Stud_id": 7, "Stud_name": "b", "Stud_marks": 3}]});
        assert!(
            matches!(parse_write(&s, None, &dup), Err(RequestError::Conflict(m)) if m.contains("Stud_id: 7"))
        );
        assert!(matches!(
            parse_write(&s, None, &json!({"shard": "sh1", "data": [], "on_duplicate": "error"})),
            Ok(Op::Write { rows, on_duplicate: OnDuplicate::Error }) if rows.is_empty()
        ));
        assert!(parse_write(&s, None, &json!({"shard": "sh1", "data": {}})).is_err());
    }

    #[test]
    fn update_key_must_match() {
        let s = Schema::seed_default();
        let bad = json!({"shard": "sh1", "Stud_id": 1, "data": {"Stud_id": 2, "Stud_name": "a", "Stud_marks": 1}});
        assert!(parse_update(&s, None, &bad).is_err());
        let ok = json!({"shard": "sh1", "Stud_id": 2, "data": {"Stud_id": 2, "Stud_name": "a", "Stud_marks": 1}});
        assert!(matches!(
            parse_update(&s, None, &ok),
            Ok(Op::Patch { key: 2, patch }) if patch.cells.len() == 2
        ));
        let partial = json!({"shard": "sh1", "Stud_id": "2", "data": {"Stud_marks": "5"}});
        assert!(matches!(
            parse_update(&s, None, &partial),
            Ok(Op::Patch { key: 2, patch }) if patch.cells.len() == 1
        ));
        assert!(matches!(
            parse_delete(&s, None, &json!({"shard": "sh1", "Stud_id": "2"})),
            Ok(Op::Delete { key: 2 })
        ));
        assert!(parse_delete(&s, None, &json!({"shard": "sh1", "Stud_id": "2x"})).is_err());
    }

    #[test]
    fn config_accepts_names_and_specs_and_rejects_hostile_names() {
        let schema = json!({"columns": ["Stud_id", "Stud_name", "Stud_marks"], "dtypes": ["Number", "String", "String"]});
        let (_, shards) = parse_config(&json!({"schema": schema, "shards": ["sh1", {"Stud_id_low": 4096, "Shard_id": "sh2", "Shard_size": 4096}]}))
            .expect("valid");
        assert_eq!(shards.len(), 2);
        assert!(shards[1].1.is_some());
        for bad in [
            json!(["sh1; DROP DATABASE walshard"]),
            json!(["sh1", "sh1"]),
            json!([]),
            json!("sh1"),
        ] {
            assert!(
                parse_config(&json!({"schema": schema, "shards": bad})).is_err(),
                "{bad}"
            );
        }
        let evil_schema = json!({"columns": ["Stud_id", "x` TEXT); DROP TABLE t; --"], "dtypes": ["Number", "String"]});
        assert!(parse_config(&json!({"schema": evil_schema, "shards": ["sh1"]})).is_err());
    }

    #[test]
    fn read_and_copy_positions() {
        let (min, wait) = read_position(&json!({"min_lsn": 12, "wait_ms": "50"})).expect("ok");
        assert_eq!((min, wait), (12, Duration::from_millis(50)));
        assert_eq!(
            read_position(&json!({})).expect("none"),
            (0, Duration::ZERO)
        );
        assert!(read_position(&json!({"min_lsn": -1})).is_err());
        assert_eq!(
            read_position(&json!({"wait_ms": 999_999}))
                .expect("capped")
                .1,
            MAX_READ_WAIT
        );
        assert_eq!(
            copy_positions(&json!({"shards": ["sh1"]})).expect("plain"),
            None
        );
        let (min, wait) = copy_positions(&json!({"min_lsn": {"sh1": 4}, "wait_ms": 10}))
            .expect("ok")
            .expect("positions");
        assert_eq!(
            (min.get("sh1"), wait),
            (Some(&4), Duration::from_millis(10))
        );
        assert!(copy_positions(&json!({"min_lsn": 4})).is_err());
    }

    #[test]
    fn copy_takes_body_or_query() {
        assert_eq!(
            parse_copy(Some(&json!({"shards": ["sh1"]})), None)
                .expect("body")
                .len(),
            1
        );
        assert_eq!(
            parse_copy(None, Some("shards=sh1,sh2"))
                .expect("query")
                .len(),
            2
        );
        assert_eq!(
            parse_copy(None, Some("shards=sh1&shards=sh2"))
                .expect("query")
                .len(),
            2
        );
        assert!(parse_copy(None, None).is_err());
        assert!(parse_copy(None, Some("shards=a%20b")).is_err());
    }
}
