//! One shard on this server: its WAL, its MySQL table, its replication role, and the applier
//! that moves committed WAL entries into MySQL in LSN order (docs/replication.md).
//!
//! Write path (primary): the op is appended to the WAL (group commit), becomes committed once a
//! quorum of replicas holds it durably (a standalone shard is a primary with quorum 1), the
//! applier applies it in a MySQL transaction that also advances `applied_lsn`, and only then is
//! the writer answered with the op's outcome. Reads go to MySQL, which holds committed entries
//! only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tracing::{error, info, warn};
use walshard_contract::{Ident, Quorum, ShardSpec, ShardStatus};
use walshard_replica::Replica;

mod apply;
mod effects;
mod elections;
mod read;
mod replication_source;
mod secondary;
mod write;

use crate::disk_guard::{DiskFull, DiskGuard};
use crate::metrics::Metrics;
use crate::ops::Outcome;
use crate::read_gate::ReadGate;
use crate::replication::Replication;
use crate::state::{EpochState, StateError, load_json, save_json};
use crate::store::{ShardTable, Store, StoreError};
use crate::wal::{Epoch, Lsn, OpId, Wal, WalError, WalOptions};

/// Most entries applied in one MySQL transaction.
const MAX_APPLY_BATCH: usize = 1024;
/// How long a writer waits for its op to be committed and applied before answering 503.
const APPLY_WAIT: Duration = Duration::from_secs(30);
/// How often an idle applier re-checks MySQL's `applied_lsn` (MySQL may have lost commits).
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// How long a promotion waits for its no-op to commit before answering.
const PROMOTE_WAIT: Duration = Duration::from_secs(3);
/// How long a stepped-down primary waits to be fenced before it takes writes again.
const STEP_DOWN_HOLD: Duration = Duration::from_secs(10);
/// A secondary not heard from for this long does not count towards a quorum when deciding to
/// refuse a write at once.
const PEER_SILENCE: Duration = Duration::from_millis(1500);

