//! The validation rules of a `ShardedDatabase` spec, once for both runtimes: the CEL rules the CRD
//! carries (`x-kubernetes-validations`, enforced by the API server) and [`validate`], the same
//! checks in Rust for local mode (and for the reconciler, which never trusts its input).
//!
//! Three layers, each rule in exactly one of them on Kubernetes:
//! - the OpenAPI schema: types, enums, minimums and maximums, lengths, patterns, unique list keys;
//! - CEL: what relates several fields ([`CEL_RULES`]);
//! - Rust only: an explicit placement names known shards and gives every shard a replica (a
//!   CEL rule over placement × shards × list would exceed the API server's cost budget).
//!
//! [`validate`] mirrors the first two; the table's rules (same lengths, key dtype Number, unique
//! column names ignoring case) are enforced by `walshard_contract::Schema` at parse time.

use std::collections::BTreeSet;

use walshard_contract::{ShardError, validate_layout};

use super::{
    LayoutSpec, MAX_COLUMNS, MAX_ROUTER_REPLICAS, MAX_SERVERS, MAX_SHARDS, SecretKeyRef,
    ServerPlacement, ShardedDatabaseSpec, SpecError,
};
use walshard_control_plane::placement::{Placement, PlacementError};

/// A CEL validation rule and the message the API server answers when it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CelRule {
    /// Where it is attached in the spec.
    pub at: &'static str,
    /// The CEL expression; `self` is the object at `at` (and `oldSelf` its old value on update).
    pub rule: &'static str,
    /// What the API server answers when the rule is false (and the Rust mirror's reason).
    pub message: &'static str,
}

/// With a server count, every shard's replicas fit on distinct servers.
pub const REPLICAS_FIT: CelRule = CelRule {
    at: "spec",
    rule: "!has(self.servers.count) || self.replicasPerShard <= self.servers.count",
    message: "replicasPerShard must not exceed servers.count",
};

/// One dtype per column.
pub const DTYPES_LENGTH: CelRule = CelRule {
    at: "spec.schema",
    rule: "self.columns.size() == self.dtypes.size()",
    message: "columns and dtypes must have the same length",
};

/// The first column is the integer shard key.
pub const KEY_NUMBER: CelRule = CelRule {
    at: "spec.schema",
    rule: "self.dtypes.size() == 0 || self.dtypes[0] == 'Number'",
    message: "the first column is the shard key: its dtype must be Number",
};

/// Column names are unique, ignoring case (MySQL compares them so).
pub const COLUMNS_UNIQUE: CelRule = CelRule {
    at: "spec.schema",
    rule: "self.columns.all(c, self.columns.exists_one(d, d.lowerAscii() == c.lowerAscii()))",
    message: "column names must be unique, ignoring case",
};

/// The shards come as `count` + `size` (+ `low`), or as `list`, never both.
pub const SHARDS_FORM: CelRule = CelRule {
    at: "spec.shards",
    rule: "has(self.list) ? !has(self.count) && !has(self.size) && !has(self.low) : has(self.count) && has(self.size)",
    message: "set count and size (and optionally low), or list",
};

/// Divides instead of multiplying so CEL never overflows: `size <= (MAX - max(low, 0)) / count`
/// holds exactly when `low + count * size <= MAX`.
pub const KEY_SPACE_FITS: CelRule = CelRule {
    at: "spec.shards",
    rule: "has(self.list) ? self.list.all(s, s.size <= 9223372036854775807 - (s.low > 0 ? s.low : 0)) : !has(self.count) || !has(self.size) || self.count < 1 || self.size <= (9223372036854775807 - (has(self.low) && self.low > 0 ? self.low : 0)) / self.count",
    message: "the key space must end within a 64-bit integer (low + count * size, low + size)",
};

/// An explicit shard list names every shard once.
pub const SHARD_IDS_UNIQUE: CelRule = CelRule {
    at: "spec.shards",
    rule: "!has(self.list) || self.list.all(a, self.list.exists_one(b, b.id == a.id))",
    message: "shard ids must be unique",
};

