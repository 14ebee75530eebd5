//! JSON schemas of the wire types whose serde form is validated by hand (feature `schema`), so the
//! Kubernetes CRD describes them exactly as they are read. The rest derive `JsonSchema`.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema as JsonSchemaDoc, SchemaGenerator, json_schema};

use crate::ident::{IDENT_PATTERN, Ident, MAX_IDENT_LEN};
use crate::schema::{Dtype, Schema};

impl JsonSchema for Ident {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Ident".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> JsonSchemaDoc {
        json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_IDENT_LEN,
            "pattern": IDENT_PATTERN,
        })
    }
}

impl JsonSchema for Schema {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Schema".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> JsonSchemaDoc {
        let column = generator.subschema_for::<Ident>();
        let dtype = generator.subschema_for::<Dtype>();
        json_schema!({
            "description": "The table: column names and their dtypes, in the same order; the first column is the integer shard key.",
            "type": "object",
            "required": ["columns", "dtypes"],
            "properties": {
                "columns": {
                    "description": "Column names (unique, ignoring case).",
                    "type": "array",
                    "minItems": 1,
                    "items": column,
                },
                "dtypes": {
                    "description": "One dtype per column; the first is Number.",
                    "type": "array",
                    "minItems": 1,
                    "items": dtype,
                },
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ident_schema_carries_the_rule() {
        let s = schemars::schema_for!(Ident);
        assert_eq!(s.get("pattern"), Some(&IDENT_PATTERN.into()));
        assert_eq!(s.get("maxLength"), Some(&MAX_IDENT_LEN.into()));
    }

    #[test]
    fn the_table_schema_lists_dtypes() {
        let s = serde_json::to_string(&schemars::schema_for!(Schema)).unwrap_or_default();
        for dtype in ["Number", "String", "Float", "Boolean"] {
            assert!(s.contains(dtype), "{dtype} in {s}");
        }
    }
}
