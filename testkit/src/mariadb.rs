//! [`MariaDb`]: throwaway and persistent MariaDB servers on loopback.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::HarnessError;
use crate::child::{ChildGuard, signal_unreaped};
use crate::net::{POLL_INTERVAL, Probe, ensure_port_free, free_port, probe_mysql_handshake};
use crate::spawn::spawn_with_pdeathsig;

/// Environment variable overriding the `mariadbd` path (default `/usr/sbin/mariadbd`, then `$PATH`).
pub const ENV_MARIADBD: &str = "WALSHARD_MARIADBD";
/// Environment variable overriding the `mariadb-install-db` path (default
/// `/usr/bin/mariadb-install-db`, then `$PATH`).
pub const ENV_INSTALL_DB: &str = "WALSHARD_MARIADB_INSTALL_DB";
/// If set to a non-empty value other than `0`, dropped servers keep their temp dir (for debugging).
pub const ENV_KEEP: &str = "WALSHARD_TESTKIT_KEEP";

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
    /// Extra `mariadbd` arguments, appended last (so they override the harness defaults).
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
/// - Throwaway ([`MariaDb::start`], for tests): the root is a private temp dir. Dropping the value
///   sends `SIGKILL` to the server and deletes the dir, also during a panic unwind; set
///   `WALSHARD_TESTKIT_KEEP=1` to keep it.
/// - Persistent ([`MariaDb::open`], the process layer of the local fleet runtime): the root is
///   given by the caller and reused across runs; the data dir is created once and then only
///   crash-recovered by MariaDB. Dropping the value sends `SIGKILL` (use [`MariaDb::stop`] for a
///   clean shutdown) and never deletes anything.
///
/// Signals only go to the PID this value spawned, never by name. The server is spawned with
/// `PR_SET_PDEATHSIG(SIGKILL)` from a dedicated harness thread that lives until process exit (the
/// kernel fires the signal when the *forking thread* exits), so it dies with the owning process
/// even if that is killed, whatever thread started it.
#[derive(Debug)]
pub struct MariaDb {
    child: Option<Child>,
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
    PortInUse(HarnessError),
    Other(HarnessError),
}

impl From<HarnessError> for StartError {
    fn from(e: HarnessError) -> Self {
        StartError::Other(e)
    }
}

impl StartError {
    fn into_inner(self) -> HarnessError {
        match self {
            StartError::PortInUse(e) | StartError::Other(e) => e,
        }
    }
}

impl MariaDb {
    /// Starts a server with [`MariaDbOptions::default`] and waits until it accepts connections.
    pub fn start() -> Result<MariaDb, HarnessError> {
        Self::start_with(MariaDbOptions::default())
    }

