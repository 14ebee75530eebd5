//! Typed rows: JSON objects checked against a [`Schema`], and inclusive key ranges.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::coerce::{self, NotCoercible};
use crate::schema::{Dtype, Schema};

pub use crate::value::Value;

/// A row whose cells follow the schema's column order; cell 0 is the integer key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row(pub Vec<Value>);

/// Why a JSON value is not a valid row, key, range or patch for the schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    /// The row (or patch) is not a JSON object; holds the JSON kind it was.
    #[error("expected a JSON object for a row, got {0}")]
    NotObject(&'static str),
    /// A schema column is absent from the row (its name).
    #[error("row is missing column {0:?}")]
    MissingColumn(String),
    /// The row has a column the schema does not (its name).
    #[error("row has unknown column {0:?}")]
    UnknownColumn(String),
    /// A cell cannot be read as its column's dtype.
    #[error("column {column:?} must be {expected:?}, got {got}")]
    WrongType {
        /// The column's name.
        column: String,
        /// The column's dtype.
        expected: Dtype,
        /// What the JSON value was.
        got: NotCoercible,
    },
    /// The key column is `null` (its name).
    #[error("key column {0:?} must be an integer, not null")]
    NullKey(String),
    /// A key value (or range bound) is not an integer.
    #[error("{name:?} must be an integer, got {got}")]
    KeyNotInteger {
        /// The key column or bound name.
        name: String,
        /// What the JSON value was.
        got: NotCoercible,
    },
    /// A key range lacks `low` or `high` or is not an object (what was wrong).
    #[error("range needs \"low\" and \"high\", got {0}")]
    BadRange(String),
    /// An `/update`'s data holds a key different from the row's key.
    #[error("the key of a row cannot change: {name} is {key} but data.{name} is {got}")]
    KeyChanged {
        /// The key column's name.
        name: String,
        /// The row's key.
        key: i64,
        /// The key in the data.
        got: i64,
    },
}

/// JSON kind name for error messages.
pub fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Json::Number(_) => "a float",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn cell(column: &str, dtype: Dtype, v: &Json) -> Result<Value, RowError> {
    coerce::cell(dtype, v).map_err(|got| RowError::WrongType {
        column: column.to_owned(),
        expected: dtype,
        got,
    })
}

/// Reads an integer key value (e.g. the `Stud_id` of `/update` or `/del`, a range bound): a JSON
/// integer, an integral float or a string of an integer ([`coerce::integer`]).
pub fn parse_key(name: &str, v: &Json) -> Result<i64, RowError> {
    coerce::integer(v).map_err(|got| RowError::KeyNotInteger {
        name: name.to_owned(),
        got,
    })
}

impl Row {
    /// Checks a JSON object against the schema: every column present (non-key columns may be
    /// `null`), no unknown column, each value of its column's dtype.
    pub fn from_json(schema: &Schema, v: &Json) -> Result<Row, RowError> {
        let Json::Object(obj) = v else {
            return Err(RowError::NotObject(json_kind(v)));
        };
        if let Some(unknown) = obj.keys().find(|k| schema.position(k).is_none()) {
            return Err(RowError::UnknownColumn(unknown.clone()));
        }
        let mut cells = Vec::with_capacity(schema.columns().len());
        for (column, dtype) in schema.iter() {
            let raw = obj
                .get(column.as_str())
                .ok_or_else(|| RowError::MissingColumn(column.to_string()))?;
            cells.push(cell(column.as_str(), dtype, raw)?);
        }
        if cells[0] == Value::Null {
            return Err(RowError::NullKey(schema.key().to_string()));
        }
        Ok(Row(cells))
    }

    /// The shard key (cell 0). Rows are only built by [`Row::from_json`] or from the store, both
    /// of which guarantee an integer there.
    pub fn key(&self) -> i64 {
        match self.0.first() {
            Some(Value::Int(k)) => *k,
            _ => i64::MIN,
        }
    }

    /// The row as a JSON object in schema column order.
    pub fn to_json(&self, schema: &Schema) -> Map<String, Json> {
        schema
            .columns()
            .iter()
            .zip(&self.0)
            .map(|(c, v)| (c.to_string(), v.to_json()))
            .collect()
    }
}

/// Why a `"data"` array of rows was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowsError {
    /// A malformed array or row; the message names the row's index.
    #[error("{0}")]
    Invalid(String),
    /// Keys that appear more than once in the batch (sorted, each once).
    #[error("{}", duplicate_message("key", .0, "appears more than once in this batch"))]
    Duplicate(Vec<i64>),
}

