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
        /// The shard to fence.
        shard: String,
        /// The replica's server.
        server: String,
        /// The epoch it is asked to promise.
        epoch: u64,
    },
    /// `POST /shards/{shard}/promote` on `server` with the shard's `replicas` (all of them, the
    /// promoted one included unless it is a previous replica bridging a change: see
    /// [`decide_joint`](super::decide_joint)) and write `quorum`; answer with
    /// [`ShardController::on_promote_result`](super::ShardController::on_promote_result).
    Promote {
        /// The shard to promote for.
        shard: String,
        /// The server to become primary.
        server: String,
        /// The epoch it leads (the fence round's).
        epoch: u64,
        /// Server names of the replicas it replicates to.
        replicas: Vec<String>,
        /// The write quorum it commits with.
        quorum: Quorum,
    },
    /// `POST /shards/{shard}/step-down {"to"}` on the primary `server`; answer with
    /// [`ShardController::on_step_down_result`](super::ShardController::on_step_down_result).
    StepDown {
        /// The shard whose primary steps down.
        shard: String,
        /// The current primary.
        server: String,
        /// The replica it hands over to (the preferred winner of the next election).
        to: String,
    },
}

impl Action {
    /// The shard the action is for.
    pub fn shard(&self) -> &str {
        match self {
            Action::Fence { shard, .. }
            | Action::Promote { shard, .. }
            | Action::StepDown { shard, .. } => shard,
        }
    }

    /// The server the call goes to.
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
    Rejected {
        /// The epoch the server reported.
        epoch: u64,
    },
    /// Anything else (timeout, transport, other status): unknown; status reports will tell.
    Failed(String),
}

/// Notable moments, for metrics; drained with
/// [`ShardController::drain_events`](super::ShardController::drain_events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerEvent {
    /// An election began (a fence round at a new epoch).
    ElectionStarted {
        /// The shard electing.
        shard: String,
        /// The epoch of its first fence round.
        epoch: u64,
        /// Why it started (e.g. primary suspected, switchover).
        reason: String,
    },
    /// An election ended with a primary whose no-op is committed.
    ElectionCompleted {
        /// The shard.
        shard: String,
        /// The new primary's epoch.
        epoch: u64,
        /// The new primary's server.
        primary: String,
        /// From the election's start to the promotion.
        duration: Duration,
    },
    /// The shard cannot elect now (too few replicas accepted or reachable).
    NoQuorum {
        /// The shard.
        shard: String,
        /// Why no quorum could be reached.
        reason: String,
    },
}

/// Why a switchover request was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SwitchoverError {
    /// No shard has this id.
    #[error("unknown shard {0:?}")]
    UnknownShard(String),
    /// The target server holds no replica of the shard.
    #[error("{to:?} holds no replica of shard {shard:?}")]
    NotAReplica {
        /// The shard id.
        shard: String,
        /// The requested target server.
        to: String,
    },
    /// The shard is not healthy (an election or switchover is under way, or no quorum).
    #[error("shard {shard:?} is {state}, not healthy: try again later")]
    Busy {
        /// The shard id.
        shard: String,
        /// Its current phase.
        state: Phase,
    },
    /// The target server does not answer heartbeats.
    #[error("{to:?} is not reachable")]
    Unreachable {
        /// The requested target server.
        to: String,
    },
    /// The control plane's driver loop has stopped.
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
    WriteQuorum {
        /// The quorum in force.
        from: Quorum,
        /// The quorum asked for.
        to: Quorum,
    },
    /// The shard's previous change has not completed yet: retry later.
    #[error("shard {shard:?} is still changing its replica set: try again later")]
    Busy {
        /// The shard id.
        shard: String,
    },
    /// The control plane's driver loop has stopped.
    #[error("the control plane is not running")]
    NotRunning,
}
