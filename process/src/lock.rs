//! Exclusive file locks (`flock` through [`std::fs::File::try_lock`]), held while the file is open.
//!
//! The kernel releases a lock when its file closes, also when the holder dies, so a lock never
//! outlives its process.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::ProcessError;

/// Interval between attempts of [`lock_wait`].
const RETRY_INTERVAL: Duration = Duration::from_millis(20);

/// Opens (creating) `path` and takes its exclusive lock without waiting.
///
/// `Ok(None)` if another open file (in this or another process) holds it.
pub fn try_lock(path: &Path) -> Result<Option<File>, ProcessError> {
    let file = open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(locking(path, e)),
    }
}

/// Opens (creating) `path` and takes its exclusive lock, retrying up to `timeout`.
pub fn lock_wait(path: &Path, timeout: Duration) -> Result<File, ProcessError> {
    let file = open(path)?;
    let deadline = Instant::now() + timeout;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(RETRY_INTERVAL);
            }
            Err(TryLockError::WouldBlock) => {
                return Err(ProcessError::Timeout {
                    what: format!("lock {}", path.display()),
                    after: timeout,
                });
            }
            Err(TryLockError::Error(e)) => return Err(locking(path, e)),
        }
    }
}

/// Whether some open file holds the lock of the existing file `path` (`false` if it is absent).
pub fn is_locked(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    // A successful probe lock is released when `file` closes.
    matches!(file.try_lock(), Err(TryLockError::WouldBlock))
}

fn open(path: &Path) -> Result<File, ProcessError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| ProcessError::io(format!("opening lock file {}", path.display()), e))
}

fn locking(path: &Path, e: std::io::Error) -> ProcessError {
    ProcessError::io(format!("locking {}", path.display()), e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_until_the_first_closes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("x.lock");
        assert!(!is_locked(&path));
        let held = try_lock(&path).expect("lock").expect("free");
        assert!(is_locked(&path));
        assert!(try_lock(&path).expect("lock").is_none());
        let err = lock_wait(&path, Duration::from_millis(50)).expect_err("held");
        assert!(matches!(err, ProcessError::Timeout { .. }), "{err}");
        drop(held);
        assert!(!is_locked(&path));
        lock_wait(&path, Duration::from_millis(50)).expect("free again");
    }
}
