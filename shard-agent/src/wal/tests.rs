//! Unit tests of the WAL (recovery property tests live in `tests/wal_recovery.rs`).

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::*;

fn opts(segment_bytes: u64, cache_entries: usize) -> WalOptions {
    WalOptions {
        segment_bytes,
        fsync: FsyncPolicy::Always,
        cache_entries,
    }
}

fn payload(i: u64) -> Bytes {
    Bytes::from(format!("payload-{i:05}-xxxxxxxx"))
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

async fn all(wal: &Wal) -> Vec<Entry> {
    wal.read(wal.first_lsn(), Lsn::MAX, usize::MAX)
        .await
        .expect("read all")
}

/// Proposes `n` entries in `epoch`, one request each.
async fn fill(wal: &Wal, epoch: Epoch, n: u64) -> Vec<Entry> {
    let mut out = Vec::new();
    for i in 0..n {
        let e = wal
            .propose(epoch, OpId(u128::from(i) + 1000), payload(i))
            .await
            .expect("propose");
        out.push(e);
    }
    out
}

#[test]
fn op_id_text() {
    let id = OpId(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
    let s = id.to_string();
    assert_eq!(s, "0123456789abcdef0011223344556677");
    assert_eq!(s.parse::<OpId>(), Ok(id));
    assert_eq!(OpId(1).to_string(), format!("{}1", "0".repeat(31)));
    assert_eq!("0123456789ABCDEF0011223344556677".parse::<OpId>(), Ok(id));
    for bad in [
        "",
        "123",
        "+123456789abcdef0011223344556677",
        "0123456789abcdef001122334455667g",
    ] {
        let err = bad.parse::<OpId>().expect_err(bad);
        let _: &dyn std::error::Error = &err;
    }
}

#[tokio::test]
async fn new_log_is_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, rep) = Wal::open(dir.path(), WalOptions::default()).expect("open");
    assert_eq!(rep.segments, 1);
    assert_eq!(rep.entries, 0);
    assert_eq!(rep.first_lsn, 1);
    assert_eq!(rep.last, (0, 0));
    assert_eq!(rep.cut, None);
    assert_eq!(wal.last(), (0, 0));
    assert_eq!(wal.first_lsn(), 1);
    assert!(wal.read(1, 10, 10).await.expect("read").is_empty());
    assert_eq!(wal.epoch_at(0).await.expect("epoch_at"), Some(0));
    assert_eq!(wal.epoch_at(1).await.expect("epoch_at"), None);
    assert!(matches!(
        wal.read(0, 10, 10).await,
        Err(WalError::Compacted { lsn: 0, first: 1 })
    ));
}

#[tokio::test]
async fn propose_read_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), WalOptions::default()).expect("open");
    let mut rx = wal.subscribe();
    let written = fill(&wal, 1, 10).await;
    assert_eq!(
        written.iter().map(|e| e.lsn).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(*rx.borrow_and_update(), 10);
    let many = wal
        .propose_many(
            2,
            (0..5)
                .map(|i| (OpId(i), payload(u64::try_from(i).expect("small"))))
                .collect(),
        )
        .await
        .expect("propose_many");
    assert_eq!(
        many.iter().map(|e| e.lsn).collect::<Vec<_>>(),
        vec![11, 12, 13, 14, 15]
    );
    assert!(many.iter().all(|e| e.epoch == 2));
    assert_eq!(wal.last(), (2, 15));
    let mut expect = written.clone();
    expect.extend(many);
    assert_eq!(all(&wal).await, expect);
    assert_eq!(wal.read(3, 7, 2).await.expect("read").len(), 2);
    assert_eq!(
        wal.read(14, 100, 100).await.expect("read"),
        expect[13..].to_vec()
    );
    assert_eq!(wal.epoch_at(10).await.expect("epoch"), Some(1));
    assert_eq!(wal.epoch_at(11).await.expect("epoch"), Some(2));
    assert_eq!(wal.epoch_at(16).await.expect("epoch"), None);
    wal.close().await.expect("close");
    assert!(matches!(
        wal.propose(2, OpId(9), payload(9)).await,
        Err(WalError::Closed)
    ));
    drop(wal);

    let (wal, rep) = Wal::open(dir.path(), WalOptions::default()).expect("reopen");
    assert_eq!(rep.entries, 15);
    assert_eq!(rep.last, (2, 15));
    assert_eq!(rep.cut, None);
    assert_eq!(all(&wal).await, expect);
    let e = wal
        .propose(2, OpId(77), payload(77))
        .await
        .expect("propose");
    assert_eq!(e.lsn, 16);
}

