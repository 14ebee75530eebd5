//! Per-shard write-ahead log (WAL).
//!
//! # On-disk format
//!
//! One WAL per shard, in its own directory. The log is a sequence of segment
//! files named `{first_lsn:020}.wal`. Each segment starts with a 28-byte
//! header — magic `WSWAL001`, `first_lsn` u64 LE, `prev_epoch` u64 LE (epoch of
//! entry `first_lsn - 1`, 0 if none), crc32c u32 LE of the preceding 24 bytes —
//! followed by frames `[body_len u32 LE][crc32c(body) u32 LE][body]` with
//! `body = epoch u64 LE | lsn u64 LE | op_id u128 LE | payload` (see [`codec`]).
//! LSNs are contiguous (+1) across the whole log and epochs never decrease.
//!
//! Segments are preallocated: a segment file is created at its full size
//! ([`WalOptions::segment_bytes`]) filled with written zeros (not a hole or an
//! unwritten extent) and fsynced before it is used; frames then overwrite the
//! zeros in place, so a group commit's `fdatasync` flushes data blocks only and
//! never has to journal a file-size or extent change. The end of the log in a
//! segment is therefore the first offset where no valid frame starts and only
//! zero bytes follow: a zero length field (a body is at least 32 bytes, so
//! `body_len == 0` is never a frame) followed by zeros up to the end of the
//! file, or the end of the file itself. A segment rotates when the next frame
//! does not fit in `segment_bytes`; a frame that does not fit even in an empty
//! segment is written as the only frame of a fresh segment, which grows past
//! `segment_bytes` to hold it (that one append changes the file size). Segments
//! written before preallocation (ending at their last frame) are still read,
//! and the active one is extended with zeros when the log is opened.
//!
//! The next segment is prepared in the background: once the active segment is
//! half full, a helper thread writes the spare `next.wal.tmp` (zeros only) and
//! fsyncs it. Rotation then only writes the header into the spare, `fdatasync`s
//! it, renames it to its segment name and fsyncs the directory (the rotation
//! waits for the helper, or prepares the spare itself, if it is not ready). A
//! `reset` turns the spare into its marker the same way. Closing the WAL
//! removes an unused spare.
//!
//! A directory also holds `LOCK` (an advisory `flock` held while the WAL is
//! open) and, transiently, `*.tmp` (including the spare) / `reset.pending`
//! files. Recovery removes every `*.tmp` file, so a spare or a segment left
//! half-created by a crash is never taken for log data.
//!
//! # Guarantees
//!
//! - Durability: [`Wal::propose`], [`Wal::propose_many`] and [`Wal::append`]
//!   return only after the entries are written and, with
//!   [`FsyncPolicy::Always`], `fdatasync`ed. A dedicated writer thread group
//!   commits: it drains every queued request, writes them, issues one
//!   `fdatasync` for the group and then answers every caller.
//! - Crash safety: after a crash at any moment, [`Wal::open`] recovers a prefix
//!   of what was written that contains every acknowledged entry. A torn or
//!   corrupt tail of the last segment — a frame that does not decode or does
//!   not continue the log, or any non-zero byte after the zero end marker — is
//!   cut (and reported): the bytes from the cut to the last non-zero byte are
//!   overwritten with zeros and synced before anything is appended. The bytes
//!   dropped by [`Wal::truncate_after`] are zeroed the same way. So every byte
//!   after the end of the log is zero, and no stale frame can ever reappear
//!   behind later appends after another crash. In other segments the zero tail
//!   after the last frame is normal; anything else there, and corruption
//!   anywhere outside the last segment's tail, is an error, never silently
//!   dropped. A new segment's header is durable before the segment is renamed
//!   into place and the directory fsynced; the previous segment is always
//!   fsynced before rotation, so no policy can leave a hole between segments.
//! - [`Wal::truncate_after`], [`Wal::reset`] and [`Wal::compact_through`] are
//!   durable on return (regardless of [`FsyncPolicy`]) and crash-atomic: a
//!   crash midway leaves either the old or the new log, or (truncate/compact)
//!   an intermediate log that is itself a valid prefix/suffix.
//! - An IO error while writing poisons the WAL: every later write fails with
//!   [`WalError::Failed`] (reads still work); reopening runs recovery.
//!
//! Dropping a request future after it was issued does not withdraw the
//! entries: they may still be appended.

pub mod codec;
mod segment;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, mpsc};
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::{oneshot, watch};

use writer::Request;

/// Log sequence number; the first entry of a log has LSN 1.
pub type Lsn = u64;
/// Election term.
pub type Epoch = u64;

