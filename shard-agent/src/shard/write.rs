//! Client writes on the primary: admission, the WAL append, waiting for commit and apply.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::oneshot;
use tracing::debug;
use walshard_replica::{NotWritable, WriteCheck, admit_write};

use super::{APPLY_WAIT, PEER_SILENCE, Proposing, Shard, ShardError};
use crate::ops::{Op, Outcome};
use crate::replication::Replication;
use crate::wal::{Epoch, OpId};

impl Shard {
    /// Checks that this replica may take a client write now; returns the epoch to log it in.
    pub(super) fn writable_epoch(&self, repl: Option<&Replication>) -> Result<Epoch, ShardError> {
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

    pub(super) fn current_replication(&self) -> Option<Arc<Replication>> {
        self.view().replication
    }

    /// Logs `op`, waits until it is committed and applied, and returns its outcome. A retried
    /// op id gets the first attempt's outcome and is not applied again.
    pub async fn submit(&self, op_id: OpId, op: Op) -> Result<Outcome, ShardError> {
        let mut outcomes = self.submit_many(vec![(op_id, op)]).await?;
        outcomes.pop().ok_or(ShardError::ShuttingDown)
    }

    /// Logs `ops` as consecutive entries in one durable WAL group, waits until all are committed
    /// and applied, and returns their outcomes in order. Each op id is applied once, however
    /// often it is submitted. A failure (not writable, the WAL, the wait) is the whole call's.
    pub async fn submit_many(&self, ops: Vec<(OpId, Op)>) -> Result<Vec<Outcome>, ShardError> {
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
        let now_ms = walshard_backup::now_ms();
        let mut items = Vec::with_capacity(ops.len());
        for (op_id, op) in &ops {
            items.push((*op_id, op.encode(now_ms)?));
        }
        let proposing = Proposing::new(&self.proposing);
        let repl = self.current_replication();
        let epoch = self.writable_epoch(repl.as_deref())?;
        let receivers: Vec<_> = ops
            .iter()
            .map(|(op_id, _)| {
                let (tx, rx) = oneshot::channel();
                self.with_waiters(|w| w.entry(*op_id).or_default().push(tx));
                rx
            })
            .collect();
        let prune = || ops.iter().for_each(|(op_id, _)| self.prune_waiters(*op_id));
        let started = std::time::Instant::now();
        let proposed = self.wal.propose_many(epoch, items).await;
        drop(proposing);
        let last = match proposed {
            Ok(entries) => entries.last().map_or(0, |e| e.lsn),
            Err(e) => {
                prune();
                return Err(e.into());
            }
        };
        let durable = started.elapsed();
        let waited = tokio::time::timeout(APPLY_WAIT, futures::future::join_all(receivers)).await;
        let Ok(answers) = waited else {
            prune();
            return Err(ShardError::NotAppliedYet { lsn: last });
        };
        let outcomes: Result<Vec<Outcome>, _> = answers.into_iter().collect();
        let outcomes = outcomes.map_err(|_| ShardError::ShuttingDown)?;
        debug!(
            lsn = last,
            ops = outcomes.len(),
            durable_us = durable.as_micros() as u64,
            applied_us = started.elapsed().as_micros() as u64,
            "ops done"
        );
        Ok(outcomes)
    }

    pub(super) fn with_waiters<R>(
        &self,
        f: impl FnOnce(&mut HashMap<OpId, Vec<oneshot::Sender<Outcome>>>) -> R,
    ) -> R {
        let mut guard = match self.waiters.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    pub(super) fn prune_waiters(&self, op_id: OpId) {
        self.with_waiters(|w| {
            if let Some(list) = w.get_mut(&op_id) {
                list.retain(|s| !s.is_closed());
                if list.is_empty() {
                    w.remove(&op_id);
                }
            }
        });
    }
}
