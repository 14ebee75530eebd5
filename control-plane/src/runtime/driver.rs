//! [`ControlPlane`]: the loop that polls the agents, feeds the shard controllers and runs their
//! actions.
//!
//! This file holds the loop's state, its accessors and [`ControlPlane::run`]; beside it: `tick`
//! (one round of heartbeats, decisions and actions), `actions` (running an action as a task and
//! feeding its answer back) and `membership` (changing the cluster it manages).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use walshard_contract::{ArchiveReport, Phase, ServerInfo, Topology};

use self::actions::Completion;
use super::agent_api::AgentApi;
use super::handle::{Command, ControlPlaneHandle};
use super::metrics::ControlPlaneMetrics;
use crate::cluster::{ClusterSpec, ClusterSpecError};
use crate::election::{
    Action, ControllerConfig, FailureDetector, ShardController, SwitchoverError,
};

mod actions;
mod membership;
mod tick;

/// Settings of the [`ControlPlane`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlPlaneConfig {
    /// The elections' settings, for every shard's controller.
    pub controller: ControllerConfig,
    /// How long a tick waits for the actions it started (fence, promote, step-down) before
    /// returning; slower ones finish in the background and are fed to the next ticks
    /// (default 500 ms).
    pub action_wait: Duration,
    /// While waiting, re-poll the controllers at least this often so their timers (fence grace)
    /// fire (default 20 ms).
    pub poll_step: Duration,
    /// At most this many actions per shard per tick (a guard against retry storms; default 64).
    pub max_actions_per_shard: usize,
}

impl Default for ControlPlaneConfig {
    fn default() -> Self {
        Self {
            controller: ControllerConfig::default(),
            action_wait: Duration::from_millis(500),
            poll_step: Duration::from_millis(20),
            max_actions_per_shard: 64,
        }
    }
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TickSummary {
    /// Servers whose `GET /status` succeeded.
    pub reachable: Vec<String>,
    /// Servers whose `GET /status` failed, with the error.
    pub unreachable: BTreeMap<String, String>,
    /// Actions started in this tick.
    pub actions: Vec<Action>,
    /// Actions still running when the tick returned.
    pub in_flight: usize,
    /// Shard state names after the tick.
    pub states: BTreeMap<String, Phase>,
}

/// The control-plane loop over one cluster.
pub struct ControlPlane<A: AgentApi> {
    api: Arc<A>,
    spec: ClusterSpec,
    cfg: ControlPlaneConfig,
    controllers: BTreeMap<String, ShardController>,
    servers: FailureDetector,
    /// Servers whose latest status reported a full disk.
    disk_full: BTreeSet<String>,
    /// Each server's latest archive reports, by shard.
    archive: BTreeMap<String, BTreeMap<String, ArchiveReport>>,
    /// Servers removed from the spec that a shard's change under way still fences (name → URL).
    leaving: BTreeMap<String, String>,
    inflight: JoinSet<Completion>,
    inflight_by_shard: BTreeMap<String, usize>,
    metrics: ControlPlaneMetrics,
    topology: watch::Sender<Topology>,
    commands_tx: mpsc::Sender<Command>,
    commands: mpsc::Receiver<Command>,
}

impl<A: AgentApi> ControlPlane<A> {
    /// A control plane for `spec`, reaching agents through `api`, with its metrics registered into
    /// `registry`.
    pub fn new(
        spec: ClusterSpec,
        api: A,
        cfg: ControlPlaneConfig,
        registry: &mut Registry,
    ) -> Result<Self, ClusterSpecError> {
        Self::with_metrics(spec, api, cfg, ControlPlaneMetrics::new(registry))
    }