#[tokio::test]
async fn second_open_is_locked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), WalOptions::default()).expect("open");
    assert!(matches!(
        Wal::open(dir.path(), WalOptions::default()),
        Err(WalError::Locked(_))
    ));
    // Dropping every handle releases the lock.
    let clone = wal.clone();
    drop(wal);
    assert!(Wal::open(dir.path(), WalOptions::default()).is_err());
    drop(clone);
    Wal::open(dir.path(), WalOptions::default()).expect("reopen after drop");
}

#[tokio::test]
async fn stale_epoch_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), WalOptions::default()).expect("open");
    wal.propose(5, OpId(1), payload(1)).await.expect("propose");
    assert!(matches!(
        wal.propose(4, OpId(2), payload(2)).await,
        Err(WalError::StaleEpoch { last: 5, got: 4 })
    ));
    assert!(matches!(
        wal.propose_many(3, vec![(OpId(2), payload(2))]).await,
        Err(WalError::StaleEpoch { last: 5, got: 3 })
    ));
    assert_eq!(wal.last(), (5, 1));
    assert_eq!(
        wal.propose(5, OpId(3), payload(3))
            .await
            .expect("same epoch")
            .lsn,
        2
    );
    assert_eq!(
        wal.propose(6, OpId(4), payload(4))
            .await
            .expect("higher epoch")
            .lsn,
        3
    );
}

#[tokio::test]
async fn payload_too_large() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), WalOptions::default()).expect("open");
    let big = Bytes::from(vec![0u8; codec::MAX_PAYLOAD_LEN + 1]);
    assert!(matches!(
        wal.propose(1, OpId(1), big).await,
        Err(WalError::TooLarge { .. })
    ));
    assert_eq!(wal.last(), (0, 0));
}

fn entry(epoch: Epoch, lsn: Lsn) -> Entry {
    Entry {
        epoch,
        lsn,
        op_id: OpId(u128::from(lsn)),
        payload: payload(lsn),
    }
}

#[tokio::test]
async fn append_checks_contiguity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), WalOptions::default()).expect("open");
    assert!(matches!(
        wal.append(vec![entry(1, 2)]).await,
        Err(WalError::NotContiguous {
            expected: 1,
            got: 2
        })
    ));
    assert!(matches!(
        wal.append(vec![entry(1, 1), entry(1, 3)]).await,
        Err(WalError::NotContiguous {
            expected: 2,
            got: 3
        })
    ));
    assert!(matches!(
        wal.append(vec![entry(2, 1), entry(1, 2)]).await,
        Err(WalError::StaleEpoch { last: 2, got: 1 })
    ));
    assert_eq!(wal.last(), (0, 0), "a rejected batch appends nothing");
    wal.append(vec![entry(1, 1), entry(1, 2), entry(2, 3)])
        .await
        .expect("append");
    assert_eq!(wal.last(), (2, 3));
    assert!(matches!(
        wal.append(vec![entry(2, 3)]).await,
        Err(WalError::NotContiguous {
            expected: 4,
            got: 3
        })
    ));
    assert!(matches!(
        wal.append(vec![entry(1, 4)]).await,
        Err(WalError::StaleEpoch { last: 2, got: 1 })
    ));
    wal.append(Vec::new()).await.expect("empty append");
    wal.append(vec![entry(3, 4)]).await.expect("append");
    assert_eq!(
        all(&wal).await,
        vec![entry(1, 1), entry(1, 2), entry(2, 3), entry(3, 4)]
    );
}