/// Why a shard operation failed. The HTTP API maps each kind to an error code
/// (`impl From<ShardError> for ApiError` in [`crate::api`]).
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// Reading, appending to, truncating or compacting the WAL failed.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// A MySQL statement or transaction failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `epoch.json` (the persisted promise) could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// An op could not be encoded as a WAL payload.
    #[error("operation could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    /// Found when opening: MySQL has applied entries the WAL no longer has, so acknowledged
    /// entries were lost; the shard is not served.
    #[error(
        "shard {shard}: MySQL has applied LSN {applied} but the WAL ends at {wal_last}; the WAL lost acknowledged entries, refusing to serve this shard"
    )]
    WalBehindStore {
        /// The shard id.
        shard: String,
        /// MySQL's `applied_lsn`.
        applied: Lsn,
        /// The last LSN in the WAL.
        wal_last: Lsn,
    },
    /// Found when opening: the WAL starts after `applied + 1`, so the entries in between can
    /// never be applied.
    #[error(
        "shard {shard}: MySQL has applied LSN {applied} but the WAL starts at {wal_first}; entries in between are gone"
    )]
    StoreBehindWal {
        /// The shard id.
        shard: String,
        /// MySQL's `applied_lsn`.
        applied: Lsn,
        /// The first LSN in the WAL.
        wal_first: Lsn,
    },
    /// The shard stopped itself after an invariant broke (an undecodable entry, a conflicting
    /// committed entry, MySQL's `applied_lsn` outside the WAL); it refuses writes, appends and
    /// promotions until the agent restarts.
    #[error("shard {shard} is halted: {reason}")]
    Halted {
        /// The shard id.
        shard: String,
        /// What broke, as logged when halting.
        reason: String,
    },
    /// The entry is durable in the WAL but was not committed and applied in time (a write
    /// waits `APPLY_WAIT`, 30 s); retrying with the same op id is safe.
    #[error(
        "the write is durable in the WAL at LSN {lsn} but not committed and applied within {}s (no quorum, or MySQL unavailable); retry with the same operation id",
        APPLY_WAIT.as_secs()
    )]
    NotAppliedYet {
        /// The LSN that was waited for.
        lsn: Lsn,
    },
    /// The applier stopped before answering the write (the agent is stopping).
    #[error("the agent is shutting down")]
    ShuttingDown,
    /// A primary asked to hand over has no secondary that answered an append.
    #[error("shard {shard}: no secondary has answered an append; nothing to hand over to")]
    NoHandoverTarget {
        /// The shard id.
        shard: String,
    },
    /// A write, strong read or step-down reached a replica that is not the primary.
    #[error("not the primary of shard {shard}{}", hint(primary, *epoch))]
    NotPrimary {
        /// The shard id.
        shard: String,
        /// The primary this replica knows of, if any.
        primary: Option<String>,
        /// The epoch this replica has promised.
        epoch: Epoch,
    },
    /// A primary whose epoch's no-op is not committed yet (it takes writes once it is).
    #[error("shard {shard}: primary of epoch {epoch} is not ready to take writes yet")]
    NotReady {
        /// The shard id.
        shard: String,
        /// The primary's epoch.
        epoch: Epoch,
    },
    /// Too few replicas (this one included) were heard from recently to commit a write or
    /// confirm a read index.
    #[error(
        "shard {shard} has no majority: {reachable} of {needed} needed replicas reachable; writes are refused, eventual reads are still served"
    )]
    NoQuorum {
        /// The shard id.
        shard: String,
        /// Replicas counted as reachable, this one included.
        reachable: usize,
        /// The write quorum.
        needed: usize,
    },
    /// A request from an epoch older than the one this replica promised.
    #[error("stale epoch: this replica has promised epoch {epoch}{}", hint(primary, *epoch))]
    Stale {
        /// The epoch this replica has promised.
        epoch: Epoch,
        /// The primary of that epoch, if known.
        primary: Option<String>,
    },
    /// A read needs an LSN this replica did not apply within the read's wait.
    #[error(
        "shard {shard}: this replica has applied LSN {applied}, the read needs {wanted}; another replica or the primary can serve it"
    )]
    Behind {
        /// The shard id.
        shard: String,
        /// The LSN this replica has applied.
        applied: Lsn,
        /// The LSN the read must see.
        wanted: Lsn,
    },
    /// The replica does not yet hold a committed prefix it knows to be caught up (restarted, or
    /// installing a snapshot), so it serves no non-strong reads.
    #[error(
        "shard {shard}: this replica is catching up (restarted or installing a snapshot) and serves no reads yet"
    )]
    CatchingUp {
        /// The shard id.
        shard: String,
    },
    /// The volume's free space is below its reserve: writes are refused until it is freed.
    #[error("{server}: shard {shard} takes no writes: {source}; they resume once space is freed")]
    DiskFull {
        /// This server's name.
        server: String,
        /// The shard id.
        shard: String,
        /// The free space and reserve found.
        source: DiskFull,
    },
    /// An append does not continue this replica's log; the primary resends from earlier.
    #[error("log mismatch: this replica's log ends at LSN {last_lsn} (epoch {last_epoch})")]
    Mismatch {
        /// The last LSN of this replica's log.
        last_lsn: Lsn,
        /// The epoch of that entry.
        last_epoch: Epoch,
    },
    /// The request names something this shard does not have (e.g. a step-down to a server
    /// that is not one of its replicas).
    #[error("{0}")]
    BadRequest(String),
}

fn hint(primary: &Option<String>, epoch: Epoch) -> String {
    match primary {
        Some(p) => format!("; the primary is {p} (epoch {epoch})"),
        None => format!("; no primary is known for epoch {epoch}"),
    }
}

/// A replica's role in its shard.
pub use walshard_replica::Role;

/// What the write path and `/status` need, readable without waiting.
#[derive(Clone)]
struct RoleView {
    role: Role,
    epoch: Epoch,
    primary: Option<String>,
    /// A primary's replication (which also says whether it takes writes); `None` otherwise.
    replication: Option<Arc<Replication>>,
}

/// Role changes and appends, serialised: the replica's rule state (walshard_replica), whose
/// promise is the one persisted in `epoch.json`.
struct Control {
    node: Replica,
}

