//! walshard's control plane: shard placement, failure detection, elections and failover, with no
//! Kubernetes in it.
//!
//! The logic is sans-IO and runtime-agnostic: [`placement`] and [`election`] are pure, and
//! [`runtime`] drives them against the agents' HTTP endpoints (docs/replication.md) through the
//! [`runtime::AgentApi`] trait. Local processes (`walshard up`) and the Kubernetes operator both
//! run the same [`runtime::ControlPlane`]; the failover algorithm exists once, in [`election`].
//! It publishes the fleet as [`walshard_contract::Topology`]. With the feature `sim`, `sim` is an
//! in-memory cluster of simulated agents for tests.

#![warn(missing_docs)]

pub mod cluster;
pub mod election;
pub mod fleet_ops;
pub mod placement;
pub mod runtime;
#[cfg(feature = "sim")]
pub mod sim;

pub use cluster::{ClusterSpec, ClusterSpecError};
pub use election::{
    Action, ControllerConfig, ControllerEvent, ControllerState, Decision, DetectorConfig,
    FailureDetector, FenceAnswer, Heartbeat, PromoteOutcome, ReconfigureError, ShardController,
    SwitchoverError, VoterSet, decide, decide_joint,
};
pub use placement::{Placement, PlacementError, compute_placement, validate_placement};
pub use runtime::{
    AgentApi, AgentCallError, ControlPlane, ControlPlaneConfig, ControlPlaneHandle,
    ControlPlaneMetrics, FenceReply, HttpAgentApi, HttpTimeouts, TickSummary,
};
