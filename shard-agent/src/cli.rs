//! The agent's command line (flags and `WALSHARD_*` environment variables) and its `run`, shared
//! by the `walshard-agent` binary and `walshard agent`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use tracing::info;
use walshard_contract::process::{LogFormat, init_tracing, shutdown_signal};

use crate::agent::{Agent, AgentConfig};
use crate::api;
use crate::mysql::{EndpointError, MySqlEndpoint};
use crate::wal::{FsyncPolicy, WalOptions};

/// `--wal-fsync`: when the WAL is flushed to stable storage.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Fsync {
    /// fdatasync once per group commit: an acknowledged write survives power loss.
    Always,
    /// No fsync: survives a process crash, not an OS crash or power loss.
    Never,
}

/// How to reach MySQL: a URL, or its parts (the same flags and environment for the agent and
/// `walshard-agent restore-server`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct MySqlArgs {
    /// MySQL server as a URL, e.g. mysql://root@127.0.0.1:3306 (the local fleet's form; the
    /// agent creates its database). Excludes --mysql-host/-port/-user/-socket; prefer those and
    /// --mysql-password when the password comes from a Secret.
    #[arg(long, env = "WALSHARD_MYSQL_URL")]
    pub mysql_url: Option<String>,
    /// MySQL host (default 127.0.0.1).
    #[arg(long, env = "WALSHARD_MYSQL_HOST")]
    pub mysql_host: Option<String>,
    /// MySQL port (default 3306).
    #[arg(long, env = "WALSHARD_MYSQL_PORT")]
    pub mysql_port: Option<u16>,
    /// MySQL Unix socket, instead of TCP.
    #[arg(long, env = "WALSHARD_MYSQL_SOCKET")]
    pub mysql_socket: Option<PathBuf>,
    /// MySQL user (default root).
    #[arg(long, env = "WALSHARD_MYSQL_USER")]
    pub mysql_user: Option<String>,
    /// MySQL password, taken verbatim (any characters); replaces one in --mysql-url.
    #[arg(long, env = "WALSHARD_MYSQL_PASSWORD", hide_env_values = true)]
    pub mysql_password: Option<String>,
}

/// The walshard shard agent: seed server API, per-shard WAL, MySQL store.
#[derive(Parser, Debug, Clone)]
#[command(version)]
pub struct Args {
    /// Address and port to listen on.
    #[arg(long, env = "WALSHARD_LISTEN", default_value = "127.0.0.1:5001")]
    pub listen: SocketAddr,
    /// The MySQL server.
    #[command(flatten)]
    pub mysql: MySqlArgs,
    /// Directory for the WAL and local state.
    #[arg(long, env = "WALSHARD_DATA_DIR")]
    pub data_dir: PathBuf,
    /// This server's name, e.g. Server0.
    #[arg(long, env = "WALSHARD_SERVER_NAME")]
    pub server_name: String,
    /// Shared secret; requests must carry `Authorization: Bearer <token>`.
    #[arg(long, env = "WALSHARD_TOKEN", hide_env_values = true)]
    pub token: String,
    /// WAL fsync policy.
    #[arg(long, env = "WALSHARD_WAL_FSYNC", value_enum, default_value = "always")]
    pub wal_fsync: Fsync,
    /// WAL segment size in bytes before rotation. Segments are preallocated with zeros (so an
    /// fdatasync flushes data only), so each shard uses at least this much disk, twice when the
    /// next segment is being prepared.
    #[arg(long, env = "WALSHARD_WAL_SEGMENT_BYTES", default_value_t = 16 << 20)]
    pub wal_segment_bytes: u64,
    /// Largest request body accepted (bytes); larger ones get 413.
    #[arg(long, env = "WALSHARD_MAX_BODY_BYTES", default_value_t = 16 << 20)]
    pub max_body_bytes: usize,
    /// MySQL connections in the pool.
    #[arg(long, env = "WALSHARD_MYSQL_POOL", default_value_t = 16)]
    pub mysql_pool: u32,
    /// Run under a control plane: shards start fenced and wait for an election instead of
    /// each being its own primary.
    #[arg(long, env = "WALSHARD_CONTROLLED", default_value_t = false)]
    pub controlled: bool,
    /// A secondary lagging more entries than this is resynced from a snapshot; a primary keeps
    /// this much WAL for lagging secondaries.
    #[arg(long, env = "WALSHARD_WAL_RETAIN_ENTRIES", default_value_t = 1_000_000)]
    pub wal_retain_entries: u64,
    /// Writes are refused at once (507 disk-full) while the data dir's volume has no more free
    /// bytes than this, so neither the WAL nor MySQL ever meets a full disk mid-write; 0 turns
    /// the check off.
    #[arg(long, env = "WALSHARD_DISK_RESERVE_BYTES", default_value_t = 64 << 20)]
    pub disk_reserve_bytes: u64,
    /// Log format.
    #[arg(long, env = "WALSHARD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Under a control plane: on SIGTERM, step every shard led here down to its most caught-up
    /// secondary and stop; a shard that cannot: keep serving until no shard here is primary
    /// (the control plane switches them over) or this many seconds passed, then stop.
    #[arg(long, env = "WALSHARD_SHUTDOWN_HANDOVER_SECONDS", default_value_t = 30)]
    pub shutdown_handover_seconds: u64,
    /// TLS: serve HTTPS, and trust the fleet's authority for the peers' URLs.
    #[command(flatten)]
    pub tls: walshard_contract::tls::TlsArgs,
    /// WAL archiving (docs/backup.md): off without a store.
    #[command(flatten)]
    pub backup: walshard_backup::args::StoreArgs,
    /// How often each shard's primary ships its committed entries to the backup store.
    #[arg(long, env = "WALSHARD_ARCHIVE_INTERVAL_MS", default_value_t = 1000)]
    pub archive_interval_ms: u64,
}

