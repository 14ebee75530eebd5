//! Property tests of WAL recovery over preallocated (zero-padded) segments:
//! damage to the last segment (truncation, a zeroed suffix, a flipped byte in
//! the frames or in the padding) yields exactly the longest valid prefix, with
//! the cut bytes zeroed so no stale frame can come back; damage to an earlier
//! segment is an error unless it removed only zero padding.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

use std::path::{Path, PathBuf};

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use walshard_agent::wal::codec::{HEADER_LEN, frame_len};
use walshard_agent::wal::{Entry, Epoch, FsyncPolicy, Lsn, OpId, Wal, WalError, WalOptions};

fn opts(segment_bytes: u64) -> WalOptions {
    WalOptions {
        segment_bytes,
        // Process-level crash semantics are identical; this keeps the test fast.
        fsync: FsyncPolicy::Never,
        cache_entries: 8,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn segment_files(dir: &Path) -> Vec<(Lsn, PathBuf)> {
    let mut v: Vec<(Lsn, PathBuf)> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .map(|p| {
            let lsn = p
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse().ok())
                .expect("segment name");
            (lsn, p)
        })
        .collect();
    v.sort();
    v
}

/// Writes `spec` (epoch bump, payload length) as entries, in groups of `chunk`,
/// via `propose_many` or (secondary path) `append`. Returns what was written.
async fn write_log(
    wal: &Wal,
    spec: &[(bool, usize)],
    chunk: usize,
    use_append: bool,
) -> Vec<Entry> {
    let mut epoch: Epoch = 1;
    let mut written: Vec<Entry> = Vec::new();
    for group in spec.chunks(chunk.max(1)) {
        if group[0].0 {
            epoch += 1;
        }
        if use_append {
            let base = written.len() as u64;
            let entries: Vec<Entry> = group
                .iter()
                .enumerate()
                .map(|(i, &(_, len))| {
                    let lsn = base + i as u64 + 1;
                    Entry {
                        epoch,
                        lsn,
                        op_id: OpId(u128::from(lsn) * 7919),
                        payload: Bytes::from(vec![(lsn % 251) as u8; len]),
                    }
                })
                .collect();
            wal.append(entries.clone()).await.expect("append");
            written.extend(entries);
        } else {
            let items = group
                .iter()
                .map(|&(_, len)| {
                    let n = written.len() as u128;
                    (OpId(n * 31 + 5), Bytes::from(vec![(n % 253) as u8; len]))
                })
                .collect();
            written.extend(wal.propose_many(epoch, items).await.expect("propose_many"));
        }
    }
    written
}

async fn read_all(wal: &Wal) -> Vec<Entry> {
    wal.read(wal.first_lsn(), Lsn::MAX, usize::MAX)
        .await
        .expect("read all")
}

#[derive(Clone, Debug)]
enum Damage {
    /// Truncate the file anywhere (a torn pre-preallocation file, or a lost extension).
    TruncateFile(prop::sample::Index),
    /// Zero a suffix of the written region (a torn in-place append).
    ZeroSuffix(prop::sample::Index),
    /// Flip a byte anywhere in the file.
    Flip(prop::sample::Index, u8),
    /// Flip a byte in the zero padding after the last frame (or, with no
    /// padding, write one just past the end of the file).
    FlipPadding(prop::sample::Index, u8),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Damage::TruncateFile),
        any::<prop::sample::Index>().prop_map(Damage::ZeroSuffix),
        (any::<prop::sample::Index>(), 1u8..=255).prop_map(|(i, x)| Damage::Flip(i, x)),
        (any::<prop::sample::Index>(), 1u8..=255).prop_map(|(i, x)| Damage::FlipPadding(i, x)),
    ]
}

fn log_spec() -> impl Strategy<Value = Vec<(bool, usize)>> {
    proptest::collection::vec((prop::bool::weighted(0.2), 0usize..80), 1..60)
}

/// Frame end offsets of `entries` (the frames of one segment, in order).
fn frame_ends(entries: &[&Entry]) -> Vec<u64> {
    let mut off = HEADER_LEN as u64;
    entries
        .iter()
        .map(|e| {
            off += frame_len(e.payload.len()) as u64;
            off
        })
        .collect()
}

