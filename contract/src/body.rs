//! Fields of the seed API's request bodies that the router and the agent both read, parsed one way
//! (values coerced by [`crate::coerce`]). A body that fails here changes nothing.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::envelope::RequestError;
use crate::row::{KeyRange, Patch, Row, RowsError, duplicate_message, parse_key, parse_rows};
use crate::schema::Schema;

/// A required field, or 400 naming it.
pub fn field<'a>(body: &'a Json, name: &str) -> Result<&'a Json, RequestError> {
    body.get(name)
        .ok_or_else(|| RequestError::Invalid(format!("missing field {name:?}")))
}

/// What a `/write` does with a key that is already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDuplicate {
    /// The seed's behaviour: the new rows are written, stored keys are left unchanged and listed
    /// in the answer's `"skipped"`.
    #[default]
    Skip,
    /// Strict: 409 naming the stored keys, nothing of the batch written.
    Error,
}

/// `"on_duplicate": "skip" | "error"`, `skip` when absent.
pub fn on_duplicate(body: &Json) -> Result<OnDuplicate, RequestError> {
    match body.get("on_duplicate") {
        None | Some(Json::Null) => Ok(OnDuplicate::default()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|_| {
            RequestError::Invalid(format!(
                "\"on_duplicate\" must be \"skip\" or \"error\", got {v}"
            ))
        }),
    }
}

/// The `"data"` rows of a `/write`, each checked against the schema; a key twice is a 409.
pub fn rows_field(schema: &Schema, body: &Json) -> Result<Vec<Row>, RequestError> {
    parse_rows(schema, field(body, "data")?).map_err(|e| match e {
        RowsError::Invalid(m) => RequestError::Invalid(m),
        RowsError::Duplicate(keys) => RequestError::Conflict(duplicate_message(
            schema.key().as_str(),
            &keys,
            "appears more than once in this batch",
        )),
    })
}

/// The key field of `/update` and `/del` (e.g. `"Stud_id": 7`, or `"7"`).
pub fn key_field(schema: &Schema, body: &Json) -> Result<i64, RequestError> {
    let name = schema.key().as_str();
    Ok(parse_key(name, field(body, name)?)?)
}

/// The `"data"` of an `/update` of the row with key `key`: a whole or partial row.
pub fn patch_field(schema: &Schema, key: i64, body: &Json) -> Result<Patch, RequestError> {
    Patch::from_json(schema, key, field(body, "data")?)
        .map_err(|e| RequestError::Invalid(format!("data: {e}")))
}

/// The range of a `/read`: `"Stud_id": {"low": .., "high": ..}`.
pub fn range_field(schema: &Schema, body: &Json) -> Result<KeyRange, RequestError> {
    Ok(KeyRange::from_json(field(body, schema.key().as_str())?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn on_duplicate_defaults_to_the_seeds_skip() {
        assert_eq!(on_duplicate(&json!({})), Ok(OnDuplicate::Skip));
        assert_eq!(
            on_duplicate(&json!({"on_duplicate": "error"})),
            Ok(OnDuplicate::Error)
        );
        assert!(on_duplicate(&json!({"on_duplicate": "ignore"})).is_err());
    }

    #[test]
    fn keys_ranges_and_patches() {
        let s = Schema::seed_default();
        assert_eq!(key_field(&s, &json!({"Stud_id": "1102"})), Ok(1102));
        assert_eq!(key_field(&s, &json!({"Stud_id": 1102.0})), Ok(1102));
        assert!(key_field(&s, &json!({"Stud_id": 11.5})).is_err());
        assert!(key_field(&s, &json!({})).is_err());
        let r = range_field(&s, &json!({"Stud_id": {"low": 9, "high": 1}})).expect("range");
        assert!(r.is_empty());
        let p = patch_field(&s, 7, &json!({"data": {"Stud_name": "x"}})).expect("patch");
        assert_eq!(p.cells.len(), 1);
        assert_eq!(rows_field(&s, &json!({"data": []})), Ok(Vec::new()));
        assert!(matches!(
            rows_field(&s, &json!({"data": [{"Stud_id": 1}, {"Stud_id": "1"}]})),
            Err(RequestError::Invalid(_))
        ));
    }
}