/// The ranges of an explicit shard list do not overlap.
pub const SHARDS_DISJOINT: CelRule = CelRule {
    at: "spec.shards",
    rule: "!has(self.list) || self.list.all(a, self.list.all(b, a.id == b.id || a.low + a.size <= b.low || b.low + b.size <= a.low))",
    message: "shard ranges [low, low + size) must not overlap",
};

/// The servers come as `count` or as `placement`, never both.
pub const SERVERS_FORM: CelRule = CelRule {
    at: "spec.servers",
    rule: "has(self.count) != has(self.placement)",
    message: "set count or placement",
};

/// Server names are unique ignoring case: they become object names.
pub const SERVER_NAMES_UNIQUE: CelRule = CelRule {
    at: "spec.servers",
    rule: "!has(self.placement) || self.placement.all(a, self.placement.exists_one(b, b.name.lowerAscii() == a.name.lowerAscii()))",
    message: "server names must be unique, ignoring case (they name Kubernetes objects)",
};

/// The admin endpoints (`/init`, `/add`, `/rm` rewrite the spec; with `whenRemoved: Delete`
/// they delete volumes) must not face a load balancer without a token.
pub const ROUTER_TOKEN_EXPOSED: CelRule = CelRule {
    at: "spec.router",
    rule: "self.serviceType != 'LoadBalancer' || has(self.apiTokenSecretRef)",
    message: "a LoadBalancer router Service needs router.apiTokenSecretRef (its admin API rewrites the spec)",
};

/// The router's layout: every range ends within a 64-bit integer.
pub const LAYOUT_KEY_SPACE_FITS: CelRule = CelRule {
    at: "spec.layout",
    rule: "self.shards.all(s, s.size <= 9223372036854775807 - (s.low > 0 ? s.low : 0))",
    message: "layout: the key space must end within a 64-bit integer (low + size)",
};

/// The router's layout names every shard once.
pub const LAYOUT_SHARD_IDS_UNIQUE: CelRule = CelRule {
    at: "spec.layout",
    rule: "self.shards.all(a, self.shards.exists_one(b, b.id == a.id))",
    message: "layout: shard ids must be unique",
};

/// The ranges of the router's layout do not overlap.
pub const LAYOUT_SHARDS_DISJOINT: CelRule = CelRule {
    at: "spec.layout",
    rule: "self.shards.all(a, self.shards.all(b, a.id == b.id || a.low + a.size <= b.low || b.low + b.size <= a.low))",
    message: "layout: shard ranges [low, low + size) must not overlap",
};

/// The router's layout names every server once, ignoring case.
pub const LAYOUT_SERVER_NAMES_UNIQUE: CelRule = CelRule {
    at: "spec.layout",
    rule: "self.servers.all(a, self.servers.exists_one(b, b.name.lowerAscii() == a.name.lowerAscii()))",
    message: "layout: server names must be unique, ignoring case (they name Kubernetes objects)",
};

/// Every CEL rule of the CRD.
pub const CEL_RULES: [CelRule; 15] = [
    REPLICAS_FIT,
    DTYPES_LENGTH,
    KEY_NUMBER,
    COLUMNS_UNIQUE,
    SHARDS_FORM,
    KEY_SPACE_FITS,
    SHARD_IDS_UNIQUE,
    SHARDS_DISJOINT,
    SERVERS_FORM,
    SERVER_NAMES_UNIQUE,
    ROUTER_TOKEN_EXPOSED,
    LAYOUT_KEY_SPACE_FITS,
    LAYOUT_SHARD_IDS_UNIQUE,
    LAYOUT_SHARDS_DISJOINT,
    LAYOUT_SERVER_NAMES_UNIQUE,
];

/// A positive quantity of bytes without exponent: `10Gi`, `1.5T`, `500M`.
pub const STORAGE_SIZE_PATTERN: &str =
    r"^([0-9]*[1-9][0-9]*(\.[0-9]+)?|[0-9]+\.[0-9]*[1-9][0-9]*)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$";
/// A DNS-1123 subdomain (Secret and StorageClass names).
pub const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A Secret data key.
pub const SECRET_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";

const I64_MAX: i64 = i64::MAX;

