//! The driver: heartbeats and actions over the agents' HTTP API, IO at the edge.
//!
//! [`ControlPlane::tick`] polls every server's `GET /status` concurrently, feeds the per-shard
//! [`ShardController`]s, executes the actions they emit concurrently (as tasks, so a slow agent
//! never stalls the loop for longer than [`ControlPlaneConfig::action_wait`]), feeds the answers
//! back and repeats until the controllers are settled. [`ControlPlane::run`] ticks every heartbeat
//! interval until shut down; a [`ControlHandle`] reads the [`Topology`], requests switchovers and
//! changes the cluster ([`ControlPlane::reconfigure`]) while it runs.
//!
//! The agents are reached through [`AgentApi`]; [`HttpAgentApi`] is the real one
//! (docs/replication.md's endpoints and JSON), [`crate::sim::SimAgentApi`] an in-memory one.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};
use walshard_contract::ErrorCode;

use crate::election::{
    Action, ControllerConfig, ControllerEvent, FailureDetector, FenceAnswer, Heartbeat, Phase,
    PromoteOutcome, ReconfigureError, ShardController, ShardInfo, SwitchoverError,
};
use crate::placement::Placement;
use crate::wire::{
    AgentStatus, FenceAccepted, FenceReply, FenceRequest, PromoteRequest, Quorum, ServerRef,
    StepDownReply, StepDownRequest,
};

// ---------------------------------------------------------------------------------------------
// Agent API
// ---------------------------------------------------------------------------------------------

/// Why a call to an agent failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ApiError {
    #[error("connection refused")]
    Refused,
    #[error("timed out")]
    Timeout,
    #[error("transport error: {0}")]
    Transport(String),
    /// 409: the replica's `max_epoch` (and the primary it accepted for it) forbid the request.
    #[error("conflict: the replica is at epoch {epoch} (primary {primary:?}): {message}")]
    Conflict {
        epoch: u64,
        primary: Option<String>,
        message: String,
    },
    /// 503 (e.g. promote: the no-op is not committed yet, the agent keeps trying).
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("HTTP {status}: {message}")]
    Status { status: u16, message: String },
    #[error("malformed answer: {0}")]
    Decode(String),
    #[error("bad agent URL {url:?}: {message}")]
    BadUrl { url: String, message: String },
    #[error("the agent at this address is {actual:?}, not {expected:?}")]
    WrongServer { expected: String, actual: String },
}

impl ApiError {
    /// How this failure counts as a heartbeat.
    pub fn heartbeat(&self) -> Heartbeat {
        match self {
            ApiError::Refused => Heartbeat::Refused,
            _ => Heartbeat::Failed,
        }
    }
}

/// The agent endpoints the control plane uses (docs/replication.md, "Agent endpoints").
pub trait AgentApi: Send + Sync + 'static {
    /// `GET /status`.
    fn status(
        &self,
        server: &ServerRef,
    ) -> impl Future<Output = Result<AgentStatus, ApiError>> + Send;

    /// `POST /shards/{shard}/fence {"epoch"}`: a 409 is `Ok(FenceReply::Rejected)`.
    fn fence(
        &self,
        server: &ServerRef,
        shard: &str,
        epoch: u64,
    ) -> impl Future<Output = Result<FenceReply, ApiError>> + Send;

    /// `POST /shards/{shard}/promote {"epoch", "replicas", "quorum"}`: `Ok` once the no-op is
    /// committed; 503 is [`ApiError::Unavailable`], 409 [`ApiError::Conflict`].
    fn promote(
        &self,
        server: &ServerRef,
        shard: &str,
        epoch: u64,
        replicas: Vec<ServerRef>,
        quorum: Quorum,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// `POST /shards/{shard}/step-down {"to"}`: the old primary's `last_lsn`.
    fn step_down(
        &self,
        server: &ServerRef,
        shard: &str,
        to: &str,
    ) -> impl Future<Output = Result<u64, ApiError>> + Send;
}

