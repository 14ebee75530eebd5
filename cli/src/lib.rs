//! The `walshard` CLI's library.
//!
//! - [`local`]: the local runtime: a fleet of MariaDB + agent processes per server, the control
//!   plane and a router on this machine (`walshard up`, `status`, `down`).
//! - [`mod@bench`]: the seed's performance analysis against a local fleet (`walshard bench`).
//! - [`backup`]: base backups of a running fleet, the store listing and restores (docs/backup.md).

#![warn(missing_docs)]

pub mod backup;
pub mod bench;
pub mod local;