/// Checks a spec as the API server would (schema and CEL rules), so local mode accepts exactly
/// what Kubernetes accepts, short of the Rust-only placement checks in `resolve`.
pub fn validate(spec: &ShardedDatabaseSpec) -> Result<(), SpecError> {
    let image = &spec.engine.image;
    if image.is_empty() || image.len() > 512 {
        return Err(SpecError::invalid(
            "engine.image",
            "must have 1 to 512 characters",
        ));
    }
    let grace = spec.pod.termination_grace_period_seconds;
    if !(super::pod::MIN_GRACE_SECONDS..=super::pod::MAX_GRACE_SECONDS).contains(&grace) {
        return Err(SpecError::invalid(
            "pod.terminationGracePeriodSeconds",
            format!(
                "must be {} to {}",
                super::pod::MIN_GRACE_SECONDS,
                super::pod::MAX_GRACE_SECONDS
            ),
        ));
    }
    if spec.schema.columns().len() > MAX_COLUMNS {
        return Err(SpecError::invalid(
            "schema.columns",
            format!("at most {MAX_COLUMNS} columns"),
        ));
    }
    validate_shards(spec)?;
    in_range(
        "replicasPerShard",
        i64::from(spec.replicas_per_shard),
        1,
        MAX_SERVERS,
    )?;
    let servers = &spec.servers;
    if servers.count.is_some() == servers.placement.is_some() {
        return Err(SpecError::invalid("servers", SERVERS_FORM.message));
    }
    if let Some(count) = servers.count {
        in_range("servers.count", i64::from(count), 1, MAX_SERVERS)?;
        if spec.replicas_per_shard > count {
            return Err(SpecError::invalid("replicasPerShard", REPLICAS_FIT.message));
        }
    }
    if let Some(list) = &servers.placement {
        placement_map(list)?;
    }
    if let Some(layout) = &spec.layout {
        validate_layout_spec(layout)?;
    }
    validate_storage(spec)?;
    in_range(
        "router.replicas",
        i64::from(spec.router.replicas),
        1,
        MAX_ROUTER_REPLICAS,
    )?;
    if spec.router.service_type == super::ServiceType::LoadBalancer
        && spec.router.api_token_secret_ref.is_none()
    {
        return Err(SpecError::invalid("router", ROUTER_TOKEN_EXPOSED.message));
    }
    let refs = [
        (
            "router.apiTokenSecretRef",
            &spec.router.api_token_secret_ref,
        ),
        (
            "credentials.mysqlSecretRef",
            &spec.credentials.mysql_secret_ref,
        ),
        (
            "credentials.clusterTokenSecretRef",
            &spec.credentials.cluster_token_secret_ref,
        ),
    ];
    for (field, secret) in refs {
        if let Some(secret) = secret {
            validate_secret_ref(field, secret)?;
        }
    }
    Ok(())
}

fn validate_shards(spec: &ShardedDatabaseSpec) -> Result<(), SpecError> {
    let s = &spec.shards;
    let form_ok = match &s.list {
        Some(_) => s.count.is_none() && s.size.is_none() && s.low.is_none(),
        None => s.count.is_some() && s.size.is_some(),
    };
    if !form_ok {
        return Err(SpecError::invalid("shards", SHARDS_FORM.message));
    }
    if let Some(list) = &s.list {
        if list.is_empty() || list.len() > MAX_SHARDS as usize {
            return Err(SpecError::invalid(
                "shards.list",
                format!("must have 1 to {MAX_SHARDS} shards"),
            ));
        }
        return validate_layout(list).map_err(|e| {
            let reason = match &e {
                ShardError::BadSize { .. } => format!("size must be at least 1 ({e})"),
                ShardError::Overflow { .. } => format!("{} ({e})", KEY_SPACE_FITS.message),
                ShardError::DuplicateId(_) => format!("{} ({e})", SHARD_IDS_UNIQUE.message),
                ShardError::Overlap { .. } => format!("{} ({e})", SHARDS_DISJOINT.message),
                _ => e.to_string(),
            };
            SpecError::invalid("shards.list", reason)
        });
    }
    let (Some(count), Some(size)) = (s.count, s.size) else {
        return Err(SpecError::invalid("shards", SHARDS_FORM.message));
    };
    in_range("shards.count", i64::from(count), 1, MAX_SHARDS)?;
    in_range("shards.size", size, 1, I64_MAX)?;
    let low = s.low.unwrap_or(0);
    if i64::from(count)
        .checked_mul(size)
        .and_then(|width| low.checked_add(width))
        .is_none()
    {
        return Err(SpecError::invalid("shards", KEY_SPACE_FITS.message));
    }
    Ok(())
}