/// Per-call timeouts of [`HttpAgentApi`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpTimeouts {
    pub connect: Duration,
    pub status: Duration,
    pub fence: Duration,
    pub promote: Duration,
    pub step_down: Duration,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_millis(200),
            status: Duration::from_millis(300),
            fence: Duration::from_secs(1),
            promote: Duration::from_secs(2),
            step_down: Duration::from_secs(5),
        }
    }
}

/// [`AgentApi`] over HTTP with the cluster's bearer token.
#[derive(Debug, Clone)]
pub struct HttpAgentApi {
    client: reqwest::Client,
    token: String,
    timeouts: HttpTimeouts,
}

impl HttpAgentApi {
    pub fn new(token: impl Into<String>, timeouts: HttpTimeouts) -> Result<Self, ApiError> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| ApiError::Transport(format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            client,
            token: token.into(),
            timeouts,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        url: Url,
        body: Option<serde_json::Value>,
        timeout: Duration,
    ) -> Result<(StatusCode, Vec<u8>), ApiError> {
        let mut req = self
            .client
            .request(method, url)
            .bearer_auth(&self.token)
            .timeout(timeout);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.map_err(classify)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(classify)?;
        Ok((status, bytes.to_vec()))
    }

    async fn shard_call(
        &self,
        server: &ServerRef,
        shard: &str,
        action: &str,
        body: serde_json::Value,
        timeout: Duration,
    ) -> Result<(StatusCode, Vec<u8>), ApiError> {
        let url = endpoint(&server.url, &["shards", shard, action])?;
        self.call(reqwest::Method::POST, url, Some(body), timeout)
            .await
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(value).map_err(|e| ApiError::Decode(e.to_string()))
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::Decode(e.to_string()))
}

impl AgentApi for HttpAgentApi {
    async fn status(&self, server: &ServerRef) -> Result<AgentStatus, ApiError> {
        let url = endpoint(&server.url, &["status"])?;
        let (status, body) = self
            .call(reqwest::Method::GET, url, None, self.timeouts.status)
            .await?;
        if status != StatusCode::OK {
            return Err(error_answer(status, &body));
        }
        let answer: AgentStatus = parse(&body)?;
        if let Some(actual) = &answer.server
            && *actual != server.name
        {
            return Err(ApiError::WrongServer {
                expected: server.name.clone(),
                actual: actual.clone(),
            });
        }
        Ok(answer)
    }

    async fn fence(
        &self,
        server: &ServerRef,
        shard: &str,
        epoch: u64,
    ) -> Result<FenceReply, ApiError> {
        let body = to_json(&FenceRequest { epoch })?;
        let (status, body) = self
            .shard_call(server, shard, "fence", body, self.timeouts.fence)
            .await?;
        if status == StatusCode::OK {
            return Ok(FenceReply::Accepted(parse::<FenceAccepted>(&body)?));
        }
        match error_answer(status, &body) {
            // The replica promised a higher epoch (or follows a primary of this one).
            ApiError::Conflict { epoch, primary, .. } => {
                Ok(FenceReply::Rejected { epoch, primary })
            }
            other => Err(other),
        }
    }

    async fn promote(
        &self,
        server: &ServerRef,
        shard: &str,
        epoch: u64,
        replicas: Vec<ServerRef>,
        quorum: Quorum,
    ) -> Result<(), ApiError> {
        let body = to_json(&PromoteRequest {
            epoch,
            replicas,
            quorum,
        })?;
        let (status, body) = self
            .shard_call(server, shard, "promote", body, self.timeouts.promote)
            .await?;
        if status == StatusCode::OK {
            Ok(())
        } else {
            Err(error_answer(status, &body))
        }
    }

    async fn step_down(&self, server: &ServerRef, shard: &str, to: &str) -> Result<u64, ApiError> {
        let body = to_json(&StepDownRequest { to: to.to_owned() })?;
        let (status, body) = self
            .shard_call(server, shard, "step-down", body, self.timeouts.step_down)
            .await?;
        if status == StatusCode::OK {
            Ok(parse::<StepDownReply>(&body)?.last_lsn)
        } else {
            Err(error_answer(status, &body))
        }
    }
}

