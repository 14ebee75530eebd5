//! Segment files: naming, preallocation, the spare segment, the recovery scan
//! and sequential frame reads.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::{info, warn};

use super::codec::{self, FRAME_HEADER_LEN, HEADER_LEN, SegmentHeader};
use super::{
    CutTail, Entry, Epoch, Lsn, RecoveryReport, SegMeta, Shared, WalError, WalOptions, lock,
};

/// Name of the directory lock file.
pub(super) const LOCK_FILE: &str = "LOCK";
/// A durable, not yet applied `reset` (a segment header to install).
pub(super) const RESET_PENDING: &str = "reset.pending";
#[cfg(test)]
const RESET_TMP: &str = "reset.tmp";
/// The spare segment: zeros only, fsynced, prepared in the background and
/// renamed into place (after its header is written) at rotation or reset.
/// Like every `*.tmp` file it is removed by recovery.
pub(super) const SPARE_FILE: &str = "next.wal.tmp";
/// Distance in bytes between sparse index points.
pub(super) const INDEX_STRIDE: u64 = 64 << 10;
/// Zeros are written in chunks of this size.
const ZERO_CHUNK: u64 = 1 << 20;

pub(super) fn segment_path(dir: &Path, first_lsn: Lsn) -> PathBuf {
    dir.join(format!("{first_lsn:020}.wal"))
}

fn parse_segment_name(name: &str) -> Option<Lsn> {
    let stem = name.strip_suffix(".wal")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Size a segment file is created (preallocated) with.
pub(super) fn alloc_len(segment_bytes: u64) -> u64 {
    segment_bytes.max(HEADER_LEN as u64)
}

/// fsyncs a directory so that creations, renames and deletions in it are durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WalError::io(dir, e))
}

/// Overwrites `[from, to)` of `f` with zeros (extending the file if needed).
/// Stops with an `Interrupted` error once `cancel` is set.
fn write_zeros(
    f: &File,
    path: &Path,
    from: u64,
    to: u64,
    cancel: Option<&AtomicBool>,
) -> Result<(), WalError> {
    if from >= to {
        return Ok(());
    }
    let chunk = (to - from).min(ZERO_CHUNK);
    // chunk <= 1 MiB, so this cannot truncate.
    let zeros = vec![0u8; chunk as usize];
    let mut off = from;
    while off < to {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(WalError::io(
                path,
                std::io::Error::new(ErrorKind::Interrupted, "zero fill cancelled"),
            ));
        }
        let n = (to - off).min(chunk) as usize;
        f.write_all_at(&zeros[..n], off)
            .map_err(|e| WalError::io(path, e))?;
        off += n as u64;
    }
    Ok(())
}

/// Creates (or truncates) `path` as `len` bytes — `header` if given, then real
/// zeros (not a hole or an unwritten extent, so later overwrites change no
/// metadata) — and fsyncs it. The directory is not fsynced.
fn create_zeroed(
    path: &Path,
    len: u64,
    header: Option<&SegmentHeader>,
    cancel: Option<&AtomicBool>,
) -> Result<File, WalError> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| WalError::io(path, e))?;
    let mut from = 0;
    if let Some(h) = header {
        f.write_all_at(&codec::encode_header(h), 0)
            .map_err(|e| WalError::io(path, e))?;
        from = HEADER_LEN as u64;
    }
    write_zeros(&f, path, from, len.max(from), cancel)?;
    f.sync_all().map_err(|e| WalError::io(path, e))?;
    Ok(f)
}

/// Creates the spare segment [`SPARE_FILE`]: `len` zero bytes, fsynced (one
/// fsync). On error (or cancellation) the partial file is removed.
pub(super) fn prepare_spare(
    dir: &Path,
    len: u64,
    cancel: Option<&AtomicBool>,
) -> Result<File, WalError> {
    let path = dir.join(SPARE_FILE);
    create_zeroed(&path, len, None, cancel).inspect_err(|_| {
        let _ = fs::remove_file(&path);
    })
}

/// Turns the spare segment into `dest`: writes `h` over its first bytes,
/// `fdatasync`s it (no size change, so no journal commit), renames it and
/// fsyncs the directory (two fsyncs). Returns the same handle, now `dest`.
pub(super) fn install_spare(
    dir: &Path,
    spare: File,
    h: &SegmentHeader,
    dest: &Path,
) -> Result<File, WalError> {
    let src = dir.join(SPARE_FILE);
    spare
        .write_all_at(&codec::encode_header(h), 0)
        .and_then(|()| spare.sync_data())
        .map_err(|e| WalError::io(&src, e))?;
    fs::rename(&src, dest).map_err(|e| WalError::io(dest, e))?;
    sync_dir(dir)?;
    Ok(spare)
}

