//! Coercion of JSON values into a column's type, done once at the edge (the router and the agent
//! both parse with these functions, before anything reaches a WAL), so every replica stores the
//! same value whatever JSON type a client sent.
//!
//! The rules follow MySQL's strict mode minus its lossy parts (docs/seed-compatibility.md):
//! - `String`: a string, or a JSON number as its decimal text (`46` → `"46"`, `46.5` → `"46.5"`);
//! - `Number` and every key or bound: a JSON integer, an integral float (`5.0`), or a string of an
//!   integer (optional sign, surrounding spaces) that fits in 64 bits; never rounded;
//! - `Float`: a finite JSON number or a string of one;
//! - `Boolean`: `true`/`false`, `0`/`1`, or those as strings.
//!
//! Anything else (arrays, objects, booleans where a number or text is wanted, fractions for
//! integers, junk, empty strings, out-of-range values) is refused with the reason.

use serde_json::Value as Json;

use crate::schema::Dtype;
use crate::value::Value;

/// Why a JSON value does not fit a column's type; the message completes "must be <dtype>, got ...".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotCoercible(pub String);

fn refuse(what: impl Into<String>) -> NotCoercible {
    NotCoercible(what.into())
}

/// Short description of a JSON value for error messages (`a string "abc"`, `a float 1.5`).
pub fn describe(v: &Json) -> String {
    const MAX: usize = 40;
    match v {
        Json::Null => "null".into(),
        Json::Bool(b) => format!("a boolean {b}"),
        Json::Number(n) if n.is_i64() || n.is_u64() => format!("an integer {n}"),
        Json::Number(n) => format!("a float {n}"),
        Json::String(s) if s.chars().count() > MAX => {
            let head: String = s.chars().take(MAX).collect();
            format!("a string {head:?}…")
        }
        Json::String(s) => format!("a string {s:?}"),
        Json::Array(_) => "an array".into(),
        Json::Object(_) => "an object".into(),
    }
}

/// An integer key, bound or `Number` cell. `null` is refused here; callers that allow a null cell
/// check for it first.
pub fn integer(v: &Json) -> Result<i64, NotCoercible> {
    let bad = || refuse(describe(v));
    match v {
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                return Ok(i);
            }
            if n.is_u64() {
                return Err(refuse(format!("{} (out of the 64-bit range)", describe(v))));
            }
            let f = n.as_f64().ok_or_else(bad)?;
            integral_float(f).ok_or_else(|| {
                if f.fract() == 0.0 {
                    refuse(format!("{} (out of the 64-bit range)", describe(v)))
                } else {
                    refuse(format!("{} (a fraction is not an integer)", describe(v)))
                }
            })
        }
        Json::String(s) => integer_text(s).ok_or_else(|| {
            refuse(format!(
                "{} (not an integer that fits in 64 bits)",
                describe(v)
            ))
        }),
        _ => Err(bad()),
    }
}

/// `f` as an `i64` when it is integral and inside the 64-bit range (exactly, never rounded).
fn integral_float(f: f64) -> Option<i64> {
    // 2^63 is exactly representable; every f64 below it and at or above -2^63 converts exactly
    // when it has no fraction.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    (f.is_finite() && f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f)).then_some(f as i64)
}

/// A string of an integer: optional surrounding spaces, optional sign, decimal digits.
fn integer_text(s: &str) -> Option<i64> {
    let t = s.trim();
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.strip_prefix('+').unwrap_or(t).parse().ok()
}

fn float(v: &Json) -> Result<f64, NotCoercible> {
    let f = match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => {
            let t = s.trim();
            // Rust also parses "inf" and "NaN": only finite decimal numbers are taken.
            t.bytes()
                .any(|b| b.is_ascii_digit())
                .then(|| t.parse::<f64>().ok())
                .flatten()
        }
        _ => None,
    };
    f.filter(|f| f.is_finite())
        .ok_or_else(|| refuse(describe(v)))
}

fn boolean(v: &Json) -> Result<bool, NotCoercible> {
    let b = match v {
        Json::Bool(b) => Some(*b),
        Json::Number(n) => match n.as_f64() {
            Some(0.0) => Some(false),
            Some(1.0) => Some(true),
            _ => None,
        },
        Json::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    };
    b.ok_or_else(|| refuse(describe(v)))
}

fn text(v: &Json) -> Result<String, NotCoercible> {
    match v {
        Json::String(s) => Ok(s.clone()),
        // serde_json prints a number in its shortest canonical decimal form.
        Json::Number(n) => Ok(n.to_string()),
        _ => Err(refuse(describe(v))),
    }
}

