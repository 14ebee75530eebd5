//! The MariaDB programs: where they are and which version they are.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use super::{ENV_INSTALL_DB, ENV_MARIADBD};
use crate::ProcessError;

/// Returns the version string of the configured `mariadbd`, e.g. `10.11.19-MariaDB-0+deb12u1`.
pub fn mariadb_version() -> Result<String, ProcessError> {
    mariadbd_version(&Binaries::locate()?.mariadbd)
}

/// Paths of the MariaDB programs this crate runs.
#[derive(Debug, Clone)]
pub(super) struct Binaries {
    pub(super) mariadbd: PathBuf,
    pub(super) install_db: PathBuf,
}

impl Binaries {
    /// Resolves both binaries from the environment overrides or the default locations.
    pub(super) fn locate() -> Result<Binaries, ProcessError> {
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
pub(super) fn resolve_binary(
    name: &'static str,
    env_var: &'static str,
    override_path: Option<OsString>,
    defaults: &[&str],
) -> Result<PathBuf, ProcessError> {
    let missing = |path: PathBuf| ProcessError::MissingBinary {
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
pub(super) fn mariadbd_version(mariadbd: &Path) -> Result<String, ProcessError> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().ok().and_then(|c| c.get(mariadbd).cloned()) {
        return Ok(v);
    }
    let out = Command::new(mariadbd)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ProcessError::io_at("running --version of", mariadbd, e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = parse_version(&text).ok_or_else(|| {
        ProcessError::io(
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
pub(super) fn parse_version(text: &str) -> Option<String> {
    let mut words = text.split_whitespace();
    words.find(|w| *w == "Ver")?;
    words.next().map(str::to_owned)
}

/// Keeps `[A-Za-z0-9._-]`, replacing anything else with `_`, for use in a directory name.
pub(super) fn sanitize(s: &str) -> String {
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

pub(super) fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
