//! The agent ↔ control-plane contract (docs/replication.md): replication terms and the JSON of
//! the agent's control endpoints.
//!
//! | endpoint | request | answer |
//! | --- | --- | --- |
//! | `GET /status` | – | [`AgentStatus`] |
//! | `POST /shards/{id}/fence` | [`FenceRequest`] | 200 [`FenceAccepted`], 409 [`Conflict`] |
//! | `POST /shards/{id}/promote` | [`PromoteRequest`] | 200 once the no-op is committed, 503 on timeout |
//! | `POST /shards/{id}/step-down` | [`StepDownRequest`] | 200 [`StepDownReply`] |
//!
//! The agent wraps its answers in [`crate::Success`] (`"status": "success"`); readers ignore
//! unknown fields.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Schema;

/// How many of a shard's replicas must hold an entry before it is committed; sent with
/// `promote`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Quorum {
    /// A majority of the shard's replicas (the default).
    #[default]
    Majority,
    /// Every replica.
    All,
}

impl Quorum {
    /// How many of `replicas` replicas (the primary included) must hold an entry to commit it.
    pub fn size(self, replicas: usize) -> usize {
        match self {
            Quorum::Majority => majority(replicas),
            Quorum::All => replicas,
        }
    }
}

/// A majority of `n`: `n / 2 + 1`.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// A server by name and base URL (`{"name", "url"}`, as in the promote body's `replicas`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReplicaRef {
    /// The server's name.
    pub name: String,
    /// The agent's base URL, e.g. `http://host:port`.
    pub url: String,
}

/// A replica's role for one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Primary of its `epoch`: takes writes once its no-op in that epoch is committed.
    Primary,
    /// Secondary of `epoch`, following `primary`.
    Secondary,
    /// Promised `epoch`, no primary accepted yet.
    Fenced,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Primary => "primary",
            Role::Secondary => "secondary",
            Role::Fenced => "fenced",
        })
    }
}

/// One shard's entry in `GET /status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardStatus {
    /// Its role for the shard in `epoch`.
    pub role: Role,
    /// The highest epoch this replica has promised (`max_epoch`).
    pub epoch: u64,
    /// The primary it follows (or itself when primary); `null` when fenced.
    #[serde(default)]
    pub primary: Option<String>,
    /// A primary whose no-op in its epoch is committed: it takes writes.
    #[serde(default)]
    pub accepting_writes: bool,
    /// Epoch of its last WAL entry.
    pub last_epoch: u64,
    /// LSN of its last WAL entry.
    pub last_lsn: u64,
    /// LSN of the last entry known committed (held by a quorum).
    #[serde(default)]
    pub commit_lsn: u64,
    /// LSN of the last entry applied to MySQL (`applied_lsn <= commit_lsn`).
    #[serde(default)]
    pub applied_lsn: u64,
    /// First LSN still in the WAL; entries before it were compacted away (0 on an empty log).
    #[serde(default)]
    pub first_lsn: u64,
    /// Why the shard's applier stopped on an error it cannot get past by itself; `null` while
    /// healthy.
    #[serde(default)]
    pub halted: Option<String>,
}

impl ShardStatus {
    /// A replica as it is at first start: fenced at epoch 0 with an empty log.
    pub fn fresh() -> Self {
        Self {
            role: Role::Fenced,
            epoch: 0,
            primary: None,
            accepting_writes: false,
            last_epoch: 0,
            last_lsn: 0,
            commit_lsn: 0,
            applied_lsn: 0,
            first_lsn: 0,
            halted: None,
        }
    }
}

/// `GET /status`: `{"server": .., "schema": .., "shards": {"sh1": {..}}, "disk": {..}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// The agent's own name; checked against the name the control plane addressed, when present.
    #[serde(default)]
    pub server: Option<String>,
    /// The table schema of `/config`; `null` before.
    #[serde(default)]
    pub schema: Option<Schema>,
    /// Per shard id, the replica's state of that shard.
    pub shards: BTreeMap<String, ShardStatus>,
    /// The volume of the agent's data dir (absent from older agents).
    #[serde(default)]
    pub disk: Option<DiskReport>,
    /// Per shard, how far its WAL archive is (absent without a backup store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<BTreeMap<String, ArchiveReport>>,
}

