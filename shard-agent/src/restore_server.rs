//! `walshard-agent restore-server` (also `walshard restore-server`): one server of a new fleet
//! rebuilt from a backup store, before its agent starts. On Kubernetes it is the restore init
//! container of every server pod of a `ShardedDatabase` with `spec.restore` (MySQL already runs
//! beside it as a sidecar); it reads its settings from the same `WALSHARD_*` environment as the
//! agent.
//!
//! Only when the agent's data dir holds no state yet (`state.json`, written last by a restore and
//! by every configured agent): a pod that restarts, or whose server already serves, is left
//! alone. Otherwise: the layout (`--layout`, the seed's `/init` body the operator writes into the
//! `<db>-restore` ConfigMap) names this server's shards; the store's plan for the target (latest,
//! `--to-time`, `--backup`) must hold every one of them with the same key range and the same
//! schema as the layout; each shard is rebuilt in MySQL from its base copy and archived chunks
//! ([`restore_shards`], every object checked, a damaged or missing one an error naming it), and
//! the agent's data dir is prepared at the restored point. A server the layout gives no shard
//! has nothing to restore (the control plane configures it later).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde_json::Value as Json;
use tracing::{info, warn};
use walshard_backup::args::StoreArgs;
use walshard_backup::target::TargetError;
use walshard_backup::{PlanError, StoreError, Target, plan_restore};
use walshard_contract::process::LogFormat;
use walshard_contract::{Backoff, Schema, ShardSpec};

use crate::cli::MySqlArgs;
use crate::mysql::EndpointError;
use crate::restore::{RestoreError, restore_shards};
use crate::state::StateFile;
use crate::store::{Store, StoreError as MySqlError};
use crate::wal::{Epoch, Lsn, WalOptions};

