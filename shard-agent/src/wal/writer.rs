//! The writer thread: validates requests, group-commits appends and runs
//! truncation, reset and compaction in queue order. A helper thread prepares
//! the next (spare) segment in the background.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;
use tracing::{debug, error, warn};

use super::codec::{self, HEADER_LEN, SegmentHeader};
use super::segment::{self, Active, FrameReader, INDEX_STRIDE};
use super::{
    Entry, Epoch, FsyncPolicy, Lsn, OpId, Reply, SegMeta, Shared, WalError, WalOptions, lock,
};

/// Stop draining the queue into one group beyond this many requests.
const MAX_GROUP_REQUESTS: usize = 4096;
/// Stop draining the queue into one group beyond this many buffered bytes.
const MAX_GROUP_BYTES: usize = 16 << 20;

pub(super) enum Request {
    Propose {
        epoch: Epoch,
        items: Vec<(OpId, Bytes)>,
        reply: Reply<Vec<Entry>>,
    },
    Append {
        entries: Vec<Entry>,
        reply: Reply<()>,
    },
    TruncateAfter {
        lsn: Lsn,
        reply: Reply<()>,
    },
    Reset {
        epoch: Epoch,
        lsn: Lsn,
        reply: Reply<()>,
    },
    Compact {
        lsn: Lsn,
        reply: Reply<usize>,
    },
    Close {
        reply: Reply<()>,
    },
}

/// The spare segment being prepared (or ready) on a helper thread.
struct SpareJob {
    handle: JoinHandle<Result<File, WalError>>,
    cancel: Arc<AtomicBool>,
}

/// A caller waiting for the current group to become durable.
enum Waiter {
    Propose(Reply<Vec<Entry>>, Vec<Entry>),
    Append(Reply<()>),
}

impl Waiter {
    fn ok(self) {
        // A caller that gave up waiting is not an error.
        match self {
            Waiter::Propose(r, v) => {
                let _ = r.send(Ok(v));
            }
            Waiter::Append(r) => {
                let _ = r.send(Ok(()));
            }
        }
    }

    fn err(self, e: WalError) {
        match self {
            Waiter::Propose(r, _) => {
                let _ = r.send(Err(e));
            }
            Waiter::Append(r) => {
                let _ = r.send(Err(e));
            }
        }
    }
}

pub(super) struct Writer {
    shared: Arc<Shared>,
    opts: WalOptions,
    /// Directory lock, released when the thread ends.
    _lock: File,
    active: Active,
    /// Last staged (epoch, lsn), including the uncommitted group.
    tail: (Epoch, Lsn),
    /// Set by an IO failure; refuses further writes.
    failed: Option<String>,
    /// Frames of the current group not yet written.
    buf: Vec<u8>,
    /// Entries of the current group.
    pending: Vec<Entry>,
    pending_bytes: u64,
    waiters: Vec<Waiter>,
    /// Segments created by the current group.
    new_segments: Vec<SegMeta>,
    /// Index points of the current group: (segment first_lsn, lsn, offset).
    new_index: Vec<(Lsn, Lsn, u64)>,
    /// Size segment files are preallocated with.
    alloc: u64,
    /// The next segment, prepared once the active one is half full.
    spare: Option<SpareJob>,
}

impl Writer {
    pub(super) fn new(
        shared: Arc<Shared>,
        opts: WalOptions,
        lock_file: File,
        active: Active,
        tail: (Epoch, Lsn),
    ) -> Writer {
        let alloc = segment::alloc_len(opts.segment_bytes);
        Writer {
            shared,
            opts,
            _lock: lock_file,
            active,
            tail,
            failed: None,
            buf: Vec::new(),
            pending: Vec::new(),
            pending_bytes: 0,
            waiters: Vec::new(),
            new_segments: Vec::new(),
            new_index: Vec::new(),
            alloc,
            spare: None,
        }
    }

