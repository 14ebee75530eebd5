//! Shard placement (pure): which servers hold a replica of which shard.
//!
//! A placement is the seed's `servers` map, `{"Server0": ["sh1", "sh2"], ...}`. It is either given
//! explicitly (validated by [`validate_placement`]) or computed from N servers, S shards and R
//! replicas per shard (by [`compute_placement`]), spread evenly with never two replicas of a shard on
//! one server, and stable: changing the server count moves close to the fewest replicas.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

pub mod stable;

/// Server name → the shard ids it holds (the seed's `servers` map).
pub type Placement = BTreeMap<String, Vec<String>>;

/// Shard id → the servers holding a replica of it, in placement order.
pub type ShardReplicas = BTreeMap<String, Vec<String>>;

/// Why a placement cannot be computed or is not valid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlacementError {
    /// The server list is empty.
    #[error("no servers to place shards on")]
    NoServers,
    /// Zero replicas per shard were asked for.
    #[error("a shard needs at least one replica")]
    ZeroReplicas,
    /// Fewer servers than replicas per shard (two replicas of a shard never share a server).
    #[error("{replicas} replicas per shard need at least {replicas} servers, got {servers}")]
    TooFewServers {
        /// Replicas per shard asked for.
        replicas: usize,
        /// Servers available.
        servers: usize,
    },
    /// A server name appears twice (the name).
    #[error("server {0:?} is listed twice")]
    DuplicateServer(String),
    /// A shard id appears twice (the id).
    #[error("shard {0:?} is listed twice")]
    DuplicateShard(String),
    /// A server lists the same shard twice.
    #[error("server {server:?} holds shard {shard:?} twice")]
    ShardTwiceOnServer {
        /// The server name.
        server: String,
        /// The repeated shard id.
        shard: String,
    },
    /// A server holds a shard that is not in the shard list.
    #[error("server {server:?} holds unknown shard {shard:?}")]
    UnknownShard {
        /// The server name.
        server: String,
        /// The unknown shard id.
        shard: String,
    },
    /// No server holds this shard (its id).
    #[error("shard {0:?} has no replica")]
    ShardWithoutReplica(String),
}

/// Places `replicas` replicas of each shard on `servers`, evenly and stably.
///
/// Every server's load is ⌊S·R/N⌋ or ⌈S·R/N⌉, never two replicas of a shard on one server, and
/// adding or removing the last server moves the fewest replicas a balanced placement can (see
/// [`stable`]). Every server appears in the result, possibly with no shard.
pub fn compute_placement(
    servers: &[String],
    shards: &[String],
    replicas: usize,
) -> Result<Placement, PlacementError> {
    if replicas == 0 {
        return Err(PlacementError::ZeroReplicas);
    }
    if servers.is_empty() {
        return Err(PlacementError::NoServers);
    }
    check_unique(servers, PlacementError::DuplicateServer)?;
    check_unique(shards, PlacementError::DuplicateShard)?;
    if replicas > servers.len() {
        return Err(PlacementError::TooFewServers {
            replicas,
            servers: servers.len(),
        });
    }
    let held = stable::chain(servers.len(), shards.len(), replicas);
    Ok(servers
        .iter()
        .zip(held)
        .map(|(server, held)| {
            let mine = shards
                .iter()
                .zip(held)
                .filter(|(_, h)| *h)
                .map(|(shard, _)| shard.clone())
                .collect();
            (server.clone(), mine)
        })
        .collect())
}