/// Rebuilds this server's shards from a backup store into MySQL and the agent's data dir.
#[derive(Parser, Debug, Clone)]
#[command(name = "walshard-agent restore-server", version)]
pub struct RestoreServerArgs {
    /// The agent's data dir: restored only when it holds no `state.json` yet.
    #[arg(long, env = "WALSHARD_DATA_DIR")]
    pub data_dir: PathBuf,
    /// This server's name, e.g. Server0.
    #[arg(long, env = "WALSHARD_SERVER_NAME")]
    pub server_name: String,
    /// The fleet's layout: a JSON file with the seed's `/init` body (schema, shards, servers).
    #[arg(long, env = "WALSHARD_RESTORE_LAYOUT")]
    pub layout: PathBuf,
    /// The store to restore from.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Restore exactly this base backup.
    #[arg(long, env = "WALSHARD_RESTORE_BACKUP", conflicts_with = "to_time")]
    pub backup: Option<String>,
    /// Restore to this moment (RFC 3339).
    #[arg(long, env = "WALSHARD_RESTORE_TO_TIME")]
    pub to_time: Option<String>,
    /// The MySQL server to restore into.
    #[command(flatten)]
    pub mysql: MySqlArgs,
    /// How long to wait for MySQL to accept connections (it may still be initializing).
    #[arg(long, env = "WALSHARD_MYSQL_WAIT_SECONDS", default_value_t = 600)]
    pub mysql_wait_seconds: u64,
    /// Log format.
    #[arg(long, env = "WALSHARD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// Why a server could not be restored; [`RestoreServerError::code`] classifies it. Every
/// message names the object, shard or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum RestoreServerError {
    /// The layout file cannot be read or parsed.
    #[error("layout {path}: {reason}")]
    Layout {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The backup's fleet does not match the layout (another schema, or other key ranges).
    #[error("backup {backup} does not match this database: {reason}")]
    Mismatch {
        /// The backup's id.
        backup: String,
        /// The difference.
        reason: String,
    },
    /// The restore target's text.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// No store was named.
    #[error("no backup store: set --backup-store (WALSHARD_BACKUP_STORE)")]
    NoStore,
    /// The store failed, or an object is missing or damaged.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No plan reaches the target (or a chunk is missing).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The MySQL endpoint flags.
    #[error("MySQL endpoint: {0}")]
    Endpoint(#[from] EndpointError),
    /// MySQL did not accept connections in time.
    #[error("MySQL did not accept connections within {seconds} s: {source}")]
    MySql {
        /// The wait.
        seconds: u64,
        /// The last connection error.
        source: MySqlError,
    },
    /// Restoring a shard failed.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// The data dir cannot be inspected.
    #[error("data dir {path}: {reason}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}

impl RestoreServerError {
    /// A machine-readable code (`walshard restore`'s codes where they apply).
    pub fn code(&self) -> &'static str {
        match self {
            RestoreServerError::Layout { .. } | RestoreServerError::Target(_) => "invalid-request",
            RestoreServerError::NoStore => "invalid-request",
            RestoreServerError::Mismatch { .. } => "restore-layout-mismatch",
            RestoreServerError::Store(e) => e.code(),
            RestoreServerError::Plan(PlanError::Gap { .. }) => "backup-object-missing",
            RestoreServerError::Plan(_) => "restore-target-unreachable",
            RestoreServerError::Endpoint(_) => "invalid-request",
            RestoreServerError::MySql { .. } => "mysql-unavailable",
            RestoreServerError::Restore(e) => e.code(),
            RestoreServerError::DataDir { .. } => "data-dir-unwritable",
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreOutcome {
    /// The data dir already held the agent's state: nothing was touched.
    AlreadyHeld,
    /// The layout gives this server no shard.
    NothingToRestore,
    /// These shards were restored from this backup, each to `(epoch, LSN)`.
    Restored {
        /// The base backup restored from.
        backup: String,
        /// Each shard and where it ended.
        shards: Vec<(String, (Epoch, Lsn))>,
    },
}

/// A fleet's layout, from the seed's `/init` body.
#[derive(Debug, Clone, PartialEq)]
pub struct InitLayout {
    /// The table.
    pub schema: Schema,
    /// Every shard's range.
    pub shards: Vec<ShardSpec>,
    /// Server → the shards it holds.
    pub servers: std::collections::BTreeMap<String, Vec<String>>,
}

impl InitLayout {
    /// Reads `{"schema", "shards": [{"<key>_low", "Shard_id", "Shard_size"}], "servers"}`.
    pub fn parse(body: &Json) -> Result<InitLayout, String> {
        let schema: Schema =
            serde_json::from_value(body["schema"].clone()).map_err(|e| format!("schema: {e}"))?;
        let key = schema.key().as_str().to_owned();
        let shards = body["shards"]
            .as_array()
            .ok_or("shards: not a list")?
            .iter()
            .map(|s| ShardSpec::from_json(&key, s).map_err(|e| format!("shards: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let servers = match body.get("servers") {
            None | Some(Json::Null) => Default::default(),
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| format!("servers: {e}"))?,
        };
        Ok(InitLayout {
            schema,
            shards,
            servers,
        })
    }

    /// The ranges of `server`'s shards; an error names a shard without a range.
    pub fn held_by(&self, server: &str) -> Result<Vec<ShardSpec>, String> {
        self.servers
            .get(server)
            .into_iter()
            .flatten()
            .map(|id| {
                self.shards
                    .iter()
                    .find(|s| s.id.as_str() == id)
                    .cloned()
                    .ok_or_else(|| format!("server {server} holds shard {id}, which has no range"))
            })
            .collect()
    }
}

/// Whether the agent's data dir already holds its state (a restore happened, or the agent ran).
pub fn holds_state(data_dir: &Path) -> Result<bool, RestoreServerError> {
    let state = StateFile::new(data_dir);
    match std::fs::metadata(state.path()) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(RestoreServerError::DataDir {
            path: data_dir.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// The backup's fleet against the layout: the same schema, and every shard this server holds
/// with the same range.
fn check_match(
    backup: &str,
    fleet: &Json,
    layout: &InitLayout,
    held: &[ShardSpec],
) -> Result<(), RestoreServerError> {
    let mismatch = |reason: String| RestoreServerError::Mismatch {
        backup: backup.to_owned(),
        reason,
    };
    let config = fleet
        .get("config")
        .filter(|c| !c.is_null())
        .ok_or_else(|| mismatch("its manifest holds no fleet configuration".into()))?;
    let theirs =
        InitLayout::parse(config).map_err(|e| mismatch(format!("its configuration: {e}")))?;
    if theirs.schema != layout.schema {
        return Err(mismatch(format!(
            "its schema is {}, this database's is {}",
            serde_json::to_string(&theirs.schema).unwrap_or_default(),
            serde_json::to_string(&layout.schema).unwrap_or_default()
        )));
    }
    for shard in held {
        match theirs.shards.iter().find(|s| s.id == shard.id) {
            None => return Err(mismatch(format!("it has no shard {}", shard.id))),
            Some(s) if s != shard => {
                return Err(mismatch(format!(
                    "shard {} covers [{}, {}) there, [{}, {}) here",
                    shard.id,
                    s.low,
                    s.end(),
                    shard.low,
                    shard.end()
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// MySQL, once it accepts connections (retried with the contract's backoff for `wait`).
async fn connect(mysql: &MySqlArgs, wait: Duration) -> Result<Store, RestoreServerError> {
    let endpoint = mysql.endpoint()?;
    let until = tokio::time::Instant::now() + wait;
    let mut pauses = Backoff::new(Duration::from_millis(200), Duration::from_secs(5)).start();
    loop {
        match Store::connect(endpoint.connect_options(), 4).await {
            Ok(store) => return Ok(store),
            Err(source) if tokio::time::Instant::now() >= until => {
                return Err(RestoreServerError::MySql {
                    seconds: wait.as_secs(),
                    source,
                });
            }
            Err(e) => {
                let pause = pauses.next_pause();
                info!(error = %e, retry_in = ?pause, "MySQL not ready yet");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Restores this server (see the module's documentation).
pub async fn restore_server(
    args: &RestoreServerArgs,
) -> Result<RestoreOutcome, RestoreServerError> {
    if holds_state(&args.data_dir)? {
        info!(data_dir = %args.data_dir.display(), "the agent's data dir holds its state already: nothing to restore");
        return Ok(RestoreOutcome::AlreadyHeld);
    }
    let bad_layout = |reason: String| RestoreServerError::Layout {
        path: args.layout.clone(),
        reason,
    };
    let text = std::fs::read_to_string(&args.layout).map_err(|e| bad_layout(e.to_string()))?;
    let body: Json = serde_json::from_str(&text).map_err(|e| bad_layout(e.to_string()))?;
    let layout = InitLayout::parse(&body).map_err(bad_layout)?;
    let held = layout.held_by(&args.server_name).map_err(bad_layout)?;
    if held.is_empty() {
        warn!(server = %args.server_name, "the layout gives this server no shard: nothing to restore");
        return Ok(RestoreOutcome::NothingToRestore);
    }
    let target = Target::from_options(args.to_time.as_deref(), args.backup.as_deref(), None)?;
    let store = args.store.open()?.ok_or(RestoreServerError::NoStore)?;
    let catalog = store.catalog().await?;
    let chunks = store.chunks(None).await?;
    let plan = plan_restore(&catalog.backups, &chunks, &catalog.marks, &target)?;
    let backup = plan.backup.id.to_string();
    check_match(&backup, &plan.backup.fleet, &layout, &held)?;
    info!(
        server = %args.server_name, %backup, ?target,
        shards = ?held.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        chunks = plan.shards.values().map(|s| s.chunks.len()).sum::<usize>(),
        "restoring"
    );
    std::fs::create_dir_all(&args.data_dir).map_err(|e| RestoreServerError::DataDir {
        path: args.data_dir.clone(),
        reason: e.to_string(),
    })?;
    let mysql = connect(&args.mysql, Duration::from_secs(args.mysql_wait_seconds)).await?;
    let result = restore_shards(
        &mysql,
        &store,
        &plan,
        &layout.schema,
        &held,
        &args.data_dir,
        &WalOptions::default(),
    )
    .await;
    mysql.close().await;
    let shards = result?;
    info!(server = %args.server_name, %backup, restored = ?shards, "restored");
    Ok(RestoreOutcome::Restored { backup, shards })
}

/// The subcommand: logs, restores, and exits non-zero with the message and code on failure.
pub async fn run(args: RestoreServerArgs) -> anyhow::Result<()> {
    walshard_contract::process::init_tracing(args.log_format, "info,sqlx=warn");
    match restore_server(&args).await {
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::error!(error = %e, code = e.code(), server = %args.server_name, "restore failed");
            Err(anyhow::anyhow!("{e} [{}]", e.code()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> Json {
        serde_json::json!({
            "N": 2,
            "schema": {"columns": ["Stud_id", "Stud_name"], "dtypes": ["Number", "String"]},
            "shards": [
                {"Stud_id_low": 0, "Shard_id": "sh1", "Shard_size": 100},
                {"Stud_id_low": 100, "Shard_id": "sh2", "Shard_size": 100}
            ],
            "servers": {"Server0": ["sh1", "sh2"], "Server1": ["sh2"]}
        })
    }

    #[test]
    fn the_layout_names_each_servers_shards() {
        let layout = InitLayout::parse(&body()).unwrap();
        let held = layout.held_by("Server1").unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!((held[0].id.as_str(), held[0].low), ("sh2", 100));
        assert!(layout.held_by("Server9").unwrap().is_empty());
        let mut broken = body();
        broken["servers"]["Server1"] = serde_json::json!(["sh3"]);
        let err = InitLayout::parse(&broken)
            .unwrap()
            .held_by("Server1")
            .unwrap_err();
        assert!(err.contains("sh3"), "{err}");
    }

    #[test]
    fn a_backup_of_another_layout_is_refused_naming_the_difference() {
        let layout = InitLayout::parse(&body()).unwrap();
        let held = layout.held_by("Server0").unwrap();
        let same = serde_json::json!({"config": body()});
        assert!(check_match("b1", &same, &layout, &held).is_ok());
        let mut other = body();
        other["shards"][1]["Shard_size"] = serde_json::json!(50);
        let err =
            check_match("b1", &serde_json::json!({"config": other}), &layout, &held).unwrap_err();
        assert_eq!(err.code(), "restore-layout-mismatch");
        assert!(
            err.to_string()
                .contains("shard sh2 covers [100, 150) there"),
            "{err}"
        );
        let mut schema = body();
        schema["schema"]["columns"][1] = serde_json::json!("Name");
        let err =
            check_match("b1", &serde_json::json!({"config": schema}), &layout, &held).unwrap_err();
        assert!(err.to_string().contains("schema"), "{err}");
        let err = check_match("b1", &serde_json::json!({}), &layout, &held).unwrap_err();
        assert!(err.to_string().contains("no fleet configuration"), "{err}");
    }
}