/// How the shard takes part in replication.
#[derive(Clone)]
pub struct ShardContext {
    /// This server's name: how peers and the control plane name it, and the primary name it
    /// sends with appends.
    pub server_name: String,
    /// Without a control plane every shard is a primary of its own, with quorum 1.
    pub standalone: bool,
    /// The bearer token for calls to the peers' agents (appends, snapshots, read-index
    /// confirmations).
    pub token: String,
    /// The HTTP client for those calls.
    pub http: reqwest::Client,
    /// The agent's metrics, shared by all its shards.
    pub metrics: Arc<Metrics>,
    /// How far (in entries) a secondary may lag before it is resynced from a snapshot instead
    /// of the WAL, and how much WAL a primary keeps for lagging secondaries.
    pub retain_entries: u64,
    /// Free space of the volume; writes are refused below its reserve.
    pub disk: Arc<DiskGuard>,
}

/// One shard on this server: its WAL, MySQL table, replication role and applier. Shared as
/// `Arc<Shard>`; every method is safe to call concurrently.
pub struct Shard {
    /// The shard's MySQL table (id and schema).
    pub table: ShardTable,
    /// The key range the shard holds, from `/config`; `None` when `/config` named the shard
    /// without one (keys are then not checked against a range).
    pub range: Option<ShardSpec>,
    ctx: ShardContext,
    wal: Wal,
    store: Store,
    epoch_file: PathBuf,
    control: tokio::sync::Mutex<Control>,
    view: RwLock<RoleView>,
    /// LSN up to which entries are committed (may be applied); never decreases.
    commit: watch::Sender<Lsn>,
    applied: watch::Sender<Lsn>,
    waiters: Mutex<HashMap<OpId, Vec<oneshot::Sender<Outcome>>>>,
    halted: Mutex<Option<String>>,
    reads: ReadGate,
    /// Client writes between their "may I write" check and their WAL append; a step-down waits
    /// for these to drain so its target really holds the whole log.
    proposing: AtomicUsize,
    /// With WAL archiving on: how far the archive is (compaction keeps everything after it).
    pub archive: std::sync::OnceLock<Arc<crate::archive_progress::ArchiveProgress>>,
}

/// Counts one in-flight proposal for as long as it lives.
struct Proposing<'a>(&'a AtomicUsize);

impl<'a> Proposing<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Proposing(count)
    }
}

impl Drop for Proposing<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shard {
    /// Opens the shard's WAL under `dir`, makes sure its table exists, checks that the WAL and
    /// MySQL agree, and applies every committed entry MySQL has not applied yet. A standalone
    /// shard resumes as primary (all its durable entries are committed); a replicated one comes
    /// back fenced at the epoch it promised and applies only what it knows is committed.
    pub async fn open(
        dir: &Path,
        table: ShardTable,
        range: Option<ShardSpec>,
        initial_epoch: Epoch,
        store: Store,
        wal_options: WalOptions,
        ctx: ShardContext,
    ) -> Result<Arc<Shard>, ShardError> {
        let shard = table.shard.to_string();
        // Opening scans the log and may write a zeroed segment: keep it off the async workers.
        let wal_dir = dir.to_path_buf();
        let (wal, report) = tokio::task::spawn_blocking(move || Wal::open(&wal_dir, wal_options))
            .await
            .map_err(|e| WalError::Failed(format!("WAL open task: {e}")))??;
        if let Some(cut) = &report.cut {
            warn!(shard, segment = %cut.segment.display(), offset = cut.offset, bytes_cut = cut.bytes_cut, reason = %cut.reason, "cut torn WAL tail");
        }
        store.ensure_shard(&table).await?;
        let (_, applied) = store.applied(&table).await?;
        let (_, wal_last) = wal.last();
        if applied > wal_last {
            return Err(ShardError::WalBehindStore {
                shard,
                applied,
                wal_last,
            });
        }
        if applied + 1 < wal.first_lsn() {
            return Err(ShardError::StoreBehindWal {
                shard,
                applied,
                wal_first: wal.first_lsn(),
            });
        }
        let epoch_file = dir.join("epoch.json");
        let promised: EpochState = load_json(&epoch_file)?.unwrap_or(EpochState {
            epoch: if ctx.standalone { initial_epoch } else { 0 },
            primary: None,
        });
        let node = Replica::restart(&ctx.server_name, promised, ctx.standalone);
        let promised = node.promise.clone();
        save_json(&epoch_file, &promised)?;
        info!(
            shard,
            applied,
            wal_last,
            segments = report.segments,
            epoch = promised.epoch,
            standalone = ctx.standalone,
            "shard opened"
        );
        let this = Arc::new(Shard {
            table,
            range,
            wal,
            store,
            epoch_file,
            view: RwLock::new(RoleView {
                role: Role::Fenced,
                epoch: promised.epoch,
                primary: promised.primary.clone(),
                replication: None,
            }),
            control: tokio::sync::Mutex::new(Control { node }),
            commit: watch::Sender::new(applied),
            applied: watch::Sender::new(applied),
            waiters: Mutex::new(HashMap::new()),
            halted: Mutex::new(None),
            reads: ReadGate::new(ctx.standalone),
            proposing: AtomicUsize::new(0),
            archive: std::sync::OnceLock::new(),
            ctx,
        });
        {
            let c = this.control.lock().await;
            match c.node.role {
                Role::Primary => this.install_primary(&c, 0, Quorum::Majority, Vec::new()),
                role => this.set_view(role, &c.node.promise),
            }
        }
        while this.apply_step().await? {}
        if this.applied_lsn() > applied {
            info!(shard = %this.table.shard, replayed = this.applied_lsn() - applied, "replayed WAL into MySQL");
        }
        this.record_gauges();
        Ok(this)
    }