/// A shard's WAL archive on one agent (docs/backup.md).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ArchiveReport {
    /// The last LSN known to be in the backup store (`None` before the archiver looked).
    pub archived_lsn: Option<u64>,
    /// Committed entries not archived yet.
    pub lag_entries: u64,
    /// Seconds since the archive was last known complete (0 while it is).
    pub lag_seconds: u64,
    /// The last store error, while archiving fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An agent's `"disk"`: free space against its reserve.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DiskReport {
    /// Free bytes on the volume; `null` when it cannot be measured.
    #[serde(default)]
    pub free_bytes: Option<u64>,
    /// Bytes kept free: writes are refused below this (the agent's disk reserve).
    #[serde(default)]
    pub reserve_bytes: u64,
    /// Writes are refused (507 disk-full) until space is freed.
    pub full: bool,
}

/// `POST /shards/{id}/fence` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceRequest {
    /// The epoch to promise; refused (409) below the replica's promise, or equal to it once a
    /// primary was accepted for it.
    pub epoch: u64,
}

/// A fence's 200 answer: the replica promised `epoch` and reports the end of its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceAccepted {
    /// The epoch promised.
    pub epoch: u64,
    /// Epoch of its last WAL entry.
    pub last_epoch: u64,
    /// LSN of its last WAL entry.
    pub last_lsn: u64,
}

/// A 409 answer (fence, promote, append): the replica's `max_epoch` and the primary it accepted
/// for it, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// The highest epoch the replica has promised (`max_epoch`).
    pub epoch: u64,
    /// The primary it accepted for `epoch`, if any.
    #[serde(default)]
    pub primary: Option<String>,
    /// Why it refused, when it says.
    #[serde(default)]
    pub message: Option<String>,
}

/// `POST /shards/{id}/promote` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromoteRequest {
    /// The epoch to lead; refused unless the agent is fenced at exactly it (no primary accepted).
    pub epoch: u64,
    /// Every replica of the shard (the agent drops itself).
    #[serde(default)]
    pub replicas: Vec<ReplicaRef>,
    /// How many replicas must hold an entry to commit it (default: majority).
    #[serde(default)]
    pub quorum: Quorum,
}

/// `POST /shards/{id}/step-down` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepDownRequest {
    /// The server that should be elected next (a name, as in [`ReplicaRef::name`]).
    pub to: String,
}

/// `POST /shards/{id}/step-down` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepDownReply {
    /// LSN of the primary's last WAL entry once it stopped taking writes.
    pub last_lsn: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_parses_the_documented_shape() {
        let body = r#"{"server":"Server0","shards":{
            "sh1":{"role":"primary","epoch":3,"primary":"Server0","last_epoch":3,"last_lsn":10,
                   "commit_lsn":9,"applied_lsn":8,"first_lsn":1,"halted":null},
            "sh2":{"role":"fenced","epoch":0,"primary":null,"last_epoch":0,"last_lsn":0,
                   "commit_lsn":0,"applied_lsn":0,"first_lsn":0,"halted":null}},
            "status":"success"}"#;
        let s: AgentStatus = serde_json::from_str(body).unwrap();
        assert_eq!(s.server.as_deref(), Some("Server0"));
        assert_eq!(s.shards["sh1"].role, Role::Primary);
        assert_eq!(s.shards["sh1"].commit_lsn, 9);
        assert_eq!(s.shards["sh2"], ShardStatus::fresh());
    }

    #[test]
    fn requests_serialize_as_documented() {
        let p = PromoteRequest {
            epoch: 4,
            replicas: vec![ReplicaRef {
                name: "Server1".into(),
                url: "http://127.0.0.1:9001".into(),
            }],
            quorum: Quorum::Majority,
        };
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({"epoch":4,"replicas":[{"name":"Server1","url":"http://127.0.0.1:9001"}],"quorum":"majority"})
        );
        assert_eq!(
            serde_json::to_value(FenceRequest { epoch: 2 }).unwrap(),
            serde_json::json!({"epoch": 2})
        );
        assert_eq!(
            serde_json::to_value(StepDownRequest { to: "S2".into() }).unwrap(),
            serde_json::json!({"to": "S2"})
        );
        assert_eq!(serde_json::to_value(Quorum::All).unwrap(), "all");
    }

    #[test]
    fn quorum_sizes() {
        assert_eq!(majority(1), 1);
        assert_eq!(majority(2), 2);
        assert_eq!(majority(3), 2);
        assert_eq!(majority(4), 3);
        assert_eq!(majority(5), 3);
        assert_eq!(Quorum::Majority.size(1), 1);
        assert_eq!(Quorum::Majority.size(3), 2);
        assert_eq!(Quorum::Majority.size(4), 3);
        assert_eq!(Quorum::Majority.size(5), 3);
        assert_eq!(Quorum::All.size(3), 3);
        assert_eq!(
            serde_json::to_string(&Quorum::All).ok().as_deref(),
            Some("\"all\"")
        );
    }
}
