//! `walshard-operator`: the Kubernetes operator of walshard; see [`Args`] for its flags and
//! environment, operator/README.md ("Operator binary") for what it runs.
//!
//! One process: `/metrics` and `/healthz` from the start; the leader election on the Lease
//! `walshard-operator`; while leading, the `ShardedDatabase` Controller, the backup controllers
//! (`ShardedDatabaseBackup` requests, schedules, `status.backup`) and every database's
//! control plane. Losing the Lease stops both (and the process campaigns again); SIGTERM stops
//! both, releases the Lease, then ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use clap::Parser;
use kube::Client;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rand::distr::{Alphanumeric, SampleString};
use thiserror::Error;
use tokio::sync::watch;
use tracing::{info, warn};
use walshard_contract::process::{LogFormat, init_tracing, shutdown_signal};
use walshard_operator::k8s::backups::{self, BackupContext, BackupMetrics, BackupSettings};
use walshard_operator::k8s::hosting::HostedPlanes;
use walshard_operator::k8s::leader::{LEASE_NAME, LeaderConfig, LeaderConfigError, LeaderElector};
use walshard_operator::k8s::objects::Images;
use walshard_operator::k8s::reconcile::{self, Context, ReconcileMetrics};

/// How long reconciliations under way may take to finish once the controller is told to stop
/// (the chart gives the pod 30 s after SIGTERM; the Lease must still be released after this).
const STOP_GRACE: Duration = Duration::from_secs(10);

const PULL_POLICIES: [&str; 3] = ["Always", "IfNotPresent", "Never"];

/// The walshard operator: reconciles `ShardedDatabase`s (walshard.io/v1alpha1) into StatefulSets,
/// Services, a router Deployment and a control plane per database.
#[derive(Parser, Debug)]
#[command(name = "walshard-operator", version)]
struct Args {
    /// Address of `/metrics` (Prometheus) and `/healthz`.
    #[arg(long, env = "WALSHARD_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Namespaces whose ShardedDatabases to manage, comma-separated; empty: every namespace.
    #[arg(
        long,
        env = "WALSHARD_WATCH_NAMESPACE",
        default_value = "",
        value_delimiter = ','
    )]
    watch_namespace: Vec<String>,
    /// The agent image of the server pods.
    #[arg(long, env = "WALSHARD_AGENT_IMAGE", default_value = concat!("walshard/agent:", env!("CARGO_PKG_VERSION")))]
    agent_image: String,
    /// The router image.
    #[arg(long, env = "WALSHARD_ROUTER_IMAGE", default_value = concat!("walshard/router:", env!("CARGO_PKG_VERSION")))]
    router_image: String,
    /// Pull policy of the agent image (Kubernetes' default when unset).
    #[arg(long, env = "WALSHARD_AGENT_IMAGE_PULL_POLICY", value_parser = PULL_POLICIES)]
    agent_image_pull_policy: Option<String>,
    /// Pull policy of the router image; the operator applies one policy to both images, so it
    /// must equal the agent's when both are set.
    #[arg(long, env = "WALSHARD_ROUTER_IMAGE_PULL_POLICY", value_parser = PULL_POLICIES)]
    router_image_pull_policy: Option<String>,
    /// This replica's identity in the Lease and in Events (the pod name).
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// Name of the leader-election Lease (the chart: the release's full name, so two releases in
    /// one namespace elect separately).
    #[arg(long, env = "WALSHARD_LEASE_NAME", default_value = LEASE_NAME)]
    lease_name: String,
    /// Namespace of the Lease (the operator's own); the client's default namespace when unset.
    #[arg(long, env = "POD_NAMESPACE")]
    pod_namespace: Option<String>,
    /// Log format.
    #[arg(long, env = "WALSHARD_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// A database's `ArchiveLagging` condition turns True when some shard's WAL archive has been
    /// incomplete longer than this many seconds.
    #[arg(long, env = "WALSHARD_ARCHIVE_LAG_SECONDS", default_value_t = 300)]
    archive_lag_seconds: u64,
}

#[derive(Debug, Error)]
enum StartError {
    #[error("connecting to the Kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    #[error("binding the metrics address {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("leader election timings: {0}")]
    Leader(#[from] LeaderConfigError),
    #[error("the agents' HTTP client: {0}")]
    Client(#[from] walshard_contract::http_client::ClientError),
    #[error(
        "WALSHARD_AGENT_IMAGE_PULL_POLICY ({agent}) and WALSHARD_ROUTER_IMAGE_PULL_POLICY ({router}) differ; the operator applies one policy to both images"
    )]
    PullPolicies { agent: String, router: String },
    #[error("{0} must not be empty")]
    EmptyImage(&'static str),
}

impl Args {
    fn images(&self) -> Result<Images, StartError> {
        if self.agent_image.trim().is_empty() {
            return Err(StartError::EmptyImage("WALSHARD_AGENT_IMAGE"));
        }
        if self.router_image.trim().is_empty() {
            return Err(StartError::EmptyImage("WALSHARD_ROUTER_IMAGE"));
        }
        let pull_policy = match (
            &self.agent_image_pull_policy,
            &self.router_image_pull_policy,
        ) {
            (Some(agent), Some(router)) if agent != router => {
                return Err(StartError::PullPolicies {
                    agent: agent.clone(),
                    router: router.clone(),
                });
            }
            (agent, router) => agent.clone().or_else(|| router.clone()),
        };
        Ok(Images {
            agent: self.agent_image.clone(),
            router: self.router_image.clone(),
            pull_policy,
        })
    }