/// `base` + path segments (each percent-encoded as needed).
fn endpoint(base: &str, segments: &[&str]) -> Result<Url, ApiError> {
    let bad = |message: String| ApiError::BadUrl {
        url: base.to_owned(),
        message,
    };
    let mut url = Url::parse(base).map_err(|e| bad(e.to_string()))?;
    url.path_segments_mut()
        .map_err(|()| bad("cannot be a base URL".into()))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// A non-2xx answer `{"message", "status": "failure", "code"}` (with `epoch`/`primary` on an
/// epoch conflict), classified by its code (the status's general code when it has none).
fn error_answer(status: StatusCode, body: &[u8]) -> ApiError {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        code: Option<ErrorCode>,
        #[serde(default)]
        epoch: Option<u64>,
        #[serde(default)]
        primary: Option<String>,
    }
    let parsed: Option<Body> = serde_json::from_slice(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|b| b.message.clone())
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            text.chars().take(200).collect()
        });
    let code = parsed
        .as_ref()
        .and_then(|b| b.code)
        .unwrap_or_else(|| ErrorCode::from_status(status.as_u16()));
    let epoch = parsed.as_ref().and_then(|b| b.epoch);
    match (code, epoch) {
        // A conflict that names the replica's epoch is an epoch conflict.
        (ErrorCode::StaleEpoch | ErrorCode::Conflict, Some(epoch)) => ApiError::Conflict {
            epoch,
            primary: parsed.and_then(|b| b.primary),
            message,
        },
        (
            ErrorCode::Unavailable
            | ErrorCode::NoMajority
            | ErrorCode::NotReady
            | ErrorCode::NotCommitted
            | ErrorCode::Halted
            | ErrorCode::ShuttingDown,
            _,
        ) => ApiError::Unavailable(message),
        _ => ApiError::Status {
            status: status.as_u16(),
            message,
        },
    }
}

fn classify(e: reqwest::Error) -> ApiError {
    if e.is_timeout() {
        return ApiError::Timeout;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return ApiError::Refused,
                std::io::ErrorKind::TimedOut => return ApiError::Timeout,
                _ => {}
            }
        }
        source = err.source();
    }
    ApiError::Transport(error_chain(&e))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Cluster spec and topology
// ---------------------------------------------------------------------------------------------

/// What the control plane manages: servers (name → agent base URL) and shards (id → replica
/// server names).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClusterSpec {
    pub servers: BTreeMap<String, String>,
    pub shards: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub write_quorum: Quorum,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    #[error("shard {0:?} has no replica")]
    NoReplicas(String),
    #[error("shard {shard:?} lists server {server:?} twice")]
    DuplicateReplica { shard: String, server: String },
    #[error("shard {shard:?} has a replica on unknown server {server:?}")]
    UnknownServer { shard: String, server: String },
}

