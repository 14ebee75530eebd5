//! The way back from a backup (docs/backup.md): one shard is rebuilt in this server's MySQL from
//! a base copy plus the archived entries its [`ShardPlan`] names (every object's checksum
//! checked; a damaged or missing one is an error naming it), and the agent's data dir is prepared
//! so the agent starts at the restored point.

use std::path::Path;

use walshard_backup::{BackupStore, RestorePlan, ShardBackup, ShardPlan, StoreError};
use walshard_contract::{Row, Schema, ShardSpec};

use crate::ops::{DecodeError, Op};
use crate::state::{AgentState, EpochState, ShardState, StateError, StateFile, save_json};
use crate::store::{CopyPoint, ShardTable, Store, StoreError as MySqlError};
use crate::wal::{Entry, Epoch, Lsn, OpId, Wal, WalError, WalOptions};

/// Entries applied per MySQL transaction while replaying.
const REPLAY_BATCH: usize = 1000;

/// Why a restore failed; the shard's MySQL table is then incomplete and must be restored again.
/// [`RestoreError::code`] classifies it.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The backup store failed, or an object is missing or fails its checksum (it is named).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The plan's base backup holds no copy of a shard this server is restored with.
    #[error("backup {backup} has no copy of shard {shard}")]
    NoCopy {
        /// The backup's id.
        backup: String,
        /// The shard it lacks.
        shard: String,
    },
    /// This server's MySQL failed.
    #[error("MySQL: {0}")]
    MySql(#[from] MySqlError),
    /// A base-copy part or its op outcomes passed the checksum but is not the expected JSON.
    #[error("{key}: {reason}")]
    Unreadable {
        /// The object's key in the store.
        key: String,
        /// The parse error.
        reason: String,
    },
    /// An archived entry's payload is not an op.
    #[error("{chunk}: LSN {lsn}: {source}")]
    Op {
        /// The chunk's key in the store.
        chunk: String,
        /// The entry's LSN.
        lsn: Lsn,
        /// Why it does not decode.
        source: DecodeError,
    },
    /// The archived entries skip an LSN: the archive has a gap.
    #[error("{chunk}: expected LSN {expected}, found {found}")]
    NotConsecutive {
        /// The chunk's key in the store.
        chunk: String,
        /// The LSN that should come next.
        expected: Lsn,
        /// The LSN found instead.
        found: Lsn,
    },
    /// A restored shard's WAL could not be created or reset.
    #[error("preparing the agent's data dir: {0}")]
    Wal(#[from] WalError),
    /// A restored shard's `epoch.json` or the agent's `state.json` could not be written.
    #[error("preparing the agent's data dir: {0}")]
    State(#[from] StateError),
}

impl RestoreError {
    /// A machine-readable code: the store's for its errors, `backup-object-damaged` for an
    /// object whose content is wrong, `restore-target-unreachable` for a shard the backup lacks.
    pub fn code(&self) -> &'static str {
        match self {
            RestoreError::Store(e) => e.code(),
            RestoreError::Unreadable { .. }
            | RestoreError::Op { .. }
            | RestoreError::NotConsecutive { .. } => "backup-object-damaged",
            RestoreError::NoCopy { .. } => "restore-target-unreachable",
            RestoreError::MySql(_) => "mysql-unavailable",
            RestoreError::Wal(_) | RestoreError::State(_) => "data-dir-unwritable",
        }
    }
}

/// What a restore reports as it goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    /// Rows of the base copy inserted so far.
    pub rows: u64,
    /// Archived entries replayed so far, after the base copy's LSN.
    pub entries: u64,
}

/// Rebuilds `table` in `mysql` from `copy` and the chunks of `plan`; returns where it ended
/// (the last replayed entry's epoch and LSN).
pub async fn restore_shard(
    mysql: &Store,
    table: &ShardTable,
    backups: &BackupStore,
    copy: &ShardBackup,
    plan: &ShardPlan,
    progress: &(dyn Fn(Restored) + Sync),
) -> Result<(Epoch, Lsn), RestoreError> {
    mysql.ensure_shard(table).await?;
    let ops = backups.get_part(&copy.ops).await?;
    let ops = serde_json::from_slice(&ops).map_err(|e| RestoreError::Unreadable {
        key: copy.ops.key.clone(),
        reason: e.to_string(),
    })?;
    let point = CopyPoint {
        epoch: copy.epoch,
        lsn: copy.lsn,
        ops,
    };
    mysql.begin_restore(table, &point).await?;
    let mut done = Restored::default();
    for part in &copy.parts {
        let bytes = backups.get_part(part).await?;
        let rows: Vec<Row> =
            serde_json::from_slice(&bytes).map_err(|e| RestoreError::Unreadable {
                key: part.key.clone(),
                reason: e.to_string(),
            })?;
        mysql.restore_rows(table, &rows).await?;
        done.rows += rows.len() as u64;
        progress(done);
    }
    let mut applied = (copy.epoch, copy.lsn);
    let mut batch: Vec<(Entry, Op)> = Vec::with_capacity(REPLAY_BATCH);
    'chunks: for name in &plan.chunks {
        let chunk = name.key();
        for e in backups.get_chunk(name).await? {
            let next = applied.1 + batch.len() as Lsn + 1;
            if e.lsn < next {
                continue;
            }
            if !plan.stop.takes(e.lsn, e.at_ms) {
                break 'chunks;
            }
            if e.lsn != next {
                return Err(RestoreError::NotConsecutive {
                    chunk,
                    expected: next,
                    found: e.lsn,
                });
            }
            let op = Op::decode(&e.payload).map_err(|source| RestoreError::Op {
                chunk: chunk.clone(),
                lsn: e.lsn,
                source,
            })?;
            let entry = Entry {
                epoch: e.epoch,
                lsn: e.lsn,
                op_id: OpId(e.op_id),
                payload: e.payload,
            };
            batch.push((entry, op));
            if batch.len() >= REPLAY_BATCH {
                applied = replay(mysql, table, applied, &mut batch).await?;
                done.entries = applied.1 - copy.lsn;
                progress(done);
            }
        }
    }
    applied = replay(mysql, table, applied, &mut batch).await?;
    done.entries = applied.1 - copy.lsn;
    progress(done);
    Ok(applied)
}

