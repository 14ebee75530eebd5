//! One cell of a row, typed by its column's dtype.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// One cell. Serialises as the plain JSON value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// SQL `NULL` / JSON `null`.
    Null,
    /// A `Boolean` cell.
    Bool(bool),
    /// A `Number` cell (also every key).
    Int(i64),
    /// A `Float` cell.
    Float(f64),
    /// A `String` cell.
    Str(String),
}

impl Value {
    /// The plain JSON value.
    pub(crate) fn to_json(&self) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) => Json::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
            Value::Str(s) => Json::String(s.clone()),
        }
    }
}