impl ClusterSpec {
    /// From the agents' URLs and a placement (server → shards).
    pub fn from_placement(
        servers: BTreeMap<String, String>,
        placement: &Placement,
        write_quorum: Quorum,
    ) -> Self {
        Self {
            servers,
            shards: crate::placement::shard_replicas(placement),
            write_quorum,
        }
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        for (shard, replicas) in &self.shards {
            if replicas.is_empty() {
                return Err(SpecError::NoReplicas(shard.clone()));
            }
            for (i, server) in replicas.iter().enumerate() {
                if !self.servers.contains_key(server) {
                    return Err(SpecError::UnknownServer {
                        shard: shard.clone(),
                        server: server.clone(),
                    });
                }
                if replicas[..i].contains(server) {
                    return Err(SpecError::DuplicateReplica {
                        shard: shard.clone(),
                        server: server.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    fn server_ref(&self, name: &str) -> Option<ServerRef> {
        self.servers.get(name).map(|url| ServerRef {
            name: name.to_owned(),
            url: url.clone(),
        })
    }
}

/// A server as the control plane sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub url: String,
    /// The latest `GET /status` succeeded.
    pub reachable: bool,
    pub suspected: bool,
    /// Its volume is below the reserve: it refuses writes (507 disk-full) until space is freed.
    #[serde(default)]
    pub disk_full: bool,
}

/// Snapshot of the cluster for routers and the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Topology {
    pub shards: BTreeMap<String, ShardInfo>,
    pub servers: BTreeMap<String, ServerInfo>,
}

impl Topology {
    /// The healthy primary of `shard`, if any.
    pub fn primary(&self, shard: &str) -> Option<&str> {
        self.shards.get(shard)?.primary.as_deref()
    }

    /// The epoch of `shard` (the primary's when healthy).
    pub fn epoch(&self, shard: &str) -> Option<u64> {
        self.shards.get(shard).map(|s| s.epoch)
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabels {
    pub shard: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplicaLabels {
    pub shard: String,
    pub server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    pub server: String,
}

/// The `database` label of a control plane that shares its metrics with others (the Kubernetes
/// operator runs one per `ShardedDatabase`); no label for a lone control plane.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq)]
pub struct Scope(Option<String>);

impl Scope {
    /// The series of the database `name`.
    pub fn database(name: impl Into<String>) -> Self {
        Self(Some(name.into()))
    }
}

impl EncodeLabelSet for Scope {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        match &self.0 {
            Some(db) => [("database", db.as_str())].encode(encoder),
            None => Ok(()),
        }
    }
}

/// The control plane's Prometheus metrics (prefix `walshard_operator_`). Handles share state;
/// [`Self::scoped`] handles share the families and label their series with a database.
#[derive(Clone, Debug)]
pub struct OperatorMetrics {
    scope: Scope,
    pub elections_started: Family<(Scope, ShardLabels), Counter>,
    pub elections_completed: Family<(Scope, ShardLabels), Counter>,
    pub elections_no_quorum: Family<(Scope, ShardLabels), Counter>,
    pub election_seconds: Family<Scope, Histogram>,
    pub shard_epoch: Family<(Scope, ShardLabels), Gauge>,
    pub shard_has_primary: Family<(Scope, ShardLabels), Gauge>,
    pub replica_lag: Family<(Scope, ReplicaLabels), Gauge>,
    pub server_up: Family<(Scope, ServerLabels), Gauge>,
}

impl OperatorMetrics {
    /// Creates the metrics and registers them into `registry` under `walshard_operator`.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            scope: Scope::default(),
            elections_started: Family::default(),
            elections_completed: Family::default(),
            elections_no_quorum: Family::default(),
            election_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.01, 2.0, 12))
            }),
            shard_epoch: Family::default(),
            shard_has_primary: Family::default(),
            replica_lag: Family::default(),
            server_up: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("walshard_operator");
        r.register(
            "elections_started",
            "Elections started (a shard lost its primary or a switchover began)",
            m.elections_started.clone(),
        );
        r.register(
            "elections_completed",
            "Elections that ended with a promoted primary",
            m.elections_completed.clone(),
        );
        r.register(
            "elections_no_quorum",
            "Times a shard could not elect for lack of a fence quorum",
            m.elections_no_quorum.clone(),
        );
        r.register(
            "election_duration_seconds",
            "Time from the start of an election to the new primary's promotion",
            m.election_seconds.clone(),
        );
        r.register(
            "shard_epoch",
            "Current epoch of each shard",
            m.shard_epoch.clone(),
        );
        r.register(
            "shard_has_primary",
            "1 when the shard has a healthy primary",
            m.shard_has_primary.clone(),
        );
        r.register(
            "replica_lag_entries",
            "Primary commit_lsn minus the replica's applied_lsn",
            m.replica_lag.clone(),
        );
        r.register(
            "server_up",
            "1 when the server's latest heartbeat succeeded",
            m.server_up.clone(),
        );
        m
    }

    /// A handle on the same families whose series carry `scope` (one registry, many clusters:
    /// registering the families once per cluster would repeat their names, which Prometheus
    /// refuses).
    pub fn scoped(&self, scope: Scope) -> Self {
        Self {
            scope,
            ..self.clone()
        }
    }

    fn shard(&self, shard: &str) -> (Scope, ShardLabels) {
        (
            self.scope.clone(),
            ShardLabels {
                shard: shard.to_owned(),
            },
        )
    }

    fn replica(&self, shard: &str, server: &str) -> (Scope, ReplicaLabels) {
        (
            self.scope.clone(),
            ReplicaLabels {
                shard: shard.to_owned(),
                server: server.to_owned(),
            },
        )
    }

    fn server(&self, server: &str) -> (Scope, ServerLabels) {
        (
            self.scope.clone(),
            ServerLabels {
                server: server.to_owned(),
            },
        )
    }

    fn record(&self, event: &ControllerEvent) {
        match event {
            ControllerEvent::ElectionStarted { shard, .. } => {
                self.elections_started
                    .get_or_create(&self.shard(shard))
                    .inc();
            }
            ControllerEvent::ElectionCompleted {
                shard, duration, ..
            } => {
                self.elections_completed
                    .get_or_create(&self.shard(shard))
                    .inc();
                self.election_seconds
                    .get_or_create(&self.scope)
                    .observe(duration.as_secs_f64());
            }
            ControllerEvent::NoQuorum { shard, .. } => {
                self.elections_no_quorum
                    .get_or_create(&self.shard(shard))
                    .inc();
            }
        }
    }

    /// Drops the series of a removed shard.
    fn forget_shard(&self, shard: &str, replicas: &[String]) {
        let labels = self.shard(shard);
        self.shard_epoch.remove(&labels);
        self.shard_has_primary.remove(&labels);
        for server in replicas {
            self.forget_replica(shard, server);
        }
    }

    /// Drops the series of a replica that left its shard.
    fn forget_replica(&self, shard: &str, server: &str) {
        self.replica_lag.remove(&self.replica(shard, server));
    }

    /// Drops the series of a removed server.
    fn forget_server(&self, server: &str) {
        self.server_up.remove(&self.server(server));
    }

    /// Drops every series of a cluster that is gone (counters too), for a scoped handle.
    fn forget_cluster<'a>(
        &self,
        shards: impl IntoIterator<Item = (&'a String, &'a [String])>,
        servers: impl IntoIterator<Item = &'a String>,
    ) {
        for (shard, replicas) in shards {
            self.forget_shard(shard, replicas);
            let labels = self.shard(shard);
            self.elections_started.remove(&labels);
            self.elections_completed.remove(&labels);
            self.elections_no_quorum.remove(&labels);
        }
        for server in servers {
            self.forget_server(server);
        }
        self.election_seconds.remove(&self.scope);
    }

