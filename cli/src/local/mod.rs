//! The local runtime: `walshard up`, `walshard status`, `walshard down`.
//!
//! - [`state`]: what a fleet keeps in its data dir.
//! - [`server`]: one server's MariaDB and agent processes.
//! - [`fleet`]: starting and stopping a fleet: servers, the control plane, the router.
//! - `shared`: what a running fleet's tasks share; `admin`: `/init` `/add` `/rm` and switchovers;
//!   `tasks`: the published fleet view and respawns; `config`: the configuration in the router's
//!   and the control plane's terms; `ports`: loopback ports for servers.
//! - `control`: the control API the router follows.

mod admin;
pub(crate) mod config;
mod control;
pub mod fleet;
pub(crate) mod ports;
pub mod server;
mod shared;
pub mod state;
mod tasks;
pub mod tls;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use walshard_contract::durable::DurableError;
use walshard_contract::http_client::{ClientError, ClientSettings};
use walshard_contract::process::{LogFormat, init_tracing, shutdown_signal};
use walshard_k8s_api::spec::ShardedDatabase;
use walshard_router::fleet::{FleetView, LocalFleetClient};

pub use fleet::{Fleet, FleetOptions};
use state::DataDir;

/// Errors of the local runtime.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A state file cannot be parsed.
    #[error("{} is unreadable: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why it is unreadable.
        reason: String,
    },
    /// Starting or stopping one of a server's processes failed.
    #[error("{server}: {what} failed: {reason}")]
    Process {
        /// The server name.
        server: String,
        /// Which process, e.g. `MariaDB` or `router`.
        what: &'static str,
        /// What failed.
        reason: String,
    },
    /// The fleet configuration is invalid.
    #[error("the ShardedDatabase spec: {0}")]
    Spec(walshard_k8s_api::spec::SpecError),
    /// The control plane (or a free port for it) failed (the message).
    #[error("control plane: {0}")]
    Control(String),
    /// Something did not happen in time (what).
    #[error("timed out: {0}")]
    Timeout(String),
    /// Another `walshard up` holds the data dir's lock.
    #[error("another walshard up is running on {}{}", dir.display(), pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Busy {
        /// The data dir.
        dir: PathBuf,
        /// The process holding it, if known.
        pid: Option<u32>,
    },
    /// The data dir (this path) has no running fleet.
    #[error("no fleet is running on {}", .0.display())]
    NotRunning(PathBuf),
    /// The data dir's lock file cannot be taken.
    #[error("locking the data dir: {0}")]
    Lock(walshard_process::ProcessError),
    /// A lock was poisoned by a panic.
    #[error("a lock was poisoned by a panic")]
    Poisoned,
    /// A call to the router or the control API failed.
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl From<DurableError> for LocalError {
    fn from(e: DurableError) -> Self {
        match e {
            DurableError::Io {
                action,
                path,
                source,
            } => LocalError::io(format!("{action} {}", path.display()), source),
            DurableError::Json { path, source } => LocalError::Corrupt {
                path,
                reason: source.to_string(),
            },
        }
    }
}

impl LocalError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        LocalError::Io {
            context: context.into(),
            source,
        }
    }
}

/// `walshard up`.
#[derive(Args, Debug, Clone)]
pub struct UpArgs {
    /// Where the fleet keeps everything (MariaDB datadirs, WALs, logs, its configuration).
    /// Running `up` again on it resumes the fleet with all its data.
    #[arg(long, default_value = "walshard-data")]
    pub data_dir: PathBuf,
    /// The router's port (the seed API).
    #[arg(long, default_value_t = 5000)]
    pub port: u16,
    /// A `ShardedDatabase` YAML (e.g. examples/seed-default.yaml) configuring a new fleet;
    /// without it the router waits for the seed's `POST /init`.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Log format of this process (the agents and the router log to files in the data dir).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Continuous WAL archiving and base backups (docs/backup.md): once given, the fleet keeps
    /// archiving there across restarts.
    #[command(flatten)]
    pub backup: walshard_backup::args::StoreArgs,
    /// Take base backups on this cron schedule (UTC; 5 fields, or 6 with seconds first), e.g.
    /// `0 3 * * *`; needs a backup store. Kept in `fleet.json` with the retention flags.
    #[arg(long)]
    pub backup_schedule: Option<crate::backup::schedule::BackupSchedule>,
    /// Retention after each scheduled backup.
    #[command(flatten)]
    pub backup_retention: crate::backup::create::RetentionArgs,
    /// Encrypt the traffic between the fleet's processes (control plane, agents, router) with
    /// TLS, under a certificate authority generated into `<data-dir>/tls/`; kept once given.
    /// The router's client API stays plain HTTP, as the seed's clients expect.
    #[arg(long)]
    pub tls: bool,
}

