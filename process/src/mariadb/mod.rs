//! [`MariaDb`]: throwaway and persistent MariaDB servers on loopback.

mod binaries;
mod files;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::ProcessError;
use crate::child::ChildGuard;
use crate::net::{POLL_INTERVAL, Probe, ensure_port_free, free_port, probe_mysql_handshake};

use binaries::{Binaries, running_as_root};
use files::{
    check_no_leftover_server, copy_dir, ensure_datadir, ensure_template, instance_root,
    is_bind_failure, lock_root, prefixed, read_from, socket_path_for, tail_of_file,
};

pub use binaries::mariadb_version;

/// Environment variable overriding the `mariadbd` path (default `/usr/sbin/mariadbd`, then `$PATH`).
pub const ENV_MARIADBD: &str = "WALSHARD_MARIADBD";
/// Environment variable overriding the `mariadb-install-db` path (default
/// `/usr/bin/mariadb-install-db`, then `$PATH`).
pub const ENV_INSTALL_DB: &str = "WALSHARD_MARIADB_INSTALL_DB";
/// If set to a non-empty value other than `0`, dropped throwaway servers keep their temp dir
/// (for debugging).
pub const ENV_KEEP: &str = "WALSHARD_MARIADB_KEEP";
/// Environment variable naming the directory of the cached template data dir (default
/// `$TMPDIR/walshard-mariadb-<version>`).
pub const ENV_TEMPLATE_DIR: &str = "WALSHARD_MARIADB_TEMPLATE_DIR";

/// How long a server may take to accept connections.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`MariaDb::stop`] waits after `SIGTERM` before `SIGKILL`.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long template creation by `mariadb-install-db` may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long to wait for another process creating the template.
const TEMPLATE_LOCK_TIMEOUT: Duration = Duration::from_secs(180);
/// InnoDB redo log size, used both for the template and for every server.
const REDO_LOG_SIZE: &str = "16M";
/// Lines of a log included in error messages.
const LOG_TAIL_LINES: usize = 40;
/// Unix socket paths must stay below this length (`sun_path` is 108 bytes).
const MAX_SOCKET_PATH: usize = 100;
/// How long a leftover server of an earlier run may take to die before `open` gives up.
const LEFTOVER_GRACE: Duration = Duration::from_secs(2);
/// Lock file in a persistent root, held while a [`MariaDb`] owns the root.
const ROOT_LOCK_FILE: &str = "mariadb.lock";
/// Where a persistent root's data dir is assembled before it is renamed to `data`.
const PARTIAL_DATADIR: &str = "data.partial";
/// Files every complete data dir has, relative to it.
const DATADIR_MARKERS: [&str; 4] = [
    "mysql/global_priv.MAI",
    "ibdata1",
    "ib_logfile0",
    "aria_log_control",
];

/// Server settings for [`MariaDb::start_with`] and [`MariaDb::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MariaDbOptions {
    /// `innodb_flush_log_at_trx_commit` (0, 1 or 2). Default 2: fast, loses up to ~1 s of
    /// commits on an OS crash but none on a `kill -9` of the server.
    pub flush_log_at_trx_commit: u8,
    /// `innodb_buffer_pool_size` in MiB. Default 32.
    pub buffer_pool_mb: u32,
    /// Extra `mariadbd` arguments, appended last (so they override the defaults).
    pub extra_args: Vec<String>,
}

impl Default for MariaDbOptions {
    fn default() -> Self {
        MariaDbOptions {
            flush_log_at_trx_commit: 2,
            buffer_pool_mb: 32,
            extra_args: Vec::new(),
        }
    }
}

