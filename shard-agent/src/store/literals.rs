//! SQL literals (pure) for the statements the applier sends several at a time in one round trip
//! (a multi-statement text query cannot carry placeholders). Nothing a client sent is ever spliced
//! in as text: strings and bytes become hex literals, numbers are formatted from their typed
//! values.

use std::fmt::Write as _;

use walshard_contract::{Row, Value};

/// Appends `bytes` as a hex literal (`X'00ff'`).
pub(super) fn bytes(out: &mut String, bytes: &[u8]) {
    out.push_str("X'");
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out.push('\'');
}

/// Appends `s` as a utf8mb4 string literal written in hex (any character, quotes and
/// backslashes included, reaches MySQL unchanged whatever its SQL mode).
pub(super) fn text(out: &mut String, s: &str) {
    out.push_str("_utf8mb4 ");
    bytes(out, s.as_bytes());
}

/// Appends one cell: `NULL`, `TRUE`/`FALSE`, an integer, a float in exponent form (read by MySQL
/// as a DOUBLE, shortest round-trip digits), or text.
pub(super) fn value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("NULL"),
        Value::Bool(b) => out.push_str(if *b { "TRUE" } else { "FALSE" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        // JSON has no NaN or infinity, so a cell never holds one; NULL if it ever did.
        Value::Float(f) if !f.is_finite() => out.push_str("NULL"),
        Value::Float(f) => {
            let _ = write!(out, "{f:e}");
        }
        Value::Str(s) => text(out, s),
    }
}

/// Appends a row as `(v1,v2,...)`.
pub(super) fn row(out: &mut String, r: &Row) {
    out.push('(');
    for (i, v) in r.0.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        value(out, v);
    }
    out.push(')');
}

/// Appends integers as a comma-separated list.
pub(super) fn ints(out: &mut String, values: impl IntoIterator<Item = i64>) {
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lit(v: Value) -> String {
        let mut s = String::new();
        value(&mut s, &v);
        s
    }

    #[test]
    fn every_kind_of_cell_has_its_literal() {
        assert_eq!(lit(Value::Null), "NULL");
        assert_eq!(lit(Value::Bool(true)), "TRUE");
        assert_eq!(lit(Value::Int(i64::MIN)), "-9223372036854775808");
        assert_eq!(lit(Value::Float(1.5)), "1.5e0");
        assert_eq!(lit(Value::Float(1e300)), "1e300");
        assert_eq!(lit(Value::Float(f64::NAN)), "NULL");
        assert_eq!(lit(Value::Str("a'\\".into())), "_utf8mb4 X'61275c'");
        assert_eq!(lit(Value::Str(String::new())), "_utf8mb4 X''");
        let mut s = String::new();
        row(&mut s, &Row(vec![Value::Int(1), Value::Null]));
        ints(&mut s, [3, -4]);
        assert_eq!(s, "(1,NULL)3,-4");
    }

    proptest! {
        /// A text literal holds only the introducer, hex digits and its quotes, and its bytes
        /// decode back to the string: no client text can end the literal.
        #[test]
        fn text_literals_are_hex_and_decode_back(s in ".*") {
            let mut out = String::new();
            text(&mut out, &s);
            let hex = out
                .strip_prefix("_utf8mb4 X'")
                .and_then(|r| r.strip_suffix('\''))
                .expect("shape");
            prop_assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
            let decoded: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect();
            prop_assert_eq!(decoded, s.as_bytes());
        }

        /// Floats are written with their shortest round-trip digits.
        #[test]
        fn float_literals_round_trip(f in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO) {
            let text = lit(Value::Float(f));
            prop_assert_eq!(text.parse::<f64>().expect("parse"), f);
        }
    }
}
