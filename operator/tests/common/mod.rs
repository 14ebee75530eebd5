//! Shared pieces of the operator's integration tests.

pub mod sim_agents;
