//! Group-commit measurement: prints throughput, fsync sharing and the average
//! group-commit `fdatasync` latency; asserts only that concurrent proposers
//! shared fsyncs.
//!
//! Run with `cargo test --release -p walshard-agent --test wal_group_commit -- --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

use std::time::Instant;

use bytes::Bytes;
use walshard_agent::wal::{FsyncPolicy, OpId, Wal, WalOptions, WalStats};

const PROPOSERS: u128 = 64;
const PER_PROPOSER: u128 = 200;
const SINGLE: u128 = 2000;

async fn run(proposers: u128, per: u128, fsync: FsyncPolicy) -> (f64, WalStats) {
    // Under target/ (a real disk), not a possible tmpfs.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let opts = WalOptions {
        fsync,
        ..WalOptions::default()
    };
    let (wal, _) = Wal::open(dir.path(), opts).expect("open");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..proposers {
        let wal = wal.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                wal.propose(1, OpId(t << 64 | i), Bytes::from(vec![b'x'; 128]))
                    .await
                    .expect("propose");
            }
        }));
    }
    for t in tasks {
        t.await.expect("join");
    }
    let secs = start.elapsed().as_secs_f64();
    let stats = wal.stats();
    assert_eq!(wal.last().1, u64::try_from(proposers * per).expect("fits"));
    wal.close().await.expect("close");
    (secs, stats)
}

fn report(label: &str, entries: u128, secs: f64, s: &WalStats) {
    let avg_sync_us = if s.commit_fsyncs == 0 {
        0.0
    } else {
        s.commit_fsync_nanos as f64 / s.commit_fsyncs as f64 / 1000.0
    };
    println!(
        "{label}: {entries} entries in {:.3}s = {:.0} entries/s; fsyncs {}, groups {}, avg group {:.1}, max group {}; avg group-commit fdatasync {:.1} us over {}",
        secs,
        entries as f64 / secs,
        s.fsyncs,
        s.groups,
        s.entries_appended as f64 / s.groups.max(1) as f64,
        s.max_group,
        avg_sync_us,
        s.commit_fsyncs,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_throughput() {
    let (secs, s) = run(1, SINGLE, FsyncPolicy::Always).await;
    report(
        &format!("1 proposer   x {SINGLE}, fsync=Always"),
        SINGLE,
        secs,
        &s,
    );
    assert_eq!(s.commit_fsyncs, s.groups);

    let n = PROPOSERS * PER_PROPOSER;
    let (secs, s) = run(PROPOSERS, PER_PROPOSER, FsyncPolicy::Always).await;
    report(
        &format!("{PROPOSERS} proposers x {PER_PROPOSER}, fsync=Always"),
        n,
        secs,
        &s,
    );
    assert_eq!(s.entries_appended, u64::try_from(n).expect("fits"));
    assert!(
        s.fsyncs < s.entries_appended,
        "group commit did not happen: {s:?}"
    );

    let (secs, s) = run(PROPOSERS, PER_PROPOSER, FsyncPolicy::Never).await;
    report(
        &format!("{PROPOSERS} proposers x {PER_PROPOSER}, fsync=Never "),
        n,
        secs,
        &s,
    );
    assert_eq!(s.commit_fsyncs, 0);
}
