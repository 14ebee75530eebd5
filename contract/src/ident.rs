//! SQL-safe identifiers. Column names and shard ids end up in SQL statements as table and column
//! names; they are only ever used after passing this check, and are always backtick-quoted too.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest identifier we accept; leaves room for the `shard_` table prefix within MySQL's 64.
pub const MAX_IDENT_LEN: usize = 48;

/// The identifier rule as a regular expression (the length limit aside), for JSON schemas and CEL.
pub const IDENT_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*$";

/// A validated identifier: `[A-Za-z_][A-Za-z0-9_]*`, 1 to 48 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ident(String);

/// Why a string is not a valid [`Ident`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentError {
    /// The string is empty.
    #[error("identifier must not be empty")]
    Empty,
    /// Longer than [`MAX_IDENT_LEN`] bytes (the string).
    #[error("identifier {0:?} is longer than {MAX_IDENT_LEN} characters")]
    TooLong(String),
    #[error(
        "identifier {0:?} is not allowed: use letters, digits and '_', not starting with a digit"
    )]
    /// Starts with a digit or holds a character other than ASCII letters, digits and `_` (the string).
    BadChars(String),
}

impl Ident {
    /// Checks `raw` against the rule ([`IDENT_PATTERN`], at most [`MAX_IDENT_LEN`] bytes).
    pub fn new(raw: &str) -> Result<Self, IdentError> {
        if raw.is_empty() {
            return Err(IdentError::Empty);
        }
        if raw.len() > MAX_IDENT_LEN {
            return Err(IdentError::TooLong(raw.to_owned()));
        }
        let mut chars = raw.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(IdentError::BadChars(raw.to_owned()));
        }
        Ok(Self(raw.to_owned()))
    }

    /// For compile-time literals known to satisfy the rule (checked in debug builds).
    pub(crate) fn from_literal(raw: &'static str) -> Self {
        debug_assert!(Self::new(raw).is_ok(), "{raw}");
        Self(raw.to_owned())
    }

    /// The identifier as written, unquoted.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The identifier backtick-quoted for SQL (safe: it contains no backtick by construction).
    pub fn quoted(&self) -> String {
        format!("`{}`", self.0)
    }
}

impl TryFrom<String> for Ident {
    type Error = IdentError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<Ident> for String {
    fn from(value: Ident) -> Self {
        value.0
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_seed_names() {
        for ok in ["Stud_id", "Stud_name", "sh1", "_x", "a9"] {
            assert!(Ident::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_hostile_names() {
        for bad in [
            "",
            "1abc",
            "a b",
            "a`b",
            "x; DROP TABLE t",
            "sh1--",
            "é",
            "a.b",
            "'",
        ] {
            assert!(Ident::new(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            Ident::new(&"a".repeat(49)),
            Err(IdentError::TooLong(_))
        ));
    }

    proptest! {
        #[test]
        fn valid_idents_never_contain_sql_metacharacters(s in "\\PC{0,60}") {
            if let Ok(id) = Ident::new(&s) {
                prop_assert!(id.as_str().chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                prop_assert!(id.as_str().len() <= MAX_IDENT_LEN);
            }
        }
    }
}
