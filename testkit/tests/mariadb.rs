//! Tests against real MariaDB servers (needs the Debian package `mariadb-server`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{HELPER_PREFIX, helper_lines, in_helper, process_gone, run_helper, spawn_helper};
use support::{helper_payload, sql, wait_gone};
use walshard_testkit::{
    ENV_INSTALL_DB, ENV_MARIADBD, HarnessError, MariaDb, MariaDbOptions, wait_for_tcp,
};

/// Reads the MySQL initial handshake and returns the server version string in it.
fn handshake_version(db: &MariaDb) -> String {
    let mut s = TcpStream::connect(db.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut head = [0u8; 4];
    s.read_exact(&mut head).expect("header");
    let len = usize::from(head[0]) | usize::from(head[1]) << 8 | usize::from(head[2]) << 16;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).expect("payload");
    assert_eq!(payload[0], 10, "protocol version");
    let end = payload[1..]
        .iter()
        .position(|b| *b == 0)
        .expect("NUL-terminated version");
    String::from_utf8_lossy(&payload[1..1 + end]).into_owned()
}

#[test]
fn start_accepts_connections_and_reports_itself() {
    let db = MariaDb::start().expect("start");
    let version = handshake_version(&db);
    assert!(version.contains("MariaDB"), "{version}");
    assert_eq!(db.url(), format!("mysql://root@127.0.0.1:{}", db.port()));
    let pid = db.pid().expect("running");
    assert!(!process_gone(pid));
    assert!(db.datadir().join("mysql").is_dir());
    assert!(db.datadir().starts_with(db.root_dir()));
    assert!(db.socket_path().as_os_str().len() < 100);
    let out = sql(
        &db,
        "SELECT @@innodb_flush_log_at_trx_commit, @@bind_address, @@performance_schema, @@log_bin, @@character_set_server",
    );
    assert_eq!(out, "2\t127.0.0.1\t0\t0\tutf8mb4");
}

#[test]
fn options_are_applied() {
    let opts = MariaDbOptions {
        flush_log_at_trx_commit: 1,
        buffer_pool_mb: 48,
        extra_args: vec!["--max-connections=77".into()],
    };
    let db = MariaDb::start_with(opts.clone()).expect("start");
    assert_eq!(db.options(), &opts);
    let out = sql(
        &db,
        "SELECT @@innodb_flush_log_at_trx_commit, @@innodb_buffer_pool_size DIV 1048576, @@max_connections",
    );
    assert_eq!(out, "1\t48\t77");
}

#[test]
fn kill9_and_restart_keep_datadir_port_and_committed_rows() {
    let mut db = MariaDb::start().expect("start");
    let port = db.port();
    let datadir = db.datadir().to_path_buf();
    let marker = datadir.join("walshard-marker");
    std::fs::write(&marker, b"kept").expect("marker");
    sql(
        &db,
        "CREATE DATABASE t; CREATE TABLE t.x (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO t.x VALUES (1),(2),(3)",
    );

    let old_pid = db.pid().expect("running");
    db.kill9().expect("kill9");
    assert_eq!(db.pid(), None);
    assert!(
        process_gone(old_pid),
        "pid {old_pid} still alive after kill9"
    );
    db.kill9().expect("kill9 of a stopped server is a no-op");

    let t = Instant::now();
    db.restart().expect("restart after kill9");
    eprintln!("restart after kill9 (crash recovery): {:?}", t.elapsed());
    assert_eq!(db.port(), port);
    assert_eq!(db.datadir(), datadir);
    assert_ne!(db.pid(), Some(old_pid));
    assert_eq!(std::fs::read(&marker).expect("marker survives"), b"kept");
    handshake_version(&db);
    assert_eq!(sql(&db, "SELECT SUM(id) FROM t.x"), "6");
}

#[test]
fn stop_then_restart_and_restart_while_running() {
    let mut db = MariaDb::start().expect("start");
    let port = db.port();
    let pid = db.pid().expect("running");
    let t = Instant::now();
    db.stop().expect("stop");
    eprintln!("graceful stop: {:?}", t.elapsed());
    assert_eq!(db.pid(), None);
    assert!(process_gone(pid));
    assert!(!db.is_running());
    db.stop().expect("stop of a stopped server is a no-op");
    db.restart().expect("restart after stop");
    assert_eq!(db.port(), port);
    assert!(db.is_running());
    let pid2 = db.pid().expect("running");
    db.restart().expect("restart while running");
    assert!(process_gone(pid2));
    handshake_version(&db);
}

