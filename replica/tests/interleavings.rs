//! Property tests of the rule book: random interleavings of elections (begin, fence one replica,
//! promote the winner), client writes, partial and repeated appends (which truncate divergent
//! tails), step-downs and crashes over 3 or 5 in-memory replicas. After every step:
//! - no replica's promised epoch goes back;
//! - no committed entry is truncated or changed, and a new primary holds every entry committed
//!   in an earlier epoch;
//! - at most one replica is promoted, and at most one commits, per epoch.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

use std::collections::BTreeMap;

use proptest::prelude::*;
use walshard_replica::mem::MemReplica;
use walshard_replica::primary::epoch_start;
use walshard_replica::{
    Append, Epoch, Lsn, Refusal, Role, WriteCheck, admit_write, back_up, quorum_commit,
};

#[derive(Debug, Clone)]
enum Op {
    /// An elector starts an election at 1 + the highest epoch promised or begun + `bump`: no two
    /// elections share an epoch. That is the control plane's guarantee (one per fleet, each
    /// election at `max_epoch_seen + 1`), not a replica rule: a fence accepts its own epoch again
    /// (retries), so two electors at one epoch could both fence a majority
    /// (docs/replication.md, "One elector per epoch").
    Begin { bump: u64 },
    /// Election `k` (modulo those begun) fences replica `r`.
    Fence { k: usize, r: usize },
    /// Election `k` promotes the highest log among its fence answers, if they are a majority;
    /// an election decides once, so promoting it again retries the same winner (as the control
    /// plane does: a failed promotion starts a new election at a new epoch).
    Promote { k: usize },
    /// A client write at replica `p` (taken only by a ready primary).
    Write { p: usize },
    /// Primary `p` sends peer `to` up to `len` entries from the LSN it believes comes next, or
    /// from `back` entries earlier (a retransmission).
    Send {
        p: usize,
        to: usize,
        back: u64,
        len: u64,
    },
    /// Primary `p` steps down towards `to`.
    StepDown { p: usize, to: usize },
    /// Replica `r` crashes and restarts.
    Crash { r: usize },
}

fn step(n: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..2u64).prop_map(|bump| Op::Begin { bump }),
        4 => (0..4usize, 0..n).prop_map(|(k, r)| Op::Fence { k, r }),
        2 => (0..4usize).prop_map(|k| Op::Promote { k }),
        3 => (0..n).prop_map(|p| Op::Write { p }),
        8 => (0..n, 0..n, 0..3u64, 0..4u64).prop_map(|(p, to, back, len)| Op::Send { p, to, back, len }),
        1 => (0..n, 0..n).prop_map(|(p, to)| Op::StepDown { p, to }),
        1 => (0..n).prop_map(|r| Op::Crash { r }),
    ]
}

#[derive(Debug, Default)]
struct Election {
    epoch: Epoch,
    /// Replica → its last entry `(epoch, lsn)` when fenced.
    answers: BTreeMap<usize, (Epoch, Lsn)>,
    /// The winner, once decided.
    winner: Option<usize>,
}

/// What a primary's IO layer keeps for its epoch.
#[derive(Debug)]
struct Leading {
    epoch: Epoch,
    next: Vec<Lsn>,
    matched: Vec<Lsn>,
    draining: bool,
}

struct Cluster {
    replicas: Vec<MemReplica>,
    leading: BTreeMap<usize, Leading>,
    elections: Vec<Election>,
    /// LSN → (entry epoch, lowest epoch of a primary that committed it).
    committed: BTreeMap<Lsn, (Epoch, Epoch)>,
    committers: BTreeMap<Epoch, usize>,
    /// Epoch → the replica promoted in it.
    promoted: BTreeMap<Epoch, usize>,
}

impl Cluster {
    fn new(n: usize) -> Self {
        Self {
            replicas: (0..n).map(|i| MemReplica::new(&format!("S{i}"))).collect(),
            leading: BTreeMap::new(),
            elections: Vec::new(),
            committed: BTreeMap::new(),
            committers: BTreeMap::new(),
            promoted: BTreeMap::new(),
        }
    }

    fn quorum(&self) -> usize {
        self.replicas.len() / 2 + 1
    }

    fn name(i: usize) -> String {
        format!("S{i}")
    }

    /// Drops the IO state of a replica that is no longer the primary it was.
    fn forget_if_not_leading(&mut self, r: usize) {
        let rep = &self.replicas[r];
        if self
            .leading
            .get(&r)
            .is_some_and(|l| rep.role() != Role::Primary || rep.promise().epoch != l.epoch)
        {
            self.leading.remove(&r);
        }
    }