/// Creates a new empty segment of `len` bytes durably (file written in full
/// under a temporary name and fsynced, renamed, directory fsynced).
pub(super) fn create_segment(
    dir: &Path,
    first_lsn: Lsn,
    prev_epoch: Epoch,
    len: u64,
) -> Result<(PathBuf, File), WalError> {
    let path = segment_path(dir, first_lsn);
    let tmp = dir.join(format!("{first_lsn:020}.wal.tmp"));
    let f = create_zeroed(
        &tmp,
        len,
        Some(&SegmentHeader {
            first_lsn,
            prev_epoch,
        }),
        None,
    )?;
    fs::rename(&tmp, &path).map_err(|e| WalError::io(&path, e))?;
    sync_dir(dir)?;
    Ok((path, f))
}

/// Records a reset durably, as the writer does (test helper): after this
/// returns, recovery completes the reset.
#[cfg(test)]
pub(super) fn write_reset_marker(
    dir: &Path,
    first_lsn: Lsn,
    prev_epoch: Epoch,
    len: u64,
) -> Result<(), WalError> {
    let tmp = dir.join(RESET_TMP);
    create_zeroed(
        &tmp,
        len,
        Some(&SegmentHeader {
            first_lsn,
            prev_epoch,
        }),
        None,
    )?;
    let marker = dir.join(RESET_PENDING);
    fs::rename(&tmp, &marker).map_err(|e| WalError::io(&marker, e))?;
    sync_dir(dir)
}

/// Applies a durable reset marker: deletes every segment, installs the marker
/// (a preallocated segment holding only its header) as the only segment.
/// Idempotent. Returns the new segment's metadata.
pub(super) fn complete_reset(dir: &Path) -> Result<SegMeta, WalError> {
    let marker = dir.join(RESET_PENDING);
    let mut head = Vec::with_capacity(HEADER_LEN);
    File::open(&marker)
        .and_then(|f| f.take(HEADER_LEN as u64).read_to_end(&mut head))
        .map_err(|e| WalError::io(&marker, e))?;
    let h = codec::decode_header(&head).map_err(|e| WalError::Corrupt {
        path: marker.clone(),
        offset: 0,
        reason: e.to_string(),
    })?;
    if h.first_lsn == 0 {
        return Err(WalError::Corrupt {
            path: marker,
            offset: 0,
            reason: "invalid reset marker".into(),
        });
    }
    for (_, path) in list_segments(dir)? {
        remove_file(&path)?;
    }
    sync_dir(dir)?;
    let path = segment_path(dir, h.first_lsn);
    fs::rename(&marker, &path).map_err(|e| WalError::io(&path, e))?;
    sync_dir(dir)?;
    Ok(SegMeta {
        first_lsn: h.first_lsn,
        prev_epoch: h.prev_epoch,
        path,
        index: Vec::new(),
    })
}

/// Removes a file; a missing file is not an error.
pub(super) fn remove_file(path: &Path) -> Result<(), WalError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(WalError::io(path, e)),
        _ => Ok(()),
    }
}

