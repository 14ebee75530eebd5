//! What every walshard process shares (feature `process`): the log format flag, tracing setup,
//! the shutdown signal, and the environment its servers start with.

use clap::ValueEnum;
use tracing::info;

/// Log output format of a walshard process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

/// The environment every long-running walshard server process (agent, router) starts with, set
/// by whatever launches it (`walshard up`, the operator's pods). mimalloc keeps the pages a
/// request freed instead of returning them to the OS 10 ms later: faulting them back in cost the
/// agents and the router 5–10 % of their CPU per request (docs/benchmarks.md). The price: a
/// process keeps its peak heap.
pub const SERVER_ENV: [(&str, &str); 1] = [("MIMALLOC_PURGE_DELAY", "-1")];

/// Installs the global tracing subscriber: `RUST_LOG` if set, else `default_filter`.
pub fn init_tracing(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // A second call (e.g. two components in one test process) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Completes on the first SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
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
