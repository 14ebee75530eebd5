//! [`ControlPlane`]: the loop that polls the agents, feeds the shard controllers and runs their
//! actions.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};
use walshard_contract::{ArchiveReport, Phase, ReplicaRef, ServerInfo, Topology};

use super::agent_api::{AgentApi, AgentCallError, FenceReply};
use super::handle::{Command, ControlPlaneHandle};
use super::metrics::ControlPlaneMetrics;
use crate::cluster::{ClusterSpec, ClusterSpecError};
use crate::election::{
    Action, ControllerConfig, FailureDetector, FenceAnswer, Heartbeat, PromoteOutcome,
    ReconfigureError, ShardController, SwitchoverError,
};

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

enum Completion {
    Fence {
        shard: String,
        server: String,
        epoch: u64,
        result: Result<FenceReply, AgentCallError>,
    },
    Promote {
        shard: String,
        server: String,
        epoch: u64,
        result: Result<(), AgentCallError>,
    },
    StepDown {
        shard: String,
        server: String,
        result: Result<u64, AgentCallError>,
    },
}

impl Completion {
    fn shard(&self) -> &str {
        match self {
            Completion::Fence { shard, .. }
            | Completion::Promote { shard, .. }
            | Completion::StepDown { shard, .. } => shard,
        }
    }
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

    /// Manages `spec` from now on: servers (URLs may change), new shards, removed shards and
    /// changed replica sets. All or nothing: on an error nothing changed.
    ///
    /// New shards get a controller (elected on the next tick); a shard whose replica set changed
    /// runs a membership change ([`ShardController::reconfigure`]: an election under the joint
    /// rule, the promotion carrying the new list); removed shards are dropped (late answers of
    /// their calls are ignored), and so are removed servers, except that a server still in a
    /// changing shard's previous set keeps being polled and fenced until the change completes.
    /// The new topology is published at once.
    ///
    /// Refused with [`ReconfigureError::Busy`] while a shard whose set changes again is still
    /// completing its previous change (retry later), [`ReconfigureError::Invalid`] for a spec
    /// failing [`ClusterSpec::validate`], [`ReconfigureError::WriteQuorum`] when the write
    /// quorum differs. The caller keeps the agents of removed replicas running until the
    /// topology no longer shows their shards `reconfiguring`.
    pub fn reconfigure(&mut self, spec: ClusterSpec, now: Instant) -> Result<(), ReconfigureError> {
        spec.validate()?;
        if spec.write_quorum != self.spec.write_quorum {
            return Err(ReconfigureError::WriteQuorum {
                from: self.spec.write_quorum,
                to: spec.write_quorum,
            });
        }
        // Built aside, so a refusal changes nothing.
        let mut controllers = BTreeMap::new();
        for (shard, replicas) in &spec.shards {
            let c = match self.controllers.get(shard) {
                Some(c) => {
                    let mut c = c.clone();
                    c.reconfigure(replicas.clone())?;
                    c
                }
                None => {
                    info!(shard = %shard, replicas = ?replicas, "shard added");
                    ShardController::new(
                        shard.clone(),
                        replicas.clone(),
                        spec.write_quorum,
                        self.cfg.controller,
                    )
                }
            };
            controllers.insert(shard.clone(), c);
        }
        let old = std::mem::replace(&mut self.controllers, controllers);
        for (shard, mut c) in old {
            if self.controllers.contains_key(&shard) {
                continue;
            }
            info!(shard = %shard, "shard removed");
            for event in c.drain_events() {
                self.metrics.record(&event);
            }
            self.inflight_by_shard.remove(&shard);
            self.metrics.forget_shard(&shard, c.replicas());
        }
        let old = std::mem::replace(&mut self.spec, spec);
        for (server, url) in old.servers {
            if !self.spec.servers.contains_key(&server) {
                info!(server = %server, "server removed");
                self.leaving.insert(server, url);
            }
        }
        self.leaving
            .retain(|server, _| !self.spec.servers.contains_key(server));
        self.prune_leaving();
        for (shard, c) in &self.controllers {
            for server in old.shards.get(shard).into_iter().flatten() {
                if !c.replicas().contains(server) {
                    self.metrics.forget_replica(shard, server);
                }
            }
        }
        self.topology.send_replace(self.topology(now));
        Ok(())
    }

