//! The agent: this server's shards, its MySQL store and its local state, behind the HTTP API.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};
use walshard_contract::http_client::{ClientError, ClientSettings};
use walshard_contract::{Backoff, Ident, Schema, ShardSpec, validate_layout};

use walshard_backup::BackupStore;

use crate::archive::{ArchiveOptions, ArchiveProgress, Archiver};
use crate::disk_guard::DiskGuard;
use crate::metrics::Metrics;
use crate::mysql::MySqlEndpoint;
use crate::requests::NamedShard;
use crate::shard::{Shard, ShardContext, ShardError};
use crate::state::{AgentState, ShardState, StateError, StateFile};
use crate::store::{ShardTable, Store, StoreError};
use crate::wal::WalOptions;

/// Everything the agent needs to start.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This server's name (e.g. `Server0`): how the control plane and peers name it.
    pub server_name: String,
    /// The MySQL server beside the agent.
    pub mysql: MySqlEndpoint,
    /// Where `state.json` and each shard's WAL and `epoch.json` (`shards/<id>/`) live; created
    /// if missing.
    pub data_dir: PathBuf,
    /// The settings of every shard's WAL.
    pub wal: WalOptions,
    /// Most MySQL connections in the store's pool, shared by all shards.
    pub mysql_pool_size: u32,
    /// Shared secret, also presented to peers when replicating.
    pub token: String,
    /// Without a control plane each shard is its own primary (quorum 1); with one, shards start
    /// fenced and wait for an election (docs/replication.md).
    pub standalone: bool,
    /// Lag (entries) beyond which a secondary is resynced from a snapshot.
    pub retain_entries: u64,
    /// Writes are refused (507) while the data dir's volume has no more free bytes than this
    /// (0: never).
    pub disk_reserve_bytes: u64,
    /// The backup store: each shard's committed WAL is archived there (docs/backup.md).
    pub backup: Option<BackupConfig>,
    /// The fleet's certificate authority, trusted for the peers' `https://` URLs.
    pub trust: Option<walshard_contract::http_client::TrustedCa>,
}

/// Where and how this server archives.
#[derive(Debug, Clone)]
pub struct BackupConfig {
    /// The object store the WAL archive and base backups are written to.
    pub store: BackupStore,
    /// How often and how much each shard's archiver ships.
    pub archive: ArchiveOptions,
}

