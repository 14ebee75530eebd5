//! One hosted database: its tasks ([`Database`]), what they share ([`Shared`]) and the
//! converger's memory ([`Progress`]); the planned switchovers and the settled-record write they
//! all use.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use walshard_contract::Quorum;
use walshard_contract::backoff::{Backoff, Pauses};
use walshard_control_plane::ClusterSpec;
use walshard_control_plane::election::SwitchoverError;
use walshard_control_plane::fleet_ops::Handover;
use walshard_control_plane::runtime::ControlPlaneHandle;
use walshard_k8s_api::spec::{API_VERSION, KIND, ShardedDatabase};

use super::plan::{Desired, Settled};
use super::{FIELD_MANAGER, HostingError, SETTLED_ANNOTATION};
use crate::k8s::reconcile::AgentAccess;

/// The longest pause of the converger's backoff.
pub(super) const RETRY_CAP: Duration = Duration::from_secs(30);

/// A running database: its tasks and what they share.
pub(super) struct Database {
    /// What the control plane reaches the agents with; a change restarts it.
    pub(super) access: AgentAccess,
    pub(super) shared: Arc<Shared>,
    pub(super) stop: watch::Sender<bool>,
    pub(super) tasks: Vec<JoinHandle<()>>,
}

impl Database {
    /// Stops its tasks (each gets 5 s, then is aborted).
    pub(super) async fn stop(self) {
        self.stop.send_replace(true);
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                warn!(
                    database = %self.shared.key(),
                    "a control-plane task did not stop in time"
                );
                abort.abort();
            }
        }
    }
}

/// What a database's tasks share.
pub(super) struct Shared {
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) api: Api<ShardedDatabase>,
    pub(super) handle: ControlPlaneHandle,
    pub(super) desired: watch::Sender<Desired>,
    pub(super) progress: Mutex<Progress>,
    pub(super) http: reqwest::Client,
    pub(super) token: String,
    /// The converger's backoff: a failed `/config` of a server and a step that still waits are
    /// retried after a jittered pause from here.
    pub(super) retry: Backoff,
}

/// The converger's memory.
#[derive(Debug, Clone)]
pub(super) struct Progress {
    /// The spec the control plane runs (the last one it accepted).
    pub(super) applied: ClusterSpec,
    /// The settled record last persisted (or read at start).
    pub(super) record: Option<Settled>,
    /// `(server, shard)` pairs whose `/config` the agent accepted.
    pub(super) configured: BTreeSet<(String, String)>,
    /// Per server whose `/config` failed: the next attempt not before, and the pauses of its
    /// retries (jittered, doubling up to [`RETRY_CAP`]).
    pub(super) attempts: BTreeMap<String, (Instant, Pauses)>,
}

impl Shared {
    /// `namespace/name`, for logs.
    pub(super) fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The converger's memory.
    pub(super) fn progress(&self) -> MutexGuard<'_, Progress> {
        match self.progress.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The write quorum of the spec the control plane runs.
    pub(super) fn handle_quorum(&self) -> Quorum {
        self.progress().applied.write_quorum
    }

    /// Requests a planned switchover; one already under way is fine.
    pub(super) async fn hand_over(&self, h: &Handover) -> Result<(), HostingError> {
        let Some(to) = &h.to else {
            warn!(
                database = %self.key(), shard = %h.shard, from = %h.from,
                "no reachable staying replica to take over the primary yet"
            );
            return Ok(());
        };
        match self.handle.switchover(&h.shard, to).await {
            Ok(()) => {
                info!(database = %self.key(), shard = %h.shard, from = %h.from, to = %to, "switching the primary over");
                Ok(())
            }
            Err(SwitchoverError::NotRunning) => Err(HostingError::NotRunning {
                namespace: self.namespace.clone(),
                name: self.name.clone(),
            }),
            Err(SwitchoverError::Busy { .. }) => Ok(()),
            Err(e) => {
                warn!(database = %self.key(), shard = %h.shard, to = %to, error = %e, "switchover refused");
                Ok(())
            }
        }
    }

    /// Writes the settled record into the annotation (server-side apply, own field manager).
    pub(super) async fn persist(&self, record: &Settled) -> Result<(), kube::Error> {
        let text = serde_json::to_string(record).unwrap_or_else(|_| "{}".to_owned());
        let patch = json!({
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": self.name, "annotations": {SETTLED_ANNOTATION: text}},
        });
        self.api
            .patch(
                &self.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        debug!(database = %self.key(), "settled replica sets recorded");
        Ok(())
    }
}