/// Parses a `"data"` array of rows against the schema (an empty array is a batch of nothing); a
/// key given twice is refused (nothing of such a batch may be written).
pub fn parse_rows(schema: &Schema, data: &Json) -> Result<Vec<Row>, RowsError> {
    let Some(items) = data.as_array() else {
        return Err(RowsError::Invalid(
            "\"data\" must be an array of rows".into(),
        ));
    };
    let mut rows = Vec::with_capacity(items.len());
    let mut seen = std::collections::BTreeSet::new();
    let mut repeated = std::collections::BTreeSet::new();
    for (i, raw) in items.iter().enumerate() {
        let row = Row::from_json(schema, raw)
            .map_err(|e| RowsError::Invalid(format!("data[{i}]: {e}")))?;
        if !seen.insert(row.key()) {
            repeated.insert(row.key());
        }
        rows.push(row);
    }
    if !repeated.is_empty() {
        return Err(RowsError::Duplicate(repeated.into_iter().collect()));
    }
    Ok(rows)
}

/// The message for keys that collide, naming every key: `duplicate Stud_id: 1, 2 <why>; nothing
/// of this batch was written`.
pub fn duplicate_message(key: &str, keys: &[i64], why: &str) -> String {
    let list: Vec<String> = keys.iter().map(i64::to_string).collect();
    format!(
        "duplicate {key}: {} {why}; nothing of this batch was written",
        list.join(", ")
    )
}

/// An inclusive key range `{"low": .., "high": ..}`, as the seed's `/read` takes it. `low > high`
/// is an empty range (the seed answers it with no rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRange {
    /// First key in the range (inclusive).
    pub low: i64,
    /// Last key in the range (inclusive).
    pub high: i64,
}

impl KeyRange {
    /// The bounds may be sent as any integer form [`parse_key`] takes.
    pub fn from_json(v: &Json) -> Result<KeyRange, RowError> {
        if !v.is_object() {
            return Err(RowError::BadRange(json_kind(v).to_owned()));
        }
        let bound = |name: &str| match v.get(name) {
            Some(b) => parse_key(name, b),
            None => Err(RowError::BadRange(format!("no {name:?} in {v}"))),
        };
        Ok(KeyRange {
            low: bound("low")?,
            high: bound("high")?,
        })
    }

    /// Whether `low <= key <= high`.
    pub fn contains(&self, key: i64) -> bool {
        self.low <= key && key <= self.high
    }

    /// No key is inside (`low > high`).
    pub fn is_empty(&self) -> bool {
        self.low > self.high
    }
}

/// The columns an `/update` sets: the seed takes a partial row (only the columns to change), with
/// or without the key inside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Patch {
    /// `(column position in the schema, new value)`, in schema order, never the key column.
    pub cells: Vec<(usize, Value)>,
}

impl Patch {
    /// Reads `data` of an update of the row with key `key`: known columns only, each coerced to
    /// its type; the key column may be present but must not change.
    pub fn from_json(schema: &Schema, key: i64, data: &Json) -> Result<Patch, RowError> {
        let Json::Object(obj) = data else {
            return Err(RowError::NotObject(json_kind(data)));
        };
        if let Some(unknown) = obj.keys().find(|k| schema.position(k).is_none()) {
            return Err(RowError::UnknownColumn(unknown.clone()));
        }
        let key_name = schema.key().as_str();
        if let Some(raw) = obj.get(key_name) {
            if raw.is_null() {
                return Err(RowError::NullKey(key_name.to_owned()));
            }
            let got = parse_key(key_name, raw)?;
            if got != key {
                return Err(RowError::KeyChanged {
                    name: key_name.to_owned(),
                    key,
                    got,
                });
            }
        }
        let mut cells = Vec::new();
        for (i, (column, dtype)) in schema.iter().enumerate().skip(1) {
            if let Some(raw) = obj.get(column.as_str()) {
                cells.push((i, cell(column.as_str(), dtype, raw)?));
            }
        }
        Ok(Patch { cells })
    }

    /// Every non-key column of `row`: a whole-row update.
    pub fn whole(row: &Row) -> Patch {
        Patch {
            cells: row.0.iter().cloned().enumerate().skip(1).collect(),
        }
    }

