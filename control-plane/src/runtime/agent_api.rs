//! The agent endpoints the control plane calls, as a trait, and how a call fails.

use std::future::Future;

use thiserror::Error;
use walshard_contract::{AgentStatus, FenceAccepted, Quorum, ReplicaRef};

use crate::election::Heartbeat;

/// Why a call to an agent failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AgentCallError {
    /// The agent's port refused the connection (process down).
    #[error("connection refused")]
    Refused,
    /// No answer within the call's timeout.
    #[error("timed out")]
    Timeout,
    /// Any other transport failure (the error text).
    #[error("transport error: {0}")]
    Transport(String),
    /// 409: the replica's `max_epoch` (and the primary it accepted for it) forbid the request.
    #[error("conflict: the replica is at epoch {epoch} (primary {primary:?}): {message}")]
    Conflict {
        /// The replica's `max_epoch`.
        epoch: u64,
        /// The primary it accepted for that epoch, if any.
        primary: Option<String>,
        /// The answer's message.
        message: String,
    },
    /// 503 (e.g. promote: the no-op is not committed yet, the agent keeps trying).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Any other non-success status.
    #[error("HTTP {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The answer's message.
        message: String,
    },
    /// A success answer whose body does not parse (the error).
    #[error("malformed answer: {0}")]
    Decode(String),
    /// The server's URL cannot be used to build a request.
    #[error("bad agent URL {url:?}: {message}")]
    BadUrl {
        /// The configured URL.
        url: String,
        /// Why it is unusable.
        message: String,
    },
    /// `GET /status` names another server than the one addressed (a misrouted URL).
    #[error("the agent at this address is {actual:?}, not {expected:?}")]
    WrongServer {
        /// The server the control plane addressed.
        expected: String,
        /// The name the agent reported.
        actual: String,
    },
}

impl AgentCallError {
    /// How this failure counts as a heartbeat.
    pub fn heartbeat(&self) -> Heartbeat {
        match self {
            AgentCallError::Refused => Heartbeat::Refused,
            _ => Heartbeat::Failed,
        }
    }
}

/// The agent endpoints the control plane uses (docs/replication.md, "Agent endpoints").
pub trait AgentApi: Send + Sync + 'static {
    /// `GET /status`.
    fn status(
        &self,
        server: &ReplicaRef,
    ) -> impl Future<Output = Result<AgentStatus, AgentCallError>> + Send;

    /// `POST /shards/{shard}/fence {"epoch"}`: a 409 is `Ok(FenceReply::Rejected)`.
    fn fence(
        &self,
        server: &ReplicaRef,
        shard: &str,
        epoch: u64,
    ) -> impl Future<Output = Result<FenceReply, AgentCallError>> + Send;

    /// `POST /shards/{shard}/promote {"epoch", "replicas", "quorum"}`: `Ok` once the no-op is
    /// committed; 503 is [`AgentCallError::Unavailable`], 409 [`AgentCallError::Conflict`].
    fn promote(
        &self,
        server: &ReplicaRef,
        shard: &str,
        epoch: u64,
        replicas: Vec<ReplicaRef>,
        quorum: Quorum,
    ) -> impl Future<Output = Result<(), AgentCallError>> + Send;

    /// `POST /shards/{shard}/step-down {"to"}`: the old primary's `last_lsn`.
    fn step_down(
        &self,
        server: &ReplicaRef,
        shard: &str,
        to: &str,
    ) -> impl Future<Output = Result<u64, AgentCallError>> + Send;
}

/// What a fence call returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FenceReply {
    /// 200: promised the epoch.
    Accepted(FenceAccepted),
    /// 409: the replica has promised `epoch` (≥ the one asked) and will not take ours.
    Rejected {
        /// The replica's `max_epoch`.
        epoch: u64,
        /// The primary it accepted for that epoch, if any.
        primary: Option<String>,
    },
}
