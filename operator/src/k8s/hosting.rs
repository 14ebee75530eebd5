//! The control plane on Kubernetes: one [`ControlPlane`] per `ShardedDatabase`, inside the
//! operator (its leader), fed by the agents' reports over the headless Service.
//!
//! [`HostedPlanes::ensure`] starts a database's control plane or hands it the spec; three tasks
//! then run per database:
//!
//! - the control plane itself (heartbeats, elections, switchovers, replica-set changes);
//! - the converger, which moves the running spec towards the desired one one safe step at a time
//!   ([`plan::next_spec`]): it sends `/config` to agents that lack shards they hold (new pods,
//!   lost volumes), adds a server to a replica set only once its agent holds the shard, switches a
//!   primary over before its server leaves the shard's set, records the settled replica sets in
//!   the [`SETTLED_ANNOTATION`] before every change (a restarted operator starts from them: the
//!   joint state of a change lives in memory only), and calls `reconfigure`, retrying `Busy`;
//! - the status publisher: `status.shards`, `shardCount` and `primaries` by server-side apply
//!   with its own field manager [`FIELD_MANAGER`], at most every 500 ms and only on change.
//!
//! A removed server leaves in this order: the spec drops it; [`HostedPlanes::ensure`] hands
//! that spec over, but the shards whose primary it holds keep their sets (so it stays in the
//! cluster spec, URL included); [`HostedPlanes::drain`] (and the converger) switch those
//! primaries to the most up-to-date reachable staying replica; the change follows, an election
//! under the joint rule that still needs the server's answer; once no set names it, no shard is
//! changing and the record no longer names it, `drain` answers `true` and its pod may go.

mod handover;
pub mod plan;
pub mod status;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{Patch, PatchParams};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{Value as Json, json};
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use walshard_contract::http_client::{ClientError, ClientSettings};
use walshard_contract::{Quorum, Topology};

use super::reconcile::FleetError;
use plan::{Desired, Settled, UrlFn};
use walshard_control_plane::ClusterSpec;
use walshard_control_plane::election::{ReconfigureError, SwitchoverError};
use walshard_control_plane::fleet_ops::{self, Handover};
use walshard_control_plane::runtime::{
    AgentCallError, ControlPlane, ControlPlaneConfig, ControlPlaneHandle, ControlPlaneMetrics,
    HttpAgentApi, HttpTimeouts, Scope,
};
use walshard_k8s_api::spec::{API_VERSION, KIND, ShardedDatabase};

/// The field manager of everything the control plane writes: its status fields and the
/// [`SETTLED_ANNOTATION`]. The reconciler owns the other status fields as `walshard-operator`.
pub const FIELD_MANAGER: &str = "walshard-operator-control-plane";

/// The annotation holding the settled replica sets ([`plan::Settled`], JSON `{"sh1": ["Server0",
/// ...]}`) a restarted control plane starts from.
pub const SETTLED_ANNOTATION: &str = "walshard.io/settled-replicas";