    /// The primary's commit rule, and the checks that no committed entry changes and only one
    /// replica commits per epoch.
    fn recompute_commit(&mut self, p: usize) -> Result<(), TestCaseError> {
        let Some(l) = self.leading.get(&p) else {
            return Ok(());
        };
        let rep = &self.replicas[p];
        let mut held = l.matched.clone();
        held[p] = rep.last_lsn();
        let Some(start) = epoch_start(&rep.log, l.epoch) else {
            return Ok(());
        };
        let Some(c) = quorum_commit(held, self.quorum(), start) else {
            return Ok(());
        };
        if c <= rep.commit_lsn {
            return Ok(());
        }
        let epoch = l.epoch;
        let who = *self.committers.entry(epoch).or_insert(p);
        prop_assert_eq!(who, p, "two replicas committed in epoch {}", epoch);
        for lsn in 1..=c {
            let e = rep.epoch_at(lsn).unwrap_or(u64::MAX);
            let slot = self.committed.entry(lsn).or_insert((e, epoch));
            prop_assert_eq!(slot.0, e, "committed entry {} changed", lsn);
            slot.1 = slot.1.min(epoch);
        }
        self.replicas[p].commit_lsn = c;
        Ok(())
    }

    fn apply(&mut self, s: &Op) -> Result<(), TestCaseError> {
        let n = self.replicas.len();
        match *s {
            Op::Begin { bump } => {
                let top = self
                    .replicas
                    .iter()
                    .map(|r| r.promise().epoch)
                    .chain(self.elections.iter().map(|e| e.epoch))
                    .max();
                self.elections.push(Election {
                    epoch: top.unwrap_or(0) + 1 + bump,
                    answers: BTreeMap::new(),
                    winner: None,
                });
            }
            Op::Fence { k, r } => {
                if self.elections.is_empty() {
                    return Ok(());
                }
                let k = k % self.elections.len();
                let epoch = self.elections[k].epoch;
                if let Ok(last) = self.replicas[r].fence(epoch) {
                    self.elections[k].answers.insert(r, last);
                }
                self.forget_if_not_leading(r);
            }
            Op::Promote { k } => {
                if self.elections.is_empty() {
                    return Ok(());
                }
                let k = k % self.elections.len();
                let e = &self.elections[k];
                if e.answers.len() < self.quorum() {
                    return Ok(());
                }
                let decided = e.winner.or_else(|| {
                    e.answers
                        .iter()
                        .max_by_key(|(r, last)| (**last, *r))
                        .map(|(&r, _)| r)
                });
                let Some(w) = decided else {
                    return Ok(());
                };
                self.elections[k].winner = Some(w);
                let epoch = self.elections[k].epoch;
                let first = *self.promoted.entry(epoch).or_insert(w);
                prop_assert_eq!(first, w, "two replicas promoted in epoch {}", epoch);
                let Ok(noop) = self.replicas[w].promote(epoch) else {
                    return Ok(());
                };
                // Leader completeness: every entry committed in an earlier epoch is here.
                for (lsn, (entry_epoch, by)) in &self.committed {
                    if *by < epoch {
                        prop_assert_eq!(
                            self.replicas[w].epoch_at(*lsn),
                            Some(*entry_epoch),
                            "new primary {} of epoch {} lacks committed entry {}",
                            w,
                            epoch,
                            lsn
                        );
                    }
                }
                self.leading.insert(
                    w,
                    Leading {
                        epoch,
                        next: vec![noop; n],
                        matched: vec![0; n],
                        draining: false,
                    },
                );
                self.recompute_commit(w)?;
            }
            Op::Write { p } => {
                let Some(l) = self.leading.get(&p) else {
                    return Ok(());
                };
                let rep = &self.replicas[p];
                let start = epoch_start(&rep.log, l.epoch).unwrap_or(Lsn::MAX);
                let check = WriteCheck {
                    role: rep.role(),
                    ready: rep.commit_lsn >= start,
                    draining: l.draining,
                    reachable: self.quorum(),
                    quorum: self.quorum(),
                };
                if admit_write(check).is_ok() {
                    self.replicas[p].propose();
                    self.recompute_commit(p)?;
                }
            }
            Op::Send { p, to, back, len } => {
                if p == to {
                    return Ok(());
                }
                let Some(l) = self.leading.get(&p) else {
                    return Ok(());
                };
                let (epoch, primary) = (l.epoch, Self::name(p));
                let src = &self.replicas[p];
                let next = l.next[to].saturating_sub(back).max(1);
                let last = src.last_lsn();
                let entries: Vec<_> = src
                    .entries()
                    .into_iter()
                    .filter(|e| e.lsn >= next && e.lsn < next + len && e.lsn <= last)
                    .collect();
                let Some(prev_epoch) = src.epoch_at(next - 1) else {
                    return Ok(());
                };
                let append = Append {
                    prev_lsn: next - 1,
                    prev_epoch,
                    commit_lsn: src.commit_lsn,
                    entries: &entries,
                };
                let before = self.replicas[to].clone();
                let answer = self.replicas[to].append(epoch, &primary, &append);
                // Nothing at or below the receiver's commit point changed.
                let after = &self.replicas[to];
                for lsn in 1..=before.commit_lsn {
                    prop_assert_eq!(after.epoch_at(lsn), before.epoch_at(lsn));
                }
                self.forget_if_not_leading(to);
                match answer {
                    Ok(held) => {
                        if let Some(l) = self.leading.get_mut(&p) {
                            l.matched[to] = held;
                            l.next[to] = held + 1;
                        }
                        self.recompute_commit(p)?;
                    }
                    Err(Refusal::Mismatch { last_lsn, .. }) => {
                        if let Some(l) = self.leading.get_mut(&p) {
                            l.next[to] = back_up(l.next[to], last_lsn);
                        }
                    }
                    Err(Refusal::Stale { epoch: theirs, .. }) => {
                        self.replicas[p].observe_epoch(theirs);
                        self.forget_if_not_leading(p);
                    }
                    Err(e @ Refusal::Committed { .. }) => {
                        prop_assert!(false, "an append would truncate a committed entry: {e}");
                    }
                    Err(_) => {}
                }
            }
            Op::StepDown { p, to } => {
                let peers: Vec<String> = (0..n).filter(|i| *i != p).map(Self::name).collect();
                let target = Self::name(to);
                let allowed = self.replicas[p]
                    .node
                    .step_down(peers.iter().map(String::as_str), &target);
                if let (Ok(()), Some(l)) = (allowed, self.leading.get_mut(&p)) {
                    l.draining = true;
                }
            }
            Op::Crash { r } => {
                self.replicas[r].restart();
                self.forget_if_not_leading(r);
            }
        }
        Ok(())
    }
}

