//! An in-memory executor of the rules: a replica whose log is a vector of epochs, every entry
//! durable at once and applied as soon as it is committed. The control plane's simulator and the
//! property tests run replicas through it.

use crate::rules::{Append, Effect, EntryId, LogFacts, Ready, Refusal, Replica, plan_append};
use crate::{Epoch, Lsn, Promise, Role};

/// One replica of a shard, in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemReplica {
    /// Its rule state (name, promise, role).
    pub node: Replica,
    /// `log[i]` is the epoch of the entry at LSN `i + 1`.
    pub log: Vec<Epoch>,
    /// Committed (and applied) up to here.
    pub commit_lsn: Lsn,
}

impl MemReplica {
    /// A new, empty replica: fenced at epoch 0.
    pub fn new(me: &str) -> Self {
        Self {
            node: Replica::restart(me, Promise::default(), false),
            log: Vec::new(),
            commit_lsn: 0,
        }
    }

    /// Its current role.
    pub fn role(&self) -> Role {
        self.node.role
    }

    /// What it has promised.
    pub fn promise(&self) -> &Promise {
        &self.node.promise
    }

    /// LSN of its last entry (0 when the log is empty).
    pub fn last_lsn(&self) -> Lsn {
        self.log.len() as Lsn
    }

    /// Epoch of its last entry (0 when the log is empty).
    pub fn last_epoch(&self) -> Epoch {
        self.log.last().copied().unwrap_or(0)
    }

    /// The epoch of the entry at `lsn` (0 before the first entry).
    pub fn epoch_at(&self, lsn: Lsn) -> Option<Epoch> {
        match lsn {
            0 => Some(0),
            l => self.log.get(l as usize - 1).copied(),
        }
    }

    /// The whole log as entry identities.
    pub fn entries(&self) -> Vec<EntryId> {
        self.log
            .iter()
            .enumerate()
            .map(|(i, e)| EntryId {
                epoch: *e,
                lsn: i as Lsn + 1,
            })
            .collect()
    }

    fn facts(&self) -> LogFacts {
        LogFacts {
            first_lsn: 1,
            last_epoch: self.last_epoch(),
            last_lsn: self.last_lsn(),
            commit_floor: self.commit_lsn,
        }
    }

    /// Executes `effects` on the in-memory log (`entries`: the append's, for `Append`).
    fn execute(&mut self, effects: &[Effect], entries: &[EntryId]) {
        for effect in effects {
            match effect {
                // Memory is the durable state here; roles have no IO to start or stop.
                Effect::Persist(_) | Effect::Become(_) => {}
                Effect::AppendNoop => self.log.push(self.node.promise.epoch),
                Effect::TruncateAfter(lsn) => self.log.truncate(*lsn as usize),
                Effect::Append { from } => {
                    self.log.extend(entries.iter().skip(*from).map(|e| e.epoch));
                }
                Effect::RaiseCommit(lsn) => self.commit_lsn = self.commit_lsn.max(*lsn),
            }
        }
    }

    fn take(&mut self, ready: Ready) {
        self.execute(&ready.effects, &[]);
        self.node = ready.next;
    }

    /// `fence`: answers the last entry `(last_epoch, last_lsn)` for the elector.
    pub fn fence(&mut self, epoch: Epoch) -> Result<(Epoch, Lsn), Refusal> {
        let ready = self.node.fence(epoch)?;
        self.take(ready);
        Ok((self.last_epoch(), self.last_lsn()))
    }

    /// A higher epoch learned from a peer.
    pub fn observe_epoch(&mut self, epoch: Epoch) {
        if let Some(ready) = self.node.observe_epoch(epoch) {
            self.take(ready);
        }
    }

    /// `promote`: answers the LSN of the epoch's no-op.
    pub fn promote(&mut self, epoch: Epoch) -> Result<Lsn, Refusal> {
        let ready = self.node.promote(epoch)?;
        self.take(ready);
        Ok(self.last_lsn())
    }

    /// A client write logged by a primary in its epoch: its LSN, or `None` if not primary.
    pub fn propose(&mut self) -> Option<Lsn> {
        (self.node.role == Role::Primary).then(|| {
            self.log.push(self.node.promise.epoch);
            self.last_lsn()
        })
    }

    /// An append from `primary` of `epoch`: accept the sender, check continuity, truncate a
    /// divergent tail, append, raise the commit point. Answers the LSN it verified
    /// ([`AppendPlan::matched`](crate::AppendPlan::matched)).
    pub fn append(
        &mut self,
        epoch: Epoch,
        primary: &str,
        append: &Append<'_>,
    ) -> Result<Lsn, Refusal> {
        let accepted = self.node.accept_primary(epoch, primary)?;
        self.take(accepted);
        let plan = plan_append(append, &self.facts(), |l| self.epoch_at(l))?;
        self.execute(&plan.effects, append.entries);
        Ok(plan.matched)
    }

    /// A crash and restart: the log and the promise survive, the role is recomputed (a former
    /// primary comes back fenced).
    pub fn restart(&mut self) {
        self.node = Replica::restart(&self.node.me, self.node.promise.clone(), false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_primary_overwrites_an_uncommitted_tail() {
        let mut a = MemReplica::new("A");
        let mut b = MemReplica::new("B");
        a.fence(1).expect("fence");
        b.fence(1).expect("fence");
        a.promote(1).expect("promote");
        a.propose();
        // B never got A's entries; B becomes primary of 2 and A follows it.
        b.fence(2).expect("fence");
        a.fence(2).expect("fence");
        b.promote(2).expect("promote");
        let entries = b.entries();
        let append = Append {
            prev_lsn: 0,
            prev_epoch: 0,
            commit_lsn: 0,
            entries: &entries,
        };
        assert_eq!(a.append(2, "B", &append), Ok(1));
        assert_eq!(a.log, vec![2]);
        assert_eq!(a.role(), Role::Secondary);
    }
}