/// `spec.layout` as its schema and CEL rules check it.
fn validate_layout_spec(layout: &LayoutSpec) -> Result<(), SpecError> {
    let list = &layout.shards;
    if list.is_empty() || list.len() > MAX_SHARDS as usize {
        return Err(SpecError::invalid(
            "layout.shards",
            format!("must have 1 to {MAX_SHARDS} shards"),
        ));
    }
    validate_layout(list).map_err(|e| {
        let reason = match &e {
            ShardError::BadSize { .. } => format!("size must be at least 1 ({e})"),
            ShardError::Overflow { .. } => format!("{} ({e})", LAYOUT_KEY_SPACE_FITS.message),
            ShardError::DuplicateId(_) => format!("{} ({e})", LAYOUT_SHARD_IDS_UNIQUE.message),
            ShardError::Overlap { .. } => format!("{} ({e})", LAYOUT_SHARDS_DISJOINT.message),
            _ => e.to_string(),
        };
        SpecError::invalid("layout.shards", reason)
    })?;
    if layout.basis.as_ref().is_some_and(|b| b.len() > 64) {
        return Err(SpecError::invalid("layout.basis", "at most 64 characters"));
    }
    placement_map_at("layout.servers", &layout.servers).map(|_| ())
}

fn validate_storage(spec: &ShardedDatabaseSpec) -> Result<(), SpecError> {
    let storage = &spec.storage;
    if storage.size.len() > 64 || !is_positive_size(&storage.size) {
        return Err(SpecError::invalid(
            "storage.size",
            format!("{:?} is not a positive quantity such as 10Gi", storage.size),
        ));
    }
    if let Some(class) = &storage.storage_class_name
        && !is_dns_subdomain(class)
    {
        return Err(SpecError::invalid(
            "storage.storageClassName",
            format!("{class:?} is not a DNS subdomain"),
        ));
    }
    Ok(())
}

fn validate_secret_ref(field: &'static str, secret: &SecretKeyRef) -> Result<(), SpecError> {
    if !is_dns_subdomain(&secret.name) {
        return Err(SpecError::invalid(
            field,
            format!("name {:?} is not a DNS subdomain", secret.name),
        ));
    }
    if let Some(key) = &secret.key
        && !is_secret_key(key)
    {
        return Err(SpecError::invalid(
            field,
            format!("key {key:?} is not a Secret key"),
        ));
    }
    Ok(())
}

fn in_range(
    field: &'static str,
    value: i64,
    min: i64,
    max: impl Into<i64>,
) -> Result<(), SpecError> {
    let max = max.into();
    if value < min || value > max {
        return Err(SpecError::invalid(
            field,
            format!("{value} is outside {min}..={max}"),
        ));
    }
    Ok(())
}

/// An explicit placement as the seed's map, checked as the schema and CEL do: 1 to
/// [`MAX_SERVERS`] servers, names unique (also ignoring case), each holding at most
/// [`MAX_SHARDS`] shards, none twice.
pub fn placement_map(list: &[ServerPlacement]) -> Result<Placement, SpecError> {
    placement_map_at("servers.placement", list)
}

/// [`placement_map`] of the list at `field` (`servers.placement` or `layout.servers`).
pub fn placement_map_at(
    field: &'static str,
    list: &[ServerPlacement],
) -> Result<Placement, SpecError> {
    let unique = if field == "layout.servers" {
        LAYOUT_SERVER_NAMES_UNIQUE.message
    } else {
        SERVER_NAMES_UNIQUE.message
    };
    if list.is_empty() || list.len() > MAX_SERVERS as usize {
        return Err(SpecError::invalid(
            field,
            format!("must have 1 to {MAX_SERVERS} servers"),
        ));
    }
    let mut placement = Placement::new();
    let mut folded = BTreeSet::new();
    for server in list {
        let name = server.name.to_string();
        if placement.contains_key(&name) {
            return Err(PlacementError::DuplicateServer(name).into());
        }
        if !folded.insert(name.to_ascii_lowercase()) {
            return Err(SpecError::invalid(field, format!("{unique} ({name:?})")));
        }
        if server.shards.len() > MAX_SHARDS as usize {
            return Err(SpecError::invalid(
                field,
                format!("{name} holds more than {MAX_SHARDS} shards"),
            ));
        }
        let mut held = BTreeSet::new();
        for shard in &server.shards {
            if !held.insert(shard) {
                return Err(PlacementError::ShardTwiceOnServer {
                    server: name,
                    shard: shard.to_string(),
                }
                .into());
            }
        }
        placement.insert(name, server.shards.iter().map(|s| s.to_string()).collect());
    }
    Ok(placement)
}