/// Why a database's control plane could not be started, changed or drained.
#[derive(Debug, Error)]
pub enum HostingError {
    #[error("the ShardedDatabase has no namespace")]
    NoNamespace,
    #[error("the ShardedDatabase has no name")]
    NoName,
    #[error(transparent)]
    Spec(#[from] walshard_k8s_api::spec::SpecError),
    #[error("cluster spec: {0}")]
    Cluster(#[from] walshard_control_plane::ClusterSpecError),
    #[error("agent client: {0}")]
    Agent(#[from] AgentCallError),
    #[error(
        "the write quorum cannot change while the control plane runs (from {from:?} to {to:?}); \
         nothing of the new spec was applied"
    )]
    WriteQuorum { from: Quorum, to: Quorum },
    #[error("no control plane runs for {namespace}/{name}: ensure() it first")]
    NotRunning { namespace: String, name: String },
    #[error("{server} is still in the spec of {namespace}/{name}: only removed servers drain")]
    NotRemoved {
        namespace: String,
        name: String,
        server: String,
    },
    #[error("annotation {SETTLED_ANNOTATION}: {0} (delete it to start from the spec)")]
    Record(String),
    #[error("switchover: {0}")]
    Switchover(String),
}

/// Settings of [`HostedPlanes`].
#[derive(Clone)]
pub struct HostedPlanesConfig {
    /// The control planes' heartbeat interval.
    pub tick: Duration,
    pub plane: ControlPlaneConfig,
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

/// The control planes of one operator process, one per `ShardedDatabase` (cheap to clone).
#[derive(Clone)]
pub struct HostedPlanes {
    inner: Arc<Inner>,
}

type Key = (String, String);

struct Inner {
    client: kube::Client,
    cfg: HostedPlanesConfig,
    metrics: ControlPlaneMetrics,
    running: Gauge,
    http: reqwest::Client,
    databases: Mutex<BTreeMap<Key, Database>>,
    /// Serializes `ensure` and `remove`, so a database never gets two control planes.
    ops: tokio::sync::Mutex<()>,
}

/// A running database: its tasks and what they share.
struct Database {
    token: String,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Database {
    async fn stop(self) {
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
struct Shared {
    namespace: String,
    name: String,
    api: Api<ShardedDatabase>,
    handle: ControlPlaneHandle,
    desired: watch::Sender<Desired>,
    progress: Mutex<Progress>,
    http: reqwest::Client,
    token: String,
    retry: Duration,
}

/// The converger's memory.
#[derive(Debug, Clone)]
struct Progress {
    /// The spec the control plane runs (the last one it accepted).
    applied: ClusterSpec,
    /// The settled record last persisted (or read at start).
    record: Option<Settled>,
    /// `(server, shard)` pairs whose `/config` the agent accepted.
    configured: BTreeSet<(String, String)>,
    /// Per server: the next `/config` attempt not before, and the delay after that one.
    attempts: BTreeMap<String, (Instant, Duration)>,
}

impl HostedPlanes {
    /// Control planes writing through `client`, their metrics (`walshard_operator_*`, one
    /// `database="<namespace>/<name>"` label per database) registered into `registry`.
    pub fn new(client: kube::Client, registry: &mut Registry) -> Result<Self, ClientError> {
        Self::with_config(client, registry, HostedPlanesConfig::default())
    }

    pub fn with_config(
        client: kube::Client,
        registry: &mut Registry,
        cfg: HostedPlanesConfig,
    ) -> Result<Self, ClientError> {
        let metrics = ControlPlaneMetrics::new(registry);
        let running = Gauge::default();
        registry
            .sub_registry_with_prefix("walshard_operator")
            .register(
                "control_planes",
                "Databases whose control plane runs in this operator",
                running.clone(),
            );
        let http = ClientSettings {
            connect_timeout: Some(Duration::from_secs(1)),
            ..ClientSettings::default()
        }
        .build()?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                cfg,
                metrics,
                running,
                http,
                databases: Mutex::new(BTreeMap::new()),
                ops: tokio::sync::Mutex::new(()),
            }),
        })
    }