#[tokio::test]
async fn rotation_creates_named_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), opts(200, 4)).expect("open");
    let written = fill(&wal, 1, 60).await;
    let files = segment_files(dir.path());
    assert!(
        files.len() > 10,
        "expected many segments, got {}",
        files.len()
    );
    // Every file is named after the first lsn it holds and preallocated to exactly the limit.
    for f in &files {
        let data = std::fs::read(f).expect("read");
        let h = codec::decode_header(&data).expect("header");
        assert_eq!(
            f.file_name().expect("name").to_string_lossy(),
            format!("{:020}.wal", h.first_lsn)
        );
        let (first, _) = codec::decode_frame(&data[codec::HEADER_LEN..])
            .expect("frame")
            .expect("complete");
        assert_eq!(first.lsn, h.first_lsn);
        assert_eq!(data.len(), 200);
        // Two 62-byte frames fit after the header, then zeros.
        let end = codec::HEADER_LEN + 2 * codec::frame_len(22);
        assert!(codec::is_zero(&data[end..]));
        assert!(!codec::is_zero(&data[end - 1..]));
    }
    assert_eq!(all(&wal).await, written);
    let stats = wal.stats();
    assert_eq!(stats.entries_appended, 60);
    assert_eq!(stats.groups, 60);
    drop(wal);
    let (wal, rep) = Wal::open(dir.path(), opts(200, 4)).expect("reopen");
    assert_eq!(rep.segments, files.len());
    assert_eq!(rep.entries, 60);
    assert_eq!(all(&wal).await, written);
    assert_eq!(
        wal.propose(1, OpId(1), payload(1))
            .await
            .expect("propose")
            .lsn,
        61
    );
}

#[tokio::test]
async fn truncate_after_across_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), opts(200, 4)).expect("open");
    let written = fill(&wal, 1, 50).await;
    let before = segment_files(dir.path()).len();
    let mut rx = wal.subscribe();
    wal.truncate_after(17).await.expect("truncate");
    assert_eq!(*rx.borrow_and_update(), 17);
    assert_eq!(wal.last(), (1, 17));
    assert!(segment_files(dir.path()).len() < before);
    assert_eq!(all(&wal).await, written[..17].to_vec());
    // No-op when nothing is above.
    wal.truncate_after(17).await.expect("noop");
    wal.truncate_after(40).await.expect("noop");
    assert_eq!(wal.last(), (1, 17));
    // Continue in a new epoch.
    let more = fill(&wal, 2, 10).await;
    assert_eq!(more[0].lsn, 18);
    let mut expect = written[..17].to_vec();
    expect.extend(more);
    assert_eq!(all(&wal).await, expect);
    drop(wal);

    let (wal, rep) = Wal::open(dir.path(), opts(200, 4)).expect("reopen");
    assert_eq!(rep.last, (2, 27));
    assert_eq!(rep.cut, None);
    assert_eq!(all(&wal).await, expect);
    // Truncate exactly at a segment boundary.
    let files = segment_files(dir.path());
    let boundary_first = {
        let data = std::fs::read(&files[2]).expect("read");
        codec::decode_header(&data).expect("header").first_lsn
    };
    wal.truncate_after(boundary_first - 1)
        .await
        .expect("truncate");
    assert_eq!(
        all(&wal).await,
        expect[..usize::try_from(boundary_first - 1).expect("small")].to_vec()
    );
    assert_eq!(
        wal.epoch_at(boundary_first - 1).await.expect("epoch"),
        Some(expect[usize::try_from(boundary_first - 2).expect("small")].epoch)
    );
    // Everything.
    wal.truncate_after(0).await.expect("truncate all");
    assert_eq!(wal.last(), (0, 0));
    assert!(all(&wal).await.is_empty());
    assert_eq!(
        wal.propose(3, OpId(5), payload(5))
            .await
            .expect("propose")
            .lsn,
        1
    );
    drop(wal);
    let (wal, rep) = Wal::open(dir.path(), opts(200, 4)).expect("reopen");
    assert_eq!(rep.last, (3, 1));
    assert_eq!(rep.entries, 1);
    assert_eq!(wal.read(1, 1, 1).await.expect("read")[0].op_id, OpId(5));
}

#[tokio::test]
async fn truncate_below_first_is_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), opts(200, 4)).expect("open");
    fill(&wal, 1, 40).await;
    assert!(wal.compact_through(20).await.expect("compact") > 0);
    let first = wal.first_lsn();
    assert!(first > 1);
    assert!(matches!(
        wal.truncate_after(first - 2).await,
        Err(WalError::Compacted { .. })
    ));
    wal.truncate_after(first - 1)
        .await
        .expect("truncate to first-1");
    assert_eq!(wal.last().1, first - 1);
    assert_eq!(wal.first_lsn(), first);
    assert_eq!(
        wal.propose(1, OpId(1), payload(1))
            .await
            .expect("propose")
            .lsn,
        first
    );
}