#[test]
fn pause_makes_server_unresponsive_and_resume_recovers() {
    let db = MariaDb::start().expect("start");
    db.pause().expect("pause");
    let mut s = TcpStream::connect(db.addr()).expect("kernel still accepts");
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut b = [0u8; 1];
    assert!(s.read(&mut b).is_err(), "paused server must not answer");
    db.resume().expect("resume");
    handshake_version(&db);
}

#[test]
fn start_many_runs_in_parallel() {
    MariaDb::start().expect("warm the template");
    let t = Instant::now();
    let dbs = MariaDb::start_many(3, &MariaDbOptions::default()).expect("start_many");
    let total = t.elapsed();
    eprintln!("start_many(3): {total:?} total");
    assert_eq!(dbs.len(), 3);
    let mut ports: Vec<u16> = dbs.iter().map(MariaDb::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3, "distinct ports");
    for db in &dbs {
        handshake_version(db);
    }
    // The worker threads that started them have exited; the servers must still be alive.
    std::thread::sleep(Duration::from_millis(200));
    for db in &dbs {
        assert!(!process_gone(db.pid().expect("pid")));
        handshake_version(db);
    }
}

#[test]
fn drop_kills_server_and_removes_tempdir() {
    let db = MariaDb::start().expect("start");
    let pid = db.pid().expect("running");
    let root = db.root_dir().to_path_buf();
    assert!(root.is_dir());
    drop(db);
    assert!(process_gone(pid), "pid {pid} alive after drop");
    assert!(!root.exists(), "{} left behind", root.display());
}

#[test]
fn drop_during_panic_cleans_up() {
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::panic::catch_unwind(move || {
        let db = MariaDb::start().expect("start");
        tx.send((db.pid().expect("pid"), db.root_dir().to_path_buf()))
            .expect("send");
        panic!("test failure while a server runs");
    });
    assert!(result.is_err());
    let (pid, root) = rx.recv().expect("pid and root");
    assert!(process_gone(pid), "pid {pid} alive after unwind");
    assert!(!root.exists(), "{} left behind", root.display());
}

#[test]
fn startup_times_cold_and_warm() {
    // A fresh TMPDIR forces template creation; two helpers race for it (flock-guarded).
    let tmp = tempfile::tempdir_in("/tmp").expect("tmp");
    let tmpdir = tmp.path().to_str().expect("utf8").to_owned();
    let envs = [("TMPDIR", tmpdir.as_str())];
    let mut a = spawn_helper("helper_startup_times", &envs);
    let mut b = spawn_helper("helper_startup_times", &envs);
    let (ra, rb) = (helper_lines(&mut a), helper_lines(&mut b));
    for (name, guard, rx) in [("A", &mut a, ra), ("B", &mut b, rb)] {
        let status = guard
            .wait_timeout(Duration::from_secs(120))
            .expect("wait")
            .expect("helper finished");
        assert!(status.success(), "helper {name} failed: {status}");
        let lines: Vec<String> = rx.try_iter().collect();
        assert!(!lines.is_empty(), "helper {name} printed nothing");
        for line in lines {
            eprintln!("process {name}: {line}");
        }
    }
    let templates: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("list")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(templates.len(), 1, "one template cache dir: {templates:?}");
}

#[test]
#[ignore = "helper for startup_times_cold_and_warm"]
fn helper_startup_times() {
    if !in_helper() {
        return;
    }
    let mut out = std::io::stdout();
    let t = Instant::now();
    let first = MariaDb::start().expect("first start");
    writeln!(
        out,
        "{HELPER_PREFIX}first start (may include template creation): {:?}",
        t.elapsed()
    )
    .expect("print");
    drop(first);
    for i in 0..5 {
        let t = Instant::now();
        let db = MariaDb::start().expect("warm start");
        let up = t.elapsed();
        drop(db);
        writeln!(out, "{HELPER_PREFIX}warm start {i}: {up:?}").expect("print");
    }
    let t = Instant::now();
    let many = MariaDb::start_many(3, &MariaDbOptions::default()).expect("start_many");
    writeln!(out, "{HELPER_PREFIX}start_many(3): {:?}", t.elapsed()).expect("print");
    drop(many);
}