/// [`STORAGE_SIZE_PATTERN`]: digits with an optional fraction, not zero, and a suffix.
pub fn is_positive_size(size: &str) -> bool {
    const SUFFIXES: [&str; 12] = [
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E",
    ];
    let number = SUFFIXES
        .iter()
        .find_map(|s| size.strip_suffix(s))
        .unwrap_or(size);
    let (int, frac) = match number.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (number, None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    match frac {
        None => !int.is_empty() && digits(int) && nonzero(int),
        Some(frac) => {
            !int.is_empty()
                && !frac.is_empty()
                && digits(int)
                && digits(frac)
                && (nonzero(int) || nonzero(frac))
        }
    }
}

/// [`DNS_SUBDOMAIN_PATTERN`], at most 253 characters.
pub fn is_dns_subdomain(name: &str) -> bool {
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        b.first().is_some_and(edge)
            && b.last().is_some_and(edge)
            && b.iter().all(|c| edge(c) || *c == b'-')
    };
    !name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok)
}

/// [`SECRET_KEY_PATTERN`], at most 253 characters.
pub fn is_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

#[cfg(test)]
mod tests {
    use walshard_contract::{Ident, Schema, ShardSpec};

    use super::*;
    use crate::spec::{ServersSpec, ShardsSpec};

    fn spec() -> ShardedDatabaseSpec {
        ShardedDatabaseSpec::new(
            Schema::seed_default(),
            ShardsSpec::ranges(4, 4096, 0),
            3,
            ServersSpec::count(6),
        )
    }

    fn shard(id: &str, low: i64, size: i64) -> ShardSpec {
        ShardSpec {
            id: Ident::new(id).expect("id"),
            low,
            size,
        }
    }

    fn server(name: &str, shards: &[&str]) -> ServerPlacement {
        ServerPlacement {
            name: Ident::new(name).expect("name"),
            shards: shards
                .iter()
                .map(|s| Ident::new(s).expect("shard"))
                .collect(),
        }
    }

    fn fails_with(spec: &ShardedDatabaseSpec, expected: &str) {
        let err = spec.resolve().expect_err(expected);
        assert!(
            err.to_string().contains(expected),
            "{err} should mention {expected:?}"
        );
    }

    #[test]
    fn every_cel_rule_has_a_rust_mirror_that_fails_with_its_message() {
        let mut s = spec();
        s.replicas_per_shard = 7;
        fails_with(&s, REPLICAS_FIT.message);

        let mut s = spec();
        s.shards.list = Some(vec![shard("sh1", 0, 1)]);
        fails_with(&s, SHARDS_FORM.message);
        s.shards = ShardsSpec {
            count: Some(2),
            ..ShardsSpec::default()
        };
        fails_with(&s, SHARDS_FORM.message);

        let mut s = spec();
        s.shards = ShardsSpec::ranges(2, i64::MAX / 2 + 1, 0);
        fails_with(&s, KEY_SPACE_FITS.message);
        s.shards = ShardsSpec::ranges(2, 100, I64_MAX - 200);
        assert!(s.resolve().is_ok(), "ends exactly at i64::MAX");
        s.shards = ShardsSpec::ranges(2, 100, I64_MAX - 199);
        fails_with(&s, KEY_SPACE_FITS.message);
        s.shards = ShardsSpec::list(vec![shard("a", I64_MAX - 5, 6)]);
        fails_with(&s, KEY_SPACE_FITS.message);

        s.shards = ShardsSpec::list(vec![shard("a", 0, 10), shard("a", 10, 10)]);
        fails_with(&s, SHARD_IDS_UNIQUE.message);
        s.shards = ShardsSpec::list(vec![shard("a", 0, 11), shard("b", 10, 10)]);
        fails_with(&s, SHARDS_DISJOINT.message);

        let mut s = spec();
        s.servers.placement = Some(vec![server("S0", &["sh1"])]);
        fails_with(&s, SERVERS_FORM.message);
        s.servers.count = None;
        s.servers.placement = Some(vec![server("S0", &["sh1"]), server("s0", &["sh2"])]);
        fails_with(&s, SERVER_NAMES_UNIQUE.message);

        let mut s = spec();
        s.router.service_type = super::super::ServiceType::LoadBalancer;
        fails_with(&s, ROUTER_TOKEN_EXPOSED.message);
        s.router.api_token_secret_ref = Some(SecretKeyRef {
            name: "api".into(),
            key: None,
        });
        assert!(s.resolve().is_ok());
    }

