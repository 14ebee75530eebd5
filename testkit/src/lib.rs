//! Test harness for walshard, and the process layer of the local fleet runtime (`walshard up`).
//!
//! - [`MariaDb`] runs a MariaDB server on `127.0.0.1` (root, no password) in well under a second
//!   by copying a cached template data dir, and supports `kill -9`, restart (crash recovery),
//!   pause and stop. [`MariaDb::start`] gives a throwaway server in a temp dir (tests);
//!   [`MariaDb::open`] gives a persistent one in a caller-chosen root and port whose data
//!   survives drops, crashes and restarts of the owning process (the local runtime).
//! - [`ChildGuard`] owns a spawned process (e.g. an agent under test) and kills it on drop.
//! - [`free_port`] and [`wait_for_tcp`] help with loopback networking.
//! - [`FaultProxy`] is a loopback TCP proxy that injects partitions (cut, blackhole) and delay.
//! - [`invariants`] has pure checkers for chaos suites: acknowledged writes survive, replicas
//!   converge, one primary per shard and epoch, and linearizable single-key histories.
//!
//! All children get `PR_SET_PDEATHSIG(SIGKILL)` and are forked from one long-lived harness
//! thread, so they die with the owning process however it ends. Signals only go to PIDs this
//! crate spawned and has not yet reaped; nothing is ever killed by name.
//!
//! The harness installs nothing: `mariadbd` and `mariadb-install-db` must exist (Debian package
//! `mariadb-server`). Their paths can be overridden with [`ENV_MARIADBD`] and [`ENV_INSTALL_DB`].

mod child;
mod error;
pub mod invariants;
mod mariadb;
mod net;
pub mod proxy;
mod spawn;

pub use child::ChildGuard;
pub use error::{HarnessError, INSTALL_HINT};
pub use mariadb::{
    ENV_INSTALL_DB, ENV_KEEP, ENV_MARIADBD, MariaDb, MariaDbOptions, READY_TIMEOUT, STOP_TIMEOUT,
    mariadb_version,
};
pub use net::{free_port, wait_for_tcp};
pub use proxy::{FaultProxy, ProxyMode, ProxyStats};