async fn replay(
    mysql: &Store,
    table: &ShardTable,
    applied: (Epoch, Lsn),
    batch: &mut Vec<(Entry, Op)>,
) -> Result<(Epoch, Lsn), RestoreError> {
    let Some(last) = batch.last().map(|(e, _)| (e.epoch, e.lsn)) else {
        return Ok(applied);
    };
    mysql.apply(table, applied.1, batch).await?;
    batch.clear();
    Ok(last)
}

/// One server's part of a restore: each of `shards` rebuilt in `mysql` from `plan` (its base
/// copy and chunks), then the agent's data dir `agent_dir` prepared at the restored points
/// ([`prepare_agent_dir`]). Returns where
/// each shard ended, `(epoch, LSN)`. `walshard restore` (every server of a local fleet) and
/// `walshard-agent restore-server` (one server pod) both restore with it.
pub async fn restore_shards(
    mysql: &Store,
    backups: &BackupStore,
    plan: &RestorePlan,
    schema: &Schema,
    shards: &[ShardSpec],
    agent_dir: &Path,
    wal: &WalOptions,
) -> Result<Vec<(String, (Epoch, Lsn))>, RestoreError> {
    let mut restored = Vec::new();
    let mut ends = Vec::new();
    for shard in shards {
        let id = shard.id.as_str();
        let (Some(copy), Some(shard_plan)) = (plan.backup.shards.get(id), plan.shards.get(id))
        else {
            return Err(RestoreError::NoCopy {
                backup: plan.backup.id.to_string(),
                shard: id.to_owned(),
            });
        };
        let table = ShardTable::new(shard.id.clone(), schema.clone());
        let at = restore_shard(mysql, &table, backups, copy, shard_plan, &|_| {}).await?;
        tracing::info!(shard = id, epoch = at.0, lsn = at.1, "shard restored");
        restored.push(RestoredShard {
            state: ShardState {
                id: shard.id.clone(),
                range: Some(shard.clone()),
                epoch: at.0,
            },
            epoch: at.0,
            lsn: at.1,
        });
        ends.push((id.to_owned(), at));
    }
    prepare_agent_dir(agent_dir, schema, &restored, wal).await?;
    Ok(ends)
}

/// One restored shard of a server, for [`prepare_agent_dir`].
#[derive(Debug, Clone)]
pub struct RestoredShard {
    /// The shard as `state.json` will name it.
    pub state: ShardState,
    /// The epoch of the last restored entry: the shard's promise and its WAL's start epoch.
    pub epoch: Epoch,
    /// The LSN of the last restored entry: the WAL continues at `lsn + 1`.
    pub lsn: Lsn,
}

/// Writes the agent's data dir for restored shards: each WAL starts right after the restored
/// point (as after a snapshot install), each shard has promised the restored epoch (so a new
/// election's epoch is higher than every restored entry's), and `state.json` names the schema
/// and shards. Its MySQL must hold the restored shards ([`restore_shard`]).
pub async fn prepare_agent_dir(
    data_dir: &Path,
    schema: &Schema,
    shards: &[RestoredShard],
    wal: &WalOptions,
) -> Result<(), RestoreError> {
    for s in shards {
        let dir = data_dir.join("shards").join(s.state.id.as_str());
        std::fs::create_dir_all(&dir)
            .map_err(|e| WalError::Failed(format!("{}: {e}", dir.display())))?;
        let (log, _) = Wal::open(&dir, wal.clone())?;
        log.reset(s.epoch, s.lsn).await?;
        log.close().await?;
        let promise = EpochState {
            epoch: s.epoch,
            primary: None,
        };
        save_json(&dir.join("epoch.json"), &promise)?;
    }
    let state = AgentState {
        schema: Some(schema.clone()),
        shards: shards.iter().map(|s| s.state.clone()).collect(),
    };
    StateFile::new(data_dir).save(&state)?;
    Ok(())
}
