//! The primary's rules (docs/replication.md, "Write path" steps 4 and 5, and step-down): the
//! quorum commit point, whether a client write is taken, how far to back up after a mismatch.

use crate::{Epoch, Lsn, Role};

/// The commit point given the LSNs each replica holds durably (the primary's own included):
/// the quorum-th highest, if it is at or after the first entry of the primary's epoch (its
/// no-op; invariant 7).
pub fn quorum_commit(mut held: Vec<Lsn>, quorum: usize, epoch_start: Lsn) -> Option<Lsn> {
    if quorum == 0 || held.len() < quorum {
        return None;
    }
    held.sort_unstable_by(|a, b| b.cmp(a));
    let c = held[quorum - 1];
    (c >= epoch_start).then_some(c)
}

/// What decides whether a replica takes a client write now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteCheck {
    /// The replica's role; only a primary takes writes.
    pub role: Role,
    /// The no-op of the epoch is committed.
    pub ready: bool,
    /// A step-down is under way.
    pub draining: bool,
    /// Replicas heard from recently, the primary included.
    pub reachable: usize,
    /// Replicas needed to commit.
    pub quorum: usize,
}

/// Why a client write is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotWritable {
    /// This replica is not the primary.
    #[error("not the primary")]
    NotPrimary,
    /// The primary's no-op is not committed yet, or it is stepping down.
    #[error("the primary is not ready to take writes")]
    NotReady,
    /// Fewer replicas than a quorum were heard from recently.
    #[error("no majority: {reachable} of {needed} needed replicas reachable")]
    NoQuorum {
        /// Replicas heard from recently, the primary included.
        reachable: usize,
        /// Replicas needed to commit.
        needed: usize,
    },
}

/// A client write is taken by a primary whose no-op is committed, that is not stepping down and
/// that hears from a quorum (else it would only wait: refuse at once).
pub fn admit_write(w: WriteCheck) -> Result<(), NotWritable> {
    if w.role != Role::Primary {
        return Err(NotWritable::NotPrimary);
    }
    if !w.ready || w.draining {
        return Err(NotWritable::NotReady);
    }
    if w.reachable < w.quorum {
        return Err(NotWritable::NoQuorum {
            reachable: w.reachable,
            needed: w.quorum,
        });
    }
    Ok(())
}

/// The next LSN to send a secondary that answered a mismatch while being sent from `next`: one
/// back, or right after its last entry if that is lower, never below 1.
pub fn back_up(next: Lsn, peer_last: Lsn) -> Lsn {
    next.saturating_sub(1).min(peer_last + 1).max(1)
}

/// A step-down is complete when no write is between its check and its log append and the target
/// holds the primary's whole log.
pub fn step_down_done(in_flight: usize, target_holds: Option<Lsn>, last: Lsn) -> bool {
    in_flight == 0 && target_holds.is_some_and(|m| m >= last)
}

/// Whether a secondary that needs entries from `next` is better served by a snapshot: the
/// entries are compacted away (before `first_lsn`), or it lags more than `retain` entries
/// behind the primary's applied point.
pub fn needs_snapshot(next: Lsn, first_lsn: Lsn, applied: Lsn, retain: u64) -> bool {
    next < first_lsn || next.saturating_add(retain) < applied
}

/// Up to which LSN a replica may delete its log: what it applied and, on a primary (`held`: the
/// lowest LSN every replica holds), what every secondary holds, unless one lags more than
/// `retain` entries (it gets a snapshot instead).
pub fn compactable_through(applied: Lsn, held: Option<Lsn>, retain: u64) -> Lsn {
    match held {
        Some(h) => applied.min(h.max(applied.saturating_sub(retain))),
        None => applied,
    }
}

/// With WAL archiving on (`archived`: the last LSN the backup archive holds), compaction never
/// goes past it: an entry is deleted only once it is in the archive (docs/backup.md).
pub fn keep_unarchived(compactable: Lsn, archived: Option<Lsn>) -> Lsn {
    archived.map_or(compactable, |a| compactable.min(a))
}

