//! What may change in a `ShardedDatabase` spec after it is created: CEL transition rules
//! (`oldSelf`, checked by the API server on update only) and their Rust mirror
//! [`validate_transition`], for local mode and for the reconciler.
//!
//! - `storage.size` may only grow (a claim cannot shrink);
//! - `storage.storageClassName` cannot change once set (existing claims keep their class);
//! - `engine.flavor` cannot change once set (the data directory belongs to one engine);
//! - `schema` cannot change (every server's tables were created from it).

use super::rules::CelRule;
use super::{ShardedDatabaseSpec, SpecError};

/// A claim cannot shrink: `storage.size` compares as a quantity, never smaller.
pub const STORAGE_GROWS: CelRule = CelRule {
    at: "spec.storage",
    rule: "quantity(self.size).compareTo(quantity(oldSelf.size)) >= 0",
    message: "storage.size may only grow",
};

/// Existing claims keep their class: `storageClassName` may be set once.
pub const STORAGE_CLASS_FIXED: CelRule = CelRule {
    at: "spec.storage",
    rule: "!has(oldSelf.storageClassName) || (has(self.storageClassName) && self.storageClassName == oldSelf.storageClassName)",
    message: "storage.storageClassName cannot change once set",
};

/// A data directory belongs to one engine: `engine.flavor` may be set once.
pub const FLAVOR_FIXED: CelRule = CelRule {
    at: "spec.engine",
    rule: "!has(oldSelf.flavor) || (has(self.flavor) && self.flavor == oldSelf.flavor)",
    message: "engine.flavor cannot change once set",
};

/// Every server's tables were created from the schema: it never changes.
pub const SCHEMA_FIXED: CelRule = CelRule {
    at: "spec.schema",
    rule: "self == oldSelf",
    message: "schema is immutable",
};

/// Every transition rule of the CRD.
pub const TRANSITION_RULES: [CelRule; 4] = [
    STORAGE_GROWS,
    STORAGE_CLASS_FIXED,
    FLAVOR_FIXED,
    SCHEMA_FIXED,
];

/// The transition rules in Rust: may `old` become `new`?
pub fn validate_transition(
    old: &ShardedDatabaseSpec,
    new: &ShardedDatabaseSpec,
) -> Result<(), SpecError> {
    match (bytes(&old.storage.size), bytes(&new.storage.size)) {
        (Some(o), Some(n)) if n < o => {
            return Err(SpecError::invalid("storage.size", STORAGE_GROWS.message));
        }
        (Some(_), Some(_)) => {}
        _ => {
            return Err(SpecError::invalid(
                "storage.size",
                "must be a positive quantity",
            ));
        }
    }
    if old.storage.storage_class_name.is_some()
        && old.storage.storage_class_name != new.storage.storage_class_name
    {
        return Err(SpecError::invalid(
            "storage.storageClassName",
            STORAGE_CLASS_FIXED.message,
        ));
    }
    if old.engine.flavor.is_some() && old.engine.flavor != new.engine.flavor {
        return Err(SpecError::invalid("engine.flavor", FLAVOR_FIXED.message));
    }
    if old.schema != new.schema {
        return Err(SpecError::invalid("schema", SCHEMA_FIXED.message));
    }
    Ok(())
}

/// A storage quantity of [`super::rules::STORAGE_SIZE_PATTERN`] in bytes, rounded down (exact
/// up to 2^128; quantities of the pattern differ by at least one byte's thousandth, and sizes
/// below a byte never occur in a claim).
pub fn bytes(size: &str) -> Option<u128> {
    const SUFFIXES: [(&str, u128); 12] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("Pi", 1 << 50),
        ("Ei", 1 << 60),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
        ("P", 1_000_000_000_000_000),
        ("E", 1_000_000_000_000_000_000),
    ];
    if !super::rules::is_positive_size(size) {
        return None;
    }
    let (number, unit) = SUFFIXES
        .iter()
        .find_map(|(s, m)| size.strip_suffix(s).map(|n| (n, *m)))
        .unwrap_or((size, 1));
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let frac = frac.get(..frac.len().min(30)).unwrap_or_default();
    let digits: u128 = format!("{int}{frac}").parse().ok()?;
    let scale = 10u128.checked_pow(u32::try_from(frac.len()).ok()?)?;
    digits.checked_mul(unit).map(|v| v / scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{EngineFlavor, ShardedDatabase};

    fn spec() -> ShardedDatabaseSpec {
        ShardedDatabase::from_yaml(include_str!("../../../examples/seed-default.yaml"))
            .unwrap()
            .spec
    }

    #[test]
    fn quantities() {
        assert_eq!(bytes("10Gi"), Some(10 << 30));
        assert_eq!(bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(bytes("500M"), Some(500_000_000));
        assert_eq!(bytes("1"), Some(1));
        assert!(bytes("11Gi") > bytes("10Gi"));
        assert!(bytes("10G") < bytes("10Gi"));
        assert_eq!(bytes("0"), None);
        assert_eq!(bytes("1e3"), None);
    }

    #[test]
    fn what_may_change() {
        let old = spec();
        let mut new = old.clone();
        assert!(validate_transition(&old, &new).is_ok());
        new.storage.size = "20Gi".into();
        assert!(validate_transition(&old, &new).is_ok());
        assert!(validate_transition(&new, &old).is_err());
        let mut new = old.clone();
        new.storage.storage_class_name = Some("fast".into());
        assert!(validate_transition(&old, &new).is_ok(), "set once");
        assert!(validate_transition(&new, &old).is_err(), "then fixed");
        let mut new = old.clone();
        new.engine.flavor = Some(EngineFlavor::Mysql);
        assert!(validate_transition(&old, &new).is_ok());
        let mut newer = new.clone();
        newer.engine.flavor = Some(EngineFlavor::Mariadb);
        let e = validate_transition(&new, &newer).unwrap_err();
        assert!(e.to_string().contains(FLAVOR_FIXED.message), "{e}");
        let mut new = old.clone();
        new.schema = walshard_contract::Schema::new(
            &["Stud_id", "x"],
            vec![
                walshard_contract::Dtype::Number,
                walshard_contract::Dtype::String,
            ],
        )
        .unwrap();
        assert!(validate_transition(&old, &new).is_err());
    }
}