/// Operation id carried by every entry (deduplicates retried writes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct OpId(pub u128);

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Error parsing an [`OpId`] from text.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("invalid op id {0:?}: expected 32 hex digits")]
pub struct ParseOpIdError(pub String);

impl FromStr for OpId {
    type Err = ParseOpIdError;

    /// Parses exactly 32 hex digits (either case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseOpIdError(s.to_owned()));
        }
        u128::from_str_radix(s, 16)
            .map(OpId)
            .map_err(|_| ParseOpIdError(s.to_owned()))
    }
}

/// One log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Epoch in which the entry was proposed.
    pub epoch: Epoch,
    /// Position in the log.
    pub lsn: Lsn,
    /// Operation id.
    pub op_id: OpId,
    /// Opaque operation bytes (at most [`codec::MAX_PAYLOAD_LEN`]).
    pub payload: Bytes,
}

/// When appends are flushed to stable storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// One `fdatasync` per group commit: survives OS crash and power loss.
    #[default]
    Always,
    /// `write()` only: survives a process crash, not an OS crash.
    Never,
}

/// Options for [`Wal::open`].
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Size segment files are preallocated with (zeros); a segment rotates
    /// when the next frame does not fit. Small sizes work (a frame too large
    /// for an empty segment grows that segment), but a new log and every spare
    /// segment cost this many bytes of zeros written and fsynced.
    pub segment_bytes: u64,
    /// Fsync policy for appends.
    pub fsync: FsyncPolicy,
    /// Number of most recent entries kept in memory for [`Wal::read`].
    pub cache_entries: usize,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
            fsync: FsyncPolicy::Always,
            cache_entries: 65536,
        }
    }
}

/// What [`Wal::open`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files retained.
    pub segments: usize,
    /// Entries retained.
    pub entries: u64,
    /// First retained LSN (`last.1 + 1` when empty).
    pub first_lsn: Lsn,
    /// Last (epoch, lsn); `(0, 0)` for a new log.
    pub last: (Epoch, Lsn),
    /// The torn/corrupt tail that was cut, if any.
    pub cut: Option<CutTail>,
}

/// A tail removed by recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CutTail {
    /// Segment file that was cut (or removed, if its header was torn).
    pub segment: PathBuf,
    /// Offset at which it was cut (the new end of the log).
    pub offset: u64,
    /// Bytes from `offset` to the last non-zero byte, all overwritten with
    /// zeros (the zero padding after them is not counted).
    pub bytes_cut: u64,
    /// Why the bytes at `offset` were rejected.
    pub reason: String,
}

/// Counters since [`Wal::open`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// fsync/fdatasync calls on segment files and the directory.
    pub fsyncs: u64,
    /// Entries appended.
    pub entries_appended: u64,
    /// Frame bytes appended.
    pub bytes_appended: u64,
    /// Group commits that appended at least one entry.
    pub groups: u64,
    /// Largest number of entries in one group commit.
    pub max_group: u64,
    /// Group-commit `fdatasync` calls (included in `fsyncs`).
    pub commit_fsyncs: u64,
    /// Total time spent in group-commit `fdatasync` calls, in nanoseconds.
    pub commit_fsync_nanos: u64,
}

/// WAL errors.
#[derive(thiserror::Error, Debug)]
pub enum WalError {
    /// An IO operation failed.
    #[error("wal io error on {path}: {source}")]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Invalid data found outside a cuttable tail (or while reading).
    #[error("wal corrupt: {path} at offset {offset}: {reason}")]
    Corrupt {
        /// Segment file.
        path: PathBuf,
        /// Byte offset of the bad data.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Appended entries do not continue the log.
    #[error("entry not contiguous: expected lsn {expected}, got {got}")]
    NotContiguous {
        /// LSN the log needed next.
        expected: Lsn,
        /// LSN offered.
        got: Lsn,
    },
    /// Epoch lower than the log's last epoch (or a preceding entry's).
    #[error("stale epoch {got}: log is at epoch {last}")]
    StaleEpoch {
        /// Epoch the entry had to reach.
        last: Epoch,
        /// Epoch offered.
        got: Epoch,
    },
    /// The requested LSN is before the first retained one.
    #[error("lsn {lsn} is compacted; first retained lsn is {first}")]
    Compacted {
        /// LSN asked for.
        lsn: Lsn,
        /// First retained LSN.
        first: Lsn,
    },
    /// Payload larger than [`codec::MAX_PAYLOAD_LEN`].
    #[error("payload of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Payload length.
        len: usize,
        /// Maximum payload length.
        max: usize,
    },
    /// The LSN space would overflow `u64`.
    #[error("lsn space exhausted")]
    LsnExhausted,
    /// Another `Wal` holds the directory lock.
    #[error("wal directory {0} is locked by another open wal")]
    Locked(PathBuf),
    /// An earlier IO error poisoned the WAL; reopen it to recover.
    #[error("wal failed earlier and refuses writes: {0}")]
    Failed(String),
    /// The WAL was closed (or its writer thread stopped).
    #[error("wal is closed")]
    Closed,
}