/// The first LSN of `epoch` in a log given as the epoch of each entry from LSN 1 (`None`: none).
pub fn epoch_start(log: &[Epoch], epoch: Epoch) -> Option<Lsn> {
    log.iter().position(|e| *e == epoch).map(|i| i as Lsn + 1)
}

/// The secondary a primary hands its shard to when it steps down on its own (its agent
/// stopping): the one holding the highest LSN, so the next primary holds the whole log (ties:
/// the lowest name, a stable choice). Peers never heard from (`None`) do not qualify.
pub fn handover_target<'a>(
    held: impl IntoIterator<Item = (&'a str, Option<Lsn>)>,
) -> Option<&'a str> {
    held.into_iter()
        .filter_map(|(name, lsn)| lsn.map(|l| (name, l)))
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_is_the_quorum_th_highest_in_the_current_epoch() {
        assert_eq!(quorum_commit(vec![10, 7, 3], 2, 1), Some(7));
        assert_eq!(quorum_commit(vec![10, 7, 3], 3, 1), Some(3));
        assert_eq!(quorum_commit(vec![10, 7, 3], 2, 8), None);
        assert_eq!(quorum_commit(vec![10], 1, 1), Some(10));
        assert_eq!(quorum_commit(vec![10], 2, 1), None);
    }

    #[test]
    fn writes_need_a_ready_primary_with_a_quorum() {
        let ok = WriteCheck {
            role: Role::Primary,
            ready: true,
            draining: false,
            reachable: 2,
            quorum: 2,
        };
        assert_eq!(admit_write(ok), Ok(()));
        let secondary = WriteCheck {
            role: Role::Secondary,
            ..ok
        };
        assert_eq!(admit_write(secondary), Err(NotWritable::NotPrimary));
        let draining = WriteCheck {
            draining: true,
            ..ok
        };
        assert_eq!(admit_write(draining), Err(NotWritable::NotReady));
        let alone = WriteCheck { reachable: 1, ..ok };
        assert_eq!(
            admit_write(alone),
            Err(NotWritable::NoQuorum {
                reachable: 1,
                needed: 2
            })
        );
    }

    #[test]
    fn backing_up_and_stepping_down() {
        assert_eq!(back_up(10, 3), 4);
        assert_eq!(back_up(10, 20), 9);
        assert_eq!(back_up(1, 0), 1);
        assert!(step_down_done(0, Some(5), 5));
        assert!(!step_down_done(1, Some(5), 5));
        assert!(!step_down_done(0, Some(4), 5));
        assert_eq!(epoch_start(&[1, 1, 2, 2], 2), Some(3));
        assert_eq!(epoch_start(&[1], 2), None);
        assert!(needs_snapshot(5, 10, 20, 100));
        assert!(needs_snapshot(10, 1, 200, 100));
        assert!(!needs_snapshot(10, 1, 100, 100));
        assert_eq!(compactable_through(50, None, 10), 50);
        assert_eq!(compactable_through(50, Some(45), 10), 45);
        assert_eq!(compactable_through(50, Some(3), 10), 40);
        assert_eq!(keep_unarchived(40, None), 40);
        assert_eq!(keep_unarchived(40, Some(12)), 12);
        assert_eq!(keep_unarchived(40, Some(90)), 40);
    }

    #[test]
    fn the_handover_goes_to_the_secondary_holding_the_most() {
        assert_eq!(
            handover_target([("S1", Some(40)), ("S2", Some(42)), ("S3", None)]),
            Some("S2")
        );
        assert_eq!(
            handover_target([("S3", Some(42)), ("S2", Some(42))]),
            Some("S2"),
            "ties: the lowest name"
        );
        assert_eq!(handover_target([("S1", None)]), None, "never heard from");
        assert_eq!(handover_target(std::iter::empty()), None);
    }
}