    fn update(&self, topology: &Topology) {
        for (shard, info) in &topology.shards {
            let labels = self.shard(shard);
            self.shard_epoch
                .get_or_create(&labels)
                .set(i64::try_from(info.epoch).unwrap_or(i64::MAX));
            self.shard_has_primary
                .get_or_create(&labels)
                .set(i64::from(info.state == Phase::Healthy));
            for r in &info.replicas {
                if let Some(lag) = r.lag {
                    self.replica_lag
                        .get_or_create(&self.replica(shard, &r.server))
                        .set(i64::try_from(lag).unwrap_or(i64::MAX));
                }
            }
        }
        for (server, info) in &topology.servers {
            self.server_up
                .get_or_create(&self.server(server))
                .set(i64::from(info.reachable));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Control plane
// ---------------------------------------------------------------------------------------------

/// Settings of the [`ControlPlane`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlPlaneConfig {
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
        result: Result<FenceReply, ApiError>,
    },
    Promote {
        shard: String,
        server: String,
        epoch: u64,
        result: Result<(), ApiError>,
    },
    StepDown {
        shard: String,
        server: String,
        result: Result<u64, ApiError>,
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

enum Command {
    Switchover {
        shard: String,
        to: String,
        reply: oneshot::Sender<Result<(), SwitchoverError>>,
    },
    Reconfigure {
        spec: ClusterSpec,
        reply: oneshot::Sender<Result<(), ReconfigureError>>,
    },
}

/// A cheap, cloneable handle to a running [`ControlPlane`]: topology snapshots, switchovers and
/// cluster changes.
#[derive(Debug, Clone)]
pub struct ControlHandle {
    commands: mpsc::Sender<Command>,
    topology: watch::Receiver<Topology>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Switchover { shard, to, .. } => f
                .debug_struct("Switchover")
                .field("shard", shard)
                .field("to", to)
                .finish(),
            Command::Reconfigure { spec, .. } => {
                f.debug_struct("Reconfigure").field("spec", spec).finish()
            }
        }
    }
}

impl ControlHandle {
    /// The latest topology (published after every tick).
    pub fn topology(&self) -> Topology {
        self.topology.borrow().clone()
    }