/// Segment files in `dir`, sorted by first LSN. Other `*.wal` names are corruption.
fn list_segments(dir: &Path) -> Result<Vec<(Lsn, PathBuf)>, WalError> {
    let mut segs = Vec::new();
    let rd = fs::read_dir(dir).map_err(|e| WalError::io(dir, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| WalError::io(dir, e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(lsn) = parse_segment_name(name) {
            segs.push((lsn, ent.path()));
        } else if name.ends_with(".wal") {
            return Err(WalError::Corrupt {
                path: ent.path(),
                offset: 0,
                reason: "unexpected segment file name".into(),
            });
        }
    }
    segs.sort_unstable_by_key(|(lsn, _)| *lsn);
    Ok(segs)
}

/// The segment the writer appends to.
pub(super) struct Active {
    pub(super) path: PathBuf,
    pub(super) file: File,
    pub(super) first_lsn: Lsn,
    /// Logical end (header included): frames are written here, in place over
    /// the zeros that fill the file from here on.
    pub(super) end: u64,
    pub(super) has_entries: bool,
    /// Offset of the last sparse index point.
    pub(super) last_index_off: Option<u64>,
}

impl Active {
    /// Opens `path` for writing at `end`.
    pub(super) fn open(
        path: PathBuf,
        first_lsn: Lsn,
        end: u64,
        last_index_off: Option<u64>,
    ) -> Result<Active, WalError> {
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| WalError::io(&path, e))?;
        Ok(Active {
            path,
            file,
            first_lsn,
            end,
            has_entries: end > HEADER_LEN as u64,
            last_index_off,
        })
    }

    /// Makes every byte from `end` on a durable zero before anything is
    /// appended: overwrites the stale bytes in `[end, dirty_end)` and extends a
    /// file shorter than `alloc` (e.g. from before preallocation) with zeros,
    /// then syncs (one fsync). Otherwise a later torn append could be followed
    /// by stale frames that recovery would take for the log's continuation.
    pub(super) fn clear_tail(&self, dirty_end: u64, alloc: u64) -> Result<(), WalError> {
        let len = self
            .file
            .metadata()
            .map_err(|e| WalError::io(&self.path, e))?
            .len();
        write_zeros(&self.file, &self.path, self.end, dirty_end.min(len), None)?;
        if len < alloc {
            write_zeros(&self.file, &self.path, len, alloc, None)?;
            self.file.sync_all()
        } else {
            self.file.sync_data()
        }
        .map_err(|e| WalError::io(&self.path, e))
    }
}

/// Everything `Wal::open` needs from recovery.
pub(super) struct Recovered {
    pub(super) lock: File,
    pub(super) segments: Vec<SegMeta>,
    pub(super) first_lsn: Lsn,
    pub(super) base_epoch: Epoch,
    pub(super) last: (Epoch, Lsn),
    pub(super) cache: VecDeque<Entry>,
    pub(super) active: Active,
    pub(super) report: RecoveryReport,
}

fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> WalError {
    WalError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

/// Takes the directory lock (creating `dir` if needed).
fn take_lock(dir: &Path) -> Result<File, WalError> {
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(|e| WalError::io(dir, e))?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    let path = dir.join(LOCK_FILE);
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| WalError::io(&path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(WalError::Locked(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(WalError::io(&path, e)),
    }
}

/// Scans and repairs the WAL in `dir` (see `Wal::open`).
pub(super) fn recover(dir: &Path, opts: &WalOptions) -> Result<Recovered, WalError> {
    let lock_file = take_lock(dir)?;
    let alloc = alloc_len(opts.segment_bytes);

    // Leftovers of interrupted creations and the spare segment; a committed reset is finished.
    let mut removed_tmp = false;
    let mut reset_pending = false;
    for ent in fs::read_dir(dir).map_err(|e| WalError::io(dir, e))? {
        let ent = ent.map_err(|e| WalError::io(dir, e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            remove_file(&ent.path())?;
            removed_tmp = true;
        } else if name == RESET_PENDING {
            reset_pending = true;
        }
    }
    if removed_tmp {
        sync_dir(dir)?;
    }
    if reset_pending {
        info!(dir = %dir.display(), "wal: completing interrupted reset");
        complete_reset(dir)?;
    }

    let mut files = list_segments(dir)?;
    let mut cut: Option<CutTail> = None;

    // A last segment whose header never became complete (and that holds only
    // zeros after it) has no entries: drop it.
    if let Some((name_lsn, path)) = files.last().cloned() {
        let data = fs::read(&path).map_err(|e| WalError::io(&path, e))?;
        if let Err(err) = codec::decode_header(&data) {
            if !codec::is_zero(data.get(HEADER_LEN..).unwrap_or_default()) {
                return Err(corrupt(&path, 0, format!("segment header: {err}")));
            }
            if files.len() == 1 && name_lsn != 1 {
                // Removing it would lose the log's position (first lsn, prev epoch).
                return Err(corrupt(
                    &path,
                    0,
                    format!("only segment has a torn header: {err}"),
                ));
            }
            let bytes_cut = codec::nonzero_end(&data) as u64;
            warn!(
                segment = %path.display(),
                offset = 0,
                bytes_cut,
                reason = %err,
                "wal: removing last segment with torn header"
            );
            remove_file(&path)?;
            sync_dir(dir)?;
            cut = Some(CutTail {
                segment: path,
                offset: 0,
                bytes_cut,
                reason: format!("torn segment header: {err}"),
            });
            files.pop();
        }
    }
    if files.is_empty() {
        let (path, _) = create_segment(dir, 1, 0, alloc)?;
        files.push((1, path));
    }

    let n = files.len();
    let mut segments = Vec::with_capacity(n);
    let mut cache = VecDeque::new();
    let mut entries = 0u64;
    let mut last: (Epoch, Lsn) = (0, 0);
    let mut active = None;
    for (i, (name_lsn, path)) in files.into_iter().enumerate() {
        let is_last = i + 1 == n;
        let data = fs::read(&path).map_err(|e| WalError::io(&path, e))?;
        let h = codec::decode_header(&data)
            .map_err(|e| corrupt(&path, 0, format!("segment header: {e}")))?;
        if h.first_lsn != name_lsn || h.first_lsn == 0 {
            return Err(corrupt(
                &path,
                0,
                format!("header first_lsn {} does not match file name", h.first_lsn),
            ));
        }
        if i > 0 && (last.1.checked_add(1) != Some(h.first_lsn) || h.prev_epoch != last.0) {
            return Err(corrupt(
                &path,
                0,
                format!(
                    "segment starts at (prev_epoch {}, lsn {}) but previous segment ends at (epoch {}, lsn {})",
                    h.prev_epoch, h.first_lsn, last.0, last.1
                ),
            ));
        }
        last = (h.prev_epoch, h.first_lsn - 1);
        let mut index = Vec::new();
        let mut last_index_off: Option<u64> = None;
        let mut off = HEADER_LEN;
        // (reason, offset just past the last non-zero byte) of a bad tail.
        let mut problem = None;
        while off < data.len() {
            let reason = match codec::decode_frame(&data[off..]) {
                Ok(Some((e, _))) if last.1.checked_add(1) != Some(e.lsn) => format!(
                    "lsn {} not contiguous (expected {})",
                    e.lsn,
                    last.1.wrapping_add(1)
                ),
                Ok(Some((e, _))) if e.epoch < last.0 => {
                    format!("epoch {} below previous epoch {}", e.epoch, last.0)
                }
                Ok(Some((e, len))) => {
                    let o = off as u64;
                    if last_index_off.is_none_or(|l| o - l >= INDEX_STRIDE) {
                        index.push((e.lsn, o));
                        last_index_off = Some(o);
                    }
                    last = (e.epoch, e.lsn);
                    entries += 1;
                    if opts.cache_entries > 0 {
                        if cache.len() >= opts.cache_entries {
                            cache.pop_front();
                        }
                        cache.push_back(e);
                    }
                    off += len;
                    continue;
                }
                Ok(None) => format!("incomplete frame ({} trailing bytes)", data.len() - off),
                Err(codec::FrameError::BadLength(0)) => {
                    "end marker (zero frame length) followed by non-zero bytes".to_owned()
                }
                Err(e) => e.to_string(),
            };
            // Not a frame: the clean end of the log if only zeros follow.
            let nz_end = off + codec::nonzero_end(&data[off..]);
            if nz_end > off {
                problem = Some((reason, nz_end));
            }
            break;
        }
        let mut dirty_end = off;
        if let Some((reason, nz_end)) = problem {
            if !is_last {
                return Err(corrupt(&path, off as u64, reason));
            }
            // Only the bytes up to the last non-zero one count, not the zero padding.
            let bytes_cut = (nz_end - off) as u64;
            warn!(
                segment = %path.display(),
                offset = off,
                bytes_cut,
                reason = %reason,
                "wal: cutting torn/corrupt tail"
            );
            cut = Some(CutTail {
                segment: path.clone(),
                offset: off as u64,
                bytes_cut,
                reason,
            });
            dirty_end = nz_end;
        }
        if is_last {
            let a = Active::open(path.clone(), h.first_lsn, off as u64, last_index_off)?;
            if dirty_end > off || (data.len() as u64) < alloc {
                // Zero the cut tail and preallocate a short file before any append.
                a.clear_tail(dirty_end as u64, alloc)?;
            }
            active = Some(a);
        }
        segments.push(SegMeta {
            first_lsn: h.first_lsn,
            prev_epoch: h.prev_epoch,
            path,
            index,
        });
    }
    let Some(active) = active else {
        // The loop ran at least once (a segment was created if none existed).
        return Err(corrupt(dir, 0, "no segment files"));
    };
    let first_lsn = segments[0].first_lsn;
    let base_epoch = segments[0].prev_epoch;
    let report = RecoveryReport {
        segments: segments.len(),
        entries,
        first_lsn,
        last,
        cut,
    };
    info!(
        dir = %dir.display(),
        segments = report.segments,
        entries,
        first_lsn,
        last_epoch = last.0,
        last_lsn = last.1,
        "wal: opened"
    );
    Ok(Recovered {
        lock: lock_file,
        segments,
        first_lsn,
        base_epoch,
        last,
        cache,
        active,
        report,
    })
}

/// Sequential frame reader over one segment file.
pub(super) struct FrameReader {
    path: PathBuf,
    r: BufReader<File>,
    /// Offset of the next frame.
    pub(super) offset: u64,
}

impl FrameReader {
    pub(super) fn open(path: &Path, offset: u64) -> Result<FrameReader, WalError> {
        let mut f = File::open(path).map_err(|e| WalError::io(path, e))?;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| WalError::io(path, e))?;
        Ok(FrameReader {
            path: path.to_path_buf(),
            r: BufReader::with_capacity(256 << 10, f),
            offset,
        })
    }

    /// Next frame; `None` at the end of the log (end of file or a zero frame
    /// header). Anything torn or invalid is corruption.
    pub(super) fn next_entry(&mut self) -> Result<Option<Entry>, WalError> {
        let mut h = [0u8; FRAME_HEADER_LEN];
        let mut got = 0;
        while got < h.len() {
            match self.r.read(&mut h[got..]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(WalError::io(&self.path, e)),
            }
        }
        // End of file, or the zero end marker of a preallocated segment
        // (recovery guarantees only zeros follow the last frame).
        if h[..got].iter().all(|&b| b == 0) {
            return Ok(None);
        }
        if got < h.len() {
            return Err(corrupt(&self.path, self.offset, "torn frame header"));
        }
        let (body_len, crc) = codec::decode_frame_header(&h)
            .map_err(|e| corrupt(&self.path, self.offset, e.to_string()))?;
        let mut body = vec![0u8; body_len];
        self.r.read_exact(&mut body).map_err(|e| {
            if e.kind() == ErrorKind::UnexpectedEof {
                corrupt(&self.path, self.offset, "torn frame body")
            } else {
                WalError::io(&self.path, e)
            }
        })?;
        let e = codec::decode_body(&body, crc)
            .map_err(|e| corrupt(&self.path, self.offset, e.to_string()))?;
        self.offset += (FRAME_HEADER_LEN + body_len) as u64;
        Ok(Some(e))
    }
}

/// Offset of the end of the log in `path`, scanning frames from `from` (a frame start).
pub(super) fn scan_end(path: &Path, from: u64) -> Result<u64, WalError> {
    let mut r = FrameReader::open(path, from)?;
    while r.next_entry()?.is_some() {}
    Ok(r.offset)
}

/// Reads entries `from..=to` (clamped to the durable end), at most `max`, from the segment files.
pub(super) fn read_disk(
    shared: &Shared,
    from: Lsn,
    to: Lsn,
    max: usize,
) -> Result<Vec<Entry>, WalError> {
    // Shared: truncation, reset and compaction wait until this read is done.
    let _files = shared
        .files
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (to, plan) = {
        let st = lock(&shared.state);
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
        // segments[0].first_lsn == first_lsn <= from, so k >= 0.
        let k = st
            .segments
            .partition_point(|s| s.first_lsn <= from)
            .saturating_sub(1);
        let mut plan = Vec::new();
        for (j, s) in st.segments.iter().enumerate().skip(k) {
            if s.first_lsn > to {
                break;
            }
            let off = if j == k {
                s.seek_offset(from)
            } else {
                HEADER_LEN as u64
            };
            plan.push((s.path.clone(), off));
        }
        (to, plan)
    };
    let want = usize::try_from(to - from + 1)
        .unwrap_or(usize::MAX)
        .min(max);
    let mut out = Vec::with_capacity(want.min(4096));
    for (path, off) in plan {
        let mut r = FrameReader::open(&path, off)?;
        while let Some(e) = r.next_entry()? {
            if e.lsn < from {
                continue;
            }
            let expected = from + out.len() as u64;
            if e.lsn != expected {
                return Err(corrupt(
                    &path,
                    r.offset,
                    format!("read lsn {} where {expected} was expected", e.lsn),
                ));
            }
            out.push(e);
            if out.len() == want {
                return Ok(out);
            }
        }
    }
    Err(corrupt(
        &shared.dir,
        0,
        format!(
            "durable entries missing: found {} of lsn {from}..={to}",
            out.len()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names() {
        let p = segment_path(Path::new("/x"), 42);
        assert_eq!(p, Path::new("/x/00000000000000000042.wal"));
        assert_eq!(parse_segment_name("00000000000000000042.wal"), Some(42));
        assert_eq!(parse_segment_name("42.wal"), None);
        assert_eq!(parse_segment_name("00000000000000000042.wal.tmp"), None);
        assert_eq!(parse_segment_name("0000000000000000004x.wal"), None);
    }
}