    fn databases(&self) -> MutexGuard<'_, BTreeMap<Key, Database>> {
        match self.inner.databases.lock() {
            Ok(d) => d,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn shared(&self, namespace: &str, name: &str) -> Option<Arc<Shared>> {
        self.databases()
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(|d| Arc::clone(&d.shared))
    }

    /// Starts `db`'s control plane with the cluster token `token`, or hands a running one the
    /// spec (a no-op when it is unchanged; the converger carries the change out, retrying while
    /// the control plane answers `Busy`). A new token restarts the control plane from its
    /// settled record. Call it before [`Self::drain`], and once the pods of new servers exist
    /// (their agents get `/config` as soon as they answer).
    pub async fn ensure(&self, db: &ShardedDatabase, token: &str) -> Result<(), HostingError> {
        let desired = plan::desired(db, &*self.inner.cfg.agent_url)?;
        let key = (desired.namespace.clone(), desired.name.clone());
        let _ops = self.inner.ops.lock().await;
        let old = {
            let mut dbs = self.databases();
            match dbs.get(&key) {
                Some(d) if d.token == token => {
                    let from = d.shared.handle_quorum();
                    let to = desired.spec.write_quorum;
                    if from != to {
                        return Err(HostingError::WriteQuorum { from, to });
                    }
                    d.shared.desired.send_if_modified(|current| {
                        if *current == desired {
                            return false;
                        }
                        info!(database = %d.shared.key(), "spec changed");
                        *current = desired.clone();
                        true
                    });
                    return Ok(());
                }
                Some(_) => dbs.remove(&key),
                None => None,
            }
        };
        let record = match old {
            Some(old) => {
                info!(database = %old.shared.key(), "cluster token changed: restarting the control plane");
                let record = old.shared.progress().record.clone();
                old.stop().await;
                self.inner.running.dec();
                record
            }
            None => settled_annotation(db)?,
        };
        let database = self.start(desired, record, token)?;
        self.databases().insert(key, database);
        self.inner.running.inc();
        Ok(())
    }

    fn start(
        &self,
        desired: Desired,
        record: Option<Settled>,
        token: &str,
    ) -> Result<Database, HostingError> {
        let cfg = &self.inner.cfg;
        let initial = plan::initial_spec(&desired, record.as_ref(), &*cfg.agent_url);
        let api = HttpAgentApi::new(token, cfg.timeouts)?;
        let scope = Scope::database(format!("{}/{}", desired.namespace, desired.name));
        let metrics = self.inner.metrics.scoped(scope);
        let mut plane = ControlPlane::with_metrics(initial.clone(), api, cfg.plane, metrics)?;
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            namespace: desired.namespace.clone(),
            name: desired.name.clone(),
            api: Api::namespaced(self.inner.client.clone(), &desired.namespace),
            handle: plane.handle(),
            desired: watch::Sender::new(desired),
            progress: Mutex::new(Progress {
                applied: initial,
                record,
                configured: BTreeSet::new(),
                attempts: BTreeMap::new(),
            }),
            http: self.inner.http.clone(),
            token: token.to_owned(),
            retry: cfg.retry,
        });
        info!(database = %shared.key(), "control plane started");
        let tick = cfg.tick;
        let mut plane_stopped = stopped.clone();
        let run = tokio::spawn(async move {
            plane
                .run(tick, async move {
                    let _ = plane_stopped.wait_for(|s| *s).await;
                })
                .await;
            plane.forget_metrics();
        });
        let converge = tokio::spawn(converge(Arc::clone(&shared), stopped.clone()));
        let publish = tokio::spawn(publish(
            Arc::clone(&shared),
            stopped.clone(),
            cfg.status_every,
        ));
        Ok(Database {
            token: token.to_owned(),
            shared,
            stop,
            tasks: vec![run, converge, publish],
        })
    }

    /// Stops the database's control plane (its `ShardedDatabase` is being deleted).
    pub async fn remove(&self, namespace: &str, name: &str) {
        let _ops = self.inner.ops.lock().await;
        let db = self
            .databases()
            .remove(&(namespace.to_owned(), name.to_owned()));
        if let Some(db) = db {
            info!(database = %db.shared.key(), "control plane stopped");
            db.stop().await;
            self.inner.running.dec();
        }
    }

    /// Stops every control plane (the operator shuts down or lost its leadership).
    pub async fn shutdown(&self) {
        let _ops = self.inner.ops.lock().await;
        let all = std::mem::take(&mut *self.databases());
        for (_, db) in all {
            db.stop().await;
            self.inner.running.dec();
        }
    }

    /// The latest topology of the database's control plane, if it runs.
    pub fn topology(&self, namespace: &str, name: &str) -> Option<Topology> {
        self.shared(namespace, name).map(|s| s.handle.topology())
    }

    /// One step of draining `server`, which the spec handed over by [`Self::ensure`] no longer
    /// has: requests the switchover of every shard whose primary it holds (to the most
    /// up-to-date reachable staying replica), and answers `true` once no replica set of the
    /// running control plane names it, no shard is changing its set, and the persisted record
    /// no longer names it. Call it until `true`, then delete the server's pod and volume.
    pub async fn drain(
        &self,
        namespace: &str,
        name: &str,
        server: &str,
    ) -> Result<bool, HostingError> {
        let shared = self
            .shared(namespace, name)
            .ok_or_else(|| HostingError::NotRunning {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })?;
        let desired = shared.desired.borrow().clone();
        if desired.spec.servers.contains_key(server) {
            return Err(HostingError::NotRemoved {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                server: server.to_owned(),
            });
        }
        let topology = shared.handle.topology();
        for h in plan::drain_handovers(server, &desired.spec, &topology) {
            shared.hand_over(&h).await?;
        }
        let progress = shared.progress().clone();
        let done = plan::drained(
            server,
            &progress.applied,
            &topology,
            progress.record.as_ref(),
        );
        debug!(database = %shared.key(), server, done, "drain");
        Ok(done)
    }
}

