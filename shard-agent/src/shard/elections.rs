//! Elections: fence, promote, confirm and step down, as the control plane drives them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{info, warn};
use walshard_contract::{FenceAccepted, Quorum, ReplicaRef};
use walshard_replica::{Refusal, Role, step_down_done};

use super::effects::EffectData;
use super::{APPLY_WAIT, Control, PROMOTE_WAIT, RoleView, STEP_DOWN_HOLD, Shard, ShardError};
use crate::replication::{Replication, quorum_commit};
use crate::state::{EpochState, save_json};
use crate::wal::{Epoch, Lsn};

impl Shard {
    pub(super) fn persist(&self, promised: &EpochState) -> Result<(), ShardError> {
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
    pub(super) fn install_primary(
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
    pub(super) async fn drive_commit(self: Arc<Self>, repl: Arc<Replication>) {
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
}
