//! Shared helpers for the testkit integration tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use walshard_testkit::{ChildGuard, MariaDb};

/// Env var that makes an `#[ignore]`d helper test in this binary do its work.
pub const HELPER_ENV: &str = "WALSHARD_TESTKIT_HELPER";
/// Prefix of the lines helpers print for the parent test.
pub const HELPER_PREFIX: &str = "WALSHARD_HELPER ";

/// Whether this process is a helper subprocess started by [`spawn_helper`].
pub fn in_helper() -> bool {
    std::env::var_os(HELPER_ENV).is_some()
}

/// Runs the `#[ignore]`d test `name` of this test binary in a child process.
pub fn spawn_helper(name: &str, envs: &[(&str, &str)]) -> ChildGuard {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args([
        name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(HELPER_ENV, "1")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    ChildGuard::spawn(cmd).expect("spawn helper")
}

/// The text after [`HELPER_PREFIX`] in `line` (libtest may print its own text before it).
pub fn helper_payload(line: &str) -> Option<&str> {
    line.find(HELPER_PREFIX)
        .map(|i| &line[i + HELPER_PREFIX.len()..])
}

/// Streams the payloads of a helper's stdout lines that contain [`HELPER_PREFIX`].
pub fn helper_lines(child: &mut ChildGuard) -> mpsc::Receiver<String> {
    let stdout = child.take_stdout().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = helper_payload(&line)
                && tx.send(rest.to_owned()).is_err()
            {
                break;
            }
        }
    });
    rx
}

/// Runs helper `name` to completion (bounded) and returns its status and full stdout.
pub fn run_helper(name: &str, envs: &[(&str, &str)], timeout: Duration) -> (ExitStatus, String) {
    let mut child = spawn_helper(name, envs);
    let mut stdout = child.take_stdout().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let status = child
        .wait_timeout(timeout)
        .expect("wait")
        .unwrap_or_else(|| panic!("helper {name} did not finish within {timeout:?}"));
    (status, reader.join().expect("reader"))
}

/// Whether `pid` is gone (no /proc entry) or a zombie waiting for someone else to reap it.
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // Format: "pid (comm) S ..."; comm may contain spaces, so split after the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

/// Polls until [`process_gone`] or `timeout`.
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if process_gone(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    process_gone(pid)
}

/// Runs a query with the `mariadb` CLI over TCP as root without password; `None` if the CLI is
/// not installed. Panics if the query fails.
pub fn sql(db: &MariaDb, query: &str) -> String {
    let client = ["/usr/bin/mariadb", "/usr/bin/mysql"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("the mariadb client is missing: apt-get install -y mariadb-client (mariadb-server brings it)");
    let out = Command::new(client)
        .args([
            "--no-defaults",
            "--protocol=TCP",
            "-h127.0.0.1",
            "-uroot",
            "-N",
            "-B",
        ])
        .arg(format!("-P{}", db.port()))
        .arg("-e")
        .arg(query)
        .stdin(Stdio::null())
        .output()
        .expect("run mariadb client");
    assert!(
        out.status.success(),
        "query {query:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
