//! One server of a local fleet: a MariaDB process and an agent process (`walshard agent`), both
//! children of `walshard up` (they die with it), with their data under `servers/<name>/`.
//!
//! Everything here blocks (process starts wait for readiness); callers run it on blocking threads,
//! as [`start_servers`] does for several servers at once.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{info, warn};
use walshard_backup::args::StoreArgs;
use walshard_k8s_api::spec::WalFsync;
use walshard_process::{ChildGuard, MariaDb, MariaDbOptions};

use super::LocalError;
use super::state::{DataDir, ServerPorts};

/// How long an agent gets to stop after SIGTERM.
const AGENT_STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// What every server of a fleet is started with.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The `walshard` executable (it runs the agent as `walshard agent`).
    pub exe: PathBuf,
    /// The cluster's bearer token.
    pub token: String,
    /// When the agents fsync their WAL.
    pub wal_fsync: WalFsync,
    /// The backup store the agents archive to, if any.
    pub backup: Option<StoreArgs>,
    /// With TLS: the files the agents serve with and trust.
    pub tls: Option<super::tls::FleetTls>,
}

/// Which process of a server died and was started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Respawned {
    /// The MariaDB server.
    Mysql,
    /// The walshard agent.
    Agent,
}

impl Respawned {
    /// `mysql` or `agent`.
    pub fn as_str(self) -> &'static str {
        match self {
            Respawned::Mysql => "mysql",
            Respawned::Agent => "agent",
        }
    }
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    name: String,
    ports: ServerPorts,
    dir: PathBuf,
    mysql: MariaDb,
    agent: Option<ChildGuard>,
    tls: bool,
}

impl Server {
    /// Starts (or resumes) `name` under `dir`: MariaDB first (waiting until it accepts
    /// connections), then the agent (not waited for: the fleet waits for its heartbeat).
    pub fn start(
        launch: &Launch,
        name: &str,
        ports: ServerPorts,
        dir: &Path,
    ) -> Result<Server, LocalError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| LocalError::io(format!("creating {}", dir.display()), e))?;
        let mysql =
            MariaDb::open(&dir.join("mysql"), Some(ports.mysql), mysql_options()).map_err(|e| {
                LocalError::Process {
                    server: name.to_owned(),
                    what: "MariaDB",
                    reason: e.to_string(),
                }
            })?;
        let mut server = Server {
            name: name.to_owned(),
            ports,
            dir: dir.to_owned(),
            mysql,
            agent: None,
            tls: launch.tls.is_some(),
        };
        server.spawn_agent(launch)?;
        Ok(server)
    }

    /// The server's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The agent's base URL.
    pub fn agent_url(&self) -> String {
        agent_url(self.ports, self.tls)
    }

    /// The MariaDB process id, if it runs.
    pub fn mysql_pid(&self) -> Option<u32> {
        self.mysql.pid()
    }

    /// The agent's process id, if it runs.
    pub fn agent_pid(&self) -> Option<u32> {
        self.agent.as_ref().map(ChildGuard::pid)
    }

    /// Starts again whatever died: MariaDB (crash recovery on the same datadir and port), then
    /// the agent (which replays its WAL and is resynced by its shards' primaries).
    pub fn respawn_dead(&mut self, launch: &Launch) -> Result<Vec<Respawned>, LocalError> {
        let mut respawned = Vec::new();
        if !self.mysql.is_running() {
            let fail = |e: walshard_process::ProcessError| LocalError::Process {
                server: self.name.clone(),
                what: "MariaDB",
                reason: e.to_string(),
            };
            if self.mysql.datadir().exists() {
                warn!(server = %self.name, "MariaDB is gone; starting it again");
                self.mysql.restart().map_err(fail)?;
            } else {
                // A lost volume: the server comes back empty and its shards are copied back.
                warn!(server = %self.name, "MariaDB is gone with its data; starting an empty one");
                if let Some(mut agent) = self.agent.take() {
                    let _ = agent.kill9();
                }
                self.mysql = MariaDb::open(
                    &self.dir.join("mysql"),
                    Some(self.ports.mysql),
                    mysql_options(),
                )
                .map_err(fail)?;
            }
            respawned.push(Respawned::Mysql);
        }
        let agent_alive = match self.agent.as_mut() {
            Some(agent) => agent
                .try_wait()
                .map_err(|e| LocalError::Process {
                    server: self.name.clone(),
                    what: "agent",
                    reason: e.to_string(),
                })?
                .is_none(),
            None => false,
        };
        if !agent_alive {
            warn!(server = %self.name, "agent is gone; starting it again");
            self.spawn_agent(launch)?;
            respawned.push(Respawned::Agent);
        }
        Ok(respawned)
    }

    /// Stops the agent (SIGTERM, then SIGKILL after a timeout) and MariaDB (clean shutdown).
    pub fn stop(&mut self) {
        if let Some(mut agent) = self.agent.take()
            && let Err(e) = agent.terminate(AGENT_STOP_TIMEOUT)
        {
            warn!(server = %self.name, error = %e, "stopping the agent");
        }
        if let Err(e) = self.mysql.stop() {
            warn!(server = %self.name, error = %e, "stopping MariaDB");
        }
        info!(server = %self.name, "stopped");
    }

    fn spawn_agent(&mut self, launch: &Launch) -> Result<(), LocalError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| LocalError::io(format!("creating {}", self.dir.display()), e))?;
        let log_path = self.dir.join("agent.log");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| LocalError::io(format!("opening {}", log_path.display()), e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| LocalError::io(format!("opening {}", log_path.display()), e))?;
        let mut cmd = Command::new(&launch.exe);
        cmd.arg("agent")
            .envs(walshard_contract::process::SERVER_ENV)
            .env("WALSHARD_LISTEN", format!("127.0.0.1:{}", self.ports.agent))
            .env("WALSHARD_MYSQL_URL", self.mysql.url())
            .env("WALSHARD_DATA_DIR", self.dir.join("agent"))
            .env("WALSHARD_SERVER_NAME", &self.name)
            .env("WALSHARD_TOKEN", &launch.token)
            .env("WALSHARD_CONTROLLED", "true")
            .env("WALSHARD_WAL_FSYNC", launch.wal_fsync.as_str())
            .envs(launch.backup.iter().flat_map(StoreArgs::env))
            .envs(launch.tls.iter().flat_map(|t| t.serving_env()))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let agent = ChildGuard::spawn(cmd).map_err(|e| LocalError::Process {
            server: self.name.clone(),
            what: "agent",
            reason: e.to_string(),
        })?;
        info!(server = %self.name, pid = agent.pid(), port = self.ports.agent, "agent started");
        self.agent = Some(agent);
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The agent first: it must not outlive its MariaDB by long (MariaDb's drop kills it).
        if let Some(mut agent) = self.agent.take() {
            let _ = agent.kill9();
        }
    }
}

/// An agent's base URL: `https` when the fleet runs with TLS.
pub fn agent_url(ports: ServerPorts, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://127.0.0.1:{}", ports.agent)
}

/// MariaDB settings of a local server: the WAL is the durable record (the agent replays it from
/// `applied_lsn`), so InnoDB flushes its log once a second (`2`) instead of on every commit.
pub(crate) fn mysql_options() -> MariaDbOptions {
    MariaDbOptions {
        flush_log_at_trx_commit: 2,
        buffer_pool_mb: 64,
        ..MariaDbOptions::default()
    }
}

/// Starts `servers` in parallel; on any failure, the ones started are stopped again.
pub(super) async fn start_servers(
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
