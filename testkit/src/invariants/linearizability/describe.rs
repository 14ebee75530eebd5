//! Operations and values as the linearizability messages show them.

use std::fmt::Write as _;

use serde_json::Value;

use super::history::{RegisterKind, RegisterOp, RegisterOutcome};
use crate::invariants::json::canonical_json;

const MAX_VALUE_CHARS: usize = 80;
/// Most operations listed in one explanation.
/// A value in a message: `absent`, or its canonical JSON cut to [`MAX_VALUE_CHARS`].
pub(crate) fn show_value(v: Option<&Value>) -> String {
    match v {
        None => "absent".to_owned(),
        Some(v) => {
            let s = canonical_json(v);
            if s.chars().count() > MAX_VALUE_CHARS {
                let cut: String = s.chars().take(MAX_VALUE_CHARS).collect();
                format!("{cut}…")
            } else {
                s
            }
        }
    }
}

/// `#id write({"a":1}) [invoke, complete]` or `... [invoke, ∞) unknown`.
pub(crate) fn describe(op: &RegisterOp) -> String {
    let mut s = String::new();
    if let Some(id) = op.id {
        let _ = write!(s, "#{id} ");
    }
    match &op.kind {
        RegisterKind::Write(v) => {
            let _ = write!(s, "write({})", show_value(Some(v)));
        }
        RegisterKind::Read(v) => {
            let _ = write!(s, "read→{}", show_value(v.as_ref()));
        }
        RegisterKind::Delete => s.push_str("delete"),
    }
    match op.outcome {
        RegisterOutcome::Ok => {
            let _ = write!(s, " [{}, {}]", op.invoke, op.complete);
        }
        RegisterOutcome::Unknown => {
            let _ = write!(s, " [{}, ∞) unknown", op.invoke);
        }
    }
    s
}
