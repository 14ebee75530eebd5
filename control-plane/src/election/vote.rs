//! The vote rule: which replica a fence round promotes ([`decide`], [`decide_joint`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use walshard_contract::majority;

/// One replica's answer to `fence {epoch}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum FenceAnswer {
    /// 200: promised `epoch`; the end of its log is `(last_epoch, last_lsn)`.
    Accepted {
        /// The replica's server.
        server: String,
        /// The epoch it promised.
        epoch: u64,
        /// Epoch of its last WAL entry.
        last_epoch: u64,
        /// LSN of its last WAL entry.
        last_lsn: u64,
    },
    /// 409: it has promised `epoch` already (higher, or equal with a primary accepted).
    Rejected {
        /// The replica's server.
        server: String,
        /// The epoch it has promised.
        epoch: u64,
    },
    /// No answer (refused, timeout, other error).
    Unreachable {
        /// The replica's server.
        server: String,
    },
}

impl FenceAnswer {
    /// The server that answered (or did not).
    pub fn server(&self) -> &str {
        match self {
            FenceAnswer::Accepted { server, .. }
            | FenceAnswer::Rejected { server, .. }
            | FenceAnswer::Unreachable { server } => server,
        }
    }
}

/// What to do with the fence answers collected so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not enough answers yet to decide.
    NeedMore,
    /// A replica has promised an epoch ≥ ours: fence again at `epoch`.
    Retry {
        /// 1 + the highest epoch a replica rejected with.
        epoch: u64,
    },
    /// Too few replicas accepted to ever reach the fence quorum (or, in a joint round, to ever
    /// give a new replica enough votes) in this round.
    NoQuorum,
    /// A fence quorum accepted `epoch`; `server` has the highest `(last_epoch, last_lsn)` (in a
    /// joint round: of the new replicas with enough votes).
    Promote {
        /// The replica to promote.
        server: String,
        /// The epoch it leads.
        epoch: u64,
    },
}

/// A replica set and how many of its replicas must vote in an election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoterSet<'a> {
    /// The replicas' server names.
    pub replicas: &'a [String],
    /// How many of them must accept the fence.
    pub quorum: usize,
}

impl<'a> VoterSet<'a> {
    /// `replicas` with a majority quorum.
    pub fn majority(replicas: &'a [String]) -> Self {
        Self {
            replicas,
            quorum: majority(replicas.len()),
        }
    }
}

/// Decides a fence round at `epoch` for a shard with `replicas` ([`decide_joint`] without a
/// previous set).
///
/// - Any rejection carrying an epoch ≥ ours → [`Decision::Retry`] at 1 + the highest such epoch
///   (the rejecting replica could never follow a primary of our epoch).
/// - Fewer than `quorum` acceptances: [`Decision::NeedMore`] while the unanswered replicas could
///   still make up the quorum, else [`Decision::NoQuorum`].
/// - A quorum accepted, and the preferred replica (if any) has answered: [`Decision::Promote`] the
///   acceptor with the highest `(last_epoch, last_lsn)`; ties go to the preferred replica, then to
///   the lowest name.
///
/// Answers from servers outside `replicas` are ignored; a later answer of a server replaces an
/// earlier one; acceptances of another epoch do not count. `quorum` is at least 1.
pub fn decide(
    replicas: &[String],
    quorum: usize,
    epoch: u64,
    answers: &[FenceAnswer],
    preferred: Option<&str>,
) -> Decision {
    decide_joint(
        VoterSet { replicas, quorum },
        None,
        epoch,
        answers,
        preferred,
    )
}