    /// Serves requests until `Close` or until every sender is gone.
    pub(super) fn run(mut self, rx: mpsc::Receiver<Request>) {
        while let Ok(req) = rx.recv() {
            let mut stop = self.handle(req);
            while !stop
                && self.waiters.len() < MAX_GROUP_REQUESTS
                && self.buf.len() < MAX_GROUP_BYTES
            {
                match rx.try_recv() {
                    Ok(req) => stop = self.handle(req),
                    Err(_) => break,
                }
            }
            self.commit();
            if stop {
                break;
            }
        }
        // Before the directory lock is released (when `self` drops).
        self.discard_spare();
        debug!(dir = %self.shared.dir.display(), "wal: writer stopped");
    }

    /// Handles one request; returns true on `Close`.
    fn handle(&mut self, req: Request) -> bool {
        match req {
            Request::Propose {
                epoch,
                items,
                reply,
            } => self.propose(epoch, items, reply),
            Request::Append { entries, reply } => self.append(entries, reply),
            Request::TruncateAfter { lsn, reply } => {
                self.commit();
                let r = self.guarded(|w| w.truncate_after(lsn));
                let _ = reply.send(r);
            }
            Request::Reset { epoch, lsn, reply } => {
                self.commit();
                let r = self.guarded(|w| w.reset(epoch, lsn));
                let _ = reply.send(r);
            }
            Request::Compact { lsn, reply } => {
                self.commit();
                // A failed deletion leaves a consistent log: no poisoning.
                let r = match &self.failed {
                    Some(f) => Err(WalError::Failed(f.clone())),
                    None => self.compact(lsn),
                };
                let _ = reply.send(r);
            }
            Request::Close { reply } => {
                self.commit();
                let _ = reply.send(Ok(()));
                return true;
            }
        }
        false
    }

    /// Runs a destructive operation; IO or corruption errors poison the WAL.
    fn guarded<T>(
        &mut self,
        op: impl FnOnce(&mut Self) -> Result<T, WalError>,
    ) -> Result<T, WalError> {
        if let Some(f) = &self.failed {
            return Err(WalError::Failed(f.clone()));
        }
        let r = op(self);
        if let Err(e @ (WalError::Io { .. } | WalError::Corrupt { .. })) = &r {
            error!(error = %e, "wal: operation failed; refusing further writes");
            self.failed = Some(e.to_string());
        }
        r
    }

    fn propose(&mut self, epoch: Epoch, items: Vec<(OpId, Bytes)>, reply: Reply<Vec<Entry>>) {
        if let Some(f) = &self.failed {
            let _ = reply.send(Err(WalError::Failed(f.clone())));
            return;
        }
        if epoch < self.tail.0 {
            let _ = reply.send(Err(WalError::StaleEpoch {
                last: self.tail.0,
                got: epoch,
            }));
            return;
        }
        if self.tail.1.checked_add(items.len() as u64).is_none() {
            let _ = reply.send(Err(WalError::LsnExhausted));
            return;
        }
        let mut out = Vec::with_capacity(items.len());
        let mut res = Ok(());
        for (op_id, payload) in items {
            let e = Entry {
                epoch,
                lsn: self.tail.1 + 1,
                op_id,
                payload,
            };
            if let Err(err) = self.stage(&e) {
                res = Err(err);
                break;
            }
            out.push(e);
        }
        self.waiters.push(Waiter::Propose(reply, out));
        if let Err(err) = res {
            self.fail(err);
        }
    }

    fn append(&mut self, entries: Vec<Entry>, reply: Reply<()>) {
        if let Some(f) = &self.failed {
            let _ = reply.send(Err(WalError::Failed(f.clone())));
            return;
        }
        let mut prev = self.tail;
        for e in &entries {
            let Some(expected) = prev.1.checked_add(1) else {
                let _ = reply.send(Err(WalError::LsnExhausted));
                return;
            };
            if e.lsn != expected {
                let _ = reply.send(Err(WalError::NotContiguous {
                    expected,
                    got: e.lsn,
                }));
                return;
            }
            if e.epoch < prev.0 {
                let _ = reply.send(Err(WalError::StaleEpoch {
                    last: prev.0,
                    got: e.epoch,
                }));
                return;
            }
            prev = (e.epoch, e.lsn);
        }
        let mut res = Ok(());
        for e in &entries {
            if let Err(err) = self.stage(e) {
                res = Err(err);
                break;
            }
        }
        self.waiters.push(Waiter::Append(reply));
        if let Err(err) = res {
            self.fail(err);
        }
    }

