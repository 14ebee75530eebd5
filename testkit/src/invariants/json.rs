//! Rows as JSON values: their canonical form, their key, and a checksum of a set of rows.

use serde_json::{Map, Value};

/// `v` as compact JSON with object keys sorted recursively, so equal rows give equal strings
/// whatever their field order. Numbers are kept as serde_json prints them (`1` and `1.0`
/// differ).
pub fn canonical_json(v: &Value) -> String {
    fn canon(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut fields: Vec<(&String, &Value)> = m.iter().collect();
                fields.sort_by(|a, b| a.0.cmp(b.0));
                let mut out = Map::new();
                for (k, v) in fields {
                    out.insert(k.clone(), canon(v));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(canon).collect()),
            other => other.clone(),
        }
    }
    canon(v).to_string()
}

/// A row's key: its first field if it is an object (walshard rows put the key column first,
/// and serde_json keeps field order here), or its first element if it is an array, when that is
/// an integer. `None` otherwise.
pub fn row_key(row: &Value) -> Option<i64> {
    match row {
        Value::Object(m) => m.values().next().and_then(Value::as_i64),
        Value::Array(a) => a.first().and_then(Value::as_i64),
        _ => None,
    }
}

/// A stable, order-independent 64-bit checksum of a set of rows: FNV-1a over the rows'
/// [`canonical_json`] strings in sorted order. Equal row multisets give equal checksums in any
/// process and on any version of this crate's dependencies.
pub fn rows_checksum(rows: &[Value]) -> u64 {
    let mut canon: Vec<String> = rows.iter().map(canonical_json).collect();
    canon.sort_unstable();
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for row in &canon {
        // 0xff never occurs in UTF-8, so it separates rows unambiguously.
        for &b in row.as_bytes().iter().chain(std::iter::once(&0xffu8)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
    }
    h
}
