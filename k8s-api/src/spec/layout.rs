//! `spec.layout`: the explicit shards and placement the router writes after a seed `/add` or
//! `/rm`, with server-side apply under its own field manager (`walshard-router`), so the user's
//! `shards`, `servers` and `replicasPerShard` stay as the user (or Git) wrote them.
//!
//! While `layout` is set it wins: [`super::ShardedDatabaseSpec::resolve`] uses it, and the
//! user's form only records where the layout started. `layout.basis` is the fingerprint of the
//! user's form the router derived the layout from; when the user edits that form later
//! (`servers.count: 6 → 8`), the layout still wins (applying the edit could drop shards the
//! router added, with their data) and [`LayoutSource::Overriding`] makes the reconciler say so
//! (Degraded `LayoutOverridesSpec` and a Warning Event). Removing `spec.layout` hands the
//! layout back to the user's form.

use serde::{Deserialize, Serialize};
use walshard_contract::ShardSpec;

use super::rules;
use super::{MAX_SERVERS, MAX_SHARDS, ServerPlacement, ShardedDatabaseSpec};
use kube::KubeSchema;

/// The explicit layout the router owns: every shard and every server's shards.
#[derive(KubeSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    validation = kube::core::Rule::new(rules::LAYOUT_KEY_SPACE_FITS.rule).message(rules::LAYOUT_KEY_SPACE_FITS.message),
    validation = kube::core::Rule::new(rules::LAYOUT_SHARD_IDS_UNIQUE.rule).message(rules::LAYOUT_SHARD_IDS_UNIQUE.message),
    validation = kube::core::Rule::new(rules::LAYOUT_SHARDS_DISJOINT.rule).message(rules::LAYOUT_SHARDS_DISJOINT.message),
    validation = kube::core::Rule::new(rules::LAYOUT_SERVER_NAMES_UNIQUE.rule).message(rules::LAYOUT_SERVER_NAMES_UNIQUE.message)
)]
pub struct LayoutSpec {
    /// Every shard: ids unique, ranges `[low, low + size)` disjoint.
    #[schemars(length(min = 1, max = MAX_SHARDS))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["id".into()]))]
    pub shards: Vec<ShardSpec>,
    /// Every server by name with the shards it holds.
    #[schemars(length(min = 1, max = MAX_SERVERS))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub servers: Vec<ServerPlacement>,
    /// The fingerprint of the user's `shards`, `servers` and `replicasPerShard` this layout
    /// was derived from (see [`basis`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub basis: Option<String>,
}

/// Which form a spec's layout comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutSource {
    /// No `spec.layout`: the user's `shards` and `servers`.
    User,
    /// `spec.layout`, derived from the user's form as it stands.
    Router,
    /// `spec.layout`, while the user's form changed since the router derived it: the layout
    /// wins, the user's edit is not applied.
    Overriding,
}

