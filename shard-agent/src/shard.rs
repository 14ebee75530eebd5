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
use tracing::{debug, error, info, warn};
use walshard_contract::{FenceAccepted, Ident, Quorum, ReplicaRef, ShardSpec, ShardStatus};
use walshard_replica::primary::{compactable_through, keep_unarchived, needs_snapshot};
use walshard_replica::{
    Append, EntryId, LogFacts, NotWritable, Refusal, Replica, WriteCheck, admit_write,
    append_lookups, plan_append, step_down_done,
};

mod effects;

use self::effects::EffectData;
use crate::disk_guard::{DiskFull, DiskGuard};
use crate::metrics::Metrics;
use crate::ops::{Op, Outcome};
use crate::read_gate::ReadGate;
use crate::replication::{AppendRequest, Replication, quorum_commit};
use crate::state::{EpochState, StateError, load_json, save_json};
use crate::store::{ShardTable, Snapshot, Store, StoreError};
use crate::wal::{Entry, Epoch, Lsn, OpId, Wal, WalError, WalOptions};

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

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("operation could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(
        "shard {shard}: MySQL has applied LSN {applied} but the WAL ends at {wal_last}; the WAL lost acknowledged entries, refusing to serve this shard"
    )]
    WalBehindStore {
        shard: String,
        applied: Lsn,
        wal_last: Lsn,
    },
    #[error(
        "shard {shard}: MySQL has applied LSN {applied} but the WAL starts at {wal_first}; entries in between are gone"
    )]
    StoreBehindWal {
        shard: String,
        applied: Lsn,
        wal_first: Lsn,
    },
    #[error("shard {shard} is halted: {reason}")]
    Halted { shard: String, reason: String },
    #[error(
        "the write is durable in the WAL at LSN {lsn} but not committed and applied within {}s (no quorum, or MySQL unavailable); retry with the same operation id",
        APPLY_WAIT.as_secs()
    )]
    NotAppliedYet { lsn: Lsn },
    #[error("the agent is shutting down")]
    ShuttingDown,
    #[error("shard {shard}: no secondary has answered an append; nothing to hand over to")]
    NoHandoverTarget { shard: String },
    #[error("not the primary of shard {shard}{}", hint(primary, *epoch))]
    NotPrimary {
        shard: String,
        primary: Option<String>,
        epoch: Epoch,
    },
    #[error("shard {shard}: primary of epoch {epoch} is not ready to take writes yet")]
    NotReady { shard: String, epoch: Epoch },
    #[error(
        "shard {shard} has no majority: {reachable} of {needed} needed replicas reachable; writes are refused, eventual reads are still served"
    )]
    NoQuorum {
        shard: String,
        reachable: usize,
        needed: usize,
    },
    #[error("stale epoch: this replica has promised epoch {epoch}{}", hint(primary, *epoch))]
    Stale {
        epoch: Epoch,
        primary: Option<String>,
    },
    #[error(
        "shard {shard}: this replica has applied LSN {applied}, the read needs {wanted}; another replica or the primary can serve it"
    )]
    Behind {
        shard: String,
        applied: Lsn,
        wanted: Lsn,
    },
    #[error(
        "shard {shard}: this replica is catching up (restarted or installing a snapshot) and serves no reads yet"
    )]
    CatchingUp { shard: String },
    #[error("{server}: shard {shard} takes no writes: {source}; they resume once space is freed")]
    DiskFull {
        server: String,
        shard: String,
        source: DiskFull,
    },
    #[error("log mismatch: this replica's log ends at LSN {last_lsn} (epoch {last_epoch})")]
    Mismatch { last_lsn: Lsn, last_epoch: Epoch },
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
    pub server_name: String,
    /// Without a control plane every shard is a primary of its own, with quorum 1.
    pub standalone: bool,
    pub token: String,
    pub http: reqwest::Client,
    pub metrics: Arc<Metrics>,
    /// How far (in entries) a secondary may lag before it is resynced from a snapshot instead
    /// of the WAL, and how much WAL a primary keeps for lagging secondaries.
    pub retain_entries: u64,
    /// Free space of the volume; writes are refused below its reserve.
    pub disk: Arc<DiskGuard>,
}

