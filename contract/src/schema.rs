//! The table schema: `{"columns": [...], "dtypes": [...]}`. The first column is the integer shard key.

use serde::{Deserialize, Serialize};

use crate::ident::{Ident, IdentError};

/// A column type. The seed has `Number` and `String`; `Float` and `Boolean` are extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Dtype {
    /// A signed 64-bit integer (`BIGINT`).
    Number,
    /// UTF-8 text (`TEXT`).
    String,
    /// A 64-bit float (`DOUBLE`).
    Float,
    /// `true`/`false` (`BOOLEAN`).
    Boolean,
}

impl Dtype {
    /// The column type in SQL that MySQL 8.4 and MariaDB 10.11 both accept.
    pub fn sql_type(self) -> &'static str {
        match self {
            Dtype::Number => "BIGINT",
            Dtype::String => "TEXT",
            Dtype::Float => "DOUBLE",
            Dtype::Boolean => "BOOLEAN",
        }
    }
}

/// Why a schema is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// `columns` is empty.
    #[error("schema needs at least one column")]
    NoColumns,
    /// `columns` and `dtypes` differ in length.
    #[error("schema has {columns} columns but {dtypes} dtypes")]
    LengthMismatch {
        /// How many column names.
        columns: usize,
        /// How many dtypes.
        dtypes: usize,
    },
    /// A column name is not a valid identifier.
    #[error("column name: {0}")]
    BadColumn(#[from] IdentError),
    /// Two columns have the same name, ignoring ASCII case (the second one).
    #[error("column {0:?} appears twice (names are case-insensitive)")]
    DuplicateColumn(String),
    #[error(
        "the first column {column:?} is the shard key and must have dtype Number, not {dtype:?}"
    )]
    /// The first column (the shard key) is not `Number`.
    KeyNotNumber {
        /// The key column's name.
        column: String,
        /// Its dtype.
        dtype: Dtype,
    },
}

/// Unvalidated wire form.
#[derive(Deserialize)]
struct RawSchema {
    columns: Vec<String>,
    dtypes: Vec<Dtype>,
}

/// A validated schema: identifiers checked, names unique, key column first and integer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawSchema")]
pub struct Schema {
    columns: Vec<Ident>,
    dtypes: Vec<Dtype>,
}

impl TryFrom<RawSchema> for Schema {
    type Error = SchemaError;
    fn try_from(raw: RawSchema) -> Result<Self, Self::Error> {
        Schema::new(&raw.columns, raw.dtypes)
    }
}

impl Schema {
    /// Validates a schema: at least one column, one dtype per column, valid unique names, the first column `Number`.
    pub fn new<S: AsRef<str>>(columns: &[S], dtypes: Vec<Dtype>) -> Result<Self, SchemaError> {
        if columns.is_empty() {
            return Err(SchemaError::NoColumns);
        }
        if columns.len() != dtypes.len() {
            return Err(SchemaError::LengthMismatch {
                columns: columns.len(),
                dtypes: dtypes.len(),
            });
        }
        let mut idents: Vec<Ident> = Vec::with_capacity(columns.len());
        for name in columns {
            let ident = Ident::new(name.as_ref())?;
            if idents
                .iter()
                .any(|c| c.as_str().eq_ignore_ascii_case(ident.as_str()))
            {
                return Err(SchemaError::DuplicateColumn(ident.to_string()));
            }
            idents.push(ident);
        }
        if dtypes[0] != Dtype::Number {
            return Err(SchemaError::KeyNotNumber {
                column: idents[0].to_string(),
                dtype: dtypes[0],
            });
        }
        Ok(Self {
            columns: idents,
            dtypes,
        })
    }

    /// The seed's own schema: `Stud_id` (Number), `Stud_name` and `Stud_marks` (String; the
    /// seed's clients send marks as numbers, stored as their text).
    pub fn seed() -> Self {
        Self::seed_table(Dtype::String)
    }

    /// The seed's table with numeric marks, as the tests use it.
    pub fn seed_default() -> Self {
        Self::seed_table(Dtype::Number)
    }

    /// `Stud_id` (Number), `Stud_name` (String), `Stud_marks` of type `marks`.
    fn seed_table(marks: Dtype) -> Self {
        Self {
            columns: ["Stud_id", "Stud_name", "Stud_marks"]
                .iter()
                .map(|c| Ident::from_literal(c))
                .collect(),
            dtypes: vec![Dtype::Number, Dtype::String, marks],
        }
    }

    /// The shard key column (the first one).
    pub fn key(&self) -> &Ident {
        &self.columns[0]
    }

    /// The column names, key first.
    pub fn columns(&self) -> &[Ident] {
        &self.columns
    }

    /// The dtypes, in column order.
    pub fn dtypes(&self) -> &[Dtype] {
        &self.dtypes
    }

    /// `(column, dtype)` pairs in schema order.
    pub fn iter(&self) -> impl Iterator<Item = (&Ident, Dtype)> {
        self.columns.iter().zip(self.dtypes.iter().copied())
    }

    /// Position of a column by exact name.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.as_str() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_seed_schema() {
        let s: Schema = serde_json::from_value(json!({
            "columns": ["Stud_id", "Stud_name", "Stud_marks"],
            "dtypes": ["Number", "String", "String"]
        }))
        .expect("valid");
        assert_eq!(s.key().as_str(), "Stud_id");
        assert_eq!(s.columns().len(), 3);
    }

    #[test]
    fn rejects_bad_schemas() {
        let cases = [
            json!({"columns": [], "dtypes": []}),
            json!({"columns": ["a", "b"], "dtypes": ["Number"]}),
            json!({"columns": ["a", "A"], "dtypes": ["Number", "String"]}),
            json!({"columns": ["name"], "dtypes": ["String"]}),
            json!({"columns": ["id", "x`); DROP TABLE t; --"], "dtypes": ["Number", "String"]}),
            json!({"columns": ["id"], "dtypes": ["Blob"]}),
        ];
        for case in cases {
            assert!(
                serde_json::from_value::<Schema>(case.clone()).is_err(),
                "{case}"
            );
        }
    }

    #[test]
    fn seed_default_is_valid() {
        let d = Schema::seed_default();
        let names: Vec<&str> = d.columns().iter().map(|c| c.as_str()).collect();
        assert_eq!(Schema::new(&names, d.dtypes().to_vec()), Ok(d));
    }
}