#[tokio::test]
async fn reset_replaces_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), opts(200, 4)).expect("open");
    fill(&wal, 1, 30).await;
    let mut rx = wal.subscribe();
    wal.reset(7, 100).await.expect("reset");
    assert_eq!(*rx.borrow_and_update(), 100);
    assert_eq!(wal.last(), (7, 100));
    assert_eq!(wal.first_lsn(), 101);
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert!(matches!(
        wal.read(50, 60, 10).await,
        Err(WalError::Compacted { .. })
    ));
    assert!(wal.read(101, 200, 10).await.expect("read").is_empty());
    assert_eq!(wal.epoch_at(100).await.expect("epoch"), Some(7));
    assert_eq!(wal.epoch_at(99).await.expect("epoch"), None);
    assert!(matches!(
        wal.propose(6, OpId(1), payload(1)).await,
        Err(WalError::StaleEpoch { last: 7, got: 6 })
    ));
    let e = wal.propose(7, OpId(1), payload(1)).await.expect("propose");
    assert_eq!(e.lsn, 101);
    drop(wal);
    let (wal, rep) = Wal::open(dir.path(), opts(200, 4)).expect("reopen");
    assert_eq!(rep.first_lsn, 101);
    assert_eq!(rep.last, (7, 101));
    assert_eq!(all(&wal).await, vec![e]);
    // Reset backwards is allowed too.
    wal.reset(8, 5).await.expect("reset");
    assert_eq!(wal.last(), (8, 5));
    assert_eq!(
        wal.propose(8, OpId(2), payload(2))
            .await
            .expect("propose")
            .lsn,
        6
    );
}

#[tokio::test]
async fn interrupted_reset_is_completed_by_recovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), opts(200, 4)).expect("open");
    fill(&wal, 1, 30).await;
    drop(wal);
    // Crash right after the reset intent became durable.
    segment::write_reset_marker(dir.path(), 43, 9, 200).expect("marker");
    let (wal, rep) = Wal::open(dir.path(), opts(200, 4)).expect("reopen");
    assert_eq!(rep.last, (9, 42));
    assert_eq!(rep.first_lsn, 43);
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert!(!dir.path().join(segment::RESET_PENDING).exists());
    assert_eq!(
        wal.propose(9, OpId(1), payload(1))
            .await
            .expect("propose")
            .lsn,
        43
    );
    drop(wal);
    // Crash before the intent was renamed into place: the old log stays.
    std::fs::write(dir.path().join("reset.tmp"), b"partial").expect("write");
    let (wal, rep) = Wal::open(dir.path(), opts(200, 4)).expect("reopen");
    assert_eq!(rep.last, (9, 43));
    assert!(!dir.path().join("reset.tmp").exists());
    drop(wal);
}

#[tokio::test]
async fn compact_through_removes_whole_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), opts(200, 4)).expect("open");
    let written = fill(&wal, 1, 50).await;
    let before = segment_files(dir.path()).len();
    assert_eq!(wal.compact_through(0).await.expect("compact"), 0);
    let removed = wal.compact_through(20).await.expect("compact");
    assert!(removed > 0);
    assert_eq!(segment_files(dir.path()).len(), before - removed);
    let first = wal.first_lsn();
    assert!(first > 1 && first <= 21, "first {first}");
    assert!(matches!(
        wal.read(1, 10, 10).await,
        Err(WalError::Compacted { lsn: 1, .. })
    ));
    let rest = wal.read(first, Lsn::MAX, usize::MAX).await.expect("read");
    assert_eq!(
        rest,
        written[usize::try_from(first - 1).expect("small")..].to_vec()
    );
    assert_eq!(wal.epoch_at(first - 1).await.expect("epoch"), Some(1));
    assert_eq!(wal.epoch_at(first - 2).await.expect("epoch"), None);
    // Never the active segment.
    wal.compact_through(Lsn::MAX).await.expect("compact all");
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(wal.last(), (1, 50));
    drop(wal);
    let (wal, rep) = Wal::open(dir.path(), opts(200, 4)).expect("reopen");
    assert_eq!(rep.segments, 1);
    assert_eq!(rep.last, (1, 50));
    assert_eq!(rep.first_lsn, wal.first_lsn());
    assert_eq!(
        wal.propose(1, OpId(1), payload(1))
            .await
            .expect("propose")
            .lsn,
        51
    );
}

