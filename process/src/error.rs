//! The process layer's error type.

use std::path::PathBuf;
use std::time::Duration;

/// Hint appended to every "binary not found" error.
pub const INSTALL_HINT: &str = "install mariadb-server (apt-get install -y mariadb-server)";

/// Everything that can go wrong while starting or controlling servers, child processes and locks.
#[derive(thiserror::Error, Debug)]
pub enum ProcessError {
    /// A required MariaDB binary does not exist.
    #[error("{name} not found at {} (override with ${env_var}); {INSTALL_HINT}", path.display())]
    MissingBinary {
        /// Binary name, e.g. `mariadbd`.
        name: &'static str,
        /// Path that was tried.
        path: PathBuf,
        /// Environment variable that overrides the path.
        env_var: &'static str,
    },

    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Creating the cached template data directory failed.
    #[error("mariadb-install-db failed: {reason}\n--- install log tail ---\n{log_tail}")]
    TemplateInit {
        /// Why it failed.
        reason: String,
        /// Last lines of the install-db output.
        log_tail: String,
    },

    /// A MariaDB server did not become ready.
    #[error("MariaDB on 127.0.0.1:{port} failed to start: {reason}\n--- error log tail ({}) ---\n{log_tail}", log_path.display())]
    StartFailed {
        /// The port the server was told to use.
        port: u16,
        /// Why it is considered failed.
        reason: String,
        /// Path of the server's error log.
        log_path: PathBuf,
        /// Last lines of the server's error log.
        log_tail: String,
    },

    /// The port requested for a persistent server is already taken on 127.0.0.1.
    #[error("port {port} on 127.0.0.1 is already in use; free it or choose another port")]
    PortInUse {
        /// The requested port.
        port: u16,
    },

    /// A persistent server root is in use by another process.
    #[error("{} is in use: {holder}", root.display())]
    RootInUse {
        /// The server root.
        root: PathBuf,
        /// Who holds it.
        holder: String,
    },

    /// A persistent server's data dir exists but cannot be used; it is left untouched.
    #[error("refusing to use {}: {reason}; restore it or move it away to get a fresh one", path.display())]
    BadDatadir {
        /// The data dir.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// Waiting for something exceeded its deadline.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The timeout that elapsed.
        after: Duration,
    },

    /// Sending a signal failed.
    #[error("sending {signal} to pid {pid} failed: {source}")]
    Signal {
        /// Target pid.
        pid: u32,
        /// Signal name.
        signal: &'static str,
        /// The errno.
        #[source]
        source: nix::Error,
    },

    /// The operation needs a running process, but it has exited or was stopped.
    #[error("process is not running: {0}")]
    NotRunning(String),

    /// A loopback-only helper (e.g. the test fault proxy) was given a non-loopback address.
    #[error("refusing to proxy to {0}: only loopback targets (127.0.0.0/8, ::1) are allowed")]
    NotLoopback(std::net::SocketAddr),
}

impl ProcessError {
    /// An I/O error while doing `action` on `path`.
    pub(crate) fn io_at(action: &str, path: &std::path::Path, e: std::io::Error) -> Self {
        ProcessError::io(format!("{action} {}", path.display()), e)
    }

    /// Wraps an I/O error with a description of what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ProcessError::Io {
            context: context.into(),
            source,
        }
    }
}