/// Validates an explicit placement against the shard list and returns it inverted
/// (shard → replicas). Every listed shard must have at least one replica, no server may hold a
/// shard twice, and every shard a server holds must be listed.
pub fn validate_placement(
    placement: &Placement,
    shards: &[String],
) -> Result<ShardReplicas, PlacementError> {
    check_unique(shards, PlacementError::DuplicateShard)?;
    let known: BTreeSet<&str> = shards.iter().map(String::as_str).collect();
    let mut replicas: ShardReplicas = shards.iter().map(|s| (s.clone(), Vec::new())).collect();
    for (server, held) in placement {
        let mut seen = BTreeSet::new();
        for shard in held {
            if !known.contains(shard.as_str()) {
                return Err(PlacementError::UnknownShard {
                    server: server.clone(),
                    shard: shard.clone(),
                });
            }
            if !seen.insert(shard.as_str()) {
                return Err(PlacementError::ShardTwiceOnServer {
                    server: server.clone(),
                    shard: shard.clone(),
                });
            }
            replicas
                .entry(shard.clone())
                .or_default()
                .push(server.clone());
        }
    }
    if let Some((shard, _)) = replicas.iter().find(|(_, r)| r.is_empty()) {
        return Err(PlacementError::ShardWithoutReplica(shard.clone()));
    }
    Ok(replicas)
}

/// Inverts a placement (server → shards) into shard → replicas, without validation.
pub fn shard_replicas(placement: &Placement) -> ShardReplicas {
    let mut out = ShardReplicas::new();
    for (server, held) in placement {
        for shard in held {
            out.entry(shard.clone()).or_default().push(server.clone());
        }
    }
    out
}