    /// The shard's id.
    pub fn id(&self) -> &Ident {
        &self.table.shard
    }

    /// The shard's write-ahead log.
    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// The server's MySQL store (shared by all its shards).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The agent's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.ctx.metrics
    }

    /// This server's name.
    pub fn server_name(&self) -> &str {
        &self.ctx.server_name
    }

    /// The LSN of the last entry applied to MySQL (what a read of MySQL sees at least).
    pub fn applied_lsn(&self) -> Lsn {
        *self.applied.borrow()
    }

    /// Changes of the commit point.
    pub fn subscribe_commit(&self) -> watch::Receiver<Lsn> {
        self.commit.subscribe()
    }

    /// Whether this replica is the shard's primary now.
    pub fn is_primary(&self) -> bool {
        self.current_replication().is_some()
    }

    /// The LSN up to which entries are known committed; never decreases.
    pub fn commit_lsn(&self) -> Lsn {
        *self.commit.borrow()
    }

    fn view(&self) -> RoleView {
        match self.view.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Switches to a role that is not primary, stopping any replication.
    fn set_view(&self, role: Role, promised: &EpochState) {
        let mut v = match self.view.write() {
            Ok(v) => v,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(r) = v.replication.take() {
            r.stop();
        }
        *v = RoleView {
            role,
            epoch: promised.epoch,
            primary: promised.primary.clone(),
            replication: None,
        };
    }

    /// The shard's entry in `/status`.
    pub fn status(&self) -> ShardStatus {
        let (last_epoch, last_lsn) = self.wal.last();
        let v = self.view();
        ShardStatus {
            role: v.role,
            epoch: v.epoch,
            accepting_writes: v.role == Role::Primary
                && v.replication.as_ref().is_some_and(|r| r.accepting()),
            primary: v.primary,
            last_epoch,
            last_lsn,
            commit_lsn: self.commit_lsn(),
            applied_lsn: self.applied_lsn(),
            first_lsn: self.wal.first_lsn(),
            halted: self.halted_reason(),
        }
    }

    fn halted_reason(&self) -> Option<String> {
        self.halted.lock().ok().and_then(|h| h.clone())
    }

    fn halt(&self, reason: String) {
        error!(shard = %self.table.shard, %reason, "halting shard");
        if let Ok(mut h) = self.halted.lock() {
            *h = Some(reason);
        }
    }

    fn halted_error(&self) -> Option<ShardError> {
        self.halted_reason().map(|reason| ShardError::Halted {
            shard: self.table.shard.to_string(),
            reason,
        })
    }

    /// Stops replication and appends; queued appends are flushed first.
    pub async fn close(&self) -> Result<(), ShardError> {
        if let Some(r) = self.current_replication() {
            r.stop();
        }
        self.wal.close().await?;
        Ok(())
    }
}