    /// Encodes `e` into the current group, rotating first if it does not fit
    /// in the active segment. A frame that does not fit in an empty segment is
    /// written anyway: that segment grows past `segment_bytes` to hold it.
    fn stage(&mut self, e: &Entry) -> Result<(), WalError> {
        let frame = codec::frame_len(e.payload.len()) as u64;
        if self.active.has_entries
            && self.active.end + self.buf.len() as u64 + frame > self.opts.segment_bytes
        {
            self.rotate()?;
        }
        let off = self.active.end + self.buf.len() as u64;
        if self
            .active
            .last_index_off
            .is_none_or(|l| off - l >= INDEX_STRIDE)
        {
            self.new_index.push((self.active.first_lsn, e.lsn, off));
            self.active.last_index_off = Some(off);
        }
        let before = self.buf.len();
        codec::encode_frame(e, &mut self.buf);
        self.pending_bytes += (self.buf.len() - before) as u64;
        self.active.has_entries = true;
        self.tail = (e.epoch, e.lsn);
        self.pending.push(e.clone());
        if off + frame >= self.alloc / 2 {
            self.start_spare();
        }
        Ok(())
    }

    /// Starts preparing the spare segment on a helper thread, unless one exists.
    fn start_spare(&mut self) {
        if self.spare.is_some() {
            return;
        }
        let dir = self.shared.dir.clone();
        let len = self.alloc;
        let cancel = Arc::new(AtomicBool::new(false));
        let c = cancel.clone();
        match std::thread::Builder::new()
            .name("wal-spare".into())
            .spawn(move || segment::prepare_spare(&dir, len, Some(&c)))
        {
            Ok(handle) => self.spare = Some(SpareJob { handle, cancel }),
            // Rotation prepares it inline instead.
            Err(e) => debug!(error = %e, "wal: cannot start spare segment thread"),
        }
    }

    /// The spare segment (zeros, fsynced), waiting for the helper if it is
    /// still at work, or prepared inline if there is none (or it failed).
    fn take_spare(&mut self) -> Result<File, WalError> {
        if let Some(job) = self.spare.take() {
            match job.handle.join() {
                Ok(Ok(f)) => {
                    self.count_fsyncs(1);
                    return Ok(f);
                }
                Ok(Err(e)) => warn!(error = %e, "wal: spare segment failed; retrying inline"),
                Err(_) => warn!("wal: spare segment thread panicked; retrying inline"),
            }
        }
        let f = segment::prepare_spare(&self.shared.dir, self.alloc, None)?;
        self.count_fsyncs(1);
        Ok(f)
    }

    /// Stops the helper and removes an unused spare (recovery would anyway).
    fn discard_spare(&mut self) {
        if let Some(job) = self.spare.take() {
            job.cancel.store(true, Ordering::Relaxed);
            let _ = job.handle.join();
            let path = self.shared.dir.join(segment::SPARE_FILE);
            if let Err(e) = segment::remove_file(&path) {
                warn!(error = %e, "wal: cannot remove spare segment");
            }
        }
    }

    fn count_fsyncs(&self, n: u64) {
        self.shared.stats.fsyncs.fetch_add(n, Ordering::Relaxed);
    }