/// Waits until `leads()` is false, checking every `step`, for at most `bound`; `true` when it
/// became false in time.
pub async fn wait_for_handover(
    leads: impl Fn() -> bool,
    bound: std::time::Duration,
    step: std::time::Duration,
) -> bool {
    let until = tokio::time::Instant::now() + bound;
    loop {
        if !leads() {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(step).await;
    }
}

/// On SIGTERM: every shard this agent leads stops taking writes and steps down to its most
/// caught-up secondary ([`crate::shard::Shard::hand_over`]), all at once, within `bound`.
/// `true` when every one did: the agent then stops serving at once, the control plane's next
/// heartbeat is refused and its election promotes a replica that holds the whole log. `false`
/// (some shard could not hand over): the caller waits for the control plane as before.
pub async fn hand_over_all(agent: &Agent, bound: std::time::Duration) -> bool {
    let led: Vec<_> = agent
        .shards()
        .into_iter()
        .filter(|s| s.is_primary())
        .collect();
    if led.is_empty() {
        return true;
    }
    info!(shards = led.len(), "stepping down before stopping");
    let steps = led.iter().map(|shard| async move {
        let id = shard.id().to_string();
        match tokio::time::timeout(bound, shard.hand_over()).await {
            Ok(Ok(Some((to, last)))) => {
                info!(shard = %id, to, last, "handed over");
                true
            }
            Ok(Ok(None)) => true,
            Ok(Err(e)) => {
                tracing::warn!(shard = %id, error = %e, "could not hand over");
                false
            }
            Err(_) => {
                tracing::warn!(shard = %id, "hand-over timed out");
                false
            }
        }
    });
    futures::future::join_all(steps)
        .await
        .into_iter()
        .all(|done| done)
}

impl MySqlArgs {
    /// The MySQL endpoint: from --mysql-url, or from its parts with their defaults; the
    /// password from --mysql-password when given.
    pub fn endpoint(&self) -> Result<MySqlEndpoint, EndpointError> {
        let parts_given = self.mysql_host.is_some()
            || self.mysql_port.is_some()
            || self.mysql_socket.is_some()
            || self.mysql_user.is_some();
        let mut endpoint = match &self.mysql_url {
            Some(_) if parts_given => return Err(EndpointError::UrlAndParts),
            Some(url) => MySqlEndpoint::from_url(url)?,
            None => {
                let d = MySqlEndpoint::default();
                MySqlEndpoint {
                    host: self.mysql_host.clone().unwrap_or(d.host),
                    port: self.mysql_port.unwrap_or(d.port),
                    socket: self.mysql_socket.clone(),
                    user: self.mysql_user.clone().unwrap_or(d.user),
                    password: None,
                }
            }
        };
        if let Some(password) = &self.mysql_password {
            endpoint.password = Some(password.clone());
        }
        Ok(endpoint)
    }
}

impl Args {
    /// The MySQL endpoint ([`MySqlArgs::endpoint`]).
    pub fn mysql_endpoint(&self) -> Result<MySqlEndpoint, EndpointError> {
        self.mysql.endpoint()
    }
}

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(args: Args) -> anyhow::Result<()> {
    init_tracing(args.log_format, "info,sqlx=warn");
    if args.token.is_empty() {
        anyhow::bail!("WALSHARD_TOKEN must not be empty");
    }
    let wal = WalOptions {
        segment_bytes: args.wal_segment_bytes,
        fsync: match args.wal_fsync {
            Fsync::Always => FsyncPolicy::Always,
            Fsync::Never => FsyncPolicy::Never,
        },
        ..WalOptions::default()
    };
    let served = args
        .tls
        .server()
        .await
        .context("loading the TLS certificate")?;
    let trust = args.tls.trust().context("loading the TLS authority")?;
    let agent = Agent::open(AgentConfig {
        server_name: args.server_name.clone(),
        mysql: args.mysql_endpoint()?,
        data_dir: args.data_dir.clone(),
        wal,
        mysql_pool_size: args.mysql_pool,
        token: args.token.clone(),
        standalone: !args.controlled,
        retain_entries: args.wal_retain_entries,
        disk_reserve_bytes: args.disk_reserve_bytes,
        backup: args
            .backup
            .open()
            .context("opening the backup store")?
            .map(|store| crate::agent::BackupConfig {
                store,
                archive: crate::archive::ArchiveOptions {
                    interval: std::time::Duration::from_millis(args.archive_interval_ms.max(10)),
                    ..crate::archive::ArchiveOptions::default()
                },
            }),
        trust,
    })
    .await
    .context("starting the agent")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    info!(listen = %args.listen, server = %args.server_name, tls = served.is_some(), "serving");
    let app = api::router(agent.clone(), args.token.clone(), args.max_body_bytes);
    let stopping = {
        let agent = agent.clone();
        let controlled = args.controlled;
        let bound = std::time::Duration::from_secs(args.shutdown_handover_seconds);
        async move {
            shutdown_signal().await;
            if controlled && !hand_over_all(&agent, bound).await {
                let leads = || {
                    agent
                        .shards()
                        .iter()
                        .any(|s| s.status().role == crate::shard::Role::Primary)
                };
                if leads() {
                    info!(
                        bound_s = bound.as_secs(),
                        "waiting for the control plane to switch this server's primaries over"
                    );
                    let step = std::time::Duration::from_millis(100);
                    if wait_for_handover(leads, bound, step).await {
                        info!("no primary here any more: stopping");
                    } else {
                        tracing::warn!("still primary after the handover bound: stopping anyway");
                    }
                }
            }
        }
    };
    walshard_contract::tls::serve(listener, app, served, stopping)
        .await
        .context("serving HTTP")?;
    agent.shutdown().await;
    info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::wait_for_handover;

    #[tokio::test]
    async fn sigterm_waits_for_the_handover_within_its_bound() {
        let leading = Arc::new(AtomicBool::new(true));
        let flag = leading.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            flag.store(false, Ordering::SeqCst);
        });
        let started = tokio::time::Instant::now();
        let leads = || leading.load(Ordering::SeqCst);
        let step = Duration::from_millis(10);
        assert!(wait_for_handover(leads, Duration::from_secs(30), step).await);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(10));

        // Never handed over: stops at the bound.
        let started = tokio::time::Instant::now();
        assert!(!wait_for_handover(|| true, Duration::from_millis(200), step).await);
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(wait_for_handover(|| false, Duration::ZERO, step).await);
    }
}