fn check_unique(
    names: &[String],
    err: impl Fn(String) -> PlacementError,
) -> Result<(), PlacementError> {
    let mut seen = BTreeSet::new();
    for name in names {
        if !seen.insert(name.as_str()) {
            return Err(err(name.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    #[test]
    fn three_servers_four_shards_three_replicas() {
        let p = compute_placement(&names("Server", 3), &names("sh", 4), 3).unwrap();
        for held in p.values() {
            assert_eq!(held.len(), 4);
        }
        let inv = validate_placement(&p, &names("sh", 4)).unwrap();
        assert!(inv.values().all(|r| r.len() == 3));
    }

    #[test]
    fn too_many_replicas_is_an_error() {
        assert_eq!(
            compute_placement(&names("S", 2), &names("sh", 1), 3),
            Err(PlacementError::TooFewServers {
                replicas: 3,
                servers: 2
            })
        );
        assert_eq!(
            compute_placement(&names("S", 2), &names("sh", 1), 0),
            Err(PlacementError::ZeroReplicas)
        );
        assert_eq!(
            compute_placement(&[], &names("sh", 1), 1),
            Err(PlacementError::NoServers)
        );
        assert_eq!(
            compute_placement(&["a".into(), "a".into()], &names("sh", 1), 1),
            Err(PlacementError::DuplicateServer("a".into()))
        );
    }

    #[test]
    fn seed_style_placement_validates() {
        let p: Placement = serde_json::from_str(
            r#"{"Server0":["sh1","sh2"],"Server1":["sh3","sh4"],"Server3":["sh1","sh3"],
                "Server4":["sh4","sh2"],"Server5":["sh1","sh4"],"Server6":["sh3","sh2"]}"#,
        )
        .unwrap();
        let shards = vec!["sh1".into(), "sh2".into(), "sh3".into(), "sh4".into()];
        let inv = validate_placement(&p, &shards).unwrap();
        assert_eq!(inv["sh1"], vec!["Server0", "Server3", "Server5"]);
        assert_eq!(shard_replicas(&p), inv);
    }

    #[test]
    fn invalid_placements_are_rejected() {
        let shards = vec!["sh1".to_string(), "sh2".to_string()];
        let twice: Placement = [("S0".into(), vec!["sh1".into(), "sh1".into()])]
            .into_iter()
            .collect();
        assert_eq!(
            validate_placement(&twice, &shards),
            Err(PlacementError::ShardTwiceOnServer {
                server: "S0".into(),
                shard: "sh1".into()
            })
        );
        let orphan: Placement = [("S0".into(), vec!["sh1".into()])].into_iter().collect();
        assert_eq!(
            validate_placement(&orphan, &shards),
            Err(PlacementError::ShardWithoutReplica("sh2".into()))
        );
        let unknown: Placement = [("S0".into(), vec!["sh1".into(), "sh2".into(), "sh9".into()])]
            .into_iter()
            .collect();
        assert_eq!(
            validate_placement(&unknown, &shards),
            Err(PlacementError::UnknownShard {
                server: "S0".into(),
                shard: "sh9".into()
            })
        );
    }

    /// Replicas of `b` that `a` did not have on the same server: each is a copy.
    fn moves(a: &Placement, b: &Placement) -> usize {
        b.iter()
            .map(|(server, shards)| {
                let before = a.get(server);
                shards
                    .iter()
                    .filter(|x| !before.is_some_and(|h| h.contains(x)))
                    .count()
            })
            .sum()
    }

    /// The fewest copies any placement of `servers` with loads ⌊S·R/N⌋ or ⌈S·R/N⌉ needs from
    /// `a`: a server keeps at most min(its old load, its new load), and only `extra` servers
    /// may have the ceiling (shard-distinctness ignored, so it is a lower bound).
    fn lower_bound(a: &Placement, servers: &[String], total: usize) -> usize {
        let n = servers.len();
        let (q, extra) = (total / n, total % n);
        let old = |s: &String| a.get(s).map_or(0, Vec::len);
        let kept: usize = servers.iter().map(|s| old(s).min(q)).sum::<usize>()
            + extra.min(servers.iter().filter(|s| old(s) > q).count());
        total - kept
    }

    #[test]
    fn twelve_to_thirteen_servers_moves_fourteen_replicas() {
        // The issue's example: 64 shards × 3 replicas; (i·R + j) mod N moved 132 of 192.
        let shards = names("sh", 64);
        let a = compute_placement(&names("Server", 12), &shards, 3).unwrap();
        let b = compute_placement(&names("Server", 13), &shards, 3).unwrap();
        assert_eq!(moves(&a, &b), 14);
        assert_eq!(lower_bound(&a, &names("Server", 13), 192), 14);
        assert_eq!(moves(&b, &a), 14, "back to 12: Server12's 14 go back");
        assert_eq!(lower_bound(&b, &names("Server", 12), 192), 14);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Changing the server count by 1..=4 either way moves at most 1.25× the lower bound
        /// (exactly the bound by one server), keeps loads within one and shards distinct.
        #[test]
        fn changing_the_server_count_moves_close_to_the_minimum(
            n in 1usize..24, k in 1usize..5, s in 1usize..80, r in 1usize..5,
        ) {
            prop_assume!(r <= n);
            let shards = names("sh", s);
            let small = names("Server", n);
            let large = names("Server", n + k);
            let a = compute_placement(&small, &shards, r).unwrap();
            let b = compute_placement(&large, &shards, r).unwrap();
            for (from, to, servers) in [(&a, &b, &large), (&b, &a, &small)] {
                let bound = lower_bound(from, servers, s * r);
                let moved = moves(from, to);
                prop_assert!(moved >= bound, "the bound is wrong: {moved} < {bound}");
                if k == 1 {
                    prop_assert_eq!(moved, bound, "one server: exactly the minimum");
                }
                prop_assert!(4 * moved <= 5 * bound, "moved {} > 1.25 × {}", moved, bound);
            }
        }
    }

    proptest! {
        #[test]
        fn computed_placement_is_balanced_and_valid(n in 1usize..12, s in 0usize..40, r in 1usize..6) {
            let servers = names("Server", n);
            let shards = names("sh", s);
            match compute_placement(&servers, &shards, r) {
                Err(e) => {
                    prop_assert!(r > n);
                    prop_assert_eq!(e, PlacementError::TooFewServers { replicas: r, servers: n });
                }
                Ok(p) => {
                    prop_assert!(r <= n);
                    prop_assert_eq!(p.len(), n);
                    let loads: Vec<usize> = p.values().map(Vec::len).collect();
                    let max = loads.iter().copied().max().unwrap_or(0);
                    let min = loads.iter().copied().min().unwrap_or(0);
                    prop_assert!(max - min <= 1, "loads {loads:?}");
                    let inv = validate_placement(&p, &shards).unwrap();
                    prop_assert_eq!(inv.len(), s);
                    for replicas in inv.values() {
                        prop_assert_eq!(replicas.len(), r);
                        let distinct: BTreeSet<&String> = replicas.iter().collect();
                        prop_assert_eq!(distinct.len(), r);
                    }
                }
            }
        }
    }
}
