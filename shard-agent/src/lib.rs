//! The walshard shard agent: it sits beside one MySQL server, keeps a write-ahead log per shard
//! and serves the seed's server API.
//!
//! - [`wal`]: the per-shard log (segments, CRC-framed records, group commit, recovery).
//! - [`mysql`]: the MySQL endpoint (host, port, user, password) and its connect options.
//! - [`store`]: the MySQL tables and the transactional apply of WAL entries.
//! - [`shard`]: one shard's roles (primary, secondary, fenced), write path and applier.
//! - [`replication`]: the primary's streams to its secondaries and the quorum commit point.
//! - [`archive`]: continuous archiving of committed entries to the backup store;
//!   [`base_backup`]: a shard's consistent copy streamed to it; [`restore`]: the way back.
//! - [`agent`]: the server's shards and persisted configuration.
//! - [`api`] and [`requests`]: the HTTP surface and its pure request validation.
//! - [`cli`]: the command line of the agent process.

#![warn(missing_docs)]

pub mod agent;
pub mod api;
pub mod archive;
pub mod archive_progress;
pub mod base_backup;
pub mod cli;
pub mod disk_guard;
pub mod metrics;
pub mod mysql;
pub mod ops;
pub mod read_gate;
pub mod replication;
pub mod requests;
pub mod restore;
pub mod restore_server;
pub mod shard;
pub mod state;
pub mod store;
pub mod wal;
