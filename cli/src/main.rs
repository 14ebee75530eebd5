//! `walshard`: the user CLI. `up` runs a whole fleet on this machine, `status` and `down` talk to
//! a running one, `bench` reproduces the seed's analysis, `agent` / `router` run those
//! processes (the local fleet starts them through this same binary), and `crd` prints the CRD.

use clap::{Parser, Subcommand};

/// mimalloc: see the agent's binary (the same request path runs under `walshard agent`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a fleet on this machine (MariaDB + agent per server, control plane, router) in the
    /// foreground until Ctrl-C; state persists in the data dir.
    Up(walshard_cli::local::UpArgs),
    /// Print servers, shards, primaries, epochs and lag of a running local fleet.
    Status(walshard_cli::local::StatusArgs),
    /// Stop a running local fleet.
    Down(walshard_cli::local::DownArgs),
    /// Planned switchover of a shard's primary on a running local fleet: `sh1=Server2`.
    Switchover(walshard_cli::local::SwitchoverArgs),
    /// The seed's analysis (A-1..A-3): 10,000 writes and 10,000 reads per configuration,
    /// against a direct-MariaDB baseline measured in the same run.
    Bench(walshard_cli::bench::BenchArgs),
    /// Run a shard agent (what `up` starts per server).
    Agent(walshard_agent::cli::Args),
    /// Rebuild one server of a new fleet from a backup store (the restore init container of a
    /// Kubernetes server pod; `walshard-agent restore-server` in the agent image).
    RestoreServer(walshard_agent::restore_server::RestoreServerArgs),
    /// Run a router (what `up` starts).
    Router(walshard_router::cli::Args),
    /// Base backups of a local fleet and the contents of a backup store (docs/backup.md).
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Build a new local fleet data dir from a backup store: to the latest point, a time, LSNs
    /// or one base backup; then `walshard up --data-dir NEW` serves it.
    Restore(walshard_cli::backup::restore::RestoreArgs),
    /// Print a CRD (YAML): ShardedDatabase (crds/shardeddatabases.walshard.io.yaml) or
    /// ShardedDatabaseBackup (crds/shardeddatabasebackups.walshard.io.yaml).
    Crd {
        /// Which kind's CRD.
        #[arg(value_enum, default_value = "ShardedDatabase")]
        kind: CrdKind,
    },
}

/// The kinds `walshard crd` prints.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum CrdKind {
    /// The database.
    #[value(name = "ShardedDatabase")]
    ShardedDatabase,
    /// A base backup of a database.
    #[value(name = "ShardedDatabaseBackup")]
    ShardedDatabaseBackup,
}

#[derive(Subcommand, Debug)]
enum BackupCommand {
    /// Take a base backup of the running fleet now and print its id.
    Create(walshard_cli::backup::create::CreateArgs),
    /// Print the backups and the restorable time range of a store.
    List(ListArgs),
}

#[derive(clap::Args, Debug)]
struct ListArgs {
    #[command(flatten)]
    store: walshard_backup::args::StoreArgs,
}

/// A backup command's failure: its message and machine-readable code, exit status 1.
fn backup_result(r: Result<(), walshard_cli::backup::BackupCliError>) -> anyhow::Result<()> {
    r.map_err(|e| anyhow::anyhow!("{e} [{}]", e.code()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Up(args) => walshard_cli::local::up(args).await,
        Command::Status(args) => walshard_cli::local::status(args).await,
        Command::Down(args) => walshard_cli::local::down(args).await,
        Command::Switchover(args) => walshard_cli::local::switchover(args).await,
        Command::Bench(args) => walshard_cli::bench::run(args).await,
        Command::Agent(args) => walshard_agent::cli::run(args).await,
        Command::Router(args) => walshard_router::cli::run(args).await,
        Command::RestoreServer(args) => walshard_agent::restore_server::run(args).await,
        Command::Backup(BackupCommand::Create(args)) => {
            backup_result(walshard_cli::backup::create::create(args).await)
        }
        Command::Backup(BackupCommand::List(args)) => backup_result(
            async {
                let store = args.store.open()?.ok_or_else(|| {
                    walshard_cli::backup::BackupCliError::Usage(
                        "--backup-store URL is required".into(),
                    )
                })?;
                print!("{}", walshard_cli::backup::list::render(&store).await?);
                Ok(())
            }
            .await,
        ),
        Command::Restore(args) => backup_result(walshard_cli::backup::restore::restore(args).await),
        Command::Crd { kind } => {
            let yaml = match kind {
                CrdKind::ShardedDatabase => walshard_k8s_api::spec::crd_yaml()?,
                CrdKind::ShardedDatabaseBackup => walshard_k8s_api::backup::crd_yaml()?,
            };
            print!("{yaml}");
            Ok(())
        }
    }
}
