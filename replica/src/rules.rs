//! A replica's rules (docs/replication.md, "Agent endpoints" and "Write path" step 3): promises
//! per epoch, the primary it follows, and the continuity check of an append with the truncation
//! of a divergent uncommitted tail.

use crate::{Epoch, Lsn, Promise, Role};

/// One replica's rule state: who it is, what it promised, its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// This server's name.
    pub me: String,
    /// What it has promised (persisted).
    pub promise: Promise,
    /// Its current role in the shard.
    pub role: Role,
}

/// What the IO layer must do, in order, to move to [`Ready::next`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Write the promise durably before anything else happens (fencing depends on it).
    Persist(Promise),
    /// Take this role: leaving `Primary` stops replication; `Primary` starts it for the
    /// promised epoch, after the no-op.
    Become(Role),
    /// Append the no-op of the promised epoch to the log (a new primary's first entry).
    AppendNoop,
    /// Drop every log entry after this LSN (a divergent, uncommitted tail).
    TruncateAfter(Lsn),
    /// Append durably the append's entries from this index on (those before are held).
    Append {
        /// Index into [`Append::entries`] of the first entry to append.
        from: usize,
    },
    /// Raise the commit point to this LSN (never lower it).
    RaiseCommit(Lsn),
}

/// The outcome of a rule: the next state and the effects that lead to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    /// The state once every effect is executed.
    pub next: Replica,
    /// The effects, to execute in order.
    pub effects: Vec<Effect>,
}

/// Why a rule refuses an input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The replica promised a later epoch, or accepted another primary for this one.
    #[error("stale epoch: this replica has promised epoch {epoch}")]
    Stale {
        /// The epoch this replica promised.
        epoch: Epoch,
        /// The primary it accepted for that epoch, if any.
        primary: Option<String>,
    },
    /// The append does not continue this replica's log; it holds up to `last_lsn`.
    #[error("log mismatch: this replica's log ends at LSN {last_lsn} (epoch {last_epoch})")]
    Mismatch {
        /// Its log's last LSN, or the LSN before `prev_lsn` when the entry there has another
        /// epoch: where the primary should back up to.
        last_lsn: Lsn,
        /// Epoch of its log's last entry.
        last_epoch: Epoch,
    },
    /// The append conflicts with an entry this replica knows is committed: a broken invariant,
    /// the replica must halt rather than truncate it.
    #[error("conflicts with committed entry {lsn} (commit point {floor})")]
    Committed {
        /// The conflicting entry's LSN.
        lsn: Lsn,
        /// This replica's commit floor (highest LSN known committed or applied).
        floor: Lsn,
    },
    /// Only a primary may do this.
    #[error("not the primary of epoch {epoch}")]
    NotPrimary {
        /// The epoch this replica promised.
        epoch: Epoch,
        /// The primary it accepted for that epoch, if any.
        primary: Option<String>,
    },
    /// A step-down target that is not one of the primary's peers.
    #[error("{0} is not a replica of this shard")]
    NotPeer(String),
}

impl Replica {
    /// A replica at (re)start with its persisted promise. Standalone (no control plane): the
    /// primary of at least epoch 1. Otherwise it never resumes as primary by itself: it follows
    /// the primary it accepted for its epoch, or stays fenced.
    pub fn restart(me: &str, mut promise: Promise, standalone: bool) -> Replica {
        let role = if standalone {
            promise.epoch = promise.epoch.max(1);
            promise.primary = Some(me.to_owned());
            Role::Primary
        } else if promise.primary.as_ref().is_some_and(|p| p != me) {
            Role::Secondary
        } else {
            Role::Fenced
        };
        Replica {
            me: me.to_owned(),
            promise,
            role,
        }
    }

    fn stale(&self) -> Refusal {
        Refusal::Stale {
            epoch: self.promise.epoch,
            primary: self.promise.primary.clone(),
        }
    }

    fn moved(&self, promise: Promise, role: Role) -> Ready {
        Ready {
            next: Replica {
                me: self.me.clone(),
                promise: promise.clone(),
                role,
            },
            effects: vec![Effect::Persist(promise), Effect::Become(role)],
        }
    }

    /// Fence: promise `epoch` if it is above the promise, or equal with no primary accepted yet.
    /// A primary stops being one.
    pub fn fence(&self, epoch: Epoch) -> Result<Ready, Refusal> {
        let p = &self.promise;
        if epoch < p.epoch || (epoch == p.epoch && p.primary.is_some()) {
            return Err(self.stale());
        }
        let promise = Promise {
            epoch,
            primary: None,
        };
        Ok(self.moved(promise, Role::Fenced))
    }

