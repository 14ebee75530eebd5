//! The router's command line (flags and `WALSHARD_*` environment variables) and its `run`, shared
//! by the `walshard-router` binary and `walshard router`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tracing::info;
use walshard_contract::process::{LogFormat, init_tracing, shutdown_signal};

use crate::fleet::{FleetAdmin, FleetPrimaries, LocalFleetClient};
use crate::hashing::HashMode;
use crate::kube_mode::KubeFleet;
use crate::service::{self, RouterState};

/// The walshard router: the seed's load-balancer API over the fleet's shards and replicas.
#[derive(Parser, Debug, Clone)]
#[command(version)]
pub struct Args {
    /// Address and port to listen on.
    #[arg(long, env = "WALSHARD_LISTEN", default_value = "127.0.0.1:5000")]
    pub listen: SocketAddr,
    /// The control plane's API, e.g. http://127.0.0.1:5900 (local mode): the fleet's layout and
    /// primaries come from it, and it carries out `/init`, `/add` and `/rm`.
    #[arg(
        long,
        env = "WALSHARD_CONTROL_URL",
        required_unless_present = "kube_database",
        conflicts_with = "kube_database"
    )]
    pub control_url: Option<String>,
    /// Kubernetes mode, instead of `--control-url`: the `ShardedDatabase` this router serves.
    /// Its spec and status give the layout and primaries; `/init`, `/add` and `/rm` patch its
    /// spec.
    #[arg(long, env = "WALSHARD_KUBE_DATABASE")]
    pub kube_database: Option<String>,
    /// The `ShardedDatabase`'s namespace; default: the kube config's (a pod's own namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    pub kube_namespace: Option<String>,
    /// Kubernetes mode: how long `/init`, `/add` and `/rm` wait for the status to show the
    /// change before answering (the change proceeds either way).
    #[arg(long, env = "WALSHARD_KUBE_SETTLE_SECONDS", default_value_t = 120)]
    pub kube_settle_seconds: u64,
    /// The cluster token: sent to the agents and to the control plane.
    #[arg(long, env = "WALSHARD_TOKEN", hide_env_values = true)]
    pub token: String,
    /// If set, clients must send `Authorization: Bearer <api-token>` (all but `/metrics`).
    #[arg(long, env = "WALSHARD_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Token the administrative endpoints (`/init`, `/add`, `/rm`) require instead; reads and
    /// writes stay as `--api-token` says.
    #[arg(long, env = "WALSHARD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
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
    /// TLS: the fleet's authority for the agents' and control API's `https://` URLs; with a
    /// certificate, the router's own API is served over HTTPS too.
    #[command(flatten)]
    pub tls: walshard_contract::tls::TlsArgs,
}

/// Runs the router until SIGTERM or SIGINT.
pub async fn run(args: Args) -> anyhow::Result<()> {
    init_tracing(args.log_format, "info");
    if args.token.is_empty() {
        anyhow::bail!("WALSHARD_TOKEN must not be empty");
    }
    let trust = args.tls.trust().context("loading the TLS authority")?;
    let served = args
        .tls
        .server()
        .await
        .context("loading the TLS certificate")?;
    let (control, source, watch): (Arc<dyn FleetAdmin>, String, _) =
        match (&args.control_url, &args.kube_database) {
            (Some(url), _) => (
                Arc::new(LocalFleetClient::trusting(url, &args.token, trust.clone())?),
                url.clone(),
                None,
            ),
            (None, Some(db)) => {
                let client = kube::Client::try_default()
                    .await
                    .context("connecting to the Kubernetes API")?;
                let namespace = args
                    .kube_namespace
                    .clone()
                    .filter(|n| !n.trim().is_empty())
                    .unwrap_or_else(|| client.default_namespace().to_owned());
                let settle = Duration::from_secs(args.kube_settle_seconds);
                let (control, task) = KubeFleet::start(client, &namespace, db, settle);
                (
                    control as Arc<dyn FleetAdmin>,
                    format!("ShardedDatabase {namespace}/{db}"),
                    Some(task),
                )
            }
            (None, None) => anyhow::bail!("set --control-url or --kube-database"),
        };
    let primaries = Arc::new(FleetPrimaries::default());
    let mut state = RouterState::with_control(
        control.clone(),
        primaries.clone(),
        args.hash_mode,
        args.token.clone(),
    )?;
    if let Some(ca) = trust {
        state.trust_authority(ca)?;
    }
    if let Some(t) = args.api_token.as_ref().filter(|t| !t.is_empty()) {
        state.require_api_token(t.clone());
    }
    if let Some(t) = args.admin_token.as_ref().filter(|t| !t.is_empty()) {
        state.require_admin_token(t.clone());
    }
    let follower = tokio::spawn(service::follow(
        control,
        state.clone(),
        primaries,
        args.hash_mode,
    ));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    info!(listen = %args.listen, control = %source, hash = %args.hash_mode, tls = served.is_some(), "serving");
    let app = service::router(state, args.max_body_bytes);
    walshard_contract::tls::serve(listener, app, served, shutdown_signal())
        .await
        .context("serving HTTP")?;
    follower.abort();
    if let Some(task) = watch {
        task.abort();
    }
    info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(["walshard-router", "--token", "t"].iter().chain(args))
    }

    #[test]
    fn one_control_plane_is_required() {
        let local = parse(&["--control-url", "http://127.0.0.1:5900"]).expect("local mode");
        assert_eq!(local.control_url.as_deref(), Some("http://127.0.0.1:5900"));
        let kube = parse(&["--kube-database", "studt", "--kube-namespace", "db"]).expect("kube");
        assert_eq!(kube.kube_database.as_deref(), Some("studt"));
        assert_eq!(kube.kube_namespace.as_deref(), Some("db"));
        assert_eq!(kube.kube_settle_seconds, 120);
        assert!(parse(&[]).is_err(), "neither");
        assert!(
            parse(&["--control-url", "http://x", "--kube-database", "studt"]).is_err(),
            "both"
        );
    }
}