/// Why the agent could not start or a `/config` was refused.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Opening a shard failed (its WAL, table or promise, or WAL and MySQL disagree).
    #[error(transparent)]
    Shard(#[from] ShardError),
    /// MySQL refused the connection or a statement.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `state.json` could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// The data directory could not be created.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The IO error creating it.
        source: std::io::Error,
    },
    /// `/config` gave a schema other than the one this server was configured with.
    #[error("this server is already configured with a different schema")]
    SchemaMismatch,
    /// `/config` gave the named shard, configured here already, another key range.
    #[error("shard {0} is already configured with a different key range")]
    RangeMismatch(String),
    /// The shards' key ranges, old and new together, overlap or are invalid.
    #[error("shard layout: {0}")]
    Layout(#[from] walshard_contract::ShardError),
    /// The HTTP client for the peers could not be built.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// This server's agent: its MySQL store, its shards (each with its applier and, with a backup
/// store, its archiver) and its persisted configuration. Shared by the HTTP handlers as
/// `Arc<Agent>`.
pub struct Agent {
    /// The settings it was started with.
    pub config: AgentConfig,
    /// Its metrics, shared with every shard.
    pub metrics: Arc<Metrics>,
    store: Store,
    state_file: StateFile,
    /// Serialises `/config` calls; holds the persisted state.
    state: Mutex<AgentState>,
    shards: RwLock<BTreeMap<Ident, Arc<Shard>>>,
    stop: watch::Sender<bool>,
    appliers: std::sync::Mutex<Vec<JoinHandle<()>>>,
    http: reqwest::Client,
    /// Free space of the data dir's volume, checked before every write.
    pub disk: Arc<DiskGuard>,
}

impl Agent {
    /// Connects to MySQL (retrying until it answers), loads the local state and opens every
    /// configured shard, replaying its WAL into MySQL.
    pub async fn open(config: AgentConfig) -> Result<Arc<Agent>, AgentError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| AgentError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let store = connect_with_retry(&config.mysql, config.mysql_pool_size).await?;
        let state_file = StateFile::new(&config.data_dir);
        let state = state_file.load()?;
        let agent = Arc::new(Agent {
            metrics: Metrics::new(),
            store,
            state_file,
            state: Mutex::new(state.clone()),
            shards: RwLock::new(BTreeMap::new()),
            stop: watch::Sender::new(false),
            appliers: std::sync::Mutex::new(Vec::new()),
            disk: Arc::new(DiskGuard::new(
                config.data_dir.clone(),
                config.disk_reserve_bytes,
            )),
            http: ClientSettings {
                pool_max_idle_per_host: Some(4),
                trust: config.trust.clone(),
                ..ClientSettings::default()
            }
            .build()?,
            config,
        });
        if let Some(schema) = &state.schema {
            for s in &state.shards {
                agent.open_shard(schema, s).await?;
            }
        }
        info!(server = %agent.config.server_name, shards = state.shards.len(), "agent ready");
        Ok(agent)
    }

    async fn open_shard(&self, schema: &Schema, s: &ShardState) -> Result<Arc<Shard>, AgentError> {
        let dir = self.config.data_dir.join("shards").join(s.id.as_str());
        let table = ShardTable::new(s.id.clone(), schema.clone());
        let shard = Shard::open(
            &dir,
            table,
            s.range.clone(),
            s.epoch,
            self.store.clone(),
            self.config.wal.clone(),
            ShardContext {
                server_name: self.config.server_name.clone(),
                standalone: self.config.standalone,
                token: self.config.token.clone(),
                http: self.http.clone(),
                metrics: self.metrics.clone(),
                retain_entries: self.config.retain_entries,
                disk: self.disk.clone(),
            },
        )
        .await?;
        let handle = tokio::spawn(shard.clone().run_applier(self.stop.subscribe()));
        if let Ok(mut a) = self.appliers.lock() {
            a.push(handle);
        }
        if let Some(backup) = &self.config.backup {
            let progress = Arc::new(ArchiveProgress::default());
            if shard.archive.set(progress.clone()).is_ok() {
                let archiver = Archiver::new(
                    shard.clone(),
                    backup.store.clone(),
                    progress,
                    backup.archive.clone(),
                );
                let handle = tokio::spawn(archiver.run(self.stop.subscribe()));
                if let Ok(mut a) = self.appliers.lock() {
                    a.push(handle);
                }
            }
        }
        if let Ok(mut map) = self.shards.write() {
            map.insert(s.id.clone(), shard.clone());
        }
        Ok(shard)
    }

    /// The MySQL store all shards share.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The open shard with this id, if this server holds it.
    pub fn shard(&self, id: &Ident) -> Option<Arc<Shard>> {
        self.shards.read().ok().and_then(|m| m.get(id).cloned())
    }

    /// Every open shard, ordered by id.
    pub fn shards(&self) -> Vec<Arc<Shard>> {
        self.shards
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The configured schema; `None` until the first `/config`.
    pub async fn schema(&self) -> Option<Schema> {
        self.state.lock().await.schema.clone()
    }

    /// `/config`: sets the schema (once; a different one later is refused) and adds shards.
    /// Shards already present with the same range are left as they are. Returns the shard ids.
    pub async fn configure(
        &self,
        schema: Schema,
        shards: Vec<NamedShard>,
    ) -> Result<Vec<Ident>, AgentError> {
        let mut state = self.state.lock().await;
        if state.schema.as_ref().is_some_and(|s| *s != schema) {
            return Err(AgentError::SchemaMismatch);
        }
        let mut ranges: Vec<ShardSpec> = state
            .shards
            .iter()
            .filter_map(|s| s.range.clone())
            .collect();
        let mut added = Vec::new();
        for (id, range) in &shards {
            match state.shards.iter().find(|s| s.id == *id) {
                Some(existing) if existing.range != *range && range.is_some() => {
                    return Err(AgentError::RangeMismatch(id.to_string()));
                }
                Some(_) => {}
                None => {
                    ranges.extend(range.clone());
                    added.push(ShardState {
                        id: id.clone(),
                        range: range.clone(),
                        epoch: 1,
                    });
                }
            }
        }
        validate_layout(&ranges)?;
        for s in &added {
            self.open_shard(&schema, s).await?;
        }
        let mut next = state.clone();
        next.schema = Some(schema);
        next.shards.extend(added);
        self.state_file.save(&next)?;
        *state = next;
        Ok(shards.into_iter().map(|(id, _)| id).collect())
    }

    /// Stops the appliers and flushes the WALs.
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        let handles: Vec<JoinHandle<()>> = self
            .appliers
            .lock()
            .map(|mut a| a.drain(..).collect())
            .unwrap_or_default();
        for h in handles {
            let _ = h.await;
        }
        for shard in self.shards() {
            if let Err(e) = shard.close().await {
                warn!(shard = %shard.id(), error = %e, "closing WAL failed");
            }
        }
        self.store.pool().close().await;
    }
}

/// Pauses between attempts to reach MySQL.
const MYSQL_RETRY: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));

/// Waits for MySQL to answer (it may start after the agent); a malformed URL fails at once.
async fn connect_with_retry(mysql: &MySqlEndpoint, pool_size: u32) -> Result<Store, AgentError> {
    let mut pauses = MYSQL_RETRY.start();
    loop {
        match Store::connect(mysql.connect_options(), pool_size).await {
            Ok(store) => return Ok(store),
            // A client that cannot authenticate this way never will: fail instead of looping.
            Err(e @ StoreError::Sql(sqlx::Error::Configuration(_))) => return Err(e.into()),
            Err(e) => {
                let pause = pauses.next_pause();
                warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "MySQL not reachable yet");
                tokio::time::sleep(pause).await;
            }
        }
    }
}
