//! `walshard-agent`: the shard agent binary. Configured by flags or the matching environment
//! variables (containers use the environment); see [`walshard_agent::cli::Args`].

use clap::Parser;

/// mimalloc: the request path allocates a lot across threads; glibc malloc cost ~14% of the
/// agent's CPU under load (measured with perf), mimalloc much less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `walshard-agent restore-server …` rebuilds a server from a backup store (the restore init
/// container); any other command line runs the agent.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "restore-server") {
        args.remove(1);
        args[0] = "walshard-agent restore-server".into();
        return walshard_agent::restore_server::run(
            walshard_agent::restore_server::RestoreServerArgs::parse_from(args),
        )
        .await;
    }
    walshard_agent::cli::run(walshard_agent::cli::Args::parse_from(args)).await
}