/// `walshard status`.
#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    /// The data dir of the running fleet.
    #[arg(long, default_value = "walshard-data")]
    pub data_dir: PathBuf,
    /// Print the fleet view as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `walshard switchover`.
#[derive(Args, Debug, Clone)]
pub struct SwitchoverArgs {
    /// The data dir of the running fleet.
    #[arg(long, default_value = "walshard-data")]
    pub data_dir: PathBuf,
    /// `shard=Server`, e.g. `sh1=Server2` (several comma-separated, done in order): the
    /// replica to make primary, as the `walshard.io/switchover` annotation on Kubernetes.
    pub target: String,
}

/// `walshard down`.
#[derive(Args, Debug, Clone)]
pub struct DownArgs {
    /// The data dir of the running fleet.
    #[arg(long, default_value = "walshard-data")]
    pub data_dir: PathBuf,
    /// How long to wait for the fleet to stop.
    #[arg(long, default_value_t = 120)]
    pub timeout_secs: u64,
}

/// Runs a fleet in the foreground until SIGINT or SIGTERM.
pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    init_tracing(args.log_format, "warn");
    let spec = match &args.file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            let doc = ShardedDatabase::from_yaml(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            doc.spec
                .resolve()
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            Some(doc.spec)
        }
        None => None,
    };
    let fleet = Fleet::start(FleetOptions {
        data_dir: args.data_dir.clone(),
        port: args.port,
        spec,
        progress: true,
        backup: args.backup.url.is_some().then(|| args.backup.clone()),
        backup_schedule: args.backup_schedule.clone().map(|mut s| {
            s.retention = args.backup_retention.clone();
            s
        }),
        tls: args.tls,
    })
    .await?;
    let url = fleet.router_url().to_owned();
    let configured = !fleet.topology().shards.is_empty();
    println!("walshard is up: router {url}");
    println!("Try:");
    if !configured {
        println!(
            r#"  curl -s -XPOST {url}/init -H 'content-type: application/json' -d '{{"N":3,"schema":{{"columns":["Stud_id","Stud_name","Stud_marks"],"dtypes":["Number","String","String"]}},"shards":[{{"Stud_id_low":0,"Shard_id":"sh1","Shard_size":4096}},{{"Stud_id_low":4096,"Shard_id":"sh2","Shard_size":4096}}],"servers":{{"Server0":["sh1","sh2"],"Server1":["sh1","sh2"],"Server2":["sh1","sh2"]}}}}'"#
        );
    }
    println!(
        r#"  curl -s -XPOST {url}/write -H 'content-type: application/json' -d '{{"data":[{{"Stud_id":2255,"Stud_name":"GHI","Stud_marks":27}}]}}'"#
    );
    println!(
        r#"  curl -s -XPOST {url}/read -H 'content-type: application/json' -d '{{"Stud_id":{{"low":2000,"high":2500}}}}'"#
    );
    println!("  curl -s {url}/status");
    println!("  walshard status --data-dir {}", args.data_dir.display());
    println!(
        "Stop with Ctrl-C (data stays in {}).",
        args.data_dir.display()
    );
    shutdown_signal().await;
    eprintln!("walshard: stopping");
    fleet.shutdown().await?;
    Ok(())
}

/// Prints a running fleet's servers, shards, primaries, epochs and lag.
pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let (view, running) = fetch_view(&args.data_dir).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    print!("{}", render_status(&view, running.pid, &running.router_url));
    Ok(())
}

/// Planned switchovers on a running local fleet, through its control API.
pub async fn switchover(args: SwitchoverArgs) -> anyhow::Result<()> {
    let pairs = walshard_k8s_api::switchover::parse_switchover(&args.target)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let dir = DataDir::new(&args.data_dir);
    let running = dir
        .load_running()?
        .ok_or_else(|| LocalError::NotRunning(args.data_dir.clone()))?;
    let fleet = dir
        .load_fleet()?
        .ok_or_else(|| LocalError::NotRunning(args.data_dir.clone()))?;
    let http = fleet.client_settings(ClientSettings::default())?.build()?;
    for (shard, to) in pairs {
        let answer = http
            .post(format!("{}/v1/switchover", running.control_url))
            .bearer_auth(&fleet.token)
            .json(&serde_json::json!({"shard": shard, "to": to}))
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!("the fleet's control API at {}: {e}", running.control_url)
            })?;
        let ok = answer.status().is_success();
        let body: serde_json::Value = answer.json().await.unwrap_or_default();
        let message = body["message"].as_str().unwrap_or_default().to_owned();
        if !ok {
            anyhow::bail!("switchover of {shard} to {to}: {message}");
        }
        println!("{message} ({} ms)", body["took_ms"]);
    }
    Ok(())
}

