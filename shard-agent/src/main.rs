//! `walshard-agent`: the shard agent binary. Configured by flags or the matching environment
//! variables (containers use the environment); see [`walshard_agent::cli::Args`].

use clap::Parser;

/// mimalloc: the request path allocates a lot across threads; glibc malloc cost ~14% of the
/// agent's CPU under load (measured with perf), mimalloc much less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    walshard_agent::cli::run(walshard_agent::cli::Args::parse()).await
}
