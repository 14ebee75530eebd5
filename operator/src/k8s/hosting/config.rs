//! The settings of [`HostedPlanes`](super::HostedPlanes).

use std::sync::Arc;
use std::time::Duration;

use walshard_control_plane::runtime::{ControlPlaneConfig, HttpTimeouts};

use super::plan::UrlFn;

/// Settings of [`HostedPlanes`].
#[derive(Clone)]
pub struct HostedPlanesConfig {
    /// The control planes' heartbeat interval.
    pub tick: Duration,
    /// Election and failure-detection settings of every control plane.
    pub plane: ControlPlaneConfig,
    /// Timeouts of the calls to the agents.
    pub timeouts: HttpTimeouts,
    /// The least time between two status writes of a database.
    pub status_every: Duration,
    /// The converger's pace without news, and the first delay before a failed `/config` is
    /// sent again (doubling up to 30 s).
    pub retry: Duration,
    /// An agent's base URL from `(database, namespace, server)`; [`walshard_k8s_api::names::agent_url`]
    /// (through the headless Service) by default, a loopback one in tests.
    pub agent_url: Arc<UrlFn>,
}

impl Default for HostedPlanesConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(200),
            plane: ControlPlaneConfig::default(),
            timeouts: HttpTimeouts::default(),
            status_every: Duration::from_millis(500),
            retry: Duration::from_secs(1),
            agent_url: Arc::new(walshard_k8s_api::names::agent_url),
        }
    }
}

impl std::fmt::Debug for HostedPlanesConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostedPlanesConfig")
            .field("tick", &self.tick)
            .field("plane", &self.plane)
            .field("timeouts", &self.timeouts)
            .field("status_every", &self.status_every)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}
