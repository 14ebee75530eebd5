//! The fleet as the control plane publishes it (`walshard status`, the local control API's
//! `/v1/fleet`, the router): per shard its phase, primary, epoch and replicas, per server its
//! reachability. The control plane builds it from its election state; readers never see that
//! state itself.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::replication::Role;

/// Where a shard's election stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Not every replica has been heard from (or failed) yet.
    Starting,
    /// A primary is known and accepting writes.
    Healthy,
    /// A switchover: the primary was asked to step down; an election follows.
    SteppingDown,
    /// A fence round of an election is under way.
    Electing,
    /// A server was asked to become primary and its no-op is not committed yet.
    Promoting,
    /// No election can complete now (too few replicas reachable); retried later.
    NoQuorum,
}

impl Phase {
    /// `starting`, `healthy`, `stepping-down`, `electing`, `promoting` or `no-quorum`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Healthy => "healthy",
            Phase::SteppingDown => "stepping-down",
            Phase::Electing => "electing",
            Phase::Promoting => "promoting",
            Phase::NoQuorum => "no-quorum",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One replica as the control plane sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaInfo {
    /// The server's name.
    pub server: String,
    /// Latest heartbeat succeeded.
    pub reachable: bool,
    /// The failure detector suspects the server dead (too many failures, too long a silence or a refusal).
    pub suspected: bool,
    /// From the latest successful status report (possibly stale when not reachable).
    pub role: Option<Role>,
    /// The highest epoch it promised.
    pub epoch: Option<u64>,
    /// Epoch of its last WAL entry.
    pub last_epoch: Option<u64>,
    /// LSN of its last WAL entry.
    pub last_lsn: Option<u64>,
    /// LSN of its last committed entry.
    pub commit_lsn: Option<u64>,
    /// LSN of its last entry applied to MySQL.
    pub applied_lsn: Option<u64>,
    /// Its applier stopped on an error it cannot get past (see the agent's status).
    pub halted: bool,
    /// Primary's `commit_lsn` − this replica's `applied_lsn`, when both are known.
    pub lag: Option<u64>,
}

/// A shard as the control plane sees it: what a router or CLI needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// The shard id.
    pub shard: String,
    /// Where its election stands.
    pub state: Phase,
    /// Why the shard is not healthy (no-quorum reason, failed promotion), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The writable primary, when healthy (or stepping down, until the election).
    pub primary: Option<String>,
    /// The primary's epoch when healthy, else the highest epoch seen.
    pub epoch: u64,
    /// A write quorum of replicas answers heartbeats (a healthy primary can commit).
    pub quorum_reachable: bool,
    /// The replica set (the new one during a change).
    pub replicas: Vec<ReplicaInfo>,
    /// A replica-set change is under way: elections also need the previous set, and another
    /// change is refused until the new primary has committed in the new set.
    #[serde(default)]
    pub reconfiguring: bool,
}

/// A server as the control plane sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// The agent's base URL.
    pub url: String,
    /// The latest `GET /status` succeeded.
    pub reachable: bool,
    /// The failure detector suspects it dead.
    pub suspected: bool,
    /// Its volume is below the reserve: it refuses writes (507 disk-full) until space is freed.
    #[serde(default)]
    pub disk_full: bool,
}

/// Snapshot of the cluster for routers and the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Topology {
    /// Per shard id, its state.
    pub shards: BTreeMap<String, ShardInfo>,
    /// Per server name, its state.
    pub servers: BTreeMap<String, ServerInfo>,
    /// Per shard, its primary's WAL archive (docs/backup.md); empty without a backup store.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub archive: BTreeMap<String, crate::ArchiveReport>,
}

impl Topology {
    /// The healthy primary of `shard`, if any.
    pub fn primary(&self, shard: &str) -> Option<&str> {
        self.shards.get(shard)?.primary.as_deref()
    }

    /// The epoch of `shard` (the primary's when healthy).
    pub fn epoch(&self, shard: &str) -> Option<u64> {
        self.shards.get(shard).map(|s| s.epoch)
    }
}
