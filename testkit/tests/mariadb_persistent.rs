//! Persistent servers ([`MariaDb::open`]) against real MariaDB (needs `mariadb-server`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

mod support;

use std::os::unix::fs::FileTypeExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{process_gone, sql};
use walshard_testkit::{ChildGuard, HarnessError, MariaDb, MariaDbOptions, free_port};

fn open(root: &Path, port: Option<u16>) -> MariaDb {
    MariaDb::open(root, port, MariaDbOptions::default()).expect("open")
}

/// A temp dir to hold roots; its path is short, so sockets stay inside the root.
fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in("/tmp").expect("tempdir")
}

fn create_and_insert(db: &MariaDb) {
    sql(
        db,
        "CREATE DATABASE t; CREATE TABLE t.x (id INT PRIMARY KEY, v TEXT) ENGINE=InnoDB; \
         INSERT INTO t.x VALUES (1, 'kept')",
    );
}

fn read_row(db: &MariaDb) -> String {
    sql(db, "SELECT v FROM t.x WHERE id = 1")
}

/// `kill -9 <pid>` from outside the harness, then polls `is_running` until it sees the exit.
fn kill9_from_outside(db: &mut MariaDb) {
    let pid = db.pid().expect("running");
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .stdin(Stdio::null())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -9 {pid}: {status}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while db.is_running() {
        assert!(Instant::now() < deadline, "pid {pid} survived kill -9");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn open_keeps_rows_across_drop_stop_and_port_changes() {
    let tmp = scratch();
    let root = tmp.path().join("Server0");
    let mut db = open(&root, None);
    assert!(db.is_persistent());
    assert_eq!(db.root_dir(), root.canonicalize().expect("root"));
    assert_eq!(db.datadir(), db.root_dir().join("data"));
    assert_eq!(db.socket_path(), db.root_dir().join("mysqld.sock"));
    create_and_insert(&db);
    let port = db.port();
    let pid = db.pid().expect("pid");
    db.stop().expect("graceful stop");
    drop(db);
    assert!(process_gone(pid));
    assert!(root.join("data").is_dir(), "root kept after drop");
    assert!(!root.join("data.partial").exists());

    // Same port; the data dir is reused, not copied again.
    std::fs::write(root.join("data").join("marker"), b"x").expect("marker");
    let db = open(&root, Some(port));
    assert_eq!(db.port(), port);
    assert_eq!(read_row(&db), "kept");
    let pid = db.pid().expect("pid");
    drop(db);
    assert!(process_gone(pid), "drop kills the server");
    assert!(root.join("data").join("marker").is_file());

    // Another port.
    let other = free_port().expect("port");
    let db = open(&root, Some(other));
    assert_eq!(db.port(), other);
    assert_eq!(read_row(&db), "kept");
    drop(db);
    assert!(root.join("error.log").is_file());
}

#[test]
fn kill9_from_outside_is_reported_and_restart_recovers() {
    let tmp = scratch();
    let mut db = open(&tmp.path().join("s"), None);
    create_and_insert(&db);
    let port = db.port();
    kill9_from_outside(&mut db);
    assert_eq!(db.pid(), None);
    let status = db.exit_status().expect("crash recorded");
    assert_eq!(status.signal(), Some(9), "{status}");
    assert!(!db.is_running());

    db.restart().expect("restart (crash recovery)");
    assert!(db.is_running());
    assert_eq!(db.exit_status(), None);
    assert_eq!(db.port(), port);
    assert_eq!(read_row(&db), "kept");
}

#[test]
fn stale_pid_file_and_socket_do_not_block_startup() {
    let tmp = scratch();
    let root = tmp.path().join("s");
    let mut db = open(&root, None);
    create_and_insert(&db);
    db.kill9().expect("kill9");
    drop(db);
    assert!(root.join("mysqld.pid").is_file(), "stale pid file left");
    let socket = root.join("mysqld.sock");
    let kind = std::fs::symlink_metadata(&socket).expect("stale socket left");
    assert!(kind.file_type().is_socket());
    // A live process that is not a server on this data dir.
    std::fs::write(root.join("mysqld.pid"), std::process::id().to_string()).expect("pid");

    let db = open(&root, None);
    assert_eq!(read_row(&db), "kept");
}

#[test]
fn taken_port_is_an_error_naming_it() {
    let tmp = scratch();
    let root = tmp.path().join("s");
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = squatter.local_addr().expect("addr").port();
    let err = MariaDb::open(&root, Some(port), MariaDbOptions::default()).expect_err("taken");
    assert!(
        matches!(err, HarnessError::PortInUse { port: p } if p == port),
        "{err}"
    );
    assert!(err.to_string().contains(&port.to_string()), "{err}");
    assert!(root.is_dir());
    // The failed open released the root.
    let db = open(&root, None);
    assert_ne!(db.port(), port);
}

#[test]
fn root_is_locked_while_open() {
    let tmp = scratch();
    let root = tmp.path().join("s");
    let db = open(&root, None);
    let err = MariaDb::open(&root, None, MariaDbOptions::default()).expect_err("locked");
    assert!(matches!(err, HarnessError::RootInUse { .. }), "{err}");
    assert!(err.to_string().contains("mariadb.lock"), "{err}");
    drop(db);
    drop(open(&root, None));
}

#[test]
fn leftover_server_on_the_datadir_is_reported_not_killed() {
    let tmp = scratch();
    let root = tmp.path().join("s");
    std::fs::create_dir(&root).expect("root");
    let root = root.canonicalize().expect("canonical");
    // Stands in for a mariadbd that outlived its owner: its argv names this data dir.
    let datadir_arg = format!("--datadir={}", root.join("data").display());
    // `read` is a builtin, so the shell keeps this argv (no exec) until the guard kills it.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "read x", &datadir_arg])
        .stdin(Stdio::piped());
    let orphan = ChildGuard::spawn(cmd).expect("spawn");
    std::fs::write(root.join("mysqld.pid"), format!("{}\n", orphan.pid())).expect("pid");

    let err = MariaDb::open(&root, None, MariaDbOptions::default()).expect_err("in use");
    assert!(matches!(err, HarnessError::RootInUse { .. }), "{err}");
    assert!(err.to_string().contains(&orphan.pid().to_string()), "{err}");
    assert!(
        !process_gone(orphan.pid()),
        "the harness must not signal it"
    );
}

#[test]
fn interrupted_copy_is_redone_and_foreign_datadir_is_left_alone() {
    let tmp = scratch();

    let a = tmp.path().join("a");
    std::fs::create_dir_all(a.join("data.partial").join("mysql")).expect("debris");
    std::fs::create_dir(a.join("data")).expect("empty data dir");
    let db = open(&a, None);
    assert!(!a.join("data.partial").exists());
    assert!(a.join("data").join("ibdata1").is_file());
    drop(db);

    let b = tmp.path().join("b");
    std::fs::create_dir_all(b.join("data")).expect("data");
    std::fs::write(b.join("data").join("precious"), b"x").expect("file");
    let err = MariaDb::open(&b, None, MariaDbOptions::default()).expect_err("incomplete");
    assert!(matches!(err, HarnessError::BadDatadir { .. }), "{err}");
    assert!(err.to_string().contains("global_priv.MAI"), "{err}");
    assert!(b.join("data").join("precious").is_file(), "left untouched");
}

#[test]
fn long_root_gets_a_short_socket_outside_it() {
    let tmp = scratch();
    let root = tmp.path().join("r".repeat(120));
    let db = open(&root, None);
    let socket = db.socket_path();
    assert!(socket.starts_with("/tmp"), "{}", socket.display());
    assert!(socket.as_os_str().len() < 100, "{}", socket.display());
    let kind = std::fs::symlink_metadata(&socket).expect("socket exists");
    assert!(kind.file_type().is_socket());
    sql(&db, "SELECT 1");
    drop(db);
    let db = open(&root, None);
    assert_eq!(db.socket_path(), socket, "stable per root");
    drop(db);
    // Killed servers leave their socket; this one is outside the temp dir.
    let _ = std::fs::remove_file(&socket);
}

#[test]
fn throwaway_server_is_not_persistent() {
    let db = MariaDb::start().expect("start");
    assert!(!db.is_persistent());
    assert_eq!(db.exit_status(), None);
}
