//! The agent's executor of the replica rule book (walshard_replica): runs a rule's effects over
//! the shard's WAL, `epoch.json` and role view, and turns the rules' refusals into shard errors.

use std::sync::Arc;

use tracing::warn;
use walshard_contract::{Quorum, ReplicaRef};
use walshard_replica::{Effect, Ready, Refusal, Replica, Role};

use super::{Control, Shard, ShardError};
use crate::ops::Op;
use crate::wal::{Entry, Lsn, OpId};

/// The data some effects act on: an append's entries, a promotion's peers and quorum.
#[derive(Default)]
pub(super) struct EffectData {
    pub(super) entries: Vec<Entry>,
    pub(super) peers: Vec<ReplicaRef>,
    pub(super) quorum: Quorum,
}

impl Shard {
    /// A refusal of the rule book as this shard's error.
    pub(super) fn refused(&self, refusal: Refusal) -> ShardError {
        let shard = self.table.shard.to_string();
        match refusal {
            Refusal::Stale { epoch, primary } => ShardError::Stale { epoch, primary },
            Refusal::Mismatch {
                last_lsn,
                last_epoch,
            } => ShardError::Mismatch {
                last_lsn,
                last_epoch,
            },
            Refusal::NotPrimary { epoch, primary } => ShardError::NotPrimary {
                shard,
                primary,
                epoch,
            },
            Refusal::NotPeer(to) => {
                ShardError::BadRequest(format!("{to} is not a replica of shard {shard}"))
            }
            Refusal::Committed { .. } => {
                let reason = refusal.to_string();
                self.halt(reason.clone());
                ShardError::Halted { shard, reason }
            }
        }
    }

    /// Raises the commit point to `lsn` (never lowers it).
    pub(super) fn raise_commit(&self, lsn: Lsn) {
        self.commit.send_if_modified(|cur| {
            let raise = lsn > *cur;
            if raise {
                *cur = lsn;
            }
            raise
        });
    }

    /// Executes a rule's effects in order (the IO side of walshard_replica); the replica's
    /// state becomes `next` once its promise is durable. Answers the no-op's LSN, if appended.
    pub(super) async fn execute(
        self: &Arc<Self>,
        c: &mut Control,
        next: Replica,
        effects: Vec<Effect>,
        data: &mut EffectData,
    ) -> Result<Option<Lsn>, ShardError> {
        let mut noop = None;
        for effect in effects {
            match effect {
                Effect::Persist(promise) => {
                    self.persist(&promise)?;
                    c.node = next.clone();
                }
                Effect::Become(Role::Primary) => {
                    let start = noop.unwrap_or_else(|| self.wal.last().1);
                    let peers = std::mem::take(&mut data.peers);
                    self.install_primary(c, start, data.quorum, peers);
                }
                Effect::Become(role) => self.set_view(role, &next.promise),
                Effect::AppendNoop => {
                    let entry = self
                        .wal
                        .propose(
                            next.promise.epoch,
                            OpId::default(),
                            Op::Noop.encode(walshard_backup::now_ms())?,
                        )
                        .await?;
                    noop = Some(entry.lsn);
                }
                Effect::TruncateAfter(lsn) => {
                    warn!(shard = %self.id(), after = lsn, to = self.wal.last().1, "truncating divergent uncommitted tail");
                    self.wal.truncate_after(lsn).await?;
                }
                Effect::Append { from } => {
                    let fresh = data.entries.split_off(from.min(data.entries.len()));
                    if !fresh.is_empty() {
                        self.wal.append(fresh).await?;
                    }
                }
                Effect::RaiseCommit(lsn) => self.raise_commit(lsn),
            }
        }
        c.node = next;
        Ok(noop)
    }

    pub(super) async fn take(
        self: &Arc<Self>,
        c: &mut Control,
        ready: Ready,
        data: &mut EffectData,
    ) -> Result<Option<Lsn>, ShardError> {
        self.execute(c, ready.next, ready.effects, data).await
    }
}