/// Stops the fleet running on a data dir (SIGTERM to its `walshard up`) and waits for it.
pub async fn down(args: DownArgs) -> anyhow::Result<()> {
    let dir = DataDir::new(&args.data_dir);
    let running = dir
        .load_running()?
        .ok_or_else(|| LocalError::NotRunning(args.data_dir.clone()))?;
    if !lock_held(&dir) {
        dir.clear_running();
        return Err(LocalError::NotRunning(args.data_dir.clone()).into());
    }
    let pid = nix::unistd::Pid::from_raw(running.pid as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
        .map_err(|e| anyhow::anyhow!("signalling walshard up (pid {pid}): {e}"))?;
    eprint!("walshard: stopping the fleet (pid {pid})");
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    while lock_held(&dir) {
        if Instant::now() > deadline {
            eprintln!();
            anyhow::bail!("the fleet did not stop within {}s", args.timeout_secs);
        }
        eprint!(".");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(" stopped");
    Ok(())
}

/// Whether a `walshard up` holds the data dir's lock.
fn lock_held(dir: &DataDir) -> bool {
    walshard_process::lock::is_locked(&dir.lock_file())
}

async fn fetch_view(data_dir: &std::path::Path) -> anyhow::Result<(FleetView, state::Running)> {
    let dir = DataDir::new(data_dir);
    let running = dir
        .load_running()?
        .ok_or_else(|| LocalError::NotRunning(data_dir.to_owned()))?;
    let fleet = dir
        .load_fleet()?
        .ok_or_else(|| LocalError::NotRunning(data_dir.to_owned()))?;
    let trust = fleet.client_settings(ClientSettings::default())?.trust;
    let client = LocalFleetClient::trusting(&running.control_url, &fleet.token, trust)?;
    let view = client
        .fleet(0, Duration::ZERO)
        .await
        .map_err(|e| anyhow::anyhow!("the fleet's control API at {}: {e}", running.control_url))?;
    Ok((view, running))
}

/// The `walshard status` text.
pub fn render_status(view: &FleetView, pid: u32, router_url: &str) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let t = &view.topology;
    let _ = writeln!(
        out,
        "walshard fleet (pid {pid}): router {router_url}, {} servers, {} shards",
        view.urls.len(),
        t.shards.len()
    );
    let _ = writeln!(out, "\n{:<12} {:<26} STATE", "SERVER", "AGENT");
    for (name, url) in &view.urls {
        let state = match t.servers.get(name) {
            Some(s) if s.suspected => "down (suspected)",
            Some(s) if s.reachable && s.disk_full => "up, DISK FULL (writes refused)",
            Some(s) if s.reachable => "up",
            Some(_) => "unreachable",
            None => "unknown",
        };
        let _ = writeln!(out, "{name:<12} {url:<26} {state}");
    }
    if view.config.is_none() {
        let _ = writeln!(out, "\nnot configured yet: POST /init to the router");
        return out;
    }
    let _ = writeln!(
        out,
        "\n{:<8} {:<10} {:<10} {:>6}  REPLICAS (role, applied lsn, lag)",
        "SHARD", "STATE", "PRIMARY", "EPOCH"
    );
    for (id, s) in &t.shards {
        let replicas: Vec<String> = s
            .replicas
            .iter()
            .map(|r| {
                let role = r.role.map_or("?".to_owned(), |r| r.to_string());
                let applied = r.applied_lsn.map_or("?".to_owned(), |l| l.to_string());
                let lag = r.lag.map_or("?".to_owned(), |l| l.to_string());
                let down = if r.suspected { " DOWN" } else { "" };
                format!("{} {role} {applied} lag {lag}{down}", r.server)
            })
            .collect();
        let _ = writeln!(
            out,
            "{id:<8} {:<10} {:<10} {:>6}  {}",
            s.state.as_str(),
            s.primary.as_deref().unwrap_or("-"),
            s.epoch,
            replicas.join(", ")
        );
        if let Some(reason) = &s.reason {
            let _ = writeln!(out, "         {reason}");
        }
    }
    if !t.archive.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<8} {:>12} {:>12} {:>10}  WAL ARCHIVE",
            "SHARD", "ARCHIVED", "LAG ENTRIES", "LAG S"
        );
        for (id, a) in &t.archive {
            let archived = a.archived_lsn.map_or("?".to_owned(), |l| l.to_string());
            let error = a
                .error
                .as_deref()
                .map(|e| format!("failing: {e}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{id:<8} {archived:>12} {:>12} {:>10}  {error}",
                a.lag_entries, a.lag_seconds
            );
        }
    }
    out
}

/// Waits until the agent at `url` answers `GET /heartbeat`.
pub(crate) async fn agent_ready(
    http: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        match http.get(format!("{url}/heartbeat")).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("heartbeat answered {}", r.status()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!(
        "no heartbeat from {url} within {}s: {last}",
        timeout.as_secs()
    ))
}