#[tokio::test]
async fn reads_from_cache_and_disk_agree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), opts(4096, 8)).expect("open");
    let written = fill(&wal, 1, 100).await;
    wal.propose_many(
        2,
        (0..100)
            .map(|i| (OpId(i), Bytes::from(vec![7u8; 1000])))
            .collect(),
    )
    .await
    .expect("propose_many");
    let mut written = written;
    written.extend(wal.read(101, 200, 1000).await.expect("read"));
    assert_eq!(written.len(), 200);
    // 195..=200 lie in the 8-entry cache; 1..=200 needs the disk.
    let shared = wal.inner.shared.clone();
    for (from, to, max) in [
        (1, 200, 1000),
        (195, 200, 10),
        (50, 120, 7),
        (150, 150, 1),
        (1, 1, 1),
    ] {
        let cached = wal.read(from, to, max).await.expect("read");
        let disk = segment::read_disk(&shared, from, to, max).expect("disk read");
        assert_eq!(cached, disk, "{from}..={to} max {max}");
        let s = usize::try_from(from - 1).expect("small");
        let e = usize::try_from(to).expect("small").min(s + max);
        assert_eq!(cached, written[s..e].to_vec());
    }
    assert_eq!(wal.epoch_at(100).await.expect("epoch"), Some(1));
    assert_eq!(wal.epoch_at(101).await.expect("epoch"), Some(2));
    drop(wal);
    // Reopen without a cache: everything comes from disk.
    let (wal, _) = Wal::open(dir.path(), opts(4096, 0)).expect("reopen");
    assert_eq!(all(&wal).await, written);
    assert_eq!(
        wal.read(60, 70, 100).await.expect("read"),
        written[59..70].to_vec()
    );
    assert_eq!(wal.epoch_at(42).await.expect("epoch"), Some(1));
}

#[tokio::test]
async fn torn_header_of_last_segment_is_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), opts(200, 4)).expect("open");
    let written = fill(&wal, 1, 20).await;
    drop(wal);
    let torn = segment::segment_path(dir.path(), 21);
    std::fs::write(&torn, &codec::MAGIC[..]).expect("write");
    let (wal, rep) = Wal::open(dir.path(), opts(200, 4)).expect("reopen");
    let cut = rep.cut.expect("cut reported");
    assert_eq!(cut.segment, torn);
    assert_eq!(cut.offset, 0);
    assert_eq!(cut.bytes_cut, 8);
    assert!(!torn.exists());
    assert_eq!(all(&wal).await, written);
    assert_eq!(
        wal.propose(1, OpId(1), payload(1))
            .await
            .expect("propose")
            .lsn,
        21
    );
}

fn write_at(path: &Path, off: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open");
    f.write_all_at(bytes, off).expect("write_at");
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).expect("meta").len()
}

/// Offset just past the frames of `entries` in a segment holding exactly them.
fn data_end(entries: &[Entry]) -> u64 {
    (codec::HEADER_LEN
        + entries
            .iter()
            .map(|e| codec::frame_len(e.payload.len()))
            .sum::<usize>()) as u64
}

