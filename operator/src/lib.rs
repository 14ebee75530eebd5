//! walshard's control plane: shard placement, failure detection, elections and failover.
//!
//! The logic is sans-IO and runtime-agnostic: [`placement`] and [`election`] are pure, and
//! [`runtime`] drives them against the agents' HTTP endpoints (docs/replication.md) through the
//! [`runtime::AgentApi`] trait. Local processes and Kubernetes both run the same
//! [`runtime::ControlPlane`]; the failover algorithm exists once, in [`election`].

pub mod election;
pub mod fleet_ops;
pub mod k8s;
pub mod placement;
pub mod runtime;
pub mod sim;
pub mod spec;
pub mod wire;

pub use election::{
    Action, ControllerConfig, ControllerEvent, Decision, DetectorConfig, FailureDetector,
    FenceAnswer, Heartbeat, Phase, PromoteOutcome, ReconfigureError, ReplicaInfo, ShardController,
    ShardInfo, ShardState, SwitchoverError, VoterSet, decide, decide_joint,
};
pub use placement::{Placement, PlacementError, compute_placement, validate_placement};
pub use runtime::{
    AgentApi, ApiError, ClusterSpec, ControlHandle, ControlPlane, ControlPlaneConfig, HttpAgentApi,
    HttpTimeouts, OperatorMetrics, SpecError, TickSummary, Topology,
};
pub use wire::{AgentStatus, FenceReply, Quorum, Role, ServerRef, ShardStatus};
