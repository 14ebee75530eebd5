//! `walshard-agent`: the shard agent binary. Configured by flags or the matching environment
//! variables (containers use the environment).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use tokio::signal::unix::{SignalKind, signal};
use tracing::info;
use walshard_agent::agent::{Agent, AgentConfig};
use walshard_agent::api;
use walshard_agent::wal::{FsyncPolicy, WalOptions};

/// mimalloc: the request path allocates a lot across threads; glibc malloc cost ~14% of the
/// agent's CPU under load (measured with perf), mimalloc much less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Fsync {
    /// fdatasync once per group commit: an acknowledged write survives power loss.
    Always,
    /// No fsync: survives a process crash, not an OS crash or power loss.
    Never,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The walshard shard agent: seed server API, per-shard WAL, MySQL store.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address and port to listen on.
    #[arg(long, env = "WALSHARD_LISTEN", default_value = "127.0.0.1:5001")]
    listen: SocketAddr,
    /// MySQL server URL, e.g. mysql://root@127.0.0.1:3306 (the agent creates its database).
    #[arg(long, env = "WALSHARD_MYSQL_URL")]
    mysql_url: String,
    /// Directory for the WAL and local state.
    #[arg(long, env = "WALSHARD_DATA_DIR")]
    data_dir: PathBuf,
    /// This server's name, e.g. Server0.
    #[arg(long, env = "WALSHARD_SERVER_NAME")]
    server_name: String,
    /// Shared secret; requests must carry `Authorization: Bearer <token>`.
    #[arg(long, env = "WALSHARD_TOKEN", hide_env_values = true)]
    token: String,
    /// WAL fsync policy.
    #[arg(long, env = "WALSHARD_WAL_FSYNC", value_enum, default_value = "always")]
    wal_fsync: Fsync,
    /// WAL segment size in bytes before rotation. Segments are preallocated with zeros (so an
    /// fdatasync flushes data only), so each shard uses at least this much disk, twice when the
    /// next segment is being prepared.
    #[arg(long, env = "WALSHARD_WAL_SEGMENT_BYTES", default_value_t = 16 << 20)]
    wal_segment_bytes: u64,
    /// Largest request body accepted (bytes); larger ones get 413.
    #[arg(long, env = "WALSHARD_MAX_BODY_BYTES", default_value_t = 16 << 20)]
    max_body_bytes: usize,
    /// MySQL connections in the pool.
    #[arg(long, env = "WALSHARD_MYSQL_POOL", default_value_t = 16)]
    mysql_pool: u32,
    /// Run under a control plane: shards start fenced and wait for an election instead of
    /// each being its own primary.
    #[arg(long, env = "WALSHARD_CONTROLLED", default_value_t = false)]
    controlled: bool,
    /// A secondary lagging more entries than this is resynced from a snapshot; a primary keeps
    /// this much WAL for lagging secondaries.
    #[arg(long, env = "WALSHARD_WAL_RETAIN_ENTRIES", default_value_t = 1_000_000)]
    wal_retain_entries: u64,
    /// Log format.
    #[arg(long, env = "WALSHARD_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn shutdown_signal() {
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => info!("SIGTERM: shutting down"),
                _ = int.recv() => info!("SIGINT: shutting down"),
            }
        }
        _ => std::future::pending::<()>().await,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing(args.log_format);
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
        mysql_url: args.mysql_url.clone(),
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
