//! `spec.pod`: how the server pods stop.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Shortest grace period accepted: room for a planned switchover (well under a second) plus
/// MySQL's shutdown.
pub const MIN_GRACE_SECONDS: i64 = 10;
/// Longest grace period accepted.
pub const MAX_GRACE_SECONDS: i64 = 3600;

/// Options of the server pods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodOptions {
    /// Seconds a server pod gets to stop (default 60). On SIGTERM the agent keeps serving until
    /// the control plane has switched its primaries over (at most half of this), then exits;
    /// MySQL's `preStop` hook keeps it up until the agent has stopped.
    #[serde(default = "default_grace")]
    #[schemars(range(min = MIN_GRACE_SECONDS, max = MAX_GRACE_SECONDS))]
    pub termination_grace_period_seconds: i64,
}

fn default_grace() -> i64 {
    60
}

impl Default for PodOptions {
    fn default() -> Self {
        Self {
            termination_grace_period_seconds: default_grace(),
        }
    }
}

impl PodOptions {
    /// How long the agent waits on SIGTERM for its primaries to be switched over.
    pub fn handover_seconds(&self) -> i64 {
        self.termination_grace_period_seconds / 2
    }
}