#[test]
fn server_dies_when_test_process_is_killed() {
    let mut helper = spawn_helper("helper_hold_server", &[]);
    let rx = helper_lines(&mut helper);
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("helper reports its server");
    let mut words = line.split_whitespace();
    assert_eq!(words.next(), Some("alive"), "helper said: {line}");
    let pid: u32 = words.next().expect("pid").parse().expect("pid number");
    let root = std::path::PathBuf::from(words.next().expect("root"));
    assert!(!process_gone(pid));

    helper.kill9().expect("kill helper");
    assert!(
        wait_gone(pid, Duration::from_secs(10)),
        "mariadbd {pid} survived the death of its test process"
    );
    // The killed helper could not clean up its temp dir.
    let _ = std::fs::remove_dir_all(root);
}

#[test]
#[ignore = "helper for server_dies_when_test_process_is_killed"]
fn helper_hold_server() {
    if !in_helper() {
        return;
    }
    // Start from a short-lived thread: the server must outlive that thread.
    let db = std::thread::spawn(|| MariaDb::start().expect("start"))
        .join()
        .expect("join");
    std::thread::sleep(Duration::from_millis(200));
    wait_for_tcp(db.addr(), Duration::from_secs(5)).expect("still up after thread exit");
    let pid = db.pid().expect("pid");
    let mut out = std::io::stdout();
    writeln!(
        out,
        "{HELPER_PREFIX}alive {pid} {}",
        db.root_dir().display()
    )
    .expect("print");
    out.flush().expect("flush");
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn missing_binaries_give_install_hint() {
    for (var, name) in [
        (ENV_MARIADBD, "mariadbd"),
        (ENV_INSTALL_DB, "mariadb-install-db"),
    ] {
        let (status, out) = run_helper(
            "helper_expect_missing_binary",
            &[(var, "/nonexistent/walshard/bin")],
            Duration::from_secs(60),
        );
        assert!(status.success(), "{var}: helper failed:\n{out}");
        let msg = out
            .lines()
            .find_map(helper_payload)
            .expect("helper printed the error");
        eprintln!("{var}: {msg}");
        assert!(msg.contains(name), "{msg}");
        assert!(msg.contains("/nonexistent/walshard/bin"), "{msg}");
        assert!(
            msg.contains("install mariadb-server (apt-get install -y mariadb-server)"),
            "{msg}"
        );
    }
}

#[test]
#[ignore = "helper for missing_binaries_give_install_hint"]
fn helper_expect_missing_binary() {
    if !in_helper() {
        return;
    }
    let err = MariaDb::start().expect_err("must fail without the binary");
    assert!(
        matches!(err, HarnessError::MissingBinary { .. }),
        "unexpected error: {err}"
    );
    println!("{HELPER_PREFIX}{err}");
}

#[test]
fn startup_failure_includes_error_log_tail() {
    let opts = MariaDbOptions {
        extra_args: vec!["--walshard-no-such-option=1".into()],
        ..MariaDbOptions::default()
    };
    let err = MariaDb::start_with(opts).expect_err("unknown option must fail");
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(matches!(err, HarnessError::StartFailed { .. }), "{msg}");
    assert!(msg.contains("walshard-no-such-option"), "{msg}");
}

#[test]
fn restart_fails_clearly_when_port_is_taken() {
    let mut db = MariaDb::start().expect("start");
    db.stop().expect("stop");
    let squatter = std::net::TcpListener::bind(db.addr()).expect("take the port");
    let err = db.restart().expect_err("port is taken");
    let msg = err.to_string();
    assert!(matches!(err, HarnessError::StartFailed { .. }), "{msg}");
    assert!(msg.contains("Bind on TCP/IP port"), "{msg}");
    assert_eq!(db.pid(), None);
    drop(squatter);
    db.restart().expect("restart once the port is free");
    handshake_version(&db);
}