/// One MariaDB server listening on `127.0.0.1:<port>`, throwaway or persistent.
///
/// Its files live in a root dir: `data/` (copied from a cached template made once by
/// `mariadb-install-db`), `tmp/`, `mysqld.sock`, `mysqld.pid` and `error.log`. User `root` has no
/// password.
///
/// - Throwaway ([`MariaDb::start`], for tests and `walshard bench`): the root is a private temp
///   dir. Dropping the value sends `SIGKILL` to the server and deletes the dir, also during a
///   panic unwind; set [`ENV_KEEP`]`=1` to keep it.
/// - Persistent ([`MariaDb::open`], the servers of `walshard up`): the root is
///   given by the caller and reused across runs; the data dir is created once and then only
///   crash-recovered by MariaDB. Dropping the value sends `SIGKILL` (use [`MariaDb::stop`] for a
///   clean shutdown) and never deletes anything.
///
/// Signals only go to the PID this value spawned, never by name. The server is spawned with
/// `PR_SET_PDEATHSIG(SIGKILL)` from a dedicated spawner thread that lives until process exit (the
/// kernel fires the signal when the *forking thread* exits), so it dies with the owning process
/// even if that is killed, whatever thread started it.
#[derive(Debug)]
pub struct MariaDb {
    child: Option<ChildGuard>,
    port: u16,
    root: RootDir,
    datadir: PathBuf,
    socket: PathBuf,
    mariadbd: PathBuf,
    opts: MariaDbOptions,
    exit_status: Option<ExitStatus>,
}

/// Where a server's files live.
#[derive(Debug)]
enum RootDir {
    /// Deleted on drop unless [`ENV_KEEP`] is set.
    Temp(TempDir),
    /// Never deleted; the flock on `_lock` marks the root in use while the value lives.
    Kept { path: PathBuf, _lock: File },
}

impl RootDir {
    fn path(&self) -> &Path {
        match self {
            RootDir::Temp(dir) => dir.path(),
            RootDir::Kept { path, .. } => path,
        }
    }
}

/// Why one start attempt failed.
enum StartError {
    /// The port was taken; a retry on another port may succeed.
    PortInUse(ProcessError),
    Other(ProcessError),
}

impl From<ProcessError> for StartError {
    fn from(e: ProcessError) -> Self {
        StartError::Other(e)
    }
}

impl StartError {
    fn into_inner(self) -> ProcessError {
        match self {
            StartError::PortInUse(e) | StartError::Other(e) => e,
        }
    }
}

impl MariaDb {
    /// Starts a server with [`MariaDbOptions::default`] and waits until it accepts connections.
    pub fn start() -> Result<MariaDb, ProcessError> {
        Self::start_with(MariaDbOptions::default())
    }

    /// Starts a server with `opts` and waits until it accepts connections.
    ///
    /// If the chosen port turns out to be taken, retries once on a new port.
    pub fn start_with(opts: MariaDbOptions) -> Result<MariaDb, ProcessError> {
        let started = Instant::now();
        let binaries = Binaries::locate()?;
        let template = ensure_template(&binaries)?;
        let root = instance_root()?;
        copy_dir(&template, &root.path().join("data"), false)?;
        let tmp = root.path().join("tmp");
        fs::create_dir(&tmp).map_err(|e| ProcessError::io_at("creating", &tmp, e))?;
        let db = MariaDb::new(RootDir::Temp(root), free_port()?, binaries.mariadbd, opts);
        db.first_launch(false, started)
    }

