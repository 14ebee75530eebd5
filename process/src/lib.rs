//! The process layer of walshard's local runtime (`walshard up`) and of its test harness.
//!
//! - [`MariaDb`] runs a MariaDB server on `127.0.0.1` (root, no password) by copying a cached
//!   template data dir, and supports `kill -9`, restart (crash recovery), pause and stop.
//!   [`MariaDb::open`] gives a persistent server in a caller-chosen root and port whose data
//!   survives drops, crashes and restarts of the owning process (`walshard up`);
//!   [`MariaDb::start`] gives a throwaway one in a temp dir (`walshard bench`'s baseline, tests).
//! - [`ChildGuard`] supervises a spawned process: wait, exit status, signals by PID, and
//!   `SIGKILL` on drop.
//! - [`lock`] takes exclusive file locks with [`std::fs::File::try_lock`].
//! - [`free_port`] and [`wait_for_tcp`] help with loopback networking.
//!
//! All children get `PR_SET_PDEATHSIG(SIGKILL)` and are forked from one long-lived spawner
//! thread, so they die with the owning process however it ends. Signals only go to PIDs this
//! crate spawned and has not yet reaped; nothing is ever killed by name.
//!
//! Nothing is installed: `mariadbd` and `mariadb-install-db` must exist (Debian package
//! `mariadb-server`). Their paths can be overridden with [`ENV_MARIADBD`] and [`ENV_INSTALL_DB`].

#![warn(missing_docs)]

mod child;
mod error;
pub mod lock;
mod mariadb;
mod net;
mod spawn;

pub use child::ChildGuard;
pub use error::{INSTALL_HINT, ProcessError};
pub use mariadb::{
    ENV_INSTALL_DB, ENV_KEEP, ENV_MARIADBD, ENV_TEMPLATE_DIR, MariaDb, MariaDbOptions,
    READY_TIMEOUT, STOP_TIMEOUT, mariadb_version,
};
pub use net::{POLL_INTERVAL, free_port, wait_for_tcp};
