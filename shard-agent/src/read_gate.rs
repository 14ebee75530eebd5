//! When a replica may serve a non-strong read: only a committed prefix, never a state that is
//! not one (docs/consistency.md). A replica that has just started (or restarted) does not know
//! how far the log is committed; until a primary has told it a commit point and it has applied
//! up to that point, and while it installs a snapshot, it refuses reads and the router goes to
//! another replica.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::wal::Lsn;

/// No commit point learned since start.
const UNKNOWN: u64 = u64::MAX;

/// The read gate of one shard replica.
#[derive(Debug)]
pub struct ReadGate {
    /// A standalone shard is its own primary: always readable.
    always: bool,
    /// The first commit point a primary told this replica since it started.
    learned: AtomicU64,
    installing: AtomicBool,
}

impl ReadGate {
    /// A gate that has learned nothing yet: closed except to a writable primary, unless
    /// `standalone` (then always open).
    pub fn new(standalone: bool) -> Self {
        Self {
            always: standalone,
            learned: AtomicU64::new(UNKNOWN),
            installing: AtomicBool::new(false),
        }
    }

    /// A primary's commit point, from an append this replica accepted.
    pub fn learn(&self, commit: Lsn) {
        let _ = self
            .learned
            .compare_exchange(UNKNOWN, commit, Ordering::AcqRel, Ordering::Acquire);
    }

    /// A snapshot install starts (`true`) or ends (`false`); it also forgets what was learned,
    /// since the snapshot replaces the state.
    pub fn installing(&self, on: bool) {
        self.installing.store(on, Ordering::Release);
        if on {
            self.learned.store(UNKNOWN, Ordering::Release);
        }
    }

    /// Whether a replica that has applied through `applied` may answer reads; `primary` when it
    /// is the writable primary of its epoch (it has applied all it acknowledged).
    pub fn readable(&self, applied: Lsn, primary: bool) -> bool {
        if self.always || primary {
            return true;
        }
        if self.installing.load(Ordering::Acquire) {
            return false;
        }
        match self.learned.load(Ordering::Acquire) {
            UNKNOWN => false,
            commit => applied >= commit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restarted_replica_reads_only_once_caught_up_to_a_learned_commit() {
        let g = ReadGate::new(false);
        assert!(!g.readable(10, false), "nothing learned yet");
        assert!(g.readable(10, true), "a writable primary");
        g.learn(12);
        g.learn(5); // only the first commit point since start counts
        assert!(!g.readable(11, false));
        assert!(g.readable(12, false));
        g.installing(true);
        assert!(!g.readable(100, false), "mid-snapshot");
        g.installing(false);
        assert!(
            !g.readable(100, false),
            "the snapshot replaced what was learned"
        );
        g.learn(100);
        assert!(g.readable(100, false));
        assert!(ReadGate::new(true).readable(0, false), "standalone");
    }
}
