//! The pure decisions of the Kubernetes control plane: the cluster spec a `ShardedDatabase` asks
//! for, the spec to hand to the running control plane next, the settled record a restart starts
//! from, which agents need `/config`, and when a removed server is drained.

use std::collections::{BTreeMap, BTreeSet};

use walshard_contract::Topology;
use walshard_control_plane::ClusterSpec;
use walshard_control_plane::fleet_ops::{self, Handover};
use walshard_control_plane::placement::ShardReplicas;
use walshard_k8s_api::spec::{Resolved, ShardedDatabase};

use super::HostingError;

/// What a database's spec asks of its control plane.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// The database's namespace.
    pub namespace: String,
    /// The database's name.
    pub name: String,
    /// Servers of the spec with their agent URLs, the shards' replica sets, the write quorum.
    pub spec: ClusterSpec,
    /// Schema, shard ranges and placement (for `/config` and the status' shard order).
    pub layout: Resolved,
}

/// An agent's base URL from `(database, namespace, server)`.
pub type UrlFn = dyn Fn(&str, &str, &str) -> String + Send + Sync;

/// The cluster spec `db` asks for, its servers addressed by `url`.
pub fn desired(db: &ShardedDatabase, url: &UrlFn) -> Result<Desired, HostingError> {
    let namespace = db
        .metadata
        .namespace
        .clone()
        .ok_or(HostingError::NoNamespace)?;
    let name = db.metadata.name.clone().ok_or(HostingError::NoName)?;
    let layout = db.spec.resolve()?;
    let servers = layout
        .placement
        .keys()
        .map(|s| (s.clone(), url(&name, &namespace, s)))
        .collect();
    let spec =
        ClusterSpec::from_placement(servers, &layout.placement, db.spec.durability.write_quorum);
    spec.validate()?;
    Ok(Desired {
        namespace,
        name,
        spec,
        layout,
    })
}

/// Per shard, the replica set a restarted control plane must start from: the running set of a
/// shard with no change under way, the previous set (C_old) of one whose change is under way.
/// Kept in the `ShardedDatabase`'s [`super::SETTLED_ANNOTATION`].
pub type Settled = ShardReplicas;

/// The settled record of a running control plane: `applied` is the spec it runs, `previous`
/// the record persisted before (the C_old of shards still changing).
pub fn settled(applied: &ClusterSpec, topology: &Topology, previous: Option<&Settled>) -> Settled {
    applied
        .shards
        .iter()
        .map(|(shard, set)| {
            let changing = topology.shards.get(shard).is_some_and(|i| i.reconfiguring);
            let kept = previous
                .and_then(|p| p.get(shard))
                .filter(|_| changing)
                .unwrap_or(set);
            (shard.clone(), kept.clone())
        })
        .collect()
}

/// The spec to start a control plane with: every shard of `desired` on its settled set when the
/// record has one (the joint state of a change under way lives in memory only, so a restart
/// starts from C_old and runs the change again), else on its desired set. Servers that only the
/// record names keep URLs from `url`.
pub fn initial_spec(desired: &Desired, settled: Option<&Settled>, url: &UrlFn) -> ClusterSpec {
    let shards: ShardReplicas = desired
        .spec
        .shards
        .iter()
        .map(|(shard, want)| {
            let set = settled
                .and_then(|s| s.get(shard))
                .filter(|s| !s.is_empty())
                .unwrap_or(want);
            (shard.clone(), set.clone())
        })
        .collect();
    let mut spec = assemble(shards, &desired.spec, &ClusterSpec::default());
    let missing: BTreeSet<String> = spec
        .shards
        .values()
        .flatten()
        .filter(|s| !spec.servers.contains_key(*s))
        .cloned()
        .collect();
    for server in missing {
        let u = url(&desired.name, &desired.namespace, &server);
        spec.servers.insert(server, u);
    }
    spec
}

/// The spec `shards` needs: the desired servers plus every other server a replica set still
/// names (a leaving server, with its URL from `applied`; one without a known URL is left out and
/// fails validation, which refuses the spec).
fn assemble(shards: ShardReplicas, desired: &ClusterSpec, applied: &ClusterSpec) -> ClusterSpec {
    let mut servers = desired.servers.clone();
    for server in shards.values().flatten() {
        if !servers.contains_key(server)
            && let Some(url) = applied.servers.get(server)
        {
            servers.insert(server.clone(), url.clone());
        }
    }
    ClusterSpec {
        servers,
        shards,
        write_quorum: desired.write_quorum,
    }
}

