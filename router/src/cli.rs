//! The router's command line (flags and `WALSHARD_*` environment variables) and its `run`, shared
//! by the `walshard-router` binary and `walshard router`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tracing::info;
use walshard_contract::process::{LogFormat, init_tracing, shutdown_signal};

use crate::fleet::{self, ControlClient, FleetPrimaries};
use crate::hashing::HashMode;
use crate::service::{self, RouterState};

/// The walshard router: the seed's load-balancer API over the fleet's shards and replicas.
#[derive(Parser, Debug, Clone)]
#[command(version)]
pub struct Args {
    /// Address and port to listen on.
    #[arg(long, env = "WALSHARD_LISTEN", default_value = "127.0.0.1:5000")]
    pub listen: SocketAddr,
    /// The control plane's API, e.g. http://127.0.0.1:5900: the fleet's layout and primaries
    /// come from it, and it carries out `/init`, `/add` and `/rm`.
    #[arg(long, env = "WALSHARD_CONTROL_URL")]
    pub control_url: String,
    /// The cluster token: sent to the agents and to the control plane.
    #[arg(long, env = "WALSHARD_TOKEN", hide_env_values = true)]
    pub token: String,
    /// If set, clients must send `Authorization: Bearer <api-token>` (all but `/metrics`).
    #[arg(long, env = "WALSHARD_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// How eventual reads pick a shard's replica: `default` (rendezvous hashing, XXH3) or
    /// `seed` (the seed's 512-slot ring with 9 virtual nodes per server).
    #[arg(long, env = "WALSHARD_HASH_MODE", default_value = "default")]
    pub hash_mode: HashMode,
    /// Largest request body accepted (bytes); larger ones get 413.
    #[arg(long, env = "WALSHARD_MAX_BODY_BYTES", default_value_t = 16 << 20)]
    pub max_body_bytes: usize,
    /// Log format.
    #[arg(long, env = "WALSHARD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// Runs the router until SIGTERM or SIGINT.
pub async fn run(args: Args) -> anyhow::Result<()> {
    init_tracing(args.log_format, "info");
    if args.token.is_empty() {
        anyhow::bail!("WALSHARD_TOKEN must not be empty");
    }
    let client = ControlClient::new(&args.control_url, &args.token);
    let primaries = Arc::new(FleetPrimaries::default());
    let mut state = RouterState::with_control(
        client.clone(),
        primaries.clone(),
        args.hash_mode,
        args.token.clone(),
    );
    if let Some(t) = args.api_token.as_ref().filter(|t| !t.is_empty()) {
        state.require_api_token(t.clone());
    }
    let follower = tokio::spawn(fleet::follow(
        client,
        state.clone(),
        primaries,
        args.hash_mode,
    ));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    info!(listen = %args.listen, control = %args.control_url, hash = %args.hash_mode, "serving");
    axum::serve(listener, service::router(state, args.max_body_bytes))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")?;
    follower.abort();
    info!("stopped");
    Ok(())
}