/// The settled record in `db`'s annotation, if any.
fn settled_annotation(db: &ShardedDatabase) -> Result<Option<Settled>, HostingError> {
    db.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SETTLED_ANNOTATION))
        .map(|text| plan::parse_settled(text))
        .transpose()
}

impl Shared {
    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn progress(&self) -> MutexGuard<'_, Progress> {
        match self.progress.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn handle_quorum(&self) -> Quorum {
        self.progress().applied.write_quorum
    }

    /// Requests a planned switchover; one already under way is fine.
    async fn hand_over(&self, h: &Handover) -> Result<(), HostingError> {
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

    /// One converger step: `/config`, switchovers, the record, then the change.
    async fn converge_once(&self) {
        let desired = self.desired.borrow().clone();
        let topology = self.handle.topology();
        let applied = self.progress().applied.clone();
        let (next, handovers) = plan::next_spec(&desired.spec, &applied, &topology);

        let lost = plan::unconfigured(&topology);
        let mut servers = lost.clone();
        {
            let p = self.progress();
            servers.extend(
                plan::newcomers(&applied, &next)
                    .into_iter()
                    .filter(|pair| !p.configured.contains(pair))
                    .map(|(server, _)| server),
            );
        }
        if !servers.is_empty() {
            self.configure(&desired, [&applied, &next], &servers, &lost)
                .await;
        }
        for h in &handovers {
            if let Err(e) = self.hand_over(h).await {
                debug!(database = %self.key(), error = %e, "switchover not requested");
            }
        }

        let progress = self.progress().clone();
        let next = plan::gate(&next, &progress.applied, &desired.spec, |server, shard| {
            progress
                .configured
                .contains(&(server.to_owned(), shard.to_owned()))
        });
        let record = plan::settled(&progress.applied, &topology, progress.record.as_ref());
        if progress.record.as_ref() != Some(&record) {
            if let Err(e) = self.persist(&record).await {
                warn!(database = %self.key(), error = %e, "cannot record the settled replica sets; changes wait");
                return;
            }
            self.progress().record = Some(record);
        }
        if next == progress.applied {
            return;
        }
        match self.handle.reconfigure(next.clone()).await {
            Ok(()) => {
                info!(database = %self.key(), shards = ?next.shards, "replica sets changing");
                self.progress().applied = next;
            }
            Err(ReconfigureError::Busy { shard }) => {
                debug!(database = %self.key(), %shard, "a change is under way; retrying");
            }
            Err(e) => warn!(database = %self.key(), error = %e, "reconfiguration refused"),
        }
    }

    /// Sends `/config` to `servers` (concurrently) with every shard they hold in `specs`;
    /// `lost` ones reported a shard missing, so what they confirmed before is forgotten.
    async fn configure(
        &self,
        desired: &Desired,
        specs: [&ClusterSpec; 2],
        servers: &BTreeSet<String>,
        lost: &BTreeSet<String>,
    ) {
        let now = Instant::now();
        let due: Vec<(String, String, BTreeSet<String>)> = {
            let mut p = self.progress();
            p.configured.retain(|(server, _)| !lost.contains(server));
            servers
                .iter()
                .filter(|s| p.attempts.get(*s).is_none_or(|(at, _)| *at <= now))
                .filter_map(|server| {
                    let url = specs.iter().find_map(|s| s.servers.get(server))?.clone();
                    let held = plan::held_by(
                        server,
                        [&desired.spec.shards, &specs[0].shards, &specs[1].shards],
                    );
                    Some((server.clone(), url, held))
                })
                .collect()
        };
        let calls = due.into_iter().map(|(server, url, held)| async move {
            let body = fleet_ops::agent_config(
                &desired.layout.schema,
                &desired.layout.shards,
                held.iter().map(String::as_str),
            );
            let result = match &body {
                Some(body) => fleet_ops::configure_agent(&self.http, &url, &self.token, body).await,
                None => Ok(()),
            };
            (server, held, result)
        });
        for (server, held, result) in futures::future::join_all(calls).await {
            let mut p = self.progress();
            match result {
                Ok(()) => {
                    debug!(database = %self.key(), %server, shards = ?held, "agent configured");
                    p.attempts.remove(&server);
                    p.configured
                        .extend(held.into_iter().map(|shard| (server.clone(), shard)));
                }
                Err(e) => {
                    let delay = p
                        .attempts
                        .get(&server)
                        .map_or(self.retry, |(_, d)| (*d * 2).min(Duration::from_secs(30)));
                    p.attempts.insert(server.clone(), (now + delay, delay));
                    debug!(database = %self.key(), %server, error = %e, "agent not configured yet");
                }
            }
        }
    }

    /// Writes the settled record into the annotation (server-side apply, own field manager).
    async fn persist(&self, record: &Settled) -> Result<(), kube::Error> {
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

/// Moves the running spec towards the desired one on every topology or spec change (and at
/// least every `retry`).
async fn converge(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let mut topology = shared.handle.watch();
    let mut desired = shared.desired.subscribe();
    loop {
        shared.converge_once().await;
        tokio::select! {
            r = topology.changed() => if r.is_err() { return },
            r = desired.changed() => if r.is_err() { return },
            () = tokio::time::sleep(shared.retry) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
    }
}

/// Publishes the control plane's status fields when they change, at most every `every`.
async fn publish(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>, every: Duration) {
    let mut topology = shared.handle.watch();
    let mut desired = shared.desired.subscribe();
    let mut last: Option<Json> = None;
    let mut not_before = tokio::time::Instant::now();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(not_before) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        let patch = {
            let t = topology.borrow_and_update();
            let d = desired.borrow_and_update();
            status::status_patch(&t, &d.layout)
        };
        if last.as_ref() != Some(&patch) {
            not_before = tokio::time::Instant::now() + every;
            match shared
                .api
                .patch_status(&shared.name, &params, &Patch::Apply(&patch))
                .await
            {
                Ok(_) => {
                    debug!(database = %shared.key(), "status published");
                    last = Some(patch);
                }
                // Retried at the next change (the topology changes every tick).
                Err(e) => warn!(database = %shared.key(), error = %e, "status not published"),
            }
        }
        tokio::select! {
            r = topology.changed() => if r.is_err() { return },
            r = desired.changed() => if r.is_err() { return },
            _ = stopped.wait_for(|s| *s) => return,
        }
    }
}

impl HostedPlanes {
    fn running(&self, namespace: &str, name: &str) -> Result<Arc<Shared>, HostingError> {
        self.shared(namespace, name)
            .ok_or_else(|| HostingError::NotRunning {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
    }
}

impl super::reconcile::Fleet for HostedPlanes {
    async fn ensure(&self, db: &ShardedDatabase, token: &str) -> Result<(), FleetError> {
        HostedPlanes::ensure(self, db, token)
            .await
            .map_err(FleetError::new)
    }

    async fn remove(&self, namespace: &str, name: &str) {
        HostedPlanes::remove(self, namespace, name).await;
    }

    fn topology(&self, namespace: &str, name: &str) -> Option<Topology> {
        HostedPlanes::topology(self, namespace, name)
    }

    async fn drain(&self, namespace: &str, name: &str, server: &str) -> Result<bool, FleetError> {
        HostedPlanes::drain(self, namespace, name, server)
            .await
            .map_err(FleetError::new)
    }

    async fn handover(
        &self,
        namespace: &str,
        name: &str,
        server: &str,
    ) -> Result<bool, FleetError> {
        HostedPlanes::handover(self, namespace, name, server)
            .await
            .map_err(FleetError::new)
    }

    async fn switchover(
        &self,
        namespace: &str,
        name: &str,
        shard: &str,
        to: &str,
    ) -> Result<bool, FleetError> {
        HostedPlanes::switchover(self, namespace, name, shard, to)
            .await
            .map_err(FleetError::new)
    }
}
