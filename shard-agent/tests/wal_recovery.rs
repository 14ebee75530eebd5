//! Property tests of WAL recovery: damage to the last segment yields exactly the
//! longest valid prefix; damage to an earlier segment is an error.

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
    Truncate(prop::sample::Index),
    Flip(prop::sample::Index, u8),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Damage::Truncate),
        (any::<prop::sample::Index>(), 1u8..=255).prop_map(|(i, x)| Damage::Flip(i, x)),
    ]
}

fn log_spec() -> impl Strategy<Value = Vec<(bool, usize)>> {
    proptest::collection::vec((prop::bool::weighted(0.2), 0usize..80), 1..60)
}

/// Applies `d` to `path`; returns the damaged byte offset (or new length).
fn apply(path: &Path, d: &Damage) -> u64 {
    let mut data = std::fs::read(path).expect("read segment");
    match d {
        Damage::Truncate(i) => {
            let t = i.index(data.len());
            data.truncate(t);
            std::fs::write(path, &data).expect("write");
            t as u64
        }
        Damage::Flip(i, x) => {
            let p = i.index(data.len());
            data[p] ^= x;
            std::fs::write(path, &data).expect("write");
            p as u64
        }
    }
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
        // Frame end offsets of the entries held by the last segment.
        let in_last: Vec<&Entry> = written.iter().filter(|e| e.lsn >= last_first).collect();
        let mut ends = Vec::new();
        let mut off = HEADER_LEN as u64;
        for e in &in_last {
            off += frame_len(e.payload.len()) as u64;
            ends.push(off);
        }
        prop_assert_eq!(std::fs::metadata(&last_path).expect("meta").len(), off);
        let before_last = written.iter().filter(|e| e.lsn < last_first).count();
        let at = apply(&last_path, &d);

        // Expected outcome.
        let expected: Option<usize> = match d {
            Damage::Truncate(_) if at < HEADER_LEN as u64 => {
                // Torn header, no complete entries: segment dropped.
                prop_assert!(n_segments > 1 || last_first == 1);
                Some(before_last)
            }
            Damage::Truncate(_) => Some(before_last + ends.iter().filter(|&&e| e <= at).count()),
            // The header of a segment holding entries is not a tail: error.
            Damage::Flip(..) if at < HEADER_LEN as u64 => None,
            Damage::Flip(..) => Some(before_last + ends.iter().filter(|&&e| e <= at).count()),
        };
        let opened = Wal::open(dir.path(), opts(segment_bytes));
        let Some(keep) = expected else {
            prop_assert!(matches!(opened, Err(WalError::Corrupt { .. })), "expected Corrupt, got {:?}", opened.as_ref().map(|(_, r)| r));
            return Ok(());
        };
        let (wal, rep) = opened.expect("reopen");
        let prefix = &written[..keep];
        let last = prefix.last().map_or((0, 0), |e| (e.epoch, e.lsn));
        prop_assert_eq!(rep.last, last);
        prop_assert_eq!(rep.entries, keep as u64);
        let damaged_something = match d {
            Damage::Truncate(_) => !ends.contains(&at) && at != HEADER_LEN as u64,
            Damage::Flip(..) => true,
        };
        prop_assert_eq!(rep.cut.is_some(), damaged_something, "cut {:?}", rep.cut);
        let max_epoch = written.iter().map(|e| e.epoch).max().unwrap_or(1);
        let next = rt.block_on(async {
            prop_assert_eq!(&read_all(&wal).await[..], prefix);
            prop_assert_eq!(wal.last(), last);
            // The WAL continues the LSNs.
            let e = wal.propose(max_epoch, OpId(u128::MAX), Bytes::from_static(b"after")).await.expect("propose");
            prop_assert_eq!(e.lsn, last.1 + 1);
            wal.close().await.expect("close");
            Ok(e)
        })?;
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
        rt.block_on(async {
            let (wal, _) = Wal::open(dir.path(), opts(120)).expect("open");
            write_log(&wal, &spec, 1, false).await;
            wal.close().await.expect("close");
        });
        let files = segment_files(dir.path());
        prop_assert!(files.len() >= 3, "{} segments", files.len());
        let v = victim.index(files.len() - 1);
        apply(&files[v].1, &d);
        match Wal::open(dir.path(), opts(120)) {
            Err(WalError::Corrupt { path, .. }) => {
                // Named either the damaged file or the next one (whose start no longer follows).
                prop_assert!(path == files[v].1 || path == files[v + 1].1, "{}", path.display());
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
            Ok(_) => prop_assert!(false, "damage in segment {v} of {} accepted", files.len()),
        }
    }
}