    /// A peer told of a higher epoch: promise it and stop acting as primary. `None`: nothing to
    /// do (not higher).
    pub fn observe_epoch(&self, epoch: Epoch) -> Option<Ready> {
        (epoch > self.promise.epoch).then(|| {
            let promise = Promise {
                epoch,
                primary: None,
            };
            self.moved(promise, Role::Fenced)
        })
    }

    /// Promote: only when fenced at exactly `epoch` (no primary accepted for it). Persist this
    /// replica as the epoch's primary, append the no-op, then replicate.
    pub fn promote(&self, epoch: Epoch) -> Result<Ready, Refusal> {
        if self.promise.epoch != epoch || self.promise.primary.is_some() {
            return Err(self.stale());
        }
        let promise = Promise {
            epoch,
            primary: Some(self.me.clone()),
        };
        Ok(Ready {
            next: Replica {
                me: self.me.clone(),
                promise: promise.clone(),
                role: Role::Primary,
            },
            effects: vec![
                Effect::Persist(promise),
                Effect::AppendNoop,
                Effect::Become(Role::Primary),
            ],
        })
    }

    /// Accept `primary` as the sender for `epoch` (appends, snapshots): one primary per epoch,
    /// nothing from an epoch below the promise, never itself (invariants 1, 2). The first
    /// sender of an epoch is persisted and followed.
    pub fn accept_primary(&self, epoch: Epoch, primary: &str) -> Result<Ready, Refusal> {
        let p = &self.promise;
        let stale = epoch < p.epoch
            || (epoch == p.epoch && p.primary.as_deref().is_some_and(|x| x != primary));
        if stale || primary == self.me {
            return Err(self.stale());
        }
        if epoch > p.epoch || p.primary.is_none() {
            let promise = Promise {
                epoch,
                primary: Some(primary.to_owned()),
            };
            return Ok(self.moved(promise, Role::Secondary));
        }
        Ok(Ready {
            next: self.clone(),
            effects: Vec::new(),
        })
    }

    /// A primary's read-index confirmation: fine while this replica follows it in `epoch`.
    pub fn confirm(&self, epoch: Epoch, primary: &str) -> Result<(), Refusal> {
        if self.promise.epoch == epoch && self.promise.primary.as_deref() == Some(primary) {
            Ok(())
        } else {
            Err(self.stale())
        }
    }

    /// A planned switchover may start: this replica is primary and `to` is one of `peers`.
    pub fn step_down<'a>(
        &self,
        mut peers: impl Iterator<Item = &'a str>,
        to: &str,
    ) -> Result<(), Refusal> {
        if self.role != Role::Primary {
            return Err(Refusal::NotPrimary {
                epoch: self.promise.epoch,
                primary: self.promise.primary.clone(),
            });
        }
        if !peers.any(|p| p == to) {
            return Err(Refusal::NotPeer(to.to_owned()));
        }
        Ok(())
    }
}

/// An entry's identity in a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryId {
    /// Epoch of the primary that proposed it.
    pub epoch: Epoch,
    /// Its position in the log.
    pub lsn: Lsn,
}

/// An append as the secondary receives it (after [`Replica::accept_primary`]).
#[derive(Debug, Clone, Copy)]
pub struct Append<'a> {
    /// The entry before the first one sent, which the secondary must hold.
    pub prev_lsn: Lsn,
    /// The epoch of that entry on the primary.
    pub prev_epoch: Epoch,
    /// The primary's commit point.
    pub commit_lsn: Lsn,
    /// Contiguous entries from `prev_lsn + 1`.
    pub entries: &'a [EntryId],
}

/// What the rule needs to know of the secondary's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogFacts {
    /// First LSN still in the log (entries before it are applied, hence committed).
    pub first_lsn: Lsn,
    /// Epoch of the log's last entry.
    pub last_epoch: Epoch,
    /// LSN of the log's last entry.
    pub last_lsn: Lsn,
    /// Highest LSN known committed or applied here: never truncated.
    pub commit_floor: Lsn,
}

/// How the secondary's log takes an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendPlan {
    /// The effects, in order: a truncation, the append, the commit point.
    pub effects: Vec<Effect>,
    /// The log's last LSN once the effects are executed.
    pub last_lsn: Lsn,
    /// What the primary may count this replica as holding (the answer of the append):
    /// `prev_lsn` + the entries, the part of the log this append checked against the
    /// primary's. A longer local tail is not checked (it may be an earlier primary's uncommitted
    /// entries at LSNs where the primary holds others), so it is never answered: the primary
    /// sends from the answer + 1 next, and those entries are compared then (Raft's
    /// `matchIndex`).
    pub matched: Lsn,
}