pub struct Shard {
    pub table: ShardTable,
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
    pub archive: std::sync::OnceLock<Arc<crate::archive::ArchiveProgress>>,
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

    pub fn id(&self) -> &Ident {
        &self.table.shard
    }

    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn metrics(&self) -> &Metrics {
        &self.ctx.metrics
    }

    pub fn server_name(&self) -> &str {
        &self.ctx.server_name
    }

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

    // ---- client writes -------------------------------------------------------------------

    /// Checks that this replica may take a client write now; returns the epoch to log it in.
    fn writable_epoch(&self, repl: Option<&Replication>) -> Result<Epoch, ShardError> {
        let v = self.view();
        let own = v.replication.as_deref();
        let check = WriteCheck {
            role: v.role,
            ready: own.is_some_and(Replication::is_ready),
            draining: own.is_some_and(Replication::is_draining),
            reachable: repl.map_or(1, |r| r.reachable(PEER_SILENCE) + 1),
            quorum: repl.map_or(1, |r| r.quorum),
        };
        let shard = self.table.shard.to_string();
        match admit_write(check) {
            Ok(()) => Ok(v.epoch),
            Err(NotWritable::NotPrimary) => Err(ShardError::NotPrimary {
                shard,
                primary: v.primary,
                epoch: v.epoch,
            }),
            Err(NotWritable::NotReady) => Err(ShardError::NotReady {
                shard,
                epoch: v.epoch,
            }),
            Err(NotWritable::NoQuorum { reachable, needed }) => Err(ShardError::NoQuorum {
                shard,
                reachable,
                needed,
            }),
        }
    }

    fn current_replication(&self) -> Option<Arc<Replication>> {
        self.view().replication
    }

    /// Logs `op`, waits until it is committed and applied, and returns its outcome. A retried
    /// op id gets the first attempt's outcome and is not applied again.
    pub async fn submit(&self, op_id: OpId, op: Op) -> Result<Outcome, ShardError> {
        if let Some(e) = self.halted_error() {
            return Err(e);
        }
        self.ctx
            .disk
            .check()
            .map_err(|source| ShardError::DiskFull {
                server: self.ctx.server_name.clone(),
                shard: self.table.shard.to_string(),
                source,
            })?;
        let payload = op.encode(walshard_backup::now_ms())?;
        let proposing = Proposing::new(&self.proposing);
        let repl = self.current_replication();
        let epoch = self.writable_epoch(repl.as_deref())?;
        let (tx, rx) = oneshot::channel();
        self.with_waiters(|w| w.entry(op_id).or_default().push(tx));
        let started = std::time::Instant::now();
        let proposed = self.wal.propose(epoch, op_id, payload).await;
        drop(proposing);
        let entry = match proposed {
            Ok(entry) => entry,
            Err(e) => {
                self.prune_waiters(op_id);
                return Err(e.into());
            }
        };
        let durable = started.elapsed();
        match tokio::time::timeout(APPLY_WAIT, rx).await {
            Ok(Ok(outcome)) => {
                debug!(
                    lsn = entry.lsn,
                    durable_us = durable.as_micros() as u64,
                    applied_us = started.elapsed().as_micros() as u64,
                    "op done"
                );
                Ok(outcome)
            }
            Ok(Err(_)) => Err(ShardError::ShuttingDown),
            Err(_) => {
                self.prune_waiters(op_id);
                Err(ShardError::NotAppliedYet { lsn: entry.lsn })
            }
        }
    }