#[tokio::test]
async fn garbage_tail_is_cut_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = opts(4096, 16);
    let (wal, _) = Wal::open(dir.path(), o.clone()).expect("open");
    let written = fill(&wal, 1, 5).await;
    drop(wal);
    let seg = segment::segment_path(dir.path(), 1);
    let end = data_end(&written);
    assert_eq!(file_len(&seg), 4096, "preallocated");

    // Garbage in the zero padding right after the last frame.
    write_at(&seg, end, &[0xab; 100]);
    let (wal, rep) = Wal::open(dir.path(), o.clone()).expect("reopen");
    let cut = rep.cut.expect("cut");
    assert_eq!(cut.offset, end);
    assert_eq!(cut.bytes_cut, 100);
    let data = std::fs::read(&seg).expect("read");
    assert_eq!(data.len(), 4096, "still preallocated");
    assert!(
        codec::is_zero(&data[usize::try_from(end).expect("small")..]),
        "cut bytes zeroed"
    );
    assert_eq!(all(&wal).await, written);
    drop(wal);

    // A single flipped byte far into the padding.
    write_at(&seg, 3000, &[1]);
    let (wal, rep) = Wal::open(dir.path(), o.clone()).expect("reopen");
    let cut = rep.cut.expect("cut");
    assert_eq!((cut.offset, cut.bytes_cut), (end, 3001 - end));
    assert_eq!(all(&wal).await, written);
    drop(wal);

    // Bytes past the end of the preallocated file (a torn frame header there).
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&seg)
            .expect("open");
        f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9])
            .expect("write");
    }
    let (wal, rep) = Wal::open(dir.path(), o.clone()).expect("reopen");
    let cut = rep.cut.expect("cut");
    assert_eq!((cut.offset, cut.bytes_cut), (end, 4096 + 11 - end));
    assert_eq!(all(&wal).await, written);
    drop(wal);

    // Zeros past the end of the file are no damage at all.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&seg)
            .expect("open");
        f.write_all(&[0u8; 100]).expect("write zeros");
    }
    let (wal, rep) = Wal::open(dir.path(), o).expect("reopen");
    assert_eq!(rep.cut, None);
    assert_eq!(all(&wal).await, written);
}

/// Entries 1..=n in epoch 1 with equal-size payloads (so a rewritten frame
/// lines up exactly with the stale frame after it).
fn same_size_entries(n: u64, tag: u8) -> Vec<Entry> {
    (1..=n)
        .map(|lsn| Entry {
            epoch: 1,
            lsn,
            op_id: OpId(u128::from(lsn) | u128::from(tag) << 64),
            payload: Bytes::from(vec![tag; 40]),
        })
        .collect()
}

#[tokio::test]
async fn no_stale_frame_resurrected_after_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = opts(4096, 16);
    let (wal, _) = Wal::open(dir.path(), o.clone()).expect("open");
    let old = same_size_entries(10, b'a');
    wal.append(old.clone()).await.expect("append");
    drop(wal);
    // Damage entry 6's body: recovery cuts 6..=10, whose frames 7..=10 are intact.
    let seg = segment::segment_path(dir.path(), 1);
    let at6 = data_end(&old[..5]);
    write_at(&seg, at6 + 30, &[0xff]);
    let (wal, rep) = Wal::open(dir.path(), o.clone()).expect("reopen");
    let cut = rep.cut.expect("cut");
    assert_eq!(cut.offset, at6);
    assert_eq!(cut.bytes_cut, data_end(&old) - at6);
    assert_eq!(rep.last, (1, 5));
    // A new entry 6 exactly the size of the old one, so stale frame 7 would
    // follow it at the right offset with the right lsn and epoch.
    let new6 = same_size_entries(6, b'b').pop().expect("entry");
    wal.append(vec![new6.clone()]).await.expect("append");
    // Crash: no close.
    drop(wal);
    let (wal, rep) = Wal::open(dir.path(), o).expect("reopen after crash");
    assert_eq!(rep.cut, None);
    let mut expect = old[..5].to_vec();
    expect.push(new6);
    assert_eq!(all(&wal).await, expect);
    assert_eq!(rep.last, (1, 6));
}

#[tokio::test]
async fn no_stale_frame_resurrected_after_truncate_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 88-byte frames, 4 per 400-byte segment: lsn 1..=4, 5..=8, ...
    let o = opts(400, 4);
    let (mut wal, _) = Wal::open(dir.path(), o.clone()).expect("open");
    let old = same_size_entries(14, b'a');
    wal.append(old.clone()).await.expect("append");
    assert_eq!(segment_files(dir.path()).len(), 4);
    // Within the active segment (lsn 13..=14), then within an earlier one
    // (lsn 5..=8, with later segments removed).
    for (keep, n_segments) in [(13u64, 4usize), (6, 2)] {
        wal.truncate_after(keep).await.expect("truncate");
        assert_eq!(segment_files(dir.path()).len(), n_segments);
        let next = Entry {
            op_id: OpId(u128::from(keep + 1) | 7 << 64),
            ..old[usize::try_from(keep).expect("small")].clone()
        };
        wal.append(vec![next.clone()]).await.expect("append");
        let mut expect = old[..usize::try_from(keep).expect("small")].to_vec();
        expect.push(next);
        assert_eq!(all(&wal).await, expect);
        // Crash: no close.
        drop(wal);
        let (w, rep) = Wal::open(dir.path(), o.clone()).expect("reopen after crash");
        assert_eq!(rep.cut, None);
        assert_eq!(all(&w).await, expect, "after truncate_after({keep})");
        // Restore the full old log for the next round.
        w.truncate_after(keep).await.expect("truncate");
        w.append(old[usize::try_from(keep).expect("small")..].to_vec())
            .await
            .expect("append");
        assert_eq!(all(&w).await, old);
        wal = w;
    }
}

