//! What a [`ShardController`](super::ShardController) emits and is answered with, and why it
//! refuses a request.

use std::time::Duration;

use serde::Serialize;
use thiserror::Error;
use walshard_contract::{Phase, Quorum};

use crate::cluster::ClusterSpecError;

/// What the controller asks the runtime to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// `POST /shards/{shard}/fence {"epoch"}` on `server`; answer with
    /// [`ShardController::on_fence_answer`](super::ShardController::on_fence_answer).
    Fence {
        shard: String,
        server: String,
        epoch: u64,
    },
    /// `POST /shards/{shard}/promote` on `server` with the shard's `replicas` (all of them, the
    /// promoted one included unless it is a previous replica bridging a change: see
    /// [`decide_joint`](super::decide_joint)) and write `quorum`; answer with
    /// [`ShardController::on_promote_result`](super::ShardController::on_promote_result).
    Promote {
        shard: String,
        server: String,
        epoch: u64,
        replicas: Vec<String>,
        quorum: Quorum,
    },
    /// `POST /shards/{shard}/step-down {"to"}` on the primary `server`; answer with
    /// [`ShardController::on_step_down_result`](super::ShardController::on_step_down_result).
    StepDown {
        shard: String,
        server: String,
        to: String,
    },
}

impl Action {
    pub fn shard(&self) -> &str {
        match self {
            Action::Fence { shard, .. }
            | Action::Promote { shard, .. }
            | Action::StepDown { shard, .. } => shard,
        }
    }

    pub fn server(&self) -> &str {
        match self {
            Action::Fence { server, .. }
            | Action::Promote { server, .. }
            | Action::StepDown { server, .. } => server,
        }
    }
}

/// How a promote call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromoteOutcome {
    /// 200: the no-op of the epoch is committed.
    Done,
    /// 503: the server is primary but its no-op is not committed yet; it keeps trying.
    Pending(String),
    /// 409: the server is not fenced at exactly our epoch; it reported `epoch`.
    Rejected { epoch: u64 },
    /// Anything else (timeout, transport, other status): unknown; status reports will tell.
    Failed(String),
}

/// Notable moments, for metrics; drained with
/// [`ShardController::drain_events`](super::ShardController::drain_events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerEvent {
    ElectionStarted {
        shard: String,
        epoch: u64,
        reason: String,
    },
    ElectionCompleted {
        shard: String,
        epoch: u64,
        primary: String,
        duration: Duration,
    },
    NoQuorum {
        shard: String,
        reason: String,
    },
}

/// Why a switchover request was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SwitchoverError {
    #[error("unknown shard {0:?}")]
    UnknownShard(String),
    #[error("{to:?} holds no replica of shard {shard:?}")]
    NotAReplica { shard: String, to: String },
    #[error("shard {shard:?} is {state}, not healthy: try again later")]
    Busy { shard: String, state: Phase },
    #[error("{to:?} is not reachable")]
    Unreachable { to: String },
    #[error("the control plane is not running")]
    NotRunning,
}

/// Why a change of replica sets was refused; nothing changed then.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReconfigureError {
    /// The new spec fails [`crate::cluster::ClusterSpec::validate`] (or a replica set is empty).
    #[error("invalid cluster spec: {0}")]
    Invalid(#[from] ClusterSpecError),
    /// The write quorum is fixed for the control plane's lifetime.
    #[error("the write quorum cannot change at runtime (from {from:?} to {to:?})")]
    WriteQuorum { from: Quorum, to: Quorum },
    /// The shard's previous change has not completed yet: retry later.
    #[error("shard {shard:?} is still changing its replica set: try again later")]
    Busy { shard: String },
    #[error("the control plane is not running")]
    NotRunning,
}
