//! Reads: the position a session read waits for, and the read-index barrier of strong reads.

use std::time::Duration;

use super::{APPLY_WAIT, Shard, ShardError};
use crate::wal::{Epoch, Lsn};

impl Shard {
    /// A non-strong read may be served here once this replica holds a committed prefix it knows
    /// to be caught up ([`ReadGate`](crate::read_gate::ReadGate)) and has applied at least
    /// `min_lsn` (waiting up to `wait` for it). Returns the applied LSN the read will see at
    /// least.
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
}
