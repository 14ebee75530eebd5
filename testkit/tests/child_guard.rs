//! Tests for `ChildGuard` on plain `sleep` processes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

mod support;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::{Duration, Instant};

use support::process_gone;
use walshard_testkit::{ChildGuard, HarnessError};

fn sleep30() -> ChildGuard {
    let mut cmd = Command::new("sleep");
    cmd.arg("30");
    ChildGuard::spawn(cmd).expect("spawn sleep")
}

/// Process state letter from /proc/<pid>/stat (R, S, T, Z, ...).
fn state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let (_, rest) = stat.rsplit_once(')').expect("comm");
    rest.trim_start().chars().next().expect("state")
}

fn wait_state(pid: u32, want: char) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if state(pid) == want {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn kill9_kills_and_reaps() {
    let mut c = sleep30();
    let pid = c.pid();
    assert_eq!(c.try_wait().expect("try_wait"), None);
    c.kill9().expect("kill9");
    assert!(process_gone(pid));
    let status = c.try_wait().expect("try_wait").expect("exited");
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    c.kill9().expect("second kill9 is a no-op");
    assert!(matches!(c.pause(), Err(HarnessError::NotRunning(_))));
}

#[test]
fn pause_and_resume() {
    let c = sleep30();
    c.pause().expect("pause");
    assert!(wait_state(c.pid(), 'T'), "not stopped");
    c.resume().expect("resume");
    assert!(wait_state(c.pid(), 'S'), "not resumed");
}

#[test]
fn terminate_uses_sigterm() {
    let mut c = sleep30();
    let pid = c.pid();
    let status = c
        .terminate(Duration::from_secs(5))
        .expect("terminate")
        .expect("exited on SIGTERM");
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    assert!(process_gone(pid));
    assert_eq!(
        c.terminate(Duration::from_secs(1)).expect("again"),
        Some(status)
    );
}

#[test]
fn terminate_works_on_paused_child() {
    let mut c = sleep30();
    c.pause().expect("pause");
    let status = c
        .terminate(Duration::from_secs(5))
        .expect("terminate")
        .expect("exited on SIGTERM");
    assert_eq!(status.signal(), Some(libc::SIGTERM));
}

#[test]
fn terminate_falls_back_to_sigkill() {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "trap '' TERM; echo ready; exec sleep 30"])
        .stdout(std::process::Stdio::piped());
    let mut c = ChildGuard::spawn(cmd).expect("spawn");
    // Wait until the trap is installed; `exec` keeps it a single process (SIG_IGN survives exec).
    let mut out = c.take_stdout().expect("stdout");
    let mut buf = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut buf).expect("ready");
    let t = Instant::now();
    let result = c.terminate(Duration::from_millis(300)).expect("terminate");
    assert_eq!(result, None, "SIGTERM is ignored, so SIGKILL was needed");
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(process_gone(c.pid()));
}

#[test]
fn drop_kills_running_child() {
    let c = sleep30();
    let pid = c.pid();
    drop(c);
    assert!(process_gone(pid));
}

#[test]
fn try_wait_sees_natural_exit() {
    let mut c = ChildGuard::spawn(Command::new("true")).expect("spawn");
    let status = c
        .wait_timeout(Duration::from_secs(5))
        .expect("wait")
        .expect("exited");
    assert!(status.success());
    assert_eq!(c.try_wait().expect("try_wait"), Some(status));
}

#[test]
fn spawn_failure_is_reported() {
    let err =
        ChildGuard::spawn(Command::new("/nonexistent/walshard-binary")).expect_err("cannot spawn");
    assert!(
        err.to_string().contains("/nonexistent/walshard-binary"),
        "{err}"
    );
}

#[test]
fn child_spawned_from_exited_thread_survives() {
    let mut c = std::thread::spawn(sleep30).join().expect("join");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(c.try_wait().expect("try_wait"), None, "killed by PDEATHSIG");
}
