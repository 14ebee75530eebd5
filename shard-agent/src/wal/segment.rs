//! Segment files: naming, creation, recovery scan and sequential frame reads.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::codec::{self, FRAME_HEADER_LEN, HEADER_LEN, SegmentHeader};
use super::{
    CutTail, Entry, Epoch, Lsn, RecoveryReport, SegMeta, Shared, WalError, WalOptions, lock,
};

/// Name of the directory lock file.
pub(super) const LOCK_FILE: &str = "LOCK";
/// A durable, not yet applied `reset` (a segment header to install).
pub(super) const RESET_PENDING: &str = "reset.pending";
const RESET_TMP: &str = "reset.tmp";
/// Distance in bytes between sparse index points.
pub(super) const INDEX_STRIDE: u64 = 64 << 10;

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

/// fsyncs a directory so that creations, renames and deletions in it are durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WalError::io(dir, e))
}

/// Writes a header-only file at `tmp`, fsyncs it and renames it to `dest`
/// (directory fsync left to the caller). Returns the open file, positioned at its end.
fn write_header_file(tmp: &Path, dest: &Path, h: &SegmentHeader) -> Result<File, WalError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)
        .map_err(|e| WalError::io(tmp, e))?;
    f.write_all(&codec::encode_header(h))
        .and_then(|()| f.sync_all())
        .map_err(|e| WalError::io(tmp, e))?;
    fs::rename(tmp, dest).map_err(|e| WalError::io(dest, e))?;
    Ok(f)
}

/// Creates a new empty segment durably (file and directory fsynced).
/// Returns its path and a handle positioned after the header.
pub(super) fn create_segment(
    dir: &Path,
    first_lsn: Lsn,
    prev_epoch: Epoch,
) -> Result<(PathBuf, File), WalError> {
    let path = segment_path(dir, first_lsn);
    let tmp = dir.join(format!("{first_lsn:020}.wal.tmp"));
    let f = write_header_file(
        &tmp,
        &path,
        &SegmentHeader {
            first_lsn,
            prev_epoch,
        },
    )?;
    sync_dir(dir)?;
    Ok((path, f))
}

/// Records a reset durably: after this returns, recovery completes the reset.
pub(super) fn write_reset_marker(
    dir: &Path,
    first_lsn: Lsn,
    prev_epoch: Epoch,
) -> Result<(), WalError> {
    write_header_file(
        &dir.join(RESET_TMP),
        &dir.join(RESET_PENDING),
        &SegmentHeader {
            first_lsn,
            prev_epoch,
        },
    )?;
    sync_dir(dir)
}

/// Applies a durable reset marker: deletes every segment, installs the marker
/// as the only segment. Idempotent. Returns the new segment's metadata.
pub(super) fn complete_reset(dir: &Path) -> Result<SegMeta, WalError> {
    let marker = dir.join(RESET_PENDING);
    let data = fs::read(&marker).map_err(|e| WalError::io(&marker, e))?;
    let h = codec::decode_header(&data).map_err(|e| WalError::Corrupt {
        path: marker.clone(),
        offset: 0,
        reason: e.to_string(),
    })?;
    if h.first_lsn == 0 || data.len() != HEADER_LEN {
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
    /// Bytes in the file (header included).
    pub(super) len: u64,
    pub(super) has_entries: bool,
    /// Offset of the last sparse index point.
    pub(super) last_index_off: Option<u64>,
}

impl Active {
    /// Opens `path` for appending at `len`.
    pub(super) fn open(
        path: PathBuf,
        first_lsn: Lsn,
        len: u64,
        last_index_off: Option<u64>,
    ) -> Result<Active, WalError> {
        let mut file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| WalError::io(&path, e))?;
        file.seek(SeekFrom::Start(len))
            .map_err(|e| WalError::io(&path, e))?;
        Ok(Active {
            path,
            file,
            first_lsn,
            len,
            has_entries: len > HEADER_LEN as u64,
            last_index_off,
        })
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

    // Leftovers of interrupted creations; a committed reset is finished.
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

    // A last segment whose header never became complete holds no entries: drop it.
    if let Some((name_lsn, path)) = files.last().cloned() {
        let data = fs::read(&path).map_err(|e| WalError::io(&path, e))?;
        if let Err(err) = codec::decode_header(&data) {
            if data.len() > HEADER_LEN {
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
            warn!(
                segment = %path.display(),
                offset = 0,
                bytes_cut = data.len(),
                reason = %err,
                "wal: removing last segment with torn header"
            );
            remove_file(&path)?;
            sync_dir(dir)?;
            cut = Some(CutTail {
                segment: path,
                offset: 0,
                bytes_cut: data.len() as u64,
                reason: format!("torn segment header: {err}"),
            });
            files.pop();
        }
    }
    if files.is_empty() {
        let (path, _) = create_segment(dir, 1, 0)?;
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
        let mut problem = None;
        while off < data.len() {
            match codec::decode_frame(&data[off..]) {
                Ok(Some((e, len))) => {
                    if last.1.checked_add(1) != Some(e.lsn) {
                        problem = Some(format!(
                            "lsn {} not contiguous (expected {})",
                            e.lsn,
                            last.1.wrapping_add(1)
                        ));
                        break;
                    }
                    if e.epoch < last.0 {
                        problem =
                            Some(format!("epoch {} below previous epoch {}", e.epoch, last.0));
                        break;
                    }
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
                }
                Ok(None) => {
                    problem = Some(format!(
                        "incomplete frame ({} trailing bytes)",
                        data.len() - off
                    ));
                    break;
                }
                Err(e) => {
                    problem = Some(e.to_string());
                    break;
                }
            }
        }
        if let Some(reason) = problem {
            if !is_last {
                return Err(corrupt(&path, off as u64, reason));
            }
            let bytes_cut = (data.len() - off) as u64;
            warn!(
                segment = %path.display(),
                offset = off,
                bytes_cut,
                reason = %reason,
                "wal: cutting torn/corrupt tail"
            );
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| WalError::io(&path, e))?;
            f.set_len(off as u64)
                .and_then(|()| f.sync_all())
                .map_err(|e| WalError::io(&path, e))?;
            cut = Some(CutTail {
                segment: path.clone(),
                offset: off as u64,
                bytes_cut,
                reason,
            });
        }
        if is_last {
            active = Some(Active::open(
                path.clone(),
                h.first_lsn,
                off as u64,
                last_index_off,
            )?);
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

    /// Next frame; `None` at a clean end of file. Anything torn or invalid is corruption.
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
        if got == 0 {
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
