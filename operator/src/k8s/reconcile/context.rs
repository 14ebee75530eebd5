//! What every reconciliation shares ([`Context`]) and the per-database control planes it drives
//! ([`Fleet`]).

use std::collections::{BTreeSet, HashMap};
use std::error::Error as StdError;
use std::future::Future;
use std::sync::Mutex;
use std::time::Instant;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use thiserror::Error;
use tracing::info;
use walshard_contract::Topology;
use walshard_contract::http_client::TrustedCa;
use walshard_k8s_api::spec::ShardedDatabase;

use super::{REPORTING_CONTROLLER, ReconcileMetrics, lock};
use crate::k8s::objects::Images;

/// How the operator reaches a database's agents: the cluster token and, with `spec.tls`, the
/// authority their HTTPS certificates come from (the only one trusted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentAccess {
    /// The cluster token (bearer).
    pub token: String,
    /// The fleet's authority; `Some` exactly when the agents serve HTTPS.
    pub trust: Option<TrustedCa>,
}

impl AgentAccess {
    /// Plain HTTP with `token`.
    pub fn token(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            trust: None,
        }
    }
}

/// The per-database control planes, as the reconciler drives them: implemented by
/// [`HostedPlanes`](crate::k8s::hosting::HostedPlanes) and by test doubles.
pub trait Fleet: Send + Sync + 'static {
    /// Starts or reconfigures the control plane of `db` from its spec; a no-op when unchanged.
    fn ensure(
        &self,
        db: &ShardedDatabase,
        access: &AgentAccess,
    ) -> impl Future<Output = Result<(), FleetError>> + Send;
    /// Stops the control plane of a database (deleted, or this operator stepped down).
    fn remove(&self, namespace: &str, name: &str) -> impl Future<Output = ()> + Send;
    /// The control plane's latest view of the database, if it runs.
    fn topology(&self, namespace: &str, name: &str) -> Option<Topology>;
    /// Moves `server`'s primaries and replicas away; `true` once nothing needs the server.
    fn drain(
        &self,
        namespace: &str,
        name: &str,
        server: &str,
    ) -> impl Future<Output = Result<bool, FleetError>> + Send;
    /// Switches the primaries of `server` (staying in the spec) over to other replicas before
    /// it stops; `true` once it leads no shard.
    fn handover(
        &self,
        namespace: &str,
        name: &str,
        server: &str,
    ) -> impl Future<Output = Result<bool, FleetError>> + Send;
    /// A user switchover of `shard` to `to`; `true` once `to` is its primary.
    fn switchover(
        &self,
        namespace: &str,
        name: &str,
        shard: &str,
        to: &str,
    ) -> impl Future<Output = Result<bool, FleetError>> + Send;
}

/// An error of a [`Fleet`] operation (retried by the reconciler).
#[derive(Debug, Error)]
#[error(transparent)]
pub struct FleetError(Box<dyn StdError + Send + Sync>);

impl FleetError {
    /// Wraps any error.
    pub fn new(error: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self(error.into())
    }
}

pub(super) type Key = (String, String);

/// What every reconciliation shares: the API client, the control planes, the images, the Event
/// recorder, the metrics and a little per-database memory (error counts, drains under way).
pub struct Context<F> {
    pub(super) client: Client,
    pub(super) fleet: F,
    pub(super) images: Images,
    pub(super) recorder: Recorder,
    pub(super) metrics: ReconcileMetrics,
    /// Consecutive failures per database, for the error backoff.
    pub(super) failures: Mutex<HashMap<Key, u32>>,
    /// Databases whose control plane this process ensured (stopped on step-down).
    pub(super) running: Mutex<BTreeSet<Key>>,
    /// Servers being drained (the `Draining` Event is sent once per drain).
    pub(super) draining: Mutex<BTreeSet<(Key, String)>>,
    /// When each server's pod was last deleted for a template update.
    pub(super) restarts: Mutex<HashMap<(Key, String), Instant>>,
    /// Servers whose primaries are being handed over before a restart (one Event each).
    pub(super) handovers: Mutex<BTreeSet<(Key, String)>>,
}

impl<F: Fleet> Context<F> {
    /// `instance` is the reporting instance of Events (the pod name).
    pub fn new(
        client: Client,
        fleet: F,
        images: Images,
        instance: Option<String>,
        metrics: ReconcileMetrics,
    ) -> Self {
        let reporter = Reporter {
            controller: REPORTING_CONTROLLER.to_owned(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            fleet,
            images,
            metrics,
            failures: Mutex::default(),
            running: Mutex::default(),
            draining: Mutex::default(),
            restarts: Mutex::default(),
            handovers: Mutex::default(),
        }
    }

    /// The control planes.
    pub fn fleet(&self) -> &F {
        &self.fleet
    }

    /// The reconciler's metrics.
    pub fn metrics(&self) -> &ReconcileMetrics {
        &self.metrics
    }

    /// Stops every control plane this process started (after the controller stopped).
    pub async fn stop_control_planes(&self) {
        let running = std::mem::take(&mut *lock(&self.running));
        for (namespace, name) in running {
            info!(%namespace, %name, "stopping the control plane");
            self.fleet.remove(&namespace, &name).await;
            self.metrics.forget(&namespace, &name);
        }
        lock(&self.draining).clear();
        lock(&self.failures).clear();
        lock(&self.restarts).clear();
    }
}
