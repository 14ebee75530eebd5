//! The local runtime: a whole fleet on this machine.
//!
//! [`Fleet::start`] starts one MariaDB and one agent per server (respawning them when they die),
//! the control plane (heartbeats, elections, switchovers: the same [`ControlPlane`] the Kubernetes
//! operator runs), the control API routers follow, and one router process. `/init`, `/add` and
//! `/rm` arrive through the router and are carried out by the fleet's `init`, `add` and `rm`,
//! one at a time; every change is saved to `fleet.json` before it is answered.

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::warn;
use walshard_contract::Topology;
use walshard_contract::http_client::ClientSettings;
use walshard_control_plane::runtime::{
    ControlPlane, ControlPlaneConfig, HttpAgentApi, HttpTimeouts,
};
use walshard_k8s_api::spec::ShardedDatabaseSpec;
use walshard_process::{ChildGuard, free_port};
use walshard_router::fleet::FleetView;

use super::LocalError;
use super::config::{cluster_spec, parse_layout};
use super::control;
use super::ports::{new_ports, reassign_taken_ports};
use super::server::{Launch, Server, start_servers};
use super::shared::{RespawnLabels, Shared};
use super::state::{DataDir, FleetState, Running};
use super::tasks::{publish_views, supervise};
use super::tls::FleetTls;

/// Control-plane tick.
const TICK: Duration = Duration::from_millis(100);

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
    /// Archive to this backup store from now on (kept in `fleet.json`).
    pub backup: Option<walshard_backup::args::StoreArgs>,
    /// Take base backups on this schedule from now on (kept in `fleet.json`).
    pub backup_schedule: Option<crate::backup::schedule::BackupSchedule>,
    /// Encrypt the traffic between the fleet's processes from now on (kept in `fleet.json`).
    pub tls: bool,
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
        if let Some(backup) = &opts.backup {
            state.backup = Some(backup.clone());
        }
        if let Some(schedule) = &opts.backup_schedule {
            state.backup_schedule = Some(schedule.clone());
        }
        if state.backup_schedule.is_some() && state.backup.is_none() {
            return Err(LocalError::Control(
                "--backup-schedule needs a backup store (--backup-store URL)".into(),
            ));
        }
        let tls = FleetTls::at(&dir);
        if opts.tls || state.tls_ca.is_some() {
            state.tls_ca = Some(tls.ensure()?);
        }
        let tls = state.tls_ca.is_some().then_some(tls);
        dir.save_fleet(&state)?;
        let exe = std::env::current_exe()
            .map_err(|e| LocalError::io("locating the walshard executable", e))?;
        let launch = Launch {
            exe,
            token: state.token.clone(),
            wal_fsync: state.wal_fsync,
            backup: state.backup.clone(),
            tls: tls.clone(),
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
        let trust = state.client_settings(ClientSettings::default())?.trust;
        let api = HttpAgentApi::trusting(state.token.clone(), HttpTimeouts::default(), trust)
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
            .map(|(name, ports)| (name.clone(), state.agent_url(*ports)))
            .collect();
        let http = state
            .client_settings(ClientSettings {
                timeout: Some(Duration::from_secs(10)),
                ..ClientSettings::default()
            })?
            .build()?;
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            launch,
            config: watch::Sender::new((state.config.clone(), urls)),
            state: tokio::sync::Mutex::new(state),
            servers: Mutex::new(servers),
            control,
            view: watch::Sender::new(FleetView::default()),
            http,
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
        let schedule = shared.state.lock().await.backup_schedule.clone();
        if let Some(schedule) = schedule {
            let run = crate::backup::schedule::run(schedule, dir.clone(), stopped.clone());
            tasks.push(tokio::spawn(run));
        }

        // Control API and router.
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| LocalError::io("binding the control API", e))?;
        let served = match &tls {
            Some(tls) => Some(tls.served().await?),
            None => None,
        };
        let scheme = if served.is_some() { "https" } else { "http" };
        let control_url = format!(
            "{scheme}://{}",
            listener
                .local_addr()
                .map_err(|e| LocalError::io("binding the control API", e))?
        );
        {
            let app = control::router(shared.clone());
            let mut stopped = stopped.clone();
            tasks.push(tokio::spawn(async move {
                let done = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                if let Err(e) = walshard_contract::tls::serve(listener, app, served, done).await {
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

    /// The router's base URL.
    pub fn router_url(&self) -> &str {
        &self.router_url
    }

    /// The local control API's base URL.
    pub fn control_url(&self) -> &str {
        &self.control_url
    }

    /// The cluster token (agents and the control API require it).
    pub async fn token(&self) -> String {
        self.shared.state.lock().await.token.clone()
    }

    /// The process ids of the fleet's processes by kind (`router`, `agent`, `mysql`), for
    /// measuring what each costs.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        let mut out: Vec<(&'static str, u32)> =
            self.router.iter().map(|r| ("router", r.pid())).collect();
        let servers: Vec<_> = match self.shared.servers.lock() {
            Ok(s) => s.values().cloned().collect(),
            Err(_) => Vec::new(),
        };
        for server in servers {
            if let Ok(s) = server.lock() {
                out.extend(s.agent_pid().map(|p| ("agent", p)));
                out.extend(s.mysql_pid().map(|p| ("mysql", p)));
            }
        }
        out
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
        .envs(walshard_contract::process::SERVER_ENV)
        .env("WALSHARD_LISTEN", format!("127.0.0.1:{port}"))
        .env("WALSHARD_CONTROL_URL", control_url)
        .env("WALSHARD_TOKEN", &shared.launch.token)
        .envs(
            shared
                .launch
                .tls
                .iter()
                .map(|t| ("WALSHARD_TLS_CA", t.ca_file())),
        )
        .stdin(std::process::Stdio::null())
        .stdout(open()?)
        .stderr(open()?);
    ChildGuard::spawn(cmd).map_err(|e| LocalError::Process {
        server: "router".into(),
        what: "router",
        reason: e.to_string(),
    })
}

pub(crate) fn new_token() -> String {
    format!("{:032x}", uuid::Uuid::new_v4().as_u128())
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