/// Applies `d` to `path`, whose frames end at `data_end`; returns the damaged
/// byte offset (or new length, or first byte the zeroed suffix changed).
fn apply(path: &Path, d: &Damage, data_end: u64) -> u64 {
    let mut data = std::fs::read(path).expect("read segment");
    let data_end = usize::try_from(data_end).expect("small");
    let at = match d {
        Damage::TruncateFile(i) => {
            let t = i.index(data.len() + 1);
            data.truncate(t);
            t
        }
        Damage::ZeroSuffix(i) => {
            let t = i.index(data_end + 1);
            // Payloads may hold zeros: what counts is the first byte that changes.
            let changed = data[t..data_end]
                .iter()
                .position(|&b| b != 0)
                .map_or(data_end, |p| t + p);
            data[t..data_end].fill(0);
            changed
        }
        Damage::Flip(i, x) => {
            let p = i.index(data.len());
            data[p] ^= x;
            p
        }
        Damage::FlipPadding(i, x) => {
            let p = data_end + i.index((data.len() - data_end).max(1));
            if p == data.len() {
                data.push(0);
            }
            data[p] ^= x;
            p
        }
    };
    std::fs::write(path, &data).expect("write");
    at as u64
}

proptest! {
    #![proptest_config(ProptestConfig {
        // PROPTEST_CASES overrides, for longer runs.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(96),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn damaged_last_segment_recovers_longest_valid_prefix(
        spec in log_spec(),
        segment_bytes in 60u64..600,
        chunk in 1usize..6,
        use_append in any::<bool>(),
        d in damage(),
    ) {
        let rt = rt();
        let dir = tempfile::tempdir().expect("tempdir");
        let written = rt.block_on(async {
            let (wal, _) = Wal::open(dir.path(), opts(segment_bytes)).expect("open");
            let w = write_log(&wal, &spec, chunk, use_append).await;
            wal.close().await.expect("close");
            w
        });
        let files = segment_files(dir.path());
        let (last_first, last_path) = files.last().cloned().expect("a segment");
        let n_segments = files.len();
        // Every segment is preallocated to segment_bytes, or grown to hold one oversize frame.
        for (k, (first, path)) in files.iter().enumerate() {
            let upto = files.get(k + 1).map_or(Lsn::MAX, |f| f.0);
            let seg: Vec<&Entry> = written.iter().filter(|e| e.lsn >= *first && e.lsn < upto).collect();
            let end = frame_ends(&seg).last().copied().unwrap_or(HEADER_LEN as u64);
            prop_assert_eq!(std::fs::metadata(path).expect("meta").len(), end.max(segment_bytes));
            prop_assert!(seg.len() == 1 || end <= segment_bytes);
        }
        // Frame end offsets of the entries held by the last segment.
        let in_last: Vec<&Entry> = written.iter().filter(|e| e.lsn >= last_first).collect();
        let ends = frame_ends(&in_last);
        let data_end = ends.last().copied().unwrap_or(HEADER_LEN as u64);
        let before_last = written.iter().filter(|e| e.lsn < last_first).count();
        let at = apply(&last_path, &d, data_end);

        // Expected outcome: None for Corrupt, else (entries kept, cut expected).
        let kept_in_last = ends.iter().filter(|&&e| e <= at).count();
        let boundary = at == HEADER_LEN as u64 || ends.contains(&at);
        let expected: Option<(usize, bool)> = match d {
            Damage::TruncateFile(_) | Damage::ZeroSuffix(_) if at < HEADER_LEN as u64 => {
                // Torn header, only zeros after it: segment dropped.
                prop_assert!(n_segments > 1 || last_first == 1);
                Some((before_last, true))
            }
            Damage::TruncateFile(_) | Damage::ZeroSuffix(_) => {
                Some((before_last + kept_in_last, at < data_end && !boundary))
            }
            // The header of a segment holding entries is not a tail: error.
            Damage::Flip(..) if at < HEADER_LEN as u64 => None,
            // Damage inside a frame, or a non-zero byte after the end marker: cut.
            Damage::Flip(..) | Damage::FlipPadding(..) => Some((before_last + kept_in_last, true)),
        };
        let opened = Wal::open(dir.path(), opts(segment_bytes));
        let Some((keep, cut_expected)) = expected else {
            prop_assert!(matches!(opened, Err(WalError::Corrupt { .. })), "expected Corrupt, got {:?}", opened.as_ref().map(|(_, r)| r));
            return Ok(());
        };
        let (wal, rep) = opened.expect("reopen");
        let prefix = &written[..keep];
        let last = prefix.last().map_or((0, 0), |e| (e.epoch, e.lsn));
        prop_assert_eq!(rep.last, last);
        prop_assert_eq!(rep.entries, keep as u64);
        prop_assert_eq!(rep.cut.is_some(), cut_expected, "cut {:?}", rep.cut);
        let dropped = matches!(d, Damage::TruncateFile(_) | Damage::ZeroSuffix(_)) && at < HEADER_LEN as u64;
        if let Some(cut) = &rep.cut
            && !dropped
        {
            // Cut where the first lost frame (or the end marker) starts.
            let start = if kept_in_last == 0 { HEADER_LEN as u64 } else { ends[kept_in_last - 1] };
            prop_assert_eq!(&cut.segment, &last_path);
            prop_assert_eq!(cut.offset, start);
            prop_assert!(cut.bytes_cut >= 1);
            match d {
                // Real bytes, not the padding: up to the last non-zero byte.
                Damage::Flip(..) | Damage::FlipPadding(..) if at >= data_end => {
                    prop_assert_eq!(cut.bytes_cut, at + 1 - data_end);
                }
                Damage::Flip(..) | Damage::FlipPadding(..) => {
                    prop_assert!(cut.bytes_cut <= data_end - start);
                }
                Damage::TruncateFile(_) | Damage::ZeroSuffix(_) => {
                    prop_assert!(cut.bytes_cut <= at - start);
                }
            }
        }
        // The whole tail of the last segment, from its new end, is zero on disk.
        let (cur_first, cur_path) = segment_files(dir.path()).pop().expect("a segment");
        let cur: Vec<&Entry> = prefix.iter().filter(|e| e.lsn >= cur_first).collect();
        let cur_end = frame_ends(&cur).last().copied().unwrap_or(HEADER_LEN as u64);
        let bytes = std::fs::read(&cur_path).expect("read");
        prop_assert!(bytes.len() as u64 >= segment_bytes.max(cur_end));
        prop_assert!(bytes[usize::try_from(cur_end).expect("small")..].iter().all(|&b| b == 0), "stale bytes after the end");

        let max_epoch = written.iter().map(|e| e.epoch).max().unwrap_or(1);
        let next = rt.block_on(async {
            prop_assert_eq!(&read_all(&wal).await[..], prefix);
            prop_assert_eq!(wal.last(), last);
            // The WAL continues the LSNs. Rewriting the first lost entry byte for
            // byte must not resurrect the stale frames that followed it.
            let e = if let Some(lost) = written.get(keep) {
                wal.append(vec![lost.clone()]).await.expect("append");
                lost.clone()
            } else {
                wal.propose(max_epoch, OpId(u128::MAX), Bytes::from_static(b"after")).await.expect("propose")
            };
            prop_assert_eq!(e.lsn, last.1 + 1);
            Ok(e)
        })?;
        // Crash (no close).
        drop(wal);
        let (wal, rep) = Wal::open(dir.path(), opts(segment_bytes)).expect("reopen again");
        prop_assert_eq!(rep.cut, None);
        rt.block_on(async {
            let mut expect = prefix.to_vec();
            expect.push(next);
            prop_assert_eq!(read_all(&wal).await, expect);
            Ok(())
        })?;
    }

    #[test]
    fn damaged_middle_segment_is_an_error(
        spec in proptest::collection::vec((prop::bool::weighted(0.2), 0usize..40), 30..60),
        victim in any::<prop::sample::Index>(),
        d in damage(),
    ) {
        let rt = rt();
        let dir = tempfile::tempdir().expect("tempdir");
        let written = rt.block_on(async {
            let (wal, _) = Wal::open(dir.path(), opts(120)).expect("open");
            let w = write_log(&wal, &spec, 1, false).await;
            wal.close().await.expect("close");
            w
        });
        let files = segment_files(dir.path());
        prop_assert!(files.len() >= 3, "{} segments", files.len());
        let v = victim.index(files.len() - 1);
        let in_v: Vec<&Entry> = written.iter().filter(|e| e.lsn >= files[v].0 && e.lsn < files[v + 1].0).collect();
        let data_end = frame_ends(&in_v).last().copied().unwrap_or(HEADER_LEN as u64);
        let at = apply(&files[v].1, &d, data_end);
        let harmless = match d {
            // Only zero padding removed: nothing lost.
            Damage::TruncateFile(_) => at >= data_end,
            Damage::ZeroSuffix(_) => at == data_end,
            Damage::Flip(..) | Damage::FlipPadding(..) => false,
        };
        match Wal::open(dir.path(), opts(120)) {
            Ok((wal, rep)) if harmless => {
                prop_assert_eq!(rep.cut, None);
                rt.block_on(async {
                    prop_assert_eq!(read_all(&wal).await, written);
                    Ok(())
                })?;
            }
            Err(WalError::Corrupt { path, .. }) if !harmless => {
                // Named either the damaged file or the next one (whose start no longer follows).
                prop_assert!(path == files[v].1 || path == files[v + 1].1, "{}", path.display());
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
            Ok(_) => prop_assert!(false, "damage in segment {v} of {} accepted", files.len()),
        }
    }
}