    /// Starts a server with `opts` and waits until it accepts connections.
    ///
    /// If the chosen port turns out to be taken, retries once on a new port.
    pub fn start_with(opts: MariaDbOptions) -> Result<MariaDb, HarnessError> {
        let started = Instant::now();
        let binaries = Binaries::locate()?;
        let template = ensure_template(&binaries)?;
        let root = instance_root()?;
        copy_dir(&template, &root.path().join("data"), false)?;
        let tmp = root.path().join("tmp");
        fs::create_dir(&tmp).map_err(|e| io_at("creating", &tmp, e))?;
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
    /// ([`HarnessError::BadDatadir`]) and left untouched. Stale `mysqld.pid` and socket files are
    /// fine. The socket is `root/mysqld.sock`, or `/tmp/wsdb-<hash of root>.sock` if that path is
    /// too long for a Unix socket.
    ///
    /// `port`: `Some(p)` uses exactly `p` ([`HarnessError::PortInUse`] if it is taken); `None` or
    /// `Some(0)` picks a free port. The root is locked (`root/mariadb.lock`) while the value
    /// lives: a second open fails with [`HarnessError::RootInUse`], as does a leftover server of
    /// an earlier run still serving the data dir (it is reported, never signalled).
    pub fn open(
        root: &Path,
        port: Option<u16>,
        opts: MariaDbOptions,
    ) -> Result<MariaDb, HarnessError> {
        let started = Instant::now();
        let binaries = Binaries::locate()?;
        fs::create_dir_all(root).map_err(|e| io_at("creating", root, e))?;
        // Absolute, because mariadbd gets these paths and runs in the root.
        let root = fs::canonicalize(root).map_err(|e| io_at("resolving", root, e))?;
        let lock = lock_root(&root)?;
        check_no_leftover_server(&root)?;
        ensure_datadir(&binaries, &root)?;
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp).map_err(|e| io_at("creating", &tmp, e))?;
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
    fn first_launch(mut self, fixed_port: bool, started: Instant) -> Result<MariaDb, HarnessError> {
        match self.launch() {
            Ok(()) => {}
            Err(StartError::PortInUse(_)) if fixed_port => {
                return Err(HarnessError::PortInUse { port: self.port });
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
    pub fn start_many(n: usize, opts: &MariaDbOptions) -> Result<Vec<MariaDb>, HarnessError> {
        // Create the template once before fanning out, so errors surface once.
        ensure_template(&Binaries::locate()?)?;
        let results: Vec<Result<MariaDb, HarnessError>> = std::thread::scope(|s| {
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
        self.child.as_ref().map(Child::id)
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
        match self.child.as_mut().map(Child::try_wait) {
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
    pub fn kill9(&mut self) -> Result<(), HarnessError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id();
        kill_and_reap(&mut child)?;
        tracing::debug!(port = self.port, pid, "mariadb killed (SIGKILL)");
        Ok(())
    }

    /// Shuts the server down with `SIGTERM`, waiting up to [`STOP_TIMEOUT`], then `SIGKILL`.
    ///
    /// A no-op if it is not running.
    pub fn stop(&mut self) -> Result<(), HarnessError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id();
        let started = Instant::now();
        let status = match try_wait(&mut child)? {
            Some(status) => Some(status),
            None => {
                signal_unreaped(pid, false, Signal::SIGTERM)?;
                // In case it was paused: a stopped process does not handle SIGTERM.
                signal_unreaped(pid, false, Signal::SIGCONT)?;
                wait_child_timeout(&mut child, STOP_TIMEOUT)?
            }
        };
        match status {
            Some(status) => tracing::debug!(
                port = self.port,
                pid,
                %status,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "mariadb stopped"
            ),
            None => {
                tracing::debug!(
                    port = self.port,
                    pid,
                    "mariadb ignored SIGTERM; sending SIGKILL"
                );
                kill_and_reap(&mut child)?;
            }
        }
        Ok(())
    }

    /// Starts the server again on the same root, data dir and port, and waits until it is
    /// ready.
    ///
    /// Stops it first (as [`MariaDb::stop`]) if it is running. After [`MariaDb::kill9`] this
    /// exercises InnoDB crash recovery. Fails if another process took the port meanwhile.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
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
    pub fn pause(&self) -> Result<(), HarnessError> {
        let pid = self.running_pid()?;
        signal_unreaped(pid, false, Signal::SIGSTOP)?;
        tracing::debug!(port = self.port, pid, "mariadb paused (SIGSTOP)");
        Ok(())
    }

    /// Resumes a paused server with `SIGCONT`.
    pub fn resume(&self) -> Result<(), HarnessError> {
        let pid = self.running_pid()?;
        signal_unreaped(pid, false, Signal::SIGCONT)?;
        tracing::debug!(port = self.port, pid, "mariadb resumed (SIGCONT)");
        Ok(())
    }

    fn running_pid(&self) -> Result<u32, HarnessError> {
        self.pid().ok_or_else(|| {
            HarnessError::NotRunning(format!("MariaDB on port {} is stopped", self.port))
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
            .map_err(|e| io_at("opening", &log_path, e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| io_at("duplicating the handle of", &log_path, e))?;
        let mut cmd = Command::new(&self.mariadbd);
        cmd.args(self.args())
            .current_dir(self.root.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let child = spawn_with_pdeathsig(cmd, "mariadbd")?;
        tracing::debug!(port = self.port, pid = child.id(), "mariadbd spawned");
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
            if let Some(status) = try_wait(child)? {
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
                    let _ = kill_and_reap(&mut child);
                }
                let reason = format!("not accepting connections after {READY_TIMEOUT:?}");
                return Err(self.start_failed(reason).into());
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn start_failed(&self, reason: String) -> HarnessError {
        HarnessError::StartFailed {
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
            let pid = child.id();
            let _ = kill_and_reap(&mut child);
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

/// Returns the version string of the configured `mariadbd`, e.g. `10.11.19-MariaDB-0+deb12u1`.
pub fn mariadb_version() -> Result<String, HarnessError> {
    mariadbd_version(&Binaries::locate()?.mariadbd)
}

/// Paths of the MariaDB programs the harness runs.
#[derive(Debug, Clone)]
struct Binaries {
    mariadbd: PathBuf,
    install_db: PathBuf,
}

impl Binaries {
    /// Resolves both binaries from the environment overrides or the default locations.
    fn locate() -> Result<Binaries, HarnessError> {
        Ok(Binaries {
            mariadbd: resolve_binary(
                "mariadbd",
                ENV_MARIADBD,
                std::env::var_os(ENV_MARIADBD),
                &["/usr/sbin/mariadbd"],
            )?,
            install_db: resolve_binary(
                "mariadb-install-db",
                ENV_INSTALL_DB,
                std::env::var_os(ENV_INSTALL_DB),
                &["/usr/bin/mariadb-install-db"],
            )?,
        })
    }
}

/// Picks `override_path` if given (it must exist), else the first existing default, else `$PATH`.
fn resolve_binary(
    name: &'static str,
    env_var: &'static str,
    override_path: Option<OsString>,
    defaults: &[&str],
) -> Result<PathBuf, HarnessError> {
    let missing = |path: PathBuf| HarnessError::MissingBinary {
        name,
        path,
        env_var,
    };
    if let Some(path) = override_path.filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(missing(path))
        };
    }
    let from_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|dir| dir.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    defaults
        .iter()
        .map(PathBuf::from)
        .chain(from_path)
        .find(|p| p.is_file())
        .ok_or_else(|| missing(PathBuf::from(defaults.first().copied().unwrap_or(name))))
}

/// Runs `mariadbd --version` once per binary path and caches the parsed version.
fn mariadbd_version(mariadbd: &Path) -> Result<String, HarnessError> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().ok().and_then(|c| c.get(mariadbd).cloned()) {
        return Ok(v);
    }
    let out = Command::new(mariadbd)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io_at("running --version of", mariadbd, e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = parse_version(&text).ok_or_else(|| {
        HarnessError::io(
            format!("parsing `{} --version`", mariadbd.display()),
            std::io::Error::other(format!("unexpected output: {:?}", text.trim())),
        )
    })?;
    if let Ok(mut c) = cache.lock() {
        c.insert(mariadbd.to_path_buf(), version.clone());
    }
    Ok(version)
}

/// Extracts the word after `Ver` from `mariadbd --version` output.
fn parse_version(text: &str) -> Option<String> {
    let mut words = text.split_whitespace();
    words.find(|w| *w == "Ver")?;
    words.next().map(str::to_owned)
}

/// Keeps `[A-Za-z0-9._-]`, replacing anything else with `_`, for use in a directory name.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The first of [`DATADIR_MARKERS`] that `dir` lacks.
fn missing_datadir_file(dir: &Path) -> Option<&'static str> {
    DATADIR_MARKERS
        .into_iter()
        .find(|file| !dir.join(file).is_file())
}

/// Whether a data dir looks complete.
fn template_is_complete(dir: &Path) -> bool {
    missing_datadir_file(dir).is_none()
}

/// Returns the cached template data dir, creating it (once, under a file lock) if needed.
///
/// Lives in `$TMPDIR/walshard-testkit-mariadb-<version>/template`. It is built in a sibling
/// `build-<pid>` dir and renamed into place, so it is either absent or complete.
fn ensure_template(binaries: &Binaries) -> Result<PathBuf, HarnessError> {
    let version = mariadbd_version(&binaries.mariadbd)?;
    let base =
        std::env::temp_dir().join(format!("walshard-testkit-mariadb-{}", sanitize(&version)));
    let template = base.join("template");
    if template_is_complete(&template) {
        return Ok(template);
    }
    fs::create_dir_all(&base).map_err(|e| io_at("creating", &base, e))?;
    let _lock = lock_exclusive(&base.join("lock"), TEMPLATE_LOCK_TIMEOUT)?;
    if template_is_complete(&template) {
        return Ok(template);
    }
    let started = Instant::now();
    // We hold the lock: anything else here is debris from a crashed creator.
    if template.exists() {
        fs::remove_dir_all(&template)
            .map_err(|e| io_at("removing broken template", &template, e))?;
    }
    let entries = fs::read_dir(&base).map_err(|e| io_at("listing", &base, e))?;
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with("build-") {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    let build = base.join(format!("build-{}", std::process::id()));
    fs::create_dir(&build).map_err(|e| io_at("creating", &build, e))?;
    let data = build.join("data");
    run_install_db(binaries, &build, &data)?;
    fs::rename(&data, &template).map_err(|e| io_at("renaming into place", &template, e))?;
    let _ = fs::remove_dir_all(&build);
    tracing::debug!(
        template = %template.display(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "mariadb template created"
    );
    Ok(template)
}

/// Runs `mariadb-install-db` into `data`, logging to `build/install.log`.
fn run_install_db(binaries: &Binaries, build: &Path, data: &Path) -> Result<(), HarnessError> {
    let log_path = build.join("install.log");
    let log = File::create(&log_path).map_err(|e| io_at("creating", &log_path, e))?;
    let log2 = log
        .try_clone()
        .map_err(|e| io_at("duplicating the handle of", &log_path, e))?;
    let mut cmd = Command::new(&binaries.install_db);
    cmd.arg("--no-defaults")
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db")
        .arg("--skip-name-resolve");
    if running_as_root() {
        cmd.arg("--user=root");
    }
    cmd.arg(prefixed("--datadir=", data))
        .arg(format!("--innodb-log-file-size={REDO_LOG_SIZE}"))
        .current_dir(build)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    let mut child = ChildGuard::spawn(cmd)?;
    let failed = |reason: String| HarnessError::TemplateInit {
        reason,
        log_tail: tail_of_file(&log_path, LOG_TAIL_LINES),
    };
    match child.wait_timeout(INSTALL_TIMEOUT)? {
        None => {
            child.kill9()?;
            Err(failed(format!("timed out after {INSTALL_TIMEOUT:?}")))
        }
        Some(status) if !status.success() => Err(failed(format!(
            "`{}` exited with {status}",
            binaries.install_db.display()
        ))),
        Some(_) if !template_is_complete(data) => Err(failed(format!(
            "{} is incomplete after a successful run",
            data.display()
        ))),
        Some(_) => Ok(()),
    }
}

/// Opens (creating) `path` and takes an exclusive `flock`, polling up to `timeout`.
fn lock_exclusive(path: &Path, timeout: Duration) -> Result<File, HarnessError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| io_at("opening lock file", path, e))?;
    let deadline = Instant::now() + timeout;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(HarnessError::Timeout {
                    what: format!("lock {}", path.display()),
                    after: timeout,
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_at("locking", path, e)),
        }
    }
}

/// Takes the lock of a persistent root without waiting.
fn lock_root(root: &Path) -> Result<File, HarnessError> {
    let path = root.join(ROOT_LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| io_at("opening lock file", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(HarnessError::RootInUse {
            root: root.to_path_buf(),
            holder: format!(
                "a MariaDb in this or another process holds {}",
                path.display()
            ),
        }),
        Err(fs::TryLockError::Error(e)) => Err(io_at("locking", &path, e)),
    }
}

/// Fails if `root/mysqld.pid` names a live process started with this root's `--datadir`.
///
/// Such a server outlived its owner; a second one on the same files would hang in InnoDB's
/// file lock. One that is still dying (its owner was just killed) gets [`LEFTOVER_GRACE`].
/// Any other pid file content is stale and ignored (mariadbd overwrites it).
fn check_no_leftover_server(root: &Path) -> Result<(), HarnessError> {
    let Ok(text) = fs::read_to_string(root.join("mysqld.pid")) else {
        return Ok(());
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return Ok(());
    };
    let datadir = root.join("data");
    let arg = prefixed("--datadir=", &datadir);
    // A zombie's or a dead process's cmdline is empty or unreadable.
    let serves_datadir = || {
        fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
    };
    let deadline = Instant::now() + LEFTOVER_GRACE;
    while serves_datadir() {
        if Instant::now() >= deadline {
            return Err(HarnessError::RootInUse {
                root: root.to_path_buf(),
                holder: format!(
                    "pid {pid} (from mysqld.pid) is still running on {}; stop it first",
                    datadir.display()
                ),
            });
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    Ok(())
}

/// Makes `root/data` a complete data dir, copying the template if it is absent or empty.
///
/// The copy is assembled in `root/data.partial`, fsynced, then renamed, so `data` is never
/// half-copied even after a crash. The caller holds the root lock.
fn ensure_datadir(binaries: &Binaries, root: &Path) -> Result<(), HarnessError> {
    let datadir = root.join("data");
    let partial = root.join(PARTIAL_DATADIR);
    if partial.exists() {
        fs::remove_dir_all(&partial)
            .map_err(|e| io_at("removing interrupted copy", &partial, e))?;
    }
    let bad = |reason: String| HarnessError::BadDatadir {
        path: datadir.clone(),
        reason,
    };
    if datadir.is_dir() {
        let Some(missing) = missing_datadir_file(&datadir) else {
            return Ok(());
        };
        let mut entries = fs::read_dir(&datadir).map_err(|e| io_at("listing", &datadir, e))?;
        if entries.next().is_some() {
            return Err(bad(format!("it has no {missing}")));
        }
        fs::remove_dir(&datadir).map_err(|e| io_at("removing empty", &datadir, e))?;
    } else if fs::symlink_metadata(&datadir).is_ok() {
        return Err(bad("it is not a directory".into()));
    }
    let started = Instant::now();
    let template = ensure_template(binaries)?;
    copy_dir(&template, &partial, true)?;
    fs::rename(&partial, &datadir).map_err(|e| io_at("renaming into place", &datadir, e))?;
    sync_path(root)?;
    tracing::debug!(
        datadir = %datadir.display(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "mariadb data dir created"
    );
    Ok(())
}

/// `root/mysqld.sock`, or `/tmp/wsdb-<hash of root>.sock` if that is too long for `sun_path`.
fn socket_path_for(root: &Path) -> PathBuf {
    let socket = root.join("mysqld.sock");
    if socket.as_os_str().len() < MAX_SOCKET_PATH {
        return socket;
    }
    let hash = fnv1a64(root.as_os_str().as_bytes());
    PathBuf::from(format!("/tmp/wsdb-{hash:016x}.sock"))
}

/// 64-bit FNV-1a: stable across builds, unlike `DefaultHasher`.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Creates the instance's private temp dir, keeping the socket path short enough.
fn instance_root() -> Result<TempDir, HarnessError> {
    let make = |parent: &Path| {
        tempfile::Builder::new()
            .prefix("wsdb-")
            .tempdir_in(parent)
            .map_err(|e| io_at("creating a temp dir in", parent, e))
    };
    let dir = make(&std::env::temp_dir())?;
    if dir.path().join("mysqld.sock").as_os_str().len() < MAX_SOCKET_PATH {
        return Ok(dir);
    }
    make(Path::new("/tmp"))
}

/// Recursively copies directory `src` to the new directory `dst` (files and dirs only); with
/// `sync`, fsyncs every copied file and dir.
fn copy_dir(src: &Path, dst: &Path, sync: bool) -> Result<(), HarnessError> {
    fs::create_dir(dst).map_err(|e| io_at("creating", dst, e))?;
    for entry in fs::read_dir(src).map_err(|e| io_at("listing", src, e))? {
        let entry = entry.map_err(|e| io_at("listing", src, e))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(|e| io_at("inspecting", &from, e))?;
        if kind.is_dir() {
            copy_dir(&from, &to, sync)?;
        } else {
            fs::copy(&from, &to).map_err(|e| io_at("copying", &from, e))?;
            if sync {
                sync_path(&to)?;
            }
        }
    }
    if sync {
        sync_path(dst)?;
    }
    Ok(())
}

/// fsyncs a file or directory.
fn sync_path(path: &Path) -> Result<(), HarnessError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_at("fsyncing", path, e))
}

fn try_wait(child: &mut Child) -> Result<Option<ExitStatus>, HarnessError> {
    child
        .try_wait()
        .map_err(|e| HarnessError::io(format!("waiting for pid {}", child.id()), e))
}

fn wait_child_timeout(
    child: &mut Child,
    timeout: Duration,
) -> Result<Option<ExitStatus>, HarnessError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = try_wait(child)? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// `SIGKILL` to the child's own PID (not yet reaped, so not reusable), then reap it.
fn kill_and_reap(child: &mut Child) -> Result<(), HarnessError> {
    let pid = child.id();
    child
        .kill()
        .map_err(|e| HarnessError::io(format!("SIGKILL to pid {pid}"), e))?;
    child
        .wait()
        .map_err(|e| HarnessError::io(format!("reaping pid {pid}"), e))?;
    Ok(())
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn prefixed(flag: &str, path: &Path) -> OsString {
    let mut s = OsString::from(flag);
    s.push(path.as_os_str());
    s
}

fn io_at(action: &str, path: &Path, e: std::io::Error) -> HarnessError {
    HarnessError::io(format!("{action} {}", path.display()), e)
}

/// Whether the error log says the TCP port could not be bound.
fn is_bind_failure(log: &str) -> bool {
    log.contains("Bind on TCP/IP port") || log.contains("Address already in use")
}

/// The file's contents from byte `offset` on (lossy UTF-8); empty if unreadable.
fn read_from(path: &Path, offset: u64) -> String {
    let Ok(bytes) = fs::read(path) else {
        return String::new();
    };
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// The last `lines` lines of a text file, or a note if it cannot be read.
fn tail_of_file(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mariadbd_version() {
        let out = "/usr/sbin/mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)\n";
        assert_eq!(
            parse_version(out).as_deref(),
            Some("10.11.19-MariaDB-0+deb12u1")
        );
        assert_eq!(parse_version("garbage"), None);
        assert_eq!(
            sanitize("10.11.19-MariaDB-0+deb12u1"),
            "10.11.19-MariaDB-0_deb12u1"
        );
    }

    #[test]
    fn override_to_missing_binary_names_the_fix() {
        let err = resolve_binary(
            "mariadbd",
            ENV_MARIADBD,
            Some("/nonexistent/mariadbd".into()),
            &["/usr/sbin/mariadbd"],
        )
        .expect_err("missing");
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/mariadbd"), "{msg}");
        assert!(
            msg.contains("install mariadb-server (apt-get install -y mariadb-server)"),
            "{msg}"
        );
    }

    #[test]
    fn default_options() {
        let o = MariaDbOptions::default();
        assert_eq!((o.flush_log_at_trx_commit, o.buffer_pool_mb), (2, 32));
        assert!(o.extra_args.is_empty());
    }

    #[test]
    fn socket_path_stays_in_short_roots_and_is_hashed_for_long_ones() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        let short = Path::new("/var/lib/walshard/Server0/mariadb");
        assert_eq!(socket_path_for(short), short.join("mysqld.sock"));
        let long = PathBuf::from(format!("/data/{}", "x".repeat(120)));
        let socket = socket_path_for(&long);
        assert_eq!(socket, socket_path_for(&long));
        assert!(socket.starts_with("/tmp") && socket.as_os_str().len() < MAX_SOCKET_PATH);
    }

    #[test]
    fn detects_bind_failure() {
        assert!(is_bind_failure(
            "[ERROR] Can't start server: Bind on TCP/IP port. Got error: 98: Address already in use"
        ));
        assert!(!is_bind_failure("[Note] ready for connections."));
    }
}