    fn with_waiters<R>(
        &self,
        f: impl FnOnce(&mut HashMap<OpId, Vec<oneshot::Sender<Outcome>>>) -> R,
    ) -> R {
        let mut guard = match self.waiters.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    fn prune_waiters(&self, op_id: OpId) {
        self.with_waiters(|w| {
            if let Some(list) = w.get_mut(&op_id) {
                list.retain(|s| !s.is_closed());
                if list.is_empty() {
                    w.remove(&op_id);
                }
            }
        });
    }

    // ---- reads ---------------------------------------------------------------------------

    /// A non-strong read may be served here once this replica holds a committed prefix it knows
    /// to be caught up ([`ReadGate`]) and has applied at least `min_lsn` (waiting up to `wait`
    /// for it). Returns the applied LSN the read will see at least.
    pub async fn read_position(&self, min_lsn: Lsn, wait: Duration) -> Result<Lsn, ShardError> {
        let primary = self
            .writable_epoch(self.current_replication().as_deref())
            .is_ok();
        if !self.reads.readable(self.applied_lsn(), primary) {
            return Err(ShardError::CatchingUp {
                shard: self.table.shard.to_string(),
            });
        }
        let mut applied = self.applied.subscribe();
        let reached = tokio::time::timeout(wait, applied.wait_for(|a| *a >= min_lsn)).await;
        match reached {
            Ok(Ok(a)) => Ok(*a),
            _ => Err(ShardError::Behind {
                shard: self.table.shard.to_string(),
                applied: self.applied_lsn(),
                wanted: min_lsn,
            }),
        }
    }

    // ---- strong reads --------------------------------------------------------------------

    /// Read index: a primary takes its commit point, confirms with a quorum that it is still
    /// the primary of its epoch, and waits until it has applied that point. A read of MySQL
    /// after this returns is linearizable.
    pub async fn read_barrier(&self) -> Result<(), ShardError> {
        let repl = self.current_replication();
        self.writable_epoch(repl.as_deref())?;
        let target = self.commit_lsn();
        if let Some(r) = &repl {
            let confirmed = r
                .confirm(
                    self.id(),
                    self.server_name(),
                    &self.ctx.http,
                    &self.ctx.token,
                )
                .await
                + 1;
            if confirmed < r.quorum {
                return Err(ShardError::NoQuorum {
                    shard: self.table.shard.to_string(),
                    reachable: confirmed,
                    needed: r.quorum,
                });
            }
        }
        let mut applied = self.applied.subscribe();
        let reached = tokio::time::timeout(APPLY_WAIT, applied.wait_for(|a| *a >= target)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ShardError::NotAppliedYet { lsn: target }),
        }
    }

    /// A primary's read-index confirmation reaching this replica: fine if we still follow it.
    pub async fn confirm_primary(&self, epoch: Epoch, primary: &str) -> Result<(), ShardError> {
        let c = self.control.lock().await;
        c.node.confirm(epoch, primary).map_err(|r| self.refused(r))
    }

    // ---- elections -----------------------------------------------------------------------

    fn persist(&self, promised: &EpochState) -> Result<(), ShardError> {
        save_json(&self.epoch_file, promised)?;
        Ok(())
    }

    /// Promise `epoch` (docs/replication.md, fence): from now on nothing from an older epoch is
    /// accepted. A primary stops being one. Answers the last entry for the elector.
    pub async fn fence(self: &Arc<Self>, epoch: Epoch) -> Result<FenceAccepted, ShardError> {
        let mut c = self.control.lock().await;
        let ready = c.node.fence(epoch).map_err(|r| self.refused(r))?;
        self.take(&mut c, ready, &mut EffectData::default()).await?;
        let (last_epoch, last_lsn) = self.wal.last();
        info!(shard = %self.id(), epoch, last_epoch, last_lsn, "fenced");
        Ok(FenceAccepted {
            epoch,
            last_epoch,
            last_lsn,
        })
    }

    /// A peer told us of a higher epoch: stop acting as primary and promise it.
    pub async fn observe_epoch(self: &Arc<Self>, epoch: Epoch) {
        let mut c = self.control.lock().await;
        let Some(ready) = c.node.observe_epoch(epoch) else {
            return;
        };
        if let Err(e) = self.take(&mut c, ready, &mut EffectData::default()).await {
            warn!(shard = %self.id(), error = %e, "cannot persist a higher epoch");
        }
    }