impl WalError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        WalError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A copy suitable for answering several waiters with one failure.
    fn duplicate(&self) -> Self {
        match self {
            WalError::Io { path, source } => WalError::Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            WalError::Corrupt {
                path,
                offset,
                reason,
            } => WalError::Corrupt {
                path: path.clone(),
                offset: *offset,
                reason: reason.clone(),
            },
            WalError::NotContiguous { expected, got } => WalError::NotContiguous {
                expected: *expected,
                got: *got,
            },
            WalError::StaleEpoch { last, got } => WalError::StaleEpoch {
                last: *last,
                got: *got,
            },
            WalError::Compacted { lsn, first } => WalError::Compacted {
                lsn: *lsn,
                first: *first,
            },
            WalError::TooLarge { len, max } => WalError::TooLarge {
                len: *len,
                max: *max,
            },
            WalError::LsnExhausted => WalError::LsnExhausted,
            WalError::Locked(p) => WalError::Locked(p.clone()),
            WalError::Failed(s) => WalError::Failed(s.clone()),
            WalError::Closed => WalError::Closed,
        }
    }
}

/// Metadata of one segment file.
#[derive(Clone, Debug)]
struct SegMeta {
    first_lsn: Lsn,
    prev_epoch: Epoch,
    path: PathBuf,
    /// Sparse `(lsn, offset)` index of frame starts, ascending.
    index: Vec<(Lsn, u64)>,
}

impl SegMeta {
    /// Offset of the last indexed frame with lsn <= `lsn` (header end if none).
    fn seek_offset(&self, lsn: Lsn) -> u64 {
        let i = self.index.partition_point(|&(l, _)| l <= lsn);
        if i == 0 {
            codec::HEADER_LEN as u64
        } else {
            self.index[i - 1].1
        }
    }
}

/// Durable state shared by the handles and the writer thread.
struct State {
    first_lsn: Lsn,
    /// Epoch of entry `first_lsn - 1`.
    base_epoch: Epoch,
    last: (Epoch, Lsn),
    /// Sorted by `first_lsn`; never empty; the last one is active.
    segments: Vec<SegMeta>,
    /// Most recent entries, contiguous, ending at `last`.
    cache: VecDeque<Entry>,
    cache_cap: usize,
}

impl State {
    fn cache_push(&mut self, e: Entry) {
        if self.cache_cap == 0 {
            return;
        }
        if self.cache.len() >= self.cache_cap {
            self.cache.pop_front();
        }
        self.cache.push_back(e);
    }

    fn cache_get(&self, lsn: Lsn) -> Option<&Entry> {
        let front = self.cache.front()?.lsn;
        let i = usize::try_from(lsn.checked_sub(front)?).ok()?;
        self.cache.get(i)
    }
}

#[derive(Default)]
struct Stats {
    fsyncs: AtomicU64,
    entries: AtomicU64,
    bytes: AtomicU64,
    groups: AtomicU64,
    max_group: AtomicU64,
    commit_fsyncs: AtomicU64,
    commit_fsync_nanos: AtomicU64,
}

struct Shared {
    dir: PathBuf,
    state: Mutex<State>,
    /// Held shared by disk readers, exclusively while files are truncated or deleted.
    files: RwLock<()>,
    last_lsn: watch::Sender<Lsn>,
    stats: Stats,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Inner {
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<Request>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Disconnect the writer, let it drain, and wait so the directory lock is released.
        lock(&self.tx).take();
        if let Some(h) = lock(&self.thread).take() {
            let _ = h.join();
        }
    }
}

/// Handle to an open WAL; cheap to clone.
#[derive(Clone)]
pub struct Wal {
    inner: Arc<Inner>,
}

type Reply<T> = oneshot::Sender<Result<T, WalError>>;