    fn flush_buf(&mut self) -> Result<(), WalError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        // In place over the preallocated zeros: no size change to journal.
        self.active
            .file
            .write_all_at(&self.buf, self.active.end)
            .map_err(|e| WalError::io(&self.active.path, e))?;
        self.active.end += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Seals the active segment (always fsynced, whatever the policy, so no
    /// crash can leave a hole before the next segment) and starts a new one
    /// from the spare: header write, fdatasync, rename, directory fsync.
    fn rotate(&mut self) -> Result<(), WalError> {
        self.flush_buf()?;
        self.active
            .file
            .sync_data()
            .map_err(|e| WalError::io(&self.active.path, e))?;
        self.count_fsyncs(1);
        let first = self.tail.1.checked_add(1).ok_or(WalError::LsnExhausted)?;
        let prev_epoch = self.tail.0;
        let spare = self.take_spare()?;
        let path = segment::segment_path(&self.shared.dir, first);
        let file = segment::install_spare(
            &self.shared.dir,
            spare,
            &SegmentHeader {
                first_lsn: first,
                prev_epoch,
            },
            &path,
        )?;
        self.count_fsyncs(2);
        debug!(segment = %path.display(), "wal: rotated");
        self.new_segments.push(SegMeta {
            first_lsn: first,
            prev_epoch,
            path: path.clone(),
            index: Vec::new(),
        });
        self.active = Active {
            path,
            file,
            first_lsn: first,
            end: HEADER_LEN as u64,
            has_entries: false,
            last_index_off: None,
        };
        Ok(())
    }

    /// Makes the current group durable, publishes it and answers its callers.
    fn commit(&mut self) {
        if self.waiters.is_empty() && self.pending.is_empty() {
            return;
        }
        let res = self.flush_buf().and_then(|()| {
            if self.opts.fsync == FsyncPolicy::Always && !self.pending.is_empty() {
                let t = Instant::now();
                self.active
                    .file
                    .sync_data()
                    .map_err(|e| WalError::io(&self.active.path, e))?;
                let nanos = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
                self.count_fsyncs(1);
                let s = &self.shared.stats;
                s.commit_fsyncs.fetch_add(1, Ordering::Relaxed);
                s.commit_fsync_nanos.fetch_add(nanos, Ordering::Relaxed);
            }
            Ok(())
        });
        if let Err(err) = res {
            self.fail(err);
            return;
        }
        let n = self.pending.len() as u64;
        {
            let mut st = lock(&self.shared.state);
            st.segments.append(&mut self.new_segments);
            for (seg, lsn, off) in self.new_index.drain(..) {
                let i = st.segments.partition_point(|s| s.first_lsn <= seg);
                if let Some(s) = i.checked_sub(1).and_then(|i| st.segments.get_mut(i)) {
                    s.index.push((lsn, off));
                }
            }
            for e in self.pending.drain(..) {
                st.cache_push(e);
            }
            st.last = self.tail;
        }
        if n > 0 {
            let s = &self.shared.stats;
            s.entries.fetch_add(n, Ordering::Relaxed);
            s.bytes.fetch_add(self.pending_bytes, Ordering::Relaxed);
            s.groups.fetch_add(1, Ordering::Relaxed);
            s.max_group.fetch_max(n, Ordering::Relaxed);
            self.shared.last_lsn.send_replace(self.tail.1);
        }
        self.pending_bytes = 0;
        for w in self.waiters.drain(..) {
            w.ok();
        }
    }

    /// Poisons the WAL and fails every caller of the current group.
    fn fail(&mut self, err: WalError) {
        error!(error = %err, "wal: write failed; refusing further writes");
        self.failed = Some(err.to_string());
        for w in self.waiters.drain(..) {
            w.err(err.duplicate());
        }
        self.buf.clear();
        self.pending.clear();
        self.pending_bytes = 0;
        self.new_segments.clear();
        self.new_index.clear();
    }

    fn truncate_after(&mut self, lsn: Lsn) -> Result<(), WalError> {
        let shared = self.shared.clone();
        let _files = shared.files.write().unwrap_or_else(PoisonError::into_inner);
        let (k, seg, later) = {
            let st = lock(&shared.state);
            if lsn < st.first_lsn - 1 {
                return Err(WalError::Compacted {
                    lsn,
                    first: st.first_lsn,
                });
            }
            if lsn >= st.last.1 {
                return Ok(());
            }
            // segments[0].first_lsn == first_lsn <= lsn + 1, so k >= 0.
            let k = st
                .segments
                .partition_point(|s| s.first_lsn <= lsn + 1)
                .saturating_sub(1);
            let later: Vec<_> = st.segments[k + 1..]
                .iter()
                .map(|s| s.path.clone())
                .collect();
            (k, st.segments[k].clone(), later)
        };
        let (off, epoch) = if lsn + 1 == seg.first_lsn {
            (HEADER_LEN as u64, seg.prev_epoch)
        } else {
            let mut r = FrameReader::open(&seg.path, seg.seek_offset(lsn))?;
            loop {
                match r.next_entry()? {
                    Some(e) if e.lsn < lsn => {}
                    Some(e) if e.lsn == lsn => break (r.offset, e.epoch),
                    _ => {
                        return Err(WalError::Corrupt {
                            path: seg.path.clone(),
                            offset: r.offset,
                            reason: format!("entry {lsn} not found"),
                        });
                    }
                }
            }
        };
        // End of the frames that go (all zeros follow it).
        let dirty_end = if later.is_empty() {
            self.active.end
        } else {
            segment::scan_end(&seg.path, off)?
        };
        // Newest first, made durable before the cut, so a crash leaves a prefix.
        for p in later.iter().rev() {
            segment::remove_file(p)?;
        }
        if !later.is_empty() {
            segment::sync_dir(&shared.dir)?;
            self.count_fsyncs(1);
        }
        let last_index_off = seg
            .index
            .iter()
            .take_while(|p| p.0 <= lsn)
            .last()
            .map(|p| p.1);
        let active = Active::open(seg.path.clone(), seg.first_lsn, off, last_index_off)?;
        // Zero the dropped frames durably: none may outlive the cut, even
        // behind frames appended later (a crash midway leaves a prefix).
        active.clear_tail(dirty_end, self.alloc)?;
        self.count_fsyncs(1);
        self.active = active;
        {
            let mut st = lock(&shared.state);
            st.segments.truncate(k + 1);
            if let Some(s) = st.segments.get_mut(k) {
                s.index.retain(|p| p.0 <= lsn);
            }
            while st.cache.back().is_some_and(|e| e.lsn > lsn) {
                st.cache.pop_back();
            }
            st.last = (epoch, lsn);
        }
        self.tail = (epoch, lsn);
        shared.last_lsn.send_replace(lsn);
        debug!(lsn, epoch, "wal: truncated");
        Ok(())
    }

    fn reset(&mut self, epoch: Epoch, lsn: Lsn) -> Result<(), WalError> {
        let shared = self.shared.clone();
        let _files = shared.files.write().unwrap_or_else(PoisonError::into_inner);
        let first = lsn.checked_add(1).ok_or(WalError::LsnExhausted)?;
        // Durable intent first (the spare, with the new header, renamed to the
        // marker): after this, recovery completes the reset.
        let spare = self.take_spare()?;
        segment::install_spare(
            &shared.dir,
            spare,
            &SegmentHeader {
                first_lsn: first,
                prev_epoch: epoch,
            },
            &shared.dir.join(segment::RESET_PENDING),
        )?;
        let seg = segment::complete_reset(&shared.dir)?;
        self.count_fsyncs(4);
        self.active = Active::open(seg.path.clone(), first, HEADER_LEN as u64, None)?;
        {
            let mut st = lock(&shared.state);
            st.segments = vec![seg];
            st.first_lsn = first;
            st.base_epoch = epoch;
            st.last = (epoch, lsn);
            st.cache.clear();
        }
        self.tail = (epoch, lsn);
        shared.last_lsn.send_replace(lsn);
        debug!(lsn, epoch, "wal: reset");
        Ok(())
    }

    fn compact(&mut self, lsn: Lsn) -> Result<usize, WalError> {
        let shared = self.shared.clone();
        let _files = shared.files.write().unwrap_or_else(PoisonError::into_inner);
        let mut removed = 0;
        // Oldest first, so a crash leaves a suffix.
        let res = loop {
            let path = {
                let st = lock(&shared.state);
                match st.segments.get(1) {
                    Some(next) if next.first_lsn - 1 <= lsn => st.segments[0].path.clone(),
                    _ => break Ok(()),
                }
            };
            if let Err(e) = segment::remove_file(&path) {
                break Err(e);
            }
            let mut st = lock(&shared.state);
            st.segments.remove(0);
            st.first_lsn = st.segments[0].first_lsn;
            st.base_epoch = st.segments[0].prev_epoch;
            let first = st.first_lsn;
            while st.cache.front().is_some_and(|e| e.lsn < first) {
                st.cache.pop_front();
            }
            removed += 1;
        };
        if removed > 0 {
            segment::sync_dir(&shared.dir)?;
            self.count_fsyncs(1);
            debug!(removed, through = lsn, "wal: compacted");
        }
        res.map(|()| removed)
    }
}