fn run(n: usize, steps: &[Op]) -> Result<(), TestCaseError> {
    let mut c = Cluster::new(n);
    for s in steps {
        let epochs: Vec<Epoch> = c.replicas.iter().map(|r| r.promise().epoch).collect();
        c.apply(s)?;
        for (r, before) in c.replicas.iter().zip(epochs) {
            prop_assert!(
                r.promise().epoch >= before,
                "an epoch went back after {s:?}"
            );
        }
        for r in &c.replicas {
            for lsn in 1..=r.commit_lsn {
                let (e, _) = c.committed.get(&lsn).copied().unwrap_or((0, 0));
                prop_assert_eq!(r.epoch_at(lsn), Some(e), "replica commit point disagrees");
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn three_replicas(steps in proptest::collection::vec(step(3), 1..120)) {
        run(3, &steps)?;
    }

    #[test]
    fn five_replicas(steps in proptest::collection::vec(step(5), 1..160)) {
        run(5, &steps)?;
    }
}

/// Raft's figure 8 on 5 replicas: a primary of epoch 3 gets an entry of epoch 1 onto a majority;
/// counting it committed would let the primary of epoch 4 (whose log has epoch 2 there) overwrite
/// it. The commit rule waits for the epoch's own no-op, so nothing is lost.
#[test]
fn an_old_entry_on_a_majority_is_not_committed_by_counting() {
    use Op::*;
    let a = 2; // primary of epochs 1 and 3 (fence ties go to the highest index)
    let b = 0; // primary of epochs 2 and 4
    let steps = [
        Begin { bump: 0 },
        Fence { k: 0, r: 0 },
        Fence { k: 0, r: 1 },
        Fence { k: 0, r: a },
        Promote { k: 0 },
        Send {
            p: a,
            to: 0,
            back: 0,
            len: 3,
        },
        Send {
            p: a,
            to: 1,
            back: 0,
            len: 3,
        },
        Write { p: a },
        Send {
            p: a,
            to: 1,
            back: 0,
            len: 3,
        },
        Begin { bump: 0 },
        Fence { k: 1, r: b },
        Fence { k: 1, r: 3 },
        Fence { k: 1, r: 4 },
        Promote { k: 1 },
        Begin { bump: 0 },
        Fence { k: 2, r: a },
        Fence { k: 2, r: 1 },
        Fence { k: 2, r: 3 },
        Promote { k: 2 },
        Send {
            p: a,
            to: 3,
            back: 0,
            len: 2,
        },
        Send {
            p: a,
            to: 3,
            back: 0,
            len: 2,
        },
        Send {
            p: a,
            to: 1,
            back: 0,
            len: 0,
        },
        Crash { r: a },
        Begin { bump: 0 },
        Fence { k: 3, r: b },
        Fence { k: 3, r: 3 },
        Fence { k: 3, r: 4 },
        Promote { k: 3 },
    ];
    let mut c = Cluster::new(5);
    for s in &steps {
        c.apply(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
    }
    // The scenario happened: epoch 1's entry 2 sat on a majority, and b now leads epoch 4.
    assert_eq!(c.replicas[3].log, vec![1, 1]);
    assert_eq!(c.replicas[b].promise().epoch, 4);
    assert_eq!(c.replicas[b].role(), Role::Primary);
    assert!(!c.committed.contains_key(&2));
}