impl Wal {
    /// Opens or creates the WAL in `dir`, running recovery (blocking IO).
    ///
    /// Every segment is scanned. A torn or corrupt tail of the last segment is
    /// cut at the last good frame (zeroed and synced), logged and reported; a
    /// last segment with a torn header and only zeros after it is removed.
    /// Corruption anywhere else yields [`WalError::Corrupt`]. Fails with
    /// [`WalError::Locked`] if another open `Wal` holds `dir`.
    ///
    /// Creating a new log writes and fsyncs a whole preallocated segment
    /// ([`WalOptions::segment_bytes`] of zeros) before returning.
    pub fn open(dir: &Path, opts: WalOptions) -> Result<(Wal, RecoveryReport), WalError> {
        let rec = segment::recover(dir, &opts)?;
        let report = rec.report.clone();
        let (last_lsn, _) = watch::channel(rec.last.1);
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            state: Mutex::new(State {
                first_lsn: rec.first_lsn,
                base_epoch: rec.base_epoch,
                last: rec.last,
                segments: rec.segments,
                cache: rec.cache,
                cache_cap: opts.cache_entries,
            }),
            files: RwLock::new(()),
            last_lsn,
            stats: Stats::default(),
        });
        let (tx, rx) = mpsc::channel();
        let w = writer::Writer::new(shared.clone(), opts, rec.lock, rec.active, rec.last);
        let thread = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || w.run(rx))
            .map_err(|e| WalError::io(dir, e))?;
        let wal = Wal {
            inner: Arc::new(Inner {
                shared,
                tx: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
            }),
        };
        Ok((wal, report))
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, WalError> {
        let (tx, rx) = oneshot::channel();
        {
            let g = lock(&self.inner.tx);
            let sender = g.as_ref().ok_or(WalError::Closed)?;
            sender.send(make(tx)).map_err(|_| WalError::Closed)?;
        }
        rx.await.map_err(|_| WalError::Closed)?
    }

    /// Primary path: appends one entry at the next LSN in `epoch`; returns it once durable.
    ///
    /// Fails with [`WalError::StaleEpoch`] if `epoch` is below the last entry's epoch.
    pub async fn propose(
        &self,
        epoch: Epoch,
        op_id: OpId,
        payload: Bytes,
    ) -> Result<Entry, WalError> {
        let mut v = self.propose_many(epoch, vec![(op_id, payload)]).await?;
        // The writer answers with exactly one entry per item.
        v.pop().ok_or(WalError::Closed)
    }

    /// Like [`Wal::propose`] for several entries: consecutive LSNs, one durable group.
    pub async fn propose_many(
        &self,
        epoch: Epoch,
        items: Vec<(OpId, Bytes)>,
    ) -> Result<Vec<Entry>, WalError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        check_sizes(items.iter().map(|(_, p)| p.len()))?;
        self.call(|reply| Request::Propose {
            epoch,
            items,
            reply,
        })
        .await
    }

    /// Secondary path: appends entries shipped by a primary; returns once durable.
    ///
    /// The first must have `lsn == last_lsn + 1` and the rest follow contiguously,
    /// else [`WalError::NotContiguous`]; epochs must not decrease (from the last
    /// entry on), else [`WalError::StaleEpoch`]. Nothing is appended on error.
    pub async fn append(&self, entries: Vec<Entry>) -> Result<(), WalError> {
        if entries.is_empty() {
            return Ok(());
        }
        check_sizes(entries.iter().map(|e| e.payload.len()))?;
        self.call(|reply| Request::Append { entries, reply }).await
    }

    /// Drops every entry with lsn > `lsn`; durable on return. No-op if `lsn >= last`.
    ///
    /// Fails with [`WalError::Compacted`] if `lsn < first_lsn - 1`.
    pub async fn truncate_after(&self, lsn: Lsn) -> Result<(), WalError> {
        self.call(|reply| Request::TruncateAfter { lsn, reply })
            .await
    }

    /// Atomically replaces the log by an empty one whose last entry is `(epoch, lsn)`.
    pub async fn reset(&self, epoch: Epoch, lsn: Lsn) -> Result<(), WalError> {
        if lsn == Lsn::MAX {
            return Err(WalError::LsnExhausted);
        }
        self.call(|reply| Request::Reset { epoch, lsn, reply })
            .await
    }

    /// Last durable (epoch, lsn); `(0, 0)` for a new empty log.
    pub fn last(&self) -> (Epoch, Lsn) {
        lock(&self.inner.shared.state).last
    }

    /// Watch channel of the last durable LSN (goes down after `truncate_after`).
    pub fn subscribe(&self) -> watch::Receiver<Lsn> {
        self.inner.shared.last_lsn.subscribe()
    }

    /// First retained LSN (`last + 1` when the log is empty).
    pub fn first_lsn(&self) -> Lsn {
        lock(&self.inner.shared.state).first_lsn
    }

    /// Directory of this WAL.
    pub fn dir(&self) -> &Path {
        &self.inner.shared.dir
    }

    /// Entries with `from <= lsn <= to` (clamped to the last durable LSN), at most `max`, in order.
    ///
    /// Served from the in-memory cache when it covers `from`, else from the
    /// segment files on a blocking thread. Fails with [`WalError::Compacted`]
    /// if `from < first_lsn`.
    pub async fn read(&self, from: Lsn, to: Lsn, max: usize) -> Result<Vec<Entry>, WalError> {
        {
            let st = lock(&self.inner.shared.state);
            if from < st.first_lsn {
                return Err(WalError::Compacted {
                    lsn: from,
                    first: st.first_lsn,
                });
            }
            let to = to.min(st.last.1);
            if from > to || max == 0 {
                return Ok(Vec::new());
            }
            if let Some(front) = st.cache.front()
                && front.lsn <= from
            {
                let start = usize::try_from(from - front.lsn).unwrap_or(usize::MAX);
                let n = usize::try_from(to - from + 1)
                    .unwrap_or(usize::MAX)
                    .min(max);
                return Ok(st.cache.iter().skip(start).take(n).cloned().collect());
            }
        }
        let shared = self.inner.shared.clone();
        tokio::task::spawn_blocking(move || segment::read_disk(&shared, from, to, max))
            .await
            .map_err(|e| WalError::io(&self.inner.shared.dir, std::io::Error::other(e)))?
    }

    /// Epoch of the entry at `lsn`: `Some(0)` for lsn 0, `None` if not retained.
    ///
    /// The entry just before the first retained one (`first_lsn - 1`) is known
    /// from the segment header, so it answers too.
    pub async fn epoch_at(&self, lsn: Lsn) -> Result<Option<Epoch>, WalError> {
        if lsn == 0 {
            return Ok(Some(0));
        }
        {
            let st = lock(&self.inner.shared.state);
            if lsn > st.last.1 || lsn < st.first_lsn - 1 {
                return Ok(None);
            }
            if lsn == st.first_lsn - 1 {
                return Ok(Some(st.base_epoch));
            }
            if lsn == st.last.1 {
                return Ok(Some(st.last.0));
            }
            if let Some(e) = st.cache_get(lsn) {
                return Ok(Some(e.epoch));
            }
        }
        match self.read(lsn, lsn, 1).await {
            Ok(v) => Ok(v.first().filter(|e| e.lsn == lsn).map(|e| e.epoch)),
            Err(WalError::Compacted { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes whole segments all of whose entries have lsn <= `lsn`, never the
    /// active one; returns how many were removed.
    pub async fn compact_through(&self, lsn: Lsn) -> Result<usize, WalError> {
        self.call(|reply| Request::Compact { lsn, reply }).await
    }

    /// Counters since open.
    pub fn stats(&self) -> WalStats {
        let s = &self.inner.shared.stats;
        WalStats {
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
            entries_appended: s.entries.load(Ordering::Relaxed),
            bytes_appended: s.bytes.load(Ordering::Relaxed),
            groups: s.groups.load(Ordering::Relaxed),
            max_group: s.max_group.load(Ordering::Relaxed),
            commit_fsyncs: s.commit_fsyncs.load(Ordering::Relaxed),
            commit_fsync_nanos: s.commit_fsync_nanos.load(Ordering::Relaxed),
        }
    }

    /// Stops the writer thread after draining queued requests; later writes
    /// fail with [`WalError::Closed`]. Idempotent. Reads keep working.
    ///
    /// The directory lock is released once the writer has stopped.
    pub async fn close(&self) -> Result<(), WalError> {
        let Some(tx) = lock(&self.inner.tx).take() else {
            return Ok(());
        };
        let (reply, rx) = oneshot::channel();
        let sent = tx.send(Request::Close { reply });
        drop(tx);
        let res = match sent {
            Ok(()) => rx.await.unwrap_or(Err(WalError::Closed)),
            Err(_) => Err(WalError::Closed),
        };
        let handle = lock(&self.inner.thread).take();
        if let Some(h) = handle {
            // The writer has answered; joining only waits for it to return.
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        res
    }
}

fn check_sizes(lens: impl Iterator<Item = usize>) -> Result<(), WalError> {
    for len in lens {
        if len > codec::MAX_PAYLOAD_LEN {
            return Err(WalError::TooLarge {
                len,
                max: codec::MAX_PAYLOAD_LEN,
            });
        }
    }
    Ok(())
}