/// A cell of a column of type `dtype`; `null` stays `null`.
pub fn cell(dtype: Dtype, v: &Json) -> Result<Value, NotCoercible> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    Ok(match dtype {
        Dtype::Number => Value::Int(integer(v)?),
        Dtype::String => Value::Str(text(v)?),
        Dtype::Float => Value::Float(float(v)?),
        Dtype::Boolean => Value::Bool(boolean(v)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn strings_take_numbers_as_their_text() {
        for (v, want) in [
            (json!("GHI"), "GHI"),
            (json!(""), ""),
            (json!(46), "46"),
            (json!(-3), "-3"),
            (json!(46.5), "46.5"),
            (json!(5.0), "5.0"),
        ] {
            assert_eq!(cell(Dtype::String, &v), Ok(Value::Str(want.into())), "{v}");
        }
        for v in [json!(true), json!([1]), json!({"a": 1})] {
            assert!(cell(Dtype::String, &v).is_err(), "{v}");
        }
    }

    #[test]
    fn integers_take_integral_numbers_and_integer_strings() {
        for (v, want) in [
            (json!(1102), 1102),
            (json!(-7), -7),
            (json!(5.0), 5),
            (json!(-0.0), 0),
            (json!("1102"), 1102),
            (json!("  -12 "), -12),
            (json!("+8"), 8),
            (json!("9223372036854775807"), i64::MAX),
            (json!("-9223372036854775808"), i64::MIN),
            (json!(i64::MIN as f64), i64::MIN),
        ] {
            assert_eq!(integer(&v), Ok(want), "{v}");
        }
        for (v, why) in [
            (json!(1.5), "fraction"),
            (json!("1.5"), "not an integer"),
            (json!("5.0"), "not an integer"),
            (json!("12abc"), "not an integer"),
            (json!(""), "not an integer"),
            (json!("   "), "not an integer"),
            (json!("-"), "not an integer"),
            (json!("9223372036854775808"), "not an integer"),
            (json!(18446744073709551615u64), "64-bit range"),
            (json!(9.3e18), "64-bit range"),
            (json!(1e300), "64-bit range"),
            (json!(true), "boolean"),
            (json!(null), "null"),
            (json!([1]), "array"),
        ] {
            let err = integer(&v).expect_err("must be refused").to_string();
            assert!(err.contains(why), "{v}: {err}");
        }
    }

    #[test]
    fn floats_and_booleans() {
        assert_eq!(cell(Dtype::Float, &json!(2)), Ok(Value::Float(2.0)));
        assert_eq!(cell(Dtype::Float, &json!(" 2.5 ")), Ok(Value::Float(2.5)));
        assert_eq!(
            cell(Dtype::Float, &json!("-1e3")),
            Ok(Value::Float(-1000.0))
        );
        for v in [
            json!("inf"),
            json!("NaN"),
            json!("x"),
            json!(true),
            json!(""),
        ] {
            assert!(cell(Dtype::Float, &v).is_err(), "{v}");
        }
        for (v, want) in [
            (json!(true), true),
            (json!(0), false),
            (json!(1), true),
            (json!("TRUE"), true),
            (json!("0"), false),
        ] {
            assert_eq!(cell(Dtype::Boolean, &v), Ok(Value::Bool(want)), "{v}");
        }
        for v in [json!(2), json!("yes"), json!(0.5)] {
            assert!(cell(Dtype::Boolean, &v).is_err(), "{v}");
        }
        assert_eq!(cell(Dtype::Number, &json!(null)), Ok(Value::Null));
    }

    proptest! {
        /// Every 64-bit integer reads the same as a JSON integer, as its text with spaces and a
        /// sign, and as a float when the float holds it exactly.
        #[test]
        fn every_integer_form_gives_the_same_key(k in any::<i64>(), pad in 0usize..3) {
            prop_assert_eq!(integer(&json!(k)), Ok(k));
            let spaced = format!("{}{k}{}", " ".repeat(pad), " ".repeat(pad));
            prop_assert_eq!(integer(&json!(spaced)), Ok(k));
            let f = k as f64;
            if f as i128 == i128::from(k) && f < -(i64::MIN as f64) {
                prop_assert_eq!(integer(&json!(f)), Ok(k));
            }
        }

        /// A fraction is never rounded into a key.
        #[test]
        fn fractions_are_refused(k in -1_000_000i64..1_000_000, frac in 0.001f64..0.999) {
            let f = k as f64 + frac;
            prop_assume!(f.fract() != 0.0);
            prop_assert!(integer(&json!(f)).is_err());
        }
    }
}