    /// As [`Self::new`], recording into `metrics` (registered already, e.g. a
    /// [`ControlPlaneMetrics::scoped`] handle shared by several control planes).
    pub fn with_metrics(
        spec: ClusterSpec,
        api: A,
        cfg: ControlPlaneConfig,
        metrics: ControlPlaneMetrics,
    ) -> Result<Self, ClusterSpecError> {
        spec.validate()?;
        let controllers = spec
            .shards
            .iter()
            .map(|(shard, replicas)| {
                (
                    shard.clone(),
                    ShardController::new(
                        shard.clone(),
                        replicas.clone(),
                        spec.write_quorum,
                        cfg.controller,
                    ),
                )
            })
            .collect();
        let (commands_tx, commands) = mpsc::channel(16);
        Ok(Self {
            api: Arc::new(api),
            servers: FailureDetector::new(cfg.controller.detector),
            disk_full: BTreeSet::new(),
            archive: BTreeMap::new(),
            spec,
            cfg,
            controllers,
            leaving: BTreeMap::new(),
            inflight: JoinSet::new(),
            inflight_by_shard: BTreeMap::new(),
            metrics,
            topology: watch::Sender::new(Topology::default()),
            commands_tx,
            commands,
        })
    }

    /// The cluster spec it manages now.
    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// The agent API it calls.
    pub fn api(&self) -> &A {
        &self.api
    }

    /// Its metrics handle.
    pub fn metrics(&self) -> &ControlPlaneMetrics {
        &self.metrics
    }

    /// The election controller of `shard`, if the spec has it.
    pub fn controller(&self, shard: &str) -> Option<&ShardController> {
        self.controllers.get(shard)
    }

    /// Drops every series this control plane recorded (its cluster is gone; a scoped metrics
    /// handle outlives it).
    pub fn forget_metrics(&self) {
        let shards = self
            .controllers
            .iter()
            .map(|(shard, c)| (shard, c.replicas()));
        let servers = self.spec.servers.keys().chain(self.leaving.keys());
        self.metrics.forget_cluster(shards, servers);
    }

    /// A handle for readers of the topology, switchover and reconfiguration requests while
    /// [`Self::run`] runs.
    pub fn handle(&self) -> ControlPlaneHandle {
        ControlPlaneHandle {
            commands: self.commands_tx.clone(),
            topology: self.topology.subscribe(),
        }
    }

    /// Starts a planned switchover of `shard` to `to` (proceeds over the next ticks).
    pub fn request_switchover(
        &mut self,
        shard: &str,
        to: &str,
        now: Instant,
    ) -> Result<(), SwitchoverError> {
        self.controllers
            .get_mut(shard)
            .ok_or_else(|| SwitchoverError::UnknownShard(shard.to_owned()))?
            .request_switchover(to, now)
    }

    /// The current view of every shard and server.
    pub fn topology(&self, now: Instant) -> Topology {
        let shards: BTreeMap<String, _> = self
            .controllers
            .iter()
            .map(|(id, c)| (id.clone(), c.info(now)))
            .collect();
        let archive = shards
            .iter()
            .filter_map(|(id, info)| {
                let report = self.archive.get(info.primary.as_deref()?)?.get(id)?;
                Some((id.clone(), report.clone()))
            })
            .collect();
        Topology {
            archive,
            shards,
            servers: self
                .spec
                .servers
                .iter()
                .map(|(name, url)| {
                    (
                        name.clone(),
                        ServerInfo {
                            url: url.clone(),
                            reachable: self.servers.reachable(name),
                            suspected: self.servers.suspected(name, now),
                            disk_full: self.disk_full.contains(name),
                        },
                    )
                })
                .collect(),
        }
    }

    /// Ticks every `interval` until `shutdown` completes, serving [`ControlPlaneHandle`] requests.
    pub async fn run(&mut self, interval: Duration, shutdown: impl Future<Output = ()>) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(command) = self.commands.recv() => self.command(command),
                _ = ticker.tick() => {
                    self.tick(Instant::now()).await;
                }
            }
        }
        self.inflight.abort_all();
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Switchover { shard, to, reply } => {
                let result = self.request_switchover(&shard, &to, Instant::now());
                // The requester may have gone away; nothing to do then.
                let _ = reply.send(result);
            }
            Command::Reconfigure { spec, reply } => {
                let result = self.reconfigure(spec, Instant::now());
                // As above.
                let _ = reply.send(result);
            }
        }
    }
}
