//! Refuses writes at once when the agent's volume (its WAL, and on one volume MySQL's data) is
//! nearly full, instead of letting them hang: MySQL blocks on a full disk until space returns,
//! and a WAL write that fails half-way would stop the shard. A write is taken only while more
//! than the reserve is free; once space is freed, writes resume by themselves (the free space is
//! read again at most every `RECHECK`, 100 ms).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a free-space reading is trusted.
const RECHECK: Duration = Duration::from_millis(100);

/// The volume is below its reserve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{free} bytes free on {path}, below the reserve of {reserve} bytes")]
pub struct DiskFull {
    /// The guarded path (on the full volume).
    pub path: String,
    /// Bytes free on the volume when last read.
    pub free: u64,
    /// The reserve in bytes: writes need more than this free.
    pub reserve: u64,
}

/// Free space of one volume against a reserve.
#[derive(Debug)]
pub struct DiskGuard {
    path: PathBuf,
    reserve: u64,
    last: Mutex<Option<(Instant, u64)>>,
}

impl DiskGuard {
    /// Guards the volume holding `path`; a reserve of 0 turns the guard off.
    pub fn new(path: PathBuf, reserve: u64) -> Self {
        Self {
            path,
            reserve,
            last: Mutex::new(None),
        }
    }

    /// Free bytes for unprivileged writers; `None` when the volume cannot be read.
    fn free_now(&self) -> Option<u64> {
        let s = nix::sys::statvfs::statvfs(&self.path).ok()?;
        Some(s.blocks_available().saturating_mul(s.fragment_size()))
    }

    /// The free space, read again when the last reading is older than `RECHECK` (100 ms).
    pub fn free(&self) -> Option<u64> {
        let mut last = match self.last.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        match *last {
            Some((at, free)) if at.elapsed() < RECHECK => Some(free),
            _ => {
                let free = self.free_now()?;
                *last = Some((Instant::now(), free));
                Some(free)
            }
        }
    }

    /// `Err` when a write must be refused. A volume that cannot be read is not refused here
    /// (the write itself reports what is wrong).
    pub fn check(&self) -> Result<(), DiskFull> {
        if self.reserve == 0 {
            return Ok(());
        }
        match self.free() {
            Some(free) if free <= self.reserve => Err(DiskFull {
                path: self.path.display().to_string(),
                free,
                reserve: self.reserve,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_below_the_reserve_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let free = DiskGuard::new(dir.path().into(), 1)
            .free()
            .expect("statvfs");
        assert!(free > 0);
        assert_eq!(DiskGuard::new(dir.path().into(), 0).check(), Ok(()));
        assert_eq!(DiskGuard::new(dir.path().into(), 1).check(), Ok(()));
        let full = DiskGuard::new(dir.path().into(), u64::MAX).check();
        assert!(
            matches!(
                full,
                Err(DiskFull {
                    reserve: u64::MAX,
                    ..
                })
            ),
            "{full:?}"
        );
    }
}