    /// A receiver notified after every tick.
    pub fn watch(&self) -> watch::Receiver<Topology> {
        self.topology.clone()
    }

    /// Asks for a planned switchover of `shard` to `to`; answers once the request is accepted
    /// (the switchover then proceeds over the next ticks).
    pub async fn switchover(&self, shard: &str, to: &str) -> Result<(), SwitchoverError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Switchover {
                shard: shard.to_owned(),
                to: to.to_owned(),
                reply,
            })
            .await
            .map_err(|_| SwitchoverError::NotRunning)?;
        answer.await.map_err(|_| SwitchoverError::NotRunning)?
    }

    /// Asks the control plane to manage `spec` from now on (see [`ControlPlane::reconfigure`]);
    /// answers once it is accepted, with the new topology published. Watch the topology for the
    /// rest: a shard whose replica set changed shows `reconfiguring` until the change completes.
    pub async fn reconfigure(&self, spec: ClusterSpec) -> Result<(), ReconfigureError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Reconfigure { spec, reply })
            .await
            .map_err(|_| ReconfigureError::NotRunning)?;
        answer.await.map_err(|_| ReconfigureError::NotRunning)?
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
    /// Servers removed from the spec that a shard's change under way still fences (name → URL).
    leaving: BTreeMap<String, String>,
    inflight: JoinSet<Completion>,
    inflight_by_shard: BTreeMap<String, usize>,
    metrics: OperatorMetrics,
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
    ) -> Result<Self, SpecError> {
        Self::with_metrics(spec, api, cfg, OperatorMetrics::new(registry))
    }

    /// As [`Self::new`], recording into `metrics` (registered already, e.g. a
    /// [`OperatorMetrics::scoped`] handle shared by several control planes).
    pub fn with_metrics(
        spec: ClusterSpec,
        api: A,
        cfg: ControlPlaneConfig,
        metrics: OperatorMetrics,
    ) -> Result<Self, SpecError> {
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

    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    pub fn api(&self) -> &A {
        &self.api
    }

    pub fn metrics(&self) -> &OperatorMetrics {
        &self.metrics
    }

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
    pub fn handle(&self) -> ControlHandle {
        ControlHandle {
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
    fn server_ref(&self, name: &str) -> Option<ServerRef> {
        self.spec.server_ref(name).or_else(|| {
            self.leaving.get(name).map(|url| ServerRef {
                name: name.to_owned(),
                url: url.clone(),
            })
        })
    }

    /// The current view of every shard and server.
    pub fn topology(&self, now: Instant) -> Topology {
        Topology {
            shards: self
                .controllers
                .iter()
                .map(|(id, c)| (id.clone(), c.info(now)))
                .collect(),
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
                let server = ServerRef {
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

    /// Ticks every `interval` until `shutdown` completes, serving [`ControlHandle`] requests.
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
                let refs: Vec<ServerRef> = replicas
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
                    | Err(ApiError::Conflict { epoch: theirs, .. }) => FenceAnswer::Rejected {
                        server,
                        epoch: theirs,
                    },
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
                    Err(ApiError::Unavailable(m)) => PromoteOutcome::Pending(m),
                    Err(ApiError::Conflict { epoch: theirs, .. }) => {
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

#[cfg(test)]
mod tests;