#[tokio::test]
async fn leftover_spare_and_temp_files_are_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = opts(200, 4);
    let (wal, _) = Wal::open(dir.path(), o.clone()).expect("open");
    let written = fill(&wal, 1, 20).await;
    wal.close().await.expect("close");
    drop(wal);
    // close removes an unused spare.
    assert!(!dir.path().join(segment::SPARE_FILE).exists());
    // A crash mid-preparation (garbage) and mid-creation of a segment, both of
    // which look like log data.
    let seg1 = std::fs::read(segment::segment_path(dir.path(), 1)).expect("read");
    std::fs::write(dir.path().join(segment::SPARE_FILE), &seg1).expect("write");
    std::fs::write(dir.path().join(format!("{:020}.wal.tmp", 21)), &seg1).expect("write");
    let (wal, rep) = Wal::open(dir.path(), o.clone()).expect("reopen");
    assert_eq!(rep.cut, None);
    assert_eq!(rep.last, (1, 20));
    let tmp: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");
    // Rotation keeps working (with fresh spares).
    let more = fill(&wal, 1, 20).await;
    let mut expect = written;
    expect.extend(more);
    assert_eq!(all(&wal).await, expect);
    drop(wal);
    let (wal, rep) = Wal::open(dir.path(), o).expect("reopen");
    assert_eq!(rep.cut, None);
    assert_eq!(all(&wal).await, expect);
}

#[tokio::test]
async fn oversize_frame_gets_its_own_grown_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = opts(200, 4);
    let (wal, _) = Wal::open(dir.path(), o.clone()).expect("open");
    let mut expect = fill(&wal, 1, 1).await;
    let big = wal
        .propose(1, OpId(99), Bytes::from(vec![9u8; 1000]))
        .await
        .expect("propose big");
    expect.push(big);
    expect.extend(fill(&wal, 1, 1).await);
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 3);
    assert_eq!(file_len(&files[0]), 200);
    assert_eq!(
        file_len(&files[1]),
        (codec::HEADER_LEN + codec::frame_len(1000)) as u64,
        "grown to fit the frame"
    );
    assert_eq!(file_len(&files[2]), 200);
    assert_eq!(all(&wal).await, expect);
    drop(wal);
    let (wal, rep) = Wal::open(dir.path(), o).expect("reopen");
    assert_eq!(rep.cut, None);
    assert_eq!(rep.segments, 3);
    assert_eq!(all(&wal).await, expect);
}

#[tokio::test]
async fn unpreallocated_segments_still_open() {
    // Segments cut back to their data, as written before preallocation.
    let dir = tempfile::tempdir().expect("tempdir");
    let o = opts(200, 4);
    let (wal, _) = Wal::open(dir.path(), o.clone()).expect("open");
    let written = fill(&wal, 1, 9).await;
    drop(wal);
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 5);
    for f in &files {
        let data = std::fs::read(f).expect("read");
        let n = codec::nonzero_end(&data);
        std::fs::write(f, &data[..n]).expect("write");
    }
    let (wal, rep) = Wal::open(dir.path(), o).expect("reopen");
    assert_eq!(rep.cut, None);
    assert_eq!(all(&wal).await, written);
    // The active segment is preallocated again before appending.
    let last = files.last().expect("a segment");
    assert_eq!(file_len(last), 200);
    let e = wal.propose(1, OpId(5), payload(5)).await.expect("propose");
    assert_eq!(e.lsn, 10);
}

#[tokio::test]
async fn stats_time_group_commit_syncs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), opts(1 << 20, 4)).expect("open");
    fill(&wal, 1, 5).await;
    let s = wal.stats();
    assert_eq!(s.commit_fsyncs, 5);
    assert_eq!(s.fsyncs, 5);
    assert!(s.commit_fsync_nanos > 0);
}

