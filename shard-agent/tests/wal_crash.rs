//! kill -9 test: a child process proposes concurrently and reports every
//! acknowledged entry; the parent SIGKILLs it at arbitrary moments and checks
//! that recovery keeps a contiguous log containing every acknowledged entry.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use walshard_agent::wal::{Epoch, FsyncPolicy, Lsn, OpId, Wal, WalOptions};

const CHILD_DIR: &str = "WALSHARD_WAL_CRASH_DIR";
const CHILD_EPOCH: &str = "WALSHARD_WAL_CRASH_EPOCH";

fn wal_opts() -> WalOptions {
    WalOptions {
        segment_bytes: 16 << 10,
        fsync: FsyncPolicy::Always,
        cache_entries: 64,
    }
}

/// Payload determined by the op id, so the parent can verify content.
fn payload_for(op: OpId) -> Bytes {
    let len = usize::try_from(op.0 % 300).expect("small");
    Bytes::from(
        format!("{op}")
            .into_bytes()
            .into_iter()
            .cycle()
            .take(len)
            .collect::<Vec<u8>>(),
    )
}

/// Child mode (only when spawned by the parent test): propose forever.
#[test]
fn crash_child() {
    let (Ok(dir), Ok(epoch)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_EPOCH)) else {
        return;
    };
    let epoch: Epoch = epoch.parse().expect("epoch");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (wal, _) = Wal::open(Path::new(&dir), wal_opts()).expect("child open");
        let mut tasks = Vec::new();
        for t in 0..16u128 {
            let wal = wal.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0u128.. {
                    let op = OpId(u128::from(epoch) << 96 | t << 64 | i);
                    let e = wal
                        .propose(epoch, op, payload_for(op))
                        .await
                        .expect("propose");
                    // Straight to fd 1 (not the test harness's capture), one line per ack.
                    let line = format!("ACK {} {}\n", e.lsn, op);
                    let mut out = std::io::stdout().lock();
                    out.write_all(line.as_bytes()).expect("stdout");
                    out.flush().expect("flush");
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

#[test]
fn kill_9_keeps_every_acknowledged_entry() {
    if std::env::var(CHILD_DIR).is_ok() {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let exe = std::env::current_exe().expect("current exe");
    let mut acked: BTreeMap<Lsn, OpId> = BTreeMap::new();
    let delays_ms = [120u64, 40, 300, 7, 200, 75];
    for (round, delay) in delays_ms.iter().enumerate() {
        let epoch = round as Epoch + 1;
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_EPOCH, epoch.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let (first_tx, first_rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut parts = line.split_whitespace();
                if parts.next() != Some("ACK") {
                    continue;
                }
                let lsn: Lsn = parts.next().and_then(|s| s.parse().ok()).expect("lsn");
                let op: OpId = parts.next().and_then(|s| s.parse().ok()).expect("op");
                if acks.is_empty() {
                    let _ = first_tx.send(());
                }
                acks.push((lsn, op));
            }
            acks
        });
        first_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("child acknowledged nothing");
        std::thread::sleep(Duration::from_millis(*delay));
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
        let acks = reader.join().expect("reader");
        let n_acks = acks.len();
        for (lsn, op) in acks {
            assert!(
                acked.insert(lsn, op).is_none(),
                "lsn {lsn} acknowledged twice"
            );
        }

        let (wal, rep) = Wal::open(dir.path(), wal_opts()).expect("reopen after kill");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let entries = rt
            .block_on(wal.read(1, Lsn::MAX, usize::MAX))
            .expect("read");
        println!(
            "round {round}: killed after {delay} ms, {n_acks} acks, log has {} entries, cut: {:?}",
            entries.len(),
            rep.cut
        );
        let mut prev_epoch = 0;
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(e.lsn, i as Lsn + 1, "lsns contiguous");
            assert!(e.epoch >= prev_epoch, "epochs non-decreasing");
            prev_epoch = e.epoch;
            assert_eq!(e.epoch, Epoch::try_from(e.op_id.0 >> 96).expect("epoch"));
            assert_eq!(e.payload, payload_for(e.op_id), "payload of lsn {}", e.lsn);
        }
        for (&lsn, &op) in &acked {
            let e = entries
                .get(usize::try_from(lsn - 1).expect("small"))
                .unwrap_or_else(|| panic!("acknowledged lsn {lsn} lost"));
            assert_eq!(e.op_id, op, "acknowledged lsn {lsn} changed");
        }
        drop(wal);
    }
}
