//! `walshard-router`: the router binary; see [`walshard_router::cli::Args`].

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    walshard_router::cli::run(walshard_router::cli::Args::parse()).await
}
