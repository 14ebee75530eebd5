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