    /// Starts a persistent server whose files live in `root` and waits until it accepts
    /// connections.
    ///
    /// `root` is created if needed. If `root/data` is absent (or an empty dir) it is copied from
    /// the template into `root/data.partial`, fsynced and renamed, so it is either absent or
    /// complete; debris of an interrupted copy is removed. An existing data dir is reused as is
    /// (MariaDB runs crash recovery); one that is not complete is refused
    /// ([`ProcessError::BadDatadir`]) and left untouched. Stale `mysqld.pid` and socket files are
    /// fine. The socket is `root/mysqld.sock`, or `/tmp/wsdb-<hash of root>.sock` if that path is
    /// too long for a Unix socket.
    ///
    /// `port`: `Some(p)` uses exactly `p` ([`ProcessError::PortInUse`] if it is taken); `None` or
    /// `Some(0)` picks a free port. The root is locked (`root/mariadb.lock`) while the value
    /// lives: a second open fails with [`ProcessError::RootInUse`], as does a leftover server of
    /// an earlier run still serving the data dir (it is reported, never signalled).
    pub fn open(
        root: &Path,
        port: Option<u16>,
        opts: MariaDbOptions,
    ) -> Result<MariaDb, ProcessError> {
        let started = Instant::now();
        let binaries = Binaries::locate()?;
        fs::create_dir_all(root).map_err(|e| ProcessError::io_at("creating", root, e))?;
        // Absolute, because mariadbd gets these paths and runs in the root.
        let root = fs::canonicalize(root).map_err(|e| ProcessError::io_at("resolving", root, e))?;
        let lock = lock_root(&root)?;
        check_no_leftover_server(&root)?;
        ensure_datadir(&binaries, &root)?;
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp).map_err(|e| ProcessError::io_at("creating", &tmp, e))?;
        let fixed = port.filter(|p| *p != 0);
        let port = match fixed {
            Some(p) => {
                ensure_port_free(p)?;
                p
            }
            None => free_port()?,
        };
        let root = RootDir::Kept {
            path: root,
            _lock: lock,
        };
        let db = MariaDb::new(root, port, binaries.mariadbd, opts);
        db.first_launch(fixed.is_some(), started)
    }

    fn new(root: RootDir, port: u16, mariadbd: PathBuf, opts: MariaDbOptions) -> MariaDb {
        MariaDb {
            child: None,
            port,
            datadir: root.path().join("data"),
            socket: socket_path_for(root.path()),
            root,
            mariadbd,
            opts,
            exit_status: None,
        }
    }

    /// First launch; if the port turns out to be taken, fails if `fixed_port`, else retries
    /// once on a new port.
    fn first_launch(mut self, fixed_port: bool, started: Instant) -> Result<MariaDb, ProcessError> {
        match self.launch() {
            Ok(()) => {}
            Err(StartError::PortInUse(_)) if fixed_port => {
                return Err(ProcessError::PortInUse { port: self.port });
            }
            Err(StartError::PortInUse(e)) => {
                let old = self.port;
                self.port = free_port()?;
                tracing::debug!(old_port = old, new_port = self.port, error = %e, "port taken; retrying");
                self.launch().map_err(StartError::into_inner)?;
            }
            Err(StartError::Other(e)) => return Err(e),
        }
        tracing::debug!(
            port = self.port,
            pid = self.pid(),
            datadir = %self.datadir.display(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "mariadb started"
        );
        Ok(self)
    }

    /// Starts `n` servers concurrently with the same options.
    ///
    /// On error, the servers already started are stopped and removed.
    pub fn start_many(n: usize, opts: &MariaDbOptions) -> Result<Vec<MariaDb>, ProcessError> {
        // Create the template once before fanning out, so errors surface once.
        ensure_template(&Binaries::locate()?)?;
        let results: Vec<Result<MariaDb, ProcessError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|_| s.spawn(|| MariaDb::start_with(opts.clone())))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        results.into_iter().collect()
    }

    /// Connection URL: `mysql://root@127.0.0.1:<port>` (user root, no password).
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    /// TCP port on 127.0.0.1; stays the same across [`MariaDb::restart`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// PID of the server process; `None` after [`MariaDb::stop`] or [`MariaDb::kill9`].
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildGuard::pid)
    }

    /// The server's data directory.
    pub fn datadir(&self) -> &Path {
        &self.datadir
    }

    /// The server's root dir (contains `data/`, `tmp/`, the pid file, the error log and
    /// usually the socket): the private temp dir of a throwaway server, the given root of a
    /// persistent one.
    pub fn root_dir(&self) -> &Path {
        self.root.path()
    }

    /// Whether this server was opened with [`MariaDb::open`] (its root is never deleted).
    pub fn is_persistent(&self) -> bool {
        matches!(self.root, RootDir::Kept { .. })
    }

    /// Path of the Unix socket.
    pub fn socket_path(&self) -> PathBuf {
        self.socket.clone()
    }

    /// Path of the server's error log (all starts append to it).
    pub fn error_log_path(&self) -> PathBuf {
        self.root.path().join("error.log")
    }

    /// The last `lines` lines of the error log.
    pub fn error_log_tail(&self, lines: usize) -> String {
        tail_of_file(&self.error_log_path(), lines)
    }

    /// The options the server was started with.
    pub fn options(&self) -> &MariaDbOptions {
        &self.opts
    }

    /// Whether the server process is alive.
    ///
    /// If it exited on its own (crash, `kill -9` from outside), reaps it, records the status
    /// for [`MariaDb::exit_status`] and returns `false`; [`MariaDb::restart`] brings it back.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(ChildGuard::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(status))) => {
                tracing::debug!(port = self.port, %status, "mariadb exited on its own");
                self.child = None;
                self.exit_status = Some(status);
                false
            }
            Some(Err(_)) | None => false,
        }
    }

    /// How the server last exited on its own, as found by [`MariaDb::is_running`].
    ///
    /// `None` while it runs, if it was stopped through this value, and after a restart.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.exit_status
    }

    /// Sends `SIGKILL` to the server's PID and reaps it. A no-op if it is not running.
    pub fn kill9(&mut self) -> Result<(), ProcessError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.pid();
        child.kill9()?;
        tracing::debug!(port = self.port, pid, "mariadb killed (SIGKILL)");
        Ok(())
    }

    /// Shuts the server down with `SIGTERM`, waiting up to [`STOP_TIMEOUT`], then `SIGKILL`.
    ///
    /// A no-op if it is not running.
    pub fn stop(&mut self) -> Result<(), ProcessError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.pid();
        let started = Instant::now();
        // `terminate` also sends SIGCONT: a paused server does not handle SIGTERM.
        match child.terminate(STOP_TIMEOUT)? {
            Some(status) => tracing::debug!(
                port = self.port,
                pid,
                %status,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "mariadb stopped"
            ),
            None => tracing::debug!(port = self.port, pid, "mariadb ignored SIGTERM; killed"),
        }
        Ok(())
    }

    /// Starts the server again on the same root, data dir and port, and waits until it is
    /// ready.
    ///
    /// Stops it first (as [`MariaDb::stop`]) if it is running. After [`MariaDb::kill9`] this
    /// exercises InnoDB crash recovery. Fails if another process took the port meanwhile.
    pub fn restart(&mut self) -> Result<(), ProcessError> {
        self.stop()?;
        let started = Instant::now();
        self.launch().map_err(StartError::into_inner)?;
        tracing::debug!(
            port = self.port,
            pid = self.pid(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "mariadb restarted"
        );
        Ok(())
    }

    /// Freezes the server with `SIGSTOP` (it keeps its sockets but stops answering).
    pub fn pause(&self) -> Result<(), ProcessError> {
        self.running_child()?.pause()?;
        tracing::debug!(port = self.port, "mariadb paused (SIGSTOP)");
        Ok(())
    }

    /// Resumes a paused server with `SIGCONT`.
    pub fn resume(&self) -> Result<(), ProcessError> {
        self.running_child()?.resume()?;
        tracing::debug!(port = self.port, "mariadb resumed (SIGCONT)");
        Ok(())
    }

    fn running_child(&self) -> Result<&ChildGuard, ProcessError> {
        self.child.as_ref().ok_or_else(|| {
            ProcessError::NotRunning(format!("MariaDB on port {} is stopped", self.port))
        })
    }

    /// The full `mariadbd` command line (without the program).
    fn args(&self) -> Vec<OsString> {
        let root = self.root.path();
        let mut args: Vec<OsString> = vec!["--no-defaults".into()];
        if running_as_root() {
            args.push("--user=root".into());
        }
        args.push(prefixed("--datadir=", &self.datadir));
        args.push(prefixed("--tmpdir=", &root.join("tmp")));
        args.push(prefixed("--socket=", &self.socket));
        args.push(prefixed("--pid-file=", &root.join("mysqld.pid")));
        args.push(prefixed("--log-error=", &root.join("error.log")));
        for fixed in [
            "--bind-address=127.0.0.1".to_owned(),
            format!("--port={}", self.port),
            "--skip-name-resolve".to_owned(),
            "--skip-log-bin".to_owned(),
            "--performance-schema=OFF".to_owned(),
            "--character-set-server=utf8mb4".to_owned(),
            "--collation-server=utf8mb4_general_ci".to_owned(),
            format!("--innodb-buffer-pool-size={}M", self.opts.buffer_pool_mb),
            format!("--innodb-log-file-size={REDO_LOG_SIZE}"),
            format!(
                "--innodb-flush-log-at-trx-commit={}",
                self.opts.flush_log_at_trx_commit
            ),
            "--innodb-temp-data-file-path=ibtmp1:1M:autoextend".to_owned(),
            "--innodb-buffer-pool-dump-at-shutdown=OFF".to_owned(),
            "--innodb-buffer-pool-load-at-startup=OFF".to_owned(),
        ] {
            args.push(fixed.into());
        }
        args.extend(self.opts.extra_args.iter().map(OsString::from));
        args
    }

    /// Spawns the server and waits until it is ready.
    fn launch(&mut self) -> Result<(), StartError> {
        self.exit_status = None;
        let log_path = self.error_log_path();
        let log_offset = fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| ProcessError::io_at("opening", &log_path, e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| ProcessError::io_at("duplicating the handle of", &log_path, e))?;
        let mut cmd = Command::new(&self.mariadbd);
        cmd.args(self.args())
            .current_dir(self.root.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let child = ChildGuard::spawn(cmd)?;
        tracing::debug!(port = self.port, pid = child.pid(), "mariadbd spawned");
        self.child = Some(child);
        self.wait_ready(log_offset)
    }

    /// Polls until the server answers with a MySQL handshake and has logged readiness.
    fn wait_ready(&mut self, log_offset: u64) -> Result<(), StartError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = self.addr();
        loop {
            let Some(child) = self.child.as_mut() else {
                return Err(self
                    .start_failed("the server process is gone".into())
                    .into());
            };
            if let Some(status) = child.try_wait()? {
                self.child = None;
                let log = read_from(&self.error_log_path(), log_offset);
                return Err(if is_bind_failure(&log) {
                    let reason = format!(
                        "port {} is already in use (mariadbd exited with {status})",
                        self.port
                    );
                    StartError::PortInUse(self.start_failed(reason))
                } else {
                    let reason = format!("mariadbd exited with {status} before becoming ready");
                    StartError::Other(self.start_failed(reason))
                });
            }
            // The log check rules out a foreign server that grabbed the port before ours.
            if probe_mysql_handshake(addr, Duration::from_millis(500)) == Probe::Handshake
                && read_from(&self.error_log_path(), log_offset).contains("ready for connections")
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                if let Some(mut child) = self.child.take() {
                    let _ = child.kill9();
                }
                let reason = format!("not accepting connections after {READY_TIMEOUT:?}");
                return Err(self.start_failed(reason).into());
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn start_failed(&self, reason: String) -> ProcessError {
        ProcessError::StartFailed {
            port: self.port,
            reason,
            log_path: self.error_log_path(),
            log_tail: self.error_log_tail(LOG_TAIL_LINES),
        }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.pid();
            let _ = child.kill9();
            tracing::debug!(port = self.port, pid, "mariadb killed on drop");
        }
        if let RootDir::Temp(dir) = &mut self.root
            && std::env::var_os(ENV_KEEP).is_some_and(|v| !v.is_empty() && v != "0")
        {
            dir.disable_cleanup(true);
            tracing::debug!(dir = %dir.path().display(), "keeping mariadb temp dir");
        }
    }
}
