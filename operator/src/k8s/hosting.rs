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

mod backup;
mod config;
mod converge;
mod database;
mod error;
mod fleet;
mod handover;
pub mod plan;
mod publish;
pub mod status;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kube::Api;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tracing::{debug, info};
use walshard_contract::http_client::{ClientError, ClientSettings};
use walshard_contract::{Backoff, Topology};
use walshard_control_plane::runtime::{ControlPlane, ControlPlaneMetrics, HttpAgentApi, Scope};
use walshard_k8s_api::spec::ShardedDatabase;

use crate::k8s::reconcile::AgentAccess;

pub use config::HostedPlanesConfig;
use database::{Database, Progress, Shared};
pub use error::HostingError;
use plan::{Desired, Settled};

/// The field manager of everything the control plane writes: its status fields and the
/// [`SETTLED_ANNOTATION`]. The reconciler owns the other status fields as `walshard-operator`.
pub const FIELD_MANAGER: &str = "walshard-operator-control-plane";

/// The annotation holding the settled replica sets ([`plan::Settled`], JSON `{"sh1": ["Server0",
/// ...]}`) a restarted control plane starts from.
pub const SETTLED_ANNOTATION: &str = "walshard.io/settled-replicas";

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
    /// The settings of every database's HTTP client (each adds its own trust).
    http: ClientSettings,
    databases: Mutex<BTreeMap<Key, Database>>,
    /// Serializes `ensure` and `remove`, so a database never gets two control planes.
    ops: tokio::sync::Mutex<()>,
}

impl HostedPlanes {
    /// Control planes writing through `client`, their metrics (`walshard_operator_*`, one
    /// `database="<namespace>/<name>"` label per database) registered into `registry`.
    pub fn new(client: kube::Client, registry: &mut Registry) -> Result<Self, ClientError> {
        Self::with_config(client, registry, HostedPlanesConfig::default())
    }

    /// [`Self::new`] with other settings (tests: loopback agents, short timings).
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
        };
        http.build()?;
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

    /// The agents' URLs: the configured ones, as `https://` when `access` trusts an authority.
    fn agent_url(&self, access: &AgentAccess) -> impl Fn(&str, &str, &str) -> String + use<> {
        let url = Arc::clone(&self.inner.cfg.agent_url);
        let tls = access.trust.is_some();
        move |db: &str, namespace: &str, server: &str| {
            walshard_k8s_api::names::with_tls(url(db, namespace, server), tls)
        }
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
    pub async fn ensure(
        &self,
        db: &ShardedDatabase,
        access: &AgentAccess,
    ) -> Result<(), HostingError> {
        let url = self.agent_url(access);
        let desired = plan::desired(db, &url)?;
        let key = (desired.namespace.clone(), desired.name.clone());
        let _ops = self.inner.ops.lock().await;
        let old = {
            let mut dbs = self.databases();
            match dbs.get(&key) {
                Some(d) if d.access == *access => {
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
                info!(database = %old.shared.key(), "cluster token or TLS authority changed: restarting the control plane");
                let record = old.shared.progress().record.clone();
                old.stop().await;
                self.inner.running.dec();
                record
            }
            None => settled_annotation(db)?,
        };
        let database = self.start(desired, record, access)?;
        self.databases().insert(key, database);
        self.inner.running.inc();
        Ok(())
    }

    fn start(
        &self,
        desired: Desired,
        record: Option<Settled>,
        access: &AgentAccess,
    ) -> Result<Database, HostingError> {
        let cfg = &self.inner.cfg;
        let initial = plan::initial_spec(&desired, record.as_ref(), &self.agent_url(access));
        let api = HttpAgentApi::trusting(&access.token, cfg.timeouts, access.trust.clone())?;
        let http = ClientSettings {
            trust: access.trust.clone(),
            ..self.inner.http.clone()
        }
        .build()?;
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
            http,
            token: access.token.clone(),
            retry: Backoff::new(cfg.retry, database::RETRY_CAP),
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
        let converge = tokio::spawn(converge::converge(Arc::clone(&shared), stopped.clone()));
        let publish = tokio::spawn(publish::publish(
            Arc::clone(&shared),
            stopped.clone(),
            cfg.status_every,
        ));
        Ok(Database {
            access: access.clone(),
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

impl HostedPlanes {
    fn running(&self, namespace: &str, name: &str) -> Result<Arc<Shared>, HostingError> {
        self.shared(namespace, name)
            .ok_or_else(|| HostingError::NotRunning {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
    }
}