    /// Become primary of `epoch` (fenced at exactly `epoch` first): commit a no-op in it, then
    /// take writes. Answers once the no-op is committed, or 503 after `PROMOTE_WAIT` (it stays
    /// primary and keeps trying).
    pub async fn promote(
        self: &Arc<Self>,
        epoch: Epoch,
        peers: Vec<ReplicaRef>,
        quorum: Quorum,
    ) -> Result<(), ShardError> {
        if let Some(e) = self.halted_error() {
            return Err(e);
        }
        let noop_lsn = {
            let mut c = self.control.lock().await;
            let ready = c.node.promote(epoch).map_err(|r| self.refused(r))?;
            let mut data = EffectData {
                peers,
                quorum,
                ..EffectData::default()
            };
            let noop = self.take(&mut c, ready, &mut data).await?;
            noop.unwrap_or_else(|| self.wal.last().1)
        };
        info!(shard = %self.id(), epoch, noop_lsn, "promoted; waiting for the no-op to commit");
        let mut commit = self.commit.subscribe();
        match tokio::time::timeout(PROMOTE_WAIT, commit.wait_for(|c| *c >= noop_lsn)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ShardError::NotReady {
                shard: self.table.shard.to_string(),
                epoch,
            }),
        }
    }

    /// Installs the primary role of the promised epoch (the caller holds the control lock, so
    /// no fence can interleave) and starts replication and the commit driver.
    fn install_primary(
        self: &Arc<Self>,
        c: &Control,
        epoch_start: Lsn,
        quorum: Quorum,
        peers: Vec<ReplicaRef>,
    ) {
        let promise = &c.node.promise;
        let repl = Replication::new(promise.epoch, epoch_start, quorum, peers);
        {
            let mut v = match self.view.write() {
                Ok(v) => v,
                Err(poisoned) => poisoned.into_inner(),
            };
            if let Some(old) = v.replication.take() {
                old.stop();
            }
            *v = RoleView {
                role: Role::Primary,
                epoch: promise.epoch,
                primary: promise.primary.clone(),
                replication: Some(repl.clone()),
            };
        }
        repl.spawn(self, &self.ctx.http, &self.ctx.token);
        tokio::spawn(self.clone().drive_commit(repl.clone()));
        self.recompute_commit(&repl);
    }

    /// Raises the commit point whenever this primary's own WAL grows (peers' acks raise it
    /// from their tasks), until replication stops.
    async fn drive_commit(self: Arc<Self>, repl: Arc<Replication>) {
        let mut durable = self.wal.subscribe();
        let mut stop = repl.subscribe_stop();
        loop {
            self.recompute_commit(&repl);
            tokio::select! {
                r = durable.changed() => if r.is_err() { return },
                _ = stop.changed() => return,
            }
        }
    }

    /// The quorum commit rule (docs/replication.md, write path 4).
    pub fn recompute_commit(&self, repl: &Replication) {
        if repl.stopped() {
            return;
        }
        let held = repl.held(self.wal.last().1);
        if let Some(c) = quorum_commit(held, repl.quorum, repl.epoch_start) {
            self.raise_commit(c);
            // A primary knows its own commit point: its state stays readable if it later loses
            // its majority (it then serves eventual reads of what it applied).
            self.reads.learn(c);
            repl.mark_ready();
        }
    }

    /// The agent is stopping: when primary, step down to the secondary holding the most
    /// ([`Replication::handover_target`]); `(target, last LSN)`, or `None` when not primary.
    pub async fn hand_over(self: &Arc<Self>) -> Result<Option<(String, Lsn)>, ShardError> {
        let Some(repl) = self.current_replication() else {
            return Ok(None);
        };
        let Some(to) = repl.handover_target() else {
            return Err(ShardError::NoHandoverTarget {
                shard: self.id().to_string(),
            });
        };
        let last = self.step_down(&to).await?;
        Ok(Some((to, last)))
    }

    /// Planned switchover: stop taking writes and wait until `to` holds every entry.
    pub async fn step_down(self: &Arc<Self>, to: &str) -> Result<Lsn, ShardError> {
        let repl = {
            let c = self.control.lock().await;
            let v = self.view();
            let repl = v.replication.filter(|_| v.role == Role::Primary);
            let peers = repl
                .iter()
                .flat_map(|r| r.peers.iter().map(|p| p.name.as_str()));
            c.node.step_down(peers, to).map_err(|r| self.refused(r))?;
            repl
        };
        let Some(repl) = repl else {
            return Err(self.refused(Refusal::NotPrimary {
                epoch: self.view().epoch,
                primary: self.view().primary,
            }));
        };
        repl.set_draining(true);
        let deadline = tokio::time::Instant::now() + APPLY_WAIT;
        loop {
            // Writes that passed the check before it flipped are still being logged.
            let in_flight = self.proposing.load(Ordering::SeqCst);
            let last = self.wal.last().1;
            if step_down_done(in_flight, repl.matched(to), last) {
                info!(shard = %self.id(), to, last, "stepped down; target has every entry");
                // The elector fences us next. If it never does (it died), take writes again.
                let (shard, repl) = (self.clone(), repl.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(STEP_DOWN_HOLD).await;
                    if !repl.stopped() {
                        warn!(shard = %shard.id(), "no election followed the step-down; taking writes again");
                        repl.set_draining(false);
                    }
                });
                return Ok(last);
            }
            if tokio::time::Instant::now() > deadline {
                repl.set_draining(false);
                return Err(ShardError::NotAppliedYet { lsn: last });
            }
            let pause = if in_flight > 0 { 1 } else { 10 };
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }

    // ---- secondaries ---------------------------------------------------------------------

    /// Accepts `primary` as the sender for `epoch`, or refuses it as stale (the rule book's
    /// `accept_primary`: one primary per epoch, nothing below the promise).
    async fn accept_primary(
        self: &Arc<Self>,
        c: &mut Control,
        epoch: Epoch,
        primary: &str,
    ) -> Result<(), ShardError> {
        let ready = c
            .node
            .accept_primary(epoch, primary)
            .map_err(|r| self.refused(r))?;
        if !ready.effects.is_empty() {
            info!(shard = %self.id(), epoch, primary, "following");
        }
        self.take(c, ready, &mut EffectData::default()).await?;
        Ok(())
    }

    /// An append from a primary (docs/replication.md, write path 3): the rule book plans it
    /// (continuity, truncation, commit point) from the epochs it asks for; this executes the
    /// plan. Returns the last LSN held.
    pub async fn append(self: &Arc<Self>, req: AppendRequest) -> Result<Lsn, ShardError> {
        if let Some(e) = self.halted_error() {
            return Err(e);
        }
        let mut c = self.control.lock().await;
        self.accept_primary(&mut c, req.epoch, &req.primary).await?;

        let (last_epoch, last_lsn) = self.wal.last();
        let facts = LogFacts {
            first_lsn: self.wal.first_lsn(),
            last_epoch,
            last_lsn,
            commit_floor: self.applied_lsn().max(self.commit_lsn()),
        };
        let ids: Vec<EntryId> = req
            .entries
            .iter()
            .map(|e| EntryId {
                epoch: e.epoch,
                lsn: e.lsn,
            })
            .collect();
        let append = Append {
            prev_lsn: req.prev_lsn,
            prev_epoch: req.prev_epoch,
            commit_lsn: req.commit_lsn,
            entries: &ids,
        };
        let mut ours = HashMap::new();
        for lsn in append_lookups(&append, &facts) {
            ours.insert(lsn, self.wal.epoch_at(lsn).await?);
        }
        let plan =
            plan_append(&append, &facts, |lsn| ours.get(&lsn).copied().flatten()).map_err(|r| {
                match r {
                    Refusal::Committed { .. } => {
                        let reason = format!("primary {} of epoch {} {r}", req.primary, req.epoch);
                        self.halt(reason.clone());
                        ShardError::Halted {
                            shard: self.table.shard.to_string(),
                            reason,
                        }
                    }
                    r => self.refused(r),
                }
            })?;
        let mut data = EffectData {
            entries: req.entries,
            ..EffectData::default()
        };
        let next = c.node.clone();
        self.execute(&mut c, next, plan.effects, &mut data).await?;
        drop(c);
        self.ctx
            .metrics
            .appends_received
            .get_or_create(&Metrics::shard(self.table.shard.as_str()))
            .inc();
        self.reads.learn(req.commit_lsn);
        Ok(self.wal.last().1)
    }

    /// Replaces this replica's state by the primary's snapshot (a wiped replica, or one behind
    /// what the primary's WAL still holds): MySQL first, then the WAL restarts after the
    /// snapshot's LSN; the primary streams the rest.
    pub async fn install_snapshot(
        self: &Arc<Self>,
        epoch: Epoch,
        primary: &str,
        snap: Snapshot,
    ) -> Result<Lsn, ShardError> {
        if let Some(e) = self.halted_error() {
            return Err(e);
        }
        let mut c = self.control.lock().await;
        self.accept_primary(&mut c, epoch, primary).await?;
        // Mid-install the table is no committed prefix: no reads until an install completes.
        self.reads.installing(true);
        self.store.install_snapshot(&self.table, &snap).await?;
        self.wal.reset(snap.epoch, snap.lsn).await?;
        self.applied.send_replace(snap.lsn);
        self.reads.installing(false);
        self.raise_commit(snap.lsn);
        self.ctx
            .metrics
            .snapshots_installed
            .get_or_create(&Metrics::shard(self.table.shard.as_str()))
            .inc();
        info!(shard = %self.id(), lsn = snap.lsn, rows = snap.rows.len(), primary, "installed snapshot");
        Ok(snap.lsn)
    }

    /// Deletes WAL segments nobody needs: entries this replica has applied and, on a primary,
    /// that every secondary holds, unless a secondary lags more than `retain_entries` behind
    /// (it will get a snapshot instead).
    async fn compact(&self) {
        let held = self
            .current_replication()
            .map(|r| r.min_held(self.wal.last().1));
        let through = compactable_through(self.applied_lsn(), held, self.ctx.retain_entries);
        let through = keep_unarchived(through, self.archive.get().map(|a| a.hold()));
        match self.wal.compact_through(through).await {
            Ok(0) => {}
            Ok(n) => debug!(shard = %self.id(), through, segments = n, "compacted WAL"),
            Err(e) => warn!(shard = %self.id(), error = %e, "WAL compaction failed"),
        }
    }

    /// Whether a secondary at `next` is better served by a snapshot than by the WAL.
    pub fn needs_snapshot(&self, next: Lsn) -> bool {
        needs_snapshot(
            next,
            self.wal.first_lsn(),
            self.applied_lsn(),
            self.ctx.retain_entries,
        )
    }

    // ---- applying ------------------------------------------------------------------------

    /// Applies the next batch of committed, unapplied entries. `Ok(false)` when there was none.
    async fn apply_step(&self) -> Result<bool, ShardError> {
        let applied = self.applied_lsn();
        let commit = self.commit_lsn();
        if applied >= commit {
            return Ok(false);
        }
        let entries = self.wal.read(applied + 1, commit, MAX_APPLY_BATCH).await?;
        if entries.is_empty() {
            return Ok(false);
        }
        let mut batch: Vec<(Entry, Op)> = Vec::with_capacity(entries.len());
        for e in entries {
            match Op::decode(&e.payload) {
                Ok(op) => batch.push((e, op)),
                Err(err) => {
                    let reason = format!("entry at LSN {} cannot be decoded: {err}", e.lsn);
                    self.halt(reason.clone());
                    return Err(ShardError::Halted {
                        shard: self.table.shard.to_string(),
                        reason,
                    });
                }
            }
        }
        let labels = Metrics::shard(self.table.shard.as_str());
        let started = std::time::Instant::now();
        match self.store.apply(&self.table, applied, &batch).await {
            Ok(outcomes) => {
                debug!(
                    entries = batch.len(),
                    apply_us = started.elapsed().as_micros() as u64,
                    "applied batch"
                );
                let last = batch.last().map_or(applied, |(e, _)| e.lsn);
                self.applied.send_replace(last);
                let m = &self.ctx.metrics;
                m.applied_entries
                    .get_or_create(&labels)
                    .inc_by(batch.len() as u64);
                m.apply_batches.get_or_create(&labels).inc();
                m.apply_batch_entries
                    .get_or_create(&labels)
                    .observe(batch.len() as f64);
                self.with_waiters(|w| {
                    for ((e, _), outcome) in batch.iter().zip(outcomes) {
                        if let Some(list) = w.remove(&e.op_id) {
                            for s in list {
                                let _ = s.send(outcome.clone());
                            }
                        }
                    }
                });
                Ok(true)
            }
            Err(StoreError::AppliedMismatch { found, .. }) => {
                self.rewind_to(found);
                Ok(true)
            }
            Err(e) => {
                self.ctx.metrics.apply_errors.get_or_create(&labels).inc();
                Err(e.into())
            }
        }
    }

    /// MySQL's `applied_lsn` differs from ours: it lost commits (crash with relaxed flushing)
    /// or was restored. Continue from what MySQL has; the WAL still holds everything after it.
    fn rewind_to(&self, found: Lsn) {
        let (_, wal_last) = self.wal.last();
        if found > wal_last || found + 1 < self.wal.first_lsn() {
            self.halt(format!(
                "MySQL applied_lsn {found} is outside the WAL [{}, {wal_last}]",
                self.wal.first_lsn()
            ));
            return;
        }
        warn!(shard = %self.table.shard, ours = self.applied_lsn(), mysql = found, "MySQL applied_lsn moved; replaying WAL from it");
        self.applied.send_replace(found);
    }

    fn record_gauges(&self) {
        let labels = Metrics::shard(self.table.shard.as_str());
        let stats = self.wal.stats();
        let m = &self.ctx.metrics;
        let set = |f: &prometheus_client::metrics::family::Family<
            crate::metrics::ShardLabels,
            prometheus_client::metrics::gauge::Gauge,
        >,
                   v: u64| {
            f.get_or_create(&labels)
                .set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        set(&m.applied_lsn, self.applied_lsn());
        set(&m.wal_last_lsn, self.wal.last().1);
        set(&m.wal_fsyncs, stats.fsyncs);
        set(&m.wal_groups, stats.groups);
        set(&m.wal_bytes, stats.bytes_appended);
        set(&m.wal_max_group, stats.max_group);
        set(&m.commit_lsn, self.commit_lsn());
        let v = self.view();
        let taking_writes =
            v.role == Role::Primary && v.replication.as_ref().is_some_and(|r| r.accepting());
        set(&m.primary, u64::from(taking_writes));
        set(&m.epoch, v.epoch);
        if let Some(r) = v.replication.filter(|_| v.role == Role::Primary) {
            let last = self.wal.last().1;
            for p in &r.peers {
                let lag = last.saturating_sub(r.matched(&p.name).unwrap_or(0));
                m.peer_lag
                    .get_or_create(&Metrics::peer(self.table.shard.as_str(), &p.name))
                    .set(i64::try_from(lag).unwrap_or(i64::MAX));
            }
        }
    }

    /// Refreshes the shard's gauges (called before `/metrics` is encoded).
    pub fn refresh_metrics(&self) {
        self.record_gauges();
    }

    /// The applier loop: applies committed entries as they come, retries MySQL failures with
    /// backoff, and re-checks MySQL's `applied_lsn` when idle. Ends when `stop` turns true.
    pub async fn run_applier(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut commit = self.commit.subscribe();
        let mut backoff = Duration::from_millis(50);
        let mut compacted = tokio::time::Instant::now();
        loop {
            if *stop.borrow() {
                return;
            }
            if compacted.elapsed() >= IDLE_CHECK {
                self.compact().await;
                compacted = tokio::time::Instant::now();
            }
            match self.apply_step().await {
                Ok(true) => {
                    backoff = Duration::from_millis(50);
                    continue;
                }
                Ok(false) => {}
                Err(ShardError::Halted { .. }) => return,
                Err(e) => {
                    warn!(shard = %self.table.shard, error = %e, retry_in_ms = backoff.as_millis() as u64, "apply failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    self.check_store().await;
                    continue;
                }
            }
            tokio::select! {
                r = commit.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(IDLE_CHECK) => self.check_store().await,
                _ = stop.changed() => return,
            }
        }
    }

    async fn check_store(&self) {
        if let Ok((_, found)) = self.store.applied(&self.table).await
            && found != self.applied_lsn()
        {
            self.rewind_to(found);
        }
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