/// The LSNs whose local epoch [`plan_append`] reads: the IO layer looks them up beforehand.
pub fn append_lookups(append: &Append<'_>, log: &LogFacts) -> Vec<Lsn> {
    let mut out = Vec::new();
    if append.prev_lsn <= log.last_lsn && append.prev_lsn + 1 >= log.first_lsn {
        out.push(append.prev_lsn);
    }
    out.extend(
        append
            .entries
            .iter()
            .map(|e| e.lsn)
            .filter(|l| *l >= log.first_lsn && *l <= log.last_lsn),
    );
    out
}

/// The continuity check of an append (write path 3): the entry at `prev_lsn` must have
/// `prev_epoch` (log matching, invariant 4); entries already held are skipped; the first one
/// that conflicts truncates the tail from it (never at or below the commit floor, invariant 6);
/// the rest is appended; the commit point rises to `min(commit_lsn, prev_lsn + entries)`.
/// `epoch_at` answers the local epoch of the LSNs of [`append_lookups`].
pub fn plan_append(
    append: &Append<'_>,
    log: &LogFacts,
    epoch_at: impl Fn(Lsn) -> Option<Epoch>,
) -> Result<AppendPlan, Refusal> {
    if append.prev_lsn > log.last_lsn {
        return Err(Refusal::Mismatch {
            last_lsn: log.last_lsn,
            last_epoch: log.last_epoch,
        });
    }
    // Entries before the first retained one are applied, hence committed, hence the same.
    if append.prev_lsn + 1 >= log.first_lsn && epoch_at(append.prev_lsn) != Some(append.prev_epoch)
    {
        return Err(Refusal::Mismatch {
            last_lsn: append.prev_lsn.saturating_sub(1),
            last_epoch: log.last_epoch,
        });
    }
    let mut effects = Vec::new();
    let mut held = log.last_lsn;
    let mut from = None;
    for (i, e) in append.entries.iter().enumerate() {
        if e.lsn < log.first_lsn {
            continue;
        }
        if e.lsn <= held {
            if epoch_at(e.lsn) == Some(e.epoch) {
                continue;
            }
            if e.lsn <= log.commit_floor {
                return Err(Refusal::Committed {
                    lsn: e.lsn,
                    floor: log.commit_floor,
                });
            }
            effects.push(Effect::TruncateAfter(e.lsn - 1));
            held = e.lsn - 1;
        }
        // Entries are contiguous: once one is new, every later one is too.
        from.get_or_insert(i);
        held += 1;
    }
    if let Some(from) = from {
        effects.push(Effect::Append { from });
    }
    let verified = append.prev_lsn + append.entries.len() as Lsn;
    effects.push(Effect::RaiseCommit(append.commit_lsn.min(verified)));
    Ok(AppendPlan {
        effects,
        last_lsn: held,
        matched: verified,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(epoch: Epoch, primary: Option<&str>, role: Role) -> Replica {
        Replica {
            me: "S0".into(),
            promise: Promise {
                epoch,
                primary: primary.map(str::to_owned),
            },
            role,
        }
    }

    #[test]
    fn fence_needs_a_higher_epoch_or_an_open_one() {
        let r = replica(3, Some("S1"), Role::Secondary);
        assert!(r.fence(3).is_err());
        assert!(r.fence(2).is_err());
        let ready = r.fence(4).expect("higher");
        assert_eq!(ready.next.role, Role::Fenced);
        assert_eq!(
            ready.effects[0],
            Effect::Persist(ready.next.promise.clone())
        );
        assert!(replica(3, None, Role::Fenced).fence(3).is_ok());
    }

    #[test]
    fn promote_only_when_fenced_at_exactly_the_epoch() {
        assert!(replica(3, None, Role::Fenced).promote(4).is_err());
        assert!(replica(3, Some("S1"), Role::Secondary).promote(3).is_err());
        let ready = replica(3, None, Role::Fenced).promote(3).expect("fenced");
        assert_eq!(ready.next.promise.primary.as_deref(), Some("S0"));
        assert_eq!(ready.effects[1], Effect::AppendNoop);
    }

    #[test]
    fn one_primary_per_epoch_and_never_itself() {
        let r = replica(3, None, Role::Fenced);
        assert!(r.accept_primary(2, "S1").is_err());
        assert!(r.accept_primary(3, "S0").is_err());
        let following = r.accept_primary(3, "S1").expect("first").next;
        assert!(following.accept_primary(3, "S2").is_err());
        assert!(
            following
                .accept_primary(3, "S1")
                .expect("same")
                .effects
                .is_empty()
        );
        assert_eq!(
            following
                .accept_primary(4, "S2")
                .expect("newer")
                .next
                .promise
                .epoch,
            4
        );
    }

    #[test]
    fn restart_never_resumes_as_primary() {
        let p = |x: &str| Promise {
            epoch: 2,
            primary: Some(x.into()),
        };
        assert_eq!(Replica::restart("S0", p("S0"), false).role, Role::Fenced);
        assert_eq!(Replica::restart("S0", p("S1"), false).role, Role::Secondary);
        assert_eq!(
            Replica::restart("S0", Promise::default(), true)
                .promise
                .epoch,
            1
        );
    }

    fn ids(epochs: &[Epoch], from: Lsn) -> Vec<EntryId> {
        epochs
            .iter()
            .enumerate()
            .map(|(i, e)| EntryId {
                epoch: *e,
                lsn: from + i as Lsn,
            })
            .collect()
    }

    /// The epoch at each LSN of a local log holding `local` from LSN 1 (LSN 0 is epoch 0).
    fn epochs(local: &[Epoch]) -> impl Fn(Lsn) -> Option<Epoch> + Copy + '_ {
        move |l| {
            if l == 0 {
                Some(0)
            } else {
                local.get(l as usize - 1).copied()
            }
        }
    }

    #[test]
    fn append_truncates_only_an_uncommitted_divergent_tail() {
        // Local log: epochs [1, 1, 1] at 1..=3, commit 1; the primary of epoch 2 sends [1, 2].
        let local = [1, 1, 1];
        let at = epochs(&local);
        let log = LogFacts {
            first_lsn: 1,
            last_epoch: 1,
            last_lsn: 3,
            commit_floor: 1,
        };
        let entries = ids(&[1, 2], 2);
        let a = Append {
            prev_lsn: 1,
            prev_epoch: 1,
            commit_lsn: 3,
            entries: &entries,
        };
        assert_eq!(append_lookups(&a, &log), vec![1, 2, 3]);
        let plan = plan_append(&a, &log, at).expect("continues");
        assert_eq!(
            plan.effects,
            vec![
                Effect::TruncateAfter(2),
                Effect::Append { from: 1 },
                Effect::RaiseCommit(3)
            ]
        );
        assert_eq!(plan.last_lsn, 3);
        assert_eq!(plan.matched, 3);
        // The same at a commit floor of 3 would remove a committed entry: refused.
        let committed = LogFacts {
            commit_floor: 3,
            ..log
        };
        assert_eq!(
            plan_append(&a, &committed, at),
            Err(Refusal::Committed { lsn: 3, floor: 3 })
        );
        // A gap or a different previous entry is a mismatch.
        let gap = Append { prev_lsn: 5, ..a };
        assert!(matches!(
            plan_append(&gap, &log, at),
            Err(Refusal::Mismatch { last_lsn: 3, .. })
        ));
        let other = Append { prev_epoch: 2, ..a };
        assert!(matches!(
            plan_append(&other, &log, at),
            Err(Refusal::Mismatch { last_lsn: 0, .. })
        ));
    }

    #[test]
    fn an_unchecked_longer_tail_is_not_answered_as_held() {
        // Local log: epochs [1, 1, 1, 1] at 1..=4 (LSNs 3 and 4 from an earlier primary that
        // never committed them); the primary of epoch 2 holds [1, 1, 2] and sends an empty
        // append after LSN 2. Answering 4 would let it count this replica as holding its
        // LSN 3 of epoch 2, which it does not.
        let local = [1, 1, 1, 1];
        let at = epochs(&local);
        let log = LogFacts {
            first_lsn: 1,
            last_epoch: 1,
            last_lsn: 4,
            commit_floor: 1,
        };
        let empty = Append {
            prev_lsn: 2,
            prev_epoch: 1,
            commit_lsn: 2,
            entries: &[],
        };
        let plan = plan_append(&empty, &log, at).expect("continues");
        assert_eq!(plan.last_lsn, 4);
        assert_eq!(plan.matched, 2);
        assert_eq!(plan.effects, vec![Effect::RaiseCommit(2)]);
        // The next append from LSN 3 finds the divergence and truncates it.
        let entries = ids(&[2], 3);
        let next = Append {
            prev_lsn: 2,
            prev_epoch: 1,
            commit_lsn: 2,
            entries: &entries,
        };
        let plan = plan_append(&next, &log, at).expect("continues");
        assert_eq!(plan.effects[0], Effect::TruncateAfter(2));
        assert_eq!((plan.last_lsn, plan.matched), (3, 3));
    }
}