    type Edit = fn(&mut ShardedDatabaseSpec);

    #[test]
    fn schema_bounds_are_mirrored() {
        let cases: Vec<(Edit, &str)> = vec![
            (|s| s.engine.image.clear(), "engine.image"),
            (|s| s.replicas_per_shard = 0, "replicasPerShard"),
            (|s| s.shards.count = Some(0), "shards.count"),
            (|s| s.shards.count = Some(129), "shards.count"),
            (|s| s.shards.size = Some(0), "shards.size"),
            (|s| s.servers.count = Some(129), "servers.count"),
            (|s| s.router.replicas = 0, "router.replicas"),
            (|s| s.storage.size = "0Gi".into(), "storage.size"),
            (
                |s| s.storage.storage_class_name = Some("Fast_SSD".into()),
                "storageClassName",
            ),
            (
                |s| {
                    s.credentials.mysql_secret_ref = Some(SecretKeyRef {
                        name: "db".into(),
                        key: Some("a/b".into()),
                    })
                },
                "credentials.mysqlSecretRef",
            ),
            (|s| s.shards = ShardsSpec::list(Vec::new()), "shards.list"),
            (
                |s| s.servers = ServersSpec::placement(Vec::new()),
                "servers.placement",
            ),
        ];
        for (edit, field) in cases {
            let mut s = spec();
            edit(&mut s);
            fails_with(&s, field);
        }
    }

    #[test]
    fn placement_errors_are_typed() {
        let dup = placement_map(&[server("a", &["x"]), server("a", &["y"])]);
        assert!(matches!(
            dup,
            Err(SpecError::Placement(PlacementError::DuplicateServer(_)))
        ));
        let twice = placement_map(&[server("a", &["x", "x"])]);
        assert!(matches!(
            twice,
            Err(SpecError::Placement(
                PlacementError::ShardTwiceOnServer { .. }
            ))
        ));
        let mut s = spec();
        s.servers = ServersSpec::placement(vec![server("a", &["sh9"])]);
        fails_with(&s, "unknown shard");
        s.servers = ServersSpec::placement(vec![server("a", &["sh1", "sh2", "sh3"])]);
        fails_with(&s, "shard \"sh4\" has no replica");
    }

    #[test]
    fn sizes_names_and_keys() {
        for ok in ["10Gi", "1", "1.5T", "0.5Gi", "500M", "100k", "007Mi"] {
            assert!(is_positive_size(ok), "{ok}");
        }
        for bad in [
            "", "0", "0Gi", "0.0", "1.", ".5", "-1Gi", "1GB", "1e3", "Gi", "1.5.1",
        ] {
            assert!(!is_positive_size(bad), "{bad}");
        }
        for ok in ["a", "db-secret", "fast.ssd", "0x"] {
            assert!(is_dns_subdomain(ok), "{ok}");
        }
        for bad in ["", "A", "-a", "a-", "a..b", "a_b", &"a".repeat(254)] {
            assert!(!is_dns_subdomain(bad), "{bad}");
        }
        for ok in ["password", "tls.crt", "a_b-c"] {
            assert!(is_secret_key(ok), "{ok}");
        }
        for bad in ["", "a/b", "a b"] {
            assert!(!is_secret_key(bad), "{bad}");
        }
    }
}