#[tokio::test]
async fn middle_segment_damage_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), opts(200, 4)).expect("open");
    fill(&wal, 1, 30).await;
    drop(wal);
    let files = segment_files(dir.path());
    let victim = files[1].clone();
    let original = std::fs::read(&victim).expect("read");
    // A flipped byte inside a frame.
    let mut data = original.clone();
    data[codec::HEADER_LEN + 20] ^= 0x40;
    std::fs::write(&victim, &data).expect("write");
    match Wal::open(dir.path(), opts(200, 4)) {
        Err(WalError::Corrupt { path, offset, .. }) => {
            assert_eq!(path, victim);
            assert_eq!(offset, codec::HEADER_LEN as u64);
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("corruption accepted"),
    }
    // A missing segment in the middle.
    std::fs::write(&victim, &original).expect("restore");
    std::fs::remove_file(&files[2]).expect("remove");
    assert!(matches!(
        Wal::open(dir.path(), opts(200, 4)),
        Err(WalError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn fsync_never_policy_still_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = WalOptions {
        fsync: FsyncPolicy::Never,
        ..opts(300, 16)
    };
    let (wal, _) = Wal::open(dir.path(), o.clone()).expect("open");
    let written = fill(&wal, 1, 40).await;
    let s = wal.stats();
    // Only rotations sync (4 fsyncs each: old segment, spare, spare header, directory).
    assert!(s.fsyncs > 0);
    assert_eq!(s.fsyncs % 4, 0);
    assert_eq!(s.commit_fsyncs, 0);
    drop(wal);
    let (wal, _) = Wal::open(dir.path(), o).expect("reopen");
    assert_eq!(all(&wal).await, written);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_proposers_share_fsyncs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), opts(64 << 10, 1024)).expect("open");
    let mut tasks = Vec::new();
    for t in 0..16u128 {
        let wal = wal.clone();
        tasks.push(tokio::spawn(async move {
            let mut lsns = Vec::new();
            for i in 0..50u128 {
                let e = wal
                    .propose(
                        1,
                        OpId(t << 64 | i),
                        Bytes::from(vec![u8::try_from(t).expect("small"); 64]),
                    )
                    .await
                    .expect("propose");
                lsns.push(e.lsn);
            }
            lsns
        }));
    }
    let mut lsns = Vec::new();
    for t in tasks {
        let v = t.await.expect("join");
        assert!(v.windows(2).all(|w| w[0] < w[1]), "per-caller order");
        lsns.extend(v);
    }
    lsns.sort_unstable();
    assert_eq!(lsns, (1..=800).collect::<Vec<_>>());
    let entries = all(&wal).await;
    assert_eq!(entries.len(), 800);
    for e in &entries {
        let t = e.op_id.0 >> 64;
        assert_eq!(e.payload[0], u8::try_from(t).expect("small"));
    }
    let s = wal.stats();
    assert_eq!(s.entries_appended, 800);
    assert!(s.fsyncs < 800, "no group commit: {s:?}");
    assert!(s.max_group > 1);
}

#[tokio::test]
async fn close_drains_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), WalOptions::default()).expect("open");
    let w2 = wal.clone();
    let pending = tokio::spawn(async move { w2.propose(1, OpId(1), payload(1)).await });
    tokio::task::yield_now().await;
    wal.close().await.expect("close");
    wal.close().await.expect("close twice");
    // Either it made it before close (and is durable) or it saw Closed.
    let r = pending.await.expect("join");
    drop(wal);
    let (wal, rep) = Wal::open(dir.path(), WalOptions::default()).expect("reopen");
    match r {
        Ok(e) => assert_eq!(all(&wal).await, vec![e]),
        Err(WalError::Closed) => assert_eq!(rep.entries, 0),
        Err(e) => panic!("unexpected {e}"),
    }
}

#[test]
fn handles_and_futures_are_send() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<Wal>();
    send_sync::<WalError>();
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), WalOptions::default()).expect("open");
    send(&wal.propose(1, OpId(1), Bytes::new()));
    send(&wal.propose_many(1, Vec::new()));
    send(&wal.append(Vec::new()));
    send(&wal.read(1, 1, 1));
    send(&wal.epoch_at(1));
    send(&wal.truncate_after(0));
    send(&wal.reset(0, 0));
    send(&wal.compact_through(0));
    send(&wal.close());
}
