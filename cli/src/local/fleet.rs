//! The local runtime: a whole fleet on this machine.
//!
//! [`Fleet::start`] starts one MariaDB and one agent per server (respawning them when they die),
//! the control plane (heartbeats, elections, switchovers: the same [`ControlPlane`] the Kubernetes
//! operator runs), the control API routers follow, and one router process. `/init`, `/add` and
//! `/rm` arrive through the router and are carried out by the fleet's `init`, `add` and `rm`,
//! one at a time; every change is saved to `fleet.json` before it is answered.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::{Value as Json, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};
use walshard_contract::{ApiError, Ident, Phase, Topology};
use walshard_control_plane::ClusterSpec;
use walshard_control_plane::fleet_ops;
use walshard_control_plane::placement::{Placement, ShardReplicas};
use walshard_control_plane::runtime::{
    ControlPlane, ControlPlaneConfig, ControlPlaneHandle, HttpAgentApi, HttpTimeouts,
};
use walshard_k8s_api::spec::ShardedDatabaseSpec;
use walshard_process::{ChildGuard, free_port};
use walshard_router::fleet::FleetView;
use walshard_router::layout::Layout;
use walshard_router::requests;

use super::LocalError;
use super::server::{Launch, Server, agent_url};
use super::state::{DataDir, FleetState, Running, ServerPorts};

