//! Test harness for walshard, built on the process layer [`walshard_process`].
//!
//! - [`MariaDb`] (from `walshard-process`) runs throwaway servers for tests: [`MariaDb::start`]
//!   copies a cached template data dir into a private temp dir in well under a second, and
//!   supports `kill -9`, restart (crash recovery), pause and stop. [`MariaDb::open`] is the
//!   persistent server of `walshard up`, used here to test it.
//! - [`ChildGuard`] owns a spawned process (e.g. an agent under test) and kills it on drop.
//! - [`free_port`] and [`wait_for_tcp`] help with loopback networking.
//! - [`FaultProxy`] is a loopback TCP proxy that injects partitions (cut, blackhole) and delay.
//! - [`invariants`] has pure checkers for chaos suites: acknowledged writes survive, replicas
//!   converge, one primary per shard and epoch, and linearizable single-key histories.
//! - [`s3::S3Server`] runs a real S3-compatible server (`s3s-fs`) on loopback for backup tests.
//!
//! The harness installs nothing: `mariadbd` and `mariadb-install-db` must exist (Debian package
//! `mariadb-server`). Their paths can be overridden with [`ENV_MARIADBD`] and [`ENV_INSTALL_DB`].

#![warn(missing_docs)]

pub mod invariants;
pub mod proxy;
pub mod s3;

pub use proxy::{FaultProxy, ProxyMode, ProxyStats};
/// The harness error: the process layer's error (the fault proxy reports through it too).
pub use walshard_process::ProcessError as HarnessError;
pub use walshard_process::{
    ChildGuard, ENV_INSTALL_DB, ENV_KEEP, ENV_MARIADBD, ENV_TEMPLATE_DIR, INSTALL_HINT, MariaDb,
    MariaDbOptions, READY_TIMEOUT, STOP_TIMEOUT, free_port, mariadb_version, wait_for_tcp,
};