    /// The watched namespaces, trimmed, without empty entries (none: all).
    fn namespaces(&self) -> Vec<String> {
        self.watch_namespace
            .iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect()
    }

    /// The Lease holder identity: the pod name, else a random one.
    fn identity(&self) -> String {
        match self.pod_name.as_deref().map(str::trim) {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => format!(
                "walshard-operator-{}",
                Alphanumeric
                    .sample_string(&mut rand::rng(), 8)
                    .to_lowercase()
            ),
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    init_tracing(args.log_format, "info");
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "walshard-operator failed");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), StartError> {
    let images = args.images()?;
    let namespaces = args.namespaces();
    let identity = args.identity();

    let mut registry = Registry::default();
    let metrics = ReconcileMetrics::new(&mut registry);
    let leader_gauge = Gauge::<i64>::default();
    registry
        .sub_registry_with_prefix("walshard_operator")
        .register(
            "leader",
            "1 while this replica holds the leader Lease and runs the controller",
            leader_gauge.clone(),
        );

    let client = Client::try_default().await.map_err(StartError::Kube)?;
    let lease_namespace = args
        .pod_namespace
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let fleet = HostedPlanes::new(client.clone(), &mut registry)?;
    let backup_ctx = Arc::new(BackupContext::new(
        client.clone(),
        fleet.clone(),
        Some(identity.clone()),
        BackupMetrics::new(&mut registry),
        BackupSettings {
            archive_lag: Duration::from_secs(args.archive_lag_seconds),
            ..BackupSettings::default()
        },
    ));
    let ctx = Arc::new(Context::new(
        client.clone(),
        fleet,
        images,
        Some(identity.clone()),
        metrics,
    ));

    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: args.metrics_addr,
            source,
        })?;
    let (shutdown_tx, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        shutdown_tx.send_replace(true);
    });
    let server = tokio::spawn({
        let app = http_routes(Arc::new(registry));
        let mut until = shutdown.clone();
        async move {
            let stopped = async move {
                let _ = until.wait_for(|s| *s).await;
            };
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
            {
                warn!(%error, "metrics server");
            }
        }
    });
    info!(
        metrics = %args.metrics_addr,
        %identity,
        lease = %format!("{lease_namespace}/{LEASE_NAME}"),
        namespaces = ?namespaces,
        "walshard-operator started"
    );

    let elector = LeaderElector::new(client, &lease_namespace, identity, LeaderConfig::default())?
        .with_lease_name(args.lease_name.clone());
    let (leading_tx, leading) = watch::channel(false);
    let election = tokio::spawn({
        let mut until = shutdown.clone();
        elector.run(leading_tx, async move {
            let _ = until.wait_for(|s| *s).await;
        })
    });

    lead_while_elected(
        &ctx,
        &backup_ctx,
        &namespaces,
        leading,
        shutdown,
        &leader_gauge,
    )
    .await;

    // The election task releases the Lease once it sees the shutdown.
    if tokio::time::timeout(Duration::from_secs(5), election)
        .await
        .is_err()
    {
        warn!("the leader election did not stop in time");
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    info!("walshard-operator stopped");
    Ok(())
}

/// Runs the controller whenever this replica leads, until shutdown.
async fn lead_while_elected(
    ctx: &Arc<Context<HostedPlanes>>,
    backup_ctx: &Arc<BackupContext<HostedPlanes>>,
    namespaces: &[String],
    mut leading: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
    leader_gauge: &Gauge<i64>,
) {
    loop {
        tokio::select! {
            elected = leading.wait_for(|l| *l) => if elected.is_err() { return },
            _ = shutdown.wait_for(|s| *s) => return,
        }
        leader_gauge.set(1);
        info!("leading: starting the controller");
        let stop = {
            let mut leading = leading.clone();
            let mut shutdown = shutdown.clone();
            async move {
                tokio::select! {
                    _ = leading.wait_for(|l| !*l) => {}
                    _ = shutdown.wait_for(|s| *s) => {}
                }
            }
        };
        let (stopping_tx, mut stopping) = watch::channel(false);
        let backups_stop = {
            let mut stopping = stopping.clone();
            async move {
                let _ = stopping.wait_for(|s| *s).await;
            }
        };
        let controller = async {
            futures::join!(
                reconcile::run(ctx.clone(), namespaces, async move {
                    stop.await;
                    stopping_tx.send_replace(true);
                }),
                backups::run(backup_ctx.clone(), namespaces, backups_stop),
            );
        };
        tokio::select! {
            () = controller => {}
            () = async {
                let _ = stopping.wait_for(|s| *s).await;
                tokio::time::sleep(STOP_GRACE).await;
            } => warn!(grace = ?STOP_GRACE, "reconciliations still running after the grace: cancelled"),
        }
        ctx.stop_control_planes().await;
        // Also any whose `ensure` failed half-way.
        ctx.fleet().shutdown().await;
        leader_gauge.set(0);
        if *shutdown.borrow() {
            return;
        }
        warn!("lost the leader Lease: controller and control planes stopped; campaigning again");
    }
}

fn http_routes(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(registry)
}

async fn metrics(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("encoding metrics: {error}\n"),
        ),
    }
}