    /// Forgets the removed servers no shard needs any more.
    fn prune_leaving(&mut self) {
        let needed: std::collections::BTreeSet<String> = self
            .controllers
            .values()
            .flat_map(ShardController::members)
            .collect();
        let gone: Vec<String> = self
            .leaving
            .keys()
            .filter(|s| !needed.contains(*s))
            .cloned()
            .collect();
        for server in gone {
            debug!(server = %server, "removed server no longer polled");
            self.leaving.remove(&server);
            self.servers.forget(&server);
            self.metrics.forget_server(&server);
        }
    }

    /// A server of the spec, or one leaving.
    fn server_ref(&self, name: &str) -> Option<ReplicaRef> {
        self.spec.server_ref(name).or_else(|| {
            self.leaving.get(name).map(|url| ReplicaRef {
                name: name.to_owned(),
                url: url.clone(),
            })
        })
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

    /// One round: heartbeats, decisions, actions. `now` is the time the tick starts; time spent
    /// inside the tick is added to it.
    pub async fn tick(&mut self, now: Instant) -> TickSummary {
        let t0 = Instant::now();
        let at = move || now + t0.elapsed();
        let mut summary = TickSummary::default();

        // 1. Heartbeats, all servers (and leaving ones) at once.
        let polls = self
            .spec
            .servers
            .iter()
            .chain(&self.leaving)
            .map(|(name, url)| {
                let api = Arc::clone(&self.api);
                let server = ReplicaRef {
                    name: name.clone(),
                    url: url.clone(),
                };
                async move {
                    let result = api.status(&server).await;
                    (server.name, result)
                }
            });
        let results = futures::future::join_all(polls).await;
        let t = at();
        for (server, result) in results {
            match result {
                Ok(status) => {
                    self.servers.record(&server, Heartbeat::Ok, t);
                    match &status.archive {
                        Some(reports) => {
                            self.archive.insert(server.clone(), reports.clone());
                        }
                        None => {
                            self.archive.remove(&server);
                        }
                    }
                    if status.disk.as_ref().is_some_and(|d| d.full) {
                        self.disk_full.insert(server.clone());
                    } else {
                        self.disk_full.remove(&server);
                    }
                    for c in self.controllers.values_mut() {
                        match status.shards.get(c.shard()) {
                            Some(s) => c.observe_status(&server, s, t),
                            None => c.observe_failure(&server, Heartbeat::Failed, t),
                        }
                    }
                    summary.reachable.push(server);
                }
                Err(e) => {
                    debug!(server = %server, error = %e, "heartbeat failed");
                    self.servers.record(&server, e.heartbeat(), t);
                    for c in self.controllers.values_mut() {
                        c.observe_failure(&server, e.heartbeat(), t);
                    }
                    summary.unreachable.insert(server, e.to_string());
                }
            }
        }

        // 2. Decisions and actions, until settled or out of time.
        let deadline = t0 + self.cfg.action_wait;
        let mut budget: BTreeMap<String, usize> = BTreeMap::new();
        loop {
            let t = at();
            while let Some(done) = self.inflight.try_join_next() {
                self.complete(done, t);
            }
            let shards: Vec<String> = self.controllers.keys().cloned().collect();
            for shard in shards {
                let used = budget.entry(shard.clone()).or_default();
                if *used >= self.cfg.max_actions_per_shard {
                    continue;
                }
                let Some(c) = self.controllers.get_mut(&shard) else {
                    continue;
                };
                let actions = c.poll(t);
                *used += actions.len();
                if *used >= self.cfg.max_actions_per_shard {
                    warn!(shard = %shard, "action budget of this tick spent");
                }
                for action in actions {
                    self.start(action.clone());
                    summary.actions.push(action);
                }
            }
            let waiting = self.controllers.iter().any(|(shard, c)| {
                c.awaiting_answers() && self.inflight_by_shard.get(shard).is_some_and(|n| *n > 0)
            });
            if !waiting {
                break;
            }
            let now_real = Instant::now();
            if now_real >= deadline {
                break;
            }
            let wake = (now_real + self.cfg.poll_step).min(deadline);
            if let Ok(Some(done)) =
                tokio::time::timeout_at(wake.into(), self.inflight.join_next()).await
            {
                self.complete(done, at());
            }
        }

        // 3. Metrics and topology.
        self.prune_leaving();
        let t = at();
        for c in self.controllers.values_mut() {
            for event in c.drain_events() {
                self.metrics.record(&event);
            }
        }
        let topology = self.topology(t);
        self.metrics.update(&topology);
        summary.states = topology
            .shards
            .iter()
            .map(|(id, s)| (id.clone(), s.state))
            .collect();
        summary.in_flight = self.inflight.len();
        self.topology.send_replace(topology);
        summary
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

    /// Spawns the task that executes `action`.
    fn start(&mut self, action: Action) {
        let api = Arc::clone(&self.api);
        let Some(server) = self.server_ref(action.server()) else {
            error!(?action, "action on a server missing from the spec");
            return;
        };
        *self
            .inflight_by_shard
            .entry(action.shard().to_owned())
            .or_default() += 1;
        match action {
            Action::Fence { shard, epoch, .. } => {
                self.inflight.spawn(async move {
                    let result = api.fence(&server, &shard, epoch).await;
                    Completion::Fence {
                        shard,
                        server: server.name,
                        epoch,
                        result,
                    }
                });
            }
            Action::Promote {
                shard,
                epoch,
                replicas,
                quorum,
                ..
            } => {
                let refs: Vec<ReplicaRef> = replicas
                    .iter()
                    .filter_map(|r| self.spec.server_ref(r))
                    .collect();
                self.inflight.spawn(async move {
                    let result = api.promote(&server, &shard, epoch, refs, quorum).await;
                    Completion::Promote {
                        shard,
                        server: server.name,
                        epoch,
                        result,
                    }
                });
            }
            Action::StepDown { shard, to, .. } => {
                self.inflight.spawn(async move {
                    let result = api.step_down(&server, &shard, &to).await;
                    Completion::StepDown {
                        shard,
                        server: server.name,
                        result,
                    }
                });
            }
        }
    }

    /// Feeds a finished action to its controller.
    fn complete(&mut self, done: Result<Completion, tokio::task::JoinError>, now: Instant) {
        let done = match done {
            Ok(done) => done,
            Err(e) => {
                // The shard's controller times the lost answer out by itself.
                error!(error = %e, "an agent call task failed");
                return;
            }
        };
        if let Some(n) = self.inflight_by_shard.get_mut(done.shard()) {
            *n = n.saturating_sub(1);
        }
        // A shard removed by `reconfigure`: its late answers are dropped.
        let Some(c) = self.controllers.get_mut(done.shard()) else {
            return;
        };
        match done {
            Completion::Fence {
                server,
                epoch,
                result,
                ..
            } => {
                let answer = match result {
                    Ok(FenceReply::Accepted(a)) => FenceAnswer::Accepted {
                        server,
                        epoch: a.epoch,
                        last_epoch: a.last_epoch,
                        last_lsn: a.last_lsn,
                    },
                    Ok(FenceReply::Rejected { epoch: theirs, .. })
                    | Err(AgentCallError::Conflict { epoch: theirs, .. }) => {
                        FenceAnswer::Rejected {
                            server,
                            epoch: theirs,
                        }
                    }
                    Err(e) => {
                        warn!(shard = %c.shard(), server = %server, epoch, error = %e, "fence failed");
                        FenceAnswer::Unreachable { server }
                    }
                };
                c.on_fence_answer(epoch, answer);
            }
            Completion::Promote {
                server,
                epoch,
                result,
                ..
            } => {
                let outcome = match result {
                    Ok(()) => PromoteOutcome::Done,
                    Err(AgentCallError::Unavailable(m)) => PromoteOutcome::Pending(m),
                    Err(AgentCallError::Conflict { epoch: theirs, .. }) => {
                        PromoteOutcome::Rejected { epoch: theirs }
                    }
                    Err(e) => PromoteOutcome::Failed(e.to_string()),
                };
                c.on_promote_result(&server, epoch, outcome, now);
            }
            Completion::StepDown { server, result, .. } => {
                c.on_step_down_result(&server, result.map_err(|e| e.to_string()));
            }
        }
    }
}
