//! A server's files: the cached template, persistent roots and their data dirs, sockets.

use std::ffi::OsString;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use tempfile::TempDir;

use super::binaries::{Binaries, mariadbd_version, running_as_root, sanitize};
use super::{
    DATADIR_MARKERS, ENV_TEMPLATE_DIR, INSTALL_TIMEOUT, LEFTOVER_GRACE, LOG_TAIL_LINES,
    MAX_SOCKET_PATH, PARTIAL_DATADIR, REDO_LOG_SIZE, ROOT_LOCK_FILE, TEMPLATE_LOCK_TIMEOUT,
};
use crate::ProcessError;
use crate::child::ChildGuard;
use crate::lock::{lock_wait, try_lock};
use crate::net::POLL_INTERVAL;

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
/// Lives in `<base>/template`, `<base>` being [`ENV_TEMPLATE_DIR`] if set, else
/// `$TMPDIR/walshard-mariadb-<version>`. It is built in a sibling `build-<pid>` dir and renamed
/// into place, so it is either absent or complete.
pub(super) fn ensure_template(binaries: &Binaries) -> Result<PathBuf, ProcessError> {
    let base = match std::env::var_os(ENV_TEMPLATE_DIR).filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let version = mariadbd_version(&binaries.mariadbd)?;
            std::env::temp_dir().join(format!("walshard-mariadb-{}", sanitize(&version)))
        }
    };
    let template = base.join("template");
    if template_is_complete(&template) {
        return Ok(template);
    }
    fs::create_dir_all(&base).map_err(|e| ProcessError::io_at("creating", &base, e))?;
    let _lock = lock_wait(&base.join("lock"), TEMPLATE_LOCK_TIMEOUT)?;
    if template_is_complete(&template) {
        return Ok(template);
    }
    let started = Instant::now();
    // We hold the lock: anything else here is debris from a crashed creator.
    if template.exists() {
        fs::remove_dir_all(&template)
            .map_err(|e| ProcessError::io_at("removing broken template", &template, e))?;
    }
    let entries = fs::read_dir(&base).map_err(|e| ProcessError::io_at("listing", &base, e))?;
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with("build-") {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    let build = base.join(format!("build-{}", std::process::id()));
    fs::create_dir(&build).map_err(|e| ProcessError::io_at("creating", &build, e))?;
    let data = build.join("data");
    run_install_db(binaries, &build, &data)?;
    fs::rename(&data, &template)
        .map_err(|e| ProcessError::io_at("renaming into place", &template, e))?;
    let _ = fs::remove_dir_all(&build);
    tracing::debug!(
        template = %template.display(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "mariadb template created"
    );
    Ok(template)
}

/// Runs `mariadb-install-db` into `data`, logging to `build/install.log`.
fn run_install_db(binaries: &Binaries, build: &Path, data: &Path) -> Result<(), ProcessError> {
    let log_path = build.join("install.log");
    let log = File::create(&log_path).map_err(|e| ProcessError::io_at("creating", &log_path, e))?;
    let log2 = log
        .try_clone()
        .map_err(|e| ProcessError::io_at("duplicating the handle of", &log_path, e))?;
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
    let failed = |reason: String| ProcessError::TemplateInit {
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

/// Takes the lock of a persistent root without waiting.
pub(super) fn lock_root(root: &Path) -> Result<File, ProcessError> {
    let path = root.join(ROOT_LOCK_FILE);
    try_lock(&path)?.ok_or_else(|| ProcessError::RootInUse {
        root: root.to_path_buf(),
        holder: format!(
            "a MariaDb in this or another process holds {}",
            path.display()
        ),
    })
}

/// Fails if `root/mysqld.pid` names a live process started with this root's `--datadir`.
///
/// Such a server outlived its owner; a second one on the same files would hang in InnoDB's
/// file lock. One that is still dying (its owner was just killed) gets [`LEFTOVER_GRACE`].
/// Any other pid file content is stale and ignored (mariadbd overwrites it).
pub(super) fn check_no_leftover_server(root: &Path) -> Result<(), ProcessError> {
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
            return Err(ProcessError::RootInUse {
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
pub(super) fn ensure_datadir(binaries: &Binaries, root: &Path) -> Result<(), ProcessError> {
    let datadir = root.join("data");
    let partial = root.join(PARTIAL_DATADIR);
    if partial.exists() {
        fs::remove_dir_all(&partial)
            .map_err(|e| ProcessError::io_at("removing interrupted copy", &partial, e))?;
    }
    let bad = |reason: String| ProcessError::BadDatadir {
        path: datadir.clone(),
        reason,
    };
    if datadir.is_dir() {
        let Some(missing) = missing_datadir_file(&datadir) else {
            return Ok(());
        };
        let mut entries =
            fs::read_dir(&datadir).map_err(|e| ProcessError::io_at("listing", &datadir, e))?;
        if entries.next().is_some() {
            return Err(bad(format!("it has no {missing}")));
        }
        fs::remove_dir(&datadir).map_err(|e| ProcessError::io_at("removing empty", &datadir, e))?;
    } else if fs::symlink_metadata(&datadir).is_ok() {
        return Err(bad("it is not a directory".into()));
    }
    let started = Instant::now();
    let template = ensure_template(binaries)?;
    copy_dir(&template, &partial, true)?;
    fs::rename(&partial, &datadir)
        .map_err(|e| ProcessError::io_at("renaming into place", &datadir, e))?;
    sync_path(root)?;
    tracing::debug!(
        datadir = %datadir.display(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "mariadb data dir created"
    );
    Ok(())
}

/// `root/mysqld.sock`, or `/tmp/wsdb-<hash of root>.sock` if that is too long for `sun_path`.
pub(super) fn socket_path_for(root: &Path) -> PathBuf {
    let socket = root.join("mysqld.sock");
    if socket.as_os_str().len() < MAX_SOCKET_PATH {
        return socket;
    }
    let hash = fnv1a64(root.as_os_str().as_bytes());
    PathBuf::from(format!("/tmp/wsdb-{hash:016x}.sock"))
}

/// 64-bit FNV-1a: stable across builds, unlike `DefaultHasher`.
pub(super) fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Creates the instance's private temp dir, keeping the socket path short enough.
pub(super) fn instance_root() -> Result<TempDir, ProcessError> {
    let make = |parent: &Path| {
        tempfile::Builder::new()
            .prefix("wsdb-")
            .tempdir_in(parent)
            .map_err(|e| ProcessError::io_at("creating a temp dir in", parent, e))
    };
    let dir = make(&std::env::temp_dir())?;
    if dir.path().join("mysqld.sock").as_os_str().len() < MAX_SOCKET_PATH {
        return Ok(dir);
    }
    make(Path::new("/tmp"))
}

/// Recursively copies directory `src` to the new directory `dst` (files and dirs only); with
/// `sync`, fsyncs every copied file and dir.
pub(super) fn copy_dir(src: &Path, dst: &Path, sync: bool) -> Result<(), ProcessError> {
    fs::create_dir(dst).map_err(|e| ProcessError::io_at("creating", dst, e))?;
    for entry in fs::read_dir(src).map_err(|e| ProcessError::io_at("listing", src, e))? {
        let entry = entry.map_err(|e| ProcessError::io_at("listing", src, e))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(|e| ProcessError::io_at("inspecting", &from, e))?;
        if kind.is_dir() {
            copy_dir(&from, &to, sync)?;
        } else {
            fs::copy(&from, &to).map_err(|e| ProcessError::io_at("copying", &from, e))?;
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
fn sync_path(path: &Path) -> Result<(), ProcessError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| ProcessError::io_at("fsyncing", path, e))
}

pub(super) fn prefixed(flag: &str, path: &Path) -> OsString {
    let mut s = OsString::from(flag);
    s.push(path.as_os_str());
    s
}

/// Whether the error log says the TCP port could not be bound.
pub(super) fn is_bind_failure(log: &str) -> bool {
    log.contains("Bind on TCP/IP port") || log.contains("Address already in use")
}

/// The file's contents from byte `offset` on (lossy UTF-8); empty if unreadable.
pub(super) fn read_from(path: &Path, offset: u64) -> String {
    let Ok(bytes) = fs::read(path) else {
        return String::new();
    };
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// The last `lines` lines of a text file, or a note if it cannot be read.
pub(super) fn tail_of_file(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