/// The fingerprint of `spec`'s own form (`shards`, `servers`, `replicasPerShard`): FNV-1a 64
/// of their JSON, as 16 hex digits. Stable across releases as long as the JSON is.
pub fn basis(spec: &ShardedDatabaseSpec) -> String {
    let form = serde_json::json!({
        "shards": spec.shards,
        "servers": spec.servers,
        "replicasPerShard": spec.replicas_per_shard,
    });
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in form.to_string().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Where `spec`'s layout comes from.
pub fn source(spec: &ShardedDatabaseSpec) -> LayoutSource {
    match &spec.layout {
        None => LayoutSource::User,
        Some(layout) if layout.basis.as_deref() == Some(basis(spec).as_str()) => {
            LayoutSource::Router
        }
        Some(_) => LayoutSource::Overriding,
    }
}

#[cfg(test)]
mod tests {
    use walshard_contract::{Ident, Schema};

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

    fn ident(s: &str) -> Ident {
        Ident::new(s).expect("ident")
    }

    /// The user's four shards on six servers plus `sh5` on a seventh, as after a router `/add`.
    fn added(spec: &ShardedDatabaseSpec) -> LayoutSpec {
        let resolved = spec.resolve().expect("resolves");
        let mut shards = resolved.shards.clone();
        shards.push(ShardSpec {
            id: ident("sh5"),
            low: 4 * 4096,
            size: 4096,
        });
        let mut servers: Vec<ServerPlacement> = resolved
            .placement
            .iter()
            .map(|(name, held)| ServerPlacement {
                name: ident(name),
                shards: held.iter().map(|s| ident(s)).collect(),
            })
            .collect();
        servers.push(ServerPlacement {
            name: ident("Server6"),
            shards: vec![ident("sh5"), ident("sh1")],
        });
        LayoutSpec {
            shards,
            servers,
            basis: Some(basis(spec)),
        }
    }

    #[test]
    fn without_a_layout_the_users_form_resolves() {
        let s = spec();
        assert_eq!(source(&s), LayoutSource::User);
        let r = s.resolve().expect("resolves");
        assert_eq!((r.shards.len(), r.placement.len()), (4, 6));
    }

    #[test]
    fn a_layout_wins_over_the_users_form_and_keeps_it() {
        let mut s = spec();
        s.layout = Some(added(&s));
        assert_eq!(source(&s), LayoutSource::Router);
        let r = s.resolve().expect("resolves");
        assert_eq!((r.shards.len(), r.placement.len()), (5, 7));
        assert_eq!(r.placement["Server6"], ["sh5", "sh1"]);
        assert_eq!(s.shards, ShardsSpec::ranges(4, 4096, 0), "untouched");
        assert_eq!(s.servers, ServersSpec::count(6), "untouched");
    }

    #[test]
    fn a_user_edit_after_the_layout_is_overridden_and_said_so() {
        let mut s = spec();
        s.layout = Some(added(&s));
        s.servers = ServersSpec::count(8);
        assert_eq!(source(&s), LayoutSource::Overriding);
        let r = s.resolve().expect("resolves");
        assert_eq!(r.placement.len(), 7, "the layout still wins");
        s.servers = ServersSpec::count(6);
        assert_eq!(source(&s), LayoutSource::Router, "edited back");
        s.replicas_per_shard = 2;
        assert_eq!(source(&s), LayoutSource::Overriding);
    }

    #[test]
    fn a_layout_is_checked_like_an_explicit_form() {
        let mut s = spec();
        let mut layout = added(&spec());
        layout.servers.push(ServerPlacement {
            name: ident("server0"),
            shards: vec![ident("sh1")],
        });
        s.layout = Some(layout);
        let err = s.resolve().expect_err("names clash").to_string();
        assert!(
            err.contains(rules::LAYOUT_SERVER_NAMES_UNIQUE.message),
            "{err}"
        );

        let mut layout = added(&spec());
        layout.servers.retain(|p| p.name.as_str() != "Server6");
        s.layout = Some(layout);
        let err = s.resolve().expect_err("sh5 has no replica").to_string();
        assert!(err.contains("sh5"), "{err}");

        let mut layout = added(&spec());
        layout.shards[4].low = 4096;
        s.layout = Some(layout);
        let err = s.resolve().expect_err("overlap").to_string();
        assert!(err.contains(rules::LAYOUT_SHARDS_DISJOINT.message), "{err}");

        let mut layout = added(&spec());
        layout.shards[4].id = ident("sh1");
        s.layout = Some(layout);
        let err = s.resolve().expect_err("duplicate").to_string();
        assert!(
            err.contains(rules::LAYOUT_SHARD_IDS_UNIQUE.message),
            "{err}"
        );

        let mut layout = added(&spec());
        layout.shards[4].low = i64::MAX - 5;
        layout.shards[4].size = 6;
        s.layout = Some(layout);
        let err = s.resolve().expect_err("past i64").to_string();
        assert!(err.contains(rules::LAYOUT_KEY_SPACE_FITS.message), "{err}");
    }

    #[test]
    fn the_basis_is_stable_and_follows_only_the_users_form() {
        let s = spec();
        assert_eq!(basis(&s), basis(&s.clone()));
        assert_eq!(basis(&s).len(), 16);
        let mut other = s.clone();
        other.router.replicas = 5;
        assert_eq!(basis(&s), basis(&other), "not a layout field");
        other.shards = ShardsSpec::ranges(4, 4096, 10);
        assert_ne!(basis(&s), basis(&other));
    }
}