/// Control-plane tick.
const TICK: Duration = Duration::from_millis(100);
/// How often dead server processes are looked for.
const SUPERVISE_EVERY: Duration = Duration::from_millis(250);
/// How long a new or restarted agent may take to answer its first heartbeat.
const AGENT_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long configuration changes wait for every shard to have a primary again.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a switchover (before removing a primary's server) may take.
const SWITCHOVER_TIMEOUT: Duration = Duration::from_secs(15);

/// How to run a fleet.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Everything the fleet keeps lives here; running again on it resumes the fleet.
    pub data_dir: PathBuf,
    /// The router's port (0: any free port).
    pub port: u16,
    /// The configuration of a new fleet (ignored when the data dir already holds one).
    pub spec: Option<ShardedDatabaseSpec>,
    /// Progress lines on stderr.
    pub progress: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RespawnLabels {
    server: String,
    process: String,
}

/// The fleet's state shared by its tasks and the control API.
pub(crate) struct Shared {
    dir: DataDir,
    launch: Launch,
    /// Held for the whole of `/init`, `/add` and `/rm`: one change at a time.
    state: tokio::sync::Mutex<FleetState>,
    servers: Mutex<BTreeMap<String, Arc<Mutex<Server>>>>,
    control: ControlPlaneHandle,
    view: watch::Sender<FleetView>,
    /// The configuration and URLs the published view is built from.
    config: watch::Sender<(Option<Json>, BTreeMap<String, String>)>,
    http: reqwest::Client,
    pub(crate) registry: Registry,
    respawns: Family<RespawnLabels, Counter>,
    progress: bool,
}

/// A running local fleet.
pub struct Fleet {
    shared: Arc<Shared>,
    router: Option<ChildGuard>,
    router_url: String,
    control_url: String,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    _lock: File,
}

impl Fleet {
    /// Starts (or resumes) the fleet in `opts.data_dir`; returns when the router answers and,
    /// if the fleet is configured, every shard has a primary.
    pub async fn start(opts: FleetOptions) -> Result<Fleet, LocalError> {
        let started = Instant::now();
        std::fs::create_dir_all(&opts.data_dir)
            .map_err(|e| LocalError::io(format!("creating {}", opts.data_dir.display()), e))?;
        let data_dir = std::fs::canonicalize(&opts.data_dir)
            .map_err(|e| LocalError::io(format!("resolving {}", opts.data_dir.display()), e))?;
        let dir = DataDir::new(&data_dir);
        let lock = lock_data_dir(&dir)?;
        let progress = opts.progress;
        let say = |msg: String| {
            if progress {
                eprintln!("walshard: {msg}");
            }
        };

        let mut state = match dir.load_fleet()? {
            Some(state) => {
                if opts.spec.is_some() && state.config.is_some() {
                    say(format!(
                        "resuming the fleet in {} (--file ignored: its configuration is in fleet.json)",
                        data_dir.display()
                    ));
                }
                state
            }
            None => FleetState::new(new_token()),
        };
        if state.config.is_none()
            && let Some(spec) = &opts.spec
        {
            let resolved = spec.resolve().map_err(LocalError::Spec)?;
            state.write_quorum = spec.durability.write_quorum;
            state.wal_fsync = spec.durability.wal_fsync;
            state.config = Some(resolved.init_body());
            for server in resolved.placement.keys() {
                let ports = new_ports(&state.servers)?;
                state.servers.insert(server.clone(), ports);
            }
        }
        dir.save_fleet(&state)?;
        let exe = std::env::current_exe()
            .map_err(|e| LocalError::io("locating the walshard executable", e))?;
        let launch = Launch {
            exe,
            token: state.token.clone(),
            wal_fsync: state.wal_fsync,
        };

        // Servers.
        let layout = state.config.as_ref().map(parse_layout).transpose()?;
        let mut fresh_ports = false;
        let names: Vec<String> = state.servers.keys().cloned().collect();
        for name in names {
            fresh_ports |= reassign_taken_ports(&mut state.servers, &name)?;
        }
        if fresh_ports {
            dir.save_fleet(&state)?;
        }
        if !state.servers.is_empty() {
            say(format!(
                "starting {} servers (MariaDB + agent each)",
                state.servers.len()
            ));
        }
        let servers = start_servers(&dir, &launch, &state.servers, progress).await?;

        // Control plane.
        let mut registry = Registry::with_prefix("walshard");
        let spec = cluster_spec(&state, layout.as_ref());
        let api = HttpAgentApi::new(state.token.clone(), HttpTimeouts::default())
            .map_err(|e| LocalError::Control(e.to_string()))?;
        let mut plane = ControlPlane::new(
            spec,
            api,
            ControlPlaneConfig::default(),
            registry.sub_registry_with_prefix("control"),
        )
        .map_err(|e| LocalError::Control(e.to_string()))?;
        let control = plane.handle();
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        let respawns = Family::<RespawnLabels, Counter>::default();
        registry.register(
            "local_respawns",
            "Server processes of the local fleet started again after they died",
            respawns.clone(),
        );
        let urls = state
            .servers
            .iter()
            .map(|(name, ports)| (name.clone(), agent_url(*ports)))
            .collect();
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            launch,
            config: watch::Sender::new((state.config.clone(), urls)),
            state: tokio::sync::Mutex::new(state),
            servers: Mutex::new(servers),
            control,
            view: watch::Sender::new(FleetView::default()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            registry,
            respawns,
            progress,
        });
        {
            let guard = shared.state.lock().await;
            shared.configure_agents(&guard).await?;
        }
        // The control plane starts once the agents answer, so it does not see them as down.
        {
            let mut stopped = stopped.clone();
            tasks.push(tokio::spawn(async move {
                plane
                    .run(TICK, async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    })
                    .await;
            }));
        }
        tasks.push(tokio::spawn(publish_views(shared.clone(), stopped.clone())));
        tasks.push(tokio::spawn(supervise(shared.clone(), stopped.clone())));

        // Control API and router.
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| LocalError::io("binding the control API", e))?;
        let control_url = format!(
            "http://{}",
            listener
                .local_addr()
                .map_err(|e| LocalError::io("binding the control API", e))?
        );
        {
            let app = super::control::router(shared.clone());
            let mut stopped = stopped.clone();
            tasks.push(tokio::spawn(async move {
                let done = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(done)
                    .await
                {
                    warn!(error = %e, "control API stopped");
                }
            }));
        }
        let port = if opts.port == 0 {
            free_port().map_err(|e| LocalError::Control(e.to_string()))?
        } else {
            opts.port
        };
        let router_url = format!("http://127.0.0.1:{port}");
        let router = spawn_router(&shared, port, &control_url)?;
        let mut fleet = Fleet {
            shared,
            router: Some(router),
            router_url,
            control_url,
            stop,
            tasks,
            _lock: lock,
        };
        if let Err(e) = fleet.wait_router().await {
            fleet.stop_all().await;
            return Err(e);
        }
        if layout.is_some() {
            say("electing primaries".into());
            let settled = {
                let state = fleet.shared.state.lock().await;
                fleet.shared.settle(&state).await
            };
            if let Err(e) = settled {
                fleet.stop_all().await;
                return Err(e);
            }
        }
        fleet.shared.dir.save_running(&Running {
            pid: std::process::id(),
            router_url: fleet.router_url.clone(),
            control_url: fleet.control_url.clone(),
        })?;
        say(format!(
            "ready in {:.1}s: router {}",
            started.elapsed().as_secs_f64(),
            fleet.router_url
        ));
        Ok(fleet)
    }

    pub fn router_url(&self) -> &str {
        &self.router_url
    }

    pub fn control_url(&self) -> &str {
        &self.control_url
    }

    /// The cluster token (agents and the control API require it).
    pub async fn token(&self) -> String {
        self.shared.state.lock().await.token.clone()
    }

    /// The latest topology.
    pub fn topology(&self) -> Topology {
        self.shared.control.topology()
    }

    /// Stops the router, the control plane and every server (gracefully), keeping all data.
    pub async fn shutdown(mut self) -> Result<(), LocalError> {
        self.stop_all().await;
        Ok(())
    }

    async fn stop_all(&mut self) {
        if let Some(mut router) = self.router.take() {
            let _ = tokio::task::spawn_blocking(move || {
                router.terminate(Duration::from_secs(10)).map(|_| ())
            })
            .await;
        }
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                warn!("a fleet task did not stop in time");
            }
        }
        let servers: Vec<Arc<Mutex<Server>>> = match self.shared.servers.lock() {
            Ok(mut s) => std::mem::take(&mut *s).into_values().collect(),
            Err(_) => Vec::new(),
        };
        let stops = servers.into_iter().map(|server| {
            tokio::task::spawn_blocking(move || {
                if let Ok(mut s) = server.lock() {
                    s.stop();
                }
            })
        });
        futures::future::join_all(stops).await;
        self.shared.dir.clear_running();
        if self.shared.progress {
            eprintln!(
                "walshard: stopped; data kept in {}",
                self.shared.dir.root().display()
            );
        }
    }

    async fn wait_router(&mut self) -> Result<(), LocalError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("{}/metrics", self.router_url);
        loop {
            if let Some(router) = self.router.as_mut()
                && let Ok(Some(status)) = router.try_wait()
            {
                return Err(LocalError::Process {
                    server: "router".into(),
                    what: "router",
                    reason: format!(
                        "exited with {status} (is port {} free? see {})",
                        self.router_url,
                        self.shared.dir.log("router.log").display()
                    ),
                });
            }
            if let Ok(resp) = self.shared.http.get(&url).send().await
                && resp.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(LocalError::Timeout(format!(
                    "the router at {} did not answer",
                    self.router_url
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Shared {
    fn say(&self, msg: impl AsRef<str>) {
        if self.progress {
            eprintln!("walshard: {}", msg.as_ref());
        }
        info!("{}", msg.as_ref());
    }

    /// The current seed layout, or the 400 before `/init`.
    fn layout(state: &FleetState) -> Result<Layout, ApiError> {
        let config = state.config.as_ref().ok_or_else(|| {
            ApiError::new(
                400u16,
                "the database is not configured yet: POST /init first",
            )
        })?;
        parse_layout(config).map_err(|e| ApiError::new(500u16, e.to_string()))
    }

    /// `/init`: configures a new fleet. The same configuration again is accepted (idempotent);
    /// another one is refused (use `/add` and `/rm`).
    pub(crate) async fn init(&self, body: &Json) -> Result<Json, ApiError> {
        let layout = requests::parse_init(body)?;
        let mut state = self.state.lock().await;
        if let Some(config) = &state.config {
            let current = parse_layout(config).map_err(|e| ApiError::new(500u16, e.to_string()))?;
            requests::check_reinit(&current, &layout)?;
            return Ok(requests::init_answer());
        }
        let mut next = state.clone();
        next.config = Some(layout.to_json(|_| None));
        for server in layout.placement.keys() {
            let ports = new_ports(&next.servers).map_err(internal)?;
            next.servers.insert(server.to_string(), ports);
        }
        self.say(format!(
            "/init: starting {} servers",
            layout.placement.len()
        ));
        self.apply(&mut state, next, &[]).await?;
        Ok(requests::init_answer())
    }

    /// `/add`: new servers (and shards); existing shards placed on new servers gain replicas.
    pub(crate) async fn add(&self, body: &Json) -> Result<Json, ApiError> {
        let mut state = self.state.lock().await;
        let current = Self::layout(&state)?;
        let (layout, added) = requests::parse_add(&current, body)?;
        let mut next = state.clone();
        next.config = Some(layout.to_json(|_| None));
        for server in &added {
            let ports = new_ports(&next.servers).map_err(internal)?;
            next.servers.insert(server.to_string(), ports);
        }
        self.say(format!("/add: starting {}", requests::join_names(&added)));
        self.apply(&mut state, next, &[]).await?;
        Ok(requests::add_answer(&layout, &added))
    }

    /// `/rm`: removes servers; a removed server's primaries are switched over first.
    pub(crate) async fn rm(&self, body: &Json) -> Result<Json, ApiError> {
        let mut state = self.state.lock().await;
        let current = Self::layout(&state)?;
        let (layout, removed_ids) = requests::parse_rm(&current, body)?;
        let removed: Vec<String> = removed_ids.iter().map(Ident::to_string).collect();
        self.say(format!("/rm: removing {}", removed.join(", ")));
        self.switch_primaries_away(&layout, &removed).await?;
        let mut next = state.clone();
        next.config = Some(layout.to_json(|_| None));
        for server in &removed {
            next.servers.remove(server);
        }
        self.apply(&mut state, next, &removed).await?;
        Ok(requests::rm_answer(&layout, &removed_ids))
    }

    /// `POST /v1/switchover` (`walshard switchover`): `{"shard", "to"}`, a planned switchover of
    /// the shard's primary to the replica `to`, answered once `to` is primary.
    pub(crate) async fn switchover(&self, body: &Json) -> Result<Json, ApiError> {
        let field = |k: &str| {
            body[k]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| ApiError::new(400u16, format!("{k} (a string) is required")))
        };
        let (shard, to) = (field("shard")?, field("to")?);
        let from = self.control.topology().primary(&shard).map(str::to_owned);
        let started = Instant::now();
        if from.as_deref() != Some(to.as_str()) {
            self.control.switchover(&shard, &to).await.map_err(|e| {
                use walshard_control_plane::election::SwitchoverError as E;
                let code = match e {
                    E::UnknownShard(_) | E::NotAReplica { .. } => 400u16,
                    _ => 503u16,
                };
                ApiError::new(code, format!("switchover of {shard}: {e}"))
            })?;
            self.say(format!("switching {shard} over to {to} (requested)"));
            self.wait_topology(SWITCHOVER_TIMEOUT, |t| {
                t.primary(&shard) == Some(to.as_str())
            })
            .await
            .map_err(|e| ApiError::new(503u16, format!("switchover of {shard}: {e}")))?;
        }
        Ok(serde_json::json!({
            "message": format!("{shard}: primary {} -> {to}", from.as_deref().unwrap_or("none")),
            "shard": shard,
            "from": from,
            "primary": to,
            "took_ms": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "status": "success",
        }))
    }

    /// Moves every shard whose primary is on `leaving` to a staying replica, and waits for it.
    async fn switch_primaries_away(
        &self,
        next: &Layout,
        leaving: &[String],
    ) -> Result<(), ApiError> {
        let topology = self.control.topology();
        for h in fleet_ops::handovers(&topology, leaving, &shard_replicas(next)) {
            let (shard, primary) = (&h.shard, &h.from);
            let target = h.to.ok_or_else(|| {
                ApiError::new(
                    503u16,
                    format!("shard {shard}: no reachable replica to take over from {primary}"),
                )
            })?;
            self.say(format!("switching {shard} over from {primary} to {target}"));
            self.control
                .switchover(shard, &target)
                .await
                .map_err(|e| ApiError::new(503u16, format!("switchover of {shard}: {e}")))?;
            self.wait_topology(SWITCHOVER_TIMEOUT, |t| {
                t.primary(shard) == Some(target.as_str())
            })
            .await
            .map_err(|e| ApiError::new(503u16, format!("switchover of {shard}: {e}")))?;
        }
        Ok(())
    }

    /// Makes `next` the fleet: starts its new servers, configures their agents, hands the new
    /// cluster spec to the control plane, waits for every shard to have a primary, saves, then
    /// stops and deletes `removed` servers.
    async fn apply(
        &self,
        state: &mut FleetState,
        next: FleetState,
        removed: &[String],
    ) -> Result<(), ApiError> {
        let new: BTreeMap<String, ServerPorts> = next
            .servers
            .iter()
            .filter(|(name, _)| !state.servers.contains_key(*name))
            .map(|(n, p)| (n.clone(), *p))
            .collect();
        // Saved first: a crash from here on resumes with the new servers.
        self.dir.save_fleet(&next).map_err(internal)?;
        let started = start_servers(&self.dir, &self.launch, &new, self.progress)
            .await
            .map_err(internal)?;
        if let Ok(mut servers) = self.servers.lock() {
            servers.extend(started);
        }
        self.configure_agents(&next).await.map_err(internal)?;
        let layout = next
            .config
            .as_ref()
            .map(parse_layout)
            .transpose()
            .map_err(internal)?;
        let spec = cluster_spec(&next, layout.as_ref());
        let reconfigure = async {
            let deadline = Instant::now() + SETTLE_TIMEOUT;
            loop {
                match self.control.reconfigure(spec.clone()).await {
                    Ok(()) => return Ok(()),
                    Err(e) if Instant::now() < deadline => {
                        warn!(error = %e, "reconfiguration refused; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => return Err(ApiError::new(503u16, format!("reconfiguration: {e}"))),
                }
            }
        };
        reconfigure.await?;
        let urls = next
            .servers
            .iter()
            .map(|(name, ports)| (name.clone(), agent_url(*ports)))
            .collect();
        self.config.send_replace((next.config.clone(), urls));
        *state = next;
        self.settle(state)
            .await
            .map_err(|e| ApiError::new(503u16, e.to_string()))?;
        for name in removed {
            self.retire(name).await;
        }
        Ok(())
    }

    /// Stops a removed server and deletes its data.
    async fn retire(&self, name: &str) {
        let server = self.servers.lock().ok().and_then(|mut s| s.remove(name));
        if let Some(server) = server {
            let _ = tokio::task::spawn_blocking(move || {
                if let Ok(mut s) = server.lock() {
                    s.stop();
                }
            })
            .await;
        }
        let dir = self.dir.server(name);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            warn!(server = name, dir = %dir.display(), error = %e, "could not delete the removed server's data");
        }
        self.say(format!("{name} removed"));
    }

    /// Sends `/config` (schema and the shards it holds, with their ranges) to every agent of
    /// `state` that holds shards, after waiting for its heartbeat.
    async fn configure_agents(&self, state: &FleetState) -> Result<(), LocalError> {
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

    async fn configure_agent(
        &self,
        layout: &Layout,
        name: &str,
        ports: ServerPorts,
    ) -> Result<(), LocalError> {
        let url = agent_url(ports);
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
    async fn settle(&self, state: &FleetState) -> Result<(), LocalError> {
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

    async fn wait_topology(
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

/// Publishes a new [`FleetView`] whenever the configuration, the URLs or a primary changes.
async fn publish_views(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let mut topology = shared.control.watch();
    let mut config = shared.config.subscribe();
    let mut version = 0u64;
    // What routers depend on: configuration, URLs, primaries.
    type Routing = (
        Option<Json>,
        BTreeMap<String, String>,
        BTreeMap<String, Option<String>>,
    );
    let mut last: Option<Routing> = None;
    loop {
        let t = topology.borrow_and_update().clone();
        let (cfg, urls) = config.borrow_and_update().clone();
        let primaries: BTreeMap<String, Option<String>> = t
            .shards
            .iter()
            .map(|(s, i)| (s.clone(), i.primary.clone()))
            .collect();
        let key = (cfg.clone(), urls.clone(), primaries);
        if last.as_ref() != Some(&key) {
            version += 1;
            last = Some(key);
            shared.view.send_replace(FleetView {
                version,
                config: cfg,
                urls,
                topology: t,
            });
        }
        tokio::select! {
            r = topology.changed() => if r.is_err() { return },
            r = config.changed() => if r.is_err() { return },
            _ = stopped.wait_for(|s| *s) => return,
        }
    }
}

/// Respawns the processes of servers that died (the seed's A-4), then configures their agents
/// again (a server that lost its data dir comes back empty and is resynced by its primaries).
async fn supervise(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SUPERVISE_EVERY) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        let servers: Vec<Arc<Mutex<Server>>> = match shared.servers.lock() {
            Ok(s) => s.values().cloned().collect(),
            Err(_) => return,
        };
        for server in servers {
            let launch = shared.launch.clone();
            let result = tokio::task::spawn_blocking(move || {
                let mut s = server.lock().map_err(|_| LocalError::Poisoned)?;
                let respawned = s.respawn_dead(&launch)?;
                Ok::<_, LocalError>((s.name().to_owned(), respawned))
            })
            .await;
            let (name, respawned) = match result {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    warn!(error = %e, "respawning a server failed; retrying");
                    continue;
                }
                Err(e) => {
                    warn!(error = %e, "supervisor task failed");
                    continue;
                }
            };
            if respawned.is_empty() {
                continue;
            }
            for r in &respawned {
                shared
                    .respawns
                    .get_or_create(&RespawnLabels {
                        server: name.clone(),
                        process: r.as_str().to_owned(),
                    })
                    .inc();
            }
            let what: Vec<&str> = respawned.iter().map(|r| r.as_str()).collect();
            shared.say(format!("{name}: respawned {}", what.join(" and ")));
            let state = shared.state.lock().await.clone();
            if let Some(ports) = state.servers.get(&name).copied()
                && let Some(config) = &state.config
            {
                match parse_layout(config) {
                    Ok(layout) => {
                        if let Err(e) = shared.configure_agent(&layout, &name, ports).await {
                            warn!(server = %name, error = %e, "configuring the respawned agent");
                        }
                    }
                    Err(e) => warn!(error = %e, "fleet configuration unreadable"),
                }
            }
        }
    }
}

/// Starts `servers` in parallel; on any failure, the ones started are stopped again.
async fn start_servers(
    dir: &DataDir,
    launch: &Launch,
    servers: &BTreeMap<String, ServerPorts>,
    progress: bool,
) -> Result<BTreeMap<String, Arc<Mutex<Server>>>, LocalError> {
    let total = servers.len();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let starts = servers.iter().map(|(name, ports)| {
        let (launch, name, ports) = (launch.clone(), name.clone(), *ports);
        let path = dir.server(&name);
        let done = done.clone();
        tokio::task::spawn_blocking(move || {
            let server = Server::start(&launch, &name, ports, &path)?;
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if progress {
                eprintln!(
                    "walshard: [{n}/{total}] {name}: MariaDB on 127.0.0.1:{}, agent on {}",
                    ports.mysql,
                    server.agent_url()
                );
            }
            Ok::<_, LocalError>((name, server))
        })
    });
    let mut out = BTreeMap::new();
    let mut first_error = None;
    for r in futures::future::join_all(starts).await {
        match r {
            Ok(Ok((name, server))) => {
                out.insert(name, Arc::new(Mutex::new(server)));
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(LocalError::Control(format!("start task: {e}")));
            }
        }
    }
    if let Some(e) = first_error {
        // Dropping the started servers kills them.
        drop(out);
        return Err(e);
    }
    Ok(out)
}

fn spawn_router(shared: &Shared, port: u16, control_url: &str) -> Result<ChildGuard, LocalError> {
    let log_path = shared.dir.log("router.log");
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| LocalError::io(format!("opening {}", log_path.display()), e))
    };
    let mut cmd = std::process::Command::new(&shared.launch.exe);
    cmd.arg("router")
        .env("WALSHARD_LISTEN", format!("127.0.0.1:{port}"))
        .env("WALSHARD_CONTROL_URL", control_url)
        .env("WALSHARD_TOKEN", &shared.launch.token)
        .stdin(std::process::Stdio::null())
        .stdout(open()?)
        .stderr(open()?);
    ChildGuard::spawn(cmd).map_err(|e| LocalError::Process {
        server: "router".into(),
        what: "router",
        reason: e.to_string(),
    })
}

/// The control plane's view of `state`.
fn cluster_spec(state: &FleetState, layout: Option<&Layout>) -> ClusterSpec {
    let servers = state
        .servers
        .iter()
        .map(|(name, ports)| (name.clone(), agent_url(*ports)))
        .collect();
    ClusterSpec::from_placement(
        servers,
        &layout.map(placement).unwrap_or_default(),
        state.write_quorum,
    )
}

/// The layout's placement in the control plane's terms.
fn placement(layout: &Layout) -> Placement {
    layout
        .placement
        .iter()
        .map(|(server, held)| {
            (
                server.to_string(),
                held.iter().map(Ident::to_string).collect(),
            )
        })
        .collect()
}

/// Shard → the servers holding it.
fn shard_replicas(layout: &Layout) -> ShardReplicas {
    walshard_control_plane::placement::shard_replicas(&placement(layout))
}

fn parse_layout(config: &Json) -> Result<Layout, LocalError> {
    requests::parse_init(config).map_err(|e| LocalError::Corrupt {
        path: PathBuf::from("fleet.json"),
        reason: format!("configuration: {e}"),
    })
}

/// Two free loopback ports for a new server, none of them already given to a server of `fleet`
/// (a port handed out earlier is free until its process binds it, so the OS may offer it again).
fn new_ports(fleet: &BTreeMap<String, ServerPorts>) -> Result<ServerPorts, LocalError> {
    let mut used: std::collections::BTreeSet<u16> =
        fleet.values().flat_map(|p| [p.mysql, p.agent]).collect();
    let mut pick = || {
        for _ in 0..64 {
            let port = free_port().map_err(|e| LocalError::Control(e.to_string()))?;
            if used.insert(port) {
                return Ok(port);
            }
        }
        Err(LocalError::Control("no free loopback port".into()))
    };
    Ok(ServerPorts {
        mysql: pick()?,
        agent: pick()?,
    })
}

/// Gives server `name` new ports if its saved ones are taken now (after a restart of the
/// machine, say); its URL changes, which the next election hands to its peers.
fn reassign_taken_ports(
    fleet: &mut BTreeMap<String, ServerPorts>,
    name: &str,
) -> Result<bool, LocalError> {
    let taken = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_err();
    match fleet.get(name) {
        Some(ports) if taken(ports.mysql) || taken(ports.agent) => {
            let fresh = new_ports(fleet)?;
            fleet.insert(name.to_owned(), fresh);
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn new_token() -> String {
    format!("{:032x}", uuid::Uuid::new_v4().as_u128())
}

fn internal(e: LocalError) -> ApiError {
    ApiError::new(500u16, e.to_string())
}

/// Takes the data dir's lock (held while the returned file is open), so two `walshard up` never
/// run the same fleet.
fn lock_data_dir(dir: &DataDir) -> Result<File, LocalError> {
    match walshard_process::lock::try_lock(&dir.lock_file()).map_err(LocalError::Lock)? {
        Some(file) => Ok(file),
        None => Err(LocalError::Busy {
            dir: dir.root().to_owned(),
            pid: dir.load_running().ok().flatten().map(|r| r.pid),
        }),
    }
}
