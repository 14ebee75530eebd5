//! Values to and from MySQL: binding a cell, decoding a row by the schema's types, and
//! recognising a duplicate-key error.

use sqlx::mysql::{MySqlArguments, MySqlRow};
use sqlx::query::Query;
use sqlx::{MySql, Row as _};
use walshard_contract::{Dtype, Row, Schema, Value};

/// ER_DUP_ENTRY.
const DUPLICATE_KEY: &str = "23000";

/// Binds one cell (`NULL` as a typed null).
pub(super) fn bind_value<'q>(
    q: Query<'q, MySql, MySqlArguments>,
    v: &Value,
) -> Query<'q, MySql, MySqlArguments> {
    match v {
        Value::Null => q.bind(None::<i64>),
        Value::Bool(b) => q.bind(*b),
        Value::Int(i) => q.bind(*i),
        Value::Float(f) => q.bind(*f),
        Value::Str(s) => q.bind(s.clone()),
    }
}

/// A row selected with the schema's column list, decoded by the columns' types.
pub(super) fn decode_row(schema: &Schema, r: &MySqlRow) -> Result<Row, sqlx::Error> {
    let mut cells = Vec::with_capacity(schema.columns().len());
    for (i, (_, dtype)) in schema.iter().enumerate() {
        let v = match dtype {
            Dtype::Number => r.try_get::<Option<i64>, _>(i)?.map(Value::Int),
            Dtype::String => r.try_get::<Option<String>, _>(i)?.map(Value::Str),
            Dtype::Float => r.try_get::<Option<f64>, _>(i)?.map(Value::Float),
            Dtype::Boolean => r.try_get::<Option<i8>, _>(i)?.map(|b| Value::Bool(b != 0)),
        };
        cells.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(cells))
}

/// Whether `e` is MySQL's duplicate-key error (SQLSTATE 23000 about a duplicate entry).
pub(super) fn is_duplicate_key(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some(DUPLICATE_KEY)
        && db.message().contains("Duplicate"))
}
