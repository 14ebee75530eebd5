//! The driver: heartbeats and actions over the agents' HTTP API, IO at the edge.
//! [`agent_api`] (the agent endpoints as a trait), [`http`] (its HTTP client), [`metrics`],
//! [`driver`] (the loop) and [`handle`] (talking to a running loop).
//!
//! [`ControlPlane::tick`] polls every server's `GET /status` concurrently, feeds the per-shard
//! [`ShardController`]s, executes the actions they emit concurrently (as tasks, so a slow agent
//! never stalls the loop for longer than [`ControlPlaneConfig::action_wait`]), feeds the answers
//! back and repeats until the controllers are settled. [`ControlPlane::run`] ticks every heartbeat
//! interval until shut down; a [`ControlPlaneHandle`] reads the [`Topology`], requests
//! switchovers and changes the cluster ([`ControlPlane::reconfigure`]) while it runs.
//!
//! [`ShardController`]: crate::election::ShardController
//! [`Topology`]: walshard_contract::Topology
//!
//! The agents are reached through [`AgentApi`]; [`HttpAgentApi`] is the real one
//! (docs/replication.md's endpoints and JSON), `sim::SimAgentApi` (feature `sim`) an in-memory one.

pub mod agent_api;
pub mod driver;
pub mod handle;
pub mod http;
pub mod metrics;

pub use agent_api::{AgentApi, AgentCallError, FenceReply};
pub use driver::{ControlPlane, ControlPlaneConfig, TickSummary};
pub use handle::ControlPlaneHandle;
pub use http::{HttpAgentApi, HttpTimeouts};
pub use metrics::{ControlPlaneMetrics, Scope};

#[cfg(test)]
mod tests;
