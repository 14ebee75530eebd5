//! The fleet's configuration (the seed's `/init` body in `fleet.json`) in the router's terms
//! ([`Layout`]) and the control plane's ([`ClusterSpec`], placement).

use std::path::PathBuf;

use serde_json::Value as Json;
use walshard_contract::Ident;
use walshard_control_plane::ClusterSpec;
use walshard_control_plane::placement::{Placement, ShardReplicas};
use walshard_router::layout::Layout;
use walshard_router::requests;

use super::LocalError;
use super::state::FleetState;

/// The control plane's view of `state`.
pub(super) fn cluster_spec(state: &FleetState, layout: Option<&Layout>) -> ClusterSpec {
    let servers = state
        .servers
        .iter()
        .map(|(name, ports)| (name.clone(), state.agent_url(*ports)))
        .collect();
    ClusterSpec::from_placement(
        servers,
        &layout.map(placement).unwrap_or_default(),
        state.write_quorum,
    )
}

/// The layout's placement in the control plane's terms.
fn placement(layout: &Layout) -> Placement {
    layout
        .placement
        .iter()
        .map(|(server, held)| {
            (
                server.to_string(),
                held.iter().map(Ident::to_string).collect(),
            )
        })
        .collect()
}

/// Shard → the servers holding it.
pub(super) fn shard_replicas(layout: &Layout) -> ShardReplicas {
    walshard_control_plane::placement::shard_replicas(&placement(layout))
}

/// The layout of a saved configuration.
pub(crate) fn parse_layout(config: &Json) -> Result<Layout, LocalError> {
    requests::parse_init(config).map_err(|e| LocalError::Corrupt {
        path: PathBuf::from("fleet.json"),
        reason: format!("configuration: {e}"),
    })
}