/// Decides a fence round at `epoch`, during a replica-set change when `previous` is set.
///
/// Raft's vote rule, with the fence acceptance as the vote: an acceptor votes for a candidate
/// whose `(last_epoch, last_lsn)` is at least its own. A candidate qualifies with `quorum`
/// votes in `new` and, when set, `quorum` votes in `previous`. Every committed entry is on a
/// quorum of the set it was committed in, that quorum meets the candidate's voters, and a log at
/// least as long as a voter's holds the voter's committed entries (docs/replication.md,
/// invariant 3). An empty newcomer therefore never wins while previous replicas with data
/// answer: they do not vote for it.
///
/// The winner is a qualified acceptor of `new`. Only when no replica of `new` can qualify any
/// more (e.g. every replica replaced by empty newcomers) does a qualified previous replica win:
/// promoted with the new list, it counts itself in its commit quorum (a majority of the new
/// replicas and itself), which meets every majority of `new`; once its no-op is committed an
/// election in `new` alone is safe.
///
/// - Any rejection carrying an epoch ≥ ours → [`Decision::Retry`] at 1 + the highest such epoch.
/// - A winner: once the preferred replica (if in `new`) has answered, [`Decision::Promote`] the
///   qualified one with the highest `(last_epoch, last_lsn)`; ties go to the preferred replica,
///   then to the lowest name. Without `previous` this is the acceptor with the highest log, once
///   `quorum` accepted.
/// - Otherwise [`Decision::NeedMore`] while the unanswered replicas could still make a winner,
///   else [`Decision::NoQuorum`].
///
/// Answers from servers in neither set are ignored; a later answer of a server replaces an
/// earlier one; acceptances of another epoch do not count. Quorums are at least 1.
pub fn decide_joint(
    new: VoterSet<'_>,
    previous: Option<VoterSet<'_>>,
    epoch: u64,
    answers: &[FenceAnswer],
    preferred: Option<&str>,
) -> Decision {
    let sets: Vec<VoterSet<'_>> = std::iter::once(new).chain(previous).collect();
    let members: BTreeSet<&str> = sets
        .iter()
        .flat_map(|s| s.replicas.iter().map(String::as_str))
        .collect();
    let mut latest: BTreeMap<&str, &FenceAnswer> = BTreeMap::new();
    for a in answers {
        if members.contains(a.server()) {
            latest.insert(a.server(), a);
        }
    }
    let higher = latest
        .values()
        .filter_map(|a| match a {
            FenceAnswer::Rejected { epoch: e, .. } if *e >= epoch => Some(*e),
            _ => None,
        })
        .max();
    if let Some(e) = higher {
        return Decision::Retry {
            epoch: e.saturating_add(1),
        };
    }
    let accepted: BTreeMap<&str, (u64, u64)> = latest
        .values()
        .filter_map(|a| match a {
            FenceAnswer::Accepted {
                server,
                epoch: e,
                last_epoch,
                last_lsn,
            } if *e == epoch => Some((server.as_str(), (*last_epoch, *last_lsn))),
            _ => None,
        })
        .collect();
    // Votes of `set` for a log (`None`: longer than any), and its unanswered replicas.
    let votes = |set: &VoterSet<'_>, log: Option<(u64, u64)>| {
        set.replicas
            .iter()
            .filter(|r| {
                accepted
                    .get(r.as_str())
                    .is_some_and(|l| log.is_none_or(|log| *l <= log))
            })
            .count()
    };
    let pending = |set: &VoterSet<'_>| {
        set.replicas
            .iter()
            .filter(|r| !latest.contains_key(r.as_str()))
            .count()
    };
    let in_new = |s: &str| new.replicas.iter().any(|r| r == s);
    let qualifies = |log: (u64, u64)| {
        sets.iter()
            .all(|set| votes(set, Some(log)) >= set.quorum.max(1))
    };
    // Could a candidate with `log` (`None`: an unanswered one) still qualify?
    let could = |log: Option<(u64, u64)>| {
        sets.iter()
            .all(|set| votes(set, log) + pending(set) >= set.quorum.max(1))
    };
    let best = |eligible: &dyn Fn(&str) -> bool| {
        accepted
            .iter()
            .filter(|(s, log)| eligible(s) && qualifies(**log))
            .max_by(|(a, la), (b, lb)| {
                la.cmp(lb)
                    .then_with(|| (Some(**a) == preferred).cmp(&(Some(**b) == preferred)))
                    .then_with(|| b.cmp(a))
            })
            .map(|(s, _)| *s)
    };
    let winner = match best(&in_new) {
        Some(w) => Some(w),
        None => {
            let new_possible = (pending(&new) > 0 && could(None))
                || accepted
                    .iter()
                    .any(|(s, log)| in_new(s) && could(Some(*log)));
            if new_possible {
                return Decision::NeedMore;
            }
            // No new replica can win: a previous one bridges (see the doc above).
            best(&|_| true)
        }
    };
    if let Some(server) = winner {
        if let Some(p) = preferred
            && in_new(p)
            && !latest.contains_key(p)
        {
            return Decision::NeedMore;
        }
        return Decision::Promote {
            server: server.to_owned(),
            epoch,
        };
    }
    let unanswered = sets.iter().any(|set| pending(set) > 0);
    let possible = (unanswered && could(None)) || accepted.values().any(|log| could(Some(*log)));
    if possible {
        Decision::NeedMore
    } else {
        Decision::NoQuorum
    }
}