/// The next step from `applied` (what the control plane runs) towards `desired`:
///
/// - a shard whose change is under way keeps its set (one change at a time; the control plane
///   would refuse the whole spec as `Busy`);
/// - a shard whose primary is not in its desired set keeps its set while a staying replica can
///   take over: the returned [`Handover`] is requested first (a planned switchover loses no
///   in-flight write and pauses writes least), and the change follows once the primary moved;
/// - every other shard gets its desired set; removed shards go.
///
/// Servers that a kept set still names stay in the spec with their URLs.
pub fn next_spec(
    desired: &ClusterSpec,
    applied: &ClusterSpec,
    topology: &Topology,
) -> (ClusterSpec, Vec<Handover>) {
    let mut handovers = Vec::new();
    let shards = desired
        .shards
        .iter()
        .map(|(shard, want)| {
            let (Some(have), Some(info)) = (applied.shards.get(shard), topology.shards.get(shard))
            else {
                return (shard.clone(), want.clone());
            };
            if have == want {
                return (shard.clone(), want.clone());
            }
            if info.reconfiguring {
                return (shard.clone(), have.clone());
            }
            if let Some(primary) = info.primary.as_deref()
                && !want.iter().any(|s| s == primary)
                && have.iter().any(|s| s == primary)
                && let Some(to) = fleet_ops::switchover_target(info, want)
            {
                handovers.push(Handover {
                    shard: shard.clone(),
                    from: primary.to_owned(),
                    to: Some(to),
                });
                return (shard.clone(), have.clone());
            }
            (shard.clone(), want.clone())
        })
        .collect();
    (assemble(shards, desired, applied), handovers)
}

/// `(server, shard)` pairs that `next` adds to replica sets (new servers of a shard, every
/// replica of a new shard).
pub fn newcomers(applied: &ClusterSpec, next: &ClusterSpec) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (shard, set) in &next.shards {
        let before = applied.shards.get(shard);
        for server in set {
            if !before.is_some_and(|b| b.contains(server)) {
                out.insert((server.clone(), shard.clone()));
            }
        }
    }
    out
}

/// `next` without the changes whose newcomers are not `ready` (their agents have not taken the
/// shard's `/config` yet): such a shard keeps its `applied` set, or waits to be added when new.
/// A replica set gains a server only once its agent holds the (empty) shard, as the
/// replica-set change protocol requires.
pub fn gate(
    next: &ClusterSpec,
    applied: &ClusterSpec,
    desired: &ClusterSpec,
    ready: impl Fn(&str, &str) -> bool,
) -> ClusterSpec {
    let waiting: BTreeSet<String> = newcomers(applied, next)
        .into_iter()
        .filter(|(server, shard)| !ready(server, shard))
        .map(|(_, shard)| shard)
        .collect();
    let shards = next
        .shards
        .iter()
        .filter_map(|(shard, set)| {
            if !waiting.contains(shard) {
                return Some((shard.clone(), set.clone()));
            }
            applied
                .shards
                .get(shard)
                .map(|kept| (shard.clone(), kept.clone()))
        })
        .collect();
    assemble(shards, desired, applied)
}

/// Servers whose agent answers but does not report a shard it holds in the control plane's
/// view: not configured yet (a new pod) or configured afresh (a lost volume).
pub fn unconfigured(topology: &Topology) -> BTreeSet<String> {
    topology
        .shards
        .values()
        .flat_map(|info| &info.replicas)
        .filter(|r| !r.reachable && topology.servers.get(&r.server).is_some_and(|s| s.reachable))
        .map(|r| r.server.clone())
        .collect()
}

/// The shards `server` holds a replica of in any of `specs` (for its `/config`).
pub fn held_by<'a>(
    server: &str,
    specs: impl IntoIterator<Item = &'a ShardReplicas>,
) -> BTreeSet<String> {
    specs
        .into_iter()
        .flat_map(|shards| shards.iter())
        .filter(|(_, set)| set.iter().any(|s| s == server))
        .map(|(shard, _)| shard.clone())
        .collect()
}

/// A removed server is drained once no replica set of the running control plane names it
/// (`applied` and its topology), no shard is changing its set, and the persisted record no
/// longer names it (so a restarted control plane never needs it again). Only then may its pod
/// and volume go.
pub fn drained(
    server: &str,
    applied: &ClusterSpec,
    topology: &Topology,
    record: Option<&Settled>,
) -> bool {
    let named = |sets: &ShardReplicas| sets.values().any(|set| set.iter().any(|s| s == server));
    !named(&applied.shards)
        && topology
            .shards
            .values()
            .all(|i| !i.reconfiguring && !i.replicas.iter().any(|r| r.server == server))
        && !record.is_some_and(named)
}

/// The primaries `server` holds that must move before it leaves, with their targets among the
/// shards' desired sets.
pub fn drain_handovers(server: &str, desired: &ClusterSpec, topology: &Topology) -> Vec<Handover> {
    fleet_ops::handovers(topology, &[server.to_owned()], &desired.shards)
}

/// Parses the settled record of an annotation value.
pub fn parse_settled(text: &str) -> Result<Settled, HostingError> {
    let record: BTreeMap<String, Vec<String>> =
        serde_json::from_str(text).map_err(|e| HostingError::Record(e.to_string()))?;
    Ok(record)
}
