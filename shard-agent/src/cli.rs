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

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Fsync {
    /// fdatasync once per group commit: an acknowledged write survives power loss.
    Always,
    /// No fsync: survives a process crash, not an OS crash or power loss.
    Never,
}

/// The walshard shard agent: seed server API, per-shard WAL, MySQL store.
#[derive(Parser, Debug, Clone)]
#[command(version)]
pub struct Args {
    /// Address and port to listen on.
    #[arg(long, env = "WALSHARD_LISTEN", default_value = "127.0.0.1:5001")]
    pub listen: SocketAddr,
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
    /// Log format.
    #[arg(long, env = "WALSHARD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl Args {
    /// The MySQL endpoint: from --mysql-url, or from its parts with their defaults; the
    /// password from --mysql-password when given.
    pub fn mysql_endpoint(&self) -> Result<MySqlEndpoint, EndpointError> {
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
    let agent = Agent::open(AgentConfig {
        server_name: args.server_name.clone(),
        mysql: args.mysql_endpoint()?,
        data_dir: args.data_dir.clone(),
        wal,
        mysql_pool_size: args.mysql_pool,
        token: args.token.clone(),
        standalone: !args.controlled,
        retain_entries: args.wal_retain_entries,
    })
    .await
    .context("starting the agent")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    info!(listen = %args.listen, server = %args.server_name, "serving");
    let app = api::router(agent.clone(), args.token.clone(), args.max_body_bytes);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")?;
    agent.shutdown().await;
    info!("stopped");
    Ok(())
}
