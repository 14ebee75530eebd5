//! The state a running fleet shares between its tasks and its control API, and what they ask
//! of it: configuring agents, waiting for the shards to settle, the published view.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::{Value as Json, json};
use tokio::sync::watch;
use tracing::info;
use walshard_contract::Phase;
use walshard_contract::Topology;
use walshard_contract::{ApiError, Ident};
use walshard_control_plane::fleet_ops;
use walshard_control_plane::runtime::ControlPlaneHandle;
use walshard_router::fleet::FleetView;
use walshard_router::layout::Layout;

use super::LocalError;
use super::config::{parse_layout, shard_replicas};
use super::server::{Launch, Server, agent_url};
use super::state::{DataDir, FleetState, ServerPorts};

/// How long a new or restarted agent may take to answer its first heartbeat.
const AGENT_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long configuration changes wait for every shard to have a primary again.
pub(super) const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RespawnLabels {
    pub(super) server: String,
    pub(super) process: String,
}

/// The fleet's state shared by its tasks and the control API.
pub(crate) struct Shared {
    pub(super) dir: DataDir,
    pub(super) launch: Launch,
    /// Held for the whole of `/init`, `/add` and `/rm`: one change at a time.
    pub(super) state: tokio::sync::Mutex<FleetState>,
    pub(super) servers: Mutex<BTreeMap<String, Arc<Mutex<Server>>>>,
    pub(super) control: ControlPlaneHandle,
    pub(super) view: watch::Sender<FleetView>,
    /// The configuration and URLs the published view is built from.
    pub(super) config: watch::Sender<(Option<Json>, BTreeMap<String, String>)>,
    pub(super) http: reqwest::Client,
    pub(super) registry: Registry,
    pub(super) respawns: Family<RespawnLabels, Counter>,
    pub(super) progress: bool,
}

impl Shared {
    pub(super) fn say(&self, msg: impl AsRef<str>) {
        if self.progress {
            eprintln!("walshard: {}", msg.as_ref());
        }
        info!("{}", msg.as_ref());
    }

    /// The current seed layout, or the 400 before `/init`.
    pub(super) fn layout(state: &FleetState) -> Result<Layout, ApiError> {
        let config = state.config.as_ref().ok_or_else(|| {
            ApiError::new(
                400u16,
                "the database is not configured yet: POST /init first",
            )
        })?;
        parse_layout(config).map_err(|e| ApiError::new(500u16, e.to_string()))
    }

    /// Sends `/config` (schema and the shards it holds, with their ranges) to every agent of
    /// `state` that holds shards, after waiting for its heartbeat.
    pub(super) async fn configure_agents(&self, state: &FleetState) -> Result<(), LocalError> {
        let Some(config) = &state.config else {
            return Ok(());
        };
        let layout = parse_layout(config)?;
        let calls = state.servers.iter().map(|(name, ports)| {
            let layout = &layout;
            async move { self.configure_agent(layout, name, *ports).await }
        });
        for result in futures::future::join_all(calls).await {
            result?;
        }
        Ok(())
    }

    pub(super) async fn configure_agent(
        &self,
        layout: &Layout,
        name: &str,
        ports: ServerPorts,
    ) -> Result<(), LocalError> {
        let url = agent_url(ports, self.launch.tls.is_some());
        super::agent_ready(&self.http, &url, AGENT_READY_TIMEOUT)
            .await
            .map_err(|reason| LocalError::Process {
                server: name.to_owned(),
                what: "agent",
                reason: format!(
                    "{reason} (see {})",
                    self.dir.server(name).join("agent.log").display()
                ),
            })?;
        let Some(held) = Ident::new(name).ok().and_then(|n| layout.placement.get(&n)) else {
            return Ok(());
        };
        let Some(body) = fleet_ops::agent_config(
            &layout.schema,
            layout.shards(),
            held.iter().map(Ident::as_str),
        ) else {
            return Ok(());
        };
        fleet_ops::configure_agent(&self.http, &url, &self.launch.token, &body)
            .await
            .map_err(|e| LocalError::Control(format!("{name}: {e}")))
    }

    /// Waits until every shard of the configuration is healthy with its configured replicas and
    /// no replica-set change pending (only then may removed servers stop).
    pub(super) async fn settle(&self, state: &FleetState) -> Result<(), LocalError> {
        let Some(config) = &state.config else {
            return Ok(());
        };
        let expected = shard_replicas(&parse_layout(config)?);
        let total = expected.len();
        let mut reported = usize::MAX;
        let healthy = |t: &Topology| fleet_ops::settled_shards(t, &expected);
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let mut rx = self.control.watch();
        loop {
            let done = healthy(&rx.borrow_and_update());
            if done != reported {
                reported = done;
                self.say(format!("shards with a primary: {done}/{total}"));
            }
            if done == total {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, rx.changed()).await.is_err() {
                let t = self.control.topology();
                let stuck: Vec<String> = t
                    .shards
                    .iter()
                    .filter(|(_, i)| i.state != Phase::Healthy)
                    .map(|(s, i)| {
                        format!(
                            "{s}: {} {}",
                            i.state.as_str(),
                            i.reason.clone().unwrap_or_default()
                        )
                    })
                    .collect();
                return Err(LocalError::Timeout(format!(
                    "shards without a primary after {}s: {}",
                    SETTLE_TIMEOUT.as_secs(),
                    stuck.join("; ")
                )));
            }
        }
    }

    pub(super) async fn wait_topology(
        &self,
        timeout: Duration,
        done: impl Fn(&Topology) -> bool,
    ) -> Result<(), LocalError> {
        let mut rx = self.control.watch();
        let deadline = Instant::now() + timeout;
        loop {
            if done(&rx.borrow_and_update()) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, rx.changed()).await.is_err() {
                return Err(LocalError::Timeout(format!(
                    "not done after {}s",
                    timeout.as_secs()
                )));
            }
        }
    }

    /// Each server's process ids and data dir.
    pub(crate) fn processes(&self) -> Json {
        let servers: Vec<Arc<Mutex<Server>>> = match self.servers.lock() {
            Ok(s) => s.values().cloned().collect(),
            Err(_) => Vec::new(),
        };
        let mut out = serde_json::Map::new();
        for server in servers {
            // A server being respawned is skipped rather than waited for.
            if let Ok(s) = server.try_lock() {
                out.insert(
                    s.name().to_owned(),
                    json!({
                        "mysql_pid": s.mysql_pid(),
                        "agent_pid": s.agent_pid(),
                        "dir": self.dir.server(s.name()),
                    }),
                );
            }
        }
        Json::Object(out)
    }

    /// The published view, for the control API.
    pub(crate) fn views(&self) -> watch::Receiver<FleetView> {
        self.view.subscribe()
    }

    pub(crate) fn token(&self) -> &str {
        &self.launch.token
    }

    /// The control plane's latest topology.
    pub(crate) fn topology(&self) -> Topology {
        self.control.topology()
    }
}