    /// The patch as a JSON object with the key, in schema order (what a router forwards).
    pub fn to_json(&self, schema: &Schema, key: i64) -> Map<String, Json> {
        let mut out = Map::new();
        out.insert(schema.key().to_string(), Json::from(key));
        for (i, v) in &self.cells {
            if let Some(column) = schema.columns().get(*i) {
                out.insert(column.to_string(), v.to_json());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn row_round_trips_in_column_order() {
        let s = Schema::seed_default();
        let v = json!({"Stud_marks": 27, "Stud_id": 2255, "Stud_name": "GHI"});
        let row = Row::from_json(&s, &v).expect("valid row");
        assert_eq!(row.key(), 2255);
        let out = Json::Object(row.to_json(&s));
        assert_eq!(
            out,
            json!({"Stud_id": 2255, "Stud_name": "GHI", "Stud_marks": 27})
        );
        let keys: Vec<_> = row.to_json(&s).keys().cloned().collect();
        assert_eq!(keys, ["Stud_id", "Stud_name", "Stud_marks"]);
    }

    #[test]
    fn rejects_each_bad_row_class() {
        let s = Schema::seed_default();
        let cases = [
            (json!([1, 2]), "expected a JSON object"),
            (
                json!({"Stud_name": "a", "Stud_marks": 1}),
                "missing column \"Stud_id\"",
            ),
            (
                json!({"Stud_id": 1, "Stud_name": "a", "Stud_marks": 1, "x": 1}),
                "unknown column",
            ),
            (
                json!({"Stud_id": "1x", "Stud_name": "a", "Stud_marks": 1}),
                "must be Number",
            ),
            (
                json!({"Stud_id": 1.5, "Stud_name": "a", "Stud_marks": 1}),
                "got a float 1.5",
            ),
            (
                json!({"Stud_id": 1, "Stud_name": true, "Stud_marks": 1}),
                "must be String",
            ),
            (
                json!({"Stud_id": null, "Stud_name": "a", "Stud_marks": 1}),
                "not null",
            ),
            (
                json!({"Stud_id": 18446744073709551615u64, "Stud_name": "a", "Stud_marks": 1}),
                "must be Number",
            ),
        ];
        for (v, want) in cases {
            let err = Row::from_json(&s, &v).expect_err("must fail").to_string();
            assert!(err.contains(want), "{v}: {err}");
        }
    }

    #[test]
    fn null_allowed_outside_the_key() {
        let s = Schema::seed_default();
        let row = Row::from_json(
            &s,
            &json!({"Stud_id": 1, "Stud_name": null, "Stud_marks": 1}),
        )
        .expect("valid");
        assert_eq!(row.0[1], Value::Null);
    }

    #[test]
    fn seed_values_are_coerced_to_the_column_type() {
        let s = Schema::new(
            &["Stud_id", "Stud_name", "Stud_marks"],
            vec![Dtype::Number, Dtype::String, Dtype::String],
        )
        .expect("the seed's schema");
        let row = Row::from_json(
            &s,
            &json!({"Stud_id": "2255", "Stud_name": "GHI", "Stud_marks": 27}),
        )
        .expect("valid");
        assert_eq!(
            Json::Object(row.to_json(&s)),
            json!({"Stud_id": 2255, "Stud_name": "GHI", "Stud_marks": "27"})
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(
            KeyRange::from_json(&json!({"low": 1, "high": 3})),
            Ok(KeyRange { low: 1, high: 3 })
        );
        assert_eq!(
            KeyRange::from_json(&json!({"low": "1000", "high": 8889.0})),
            Ok(KeyRange {
                low: 1000,
                high: 8889
            })
        );
        let empty = KeyRange::from_json(&json!({"low": 4, "high": 3})).expect("empty range");
        assert!(empty.is_empty() && !empty.contains(3) && !empty.contains(4));
        assert!(KeyRange::from_json(&json!({"low": "a", "high": 3})).is_err());
        assert!(KeyRange::from_json(&json!({"low": 1.5, "high": 3})).is_err());
        assert!(KeyRange::from_json(&json!({"high": 3})).is_err());
        assert!(KeyRange::from_json(&json!(7)).is_err());
        assert!(KeyRange { low: 1, high: 3 }.contains(3));
    }

    #[test]
    fn patches_take_partial_rows() {
        let s = Schema::seed_default();
        let p = Patch::from_json(&s, 2255, &json!({"Stud_marks": "30"})).expect("partial");
        assert_eq!(p.cells, vec![(2, Value::Int(30))]);
        assert_eq!(
            Json::Object(p.to_json(&s, 2255)),
            json!({"Stud_id": 2255, "Stud_marks": 30})
        );
        let whole = json!({"Stud_id": "2255", "Stud_name": "GHI", "Stud_marks": 30});
        let p = Patch::from_json(&s, 2255, &whole).expect("whole row");
        let row = Row::from_json(&s, &whole).expect("row");
        assert_eq!(p, Patch::whole(&row));
        for (data, why) in [
            (json!({"Stud_id": 2256, "Stud_marks": 1}), "cannot change"),
            (json!({"Stud_id": null}), "not null"),
            (json!({"nope": 1}), "unknown column"),
            (json!({"Stud_marks": "x"}), "must be Number"),
            (json!([1]), "JSON object"),
        ] {
            let err = Patch::from_json(&s, 2255, &data)
                .expect_err("refused")
                .to_string();
            assert!(err.contains(why), "{data}: {err}");
        }
    }

    #[test]
    fn value_serde_round_trip() {
        let row = Row(vec![
            Value::Int(1),
            Value::Str("x".into()),
            Value::Float(2.5),
            Value::Bool(true),
            Value::Null,
        ]);
        let text = serde_json::to_string(&row).expect("ser");
        assert_eq!(serde_json::from_str::<Row>(&text).expect("de"), row);
    }
}
